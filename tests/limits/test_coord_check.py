"""Measured width exponents against TP IV's r_l, coordinate checks, depth scaling (TP VI)."""
import numpy as np
import pytest

import limits
from limits import parametrization as P
from limits.coord_check import (CoordCheckConfig, coord_check, depth_update_sizes,
                                plot_coord_check, update_size_exponents)

WIDTHS = (64, 128, 256, 512, 1024)


@pytest.mark.parametrize("preset,depth", [
    (P.SP, 2), (P.SP_LR_INV_WIDTH, 2), (P.NTP, 2), (P.MFP, 1), (P.MUP, 2),
    (P.MUP_ADAM, 2), (P.SP_ADAM, 2),
])
def test_one_step_width_exponents_match_minus_r_l(preset, depth):
    """Fitted log-log slope of every layer's one-step update over five widths (16x) and
    three seeds = -r_l of TP IV (and -u for the readout's change of the output)."""
    measured = update_size_exponents(preset, WIDTHS, depth=depth, seeds=(0, 1, 2))
    theory = limits.update_exponents(preset, depth)
    for layer, slope in measured["slopes"].items():
        assert slope == pytest.approx(-float(theory[layer]), abs=0.15), layer


@pytest.fixture(scope="module")
def mup_zero_readout():
    return coord_check(P.MUP, CoordCheckConfig.quick(learning_rate=0.05, depth=2,
                                                     readout_zero_init=True))


def test_coord_check_mup_is_flat(mup_zero_readout, tmp_path):
    r = mup_zero_readout
    for name, slopes in r["update_slope"].items():
        # step 1 moves only the (zero-initialised) readout; from step 2 on everything moves
        for t in (2, 3):
            assert abs(slopes[t]) < 0.15, (name, t, slopes)
    for name in ("layer_1", "layer_2"):
        assert np.all(np.abs(r["size_slope"][name]) < 0.1)
    assert np.all(np.isfinite(r["loss"]))
    path = tmp_path / "coord_mup.png"
    fig = plot_coord_check(r, path)
    assert path.exists() and path.stat().st_size > 10_000
    assert len(fig.axes) == 2 * len(r["steps"])


def test_coord_check_mup_output_at_init_shrinks_like_inverse_sqrt_width():
    r = coord_check(P.MUP, CoordCheckConfig.quick(learning_rate=0.05, depth=2, n_steps=1))
    assert r["size_slope"]["output"][0] == pytest.approx(-0.5, abs=0.1)
    assert abs(r["size_slope"]["layer_2"][0]) < 0.1


def test_coord_check_sp_output_and_last_layer_grow():
    r = coord_check(P.SP, CoordCheckConfig.quick(learning_rate=0.01, depth=2, n_steps=2))
    # TP IV: SP with a fixed learning rate has u = -1 (output update ~ n) and, at step 1,
    # last-layer update ~ n^{1/2} (the readout has not moved yet)
    assert r["update_slope"]["output"][1] > 0.7
    assert r["update_slope"]["layer_2"][1] > 0.35


# muP-Adam's and SP-Adam's one-step exponents are checked by default above (presets MUP_ADAM,
# SP_ADAM); the multi-step coordinate check under ``make test-all``
@pytest.mark.slow
def test_coord_check_mup_adam_is_flat_and_sp_adam_grows():
    mu = coord_check(P.MUP_ADAM, CoordCheckConfig.quick(learning_rate=0.01, depth=2,
                                                        n_steps=2))
    sp = coord_check(P.SP_ADAM, CoordCheckConfig.quick(learning_rate=0.01, depth=2,
                                                       n_steps=2))
    for name in ("layer_1", "layer_2", "output"):
        assert abs(mu["update_slope"][name][1]) < 0.15, name
    assert sp["update_slope"]["layer_2"][1] > 0.8  # Adam SP hidden: r = -1
    assert sp["update_slope"]["output"][1] > 0.8


