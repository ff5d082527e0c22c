"""neural-tangents' ``batch_axis`` / ``channel_axis`` (and ``Flatten``'s ``batch_axis_out``)
on every ``ntk.stax`` layer that takes them, and ``Dense``'s width scalings ``s``.

The reference for a layer laid out with its batch axis at ``b`` and its channel axis at ``c``
is the batch-first, channels-last layer on the inputs moved by ``jnp.moveaxis`` (and its
outputs moved back): ``init_fn`` gives the same parameters and the moved shape, ``apply_fn``
the moved outputs, ``kernel_fn`` the same kernels (neural-tangents' kernel layout: batch pairs
first, the spatial axes in the order the activations have them). Where an output has another
rank (global pooling, ``Flatten``, ``Index`` with ints), the expected output is written out
from neural-tangents' docstrings. ``s`` changes a formula: checked against the mean of the
finite network's NTK (``jax.jacrev``) over initialisations.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk import stax

N, H, W, C = 3, 4, 5, 2
KEY = jax.random.PRNGKey(7)


def _x(seed=0, n=N):
    return jnp.asarray(np.random.default_rng(seed).standard_normal((n, H, W, C)))


def _lay(x, b, c):
    """Batch-first, channels-last ``x`` laid out with the batch at ``b``, channels at ``c``."""
    return jnp.moveaxis(x, (0, -1), (b, c))


def _std(x, b, c):
    return jnp.moveaxis(x, (b, c), (0, -1))


def _spatial(b, c, ndim=4):
    """The activations' spatial axes, in order, for batch ``b`` and channels ``c``."""
    return [i for i in range(ndim) if i not in (b % ndim, c % ndim)]


# Each case: (layout (b, c), the network with those axes, the batch-first channels-last
# network, (b, c) of its output). A Dense layer first makes the inputs of layers that need
# a Gaussian input (LayerNorm, attention) Gaussian, and checks Dense's axes on the way.
def _same_rank(make, b, c):
    return ((b, c), stax.serial(stax.Dense(3, 1.2, 0.3, batch_axis=b, channel_axis=c),
                                make(b, c)),
            stax.serial(stax.Dense(3, 1.2, 0.3), make(0, -1)), (b, c))


CASES = {
    "dense_relu_dense": _same_rank(lambda b, c: stax.serial(
        stax.Relu(), stax.Dense(2, 0.9, 0.1, batch_axis=b, channel_axis=c)), 1, 0),
    "avgpool_same": _same_rank(lambda b, c: stax.AvgPool(
        (2, 2), (1, 2), "SAME", batch_axis=b, channel_axis=c), 2, 1),
    "sumpool_valid": _same_rank(lambda b, c: stax.SumPool(
        (2, 1), None, "VALID", batch_axis=b, channel_axis=c), 3, 0),
    "layernorm_spatial": ((1, 2), stax.serial(
        stax.Dense(3, 1.2, 0.3, batch_axis=1, channel_axis=2),
        stax.LayerNorm(axis=(2, 3), batch_axis=1, channel_axis=2)),  # channels and W
        stax.serial(stax.Dense(3, 1.2, 0.3), stax.LayerNorm(axis=(2, 3))), (1, 2)),
    "attention": _same_rank(lambda b, c: stax.GlobalSelfAttention(
        4, 4, 4, 2, b_std=0.2, batch_axis=b, channel_axis=c), 0, 1),
    "image_resize": ((3, 1), stax.serial(
        stax.Dense(3, batch_axis=3, channel_axis=1),
        stax.ImageResize((6, -1, 3, -1), "linear", batch_axis=3, channel_axis=1)),
        stax.serial(stax.Dense(3), stax.ImageResize((-1, 6, 3, -1), "linear")), (3, 1)),
    "global_avg_pool_cn": ((2, 0), stax.serial(
        stax.Dense(3, 1.1, 0.2, batch_axis=2, channel_axis=0), stax.Relu(),
        stax.GlobalAvgPool(batch_axis=2, channel_axis=0),
        stax.Dense(2, batch_axis=1, channel_axis=0)),
        stax.serial(stax.Dense(3, 1.1, 0.2), stax.Relu(), stax.GlobalAvgPool(),
                    stax.Dense(2)), (1, 0)),
    "global_sum_pool_nc": ((1, 3), stax.serial(
        stax.Dense(3, 1.1, 0.2, batch_axis=1, channel_axis=3), stax.Erf(),
        stax.GlobalSumPool(batch_axis=1, channel_axis=3)),
        stax.serial(stax.Dense(3, 1.1, 0.2), stax.Erf(), stax.GlobalSumPool()), (0, 1)),
    # neural-tangents' stax_test network: a convolution in another layout, pooling with the
    # layout's axes, Flatten to (features, N), a Dense layer on that
    "conv_pool_flatten_dense": ((1, 0), stax.serial(
        stax.Conv(4, (2, 3), padding="SAME", b_std=0.1,
                  dimension_numbers=("CNHW", "OIHW", "CNHW")), stax.Relu(),
        stax.AvgPool((2, 2), batch_axis=1, channel_axis=0),
        stax.Flatten(batch_axis=1, batch_axis_out=1),
        stax.Dense(2, 0.8, 0.1, batch_axis=1, channel_axis=0)),
        stax.serial(stax.Conv(4, (2, 3), padding="SAME", b_std=0.1), stax.Relu(),
                    stax.AvgPool((2, 2)), stax.Flatten(), stax.Dense(2, 0.8, 0.1)), (1, 0)),
}


