"""Maximal-learning-rate study: bisection, kernel bound, masked depth, per-layer scales."""
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.figure import Figure

import ntk
from experiments import max_lr as ml
from experiments.records import jsonable
from experiments.runner import check_claims


def test_bisection_finds_the_divergence_threshold_of_a_quadratic():
    """GD on f = lambda theta^2 / 2 maps theta -> (1 - eta lambda) theta: it shrinks after T
    steps iff eta < 2 / lambda."""
    lam = np.array([0.5, 3.0, 40.0])

    def success(eta):
        theta = np.ones_like(eta)
        for _ in range(50):
            theta = theta - eta * lam * theta
        return np.abs(theta) < 1.0
    eta, ok_low, ok_high = ml.bisect_log(success, np.full(3, 1e-3), np.full(3, 10.0), 40)
    np.testing.assert_allclose(eta, 2 / lam, rtol=1e-9)
    assert ok_low.all() and not ok_high.any()
    # brackets that miss the threshold are reported, not silently bisected
    eta, ok_low, ok_high = ml.bisect_log(success, np.array([1e-3, 1.0, 1e-3]),
                                         np.array([1.0, 2.0, 10.0]), 30)
    assert ok_high[0] and eta[0] == 1.0          # threshold 4 lies above the bracket
    assert not ok_low[1] and np.isnan(eta[1])    # threshold 2/3 lies below it
    assert eta[2] == pytest.approx(2 / 40, rel=1e-6)
    with pytest.raises(ValueError, match="low < high"):
        ml.bisect_log(success, np.ones(3), np.ones(3), 2)


def test_kernel_bound_is_the_divergence_threshold_of_a_linear_model():
    """f = X theta, loss |f - y|^2 / (2N): GD diverges iff eta > 2N / lambda_max(X X^T), the
    value ntk.predict.max_learning_rate gives from the eNTK."""
    rng = np.random.default_rng(0)
    n, d = 12, 5
    x, y = rng.standard_normal((n, d)), rng.standard_normal(n)
    apply = lambda p, x: x @ p["theta"][:, None]
    theta0 = {"theta": jnp.zeros(d)}
    bound = ntk.predict.max_learning_rate(ntk.empirical_ntk_fn(apply)(x, x, theta0))
    loss = lambda th: 0.5 * np.mean((th @ x.T - y) ** 2, axis=-1)

    def success(eta):
        th = np.zeros((len(eta), d))
        with np.errstate(over="ignore", invalid="ignore"):
            for _ in range(2000):
                th = th - eta[:, None] * ((th @ x.T - y) @ x) / n
            return np.isfinite(loss(th)) & (loss(th) < loss(np.zeros(d)))
    eta, _, _ = ml.bisect_log(success, np.array([0.1 * bound]), np.array([10 * bound]), 30)
    assert eta[0] == pytest.approx(bound, rel=0.01)


def _manual_forward(params, x, depth):
    h = np.maximum(x @ params["w_in"] + params["b_in"], 0)
    for l in range(depth - 1):
        h = np.maximum(h @ params["w_hidden"][l] + params["b_hidden"][l], 0)
    return h @ params["w_out"] + params["b_out"]


def test_masked_depth_equals_the_plain_network_and_its_ntk():
    rng = np.random.default_rng(1)
    params = jax.tree.map(lambda a: a.astype(np.float64), ml.init_params(rng, 3, 7, 4))
    params["b_hidden"] = rng.standard_normal(params["b_hidden"].shape)
    x = rng.standard_normal((5, 3))
    apply = jax.jit(ml.apply_fn)
    for depth in (1, 2, 4):
        np.testing.assert_allclose(apply(params, x, depth), _manual_forward(params, x, depth),
                                   rtol=1e-12)

    @jax.jit
    def kernel(p, depth):   # Theta = sum over leaves of J_l J_l^T
        jac = jax.jacrev(lambda q: ml.apply_fn(q, x, depth)[:, 0])(p)
        return sum(j.reshape(len(x), -1) @ j.reshape(len(x), -1).T for j in jax.tree.leaves(jac))
    # the depth-2 net inside the depth-4 padding has the kernel of an unpadded depth-2 net;
    # as Theta is a sum of PSD terms J_l J_l^T, the unused blocks have exactly zero Jacobian
    trimmed = dict(params, w_hidden=params["w_hidden"][:1], b_hidden=params["b_hidden"][:1])
    np.testing.assert_allclose(kernel(params, 2), kernel(trimmed, 2), rtol=1e-12)


