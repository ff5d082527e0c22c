"""Solvers for kernel systems ``(K + lambda I) X = Y``.

Three ways in, for three sizes of problem:

- :func:`cholesky_factor` / :func:`cho_solve` / :func:`cholesky_solve` — dense, exact, with
  *adaptive jitter*: when ``K + lambda I`` is numerically singular (an eNTK of a narrow
  network, an NNGP of duplicated inputs) the smallest diagonal shift ``j`` that makes the
  factorization succeed is found on a geometric ladder ``j = eps * mean(diag K) * 10^i`` and a
  :class:`JitterWarning` says how much was added. A kernel that needs more than
  ``max_relative_jitter * mean(diag K)`` is not positive semi-definite: that is a
  ``ValueError`` naming its smallest eigenvalue, never a silent NaN.
- :func:`conjugate_gradient` — matrix-free CG on a dense matrix or any ``matvec``; each target
  column runs its own CG (its own step sizes), all columns in one ``lax.while_loop``.
- :func:`nystrom_pcg` — CG preconditioned with a randomized column-Nyström approximation
  (Frangella, Tropp & Udell 2023, "Randomized Nystrom Preconditioning"; the large-kernel
  setting of Ma & Belkin, "Toward Large Kernel Models", 2023). With :class:`BlockKernel` it
  works from kernel blocks ``kernel_fn(x_block, x)`` only, so ``K`` (``N^2`` entries) is never
  formed: memory is ``O(N * rank + block_size * N)``.

Every public function validates its inputs when they are concrete arrays (a non-square,
non-symmetric or non-finite kernel, a target with the wrong leading dimension, a negative
ridge) and raises ``ValueError`` naming the argument and the shapes. The iterative solvers
cannot afford an eigendecomposition; CG certifies a kernel that is not positive
semi-definite when it meets negative curvature (``p^T A p < -sqrt(eps) |p| |A p|``) and
warns (:class:`IndefiniteKernelWarning`); the Nystrom preconditioner refuses a landmark
block that is not PSD (``ValueError``). Inside ``jax.jit`` the
concrete checks are skipped (they would need host values) and the adaptive jitter ladder is
replaced by the single requested ``diag_reg``.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jax import lax

from ntk import validation

__all__ = [
    "IndefiniteKernelWarning",
    "JitterWarning",
    "Cholesky",
    "IterativeResult",
    "BlockKernel",
    "check_kernel",
    "check_targets",
    "cholesky_factor",
    "cho_solve",
    "cholesky_solve",
    "conjugate_gradient",
    "nystrom_preconditioner",
    "nystrom_pcg",
]


class IndefiniteKernelWarning(RuntimeWarning):
    """CG met negative curvature: the system matrix is not positive semi-definite, so the
    returned ``x`` is not its solution (CG's steps assume ``p^T A p > 0``)."""


class JitterWarning(UserWarning):
    """A diagonal jitter beyond the requested ``diag_reg`` was needed to factor a kernel."""


class Cholesky(NamedTuple):
    """Lower Cholesky factor ``L`` of ``K + (diag_reg + jitter) I = L L^T``.

    ``factor``: ``(N, N)``; ``diag_reg``: the ridge asked for (absolute); ``jitter``: the extra
    diagonal the adaptive ladder had to add (0 when none was needed).
    """

    factor: jnp.ndarray
    diag_reg: float
    jitter: float


class IterativeResult(NamedTuple):
    """Result of an iterative solve.

    ``x``: solution, shape of the right-hand side; ``iterations``: CG steps taken;
    ``residual``: final relative residual ``|b - A x| / |b|`` per column, ``(C,)``;
    ``converged``: whether every column reached ``tol``.
    """

    x: jnp.ndarray
    iterations: Any
    residual: jnp.ndarray
    converged: Any


# ---------------------------------------------------------------------------------------------
# Validation (host-side, skipped under tracing)
# ---------------------------------------------------------------------------------------------


def _concrete(x) -> Optional[np.ndarray]:
    """``x`` as a numpy array if it has concrete values, ``None`` under ``jit``/``vmap``."""
    try:
        return np.asarray(x)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError,
            jax.errors.TracerBoolConversionError):
        return None


def _tolerance(dtype) -> float:
    # sqrt(machine epsilon): 1.5e-8 in float64, 3.5e-4 in float32 — loose enough for kernels
    # assembled block by block, tight enough to catch a transposed or corrupted matrix.
    return float(np.sqrt(np.finfo(np.dtype(dtype) if np.dtype(dtype).kind == "f"
                                  else np.float64).eps))


