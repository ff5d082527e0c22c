"""Maxout initialisation (Tseran & Montufar 2023): order-statistic moments, the per-layer growth
factor and the Jacobian recursion, checked against closed forms, Monte Carlo and autodiff."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.figure import Figure
from scipy import stats

from experiments import maxout_init as mi
from experiments.records import jsonable
from experiments.runner import check_claims
from limits.criticality import gaussian_expectation


def test_max_second_moment_closed_forms():
    """M_1 = E xi^2 = 1; M_2 = 1 (max^2 + min^2 = xi_1^2 + xi_2^2 and max =d -min);
    M_3 = 1 + sqrt(3)/(2 pi), M_4 = 1 + sqrt(3)/pi (classical normal order statistics)."""
    assert mi.max_gaussian_second_moment(1) == pytest.approx(1.0, abs=1e-10)
    assert mi.max_gaussian_second_moment(2) == pytest.approx(1.0, abs=1e-10)
    assert mi.max_gaussian_second_moment(3) == pytest.approx(1 + np.sqrt(3) / (2 * np.pi),
                                                             abs=1e-10)
    assert mi.max_gaussian_second_moment(4) == pytest.approx(1 + np.sqrt(3) / np.pi, abs=1e-10)


@pytest.mark.parametrize("k", [2, 3, 5, 7])
def test_max_second_moment_matches_gauss_hermite_and_monte_carlo(k):
    """The density-of-the-max quadrature against E_z[K z^2 Phi(z)^{K-1}] by Gauss-Hermite
    (limits.criticality) and against the sample mean of max_k xi_k^2 (5 standard errors)."""
    quad = mi.max_gaussian_second_moment(k)
    gh = float(gaussian_expectation(lambda z: k * z ** 2 * stats.norm.cdf(z) ** (k - 1), 1.0))
    assert quad == pytest.approx(gh, rel=1e-8)
    sample = np.random.default_rng(k).standard_normal((400_000, k)).max(axis=1) ** 2
    se = sample.std() / np.sqrt(sample.size)
    assert abs(sample.mean() - quad) < 5 * se


def test_init_constant_matches_the_papers_table():
    """The paper's c = 1/M_K: 1, 0.78391, 0.64461, 0.55555 for K = 2..5."""
    for k, c in [(2, 1.0), (3, 0.78391), (4, 0.64461), (5, 0.55555)]:
        assert mi.maxout_init_constant(k) == pytest.approx(c, abs=1e-5)


def test_chi2_order_statistics():
    """K = 2: E[min(xi_1^2, xi_2^2)] = 1 - 2/pi and E[max] = 1 + 2/pi (their sum is 2); K = 5
    against Monte Carlo and the paper's reciprocals 1/L_5 = 0.36, 1/S_5 = 12."""
    s2, l2 = mi.chi2_order_statistic_means(2)
    assert s2 == pytest.approx(1 - 2 / np.pi, abs=1e-10)
    assert l2 == pytest.approx(1 + 2 / np.pi, abs=1e-10)
    s5, l5 = mi.chi2_order_statistic_means(5)
    sq = np.random.default_rng(0).standard_normal((400_000, 5)) ** 2
    for value, sample in [(s5, sq.min(1)), (l5, sq.max(1))]:
        assert abs(sample.mean() - value) < 5 * sample.std() / np.sqrt(sample.size)
    assert 1 / l5 == pytest.approx(0.36, abs=0.005) and 1 / s5 == pytest.approx(12, abs=0.05)


def test_bad_rank_is_rejected():
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="maxout rank"):
            mi.max_gaussian_second_moment(bad)


def test_one_layer_growth_factor_is_c_times_m_k():
    """E[|h'|^2 / n_out] = c M_K |h|^2 / n_in over random layers (fixed input, 4 SE)."""
    k, c, n_in, n_out = 4, 0.7, 12, 10
    h = jax.random.normal(jax.random.PRNGKey(0), (1, n_in), jnp.float64)

    def growth(key):
        layer = mi.init_maxout(key, (n_in, n_out), k, c)["layers"][0]
        return jnp.mean(mi.maxout_layer(h, layer, k) ** 2) / jnp.mean(h ** 2)
    g = np.asarray(jax.jit(jax.vmap(growth))(jax.random.split(jax.random.PRNGKey(1), 8000)))
    assert abs(g.mean() - c * mi.max_gaussian_second_moment(k)) < 4 * g.std() / np.sqrt(g.size)


