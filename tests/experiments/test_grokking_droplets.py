"""Droplets study (Rubin, Seroussi & Ringel 2024): its pieces against independent truths, an
interrupted run that resumes bit for bit, and figures and claims redrawn from made-up metrics
through a JSON round trip. The whole quick study runs in tests/papers/test_verify.py.
"""
import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.figure import Figure
from numpy.polynomial.hermite_e import hermegauss
from scipy.special import erf

from experiments import grokking_droplets as study
from experiments.claims import all_hold, check
from experiments.loop import RunInterrupted
from experiments.records import jsonable
from experiments.runner import run_study
from limits import adaptive_kernel as ak


def test_potential_is_the_negative_log_posterior():
    """Differences of ``U`` between two parameter draws equal those of the negative log
    posterior written out in the original coordinates (Gaussian likelihood of variance
    ``sigma^2`` on the unmasked points, ``w ~ N(0, sigma_w^2 / d)``, ``a ~ N(0, sigma_a^2 / N)``;
    the whitening's Jacobian is a constant)."""
    rng = np.random.default_rng(0)
    d, width, n, noise, sw2, sa2 = 5, 4, 9, 0.7, 0.5, 0.3
    x, y = rng.standard_normal((n, d)), rng.standard_normal(n)
    mask = (np.arange(n) < 6).astype(float)
    scales = (math.sqrt(sw2 / d), math.sqrt(sa2 / width))

    def direct(w, a):
        f = erf(x @ w.T) @ a
        return (np.sum(mask * (f - y) ** 2) / (2 * noise) + np.sum(w ** 2) * d / (2 * sw2)
                + np.sum(a ** 2) * width / (2 * sa2))
    draws = [(rng.standard_normal((width, d)), rng.standard_normal(width)) for _ in range(2)]
    potential = jax.jit(study.potential)
    u = [float(potential((w, a), x, y, mask, scales, noise)) for w, a in draws]
    v = [direct(scales[0] * w, scales[1] * a) for w, a in draws]
    assert u[0] - u[1] == pytest.approx(v[0] - v[1], rel=1e-9)


def test_langevin_without_data_samples_the_prior():
    """With every point masked the stationary law of the unadjusted Langevin algorithm on
    ``U = |theta|^2 / 2`` is Gaussian with variance ``1 / (1 - eta / 2)`` per coordinate (the
    discretised Ornstein-Uhlenbeck process); mean and variance over 200 networks x 400 steps."""
    eta, steps, nets = 0.1, 400, 200
    rng = np.random.default_rng(1)
    kicks = (rng.standard_normal((steps, nets, 3, 2)), rng.standard_normal((steps, nets, 3)))
    x = jnp.zeros((nets, 4, 2))
    theta = (jnp.zeros((nets, 3, 2)), jnp.zeros((nets, 3)))
    run = jax.vmap(study.langevin_steps, in_axes=((0, 0), (1, 1), 0, 0, 0, None, None, None))
    half = steps // 2
    warm = run(theta, (kicks[0][:half], kicks[1][:half]), x, x[..., 0], x[..., 0], (1.0, 1.0),
               1.0, eta)
    out = run(warm, (kicks[0][half:], kicks[1][half:]), x, x[..., 0], x[..., 0], (1.0, 1.0),
              1.0, eta)
    sample = np.concatenate([np.asarray(out[0]).ravel(), np.asarray(out[1]).ravel()])
    target = 1 / (1 - eta / 2)
    assert abs(sample.mean()) < 4 * math.sqrt(target / sample.size)
    assert sample.var() == pytest.approx(target, abs=4 * target * math.sqrt(2 / sample.size))


def test_unit_statistics_are_the_projections_on_the_teacher():
    """``q = w . w*`` and ``a E[He_k(z) erf(w . x)]`` for ``k = 1, 3``, against 2-D Gauss-Hermite
    quadrature in the plane of ``w*`` and ``w``."""
    rng = np.random.default_rng(2)
    w_star = rng.standard_normal(6)
    w_star /= np.linalg.norm(w_star)
    w, a = 0.5 * rng.standard_normal((3, 6)), rng.standard_normal(3)
    q, lin, cub = (np.asarray(v) for v in jax.jit(study.unit_statistics)(w, a, w_star))
    nodes, weights = hermegauss(60)
    weights = weights / weights.sum()
    z, v = np.meshgrid(nodes, nodes, indexing="ij")
    ww = np.outer(weights, weights)
    for i in range(3):
        qi = w[i] @ w_star
        perp = math.sqrt(w[i] @ w[i] - qi * qi)
        act = erf(qi * z + perp * v)
        assert q[i] == pytest.approx(qi, abs=1e-12)
        assert lin[i] == pytest.approx(a[i] * np.sum(ww * z * act), abs=1e-10)
        assert cub[i] == pytest.approx(a[i] * np.sum(ww * (z ** 3 - 3 * z) * act), abs=1e-10)


