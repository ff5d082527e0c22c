"""Criticality: maps and fixed points against Monte Carlo of deep finite networks, closed
forms, and the known asymptotics (ReLU 9 pi^2 / (2 l^2), tanh 1 / (2 l))."""
import numpy as np
import pytest

from limits import criticality as C
from limits.scaling import loglog_slope


@pytest.mark.parametrize("activation,sw2,sb2", [
    ("tanh", 1.5, 0.05), ("erf", 1.2, 0.1), ("relu", 1.5, 0.1), ("tanh", 2.5, 0.1),
])
def test_q_star_and_chi_1_match_monte_carlo(activation, sw2, sb2):
    qs = C.q_star(sw2, sb2, activation)
    mc = C.simulate_deep_network(sw2, sb2, activation, width=512, depth=30, q0=qs,
                                 n_samples=4, seed=1)
    q_mc = mc["q"][:, 10:].ravel()
    chi_mc = mc["chi"][:, 10:].ravel()
    # layers are correlated; a generous 4 naive standard errors plus the 1/width bias
    assert abs(q_mc.mean() - qs) < 4 * q_mc.std() / np.sqrt(q_mc.size) + 0.02 * qs
    x1 = C.chi_1(sw2, sb2, activation)
    assert abs(chi_mc.mean() - x1) < 4 * chi_mc.std() / np.sqrt(chi_mc.size) + 0.02 * x1


def test_closed_forms():
    # ReLU: q* = sigma_b^2 / (1 - sigma_w^2 / 2), chi_1 = sigma_w^2 / 2
    assert C.q_star(1.5, 0.1, "relu") == pytest.approx(0.4)
    assert C.chi_1(1.5, 0.1, "relu") == 0.75
    # erf: E[erf(u1) erf(u2)] = (2/pi) arcsin(2 q c / (1 + 2 q))  (Williams 1997)
    q, c = 0.7, 0.3
    expect = 2 / np.pi * np.arcsin(2 * q * c / (1 + 2 * q))
    assert C.correlation_map(c, q, 1.0, 0.0, "erf") * q == pytest.approx(expect, rel=1e-10)
    # quadrature vs the ReLU closed form at an arbitrary length
    relu = C.SignalActivation("relu-quad", lambda u: np.maximum(u, 0),
                              lambda u: (u > 0) * 1.0, lambda u: 0 * u)
    assert C.length_map(0.9, 2.0, 0.0, relu, deg=151) == pytest.approx(0.9, rel=1e-2)
    # tanh at sigma_b = 0: critical exactly at sigma_w^2 = 1; erf at pi / 4
    assert C.edge_of_chaos(0.0, "tanh") == pytest.approx(1.0, abs=1e-6)
    assert C.edge_of_chaos(0.0, "erf") == pytest.approx(np.pi / 4, abs=1e-6)
    assert C.edge_of_chaos(0.0, "relu") == 2.0


@pytest.mark.parametrize("activation", ["tanh", "erf"])
def test_critical_line_is_critical_in_finite_networks(activation):
    for sb2 in (0.05, 0.3):
        sw2 = C.edge_of_chaos(sb2, activation)
        assert C.chi_1(sw2, sb2, activation) == pytest.approx(1.0, abs=1e-9)
        growth = {}
        for label, w in (("ordered", sw2 * 0.7), ("critical", sw2), ("chaotic", sw2 * 1.5)):
            mc = C.simulate_deep_network(w, sb2, activation, width=400, depth=20,
                                         q0=C.q_star(w, sb2, activation), n_samples=2, seed=2)
            growth[label] = mc["chi"][:, 5:].mean()
        assert growth["critical"] == pytest.approx(1.0, abs=0.04)
        assert growth["ordered"] < 0.95 and growth["chaotic"] > 1.05
    # the tanh critical line rises with sigma_b^2 (Poole et al. 2016, Fig. 1)
    line = C.edge_of_chaos(np.array([0.0, 0.05, 0.1, 0.3]), activation)
    assert np.all(np.diff(line) > 0)


