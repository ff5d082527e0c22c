"""``padding='CIRCULAR'`` in ``Conv``, ``ConvLocal``, ``AvgPool`` and ``SumPool``: periodic
boundary conditions, neural-tangents' semantics (the input wrapped by SAME's pads, then VALID).

Truths used, each computed here without the layers' code:
* finite layers: ``jnp.pad(x, SAME pads, mode='wrap')`` then ``jax.lax`` VALID convolution /
  ``reduce_window``;
* kernels: a circular first layer on ``x`` is a VALID layer on the explicitly wrapped ``x``
  (its kernel takes the zero-padding-free path); a circular ``Conv`` deeper in the network is
  the explicit covariance map ``K'(a, b) = W_std^2 / k sum_o K(i(a, o), i(b, o)) + b_std^2``
  with ``i(a, o) = (a s + o - lo) mod L``, written with numpy index arrays;
* circular convolutions with stride 1 commute with circular shifts, so the kernel of shifted
  inputs is the shifted kernel (zero 'SAME' padding breaks this: checked as a control);
* Monte Carlo over finite networks.
"""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk
from ntk import stax


def _x(shape, seed=0):
    return np.random.RandomState(seed).randn(*shape)


def _same_pads(length, window, stride):
    """XLA's SAME padding, from its definition: output ``ceil(L / s)``, the total padding
    split with the odd row at the end."""
    out = -(-length // stride)
    total = max((out - 1) * stride + window - length, 0)
    return total // 2, total - total // 2


def _wrap(x, window_shape, strides, axes):
    widths = [(0, 0)] * x.ndim
    for a, k, s in zip(axes, window_shape, strides):
        widths[a] = _same_pads(x.shape[a], k, s)
    return jnp.pad(x, widths, mode="wrap")


# ----------------------------------------------------------------------------------------
# finite layers

CONV_CASES = {  # name: (input shape, filter, strides)
    "1d_k3": ((2, 5, 3), (3,), (1,)),
    "1d_even_stride2": ((2, 7, 2), (4,), (2,)),
    "2d_even_odd": ((2, 6, 5, 3), (2, 3), (1, 1)),
    "2d_stride": ((2, 7, 6, 2), (3, 2), (2, 3)),
    "2d_filter_wider_than_image": ((1, 2, 3, 2), (5, 4), (1, 1)),
}


@pytest.mark.parametrize("case", [c if c == "2d_stride"
                                  else pytest.param(c, marks=pytest.mark.slow)
                                  for c in sorted(CONV_CASES)])
def test_conv_apply_is_wrap_then_valid(case):
    shape, filt, strides = CONV_CASES[case]
    x = _x(shape)
    init_fn, apply_fn, _ = stax.Conv(4, filt, strides, "CIRCULAR", W_std=1.3, b_std=0.2)
    out_shape, (W, b) = init_fn(jax.random.PRNGKey(1), shape)
    axes = tuple(range(1, len(shape) - 1))
    letters = "HWD"[:len(filt)]
    ref = jax.lax.conv_general_dilated(_wrap(x, filt, strides, axes), W, strides, "VALID",
                                       dimension_numbers=("N" + letters + "C",
                                                          letters + "IO", "N" + letters + "C"))
    ref = 1.3 / np.sqrt(shape[-1] * np.prod(filt)) * ref + 0.2 * b
    out = apply_fn((W, b), x)
    assert out.shape == out_shape == (shape[0],) + tuple(
        -(-n // s) for n, s in zip(shape[1:-1], strides)) + (4,)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_conv_apply_other_dimension_numbers_and_conv_local():
    x = _x((2, 3, 6, 5))  # NCHW
    dims = ("NCHW", "OIHW", "NCHW")
    init_fn, apply_fn, _ = stax.Conv(4, (2, 3), (2, 1), "CIRCULAR", dimension_numbers=dims)
    out_shape, (W, b) = init_fn(jax.random.PRNGKey(2), x.shape)
    ref = jax.lax.conv_general_dilated(_wrap(x, (2, 3), (2, 1), (2, 3)), W, (2, 1), "VALID",
                                       dimension_numbers=dims) / np.sqrt(3 * 6)
    assert out_shape == (2, 4, 3, 5)
    np.testing.assert_allclose(apply_fn((W, b), x), ref, rtol=1e-12, atol=1e-12)

    x = _x((2, 5, 4, 2))
    init_fn, apply_fn, _ = stax.ConvLocal(3, (2, 3), padding="CIRCULAR", b_std=0.5)
    out_shape, (W, b) = init_fn(jax.random.PRNGKey(3), x.shape)
    ref = jax.lax.conv_general_dilated_local(_wrap(x, (2, 3), (1, 1), (1, 2)), W, (1, 1),
                                             "VALID", (2, 3),
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
    assert out_shape == (2, 5, 4, 3)
    np.testing.assert_allclose(apply_fn((W, b), x), ref / np.sqrt(2 * 6) + 0.5 * b,
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("pool", ["AvgPool", "SumPool"])
def test_pool_apply_is_wrap_then_valid(pool):
    x = _x((2, 5, 6, 3))
    for window, strides in [((3, 2), (2, 3))]:
        layer = getattr(stax, pool)(window, strides, "CIRCULAR")
        total = jax.lax.reduce_window(_wrap(x, window, strides, (1, 2)), 0.0, jax.lax.add,
                                      (1,) + window + (1,), (1,) + strides + (1,), "VALID")
        ref = total / np.prod(window) if pool == "AvgPool" else total
        out = layer[1]((), x)
        assert layer[0](None, x.shape)[0] == out.shape == (2, -(-5 // strides[0]),
                                                          -(-6 // strides[1]), 3)
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    # normalize_edges has nothing to do with periodic windows (all hold k pixels)
    np.testing.assert_allclose(stax.AvgPool((2, 3), padding="CIRCULAR", normalize_edges=True)[1](
        (), x), stax.AvgPool((2, 3), padding="CIRCULAR")[1]((), x), rtol=1e-14)


# ----------------------------------------------------------------------------------------
# kernels


def _readouts(full):
    # GlobalAvgPool needs every pair of positions; Flatten only equal ones (diagonal layout)
    return (stax.GlobalAvgPool() if full else stax.Flatten(), stax.Dense(1, 1.1, 0.05))


@pytest.mark.slow
@pytest.mark.parametrize("full", [True, False], ids=["full_spatial", "diagonal_spatial"])
def test_first_layer_kernel_equals_valid_layer_on_wrapped_inputs(full):
    """The circular first layer's kernel on x is the VALID layer's kernel on wrap(x); the
    rest of the network (Relu, a zero-padded conv, the readout) is the same on both sides."""
    x1, x2 = _x((3, 5, 4, 2)), _x((2, 5, 4, 2), 1)
    filt, strides = (2, 3), (2, 1)
    tail = (stax.Relu(), stax.Conv(3, (2, 2), padding="SAME", W_std=1.2, b_std=0.1),
            stax.Erf()) + _readouts(full)
    circ = stax.serial(stax.Conv(3, filt, strides, "CIRCULAR", W_std=1.4, b_std=0.3), *tail)
    valid = stax.serial(stax.Conv(3, filt, strides, "VALID", W_std=1.4, b_std=0.3), *tail)
    w1, w2 = (_wrap(x, filt, strides, (1, 2)) for x in (x1, x2))
    got = circ[2](x1, x2, ("nngp", "ntk"))
    want = valid[2](w1, w2, ("nngp", "ntk"))
    np.testing.assert_allclose(got.nngp, want.nngp, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got.ntk, want.ntk, rtol=1e-12, atol=1e-14)

    pool = stax.serial(stax.AvgPool((3, 2), (1, 2), "CIRCULAR"), stax.Conv(3, (2, 2)),
                       stax.Relu(), *_readouts(True))
    pool_valid = stax.serial(stax.AvgPool((3, 2), (1, 2), "VALID"), stax.Conv(3, (2, 2)),
                             stax.Relu(), *_readouts(True))
    np.testing.assert_allclose(
        pool[2](x1, x2, "ntk"),
        pool_valid[2](*(_wrap(x, (3, 2), (1, 2), (1, 2)) for x in (x1, x2)), "ntk"),
        rtol=1e-12, atol=1e-14)


def _circular_conv_map(mat, filt, strides, W_std, b_var):
    """The explicit covariance map of a circular conv on a full-spatial ``(N1, N2, X, X, Y,
    Y)`` kernel: ``K'(a, b) = W_std^2 / k sum_o K(i(a, o), i(b, o)) (+ b_var)`` with
    ``i(a, o) = (a s + o - lo) mod L`` per spatial axis, built as index arrays."""
    spatial = mat.shape[2::2]
    per_axis = []
    for L, k, s in zip(spatial, filt, strides):
        lo, _ = _same_pads(L, k, s)
        out = -(-L // s)
        per_axis.append(np.array([[(a * s + o - lo) % L for o in range(k)] for a in range(out)]))
    (ix, iy), (kx, ky) = per_axis, filt
    outx, outy = ix.shape[0], iy.shape[0]
    res = np.zeros(mat.shape[:2] + (outx, outx, outy, outy))
    for ox, oy in itertools.product(range(kx), range(ky)):
        X, Y = ix[:, ox], iy[:, oy]
        res += mat[:, :, X[:, None, None, None], X[None, :, None, None],
                   Y[None, None, :, None], Y[None, None, None, :]]
    res = W_std**2 * res / (kx * ky)
    return res if b_var is None else res + b_var


def test_two_circular_convs_kernel_equals_explicit_covariance_maps():
    """Two circular convs (the second strided, with an even filter): the network's NNGP and
    NTK against the explicit map applied twice to the input covariance
    ``K0(x, x'; a, b) = x(a) . x'(b) / C`` (NTK parametrisation: ``ntk' = nngp' + W_std^2
    A[ntk]``, ``ntk0 = 0``). The first map's output fills every pair of positions, so the
    second map is checked on a full covariance."""
    x1, x2 = _x((2, 5, 4, 2), 2), _x((1, 5, 4, 2), 3)
    head = (3, 2), (1, 1), 1.3, 0.2
    filt, strides, W_std, b_std = (2, 3), (2, 1), 1.4, 0.3
    got = stax.serial(stax.Conv(3, *head[:2], "CIRCULAR", *head[2:]),
                      stax.Conv(3, filt, strides, "CIRCULAR", W_std, b_std))[2](
        x1, x2, ("nngp", "ntk"))
    k0 = np.einsum("ixyc,jXYc->ijxXyY", x1, x2) / x1.shape[-1]
    nngp1 = _circular_conv_map(k0, head[0], head[1], head[2], head[3]**2)
    nngp = _circular_conv_map(nngp1, filt, strides, W_std, b_std**2)
    ntk_ = nngp + _circular_conv_map(nngp1, filt, strides, W_std, None)
    assert got.nngp.shape == (2, 1, 3, 3, 4, 4)
    np.testing.assert_allclose(got.nngp, nngp, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got.ntk, ntk_, rtol=1e-12, atol=1e-14)


def test_kernel_translation_equivariance():
    """Stride-1 circular layers commute with circular shifts: shifting both inputs by ``r``
    shifts the output kernel by ``r`` on both position axes of every pair (and leaves a
    pooled readout unchanged). Zero SAME padding has no such symmetry (control)."""
    x1, x2 = _x((2, 5, 4, 2), 4), _x((1, 5, 4, 2), 5)
    shift = (2, 3)

    def roll(x):
        return np.roll(x, shift, axis=(1, 2))

    def rolled(m):
        return np.roll(m, (shift[0],) * 2 + (shift[1],) * 2, axis=(2, 3, 4, 5))

    # linear layers keep the default suite fast; the nonlinearities act position by position
    net = stax.serial(stax.Conv(3, (3, 2), padding="CIRCULAR", W_std=1.3, b_std=0.1),
                      stax.AvgPool((2, 2), padding="CIRCULAR"),
                      stax.Conv(3, (2, 3), padding="CIRCULAR", W_std=1.2))
    k = net[2](x1, x2, ("nngp", "ntk"))
    k_shift = net[2](roll(x1), roll(x2), ("nngp", "ntk"))
    for m, m_shift in zip(k, k_shift):
        np.testing.assert_allclose(m_shift, rolled(m), rtol=1e-12, atol=1e-14)
    same = stax.Conv(3, (3, 2), padding="SAME")[2]
    assert not np.allclose(same(roll(x1), roll(x2), "nngp"), rolled(same(x1, x2, "nngp")),
                           rtol=1e-3)


@pytest.mark.slow
def test_monte_carlo_nngp_and_ntk():
    """The analytic kernel against ``ntk.monte_carlo_kernel_fn`` of the finite network
    (fixed seed). NNGP: within 4 standard errors of the per-sample estimates (computed here
    from the same sampled networks' outputs); NTK (fewer samples, each costs a Jacobian):
    relative error below 0.2 (measured 0.05 at 64 samples of width 64)."""
    x = _x((3, 6, 2), 6)
    net = stax.serial(stax.Conv(64, (2,), padding="CIRCULAR", W_std=1.4, b_std=0.2),
                      stax.Relu(), stax.AvgPool((3,), (2,), "CIRCULAR"),
                      stax.Conv(64, (3,), padding="CIRCULAR", W_std=1.3), stax.Relu(),
                      stax.Flatten(), stax.Dense(1, 1.1, 0.1))
    init_fn, apply_fn, kernel_fn = net
    exact = kernel_fn(x, None, ("nngp", "ntk"))
    n = 256
    key = jax.random.PRNGKey(7)
    mc_nngp = ntk.monte_carlo_kernel_fn(init_fn, apply_fn, key, n)(x, None, "nngp")
    keys = jax.random.split(key, n)
    sample = jax.jit(lambda k: apply_fn(init_fn(k, x.shape)[1], x)[:, 0])
    outs = np.stack([sample(k) for k in keys])
    per_sample = outs[:, :, None] * outs[:, None, :]
    np.testing.assert_allclose(per_sample.mean(0), mc_nngp, rtol=1e-10)  # same samples
    se = per_sample.std(0) / np.sqrt(n)
    assert np.all(np.abs(mc_nngp - exact.nngp) < 4 * se + 1e-12), (mc_nngp, exact.nngp, se)
    mc_ntk = ntk.monte_carlo_kernel_fn(init_fn, apply_fn, key, 64)(x, None, "ntk")
    rel = np.linalg.norm(mc_ntk - exact.ntk) / np.linalg.norm(exact.ntk)
    assert rel < 0.2, rel


def test_errors():
    with pytest.raises(ValueError, match="padding must be 'VALID', 'SAME' or 'CIRCULAR'"):
        stax.Conv(3, (2,), padding="FULL")
    with pytest.raises(ValueError, match="padding must be 'VALID', 'SAME' or 'CIRCULAR'"):
        stax.AvgPool((2,), padding="REFLECT")
    with pytest.raises(ValueError, match="padding must be 'VALID', 'SAME' or 'CIRCULAR'"):
        stax.ConvLocal(3, (2,), padding="wrap")
