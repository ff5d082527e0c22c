"""Coordinate-check / learning-rate-transfer study (Tensor Programs V): its own pieces.

The coordinate checks and sweeps themselves are tested in tests/limits and the whole quick
study by tests/papers/test_verify.py; here: the slope summary on synthetic power laws, the
octave conversion, the figures from JSON results, config validation and the claim logic.
"""
import dataclasses
import json

import numpy as np
import pytest

from experiments import config as configlib
from experiments import coord_check as cc
from experiments.claims import check
from experiments.records import jsonable
from limits.scaling import loglog_slope
from limits.transfer import TransferConfig


def _fake_coord_result(widths, exponents, n_steps=3, n_seeds=2):
    """A coord_check-shaped result whose sizes are exact power laws ``c n^e[layer][t]``
    (``e = None``: the quantity is zero at every width, as a zero readout's output at t=0)."""
    widths = np.asarray(widths, float)
    out = {"widths": list(widths.astype(int)), "steps": list(range(n_steps + 1)),
           "parametrization": "fake", "size": {}, "update": {}, "size_slope": {},
           "update_slope": {}, "loss": np.ones((n_seeds, len(widths), n_steps + 1))}
    for name, per_step in exponents.items():
        arr = np.zeros((n_seeds, len(widths), n_steps + 1))
        for t, e in enumerate(per_step):
            if e is not None:
                arr[:, :, t] = 0.7 * widths ** e
        for key in ("size", "update"):
            out[key][name] = arr
            out[f"{key}_slope"][name] = loglog_slope(widths, arr.mean(0), axis=0)
    return out


def test_max_abs_slope_of_synthetic_power_laws_ignores_undefined_slopes():
    exps = {"layer_1": [0.0, None, 0.03, -0.06], "layer_2": [0.0, None, 0.02, 0.01],
            "output": [None, 1.0, 0.05, -0.09]}
    r = _fake_coord_result((64, 256, 1024), exps)
    m = cc._coord_metrics(r)
    assert np.isnan(m["update_slope"]["output"][0])
    assert cc.max_abs_slope(m["update_slope"], range(2, 4)) == pytest.approx(0.09, abs=1e-12)
    assert cc.max_abs_slope(m["size_slope"], range(1, 4)) == pytest.approx(1.0, abs=1e-12)
    assert cc.max_abs_slope(m["size_slope"], [0]) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="no finite slope"):
        cc.max_abs_slope({"output": [np.nan, np.nan]}, [0, 1])


def test_octaves_per_grid_step():
    assert cc.octaves_per_step(cc.Config().learning_rates) == pytest.approx(1.0)
    assert cc.octaves_per_step(TransferConfig.full().learning_rates) == pytest.approx(0.5)
    assert cc.octaves_per_step((1e-3, 1e-2, 1e-1)) == pytest.approx(np.log2(10))


def test_side_by_side_merges_layers_under_their_labels():
    sp = _fake_coord_result((64, 128, 256), {"layer_1": [0.0, 0.0], "output": [None, 1.0]},
                            n_steps=1)
    mu = _fake_coord_result((64, 128, 256), {"layer_1": [0.0, 0.0], "output": [None, 0.0]},
                            n_steps=1)
    both = cc.side_by_side({"SP": sp, "muP": mu})
    assert sorted(both["update_slope"]) == ["SP layer_1", "SP output", "muP layer_1",
                                            "muP output"]
    assert both["update_slope"]["muP output"][1] == pytest.approx(0.0, abs=1e-12)
    assert both["size"]["SP output"] is sp["size"]["output"]


def _fake_results():
    """Results of a quick-config run with synthetic coordinate checks and sweeps, read back
    from JSON (NaN slopes and an infinite loss included)."""
    cfg = cc.Config(n_steps=1)
    widths, tw = cfg.widths, cfg.transfer_widths
    n_lr = len(cfg.learning_rates)
    metrics = {"widths": list(widths), "steps": [0, 1], "transfer_widths": list(tw),
               "learning_rates": list(cfg.learning_rates), "octaves_per_grid_step": 1.0}
    for label, exponent, shift in (("sp", 1.0, 3), ("mup", 0.0, 0)):
        r = _fake_coord_result(widths, {"layer_1": [0.0, 0.0], "output": [None, exponent]},
                               n_steps=1)
        loss = [[1.0 + (k - 6 + shift * i) ** 2 for k in range(n_lr)] for i in range(len(tw))]
        loss[0][-1] = float("inf")
        metrics[label] = {"parametrization": label, **cc._coord_metrics(r),
                          "mean_loss": loss, "argmin": [6 - shift * i for i in range(len(tw))],
                          "shift_octaves": float(shift * (len(tw) - 1)),
                          "worst_widening_ratio": 0.5}
    metrics["mup_max_abs_slope"] = 0.0
    metrics["sp_output_update_slope_step1"] = 1.0
    return json.loads(json.dumps(jsonable(
        {"study": "coord_check", "config": configlib.to_dict(cfg), "metrics": metrics})))


def test_figures_redraw_from_json_results():
    from matplotlib.figure import Figure
    figs = cc.figures(_fake_results())
    assert list(figs) == ["coord_check", "lr_transfer"]
    assert all(isinstance(f, Figure) for f in figs.values())
    # SP and muP in the same coordinate-check panels: 2 parametrizations x 2 layers per panel
    panel = figs["coord_check"].axes[1]
    assert len(panel.get_lines()) == 4


@pytest.mark.parametrize("field,value", [
    ("optimizer", "lion"), ("widths", (64, 64, 256)), ("widths", (64, 256)),
    ("transfer_widths", (16, 8)), ("learning_rates", (0.1, 0.01, 0.001)),
    ("learning_rates", (0.001, 0.002, 0.008)), ("n_steps", 0), ("n_coord_seeds", 0),
    ("learning_rate", 0.0),
])
def test_config_validation_names_the_field(field, value):
    cfg = dataclasses.replace(cc.Config(), **{field: value})
    with pytest.raises(ValueError, match=field):
        cfg.validate()
    cc.Config.quick().validate()
    cc.Config.full().validate()


def test_claims_follow_the_measured_numbers():
    good = {"widths": [64, 256, 1024], "steps": [0, 1, 2], "transfer_widths": [16, 64, 256],
            "mup_max_abs_slope": 0.03, "sp_output_update_slope_step1": 1.0,
            "mup": {"shift_octaves": 1.0, "worst_widening_ratio": 0.5},
            "sp": {"shift_octaves": 3.0}}
    assert [c["holds"] for c in check(cc.CLAIMS, good)] == [True] * 5
    bad = {**good, "mup_max_abs_slope": 0.2, "sp_output_update_slope_step1": 0.3,
           "mup": {"shift_octaves": 2.0, "worst_widening_ratio": 1.0},
           "sp": {"shift_octaves": 1.0}}
    assert [c["holds"] for c in check(cc.CLAIMS, bad)] == [False] * 5
    assert [c["holds"] for c in check(cc.CLAIMS, _fake_results()["metrics"])] == [True] * 5
