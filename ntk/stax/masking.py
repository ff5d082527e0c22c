"""Masked inputs (neural-tangents' ``mask_constant``): variable-length sequences, padded images.

``apply_fn(params, x, mask_constant=c)`` treats the entries of ``x`` equal to ``c`` (``nan``
too) as missing: they are zeroed, and every layer passes on which of its outputs are masked,
so the network returns a :class:`MaskedArray` (``unmask_fn(apply_fn)`` zeroes the masked
outputs and returns a plain array, e.g. for the empirical and Monte Carlo kernels).
``kernel_fn(x1, x2, mask_constant=c)`` computes the infinite-width kernel of that finite network:
the masks travel in :attr:`Kernel.mask1` / :attr:`Kernel.mask2` and the layers that
neural-tangents marks so zero every covariance with a masked entry on either side ("remask").

How a mask passes a layer (the rules of neural-tangents 0.6.5, in the batch-first,
channels-last layout):

* ``Dense``: an output position is masked when all its input channels are (the channel axis of
  the mask collapses to size 1);
* ``Conv`` / ``ConvLocal``: the same over channels, then each output position takes the mask of
  the input position at its filter window's centre; ``ConvTranspose``: an output position is
  masked when any masked input contributes to it;
* ``AvgPool`` / ``SumPool``: the window centre's mask; ``GlobalAvgPool`` / ``GlobalSumPool``:
  masked when every position is, and ``GlobalAvgPool`` (and ``LayerNorm``) average over the
  unmasked positions only (the sum of all entries over the number of unmasked ones);
* ``Flatten`` flattens the mask with the values; ``Index`` indexes it; ``ImageResize`` masks an
  output only when all its inputs are; ``DotGeneral`` masks an output when every input it
  depends on is masked;
* ``FanInSum`` / ``FanInProd``: masked where every branch is; ``FanInConcat`` concatenates;
* elementwise layers keep the mask.

Remasking layers (neural-tangents' ``remask_kernel=True``): ``Dense``, ``Conv``,
``ConvTranspose``, ``ConvLocal``, ``AvgPool``, ``SumPool``, ``Aggregate``, ``ImageResize``,
``Erf``, ``Sigmoid_like``, ``Sin``, ``Cos``, ``Rbf``, ``Exp``, ``Gaussian``, ``ExpNormalized``,
``Hermite``, ``Elementwise``, ``ElementwiseNumerical``, ``Tanh`` and ``GlobalSelfAttention``;
a remasking layer needs a
mask of channel size 1 (a ``Dense`` / ``Conv`` before it) and raises otherwise, as
neural-tangents does. ``GlobalSelfAttention`` masks a position when all its channels are and
gives masked keys no attention (``-1e20`` before the softmax, zero for other mechanisms).
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ntk.stax.kernel import Kernel, cross_variances, self_variances

__all__ = ["MaskedArray", "unmask_fn", "supports_masking", "masked_input"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class MaskedArray:
    """An ``apply_fn``'s output under ``mask_constant``: the values and a boolean ``mask``
    (``True`` where masked) broadcastable against them (neural-tangents' ``MaskedArray``)."""

    masked_value: Any
    mask: Any


def _zero(x, mask):
    return x if mask is None else jnp.where(mask, jnp.zeros((), x.dtype), x)


def unmask_fn(fn: Callable) -> Callable:
    """``fn`` (an ``apply_fn``) with every :class:`MaskedArray` it returns replaced by its
    values with the masked entries zeroed (neural-tangents' ``stax.unmask_fn``)."""
    def unmask(x):
        return _zero(x.masked_value, x.mask) if isinstance(x, MaskedArray) else x

    @functools.wraps(fn)
    def fn_no_mask(*args, **kwargs):
        return jax.tree_util.tree_map(unmask, fn(*args, **kwargs),
                                      is_leaf=lambda x: isinstance(x, MaskedArray))
    return fn_no_mask


def mask_of(x, mask_constant):
    """The boolean mask of ``x``'s entries equal to ``mask_constant`` (``nan``: NaN entries),
    ``None`` when ``mask_constant`` is ``None``."""
    if mask_constant is None:
        return None
    if isinstance(mask_constant, (list, tuple)) or np.ndim(mask_constant) != 0:
        raise TypeError(f"mask_constant must be a number (or None), got {mask_constant!r}")
    if isinstance(mask_constant, (int, float, np.number)):
        return jnp.isnan(x) if np.isnan(mask_constant) else x == mask_constant
    c = jnp.asarray(mask_constant)  # traced (a jitted kernel_fn): decided at run time
    return jnp.where(jnp.isnan(c), jnp.isnan(x), x == c)


def masked_input(x, mask_constant):
    """``(values, mask)`` of an ``apply_fn`` input: a :class:`MaskedArray` passes through; an
    array is masked where it equals ``mask_constant`` (masked entries zeroed); a list (the
    inputs of a merging layer) element by element."""
    if isinstance(x, MaskedArray):
        return x.masked_value, x.mask
    if isinstance(x, (list, tuple)):
        pairs = [masked_input(xi, mask_constant) for xi in x]
        masks = [m for _, m in pairs]
        return [v for v, _ in pairs], (None if all(m is None for m in masks) else masks)
    mask = mask_of(x, mask_constant)
    return _zero(x, mask), mask


# ----------------------------------------------------------------------------------------
# kernels


def _position_mask(m, name: str):
    """A kernel mask ``(N, *spatial, 1)`` as ``(N, *spatial)``; channel-wise masks raise."""
    if m.shape[-1] != 1:
        raise NotImplementedError(
            f"{name}: masks that differ between channels (mask of shape {tuple(m.shape)}) have "
            f"no infinite-width kernel here; put a Dense or Conv layer first (it masks a "
            f"position when all its channels are), as neural-tangents requires")
    return m[..., 0]


def remask(k: Kernel, m1, m2, name: str) -> Kernel:
    """``k`` with every covariance that involves a masked entry zeroed, and masks ``m1, m2``."""
    k = k.replace(mask1=m1, mask2=m2)
    if m1 is None and m2 is None:
        return k
    p1 = (jnp.zeros(k.shape1[:-1], bool) if m1 is None
          else jnp.broadcast_to(_position_mask(m1, name), k.shape1[:-1]))
    p2 = p1 if k.x1_is_x2 and m2 is None else (
        jnp.zeros(k.shape2[:-1], bool) if m2 is None
        else jnp.broadcast_to(_position_mask(m2, name), k.shape2[:-1]))
    s, full = k.n_spatial, k.full_spatial
    a, b = cross_variances(p1, p2, s, full)
    cross = a | b

    def same(p, cov):
        if cov is None:
            return None
        u, v = self_variances(p, s, full)
        return jnp.where(u | v, jnp.zeros((), cov.dtype), cov)

    def zero(mat):
        return None if mat is None else jnp.where(cross, jnp.zeros((), mat.dtype), mat)
    return k.replace(nngp=zero(k.nngp), ntk=zero(k.ntk), cov1=same(p1, k.cov1),
                     cov2=same(p2, k.cov2) if k.cov2 is not None else None)


def has_masks(k) -> bool:
    if isinstance(k, Kernel):
        return k.mask1 is not None or k.mask2 is not None
    return any(has_masks(ki) for ki in k)


def position_weights(k: Kernel, name: str):
    """``(w1, w2)``: ``1`` on unmasked positions, ``(N, *spatial)``, or ``None`` without masks
    (for the layers that average over unmasked positions)."""
    if k.mask1 is None and k.mask2 is None:
        return None
    def w(m, shape):
        if m is None:
            return jnp.ones(shape[:-1])
        return jnp.broadcast_to(~_position_mask(m, name), shape[:-1]).astype(jnp.result_type(
            float))
    w1 = w(k.mask1, k.shape1)
    return w1, (w1 if k.x1_is_x2 and k.mask2 is None else w(k.mask2, k.shape2))


# ----------------------------------------------------------------------------------------
# how masks pass layers: rules ``rule(mask, shape) -> mask``, batch-first and channels-last


def identity_rule(mask, shape):
    return mask


def channel_all(mask, shape):
    return jnp.all(mask, axis=-1, keepdims=True)


def window_centres(mask, shape, window, strides, padding):
    """Each output position of a window (filter, pool) takes the mask at its window's centre
    (neural-tangents' rule). ``padding``: ``'VALID'``, ``'SAME'`` or ``'CIRCULAR'`` (whose
    output has SAME's positions)."""
    from ntk.stax.layers import _pads
    mask = jnp.broadcast_to(mask, tuple(shape[:-1]) + (mask.shape[-1],))
    pad = "SAME" if padding == "CIRCULAR" else padding
    for i, (k, s) in enumerate(zip(window, strides)):
        lo, _, out = _pads(shape[1 + i], k, s, pad)
        start = -lo + (k - 1) // 2
        mask = jax.lax.slice_in_dim(mask, start, start + 1 + (out - 1) * s, s, 1 + i)
    return mask


def conv_rule(filter_shape, strides, padding):
    def rule(mask, shape):
        return window_centres(channel_all(mask, shape), shape, filter_shape, strides, padding)
    return rule


def pool_rule(window, strides, padding):
    def rule(mask, shape):
        _position_mask(mask, "pooling")
        return window_centres(mask, shape, window, strides, padding)
    return rule


def conv_transpose_rule(filter_shape, strides, padding):
    """Masked where any masked input reaches the output (a transposed convolution of the mask
    with a filter of ones)."""
    def rule(mask, shape):
        m = jnp.broadcast_to(channel_all(mask, shape), tuple(shape[:-1]) + (1,))
        n = len(filter_shape)
        sp = "".join("HWDXYZ"[i] for i in range(n))
        ones = jnp.ones(tuple(filter_shape) + (1, 1), jnp.float32)
        pad = "SAME" if padding == "CIRCULAR" else padding
        out = jax.lax.conv_transpose(m.astype(jnp.float32), ones, tuple(strides), pad,
                                     dimension_numbers=("N" + sp + "C", sp + "IO",
                                                        "N" + sp + "C"))
        return out > 0.5
    return rule


def global_pool_rule(mask, shape):
    _position_mask(mask, "global pooling")
    mask = jnp.broadcast_to(mask, tuple(shape[:-1]) + (mask.shape[-1],))
    return jnp.all(mask, axis=tuple(range(1, len(shape) - 1)))


def flatten_rule(mask, shape):
    return jnp.broadcast_to(mask, tuple(shape)).reshape((shape[0], -1))


def sum_rule(masks, shapes):
    """Masked where every branch is (a branch without a mask does not count)."""
    out = None
    for m in masks:
        if m is not None:
            out = m if out is None else out & m
    return out


def concat_rule(axis):
    """Masks concatenated along ``axis``; each keeps its own size-1 axes elsewhere (so a
    position mask stays one), a branch without a mask counts as unmasked."""
    def rule(masks, shapes):
        if all(m is None for m in masks):
            return None
        a = axis % len(shapes[0])
        grown = [None if m is None else jnp.broadcast_to(m, m.shape[:a] + (s[a],) + m.shape[a + 1:])
                 for m, s in zip(masks, shapes)]
        widest = tuple(max(d) for d in zip(*(m.shape for m in grown if m is not None)))
        parts = []
        for m, s in zip(grown, shapes):
            target = tuple(min(w, d) for w, d in zip(widest, s))
            target = target[:a] + (s[a],) + target[a + 1:]
            parts.append(jnp.zeros(target, bool) if m is None else jnp.broadcast_to(m, target))
        return jnp.concatenate(parts, axis=a)
    return rule


def apply_rule(apply_fn):
    """A linear map's rule from its own ``apply_fn``: masked where every input it reads is
    (the map of the unmasked indicator is zero). The mask keeps its own channel size
    (neural-tangents' rule: a position mask stays one through a scalar map)."""
    def rule(mask, shape):
        m = jnp.broadcast_to(mask, tuple(shape[:-1]) + (mask.shape[-1],))
        return ~(apply_fn((), (~m).astype(jnp.float32)) != 0)
    return rule


# ----------------------------------------------------------------------------------------
# the wrapper


def supports_masking(remask_kernel: bool, rule=None, reads_mask: bool = False,
                     refuses: Optional[str] = None):
    """Decorate a layer constructor so that its layer passes masks on.

    ``rule(arguments) -> (mask, shape) -> mask`` builds the layer's mask rule from the
    constructor's arguments (bound, defaults applied; ``None``: the mask is unchanged);
    ``remask_kernel``: zero the covariances of masked entries after the layer;
    ``reads_mask``: the layer's own ``apply_fn`` takes ``mask=`` (an average over unmasked
    positions) and its kernel reads ``Kernel.mask1`` / ``mask2``; ``refuses``: the layer
    cannot take masked inputs (the reason). Nothing changes for inputs without masks.
    """
    def decorate(ctor):
        signature = inspect.signature(ctor)

        @functools.wraps(ctor)
        def layer_with_masking(*args, **kwargs):
            init_fn, apply_fn, kf = ctor(*args, **kwargs)
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            layer_rule = identity_rule if rule is None else rule(arguments)
            b = arguments.get("batch_axis", 0)
            c = arguments.get("channel_axis", -1)
            conv_layout = arguments.get("dimension_numbers") if "filter_shape" in arguments \
                else None  # a convolution's layout (DotGeneral's are its contraction's)
            default_layout = (b, c) in ((0, -1),) and not conv_layout
            name = kf.name

            def refuse(what):
                raise NotImplementedError(f"{name}: masked inputs (mask_constant) are not "
                                          f"supported {what}")

            def apply_masked(params, x, *, mask_constant=None, mask=None, **kw):
                values, m = masked_input(x, mask_constant)
                if m is None and mask is not None:
                    m = mask
                if m is None:
                    return apply_fn(params, values, **kw)
                if refuses:
                    refuse(refuses)
                if not default_layout or arguments.get("batch_axis_out", 0) not in (0, -2):
                    refuse("with batch_axis / channel_axis / dimension_numbers other than "
                           "the defaults")
                out = (apply_fn(params, values, mask=m, **kw) if reads_mask
                       else apply_fn(params, values, **kw))
                shapes = ([v.shape for v in values] if isinstance(values, list)
                          else values.shape)
                m_out = layer_rule(m, shapes)
                return out if m_out is None else MaskedArray(out, m_out)

            def transform(k, out_full):
                if not has_masks(k):
                    return kf.transform(k, out_full)
                if refuses:
                    refuse(refuses)
                if isinstance(k, Kernel):
                    m1 = None if k.mask1 is None else layer_rule(k.mask1, k.shape1)
                    m2 = None if k.mask2 is None else layer_rule(k.mask2, k.shape2)
                else:
                    m1 = layer_rule([ki.mask1 for ki in k], [ki.shape1 for ki in k])
                    m2s = [ki.mask2 if not ki.x1_is_x2 else ki.mask1 for ki in k]
                    m2 = (None if all(ki.x1_is_x2 for ki in k) or all(m is None for m in m2s)
                          else layer_rule(m2s, [ki.shape2 for ki in k]))
                out = kf.transform(k, out_full)
                if remask_kernel:
                    return remask(out, m1, m2, name)
                return out.replace(mask1=m1, mask2=m2)

            masked_kf = type(kf).__new__(type(kf))
            masked_kf.__dict__.update(kf.__dict__)
            masked_kf.transform = transform
            masked_kf._jitted = {}
            masked_kf._out_bytes_cache = {}
            apply_masked.__name__ = getattr(apply_fn, "__name__", name)
            return init_fn, apply_masked, masked_kf
        return layer_with_masking
    return decorate


def custom_layer(layer_fn: Callable) -> Callable:
    """neural-tangents' ``@stax.layer``: turn ``layer_fn(*args, **kwargs) -> (init_fn,
    apply_fn, kernel_fn[, mask_fn])`` into a layer constructor.

    ``kernel_fn(k: Kernel, **kwargs) -> Kernel`` acts on this package's :class:`Kernel`
    (``nngp``, ``ntk``, ``cov1``, ``cov2``, ``shape1``, ``shape2``, ``replace``: the fields a
    custom layer of neural-tangents reads; batch-first, channels-last). The returned layer
    has a full ``kernel_fn`` (arrays in, ``get``, blocks, ``mask_constant``); ``mask_fn(mask,
    input_shape)``, where given, says how masks pass it (default: unchanged); its kernel is
    not remasked.
    """
    from ntk.stax.core import KernelFn, check_apply_kwargs

    @functools.wraps(layer_fn)
    def constructor(*args, **kwargs):
        fns = layer_fn(*args, **kwargs)
        if not isinstance(fns, (tuple, list)) or len(fns) not in (3, 4):
            raise ValueError(f"{layer_fn.__name__}: a layer function returns (init_fn, "
                             f"apply_fn, kernel_fn) or (init_fn, apply_fn, kernel_fn, "
                             f"mask_fn), got {type(fns).__name__}")
        init_fn, apply_fn, kernel_fn = fns[:3]
        rule = fns[3] if len(fns) == 4 else identity_rule
        name = getattr(layer_fn, "__name__", "layer")

        def apply_checked(params, x, **kw):
            check_apply_kwargs(name, kw)
            return apply_fn(params, x, **kw)

        def transform(k, out_full):
            return kernel_fn(k)

        kf = KernelFn(name, transform, rounding_ntk=False)
        return supports_masking(False, lambda a: rule)(lambda: (init_fn, apply_checked, kf))()
    return constructor
