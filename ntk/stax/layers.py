"""Affine, convolution, pooling, indexing, dropout, reshaping and normalisation layers with
their kernels.

Conventions (those of neural-tangents 0.6.5, so kernels compare number for number):
channels-last activations ``(N, *spatial, C)`` by default, other layouts through the layers'
``batch_axis`` / ``channel_axis`` (``Conv``'s ``dimension_numbers``); weights
``W ~ N(0, 1)`` scaled in the forward pass by ``W_std / sqrt(fan_in)`` under
``parameterization='ntk'`` (Jacot et al. 2018), or initialised as ``N(0, W_std^2 / fan_in)``
and used unscaled under ``'standard'`` (Sohl-Dickstein et al. 2020, "On the infinite width
limit of neural networks with a standard parameterization"). Biases are ``b_std * N(0, 1)`` (``b_std=None``: no bias).
"""
from __future__ import annotations

import functools
import itertools
import math
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ntk.stax.core import (check_apply_kwargs, check_layout, check_positive_int, check_rank,
                           check_std, from_standard, laid_out, layer, layout_shape,
                           normalize_axes, require_gaussian, require_single, standard_shape,
                           to_standard, with_layout)
from ntk.stax.kernel import Kernel, cross_variances, self_variances, variances

__all__ = ["Dense", "Conv", "ConvTranspose", "AvgPool", "GlobalAvgPool", "Flatten",
           "LayerNorm", "Identity", "Scale", "SumPool", "GlobalSumPool", "Index", "Slice",
           "Dropout"]


def _check_parameterization(parameterization: str) -> str:
    if not isinstance(parameterization, str) or parameterization.lower() not in (
            "ntk", "standard"):
        raise ValueError(f"parameterization must be 'ntk' or 'standard', got "
                         f"{parameterization!r}")
    return parameterization.lower()


def _affine(mat, w_var, b_var):
    if mat is None:
        return None
    out = w_var * mat
    return out if b_var is None else out + b_var


def _filter_kernel(k: Kernel, mean, out_spatial, out_chan, fan_in, W_std, b_std, b_var,
                   param) -> Kernel:
    """The kernel after a filter layer (``Conv``, ``ConvTranspose``) whose weights see the
    positions through the linear map ``mean(mat, n_batch_axes)`` (the average over filter
    taps): ``nngp' = W_std^2 mean(nngp) + b_var``; NTK parametrisation
    ``ntk' = nngp' + W_std^2 mean(ntk)``, standard ``ntk' = fan_in mean(nngp) + W_std^2
    mean(ntk) (+ 1 with a bias)``."""
    nngp_avg = mean(k.nngp, 2)
    nngp = _affine(nngp_avg, W_std**2, b_var)
    if k.ntk is None:
        ntk = None
    elif param == "ntk":
        ntk = nngp + W_std**2 * mean(k.ntk, 2)
    else:
        ntk = fan_in * nngp_avg + W_std**2 * mean(k.ntk, 2)
        if b_std is not None:
            ntk = ntk + 1.0
    return k.replace(
        nngp=nngp, ntk=ntk,
        cov1=_affine(mean(k.cov1, 1), W_std**2, b_var),
        cov2=_affine(mean(k.cov2, 1), W_std**2, b_var),
        shape1=(k.shape1[0],) + tuple(out_spatial) + (out_chan,),
        shape2=(k.shape2[0],) + tuple(out_spatial) + (out_chan,),
        is_gaussian=True, is_input=False)


# ----------------------------------------------------------------------------------------
# Dense


def _add_bias(out, b, scale=None):
    """``out + scale * b`` with ``b`` (channels last) given its missing leading axes
    explicitly, so finite networks run under ``jax_numpy_rank_promotion='raise'``."""
    if b is None:
        return out
    b = b if scale is None else scale * b
    return out + jnp.reshape(b, (1,) * (out.ndim - jnp.ndim(b)) + jnp.shape(b))


def _check_s(name: str, s) -> tuple:
    """neural-tangents' width scalings ``s = (s_in, s_out)``: two positive integers."""
    try:
        pair = tuple(s)
    except TypeError:
        pair = None
    if (pair is None or len(pair) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1
                   for v in pair)):
        raise ValueError(f"{name}: s must be a pair of positive integers (s_in, s_out), got "
                         f"{s!r}")
    return int(pair[0]), int(pair[1])


def Dense(out_dim: int, W_std: float = 1.0, b_std: Optional[float] = None,
          batch_axis: int = 0, channel_axis: int = -1, parameterization: str = "ntk",
          s=(1, 1)):
    """Fully connected layer applied along the channel axis (neural-tangents' arguments, in
    its order).

    Finite layer (``N = fan_in``, the input's channel count):
      ntk:      ``z = W_std / sqrt(N) x W + b_std b``,   ``W_ij, b_i ~ N(0, 1)``
      standard: ``z = x W / sqrt(s_in) + b``,  ``W ~ N(0, W_std^2 s_in / N)`` of shape
                ``(N, s_out out_dim)``, ``b ~ N(0, b_std^2)`` of size ``s_out out_dim``

    Kernel (elementwise over batch pairs and positions):
      ``nngp' = W_std^2 nngp + b_std^2``
      ntk:      ``ntk' = nngp' + W_std^2 ntk``
      standard: ``ntk' = (N / s_in) nngp + 1[b_std given] + W_std^2 ntk``  (grows with the
                widths)

    ``s = (s_in, s_out)`` are the width scalings of Sohl-Dickstein et al. (2020): the
    layer's input has ``s_in`` times and its output ``s_out`` times the nominal widths, so a
    network with ``s[0]`` of each layer equal to ``s[1]`` of the one before (``1`` at the
    input, and at the output for the NTK) has the NTK of width ``N / s`` whatever ``s``. As in
    neural-tangents ``s`` is read under ``parameterization='standard'`` only (the NTK
    parameterization's kernel does not depend on the widths).

    ``batch_axis`` / ``channel_axis``: where the inputs keep them (the output keeps both
    where they are, the channel axis now ``out_dim`` wide); the kernel is that of the
    channels-last layer on the inputs with those axes moved to the front and the back.

    Shapes: ``(N, ..., fan_in) -> (N, ..., out_dim)`` (``s_out out_dim`` under 'standard').

    Sohl-Dickstein et al. (2020), "On the infinite width limit of neural networks with a
    standard parameterization", arXiv:2001.07301.
    """
    out_dim = check_positive_int("out_dim", out_dim)
    W_std = check_std("W_std", W_std)
    b_std = check_std("b_std", b_std, allow_none=True)
    param = _check_parameterization(parameterization)
    s_in, s_out = _check_s("Dense", s)
    if param == "ntk":
        s_in, s_out = 1, 1
    width_out = out_dim * s_out
    name = (f"Dense({out_dim}, W_std={W_std}, b_std={b_std}, {param}"
            + ("" if (s_in, s_out) == (1, 1) else f", s={(s_in, s_out)}")
            + ("" if (batch_axis, channel_axis) == (0, -1)
               else f", batch_axis={batch_axis}, channel_axis={channel_axis}") + ")")

    def init_fn(key, input_shape):
        fan_in = input_shape[-1]
        k1, k2 = jax.random.split(key)
        W = jax.random.normal(k1, (fan_in, width_out))
        b = None if b_std is None else jax.random.normal(k2, (width_out,))
        if param == "standard":
            W = W * (W_std / math.sqrt(fan_in / s_in))
            b = None if b is None else b * b_std
        return tuple(input_shape[:-1]) + (width_out,), (W, b)

    def apply_fn(params, x, **kwargs):
        W, b = params
        if x.shape[-1] != W.shape[0]:
            raise ValueError(f"{name}: input has {x.shape[-1]} features (shape {x.shape}) but "
                             f"the weights expect {W.shape[0]} (W.shape={W.shape})")
        if param == "ntk":
            out = (W_std / math.sqrt(x.shape[-1])) * (x @ W)
            return _add_bias(out, b, b_std)
        out = x @ W
        if s_in != 1:
            out = out / math.sqrt(s_in)
        return _add_bias(out, b)

    b_var = None if b_std is None else b_std**2

    def transform(k: Kernel) -> Kernel:
        k = require_single(k, name)
        nngp = _affine(k.nngp, W_std**2, b_var)
        if k.ntk is None:
            ntk = None
        elif param == "ntk":
            ntk = nngp + W_std**2 * k.ntk
        else:
            ntk = (k.shape1[-1] / s_in) * k.nngp + W_std**2 * k.ntk
            if b_std is not None:
                ntk = ntk + 1.0
        return k.replace(
            nngp=nngp, ntk=ntk,
            cov1=_affine(k.cov1, W_std**2, b_var), cov2=_affine(k.cov2, W_std**2, b_var),
            shape1=k.shape1[:-1] + (width_out,), shape2=k.shape2[:-1] + (width_out,),
            is_gaussian=True, is_input=False)

    return laid_out(name, layer(name, init_fn, apply_fn, transform), batch_axis,
                    channel_axis)


