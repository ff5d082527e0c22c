"""Residual convolutional networks for 32x32 images: CIFAR ResNet-18 and WideResNets.

Both take NHWC images and return logits ``(N, num_classes)``; BatchNorm (momentum 0.9,
epsilon 1e-5) uses batch statistics when called with ``train=True`` and running averages
otherwise. Convolutions have no bias (BatchNorm follows or precedes each one) and He-normal
initialisation ``W ~ N(0, 2 / fan_in)``.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Optional, Sequence

import jax.numpy as jnp
import flax.linen as nn

from architectures._checks import images, positive_int

__all__ = ["ResNet", "WideResNet", "resnet18", "wide_resnet"]

_he_normal = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def _conv_and_norm(block, train: bool):
    """The blocks' bias-free He-initialised convolution and BatchNorm (running averages in
    inference mode, batch statistics in training mode), in the block's dtypes."""
    conv = partial(nn.Conv, use_bias=False, kernel_init=_he_normal, dtype=block.dtype,
                   param_dtype=block.param_dtype)
    norm = partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5,
                   dtype=block.dtype, param_dtype=block.param_dtype)
    return conv, norm


class BasicBlock(nn.Module):
    """Post-activation basic block (He et al. 2016):
    ``relu(BN(conv3x3(relu(BN(conv3x3_s(x))))) + shortcut(x))`` with shortcut
    ``BN(conv1x1_s(x))`` when stride or width changes, else ``x``."""
    features: int
    strides: int = 1
    dtype: Optional[Any] = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        conv, norm = _conv_and_norm(self, train)
        s = (self.strides, self.strides)
        y = conv(self.features, (3, 3), s, padding=((1, 1), (1, 1)))(x)
        y = nn.relu(norm()(y))
        y = conv(self.features, (3, 3), padding=((1, 1), (1, 1)))(y)
        y = norm()(y)
        if self.strides != 1 or x.shape[-1] != self.features:
            x = norm()(conv(self.features, (1, 1), s, padding="VALID")(x))
        return nn.relu(y + x)


class ResNet(nn.Module):
    """CIFAR-style ResNet: 3x3 stride-1 stem conv + BN + ReLU (no max-pool), stages of
    :class:`BasicBlock` with widths ``width * 2**i`` (the first block of stage ``i > 0`` has
    stride 2), global average pool, Dense head."""
    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    width: int = 64
    num_classes: int = 10
    dtype: Optional[Any] = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = images(type(self).__name__, x)
        x = nn.Conv(self.width, (3, 3), padding=((1, 1), (1, 1)), use_bias=False,
                    kernel_init=_he_normal, dtype=self.dtype, param_dtype=self.param_dtype)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                         dtype=self.dtype, param_dtype=self.param_dtype)(x)
        x = nn.relu(x)
        for i, n_blocks in enumerate(self.stage_sizes):
            for j in range(n_blocks):
                x = BasicBlock(self.width * 2**i, 2 if (i > 0 and j == 0) else 1,
                               dtype=self.dtype, param_dtype=self.param_dtype)(x, train)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype)(x)


def resnet18(num_classes: int = 10, width: int = 64) -> ResNet:
    """CIFAR ResNet-18 (He, Zhang, Ren & Sun 2016, with the 3x3 stride-1 stem and no max-pool
    used for 32x32 images).

    ``stem conv3x3(w) -> BN -> ReLU -> 4 stages x 2 BasicBlocks (widths w, 2w, 4w, 8w;
    strides 1, 2, 2, 2; 1x1 conv + BN shortcut where the shape changes) -> global average pool
    -> Dense(num_classes)``. Inputs ``(N, H, W, C)``, outputs ``(N, num_classes)``.
    At ``width=64``, 10 classes: 11,173,962 trainable parameters.

    References:
      He, Zhang, Ren & Sun 2016, "Deep Residual Learning for Image Recognition",
      arXiv:1512.03385.
    """
    return ResNet((2, 2, 2, 2), positive_int("width", width),
                  positive_int("num_classes", num_classes))


class WideBlock(nn.Module):
    """Pre-activation wide block (Zagoruyko & Komodakis 2016):
    ``conv3x3(relu(BN(conv3x3_s(a)))) + shortcut`` with ``a = relu(BN(x))`` and shortcut
    ``conv1x1_s(a)`` when the width changes, else ``x``."""
    features: int
    strides: int = 1
    dtype: Optional[Any] = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        conv, norm = _conv_and_norm(self, train)
        s = (self.strides, self.strides)
        a = nn.relu(norm()(x))
        y = conv(self.features, (3, 3), s, padding=((1, 1), (1, 1)))(a)
        y = nn.relu(norm()(y))
        y = conv(self.features, (3, 3), padding=((1, 1), (1, 1)))(y)
        if self.strides != 1 or x.shape[-1] != self.features:
            x = conv(self.features, (1, 1), s, padding="VALID")(a)
        return x + y


class WideResNet(nn.Module):
    """WRN-depth-k: conv3x3(16) stem, three stages of ``(depth - 4) / 6`` :class:`WideBlock`
    with widths ``16k, 32k, 64k`` and strides 1, 2, 2, then BN -> ReLU -> global average pool
    -> Dense head."""
    depth: int = 16
    widen_factor: int = 4
    num_classes: int = 10
    dtype: Optional[Any] = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = images(type(self).__name__, x)
        n = (self.depth - 4) // 6
        x = nn.Conv(16, (3, 3), padding=((1, 1), (1, 1)), use_bias=False,
                    kernel_init=_he_normal, dtype=self.dtype, param_dtype=self.param_dtype)(x)
        for i, width in enumerate((16, 32, 64)):
            for j in range(n):
                x = WideBlock(width * self.widen_factor, 2 if (i > 0 and j == 0) else 1,
                              dtype=self.dtype, param_dtype=self.param_dtype)(x, train)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                         dtype=self.dtype, param_dtype=self.param_dtype)(x)
        x = jnp.mean(nn.relu(x), axis=(1, 2))
        return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype)(x)


def wide_resnet(depth: int = 16, widen_factor: int = 4, num_classes: int = 10) -> WideResNet:
    """WRN-depth-k, the pre-activation wide residual network (no dropout).

    ``stem conv3x3(16) -> 3 stages of n = (depth - 4) / 6 blocks BN-ReLU-conv3x3-BN-ReLU-
    conv3x3 (widths 16k, 32k, 64k; strides 1, 2, 2; 1x1 conv shortcut on the pre-activated
    input where the width changes) -> BN -> ReLU -> global average pool -> Dense``.
    Trainable parameters (C = num_classes, widths ``c_0 = 16, c_i = 16 k 2^(i-1)``)::

        27 * 16 + sum_i [ 2 c_{i-1} + 9 c_{i-1} c_i + 2 c_i + 9 c_i^2
                          + 1[c_{i-1} != c_i] c_{i-1} c_i + (n - 1) (4 c_i + 18 c_i^2) ]
                + 2 c_3 + (c_3 + 1) C

    e.g. WRN-16-4: 2,748,890; WRN-28-10: 36,479,194.

    References:
      Zagoruyko & Komodakis 2016, "Wide Residual Networks", arXiv:1605.07146.
    """
    positive_int("depth", depth)
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(f"depth must be 6 n + 4 with n >= 1 (10, 16, 22, 28, ...), got {depth}")
    return WideResNet(depth, positive_int("widen_factor", widen_factor),
                      positive_int("num_classes", num_classes))
