"""Dynamical isometry study: critical point, Jacobian spectra, deep linear closed forms."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from experiments import dynamical_isometry as di
from limits import criticality


@pytest.mark.parametrize("q_star", [1 / 64, 0.25])
def test_critical_point_is_on_the_edge_of_chaos(q_star):
    sigma_w2, sigma_b2 = di.critical_point(q_star)
    assert float(criticality.edge_of_chaos(sigma_b2, "tanh")) == pytest.approx(sigma_w2, rel=1e-7)
    assert criticality.q_star(sigma_w2, sigma_b2, "tanh") == pytest.approx(q_star, rel=1e-6)


def test_derivative_moments_by_quadrature():
    q = 0.3
    dens = lambda h: np.exp(-h * h / (2 * q)) / np.sqrt(2 * np.pi * q)
    for k, mu in zip((1, 2), di.derivative_moments(q)):
        edge = 12 * np.sqrt(q)
        ref = integrate.quad(lambda h: np.cosh(h) ** (-4 * k) * dens(h), -edge, edge)[0]
        assert mu == pytest.approx(ref, rel=1e-9)


def test_free_probability_variance_limits():
    """Small q*: tanh'^2 = 1 - 2h^2 + ..., so the orthogonal slope is 8 q*^2 and the
    Gaussian one tends to 1 (the deep linear net)."""
    q = 1e-3
    assert di.free_probability_variance(1, q, "orthogonal") / q ** 2 == pytest.approx(8, rel=0.02)
    np.testing.assert_allclose(di.free_probability_variance([3, 6], q, "gaussian"), [3, 6],
                               rtol=1e-4)
    with pytest.raises(ValueError, match="weights"):
        di.free_probability_variance(2, q, "uniform")


def test_orthogonal_weights_are_scaled_orthogonal():
    sample = jax.jit(di.sample_weights, static_argnums=(1, 2, 3, 4, 5))
    w = sample(jax.random.PRNGKey(0), "orthogonal", 3, 7, 1.7, jnp.float64)
    for m in np.asarray(w):
        np.testing.assert_allclose(m @ m.T, 1.7 * np.eye(7), atol=1e-12)
    g = np.asarray(sample(jax.random.PRNGKey(1), "gaussian", 400, 10, 2.0, jnp.float64))
    gram = np.einsum("lij,lkj->ik", g, g) / 400                  # E[W W^T] = sigma_w^2 I
    np.testing.assert_allclose(gram, 2.0 * np.eye(10), atol=0.15)


def test_jacobian_spectra_match_autodiff():
    width, depth = 6, 3
    k = jax.random.split(jax.random.PRNGKey(2), 3)
    w = di.sample_weights(k[0], "gaussian", depth, width, 1.3, dtype=jnp.float64)
    b = 0.2 * jax.random.normal(k[1], (depth, width), jnp.float64)
    x0 = jax.random.normal(k[2], (width,), jnp.float64)
    record = np.array([True, False, True])
    eig = np.asarray(jax.jit(di.jacobian_spectra)(w, b, x0, record))

    def forward(x, n_layers):
        for l in range(n_layers):
            x = jnp.tanh(w[l] @ x + b[l])
        return x
    for l in (1, 3):
        jac = np.asarray(jax.jit(jax.jacfwd(forward), static_argnums=1)(x0, l))
        np.testing.assert_allclose(eig[l - 1], np.linalg.eigvalsh(jac @ jac.T), rtol=1e-10,
                                   atol=1e-12)
    assert not eig[1].any()
    with pytest.raises(ValueError, match="biases"):
        di.jacobian_spectra(w, b[:2], x0, record)


def _linear_spectra(weights, depth, width, n_nets, seed):
    keys = jax.random.split(jax.random.PRNGKey(seed), n_nets)
    record = np.ones(depth, bool)

    def one(key):
        w = di.sample_weights(key, weights, depth, width, 1.0, dtype=jnp.float64)
        return di.jacobian_spectra(w, jnp.zeros((depth, width)), jnp.ones(width), record,
                                   activation=lambda h: h)
    return np.asarray(jax.jit(jax.vmap(one))(keys))          # (nets, depth, width)


def test_deep_linear_orthogonal_net_is_an_exact_isometry():
    spec = _linear_spectra("orthogonal", 12, 8, 4, seed=3)
    np.testing.assert_allclose(spec, 1.0, atol=1e-10)


def test_deep_linear_gaussian_spread_matches_the_exact_finite_width_law():
    """J = W_L ... W_1, W_ij ~ N(0, 1/N). With t1 = tr(JJ^T)/N, t2 = tr((JJ^T)^2)/N, Wick's
    theorem gives E[t1] = 1, u = E[t1^2], v = E[t2]: u' = u + 2v/N^2, v' = u + (1 + 1/N) v
    (u = v = 1 at L = 0). The pooled spectral variance is v - 1 (-> L as N -> inf)."""
    width, depth, n_nets = 8, 4, 3000
    spec = _linear_spectra("gaussian", depth, width, n_nets, seed=4)
    u = v = 1.0
    for layer in range(depth):
        u, v = u + 2 * v / width ** 2, u + (1 + 1 / width) * v
        t2 = (spec[:, layer] ** 2).mean(1)
        t1 = spec[:, layer].mean(1)
        assert t1.mean() == pytest.approx(1.0, abs=4 * t1.std() / np.sqrt(n_nets))
        assert t2.mean() == pytest.approx(v, abs=4 * t2.std() / np.sqrt(n_nets))
    assert v - 1 > depth          # finite width adds to the free-probability value L


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="depths"):
        di.Config(depths=(4, 2, 8)).validate()
    with pytest.raises(ValueError, match="q_star"):
        di.Config(q_star=-1.0).validate()
    with pytest.raises(ValueError, match="q_star"):
        di.critical_point(0.0)


def test_figures_redraw_from_json_results_and_claims_read_metrics_only():
    """Results shaped like a quick run's (no Jacobians), read back from JSON."""
    import json
    from matplotlib.figure import Figure
    from experiments import config as configlib
    from experiments.records import jsonable
    from experiments.runner import check_claims
    depths = [1, 2, 4, 8, 16]
    rng = np.random.default_rng(0)
    density, edges = di.log_spectrum_histogram(rng.gamma(2.0, 0.5, (16, 128)))
    assert density.shape == (60,) and edges.shape == (61,)
    assert np.sum(density * np.diff(edges)) == pytest.approx(1.0)
    metrics = {"depths": depths, "orthogonal_over_gaussian_variance": 0.002,
               "orthogonal_over_gaussian_theory": 0.0017, "max_abs_mean_minus_one": 0.02}
    for kind, scale in (("orthogonal", 0.002), ("gaussian", 1.0)):
        metrics.update({f"{kind}_variance": scale * np.array(depths, float),
                        f"{kind}_variance_theory": scale * np.array(depths, float),
                        f"{kind}_variance_slope": 1.0, f"{kind}_variance_over_theory": 1.05,
                        f"{kind}_max_over_mean": [1.5, 2.0, 3.0, 4.0, float("inf")],
                        f"{kind}_log10_spectrum_density": density,
                        f"{kind}_log10_spectrum_edges": edges})
    results = json.loads(json.dumps(jsonable(
        {"study": "dynamical_isometry", "config": configlib.to_dict(di.Config()),
         "metrics": metrics})))
    figs = di.figures(results)
    assert list(figs) == ["dynamical_isometry"]
    assert all(isinstance(f, Figure) for f in figs.values())
    checked = check_claims(di, results)
    assert [c["id"] for c in checked] == [c.id for c in di.CLAIMS]
    assert all(c["holds"] for c in checked)