def _check_kernels(net, ref, x1, x2, b, c):
    got, want = net[2](_lay(x1, b, c), _lay(x2, b, c)), ref[2](x1, x2)
    for field in ("nngp", "ntk", "cov1", "cov2"):
        np.testing.assert_allclose(getattr(got, field), getattr(want, field), rtol=1e-11,
                                   atol=1e-13)
    assert got.shape1 == want.shape1  # batch-first, channels-last, as the arrays


#: cases of the default run (each compiles two networks); the rest run under ``make test-all``
QUICK = ("layernorm_spatial",)


@pytest.mark.parametrize("name", [n if n in QUICK else pytest.param(n, marks=pytest.mark.slow)
                                  for n in CASES])
def test_layout_equals_moved_default_layout(name):
    (b, c), net, ref, (ob, oc) = CASES[name]
    x1, x2 = _x(0), _x(1, n=2)
    out_shape, params = net[0](KEY, _lay(x1, b, c).shape)
    ref_shape, ref_params = ref[0](KEY, x1.shape)
    moved_shape = tuple(np.moveaxis(np.empty(ref_shape), (0, -1), (ob, oc)).shape)
    assert tuple(out_shape) == moved_shape
    y = net[1](params, _lay(x1, b, c))
    if name == "conv_pool_flatten_dense":  # the filters' and Dense's weights are laid out
        assert y.shape == moved_shape      # differently; the values are checked below
    else:
        jax.tree_util.tree_map(lambda p, q: np.testing.assert_array_equal(p, q), params,
                               ref_params)
        np.testing.assert_allclose(y, jnp.moveaxis(ref[1](params, x1), (0, -1), (ob, oc)),
                                   rtol=1e-12, atol=1e-13)
    _check_kernels(net, ref, x1, x2, b, c)


def test_flatten_batch_axis_out_follows_neural_tangents_docstring():
    """``Flatten(batch_axis, batch_axis_out)``: the batch axis moved to the front, the rest
    flattened row-major, transposed for ``batch_axis_out=1``; the kernel is the average over
    positions whatever the layout."""
    x1, x2 = _x(0), _x(1, n=2)
    b, c = 2, 1
    for out in (0, -1):               # -1: neural-tangents' other spelling of 1
        init_fn, apply_fn, kernel_fn = stax.serial(
            stax.Dense(3, b_std=0.2, batch_axis=b, channel_axis=c),
            stax.Flatten(batch_axis=b, batch_axis_out=out))
        _, params = init_fn(KEY, _lay(x1, b, c).shape)
        h = stax.Dense(3, b_std=0.2, batch_axis=b, channel_axis=c)[1](params[0],
                                                                      _lay(x1, b, c))
        flat = jnp.moveaxis(h, b, 0).reshape((N, -1))
        want = flat if out == 0 else flat.T
        np.testing.assert_array_equal(apply_fn(params, _lay(x1, b, c)), want)
        assert init_fn(KEY, _lay(x1, b, c).shape)[0] == want.shape
        ref = stax.serial(stax.Dense(3, b_std=0.2), stax.Flatten())[2](x1, x2, "ntk")
        ntk, shape1, shape2 = kernel_fn(_lay(x1, b, c), _lay(x2, b, c),
                                        ("ntk", "shape1", "shape2"))
        np.testing.assert_allclose(ntk, ref, rtol=1e-12)
        # neural-tangents' get='shape1' / 'shape2': the outputs' shapes in their layout
        assert shape1 == want.shape
        assert shape2 == ((2, want.shape[1]) if out == 0 else (want.shape[0], 2))


