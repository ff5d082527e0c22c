"""Finite-width corrections study (Roberts, Yaida & Hanin): its extrapolation against a known
law, figures and claims redrawn from made-up metrics through a JSON round trip, the config's
validation, and (slow: three runs with their figures) an interrupted run resuming identically.
The whole quick study runs in tests/papers/test_verify.py."""
import dataclasses
import json
import math

import numpy as np
import pytest
from matplotlib.figure import Figure

from experiments import finite_width_corrections as study
from experiments.claims import all_hold, check
from experiments.loop import RunInterrupted
from experiments.records import jsonable
from experiments.runner import run_study
from limits import dntk
from limits import finite_width as fw


def _cells(name, widths, depths, law, se=0.01):
    """Cells whose measured values are ``law(width, depth) x leading order``."""
    coef = study.coefficients(name, max(depths))
    cells = []
    for n in widths:
        for d in depths:
            if d / n > 0.25:
                continue
            cell = {"width": n, "depth": d, "ratio": d / n}
            for obs in study.OBSERVABLES:
                lo = float(coef[obs][d - 1]) / n
                cell[f"{obs}_lo"] = lo
                cell[obs] = law(n, d) * lo
                cell[f"{obs}_se"] = se * lo
            cell["ntk_mean"] = cell["ntk_mean_limit"] = float(coef["ntk"][d - 1])
            cell["ntk_log_second_moment_per_ratio"] = math.log1p(cell["ntk_variance"]) * n / d
            if name == "relu":
                cell["kurtosis_exact"] = cell["kurtosis"]
            cells.append(cell)
    return cells, coef


def test_extrapolation_recovers_rho0_and_the_slope():
    """``rho = 1.02 + 2.5 (L - 2) / n``: the fit returns ``rho0 = 1.02`` at every depth with
    three widths in the regime, and the slope is ``1.02`` times the leading-order one."""
    law = lambda n, d: 1.02 + 2.5 * (d - 2) / n
    cells, coef = _cells("relu", (32, 64, 128, 256), (2, 4, 8, 16), law)
    fit = study.extrapolate(cells, "kurtosis", coef)
    assert fit["depths"] == [2, 4, 8]                      # L = 16 has two widths with L/n<=1/8
    np.testing.assert_allclose(fit["rho0"], 1.02, atol=1e-12)
    np.testing.assert_allclose(fit["c"], [0.0, 5.0, 15.0], atol=1e-9)
    assert fit["slope_depths"] == [4, 8]
    assert fit["slope"] == pytest.approx(1.02 * 15.0)      # ReLU: 15 per unit L exactly
    assert fit["slope_lo"] == pytest.approx(15.0)
    assert 0 < fit["slope_se"] < 0.1 * fit["slope"]


def _dntk_cells(name, widths, depths, law, rel_se=0.03):
    """dNTK cells whose mean relative change is ``law(width, depth)``."""
    cells = []
    for n in widths:
        for d in depths:
            if d / n > study.DNTK_MAX_RATIO:
                continue
            value = law(n, d)
            cell = {"width": n, "depth": d, "ratio": d / n, "dntk": value,
                    "dntk_se": rel_se * abs(value), "dntk_sd": 10 * rel_se * abs(value),
                    "one_step": value, "one_step_se": rel_se * abs(value), "ntk_mean": 1.0,
                    "ntk_limit": 1.0}
            if name == "linear":
                cell["dntk_lo"] = float(dntk.deep_linear_dntk_mean(d, n))
            cells.append(cell)
    return cells


def _dntk_metrics(widths, depths, laws):
    out = {"widths": list(widths), "depths": list(depths), "n_samples": 1000,
           "max_ratio": study.DNTK_MAX_RATIO, "activations": {}}
    for name in study.DNTK_ACTIVATIONS:
        out["activations"][name] = study.dntk_entry(
            name, _dntk_cells(name, widths, depths, laws[name]))
    return study.dntk_compare(out)


_L_OVER_N = {"relu": lambda n, d: -1.9 * d / n, "tanh": lambda n, d: 0.22 * d / n,
             "linear": lambda n, d: float(dntk.deep_linear_dntk_mean(d, n))}


def test_dntk_fits_recover_known_laws():
    """``E r = c L^a / n^b``: the common width slope is ``-b`` and the depth exponent ``a``."""
    cells = _dntk_cells("relu", (32, 64, 128, 256), (2, 4, 8, 16),
                        lambda n, d: -1.3 * d ** 1.2 / n ** 0.9)
    fit = study.dntk_width_slope(cells)
    assert fit["depths"] == [2, 4, 8, 16]                  # L = 16 has widths 128 and 256
    assert fit["slope"] == pytest.approx(-0.9, abs=1e-9)
    assert 0 < fit["slope_se"] < 0.05
    depth = study.dntk_depth_exponent(cells)
    assert depth["width"] == 256 and depth["depths"] == [8, 16]
    assert depth["exponent"] == pytest.approx(1.2, abs=1e-9)
    assert depth["exponent_se"] == pytest.approx(math.sqrt(2) * 0.03 / math.log(2))