# ----------------------------------------------------------------------------------------
# windows over spatial axes


def _pads(length: int, window: int, stride: int, padding: str):
    """``(lo, hi, out_len)`` of XLA's VALID / SAME padding along one axis."""
    if padding == "VALID":
        out = (length - window) // stride + 1
        if out < 1:
            raise ValueError(f"window {window} is larger than the spatial size {length} "
                             f"with VALID padding")
        return 0, 0, out
    out = -(-length // stride)
    total = max((out - 1) * stride + window - length, 0)
    return total // 2, total - total // 2, out


def _strided(x, axis, start, count, stride):
    return jax.lax.slice_in_dim(x, start, start + stride * (count - 1) + 1, stride, axis)


#: most window offsets summed in one fused pass (a 3x3 conv takes 9, a 2x2 pool 16)
_MAX_OFFSETS = 32


def _window_sum(x, groups, mode: str = "constant"):
    """``y[.., a, ..] = sum_o x_pad[.., a s + o, ..]``: a window sum over several axes at once.

    ``groups`` is a list of ``(axes, window, stride, lo, hi, out)``; every axis of a group moves
    by the same offset ``o < window`` (a conv kernel slides along the diagonal of a pair of
    position axes), different groups independently (pooling). ``x_pad`` is ``x`` with
    ``lo``/``hi`` zeros on the group's axes (``mode='wrap'``: periodic padding, ``x_pad[p] =
    x[(p - lo) mod L]`` on each axis by itself, CIRCULAR padding). The sum is written as
    strided slices of the padded array added together, which XLA fuses into one pass over the
    output (the pad included); groups whose offsets multiply past ``_MAX_OFFSETS`` are summed
    in successive passes.
    """
    chunks, current, count = [], [], 1
    for g in groups:
        if current and count * g[1] > _MAX_OFFSETS:
            chunks.append(current)
            current, count = [], 1
        current.append(g)
        count *= g[1]
    if current:
        chunks.append(current)
    for chunk in chunks:
        widths = [(0, 0)] * x.ndim
        for axes, _, _, lo, hi, _ in chunk:
            for a in axes:
                widths[a] = (lo, hi)
        xp = jnp.pad(x, widths, mode=mode) if any(w != (0, 0) for w in widths) else x
        total = None
        for offsets in itertools.product(*[range(g[1]) for g in chunk]):
            start, limit, step = [0] * xp.ndim, list(xp.shape), [1] * xp.ndim
            for (axes, _, stride, _, _, out), o in zip(chunk, offsets):
                for a in axes:
                    start[a], limit[a], step[a] = o, o + stride * (out - 1) + 1, stride
            piece = jax.lax.slice(xp, start, limit, step)
            total = piece if total is None else total + piece
        x = total
    return x


def _window_mean(x, axis, window, stride, lo, hi, out, counts=None, mode="constant"):
    """``y[a] = (1/k) sum_o x_pad[a s + o]`` along one axis (pooling of activations)."""
    total = _window_sum(x, [((axis,), window, stride, lo, hi, out)], mode)
    if counts is None:
        return total / window
    shape = [1] * total.ndim
    shape[axis] = out
    return total / counts.reshape(shape)


def _edge_counts(length, window, stride, lo, hi, out):
    ones = jnp.pad(jnp.ones((length,)), (lo, hi))
    return sum(_strided(ones, 0, o, out, stride) for o in range(window))


def _spatial_geometry(shape, filter_shape, strides, padding):
    """Per spatial axis ``(lo, hi, out_len)``; shape is ``(N, *spatial, C)``. ``'CIRCULAR'``
    has SAME's (neural-tangents'): its ``lo`` / ``hi`` rows are wrapped around, not zeros."""
    padding = "SAME" if padding == "CIRCULAR" else padding
    return [_pads(L, k, s, padding) for L, k, s in zip(shape[1:-1], filter_shape, strides)]


def _pad_mode(padding: str) -> str:
    """``jnp.pad``'s mode for a layer's padding: periodic for ``'CIRCULAR'``, zeros else."""
    return "wrap" if padding == "CIRCULAR" else "constant"


def _circular_input(x, axes, window_shape, strides, padding):
    """``(x, padding)`` for ``jax.lax``: a CIRCULAR layer's input wrapped periodically by
    SAME's ``(lo, hi)`` on the spatial ``axes`` (``x_pad[p] = x[(p - lo) mod L]``) and
    ``'VALID'``, as neural-tangents does; other paddings unchanged."""
    if padding != "CIRCULAR":
        return x, padding
    widths = [(0, 0)] * x.ndim
    for a, k, s in zip(axes, window_shape, strides):
        lo, hi, _ = _pads(x.shape[a], k, s, "SAME")
        widths[a] = (lo, hi)
    return jnp.pad(x, widths, mode="wrap"), "VALID"


def _norm_window_args(name, window_shape, strides, padding, what="filter_shape",
                      circular=False):
    if isinstance(window_shape, (int, np.integer)):
        window_shape = (window_shape,)
    window_shape = tuple(check_positive_int(what, w) for w in window_shape)
    if not window_shape:
        raise ValueError(f"{name}: {what} must have one entry per spatial axis, got ()")
    strides = (1,) * len(window_shape) if strides is None else (
        (strides,) if isinstance(strides, (int, np.integer)) else tuple(strides))
    if len(strides) != len(window_shape):
        raise ValueError(f"{name}: strides {strides} must have one entry per spatial axis of "
                         f"{what}={window_shape}")
    strides = tuple(check_positive_int("strides", s) for s in strides)
    allowed = "'VALID', 'SAME' or 'CIRCULAR'" if circular else "'VALID' or 'SAME'"
    if not isinstance(padding, str) or padding.upper() not in (
            ("VALID", "SAME", "CIRCULAR") if circular else ("VALID", "SAME")):
        raise ValueError(f"{name}: padding must be {allowed}, got {padding!r}")
    return window_shape, strides, padding.upper()


# ----------------------------------------------------------------------------------------
# Conv


def Conv(out_chan: int, filter_shape: Sequence[int], strides: Optional[Sequence[int]] = None,
         padding: str = "VALID", W_std: float = 1.0, b_std: Optional[float] = None,
         dimension_numbers=None, parameterization: str = "ntk", s=(1, 1)):
    """Convolution over ``len(filter_shape)`` spatial axes (1D, 2D, ...), channels last by
    default.

    Finite layer (fan_in ``F = C_in * prod(filter_shape)``, filter ``HWIO``, zero padding):
      ntk:      ``z = W_std / sqrt(F) conv(x, W) + b_std b``,  ``W, b ~ N(0, 1)``
      standard: ``z = conv(x, W) + b``,  ``W ~ N(0, W_std^2 / F)``, ``b ~ N(0, b_std^2)``

    Kernel (the CNN-GP / CNTK of Novak et al. 2019 and Arora et al. 2019): per spatial axis with
    filter ``k``, stride ``s`` and padding ``lo``, writing ``A[K]`` for the filter-averaged kernel

        A[K](a, b) = (1 / k) sum_{o < k} K_pad(a s + o - lo, b s + o - lo)

    (applied axis after axis; zero padding, so edges are divided by ``k`` too):
      ``nngp' = W_std^2 A[nngp] + b_std^2``
      ntk:      ``ntk' = nngp' + W_std^2 A[ntk]``
      standard: ``ntk' = F A[nngp] + 1[b_std given] + W_std^2 A[ntk]``

    In the diagonal-spatial layout only ``a = b`` is kept, which needs only equal-position
    input covariances. Shapes: ``(N, *spatial, C_in) -> (N, *spatial', out_chan)``.

    ``padding='CIRCULAR'`` (neural-tangents'): periodic boundary conditions. Each spatial axis
    of length ``L`` is wrapped around by SAME's ``(lo, hi)`` (``hi = lo + 1`` for an odd
    total, i.e. even filters put the extra row at the end), ``x_pad(p) = x((p - lo) mod L)``,
    then convolved VALID, so the output has SAME's length ``ceil(L / s)``. The kernel is
    wrapped the same way on each of its position axes (both axes of a full-spatial pair,
    ``K_pad(p, q) = K((p - lo) mod L, (q - lo) mod L)``; the one axis of a diagonal layout)
    before the window sum. With stride 1 the layer commutes with circular shifts of the
    input, and its kernel with simultaneous shifts of both inputs.

    ``dimension_numbers=(lhs, rhs, out)`` (neural-tangents' and ``jax.lax``'s, e.g.
    ``('NCHW', 'OIHW', 'NCHW')``; ``None``: ``('NHWC', 'HWIO', 'NHWC')``) lays out the
    input, the filter ``W`` and the output: ``filter_shape`` and ``strides`` follow the
    spatial letters of ``rhs``, ``b`` has neural-tangents' shape (``out_chan`` at ``out``'s
    ``C``, leading ones dropped). The kernel's spatial axes follow the order of the spatial
    letters in the input (``lhs``) and the output (``out``); the kernel is that of the same
    layer on inputs with the batch and channel axes moved to the front and the back. The
    layer's input must be laid out as ``lhs`` says (``kernel_fn`` checks the layout the layers
    before it leave, :attr:`Kernel.batch_axis`), and the layers after it see ``out``'s batch
    and channel positions. ``s = (s_in, s_out)``: neural-tangents' width
    scalings under ``parameterization='standard'``, as in :func:`Dense` (``fan_in`` is
    ``F / s_in``, ``s_out out_chan`` output channels).
    """
    out_chan = check_positive_int("out_chan", out_chan)
    W_std = check_std("W_std", W_std)
    b_std = check_std("b_std", b_std, allow_none=True)
    param = _check_parameterization(parameterization)
    s_in, s_out = (1, 1) if param == "ntk" else _check_s("Conv", s)
    _check_s("Conv", s)
    filter_shape, strides, padding = _norm_window_args("Conv", filter_shape, strides, padding,
                                                       circular=True)
    n_sp = len(filter_shape)
    layout = _conv_layout("Conv", n_sp, dimension_numbers, filter_shape, strides)
    dims = layout.dims
    name = (f"Conv({out_chan}, {filter_shape}, strides={strides}, {padding}, W_std={W_std}, "
            f"b_std={b_std}, {param}" + ("" if layout.default else f", {dims}")
            + ("" if (s_in, s_out) == (1, 1) else f", s={(s_in, s_out)}") + ")")
    if not layout.default:
        return _general_conv(name, out_chan, filter_shape, strides, padding, W_std, b_std,
                             param, layout, s=(s_in, s_out))
    filter_size = int(np.prod(filter_shape))
    width_out = out_chan * s_out

    def init_fn(key, input_shape):
        check_rank(input_shape, n_sp, name, "input_shape")
        fan_in = input_shape[-1] * int(np.prod(filter_shape))
        k1, k2 = jax.random.split(key)
        W = jax.random.normal(k1, tuple(filter_shape) + (input_shape[-1], width_out))
        b = None if b_std is None else jax.random.normal(k2, (width_out,))
        if param == "standard":
            W = W * (W_std / math.sqrt(fan_in / s_in))
            b = None if b is None else b * b_std
        geo = _spatial_geometry(input_shape, filter_shape, strides, padding)
        return (input_shape[0],) + tuple(g[2] for g in geo) + (width_out,), (W, b)

    def apply_fn(params, x, **kwargs):
        check_rank(x.shape, n_sp, name)
        W, b = params
        x, lax_padding = _circular_input(x, range(1, 1 + n_sp), filter_shape, strides, padding)
        out = jax.lax.conv_general_dilated(x, W.astype(x.dtype), strides, lax_padding,
                                           dimension_numbers=dims)
        if param == "ntk":
            fan_in = x.shape[-1] * int(np.prod(filter_shape))
            out = (W_std / math.sqrt(fan_in)) * out
            return _add_bias(out, b, b_std)
        if s_in != 1:
            out = out / math.sqrt(s_in)
        return _add_bias(out, b)

    b_var = None if b_std is None else b_std**2

    def conv_mean(mat, batch_ndim, geo, full):
        if mat is None:
            return None
        groups = []
        for i, ((lo, hi, out), k, s) in enumerate(zip(geo, filter_shape, strides)):
            a = batch_ndim + (2 * i if full else i)
            groups.append(((a, a + 1) if full else (a,), k, s, lo, hi, out))
        return _window_sum(mat, groups, _pad_mode(padding)) / filter_size

    def transform(k: Kernel) -> Kernel:
        k = require_single(k, name)
        check_rank(k.shape1, n_sp, name)
        geo1 = _spatial_geometry(k.shape1, filter_shape, strides, padding)
        return _filter_kernel(
            k, lambda mat, n: conv_mean(mat, n, geo1, k.full_spatial), [g[2] for g in geo1],
            width_out, k.shape1[-1] * int(np.prod(filter_shape)) / s_in, W_std, b_std, b_var,
            param)

    return laid_out(name, layer(name, init_fn, apply_fn, transform), 0, -1)


class _ConvLayout:
    """A convolution's ``dimension_numbers`` read for the kernel: ``dims`` for ``jax.lax``;
    ``filter_shape`` / ``strides`` in the input's spatial order (``rhs`` gives them in its
    own); ``out_perm[j]``: the input spatial axis that output spatial axis ``j`` comes from;
    ``in_axes`` / ``out_axes``: ``(batch, channel - rank)`` of ``lhs`` / ``out``."""

    def __init__(self, dims, default, filter_shape, strides, out_perm, in_axes, out_axes):
        self.dims, self.default = dims, default
        self.filter_shape, self.strides, self.out_perm = filter_shape, strides, out_perm
        self.in_axes, self.out_axes = in_axes, out_axes


def _conv_layout(name: str, n_sp: int, dimension_numbers, filter_shape, strides):
    letters = "HWDXYZUV"[:n_sp]
    default = ("N" + letters + "C", letters + "IO", "N" + letters + "C")
    if dimension_numbers is None:
        dims = default
    else:
        try:
            dims = tuple(dimension_numbers)
            if (isinstance(dimension_numbers, str) or len(dims) != 3
                    or not all(isinstance(d, str) for d in dims)):
                raise TypeError
        except TypeError:
            raise TypeError(f"{name}: dimension_numbers must be None or three strings (lhs, "
                            f"rhs, out), e.g. {default}, got {dimension_numbers!r}") from None
    lhs, rhs, out = dims
    in_sp = [c for c in lhs if c not in "NC"]
    rhs_sp = [c for c in rhs if c not in "IO"]
    out_sp = [c for c in out if c not in "NC"]
    ok = (len(lhs) == len(rhs) == len(out) == n_sp + 2
          and all(len(set(d)) == len(d) for d in dims)
          and {"N", "C"} <= set(lhs) and {"N", "C"} <= set(out) and {"I", "O"} <= set(rhs)
          and set(in_sp) == set(rhs_sp) == set(out_sp))
    if not ok:
        raise ValueError(
            f"{name}: dimension_numbers={dimension_numbers!r} must be three strings of "
            f"{n_sp + 2} distinct letters each (a filter of {n_sp} spatial axes): lhs and out "
            f"with 'N' and 'C', rhs with 'I' and 'O', and the same spatial letters in all "
            f"three, e.g. {default}")
    to_filter = [rhs_sp.index(c) for c in in_sp]
    rank = n_sp + 2
    return _ConvLayout(
        dims, dims == default, tuple(filter_shape[p] for p in to_filter),
        tuple(strides[p] for p in to_filter), tuple(in_sp.index(c) for c in out_sp),
        (lhs.index("N"), lhs.index("C") - rank), (out.index("N"), out.index("C") - rank))


def _permute_spatial(k: Kernel, perm: tuple) -> Kernel:
    """``k`` with its spatial axes reordered: new axis ``j`` is old axis ``perm[j]``."""
    if list(perm) == sorted(perm):
        return k
    full = k.full_spatial

    def move(mat, batch_ndim):
        if mat is None:
            return None
        axes = [batch_ndim + q for p in perm for q in ((2 * p, 2 * p + 1) if full else (p,))]
        return jnp.transpose(mat, tuple(range(batch_ndim)) + tuple(axes))

    sp = lambda shape: (shape[0],) + tuple(shape[1 + p] for p in perm) + (shape[-1],)
    return k.replace(nngp=move(k.nngp, 2), ntk=move(k.ntk, 2), cov1=move(k.cov1, 1),
                     cov2=move(k.cov2, 1), shape1=sp(k.shape1), shape2=sp(k.shape2))


def _general_conv(name, out_chan, filter_shape, strides, padding, W_std, b_std, param,
                  layout: _ConvLayout, transpose: bool = False, s=(1, 1)):
    """``Conv`` (``ConvTranspose`` if ``transpose``) with ``dimension_numbers`` other than
    channels-last: the finite layer by ``jax.lax`` in that layout; the kernel by the
    channels-last layer's on the input's spatial order (filter and strides permuted to it),
    its output spatial axes then put in ``out``'s order."""
    if transpose:
        conv = functools.partial(jax.lax.conv_transpose, dimension_numbers=layout.dims)
    else:
        conv = functools.partial(jax.lax.conv_general_dilated, dimension_numbers=layout.dims)
    from ntk.stax.core import KernelFn, check_apply_kwargs

    lhs, rhs, out_spec = layout.dims
    filter_size = int(np.prod(filter_shape))
    n_sp = len(filter_shape)
    sp_axes = [i for i, c in enumerate(lhs) if c not in "NC"]  # layout.filter_shape's order
    s_in, s_out = s
    channels_out = out_chan * s_out

    def shapes(input_shape):
        """``(output shape, W shape, b shape)`` for ``input_shape`` in ``lhs``'s layout."""
        check_rank(input_shape, n_sp, name, "input_shape")
        taps = iter(filter_shape)
        w_shape = tuple(channels_out if c == "O" else int(input_shape[lhs.index("C")]) if c == "I"
                        else next(taps) for c in rhs)
        y = jax.eval_shape(lambda x, w: conv(x, w, strides,
                                             "SAME" if padding == "CIRCULAR" else padding),
            jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32),
            jax.ShapeDtypeStruct(w_shape, jnp.float32))
        b_shape = tuple(itertools.dropwhile(lambda n: n == 1, [channels_out if c == "C" else 1
                                                               for c in out_spec]))
        return tuple(y.shape), w_shape, b_shape

    def init_fn(key, input_shape):
        out_shape, w_shape, b_shape = shapes(input_shape)
        fan_in = input_shape[lhs.index("C")] * filter_size
        k1, k2 = jax.random.split(key)
        W = jax.random.normal(k1, w_shape)
        b = None if b_std is None else jax.random.normal(k2, b_shape)
        if param == "standard":
            W = W * (W_std / math.sqrt(fan_in / s_in))
            b = None if b is None else b * b_std
        return out_shape, (W, b)

    def apply_fn(params, x, **kwargs):
        check_apply_kwargs(name, kwargs)
        check_rank(x.shape, n_sp, name)
        W, b = params
        x, lax_padding = _circular_input(x, sp_axes, layout.filter_shape, layout.strides,
                                         padding)
        out = conv(x, W.astype(x.dtype), strides, lax_padding)
        scale = 1.0
        if param == "ntk":
            out = (W_std / math.sqrt(x.shape[lhs.index("C")] * filter_size)) * out
            scale = b_std
        elif s_in != 1:
            out = out / math.sqrt(s_in)
        if b is None:
            return out
        b = jnp.reshape(b, [channels_out if c == "C" else 1 for c in out_spec])
        return out + scale * b

    init_fn.__name__ = apply_fn.__name__ = name
    _, _, channels_last = (ConvTranspose if transpose else Conv)(
        out_chan, layout.filter_shape, layout.strides, padding, W_std, b_std,
        parameterization=param, s=s)
    rank = n_sp + 2
    out_layout = (out_spec.index("N"), out_spec.index("C"))

    def transform(k, out_full):
        k = require_single(k, name)
        check_layout(k, name, *layout.in_axes)
        k = with_layout(k, 0, -1)  # the channels-last layer's own check
        k = _permute_spatial(channels_last.transform(k, out_full), layout.out_perm)
        return with_layout(k, *out_layout) if out_layout != (0, rank - 1) else k

    return init_fn, apply_fn, KernelFn(name, transform, channels_last.input_full,
                                       input_axes=layout.in_axes)


