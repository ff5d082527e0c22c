"""Wide-and-deep classification study (Radhakrishnan, Belkin & Uhler 2023): its data and depth
windows against independent checks, and figures and claims redrawn from made-up metrics through
a JSON round trip. The whole quick study runs in tests/papers/test_verify.py.
"""
import dataclasses
import json
import math

import numpy as np
import pytest
from matplotlib.figure import Figure
from scipy.stats import dirichlet

from experiments import wide_deep_classification as wdc
from experiments.claims import all_hold, check
from experiments.records import jsonable


@pytest.mark.parametrize("name", ["circle", "sphere"])
def test_dirichlet_data_on_the_positive_sphere_with_its_bayes_rule(name):
    rng = np.random.default_rng(0)
    x, y, bayes = wdc.dirichlet_sphere(4000, name, rng)
    assert x.shape == (4000, len(wdc.DIRICHLET[name][0]))
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-12)
    assert np.all(x >= 0)
    # the class frequency is the prior (binomial, 4 standard deviations)
    assert abs(y.mean() - wdc.PRIOR) < 4 * math.sqrt(wdc.PRIOR * (1 - wdc.PRIOR) / 4000)
    # the Bayes rule from the simplex point recovered by s = x / sum(x)
    s = x / x.sum(1, keepdims=True)
    a1, a0 = wdc.DIRICHLET[name]
    rule = (wdc.PRIOR * dirichlet.pdf(s.T, a1) > (1 - wdc.PRIOR) * dirichlet.pdf(s.T, a0))
    assert np.mean(rule.astype(int) == bayes) > 0.999
    # and no other rule does better on fresh data: 1-NN on 1,000 points is worse
    xt, yt, _ = wdc.dirichlet_sphere(1000, name, np.random.default_rng(1))
    nn = yt[np.argmax(x[:2000] @ xt.T, axis=1)]
    assert np.mean(bayes[:2000] == y[:2000]) > np.mean(nn == y[:2000])


def test_digits_on_the_sphere_without_duplicates():
    x, y = wdc.digits_sphere()
    assert x.shape[1] == 64 and 1700 < len(x) <= 1797 and set(np.unique(y)) == {0, 1}
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-12)
    gram = x @ x.T
    np.fill_diagonal(gram, 0)
    assert gram.max() < 1 - 1e-12 and gram.min() >= 0


def test_hermite_depth_window_is_the_deepest_representable():
    """At ``L_max`` every test point's nearest-neighbour entry ``rho^(2^L)`` stays above the
    underflow guard, at ``L_max + 1`` some do not."""
    rng = np.random.default_rng(2)
    xtr, xte = (np.abs(rng.standard_normal((n, 3))) for n in (40, 30))
    xtr /= np.linalg.norm(xtr, axis=1, keepdims=True)
    xte /= np.linalg.norm(xte, axis=1, keepdims=True)
    gram = xte @ xtr.T
    depths = wdc.hermite_depths(gram)
    l_max = depths[-1]
    assert depths == tuple(range(1, l_max + 1))
    rho_nn = gram.max(1)
    with np.errstate(under="ignore"):
        assert np.all(rho_nn ** (2.0 ** l_max) >= wdc.UNDERFLOW)
        assert np.any(rho_nn ** (2.0 ** (l_max + 1)) < wdc.UNDERFLOW)


