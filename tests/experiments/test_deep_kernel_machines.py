"""Deep kernel machine study (Yang et al. 2023): its data against their definitions, the config's
validation, and figures and claims redrawn from made-up metrics through a JSON round trip. The
whole quick study runs in tests/papers/test_verify.py."""
import dataclasses
import json
import math

import numpy as np
import pytest
from matplotlib.figure import Figure

from experiments import deep_kernel_machines as study
from experiments.claims import all_hold, check
from experiments.records import jsonable


def test_tasks_are_split_and_standardised_as_described():
    cfg = study.Config.quick()
    for name in study.TASKS:
        xtr, ytr, xva, yva, xte, yte = study.load_task(name, cfg, 0)
        assert (len(xtr), len(xva), len(xte)) == (cfg.n_train, cfg.n_val, cfg.n_test)
        assert ytr.ndim == yva.ndim == yte.ndim == 2
        # another split draws other points
        assert not np.array_equal(xtr, study.load_task(name, cfg, 1)[0])
    xtr, ytr, xva, yva, xte, yte = study.load_task("synthetic", cfg, 0)
    np.testing.assert_allclose(yte, study.chirp(xte))          # noiseless test targets
    assert 0.03 < np.std(ytr - study.chirp(xtr)) < 0.2          # labels carry N(0, 0.1^2)
    xtr, ytr, *_ = study.load_task("diabetes", dataclasses.replace(cfg, n_train=200), 0)
    np.testing.assert_allclose(xtr.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(xtr.std(0), 1, rtol=1e-12)
    assert ytr.mean() == pytest.approx(0, abs=1e-12) and ytr.std() == pytest.approx(1)
    xtr, ytr, *_ = study.load_task("digits", cfg, 0)
    assert ytr.shape[1] == 10 and np.allclose(ytr.sum(1), 0)     # centred one-hot


def test_chirp_frequency_falls_twelvefold():
    """``d/dx [x / (x + 3)] = 3 / (x + 3)^2``: 3 at x = -2, 3 / 25 at x = 2."""
    x = np.array([-2.0, 2.0])
    h = 1e-6
    phase = lambda t: t / (t + 3)
    rate = (phase(x + h) - phase(x - h)) / (2 * h)
    np.testing.assert_allclose(rate, [3.0, 3.0 / 25], rtol=1e-6)
    np.testing.assert_allclose(study.chirp(x), np.sin(2 * np.pi * phase(x)))


def test_config_validation():
    study.Config.quick().validate()
    study.Config.full().validate()
    for bad in (dict(n_train=2), dict(n_test=0), dict(nus=()), dict(nus=(math.inf,)),
                dict(noise_vars=(0.0,)), dict(limit_nus=(1e3, 1e2)), dict(limit_nus=(1e2,)),
                dict(n_train=300, n_val=100, n_test=100), dict(depth=0), dict(splits=0)):
        with pytest.raises(ValueError):
            dataclasses.replace(study.Config.quick(), **bad).validate()


def _made_up_metrics():
    cfg = study.Config.quick()
    nus = [math.inf] + list(cfg.nus)
    rng = np.random.default_rng(0)
    runs, summary = {}, {}
    for t, name in enumerate(study.TASKS):
        val = 0.5 + rng.uniform(0, 0.1, (len(nus), len(cfg.noise_vars)))
        run = {"val_mse": val.tolist(), "test_mse": (val + 0.01).tolist(),
               "converged": np.ones_like(val, bool).tolist(), "nngp_noise_var": 0.1,
               "nngp_test_mse": 0.5, "nngp_val_mse": 0.5, "dkm_nu": nus[1],
               "dkm_noise_var": 0.01, "dkm_test_mse": 0.4, "dkm_val_mse": 0.45,
               "dkm_iterations": 30, "dkm_gram_distance": 0.3}
        if name == "synthetic":
            xs = np.sort(rng.uniform(-2, 2, cfg.n_test))
            run.update(curve_x=xs, curve_nngp=study.chirp(xs) * 0.8, curve_dkm=study.chirp(xs),
                       train_x=rng.uniform(-2, 2, cfg.n_train),
                       train_y=rng.standard_normal(cfg.n_train))
        runs[name] = [run]
        summary[name] = {"nngp_test_mse": 0.5, "dkm_test_mse": 0.4, "test_mse_ratio": 0.8,
                         "dkm_nus": [nus[1]], "dkm_gram_distances": [0.3]}
        if name == "digits":
            summary[name].update(nngp_test_accuracy=0.9, dkm_test_accuracy=0.92)
    limit_nus = list(cfg.limit_nus)
    return {"limit_nus": limit_nus, "limit_distances": [5.0 / n for n in limit_nus],
            "limit_converged": [True] * len(limit_nus), "limit_slope": -1.0,
            "nu_inf_prediction_difference": 1e-12, "tasks": list(study.TASKS), "nus": nus,
            "noise_vars": list(cfg.noise_vars), "depth": cfg.depth, "n_train": cfg.n_train,
            "splits": 1, "runs": runs, "summary": summary}


def test_figures_and_claims_redraw_from_a_json_round_trip():
    results = json.loads(json.dumps(jsonable(
        {"metrics": _made_up_metrics(), "config": dataclasses.asdict(study.Config.quick())})))
    figs = study.figures(results)
    assert set(figs) == {"nngp_limit", "dkm_vs_nngp", "synthetic_fit"}
    assert all(isinstance(f, Figure) for f in figs.values())
    ax = figs["nngp_limit"].axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log" and "nu" in ax.get_xlabel()
    checked = check(study.CLAIMS, results["metrics"])
    assert all_hold(checked) and len(checked) == len(study.CLAIMS)
    assert "accuracy 0.920 vs 0.900" in checked[-1]["text"]
    # a DKM that loses on diabetes fails that claim alone; a slope of -1/2 fails the rate
    results["metrics"]["summary"]["diabetes"]["test_mse_ratio"] = 1.02
    results["metrics"]["limit_slope"] = -0.5
    failed = {c["id"] for c in check(study.CLAIMS, results["metrics"]) if not c["holds"]}
    assert failed == {"dkm_beats_nngp_diabetes", "grams_approach_nngp_as_one_over_nu"}