def test_layer_tangent_is_the_autodiff_jvp():
    """The scan's hand-written tangent (the selected piece's pre-activation) = jax.jvp."""
    k, n = 3, 6
    kx, kv, kw = jax.random.split(jax.random.PRNGKey(2), 3)
    h, v = jax.random.normal(kx, (5, n)), jax.random.normal(kv, (5, n))
    layer = mi.init_maxout(kw, (n, 4), k, 1.0)["layers"][0]
    ref = jax.jvp(lambda z: mi.maxout_layer(z, layer, k), (h,), (v,))
    got = jax.jit(mi._layer_with_tangent, static_argnums=3)(h, v, layer["w"], k)
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_jacobian_recursion_matches_monte_carlo():
    """Exact expectations of |J_l u|^2 (random direction u) and |h_l|^2 through 3 maxout
    layers of uneven widths, against the mean over 6000 random networks (4 SE per layer)."""
    k, c, widths = 3, 0.9, (5, 7, 4, 6)
    m_k = mi.max_gaussian_second_moment(k)
    x = jnp.array([[1.0, -0.5, 0.3, 2.0, 0.1]])
    u = jnp.array([[0.2, 1.0, -1.0, 0.4, 0.5]])

    def one(key):
        q, j, _ = mi.layer_statistics(mi.init_maxout(key, widths, k, c), x, u, k)
        return q[:, 0], j[:, 0]
    q, j = map(np.asarray, jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(3), 6000)))
    xn, un = np.asarray(x[0]), np.asarray(u[0])
    a0 = (xn @ un) ** 2 / (xn @ xn)
    pq, pj, _ = mi.predicted_statistics(c, m_k, widths, xn @ xn / 5, a0, un @ un - a0)
    for sample, pred in [(q, pq), (j, pj)]:
        se = sample.std(0) / np.sqrt(sample.shape[0])
        assert np.all(np.abs(sample.mean(0) - pred) < 4 * se), (sample.mean(0), pred, se)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="train_steps"):
        mi.Config(train_steps=110, chunk=50).validate()
    with pytest.raises(ValueError, match="maxout_rank"):
        mi.Config(maxout_rank=1).validate()


def _made_up_results(baseline_c=(0.36, 1.0, 2.0)):
    """Metrics shaped as run() returns them (K = 5, depth 6, two rates; c = 2 diverges at
    every rate), through the JSON round trip of results.json."""
    m_k = mi.max_gaussian_second_moment(5)
    c_values = [1 / m_k, *baseline_c]
    depths = np.arange(1, 7)
    inf = float("inf")
    m = {"maxout_rank": 5, "M_K": m_k, "c_paper": 1 / m_k, "width": 16, "train_depth": 4,
         "learning_rates": [0.01, 0.03], "depths": depths.tolist(),
         "c_values": c_values, "train_steps": [0, 50, 100]}
    growth = [np.log(c * m_k) for c in c_values]
    for key in ("length", "predicted_length", "jacobian", "predicted_jacobian"):
        m[key] = [np.exp(g * depths).tolist() for g in growth]
    m["length_slope"] = [g + 0.01 for g in growth]
    m["predicted_length_slope"] = growth
    m["jacobian_deep_slope"] = [g - 0.01 for g in growth]
    curves = {0.36: [2.3, 2.2, 2.1], 1.0: [2.3, 1.2, 0.9], 2.0: [2.3, inf, inf]}
    m["train_loss_curves"] = [[[2.3, 1.0, 0.8]] * 2] + [[curves[c]] * 2 for c in baseline_c]
    m["best_lr"] = [0.01] * len(c_values)
    m["best_mean_loss"] = [0.9] + [inf if c == 2.0 else float(np.mean(curves[c][1:]))
                                   for c in baseline_c]
    return json.loads(json.dumps(jsonable({"study": "maxout_init", "config": {}, "metrics": m})))


def test_claims_and_figures_from_stored_results():
    results = _made_up_results()
    checked = {c["id"]: c for c in check_claims(mi, results)}
    assert all(c["holds"] for c in checked.values())
    assert checked["length_slope_is_log_cM"]["measured"] == pytest.approx(0.01)
    assert checked["paper_c_trains_faster"]["measured"] == pytest.approx(0.9 / 2.15)
    # a run without one of the claimed alternatives cannot support the training claim
    checked = {c["id"]: c for c in check_claims(mi, _made_up_results((1.0, 2.0)))}
    assert not checked["paper_c_trains_faster"]["holds"]
    figs = mi.figures(results)
    assert list(figs) == ["maxout_init"] and all(isinstance(f, Figure) for f in figs.values())
