"""Kernel diagnostics: alignment, label-gradient alignment, CKA, kernel distance, spectrum,
effective rank.

All functions take kernels ``(N, N)`` or full kernels ``(N, N, O, O)`` (flattened to
``(N O, N O)``), validate them (square, symmetric, finite) and are pure ``jnp`` otherwise.
Centering uses ``H = I - 11^T / n``.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ntk.solvers import _concrete, check_kernel

__all__ = ["center", "kernel_alignment", "label_gradient_alignment", "cka", "kernel_distance",
           "spectrum", "effective_rank"]


def _as_matrix(k, name: str):
    if not hasattr(k, "ndim"):
        raise TypeError(f"`{name}` must be an array, got {type(k).__name__}.")
    if k.ndim == 4:
        if k.shape[0] != k.shape[1] or k.shape[2] != k.shape[3]:
            raise ValueError(f"`{name}` must be (N, N) or (N, N, O, O), got {tuple(k.shape)}.")
        n, _, o, _ = k.shape
        k = jnp.transpose(k, (0, 2, 1, 3)).reshape(n * o, n * o)
    check_kernel(k, name)
    return jnp.asarray(k)


def center(k):
    """Doubly centered kernel ``H K H``, ``H = I - 11^T/n``; ``(n, n) -> (n, n)``."""
    k = _as_matrix(k, "k")
    return k - k.mean(0, keepdims=True) - k.mean(1, keepdims=True) + k.mean()


def _frobenius_cosine(a, b):
    na = jnp.linalg.norm(a)
    nb = jnp.linalg.norm(b)
    an, bn = _concrete(na), _concrete(nb)
    if an is not None and (an == 0 or bn == 0):
        raise ValueError("Alignment is undefined for a zero (or, when centered, constant) "
                         f"kernel: |A|_F = {float(an):.3g}, |B|_F = {float(bn):.3g}.")
    return jnp.sum(a * b) / (na * nb)


def kernel_alignment(k, y, *, centered: bool = True):
    """Kernel-target alignment ``A(K, Y) = <K_c, (YY^T)_c>_F / (|K_c|_F |(YY^T)_c|_F)``.

    Centered as in Cortes, Mohri & Rostamizadeh 2012 (``K_c = H K H``); uncentered
    (Cristianini et al. 2002) with ``centered=False``. ``k``: ``(N, N)``; ``y``: targets
    ``(N,)`` or ``(N, C)`` (e.g. one-hot). Returns a scalar in ``[-1, 1]`` (``[0, 1]`` for
    PSD ``K``).
    """
    k = _as_matrix(k, "k")
    y = jnp.asarray(y)
    if y.ndim == 0 or y.shape[0] != k.shape[0]:
        raise ValueError(f"`y` must have leading dimension {k.shape[0]} to match `k`, got "
                         f"shape {tuple(y.shape)}.")
    y = y.reshape(y.shape[0], -1)
    yy = y @ y.T
    if centered:
        return _frobenius_cosine(center(k), center(yy))
    return _frobenius_cosine(k, yy)


def label_gradient_alignment(k, labels):
    """Label-gradient alignment (LGA) of a kernel with class labels.

    ``LGA = <K - mean(K), Y - mean(Y)>_F / (|K - mean(K)|_F |Y - mean(Y)|_F)`` with
    ``Y_ij = +1`` if ``labels_i == labels_j`` else ``-1`` and ``mean`` the mean of all entries
    (a scalar shift, not :func:`center`'s double centering). ``k``: ``(N, N)`` (e.g. a trace
    eNTK), ``labels``: ``(N,)`` integers. Returns a scalar in ``[-1, 1]``; invariant under
    ``K -> a K + b`` for ``a > 0``.

    Mok, Na, Kim, Han & Yoon (2022), "Demystifying the Neural Tangent Kernel from a Practical
    Perspective: Can it be trusted for Neural Architecture Search without training?",
    CVPR 2022, arXiv:2203.14577.
    """
    k = _as_matrix(k, "k")
    labels = jnp.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != k.shape[0]:
        raise ValueError(f"`labels` must have shape ({k.shape[0]},) to match `k`, got "
                         f"{tuple(labels.shape)}.")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"`labels` must be integers, got {labels.dtype}.")
    y = jnp.where(labels[:, None] == labels[None, :], 1.0, -1.0).astype(k.dtype)
    return _frobenius_cosine(k - k.mean(), y - y.mean())


def cka(k1, k2):
    """Centered kernel alignment of two kernels (Kornblith et al. 2019):
    ``CKA = <H K1 H, H K2 H>_F / (|H K1 H|_F |H K2 H|_F)``. Linear CKA of features ``X, Z``
    is ``cka(X X^T, Z Z^T)``. ``k1, k2``: ``(N, N)`` (same ``N``)."""
    k1 = _as_matrix(k1, "k1")
    k2 = _as_matrix(k2, "k2")
    if k1.shape != k2.shape:
        raise ValueError(f"`k1` and `k2` must have the same shape, got {tuple(k1.shape)} and "
                         f"{tuple(k2.shape)}.")
    return _frobenius_cosine(center(k1), center(k2))


def kernel_distance(k0, kt):
    """Kernel distance ``1 - <K0, Kt>_F / (|K0|_F |Kt|_F)`` (Fort et al. 2020): 0 when the
    kernels are proportional, up to 1 (2 for kernels of opposite sign). ``(N, N)`` each."""
    k0 = _as_matrix(k0, "k0")
    kt = _as_matrix(kt, "kt")
    if k0.shape != kt.shape:
        raise ValueError(f"`k0` and `kt` must have the same shape, got {tuple(k0.shape)} and "
                         f"{tuple(kt.shape)}.")
    return 1.0 - _frobenius_cosine(k0, kt)


def spectrum(k, *, normalize: bool = False):
    """Eigenvalues of a symmetric kernel in descending order, ``(N,)``; divided by their
    sum (the trace) when ``normalize``."""
    k = _as_matrix(k, "k")
    evals = jnp.linalg.eigvalsh(0.5 * (k + k.T))[::-1]
    if normalize:
        evals = evals / jnp.sum(evals)
    return evals


def effective_rank(k_or_eigenvalues, *, kind: str = "entropy"):
    """Effective rank of a PSD kernel (or of its eigenvalues ``(N,)``).

    - ``'entropy'`` (Roy & Vetterli 2007): ``exp(H(p))``, ``p_i = lambda_i / sum lambda``,
      ``H(p) = -sum p_i log p_i`` — equals ``r`` for ``r`` equal nonzero eigenvalues.
    - ``'participation'``: ``(sum lambda)^2 / sum lambda^2`` — also ``r`` in that case.
    Negative eigenvalues from round-off (``> -sqrt(eps) lambda_max``) are clipped to 0;
    larger ones raise ``ValueError`` (the matrix is not PSD).
    """
    x = k_or_eigenvalues
    if not hasattr(x, "ndim"):
        raise TypeError(f"`k_or_eigenvalues` must be an array, got {type(x).__name__}.")
    evals = spectrum(x) if x.ndim != 1 else jnp.asarray(x)
    ec = _concrete(evals)
    if ec is not None:
        if not np.all(np.isfinite(ec)):
            raise ValueError("Eigenvalues must be finite.")
        top = float(np.max(ec)) if ec.size else 0.0
        if top <= 0:
            raise ValueError(f"Effective rank needs a nonzero PSD spectrum; largest eigenvalue "
                             f"is {top:.3g}.")
        tol = float(np.sqrt(np.finfo(ec.dtype).eps))
        if np.min(ec) < -tol * top:
            raise ValueError(f"Kernel is not PSD: eigenvalue {float(np.min(ec)):.3g} vs "
                             f"largest {top:.3g}.")
    evals = jnp.maximum(evals, 0.0)
    if kind == "entropy":
        p = evals / jnp.sum(evals)
        plogp = jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)
        return jnp.exp(-jnp.sum(plogp))
    if kind == "participation":
        return jnp.sum(evals) ** 2 / jnp.sum(evals**2)
    raise ValueError(f"`kind` must be 'entropy' or 'participation', got {kind!r}.")
