"""Myrtle CNNs: layout, the Flax and ntk.stax forms agree, and the analytic NNGP of
``myrtle_stax`` matches the Monte Carlo average over its finite networks."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import architectures
from ntk import stax


def _n_leaves(tree):
    return sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(tree))


@pytest.mark.parametrize("depth,n_convs", [(5, 4), (7, 6), (10, 9)])
def test_flax_and_stax_forms_have_the_same_layout(depth, n_convs):
    width, classes, x = 6, 7, jnp.zeros((2, 8, 8, 3))
    module = architectures.myrtle(depth, width, classes)
    variables = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), x))
    out = jax.eval_shape(module.apply, variables, x)
    init_fn, apply_fn, _ = architectures.myrtle_stax(depth, num_classes=classes, width=width)
    out_shape, params = init_fn(jax.random.PRNGKey(0), x.shape)
    assert out.shape == tuple(out_shape) == apply_fn(params, x).shape == (2, classes)
    # by hand: first conv 27 w + w, the others 9 w^2 + w, head w C + C (all with biases)
    expected = 28 * width + (n_convs - 1) * (9 * width**2 + width) + width * classes + classes
    assert _n_leaves(variables["params"]) == _n_leaves(params) == expected
    assert architectures.MYRTLE_STAGES[depth] and sum(architectures.MYRTLE_STAGES[depth]) == n_convs


def test_stax_form_equals_the_three_pool_layout_on_32x32():
    """On 32x32 images the final 'pool to 1x1' is neural-tangents' three 2x2 average pools
    followed by Flatten; same parameters, same outputs."""
    init_fn, apply_fn, _ = architectures.myrtle_stax(5, num_classes=3, width=4)
    conv = lambda: stax.Conv(4, (3, 3), padding="SAME", W_std=2**0.5, b_std=0.0)
    pool = lambda: stax.AvgPool((2, 2), strides=(2, 2))
    _, ref_apply, _ = stax.serial(conv(), stax.Relu(), conv(), stax.Relu(), pool(), conv(),
                                  stax.Relu(), pool(), conv(), stax.Relu(), pool(), pool(),
                                  pool(), stax.Flatten(), stax.Dense(3, 2**0.5, 0.0))
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 32, 32, 3))
    _, params = init_fn(jax.random.PRNGKey(0), x.shape)
    weights = [p for p in params if p != ()]
    ref_params, it = [], iter(weights)
    for kind in ("c", "", "c", "", "", "c", "", "", "c", "", "", "", "", "", "c"):
        ref_params.append(next(it) if kind else ())
    np.testing.assert_allclose(apply_fn(params, x), ref_apply(tuple(ref_params), x),
                               rtol=1e-10, atol=1e-12)


def test_flax_myrtle_computes_the_stax_network():
    """Flax (standard parameterization, W ~ N(0, 2 / fan_in)) and stax (NTK
    parameterization, W_std = sqrt 2) compute the same function when the stax weights are
    the Flax ones scaled by sqrt(fan_in / 2)."""
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 8, 3), jnp.float64)
    apply_fn, params = architectures.init(architectures.myrtle(5, 4, 3), jax.random.PRNGKey(0), x)
    params = jax.tree_util.tree_map(lambda p: p.astype(jnp.float64), params)
    _, stax_apply, _ = architectures.myrtle_stax(5, num_classes=3, width=4)
    layers = [params[f"Conv_{i}"] for i in range(4)] + [params["Dense_0"]]
    stax_params, it = [], iter(layers)
    for kind in ("c", "", "c", "", "", "c", "", "", "c", "", "", "c"):
        if not kind:
            stax_params.append(())
            continue
        p = next(it)
        fan_in = int(np.prod(p["kernel"].shape[:-1]))
        stax_params.append((p["kernel"] * np.sqrt(fan_in / 2.0), p["bias"]))
    # b_std = 0: stax biases do not enter; the Flax biases are zero at initialisation
    assert all(float(jnp.max(jnp.abs(p["bias"]))) == 0.0 for p in layers)
    np.testing.assert_allclose(apply_fn(params, x), stax_apply(tuple(stax_params), x),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.slow  # 48 finite networks
def test_nngp_matches_monte_carlo_over_finite_networks():
    """E_theta[f(x1) f(x2)^T] / C over random initialisations converges to the analytic NNGP
    (finite-width bias O(1/width), about 1% at width 64; checked to 4 standard errors)."""
    width, classes, n_samples = 64, 32, 48
    init_fn, apply_fn, kernel_fn = architectures.myrtle_stax(5, num_classes=classes,
                                                             width=width)
    x = jax.random.normal(jax.random.PRNGKey(3), (3, 8, 8, 3), jnp.float64)
    analytic = np.asarray(kernel_fn(x, None, "nngp"))

    @jax.jit
    def sample(key):
        f = apply_fn(init_fn(key, x.shape)[1], x)
        return f @ f.T / f.shape[1]

    samples = np.stack([np.asarray(sample(k))
                        for k in jax.random.split(jax.random.PRNGKey(0), n_samples)])
    mean = samples.mean(0)
    stderr = samples.std(0, ddof=1) / np.sqrt(n_samples)
    assert np.all(np.abs(mean - analytic) < 4 * stderr), (mean - analytic) / stderr
    # the analytic kernel is not trivially matched: a wrong weight scale is many errors off
    assert np.all(np.abs(mean - 0.5 * analytic) > 4 * stderr)


@pytest.mark.parametrize("depth", [4, 6, True])
def test_rejects_unknown_depths(depth):
    with pytest.raises(ValueError, match="depth"):
        architectures.myrtle(depth)
    with pytest.raises(ValueError, match="depth"):
        architectures.myrtle_stax(depth)


def test_rejects_image_sides_not_multiple_of_four():
    module = architectures.myrtle(5, 4)
    with pytest.raises(ValueError, match="multiples of 4"):
        jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros((1, 6, 8, 3))))