# ---- depth (TP VI) ---------------------------------------------------------------------
@pytest.mark.parametrize("alpha,gamma,name", [
    ("1/2", "1/2", "depth_mup"), (1, 0, "redundant"), ("3/4", "1/4", "redundant"),
    (0, 1, "unstable"), ("1/4", "3/4", "unstable"), ("1/2", 0, "unstable"),
    ("1/2", 1, "trivial"), (1, 1, "trivial"),
])
def test_depth_regimes(alpha, gamma, name):
    verdict = limits.depth_regime(alpha, gamma)
    assert verdict.name == name
    assert verdict.reasons and str(verdict.alpha) in verdict.explain()


def test_depth_exponents():
    half = limits.branch_exponent("sqrt")
    # depth-muP: SGD lr constant, Adam lr 1/sqrt(L); both give alpha + gamma = 1
    assert limits.depth_lr_exponent("sgd", "sqrt") == 0
    assert limits.depth_lr_exponent("adam", "depth_mup") == half
    assert limits.depth_update_exponent("sgd", "sqrt", 0) == half
    assert limits.depth_update_exponent("adam", "sqrt", half) == half
    assert limits.depth_regime(half, limits.depth_update_exponent("adam", "sqrt", 0)).name \
        == "unstable"
    assert limits.branch_multiplier(16, "sqrt") == 0.25
    assert limits.branch_multiplier(16, "linear", base_depth=4) == 0.25
    with pytest.raises(ValueError, match="branch"):
        limits.branch_exponent("quartic")
    with pytest.raises(ValueError, match="depth"):
        limits.branch_multiplier(0)


DEPTHS = (2, 4, 8, 16, 32)


def test_depth_mup_adam_one_step_update_is_flat_in_depth():
    r = depth_update_sizes(P.MUP_ADAM, DEPTHS, width=64, learning_rate=1e-3, seeds=(0, 1))
    assert abs(r["slopes"]["features"]) < 0.1 and abs(r["slopes"]["output"]) < 0.1


def test_adam_without_depth_lr_scaling_grows_like_sqrt_depth():
    r = depth_update_sizes(P.MUP_ADAM, DEPTHS, width=64, learning_rate=1e-3, seeds=(0, 1),
                           lr_depth_exponent=0)
    expect = 1 - 0.5 - float(limits.depth_update_exponent("adam", "sqrt", 0))
    assert expect == 0.5
    assert r["slopes"]["features"] == pytest.approx(expect, abs=0.1)


def test_depth_mup_sgd_one_step_update_is_flat_in_depth():
    r = depth_update_sizes(P.MUP, DEPTHS, width=64, learning_rate=0.05, seeds=(0, 1))
    assert abs(r["slopes"]["features"]) < 0.15


def test_bad_input():
    with pytest.raises(ValueError, match="widths"):
        update_size_exponents(P.MUP, [64, 128])
    with pytest.raises(ValueError, match="widths"):
        coord_check(P.MUP, widths=(64, -1))
    with pytest.raises(TypeError, match="parametrization"):
        coord_check("muP")
    with pytest.raises(ValueError, match="n_steps"):
        coord_check(P.MUP, n_steps=0)


@pytest.mark.slow
@pytest.mark.parametrize("preset", [P.SP, P.SP_LR_INV_WIDTH, P.NTP, P.MUP, P.mup("sgd", 3),
                                    P.mup("sgd", 9), P.mup("sgd", "tp4"), P.MUP_ADAM,
                                    P.mup("adam", 3), P.mup("adam", 9), P.SP_ADAM])
def test_one_step_width_exponents_full(preset):
    widths = (64, 128, 256, 512, 1024, 2048)
    measured = update_size_exponents(preset, widths, depth=3, seeds=(0, 1, 2, 3, 4))
    theory = limits.update_exponents(preset, 3)
    for layer, slope in measured["slopes"].items():
        assert slope == pytest.approx(-float(theory[layer]), abs=0.12), layer
