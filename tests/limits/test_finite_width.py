"""Finite-width recursions (four-point vertex, NTK variance) and their Monte Carlo, against
routes that do not share their derivation.

* Gaussian moments: adaptive quadrature on the half-lines (scale-invariant closed forms),
  Stein's lemma and finite differences in ``K`` (the ``d<f>/dK`` identity).
* The scale-invariant closed forms: the recursions iterated symbolically in sympy (with the
  Gaussian moments written through ``A_2, A_4``) and summed; the all-orders ReLU kurtosis
  against the product law expanded in ``1 / n``.
* Mean kernels: ``K^l`` and ``Theta^l`` against :mod:`ntk.stax`'s infinite-width NNGP / NTK.
* The explicit NTK formula of the Monte Carlo against finite differences of the same
  network; the O(n L) sampler against dense networks in law; and
  the Monte Carlo against the leading-order recursions at small ``L / n``.
* tanh's ``K* = 0`` asymptotics (derived by a small-``K`` expansion) at large depth.
"""
import math

import jax.numpy as jnp
import numpy as np
import pytest
import sympy
from scipy import integrate

from limits import finite_width as fw
from limits.criticality import signal_activation
from ntk import stax


@pytest.mark.parametrize("a_plus, a_minus", [(1.0, 0.0), (1.3, -0.4), (1.0, 1.0)])
def test_scale_invariant_moments_against_adaptive_quadrature(a_plus, a_minus):
    act = fw.ScaleInvariant(a_plus, a_minus)
    K = 1.7

    def avg(f, k=K):
        dens = lambda z: math.exp(-z * z / (2 * k)) / math.sqrt(2 * math.pi * k)
        return (integrate.quad(lambda z: f(z, a_plus) * dens(z), 0, np.inf)[0]
                + integrate.quad(lambda z: f(z, a_minus) * dens(z), -np.inf, 0)[0])

    s2 = lambda z, a: (a * z) ** 2
    d2 = lambda z, a: a ** 2
    got = fw.gaussian_moments(act, K)
    want = {"s2": avg(s2), "s4": avg(lambda z, a: (a * z) ** 4), "d2": avg(d2),
            "d4": avg(lambda z, a: a ** 4), "sd": avg(lambda z, a: (a * z) ** 2 * a ** 2)}
    h = 1e-4
    want["g1"] = (avg(s2, K + h) - avg(s2, K - h)) / (2 * h)
    want["g2"] = (avg(d2, K + h) - avg(d2, K - h)) / (2 * h)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=1e-6, abs=1e-7), k


@pytest.mark.parametrize("name", ["tanh", "erf"])
def test_smooth_moments_against_stein_and_finite_differences(name):
    """``d<s^2>/dK = <(s^2)''> / 2 = <s'^2 + s s''>`` (Stein twice) and central differences."""
    act = signal_activation(name)
    K, h = 0.8, 1e-4
    m = fw.gaussian_moments(name, K)
    dens = lambda z, k: math.exp(-z * z / (2 * k)) / math.sqrt(2 * math.pi * k)
    avg = lambda f, k=K: integrate.quad(lambda z: f(z) * dens(z, k), -np.inf, np.inf,
                                        epsabs=1e-13)[0]
    stein = avg(lambda z: act.dphi(z) ** 2 + act.phi(z) * act.d2phi(z))
    assert m["g1"] == pytest.approx(stein, rel=1e-7)
    s2 = lambda z: act.phi(z) ** 2
    d2 = lambda z: act.dphi(z) ** 2
    assert m["g1"] == pytest.approx((avg(s2, K + h) - avg(s2, K - h)) / (2 * h), rel=1e-6)
    assert m["g2"] == pytest.approx((avg(d2, K + h) - avg(d2, K - h)) / (2 * h), rel=1e-6)
    # 101-node Gauss-Hermite against adaptive quadrature: ~1e-8 for these smooth integrands
    assert m["s4"] == pytest.approx(avg(lambda z: act.phi(z) ** 4), rel=1e-7)
    assert m["sd"] == pytest.approx(avg(lambda z: s2(z) * d2(z)), rel=1e-7)


