"""Memory planning for kernel computations.

Kernels are planned, not discovered: before a Jacobian or kernel block is materialized
its bytes are estimated, the work is cut into blocks that fit a budget, and a request that
cannot fit at all is refused with an error that names the cheaper options.
"""
from __future__ import annotations

import dataclasses
import math
import os

import jax

GiB = 1024**3

CHEAPER_OPTIONS = (
    "cheaper options: trace_axes=(-1,) (mean over outputs; O^2 fewer entries), "
    "ntk.approx.pntk (sum-of-logits pNTK, N x N), ntk.approx.trace_ntk, "
    "ntk.approx projected kernels (k-dimensional sketches of the gradients), "
    "implementation='ntvp' (never forms Jacobians), or a smaller block_size / a larger "
    "memory_budget"
)


class MemoryBudgetError(ValueError):
    """A kernel request that cannot be computed within its memory budget."""


def format_bytes(n: float) -> str:
    for unit, size in (("GiB", GiB), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def default_memory_budget(device: jax.Device | None = None) -> int:
    """Bytes a kernel computation may use by default.

    Half of an accelerator's memory limit where the device reports one; otherwise a quarter
    of the host's physical memory, capped at 8 GiB.
    """
    device = device or jax.devices()[0]
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - CPU backends may not implement it
        stats = None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"] * 0.5)
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        physical = 16 * GiB
    return int(min(physical / 4, 8 * GiB))


@dataclasses.dataclass(frozen=True)
class BlockPlan:
    """How an (N1, N2) kernel is cut into blocks of rows and columns."""

    block1: int
    block2: int
    bytes_per_block: int
    output_bytes: int


def plan_blocks(n1: int, n2: int, block_bytes, output_bytes: int, budget: int,
                block_size: int | tuple[int, int] | None = None,
                what: str = "kernel", cheaper: str = CHEAPER_OPTIONS) -> BlockPlan:
    """Choose the largest blocks ``(b1, b2)`` whose working memory fits ``budget``.

    ``block_bytes(b1, b2)`` estimates the working bytes of one block (Jacobians, features,
    activations and the block's output). The full output must fit too. Blocks shrink by
    halving the larger side. A user ``block_size`` is honoured as given (an int for both
    sides or a pair).

    Raises:
      MemoryBudgetError: when the output alone, or the smallest block, exceeds ``budget``;
        its message ends with ``cheaper`` (the options that need less memory).
    """
    if output_bytes > budget:
        raise MemoryBudgetError(
            f"the {what} output alone needs {format_bytes(output_bytes)} "
            f"(N1={n1}, N2={n2}) but memory_budget={format_bytes(budget)}; " + cheaper)
    if block_size is not None:
        if isinstance(block_size, int):
            b1 = b2 = block_size
        else:
            b1, b2 = block_size
        if b1 <= 0 or b2 <= 0:
            raise ValueError(f"block_size must be positive, got {block_size!r}")
        b1, b2 = min(b1, n1), min(b2, n2)
        return BlockPlan(b1, b2, int(block_bytes(b1, b2)), output_bytes)
    b1, b2 = n1, n2
    while True:
        need = block_bytes(b1, b2) + output_bytes
        if need <= budget:
            return BlockPlan(b1, b2, int(need - output_bytes), output_bytes)
        if b1 == 1 and b2 == 1:
            raise MemoryBudgetError(
                f"the {what} needs {format_bytes(need)} even for one pair of inputs "
                f"(output {format_bytes(output_bytes)}) but memory_budget="
                f"{format_bytes(budget)}; " + cheaper)
        if b1 >= b2:
            b1 = max(1, math.ceil(b1 / 2))
        else:
            b2 = max(1, math.ceil(b2 / 2))
