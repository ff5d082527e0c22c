"""The Myrtle CNNs of Shankar et al. 2020, as a Flax module and as an ``ntk.stax`` network.

Layout (depth ``D`` counts the conv layers plus the Dense head; ``(a, b, c)`` convs per
stage are ``(2, 1, 1)`` for D = 5, ``(2, 2, 2)`` for D = 7 and ``(3, 3, 3)`` for D = 10)::

    [conv3x3 SAME (width) -> ReLU] x a -> AvgPool 2x2 stride 2
    [conv3x3 SAME (width) -> ReLU] x b -> AvgPool 2x2 stride 2
    [conv3x3 SAME (width) -> ReLU] x c -> average pool to 1x1
    -> Dense(num_classes)

On 32x32 images the last pooling is the three 2x2 stride-2 average pools (8 -> 4 -> 2 -> 1)
of the neural-tangents Myrtle kernels (Lee et al. 2020); on any ``H x W`` image (sides
multiples of 4) it is the mean over the remaining ``H/4 x W/4`` map, which equals them.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Optional

import jax.numpy as jnp
import flax.linen as nn

from architectures._checks import images, positive_int

__all__ = ["Myrtle", "myrtle", "myrtle_stax", "MYRTLE_STAGES"]

MYRTLE_STAGES = {5: (2, 1, 1), 7: (2, 2, 2), 10: (3, 3, 3)}


def _stages(depth) -> tuple:
    if isinstance(depth, bool) or depth not in MYRTLE_STAGES:
        raise ValueError(f"depth must be one of {sorted(MYRTLE_STAGES)}, got {depth!r}")
    return MYRTLE_STAGES[depth]


class Myrtle(nn.Module):
    """Myrtle CNN (see the module docstring). Convolutions and head are initialised with
    ``W ~ N(0, 2 / fan_in)`` and zero biases, the standard-parameterization counterpart of
    ``myrtle_stax`` with ``W_std = sqrt(2)``, ``b_std = 0``."""
    depth: int = 5
    width: int = 128
    num_classes: int = 10
    dtype: Optional[Any] = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = images("Myrtle", x, min_side=4, multiple=4)
        init = nn.initializers.variance_scaling(2.0, "fan_in", "normal")
        conv = partial(nn.Conv, self.width, (3, 3), padding="SAME", kernel_init=init,
                       dtype=self.dtype, param_dtype=self.param_dtype)
        for i, n_convs in enumerate(_stages(self.depth)):
            for _ in range(n_convs):
                x = nn.relu(conv()(x))
            if i < 2:
                x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, kernel_init=init, dtype=self.dtype,
                        param_dtype=self.param_dtype)(x)


def myrtle(depth: int = 5, width: int = 128, num_classes: int = 10) -> Myrtle:
    """Myrtle-``depth`` CNN (depth 5, 7 or 10) as a Flax module.

    ``[conv3x3-ReLU] x a -> avgpool2 -> [conv3x3-ReLU] x b -> avgpool2 -> [conv3x3-ReLU] x c
    -> average pool to 1x1 -> Dense``, ``(a, b, c) = (2,1,1), (2,2,2), (3,3,3)`` for depth
    5, 7, 10; all convs ``width`` channels, SAME padding, with bias. Inputs ``(N, H, W, C)``
    with ``H, W`` multiples of 4; outputs ``(N, num_classes)``.

    References:
      Shankar, Fang, Guo, Fridovich-Keil, Schmidt, Ragan-Kelley & Recht 2020, "Neural Kernels
      Without Tangents", arXiv:2003.02237; Lee, Schoenholz, Pennington, Adlam, Xiao, Novak &
      Sohl-Dickstein 2020, "Finite Versus Infinite Neural Networks: an Empirical Study",
      arXiv:2007.15801.
    """
    _stages(depth)
    return Myrtle(depth, positive_int("width", width), positive_int("num_classes", num_classes))


def myrtle_stax(depth: int = 5, W_std: float = 2**0.5, b_std: float = 0.0,
                num_classes: int = 10, width: int = 128):
    """Myrtle-``depth`` as an ``ntk.stax`` triple ``(init_fn, apply_fn, kernel_fn)``.

    The layout of :func:`myrtle` with ``ntk.stax.Conv(width, (3, 3), padding='SAME', W_std,
    b_std)`` (NTK parameterization), ``stax.Relu``, ``stax.AvgPool((2, 2), (2, 2))``,
    ``stax.GlobalAvgPool`` and ``stax.Dense(num_classes, W_std, b_std)``. ``kernel_fn`` gives
    the infinite-width NNGP / NTK (independent of ``width``); ``init_fn``/``apply_fn`` the
    finite network of that width on NHWC inputs (sides multiples of 4).

    References:
      Shankar et al. 2020, "Neural Kernels Without Tangents", arXiv:2003.02237.
    """
    from ntk import stax

    stages = _stages(depth)
    positive_int("width", width)
    positive_int("num_classes", num_classes)
    conv = partial(stax.Conv, width, (3, 3), padding="SAME", W_std=W_std, b_std=b_std)
    layers = []
    for i, n_convs in enumerate(stages):
        layers += [conv(), stax.Relu()] * n_convs
        if i < 2:
            layers.append(stax.AvgPool((2, 2), strides=(2, 2)))
    layers += [stax.GlobalAvgPool(), stax.Dense(num_classes, W_std=W_std, b_std=b_std)]
    return stax.serial(*layers)
