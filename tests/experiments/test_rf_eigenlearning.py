"""Random-feature eigenlearning study (Simon, Karkada, Ghosh & Belkin 2023): its pieces against
independent truths, and figures and claims redrawn from made-up metrics through a JSON round
trip. The whole quick study runs in tests/papers/test_verify.py.
"""
import dataclasses
import json
import math

import numpy as np
import pytest
from matplotlib.figure import Figure

from experiments import rf_eigenlearning as rfe
from experiments.claims import all_hold, check
from experiments.records import jsonable


@pytest.fixture(scope="module")
def pool():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 6))
    y = rng.standard_normal((30, 3))
    return x, y


def test_relu_features_average_to_the_nngp_kernel(pool):
    """``(1/k) G G^T`` of the study's random ReLU features is an unbiased estimate of the
    :mod:`ntk.stax` NNGP; with ``k = 20,000`` its error is Monte Carlo sized (a few standard
    errors of the mean over features, at every entry)."""
    x, _ = pool
    cfg = rfe.Config.quick()
    nngp = rfe.pool_kernels(cfg, x)["nngp"]
    feats = rfe.relu_features(cfg, x, 20_000, np.random.default_rng(1))
    k = feats.shape[1]
    estimate = feats @ feats.T / k
    second_moment = (feats ** 2) @ (feats ** 2).T / k
    sem = np.sqrt((second_moment - estimate ** 2) / k)
    assert np.max(np.abs(estimate - nngp) / sem) < 5


def test_errors_match_direct_solves(pool):
    """The spectral shortcuts against the textbook solves: ``K(., X) (K_XX + delta I)^-1 Y`` and
    ``Phi (Phi_X^T Phi_X + delta I)^-1 Phi_X^T Y``; ``delta = 0``: the pseudo-inverse."""
    x, y = pool
    gram = np.exp(-0.1 * np.sum((x[:, None] - x[None]) ** 2, -1))
    feats = np.maximum(x @ np.random.default_rng(2).standard_normal((6, 8)), 0) / math.sqrt(8)
    idx = np.array([3, 7, 11, 12, 20, 25, 28, 1, 5, 9, 14, 17])
    ridges = [0.0, 1e-3, 0.5]
    krr_test, krr_train = rfe.krr_errors(gram, y, idx, ridges)
    rf_test, rf_train = rfe.rf_errors(feats, y, idx, ridges)
    mse = lambda pred, rows: np.mean(np.sum((pred[rows] - y[rows]) ** 2, -1))
    for r, delta in enumerate(ridges):
        k_inv = (np.linalg.pinv(gram[np.ix_(idx, idx)]) if delta == 0 else
                 np.linalg.inv(gram[np.ix_(idx, idx)] + delta * np.eye(len(idx))))
        pred = gram[:, idx] @ k_inv @ y[idx]
        assert krr_test[r] == pytest.approx(mse(pred, slice(None)), rel=1e-7, abs=1e-12)
        assert krr_train[r] == pytest.approx(mse(pred, idx), rel=1e-5, abs=1e-12)
        phi = feats[idx]
        w = (np.linalg.pinv(phi) @ y[idx] if delta == 0 else
             np.linalg.solve(phi.T @ phi + delta * np.eye(8), phi.T @ y[idx]))
        pred = feats @ w
        assert rf_test[r] == pytest.approx(mse(pred, slice(None)), rel=1e-8)
        assert rf_train[r] == pytest.approx(mse(pred, idx), rel=1e-8)


