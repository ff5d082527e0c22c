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


def test_a_whole_kernel_object_needs_get(net, data):
    with pytest.raises(TypeError, match="get="):
        ntk.batch(net[2], batch_size=2)(data[0], None)
