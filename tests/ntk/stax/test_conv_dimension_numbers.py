"""``stax.Conv`` / ``stax.ConvTranspose`` with ``dimension_numbers=(lhs, rhs, out)``, with
neural-tangents' semantics.

The infinite-width kernels of one convolution on raw inputs are exactly its empirical NTK
(the layer is linear in its parameters, so ``J J^T`` does not depend on them): the
references are ``jax.jacrev`` contractions of the layer's own ``apply_fn`` in its layout,
traced over the output channels, with the output's spatial axes in ``out``'s order. Deeper
networks are checked against the channels-last network on transposed inputs, the finite
layer against ``jax.lax`` with the filter moved to ``HWIO`` by hand.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk import stax

SIZES = {"N": 3, "C": 2, "H": 5, "W": 4}


def _input(spec, n=3, seed=0):
    shape = tuple(n if c == "N" else SIZES[c] for c in spec)
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape))


@functools.partial(jax.jit, static_argnums=(0, 4))
def explicit_ntk(apply_fn, params, x1, x2, out_spec):
    """``(1 / C_out) sum_c <d f(x1)[n, ..., c] / d theta, d f(x2)[m, ..., c] / d theta>``
    in the layout ``(N1, N2, X, X', Y, Y')`` with ``X, Y`` ``out``'s spatial letters."""
    n, c = out_spec.index("N"), out_spec.index("C")
    perm = [n] + [i for i in range(4) if i not in (n, c)] + [c]

    def rows(x):
        jac = jax.jacrev(apply_fn)(params, x)
        shape = apply_fn(params, x).shape
        return [jnp.transpose(j.reshape(shape + (-1,)), perm + [4])
                for j in jax.tree_util.tree_leaves(jac)]

    return sum(jnp.einsum("nxycp,mzwcp->nmxzyw", a, b) / a.shape[-2]
               for a, b in zip(rows(x1), rows(x2)))


CASES = [
    ("Conv", ("NCHW", "OIHW", "NCHW"), (2, 3), (1, 2), "SAME", "ntk"),
    ("Conv", ("NHWC", "WHIO", "NWHC"), (3, 2), (2, 1), "VALID", "ntk"),
    ("Conv", ("HWNC", "IOWH", "HWNC"), (2, 3), (1, 1), "SAME", "standard"),
    ("ConvTranspose", ("NCHW", "OIHW", "NCHW"), (2, 3), (1, 2), "SAME", "ntk"),
    ("ConvTranspose", ("NHWC", "WHIO", "NWHC"), (3, 2), (2, 1), "VALID", "standard"),
]


@pytest.mark.parametrize(
    "layer,dims,filter_shape,strides,padding,param",
    [pytest.param(*c, marks=() if k == 0 else pytest.mark.slow) for k, c in enumerate(CASES)],
    ids=[f"{c[0]}-{c[1][0]}" for c in CASES])
def test_one_layer_kernel_is_its_jacobian_contraction(layer, dims, filter_shape, strides,
                                                      padding, param):
    init_fn, apply_fn, kernel_fn = getattr(stax, layer)(
        6, filter_shape, strides, padding, W_std=1.3, b_std=0.4, dimension_numbers=dims,
        parameterization=param)
    x1, x2 = _input(dims[0]), _input(dims[0], n=2, seed=1)
    out_shape, params = init_fn(jax.random.PRNGKey(0), x1.shape)
    assert apply_fn(params, x1).shape == out_shape
    ref = explicit_ntk(apply_fn, params, x1, x2, dims[2])
    k = kernel_fn(x1, x2, ("nngp", "ntk"))
    np.testing.assert_allclose(k.ntk, ref, rtol=1e-10, atol=1e-12)
    if param == "ntk":   # a raw input's NTK is zero, so the layer's NTK is its NNGP
        np.testing.assert_allclose(k.nngp, ref, rtol=1e-10, atol=1e-12)
    diagonal = kernel_fn(x1, x2, "ntk", diagonal_spatial=True)
    np.testing.assert_allclose(diagonal, jnp.einsum("nmxxyy->nmxy", ref), rtol=1e-10,
                               atol=1e-12)