def _made_up_metrics():
    """Metrics of the quick config's shapes: predictions a few percent off, test MSE falling in
    n and k, the optimal ridge falling to zero."""
    cfg = rfe.Config.quick()
    ns, ks, rs = list(cfg.n_samples), list(cfg.n_features), list(cfg.ridge_scales)
    rng = np.random.default_rng(0)
    ridge_curve = 0.1 + np.asarray(rs)                      # (r,)
    base = lambda n, k: (n / 25.0) ** -0.4 * (1 + 30.0 / k)
    krr_pred = {nm: np.array([[base(n, math.inf) * c for c in ridge_curve] for n in ns])
                for nm in rfe.KERNELS}
    rf_pred = np.array([[[base(n, k) * c for c in ridge_curve] for k in ks] for n in ns])
    opt = np.array([[base(n, k) * 0.1 for k in ks + [math.inf]] for n in ns])
    n_theory = [25, 50, 100, 200, 300]
    optimal = {nm: {"theory_ridge_scale": [1e-3 / (n / 25) ** 2 for n in n_theory],
                    "theory_test_mse": [0.5 / (n / 25) ** 0.4 for n in n_theory],
                    "measured_ridge_scale": [1e-3, 3e-4, 1e-4, 0.0],
                    "measured_test_mse": opt[:, -1].tolist(),
                    "measured_fitting_ratio": [0.01, 0.005, 0.002, 0.0]}
               for nm in rfe.KERNELS}
    spectra = {nm: {"eigenvalues": (np.arange(1, 301) ** -1.4).tolist(),
                    "target_tail": (np.arange(1, 301) ** -0.6).tolist(),
                    "alpha": 1.4, "beta": 1.6, "trace": 2.0} for nm in rfe.KERNELS}
    wiggle = lambda a: a * (1 + 0.03 * rng.standard_normal(a.shape))
    return {
        "n_samples": ns, "n_features": ks, "ridge_scales": rs, "kernels": list(rfe.KERNELS),
        "n_pool": cfg.n_pool, "trials": cfg.trials,
        "krr_test_mse": {nm: wiggle(krr_pred[nm]) for nm in rfe.KERNELS},
        "krr_test_mse_sem": {nm: 0.01 * krr_pred[nm] for nm in rfe.KERNELS},
        "krr_train_mse": {nm: 0.001 * krr_pred[nm] for nm in rfe.KERNELS},
        "krr_predicted": krr_pred,
        "rf_test_mse": wiggle(rf_pred), "rf_test_mse_sem": 0.01 * rf_pred,
        "rf_train_mse": 0.001 * rf_pred, "rf_predicted": rf_pred,
        "krr_mean_relative_error": 0.03, "krr_max_relative_error": 0.08,
        "rf_mean_relative_error": 0.04, "rf_max_relative_error": 0.12,
        "measured_optimal_test_mse": opt * 1.01, "theory_optimal_test_mse": opt,
        "measured_max_rise_in_k": -0.02, "measured_max_rise_in_n": -0.05,
        "theory_max_rise": -0.01, "n_theory": n_theory, "optimal_ridge": optimal,
        "theory_ridge_scale_last_over_first": 0.007,
        "measured_max_optimal_ridge_scale": 1e-3,
        "measured_fitting_ratios": [0.01, 0.005, 0.002, 0.0] * 2,
        "spectra": spectra,
    }


def test_figures_and_claims_redraw_from_a_json_round_trip():
    results = json.loads(json.dumps(jsonable(
        {"metrics": _made_up_metrics(), "config": dataclasses.asdict(rfe.Config.quick())})))
    figs = rfe.figures(results)
    assert set(figs) == {"predictions", "more_is_better", "optimal_ridge"}
    assert all(isinstance(f, Figure) for f in figs.values())
    axes = figs["more_is_better"].axes
    assert axes[0].get_xscale() == "log" and "optimal ridge" in axes[0].get_ylabel()
    assert "predicted" in figs["predictions"].axes[0].get_xlabel()
    checked = check(rfe.CLAIMS, results["metrics"])
    assert all_hold(checked) and len(checked) == len(rfe.CLAIMS)
    results["metrics"]["measured_max_rise_in_k"] = 0.05
    results["metrics"]["measured_fitting_ratios"][3] = 0.5
    failed = {c["id"] for c in check(rfe.CLAIMS, results["metrics"]) if not c["holds"]}
    assert failed == {"more_features_never_hurt", "overfitting_is_obligatory"}


def test_config_validation():
    rfe.Config.quick().validate()
    rfe.Config.full().validate()
    for bad in (dict(n_samples=(50, 25)), dict(n_samples=(25, 400)), dict(n_pool=2000),
                dict(n_features=(16, 50, 256)), dict(ridge_scales=(0.0, 1e-3)),
                dict(ridge_scales=(1e-3, 0.0, 1.0)), dict(trials=1), dict(theory_points=1),
                dict(W_std=0.0)):
        with pytest.raises(ValueError):
            dataclasses.replace(rfe.Config.quick(), **bad).validate()
