"""architectures.init: params only, state closed over, pure and repeatable apply_fn."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import architectures


@pytest.fixture(scope="module")
def resnet():
    module = architectures.resnet18(num_classes=3, width=2)
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 8, 3), jnp.float32)
    return module, x


@pytest.mark.slow  # a second ResNet-18 init and compile
def test_init_twice_gives_the_same_function(resnet):
    module, x = resnet
    fn_a, params_a = architectures.init(module, jax.random.PRNGKey(0), x)
    fn_b, params_b = architectures.init(module, jax.random.PRNGKey(0), x)
    assert fn_a is not fn_b
    for a, b in zip(jax.tree_util.tree_leaves(params_a), jax.tree_util.tree_leaves(params_b)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fn_a(params_a, x), fn_b(params_a, x))
    np.testing.assert_allclose(jax.jit(fn_a)(params_a, x), fn_a(params_a, x), rtol=1e-5,
                               atol=1e-6)
    other, _ = architectures.init(module, jax.random.PRNGKey(5), x)
    assert not np.array_equal(other(params_a, x), fn_a(params_a, x))   # other running stats


class _BatchNormNet(nn.Module):
    """A dense layer, BatchNorm and a readout: running statistics without a ResNet's cost."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = nn.Dense(8)(x.reshape(x.shape[0], -1))
        h = nn.BatchNorm(use_running_average=not train)(h)
        return nn.Dense(3)(nn.relu(h))


def test_train_mode_is_pure():
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 8, 3), jnp.float32)
    fn, params = architectures.init(_BatchNormNet(), jax.random.PRNGKey(0), x, train=True)
    assert fn.state, "the module has running statistics"
    state = jax.tree_util.tree_map(np.asarray, fn.state)
    first = fn(params, x)
    np.testing.assert_array_equal(fn(params, x), first)
    for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(fn.state)):
        np.testing.assert_array_equal(a, b)


def test_float64_params_give_a_float64_network(resnet):
    module, x = resnet
    fn, params = architectures.init(module, jax.random.PRNGKey(0), x)
    params64 = jax.tree_util.tree_map(lambda p: p.astype(jnp.float64), params)
    y32, y64 = fn(params, x), fn(params64, x.astype(jnp.float64))
    assert y32.dtype == jnp.float32 and y64.dtype == jnp.float64
    np.testing.assert_allclose(y32, y64, rtol=1e-3, atol=1e-4)


def test_modules_without_train_or_state():
    fn, params = architectures.init(nn.Dense(3), jax.random.PRNGKey(0), jnp.ones((2, 4)))
    assert set(params) == {"kernel", "bias"} and fn.state == {}
    np.testing.assert_allclose(fn(params, jnp.ones((2, 4))),
                               jnp.ones((2, 4)) @ params["kernel"] + params["bias"], rtol=1e-6)


def test_init_rejects_bad_arguments():
    with pytest.raises(TypeError, match="module"):
        architectures.init(lambda x: x, jax.random.PRNGKey(0), jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="calibration_steps"):
        architectures.init(nn.Dense(3), jax.random.PRNGKey(0), jnp.ones((2, 4)),
                           calibration_steps=-1)


def test_registry_lists_every_builder():
    assert set(architectures.names()) == {"resnet18", "wide_resnet", "myrtle", "vit_tiny", "gpt"}
    for name in architectures.names():
        assert isinstance(architectures.REGISTRY[name](), nn.Module)