@pytest.mark.parametrize("activation,sw2,sb2", [
    ("tanh", 1.0, 0.3), ("tanh", 2.5, 0.1), ("erf", 1.2, 0.1), ("relu", 1.5, 0.1),
])
def test_depth_scales_match_the_decay_of_the_maps(activation, sw2, sb2):
    d = C.depth_scales(sw2, sb2, activation)
    # correlation: |c^l - c*| ~ exp(-l / xi_c)
    c = 0.2 if d["c_star"] > 0.999 else d["c_star"] + 0.02
    gaps = []
    for _ in range(40):
        c = float(C.correlation_map(c, d["q_star"], sw2, sb2, activation))
        gaps.append(abs(c - d["c_star"]))
    gaps = np.array(gaps)
    keep = (gaps > 1e-8) & (np.arange(40) >= 10)
    slope = np.polyfit(np.arange(40)[keep], np.log(gaps[keep]), 1)[0]
    assert slope == pytest.approx(-1 / d["xi_c"], rel=0.05)
    # length: |q^l - q*| ~ exp(-l / xi_q)
    q, gaps = d["q_star"] + 0.3, []
    for _ in range(25):
        q = float(C.length_map(q, sw2, sb2, activation))
        gaps.append(abs(q - d["q_star"]))
    gaps = np.array(gaps)
    keep = (gaps > 1e-11) & (np.arange(25) >= 3)
    slope = np.polyfit(np.arange(25)[keep], np.log(gaps[keep]), 1)[0]
    assert slope == pytest.approx(-1 / d["xi_q"], rel=0.05)


def test_correlation_map_matches_monte_carlo():
    sw2, sb2 = 2.5, 0.1
    qs = C.q_star(sw2, sb2, "tanh")
    mc = C.simulate_deep_network(sw2, sb2, "tanh", width=1000, depth=8, q0=qs, c0=0.95,
                                 n_samples=6, seed=3)
    c = 0.95
    for l in range(8):
        c = float(C.correlation_map(c, qs, sw2, sb2, "tanh"))
        vals = mc["c"][:, l]
        assert abs(vals.mean() - c) < 4 * vals.std() / np.sqrt(vals.size) + 0.01


def test_relu_critical_correlation_power_law():
    c, gaps = 0.5, []
    for _ in range(10_000):
        c = float(C.relu_correlation_map(c))
        gaps.append(1 - c)
    layers = np.arange(1, 10_001)
    gaps = np.array(gaps)
    assert loglog_slope(layers[999:], gaps[999:]) == pytest.approx(-2.0, abs=0.02)
    assert gaps[-1] * 10_000 ** 2 == pytest.approx(9 * np.pi ** 2 / 2, rel=0.01)
    # and finite networks follow the map (width 1000, 10 layers; the finite-width
    # correction grows like depth / width and is ~20% by layer 30)
    mc = C.simulate_deep_network(2.0, 0.0, "relu", width=1000, depth=10, c0=0.5,
                                 n_samples=12, seed=4)
    one_minus = 1 - mc["c"]
    for l in (1, 4, 9):
        se = one_minus[:, l].std() / np.sqrt(one_minus.shape[0])
        assert abs(one_minus[:, l].mean() - gaps[l]) < 4 * se + 0.02 * gaps[l], l


def test_relu_off_criticality_is_exponential():
    d = C.depth_scales(1.5, 0.1, "relu")
    assert d["c_star"] == pytest.approx(1.0, abs=1e-9)
    assert d["chi_c"] == pytest.approx(0.75, rel=1e-5)
    assert d["xi_c"] == pytest.approx(-1 / np.log(0.75), rel=1e-5)


def test_tanh_critical_length_decays_like_one_over_2l():
    q = 1.0
    for _ in range(10_000):
        q = float(C.length_map(q, 1.0, 0.0, "tanh"))
    assert 2 * 10_000 * q == pytest.approx(1.0, abs=2e-3)


def test_phase_diagram_figure(tmp_path):
    d = C.phase_diagram("tanh", np.linspace(0.5, 3, 6), np.array([0.0, 0.1]))
    assert d["chi_1"].shape == (2, 6)
    path = tmp_path / "phase.png"
    fig = C.plot_phase_diagram(sigma_w2=np.linspace(0.5, 3, 6),
                               sigma_b2=np.array([0.0, 0.1, 0.2]), path=path)
    assert path.exists() and path.stat().st_size > 5_000
    assert len(fig.axes) == 4     # two panels and their colour bars


@pytest.mark.parametrize("call,match", [
    (lambda: C.q_star(-1.0, 0.1), "sigma_w2"),
    (lambda: C.q_star(1.0, -0.1), "sigma_b2"),
    (lambda: C.length_map(1.0, 1.0, float("nan")), "sigma_b2"),
    (lambda: C.chi_1(1.0, 0.1, "softsign"), "activation"),
    (lambda: C.simulate_deep_network(0.0, 0.1), "sigma_w2"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