def _made_up_metrics():
    cfg = study.Config.quick()
    out = {"widths": list(cfg.widths), "depths": list(cfg.depths), "n_samples": cfg.n_samples,
           "max_ratio": cfg.max_ratio, "fit_ratio": study.FIT_RATIO,
           "dense_cell": list(study.DENSE_CELL),
           "book_slopes": {a: dict(fw.ASYMPTOTIC_SLOPES[a]) for a in study.ACTIVATIONS},
           "activations": {}}
    for name in study.ACTIVATIONS:
        cells, coef = _cells(name, cfg.widths, cfg.depths, lambda n, d: 1 + (d - 2) / n)
        fits = {o: study.extrapolate(cells, o, coef) for o in study.OBSERVABLES}
        for o in study.OBSERVABLES:
            fits[o]["slope_over_book"] = fits[o]["slope"] / fw.ASYMPTOTIC_SLOPES[name][o]
        entry = dict(study.SETTINGS[name], cells=cells, fits=fits,
                     coefficients={k: list(v) for k, v in coef.items()},
                     dense_check={o: {"dense": 0.1, "rotated": 0.1, "z": 0.5}
                                  for o in study.OBSERVABLES})
        if name == "relu":
            entry["kurtosis_exact_z"] = [0.5] * len(cells)
        out["activations"][name] = entry
    out["tanh_over_relu_slope"] = {
        o: out["activations"]["tanh"]["fits"][o]["slope"]
        / out["activations"]["relu"]["fits"][o]["slope"] for o in study.OBSERVABLES}
    out["dntk"] = _dntk_metrics(cfg.dntk_widths, cfg.dntk_depths, _L_OVER_N)
    return out


def test_figures_and_claims_redraw_from_a_json_round_trip():
    results = json.loads(json.dumps(jsonable(
        {"metrics": _made_up_metrics(), "config": dataclasses.asdict(study.Config.quick())})))
    figs = study.figures(results)
    assert set(figs) == {"collapse", "leading_order", "dntk"}
    assert all(isinstance(f, Figure) for f in figs.values())
    ax = figs["collapse"].axes[0]
    assert "L / n" in ax.get_xlabel() and "kurtosis" in ax.get_ylabel()
    checked = check(study.CLAIMS, results["metrics"])
    assert len(checked) == len(study.CLAIMS) == 19
    assert all_hold(checked), [c["id"] for c in checked if not c["holds"]]
    assert "depths [2, 4]" in checked[0]["text"] and "widths 32-128" in checked[0]["text"]
    # an NTK variance growing like exp(5 L/n) - 1 (slope 5) fails the ReLU NTK claims only
    m = results["metrics"]
    fit = m["activations"]["relu"]["fits"]["ntk_variance"]
    fit["slope"], fit["slope_over_book"] = 5.0, 5.0 / (11 / 3)
    m["tanh_over_relu_slope"]["ntk_variance"] = 0.15
    failed = {c["id"] for c in check(study.CLAIMS, m) if not c["holds"]}
    assert failed == {"relu_ntk_variance_slope", "relu_ntk_slope_below_hanin_nica"}
    # a dNTK falling like 1/sqrt(n), or growing like L^2 / n, fails its claims
    m = json.loads(json.dumps(jsonable(_made_up_metrics())))
    laws = dict(_L_OVER_N, relu=lambda n, d: -1.9 * d / n ** 0.5, tanh=lambda n, d: d * d / n)
    m["dntk"] = _dntk_metrics((16, 32, 64), (2, 4), laws)
    failed = {c["id"] for c in check(study.CLAIMS, m) if not c["holds"]}
    assert failed == {"relu_dntk_one_over_width", "tanh_dntk_grows_like_depth"}
    m["dntk"] = _dntk_metrics((16, 32, 64), (2, 4), dict(
        _L_OVER_N, linear=lambda n, d: 1.3 * float(dntk.deep_linear_dntk_mean(d, n))))
    failed = {c["id"] for c in check(study.CLAIMS, m) if not c["holds"]}
    assert failed == {"linear_dntk_matches_derivation"}


def test_config_validation():
    study.Config.quick().validate()
    study.Config.full().validate()
    for bad in (dict(widths=(32,)), dict(widths=(64, 32, 128)), dict(depths=(1, 2)),
                dict(widths=(4, 8, 16)), dict(max_ratio=0.0), dict(n_samples=10),
                dict(widths=(32, 64, 128), depths=(2, 16)), dict(dntk_samples=10),
                dict(dntk_depths=(1, 2)), dict(dntk_widths=(16, 24)),
                dict(dntk_widths=(8, 64), dntk_depths=(2, 8))):
        with pytest.raises(ValueError):
            dataclasses.replace(study.Config.quick(), **bad).validate()


def test_leading_order_coefficients_are_the_closed_forms():
    relu = study.coefficients("relu", 8)
    np.testing.assert_allclose(relu["kurtosis"], 3 * fw.scale_invariant_four_point(8),
                               atol=1e-12)
    np.testing.assert_allclose(relu["ntk_variance"], fw.scale_invariant_ntk_variance(8),
                               atol=1e-12)


@pytest.mark.slow
def test_interrupted_run_resumes_identically(tmp_path):
    over = ["n_samples=300", "dense_samples=100", "dntk_samples=100"]
    full = run_study("finite_width_corrections", overrides=over, out=tmp_path / "a",
                     progress=False)
    with pytest.raises(RunInterrupted):
        run_study("finite_width_corrections", overrides=over, out=tmp_path / "b",
                  progress=False, interrupt_after_steps=2)
    resumed = run_study("finite_width_corrections", overrides=over, out=tmp_path / "b",
                        progress=False)
    assert resumed["resumed_tasks"] == ["dntk-relu-width16", "dntk-relu-width32"]
    strip = lambda r: {k: r[k] for k in ("config", "metrics")}
    assert strip(resumed) == strip(full)
