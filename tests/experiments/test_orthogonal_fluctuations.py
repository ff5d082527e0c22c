"""Orthogonal fluctuations study: kurtosis estimator, rotational-invariance sampler, RYH laws."""
import numpy as np
import pytest
from scipy import stats

from experiments import orthogonal_fluctuations as of


@pytest.mark.parametrize("draw, expected", [
    (lambda rng, n: rng.standard_normal(n), 0.0),
    (lambda rng, n: rng.uniform(-1, 1, n), -1.2),
    (lambda rng, n: rng.laplace(0, 1, n), 3.0),
])
def test_excess_kurtosis_of_known_distributions(draw, expected):
    z = draw(np.random.default_rng(0), 400_000)
    m2, m4 = np.mean(z ** 2), np.mean(z ** 4)
    # delta-method standard error of m4 / m2^2 (influence function of the ratio)
    se = np.std(z ** 4 / m2 ** 2 - 2 * m4 * z ** 2 / m2 ** 3) / np.sqrt(len(z))
    assert of.excess_kurtosis(z) == pytest.approx(expected, abs=4 * se)


def test_excess_kurtosis_of_a_sphere_coordinate():
    """A coordinate of a uniform point on S^{n-1}: E u^4 / E[u^2]^2 - 3 = -6 / (n + 2)."""
    g = np.random.default_rng(1).standard_normal((100_000, 5))
    u = g / np.linalg.norm(g, axis=1, keepdims=True)
    assert of.excess_kurtosis(u) == pytest.approx(-6 / 7, abs=0.02)
    with pytest.raises(ValueError, match="non-empty"):
        of.excess_kurtosis([])


def _explicit_net(rng, activation, weights, width, depth):
    """z^1 = W^1 x, z^{l+1} = W^{l+1} phi(z^l), |x|^2 = n, with explicit weight matrices."""
    sigma_w = np.sqrt(of.CRITICAL_SIGMA_W2[activation])
    phi = {"tanh": np.tanh, "relu": lambda z: np.maximum(z, 0)}[activation]
    a = np.ones(width)
    zs = []
    for _ in range(depth):
        if weights == "orthogonal":
            w = stats.ortho_group.rvs(width, random_state=rng)
        else:
            w = rng.standard_normal((width, width)) / np.sqrt(width)
        zs.append(sigma_w * w @ a)
        a = phi(zs[-1])
    return np.stack(zs)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_rotational_invariance_sampler_matches_explicit_weight_matrices(activation):
    """The law of |z^L|^2 from explicit Haar / Gaussian matrices equals the sampler's (two-sample
    KS test), and the two ensembles are told apart (the test has power)."""
    width, depth, n = 6, 3, 1500
    rng = np.random.default_rng(2)
    sq = lambda z: np.sum(z[..., -1, :] ** 2, axis=-1)
    fast = {w: sq(of.sample_preactivations(rng, activation, w, width, depth, n))
            for w in of.WEIGHTS}
    for w in of.WEIGHTS:
        slow = sq(np.stack([_explicit_net(rng, activation, w, width, depth) for _ in range(n)]))
        assert stats.ks_2samp(fast[w], slow).pvalue > 1e-3
    assert stats.ks_2samp(fast["gaussian"], fast["orthogonal"]).pvalue < 1e-6


def test_linear_nets_closed_forms():
    """Orthogonal linear net: |z^l| = |x| exactly and kappa = -6/(n+2) at every layer;
    Gaussian: the exact law 3((1 + 2/n)^{l-1} - 1)."""
    width, depth, n = 8, 6, 60_000
    rng = np.random.default_rng(3)
    z = of.sample_preactivations(rng, "linear", "orthogonal", width, depth, 200)
    np.testing.assert_allclose(np.linalg.norm(z, axis=2), np.sqrt(width), rtol=1e-12)
    z = of.sample_preactivations(rng, "linear", "orthogonal", width, depth, n)
    np.testing.assert_allclose(of.excess_kurtosis(z, axis=(0, 2)), -6 / (width + 2), atol=0.02)
    z = of.sample_preactivations(rng, "linear", "gaussian", width, depth, n)
    exact = of.exact_gaussian_kurtosis("linear", width, depth)
    np.testing.assert_allclose(of.excess_kurtosis(z, axis=(0, 2)), exact, rtol=0.1, atol=0.03)


