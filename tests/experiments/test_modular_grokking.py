"""Kumar et al. 2023 modular addition: data, the quadratic network's closed forms, the optimiser."""
import itertools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk
from experiments import modular_grokking as mg
from experiments.claims import check
from experiments.records import jsonable


def test_data_covers_every_pair_once_with_the_requested_split():
    p, frac = 7, 0.3
    d = mg.modular_addition_data(p, frac, seed=3)
    pairs = {tuple(ab) for ab in d["pairs"]}
    assert pairs == set(itertools.product(range(p), range(p))) and len(d["pairs"]) == p * p
    for x, (a, b), c in zip(d["x"], d["pairs"], d["labels"]):
        assert np.flatnonzero(x).tolist() == [a, p + b] and x.sum() == 2
        assert c == (a + b) % p
    tr, te = set(d["train"].tolist()), set(d["test"].tolist())
    assert not tr & te and tr | te == set(range(p * p))
    assert len(tr) == round(frac * p * p) == 15
    assert not np.array_equal(d["train"], mg.modular_addition_data(p, frac, seed=4)["train"])
    with pytest.raises(ValueError, match="train_fraction"):
        mg.modular_addition_data(p, 0.01, seed=0)        # rounds to no training pair
    with pytest.raises(ValueError, match="modulus"):
        mg.modular_addition_data(1, 0.5, seed=0)


def test_output_covariance_at_init_matches_monte_carlo():
    """E h_c(x) h_c'(x') over inits: (|x|^2|x'|^2 + 2 (x.x')^2)/(N D^2) for c = c', 0 otherwise;
    one-hot pairs sharing 0, 1 and 2 digits give 4, 6 and 12 times 1/(N D^2)."""
    p, N, n_inits = 5, 4, 20_000
    d = mg.modular_addition_data(p, 0.5, seed=0)
    idx = [0, 1, 6, 0]                       # (0,0) with (0,1): one shared digit; (1,1): none
    x = jnp.asarray(d["x"][idx])
    outs = jax.vmap(lambda k: mg.apply_fn(mg.init_params(k, p, N, jnp.float64), x))(
        jax.random.split(jax.random.PRNGKey(0), n_inits))          # (n_inits, 4, p)
    exact = mg.init_output_covariance(x, x, N)
    scale = N * (2 * p) ** 2
    np.testing.assert_allclose(exact[0, [1, 2, 3]] * scale, [6, 4, 12])
    for i, j in [(0, 1), (0, 2), (0, 3)]:
        prod = np.asarray(outs[:, i, :] * outs[:, j, :])          # per output c
        se = prod.std() / np.sqrt(prod.size)
        assert abs(prod.mean() - exact[i, j]) < 4 * se
        cross = np.asarray(outs[:, i, 0] * outs[:, j, 1])          # different outputs
        assert abs(cross.mean()) < 4 * cross.std() / np.sqrt(cross.size)


def test_entk_closed_form_matches_autodiff_ntk():
    """Output-averaged eNTK from ntk.empirical_ntk_fn (autodiff) = the closed form, on general
    (not one-hot) inputs."""
    p, N = 4, 9
    params = mg.init_params(jax.random.PRNGKey(1), p, N, jnp.float64)
    x1 = jax.random.normal(jax.random.PRNGKey(2), (6, 2 * p))
    x2 = jax.random.normal(jax.random.PRNGKey(3), (3, 2 * p))
    theta = ntk.empirical_ntk_fn(mg.apply_fn)(x1, x2, params)
    np.testing.assert_allclose(theta, mg.entk(params, x1, x2), rtol=1e-10)


def test_infinite_width_ntk_is_the_mean_of_the_entk_at_init():
    p, N, n_inits = 4, 16, 3000
    x = jnp.asarray(mg.modular_addition_data(p, 0.5, seed=0)["x"][[0, 1, 4, 5]])
    ks = jax.vmap(lambda k: mg.entk(mg.init_params(k, p, N, jnp.float64), x, x))(
        jax.random.split(jax.random.PRNGKey(4), n_inits))
    mean, se = np.asarray(ks.mean(0)), np.asarray(ks.std(0)) / np.sqrt(n_inits)
    exact = mg.infinite_width_ntk(x, x, N)
    assert np.all(np.abs(mean - exact) < 4 * se)
    np.testing.assert_allclose(exact[0] * N * (2 * p) ** 2, [28, 10, 10, 4])  # 2, 1, 1, 0 shared


