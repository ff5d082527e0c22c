"""Kernel regression and linearized training dynamics.

Conventions follow neural-tangents' ``predict`` so numbers can be compared one for one:

- Kernels are in neural-tangents' layout: a pair of axes per output axis that is not in
  ``trace_axes`` — *traced* ``(N1, N2)`` (one kernel shared by every output column,
  ``trace_axes=(-1,)`` for ``(N, O)`` targets) or *full* ``(N1, N2, O, O)``
  (``trace_axes=()``); along the traced axes a kernel is ``Theta (x) I``. Covariances come
  back in the same layout.
- ``diag_reg`` is relative to the mean diagonal ``tr(K)/n`` unless
  ``diag_reg_absolute_scale=True`` (then it is the absolute ridge).
- MSE loss ``L = |f(X) - Y|^2 / (2 |Y|)`` with ``|Y| = y_train.size``; gradient flow
  ``df/dt = -(eta / |Y|) K (f - Y)`` (Lee et al. 2019, "Wide Neural Networks of Any Depth
  Evolve as Linear Models Under Gradient Descent").

Functions: :func:`gp_inference` (NNGP posterior, the NTK-GP of Lee et al. 2019 eq. 16 and
the NTKGP posterior of He et al. 2020),
:func:`gradient_descent_mse` (closed-form outputs at any ``t`` and at ``t = inf``),
:func:`gradient_descent_mse_ensemble` (the Gaussian over an infinite ensemble of trained
networks, from a kernel function), :func:`gradient_descent` (the function-space ODE of any
loss, with momentum), :func:`max_learning_rate`, :func:`asymmetric_kernel_regression` (for
the asymmetric Adam kernel of Malladi et al. 2023), and classification helpers
:func:`one_hot`, :func:`accuracy`. The predictors take neural-tangents' names, arguments,
``trace_axes`` and return conventions; where they differ, their docstrings say so.
"""
from __future__ import annotations

import collections
import functools
from typing import Callable, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.ode import odeint

from ntk import solvers
from ntk.solvers import _concrete, check_kernel, check_targets

__all__ = [
    "Gaussian",
    "gp_inference",
    "gradient_descent_mse",
    "gradient_descent_mse_ensemble",
    "gradient_descent",
    "ODEState",
    "max_learning_rate",
    "asymmetric_kernel_regression",
    "one_hot",
    "accuracy",
]


class Gaussian(NamedTuple):
    """A Gaussian over test outputs: ``mean`` ``(N_test, O)``; ``covariance`` in the
    kernels' layout: ``(N_test, N_test)`` for traced kernels (shared by every output
    column), ``(N_test, N_test, O, O)`` for full ones (``trace_axes=()``); ``None`` only from
    :func:`gp_inference`'s plain-GP form without ``k_test_test``."""

    mean: jnp.ndarray
    covariance: Optional[jnp.ndarray]


# ---------------------------------------------------------------------------------------------
# Kernel plumbing
# ---------------------------------------------------------------------------------------------


def _flatten(k, name: str, square: bool):
    """``(N1, N2)`` stays; ``(N1, N2, O, O)`` -> ``(N1 O, N2 O)``. Returns (matrix, O or None)."""
    if not hasattr(k, "ndim"):
        raise TypeError(f"`{name}` must be an array, got {type(k).__name__}.")
    if k.ndim == 2:
        return k, None
    if k.ndim == 4:
        if k.shape[2] != k.shape[3]:
            raise ValueError(f"`{name}` of shape {tuple(k.shape)}: a full kernel must be "
                             f"(N1, N2, O, O).")
        n1, n2, o, _ = k.shape
        return jnp.transpose(k, (0, 2, 1, 3)).reshape(n1 * o, n2 * o), o
    raise ValueError(f"`{name}` must be (N1, N2) or (N1, N2, O, O), got shape "
                     f"{tuple(k.shape)}.")


