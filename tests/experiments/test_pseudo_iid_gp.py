"""Pseudo-i.i.d. GP study: figures and claims from a JSON round trip of made-up metrics, the
config's validation, and the study's small statistics (jackknife kurtosis, 1/n extrapolation)."""
import dataclasses
import json
import math

import numpy as np
import pytest
from matplotlib.figure import Figure

from experiments import pseudo_iid_gp as study
from experiments.claims import all_hold, check
from experiments.records import jsonable


def _made_up_metrics():
    cfg = study.Config.quick()
    widths = np.asarray(cfg.widths, float)
    labels = list(study.ensembles(cfg))
    settings = {}
    for name in study.SETTINGS:
        s = study.setting(name, cfg)
        s["nngp"] = np.eye(cfg.n_inputs).tolist()
        per = {key: {} for key in ("error_median", "error_q25", "error_q75",
                                   "mc_covariance_error", "kurtosis", "kurtosis_se", "gain",
                                   "error_slope", "kurtosis_limit", "kurtosis_limit_z")}
        for i, lab in enumerate(labels):
            rank_one = lab == study.COUNTEREXAMPLE
            err = np.full_like(widths, 0.9) if rank_one else (0.5 + 0.1 * i) * np.sqrt(
                widths[0] / widths)
            per["error_median"][lab] = err
            per["error_q25"][lab], per["error_q75"][lab] = 0.8 * err, 1.2 * err
            per["mc_covariance_error"][lab] = 0.3 * err
            per["kurtosis"][lab] = np.full_like(widths, 20.0) if rank_one else 8.0 / widths
            per["kurtosis_se"][lab] = np.full_like(widths, 0.1)
            per["gain"][lab] = np.full_like(widths, 1.08 if rank_one else 1.0)
            per["error_slope"][lab] = 0.0 if rank_one else -0.5
            per["kurtosis_limit"][lab] = 20.0 if rank_one else 0.01
            per["kurtosis_limit_z"][lab] = 200.0 if rank_one else 0.2
        settings[name] = dict(s, **per)
    return {"widths": widths, "ensembles": labels[:-1], "counterexample": study.COUNTEREXAMPLE,
            "n_networks": cfg.n_networks, "settings": settings}


def test_figures_and_claims_redraw_from_a_json_round_trip():
    results = json.loads(json.dumps(jsonable(
        {"metrics": _made_up_metrics(), "config": dataclasses.asdict(study.Config.quick())})))
    figs = study.figures(results)
    assert set(figs) == {"kernel_convergence", "gaussianity", "edge_of_chaos"}
    assert all(isinstance(f, Figure) for f in figs.values())
    ax = figs["kernel_convergence"].axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log" and "width" in ax.get_xlabel()
    checked = check(study.CLAIMS, results["metrics"])
    assert all_hold(checked) and len(checked) == len(study.CLAIMS)
    assert "depth 3" in checked[0]["text"] and "low_rank_0.25n" in checked[0]["text"]
    # a low-rank network whose kernel stops converging fails only the tanh convergence claim
    results["metrics"]["settings"]["tanh_eoc"]["error_slope"]["low_rank_0.25n"] = -0.1
    failed = {c["id"] for c in check(study.CLAIMS, results["metrics"]) if not c["holds"]}
    assert failed == {"tanh_eoc_pseudo_iid_kernel_converges"}


def test_config_validation():
    study.Config.quick().validate()
    study.Config.full().validate()
    for bad in (dict(widths=(32, 64)), dict(widths=(64, 32, 128)), dict(n_networks=4),
                dict(n_outputs=64), dict(relu_depth=1), dict(rank_ratio=1.0),
                dict(density=0.0), dict(tanh_sigma_b2=0.0), dict(block_size=64)):
        with pytest.raises(ValueError):
            dataclasses.replace(study.Config.quick(), **bad).validate()


def test_settings_and_inputs_are_at_criticality():
    """ReLU (2, 0); tanh on the edge of chaos (chi_1 = 1 at q*), inputs at the first layer's
    variance q."""
    from limits import criticality
    cfg = study.Config.quick()
    tanh = study.setting("tanh_eoc", cfg)
    assert criticality.chi_1(tanh["sigma_w2"], tanh["sigma_b2"], "tanh") == pytest.approx(1.0)
    for name in study.SETTINGS:
        s = study.setting(name, cfg)
        x = study.make_inputs(cfg, s)
        q1 = s["sigma_w2"] * np.sum(x ** 2, axis=1) / cfg.input_dim + s["sigma_b2"]
        np.testing.assert_allclose(q1, s["q"], rtol=1e-12)
    with pytest.raises(ValueError, match="setting"):
        study.setting("gelu", cfg)


@pytest.mark.parametrize("draw, expected", [
    (lambda rng, size: rng.standard_normal(size), 0.0),
    (lambda rng, size: rng.laplace(size=size), 3.0),
])
def test_jackknife_kurtosis_of_known_laws(draw, expected):
    """Independent samples grouped as (networks, outputs): the estimate is within 4 jackknife
    standard errors of the law's excess kurtosis, and the error is of the right size."""
    rng = np.random.default_rng(0)
    f = draw(rng, (400, 50, 3))                     # networks, outputs, inputs
    kappa, se = study.excess_kurtosis_jackknife(np.mean(f ** 2, 1), np.mean(f ** 4, 1))
    assert abs(kappa - expected) < 4 * se
    n = f.shape[0] * f.shape[1]
    naive = math.sqrt(24 / n) if expected == 0 else None
    if naive is not None:   # Gaussian: sqrt(24 / n) per input, averaging 3 inputs shrinks it
        assert naive / 3 < se < naive


def test_limit_fit_recovers_a_plus_c_over_n():
    widths = [32, 64, 128, 256]
    values = 0.3 + 12.0 / np.asarray(widths, float)
    v_inf, se = study.limit_fit(widths, values, [0.1] * 4)
    assert v_inf == pytest.approx(0.3, abs=1e-10)
    assert 0.05 < se < 0.5
