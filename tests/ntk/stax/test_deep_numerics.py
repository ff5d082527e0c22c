"""Numerics of very deep kernels, checked against recursions computed without ``ntk.stax``.

* Self-pairs (an input with itself when ``x2`` is ``None``) have correlation exactly 1: their
  kernel follows the univariate variance map ``q -> W^2 E[phi(sqrt(q) z)^2]`` even where
  correlation 1 is a repelling fixed point of the depth map (slope ``chi > 1``), where any
  rounding of the correlation grows like ``chi^L``. Reference: the variance and NTK recursions
  in float64 numpy, from closed-form Gaussian moments.
* The ``Sin`` dual keeps full relative precision at tiny covariance. Reference: its closed
  form ``a^2 / 2 e^-s (e^x - cos(2c) e^-x)`` evaluated in 60-digit arithmetic (mpmath);
  the closed form itself is checked against adaptive quadrature in ``test_duals.py``.
"""
import math

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest

from ntk import stax
from ntk.stax import duals


# phi(x) = x - C x^3. At variance q (z standard normal, u = sqrt(q) z):
#   E[phi(u)^2]  = q - 6 C q^2 + 15 C^2 q^3        E[phi'(u)^2] = 1 - 6 C q + 27 C^2 q^2
# With W^2 = 1 / (1 - 6 C + 15 C^2), q = 1 is a stable fixed point of the variance map
# (slope W^2 (1 - 12 C + 45 C^2) = 0.43) and correlation 1 a repelling one of the correlation
# map (slope chi = W^2 E[phi'^2] = 1.46): the rounding gap between a diagonal entry of nngp and
# the variance it should equal grows like 1.46^L (~1e16 at L = 100).
C = 0.133
W = 1 / math.sqrt(1 - 6 * C + 15 * C * C)


def _cubic_recursion(q0, depth):
    """Diagonal (nngp, ntk) of Dense(W=1), then depth x (phi, Dense(W)), in numpy float64."""
    q = np.asarray(q0, np.float64)
    ntk = q.copy()
    for _ in range(depth):
        t = q - 6 * C * q**2 + 15 * C * C * q**3
        tdot = 1 - 6 * C * q + 27 * C * C * q**2
        q = W * W * t
        ntk = W * W * ntk * tdot + q
    return q, ntk


def _inputs(n_spatial=0):
    rng = np.random.RandomState(0)
    shape = (3,) + (5,) * n_spatial + (37,)
    x = rng.randn(*shape)
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True)) * rng.uniform(0.8, 1.2, shape[:-1] + (1,))


@pytest.mark.parametrize("depth", [100])
def test_deep_polynomial_diagonal_follows_variance_map(depth):
    x = _inputs()
    net = stax.serial(stax.Dense(1, 1.0),
                      stax.repeat(stax.serial(stax.Polynomial((0.0, 1.0, 0.0, -C)),
                                              stax.Dense(1, W)), depth))
    k = net[2](x, None, ("nngp", "ntk"))
    q, ntk = _cubic_recursion(np.mean(x * x, -1), depth)
    np.testing.assert_allclose(np.diag(k.nngp), q, rtol=1e-10, atol=0)
    np.testing.assert_allclose(np.diag(k.ntk), ntk, rtol=1e-10, atol=0)
    assert np.all(np.isfinite(k.nngp)) and np.all(np.isfinite(k.ntk))


def test_deep_full_spatial_self_pairs_follow_variance_map():
    """1x1 convolutions act on each position alone: the self-pair entries ``[i, i, p, p]`` of
    the full-spatial kernel follow the univariate recursion of ``|x_ip|^2 / C``."""
    x = _inputs(n_spatial=1)
    depth = 100
    net = stax.serial(stax.Conv(1, (1,), W_std=1.0),
                      stax.repeat(stax.serial(stax.Polynomial((0.0, 1.0, 0.0, -C)),
                                              stax.Conv(1, (1,), W_std=W)), depth))
    k = net[2](x, None, "nngp")
    assert k.shape == (3, 3, 5, 5)
    diag = np.einsum("iipp->ip", np.asarray(k))
    q, _ = _cubic_recursion(np.mean(x * x, -1), depth)
    np.testing.assert_allclose(diag, q, rtol=1e-10, atol=0)


def _erf_variance_recursion(q0, depth, w):
    """Erf(1, 1, 0): E[erf(u)^2] = (2 / pi) arcsin(2q / (1 + 2q)) (Williams 1997)."""
    q = np.asarray(q0, np.float64)
    for _ in range(depth):
        q = w * w * (2 / np.pi) * np.arcsin(2 * q / (1 + 2 * q)) + 0.01
    return q


def test_deep_chaotic_erf_diagonal_follows_variance_map():
    """A correlation-based dual in the chaotic phase (W = 4: chi ~ 4.3 at the fixed point)."""
    x = _inputs()
    depth, w = 60, 4.0
    net = stax.serial(stax.Dense(1, 1.0, 0.1),
                      stax.repeat(stax.serial(stax.Erf(), stax.Dense(1, w, 0.1)), depth))
    k = net[2](x, None, "nngp")
    q = _erf_variance_recursion(np.mean(x * x, -1) + 0.01, depth, w)
    np.testing.assert_allclose(np.diag(k), q, rtol=1e-10, atol=0)