@pytest.mark.slow
def test_index_in_the_activations_layout():
    """``Index`` reads ``idx`` in the activations' layout; an int drops its axis, and the
    layers after it see the batch and channel axes where they then are."""
    b, c = 1, 3                                   # (H, N, W, C)
    x1, x2 = _x(0), _x(1, n=2)
    idx = stax.Slice[1, :, ::2]                   # H = 1, every other W
    net = stax.serial(stax.Dense(3, b_std=0.2, batch_axis=b, channel_axis=c),
                      stax.Index(idx, batch_axis=b, channel_axis=c), stax.Relu(),
                      stax.Dense(2, batch_axis=0, channel_axis=2))   # (N, W', C) now
    ref = stax.serial(stax.Dense(3, b_std=0.2), stax.Index(stax.Slice[:, 1, ::2]),
                      stax.Relu(), stax.Dense(2))
    out_shape, params = net[0](KEY, _lay(x1, b, c).shape)
    assert out_shape == (N, 3, 2)
    np.testing.assert_allclose(net[1](params, _lay(x1, b, c)), ref[1](params, x1),
                               rtol=1e-12)
    _check_kernels(net, ref, x1, x2, b, c)
    with pytest.raises(NotImplementedError, match="channel axis"):
        stax.Index(stax.Slice[..., :1, :], batch_axis=3, channel_axis=2)[2](_lay(x1, 3, 2))


@pytest.mark.slow
def test_dot_general_in_the_activations_layout():
    """A constant map of the ``W`` axis of ``(C, N, H, W)`` activations: the kernel is
    ``A K A^T`` over that axis (written out with ``einsum``)."""
    b, c = 1, 0
    x1, x2 = _x(0), _x(1, n=2)
    rhs = jnp.asarray(np.random.default_rng(3).standard_normal((W, 6)))
    dot = stax.DotGeneral(rhs=rhs, dimension_numbers=(((3,), (0,)), ((), ())),
                          batch_axis=b, channel_axis=c)
    net = stax.serial(stax.Dense(3, b_std=0.2, batch_axis=b, channel_axis=c), dot)
    assert net[0](KEY, _lay(x1, b, c).shape)[0] == (3, N, H, 6)
    k_in = stax.Dense(3, b_std=0.2)[2](x1, x2)
    for get in ("nngp", "ntk"):
        want = jnp.einsum("nmhiwv,wa,vb->nmhiab", getattr(k_in, get), rhs, rhs)
        np.testing.assert_allclose(net[2](_lay(x1, b, c), _lay(x2, b, c), get), want,
                                   rtol=1e-11)
    with pytest.raises(ValueError, match="channel axis 0 of the inputs cannot be contracted"):
        stax.DotGeneral(rhs=jnp.ones(C), dimension_numbers=(((0,), (0,)), ((), ())),
                        batch_axis=1, channel_axis=0)[0](None, _lay(x1, b, c).shape)


def test_aggregate_after_dense_with_the_same_axes():
    b, c = 0, 1                                   # (N, C, H, W): H x W grid graphs
    x1 = _x(0)
    p1 = jnp.asarray(np.random.default_rng(2).uniform(size=(N, H, W, H, W)) < 0.3, float)
    net = stax.serial(stax.Dense(3, b_std=0.2, batch_axis=b, channel_axis=c),
                      stax.Aggregate(batch_axis=b, channel_axis=c))
    ref = stax.serial(stax.Dense(3, b_std=0.2), stax.Aggregate())
    np.testing.assert_allclose(net[2](_lay(x1, b, c), None, "ntk", pattern=(p1, None)),
                               ref[2](x1, None, "ntk", pattern=(p1, None)), rtol=1e-12)


# ----------------------------------------------------------------------------------------
# refusals: named, with the shapes


