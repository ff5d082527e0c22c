"""``ntk.batch``: any kernel function computed in blocks of rows and columns.

neural-tangents' ``nt.batch(kernel_fn, batch_size, device_count, store_on_device)``: the
returned function takes the same arguments as ``kernel_fn`` and computes
``K(x1, x2) = [K(x1[i:i+b], x2[j:j+b])]_{ij}`` block by block, so only one ``b x b`` block of
intermediate work is alive at a time. Blocks run one after another on the default device
(``device_count`` other than ``-1``, ``0`` or ``1`` raises; ``ntk.empirical_ntk_fn(devices=...)``
shards empirical kernels over devices); ``store_on_device=False`` moves each finished block to
host memory.

The kernel function must return ``(N1, N2, ...)`` arrays, or a tuple / namedtuple of them
(``ntk.stax`` with ``get`` a name or a tuple; fields ``cov1`` ``(N1, ...)`` and ``cov2``
``(N2, ...)`` are assembled along their one batch axis). ``ntk.stax`` kernel functions also
take ``batch_size=`` directly, which plans blocks from a memory budget.

Novak, Xiao, Hron, Lee, Alemi, Sohl-Dickstein & Schoenholz (2020), "Neural Tangents: Fast and
Easy Infinite Neural Networks in Python", ICLR 2020, arXiv:1912.02803.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["batch"]


def _check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 0:
        raise ValueError(f"batch_size: expected an integer >= 0 (0: no batching), got "
                         f"{batch_size!r}")
    return int(batch_size)


def _n(x, name: str) -> int:
    leaves = jax.tree.leaves(x)
    if not leaves or getattr(leaves[0], "ndim", 0) < 1:
        raise ValueError(f"{name}: expected an array (or pytree of arrays) with a leading "
                         "batch axis")
    return int(leaves[0].shape[0])


def _rows(x, start: int, stop: int):
    return jax.tree.map(lambda a: a[start:stop], x)


def _assemble(blocks: list[list], name: str):
    """Join a grid of block results: arrays on axes 0 and 1, ``cov1`` / ``cov2`` fields on
    their batch axis; lists, tuples, namedtuples and dicts of these (a ``parallel`` network's
    kernels, one per branch) part by part."""
    first = blocks[0][0]
    if first is None:
        return None
    fields = getattr(first, "_fields", None)
    if isinstance(first, (tuple, list)):
        parts = []
        for f in range(len(first)):
            label = fields[f] if fields else None
            grid = [[b[f] for b in row] for row in blocks]
            if grid[0][0] is None:
                parts.append(None)
            elif label == "cov1":
                parts.append(jnp.concatenate([row[0] for row in grid], axis=0))
            elif label == "cov2":
                parts.append(jnp.concatenate(grid[0], axis=0))
            else:
                parts.append(_assemble(grid, name))
        return type(first)(*parts) if fields else type(first)(parts)
    if isinstance(first, dict):
        return type(first)((key, _assemble([[b[key] for b in row] for row in blocks], name))
                           for key in first)
    if hasattr(first, "shape"):
        return _join(blocks, name)
    raise TypeError(f"{name}: ntk.batch assembles arrays and lists, tuples and dicts of "
                    f"arrays; the kernel function returned {type(first).__name__} (for ntk.stax "
                    "pass get=..., or call kernel_fn(..., batch_size=b))")


def _join(grid: list[list], name: str):
    if any(getattr(b, "ndim", 0) < 2 for row in grid for b in row):
        raise ValueError(f"{name}: ntk.batch needs (N1, N2, ...) kernels; got a block of shape "
                         f"{tuple(grid[0][0].shape)} (a batch-diagonal kernel cannot be "
                         "assembled from off-diagonal blocks)")
    return jnp.concatenate([jnp.concatenate(row, axis=1) for row in grid], axis=0)


def batch(kernel_fn: Callable, batch_size: int = 0, device_count: int = -1,
          store_on_device: bool = True) -> Callable:
    """``kernel_fn`` computed in ``batch_size x batch_size`` blocks (0: all at once).

    Args:
      kernel_fn: ``kernel_fn(x1, x2=None, *args, **kwargs)`` returning ``(N1, N2, ...)``
        arrays or a tuple / namedtuple of them.
      batch_size: rows / columns per block; must divide ``N1`` and ``N2`` (as in
        neural-tangents).
      device_count: ``-1``, ``0`` or ``1`` (blocks run on the default device); others raise.
      store_on_device: ``False`` moves every finished block to host memory (NumPy).

    Returns:
      ``batched_fn(x1, x2=None, *args, **kwargs)`` equal to ``kernel_fn``'s result.
    """
    if not callable(kernel_fn):
        raise TypeError(f"kernel_fn: expected a callable, got {type(kernel_fn).__name__}")
    batch_size = _check_batch_size(batch_size)
    if device_count not in (-1, 0, 1):
        raise NotImplementedError(
            f"device_count={device_count!r}: ntk.batch runs blocks on one device; use "
            "ntk.empirical_ntk_fn(..., devices=...) to shard empirical kernels")
    name = getattr(kernel_fn, "__name__", type(kernel_fn).__name__)
    from ntk.stax.core import KernelFn
    if isinstance(kernel_fn, KernelFn) and batch_size:
        return _stax_batched(kernel_fn, batch_size, store_on_device)

    @functools.wraps(kernel_fn)
    def batched_fn(x1, x2=None, *args, **kwargs):
        if batch_size == 0:
            return kernel_fn(x1, x2, *args, **kwargs)
        n1, n2 = _block_counts(x1, x2, batch_size)
        other = x1 if x2 is None else x2
        blocks = []
        for i in range(0, n1, batch_size):
            row = []
            for j in range(0, n2, batch_size):
                b1, b2 = _rows(x1, i, i + batch_size), _rows(other, j, j + batch_size)
                # diagonal blocks of x2=None keep the x2=None convention (cov2 = None)
                same = x2 is None and i == j
                out = kernel_fn(b1, None if same else b2, *args, **kwargs)
                if not store_on_device:
                    out = jax.tree.map(np.asarray, out)
                row.append(out)
            blocks.append(row)
        if x2 is None:   # as unbatched: no cov2 when x2 is x1
            blocks = [[_without_cov2(b) for b in row] for row in blocks]
        return _assemble(blocks, name)

    return batched_fn


def _block_counts(x1, x2, batch_size: int) -> tuple:
    """``(N1, N2)``, refused unless ``batch_size`` divides both (neural-tangents' rule)."""
    n1 = _n(x1, "x1")
    n2 = n1 if x2 is None else _n(x2, "x2")
    for label, n in (("N1", n1), ("N2", n2)):
        if n % batch_size:
            raise ValueError(f"batch_size={batch_size} must divide {label} = {n} "
                             f"(x1 {n1} rows, x2 {n2} rows)")
    return n1, n2


def _stax_batched(kernel_fn, batch_size: int, store_on_device: bool):
    """An ``ntk.stax`` kernel function in blocks: its own blocked evaluation
    (``kernel_fn(..., batch_size=)``), which assembles whole :class:`ntk.stax.Kernel` objects
    (``get=None``), slices ``pattern=`` graphs and masks with their inputs and takes lists of
    inputs (a ``parallel`` network) whole. ``batch_size`` must divide the batch sizes, as
    for any other kernel function."""
    @functools.wraps(kernel_fn)
    def batched_fn(x1, x2=None, *args, **kwargs):
        if "batch_size" in kwargs:
            raise TypeError("ntk.batch: batch_size is given to ntk.batch; the batched "
                            "kernel function does not take it again")
        if not isinstance(x1, (list, tuple)):
            _block_counts(x1, x2, batch_size)
        out = kernel_fn(x1, x2, *args, batch_size=batch_size, **kwargs)
        return out if store_on_device else jax.tree.map(np.asarray, out)
    return batched_fn


def _without_cov2(block):
    fields = getattr(block, "_fields", None)
    if fields is None and isinstance(block, (list, tuple)):
        return type(block)(_without_cov2(b) for b in block)
    if isinstance(block, dict):
        return type(block)((key, _without_cov2(b)) for key, b in block.items())
    if not fields or "cov2" not in fields:
        return block
    return block._replace(cov2=None)
