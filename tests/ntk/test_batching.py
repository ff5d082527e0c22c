"""ntk.batch: block-by-block kernels equal the unbatched kernel; bad arguments are refused."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk
from ntk import stax


@pytest.fixture(scope="module")
def net():
    return stax.serial(stax.Dense(16, b_std=0.1), stax.Relu(), stax.Dense(3, b_std=0.1))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return jnp.asarray(rng.normal(size=(6, 4))), jnp.asarray(rng.normal(size=(4, 4)))


@pytest.mark.parametrize("get", ["ntk", ("nngp", "ntk", "cov1", "cov2")])
@pytest.mark.parametrize("with_x2", [False, True])
def test_stax_kernels_in_blocks_equal_one_shot(net, data, get, with_x2):
    x1, x2 = data
    x2 = x2 if with_x2 else None
    whole = net[2](x1, x2, get)
    blocked = ntk.batch(net[2], batch_size=2)(x1, x2, get)
    if isinstance(get, str):
        np.testing.assert_allclose(blocked, whole, rtol=1e-12)
        return
    for name in get:
        a, b = getattr(blocked, name), getattr(whole, name)
        assert (a is None) == (b is None), name
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=1e-12, err_msg=name)


def test_empirical_kernel_in_blocks_on_host(net, data):
    x1, x2 = data
    _, params = net[0](jax.random.PRNGKey(0), x1.shape)
    fn = ntk.empirical_ntk_fn(net[1], trace_axes=(), vmap_axes=0)
    blocked = ntk.batch(fn, batch_size=2, store_on_device=False)(x1, x2, params)
    np.testing.assert_allclose(blocked, fn(x1, x2, params), rtol=1e-10)
    assert blocked.shape == (6, 4, 3, 3)


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(batch_size=4), ValueError, ["batch_size=4", "N1 = 6"]),
    (dict(batch_size=-1), ValueError, ["batch_size"]),
    (dict(batch_size=2.0), ValueError, ["batch_size"]),
    (dict(batch_size=2, device_count=4), NotImplementedError, ["device_count=4"]),
])
def test_bad_arguments(net, data, kwargs, error, words):
    with pytest.raises(error) as err:
        ntk.batch(net[2], **kwargs)(data[0], None, "nngp")
    for w in words:
        assert w in str(err.value)


def test_whole_kernels_and_graph_patterns_come_back_in_blocks(net, data):
    """A stax kernel function in blocks returns the whole ``Kernel`` (``get=None``) and slices
    ``pattern=`` graphs with their inputs, as the unbatched call does."""
    x1, x2 = data
    for other in (None, x2):
        whole, blocked = net[2](x1, other), ntk.batch(net[2], batch_size=2)(x1, other)
        assert isinstance(blocked, stax.Kernel)
        for name in ("nngp", "ntk", "cov1", "cov2"):
            a, b = getattr(blocked, name), getattr(whole, name)
            assert (a is None) == (b is None), name
            if a is not None:
                np.testing.assert_allclose(a, b, rtol=1e-12, err_msg=name)
    rng = np.random.default_rng(3)
    g1, g2 = rng.normal(size=(6, 5, 3)), rng.normal(size=(4, 5, 3))
    p1, p2 = ((rng.random(size=(n, 5, 5)) < 0.4).astype(float) for n in (6, 4))
    _, _, gnn = stax.serial(stax.Dense(4), stax.Relu(), stax.Aggregate(), stax.GlobalAvgPool(),
                            stax.Dense(1))
    np.testing.assert_allclose(ntk.batch(gnn, batch_size=2)(g1, g2, "nngp", pattern=(p1, p2)),
                               gnn(g1, g2, "nngp", pattern=(p1, p2)), rtol=1e-12)


def test_parallel_list_and_dict_outputs_are_assembled_part_by_part():
    """A ``parallel`` network's kernels (one per branch, a list) and a dict-valued kernel
    function come back in blocks as they come whole."""
    _, _, kf = stax.serial(stax.Dense(8), stax.FanOut(2), stax.parallel(stax.Relu(), stax.Erf()))
    x = jax.random.normal(jax.random.PRNGKey(0), (6, 3))
    x2 = jax.random.normal(jax.random.PRNGKey(1), (4, 3))
    for other in (None, x2):
        whole = kf(x, other, ("nngp", "ntk"))
        blocked = ntk.batch(kf, batch_size=2)(x, other, ("nngp", "ntk"))
        assert isinstance(blocked, list) and len(blocked) == 2
        assert jax.tree.structure(blocked) == jax.tree.structure(whole)
        for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(blocked)):
            np.testing.assert_allclose(b, a, rtol=1e-13, atol=1e-15)

    def linear_and_quadratic(x1, x2=None):
        x2 = x1 if x2 is None else x2
        dot = x1 @ x2.T
        return {"linear": dot, "quadratic": dot ** 2}

    got = ntk.batch(linear_and_quadratic, batch_size=3)(x)
    dot = np.asarray(x) @ np.asarray(x).T
    np.testing.assert_allclose(got["linear"], dot, rtol=1e-13)
    np.testing.assert_allclose(got["quadratic"], dot ** 2, rtol=1e-13)
