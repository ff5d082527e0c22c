"""Kernels and finite networks compute the same under ``jax_numpy_rank_promotion='raise'``
(neural-tangents' test setting and a common user one) as under the default: no layer relies on
implicit rank promotion."""
import jax
import numpy as np
import pytest

from ntk import stax

NETWORKS = {
    "dense_bias_relu": lambda: stax.serial(stax.Dense(8, 1.5, 0.1), stax.Relu(),
                                           stax.Dense(2, 1.2, 0.3)),
    "numerical": lambda: stax.serial(stax.Dense(8, 1.3, 0.2),
                                     stax.ElementwiseNumerical(jax.nn.gelu, deg=16),
                                     stax.Dense(1, 1.0, 0.1)),
    "tanh": lambda: stax.serial(stax.Dense(8, 1.3, 0.2), stax.Tanh(), stax.Dense(1)),
    "layernorm_erf": lambda: stax.serial(stax.Dense(8, 1.1, 0.1), stax.LayerNorm(),
                                         stax.Erf(), stax.Dense(1, 1.0, 0.1)),
    "conv_bias_pool": lambda: stax.serial(
        stax.Conv(4, (2, 2), padding="SAME", W_std=1.4, b_std=0.1), stax.Relu(),
        stax.AvgPool((2, 2)), stax.Flatten(), stax.Dense(1, 1.0, 0.2)),
}


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_same_numbers_with_rank_promotion_raise(name):
    init_fn, apply_fn, kernel_fn = NETWORKS[name]()
    rng = np.random.default_rng(0)
    shape = (3, 4, 4, 2) if name.startswith("conv") else (3, 5)
    x1, x2 = rng.normal(size=shape), rng.normal(size=(2,) + shape[1:])
    _, params = init_fn(jax.random.PRNGKey(0), x1.shape)
    expected = kernel_fn(x1, x2, ("nngp", "ntk")), apply_fn(params, x1)
    with jax.numpy_rank_promotion("raise"):
        got = kernel_fn(x1, x2, ("nngp", "ntk")), apply_fn(params, x1)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_array_equal(a, b)
