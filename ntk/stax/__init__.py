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
from ntk.stax.activations import (ABRelu, Abs, Cos, Elementwise, ElementwiseNumerical, Erf, Exp,
                                  ExpNormalized, Gabor, Gaussian, Gelu, Hermite, LeakyRelu,
                                  Monomial, Polynomial, Rbf, RectifiedMonomial, Relu,
                                  Sigmoid_like, Sign, Sin, Tanh)
from ntk.stax.aggregate import Aggregate
from ntk.stax.attention import GlobalSelfAttention
from ntk.stax.combinators import FanInConcat, FanInProd, FanInSum, FanOut, parallel, repeat, serial
from ntk.stax.core import GET_NAMES, KernelFn
from ntk.stax.kernel import Kernel
from ntk.stax.linear_maps import ConvLocal, DotGeneral, ImageResize
from ntk.stax.layers import (AvgPool, Conv, ConvTranspose, Dense, Dropout, Flatten, GlobalAvgPool,
                             GlobalSumPool, Identity, Index, LayerNorm, Scale, Slice, SumPool)

__all__ = [
    "Kernel", "KernelFn", "GET_NAMES",
    "serial", "repeat", "parallel", "FanOut", "FanInSum", "FanInProd", "FanInConcat",
    "Identity", "Scale", "Dense", "Conv", "AvgPool", "SumPool", "GlobalAvgPool",
    "GlobalSumPool", "Flatten", "LayerNorm", "Index", "Slice", "Dropout", "GlobalSelfAttention",
    "DotGeneral", "ImageResize", "ConvLocal", "ConvTranspose", "Aggregate",
    "Relu", "LeakyRelu", "ABRelu", "Abs", "Erf", "Sigmoid_like", "Gelu", "Sin", "Cos",
    "Monomial", "RectifiedMonomial", "Sign", "Exp", "Gaussian", "Rbf", "Tanh",
    "ElementwiseNumerical", "Elementwise", "Polynomial", "Hermite", "Gabor", "ExpNormalized",
]