@pytest.mark.slow
def test_parameters_follow_rhs_and_out_as_neural_tangents():
    """W in ``rhs``'s layout with ``filter_shape`` / ``strides`` in its spatial order; b with
    ``out_chan`` at ``out``'s ``C`` (leading ones dropped); the layer is ``jax.lax``'s
    channels-last convolution of the transposed input and filter."""
    dims = ("CWNH", "IOHW", "HWCN")
    init_fn, apply_fn, _ = stax.Conv(5, (2, 3), (1, 2), "SAME", W_std=1.5, b_std=0.5,
                                     dimension_numbers=dims)
    x = _input("CWNH")
    out_shape, (W, b) = init_fn(jax.random.PRNGKey(1), x.shape)
    assert W.shape == (2, 5, 2, 3) and b.shape == (5, 1)   # (I, O, H, W); (C, N)
    x_nhwc = jnp.transpose(x, (2, 3, 1, 0))                    # CWNH -> NHWC
    w_hwio = jnp.transpose(W, (2, 3, 0, 1))                    # IOHW -> HWIO
    want = 1.5 / np.sqrt(2 * 6) * jax.lax.conv_general_dilated(
        x_nhwc, w_hwio, (1, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    want = want + 0.5 * b.reshape(5)
    got = apply_fn((W, b), x)
    assert got.shape == out_shape
    np.testing.assert_allclose(got, jnp.transpose(want, (1, 2, 3, 0)), rtol=1e-12)


@pytest.mark.slow
def test_network_in_one_layout_equals_channels_last_on_moved_inputs():
    """Two ``NCHW`` convolutions: their kernels are those of the channels-last network on
    the inputs moved to ``NHWC``; their outputs those of the channels-last network with the
    filters moved to ``HWIO``."""
    nchw = ("NCHW", "OIHW", "NCHW")
    net = stax.serial(stax.Conv(4, (2, 2), padding="SAME", b_std=0.3, dimension_numbers=nchw),
                      stax.Conv(3, (3, 1), (2, 1), b_std=0.2, dimension_numbers=nchw))
    ref = stax.serial(stax.Conv(4, (2, 2), padding="SAME", b_std=0.3),
                      stax.Conv(3, (3, 1), (2, 1), b_std=0.2))
    x1, x2 = _input("NCHW"), _input("NCHW", n=2, seed=2)
    move = lambda x: jnp.transpose(x, (0, 2, 3, 1))   # noqa: E731
    got, want = net[2](x1, x2, ("nngp", "ntk")), ref[2](move(x1), move(x2), ("nngp", "ntk"))
    np.testing.assert_allclose(got.nngp, want.nngp, rtol=1e-12)
    np.testing.assert_allclose(got.ntk, want.ntk, rtol=1e-12)
    _, params = net[0](jax.random.PRNGKey(3), x1.shape)
    moved = [(jnp.transpose(W, (2, 3, 1, 0)), b.reshape(-1)) for W, b in params]
    np.testing.assert_allclose(move(net[1](params, x1)), ref[1](moved, move(x1)), rtol=1e-12)


def test_clear_errors():
    with pytest.raises(ValueError, match="dimension_numbers=.*same spatial letters"):
        stax.Conv(3, (2, 2), dimension_numbers=("NCHW", "OIHD", "NCHW"))
    with pytest.raises(ValueError, match="a filter of 1 spatial axes"):
        stax.Conv(3, (2,), dimension_numbers=("NCHW", "OIHW", "NCHW"))
    with pytest.raises(TypeError, match="three strings"):
        stax.Conv(3, (2,), dimension_numbers="NHC")
    with pytest.raises(ValueError, match=r"s must be a pair of positive integers"):
        stax.Conv(3, (2,), s=(2,))
    # the batch axis moves: the kernel is the channels-last layer's on the moved inputs, and
    # the next layer must declare the output's layout
    init_fn, apply_fn, kernel_fn = stax.Conv(3, (2,), dimension_numbers=("HNC", "OIH", "NHC"))
    x = _input("HNC")
    out_shape, params = init_fn(jax.random.PRNGKey(0), x.shape)
    assert apply_fn(params, x).shape == out_shape == (3, 4, 3)
    np.testing.assert_allclose(kernel_fn(x, None, "nngp"),
                               stax.Conv(3, (2,))[2](jnp.moveaxis(x, 1, 0), None, "nngp"),
                               rtol=1e-12)
    with pytest.raises(ValueError, match=r"declared batch_axis=1, channel_axis=-1"):
        stax.serial(stax.Conv(3, (2,), dimension_numbers=("HNC", "OIH", "NHC")),
                    stax.Dense(2, batch_axis=1))[2](x, None, "nngp")
