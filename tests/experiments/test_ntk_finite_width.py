"""Jacot et al. finite-width study: independent checks of its pieces (float64, tiny sizes)."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk
from experiments import ntk_finite_width as nf


def _arccos_relu_ntk(x1, x2, depth, w_std, b_std):
    """Jacot et al.'s recursion in numpy for one pair of inputs (ReLU, NTK parametrisation):
    ``Sigma^1 = w^2 x.x'/d + b^2``; ``Sigma^{l+1} = w^2 E[relu(u) relu(v)] + b^2``,
    ``Sigma_dot = w^2 P(u > 0, v > 0)``; ``Theta^{l+1} = Theta^l Sigma_dot + Sigma^{l+1}``."""
    d = len(x1)
    s11, s22, s12 = (w_std ** 2 * a @ b / d + b_std ** 2 for a, b in
                     ((x1, x1), (x2, x2), (x1, x2)))
    theta = s12
    for _ in range(depth - 1):
        c = np.clip(s12 / np.sqrt(s11 * s22), -1.0, 1.0)
        t = np.arccos(c)
        e_uv = np.sqrt(s11 * s22) * (np.sin(t) + (np.pi - t) * c) / (2 * np.pi)
        dot = w_std ** 2 * (np.pi - t) / (2 * np.pi)
        s11, s22 = w_std ** 2 * s11 / 2 + b_std ** 2, w_std ** 2 * s22 / 2 + b_std ** 2
        s12 = w_std ** 2 * e_uv + b_std ** 2
        theta = theta * dot + s12
    return theta


def test_limit_kernel_matches_the_arccosine_recursion():
    gamma, x = nf.circle_inputs(9)
    assert gamma[0] == pytest.approx(-np.pi) and gamma[-1] == pytest.approx(np.pi)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0)
    _, _, kernel_fn = nf.network(1, depth=4, w_std=1.0, b_std=0.1)
    x0 = np.array([1.0, 0.0])
    got = np.asarray(kernel_fn(jnp.asarray(x), jnp.asarray(x0[None]), "ntk"))[:, 0]
    want = [_arccos_relu_ntk(xi, x0, 4, 1.0, 0.1) for xi in x]
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_width_slope_recovers_synthetic_power_laws():
    widths = np.array([64, 128, 256, 512, 1024])
    for exponent in (-0.5, -1.0, 0.25):
        assert nf.width_slope(widths, 3.0 * widths ** exponent) == pytest.approx(exponent)
    # seeds with multiplicative noise: the RMS over seeds keeps the exponent
    rng = np.random.default_rng(0)
    noisy = 2.0 * widths ** -0.5 * np.abs(rng.standard_normal((4000, len(widths))))
    assert nf.width_slope(widths, noisy) == pytest.approx(-0.5, abs=0.03)


@pytest.mark.parametrize("bad", [np.ones(3), np.ones((2, 3)), np.array([1.0, -1.0, 1.0, 1.0])])
def test_width_slope_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="values"):
        nf.width_slope([1, 2, 4, 8], bad)


def test_mean_kernel_z_is_order_one_without_bias_and_large_with_it():
    rng = np.random.default_rng(1)
    limit = np.linspace(1.0, 2.0, 20)
    zs = [nf.mean_kernel_z(limit + rng.standard_normal((16, 20)), limit) for _ in range(300)]
    assert np.mean(np.square(zs)) == pytest.approx(1.0, abs=0.15)   # E z^2 ~ 1
    biased = limit + 5.0 / np.sqrt(16) + rng.standard_normal((16, 20))   # 5 standard errors
    assert nf.mean_kernel_z(biased, limit) > 3.0
    with pytest.raises(ValueError, match="kernels"):
        nf.mean_kernel_z(np.ones((1, 3)), np.ones(3))


def test_sample_params_has_the_init_fn_structure_and_unit_normal_leaves():
    init_fn, _, _ = nf.network(32, depth=2)
    _, ref = init_fn(jax.random.PRNGKey(0), (-1, 2))
    stack = nf.sample_params(init_fn, (-1, 2), np.random.default_rng(0), 50)
    assert jax.tree.structure(stack) == jax.tree.structure(ref)
    for a, b in zip(jax.tree.leaves(stack), jax.tree.leaves(ref)):
        assert a.shape == (50,) + b.shape
    # stax's NTK-parametrised init is N(0, 1) in every leaf: the same law as sample_params
    for leaf in map(np.asarray, jax.tree.leaves(ref)):
        if leaf.size >= 64:
            assert abs(leaf.mean()) < 5 / np.sqrt(leaf.size)
            assert leaf.var() == pytest.approx(1.0, abs=6 / np.sqrt(leaf.size))


def test_one_hidden_layer_entk_mean_is_the_limit_within_monte_carlo_error():
    """With one hidden layer the eNTK is a mean of i.i.d. per-unit terms, so E Theta_n =
    Theta_inf exactly at any width: the Monte Carlo mean is unbiased."""
    _, x = nf.circle_inputs(17)
    x, x0 = jnp.asarray(x), jnp.asarray([[1.0, 0.0]])
    init_fn, apply_fn, kernel_fn = nf.network(32, depth=2)
    limit = np.asarray(kernel_fn(x, x0, "ntk"))[:, 0]
    entk = ntk.empirical_ntk_fn(apply_fn, vmap_axes=0, implementation="ntvp")
    params = nf.sample_params(init_fn, (-1, 2), np.random.default_rng(3), 200)
    rows = np.asarray(jax.vmap(lambda p: entk(x, x0, p)[:, 0])(params))
    assert nf.mean_kernel_z(rows, limit) < 4.0
    # and each row is far from the limit (width 32): the agreement is not trivial
    assert np.median(nf.relative_distance(rows, limit[None])) > 0.05


def test_stacked_gd_chunk_equals_plain_gd_per_network():
    init_fn, apply_fn, _ = nf.network(8, depth=2)
    params = nf.sample_params(init_fn, (-1, 2), np.random.default_rng(0), 2)
    cfg = nf.Config(n_train=5)
    x, y = nf._train_data(cfg)
    out, loss = nf._gd_chunk(params, x, y, 0.7, apply_fn, 3)

    @jax.jit
    def plain_step(p):   # C = (1/2P) sum (f - y)^2, one network
        g = jax.grad(lambda q: 0.5 * jnp.mean((apply_fn(q, x)[:, 0] - y) ** 2))(p)
        return jax.tree.map(lambda a, b: a - 0.7 * b, p, g)
    losses = []
    for s in range(2):
        p = jax.tree.map(lambda a: a[s], params)
        for _ in range(3):
            p = plain_step(p)
        for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(out)):
            np.testing.assert_allclose(a, b[s], rtol=1e-12, atol=1e-12)
        losses.append(0.5 * np.mean((np.asarray(apply_fn(p, x))[:, 0] - np.asarray(y)) ** 2))
    assert float(loss) == pytest.approx(np.mean(losses), rel=1e-12)


@pytest.mark.parametrize("field,value", [("widths", (64, 32, 128)), ("train_widths", (48, 96, 192)),
                                         ("n_trained", 100), ("n_steps", 210), ("depth", 1)])
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(nf.Config(), **{field: value}).validate()


def _fake_results():
    """A results dict shaped like a quick run's (no training), as read back from JSON."""
    import json
    from experiments import config as configlib
    from experiments.records import jsonable
    cfg = nf.Config()
    gamma, _ = nf.circle_inputs(cfg.n_angles)
    limit = 1.0 + np.cos(gamma)
    rng = np.random.default_rng(0)
    kernels = {str(w): {"init": (limit + 0.1 * rng.standard_normal((2, len(gamma)))).tolist(),
                        "trained": (limit + 0.1 * rng.standard_normal((2, len(gamma)))).tolist()}
               for w in (cfg.train_widths[0], cfg.train_widths[-1])}
    metrics = {"widths": list(cfg.widths), "train_widths": list(cfg.train_widths),
               "n_steps": cfg.n_steps, "gamma": gamma, "limit_ntk": limit,
               "init_relative_deviation": np.full((len(cfg.widths), cfg.n_inits), 0.1),
               "init_rms_relative_deviation": np.array(cfg.widths, float) ** -0.5,
               "init_deviation_slope": -0.5,
               "train_rms_relative_change": 1.0 / np.array(cfg.train_widths, float),
               "train_change_slope": float("nan"), "largest_width_mean_z": 1.2,
               "figure_kernels": kernels}
    results = {"study": "ntk_finite_width", "config": configlib.to_dict(cfg), "metrics": metrics}
    return json.loads(json.dumps(jsonable(results)))


def test_figures_redraw_from_json_results_and_claims_read_metrics_only():
    from matplotlib.figure import Figure
    from experiments.runner import check_claims
    results = _fake_results()
    figs = nf.figures(results)
    assert list(figs) == ["ntk_finite_width"] and all(isinstance(f, Figure) for f in figs.values())
    checked = {c["id"]: c for c in check_claims(nf, results)}
    assert [c.id for c in nf.CLAIMS] == list(checked)
    assert checked["init_deviation_sqrt_width"]["holds"]
    assert checked["largest_width_mean_is_limit"]["holds"]
    assert not checked["training_change_shrinks"]["holds"]          # NaN never holds
    assert "200 GD steps" in checked["training_change_shrinks"]["text"]