def test_nngp_kernel_is_the_prior_covariance():
    """The arcsine NNGP against Monte Carlo of ``sigma_a^2 E_w[erf(w . x) erf(w . x')]`` over
    ``w ~ N(0, sigma_w^2 / d I)`` (100,000 draws; error a few standard errors)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 7))
    sw2, sa2 = 0.5, 0.12
    w = rng.standard_normal((100_000, 7)) * math.sqrt(sw2 / 7)
    feats = erf(w @ x.T)                                          # (S, 3)
    mc = sa2 * feats.T @ feats / len(w)
    sem = sa2 * np.sqrt((feats.T ** 2 @ feats ** 2 / len(w) - (feats.T @ feats / len(w)) ** 2)
                        / len(w))
    assert np.max(np.abs(study.nngp_kernel(x, x, sw2, sa2) - mc) / sem) < 5


@pytest.mark.slow
def test_nngp_kernel_is_ntk_stax():
    """The arcsine NNGP against :mod:`ntk.stax`'s ``Dense(sigma_w) -> Erf -> Dense(sigma_a)``."""
    from ntk import stax
    rng = np.random.default_rng(3)
    x1, x2 = rng.standard_normal((5, 7)), rng.standard_normal((4, 7))
    sw2, sa2 = 0.5, 0.12
    _, _, kernel_fn = stax.serial(stax.Dense(16, W_std=math.sqrt(sw2)), stax.Erf(),
                                  stax.Dense(1, W_std=math.sqrt(sa2)))
    np.testing.assert_allclose(study.nngp_kernel(x1, x2, sw2, sa2),
                               np.asarray(kernel_fn(x1, x2, "nngp")), rtol=1e-10, atol=1e-12)


def test_population_error_by_hermite_orthogonality():
    """For ``g = beta1 He1 + beta3 He3``: ``E (g - y)^2 = (beta1 - 1)^2 + 6 (beta3 -
    epsilon)^2``, from ``E g^2 = beta1^2 + 6 beta3^2`` and ``E[g y] = beta1 + 6 beta3 epsilon``."""
    b1, b3, eps = 0.4, -0.2, -1.2
    assert study.population_error(b1 ** 2 + 6 * b3 ** 2, b1 + 6 * b3 * eps, eps) == \
        pytest.approx((b1 - 1) ** 2 + 6 * (b3 - eps) ** 2, rel=1e-12)


def _signed_histogram(samples):
    edges = np.linspace(-study.OVERLAP_RANGE, study.OVERLAP_RANGE, study.BINS + 1)
    return np.histogram(samples, edges)[0]


def test_second_mode_finds_the_droplets_and_not_a_gaussian_tail():
    rng = np.random.default_rng(4)
    gauss = 0.15 * rng.standard_normal(40_000)
    drops = 1.1 * rng.choice([-1, 1], 4000) + 0.1 * rng.standard_normal(4000)
    centres, dens = study.folded_density(_signed_histogram(np.concatenate([gauss, drops])))
    assert np.sum(dens) * (centres[1] - centres[0]) == pytest.approx(1.0)
    mode, contrast = study.second_mode(centres, dens)
    assert mode == pytest.approx(1.1, abs=0.06) and contrast > 10
    mode, contrast = study.second_mode(*study.folded_density(_signed_histogram(gauss)))
    assert math.isnan(mode) and math.isnan(contrast)


