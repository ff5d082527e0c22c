"""Kernel regression and linearized training dynamics.

Conventions follow neural-tangents' ``predict`` so numbers can be compared one for one:

- Kernels are either *traced* ``(N1, N2)`` (one kernel shared by every output column) or
  *full* ``(N1, N2, O, O)`` (``trace_axes=()``); full kernels are flattened to
  ``(N1 O, N2 O)`` with targets ``(N, O) -> (N O,)``.
- ``diag_reg`` is relative to the mean diagonal ``tr(K)/n`` unless
  ``diag_reg_absolute_scale=True`` (then it is the absolute ridge).
- MSE loss ``L = |f(X) - Y|^2 / (2 |Y|)`` with ``|Y| = y_train.size``; gradient flow
  ``df/dt = -(eta / |Y|) K (f - Y)`` (Lee et al. 2019, "Wide Neural Networks of Any Depth
  Evolve as Linear Models Under Gradient Descent").

Functions: :func:`gp_inference` (NNGP posterior and the NTK-GP of Lee et al. 2019 eq. 16),
:func:`gradient_descent_mse` (closed-form outputs at any ``t`` and at ``t = inf``),
:func:`max_learning_rate`, :func:`asymmetric_kernel_regression` (for the asymmetric Adam
kernel of Malladi et al. 2023), and classification helpers :func:`one_hot`, :func:`accuracy`.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from ntk import solvers
from ntk.solvers import _concrete, check_kernel, check_targets

__all__ = [
    "Gaussian",
    "gp_inference",
    "gradient_descent_mse",
    "max_learning_rate",
    "asymmetric_kernel_regression",
    "one_hot",
    "accuracy",
]


class Gaussian(NamedTuple):
    """A Gaussian over test outputs: ``mean`` ``(N_test, O)``; ``covariance`` ``(N_test,
    N_test)`` for traced kernels (shared by every output column), ``(N_test O, N_test O)``
    for full kernels, or ``None`` when ``k_test_test`` was not given."""

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


def _regularize(k, diag_reg, absolute: bool):
    solvers._check_nonneg(diag_reg, "diag_reg")
    n = k.shape[0]
    scale = 1.0 if absolute else jnp.trace(k) / n
    return k + diag_reg * scale * jnp.eye(n, dtype=k.dtype), diag_reg * scale


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
# GP inference
# ---------------------------------------------------------------------------------------------


def gp_inference(k_train_train, y_train, *, diag_reg: float = 0.0,
                 diag_reg_absolute_scale: bool = False):
    """Exact Gaussian-process posteriors from NNGP and NTK kernels.

    Let ``K`` be the NNGP, ``Theta`` the NTK, ``d`` the train and ``t`` the test inputs,
    ``lambda = diag_reg`` (relative to the mean diagonal unless absolute). Then

    - ``'nngp'`` (Bayesian posterior; Lee et al. 2018):
      ``mean = K_td (K_dd + lambda I)^{-1} Y``,
      ``cov = K_tt - K_td (K_dd + lambda I)^{-1} K_dt``;
    - ``'ntk'`` (NTK-GP: the distribution over random initialisations of the linearized
      network trained to ``t = inf`` on MSE; Lee et al. 2019, eq. 16), with
      ``A = Theta_td (Theta_dd + lambda I)^{-1}``:
      ``mean = A Y``, ``cov = K_tt + A K_dd A^T - A K_dt - K_td A^T``.

    Args:
      k_train_train: an ``(N, N)`` or ``(N, N, O, O)`` array (a plain GP with that kernel;
        ``get`` must then be ``None``), or a Kernel-like object / dict with ``nngp`` and
        ``ntk`` entries.
      y_train: ``(N, O)`` (or ``(N,)``) targets.
    Returns:
      ``predict_fn(get=None, k_test_train=None, k_test_test=None)``. ``k_test_train`` is
      ``(N_test, N)`` (or full / Kernel-like); ``k_test_test`` ``(N_test, N_test)``. With an
      array kernel it returns a :class:`Gaussian`; with a Kernel-like one, a dict
      ``{get: Gaussian}`` (``get`` default ``('nngp', 'ntk')``; a string returns one
      :class:`Gaussian`). Without ``k_test_train`` the train-set posterior is returned.
    """
    is_array = hasattr(k_train_train, "ndim")
    y_shape = tuple(y_train.shape)

    def prepare(g):
        kdd, o = _flatten(_get_kernel(k_train_train, g, "k_train_train"), "k_train_train",
                          True)
        check_kernel(kdd, "k_train_train")
        y2 = _targets(y_train, kdd.shape[0], o, "k_train_train")
        kreg, _ = _regularize(kdd, diag_reg, diag_reg_absolute_scale)
        chol = solvers.cholesky_factor(kreg, 0.0, check=False)
        return kdd, o, y2, chol

    cache = {}

    def get_prepared(g):
        if g not in cache:
            cache[g] = prepare(g)
        return cache[g]

    # Validate (and factor) eagerly so bad input fails here, not at the first prediction.
    for g in (("nngp",) if is_array else ("nngp", "ntk")):
        try:
            _get_kernel(k_train_train, g, "k_train_train")
        except ValueError:
            continue
        get_prepared(g)

    def mean_shape(n_test, o):
        if o is None:
            return (n_test,) + y_shape[1:]
        return (n_test, o)

    def one(g, k_test_train, k_test_test):
        kdd, o, y2, chol = get_prepared(g)
        if k_test_train is None:
            ktd = kdd
        else:
            ktd, o2 = _flatten(_get_kernel(k_test_train, g, "k_test_train"), "k_test_train",
                               False)
            check_kernel(ktd, "k_test_train", symmetric=False, n=kdd.shape[0])
        n_test = ktd.shape[0] // (o or 1)
        alpha = solvers.cho_solve(chol, y2)
        mean = (ktd @ alpha).reshape(mean_shape(n_test, o))
        if k_test_test is None:
            return Gaussian(mean, None)
        if g == "nngp":
            ktt, _ = _flatten(_get_kernel(k_test_test, "nngp", "k_test_test"), "k_test_test",
                              True)
            check_kernel(ktt, "k_test_test")
            v = solvers.cho_solve(chol, ktd.T)
            cov = ktt - ktd @ v
        else:
            nngp_dd, _ = _flatten(_get_kernel(k_train_train, "nngp", "k_train_train"),
                                  "k_train_train", True)
            nngp_td = (nngp_dd if k_test_train is None else
                       _flatten(_get_kernel(k_test_train, "nngp", "k_test_train"),
                                "k_test_train", False)[0])
            ktt, _ = _flatten(_get_kernel(k_test_test, "nngp", "k_test_test"), "k_test_test",
                              True)
            check_kernel(ktt, "k_test_test")
            a = solvers.cho_solve(chol, ktd.T).T  # Theta_td Theta_dd^{-1}
            cross = a @ nngp_td.T
            cov = ktt + a @ nngp_dd @ a.T - cross - cross.T
        return Gaussian(mean, 0.5 * (cov + cov.T))

    def predict_fn(get: Union[None, str, Sequence[str]] = None, k_test_train=None,
                   k_test_test=None):
        if is_array:
            if get not in (None, "nngp"):
                raise ValueError("`k_train_train` is a single array: `get` must be None "
                                 f"(plain GP posterior with that kernel), got {get!r}.")
            return one("nngp", k_test_train, k_test_test)
        gets = ("nngp", "ntk") if get is None else get
        if isinstance(gets, str):
            return one(gets, k_test_train, k_test_test)
        for g in gets:
            if g not in ("nngp", "ntk"):
                raise ValueError(f"`get` entries must be 'nngp' or 'ntk', got {g!r}.")
        return {g: one(g, k_test_train, k_test_test) for g in gets}

    return predict_fn


# ---------------------------------------------------------------------------------------------
# Gradient descent on MSE
# ---------------------------------------------------------------------------------------------


def _check_time(t):
    tc = _concrete(t)
    if tc is not None and (np.any(np.isnan(tc)) or np.any(tc < 0)):
        raise ValueError(f"`t` must be >= 0 (or None / inf for t = infinity), got {t}.")


def gradient_descent_mse(k_train_train, y_train, learning_rate: float = 1.0, *,
                         diag_reg: float = 0.0, diag_reg_absolute_scale: bool = False):
    """Closed-form outputs of a linearized network trained by gradient flow on MSE.

    With ``K = k_train_train + lambda I``, ``eta = learning_rate``, ``n = y_train.size`` and
    ``K = V diag(k_i) V^T``:

        f_train(t) = Y + exp(-eta t K / n) (f_train(0) - Y)
        f_test(t)  = f_test(0) + K_td K^{-1} (I - exp(-eta t K / n)) (Y - f_train(0))

    (Lee et al. 2019, eqs. 9-10; neural-tangents' ``gradient_descent_mse``). The matrix
    functions are applied in the eigenbasis: ``K^{-1}(I - e^{-s K})`` uses
    ``(1 - e^{-s k_i}) / k_i``, whose ``k_i -> 0`` limit ``s`` is taken exactly, so a
    rank-deficient kernel gives finite outputs at every finite ``t`` and the pseudo-inverse
    (minimum-norm) solution at ``t = inf``. Negative eigenvalues from round-off are clipped.

    Args:
      k_train_train: ``(N, N)`` or ``(N, N, O, O)``.
      y_train: ``(N, O)`` (or ``(N,)``).
    Returns:
      ``predict_fn(t=None, fx_train_0=0., fx_test_0=None, k_test_train=None)``: ``t`` a
      scalar ``>= 0``, ``None`` or ``inf`` (``t = inf``), or a 1-D array of times (then
      outputs get a leading time axis). Returns ``fx_train_t``, or ``(fx_train_t,
      fx_test_t)`` when ``k_test_train`` (``(N_test, N)`` / ``(N_test, N, O, O)``) is given.
    """
    kdd, o = _flatten(k_train_train, "k_train_train", True)
    check_kernel(kdd, "k_train_train")
    y2 = _targets(y_train, kdd.shape[0], o, "k_train_train")
    lr = _concrete(learning_rate)
    if lr is not None and (not np.isfinite(lr) or lr <= 0):
        raise ValueError(f"`learning_rate` must be finite and > 0, got {learning_rate}.")
    kreg, _ = _regularize(kdd, diag_reg, diag_reg_absolute_scale)
    evals, evecs = jnp.linalg.eigh(kreg)
    ev = _concrete(evals)
    if ev is not None and ev.size and ev[0] < -np.sqrt(np.finfo(ev.dtype).eps) * max(ev[-1], 0):
        raise ValueError(f"`k_train_train` of shape {tuple(kdd.shape)} is not positive "
                         f"semi-definite: smallest eigenvalue {ev[0]:.3g}, largest "
                         f"{ev[-1]:.3g}; gradient flow would diverge along its negative "
                         f"directions.")
    evals = jnp.maximum(evals, 0.0)  # round-off only
    normalization = y_train.size
    n_rows = kdd.shape[0]
    y_shape = tuple(y_train.shape)
    # Eigenvalues below round-off (relative n eps, numpy's lstsq rcond) count as exact zeros:
    # those directions never move, and t = inf inverts only the rest (the pseudo-inverse).
    tiny = n_rows * jnp.finfo(kdd.dtype).eps * jnp.max(jnp.abs(evals))
    pos = evals > tiny
    safe = jnp.where(pos, evals, 1.0)

    def decay(s):  # exp(-s k_i); s >= 0 may be inf (then 0 on the range, 1 on the kernel)
        return jnp.where(pos, jnp.exp(-s * safe), 1.0)

    def inv_growth(s):  # (1 - exp(-s k_i)) / k_i, with the k_i -> 0 limit s (0 at s = inf)
        s_zero = jnp.where(jnp.isinf(s), 0.0, s)
        return jnp.where(pos, -jnp.expm1(-s * safe) / safe, s_zero)

    def in_basis(weights, v):  # V diag(w) V^T v
        return evecs @ (weights[:, None] * (evecs.T @ v))

    def predict_fn(t=None, fx_train_0=0.0, fx_test_0=None, k_test_train=None):
        t_arr = jnp.asarray(jnp.inf if t is None else t, dtype=kdd.dtype)
        _check_time(t_arr)
        if t_arr.ndim > 1:
            raise ValueError(f"`t` must be a scalar or 1-D array of times, got shape "
                             f"{tuple(t_arr.shape)}.")
        f0 = jnp.broadcast_to(jnp.asarray(fx_train_0, kdd.dtype), y_shape).reshape(y2.shape)
        if k_test_train is not None:
            ktd, _ = _flatten(k_test_train, "k_test_train", False)
            check_kernel(ktd, "k_test_train", symmetric=False, n=n_rows)
            n_test = ktd.shape[0] // (o or 1)
            test_shape = (n_test,) + y_shape[1:] if o is None else (n_test, o)
            ft0 = (jnp.zeros(test_shape, kdd.dtype) if fx_test_0 is None else
                   jnp.broadcast_to(jnp.asarray(fx_test_0, kdd.dtype), test_shape))
            ft0 = ft0.reshape(ktd.shape[0], -1)
        elif fx_test_0 is not None:
            raise ValueError("`fx_test_0` was given without `k_test_train`.")

        def at(ti):
            s = learning_rate * ti / normalization
            ftr = y2 + in_basis(decay(s), f0 - y2)
            if k_test_train is None:
                return ftr.reshape(y_shape)
            fte = ft0 + ktd @ in_basis(inv_growth(s), y2 - f0)
            return ftr.reshape(y_shape), fte.reshape(test_shape)

        if t_arr.ndim == 0:
            return at(t_arr)
        return jax.vmap(at)(t_arr)

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
    check_kernel(k, "ntk_train_train")
    if momentum < 0 or momentum >= 1:
        raise ValueError(f"`momentum` must be in [0, 1), got {momentum}.")
    factor = k.shape[0] if y_train_size is None else int(y_train_size)
    if factor <= 0:
        raise ValueError(f"`y_train_size` must be positive, got {y_train_size}.")
    lam_max = float(np.linalg.eigvalsh(np.asarray(k, dtype=np.float64))[-1])
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