def test_off_diagonal_unchanged_at_shallow_depth():
    """``x2=None`` and ``x2=x`` compute the same kernel; at shallow depth (no amplification)
    the off-diagonal entries agree to rounding. On the diagonal the ``x2=x`` path sees a
    correlation 1 - O(eps), which the arc-cosine (ReLU) map turns into O(sqrt(eps))."""
    x = _inputs()
    net = stax.serial(stax.Dense(1, 1.0, 0.1), stax.Polynomial((0.0, 1.0, 0.0, -C)),
                      stax.Dense(1, 1.5, 0.1), stax.Erf(), stax.Dense(1, 1.5, 0.1), stax.Relu(),
                      stax.Dense(1, 1.5))
    same = net[2](x, None, ("nngp", "ntk"))
    given = net[2](x, jnp.array(x), ("nngp", "ntk"))
    off = ~np.eye(3, dtype=bool)
    for a, b in ((same.nngp, given.nngp), (same.ntk, given.ntk)):
        np.testing.assert_allclose(np.asarray(a)[off], np.asarray(b)[off], rtol=1e-14)
        np.testing.assert_allclose(np.diag(a), np.diag(b), rtol=1e-7)


def test_correlation_exactly_one_on_self_pairs_with_sqrt_gradient():
    q = jnp.array([1e-300, 0.3, 7.0, 1e200])  # q * q underflows / overflows at the ends
    rho, norm = jax.jit(duals.correlation)(q, q, q)
    np.testing.assert_array_equal(rho, 1.0)
    np.testing.assert_array_equal(norm, q)
    # derivatives are those of q12 / sqrt(q11 q22): d/dq11 = -1 / (2 q), d/dq12 = 1 / q
    g = jax.jit(jax.grad(lambda v: duals.correlation(v[0], v[1], v[2])[0]))(
        jnp.array([0.3, 0.3, 0.3]))
    np.testing.assert_allclose(g, [1 / 0.3, -1 / 0.6, -1 / 0.6], rtol=1e-14)


# ------------------------------------------------------------------------------------------
# Sin


def _sin_reference(a, b, c, q12, q11, q22):
    """(T, Tdot) from the difference-of-exponentials closed form at 60 digits."""
    with mpmath.workdps(60):
        a, b, c, q12, q11, q22 = map(mpmath.mpf, (a, b, c, q12, q11, q22))
        s = b * b * (q11 + q22) / 2
        x = b * b * q12
        k = mpmath.cos(2 * c)
        t = a * a / 2 * mpmath.exp(-s) * (mpmath.exp(x) - k * mpmath.exp(-x))
        tdot = a * a * b * b / 2 * mpmath.exp(-s) * (mpmath.exp(x) + k * mpmath.exp(-x))
        return float(t), float(tdot)


SIN_PARAMS = [(1.2, 0.8, 0.0), (0.9, 1.1, math.pi / 2), (1.0, 1.3, 0.3), (1.4, 0.7, -1.1)]


@pytest.mark.parametrize("a,b,c", SIN_PARAMS)
def test_sin_dual_relative_precision_at_tiny_covariance(a, b, c):
    dual = jax.jit(duals.sin(a, b, c))
    q11, q22 = 0.7, 1.9
    q12 = np.array([1e-30, -3e-20, 2e-14, 1e-8, 0.4, -0.9])
    t, tdot = dual(jnp.asarray(q12), q11, q22)
    ref = np.array([_sin_reference(a, b, c, q, q11, q22) for q in q12])
    np.testing.assert_allclose(t, ref[:, 0], rtol=1e-13, atol=0)
    np.testing.assert_allclose(tdot, ref[:, 1], rtol=1e-13, atol=0)


@pytest.mark.parametrize("a,b,c", SIN_PARAMS[:2])
def test_sin_dual_tdot_is_derivative_and_finite_at_large_covariance(a, b, c):
    """Price's theorem by autodiff, at tiny covariance too (where the derivative of a
    difference of exponentials cancels), and finite gradients where e^(2x) overflows."""
    dual = duals.sin(a, b, c)
    pts = jnp.array([(0.0, 0.7, 1.9), (1e-20, 0.7, 1.9), (-3e-12, 0.7, 1.9), (-0.5, 0.7, 1.9),
                     (900.0, 900.0, 900.0), (-899.0, 900.0, 900.0)])
    grads = jax.jit(jax.vmap(jax.grad(lambda v: dual(v[0], v[1], v[2], False)[0])))(pts)
    tdot = dual(pts[:, 0], pts[:, 1], pts[:, 2])[1]
    np.testing.assert_allclose(grads[:, 0], tdot, rtol=1e-12, atol=1e-300)
    assert np.all(np.isfinite(grads))


def test_deep_sine_kernel_keeps_precision():
    """Off-diagonal of repeat(Dense, Sin) with correlations decaying ~0.3x per layer: at depth
    40 the covariance is ~1e-21 of the variance; reference recursion at 60 digits."""
    depth, w = 40, math.sqrt(6.0)
    x = _inputs()[:2]
    net = stax.serial(stax.Dense(1, 1.0),
                      stax.repeat(stax.serial(stax.Sin(), stax.Dense(1, w)), depth))
    k = np.asarray(net[2](x, None, "nngp"))
    with mpmath.workdps(60):
        xs = [[mpmath.mpf(float(v)) for v in row] for row in x]
        dot = lambda u, v: mpmath.fsum(p * r for p, r in zip(u, v)) / len(u)  # noqa: E731
        q1, q2, q12 = dot(xs[0], xs[0]), dot(xs[1], xs[1]), dot(xs[0], xs[1])
        for _ in range(depth):
            q1, q2, q12 = (w * w * mpmath.exp(-q1) * mpmath.sinh(q1),
                           w * w * mpmath.exp(-q2) * mpmath.sinh(q2),
                           w * w * mpmath.exp(-(q1 + q2) / 2) * mpmath.sinh(q12))
        ref = np.array([[float(q1), float(q12)], [float(q12), float(q2)]])
    assert abs(ref[0, 1]) < 1e-15 * ref[0, 0]  # the regime the old form lost entirely
    np.testing.assert_allclose(k, ref, rtol=1e-10, atol=0)
