"""Neural signature kernel study: figures and claims from a JSON round trip of made-up metrics,
the config's validation, the curves and the observed-order estimate."""
import dataclasses
import json

import numpy as np
import pytest
from matplotlib.figure import Figure

from experiments import neural_signature_kernels as study
from experiments.claims import all_hold, check
from experiments.records import jsonable


def _made_up_metrics():
    cfg = study.Config.quick()
    widths, depths = np.asarray(cfg.widths, float), np.asarray(cfg.depths, float)
    levels = np.arange(cfg.max_level)
    orders = {}
    for act in cfg.order_activations:
        orders[act] = {}
        for scheme in study.SCHEMES_FOR.get(act, study.DEFAULT_SCHEMES):
            p = {"explicit": 1, "trapezoid": 2, "salvi": 2}[scheme]
            orders[act][scheme] = {"stated": p, "observed": p - 0.05,
                                   "differences": (0.1 * 2.0 ** (-p * levels)).tolist(),
                                   "kernel": [[2.0, 1.0], [1.0, 3.0]]}
    width = {a: {"limit": np.eye(4).tolist(), "rms_error": 0.4 * np.sqrt(32 / widths),
                 "error_q25": 0.3 * np.sqrt(32 / widths),
                 "error_q75": 0.5 * np.sqrt(32 / widths), "slope": -0.5, "mean_z_max": 1.5,
                 "mc_mean": [1.0] * 10, "mc_se": [0.01] * 10, "limit_entries": [1.0] * 10}
             for a in cfg.mc_activations}
    depth = {a: {"reference_depth": 512, "relative_error": 0.2 * 4 / depths, "order": 0.95,
                 "reference": [[2.0, 1.0], [1.0, 3.0]]} for a in cfg.depth_activations}
    return {"widths": cfg.widths, "depths": cfg.depths, "n_networks": cfg.n_networks,
            "mc_depth": cfg.mc_depth, "order_pieces": cfg.order_pieces,
            "max_level": cfg.max_level, "fit_points": cfg.fit_points, "orders": orders,
            "signature": {"general_solver": [[1.0]], "truncated_signatures": [[1.0]],
                          "unextrapolated_relative_error": 1e-4, "relative_error": 1e-6},
            "width": width, "depth": depth}


def test_figures_and_claims_redraw_from_a_json_round_trip():
    results = json.loads(json.dumps(jsonable(
        {"metrics": _made_up_metrics(), "config": dataclasses.asdict(study.Config.quick())})))
    figs = study.figures(results)
    assert set(figs) == {"solver_order", "width_convergence", "depth_convergence"}
    assert all(isinstance(f, Figure) for f in figs.values())
    ax = figs["width_convergence"].axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log" and "width" in ax.get_xlabel()
    checked = check(study.CLAIMS, results["metrics"])
    assert all_hold(checked) and len(checked) == len(study.CLAIMS)
    assert "identity/salvi 1.95" in checked[0]["text"]
    # a scheme that converges at half its stated order fails only the order claim
    results["metrics"]["orders"]["erf"]["trapezoid"]["observed"] = 1.0
    failed = {c["id"] for c in check(study.CLAIMS, results["metrics"]) if not c["holds"]}
    assert failed == {"pde_scheme_orders"}
    # a Monte Carlo kernel that stops converging fails the rate claim
    results["metrics"]["width"]["erf"]["slope"] = -0.1
    failed = {c["id"] for c in check(study.CLAIMS, results["metrics"]) if not c["holds"]}
    assert failed == {"pde_scheme_orders", "width_rate_n_minus_half"}


def test_config_validation():
    study.Config.quick().validate()
    study.Config.full().validate()
    for bad in (dict(widths=(32, 64)), dict(widths=(64, 32, 128)), dict(depths=(4, 6, 8)),
                dict(order_activations=("swish",)), dict(mc_activations=()),
                dict(max_level=2), dict(n_networks=2), dict(order_paths=9),
                dict(sigma_A=0.0)):
        with pytest.raises(ValueError):
            dataclasses.replace(study.Config.quick(), **bad).validate()


def test_curves_and_observed_order():
    """The curves start at the origin with a time channel t, whatever the sampling; the order
    estimate recovers p from K_l = K + C 2^(-p l) + a smaller term."""
    coef = study.curve_coefficients(np.random.default_rng(0), 3, 2)
    coarse, fine = study.sample_curves(coef, 5, 0.5), study.sample_curves(coef, 17, 0.5)
    assert coarse.shape == (3, 5, 3) and fine.shape == (3, 17, 3)
    np.testing.assert_allclose(coarse[:, 0], 0.0)
    np.testing.assert_allclose(coarse[:, :, 0], np.broadcast_to(np.linspace(0, 1, 5), (3, 5)))
    np.testing.assert_allclose(fine[:, ::4], coarse, atol=1e-15)
    for p in (1.0, 2.0):
        values = [np.full((2, 2), 3.0) + 0.5 * 2.0 ** (-p * lvl) + 0.01 * 2.0 ** (-2 * p * lvl)
                  for lvl in range(8)]
        order, diffs = study.observed_order(values, 3)
        assert order == pytest.approx(p, abs=0.01) and len(diffs) == 7