def test_theory_binned_is_the_mean_field_law_of_abs_q():
    problem = ak.TeacherStudent(20, 32, 1.0, 0.12, 0.5, -1.2)
    mf = ak.mean_field(problem, 2 * ak.critical_samples(problem))
    dens = study.theory_binned(mf)
    width = 2 * study.OVERLAP_RANGE / study.BINS
    centres = (np.arange(study.BINS // 2) + 0.5) * width
    assert np.sum(dens) * width == pytest.approx(1.0, abs=1e-6)
    assert np.sum(dens[centres > study.SPECIALIZED]) * width == pytest.approx(
        mf.specialized_fraction(study.SPECIALIZED), abs=1e-4)   # two quadratures of one law


def test_half_crossing_interpolates_in_log_n():
    assert study._half_crossing([0.5, 1.0, 2.0], [0.0, 0.05, 0.1]) == pytest.approx(1.0)
    # half of 0.1 is a third of the way from 0.025 to 0.1: n / n_c = 2^(1/3)
    assert study._half_crossing([0.5, 1.0, 2.0], [0.0, 0.025, 0.1]) == pytest.approx(2 ** (1 / 3))
    assert study._half_crossing([0.5, 1.0, 2.0], [0.2, 0.3, 0.3]) == 0.5   # already above


def test_data_and_hot_start():
    cfg = dataclasses.replace(study.Config.quick(), input_dim=6, width=4, chains=3, hot_chains=2)
    ns = [10, 20, 40]
    data = study.make_data(cfg, ns)
    assert data["x"].shape == (3 * 3 + 2, 40, 6)
    assert data["mask"].sum(1).tolist() == [10] * 3 + [20] * 3 + [40] * 3 + [40] * 2
    np.testing.assert_array_equal(data["x"][1], data["x"][7])      # nested over n per chain
    np.testing.assert_array_equal(data["x"][9], data["x"][6])      # hot chains reuse data
    y = study.teacher(data["x"][0].astype(float), data["w_star"], cfg.epsilon)
    np.testing.assert_allclose(data["y"][0], y, rtol=1e-5, atol=1e-4)
    state = study.init_state(cfg, 11, data["w_star"])
    q = np.asarray(state["w_hat"]) @ data["w_star"] * math.sqrt(cfg.weight_variance / 6)
    np.testing.assert_allclose(q[9:, :2], 1.0, rtol=1e-5)
    assert np.all(np.abs(q[:9]) < 1.0)


@pytest.mark.slow
def test_an_interrupted_run_resumes_to_identical_results(tmp_path):
    """Killed in the measurement phase, the run resumes from both checkpoints (the Langevin
    kicks are drawn from the chunk counter kept in the state) to the same metrics."""
    tiny = ["input_dim=6", "width=6", "chains=2", "hot_chains=1", "burn_in=40", "steps=60",
            "record_every=20", "n_test=50", "theory_points=3", "checkpoint_every=1"]
    full = run_study("grokking_droplets", overrides=tiny, out=tmp_path / "a", progress=False)
    with pytest.raises(RunInterrupted):
        run_study("grokking_droplets", overrides=tiny, out=tmp_path / "b", progress=False,
                  interrupt_after_steps=80)
    resumed = run_study("grokking_droplets", overrides=tiny, out=tmp_path / "b",
                        progress=False)
    assert resumed["resumed_tasks"] == ["burn-in", "measure"]
    assert resumed["metrics"] == full["metrics"]


def _made_up_metrics():
    ratios = [0.5, 1.0, 2.0]
    centres = ((np.arange(study.BINS // 2) + 0.5) * 2 * study.OVERLAP_RANGE / study.BINS)
    gauss = np.exp(-centres ** 2 / 0.05)
    per_n = []
    for i, (r, frac) in enumerate(zip(ratios, [0.004, 0.05, 0.09])):
        drop = frac * np.exp(-(centres - 1.2) ** 2 / 0.02) if r > 0.6 else 0 * centres
        dens = (gauss + 10 * drop) / np.sum(gauss + 10 * drop) / (centres[1] - centres[0])
        per_n.append({
            "n": int(150 * r), "ratio": r, "interaction": 4.2 * r * r, "gp_ratio": 0.9 * r,
            "fraction": frac, "fraction_sem": 0.005, "fraction_per_chain": [frac] * 4,
            "histogram": (1000 * dens).tolist() * 2, "density": dens, "mode": 1.2 if r > 1 else
            math.nan, "mode_contrast": 15.0 if r > 1 else math.nan,
            "test_error": 9.5 - 1.0 * i, "test_error_sem": 0.1, "linear_learned": 0.2 * (i + 1),
            "cubic_learned": [0.001, 0.01, 0.08][i], "cubic_learned_sem": 0.004,
            "nngp_test_error": 9.6 - 0.2 * i, "theory_fraction": frac + 0.01,
            "theory_density": dens, "theory_mode": 1.3 if r > 1 else math.nan, "theory_b": 0.5,
            "theory_c": -1.1, "theory_test_error": 9.3 - 1.0 * i,
            "theory_linear_learned": 0.3 * (i + 1), "theory_cubic_learned": [0.002, 0.015,
                                                                               0.085][i],
            "large_d_phase": "GFL" if r <= 1 else "GMFL-I",
            "large_d_fraction": 0.0 if r <= 1 else 0.09, "large_d_overlap": 1.4})
    curve_r = np.geomspace(0.3, 2.0, 5)
    trace_steps = [0, 50, 100]
    return {
        "critical_samples": 150.0, "critical_interaction": 4.2, "critical_gp_ratio": 0.9,
        "onset_overlap": 1.0, "input_dim": 20, "width": 32, "epsilon": -1.2,
        "sample_ratios": ratios, "n_samples": [75, 150, 300], "per_n": per_n,
        "bin_centres": centres, "fraction_below": 0.004, "fraction_jump": 22.5,
        "transition_ratio": 1.0, "droplet_mode": 1.2, "droplet_contrast": 15.0,
        "mixed_fractions": [0.09], "fraction_hot": 0.095, "fraction_cold_paired": 0.09,
        "hot_minus_cold": 0.005, "cubic_below": 0.001, "cubic_above": 0.08,
        "test_error_ratio": 0.79, "nngp_ratio": 0.82, "theory_fraction_excess": 0.0,
        "theory_cubic_excess": -0.002, "theory_error_gap": 0.05,
        "curve": {"ratio": curve_r, "fraction": 0.05 * curve_r, "test_error": 9 - curve_r,
                  "cubic_learned": 0.04 * curve_r, "linear_learned": 0.4 * curve_r,
                  "large_d_fraction": [0, 0, 0, 0.05, 0.09],
                  "large_d_overlap": [math.nan] * 3 + [1.1, 1.4],
                  "large_d_test_error": 9 - curve_r, "large_d_cubic_learned": 0.04 * curve_r},
        "trace": {"step": trace_steps, "fraction_n0": [0, 0.01, 0.0],
                  "fraction_n1": [0, 0.05, 0.04], "fraction_n2": [0, 0.08, 0.09],
                  "fraction_hot": [0.5, 0.12, 0.1]},
    }


def test_figures_and_claims_redraw_from_a_json_round_trip():
    results = json.loads(json.dumps(jsonable(
        {"metrics": _made_up_metrics(), "config": dataclasses.asdict(study.Config.quick())})))
    figs = study.figures(results)
    assert set(figs) == {"overlap_distribution", "order_parameter", "learning"}
    assert all(isinstance(f, Figure) for f in figs.values())
    assert "log p" in figs["overlap_distribution"].axes[0].get_ylabel()
    assert "n / n_c" in figs["order_parameter"].axes[0].get_xlabel()
    checked = check(study.CLAIMS, results["metrics"])
    assert all_hold(checked) and len(checked) == len(study.CLAIMS)
    m = results["metrics"]
    m["fraction_below"] = 0.05                    # droplets below the transition: GFL fails
    m["hot_minus_cold"] = 0.2                     # the hot start stays hot: not equilibrium
    m["droplet_mode"] = 0.55                      # a continuous (second-order) onset
    failed = {c["id"] for c in check(study.CLAIMS, m) if not c["holds"]}
    assert failed == {"gfl_below_transition", "droplet_fraction_is_equilibrium",
                      "droplets_at_finite_overlap"}


def test_config_validation():
    study.Config.quick().validate()
    study.Config.full().validate()
    for bad in (dict(sample_ratios=(1.0, 2.0)), dict(sample_ratios=(1.2, 1.5, 2.0)),
                dict(sample_ratios=(0.5, 0.8, 0.9)), dict(epsilon=0.3), dict(hot_chains=9),
                dict(steps=1010), dict(noise=0.0), dict(theory_points=2), dict(chains=0)):
        with pytest.raises(ValueError):
            dataclasses.replace(study.Config.quick(), **bad).validate()