def _targets(y, n: int, o: Optional[int], kernel_name: str):
    """Targets as a 2-D ``(rows, columns)`` matrix matching the (flattened) kernel."""
    if not hasattr(y, "shape"):
        raise TypeError(f"`y_train` must be an array, got {type(y).__name__}.")
    if o is None:
        check_targets(y, n, "y_train", kernel_name)
        return y.reshape(n, -1)
    if y.ndim != 2 or y.shape[0] * y.shape[1] != n or y.shape[1] != o:
        raise ValueError(f"`y_train` must have shape ({n // o}, {o}) to match the full "
                         f"kernel `{kernel_name}`, got shape {tuple(y.shape)}.")
    check_targets(y, n // o, "y_train", kernel_name)
    return y.reshape(n, 1)


def _has_kernel(k, g: str) -> bool:
    """Whether a Kernel-like object or dict carries a ``g`` kernel (not None)."""
    if isinstance(k, dict):
        return k.get(g) is not None
    return getattr(k, g, None) is not None


def _get_kernel(k, g: str, name: str):
    """Pick ``nngp``/``ntk`` from a Kernel-like object (attribute or mapping)."""
    if hasattr(k, "ndim"):
        return k
    if isinstance(k, dict):
        if g not in k:
            raise ValueError(f"`{name}` has no '{g}' entry (keys: {sorted(k)}).")
        return k[g]
    if hasattr(k, g) and getattr(k, g) is not None:
        return getattr(k, g)
    raise ValueError(f"`{name}` of type {type(k).__name__} has no '{g}' kernel.")


# ---------------------------------------------------------------------------------------------
# Output layouts: neural-tangents' `trace_axes`
# ---------------------------------------------------------------------------------------------


def _canonical_trace_axes(trace_axes, y_train, kernel_ndim: Optional[int] = None,
                          kernel_name: str = "k_train_train") -> tuple:
    """``trace_axes`` as sorted, unique, non-negative axes of ``y_train``: the axes along
    which a kernel is ``Theta (x) I`` (and which it lacks), as in neural-tangents; the batch
    axis 0 may be one of them (the kernel then has no batch axes, and the identity couples
    output ``i`` to training example ``i`` only).

    ``trace_axes=None`` reads them from the rank of a kernel given as data
    (``kernel_ndim``): the kernel keeps ``kernel_ndim / 2`` leading axes of ``y_train`` and
    traces the rest, which is neural-tangents' default ``(-1,)`` wherever that default fits
    (an ``(N, N)`` kernel for ``(N, O)`` targets) and ``()`` for a full ``(N, N, O, O)``
    kernel. 1-D targets have no output axis: nothing is traced whatever ``trace_axes`` says.
    """
    if not hasattr(y_train, "shape") or not hasattr(y_train, "ndim"):
        raise TypeError(f"`y_train` must be an array, got {type(y_train).__name__}.")
    if y_train.ndim == 0:
        raise ValueError("`y_train` must have a leading batch axis, got a scalar.")
    nd = y_train.ndim
    if trace_axes is None:
        if kernel_ndim is None:
            trace_axes = (-1,)
        elif kernel_ndim % 2 or not 2 <= kernel_ndim <= 2 * nd:
            raise ValueError(f"`{kernel_name}` has {kernel_ndim} axes, but a kernel for "
                             f"`y_train` of shape {tuple(y_train.shape)} has two per untraced "
                             f"axis of `y_train` (2 to {2 * nd}); pass `trace_axes` to say "
                             f"which axes it lacks.")
        else:
            return () if nd == 1 else tuple(range(kernel_ndim // 2, nd))
    axes = (trace_axes,) if isinstance(trace_axes, (int, np.integer)) else trace_axes
    try:
        axes = tuple(int(a) for a in axes)
    except TypeError:
        raise TypeError(f"`trace_axes` must be an int or a sequence of ints, got "
                        f"{trace_axes!r}.") from None
    for a in axes:
        if not -nd <= a < nd:
            raise ValueError(f"`trace_axes`={trace_axes!r} is out of range for `y_train` of "
                             f"shape {tuple(y_train.shape)}.")
    if nd == 1:
        return ()
    return tuple(sorted({a % nd for a in axes}))


def _kept_axes(ndim: int, trace_axes: tuple) -> tuple:
    return tuple(a for a in range(ndim) if a not in trace_axes)


def _to_matrix(f, trace_axes: tuple):
    """Outputs ``(N, *rest)`` -> ``(rows, columns)``: the untraced axes make the rows
    (flattened in the order of a kernel's rows), the traced axes the columns."""
    last = tuple(range(f.ndim - len(trace_axes), f.ndim))
    n_cols = int(np.prod([f.shape[a] for a in trace_axes], dtype=int))
    return jnp.moveaxis(f, trace_axes, last).reshape(-1, n_cols)


def _from_matrix(m, shape: tuple, trace_axes: tuple):
    """Inverse of :func:`_to_matrix` for outputs of ``shape``."""
    kept = [shape[a] for a in range(len(shape)) if a not in trace_axes]
    traced = [shape[a] for a in trace_axes]
    last = tuple(range(len(shape) - len(trace_axes), len(shape)))
    return jnp.moveaxis(m.reshape(kept + traced), last, trace_axes)


def _output_shape(k_shape: tuple, y_shape: tuple, trace_axes: tuple) -> tuple:
    """Shape of the outputs a kernel ``(d1, e1, d2, e2, ...)`` (one pair per untraced axis,
    the first of each pair for these outputs) predicts: ``d_i`` on the untraced axes, the
    training targets' sizes on the traced ones (neural-tangents' rule)."""
    first = iter(k_shape[0::2])
    return tuple(y_shape[a] if a in trace_axes else next(first) for a in range(len(y_shape)))


def _kernel_matrix(k, name: str, y_shape: tuple, trace_axes: tuple, symmetric: bool):
    """A kernel in neural-tangents' layout ``(d1, e1, d2, e2, ...)`` (one pair per untraced
    axis of the outputs: ``(N1, N2, O, O)`` for ``(N, O)`` targets and ``trace_axes=()``) as
    the matrix ``(d1 d2 ..., e1 e2 ...)`` acting on :func:`_to_matrix` rows. The second axis
    of each pair must match ``y_train`` (``y_shape``), and the first too when ``symmetric``."""
    if not hasattr(k, "ndim") or not hasattr(k, "shape"):
        raise TypeError(f"`{name}` must be an array, got {type(k).__name__}.")
    dims = tuple(y_shape[a] for a in _kept_axes(len(y_shape), trace_axes))
    shape = tuple(k.shape)
    fits = (len(shape) == 2 * len(dims) and shape[1::2] == dims
            and (not symmetric or shape[0::2] == dims))
    if not fits:
        first = [str(d) for d in dims] if symmetric else [
            "N_test" if a == 0 else f"d{a}" for a in _kept_axes(len(y_shape), trace_axes)]
        want = ", ".join(f"{a}, {b}" for a, b in zip(first, dims))
        raise ValueError(f"`{name}` has shape {shape}; for `y_train` of shape "
                         f"{tuple(y_shape)} and trace_axes={trace_axes} it must be "
                         f"({want}).")
    k2 = k if len(shape) == 2 else _pairs_to_matrix(k)
    return check_kernel(k2, name, symmetric=symmetric, n=int(np.prod(dims, dtype=int)))


@jax.jit
def _pairs_to_matrix(k):
    """``(d1, e1, d2, e2, ...)`` -> ``(d1 d2 ..., e1 e2 ...)``."""
    perm = tuple(range(0, k.ndim, 2)) + tuple(range(1, k.ndim, 2))
    return jnp.transpose(k, perm).reshape(int(np.prod(k.shape[0::2], dtype=int)),
                                          int(np.prod(k.shape[1::2], dtype=int)))


def _kernel_layout(m, dims: tuple):
    """Inverse of :func:`_kernel_matrix` for a square matrix over outputs with untraced axes
    of sizes ``dims``, with any leading (time) axes: ``(..., R, R)`` -> ``(..., d1, d1, d2,
    d2, ...)``."""
    lead = tuple(m.shape[:-2])
    h, b = len(dims), len(lead)
    m = m.reshape(lead + tuple(dims) + tuple(dims))
    return jnp.transpose(m, tuple(range(b)) + tuple(b + i + j * h for i in range(h)
                                                    for j in range(2)))


def _check_rows(y_train, k, trace_axes: tuple, name: str):
    """``y_train``'s leading dimension against a kernel's first axis (when the batch axis is
    not traced), with the targets' finiteness."""
    if 0 not in trace_axes and hasattr(k, "shape") and len(k.shape) >= 1:
        check_targets(y_train, k.shape[0], "y_train", name)
    else:
        check_targets(y_train, y_train.shape[0], "y_train", name)


# ---------------------------------------------------------------------------------------------
# GP inference
# ---------------------------------------------------------------------------------------------


def gp_inference(k_train_train, y_train, diag_reg: float = 0.0,
                 diag_reg_absolute_scale: bool = False, trace_axes=None):
    """Exact Gaussian-process posteriors from NNGP and NTK kernels.

    Let ``K`` be the NNGP, ``Theta`` the NTK, ``d`` the train and ``t`` the test inputs,
    ``lambda = diag_reg`` (relative to the mean diagonal unless absolute). Then

    - ``'nngp'`` (Bayesian posterior; Lee et al. 2018):
      ``mean = K_td (K_dd + lambda I)^{-1} Y``,
      ``cov = K_tt - K_td (K_dd + lambda I)^{-1} K_dt``;
    - ``'ntk'`` (NTK-GP: the distribution over random initialisations of the linearized
      network trained to ``t = inf`` on MSE; Lee et al. 2019, eq. 16), with
      ``A = Theta_td (Theta_dd + lambda I)^{-1}``:
      ``mean = A Y``, ``cov = K_tt + A K_dd A^T - A K_dt - K_td A^T``;
    - ``'ntkgp'`` (the Bayesian posterior of a GP whose prior kernel is the NTK; He,
      Lakshminarayanan & Teh 2020): ``mean = A Y`` (as ``'ntk'``),
      ``cov = Theta_tt - Theta_td (Theta_dd + lambda I)^{-1} Theta_dt``. It is what an
      ensemble of wide networks samples when each member adds an untrainable
      ``delta ~ GP(0, Theta - K)`` to its output (NTKGP-param), and it is never less
      certain than ``'ntk'``: ``cov_ntkgp - cov_ntk`` is the covariance of
      ``delta_t - A delta_d``, positive semi-definite when ``Theta - K`` is.

    Arguments and return values follow neural-tangents' ``predict.gp_inference``.

    Args:
      k_train_train: an array (a plain GP with that kernel, used for every ``get`` entry),
        or a Kernel-like object / dict with ``nngp`` and ``ntk`` entries (``'ntkgp'`` reads
        only ``ntk``; the ``'ntk'`` covariance needs both). Arrays in neural-tangents'
        layout: ``(N, N)``, with a pair of axes per untraced output axis (``(N, N, O, O)``
        for ``(N, O)`` targets and ``trace_axes=()``).
      y_train: ``(N, ...)`` targets.
      diag_reg: ridge ``lambda >= 0``, relative to the mean diagonal of the (flattened)
        train-train kernel unless ``diag_reg_absolute_scale``.
      trace_axes: axes of ``y_train`` the kernels lack (``Theta (x) I`` along them), as in
        neural-tangents; ``None`` (default) reads them from the rank of ``k_train_train``:
        neural-tangents' ``(-1,)`` for an ``(N, N)`` kernel of ``(N, O)`` targets, ``()``
        for ``(N, N, O, O)``.
    Returns:
      ``predict_fn(get=None, k_test_train=None, k_test_test=None)``. ``get``: ``'nngp'``,
      ``'ntk'``, ``'ntkgp'`` (any case) or a tuple of them; ``None`` is ``('nngp',
      'ntk')``. A name returns one entry, a tuple a namedtuple ``Gaussians`` with one entry
      per name in that order (also indexable by name, ``out['ntk']``). An entry is the
      posterior mean ``(N_test, ...)`` when ``k_test_test`` is None, else a
      :class:`Gaussian` whose covariance is in the kernel layout (``(N_test, N_test)``
      traced, ``(N_test, N_test, O, O)`` with ``trace_axes=()``). ``k_test_train``
      ``(N_test, N, ...)`` (array or Kernel-like); ``None`` gives the posterior on the
      training inputs, ``N(y_train, 0)`` (without the ridge: pass ``k_test_train =
      k_train_train`` for the ridge's fit), and then any non-None ``k_test_test`` (e.g.
      ``True``) asks for that zero covariance. An array ``k_train_train`` is read as the
      kernel of every name asked for (``get=None``: its posterior as both ``nngp`` and
      ``ntk``, as neural-tangents does; pass ``'nngp'`` for the plain GP posterior).

    References:
      Lee, Xiao, Schoenholz, Bahri, Novak, Sohl-Dickstein & Pennington, 2019, "Wide Neural
      Networks of Any Depth Evolve as Linear Models Under Gradient Descent",
      arXiv:1902.06720. He, Lakshminarayanan & Teh, 2020, "Bayesian Deep Ensembles via the
      Neural Tangent Kernel", arXiv:2007.05864.
    """
    is_array = hasattr(k_train_train, "ndim")
    present = tuple(g for g in ("nngp", "ntk") if is_array or _has_kernel(k_train_train, g))
    if not present:
        raise ValueError(f"`k_train_train` of type {type(k_train_train).__name__} has neither "
                         f"an 'nngp' nor an 'ntk' kernel.")
    first = _get_kernel(k_train_train, present[0], "k_train_train")
    axes = _canonical_trace_axes(trace_axes, y_train, getattr(first, "ndim", None))
    y_shape = tuple(y_train.shape)
    _check_rows(y_train, first, axes, "k_train_train")
    solvers._check_nonneg(diag_reg, "diag_reg")
    y2 = _to_matrix(jnp.asarray(y_train), axes)

    # Validate and factor eagerly, so that bad input fails here, not at the first prediction.
    prepared = {}
    for g in present:
        kdd = _kernel_matrix(_get_kernel(k_train_train, g, "k_train_train"), "k_train_train",
                             y_shape, axes, symmetric=True)
        factor, alpha, ridge = _regularized_cholesky(kdd, diag_reg, y2.astype(kdd.dtype),
                                                     absolute=diag_reg_absolute_scale)
        fc = _concrete(factor)
        if fc is not None and not np.all(np.isfinite(fc)):
            # not positive definite at this ridge: the adaptive jitter ladder (or its error)
            eye = np.eye(kdd.shape[0], dtype=kdd.dtype)
            chol = solvers.cholesky_factor(kdd + ridge * eye, 0.0, check=False)
            factor, alpha = chol.factor, solvers.cho_solve(chol, y2.astype(kdd.dtype))
        prepared[g] = (kdd, factor, alpha)

    def train_matrix(g, why):
        if g not in prepared:
            raise ValueError(f"`k_train_train` of type {type(k_train_train).__name__} has no "
                             f"'{g}' kernel, which {why} needs.")
        return prepared[g]

    def one(g, k_test_train, k_test_test):
        k = "ntk" if g == "ntkgp" else g  # the NTKGP posterior conditions the NTK prior
        kdd, factor, alpha = train_matrix(k, f"get={g!r}")
        if k_test_train is None:  # the training inputs: N(y_train, 0), as neural-tangents
            mean = jnp.asarray(y_train, kdd.dtype)
            if k_test_test is None:
                return mean
            raw = _get_kernel(k_train_train, k, "k_train_train")
            return Gaussian(mean, jnp.zeros(raw.shape, kdd.dtype))
        ktd_raw = _get_kernel(k_test_train, k, "k_test_train")
        ktd = _kernel_matrix(ktd_raw, "k_test_train", y_shape, axes, symmetric=False)
        out_shape = _output_shape(tuple(ktd_raw.shape), y_shape, axes)
        layout = (out_shape, axes)
        if k_test_test is None:
            return _gp_posterior(factor, alpha, ktd, None, None, None, g=g, layout=layout)[0]
        prior = "ntk" if g == "ntkgp" else "nngp"  # the kernel of the networks at init
        if g == "ntk" and (is_array or not _has_kernel(k_test_train, "nngp")
                           or "nngp" not in prepared):
            raise ValueError("The 'ntk' posterior covariance on test inputs needs the NNGP "
                             "too: `k_train_train` and `k_test_train` must both carry "
                             "'nngp' and 'ntk' kernels (Kernel-like objects or dicts).")
        ktt = _kernel_matrix(_get_kernel(k_test_test, prior, "k_test_test"), "k_test_test",
                             out_shape, axes, symmetric=True)
        nngp_dd = nngp_td = None
        if g == "ntk":
            nngp_dd = prepared["nngp"][0]
            nngp_td = _kernel_matrix(_get_kernel(k_test_train, "nngp", "k_test_train"),
                                     "k_test_train", y_shape, axes, symmetric=False)
        return Gaussian(*_gp_posterior(factor, alpha, ktd, ktt, nngp_dd, nngp_td, g=g,
                                       layout=layout))

    def predict_fn(get: Union[None, str, Sequence[str]] = None, k_test_train=None,
                   k_test_test=None):
        single, names = _canonical_get(get, ("nngp", "ntk", "ntkgp"))
        entries = tuple(one(g, k_test_train, k_test_test) for g in names)
        return entries[0] if single else _named_gaussians(names)(*entries)

    return predict_fn


@functools.partial(jax.jit, static_argnames=("absolute",))
def _regularized_cholesky(kdd, diag_reg, y2, *, absolute: bool):
    """Lower Cholesky factor of ``K + lambda I`` (``lambda`` relative to the mean diagonal
    unless ``absolute``), ``(K + lambda I)^{-1} Y`` and the absolute ``lambda``; the factor
    has NaNs when the regularized kernel is not positive definite."""
    n = kdd.shape[0]
    ridge = diag_reg * (1.0 if absolute else jnp.trace(kdd) / n)
    factor = jnp.linalg.cholesky(kdd + ridge * jnp.eye(n, dtype=kdd.dtype))
    return factor, jax.scipy.linalg.cho_solve((factor, True), y2), ridge


@functools.partial(jax.jit, static_argnames=("g", "layout"))
def _gp_posterior(factor, alpha, ktd, ktt, nngp_dd, nngp_td, *, g: str, layout: tuple):
    """:func:`gp_inference`'s mean (outputs of ``out_shape``) and, when ``ktt`` is given,
    covariance (kernel layout) on test inputs; ``factor`` is the train kernel's (``Theta``
    for 'ntk' / 'ntkgp'), ``nngp_*`` are the NNGP blocks the 'ntk' covariance needs."""
    out_shape, axes = layout
    mean = _from_matrix(ktd @ alpha, out_shape, axes)
    if ktt is None:
        return mean, None
    solved = jax.scipy.linalg.cho_solve((factor, True), ktd.T)  # K_dd^{-1} K_dt
    if g in ("nngp", "ntkgp"):
        cov = ktt - ktd @ solved
    else:
        a = solved.T  # Theta_td Theta_dd^{-1}
        cross = a @ nngp_td.T
        cov = ktt + a @ nngp_dd @ a.T - cross - cross.T
    dims = tuple(out_shape[a] for a in _kept_axes(len(out_shape), axes))
    return mean, _kernel_layout(0.5 * (cov + cov.T), dims)


# ---------------------------------------------------------------------------------------------
# Gradient descent on MSE
# ---------------------------------------------------------------------------------------------


def _check_time(t):
    tc = _concrete(t)
    if tc is not None and (np.any(np.isnan(tc)) or np.any(tc < 0)):
        raise ValueError(f"`t` must be >= 0 (or None / inf for t = infinity), got {t}.")


class _Eigenbasis(NamedTuple):
    """``K + lambda I = V diag(k_i) V^T`` and the matrix functions of gradient flow on it.

    Eigenvalues below round-off (relative ``n eps``, numpy's ``lstsq`` rcond) count as exact
    zeros: those directions never move, and ``t = inf`` inverts only the rest (the
    pseudo-inverse, the minimum-norm solution). Negative eigenvalues from round-off are
    clipped; a kernel with a clearly negative eigenvalue is refused.
    """

    evals: jnp.ndarray  # (n,), clipped to >= 0
    evecs: jnp.ndarray  # (n, n)
    positive: jnp.ndarray  # (n,) bool: above round-off
    safe: jnp.ndarray  # evals with the zeros replaced by 1 (to divide by)

    def decay(self, s):
        """``exp(-s k_i)``; ``s >= 0`` may be inf (then 0 on the range, 1 on the kernel)."""
        return jnp.where(self.positive, jnp.exp(-s * self.safe), 1.0)

    def inv_growth(self, s):
        """``(1 - exp(-s k_i)) / k_i``, with its ``k_i -> 0`` limit ``s`` (0 at ``s = inf``)."""
        s_zero = jnp.where(jnp.isinf(s), 0.0, s)
        return jnp.where(self.positive, -jnp.expm1(-s * self.safe) / self.safe, s_zero)

    def apply(self, weights, v):
        """``V diag(weights) V^T v``."""
        return self.evecs @ (weights[:, None] * (self.evecs.T @ v))

    def matrix(self, weights):
        """``V diag(weights) V^T``."""
        return (self.evecs * weights[None, :]) @ self.evecs.T


def _eigenbasis(kdd, diag_reg, diag_reg_absolute_scale: bool, name: str) -> _Eigenbasis:
    solvers._check_nonneg(diag_reg, "diag_reg")
    basis = _decompose(kdd, diag_reg, diag_reg_absolute_scale)
    ev = _concrete(basis.raw_extremes)
    if ev is not None and ev[0] < -np.sqrt(np.finfo(ev.dtype).eps) * max(ev[1], 0):
        raise ValueError(f"`{name}` of shape {tuple(kdd.shape)} is not positive "
                         f"semi-definite: smallest eigenvalue {ev[0]:.3g}, largest "
                         f"{ev[1]:.3g}; gradient flow would diverge along its negative "
                         f"directions.")
    return basis.basis


class _Decomposed(NamedTuple):
    basis: _Eigenbasis
    raw_extremes: jnp.ndarray  # smallest and largest eigenvalue before clipping


@functools.partial(jax.jit, static_argnums=(2,))
def _decompose(kdd, diag_reg, absolute: bool) -> _Decomposed:
    n = kdd.shape[0]
    scale = 1.0 if absolute else jnp.trace(kdd) / n
    evals, evecs = jnp.linalg.eigh(kdd + diag_reg * scale * jnp.eye(n, dtype=kdd.dtype))
    extremes = jnp.stack([evals[0], evals[-1]])
    evals = jnp.maximum(evals, 0.0)  # round-off only (a negative kernel is refused)
    tiny = n * jnp.finfo(kdd.dtype).eps * jnp.max(jnp.abs(evals))
    positive = evals > tiny
    return _Decomposed(_Eigenbasis(evals, evecs, positive, jnp.where(positive, evals, 1.0)),
                       extremes)


def gradient_descent_mse(k_train_train, y_train, learning_rate: float = 1.0,
                         diag_reg: float = 0.0, diag_reg_absolute_scale: bool = False,
                         trace_axes=None):
    """Closed-form outputs of a linearized network trained by gradient flow on MSE.

    With ``K = k_train_train + lambda I``, ``eta = learning_rate``, ``n = y_train.size`` and
    ``K = V diag(k_i) V^T``:

        f_train(t) = Y + exp(-eta t K / n) (f_train(0) - Y)
        f_test(t)  = f_test(0) + K_td K^{-1} (I - exp(-eta t K / n)) (Y - f_train(0))

    (Lee et al. 2019, eqs. 9-10; neural-tangents' ``gradient_descent_mse``, whose arguments
    and ``trace_axes`` this takes). The matrix functions are applied in the eigenbasis:
    ``K^{-1}(I - e^{-s K})`` uses ``(1 - e^{-s k_i}) / k_i``, whose ``k_i -> 0`` limit ``s``
    is taken exactly, so a rank-deficient kernel gives finite outputs at every finite ``t``
    and the pseudo-inverse (minimum-norm) solution at ``t = inf``. Negative eigenvalues from
    round-off are clipped.

    Args:
      k_train_train: in neural-tangents' layout: ``(N, N)``, with a pair of axes per
        untraced output axis (``(N, N, O, O)`` for ``(N, O)`` targets and ``trace_axes=()``).
      y_train: ``(N, ...)`` targets.
      learning_rate: ``eta > 0``; ``t`` counts steps of it.
      diag_reg: ridge ``lambda >= 0``, relative to the mean diagonal of the (flattened)
        kernel unless ``diag_reg_absolute_scale``.
      trace_axes: axes of ``y_train`` the kernels lack (``Theta (x) I`` along them), as in
        neural-tangents; ``None`` (default) reads them from the kernel's rank (``(-1,)`` for
        ``(N, N)`` and ``(N, O)`` targets, ``()`` for ``(N, N, O, O)``).
    Returns:
      ``predict_fn(t=None, fx_train_0=0., fx_test_0=None, k_test_train=None)``: ``t``
      ``None`` (= inf) or times ``>= 0`` of any shape (outputs get leading axes
      ``t.shape``). Returns ``fx_train_t``; ``(fx_train_t, fx_test_t)`` when ``fx_test_0``
      (the test outputs at ``t = 0``; ``0.`` for a zero-output start) and ``k_test_train``
      (``(N_test, N, ...)``) are given; ``fx_test_t`` alone when ``fx_train_0`` is None
      (neural-tangents' "no training outputs"; the dynamics start from zero training
      outputs, and the test outputs from ``fx_test_0``, zero when it is ``None``).
      neural-tangents' conventions throughout.

    References:
      Lee, Xiao, Schoenholz, Bahri, Novak, Sohl-Dickstein & Pennington, 2019, "Wide Neural
      Networks of Any Depth Evolve as Linear Models Under Gradient Descent",
      arXiv:1902.06720.
    """
    axes = _canonical_trace_axes(trace_axes, y_train, getattr(k_train_train, "ndim", None))
    y_shape = tuple(y_train.shape)
    _check_rows(y_train, k_train_train, axes, "k_train_train")
    kdd = _kernel_matrix(k_train_train, "k_train_train", y_shape, axes, symmetric=True)
    _check_learning_rate(learning_rate)
    basis = _eigenbasis(kdd, diag_reg, diag_reg_absolute_scale, "k_train_train")
    dtype = kdd.dtype
    y_train = jnp.asarray(y_train, dtype)
    rate = learning_rate / y_train.size

    def initial(value, shape, name):
        v = jnp.asarray(value, dtype)
        try:
            np.broadcast_shapes(v.shape, shape)
        except ValueError:
            raise ValueError(f"`{name}` of shape {tuple(v.shape)} does not broadcast to "
                             f"{shape}.") from None
        return v

    def predict_fn(t=None, fx_train_0=0.0, fx_test_0=None, k_test_train=None):
        t_arr = jnp.asarray(jnp.inf if t is None else t, dtype=dtype)
        _check_time(t_arr)
        if fx_test_0 is not None and k_test_train is None:
            raise ValueError("`fx_test_0` was given without `k_test_train`.")
        if fx_train_0 is None and k_test_train is None:
            raise ValueError("`fx_train_0` and `k_test_train` are both None: nothing to "
                             "predict.")
        f0 = initial(0.0 if fx_train_0 is None else fx_train_0, y_shape, "fx_train_0")
        ktd, ft0, test_shape = None, None, None
        if k_test_train is not None:
            ktd = _kernel_matrix(k_test_train, "k_test_train", y_shape, axes, symmetric=False)
            test_shape = _output_shape(tuple(k_test_train.shape), y_shape, axes)
            ft0 = initial(0.0 if fx_test_0 is None else fx_test_0, test_shape, "fx_test_0")
        if fx_test_0 is None and fx_train_0 is not None:  # neural-tangents: training only
            ktd, ft0, test_shape = None, None, None
        ftr, fte = _mse_dynamics(basis, t_arr, rate, y_train, f0, ft0, ktd,
                                 layout=(test_shape, axes))
        if fx_test_0 is None:
            return ftr
        return fte if fx_train_0 is None else (ftr, fte)

    return predict_fn


@functools.partial(jax.jit, static_argnames=("layout",))
def _mse_dynamics(basis: _Eigenbasis, t, rate, y_train, fx_train_0, fx_test_0, ktd, *,
                  layout: tuple):
    """:func:`gradient_descent_mse`'s outputs at times ``t`` (any shape), compiled once per
    shapes and layout; test outputs when ``ktd`` is given."""
    test_shape, axes = layout
    y_shape = y_train.shape
    y2 = _to_matrix(y_train, axes)
    f0 = _to_matrix(jnp.broadcast_to(fx_train_0, y_shape), axes)
    if ktd is not None:
        ft0 = _to_matrix(jnp.broadcast_to(fx_test_0, test_shape), axes)

    def at(s):
        ftr = _from_matrix(y2 + basis.apply(basis.decay(s), f0 - y2), y_shape, axes)
        if ktd is None:
            return ftr, None
        fte = ft0 + ktd @ basis.apply(basis.inv_growth(s), y2 - f0)
        return ftr, _from_matrix(fte, test_shape, axes)

    ftr, fte = jax.vmap(at)(rate * t.reshape(-1))
    ftr = ftr.reshape(t.shape + y_shape)
    return ftr, None if ktd is None else fte.reshape(t.shape + test_shape)


def _check_learning_rate(learning_rate):
    if isinstance(learning_rate, (str, bytes, bool)) or learning_rate is None or (
            hasattr(learning_rate, "dtype") and not jnp.issubdtype(learning_rate.dtype,
                                                                   jnp.number)):
        raise TypeError(f"`learning_rate` must be a real number, got {learning_rate!r}.")
    lr = _concrete(learning_rate)
    if lr is not None and (lr.ndim != 0 or not np.isfinite(lr) or lr <= 0):
        raise ValueError(f"`learning_rate` must be a finite scalar > 0, got {learning_rate}.")


# ---------------------------------------------------------------------------------------------
# Gradient descent on any loss: the function-space ODE
# ---------------------------------------------------------------------------------------------


class ODEState(NamedTuple):
    """State of the function-space ODE of :func:`gradient_descent` (a pytree).

    ``fx_train`` ``(N, ...)`` / ``fx_test`` ``(N_test, ...)``: outputs; ``qx_train`` /
    ``qx_test``: their velocities (momentum only). ``None`` fields are absent. Pass one as
    ``fx_train_or_state_0`` to start (or resume) from it; the solve then returns one.
    """

    fx_train: Optional[jnp.ndarray] = None
    fx_test: Optional[jnp.ndarray] = None
    qx_train: Optional[jnp.ndarray] = None
    qx_test: Optional[jnp.ndarray] = None


def _ode_velocity(loss: Callable, trace_axes: tuple, momentum: bool) -> Callable:
    """``d state / d tau`` of :func:`gradient_descent`, built once per loss and layout (the
    arrays are arguments, so a new kernel, target or learning rate of the same shapes reuses
    the compiled solver)."""
    try:
        return _ode_velocity_cached(loss, trace_axes, momentum)
    except TypeError:  # an unhashable loss
        return _ode_velocity_cached.__wrapped__(loss, trace_axes, momentum)


@functools.lru_cache(maxsize=64)
def _ode_velocity_cached(loss, trace_axes, momentum):
    grad_loss = jax.grad(loss)

    def velocity(state: ODEState, _, kdd, ktd, y_train, damping):
        g = _to_matrix(grad_loss(state.fx_train, y_train), trace_axes)
        d_train = -_from_matrix(kdd @ g, y_train.shape, trace_axes)
        d_test = (None if state.fx_test is None else
                  -_from_matrix(ktd @ g, state.fx_test.shape, trace_axes))
        if not momentum:
            return ODEState(d_train, d_test)
        d_q_test = None if d_test is None else d_test - damping * state.qx_test
        return ODEState(state.qx_train, state.qx_test, d_train - damping * state.qx_train,
                        d_q_test)

    return velocity


@functools.partial(jax.jit, static_argnames=("velocity", "tolerance"))
def _solve_ode(velocity, state_0, t, time_unit, kdd, ktd, y_train, damping, *, tolerance):
    """The ODE state at times ``t`` (any shape and order; leading axes ``t.shape``).

    ``odeint`` needs increasing times that start where ``state_0`` holds: solve at the
    sorted times behind a start just before them (a zero-length first interval gives NaN).
    """
    flat = t.reshape(-1) * time_unit
    order = jnp.argsort(flat)
    sorted_t = flat[order]
    start = jnp.where(sorted_t[:1] == 0, -jnp.finfo(flat.dtype).tiny ** 0.5, 0.0)
    path = odeint(velocity, state_0, jnp.concatenate([start.astype(flat.dtype), sorted_t]),
                  kdd, ktd, y_train, damping, rtol=tolerance, atol=tolerance)
    inverse = jnp.argsort(order)
    return jax.tree_util.tree_map(lambda x: x[1:][inverse].reshape(t.shape + x.shape[1:]),
                                  path)


def gradient_descent(loss: Callable, k_train_train, y_train, learning_rate: float = 1.0,
                     momentum: Optional[float] = None, trace_axes=(-1,)):
    """Outputs of a linearized network trained by gradient descent on any loss.

    In function space the linearized network follows (Lee et al. 2019, Sec. 2.2)

        df/dtau = -Theta(x, X) dL/df(X),    tau = eta t,

    for training and test outputs alike, with ``L = loss(f(X), Y)`` (any differentiable
    loss; cross-entropy has no closed form). With ``momentum = m`` (heavy ball,
    ``v <- m v - eta grad``, ``p <- p + v``) the continuous limit in units of
    ``sqrt(eta)`` is

        d^2 f/dtau^2 = -Theta dL/df - ((1 - m) / sqrt(eta)) df/dtau,   tau = sqrt(eta) t,

    so ``t`` counts steps in both cases (neural-tangents' conventions; with momentum,
    ``learning_rate`` and ``t`` are not interchangeable). The ODE is solved by
    ``jax.experimental.ode.odeint`` (adaptive Dormand-Prince, ``rtol = atol = 1.4e-8``,
    loosened to ``4 eps`` of the kernel's dtype in float32).

    Args:
      loss: ``loss(fx_train, y_train) -> scalar``; e.g. MSE ``0.5 * mean((fx - y) ** 2)``
        gives :func:`gradient_descent_mse`'s dynamics.
      k_train_train: the NTK in neural-tangents' layout: ``(N, N)`` for ``y_train``
        ``(N, O)`` and ``trace_axes=(-1,)``, ``(N, N, O, O)`` for ``trace_axes=()``; in
        general ``(N, N)`` and a pair ``(d, d)`` per untraced output axis.
      y_train: ``(N, ...)`` targets.
      learning_rate: ``eta > 0``.
      momentum: ``None`` (plain gradient descent) or ``m`` in ``[0, 1]``.
      trace_axes: axes of ``y_train`` along which the kernel is ``Theta (x) I`` (and which
        it lacks), as in neural-tangents; the batch axis 0 may be one (the kernel then has
        no batch axes and test output ``i`` moves with training output ``i``).
    Returns:
      ``predict_fn(t=None, fx_train_or_state_0=0., fx_test_0=None, k_test_train=None)``:
      ``t`` a finite time (training steps, may be fractional) ``>= 0`` or an array of them
      of any shape and order (outputs get leading axes ``t.shape``); ``t = None`` / ``inf``
      is refused (the ODE need not converge: use :func:`gradient_descent_mse` for MSE at
      ``t = inf``). ``fx_train_or_state_0``: train outputs at ``t = 0`` (``None``: do not
      return them; the training dynamics then start from zero outputs) or an
      :class:`ODEState` (then an :class:`ODEState` is returned). ``k_test_train``:
      ``(N_test, N, ...)``, required with ``fx_test_0``. Returns ``fx_train_t``,
      ``fx_test_t`` or ``(fx_train_t, fx_test_t)``.

    References:
      Lee, Xiao, Schoenholz, Bahri, Novak, Sohl-Dickstein & Pennington, 2019, "Wide Neural
      Networks of Any Depth Evolve as Linear Models Under Gradient Descent",
      arXiv:1902.06720. Qian, 1999, "On the momentum term in gradient descent learning
      algorithms" (the heavy-ball ODE).

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntk import predict
      >>> k = jnp.array([[2.0, 0.5], [0.5, 1.0]])
      >>> y = jnp.array([[1.0, 0.0], [0.0, 1.0]])
      >>> xent = lambda fx, y: -jnp.mean(jnp.sum(jax.nn.log_softmax(fx) * y, -1))
      >>> predict_fn = predict.gradient_descent(xent, k, y, learning_rate=0.5)
      >>> predict_fn(jnp.array([1.0, 10.0]), 0.0).shape
      (2, 2, 2)
    """
    if not callable(loss):
        raise TypeError(f"`loss` must be callable as loss(fx, y_train), got "
                        f"{type(loss).__name__}.")
    axes = _canonical_trace_axes(trace_axes, y_train)
    y_shape = tuple(y_train.shape)
    _check_rows(y_train, k_train_train, axes, "k_train_train")
    kdd = _kernel_matrix(k_train_train, "k_train_train", y_shape, axes, symmetric=True)
    _check_learning_rate(learning_rate)
    if momentum is not None:
        mc = _concrete(momentum)
        if mc is not None and (mc.ndim != 0 or not 0 <= mc <= 1):
            raise ValueError(f"`momentum` must be None or a scalar in [0, 1], got {momentum}.")
    dtype = kdd.dtype
    y_train = jnp.asarray(y_train, dtype)
    time_unit = learning_rate if momentum is None else learning_rate ** 0.5
    damping = (jnp.zeros((), dtype) if momentum is None else
               jnp.asarray((1.0 - momentum) / learning_rate ** 0.5, dtype))
    tolerance = max(1.4e-8, 4 * float(jnp.finfo(dtype).eps))
    velocity = _ode_velocity(loss, axes, momentum is not None)

    def initial_state(fx_train_or_state_0, fx_test_0, test_shape):
        as_state = isinstance(fx_train_or_state_0, ODEState)
        if as_state:
            if fx_test_0 is not None:
                raise ValueError("`fx_test_0` must be None when an ODEState is given (its "
                                 "`fx_test` field holds the test outputs).")
            fx_train_0, fx_test_0, q_train, q_test = fx_train_or_state_0
        else:
            fx_train_0, q_train, q_test = fx_train_or_state_0, None, None
        if fx_train_0 is None and fx_test_0 is None:
            raise ValueError("Both `fx_train_0` and `fx_test_0` are None: nothing to predict.")
        if momentum is None and (q_train is not None or q_test is not None):
            raise ValueError("The ODEState carries velocities (`qx_train`/`qx_test`) but "
                             "`momentum` is None.")

        def cast(v, shape, name):
            v = jnp.asarray(v, dtype)
            try:
                return jnp.broadcast_to(v, shape)
            except ValueError:
                raise ValueError(f"`{name}` of shape {tuple(v.shape)} does not broadcast to "
                                 f"{shape}.") from None

        f_train = (jnp.zeros(y_shape, dtype) if fx_train_0 is None else
                   cast(fx_train_0, y_shape, "fx_train_0"))
        f_test = None if fx_test_0 is None else cast(fx_test_0, test_shape, "fx_test_0")
        if momentum is None:
            return ODEState(f_train, f_test)
        q_train = (jnp.zeros(y_shape, dtype) if q_train is None else
                   cast(q_train, y_shape, "qx_train"))
        q_test = (None if f_test is None else jnp.zeros(test_shape, dtype) if q_test is None
                  else cast(q_test, test_shape, "qx_test"))
        return ODEState(f_train, f_test, q_train, q_test)

    def predict_fn(t=None, fx_train_or_state_0=0.0, fx_test_0=None, k_test_train=None):
        t_arr = jnp.asarray(jnp.inf if t is None else t, dtype)
        _check_time(t_arr)
        tc = _concrete(t_arr)
        if tc is not None and np.any(np.isinf(tc)):
            raise ValueError("`t` = None / inf: the ODE of a general loss need not converge "
                             "and cannot be integrated to infinity; pass finite times (for "
                             "MSE, gradient_descent_mse solves t = inf in closed form).")
        has_test = (fx_test_0 is not None or (isinstance(fx_train_or_state_0, ODEState)
                                              and fx_train_or_state_0.fx_test is not None))
        if has_test and k_test_train is None:
            raise ValueError("Test outputs were given without `k_test_train`.")
        if k_test_train is not None:
            ktd = _kernel_matrix(k_test_train, "k_test_train", y_shape, axes,
                                 symmetric=False)
            test_shape = _output_shape(tuple(k_test_train.shape), y_shape, axes)
        else:
            ktd, test_shape = np.zeros((0, kdd.shape[0]), dtype), None
        state_0 = initial_state(fx_train_or_state_0, fx_test_0, test_shape)

        state_t = _solve_ode(velocity, state_0, t_arr, time_unit, kdd, ktd, y_train, damping,
                             tolerance=tolerance)

        if isinstance(fx_train_or_state_0, ODEState):
            return state_t
        if fx_test_0 is None:
            return state_t.fx_train
        if fx_train_or_state_0 is None:
            return state_t.fx_test
        return state_t.fx_train, state_t.fx_test

    return predict_fn


# ---------------------------------------------------------------------------------------------
# Infinite ensembles: gradient descent on MSE, marginalised over initialisations
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _gaussians_tuple(names: tuple):
    return collections.namedtuple("Gaussians", names)


@functools.lru_cache(maxsize=None)
def _named_gaussians(names: tuple):
    """neural-tangents' ``Gaussians`` namedtuple (fields in ``get`` order) that can also be
    indexed by name, ``out['ntk'] is out.ntk``, as the mapping it replaces could."""
    base = collections.namedtuple("Gaussians", names)

    def getitem(self, key):
        return getattr(self, key) if isinstance(key, str) else tuple.__getitem__(self, key)

    return type("Gaussians", (base,), {"__slots__": (), "__getitem__": getitem})


def _canonical_get(get, allowed: tuple = ("nngp", "ntk")):
    """``(single, names)``: ``get`` a name, a tuple of unique names, or None (``('nngp',
    'ntk')``); names in any case (``'NTK'`` is ``'ntk'``, as in neural-tangents)."""
    if get is None:
        return False, ("nngp", "ntk")
    single = isinstance(get, str)
    names = (get,) if single else tuple(get)
    names = tuple(g.lower() if isinstance(g, str) else g for g in names)
    spelled = " or ".join(filter(None, [", ".join(repr(a) for a in allowed[:-1]),
                                        repr(allowed[-1])]))
    if not names:
        raise ValueError(f"`get` must be {spelled} or a non-empty tuple of them.")
    for g in names:
        if g not in allowed:
            raise ValueError(f"`get` entries must be {spelled}, got {g!r}.")
    if len(set(names)) != len(names):
        raise ValueError(f"`get` entries must be unique, got {get!r}.")
    return single, names


def _is_arrays(v) -> bool:
    leaves = jax.tree_util.tree_leaves(v)
    return bool(leaves) and all(isinstance(x, (np.ndarray, jax.Array)) for x in leaves)


def _kernel_kwargs(train_kwargs: dict, test_kwargs: dict):
    """Keyword arguments of the test-train and test-test kernel calls (neural-tangents'
    rule): a test value overrides the train one; array pairs ``(for x1, for x2)`` combine as
    ``(test's first, train's first)`` for test-train; other values must agree."""
    td, tt = dict(train_kwargs), dict(train_kwargs)
    for name, v_tt in test_kwargs.items():
        if name not in train_kwargs:
            td[name] = tt[name] = v_tt
            continue
        v_dd = train_kwargs[name]
        if _is_arrays(v_dd) and _is_arrays(v_tt):
            pairs = all(isinstance(v, tuple) and len(v) == 2 for v in (v_dd, v_tt))
            td[name] = (v_tt[0], v_dd[0]) if pairs else v_tt
        else:
            try:
                same = v_dd is v_tt or bool(v_dd == v_tt)
            except Exception:  # noqa: BLE001 (values that do not compare are not equal)
                same = False
            if not same:
                raise ValueError(f"Keyword argument `{name}` of `kernel_fn` is {v_dd!r} for "
                                 f"the train-train kernel but {v_tt!r} for the test kernels; "
                                 f"non-array arguments must agree.")
            td[name] = v_tt
        tt[name] = v_tt
    return td, tt


@functools.partial(jax.jit, static_argnames=("g", "compute_cov", "layout"))
def _ensemble_moments(basis: _Eigenbasis, y_train, t, rate, nngp_dd, k_td, nngp_td, nngp_tt,
                      *, g: str, compute_cov: bool, layout: tuple):
    """Mean (and covariance) of the ensemble at times ``t`` (scaled ``s = rate t``,
    ``rate = eta / n``) in the output and kernel layouts; on the training inputs when
    ``k_td`` is None. Compiled once per shapes and flags, shared by every ``predict_fn``."""
    t_shape, out_shape, axes = layout
    b = basis
    y2 = _to_matrix(y_train.astype(b.evecs.dtype), axes)
    s = rate * t.reshape(-1)

    def at(si):
        if k_td is None:
            mean = y2 - b.apply(b.decay(si), y2)
        else:
            mean = k_td @ b.apply(b.inv_growth(si), y2)
        if not compute_cov:
            return mean, None
        if k_td is None and g == "nngp":
            cov = b.matrix(jnp.where(b.positive, b.evals, 0.0) * b.decay(2 * si))
        elif k_td is None:
            decay = b.matrix(b.decay(si))
            cov = decay @ nngp_dd @ decay
        elif g == "nngp":
            cov = nngp_tt - k_td @ b.apply(b.inv_growth(2 * si), k_td.T)
        else:
            a = k_td @ b.matrix(b.inv_growth(si))  # A_t
            cross = a @ nngp_td.T
            cov = nngp_tt + a @ nngp_dd @ a.T - cross - cross.T
        return mean, 0.5 * (cov + cov.T)

    means, covs = jax.vmap(at)(s)
    means = jax.vmap(lambda m: _from_matrix(m, out_shape, axes))(means)
    means = means.reshape(t_shape + out_shape)
    if not compute_cov:
        return means, None
    covs = covs.reshape(t_shape + covs.shape[1:])
    return means, _kernel_layout(covs, tuple(out_shape[a] for a in
                                              _kept_axes(len(out_shape), axes)))


def gradient_descent_mse_ensemble(kernel_fn: Callable, x_train, y_train,
                                  learning_rate: float = 1.0, diag_reg: float = 0.0,
                                  diag_reg_absolute_scale: bool = False, trace_axes=(-1,),
                                  **kernel_fn_train_train_kwargs):
    """The Gaussian over outputs of an infinite ensemble of networks trained on MSE.

    Networks at initialization are a GP with the NNGP ``K``; trained by gradient flow on
    ``|f - Y|^2 / (2 n)`` (``n = y_train.size``) in the linear regime with NTK ``Theta``,
    their outputs at time ``t`` are Gaussian (Lee et al. 2019, eqs. 14-16). With
    ``Theta_dd + lambda I = V diag(theta_i) V^T``, ``s = eta t / n``,
    ``A_t = Theta_td V diag((1 - e^{-s theta_i}) / theta_i) V^T``:

        mean_t(x_test) = A_t Y
        cov_t = K_tt + A_t K_dd A_t^T - A_t K_dt - K_td A_t^T               ('ntk')

    ``'nngp'`` is the same with ``Theta = K`` (training only the readout layer), which
    simplifies to ``cov_t = K_tt - K_td V diag((1 - e^{-2 s k_i}) / k_i) V^T K_dt``. On the
    training inputs (``x_test=None``): ``mean_t = (I - e^{-s Theta}) Y`` and
    ``cov_t = e^{-s Theta} K e^{-s Theta}`` (``'nngp'``: ``K e^{-2 s K}``). ``t = inf`` is the
    NTK (NNGP) kernel regression of Lee et al. 2019 eq. 16 (and the Bayesian posterior
    for ``'nngp'``). Matrix functions are taken in the eigenbasis, with the ``theta_i -> 0``
    limits exact: a singular kernel gives finite outputs at every ``t`` and the
    pseudo-inverse (minimum-norm) solution at ``t = inf``.

    Kernels are computed on first use and cached: ``kernel_fn(x_train, None, get,
    **kernel_fn_train_train_kwargs)``, then ``kernel_fn(x_test, x_train, get, ...)`` and
    ``kernel_fn(x_test, None, ('nngp',), ...)`` with neural-tangents' keyword rule (a
    ``**kernel_fn_test_test_kwargs`` value overrides a train one; pairs of arrays
    ``(for x1, for x2)`` combine; other values must agree). ``kernel_fn`` is any kernel
    function returning named ``nngp`` / ``ntk`` kernels for a tuple ``get``: an ``ntk.stax``
    one, ``ntk.empirical_kernel_fn(...)`` (pass ``params=``), a Monte Carlo one.

    Args:
      kernel_fn: ``kernel_fn(x1, x2, get, **kwargs)``.
      x_train: training inputs (any pytree the kernel function takes).
      y_train: ``(N, ...)`` targets.
      learning_rate: ``eta > 0``; time is measured in steps of it.
      diag_reg: ridge ``lambda`` added to the train-train kernel before the
        eigendecomposition, relative to its mean diagonal unless
        ``diag_reg_absolute_scale``.
      trace_axes: axes of ``y_train`` the kernels are traced over (they are ``(N1, N2)``
        for ``(N, O)`` targets with ``(-1,)``, ``(N1, N2, O, O)`` with ``()``), as in
        neural-tangents (the batch axis 0 included).
    Returns:
      ``predict_fn(t=None, x_test=None, get=None, compute_cov=False,
      **kernel_fn_test_test_kwargs)``: ``t`` ``None`` (= inf) or times ``>= 0`` of any shape
      (outputs get leading axes ``t.shape``); ``x_test=None`` predicts on ``x_train``;
      ``get`` ``'nngp'``, ``'ntk'`` or a tuple (``None``: both). Each entry is the mean
      ``(N_test, ...)``, or with ``compute_cov`` a :class:`Gaussian` whose covariance is in
      the kernel layout (``(N_test, N_test)`` traced, ``(N_test, N_test, O, O)`` with
      ``trace_axes=()``). A name returns that entry; a tuple a namedtuple ``Gaussians``.

    References:
      Lee, Xiao, Schoenholz, Bahri, Novak, Sohl-Dickstein & Pennington, 2019, "Wide Neural
      Networks of Any Depth Evolve as Linear Models Under Gradient Descent",
      arXiv:1902.06720.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntk import predict, stax
      >>> _, _, kernel_fn = stax.serial(stax.Dense(512), stax.Relu(), stax.Dense(1))
      >>> x_train, y_train = jnp.ones((4, 3)) * jnp.arange(4.)[:, None], jnp.ones((4, 1))
      >>> predict_fn = predict.gradient_descent_mse_ensemble(kernel_fn, x_train, y_train,
      ...                                                    diag_reg=1e-4)
      >>> out = predict_fn(x_test=jnp.ones((2, 3)), get='ntk', compute_cov=True)
      >>> out.mean.shape, out.covariance.shape
      ((2, 1), (2, 2))
    """
    if not callable(kernel_fn):
        raise TypeError(f"`kernel_fn` must be callable, got {type(kernel_fn).__name__}.")
    axes = _canonical_trace_axes(trace_axes, y_train)
    y_shape = tuple(y_train.shape)
    check_targets(y_train, y_shape[0], "y_train", "kernel_fn(x_train)")
    _check_learning_rate(learning_rate)
    solvers._check_nonneg(diag_reg, "diag_reg")
    normalization = y_train.size
    train_kernels: dict = {}
    bases: dict = {}

    def kernels(x1, x2, names, kwargs, label):
        out = kernel_fn(x1, x2, tuple(names), **kwargs)
        return {g: _get_kernel(out, g, label) for g in names}

    def k_train_train(names):
        missing = [g for g in names if g not in train_kernels]
        if missing:
            got = kernels(x_train, None, missing, kernel_fn_train_train_kwargs,
                          "kernel_fn(x_train, None)")
            for g, k in got.items():
                train_kernels[g] = _kernel_matrix(k, f"kernel_fn(x_train, None).{g}", y_shape,
                                                  axes, symmetric=True)
        return {g: train_kernels[g] for g in names}

    def basis(g):
        if g not in bases:
            bases[g] = _eigenbasis(k_train_train((g,))[g], diag_reg, diag_reg_absolute_scale,
                                   f"kernel_fn(x_train, None).{g}")
        return bases[g]

    def predict_fn(t=None, x_test=None, get=None, compute_cov: bool = False,
                   **kernel_fn_test_test_kwargs):
        single, names = _canonical_get(get)
        needed = tuple(g for g in ("nngp", "ntk") if g in names or
                       (g == "nngp" and compute_cov))
        kdd = k_train_train(needed)
        dtype = kdd[needed[0]].dtype
        t_arr = jnp.asarray(jnp.inf if t is None else t, dtype)
        _check_time(t_arr)
        if x_test is None:
            if kernel_fn_test_test_kwargs:
                raise ValueError(f"Keyword arguments {sorted(kernel_fn_test_test_kwargs)} "
                                 f"are for test kernels, but `x_test` is None.")
            ktd, ktt, out_shape = None, None, y_shape
        else:
            kw_td, kw_tt = _kernel_kwargs(kernel_fn_train_train_kwargs,
                                          kernel_fn_test_test_kwargs)
            raw = kernels(x_test, x_train, needed, kw_td, "kernel_fn(x_test, x_train)")
            ktd = {g: _kernel_matrix(k, f"kernel_fn(x_test, x_train).{g}", y_shape, axes,
                                     symmetric=False) for g, k in raw.items()}
            out_shape = _output_shape(tuple(raw[needed[0]].shape), y_shape, axes)
            ktt = None
            if compute_cov:
                k = kernels(x_test, None, ("nngp",), kw_tt, "kernel_fn(x_test, None)")["nngp"]
                ktt = _kernel_matrix(k, "kernel_fn(x_test, None).nngp",
                                     out_shape, axes, symmetric=True)
        result = {}
        for g in names:
            mean, cov = _ensemble_moments(
                basis(g), y_train, t_arr, learning_rate / normalization, kdd.get("nngp"),
                None if ktd is None else ktd[g], None if ktd is None else ktd.get("nngp"), ktt,
                g=g, compute_cov=compute_cov, layout=(t_arr.shape, out_shape, axes))
            result[g] = Gaussian(mean, cov) if compute_cov else mean
        if single:
            return result[names[0]]
        return _gaussians_tuple(names)(*(result[g] for g in names))

    return predict_fn


def max_learning_rate(ntk_train_train, y_train_size: Optional[int] = None,
                      momentum: float = 0.0, eps: float = 1e-12) -> float:
    """Largest stable full-batch GD learning rate for MSE in the kernel regime.

    With loss ``|f - Y|^2 / (2 n)``, one GD step maps the residual by
    ``I - (eta / n) Theta``; it contracts iff ``eta < 2 n / lambda_max(Theta)``
    (times ``1 + momentum`` for heavy-ball momentum). ``n = y_train_size``; by default the
    number of rows of the (flattened) kernel, as in neural-tangents — pass ``N * O`` for a
    traced ``(N, N)`` kernel with ``O`` output columns.
    """
    k, _ = _flatten(ntk_train_train, "ntk_train_train", True)
    check_kernel(k, "ntk_train_train", psd=True)
    if momentum < 0 or momentum >= 1:
        raise ValueError(f"`momentum` must be in [0, 1), got {momentum}.")
    factor = k.shape[0] if y_train_size is None else int(y_train_size)
    if factor <= 0:
        raise ValueError(f"`y_train_size` must be positive, got {y_train_size}.")
    lam_max = float(np.linalg.eigvalsh(np.asarray(k, dtype=np.float64))[-1])
    if not lam_max > 0:
        raise ValueError(f"`ntk_train_train` has largest eigenvalue {lam_max:.3g}: an NTK with "
                         "no positive eigenvalue sets no learning-rate bound.")
    return 2.0 * (1.0 + momentum) * factor / (lam_max + eps)


def asymmetric_kernel_regression(k_train_train, y_train, k_test_train=None, *,
                                 diag_reg: float = 0.0):
    """Kernel regression with a non-symmetric kernel (Malladi et al. 2023, Adam kernel).

    Fits ``f(x) = sum_i alpha_i K(x, x_i)`` by interpolation,
    ``(K_dd + lambda I) alpha = Y`` (an LU solve; ``K_dd`` need not be symmetric), and
    returns ``K_td alpha`` (``(N_test, O)``), or the train fit when ``k_test_train`` is None.
    ``K(x, x') = <grad f(x), sign(grad f(x'))>`` is the kernel Adam's early dynamics follow.
    """
    kdd, o = _flatten(k_train_train, "k_train_train", True)
    check_kernel(kdd, "k_train_train", symmetric=False, n=kdd.shape[0])
    if kdd.shape[0] != kdd.shape[1]:
        raise ValueError(f"`k_train_train` must be square, got {tuple(kdd.shape)}.")
    y2 = _targets(y_train, kdd.shape[0], o, "k_train_train")
    solvers._check_nonneg(diag_reg, "diag_reg")
    alpha = jnp.linalg.solve(kdd + diag_reg * jnp.eye(kdd.shape[0], dtype=kdd.dtype), y2)
    if k_test_train is None:
        return (kdd @ alpha).reshape(y_train.shape)
    ktd, _ = _flatten(k_test_train, "k_test_train", False)
    check_kernel(ktd, "k_test_train", symmetric=False, n=kdd.shape[0])
    out = ktd @ alpha
    return out.reshape((-1,) + tuple(y_train.shape[1:])) if o is None else out.reshape(-1, o)


# ---------------------------------------------------------------------------------------------
# Classification helpers
# ---------------------------------------------------------------------------------------------


def one_hot(labels, num_classes: int, *, centered: bool = False, dtype=None):
    """Targets ``(N, C)`` from integer labels ``(N,)``: ``e_y`` (or ``e_y - 1/C`` centered)."""
    labels = jnp.asarray(labels)
    if labels.ndim != 1 or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"`labels` must be a 1-D integer array, got shape "
                         f"{tuple(labels.shape)} and dtype {labels.dtype}.")
    if num_classes <= 0:
        raise ValueError(f"`num_classes` must be positive, got {num_classes}.")
    y = jax.nn.one_hot(labels, num_classes, dtype=dtype or jnp.result_type(float))
    return y - 1.0 / num_classes if centered else y


def accuracy(fx, y) -> float:
    """Fraction of rows where ``argmax fx`` equals the label (``y`` one-hot ``(N, C)`` or
    integer ``(N,)``); for one output column, the sign of ``fx`` against the sign of ``y``."""
    fx = jnp.asarray(fx)
    y = jnp.asarray(y)
    if fx.shape[0] != y.shape[0]:
        raise ValueError(f"`fx` and `y` must have the same leading dimension, got "
                         f"{tuple(fx.shape)} and {tuple(y.shape)}.")
    if fx.ndim == 1 or fx.shape[-1] == 1:
        return float(jnp.mean(jnp.sign(fx.reshape(-1)) == jnp.sign(y.reshape(-1))))
    pred = jnp.argmax(fx, axis=-1)
    true = y if y.ndim == 1 else jnp.argmax(y, axis=-1)
    return float(jnp.mean(pred == true))