def _made_up_metrics():
    """Metrics of the quick config's shapes, every agreement rising to about 1."""
    cfg = wdc.Config.quick()
    rd, deep = list(cfg.relu_depths), list(cfg.depths)
    rise = lambda k: np.linspace(0.55, 0.99, k).tolist()
    per = {"circle": {
        "accuracy_one_nn": 0.70, "accuracy_majority": 0.63, "accuracy_bayes": 0.78,
        "relu": {"ntk_agree_majority": rise(len(rd)), "nngp_agree_majority": rise(len(rd)),
                 "ntk_accuracy": [0.65] * len(rd),
                 "gap_median": (0.5 / np.asarray(rd, float)).tolist(),
                 "gap_max": (5.0 / np.asarray(rd, float)).tolist(), "majority_margin": 5.0},
        "hermite": {"deepest": [17, 18], "ntk_agree_one_nn_deepest": 0.99,
                    "nngp_agree_one_nn_deepest": 0.99, "depths": list(range(1, 18)),
                    "ntk_agree_one_nn": rise(17)},
        "matched": {"alpha": 1.0, "mu": 0.5, "lam": 4.0, "nngp_agree_limit": rise(len(deep)),
                    "ntk_agree_limit": rise(len(deep)),
                    "nngp_accuracy": [0.6] * 4 + [0.75] * 4, "ntk_accuracy": [0.7] * 8,
                    "limit_accuracy": 0.75,
                    "ntk_profile_error": (20.0 / np.asarray(deep, float)).tolist(),
                    "limit_agree_hilbert": 0.998, "hilbert_accuracy": 0.75}}}
    rho = 1 - np.logspace(-8, 0, 161)
    return {
        "datasets": ["circle"], "relu_depths": rd, "depths": deep, "trials": 2,
        "n_train": cfg.n_train, "n_test": cfg.n_test, "n_majority": cfg.n_majority,
        "n_test_majority": cfg.n_test_majority, "per_dataset": per,
        "profiles": {"circle": {"alpha": 1.0, "fitted_exponent": 1.0, "exponent_ratio": 1.0,
                                "rho": rho.tolist(),
                                "psi": (rho / np.sqrt(1 - rho)).tolist()}},
        "relu_majority_agreement": [0.99], "relu_gap_median": [5e-5], "relu_gap_slope": [-0.95],
        "hermite_nn_agreement": [0.99], "singular_nngp_agreement": [1.0],
        "singular_ntk_agreement": [0.9], "matched_hilbert_agreement": [0.998],
        "matched_exponent_ratio": [1.0], "matched_ntk_profile_slope": [-1.0],
        "matched_minus_one_nn": [0.05],
    }


def test_figures_and_claims_redraw_from_a_json_round_trip():
    results = json.loads(json.dumps(jsonable(
        {"metrics": _made_up_metrics(), "config": dataclasses.asdict(wdc.Config.quick())})))
    figs = wdc.figures(results)
    assert set(figs) == {"limits", "rates", "accuracy"}
    assert all(isinstance(f, Figure) for f in figs.values())
    assert figs["limits"].axes[0].get_xscale() == "log"
    assert "agreement" in figs["limits"].axes[0].get_ylabel()
    assert figs["rates"].axes[1].get_yscale() == "log"
    checked = check(wdc.CLAIMS, results["metrics"])
    assert len(checked) == len(wdc.CLAIMS)
    assert all(c["holds"] for c in checked if not c.get("reported"))
    m = results["metrics"]
    m["relu_majority_agreement"] = [0.9]
    m["relu_gap_slope"] = [-0.5]
    m["matched_minus_one_nn"] = [-0.01]
    failed = {c["id"] for c in check(wdc.CLAIMS, m) if not c["holds"]}
    assert failed == {"relu_ntk_majority_vote", "relu_ntk_gap_rate", "consistent_beats_one_nn",
                      "singular_ntk_limit"}


def test_config_validation():
    wdc.Config.quick().validate()
    wdc.Config.full().validate()
    for bad in (dict(datasets=()), dict(datasets=("circle", "circle")), dict(datasets=("moon",)),
                dict(n_majority=16), dict(n_train=5), dict(trials=0),
                dict(relu_depths=(10, 100, 300)), dict(relu_depths=(10, 100, 90)),
                dict(depths=(1, 2, 500)), dict(depths=(1, 2, 5)),
                dict(n_test_majority=400), dict(datasets=("digits",), n_train=1500)):
        with pytest.raises(ValueError):
            dataclasses.replace(wdc.Config.quick(), **bad).validate()