def test_layout_mismatches_are_refused_naming_the_arguments_and_shapes():
    x = _lay(_x(0), 1, 0)                         # (C, N, H, W)
    mixed = stax.serial(stax.Dense(3, batch_axis=1, channel_axis=0), stax.Relu(),
                        stax.AvgPool((2, 2)))
    with pytest.raises(ValueError, match=r"AvgPool.*declared batch_axis=0, channel_axis=-1, "
                                         r"but its input activations \(shape \(3, 3, 4, 5\)\) "
                                         r"have their batch axis at 1 and their channel axis "
                                         r"at 0"):
        mixed[2](x)
    with pytest.raises(ValueError, match="batch_axis=1 and channel_axis=-3 are the same axis"):
        stax.Dense(3, batch_axis=1, channel_axis=-3)[2](x)
    with pytest.raises(ValueError, match="channel_axis=4 is out of range"):
        stax.Dense(3, channel_axis=4)[1]((jnp.ones((2, 3)), None), x)
    with pytest.raises(ValueError, match="batch_axis_out must be 0 or 1"):
        stax.Flatten(batch_axis_out=2)
    with pytest.raises(ValueError, match=r"LayerNorm.*must include the channel axis 1"):
        stax.serial(stax.Dense(3, batch_axis=0, channel_axis=1),
                    stax.LayerNorm(axis=-1, batch_axis=0, channel_axis=1))[2](
                        _lay(_x(0), 0, 1))
    branches = stax.serial(stax.Dense(3, batch_axis=1, channel_axis=0), stax.FanOut(2),
                           stax.parallel(stax.Identity(), stax.Flatten(batch_axis=1)),
                           stax.FanInSum())
    with pytest.raises(ValueError, match="laid out differently"):
        branches[2](x)
    with pytest.raises(ValueError, match=r"s must be a pair of positive integers"):
        stax.Dense(3, parameterization="standard", s=(2, 0))


def test_kernel_fn_batch_axis_and_channel_axis_keywords():
    """neural-tangents' ``kernel_fn(..., batch_axis=, channel_axis=)`` say how the raw inputs
    are laid out; the layers check it against their own axes."""
    x = _lay(_x(0), 1, 0)                         # (C, N, H, W)
    dense = stax.Dense(3, 1.1, 0.2, batch_axis=1, channel_axis=0)[2]
    want = stax.Dense(3, 1.1, 0.2)[2](_x(0), None, "nngp")
    np.testing.assert_allclose(dense(x, None, "nngp", batch_axis=1, channel_axis=0), want,
                               rtol=1e-12)
    np.testing.assert_allclose(dense(x, None, "nngp", batch_axis=1), want, rtol=1e-12)
    with pytest.raises(ValueError, match="declared batch_axis=0, channel_axis=-1, but its "
                                         "input activations"):
        stax.Dense(3)[2](x, None, "nngp", batch_axis=1, channel_axis=0)


# ----------------------------------------------------------------------------------------
# Dense(s=(s_in, s_out)): the standard parameterization's width scalings


@pytest.mark.slow
def test_dense_width_scalings_match_the_finite_networks_ntk():
    """Standard parameterization, hidden width ``s * n`` with ``s = 4``, ``n = 16``: the
    analytic NTK ``(N_in / s_in) nngp + ...`` against the mean of the finite network's NTK
    ``sum_theta df/dtheta df/dtheta^T`` (``jax.jacrev`` of ``apply_fn``) over 40
    initialisations; a linear network, so that mean is the analytic kernel at any width."""
    s, n = 4, 16
    init_fn, apply_fn, kernel_fn = stax.serial(
        stax.Dense(n, 1.3, 0.4, parameterization="standard", s=(1, s)),
        stax.Dense(1, 0.8, 0.2, parameterization="standard", s=(s, 1)))
    x = _x(0).reshape((N, -1))[:, :6]
    assert init_fn(KEY, x.shape)[1][0][0].shape == (6, s * n)

    @jax.jit
    def finite_ntk(key):
        _, params = init_fn(key, x.shape)
        jac = jax.jacrev(lambda p: apply_fn(p, x)[:, 0])(params)
        return sum(j.reshape((N, -1)) @ j.reshape((N, -1)).T
                   for j in jax.tree_util.tree_leaves(jac))

    samples = jnp.stack([finite_ntk(k) for k in jax.random.split(KEY, 40)])
    mean, se = samples.mean(0), samples.std(0) / np.sqrt(len(samples))
    want = kernel_fn(x, None, "ntk")
    assert np.all(np.abs(mean - want) < 4 * se + 1e-9), (mean, want, se)
    # the width scaling is what makes the NTK that of width n: without it (s = 1, the same
    # finite widths) the kernel is s times larger in the hidden layer's term
    plain = stax.serial(stax.Dense(s * n, 1.3, 0.4, parameterization="standard"),
                        stax.Dense(1, 0.8, 0.2, parameterization="standard"))[2]
    assert np.all(np.diag(plain(x, None, "ntk")) > np.diag(want))
