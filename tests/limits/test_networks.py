"""Networks under a parametrization, their optimizers, and the abc-symmetry in training."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import limits
from limits import parametrization as P


def _train(net, params, x, y, lr, steps, kind=None, eps=1e-8):
    opt = limits.optimizer(net, lr, kind, eps=eps)
    state = opt.init(params)
    loss = lambda p: 0.5 * jnp.mean((net.apply(p, x) - y) ** 2)

    @jax.jit
    def step(params, state):
        u, state = opt.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, u)
        return params, state, net.apply(params, x)

    outs = [net.apply(params, x)]
    for _ in range(steps):
        params, state, f = step(params, state)
        outs.append(f)
    return params, jnp.stack(outs)


def _data(n=16, d=5, o=2):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((n, d)))
    return x, jnp.asarray(np.tanh(rng.standard_normal((n, o))))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_mup_equals_sp_at_base_width_bit_for_bit(optimizer):
    x, y = _data()
    sp = P.SP if optimizer == "sgd" else P.SP_ADAM
    builds = {"mlp": lambda p: limits.mlp(5, 32, 3, 2, p, base_width=32, bias=True,
                                          sigma_b=0.1),
              "resmlp": lambda p: limits.resmlp(5, 32, 4, 2, p, base_width=32)}
    for kind, build in builds.items():
        b = build(sp)
        pb = b.init(jax.random.PRNGKey(3))
        _, fb = _train(b, pb, x, y, 0.05, 4)
        forms = (8, 3, 9) if kind == "mlp" else (8,)
        for table in forms:
            a = build(P.mup(optimizer, table))
            pa = a.init(jax.random.PRNGKey(3))
            assert jax.tree.all(jax.tree.map(lambda u, v: bool(jnp.all(u == v)), pa, pb))
            _, fa = _train(a, pa, x, y, 0.05, 4)
            assert bool(jnp.all(fa == fb))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("width", [32, 128])
def test_equivalent_forms_train_identically(optimizer, width):
    """TP V Tables 3, 8, 9 (and TP IV's muP) are one parametrization: same trajectory."""
    x, y = _data()
    forms = [P.mup(optimizer, t) for t in (3, 8, 9)]
    if optimizer == "sgd":
        forms.append(P.mup("sgd", "tp4"))
    trajectories = []
    for p in forms:
        net = limits.mlp(5, width, 3, 2, p, base_width=16, bias=True, sigma_b=0.3)
        params = net.init(jax.random.PRNGKey(0))
        _, f = _train(net, params, x, y, 0.02, 5, eps=1e-300)
        trajectories.append(f)
    for f in trajectories[1:]:
        np.testing.assert_allclose(f, trajectories[0], rtol=1e-9, atol=1e-12)
    # a non-equivalent parametrization gives a different trajectory
    net = limits.mlp(5, width, 3, 2, P.NTP if optimizer == "sgd" else P.SP_ADAM,
                     base_width=16, bias=True, sigma_b=0.3)
    _, f = _train(net, net.init(jax.random.PRNGKey(0)), x, y, 0.02, 5, kind=optimizer)
    assert not np.allclose(f, trajectories[0], rtol=1e-3)


def test_mlp_forward_matches_formula():
    net = limits.mlp(3, 8, 2, 1, P.NTP, base_width=2, activation="tanh", bias=True,
                     sigma_b=0.5)
    p = net.init(jax.random.PRNGKey(1))
    x = jnp.asarray(np.random.default_rng(1).standard_normal((4, 3)))
    # NTP at width 8, base 2: hidden/output multiplier (8/2)^-1/2, std sigma/sqrt(2)
    m = 0.5
    h1 = x @ p["layer_1"]["w"] + p["layer_1"]["b"]
    h2 = m * jnp.tanh(h1) @ p["layer_2"]["w"] + p["layer_2"]["b"]
    f = m * jnp.tanh(h2) @ p["output"]["w"]
    np.testing.assert_allclose(net.apply(p, x), f, rtol=1e-12)
    assert net.lr_scales == {"layer_1": {"w": 1.0, "b": 1.0}, "layer_2": {"w": 1.0, "b": 1.0},
                             "output": {"w": 1.0}}
    stds = {k: float(jnp.std(v["w"])) for k, v in p.items()}
    assert stds["layer_2"] == pytest.approx(1 / np.sqrt(2), rel=0.5)


def test_init_statistics_follow_the_parametrization():
    net = limits.mlp(10, 512, 2, 1, P.MUP, base_width=64, sigma_w=1.5)
    p = net.init(jax.random.PRNGKey(0))
    # input std sigma/sqrt(d); hidden sigma/sqrt(n); output (TP V Table 8) 1/sqrt(n0)
    assert float(jnp.std(p["layer_1"]["w"])) == pytest.approx(1.5 / np.sqrt(10), rel=0.05)
    assert float(jnp.std(p["layer_2"]["w"])) == pytest.approx(1.5 / np.sqrt(512), rel=0.01)
    assert float(jnp.std(p["output"]["w"])) == pytest.approx(1 / 8, rel=0.15)
    assert net.multipliers["output"] == 64 / 512
    assert net.lr_scales["output"]["w"] == 512 / 64  # SGD lr ~ fan_in
    assert net.lr_scales["layer_1"]["w"] == 512 / 64  # SGD lr ~ fan_out


def test_resmlp_branch_and_depth_lr_scaling():
    net = limits.resmlp(4, 16, 9, 1, P.MUP_ADAM, branch="sqrt")
    assert net.multipliers["block_1"] == pytest.approx(1 / 3)
    assert net.lr_scales["block_5"]["w"] == pytest.approx(1 / 3)  # depth-muP Adam: 1/sqrt(L)
    net = limits.resmlp(4, 16, 9, 1, P.MUP, branch="sqrt")
    assert net.lr_scales["block_5"]["w"] == 1.0  # depth-muP SGD: constant
    net = limits.resmlp(4, 16, 8, 1, P.MUP_ADAM, branch="linear", base_depth=2)
    assert net.multipliers["block_1"] == pytest.approx(0.25)
    assert net.lr_scales["block_1"]["w"] == 1.0  # alpha = 1: kappa = 0 (CompleteP)
    p = net.init(jax.random.PRNGKey(0))
    x = jnp.ones((3, 4))
    feats = net.features(p, x)
    h = feats["block_0"]
    for l in range(1, 9):
        h = h + 0.25 * jax.nn.relu(h) @ p[f"block_{l}"]["w"]
        np.testing.assert_allclose(feats[f"block_{l}"], h, rtol=1e-12)
    np.testing.assert_allclose(net.apply(p, x), feats["output"], rtol=1e-12)


def test_optimizer_matches_manual_update():
    net = limits.mlp(3, 16, 2, 1, P.MUP, base_width=4)
    p = net.init(jax.random.PRNGKey(0))
    g = jax.tree.map(jnp.ones_like, p)
    u, _ = limits.optimizer(net, 0.1).update(g, limits.optimizer(net, 0.1).init(p), p)
    for name in p:
        np.testing.assert_allclose(u[name]["w"], -0.1 * net.lr_scales[name]["w"])
    adam = limits.optimizer(net.lr_scales, 0.1, "adam", eps=0.0)
    u, _ = adam.update(g, adam.init(p), p)
    for name in p:  # first Adam step is -lr * s * sign(g)
        np.testing.assert_allclose(u[name]["w"], -0.1 * net.lr_scales[name]["w"])


def test_ntk_with_lr_scales():
    ntk = pytest.importorskip("ntk")
    if "param_scales" not in ntk.empirical_ntk_fn.__code__.co_varnames:
        pytest.skip("ntk.empirical_ntk_fn has no param_scales yet")
    net = limits.mlp(3, 16, 2, 1, P.MUP, base_width=4)
    p = net.init(jax.random.PRNGKey(0))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((5, 3)))
    theta = limits.ntk_fn(net)(x, x, p)
    jac = jax.jacobian(lambda q: net.apply(q, x)[:, 0])(p)
    expect = sum(net.lr_scales[k]["w"] * jnp.einsum("i...,j...->ij", jac[k]["w"], jac[k]["w"])
                 for k in p)
    np.testing.assert_allclose(jnp.squeeze(theta), expect, rtol=1e-10)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: limits.mlp(3, -4, 2, 1, P.MUP), ValueError, "width"),
    (lambda: limits.mlp(3, 4.0, 2, 1, P.MUP), TypeError, "width"),
    (lambda: limits.mlp(3, 4, 0, 1, P.MUP), ValueError, "depth"),
    (lambda: limits.mlp(3, 4, 3, 1, P.MFP), ValueError, "depth"),
    (lambda: limits.mlp(3, 4, 2, 1, "muP"), TypeError, "parametrization"),
    (lambda: limits.mlp(3, 4, 2, 1, P.MUP, activation="swishy"), ValueError, "activation"),
    (lambda: limits.mlp(3, 4, 2, 1, P.MUP, base_width=-1), ValueError, "base_width"),
    (lambda: limits.resmlp(3, 4, 2, 1, P.MFP), ValueError, "hidden"),
    (lambda: limits.resmlp(3, 4, 2, 1, P.MUP, branch="cubic"), ValueError, "branch"),
    (lambda: limits.resmlp(3, 4, 2, 1, P.MUP, base_depth=0), ValueError, "base_depth"),
    (lambda: limits.optimizer({"w": 1.0}, 0.1, "lion"), ValueError, "optimizer"),
    (lambda: limits.optimizer({"w": 1.0}, 0.1), ValueError, "kind"),
    (lambda: limits.optimizer({"w": 1.0}, -0.1, "sgd"), ValueError, "learning_rate"),
    (lambda: limits.ntk_fn(lambda p, x: x), TypeError, "network"),
])
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_bad_input_shape():
    net = limits.mlp(3, 4, 2, 1, P.MUP)
    p = net.init(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"x must have shape \(N, 3\)"):
        net.apply(p, jnp.ones((2, 5)))