# ----------------------------------------------------------------------------------------
# ConvTranspose


def _transpose_pads(length: int, window: int, stride: int, padding: str):
    """``(lo, hi, out_len)`` of ``jax.lax.conv_transpose`` along one axis: the input is dilated
    by the stride (``stride - 1`` zeros between entries), padded with ``lo``/``hi`` zeros, and
    filtered with stride 1 -- the gradient of a strided convolution with that padding."""
    if padding == "SAME":
        total = window + stride - 2
        lo = window - 1 if stride > window - 1 else -(-total // 2)
    else:  # VALID (CIRCULAR folds a VALID output)
        total = window + stride - 2 + max(window - stride, 0)
        lo = window - 1
    return lo, total - lo, (length - 1) * stride + 1 + total - window + 1


def _fold(x, axis: int, period: int):
    """Wrap an axis of length ``M >= period`` onto ``period`` positions, the VALID output of a
    transposed convolution made periodic: ``y(t) = sum_j x(t + phase + j period)`` over every
    ``j`` in range, ``phase = (M - period) // 2`` (the overhang split between both ends)."""
    length = x.shape[axis]
    if length == period:
        return x
    phase = (length - period) // 2
    left = -(-phase // period) * period - phase  # zeros in front: index t + phase lands on t
    total = -(-(left + length) // period) * period
    widths = [(0, 0)] * x.ndim
    widths[axis] = (left, total - left - length)
    x = jnp.pad(x, widths)
    shape = x.shape[:axis] + (total // period, period) + x.shape[axis + 1:]
    return jnp.sum(x.reshape(shape), axis=axis)


def ConvTranspose(out_chan: int, filter_shape: Sequence[int],
                  strides: Optional[Sequence[int]] = None, padding: str = "VALID",
                  W_std: float = 1.0, b_std: Optional[float] = None, dimension_numbers=None,
                  parameterization: str = "ntk", s=(1, 1)):
    """Transposed convolution (``jax.lax.conv_transpose``, neural-tangents'
    ``stax.ConvTranspose``) over ``len(filter_shape)`` spatial axes, channels last.

    Finite layer (fan_in ``F = C_in * prod(filter_shape)``, filter ``(*filter_shape, C_in,
    out_chan)``): per spatial axis with filter ``k`` and stride ``s`` the input is dilated by
    ``s`` and zero-padded by ``(lo, hi)`` (``jax.lax.conv_transpose``'s 'SAME'/'VALID'
    paddings; output length ``L s`` for SAME, ``L s + max(k - s, 0)`` for VALID), then
    filtered with stride 1 and no flip:

        z(a) = W_std / sqrt(F) sum_{o < k} x_dil(a + o) W(o) + b_std b        (ntk)

    ``x_dil(t) = x(p)`` where ``t = lo + p s``, else 0; ``'standard'`` draws ``W`` with std
    ``W_std / sqrt(F)`` and ``b`` with ``b_std`` and uses them unscaled. ``'CIRCULAR'``
    padding wraps the VALID output periodically onto the SAME output length ``T = L s``:
    ``z_circ(t) = sum_j z_valid(t + (M - T) // 2 + j T)``.

    Kernel: the taps are independent and shared by all positions, so two outputs covary
    through the same tap only:

        A[K](a, b) = (1 / k) sum_{o < k} K_dil(a + o, b + o)    (per axis, axis after axis)
        nngp' = W_std^2 A[nngp] + b_std^2,    ntk' = nngp' + W_std^2 A[ntk]        (ntk)
        ntk'  = F A[nngp] + 1[b_std given] + W_std^2 A[ntk]                      (standard)

    with ``K_dil`` the input kernel dilated and padded like ``x`` on both position axes; for
    CIRCULAR the result is folded like the output on both axes (two outputs folded onto one
    position never share a tap, so the diagonal layout folds equal positions only). Only
    equal-position input covariances are needed for equal-position outputs.

    Shapes: ``(N, *spatial, C_in) -> (N, *spatial', out_chan)``. ``dimension_numbers``
    as in :func:`Conv` (not with ``'CIRCULAR'``); ``s = (s_in, s_out)`` as in :func:`Dense`
    (``'standard'`` only).

    Dumoulin & Visin (2016), "A guide to convolution arithmetic for deep learning",
    arXiv:1603.07285; Novak et al. (2019), arXiv:1810.05148 (the CNN-GP kernel).
    """
    out_chan = check_positive_int("out_chan", out_chan)
    W_std = check_std("W_std", W_std)
    b_std = check_std("b_std", b_std, allow_none=True)
    param = _check_parameterization(parameterization)
    _check_s("ConvTranspose", s)
    s_in, s_out = (1, 1) if param == "ntk" else _check_s("ConvTranspose", s)
    width_out = out_chan * s_out
    circular = isinstance(padding, str) and padding.upper() == "CIRCULAR"
    filter_shape, strides, padding = _norm_window_args(
        "ConvTranspose", filter_shape, strides, "VALID" if circular else padding)
    if circular:
        padding = "CIRCULAR"
    n_sp = len(filter_shape)
    layout = _conv_layout("ConvTranspose", n_sp, dimension_numbers, filter_shape, strides)
    dims = layout.dims
    name = (f"ConvTranspose({out_chan}, {filter_shape}, strides={strides}, {padding}, "
            f"W_std={W_std}, b_std={b_std}, {param}"
            + ("" if layout.default else f", {dims}")
            + ("" if (s_in, s_out) == (1, 1) else f", s={(s_in, s_out)}") + ")")
    if not layout.default:
        if circular:
            raise NotImplementedError(f"{name}: CIRCULAR padding is supported with the "
                                      f"channels-last dimension_numbers (None) only")
        return _general_conv(name, out_chan, filter_shape, strides, padding, W_std, b_std,
                             param, layout, transpose=True, s=(s_in, s_out))
    filter_size = int(np.prod(filter_shape))
    lax_padding = "VALID" if circular else padding

    def geometry(shape):
        """Per spatial axis ``(lo, hi, length before folding, output length)``."""
        out = []
        for length, k, st in zip(shape[1:-1], filter_shape, strides):
            lo, hi, n = _transpose_pads(length, k, st, lax_padding)
            out.append((lo, hi, n, length * st if circular else n))
        return out

    def init_fn(key, input_shape):
        check_rank(input_shape, n_sp, name, "input_shape")
        fan_in = input_shape[-1] * filter_size
        k1, k2 = jax.random.split(key)
        W = jax.random.normal(k1, tuple(filter_shape) + (input_shape[-1], width_out))
        b = None if b_std is None else jax.random.normal(k2, (width_out,))
        if param == "standard":
            W = W * (W_std / math.sqrt(fan_in / s_in))
            b = None if b is None else b * b_std
        out_sp = tuple(g[3] for g in geometry(input_shape))
        return (input_shape[0],) + out_sp + (width_out,), (W, b)

    def apply_fn(params, x, **kwargs):
        check_rank(x.shape, n_sp, name)
        W, b = params
        out = jax.lax.conv_transpose(x, W.astype(x.dtype), strides, lax_padding,
                                     dimension_numbers=dims)
        if circular:
            for i, (length, st) in enumerate(zip(x.shape[1:-1], strides)):
                out = _fold(out, 1 + i, length * st)
        if param == "ntk":
            out = (W_std / math.sqrt(x.shape[-1] * filter_size)) * out
            return _add_bias(out, b, b_std)
        if s_in != 1:
            out = out / math.sqrt(s_in)
        return _add_bias(out, b)

    b_var = None if b_std is None else b_std**2

    def tap_mean(mat, batch_ndim, geo, full):
        """``A[mat]``: dilate and pad every position axis, sum the filter's diagonal offsets,
        fold (CIRCULAR), divide by the filter size."""
        if mat is None:
            return None
        config = [(0, 0, 0)] * mat.ndim
        groups = []
        for i, ((lo, hi, n, _), k, st) in enumerate(zip(geo, filter_shape, strides)):
            a = batch_ndim + (2 * i if full else i)
            axes = (a, a + 1) if full else (a,)
            for ax in axes:
                config[ax] = (lo, hi, st - 1)
            groups.append((axes, k, 1, 0, 0, n))
        out = _window_sum(jax.lax.pad(mat, jnp.zeros((), mat.dtype), config), groups)
        if circular:
            for i, (_, _, _, period) in enumerate(geo):
                a = batch_ndim + (2 * i if full else i)
                for ax in ((a, a + 1) if full else (a,)):
                    out = _fold(out, ax, period)
        return out / filter_size

    def transform(k: Kernel) -> Kernel:
        k = require_single(k, name)
        check_rank(k.shape1, n_sp, name)
        geo = geometry(k.shape1)
        return _filter_kernel(
            k, lambda mat, n: tap_mean(mat, n, geo, k.full_spatial), [g[3] for g in geo],
            width_out, k.shape1[-1] * filter_size / s_in, W_std, b_std, b_var, param)

    return laid_out(name, layer(name, init_fn, apply_fn, transform), 0, -1)


# ----------------------------------------------------------------------------------------
# pooling


def AvgPool(window_shape: Sequence[int], strides: Optional[Sequence[int]] = None,
            padding: str = "VALID", normalize_edges: bool = False, batch_axis: int = 0,
            channel_axis: int = -1):
    """Average pooling over ``len(window_shape)`` spatial axes.

    Finite layer: ``y(a) = sum_{o in window} x(a s + o - lo) / k`` (zero padding; with
    ``normalize_edges=True`` and SAME padding divide by the number of in-image pixels instead,
    like ``jax.example_libraries.stax.AvgPool``). ``padding='CIRCULAR'``: SAME's output
    length, the input wrapped periodically instead of zero-padded, ``x((a s + o - lo) mod
    L)``, always divided by ``k`` (as neural-tangents); the kernel is wrapped likewise on
    both position axes before pooling.

    Kernel: the pooled covariance ``K'(a, b) = sum_{o, o'} K(a s + o, b s + o') / (k k)`` per
    spatial axis (full layout needed: pooling mixes different positions).

    ``batch_axis`` / ``channel_axis`` (neural-tangents'): where the inputs keep them;
    ``window_shape`` and ``strides`` follow the other (spatial) axes in their order.
    """
    window_shape, strides, padding = _norm_window_args("AvgPool", window_shape, strides,
                                                       padding, "window_shape", circular=True)
    mode = _pad_mode(padding)
    normalize_edges = normalize_edges and padding == "SAME"  # only SAME windows leave the image
    n_sp = len(window_shape)
    name = f"AvgPool({window_shape}, strides={strides}, {padding})" + _axes_note(
        batch_axis, channel_axis)

    def init_fn(key, input_shape):
        check_rank(input_shape, n_sp, name, "input_shape")
        geo = _spatial_geometry(input_shape, window_shape, strides, padding)
        return (input_shape[0],) + tuple(g[2] for g in geo) + (input_shape[-1],), ()

    def apply_fn(params, x, **kwargs):
        check_rank(x.shape, n_sp, name)
        geo = _spatial_geometry(x.shape, window_shape, strides, padding)
        for i, ((lo, hi, out), k, s) in enumerate(zip(geo, window_shape, strides)):
            counts = (_edge_counts(x.shape[1 + i], k, s, lo, hi, out).astype(x.dtype)
                      if normalize_edges else None)
            x = _window_mean(x, 1 + i, k, s, lo, hi, out, counts, mode)
        return x

    def pool(mat, batch_ndim, geo, in_shape):
        if mat is None:
            return None
        groups = []
        for i, ((lo, hi, out), k, s) in enumerate(zip(geo, window_shape, strides)):
            a = batch_ndim + 2 * i
            groups += [((a,), k, s, lo, hi, out), ((a + 1,), k, s, lo, hi, out)]
        total = _window_sum(mat, groups, mode)
        if not normalize_edges:
            return total / float(np.prod(window_shape)) ** 2
        for i, ((lo, hi, out), k, s) in enumerate(zip(geo, window_shape, strides)):
            counts = _edge_counts(in_shape[1 + i], k, s, lo, hi, out).astype(mat.dtype)
            for a in (batch_ndim + 2 * i, batch_ndim + 2 * i + 1):
                shape = [1] * total.ndim
                shape[a] = out
                total = total / counts.reshape(shape)
        return total

    def transform(k: Kernel) -> Kernel:
        k = require_single(k, name)
        check_rank(k.shape1, n_sp, name)
        if not k.full_spatial:
            raise ValueError(f"{name}: needs the full-spatial kernel layout (internal error: "
                             f"the layout planner gave a diagonal one)")
        geo = _spatial_geometry(k.shape1, window_shape, strides, padding)
        out_sp = tuple(g[2] for g in geo)
        return k.replace(
            nngp=pool(k.nngp, 2, geo, k.shape1), ntk=pool(k.ntk, 2, geo, k.shape1),
            cov1=pool(k.cov1, 1, geo, k.shape1), cov2=pool(k.cov2, 1, geo, k.shape1),
            shape1=(k.shape1[0],) + out_sp + (k.shape1[-1],),
            shape2=(k.shape2[0],) + out_sp + (k.shape2[-1],))

    return laid_out(name, layer(name, init_fn, apply_fn, transform,
                                input_full=lambda out_full: True), batch_axis, channel_axis)


def _axes_note(batch_axis, channel_axis) -> str:
    return ("" if (batch_axis, channel_axis) == (0, -1)
            else f"(batch_axis={batch_axis}, channel_axis={channel_axis})")


def _global_pool_layout(name, triple, batch_axis, channel_axis):
    """A global pooling layer with neural-tangents' ``batch_axis`` / ``channel_axis``: the
    pooled output keeps the batch and channel axes in their order, ``(N, C)`` or ``(C, N)``."""
    init_std, apply_std, kf = triple

    def out_axes(b, c):
        return (0, 1) if b < c else (1, 0)

    def init_fn(key, input_shape):
        if len(input_shape) < 3:
            raise ValueError(f"{name}: needs spatial axes, got input_shape {tuple(input_shape)}")
        b, c = normalize_axes(name, batch_axis, channel_axis, len(input_shape))
        out_shape, params = init_std(key, standard_shape(input_shape, b, c))
        return layout_shape(out_shape, *out_axes(b, c)), params

    def apply_fn(params, x, **kwargs):
        check_apply_kwargs(name, kwargs)
        if x.ndim < 3:
            raise ValueError(f"{name}: needs spatial axes, got input of shape {x.shape}")
        b, c = normalize_axes(name, batch_axis, channel_axis, x.ndim)
        return from_standard(apply_std(params, to_standard(x, b, c), **kwargs), *out_axes(b, c))

    def transform(k, out_full):
        k = require_single(k, name)
        b, c = check_layout(k, name, batch_axis, channel_axis)
        out = kf.transform(with_layout(k, 0, -1), out_full)
        return with_layout(out, *out_axes(b, c))

    init_fn.__name__ = apply_fn.__name__ = name
    from ntk.stax.core import KernelFn
    return init_fn, apply_fn, KernelFn(name, transform, kf.input_full,
                                       input_axes=(batch_axis, channel_axis))


def GlobalAvgPool(batch_axis: int = 0, channel_axis: int = -1):
    """Mean over all spatial axes: ``(N, *spatial, C) -> (N, C)``.

    Kernel: ``K'(x1, x2) = mean_{a, b} K(x1, a; x2, b)`` over all pairs of positions (the
    pooled CNN-GP / CNTK; needs the full layout, memory ``N1 N2 P^2`` for ``P`` pixels).

    ``batch_axis`` / ``channel_axis`` (neural-tangents'): where the inputs keep them; the
    output is ``(N, C)`` if the batch axis comes first, else ``(C, N)``.
    """
    name = "GlobalAvgPool" + _axes_note(batch_axis, channel_axis)

    def init_fn(key, input_shape):
        if len(input_shape) < 3:
            raise ValueError(f"{name}: needs spatial axes, got input_shape {tuple(input_shape)}")
        return (input_shape[0], input_shape[-1]), ()

    def apply_fn(params, x, mask=None, **kwargs):
        if x.ndim < 3:
            raise ValueError(f"{name}: needs spatial axes, got input of shape {x.shape}")
        axes = tuple(range(1, x.ndim - 1))
        if mask is None:
            return jnp.mean(x, axis=axes)
        # neural-tangents' masked mean: the sum of all entries over the unmasked count
        kept = jnp.sum(~jnp.broadcast_to(mask, x.shape), axis=axes)
        return jnp.sum(x, axis=axes) / jnp.maximum(kept, 1)

    def transform(k: Kernel) -> Kernel:
        k = require_single(k, name)
        if k.n_spatial == 0:
            raise ValueError(f"{name}: needs spatial axes, got input of shape {k.shape1}")
        if not k.full_spatial:
            raise ValueError(f"{name}: needs the full-spatial kernel layout (internal error)")
        from ntk.stax.masking import position_weights
        weights = position_weights(k, name)

        def mean(mat, batch_ndim):
            if mat is None:
                return None
            axes = tuple(range(batch_ndim, mat.ndim))
            if weights is None:
                return jnp.mean(mat, axis=axes)
            w1, w2 = weights
            if batch_ndim == 2:
                a, b = cross_variances(w1, w2, k.n_spatial, True)
            else:
                a, b = self_variances(w1 if mat is k.cov1 else w2, k.n_spatial, True)
            kept = jnp.maximum(jnp.sum(jnp.broadcast_to(a * b, mat.shape), axis=axes), 1)
            return jnp.sum(mat, axis=axes) / kept
        return k.replace(nngp=mean(k.nngp, 2), ntk=mean(k.ntk, 2), cov1=mean(k.cov1, 1),
                         cov2=mean(k.cov2, 1), shape1=(k.shape1[0], k.shape1[-1]),
                         shape2=(k.shape2[0], k.shape2[-1]), diagonal_spatial=False)

    return _global_pool_layout(name, layer(name, init_fn, apply_fn, transform,
                                           input_full=lambda out_full: True),
                               batch_axis, channel_axis)


def Flatten(batch_axis: int = 0, batch_axis_out: int = 0):
    """Flatten all non-batch axes: ``(N, *spatial, C) -> (N, prod(spatial) C)``.

    Kernel: the per-coordinate average ``K'(x1, x2) = mean_a K(x1, a; x2, a)`` over positions
    (only equal positions: the CNN-GP without pooling). The output is not Gaussian per
    coordinate with this covariance, so a ``Dense`` layer must follow before a nonlinearity.

    ``batch_axis`` (neural-tangents'): where the inputs keep the batch (the channel axis is
    flattened with the others, wherever it is); ``batch_axis_out``: ``0`` gives
    ``(N, features)``, ``1`` (or ``-1``) gives ``(features, N)``; the features are the
    other axes in their order, flattened row-major.
    """
    if isinstance(batch_axis, bool) or not isinstance(batch_axis, (int, np.integer)):
        raise TypeError(f"Flatten: batch_axis must be an int, got {batch_axis!r}")
    if batch_axis_out in (0, -2):
        out_axes = (0, 1)
    elif batch_axis_out in (1, -1):
        out_axes = (1, 0)
    else:
        raise ValueError(f"Flatten: batch_axis_out must be 0 or 1 (the batch axis of the 2D "
                         f"output), got {batch_axis_out!r}")
    name = "Flatten" + ("" if (batch_axis, out_axes[0]) == (0, 0) else
                        f"(batch_axis={batch_axis}, batch_axis_out={batch_axis_out})")

    def batch(ndim):
        return normalize_axes(name, batch_axis, None, ndim)[0]

    def init_fn(key, input_shape):
        b = batch(len(input_shape))
        n = input_shape[b]
        features = int(np.prod([d for i, d in enumerate(input_shape) if i != b]))
        return ((n, features) if out_axes == (0, 1) else (features, n)), ()

    def apply_fn(params, x, **kwargs):
        b = batch(x.ndim)
        flat = jnp.moveaxis(x, b, 0).reshape((x.shape[b], -1))
        return flat if out_axes == (0, 1) else flat.T

    def transform(k: Kernel) -> Kernel:
        k = require_single(k, name)
        if k.n_spatial == 0:
            return k
        s = k.n_spatial

        def mean(mat, batch_ndim):
            if mat is None:
                return None
            if k.full_spatial:
                from ntk.stax.kernel import spatial_diagonal
                mat = spatial_diagonal(mat, batch_ndim, s)
            return jnp.mean(mat, axis=tuple(range(batch_ndim, mat.ndim)))

        flat1 = (k.shape1[0], int(np.prod(k.shape1[1:])))
        flat2 = (k.shape2[0], int(np.prod(k.shape2[1:])))
        return k.replace(nngp=mean(k.nngp, 2), ntk=mean(k.ntk, 2), cov1=mean(k.cov1, 1),
                         cov2=mean(k.cov2, 1), shape1=flat1, shape2=flat2, is_gaussian=False,
                         diagonal_spatial=False)

    def laid_out_transform(k: Kernel) -> Kernel:
        k = require_single(k, name)
        check_layout(k, name, batch_axis, None)
        return with_layout(transform(k), *out_axes)

    init_fn, apply_fn, kf = layer(name, init_fn, apply_fn, laid_out_transform,
                                  input_full=lambda out_full: False)
    kf.input_axes = (batch_axis, None)
    return init_fn, apply_fn, kf


# ----------------------------------------------------------------------------------------
# normalisation, identity, scale


def LayerNorm(axis=-1, eps: float = 1e-12, batch_axis: int = 0, channel_axis: int = -1):
    """Layer normalisation ``y = (x - mean_axis x) / sqrt(var_axis x + eps)`` (no affine).

    ``axis`` must contain the channel axis (-1) and may add spatial axes and the batch axis.
    Kernel (Gaussian input; as channels -> infinity the empirical mean -> 0 and the empirical
    variance -> the kernel variance ``q``, averaged over the normalised spatial axes, and over
    the batch when ``axis`` holds it):
        ``K'(x1, a; x2, b) = K(x1, a; x2, b) / sqrt((q1(a) + eps)(q2(b) + eps))``
    applied to ``nngp``, ``ntk``, ``cov1`` and ``cov2`` alike. Normalising over the batch
    couples the inputs of a batch (x1's variances are averaged over x1, x2's over x2), so such
    a kernel is computed in one piece, never in blocks. With masked inputs the averages run
    over the unmasked positions (neural-tangents' masked mean).

    ``batch_axis`` / ``channel_axis`` (neural-tangents'): where the inputs keep them;
    ``axis`` counts the inputs' axes as they are laid out.
    """
    eps = check_std("eps", eps)
    axes_in = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    name = f"LayerNorm(axis={axis})" + _axes_note(batch_axis, channel_axis)

    def canon(ndim):
        """The normalised axes among batch-first, channels-last activations' axes."""
        b, c = normalize_axes(name, batch_axis, channel_axis, ndim)
        others = [i for i in range(ndim) if i not in (b, c)]
        for a in axes_in:
            if isinstance(a, bool) or not isinstance(a, (int, np.integer)) or not (
                    -ndim <= a < ndim):
                raise ValueError(f"{name}: axis entries must be ints in [-{ndim}, {ndim}) for "
                                 f"inputs of rank {ndim}, got axis={axis}")
        picked = {a % ndim for a in axes_in}
        if c not in picked:
            raise ValueError(f"{name}: axis must include the channel axis {c} (normalising "
                             f"over channels is what makes the infinite-width limit exist); "
                             f"got axis={axis} for inputs of rank {ndim}")
        batch = (0,) if b in picked else ()
        return batch + tuple(sorted(1 + others.index(a) for a in picked
                                    if a not in (b, c))) + (ndim - 1,)

    def init_fn(key, input_shape):
        canon(len(input_shape))
        return tuple(input_shape), ()

    def apply_fn(params, x, mask=None, **kwargs):
        axes = canon(x.ndim)
        if mask is None:
            mean = jnp.mean(x, axis=axes, keepdims=True)
            var = jnp.var(x, axis=axes, keepdims=True)
        else:  # neural-tangents' masked moments: sums over all entries, unmasked count
            kept = jnp.maximum(jnp.sum(~jnp.broadcast_to(mask, x.shape), axis=axes,
                                       keepdims=True), 1)
            mean = jnp.sum(x, axis=axes, keepdims=True) / kept
            var = jnp.sum((x - mean) ** 2, axis=axes, keepdims=True) / kept
        return (x - mean) / jnp.sqrt(var + eps)

    def transform(k: Kernel) -> Kernel:
        k = require_single(k, name)
        require_gaussian(k, name)
        axes = canon(len(k.shape1))
        mean_axes = tuple(a for a in axes if a != len(k.shape1) - 1)  # in v (N, *spatial)
        s, full = k.n_spatial, k.full_spatial
        from ntk.stax.masking import position_weights
        weights = position_weights(k, name)

        def var(cov, w):
            v = variances(cov, s, full) + eps
            if mean_axes:
                if w is None:
                    m = jnp.mean(v, axis=mean_axes, keepdims=True)
                else:
                    kept = jnp.maximum(jnp.sum(jnp.broadcast_to(w, v.shape), axis=mean_axes,
                                               keepdims=True), 1)
                    m = jnp.sum(v, axis=mean_axes, keepdims=True) / kept
                v = jnp.broadcast_to(m, v.shape)
            return v

        v1 = var(k.cov1, None if weights is None else weights[0])
        v2 = v1 if k.cov2 is None else var(k.cov2, None if weights is None else weights[1])
        q1, q2 = cross_variances(v1, v2, s, full)
        inv12 = jax.lax.rsqrt(q1 * q2)
        a1, b1 = self_variances(v1, s, full)
        a2, b2 = self_variances(v2, s, full)
        return k.replace(
            nngp=k.nngp * inv12, ntk=None if k.ntk is None else k.ntk * inv12,
            cov1=k.cov1 * jax.lax.rsqrt(a1 * b1),
            cov2=None if k.cov2 is None else k.cov2 * jax.lax.rsqrt(a2 * b2))

    triple = laid_out(name, layer(name, init_fn, apply_fn, transform), batch_axis, channel_axis)
    # whether ``axis`` may hold the batch axis (ranks are known only at call time: an entry
    # of the other sign than ``batch_axis`` might name it, so it counts)
    triple[2].batch_coupled = any(a == batch_axis or (a < 0) != (batch_axis < 0)
                                  for a in axes_in)
    return triple


def Identity():
    """``y = x``; the kernel is unchanged."""
    def init_fn(key, input_shape):
        return input_shape, ()

    def apply_fn(params, x, **kwargs):
        return x

    return layer("Identity", init_fn, apply_fn, lambda k: k)


def Scale(factor: float):
    """``y = factor * x``: ``nngp``, ``ntk``, ``cov`` are multiplied by ``factor^2``.

    For branch scaling in residual networks, e.g. ``serial(Relu(), Dense(n), Scale(L**-0.5))``
    in one branch of ``FanOut(2) -> parallel(Identity(), branch) -> FanInSum()`` (or use
    ``FanInSum(weights=...)``).
    """
    try:
        factor = float(factor)
    except (TypeError, ValueError):
        raise TypeError(f"factor must be a finite number, got {factor!r}") from None
    if not math.isfinite(factor):
        raise ValueError(f"factor must be a finite number, got {factor!r}")
    name = f"Scale({factor})"

    def init_fn(key, input_shape):
        return input_shape, ()

    def apply_fn(params, x, **kwargs):
        return factor * x

    def transform(k: Kernel) -> Kernel:
        k = require_single(k, name)
        f2 = factor * factor
        return k.replace(nngp=f2 * k.nngp, ntk=None if k.ntk is None else f2 * k.ntk,
                         cov1=f2 * k.cov1, cov2=None if k.cov2 is None else f2 * k.cov2)

    return layer(name, init_fn, apply_fn, transform)


# ----------------------------------------------------------------------------------------
# neural-tangents layers: sum pooling, indexing, dropout


def SumPool(window_shape: Sequence[int], strides: Optional[Sequence[int]] = None,
            padding: str = "VALID", batch_axis: int = 0, channel_axis: int = -1):
    """Sum pooling over ``len(window_shape)`` spatial axes: ``k = prod(window_shape)`` times
    :func:`AvgPool` (zero padding; ``'CIRCULAR'`` wraps around as there).

    Finite layer: ``y(a) = sum_{o in window} x(a s + o - lo)``.
    Kernel: ``K'(a, b) = sum_{o, o'} K(a s + o, b s + o')`` per spatial axis, i.e. ``k^2``
    times the average-pooled kernel (full layout needed: pooling mixes positions).

    Novak et al. (2019), "Bayesian Deep Convolutional Networks with Many Channels are
    Gaussian Processes", arXiv:1810.05148.
    """
    init_avg, apply_avg, kf = AvgPool(window_shape, strides, padding)
    shape = (window_shape,) if isinstance(window_shape, (int, np.integer)) else window_shape
    size = float(np.prod(shape))
    name = kf.name.replace("AvgPool", "SumPool", 1) + _axes_note(batch_axis, channel_axis)

    def init_fn(key, input_shape):
        return init_avg(key, input_shape)

    def apply_fn(params, x, **kwargs):
        return size * apply_avg(params, x)

    def transform(k: Kernel) -> Kernel:
        k = require_single(k, name)
        k = kf.transform(k, True)
        return _scale_kernel(k, size * size)

    return laid_out(name, layer(name, init_fn, apply_fn, transform,
                                input_full=lambda out_full: True), batch_axis, channel_axis)


def GlobalSumPool(batch_axis: int = 0, channel_axis: int = -1):
    """Sum over all spatial axes: ``(N, *spatial, C) -> (N, C)``.

    Kernel: ``K'(x1, x2) = sum_{a, b} K(x1, a; x2, b)`` over all pairs of the ``P`` positions,
    ``P^2`` times :func:`GlobalAvgPool`'s (full layout).

    Novak et al. (2019), "Bayesian Deep Convolutional Networks with Many Channels are
    Gaussian Processes", arXiv:1810.05148.
    """
    init_avg, apply_avg, kf = GlobalAvgPool()
    name = "GlobalSumPool" + _axes_note(batch_axis, channel_axis)

    def init_fn(key, input_shape):
        return init_avg(key, input_shape)

    def apply_fn(params, x, **kwargs):
        if x.ndim < 3:
            raise ValueError(f"{name}: needs spatial axes, got input of shape {x.shape}")
        return jnp.sum(x, axis=tuple(range(1, x.ndim - 1)))

    def transform(k: Kernel) -> Kernel:
        k = require_single(k, name)
        pixels = float(np.prod(k.shape1[1:-1]))
        # a plain sum over all pairs of positions, masked or not (neural-tangents' rule)
        out = kf.transform(k.replace(mask1=None, mask2=None), True)
        return _scale_kernel(out, pixels * pixels).replace(mask1=k.mask1, mask2=k.mask2)

    return _global_pool_layout(name, layer(name, init_fn, apply_fn, transform,
                                           input_full=lambda out_full: True),
                               batch_axis, channel_axis)


def _scale_kernel(k: Kernel, factor: float) -> Kernel:
    return k.replace(nngp=factor * k.nngp, ntk=None if k.ntk is None else factor * k.ntk,
                     cov1=factor * k.cov1, cov2=None if k.cov2 is None else factor * k.cov2)


class _Slice:
    """``Slice[1:10, :, ::-1] == (slice(1, 10), slice(None), slice(None, None, -1))``: the
    index of ``x[1:10, :, ::-1]``, to pass to :func:`Index` (as neural-tangents'
    ``stax.Slice``)."""

    def __getitem__(self, idx):
        return idx

    def __repr__(self):
        return "Slice"


Slice = _Slice()


def _canonical_index(idx, ndim: int, name: str) -> tuple:
    """``idx`` as a tuple of ``ndim`` ints and slices (``...`` expanded, trailing ``:``)."""
    idx = idx if isinstance(idx, tuple) else (idx,)
    for i in idx:
        if not (i is Ellipsis or isinstance(i, slice)
                or (isinstance(i, (int, np.integer)) and not isinstance(i, bool))):
            raise TypeError(f"{name}: idx entries must be ints, slices or ..., got "
                            f"{type(i).__name__} {i!r} (advanced indexing and None are not "
                            f"supported)")
    if sum(i is Ellipsis for i in idx) > 1:
        raise ValueError(f"{name}: idx has more than one ...: {idx!r}")
    if Ellipsis in idx:
        at = idx.index(Ellipsis)
        fill = ndim - (len(idx) - 1)
        idx = idx[:at] + (slice(None),) * fill + idx[at + 1:]
    if len(idx) > ndim:
        raise ValueError(f"{name}: idx {idx!r} has {len(idx)} entries for inputs of rank "
                         f"{ndim}")
    return tuple(idx) + (slice(None),) * (ndim - len(idx))


def Index(idx, batch_axis: int = 0, channel_axis: int = -1):
    """Index the activations as ``x[idx]`` (ints and slices, e.g. ``idx=Slice[:, 1:4, ::2]``).

    Kernel: the same selection on both sides of every covariance,
    ``K'(x1_i, a; x2_j, b) = K(x1_{s(i)}, s(a); x2_{s(j)}, s(b))`` -- a position indexed by an
    int drops its pair of kernel axes (full layout) or its axis (diagonal layout). The
    (infinite) channel axis cannot be indexed and the batch axis only by a slice (the kernel
    keeps a batch axis), as in neural-tangents.

    Novak et al. (2020), "Neural Tangents: Fast and Easy Infinite Neural Networks in Python",
    arXiv:1912.02803 (``stax.Index``).
    """
    name = f"Index({idx!r})" + _axes_note(batch_axis, channel_axis)

    def canon(ndim):
        normalize_axes(name, batch_axis, channel_axis, ndim)
        return _canonical_index(idx, ndim, name)

    def out_shape(shape, sel):
        return tuple(jax.eval_shape(lambda x: x[sel],
                                    jax.ShapeDtypeStruct(tuple(shape), jnp.float32)).shape)

    def init_fn(key, input_shape):
        return out_shape(input_shape, canon(len(input_shape))), ()

    def apply_fn(params, x, **kwargs):
        return x[canon(x.ndim)]

    def transform(k: Kernel) -> Kernel:
        k = require_single(k, name)
        ndim = len(k.shape1)
        b, c = check_layout(k, name, batch_axis, channel_axis)
        laid = canon(ndim)  # in the activations' layout; the kernel is batch-first
        others = [i for i in range(ndim) if i not in (b, c)]
        sel = (laid[b],) + tuple(laid[i] for i in others) + (laid[c],)
        dropped = [i for i in range(ndim) if not isinstance(laid[i], slice)]
        out_b = b - sum(i < b for i in dropped)
        out_c = c - sum(i < c for i in dropped)
        batch, spatial, channel = sel[0], sel[1:-1], sel[-1]
        if channel != slice(None):
            raise NotImplementedError(f"{name}: the channel axis is infinitely wide in the "
                                      f"kernel; it cannot be indexed (got {channel!r})")
        if not isinstance(batch, slice):
            raise NotImplementedError(f"{name}: the kernel keeps a batch axis, so index it "
                                      f"with a slice (e.g. {batch}:{batch + 1}), not an int")
        if k.full_spatial:
            spatial = tuple(s for s in spatial for _ in (0, 1))

        def pick(mat, batch_sel):
            return None if mat is None else mat[batch_sel + spatial]

        def rows(pattern):  # the graphs of the inputs that remain (Aggregate's pattern)
            return None if pattern is None else pattern[batch]

        out = k.replace(nngp=pick(k.nngp, (batch, batch)), ntk=pick(k.ntk, (batch, batch)),
                        cov1=pick(k.cov1, (batch,)), cov2=pick(k.cov2, (batch,)),
                        shape1=out_shape(k.shape1, sel), shape2=out_shape(k.shape2, sel),
                        pattern1=rows(k.pattern1), pattern2=rows(k.pattern2))
        return with_layout(out, out_b, out_c)

    init_fn, apply_fn, kf = layer(name, init_fn, apply_fn, transform)
    kf.input_axes = (batch_axis, channel_axis)
    return init_fn, apply_fn, kf


def Dropout(rate: float, mode: str = "train"):
    """Dropout with *keep* probability ``rate`` (neural-tangents' and
    ``jax.example_libraries.stax``' convention: ``rate=1`` keeps everything).

    Finite layer, ``mode='train'``: ``y = m x / rate`` with ``m ~ Bernoulli(rate)`` drawn
    independently per entry from ``apply_fn(params, x, rng=key)``; ``mode='test'``: ``y = x``.

    Kernel, ``mode='train'``: the mask of one input is shared by its own covariances and
    independent across inputs, ``E[m m'] / rate^2 = 1 + (1 / rate - 1) 1[same entry]``:

        K'(x1_i, a; x2_j, b) = K(x1_i, a; x2_j, b) (1 + (1 / rate - 1) 1[i = j, a = b])

    for ``cov1``, ``cov2`` always and for ``nngp``, ``ntk`` when ``x2`` is ``x1``
    (``x2=None``). An ``x2`` passed explicitly is a different draw of masks even when its
    values equal ``x1`` (neural-tangents compares the values and treats it as ``x1``). The
    output is not Gaussian; the input must not be the raw network input.
    ``mode='test'``: the kernel is unchanged.

    Srivastava et al. (2014), "Dropout: A Simple Way to Prevent Neural Networks from
    Overfitting", JMLR 15; Novak et al. (2020), arXiv:1912.02803 (``stax.Dropout``).
    """
    if mode not in ("train", "test"):
        raise ValueError(f"Dropout: mode must be 'train' or 'test', got {mode!r}")
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        raise TypeError(f"Dropout: rate must be a number in (0, 1], got {rate!r}") from None
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"Dropout: rate (the keep probability) must be in (0, 1], got {rate}")
    name = f"Dropout({rate}, mode={mode!r})"
    factor = 1.0 / rate

    def init_fn(key, input_shape):
        return input_shape, ()

    def apply_fn(params, x, rng=None, **kwargs):
        if mode == "test":
            return x
        if rng is None:
            raise ValueError(f"{name}: apply_fn needs a PRNG key in mode='train': "
                             f"apply_fn(params, x, rng=key)")
        keep = jax.random.bernoulli(rng, rate, x.shape)
        return jnp.where(keep, x / rate, jnp.zeros_like(x))

    def diag_mul(mat, batch_ndim, full):
        """Multiply the entries with equal batch and equal positions by ``factor``."""
        same = None
        if batch_ndim == 2:
            n1, n2 = mat.shape[:2]
            same = jnp.eye(n1, n2, dtype=bool).reshape((n1, n2) + (1,) * (mat.ndim - 2))
        if full:
            base = batch_ndim
            for i in range((mat.ndim - base) // 2):
                size = mat.shape[base + 2 * i]
                shape = [1] * mat.ndim
                shape[base + 2 * i], shape[base + 2 * i + 1] = size, size
                eye = jnp.eye(size, dtype=bool).reshape(shape)
                same = eye if same is None else same & eye
        if same is None:
            return factor * mat
        return jnp.where(same, factor * mat, mat)

    def transform(k: Kernel) -> Kernel:
        k = require_single(k, name)
        if mode == "test":
            return k
        if k.is_input:
            raise ValueError(f"{name}: dropout on the raw network input has no "
                             f"infinite-width kernel (as in neural-tangents); put a Dense/Conv "
                             f"layer first")
        full = k.full_spatial
        nngp, ntk = k.nngp, k.ntk
        if k.x1_is_x2:
            nngp = diag_mul(nngp, 2, full)
            ntk = None if ntk is None else diag_mul(ntk, 2, full)
        return k.replace(nngp=nngp, ntk=ntk, cov1=diag_mul(k.cov1, 1, full),
                         cov2=None if k.cov2 is None else diag_mul(k.cov2, 1, full),
                         is_gaussian=False, is_input=False)

    return layer(name, init_fn, apply_fn, transform)
