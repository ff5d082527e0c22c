"""A stax kernel function honours or refuses every keyword argument; none is dropped."""
import jax.numpy as jnp
import numpy as np
import pytest

from ntk import stax


@pytest.fixture(scope="module")
def kernel_fn():
    return stax.serial(stax.Dense(8, b_std=0.1), stax.Relu(), stax.Dense(1))[2]


def test_neural_tangents_keywords_with_their_supported_values_are_honoured(kernel_fn):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4)))
    plain = kernel_fn(x, None, "ntk")
    same = kernel_fn(x, None, "ntk", rng=None, diagonal_batch=True, mask_constant=None,
                     pattern=None)
    np.testing.assert_array_equal(plain, same)
    # neural-tangents' "no pattern for either input", accepted by networks without Aggregate
    for none in [(None, None), [None, None]]:
        np.testing.assert_array_equal(plain, kernel_fn(x, None, "ntk", pattern=none))


@pytest.mark.parametrize("kwargs, error, words", [
    ({"diagonal_batch": False}, NotImplementedError, ["diagonal_batch=False"]),
    ({"mask_constant": [0.0, 1.0]}, TypeError, ["mask_constant must be a number"]),
    ({"pattern": np.ones((3, 5, 5))}, NotImplementedError, ["pattern=<array of shape (3, 5, 5)>"]),
    ({"pattern": (np.ones((3, 5, 5)), None)}, NotImplementedError,
     ["pattern=(<array of shape (3, 5, 5)>, None)"]),
    ({"diagonal_spatail": True}, TypeError, ["diagonal_spatail"]),
    ({"batchsize": 2}, TypeError, ["batchsize"]),
])
def test_unsupported_or_misspelled_keywords_raise(kernel_fn, kwargs, error, words):
    with pytest.raises(error) as err:
        kernel_fn(jnp.ones((3, 4)), None, "nngp", **kwargs)
    for w in words:
        assert w in str(err.value)
