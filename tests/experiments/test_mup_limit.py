"""The muP-limit study (Yang & Hu 2021, TP IV): its NumPy network trainer against ``jax.grad``
and the project's optimizer, its initialisation against ``limits.mlp``'s, its losses and kernel
descent per seed, its tasks, and figures and claims redrawn from made-up metrics through a JSON
round trip. The whole quick study runs in tests/papers/test_verify.py.
"""
import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.figure import Figure

import limits
from experiments import mup_limit as st
from experiments.claims import all_hold, check
from experiments.records import jsonable
from limits import mup_limit as ml
from limits.optimizers import optimizer


@pytest.mark.parametrize("depth, activation, parametrization", [
    (2, "identity", limits.NTP), (1, "tanh", limits.MUP)])
def test_train_networks_is_autodiff_sgd(depth, activation, parametrization):
    """Hand-written backpropagation with per-layer learning rates = ``jax.grad`` of the masked
    MSE through ``limits.mlp`` plus :func:`limits.optimizers.optimizer`, for two seeds at once."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    mask = (rng.random((5, 2)) < 0.7).astype(float)
    cfg = st.Config(base_width=2.0, sigma_w=1.1)
    net = st.network(3, 16, depth, 2, parametrization, activation, cfg, 0.7)
    loss = st.TaskLoss(y, mask)
    eta, steps = 0.3, 4
    opt = optimizer(net, eta)

    def objective(p):
        return 0.5 * jnp.sum(mask * (net.apply(p, x) - y) ** 2) / 5

    @jax.jit
    def step(p, state):
        update, state = opt.update(jax.grad(objective)(p), state, p)
        return jax.tree.map(jnp.add, p, update), state

    params = [net.init(jax.random.PRNGKey(s)) for s in range(2)]
    weights = [np.stack([np.asarray(p[k]["w"]) for p in params]) for k in st.layer_names(net)]
    x_eval = rng.standard_normal((3, 3))
    f0, f_end = st.train_networks(net, weights, x, loss, eta, steps, x_eval, activation)
    for s, p in enumerate(params):
        np.testing.assert_allclose(f0[s], net.apply(p, x_eval), atol=1e-12)
        state = opt.init(p)
        for _ in range(steps):
            p, state = step(p, state)
        np.testing.assert_allclose(f_end[s], net.apply(p, x_eval), atol=1e-10)


@pytest.mark.parametrize("parametrization", [limits.MUP, limits.NTP, limits.SP_LR_INV_WIDTH])
def test_init_weights_have_limits_mlp_shapes_and_scales(parametrization):
    """Per layer, the NumPy draws have ``net.init``'s shapes and standard deviation (both
    estimated from >= 4,000 entries: within 6 %); a zero readout is zero."""
    cfg = st.Config(base_width=4.0, sigma_w=1.3)
    net = st.network(5, 512, 2, 8, parametrization, "identity", cfg, 0.6)
    draws = st.init_weights(net, cfg, 0.6, 2, np.random.default_rng(1))
    params = net.init(jax.random.PRNGKey(3))
    for w, name in zip(draws, st.layer_names(net)):
        ref = np.asarray(params[name]["w"])
        assert w.shape == (2,) + ref.shape
        assert np.std(w) == pytest.approx(np.std(ref), rel=0.06)
    zero = st.network(5, 64, 1, 2, parametrization, "identity", cfg, 0.0)
    assert not np.any(st.init_weights(zero, cfg, 0.0, 2, np.random.default_rng(1))[-1])


def test_task_loss_per_seed_and_stacked():
    rng = np.random.default_rng(2)
    y, mask = rng.standard_normal((4, 3)), (rng.random((4, 3)) < 0.5).astype(float)
    loss = st.TaskLoss(y, mask)
    f = rng.standard_normal((2, 4, 3))
    for s in range(2):
        np.testing.assert_allclose(loss(f)[s], ml.mse_output_grad(f[s], y, mask))
    side_by_side = f.transpose(1, 0, 2).reshape(4, 6)
    np.testing.assert_allclose(loss.stacked(2)(side_by_side),
                               loss(f).transpose(1, 0, 2).reshape(4, 6))


def test_kernel_limit_outputs_is_kernel_descent_per_seed():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((6, 6))
    theta, f0 = a @ a.T / 6, rng.standard_normal((3, 6, 2))
    idx, y = np.array([0, 2, 4]), rng.standard_normal((3, 2))
    loss = st.TaskLoss(y)
    out = st.kernel_limit_outputs(theta, f0, idx, loss, 0.2, 7)
    for s in range(3):
        np.testing.assert_allclose(out[s], ml.kernel_descent(theta, f0[s], idx, loss, 0.2, 7)[-1],
                                   atol=1e-13)


def test_tasks():
    x, target, mask = st.completion_task(12, 9, 2, 0.2, seed=4)
    np.testing.assert_array_equal(x, math.sqrt(12) * np.eye(12))
    assert np.linalg.matrix_rank(target) == 2
    assert np.all(mask.sum(0) >= 1) and np.all(mask.sum(1) >= 1)
    x, y, idx = st.tanh_task(10, 6, seed=4, radius=1.5)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.5)
    s = x[:, 1] / 1.5                                     # sin(3 t) = 3 sin t - 4 sin^3 t
    np.testing.assert_allclose(y[:, 0], 3 * s - 4 * s ** 3, atol=1e-12)
    np.testing.assert_array_equal(idx, np.arange(10))


def _made_up_metrics():
    """Metrics of the quick config's shapes: distances ~ width^-1/2 to the own limit, flat to
    the other."""
    cfg = st.Config.quick()
    tasks = {}
    for task in st.TASKS:
        widths = list(cfg.deep_widths if task == "deep" else cfg.widths)
        w = np.asarray(widths, float)
        own = (0.5 * (w / w[0]) ** -0.5).tolist()
        flat = [0.7] * len(widths)
        dist = {f"{n}_to_{lim}": (own if (n == "mup") == (lim == "mup_limit") else flat)
                for n in st.PARAMETRIZATIONS for lim in ("mup_limit", "kernel_limit")}
        steps = [0, 5, 10]
        tasks[task] = {
            "steps": steps, "learning_rate": 0.1, "depth": 2 if task == "deep" else 1,
            "widths": widths, "limit_errors": [[1.0, 1.1], [0.3, 0.5], [0.01, 0.25]],
            "ntk_limit_errors": [[1.0, 1.1], [0.9, 1.1], [0.8, 1.1]],
            "limit_output_rms": 0.8, "distance": dist,
            "slope": {k: -0.5 if v is own else 0.0 for k, v in dist.items()},
            "network_test_mse": {n: [0.3] * len(widths) for n in st.PARAMETRIZATIONS},
            **({"quadrature_change": 1e-6} if task == "tanh" else
               {"feature_gram_change": 2.0, "limit_sources": 70})}
    ratio = own[-1] / 0.7
    return {"tasks": tasks, "task_names": list(st.TASKS), "mup_rate": [-0.5] * 3,
            "ntp_rate": [-0.5] * 3, "sp_rate": [-0.5] * 3, "mup_limit_test_mse": 0.25,
            "ntk_limit_test_mse": 1.1, "test_mse_ratio": 0.25 / 1.1,
            "own_limit_ratio": {n: [ratio] * 3 for n in st.PARAMETRIZATIONS},
            "own_limit_ratio_kernel_nets": [ratio] * 6,
            "quadrature_ratio": 1e-6 / own[-1]}


def test_figures_and_claims_redraw_from_a_json_round_trip():
    results = json.loads(json.dumps(jsonable(
        {"metrics": _made_up_metrics(), "config": dataclasses.asdict(st.Config.quick())})))
    figs = st.figures(results)
    assert set(figs) == {"convergence", "completion"}
    assert all(isinstance(f, Figure) for f in figs.values())
    ax = figs["convergence"].axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log" and "width" in ax.get_xlabel()
    checked = check(st.CLAIMS, results["metrics"])
    assert all_hold(checked) and len(checked) == len(st.CLAIMS)
    results["metrics"]["mup_rate"][1] = -0.1
    results["metrics"]["test_mse_ratio"] = 0.9
    failed = {c["id"] for c in check(st.CLAIMS, results["metrics"]) if not c["holds"]}
    assert failed == {"mup_networks_approach_mup_limit", "feature_limit_beats_ntk_limit"}


def test_config_validation():
    st.Config.quick().validate()
    st.Config.full().validate()
    for bad in (dict(widths=(64,)), dict(widths=(128, 64)), dict(seeds=1), dict(rank=0),
                dict(observed=1.0), dict(sigma_out=-1.0), dict(tanh_lr=0.0),
                dict(quadrature_nodes=0)):
        with pytest.raises(ValueError):
            dataclasses.replace(st.Config.quick(), **bad).validate()