def test_ryh_recursion_closed_forms():
    """Leading order in 1/n: linear 6(l-1)/n, ReLU 15(l-1)/n; tanh (K* = 0 class) slope -> 2/n
    (RYH: V / (n K^2) ~ (2/3) l / n)."""
    n = 100
    layers = np.arange(1, 9)
    np.testing.assert_allclose(of.ryh_gaussian_kurtosis("linear", n, 8), 6 * (layers - 1) / n,
                               atol=1e-10)
    np.testing.assert_allclose(of.ryh_gaussian_kurtosis("relu", n, 8), 15 * (layers - 1) / n,
                               atol=1e-10)
    tanh = of.ryh_gaussian_kurtosis("tanh", n, 400)
    assert (tanh[399] - tanh[199]) / 200 * n == pytest.approx(2.0, rel=0.03)
    # the exact laws agree with the recursion to first order in 1/n
    exact = of.exact_gaussian_kurtosis("relu", 10_000, 8)
    np.testing.assert_allclose(exact, 15 * (layers - 1) / 10_000, rtol=5e-3)


def test_inputs_are_validated():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="activation"):
        of.sample_preactivations(rng, "gelu", "gaussian", 4, 2, 10)
    with pytest.raises(ValueError, match="noise"):
        of.sample_preactivations(rng, "tanh", "gaussian", 4, 2, 10, noise=np.zeros((10, 2, 3)))
    with pytest.raises(ValueError, match="exact law"):
        of.exact_gaussian_kurtosis("tanh", 8, 3)
    with pytest.raises(ValueError, match="fit_from"):
        of.Config(fit_from=0.95, depth=8).validate()


def test_figures_redraw_from_json_results_and_claims_read_metrics_only():
    """Results shaped like a quick run's (no sampling), read back from JSON."""
    import json
    from matplotlib.figure import Figure
    from experiments import config as configlib
    from experiments.records import jsonable
    from experiments.runner import check_claims
    width, depth = 64, 16
    layers = np.arange(1, depth + 1)
    ryh = of.ryh_gaussian_kurtosis("tanh", width, depth)
    exact = of.exact_gaussian_kurtosis("relu", width, depth)
    metrics = {"width": width, "layers": layers, "fit_layers": layers[8:],
               "sphere_kurtosis": -6 / (width + 2),
               "tanh_gaussian_kurtosis": ryh, "tanh_orthogonal_kurtosis": np.full(depth, -0.09),
               "relu_gaussian_kurtosis": exact, "relu_orthogonal_kurtosis": 0.5 * exact,
               "tanh_gaussian_ryh_kurtosis": ryh, "relu_gaussian_exact_kurtosis": exact,
               "tanh_gaussian_ryh_slope": 2 / width, "tanh_gaussian_slope_over_ryh": 1.05,
               "tanh_orthogonal_over_gaussian_slope": -0.02, "relu_gaussian_over_exact": 0.99}
    metrics["tanh_orthogonal_kurtosis"][0] = float("nan")
    results = json.loads(json.dumps(jsonable(
        {"study": "orthogonal_fluctuations", "config": configlib.to_dict(of.Config()),
         "metrics": metrics})))
    figs = of.figures(results)
    assert list(figs) == ["orthogonal_fluctuations"]
    assert all(isinstance(f, Figure) for f in figs.values())
    checked = check_claims(of, results)
    assert [c["id"] for c in checked] == [c.id for c in of.CLAIMS]
    assert all(c["holds"] for c in checked)
    assert checked[1]["measured"] == pytest.approx(0.02)
    assert "2.00/n per layer" in checked[0]["text"]
