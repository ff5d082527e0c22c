"""Argument and input checks shared by the reference architectures."""
from __future__ import annotations

import jax.numpy as jnp


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def images(name: str, x, min_side: int = 1, multiple: int = 1):
    """Check an NHWC image batch; returns it as an array."""
    x = jnp.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{name}: inputs must be NHWC images (N, H, W, C), got shape {x.shape}")
    h, w = x.shape[1:3]
    if h < min_side or w < min_side or h % multiple or w % multiple:
        raise ValueError(f"{name}: image sides must be multiples of {multiple} and at least "
                         f"{min_side}, got shape {x.shape}")
    return x