def test_scaled_kernel_is_the_gd_step_in_function_space():
    """One GD step with per-leaf learning rates eta s_l changes the outputs by
    -(eta / N) Theta_s (f - y) to first order in eta; final_losses runs that step."""
    cfg = ml.Config(in_dim=4, n_train=6)
    x, y = (np.asarray(a, np.float64) for a in ml.make_data(cfg))
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64),
                          ml.init_params(np.random.default_rng(2), 4, 9, 3))
    scales = ml.lr_scales(params, 0.1)
    theta = ntk.empirical_ntk_fn(ml.apply_fn, param_scales=scales, implementation="jacobian",
                                 vmap_axes=0)(x, x, params, depth=3)
    apply = jax.jit(ml.apply_fn)
    eta = 1e-6
    f0 = apply(params, x, 3)[:, 0]
    grads = jax.jit(jax.grad(lambda p: 0.5 * jnp.mean((ml.apply_fn(p, x, 3)[:, 0] - y) ** 2)))(
        params)
    stepped = jax.tree.map(lambda p, g, s: p - eta * s * g, params, grads, scales)
    df = apply(stepped, x, 3)[:, 0] - f0
    np.testing.assert_allclose(df, -eta / len(x) * theta @ (f0 - y), rtol=1e-4, atol=1e-14)
    batched = jax.tree.map(lambda a: jnp.stack([a, a]), params)
    out = ml.final_losses(batched, jnp.array([3, 2]), jnp.array([eta, eta]), x, y, scales, 1)
    ref3 = 0.5 * jnp.mean((apply(stepped, x, 3)[:, 0] - y) ** 2)
    assert float(out[0]) == pytest.approx(float(ref3), rel=1e-12)


def test_he_initialisation_variances():
    p = ml.init_params(np.random.default_rng(3), 50, 400, 3)
    assert np.var(p["w_in"]) == pytest.approx(2 / 50, rel=0.05)
    assert np.var(p["w_hidden"]) == pytest.approx(2 / 400, rel=0.02)
    assert np.var(p["w_out"]) == pytest.approx(1 / 400, rel=0.2)
    assert not np.any(p["b_in"]) and not np.any(p["b_hidden"])


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="widths"):
        ml.Config(widths=(64, 32)).validate()
    with pytest.raises(ValueError, match="bracket"):
        ml.Config(bracket=(2.0, 1.0)).validate()
    with pytest.raises(ValueError, match="loss_threshold"):
        ml.Config(loss_threshold=1.5).validate()


def _results_from_a_made_up_grid():
    """Results as run() would return them for eta_kernel = 1 / (L n) and eta* = 3 eta_kernel
    (two seeds per point), through the JSON round trip of results.json."""
    cfg = ml.Config(n_seeds=2)
    grid = {k: [] for k in ("depth", "width", "eta_star", "eta_kernel", "ok_low", "ok_high")}
    for n in cfg.widths:
        for L in np.repeat(cfg.depths, cfg.n_seeds):
            grid["depth"].append(int(L))
            grid["width"].append(n)
            grid["eta_kernel"].append(1.0 / (L * n))
            grid["eta_star"].append(3.0 / (L * n))
            grid["ok_low"].append(True)
            grid["ok_high"].append(False)
    results = {"study": "max_lr", "config": dataclasses.asdict(cfg),
               "metrics": ml._summarise(cfg, grid)}
    return json.loads(json.dumps(jsonable(results)))


def test_claims_and_figures_from_stored_results():
    results = _results_from_a_made_up_grid()
    checked = {c["id"]: c for c in check_claims(ml, results)}
    assert checked["eta_star_decreases_with_depth_x_width"]["measured"] == pytest.approx(-1.0)
    assert checked["eta_star_in_catapult_band"]["measured"] == pytest.approx(3.0)
    assert all(c["holds"] for c in checked.values())
    figs = ml.figures(results)
    assert list(figs) == ["max_lr"] and all(isinstance(f, Figure) for f in figs.values())
