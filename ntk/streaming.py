"""Streamed Jacobian contraction: the exact eNTK with bounded memory and no wasted work.

The kernel is a sum over parameter leaves and, for traced output axes, over outputs:

    Theta(x1, x2) = sum_l s_l sum_c J_{l,c}(x1) J_{l,c}(x2)^T,

where ``J_{l,c}`` is the Jacobian of a chunk ``c`` of one traced or diagonal output axis
with respect to leaf ``l``. Each term needs only its own chunk of Jacobian rows, so a plan
is a choice of

- ``row_block`` / ``col_block``: inputs (examples, or output rows of a coupled batch) whose
  Jacobians are held at once. A row block's derivatives are computed once and kept while
  the column blocks stream past; for ``x2 = None`` only blocks on or above the diagonal
  are computed, the rest are their transposes;
- ``chunk``: entries of the streamed output axis per pass (trace and diagonal kernels never
  need cross terms between outputs, so a chunk's Jacobian is dropped once contracted);
- ``groups``: parameter leaves differentiated together (a pass per group when even one
  example's Jacobian does not fit).

The plan that fits the memory budget with the lowest cost is chosen: its FLOPs, counting
what each choice recomputes (a forward pass per chunk, a backward pass per output entry and
leaf group, the column blocks' derivatives once per row block), plus the Jacobian bytes it
writes and reads weighted by :data:`MACHINE_BALANCE` (small blocks make the contraction
memory-bound).

In *vmap mode* (independent examples) a row of the Jacobian needs only its example. In
*batch mode* (examples coupled, e.g. BatchNorm on batch statistics) every Jacobian row is
a derivative of the whole batch's output, so blocks are blocks of output rows, each pass
runs the whole batch forward and every backward pass costs ``N`` examples.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class StreamPlan:
    """A streamed Jacobian contraction (see the module docstring)."""

    row_block: int
    col_block: int
    chunk_axis: int | None  # axis of the full output that is streamed (None: no streaming)
    chunk: int  # entries of that axis per pass
    groups: tuple  # tuples of leaf indices differentiated together
    flops: float
    bytes_per_block: int
    n_chunks: int  # passes over the streamed axis (1 without streaming)
    feature_bytes: int = 0  # of bytes_per_block: the Jacobian blocks held at once
    tile_bytes: int = 0  # of bytes_per_block: one contracted tile
    traffic_bytes: float = 0.0  # Jacobian bytes written and read by the whole kernel


# FLOPs per byte of memory traffic at which the contraction turns from memory-bound to
# compute-bound (a machine's balance: ~100 GFLOP/s against ~10 GB/s on a CPU, more on a
# GPU). A plan costs ``flops + MACHINE_BALANCE * traffic_bytes``: small blocks contract thin
# matrices (intensity ``b1 b2 / (b1 + b2)`` FLOPs per Jacobian entry read), so below the
# balance the time goes to reading Jacobians, not to arithmetic.
MACHINE_BALANCE = 8.0


def divisors(n: int) -> list:
    """Divisors of ``n`` in decreasing order."""
    small = [d for d in range(1, int(math.isqrt(n)) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]), reverse=True)


def leaf_groups(sizes: Sequence[int], active: Sequence[int], n_groups: int) -> tuple:
    """Split the active leaves, in order, into at most ``n_groups`` groups of similar size."""
    if n_groups <= 1:
        return (tuple(active),)
    total = sum(sizes[i] for i in active)
    target = total / n_groups
    groups, current, acc = [], [], 0
    for i in active:
        if current and acc + sizes[i] > target * 1.0001 and len(groups) < n_groups - 1:
            groups.append(tuple(current))
            current, acc = [], 0
        current.append(i)
        acc += sizes[i]
    if current:
        groups.append(tuple(current))
    return tuple(groups)


def _halvings(n: int) -> list:
    out, b = [], n
    while True:
        out.append(b)
        if b == 1:
            return out
        b = max(1, math.ceil(b / 2))


def plan(*, n1: int, n2: int, symmetric: bool, batch_paired: bool, vmap: bool, n_batch: int,
         per_row_out: int, streamable: dict, sizes: Sequence[int], active: Sequence[int],
         flops_forward: float, activation_size: int, max_activation: int, pairs: int,
         output_bytes: int, itemsize: int, budget: int, block_size=None,
         max_groups: int = 64, backward_factor: float = 1.0, row_batch_penalty: float = 1.0,
         out_pairs: int | None = None, traced: Sequence[int] = (),
         contract_copies: bool = False, max_patch: int = 0):
    """Choose the cheapest :class:`StreamPlan` that fits ``budget`` bytes.

    Args:
      n1, n2: rows on each side: inputs (vmap mode) or output rows (batch mode).
      symmetric: ``x2 is None`` (only blocks on or above the diagonal are computed).
      batch_paired: the row axis is traced or diagonal (only diagonal blocks).
      vmap: rows are independent examples; otherwise every pass runs the whole batch of
        ``n_batch`` examples.
      per_row_out: output entries per row, excluding the row axis.
      streamable: ``{full output axis: size}`` of traced or diagonal non-row axes.
      sizes, active: leaf sizes and the leaves with non-zero scale.
      flops_forward, activation_size, max_activation: one example's forward FLOPs, its
        intermediate entries and its largest intermediate.
      pairs: output-entry pairs per pair of rows (the layout's; the contraction's FLOPs).
      out_pairs: entries of the result per pair of rows (``pairs`` less the traced axes,
        which are summed away; default ``pairs``): a tile's size.
      traced: the ``streamable`` axes that are traced (a chunk's tile is summed into the
        tile, not placed beside it).
      contract_copies: the contraction transposes the Jacobian blocks (a diagonal axis
        moved in front), so it holds a copy of them (of both operands, also when x1's
        block is contracted with itself).
      max_patch: one example's largest convolution patch matrix (positions x window x
        input channels); in vmap mode every Jacobian row's weight gradient forms one.

    Bytes of one block (``bytes_per_block``), in the order the block runs:

        held + max(jacobian(b) + acts(b), copies + leaves * tile) + tile

    ``held`` are the Jacobian blocks of both sides (``feature_bytes``); computing the
    larger side's block (``b`` rows) needs, besides its output, up to one more copy of it
    (XLA assembles per-example parameter gradients in another layout) and the forward and
    backward activations ``acts(b)``; the contraction needs a copy of the blocks where it
    transposes them and one tile per leaf of the group (each leaf's product is formed before
    the sum). ``tile`` is the block's result (``tile_bytes``). Measured against
    ``compiled.memory_analysis()`` in ``tests/ntk/test_planner_memory.py``.
      output_bytes: bytes of the whole result.
      block_size: a user's forced ``(row_block, col_block)``.
      backward_factor: how much slower than its FLOPs say a per-example backward pass
        with per-example parameter gradients runs (1 for dense networks; convolutions on
        CPU run per-example weight gradients as grouped convolutions, several times slower
        than the batched ones that structured derivatives use: ResNet-18's trace eNTK took
        about 50 s this way at N = 32 against 8 s by structured derivatives, for equal
        FLOP counts).
      row_batch_penalty: how much slower a backward pass runs per Jacobian row when
        several rows of one example are vectorised together (vmap over cotangents inside
        the vmap over examples). 1 for dense networks; convolutions on CPU run their
        per-example weight gradients about 3x slower per row that way (ResNet-18:
        3.0 s for one logit of 16 examples, 9.9 s for two, 26.7 s for five), so a plan
        streams one output at a time there and pays the extra forward passes instead.

    Returns ``None`` when nothing fits.
    """
    fp = max(float(flops_forward), 1.0)
    examples = 1 if vmap else n_batch  # examples one pass's forward / backward runs over
    axis, axis_size = None, 1
    if streamable:
        axis = max(streamable, key=lambda a: (streamable[a], -a))
        axis_size = streamable[axis]
    chunks = divisors(axis_size)
    out_pairs = pairs if out_pairs is None else out_pairs
    if block_size is None:
        rows, cols_all = _halvings(n1), _halvings(n2)
    else:
        rows, cols_all = [min(block_size[0], n1)], [min(block_size[1], n2)]
    p_total = sum(sizes[i] for i in active)
    best, best_cost = None, math.inf
    group_counts = [g for g in (1, 2, 4, 8, 16, 32, 64)
                    if g <= max(1, min(max_groups, len(active)))]
    for n_groups in group_counts:
        groups = leaf_groups(sizes, active, n_groups)
        p_group = max(sum(sizes[i] for i in g) for g in groups)
        group_leaves = max(len(g) for g in groups)
        for chunk in chunks:
            row_out = per_row_out // axis_size * chunk  # Jacobian rows per row and pass
            # a traced chunk sums into a whole tile; a diagonal chunk fills its part of one
            tile_pairs = out_pairs if axis in traced else out_pairs // axis_size * chunk
            for b1 in rows:
                cols = [b1] if (batch_paired or (symmetric and block_size is None)) \
                    else cols_all
                for b2 in cols:
                    # x2 = None: one block of rows is its own column block (every block
                    # when the row axis is diagonal)
                    one_side = symmetric and (batch_paired or (b1 >= n1 and b2 >= n2))
                    held_rows = b1 if one_side else b1 + b2
                    held = held_rows * row_out * p_group
                    b = b1 if one_side else max(b1, b2)  # rows of the larger derivative pass
                    if vmap:
                        acts = b * (activation_size
                                    + row_out * (4 * max_activation + max_patch))
                    else:
                        acts = examples * (activation_size
                                           + 4 * b * row_out * max_activation)
                    tile = (b1 if batch_paired else b1 * b2) * tile_pairs
                    derive = b * row_out * p_group + acts
                    copies = (2 * held if one_side else held) if contract_copies else 0
                    contract = copies + group_leaves * tile
                    need = (held + max(derive, contract) + tile) * itemsize
                    if need + output_bytes > budget:
                        continue
                    flops = _cost(n1, n2, b1, b2, symmetric, batch_paired, vmap, examples, fp,
                                  row_out, axis_size // chunk, len(groups), p_total, pairs,
                                  backward_factor * (row_batch_penalty
                                                     if vmap and row_out > 1 else 1.0))
                    traffic = _traffic(n1, n2, b1, b2, symmetric, batch_paired,
                                       row_out * (axis_size // chunk) * p_total * itemsize)
                    cost = flops + MACHINE_BALANCE * traffic
                    if best is None or cost < best_cost:
                        best, best_cost = StreamPlan(
                            b1, b2, axis, chunk, groups, flops, int(need), axis_size // chunk,
                            held * itemsize, tile * itemsize, traffic), cost
    # more leaf groups recompute more forward and backward passes, but can allow blocks
    # large enough that the contraction is no longer bound by reading the Jacobians
    return best


def _traffic(n1, n2, b1, b2, symmetric, batch_paired, row_bytes):
    """Bytes of Jacobian the whole kernel writes (each derived block once) and reads (both
    operands of every tile's contraction); ``row_bytes``: one row's Jacobian over all
    chunks and leaves."""
    r = math.ceil(n1 / b1)
    if batch_paired:
        written = n1 * (1 if symmetric else 2)
        read = written
    elif symmetric and b1 >= n1:
        written = read = n1
    elif symmetric and b1 == b2:
        written = n1 + sum(max(n1 - (i + 1) * b1, 0) for i in range(r))
        read = r * b1 + (r * (r - 1) // 2) * 2 * b1  # diagonal tiles read one block
    else:
        c = math.ceil(n2 / b2)
        written = n1 + r * n2
        read = r * c * (b1 + b2)
    return float((written + read) * row_bytes)


def _cost(n1, n2, b1, b2, symmetric, batch_paired, vmap, examples, fp, row_out, n_chunks,
          n_groups, p_total, pairs, penalty=1.0):
    """FLOPs of the whole kernel under a plan: derivative passes plus contraction."""
    def passes(k, block):
        # k rows in passes of ``block`` rows: a forward per pass (k examples in vmap mode,
        # the whole batch per pass otherwise) and a backward per Jacobian row
        if k <= 0:
            return 0.0
        forward = k * fp if vmap else math.ceil(k / block) * examples * fp
        backward = k * row_out * 2 * examples * fp * penalty
        return (forward + backward) * n_chunks * n_groups

    r = math.ceil(n1 / b1)
    if batch_paired:
        derivative = passes(n1, b1) * (1 if symmetric else 2)
        contraction = n1 * pairs * p_total
    elif symmetric and b1 == b2:
        derivative = passes(n1, b1) + sum(passes(n1 - (i + 1) * b1, b2) for i in range(r))
        contraction = (n1 * n1 + n1 * b1) / 2 * pairs * p_total
    else:
        derivative = passes(n1, b1) + r * passes(n2, b2)
        contraction = n1 * n2 * pairs * p_total
    return float(derivative + 2 * contraction)


# ---------------------------------------------------------------------------- execution

def _place(n: int, block: int):
    """Blocks ``(start, skip)`` of ``block`` rows covering ``range(n)``; the last one is
    shifted back to end at ``n`` (every block has one shape: one compiled function) and its
    first ``skip`` rows were already covered by the block before."""
    out = []
    for s in range(0, n, block):
        start = min(s, max(n - block, 0))
        out.append((start, s - start))
    return out


def run(plan: StreamPlan, *, features: Callable, gram: Callable, leaves, x1, x2, n1: int,
        n2: int, symmetric: bool, batch_paired: bool, concat1: int, concat2: int,
        chunk_result_axis: int | None, swap: Callable, drop: Callable):
    """Assemble the kernel under ``plan``.

    ``features(leaves, x, start, size, group, chunk_start)`` gives the Jacobian features
    of rows ``[start, start + size)`` of ``x``; ``gram(group, fa, fb)`` contracts two of
    them into a kernel tile; ``swap(tile)`` exchanges the x1 and x2 sides of a tile;
    ``drop(tile, axis, skip)`` removes the first ``skip`` entries of a result axis.
    ``chunk_result_axis`` is where a diagonal streamed axis sits in the result (``None``
    when the streamed axis is traced: chunks are summed).
    """
    b1, b2 = plan.row_block, plan.col_block
    rows = _place(n1, b1)
    cols = rows if batch_paired else _place(n2, b2)
    skip_lower = symmetric and not batch_paired and b1 == b2
    xb_src = x1 if x2 is None else x2
    tiles = {}
    for g in range(len(plan.groups)):
        for c in range(plan.n_chunks):
            c0 = c * plan.chunk
            for i, (s1, _) in enumerate(rows):
                fa = features(leaves, x1, s1, b1, g, c0)
                for j, (s2, _) in enumerate(cols):
                    if batch_paired and j != i:
                        continue
                    if skip_lower and j < i:
                        continue
                    if x2 is None and s1 == s2 and b1 == b2:
                        fb = fa
                    else:
                        fb = features(leaves, xb_src, s2, b1 if batch_paired else b2, g, c0)
                    part = gram(g, fa, fb)
                    if chunk_result_axis is None:
                        tiles[i, j] = part if (i, j) not in tiles else tiles[i, j] + part
                    else:  # diagonal streamed axis: chunks side by side, groups summed
                        chunks = tiles.setdefault((i, j), [0.0] * plan.n_chunks)
                        chunks[c] = chunks[c] + part

    def tile(i, j):
        own = (i, j) in tiles
        t = tiles[i, j] if own else tiles[j, i]
        if chunk_result_axis is not None:
            t = jnp.concatenate(t, axis=chunk_result_axis) if len(t) > 1 else t[0]
        if not own:
            t = swap(t)
        t = drop(t, concat1, rows[i][1])
        if not batch_paired:
            t = drop(t, concat2, cols[j][1])
        return t

    out_rows = []
    for i in range(len(rows)):
        if batch_paired:
            out_rows.append(tile(i, i))
            continue
        parts = [tile(i, j) for j in range(len(cols))]
        out_rows.append(jnp.concatenate(parts, axis=concat2) if len(parts) > 1 else parts[0])
    return jnp.concatenate(out_rows, axis=concat1) if len(out_rows) > 1 else out_rows[0]
