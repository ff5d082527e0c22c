"""Closed-form dual activations checked by things that do not share their derivation.

* adaptive Gauss-Kronrod quadrature (scipy) of the bivariate Gaussian integral, split at the
  kinks, in float64: T and Tdot to 1e-10;
* Price's theorem, ``Tdot = dT/dq12``, by autodiff;
* sympy: moments from the bivariate moment generating function (Monomial, Exp) and the
  symbolic derivative of the GELU map;
* Gauss-Hermite (Tanh, ElementwiseNumerical): convergence in ``deg`` and agreement with
  adaptive quadrature.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.special

from ntk.stax import duals

# (name, dual, phi, dphi) with numpy scalar functions for the quadrature
ERF = scipy.special.erf


def _phi_abrelu(a, b):
    return (lambda x: a * min(x, 0.0) + b * max(x, 0.0),
            lambda x: a if x < 0 else b)


def _rect(n):
    return (lambda x: x**n if x >= 0 else 0.0,
            lambda x: (n * x ** (n - 1) if x > 0 else 0.0) if n else 0.0)


def _norm_cdf(x):
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


CASES = {
    "relu": (duals.abrelu(0.0, 1.0), *_phi_abrelu(0.0, 1.0)),
    "leaky_relu": (duals.abrelu(0.1, 1.0), *_phi_abrelu(0.1, 1.0)),
    "abrelu": (duals.abrelu(-0.4, 1.3), *_phi_abrelu(-0.4, 1.3)),
    "abs": (duals.abrelu(-1.0, 1.0), *_phi_abrelu(-1.0, 1.0)),
    "erf": (duals.erf(1.3, 0.7, 0.2), lambda x: 1.3 * ERF(0.7 * x) + 0.2,
            lambda x: 1.3 * 0.7 * 2 / math.sqrt(math.pi) * math.exp(-(0.7 * x) ** 2)),
    "gelu": (duals.gelu(), lambda x: x * _norm_cdf(x),
             lambda x: _norm_cdf(x) + x * math.exp(-x * x / 2) / math.sqrt(2 * math.pi)),
    "sin": (duals.sin(1.2, 0.8, 0.3), lambda x: 1.2 * math.sin(0.8 * x + 0.3),
            lambda x: 1.2 * 0.8 * math.cos(0.8 * x + 0.3)),
    "cos": (duals.sin(0.9, 1.1, -0.2 + math.pi / 2), lambda x: 0.9 * math.cos(1.1 * x - 0.2),
            lambda x: -0.9 * 1.1 * math.sin(1.1 * x - 0.2)),
    "rbf": (duals.rbf(0.3), lambda x: math.sqrt(2) * math.sin(math.sqrt(0.6) * x + math.pi / 4),
            lambda x: math.sqrt(2) * math.sqrt(0.6) * math.cos(math.sqrt(0.6) * x + math.pi / 4)),
    "exp": (duals.exp(0.7, 0.4), lambda x: 0.7 * math.exp(0.4 * x),
            lambda x: 0.28 * math.exp(0.4 * x)),
    "gaussian": (duals.gaussian(1.1, -0.6), lambda x: 1.1 * math.exp(-0.6 * x * x),
                 lambda x: -1.32 * x * math.exp(-0.6 * x * x)),
    "sign": (duals.sign(), lambda x: float(np.sign(x)), lambda x: 0.0),
    "monomial0": (duals.monomial(0), lambda x: 1.0, lambda x: 0.0),
    "monomial1": (duals.monomial(1), lambda x: x, lambda x: 1.0),
    "monomial3": (duals.monomial(3), lambda x: x**3, lambda x: 3 * x * x),
    "monomial4": (duals.monomial(4), lambda x: x**4, lambda x: 4 * x**3),
    "monomial7": (duals.monomial(7), lambda x: x**7, lambda x: 7 * x**6),
    "rect0": (duals.rectified_monomial(0), *_rect(0)),
    "rect1": (duals.rectified_monomial(1), *_rect(1)),
    "rect2": (duals.rectified_monomial(2), *_rect(2)),
    "rect3": (duals.rectified_monomial(3), *_rect(3)),
    "rect4": (duals.rectified_monomial(4), *_rect(4)),
}

# (q11, q22, q12): moderate, anti-correlated, nearly collinear, unequal scales
POINTS = [(1.0, 1.0, 0.3), (0.7, 1.9, -0.8), (1.3, 1.3, 1.3 * 0.999), (0.2, 2.5, 0.1)]


def gaussian_expectation(f, g, q11, q22, q12):
    """E[f(u) g(v)] by nested adaptive quadrature, split where u = 0 and v = 0."""
    s1, s2 = math.sqrt(q11), math.sqrt(q22)
    rho = q12 / (s1 * s2)
    comp = math.sqrt(max(1 - rho * rho, 0.0))
    opts = dict(epsabs=1e-14, epsrel=1e-13, limit=200)

    def inner(z1):
        fu = f(s1 * z1)
        if fu == 0.0:
            return 0.0
        if comp == 0.0:
            return fu * g(s2 * rho * z1)
        dens = lambda z2: math.exp(-z2 * z2 / 2) / math.sqrt(2 * math.pi)
        h = lambda z2: g(s2 * (rho * z1 + comp * z2)) * dens(z2)
        kink = -rho * z1 / comp
        # the standard normal has mass < 1e-32 beyond |z| = 12: integrate on [-12, 12]
        edges = [-12.0] + ([kink] if -12.0 < kink < 12.0 else []) + [12.0]
        return fu * sum(scipy.integrate.quad(h, a, b, **opts)[0]
                        for a, b in zip(edges, edges[1:]))

    outer = lambda z1: inner(z1) * math.exp(-z1 * z1 / 2) / math.sqrt(2 * math.pi)
    return (scipy.integrate.quad(outer, -12.0, 0.0, **opts)[0]
            + scipy.integrate.quad(outer, 0.0, 12.0, **opts)[0])


def _dual_at(dual, q11, q22, q12):
    t, tdot = dual(jnp.float64(q12), jnp.float64(q11), jnp.float64(q22))
    return float(t), float(tdot)


@pytest.mark.parametrize("point", POINTS, ids=[f"q{p}" for p in POINTS])
@pytest.mark.parametrize("name", sorted(CASES))
def test_closed_form_matches_adaptive_quadrature(name, point):
    dual, phi, dphi = CASES[name]
    q11, q22, q12 = point
    t, tdot = _dual_at(dual, q11, q22, q12)
    t_ref = gaussian_expectation(phi, phi, q11, q22, q12)
    tdot_ref = gaussian_expectation(dphi, dphi, q11, q22, q12)
    scale = max(1.0, abs(t_ref))
    assert abs(t - t_ref) < 1e-10 * scale, (t, t_ref)
    assert abs(tdot - tdot_ref) < 1e-10 * max(1.0, abs(tdot_ref)), (tdot, tdot_ref)


@pytest.mark.parametrize("name", sorted(CASES))
def test_price_theorem_tdot_is_derivative_of_t(name):
    """``d/dq12 E[phi(u) phi(v)] = E[phi'(u) phi'(v)]`` (Price 1958), by autodiff."""
    dual = CASES[name][0]
    if name in ("sign", "rect0"):
        pytest.skip("a.e.-derivative convention: the jump's delta is dropped (Tdot = 0)")
    for q11, q22, q12 in POINTS[:2] + POINTS[3:]:
        grad = jax.grad(lambda c: dual(c, jnp.float64(q11), jnp.float64(q22))[0])(
            jnp.float64(q12))
        _, tdot = _dual_at(dual, q11, q22, q12)
        np.testing.assert_allclose(float(grad), tdot, rtol=1e-10, atol=1e-12)


def test_sympy_monomial_and_exp_moments():
    """E[u^n v^n] and E[a^2 exp(b u + b v)] from the bivariate moment generating function."""
    import sympy as sp

    s, t, q11, q22, q12 = sp.symbols("s t q11 q22 q12")
    mgf = sp.exp((q11 * s**2 + 2 * q12 * s * t + q22 * t**2) / 2)
    vals = {q11: sp.Rational(7, 10), q22: sp.Rational(19, 10), q12: sp.Rational(-3, 5)}
    for n in range(0, 6):
        moment = sp.diff(mgf, s, n, t, n).subs({s: 0, t: 0})
        expected = float(moment.subs(vals))
        got, _ = _dual_at(duals.monomial(n), 0.7, 1.9, -0.6)
        assert abs(got - expected) < 1e-11 * max(1, abs(expected)), (n, got, expected)
    a, b = 0.7, 0.4
    expected = float((a**2 * mgf.subs({s: b, t: b})).subs(vals))
    got, _ = _dual_at(duals.exp(a, b), 0.7, 1.9, -0.6)
    assert abs(got - expected) < 1e-12 * expected


def test_sympy_gelu_tdot_is_symbolic_derivative():
    import sympy as sp

    q11, q22, q12 = sp.symbols("q11 q22 q12", positive=True)
    big_a = (1 + q11) * (1 + q22)
    d = sp.sqrt(big_a - q12**2)
    t = (q12 / 4 + q12 * sp.asin(q12 / sp.sqrt(big_a)) / (2 * sp.pi)
         + (q12**2 + q11 * q22 * d**2) / (2 * sp.pi * big_a * d))
    dt = sp.diff(t, q12)
    for p in POINTS:
        vals = {q11: p[0], q22: p[1], q12: p[2]}
        got_t, got_dt = _dual_at(duals.gelu(), *p)
        assert abs(got_t - float(t.subs(vals))) < 1e-12
        assert abs(got_dt - float(dt.subs(vals))) < 1e-12


@pytest.mark.parametrize("name", sorted(CASES))
def test_stable_at_extreme_correlations_and_zero_variance(name):
    dual = CASES[name][0]
    q = jnp.asarray([1.0, 1.0, 1.0, 0.0, 0.0, 1e-300, 4.0])
    r = jnp.asarray([1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 4.0])
    c = jnp.asarray([1.0 + 1e-12, -1.0 - 1e-12, 1.0 - 1e-16, 0.0, 0.0, 0.0, -4.0])
    t, tdot = dual(c, q, r)
    assert np.all(np.isfinite(np.asarray(t))) and np.all(np.isfinite(np.asarray(tdot)))
    # |rho| > 1 from round-off is clipped: the value equals the one at rho = +-1
    t1, _ = dual(jnp.float64(1.0), jnp.float64(1.0), jnp.float64(1.0))
    np.testing.assert_allclose(float(t[0]), float(t1), rtol=1e-12)
    # gradients stay finite at rho = +-1 and zero variance
    g = jax.grad(lambda c: jnp.sum(dual(c, q, r)[0] + dual(c, q, r)[1]))(c)
    assert np.all(np.isfinite(np.asarray(g)))


def test_gauss_hermite_tanh_converges_in_deg_and_matches_adaptive_quadrature():
    q11, q22, q12 = 1.5, 0.8, 0.6
    errors = []
    ref_t = gaussian_expectation(math.tanh, math.tanh, q11, q22, q12)
    dtanh = lambda x: 1 - math.tanh(x) ** 2
    ref_d = gaussian_expectation(dtanh, dtanh, q11, q22, q12)
    for deg in (8, 16, 32, 64, 128):
        dual = duals.gauss_hermite(jnp.tanh, deg, lambda x: 1 - jnp.tanh(x) ** 2)
        t, tdot = _dual_at(dual, q11, q22, q12)
        errors.append(max(abs(t - ref_t), abs(tdot - ref_d)))
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-10, errors


def test_gauss_hermite_is_exact_for_polynomials():
    """A deg-point rule integrates x^k y^k exactly for 2k < 2 deg: compare with Monomial."""
    for n in (1, 2, 3, 5):
        exact = duals.monomial(n)
        quad = duals.gauss_hermite(lambda x: x**n, deg=n + 1)
        for p in POINTS:
            np.testing.assert_allclose(_dual_at(quad, *p), _dual_at(exact, *p), rtol=1e-11,
                                       atol=1e-12)


def test_gauss_hermite_default_derivative_is_autodiff():
    fn = lambda x: jnp.sin(x) * jnp.exp(-0.1 * x * x)
    a = duals.gauss_hermite(fn, 30)
    b = duals.gauss_hermite(fn, 30, jnp.vectorize(jax.grad(fn)))
    np.testing.assert_allclose(_dual_at(a, 1.0, 1.2, 0.4), _dual_at(b, 1.0, 1.2, 0.4),
                               rtol=1e-13)


def test_hermite_rule_rejects_bad_degree():
    with pytest.raises(ValueError, match="deg"):
        duals.hermite_rule(0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_angle_matches_arctan2_to_a_few_ulp(dtype):
    """``duals.angle`` (polynomial atan) against float64 ``np.arctan2`` over many scales."""
    rng = np.random.RandomState(0)
    n = 20000
    scale = rng.choice([1e-6, 1e-2, 1.0, 1e3], n)
    y = np.abs(rng.randn(n)) * scale
    x = rng.randn(n) * scale
    # the octant edges: axes, diagonals and the range-reduction point tan(pi / 8)
    y = np.concatenate([y, [0.0, 0.0, 1.0, 1.0, 1.0, math.tan(math.pi / 8), 1.0]])
    x = np.concatenate([x, [1.0, -1.0, 0.0, 1.0, -1.0, 1.0, math.tan(math.pi / 8)]])
    y, x = y.astype(dtype), x.astype(dtype)
    got = np.asarray(duals.angle(jnp.asarray(y), jnp.asarray(x)))
    assert got.dtype == dtype
    ref = np.arctan2(y.astype(np.float64), x.astype(np.float64))
    rel = np.abs(got - ref) / np.maximum(ref, np.finfo(dtype).tiny)
    assert np.max(rel) < 4 * np.finfo(dtype).eps


def test_angle_origin_and_exact_derivative():
    assert float(duals.angle(jnp.float64(0.0), jnp.float64(0.0))) == pytest.approx(math.pi / 2)
    y, x = jnp.float64(0.7), jnp.float64(-0.3)
    dy, dx = jax.grad(duals.angle, argnums=(0, 1))(y, x)
    r2 = 0.7**2 + 0.3**2
    assert float(dy) == pytest.approx(-0.3 / r2, rel=1e-14)
    assert float(dx) == pytest.approx(-0.7 / r2, rel=1e-14)
    g0 = jax.grad(duals.angle, argnums=(0, 1))(jnp.float64(0.0), jnp.float64(0.0))
    assert all(float(v) == 0.0 for v in g0)


@pytest.mark.parametrize("a, b", [(0.0, 1.0), (0.1, 1.0), (-1.0, 1.0), (0.7, -0.3)])
def test_abrelu_variance_map_is_the_dual_on_the_diagonal_and_the_second_moment(a, b):
    """The ReLU family's shortcut for an input with itself (used for the kernels' variances
    and self-pairs): bitwise the general dual at ``q12 = q11 = q22``, with its derivative,
    and ``E[phi(z)^2]`` for ``z ~ N(0, q)`` by quadrature; the same for ``Tdot``."""
    dual = duals.abrelu(a, b)
    q = jnp.array([0.0, 1e-300, 1e-8, 0.37, 1.0, 4.5e3, 1e250])
    np.testing.assert_array_equal(dual.variance_map(q), dual(q, q, q, False)[0])
    # Tdot at q12 = q11 = q22: bitwise the dual's, and E[phi'(z)^2] = (a^2 + b^2) / 2 for q > 0
    np.testing.assert_array_equal(dual.variance_dot(q), dual(q, q, q, True)[1])
    assert float(dual.variance_dot(jnp.float64(0.37))) == pytest.approx((a * a + b * b) / 2,
                                                                        rel=1e-15)
    for q0 in (0.37, 2.0):
        along = jax.grad(lambda t: dual(t, t, t, False)[0])(q0)
        assert jax.grad(dual.variance_map)(q0) == along
        phi, _ = _phi_abrelu(a, b)
        second, _ = scipy.integrate.quad(
            lambda z: phi(z) ** 2 * math.exp(-z * z / (2 * q0)) / math.sqrt(2 * math.pi * q0),
            -np.inf, np.inf, points=None, epsabs=1e-13, epsrel=1e-12)
        assert float(dual.variance_map(q0)) == pytest.approx(second, rel=1e-9)
