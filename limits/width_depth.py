"""Width and depth limits of residual networks commute (Hayou & Yang 2023).

Residual network with ``L`` blocks and ``1/sqrt(L)`` branches (width ``n``, input dim ``d``):

    Y_0 = W_in a,    Y_l = Y_{l-1} + L^-1/2 W_l phi(Y_{l-1}),    W_in ~ N(0, 1/d), W_l ~ N(0, 1/n).

Width first (``n -> inf`` at fixed ``L``) gives the NNGP recursion
``Q_l = Q_{l-1} + (1/L) F(Q_{l-1})``, ``F(Q)_ab = E[phi(Z_a) phi(Z_b)]``, ``Z ~ N(0, Q)``: an Euler
scheme with step ``1/L`` for the depth ODE

    dQ_t / dt = F(Q_t),    Q_0(a, b) = <a, b> / d,    t = l / L in [0, 1],

which is also the limit of the depth-first (``L -> inf``, then ``n -> inf``) network: the limits
commute.  ReLU: ``F(Q)_ab = sqrt(Q_aa Q_bb) (sqrt(1 - c^2) + (pi - arccos c) c) / (2 pi)`` so
``Q_1(a, a) = Q_0(a, a) e^{1/2}`` and the correlation solves ``dc/dt = (f(c) - c) / 2``.
"""
from __future__ import annotations

import numpy as np

from limits.criticality import _nodes, signal_activation

__all__ = ["gaussian_product_expectation", "residual_covariance_ode",
           "residual_covariance_recursion", "simulate_residual_network"]


def _check_gram(gram, name="gram0"):
    gram = np.asarray(gram, dtype=float)
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1]:
        raise ValueError(f"{name} must be a square (N, N) matrix, got shape {gram.shape}")
    if not np.allclose(gram, gram.T) or np.any(np.diag(gram) <= 0):
        raise ValueError(f"{name} must be symmetric with a positive diagonal")
    return gram


def gaussian_product_expectation(gram, activation="relu", deg: int = 61):
    """``F(Q)_ab = E[phi(Z_a) phi(Z_b)]`` for ``Z ~ N(0, Q)``; ``Q``: ``(N, N)`` -> ``(N, N)``.
    ReLU in closed form (arc-cosine kernel), otherwise 2-D Gauss-Hermite quadrature."""
    act = signal_activation(activation)
    q = np.asarray(gram, dtype=float)
    d = np.sqrt(np.diag(q))
    norm = np.outer(d, d)
    c = np.clip(q / norm, -1.0, 1.0)
    if act.name == "relu":
        return norm * (np.sqrt(1 - c * c) + (np.pi - np.arccos(c)) * c) / (2 * np.pi)
    x, w = _nodes(deg)
    z1, z2 = x[:, None], x[None, :]
    ww = w[:, None] * w[None, :]
    cc = c[..., None, None]
    u1 = d[:, None, None, None] * z1
    u2 = d[None, :, None, None] * (cc * z1 + np.sqrt(1 - cc * cc) * z2)
    return np.sum(act.phi(u1) * act.phi(u2) * ww, axis=(-2, -1))


def residual_covariance_ode(gram0, activation="relu", n_steps: int = 2000, t_end: float = 1.0,
                            return_path: bool = False):
    """Solve ``dQ_t/dt = F(Q_t)`` from ``Q_0 = gram0`` to ``t_end`` by classical RK4 with
    ``n_steps`` steps (error ``O(n_steps^-4)``).  ``gram0``: ``(N, N)``, e.g. ``X X^T / d``.
    Returns ``Q_{t_end}`` ``(N, N)`` (and the path ``(n_steps + 1, N, N)`` if asked)."""
    q = _check_gram(gram0)
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    h = t_end / n_steps
    path = [q]
    for _ in range(n_steps):
        k1 = gaussian_product_expectation(q, activation)
        k2 = gaussian_product_expectation(q + h / 2 * k1, activation)
        k3 = gaussian_product_expectation(q + h / 2 * k2, activation)
        k4 = gaussian_product_expectation(q + h * k3, activation)
        q = q + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        if return_path:
            path.append(q)
    return (q, np.stack(path)) if return_path else q


def residual_covariance_recursion(gram0, depth: int, activation="relu"):
    """Infinite width, ``depth`` blocks: ``Q_l = Q_{l-1} + F(Q_{l-1}) / depth``; returns
    ``Q_depth`` ``(N, N)`` (the NNGP of the finite-depth network)."""
    q = _check_gram(gram0)
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive int, got {depth!r}")
    for _ in range(depth):
        q = q + gaussian_product_expectation(q, activation) / depth
    return q


def simulate_residual_network(x, width: int, depth: int, activation="relu", *,
                              n_samples: int = 8, seed: int = 0, return_input_gram=False):
    """Monte Carlo: ``n_samples`` random networks of ``width`` and ``depth`` on inputs
    ``x`` ``(N, d)``; returns the empirical output covariances ``Y_L Y_L^T / n`` as
    ``(n_samples, N, N)`` (and the empirical ``Y_0 Y_0^T / n`` of each sample, the embedding's
    covariance, if ``return_input_gram``: the depth map can then be compared sample by sample,
    free of the embedding's ``O(n^-1/2)`` fluctuation)."""
    x = np.asarray(x, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (N, d), got {x.shape}")
    for name, v in (("width", width), ("depth", depth), ("n_samples", n_samples)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    act = signal_activation(activation)
    rng = np.random.default_rng(seed)
    n, d = width, x.shape[1]
    out = np.zeros((n_samples, x.shape[0], x.shape[0]))
    grams0 = np.zeros_like(out)
    scale = 1.0 / np.sqrt(depth)
    for s in range(n_samples):
        y = x @ (rng.standard_normal((d, n)) / np.sqrt(d))
        grams0[s] = y @ y.T / n
        for _ in range(depth):
            y = y + scale * act.phi(y) @ (rng.standard_normal((n, n)) / np.sqrt(n))
        out[s] = y @ y.T / n
    return (out, grams0) if return_input_gram else out
