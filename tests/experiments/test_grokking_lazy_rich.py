"""Kumar et al. 2023 committee machine: exact identities and the study's trends."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp

import ntk
from experiments import grokking_lazy_rich as g
from experiments.records import jsonable
from experiments.runner import check_claims, run_study


def _gaussian_moment(power, var):
    """E[z^power] for z ~ N(0, var), exact (sympy Rational var)."""
    if power % 2:
        return 0
    return var ** (power // 2) * sp.factorial2(power - 1)


def test_test_loss_decomposition_is_exact():
    """Symbolic expectation over x ~ N(0, I/D) of (g - y)^2, monomial by monomial (Isserlis
    is never used), equals the closed form with rational inputs, exactly."""
    D, alpha, eps = 3, sp.Rational(3, 2), sp.Rational(1, 4)
    rng = np.random.default_rng(0)
    rat = lambda a: sp.Rational(int(a), 7)
    beta = sp.Matrix([rat(v) for v in rng.integers(-9, 9, D)])
    dwbar = sp.Matrix([rat(v) for v in rng.integers(-9, 9, D)])
    A = sp.Matrix(D, D, [rat(v) for v in rng.integers(-9, 9, D * D)])
    dM = (A + A.T) / 2
    xs = sp.symbols(f"x0:{D}")
    x = sp.Matrix(xs)
    gx = alpha * (dwbar.T * x)[0] + alpha * eps / 2 * (x.T * dM * x)[0]
    y = (beta.T * x)[0] ** 2 / 2
    poly = sp.Poly(sp.expand((gx - y) ** 2), *xs)
    var = sp.Rational(1, D)
    expectation = sum(coef * sp.prod([_gaussian_moment(p, var) for p in powers])
                      for powers, coef in poly.terms())
    # closed form, evaluated in exact rationals through the same formula as the code
    bb = beta * beta.T
    closed = (sp.Rational(1, 4) * ((beta.T * beta)[0] / D - alpha * eps * dM.trace() / D) ** 2
              + sum(v ** 2 for v in (alpha * eps * dM - bb)) / (2 * D ** 2)
              + alpha ** 2 * (dwbar.T * dwbar)[0] / D)
    assert sp.simplify(expectation - closed) == 0
    # and the code computes that closed form
    f = lambda m: jnp.asarray(np.array(m, dtype=float))
    dec = g.test_loss_decomposition(f(dwbar).ravel(), f(dM), f(beta).ravel(), float(alpha),
                                    float(eps))
    assert float(dec["total"]) == pytest.approx(float(closed), rel=1e-12)


def test_decomposition_matches_monte_carlo_of_a_trained_like_network():
    key = jax.random.PRNGKey(1)
    D, N, alpha, eps = 10, 40, 0.7, 0.3
    k1, k2, k3, k4 = jax.random.split(key, 4)
    w0, w = jax.random.normal(k1, (N, D)), jax.random.normal(k2, (N, D)) * 1.3
    beta = jax.random.normal(k3, (D,))
    x = jax.random.normal(k4, (150_000, D)) / np.sqrt(D)
    gx = g.committee_output(w, x, alpha, eps) - g.committee_output(w0, x, alpha, eps)
    mc = float(jnp.mean((gx - g.target(beta, x)) ** 2))
    (wb, M), (wb0, M0) = g.sufficient_statistics(w), g.sufficient_statistics(w0)
    exact = float(g.test_loss_decomposition(wb - wb0, M - M0, beta, alpha, eps)["total"])
    assert mc == pytest.approx(exact, rel=0.03)


def test_output_equals_its_sufficient_statistics_form():
    w = jax.random.normal(jax.random.PRNGKey(2), (30, 6))
    x = jax.random.normal(jax.random.PRNGKey(3), (11, 6))
    wbar, M = g.sufficient_statistics(w)
    np.testing.assert_allclose(g.committee_output(w, x, 1.7, 0.4),
                               g.output_from_statistics(wbar, M, x, 1.7, 0.4), rtol=1e-12)


def test_entk_closed_form_matches_autodiff_ntk():
    """(N / alpha^2) x eNTK of f (ntk.empirical_ntk_fn, autodiff) = the closed-form k."""
    N, D, alpha, eps = 25, 5, 2.0, 0.3
    w = jax.random.normal(jax.random.PRNGKey(4), (N, D))
    x1 = jax.random.normal(jax.random.PRNGKey(5), (7, D))
    x2 = jax.random.normal(jax.random.PRNGKey(6), (4, D))
    apply_fn = lambda params, x: g.committee_output(params, x, alpha, eps)[:, None]
    theta = ntk.empirical_ntk_fn(apply_fn, trace_axes=(-1,))(x1, x2, w)
    np.testing.assert_allclose(N / alpha ** 2 * theta, g.entk(w, x1, x2, eps), rtol=1e-10)


def test_entk_converges_to_infinite_width_kernel():
    """Monte Carlo over neurons: error of k_N vs x.x' + eps^2 (x.x')^2 falls like N^-1/2."""
    D, eps = 6, 0.5
    x = jax.random.normal(jax.random.PRNGKey(7), (8, D)) / np.sqrt(D)
    limit = g.infinite_width_ntk(x, x, eps)
    errs = []
    widths = [100, 1600, 25600]
    for N in widths:
        e = [float(jnp.linalg.norm(g.entk(jax.random.normal(jax.random.PRNGKey(s), (N, D)),
                                          x, x, eps) - limit)) for s in range(8)]
        errs.append(np.mean(e))
    slope = np.polyfit(np.log(widths), np.log(errs), 1)[0]
    assert -0.65 < slope < -0.35


def test_linearized_prediction_equals_explicit_gd_iteration():
    rng = np.random.default_rng(0)
    P, Q, eta0, T = 12, 5, 0.8, 37
    F = rng.normal(size=(P + Q, 6))
    K = F @ F.T                       # rank 6 < P: exercises the zero-eigenvalue branch
    k_tr, k_te, y = K[:P, :P], K[P:, :P], rng.normal(size=P)
    c = 2 * eta0 / P / np.linalg.eigvalsh(k_tr).max()   # a stable step for this K
    eta_eff = c * P / 2
    g_tr, g_te = np.zeros(P), np.zeros(Q)
    for _ in range(T):
        r = g_tr - y
        g_tr, g_te = g_tr - c * k_tr @ r, g_te - c * k_te @ r
    np.testing.assert_allclose(g.linearized_gd_prediction(k_tr, k_te, y, eta_eff, T), g_te,
                               rtol=1e-9, atol=1e-12)


def test_quick_study_trends(tmp_path, tiny_grokking):
    """Small alpha moves the weights and the NTK more, and leaves the initial kernel; the
    figures redraw from the results' JSON round trip, the claims re-check from it."""
    res = run_study("grokking_lazy_rich", overrides=tiny_grokking, out=tmp_path,
                    progress=False)
    m = res["metrics"]
    small, big = 0, 1   # alphas = (0.5, 32)
    assert m["final_relative_weight_change"][small] > 10 * m["final_relative_weight_change"][big]
    assert m["net_vs_linearized_rel_dist"][big] < 0.1 < m["net_vs_linearized_rel_dist"][small]
    assert m["final_ntk_target_alignment"][small] > m["final_ntk_target_alignment"][big]
    h = m["histories"]["0.5"]
    # the recorded population loss is the decomposition's sum of terms
    np.testing.assert_allclose(h["population_loss"], np.add(np.add(h["term_trace"],
                               h["term_frobenius"]), h["term_linear"]), rtol=1e-10)
    plain = json.loads(json.dumps(jsonable(res)))
    figs = g.figures(plain)
    assert set(figs) == {"losses", "lag_vs_alpha", "ntk_alignment"}
    assert all(type(f).__name__ == "Figure" and f.axes for f in figs.values())
    assert sorted(res["figures"]) == ["lag_vs_alpha.png", "losses.png", "ntk_alignment.png"]
    assert check_claims(g, plain) == res["claims"]
    held = {c["id"]: c["holds"] for c in res["claims"]}
    assert held["large_alpha_is_initial_kernel"] and held["small_alpha_leaves_kernel"]