def test_loss_gradient_matches_explicit_loops_and_finite_differences():
    p, N, P, alpha = 3, 5, 7, 1.7
    rng = np.random.default_rng(0)
    params = mg.init_params(jax.random.PRNGKey(5), p, N, jnp.float64)
    p0 = mg.init_params(jax.random.PRNGKey(6), p, N, jnp.float64)
    x = rng.standard_normal((P, 2 * p))
    y = np.eye(p)[rng.integers(0, p, P)]
    f0 = alpha * mg.apply_fn(p0, jnp.asarray(x))
    g = jax.jit(jax.grad(mg.squared_error))(params, jnp.asarray(x), jnp.asarray(y), f0, alpha)
    W, A, F0 = (np.asarray(params["w"]), np.asarray(params["a"]), np.asarray(f0))
    D = 2 * p
    gw, ga = np.zeros_like(W), np.zeros_like(A)
    for n in range(P):
        u = [W[i] @ x[n] for i in range(N)]
        for c in range(p):
            f = alpha * sum(A[c, i] * u[i] ** 2 for i in range(N)) / (N * D) - F0[n, c]
            r = 2 * (f - y[n, c]) / P
            for i in range(N):
                ga[c, i] += r * alpha * u[i] ** 2 / (N * D)
                gw[i] += r * alpha * A[c, i] * 2 * u[i] * x[n] / (N * D)
    np.testing.assert_allclose(g["a"], ga, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(g["w"], gw, rtol=1e-10, atol=1e-14)
    v = jax.tree.map(lambda t: jax.random.normal(jax.random.PRNGKey(7), t.shape), params)
    h = 1e-5
    shifted = jax.jit(lambda s: mg.squared_error(jax.tree.map(lambda a, b: a + s * b, params, v),
                                                 jnp.asarray(x), jnp.asarray(y), f0, alpha))
    fd = (shifted(h) - shifted(-h)) / (2 * h)
    directional = sum(jnp.sum(a * b) for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(v)))
    assert float(fd) == pytest.approx(float(directional), rel=1e-7)


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_adamw_chunk_equals_explicit_adam_with_decoupled_decay(weight_decay):
    """The study's AdamW chunk = Adam written out (bias-corrected moments, eps = 1e-8) plus the
    decoupled decay lr * wd * theta; with wd = 0 it is plain Adam."""
    p, N, lr, steps, alpha = 3, 4, 0.05, 6, 2.0
    d = mg.modular_addition_data(p, 0.6, seed=1)
    x = jnp.asarray(d["x"][d["train"]])
    y = jnp.asarray(np.eye(p)[d["labels"][d["train"]]])
    params = mg.init_params(jax.random.PRNGKey(8), p, N, jnp.float64)
    f0 = alpha * mg.apply_fn(params, x)
    import optax
    opt = optax.adamw(lr, weight_decay=weight_decay)
    state = {"params": params, "opt": opt.init(params)}
    hyper = {"lr": jnp.asarray(lr), "weight_decay": jnp.asarray(weight_decay)}
    out = mg._chunk(state, x, y, f0, alpha, hyper, steps, "adamw")["params"]
    theta = {k: np.asarray(v) for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in theta.items()}
    s = {k: np.zeros_like(v) for k, v in theta.items()}
    b1, b2, eps = 0.9, 0.999, 1e-8
    grad = jax.jit(jax.grad(mg.squared_error))
    for t in range(1, steps + 1):
        g = grad({k: jnp.asarray(v) for k, v in theta.items()}, x, y, f0, alpha)
        for k in theta:
            m[k] = b1 * m[k] + (1 - b1) * np.asarray(g[k])
            s[k] = b2 * s[k] + (1 - b2) * np.asarray(g[k]) ** 2
            mhat, shat = m[k] / (1 - b1 ** t), s[k] / (1 - b2 ** t)
            theta[k] = theta[k] - lr * (mhat / (np.sqrt(shat) + eps) + weight_decay * theta[k])
    for k in theta:
        np.testing.assert_allclose(out[k], theta[k], rtol=1e-9, atol=1e-12)


