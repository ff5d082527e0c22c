"""Constant linear maps over the positions of the activations -- ``DotGeneral`` and
``ImageResize`` -- and their kernels, with neural-tangents 0.6.5's arguments.

A layer ``y = f(x)`` that acts linearly on the spatial axes of ``x (N, *spatial, C)``, the
same way for every input and channel (``y(a) = sum_p A(a, p) x(p)``), maps the kernel as

    K'(x1, a; x2, b) = sum_{p, q} A(a, p) K(x1, p; x2, q) A(b, q),   i.e.  K' = A K A^T

for ``nngp``, ``ntk`` (the layer has no parameters) and ``cov1``/``cov2``. It is computed by
applying ``f`` itself to the kernel, once with the left positions in the place of ``x``'s
spatial axes (the right ones stacked into the channel axis) and once with the right ones, so
any map ``f`` can be used without writing ``A`` down.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ntk.stax.attention import from_position_matrix, to_position_matrix
from ntk.stax.core import (check_apply_kwargs, check_layout as check_kernel_layout,
                           from_standard, laid_out, layer, layout_shape, normalize_axes,
                           require_single, standard_shape, to_standard, with_layout)
from ntk.stax.kernel import Kernel

__all__ = ["DotGeneral", "ImageResize", "ConvLocal"]


def _map_side(f, mat, spatial, first: bool):
    """Apply ``f`` to one side of a kernel in position-matrix form.

    ``mat`` is ``(N1, N2, P, Q)`` (cross) or ``(N, P, Q)`` (same input). ``first=True`` maps
    the left positions ``P`` (as ``(N1, *spatial, C)`` with everything else stacked in the
    channel axis), ``False`` the right positions ``Q`` (``x2``'s batch axis then leads).
    """
    if mat.ndim == 4:
        perm = (0, 2, 1, 3) if first else (1, 3, 0, 2)
        m = jnp.transpose(mat, perm)                       # (Nb, Pb, No, Po)
        nb, _, no, po = m.shape
        out = f(m.reshape((nb,) + tuple(spatial) + (no * po,)))
        if out.shape[0] != nb:
            raise NotImplementedError("the map changes the batch axis")
        out = out.reshape((nb, -1, no, po))
        back = (0, 2, 1, 3) if first else (2, 0, 3, 1)
        return jnp.transpose(out, back)
    m = mat if first else jnp.transpose(mat, (0, 2, 1))  # (N, Pb, Po)
    n, _, po = m.shape
    out = f(m.reshape((n,) + tuple(spatial) + (po,))).reshape((n, -1, po))
    return out if first else jnp.transpose(out, (0, 2, 1))


def _position_map_transform(name: str, f, out_shape):
    """Kernel map ``K -> A K A^T`` of a linear map ``f`` over positions (module docstring);
    ``out_shape(shape)`` is the activations' shape after ``f``."""

    def transform(k: Kernel) -> Kernel:
        k = require_single(k, name)
        s = k.n_spatial
        if s and not k.full_spatial:
            raise ValueError(f"{name}: needs the full-spatial kernel layout (internal error: "
                             f"the layout planner gave a diagonal one)")
        shape1, shape2 = tuple(out_shape(k.shape1)), tuple(out_shape(k.shape2))
        if shape1[0] != k.shape1[0] or shape2[0] != k.shape2[0]:
            raise NotImplementedError(f"{name}: the map changes the batch axis ({k.shape1} -> "
                                      f"{shape1}); the kernel keeps one row per input")
        sp_in1, sp_in2 = k.shape1[1:-1], k.shape2[1:-1]
        sp_out = shape1[1:-1]

        def both(mat, batch_ndim):
            if mat is None:
                return None
            m = to_position_matrix(mat, batch_ndim, s)
            m = _map_side(f, m, sp_in1, True)
            m = _map_side(f, m, sp_in2, False)
            return from_position_matrix(m, batch_ndim, sp_out)

        return k.replace(nngp=both(k.nngp, 2), ntk=both(k.ntk, 2), cov1=both(k.cov1, 1),
                         cov2=both(k.cov2, 1), shape1=shape1, shape2=shape2,
                         diagonal_spatial=False)

    return transform


def _axes(dims, ndim: int, name: str, arg: str) -> tuple:
    try:
        return tuple(int(d) % ndim for d in dims)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: {arg} must be a sequence of ints, got {dims!r}") from None


def DotGeneral(*, lhs=None, rhs=None, dimension_numbers=(((), ()), ((), ())),
               precision=None, batch_axis: int = 0, channel_axis: int = -1):
    """A constant (non-trainable) ``jax.lax.dot_general`` with the inputs: ``apply_fn`` computes
    ``dot_general(x, rhs, dimension_numbers, precision)`` (``rhs`` given) or
    ``dot_general(lhs, x, ...)`` (``lhs`` given); neither: the identity.

    Any linear map over the spatial axes -- a weighted sum of positions, a permutation, a
    contraction of a spatial axis with a vector, a scalar factor -- is one such layer. The batch
    and channel axes of ``x`` (``batch_axis`` / ``channel_axis``, neural-tangents') must stay
    untouched (neither contracted nor dot-batched: ``ValueError`` for the channel axis,
    ``NotImplementedError`` for the batch axis); the output has them wherever
    ``dot_general`` puts them, and the kernel records that layout for the layers after it.

    Kernel: ``K' = A K A^T`` over positions for ``nngp``, ``ntk``, ``cov1``, ``cov2``, where
    ``A`` is the map (computed by applying ``dot_general`` itself to the kernel, see
    :mod:`ntk.stax.linear_maps`). Shapes: ``(N, *spatial, C) -> (N, *spatial', C)``.

    Novak et al. (2020), "Neural Tangents: Fast and Easy Infinite Neural Networks in Python",
    arXiv:1912.02803 (``stax.DotGeneral``).
    """
    if lhs is not None and rhs is not None:
        raise ValueError("DotGeneral: at most one of the constants lhs and rhs can be given; "
                         "the other factor is the layer's input")
    is_lhs = rhs is None
    other = None if (lhs is None and rhs is None) else jnp.asarray(lhs if is_lhs else rhs)
    try:
        (lhs_c, rhs_c), (lhs_b, rhs_b) = dimension_numbers
        lhs_c, rhs_c, lhs_b, rhs_b = (tuple(d) for d in (lhs_c, rhs_c, lhs_b, rhs_b))
    except (TypeError, ValueError):
        raise TypeError(f"DotGeneral: dimension_numbers must be ((lhs_contracting, "
                        f"rhs_contracting), (lhs_batch, rhs_batch)), got "
                        f"{dimension_numbers!r}") from None
    dimension_numbers = ((lhs_c, rhs_c), (lhs_b, rhs_b))
    name = (f"DotGeneral({'lhs' if is_lhs else 'rhs'}"
            f"{'' if other is None else tuple(other.shape)}, {dimension_numbers})")

    def dot_fn(x):
        if other is None:
            return x
        args = (x, other.astype(x.dtype))[::-1 if is_lhs else 1]
        return jax.lax.dot_general(*args, dimension_numbers, precision)

    def layout(ndim: int):
        """``(b, c, out_b, out_c)``: the input's batch and channel axes (``batch_axis`` /
        ``channel_axis``) and where the output has them; both must pass through the map
        untouched (neither contracted nor dot-batched)."""
        b, c = normalize_axes(name, batch_axis, channel_axis, ndim)
        if other is None:
            return b, c, b, c
        in_c, in_b = (rhs_c, rhs_b) if is_lhs else (lhs_c, lhs_b)
        oth_c, oth_b = (lhs_c, lhs_b) if is_lhs else (rhs_c, rhs_b)
        in_c, in_b = _axes(in_c, ndim, name, "dimension_numbers"), _axes(in_b, ndim, name,
                                                                           "dimension_numbers")
        if c in in_c + in_b:
            raise ValueError(f"{name}: the channel axis {channel_axis} of the inputs cannot be "
                             f"contracted or dot-batched (it is infinitely wide in the kernel)")
        if b in in_c:
            raise NotImplementedError(f"{name}: contracting the batch axis {batch_axis} mixes "
                                      f"inputs; the kernel keeps one row per input")
        if b in in_b:
            raise NotImplementedError(f"{name}: dot-batching the batch axis {batch_axis} gives "
                                      f"each input its own constant; not supported in "
                                      f"ntk.stax")
        n_other_free = other.ndim - len(oth_c) - len(oth_b)
        free = [a for a in range(ndim) if a not in in_c + in_b]
        offset = len(in_b) + (n_other_free if is_lhs else 0)
        return b, c, offset + free.index(b), offset + free.index(c)

    def out_shape(shape):
        layout(len(shape))
        dtype = jnp.float32 if other is None else other.dtype
        return tuple(jax.eval_shape(dot_fn, jax.ShapeDtypeStruct(tuple(shape), dtype)).shape)

    def init_fn(key, input_shape):
        return out_shape(input_shape), ()

    def apply_fn(params, x, **kwargs):
        layout(x.ndim)
        return dot_fn(x)

    def transform(k: Kernel) -> Kernel:
        """The map on batch-first, channels-last arrays: laid out as the inputs, mapped,
        and the output's batch and channel axes moved back to the front and the back."""
        k = require_single(k, name)
        check_kernel_layout(k, name, batch_axis, channel_axis)
        b, c, out_b, out_c = layout(len(k.shape1))

        def std_map(x):
            return to_standard(dot_fn(from_standard(x, b, c)), out_b, out_c)

        def std_out_shape(shape):
            return standard_shape(out_shape(layout_shape(shape, b, c)), out_b, out_c)

        out = _position_map_transform(name, std_map, std_out_shape)(k)
        return with_layout(out, out_b, out_c)

    init_fn, apply_fn, kf = layer(name, init_fn, apply_fn, transform,
                                  input_full=lambda out_full: True)
    kf.input_axes = (batch_axis, channel_axis)
    return init_fn, apply_fn, kf


def ImageResize(shape: Sequence[int], method, antialias: bool = True,
                precision=jax.lax.Precision.HIGHEST, batch_axis: int = 0,
                channel_axis: int = -1):
    """Resize the spatial axes as ``jax.image.resize(x, shape, method, antialias, precision)``,
    with ``shape[i] = -1`` keeping axis ``i`` (neural-tangents' ``stax.ImageResize``).

    ``shape`` has one entry per axis of the inputs (laid out with ``batch_axis`` /
    ``channel_axis``, neural-tangents'); the batch and channel entries must be ``-1``
    (resizing the channel axis has no infinite-width limit: ``ValueError``; resizing the
    batch axis mixes inputs: ``NotImplementedError``).

    Kernel: every method of ``jax.image.resize`` is a fixed linear map ``A`` over positions
    (separable per axis), so ``K' = A K A^T`` for ``nngp``, ``ntk``, ``cov1``, ``cov2``,
    computed by resizing the kernel's own position axes (see :mod:`ntk.stax.linear_maps`).
    ``'nearest'`` and ``'linear'`` match neural-tangents; ``'cubic'``, ``'lanczos3'`` and
    ``'lanczos5'``, for which neural-tangents' ``kernel_fn`` raises, use the same identity.

    Novak et al. (2020), "Neural Tangents: Fast and Easy Infinite Neural Networks in Python",
    arXiv:1912.02803 (``stax.ImageResize``).
    """
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise TypeError(f"ImageResize: shape must be a sequence of ints, got {shape!r}") from None
    if any(s < 1 and s != -1 for s in shape):
        raise ValueError(f"ImageResize: shape entries must be positive or -1, got {shape}")
    try:
        resize_method = (method if isinstance(method, jax.image.ResizeMethod)
                         else jax.image.ResizeMethod.from_string(method))
    except ValueError as e:
        raise ValueError(f"ImageResize: unknown method {method!r} ({e})") from None
    name = f"ImageResize({shape}, {resize_method.name.lower()})"
    if (batch_axis, channel_axis) != (0, -1):
        b, c = normalize_axes(name, batch_axis, channel_axis, len(shape))
        return laid_out(name, ImageResize(standard_shape(shape, b, c), method, antialias,
                                          precision), batch_axis, channel_axis)

    def resolved(input_shape):
        if len(input_shape) != len(shape):
            raise ValueError(f"{name}: shape has {len(shape)} entries for inputs of rank "
                             f"{len(input_shape)} (shape {tuple(input_shape)})")
        return tuple(d if s == -1 else s for s, d in zip(shape, input_shape))

    def resize(x, out):
        return jax.image.resize(x, out, resize_method, antialias=antialias,
                                precision=precision)

    def init_fn(key, input_shape):
        return resolved(input_shape), ()

    def apply_fn(params, x, **kwargs):
        return resize(x, resolved(x.shape))

    def map_positions(m):
        """The spatial resize on an ``(N, *spatial, R)`` array (any N and R)."""
        spatial = tuple(d if s == -1 else s for s, d in zip(shape[1:-1], m.shape[1:-1]))
        return resize(m, (m.shape[0],) + spatial + (m.shape[-1],))

    def out_shape(input_shape):
        if shape[-1] != -1:
            raise ValueError(f"{name}: resizing the channel axis is not defined in the "
                             f"infinite-width limit; set shape[{channel_axis}] = -1")
        if shape[0] != -1:
            raise NotImplementedError(f"{name}: resizing the batch axis mixes inputs; the "
                                      f"kernel keeps one row per input (set shape[0] = -1)")
        return resolved(input_shape)

    transform = _position_map_transform(name, map_positions, out_shape)
    return laid_out(name, layer(name, init_fn, apply_fn, transform,
                                input_full=lambda out_full: True), 0, -1)


def _embed_diagonal(mat, batch_ndim: int, n_spatial: int):
    """Diagonal layout ``(B.., X, Y)`` -> full layout ``(B.., X, X', Y, Y')``, zero off the
    spatial diagonal."""
    out = mat
    for i in range(n_spatial):
        axis = batch_ndim + 2 * i
        size = out.shape[axis]
        out = jnp.expand_dims(out, axis + 1)
        shape = [1] * out.ndim
        shape[axis], shape[axis + 1] = size, size
        out = out * jnp.eye(size, dtype=out.dtype).reshape(shape)
    return out


def ConvLocal(out_chan: int, filter_shape: Sequence[int], strides=None, padding: str = "VALID",
              W_std: float = 1.0, b_std=None, dimension_numbers=None,
              parameterization: str = "ntk", s=(1, 1)):
    """Locally connected (unshared) convolution: a separate filter and bias at every output
    position (``jax.lax.conv_general_dilated_local``), as neural-tangents' ``stax.ConvLocal``.

    Finite layer (fan_in ``F = C_in prod(filter_shape)``): parameters ``W (*out_spatial, F,
    out_chan)`` and ``b (1, *out_spatial, out_chan)``, ``N(0, 1)``;
    ``ntk``: ``z = W_std / sqrt(F) conv_local(x, W) + b_std b``; ``standard``: weights drawn
    with std ``W_std / sqrt(F)`` and ``b_std``, used unscaled.

    Kernel: equal output positions as :func:`Conv`'s (the filter-averaged input kernel),
    different positions have independent weights and biases, so

        K'(a, b) = 1[a = b] (W_std^2 A[K](a, a) + b_std^2),   ntk likewise

    (Novak et al. 2019, "Bayesian Deep Convolutional Networks with Many Channels are Gaussian
    Processes", arXiv:1810.05148, the locally connected network). It reads only
    equal-position input covariances. Only channels-last ``dimension_numbers`` (``None`` or
    ``('NH..C', 'H..IO', 'NH..C')``), ``'VALID'``/``'SAME'``/``'CIRCULAR'`` padding (the last
    wraps the input around as in :func:`Conv`) and ``s=(1, 1)`` are supported; others raise
    ``NotImplementedError``.
    """
    from ntk.stax.core import KernelFn
    from ntk.stax.layers import Conv, _circular_input, _norm_window_args
    from ntk.stax.kernel import to_diagonal

    if tuple(s) != (1, 1):
        raise NotImplementedError(f"ConvLocal: s={s!r} (standard-parameterization width "
                                  f"scaling) is not supported in ntk.stax; use s=(1, 1)")
    filter_shape, strides, padding = _norm_window_args("ConvLocal", filter_shape, strides,
                                                       padding, circular=True)
    n_sp = len(filter_shape)
    letters = "HWDXYZUV"[:n_sp]
    dims = ("N" + letters + "C", letters + "IO", "N" + letters + "C")
    if dimension_numbers is not None and tuple(dimension_numbers) != dims:
        raise NotImplementedError(f"ConvLocal: dimension_numbers={dimension_numbers!r}; ntk.stax "
                                  f"layers are channels-last, {dims} (or None)")
    _, _, conv_kf = Conv(out_chan, filter_shape, strides, padding, W_std, b_std,
                         parameterization=parameterization)
    W_std_, b_std_ = float(W_std), None if b_std is None else float(b_std)
    param = parameterization.lower()
    name = conv_kf.name.replace("Conv(", "ConvLocal(", 1)

    def geometry(input_shape):
        if len(input_shape) != n_sp + 2:
            raise ValueError(f"{name}: expects inputs of rank {n_sp + 2}, got shape "
                             f"{tuple(input_shape)}")
        w = jax.ShapeDtypeStruct(tuple(filter_shape) + (input_shape[-1], out_chan), jnp.float32)
        out = jax.eval_shape(lambda x, w: jax.lax.conv_general_dilated(
            x, w, strides, "SAME" if padding == "CIRCULAR" else padding,
            dimension_numbers=dims),
            jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32), w)
        return tuple(out.shape)

    def init_fn(key, input_shape):
        out_shape = geometry(input_shape)
        fan_in = input_shape[-1] * int(np.prod(filter_shape))
        k1, k2 = jax.random.split(key)
        W = jax.random.normal(k1, out_shape[1:-1] + (fan_in, out_chan))
        b = None if b_std_ is None else jax.random.normal(k2, (1,) + out_shape[1:])
        if param == "standard":
            W = W * (W_std_ / np.sqrt(fan_in))
            b = None if b is None else b * b_std_
        return out_shape, (W, b)

    def apply_fn(params, x, **kwargs):
        check_apply_kwargs(name, kwargs)
        W, b = params
        x, lax_padding = _circular_input(x, range(1, 1 + n_sp), filter_shape, strides, padding)
        out = jax.lax.conv_general_dilated_local(x, W.astype(x.dtype), strides, lax_padding,
                                                 filter_shape, dimension_numbers=dims)
        if param == "ntk":
            out = out * (W_std_ / np.sqrt(x.shape[-1] * int(np.prod(filter_shape))))
            return out if b is None else out + b_std_ * b
        return out if b is None else out + b

    def transform(k, out_full):
        k = require_single(k, name)
        k = conv_kf.transform(to_diagonal(k), False)
        if not out_full or k.n_spatial == 0:
            return k
        n = k.n_spatial

        def embed(mat, batch_ndim):
            return None if mat is None else _embed_diagonal(mat, batch_ndim, n)

        return k.replace(nngp=embed(k.nngp, 2), ntk=embed(k.ntk, 2), cov1=embed(k.cov1, 1),
                         cov2=embed(k.cov2, 1), diagonal_spatial=False)

    init_fn.__name__ = apply_fn.__name__ = name
    return init_fn, apply_fn, KernelFn(name, transform, lambda out_full: False)