def check_kernel(k, name: str = "k", *, symmetric: bool = True, psd: bool = False,
                 n: Optional[int] = None):
    """Validate a kernel matrix; return it unchanged.

    Raises ``TypeError`` if ``k`` is not a numeric array, ``ValueError`` if it is not 2-D and
    square (``(N, N)``, or ``(N, n)`` rows when ``n`` is given), has non-finite entries, is not
    symmetric to ``sqrt(eps)`` relative to ``max |K|`` (when ``symmetric``), or has an
    eigenvalue below ``-sqrt(eps) * lambda_max`` (when ``psd``). Tracers pass unchecked.
    """
    if not hasattr(k, "shape") or not hasattr(k, "dtype"):
        raise TypeError(f"`{name}` must be an array, got {type(k).__name__}.")
    if not (jnp.issubdtype(k.dtype, jnp.floating) or jnp.issubdtype(k.dtype, jnp.integer)):
        raise TypeError(f"`{name}` must be a real floating array, got dtype {k.dtype}.")
    if jnp.issubdtype(k.dtype, jnp.floating) and jnp.dtype(k.dtype).itemsize < 4:
        raise TypeError(f"`{name}` has dtype {k.dtype}: the solvers need float32 or float64 "
                        f"(cast it, e.g. `{name}.astype(jnp.float32)`).")
    if k.ndim != 2:
        raise ValueError(f"`{name}` must be a 2-D kernel matrix, got shape {tuple(k.shape)}.")
    if symmetric and k.shape[0] != k.shape[1]:
        raise ValueError(f"`{name}` must be square (N, N), got shape {tuple(k.shape)}.")
    if n is not None and k.shape[1] != n:
        raise ValueError(f"`{name}` must have {n} columns (one per training point), "
                         f"got shape {tuple(k.shape)}.")
    kc = _concrete(k)
    if kc is None:
        return k
    if not np.all(np.isfinite(kc)):
        bad = int(np.sum(~np.isfinite(kc)))
        raise ValueError(f"`{name}` of shape {kc.shape} has {bad} non-finite (NaN/inf) "
                         f"entries.")
    tol = _tolerance(kc.dtype)
    scale = float(np.max(np.abs(kc))) if kc.size else 0.0
    if symmetric:
        asym = float(np.max(np.abs(kc - kc.T))) if kc.size else 0.0
        if asym > tol * max(scale, np.finfo(np.float64).tiny):
            raise ValueError(f"`{name}` of shape {kc.shape} is not symmetric: "
                             f"max |K - K^T| = {asym:.3g} vs max |K| = {scale:.3g}.")
    if psd and kc.size:
        evals = np.linalg.eigvalsh(kc.astype(np.float64))
        if evals[0] < -tol * max(evals[-1], 0.0) - np.finfo(np.float64).tiny:
            raise ValueError(f"`{name}` of shape {kc.shape} is not positive semi-definite: "
                             f"smallest eigenvalue {evals[0]:.3g}, largest {evals[-1]:.3g}.")
    return k


def check_targets(y, n: int, name: str = "y_train", kernel_name: str = "k_train_train"):
    """Validate targets ``y`` of shape ``(N,)`` or ``(N, ...)`` against a kernel with ``N`` rows."""
    if not hasattr(y, "shape"):
        raise TypeError(f"`{name}` must be an array, got {type(y).__name__}.")
    if y.ndim == 0 or y.shape[0] != n:
        raise ValueError(f"`{name}` must have leading dimension {n} to match `{kernel_name}`, "
                         f"got shape {tuple(y.shape)}.")
    yc = _concrete(y)
    if yc is not None and not np.all(np.isfinite(yc)):
        raise ValueError(f"`{name}` of shape {yc.shape} has non-finite entries.")
    return y


def _check_nonneg(value, name: str):
    vc = _concrete(value)
    if vc is not None:
        if not np.all(np.isfinite(vc)) or np.any(vc < 0):
            raise ValueError(f"`{name}` must be finite and >= 0, got {value}.")


# ---------------------------------------------------------------------------------------------
# Dense: Cholesky with adaptive jitter
# ---------------------------------------------------------------------------------------------