def _symbolic_scale_invariant(depth):
    """The recursions iterated in sympy at criticality (C_W = 1/A_2, C_b = 0, K = 1,
    lambda_W = C_W) with the Gaussian moments of the scale-invariant class."""
    A2, A4 = sympy.symbols("A2 A4", positive=True)
    cw = 1 / A2
    s2, s4, d2, d4, sd, g1, g2 = A2, 3 * A4, A2, A4, A4, A2, 0
    T = sympy.Integer(1)          # K^1 = C_W q0 = 1, Theta^1 = lambda_W q0 = 1
    V = D = A = B = sympy.Integer(0)
    out = [(V, A + 2 * B, T)]
    for _ in range(depth - 1):
        chi_par, chi_perp = cw * g1, cw * d2
        b_g = cw * g1 + cw * T * g2
        var_s2, cov, var_d2 = s4 - s2 ** 2, sd - s2 * d2, d4 - d2 ** 2
        V, D, A, B = (cw ** 2 * var_s2 + chi_par ** 2 * V,
                      cw * (cw * var_s2 + cw * T * cov) + chi_par * (b_g * V + chi_perp * D),
                      cw ** 2 * var_s2 + 2 * cw * cw * T * cov + (cw * T) ** 2 * var_d2
                      + b_g ** 2 * V + 2 * b_g * chi_perp * D + chi_perp ** 2 * A,
                      cw ** 2 * d4 * T ** 2 + chi_perp ** 2 * B)
        T = cw * s2 + chi_perp * T
        out.append((V, A + 2 * B, T))
    return A2, A4, out


def test_scale_invariant_closed_forms_from_the_symbolic_recursion():
    A2, A4, rows = _symbolic_scale_invariant(5)
    v, w = 3 * A4 / A2 ** 2 - 1, A4 / A2 ** 2 - 1
    j, L = sympy.symbols("j L", integer=True, positive=True)
    closed = sympy.summation((v + 4 * w + 2) * j ** 2 + w * j, (j, 1, L - 1)) / L ** 2
    for l, (V, ntk_var, T) in enumerate(rows, start=1):
        assert sympy.cancel(T - l) == 0                   # Theta^l = l lambda_W A_2 K*
        assert sympy.cancel(V - v * (l - 1)) == 0         # V^l / K*^2 = v (l - 1)
        assert sympy.cancel(ntk_var / T ** 2 - closed.subs(L, l)) == 0
    assert sympy.simplify(sympy.limit(closed / L, L, sympy.oo) - (v + 4 * w + 2) / 3) == 0
    # ReLU: A2 = A4 = 1/2 gives v = 5, slope 11/3
    relu = {A2: sympy.Rational(1, 2), A4: sympy.Rational(1, 2)}
    assert sympy.simplify(((v + 4 * w + 2) / 3).subs(relu)) == sympy.Rational(11, 3)


