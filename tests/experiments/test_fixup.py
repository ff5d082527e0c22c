"""Fixup study pieces: the branch-scaling exponent, He's per-block doubling, Fixup at init."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.figure import Figure

from experiments import fixup as fx
from experiments._init_nets import cross_entropy
from experiments.records import jsonable
from experiments.runner import check_claims

# one compiled program for both tests below (same shapes): x (6, 7), width 16, 9 blocks, 3 classes
_measure = jax.jit(lambda p, x, y: (fx.measurements(p, x, y, 0.1), fx.resmlp_apply(p, x)))
_X = jnp.asarray(np.random.default_rng(4).standard_normal((6, 7)), jnp.float32)
_Y = jax.nn.one_hot(jnp.arange(6) % 3, 3)


@pytest.mark.parametrize("m", [2, 3, 4])
def test_branch_scale_makes_last_layer_update_order_one_over_depth(m):
    """Branch y A_1 ... A_{m-1} B with A_k = L^{-1/(2m-2)} A_k^0 and B = 0: one gradient step
    on B (linear loss <branch, g>) changes the branch output by eta |y A|^2 g ~ 1/L."""
    rng = np.random.default_rng(0)
    n = 16
    a0 = [rng.standard_normal((n, n)) / np.sqrt(n) for _ in range(m - 1)]
    y, g = rng.standard_normal((4, n)), rng.standard_normal((4, n))

    def change(depth):
        a = [fx.fixup_branch_scale(depth, m) * w for w in a0]

        def branch(b):
            h = y
            for w in a:
                h = h @ w
            return h @ b
        grad_b = jax.grad(lambda b: jnp.sum(branch(b) * g))(jnp.zeros((n, n)))
        return float(jnp.linalg.norm(branch(-0.1 * grad_b)))
    np.testing.assert_allclose(change(4) / change(16), 4.0, rtol=1e-6)
    assert fx.fixup_branch_scale(16, m) == pytest.approx(16.0 ** (-1 / (2 * m - 2)))


def test_branch_scale_rejects_one_layer_branches():
    with pytest.raises(ValueError, match="layers_per_branch"):
        fx.fixup_branch_scale(8, 1)
    with pytest.raises(ValueError, match="depth"):
        fx.fixup_branch_scale(0, 2)


def test_he_block_doubles_squared_norm_in_expectation():
    """Given Y^0, E over W_1, W_2 of |Y^1|^2 / |Y^0|^2 = 1 + 2 |relu(Y^0)|^2 / |Y^0|^2 (the
    branch is ReLU -> W_1 (var 2/n) -> ReLU -> W_2 (var 2/n)); Monte Carlo over 400 blocks."""
    x = jnp.asarray(np.random.default_rng(1).standard_normal((8, 5)) / np.sqrt(5), jnp.float32)
    base = fx.init_resmlp(np.random.default_rng(2), 5, 32, 1, 3, "he")
    y0 = np.asarray(fx.resmlp_streams(base, x)[0], np.float64)
    expected = 1 + 2 * np.sum(np.maximum(y0, 0) ** 2) / np.sum(y0 ** 2)
    streams = jax.jit(lambda w1, w2: fx.resmlp_streams(
        {**base, "blocks": {**base["blocks"], "w1": w1, "w2": w2}}, x))
    rng = np.random.default_rng(3)
    ratios = []
    for _ in range(400):
        w1, w2 = (np.sqrt(2 / 32) * rng.standard_normal((2, 1, 32, 32))).astype(np.float32)
        ys = np.asarray(streams(w1, w2), np.float64)
        ratios.append(np.sum(ys[1] ** 2) / np.sum(ys[0] ** 2))
    assert np.mean(ratios) == pytest.approx(expected, abs=4 * np.std(ratios) / np.sqrt(400))
    assert 1.8 < expected < 2.2


def test_fixup_at_init_is_identity_and_only_the_classifier_has_a_gradient():
    x, y = _X, _Y
    p = fx.init_resmlp(np.random.default_rng(5), 7, 16, 9, 3, "fixup")
    got, f = _measure(p, x, y)
    ys = got["stream"]
    np.testing.assert_array_equal(ys[-1], ys[0])
    np.testing.assert_array_equal(f, 0.0)
    for name, leaf in got["grad"]["blocks"].items():
        np.testing.assert_array_equal(leaf, 0.0, err_msg=name)
    assert float(got["weight_update"]) == 0.0
    # classifier gradient in closed form: Y^L^T (softmax(f) - y) / N with f = 0
    np.testing.assert_allclose(got["grad"]["output"]["w"],
                               ys[-1].T @ (jnp.full((6, 3), 1 / 3) - y) / 6, atol=1e-6)
    # the first-layer branch weights carry Fixup's L^{-1/2} (m = 2): std sqrt(2/n) / 3
    w1 = np.asarray(p["blocks"]["w1"])
    assert np.std(w1) == pytest.approx(np.sqrt(2 / 16) / 3, rel=0.1)


def test_stream_gradient_matches_closed_form_at_the_top():
    """dLoss/dY^L = (softmax(f) - y) W_out^T / N, and the stream ends in the logits."""
    x, y = _X, _Y
    p = fx.init_resmlp(np.random.default_rng(7), 7, 16, 9, 3, "he")
    got, f = _measure(p, x, y)
    np.testing.assert_allclose(got["stream"][-1] @ p["output"]["w"] + p["output"]["b"], f,
                               rtol=1e-5, atol=1e-5)
    top = (jax.nn.softmax(f) - y) @ p["output"]["w"].T / 6
    np.testing.assert_allclose(got["stream_grad"][-1], top, rtol=1e-4, atol=1e-6)
    assert float(got["loss"]) == pytest.approx(float(cross_entropy(f, y)), rel=1e-6)


def test_per_block_growth_and_config_validation():
    stream = np.stack([np.full((2, 3), 1.0), np.full((2, 3), 2.0), np.full((2, 3), 2.0)])
    np.testing.assert_allclose(fx.per_block_growth(stream), [4.0, 1.0])
    with pytest.raises(ValueError, match="depths"):
        fx.Config(depths=(4,)).validate()
    with pytest.raises(ValueError, match="update_window"):
        fx.Config(update_window=1000).validate()


def _made_up_results():
    """Metrics shaped as run() returns them (two depths; He diverges at the deeper one), through
    the JSON round trip of results.json (non-finite numbers become strings there)."""
    steps = [0, 5, 10]
    per_init = {
        "he": dict(growth=2.1, grad=[1.0, 300.0], updates=[2.0, float("nan")],
                   curves=[[2.3, 1.0, 0.5], [40.0, float("inf"), float("nan")]]),
        "fixup": dict(growth=1.0, grad=[1.0, 1.2], updates=[0.5, 0.52],
                      curves=[[2.3, 1.0, 0.4], [2.3, 0.9, 0.3]]),
    }
    m = {"depths": [4, 16], "lr": 0.05, "update_window": 10, "update_nets": 2}
    for init, v in per_init.items():
        curves = [{"step": steps, "loss": c} for c in v["curves"]]
        m[init] = {"mean_forward_growth": [v["growth"]] * 2,
                   "mean_backward_growth": [v["growth"]] * 2,
                   "forward_ratio": [v["growth"] ** 2, v["growth"] ** 8],
                   "init_grad_norm": v["grad"], "curves": curves,
                   "final_loss": [c[-1] for c in v["curves"]],
                   "best_loss": [min(x for x in c if np.isfinite(x)) for c in v["curves"]]}
        for key in ("update", "weight_update", "scalar_update"):
            m[init][f"early_{key}"] = v["updates"]
            m[init][f"{key}_slope_log_depth"] = (
                float(np.polyfit(np.log([4, 16]), np.log(v["updates"]), 1)[0])
                if np.all(np.isfinite(v["updates"])) else float("nan"))
    return json.loads(json.dumps(jsonable({"study": "fixup", "config": {}, "metrics": m})))


def test_claims_and_figures_from_stored_results():
    results = _made_up_results()
    checked = {c["id"]: c for c in check_claims(fx, results)}
    assert checked["fixup_gradient_depth_free"]["measured"] == pytest.approx(1.2)
    assert checked["he_fails_same_lr"]["measured"] == pytest.approx(40.0 / 0.3)
    assert all(c["holds"] for c in checked.values())
    figs = fx.figures(results)
    assert list(figs) == ["fixup"] and all(isinstance(f, Figure) for f in figs.values())