def cholesky_factor(k, diag_reg: float = 0.0, *, max_relative_jitter: float = 1e-4,
                    check: bool = True) -> Cholesky:
    """Cholesky factor of ``K + diag_reg I``, adding the least jitter that makes it succeed.

    Ladder: ``j_i = eps(dtype) * s * 10^i`` with ``s = mean(diag K)``, tried while
    ``j_i <= max_relative_jitter * s``. Any ``j > 0`` triggers a :class:`JitterWarning` that
    states it. If the ladder is exhausted the kernel is not PSD (up to round-off) and a
    ``ValueError`` names its smallest eigenvalue.

    Args:
      k: ``(N, N)`` symmetric PSD kernel.
      diag_reg: absolute ridge ``lambda >= 0``.
    Returns:
      :class:`Cholesky` with the ``(N, N)`` lower factor.
    """
    if check:
        check_kernel(k, "k")
    _check_nonneg(diag_reg, "diag_reg")
    n = k.shape[0]
    eye = jnp.eye(n, dtype=k.dtype)
    kc = _concrete(k)
    if kc is None:  # traced: no host-side ladder
        return Cholesky(jnp.linalg.cholesky(k + diag_reg * eye), diag_reg, 0.0)
    factor = jnp.linalg.cholesky(k + diag_reg * eye)
    if bool(jnp.all(jnp.isfinite(factor))):
        return Cholesky(factor, float(diag_reg), 0.0)
    scale = float(np.mean(np.abs(np.diag(kc)))) or 1.0
    jitter = float(np.finfo(np.dtype(k.dtype)).eps) * scale
    while jitter <= max_relative_jitter * scale:
        factor = jnp.linalg.cholesky(k + (diag_reg + jitter) * eye)
        if bool(jnp.all(jnp.isfinite(factor))):
            warnings.warn(
                f"Kernel of shape {kc.shape} was numerically singular: added jitter "
                f"{jitter:.3g} (= {jitter / scale:.1e} x mean diagonal) to diag_reg="
                f"{float(diag_reg):.3g} to factor it.", JitterWarning, stacklevel=2)
            return Cholesky(factor, float(diag_reg), jitter)
        jitter *= 10.0
    evals = np.linalg.eigvalsh(kc.astype(np.float64))
    raise ValueError(
        f"Kernel of shape {kc.shape} is not positive semi-definite: smallest eigenvalue "
        f"{evals[0]:.3g} (largest {evals[-1]:.3g}); Cholesky failed even with jitter "
        f"{max_relative_jitter:.0e} x mean diagonal. Pass a larger `diag_reg` or check the kernel.")


def cho_solve(chol: Cholesky, b):
    """Solve ``(K + (diag_reg + jitter) I) X = B`` from a :class:`Cholesky`; ``B``: ``(N, ...)``."""
    n = chol.factor.shape[0]
    check_targets(b, n, "b", "k")
    b2 = b.reshape(n, -1)
    x = jax.scipy.linalg.cho_solve((chol.factor, True), b2)
    return x.reshape(b.shape)


def cholesky_solve(k, b, diag_reg: float = 0.0, **kwargs):
    """``(K + diag_reg I)^{-1} B`` by adaptive-jitter Cholesky.

    ``K``: ``(N, N)``; ``B``: ``(N, ...)``; keyword arguments go to :func:`cholesky_factor`.
    """
    check_kernel(k, "k")
    check_targets(b, k.shape[0], "b", "k")
    return cho_solve(cholesky_factor(k, diag_reg, check=False, **kwargs), b)


# ---------------------------------------------------------------------------------------------
# Matrix-free operators
# ---------------------------------------------------------------------------------------------


