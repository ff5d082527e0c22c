"""Kernel blocks sharded over devices with ``jax.sharding``.

Rows of a kernel block (inputs ``x1``) are split over a one-dimensional device mesh; each
device computes ``K(x1_rows, x2)`` for its rows with ``x2`` and the parameters replicated.
The result equals the single-device one (tests check it on 4 forced host devices).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec


def resolve_devices(devices) -> list:
    """``None`` -> no sharding; ``'all'`` -> ``jax.devices()``; or an explicit list."""
    if devices is None:
        return []
    if isinstance(devices, str):
        if devices != "all":
            raise ValueError(f"devices must be None, 'all' or a list of devices, got {devices!r}")
        return list(jax.devices())
    devices = list(devices)
    if not devices or not all(isinstance(d, jax.Device) for d in devices):
        raise TypeError(f"devices must be a non-empty list of jax.Device, got {devices!r}")
    return devices


def row_sharded(block: Callable, devices, in_axis: int = 0) -> Callable:
    """Jit ``block(leaves, x1, x2) -> kernel`` (kernel rows follow x1's batch axis, which
    must be the result's leading axis when sharded) and, with several devices, shard x1's
    rows over them. x1 is padded to a multiple of the device count and the padding cut off.

    The sharded function is built and jitted once here, so repeated calls with the same
    shapes reuse its compilation.
    """
    devs = resolve_devices(devices)
    jitted = jax.jit(block)
    if len(devs) <= 1:
        return jitted
    mesh = Mesh(np.array(devs), ("rows",))
    n_dev = len(devs)
    compiled = {}

    def sharded_fn(ndim: int):
        if ndim not in compiled:
            spec_x1 = [None] * ndim
            spec_x1[in_axis] = "rows"
            # check_vma=False: derivatives with respect to the replicated parameters taken
            # inside the body are per-device quantities; vma tracking would psum them.
            compiled[ndim] = jax.jit(jax.shard_map(
                block, mesh=mesh,
                in_specs=(PartitionSpec(), PartitionSpec(*spec_x1), PartitionSpec()),
                out_specs=PartitionSpec("rows"), check_vma=False))
        return compiled[ndim]

    def run(leaves, x1, x2):
        n = x1.shape[in_axis]
        pad = (-n) % n_dev
        if pad:
            widths = [(0, 0)] * x1.ndim
            widths[in_axis] = (0, pad)
            x1p = jnp.pad(x1, widths, mode="edge")
        else:
            x1p = x1
        # each device's rows against every column: x2 = x1 (whole) when x2 is None
        out = sharded_fn(x1.ndim)(leaves, x1p, x1 if x2 is None else x2)
        return out[:n]

    return run
