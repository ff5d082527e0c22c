"""Analytic infinite-width kernels (NNGP and NTK) with the matching finite networks.

Every layer is a triple ``(init_fn, apply_fn, kernel_fn)`` with neural-tangents 0.6.5
semantics (``W_std``, ``b_std``, ``'ntk'``/``'standard'`` parameterizations and ``s``,
channels-last inputs unless ``batch_axis`` / ``channel_axis`` say otherwise), so kernels
compare number for number with it:

    >>> from ntk import stax
    >>> init_fn, apply_fn, kernel_fn = stax.serial(
    ...     stax.Dense(512, W_std=1.5, b_std=0.05), stax.Relu(),
    ...     stax.Dense(1, W_std=1.5, b_std=0.05))
    >>> k = kernel_fn(x1, x2)                       # Kernel(nngp=(N1, N2), ntk=(N1, N2), ...)
    >>> nngp, ntk = kernel_fn(x1, x2, ('nngp', 'ntk'))

neural-tangents' ``repeat`` (a ``lax.scan`` loop), ``Dropout``, ``SumPool``, ``GlobalSumPool``,
``Index``/``Slice``, ``FanInProd``, ``Polynomial``, ``Hermite``, ``Gabor``, ``ExpNormalized``,
``ConvTranspose`` and the graph layer ``Aggregate`` (``kernel_fn(x1, x2, pattern=(p1, p2))``)
are here under their names and arguments. Beyond neural-tangents: ``Tanh`` (Gauss-Hermite), any-degree ``Monomial``, branch weights in
``FanInSum`` and a ``Scale`` layer for residual branch scaling, and blocked evaluation under a
memory budget built into every ``kernel_fn`` (``batch_size=``, ``memory_budget=``).
"""
from ntk.stax import activations as _act
from ntk.stax import combinators as _comb
from ntk.stax import layers as _lay
from ntk.stax import linear_maps as _lin
from ntk.stax import masking as _mask
from ntk.stax.aggregate import Aggregate as _Aggregate
from ntk.stax.attention import GlobalSelfAttention as _GlobalSelfAttention
from ntk.stax.combinators import FanOut, parallel, repeat, serial
from ntk.stax.core import GET_NAMES, KernelFn
from ntk.stax.kernel import Kernel
from ntk.stax.masking import MaskedArray, unmask_fn
from ntk.stax.masking import custom_layer as layer


def _masking(remask_kernel, rule=None, reads_mask=False, refuses=None):
    return _mask.supports_masking(remask_kernel, rule, reads_mask, refuses)


def _strides(a):
    return a["strides"] or (1,) * len(a.get("filter_shape", a.get("window_shape")))


def _conv_rule(a):
    return _mask.conv_rule(tuple(a["filter_shape"]), tuple(_strides(a)), a["padding"].upper())


def _pool_rule(a):
    return _mask.pool_rule(tuple(a["window_shape"]), tuple(_strides(a)), a["padding"].upper())


def _image_resize_rule(a):
    import jax
    import jax.numpy as jnp

    def rule(mask, shape):
        out = tuple(d if s == -1 else s for s, d in zip(a["shape"], shape))
        out = out[:-1] + (mask.shape[-1],)
        m = jnp.broadcast_to(mask, tuple(shape[:-1]) + (mask.shape[-1],))
        kept = jax.image.resize((~m).astype(jnp.float32), out, a["method"],
                                antialias=a["antialias"])
        return ~(kept != 0)
    return rule


def _dot_general_rule(a):
    return _mask.apply_rule(_lin.DotGeneral(**a)[1])


def _index_rule(a):
    import jax.numpy as jnp

    def rule(mask, shape):
        return jnp.broadcast_to(mask, tuple(shape))[_lay._canonical_index(a["idx"], len(shape),
                                                                          "Index")]
    return rule


# every layer passes masks on (neural-tangents' rules; see ntk.stax.masking)
Dense = _masking(True, lambda a: _mask.channel_all)(_lay.Dense)
Conv = _masking(True, _conv_rule)(_lay.Conv)
ConvLocal = _masking(True, _conv_rule)(_lin.ConvLocal)
ConvTranspose = _masking(True, lambda a: _mask.conv_transpose_rule(
    tuple(a["filter_shape"]), tuple(_strides(a)), a["padding"].upper()))(_lay.ConvTranspose)
AvgPool = _masking(True, _pool_rule)(_lay.AvgPool)
SumPool = _masking(True, _pool_rule)(_lay.SumPool)
GlobalAvgPool = _masking(False, lambda a: _mask.global_pool_rule, reads_mask=True)(
    _lay.GlobalAvgPool)
GlobalSumPool = _masking(False, lambda a: _mask.global_pool_rule)(_lay.GlobalSumPool)
Flatten = _masking(False, lambda a: _mask.flatten_rule)(_lay.Flatten)
LayerNorm = _masking(False, reads_mask=True)(_lay.LayerNorm)
Identity = _masking(False)(_lay.Identity)
Scale = _masking(False)(_lay.Scale)
Dropout = _masking(False)(_lay.Dropout)
Index = _masking(False, _index_rule)(_lay.Index)
Slice = _lay.Slice
DotGeneral = _masking(False, _dot_general_rule)(_lin.DotGeneral)
ImageResize = _masking(True, _image_resize_rule)(_lin.ImageResize)
Aggregate = _masking(True)(_Aggregate)
GlobalSelfAttention = _masking(True, lambda a: _mask.channel_all, reads_mask=True)(
    _GlobalSelfAttention)
FanInSum = _masking(False, lambda a: _mask.sum_rule)(_comb.FanInSum)
FanInProd = _masking(False, lambda a: _mask.sum_rule)(_comb.FanInProd)
FanInConcat = _masking(False, lambda a: _mask.concat_rule(a["axis"]))(_comb.FanInConcat)

_REMASKING = ("Erf", "Sigmoid_like", "Sin", "Cos", "Rbf", "Exp", "Gaussian", "ExpNormalized",
              "Hermite", "Elementwise", "ElementwiseNumerical", "Tanh")
_KEEPING = ("ABRelu", "Relu", "LeakyRelu", "Abs", "Gabor", "Gelu", "Sign", "Monomial",
            "RectifiedMonomial", "Polynomial")
for _name in _REMASKING + _KEEPING:
    globals()[_name] = _masking(_name in _REMASKING)(getattr(_act, _name))
del _name

__all__ = [
    "Kernel", "KernelFn", "GET_NAMES", "MaskedArray", "unmask_fn", "layer",
    "serial", "repeat", "parallel", "FanOut", "FanInSum", "FanInProd", "FanInConcat",
    "Identity", "Scale", "Dense", "Conv", "AvgPool", "SumPool", "GlobalAvgPool",
    "GlobalSumPool", "Flatten", "LayerNorm", "Index", "Slice", "Dropout", "GlobalSelfAttention",
    "DotGeneral", "ImageResize", "ConvLocal", "ConvTranspose", "Aggregate",
    "Relu", "LeakyRelu", "ABRelu", "Abs", "Erf", "Sigmoid_like", "Gelu", "Sin", "Cos",
    "Monomial", "RectifiedMonomial", "Sign", "Exp", "Gaussian", "Rbf", "Tanh",
    "ElementwiseNumerical", "Elementwise", "Polynomial", "Hermite", "Gabor", "ExpNormalized",
]