class BlockKernel:
    """A kernel matrix ``K_ij = kernel_fn(x_i, x_j)`` known only through row blocks.

    ``kernel_fn(x1, x2) -> (N1, N2)`` must be a JAX function. ``matvec(V)`` computes
    ``K V`` as ``[kernel_fn(x_b, x) V for row blocks b]`` under one ``lax.map``, so the peak
    extra memory is one ``(block_size, N)`` block, never ``N^2``. ``columns(idx)`` gives
    ``K[:, idx]`` (``(N, m)``) the same way; ``diagonal()`` uses ``kernel_fn`` on single rows.
    """

    def __init__(self, kernel_fn: Callable, x, block_size: int = 1024):
        if not callable(kernel_fn):
            raise TypeError(f"`kernel_fn` must be callable, got {type(kernel_fn).__name__}.")
        if block_size <= 0:
            raise ValueError(f"`block_size` must be positive, got {block_size}.")
        self.kernel_fn = kernel_fn
        self.x = x
        self.n = int(x.shape[0])
        self.block_size = int(min(block_size, self.n))
        nb = -(-self.n // self.block_size)
        pad = nb * self.block_size - self.n
        xp = jnp.concatenate([x, jnp.repeat(x[:1], pad, axis=0)], axis=0) if pad else x
        self._x_blocks = xp.reshape((nb, self.block_size) + tuple(x.shape[1:]))
        self.shape = (self.n, self.n)
        probe = jax.eval_shape(kernel_fn, x[:1], x[:1])
        self.dtype = probe.dtype
        self._matvec = jax.jit(self._matvec_impl)
        self._columns = jax.jit(self._columns_impl)

    def _matvec_impl(self, x_blocks, x, v):
        def block(xb):
            return self.kernel_fn(xb, x) @ v
        out = lax.map(block, x_blocks)
        return out.reshape((-1,) + v.shape[1:])[: self.n]

    def _columns_impl(self, x_blocks, xm):
        out = lax.map(lambda xb: self.kernel_fn(xb, xm), x_blocks)
        return out.reshape(-1, xm.shape[0])[: self.n]

    def matvec(self, v):
        """``K @ v`` for ``v`` of shape ``(N,)`` or ``(N, C)``."""
        return self._matvec(self._x_blocks, self.x, v)

    def columns(self, idx):
        """``K[:, idx]``, shape ``(N, len(idx))``."""
        return self._columns(self._x_blocks, self.x[jnp.asarray(idx)])

    def diagonal(self):
        """``diag K``, shape ``(N,)``."""
        return jax.vmap(lambda xi: self.kernel_fn(xi[None], xi[None])[0, 0])(self.x)


def _as_operator(a):
    """(matvec, n, dtype, columns_fn, diagonal_fn) for a dense matrix or :class:`BlockKernel`."""
    if isinstance(a, BlockKernel):
        return a.matvec, a.n, a.dtype, a.columns, a.diagonal
    if callable(a):
        raise TypeError("Pass a dense (N, N) array, a `BlockKernel`, or (for "
                        "`conjugate_gradient` only) a matvec with `n=`.")
    check_kernel(a, "k")
    a = jnp.asarray(a)
    return ((lambda v: a @ v), a.shape[0], a.dtype, (lambda idx: a[:, jnp.asarray(idx)]),
            (lambda: jnp.diagonal(a)))


# ---------------------------------------------------------------------------------------------
# Conjugate gradient (column-wise, optionally preconditioned)
# ---------------------------------------------------------------------------------------------


def _pcg(matvec, b2, diag_reg, precond, x0, tol, maxiter):
    """Preconditioned CG on ``(A + diag_reg I) X = B`` with independent columns; B: (N, C).

    Returns ``(x, iterations, residual, curvature)``: ``curvature`` is, per column, the
    smallest ``p^T A p / (|p| |A p|)`` over the search directions (in ``[-1, 1]``; negative
    beyond round-off only when ``A + diag_reg I`` is not PSD)."""
    def op(v):
        return matvec(v) + diag_reg * v

    bnorm = jnp.linalg.norm(b2, axis=0)
    bnorm = jnp.where(bnorm > 0, bnorm, 1.0)
    r0 = b2 - op(x0)
    z0 = precond(r0)
    rz0 = jnp.sum(r0 * z0, axis=0)

    def cond(state):
        i, _, r, _, _, _, _ = state
        res = jnp.linalg.norm(r, axis=0) / bnorm
        return jnp.logical_and(i < maxiter, jnp.any(res > tol))

    def body(state):
        i, x, r, z, p, rz, curvature = state
        ap = op(p)
        pap = jnp.sum(p * ap, axis=0)
        active = jnp.linalg.norm(r, axis=0) / bnorm > tol
        norms = jnp.linalg.norm(p, axis=0) * jnp.linalg.norm(ap, axis=0)
        curvature = jnp.minimum(curvature, jnp.where(active & (norms > 0),
                                                     pap / jnp.where(norms > 0, norms, 1.0),
                                                     1.0))
        alpha = jnp.where(active & (pap > 0), rz / jnp.where(pap > 0, pap, 1.0), 0.0)
        x = x + alpha[None] * p  # one step per column of B
        r = r - alpha[None] * ap
        z = precond(r)
        rz_new = jnp.sum(r * z, axis=0)
        beta = jnp.where(active & (rz != 0), rz_new / jnp.where(rz != 0, rz, 1.0), 0.0)
        p = z + beta[None] * p
        return i + 1, x, r, z, p, rz_new, curvature

    state = (jnp.asarray(0), x0, r0, z0, z0, rz0, jnp.ones_like(rz0))
    i, x, r, _, _, _, curvature = lax.while_loop(cond, body, state)
    # Report the true residual, not the recursively updated one.
    res = jnp.linalg.norm(b2 - op(x), axis=0) / bnorm
    return x, i, res, curvature


def _warn_if_indefinite(curvature, dtype, name: str) -> None:
    """Warn when CG's curvature certifies that the kernel is not PSD (skipped when traced)."""
    cc = _concrete(curvature)
    if cc is None or not cc.size:
        return
    worst = float(np.min(cc))
    if worst < -_tolerance(dtype):
        warnings.warn(f"`{name}` (+ diag_reg I) is not positive semi-definite: conjugate "
                      f"gradient met a direction p with p^T A p = {worst:.3g} |p| |A p|; its "
                      f"result is not a solution. Check the kernel (a kernel function "
                      f"warns when its rounding may make it indefinite) or use a "
                      f"solver for indefinite systems.", IndefiniteKernelWarning,
                      stacklevel=3)


def conjugate_gradient(a, b, *, diag_reg: float = 0.0, tol: float = 1e-8,
                       maxiter: Optional[int] = None, x0=None,
                       preconditioner: Optional[Callable] = None,
                       n: Optional[int] = None) -> IterativeResult:
    """Solve ``(A + diag_reg I) X = B`` by (preconditioned) conjugate gradient.

    Each column of ``B`` runs its own CG recursion (step ``alpha_c = r_c.z_c / p_c.A p_c``),
    stopped when every column has relative residual ``|b_c - A x_c| / |b_c| <= tol`` or after
    ``maxiter`` (default ``10 N``) steps. Converges in at most ``N`` exact-arithmetic steps;
    the error falls like ``((sqrt(kappa) - 1)/(sqrt(kappa) + 1))^i`` in the ``A``-norm.

    Args:
      a: ``(N, N)`` symmetric PSD array, a :class:`BlockKernel`, or a function ``V -> A V``
        on ``(N, C)`` arrays (then pass ``n=N``).
      b: ``(N,)`` or ``(N, C)``.
      preconditioner: ``R -> M^{-1} R`` on ``(N, C)`` arrays, ``M`` symmetric positive definite.
    Returns:
      :class:`IterativeResult`.
    """
    validation.finite_number(tol, "tol", minimum=0)
    validation.optional_positive_int(maxiter, "maxiter")
    if callable(a) and not isinstance(a, BlockKernel):
        if n is None:
            raise TypeError("`a` is a function: pass `n=` (the number of rows) too.")
        matvec, size = a, int(n)
    else:
        matvec, size, _, _, _ = _as_operator(a)
    check_targets(b, size, "b", "a")
    _check_nonneg(diag_reg, "diag_reg")
    if tol <= 0:
        raise ValueError(f"`tol` must be positive, got {tol}.")
    b2 = jnp.asarray(b).reshape(size, -1)
    x0 = jnp.zeros_like(b2) if x0 is None else jnp.asarray(x0).reshape(b2.shape)
    maxiter = 10 * size if maxiter is None else int(maxiter)
    precond = (lambda r: r) if preconditioner is None else preconditioner
    x, iters, res, curvature = _pcg(matvec, b2, diag_reg, precond, x0, tol, maxiter)
    _warn_if_indefinite(curvature, b2.dtype, "a")
    conv = jnp.all(res <= 10 * tol)
    return IterativeResult(x.reshape(jnp.shape(b)), iters, res, conv)


# ---------------------------------------------------------------------------------------------
# Nystrom-preconditioned CG
# ---------------------------------------------------------------------------------------------


def nystrom_preconditioner(k_nm, landmark_idx, diag_reg: float):
    """Inverse Nystrom preconditioner ``R -> P^{-1} R`` from ``m`` kernel columns.

    With ``K_nm = K[:, idx]`` (``(N, m)``), ``K_mm = K[idx, idx]`` and a stabilising shift
    ``nu``: ``C = chol(K_mm + nu I)``, ``B = K_nm C^{-T} = U Sigma V^T`` (thin SVD),
    ``Lambda = max(Sigma^2 - nu, 0)``, so ``K_hat = U Lambda U^T ~ K_nm K_mm^+ K_mn``. Then
    (Frangella, Tropp & Udell 2023, eq. 5.3)

        P^{-1} = (lambda_m + mu) U (Lambda + mu I)^{-1} U^T + (I - U U^T),  mu = diag_reg,

    which maps the top-``m`` eigen-directions of ``K + mu I`` to about unit scale.
    Memory ``O(N m)``.
    """
    k_nm = jnp.asarray(k_nm)
    m = k_nm.shape[1]
    k_mm = k_nm[jnp.asarray(landmark_idx)]
    k_mm = 0.5 * (k_mm + k_mm.T)
    eps = jnp.finfo(k_nm.dtype).eps
    nu = eps * m * jnp.maximum(jnp.trace(k_mm) / m, 1.0) * 10
    c = jnp.linalg.cholesky(k_mm + nu * jnp.eye(m, dtype=k_nm.dtype))
    cc = _concrete(c)
    if cc is not None and not np.all(np.isfinite(cc)):
        evals = np.linalg.eigvalsh(np.asarray(k_mm, np.float64))
        raise ValueError(f"the kernel is not positive semi-definite: its {m} x {m} landmark "
                         f"block has smallest eigenvalue {evals[0]:.3g} (largest "
                         f"{evals[-1]:.3g}), so no Nystrom preconditioner exists. Check the "
                         f"kernel or use a solver for indefinite systems.")
    bmat = jax.scipy.linalg.solve_triangular(c, k_nm.T, lower=True).T  # K_nm C^{-T}
    u, s, _ = jnp.linalg.svd(bmat, full_matrices=False)
    lam = jnp.maximum(s**2 - nu, 0.0)
    mu = jnp.maximum(jnp.asarray(diag_reg, k_nm.dtype), eps * jnp.max(lam))
    lam_min = lam[-1]

    def apply(r):
        utr = u.T @ r
        return u @ (((lam_min + mu) / (lam + mu))[:, None] * utr) + (r - u @ utr)

    return apply


def nystrom_pcg(a, b, *, diag_reg: float, rank: int = 256, key=None, tol: float = 1e-8,
                maxiter: Optional[int] = None) -> IterativeResult:
    """Solve ``(K + diag_reg I) X = B`` by Nystrom-preconditioned CG, matrix-free.

    ``rank`` landmark columns are drawn uniformly without replacement (``key``), giving the
    preconditioner of :func:`nystrom_preconditioner`; CG then runs on the operator. With a
    :class:`BlockKernel` the only kernel evaluations are ``K[:, landmarks]`` once and one
    ``K V`` (row block by row block) per iteration. When the spectrum of ``K`` decays fast
    (NTK / NNGP of real data) the preconditioned condition number is about
    ``(lambda_rank + mu) / mu`` instead of ``(lambda_1 + mu) / mu`` — tens of iterations
    instead of thousands.

    Args:
      a: ``(N, N)`` array or :class:`BlockKernel`.
      b: ``(N,)`` or ``(N, C)``.
      diag_reg: absolute ridge ``mu > 0`` (with ``mu = 0`` the problem may be singular).
    """
    matvec, n, dtype, columns, _ = _as_operator(a)
    check_targets(b, n, "b", "a")
    _check_nonneg(diag_reg, "diag_reg")
    if rank <= 0:
        raise ValueError(f"`rank` must be positive, got {rank}.")
    rank = min(int(rank), n)
    key = jax.random.PRNGKey(0) if key is None else key
    idx = jnp.sort(jax.random.choice(key, n, (rank,), replace=False))
    k_nm = columns(idx)
    precond = nystrom_preconditioner(k_nm, idx, diag_reg)
    b2 = jnp.asarray(b).reshape(n, -1)
    maxiter = max(10 * rank, 1000) if maxiter is None else int(maxiter)
    x, iters, res, curvature = _pcg(matvec, b2, diag_reg, precond, jnp.zeros_like(b2), tol,
                                    maxiter)
    _warn_if_indefinite(curvature, dtype, "a")
    return IterativeResult(x.reshape(jnp.shape(b)), iters, res, jnp.all(res <= 10 * tol))