@pytest.mark.parametrize("a_plus, a_minus", [(1.0, 0.0), (1.0, 0.5), (1.0, 1.0)])
def test_numeric_recursion_matches_the_closed_forms(a_plus, a_minus):
    act = fw.ScaleInvariant(a_plus, a_minus)
    cw = act.critical_sigma_w2
    for lam in (cw, 0.7):                                  # the NTK variance is lambda-free
        r = fw.finite_width_recursion(act, 12, cw, q0=1.3, lambda_w=lam)
        np.testing.assert_allclose(r["kurtosis_coefficient"],
                                   3 * fw.scale_invariant_four_point(12, a_plus, a_minus),
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(r["ntk_variance_coefficient"],
                                   fw.scale_invariant_ntk_variance(12, a_plus, a_minus),
                                   rtol=1e-12, atol=1e-12)
    name = {(1.0, 0.0): "relu", (1.0, 1.0): "linear"}.get((a_plus, a_minus))
    if name:
        big = fw.scale_invariant_ntk_variance(4000, a_plus, a_minus)[-1] / 4000
        assert big == pytest.approx(fw.ASYMPTOTIC_SLOPES[name]["ntk_variance"], rel=2e-3)
        assert 3 * act.v == fw.ASYMPTOTIC_SLOPES[name]["kurtosis"]


def test_relu_all_orders_kurtosis_expands_to_the_four_point_vertex():
    """``3 ((1 + 5/n)^(L-1) - 1)`` against its series in ``1/n`` (sympy): the first term is
    ``3 V / (n K^2) = 15 (L - 1) / n``, the second ``75 (L-1)(L-2) / (2 n^2)``."""
    n, L = sympy.symbols("n L", positive=True)
    eps = sympy.symbols("epsilon", positive=True)
    series = sympy.series(3 * ((1 + 5 * eps) ** (L - 1) - 1), eps, 0, 3).removeO()
    assert sympy.simplify(series.coeff(eps, 1) - 15 * (L - 1)) == 0
    assert sympy.simplify(series.coeff(eps, 2) - sympy.Rational(75, 2) * (L - 1) * (L - 2)) == 0
    depth, width = np.array([2, 5, 9]), 40_000.0
    exact = fw.scale_invariant_kurtosis_exact(depth, width)
    lo = 3 * fw.scale_invariant_four_point(9)[depth - 1] / width
    np.testing.assert_allclose(exact, lo * (1 + 2.5 * (depth - 2) / width), rtol=1e-6)


@pytest.mark.slow
def test_mean_kernels_match_stax():
    """``K^l`` and ``Theta^l`` against the :mod:`ntk.stax` NNGP / NTK of a tanh network with
    biases (``Tanh(deg=256)``; both quadratures' errors are below 1e-9 here); ReLU's are
    ``K^l = K^1`` and ``Theta^l = l Theta^1`` (checked in sympy above)."""
    sigma_w2, sigma_b2, depth = 1.6, 0.2, 4
    x = np.array([[0.9, -0.4, 1.2]])
    std = dict(W_std=math.sqrt(sigma_w2), b_std=math.sqrt(sigma_b2))
    layers = []
    for _ in range(depth - 1):
        layers += [stax.Dense(8, **std), stax.Tanh(deg=256)]
    _, _, kernel_fn = stax.serial(*layers, stax.Dense(1, **std))
    k = kernel_fn(jnp.asarray(x), get=("nngp", "ntk"))
    r = fw.finite_width_recursion("tanh", depth, sigma_w2, sigma_b2, q0=float(np.mean(x ** 2)))
    assert float(k.nngp[0, 0]) == pytest.approx(r["K"][-1], rel=1e-9)
    assert float(k.ntk[0, 0]) == pytest.approx(r["ntk"][-1], rel=1e-9)


def test_tanh_k_star_zero_asymptotics():
    """Small-``K`` expansion: ``K^l ~ 1/(2l)``, ``3 V / K^2 ~ 2 l``, ``Theta -> 1/2``,
    ``n Var(Theta) / Theta^2 ~ 2 l / 3``; corrections ``O(log l / l)``."""
    depth = 3000
    r = fw.finite_width_recursion("tanh", depth, 1.0)
    assert 2 * depth * r["K"][-1] == pytest.approx(1.0, abs=0.01)
    assert r["ntk"][-1] == pytest.approx(0.5, abs=0.01)
    slopes = fw.ASYMPTOTIC_SLOPES["tanh"]
    assert r["kurtosis_coefficient"][-1] / depth == pytest.approx(slopes["kurtosis"], rel=0.01)
    assert r["ntk_variance_coefficient"][-1] / depth == pytest.approx(slopes["ntk_variance"],
                                                                      rel=0.01)
    assert r["B"][-1] / depth == pytest.approx(1 / 12, rel=0.01)


@pytest.mark.parametrize("name, sigma_b2", [("relu", 0.0), ("tanh", 0.3)])
def test_network_statistics_ntk_matches_finite_differences(name, sigma_b2):
    """The explicit backward-pass NTK equals ``sum_params (df/dparam)^2`` with every
    derivative taken by central differences of the forward pass (NTK parametrisation, so
    ``lambda = C``; the biases' derivatives carry their ``sqrt(C_b)``)."""
    sigma_w2 = {"relu": 2.0, "tanh": 1.0}[name]
    act = fw.finite_width_activation(name)
    dims = (4, 6, 5, 7, 1)
    rng = np.random.default_rng(3)
    x = rng.standard_normal(dims[0])
    params = [rng.standard_normal((dims[i + 1], dims[i] + 1)) for i in range(len(dims) - 1)]

    def f(ps):
        h = x
        for i, p in enumerate(ps):
            z = math.sqrt(sigma_w2 / h.size) * p[:, :-1] @ h + math.sqrt(sigma_b2) * p[:, -1]
            h = act.phi(z) if i < len(ps) - 1 else z
        return h[0]

    theta, step = 0.0, 1e-6
    for p in params:
        for idx in np.ndindex(*p.shape):
            if idx[1] == p.shape[1] - 1 and not sigma_b2:
                continue                                   # no biases in this network
            old = p[idx]
            p[idx] = old + step
            up = f(params)
            p[idx] = old - step
            down = f(params)
            p[idx] = old
            theta += ((up - down) / (2 * step)) ** 2
    got = fw.network_statistics([p[None, :, :-1] for p in params], x, name, sigma_w2, sigma_b2,
                                biases=[p[None, :, -1] for p in params] if sigma_b2 else None)
    assert got["ntk"][0] == pytest.approx(theta, rel=1e-7)
    assert got["output"][0] == pytest.approx(f(params), rel=1e-12)


def _z(a, b):
    (ra, sa), (rb, sb) = fw.relative_variance(a), fw.relative_variance(b)
    return abs(ra - rb) / math.hypot(sa, sb)


@pytest.mark.parametrize("name, sigma_w2", [("relu", 2.0), ("tanh", 1.0)])
def test_rotated_sampler_has_the_law_of_dense_networks(name, sigma_w2):
    """Means and relative variances of ``G`` and the NTK from the O(n L) sampler agree with
    dense networks' within 4 standard errors (two independent samples)."""
    args = (name, 16, 4, 2500, sigma_w2)
    dense = fw.sample_single_input(*args, sigma_b2=0.1, method="dense", seed=1)
    rot = fw.sample_single_input(*args, sigma_b2=0.1, method="rotated", seed=2)
    for key in ("G", "ntk"):
        a, b = dense[key], rot[key]
        se = math.hypot(a.std() / math.sqrt(a.size), b.std() / math.sqrt(b.size))
        assert abs(a.mean() - b.mean()) < 4 * se, key
        assert _z(a, b) < 4, key
    # the output given the last hidden layer is N(0, G): E z^2 = E G
    z = rot["output"]
    assert abs(np.mean(z ** 2) - rot["G"].mean()) < 4 * np.std(z ** 2) / math.sqrt(z.size)


@pytest.mark.parametrize("name, sigma_w2, width, depth", [("relu", 2.0, 256, 4),
                                                          ("tanh", 1.0, 128, 3)])
def test_monte_carlo_against_the_leading_order(name, sigma_w2, width, depth):
    """At small ``L / n`` the excess kurtosis of the output preactivation (``3 Var(G) /
    E[G]^2``) and the NTK's relative variance match the ``1 / n`` recursions: tolerance four
    standard errors plus a next-order allowance ``3 L / n`` of the prediction; ReLU's kurtosis
    also matches its all-orders law within four standard errors."""
    s = fw.sample_single_input(name, width, depth, 5000, sigma_w2, q0=1 / sigma_w2, seed=7)
    r = fw.finite_width_recursion(name, depth, sigma_w2, q0=1 / sigma_w2)
    allowance = 3 * depth / width
    kurt, kurt_se = (3 * v for v in fw.relative_variance(s["G"]))
    lo = r["kurtosis_coefficient"][-1] / width
    assert abs(kurt - lo) <= 4 * kurt_se + allowance * lo
    rv, rv_se = fw.relative_variance(s["ntk"])
    lo = r["ntk_variance_coefficient"][-1] / width
    assert abs(rv - lo) <= 4 * rv_se + allowance * lo
    assert abs(s["ntk"].mean() / r["ntk"][-1] - 1) < allowance
    if name == "relu":
        assert abs(kurt - fw.scale_invariant_kurtosis_exact(depth, width)) < 4 * kurt_se


def test_relative_variance_of_a_known_law():
    """Exponential samples: ``Var / mean^2 = 1``; the delta-method error is the spread of the
    estimate over repetitions."""
    rng = np.random.default_rng(0)
    reps = [fw.relative_variance(rng.exponential(2.0, 4000)) for _ in range(60)]
    est = np.array([r for r, _ in reps])
    ses = np.array([s for _, s in reps])
    assert abs(est.mean() - 1) < 4 * est.std() / math.sqrt(len(est))
    assert ses.mean() == pytest.approx(est.std(ddof=1), rel=0.3)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="activation"):
        fw.finite_width_recursion("gelu", 3, 1.0)
    with pytest.raises(ValueError, match="depth"):
        fw.finite_width_recursion("relu", 0, 2.0)
    with pytest.raises(ValueError, match="sigma_b2"):
        fw.finite_width_recursion("tanh", 3, 1.0, -0.1)
    with pytest.raises(ValueError, match="method"):
        fw.sample_single_input("relu", 8, 3, 10, 2.0, method="sparse")
    with pytest.raises(ValueError, match="n_samples"):
        fw.sample_single_input("relu", 8, 3, 1, 2.0)
    with pytest.raises(ValueError, match=r"weights\[1\]"):
        fw.network_statistics([np.ones((2, 4, 3)), np.ones((2, 1, 5))], np.ones(3), "relu", 2.0)
    with pytest.raises(ValueError, match="a_plus"):
        fw.ScaleInvariant(float("nan"), 0.0)
    with pytest.raises(ValueError, match="samples"):
        fw.relative_variance(np.array([1.0]))