def test_first_at_least_and_config_validation():
    assert mg.first_at_least([0, 50, 100], [0.1, 0.95, 1.0], 0.9) == 50
    assert mg.first_at_least([0, 50], [0.1, 0.2], 0.9) == float("inf")
    mg.Config.quick().validate()
    mg.Config.full().validate()
    with pytest.raises(ValueError, match="log_every"):
        mg.Config(n_steps=120, log_every=50).validate()
    with pytest.raises(ValueError, match="alphas"):
        mg.Config(alphas=(1.0, 2.0)).validate()
    with pytest.raises(ValueError, match="train_fraction"):
        mg.Config(train_fraction=1.0).validate()
    with pytest.raises(ValueError, match="x must be"):
        mg.apply_fn(mg.init_params(jax.random.PRNGKey(0), 3, 2), jnp.ones((4, 5)))


def _synthetic_results():
    """A results dict shaped like a quick run's (three scales, the largest never generalising),
    no training: for the figures and the claims."""
    alphas, steps = [2.0, 4.0, 8.0], [0, 50, 100, 150, 200]
    hist = lambda test: {"step": steps, "train_accuracy": [0.0, 0.5, 1.0, 1.0, 1.0],
                         "test_accuracy": test, "relative_kernel_change": [0, 0.01, 0.1, 1, 2]}
    metrics = {
        "alphas": alphas, "chance_accuracy": 1 / 23, "train_accuracy_threshold": 0.99,
        "test_accuracy_threshold": 0.9,
        "t_train": [100.0, 100.0, 100.0], "t_test": [100.0, 200.0, float("inf")],
        "grokking_delay": [0.0, 100.0, float("inf")], "delay_ratio": [0.0, 1.0, float("inf")],
        "final_test_accuracy": [1.0, 0.96, 0.1],
        "initial_entk_regression_test_accuracy": 0.0,
        "histories": {"2": hist([0, 0.5, 1, 1, 1]), "4": hist([0, 0, 0, 0.5, 1]),
                      "8": hist([0, 0, 0, 0, 0.1])},
        "adamw": {"modulus": 23, "t_train": 100.0, "t_test": 150.0, "grokking_delay": 50.0,
                  "history": hist([0, 0, 0.5, 1, 1])},
    }
    config = {**vars(mg.Config.quick()), "alphas": alphas}
    return json.loads(json.dumps(jsonable({"study": "modular_grokking", "config": config,
                                           "metrics": metrics})))


def test_figures_redraw_from_a_json_round_trip():
    figs = mg.figures(_synthetic_results())
    assert set(figs) == {"accuracy_curves", "delay_vs_alpha"}
    assert all(type(f).__name__ == "Figure" and f.axes for f in figs.values())


def test_claims_read_the_metrics_of_a_json_round_trip():
    held = {c["id"]: (c["holds"], c["measured"])
            for c in check(mg.CLAIMS, _synthetic_results()["metrics"])}
    assert held["modular_grokking_delay"] == (True, 1.0)     # the scale that never groks is out
    assert held["modular_delay_grows_with_scale"] == (True, 1.0)
    assert held["modular_grokked_test_accuracy"] == (True, 0.96)
    assert held["modular_lazy_limit_fails"] == (True, 0.0)
    assert held["modular_adamw_groks"] == (True, 50.0)
    m = _synthetic_results()["metrics"]
    m["adamw"]["t_test"], m["adamw"]["grokking_delay"] = "inf", "inf"   # AdamW never crosses
    (adamw,) = [c for c in check(mg.CLAIMS, m) if c["id"] == "modular_adamw_groks"]
    assert adamw["measured"] == "nan" and not adamw["holds"]
