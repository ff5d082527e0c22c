"""Graph aggregation (``Aggregate``) and its kernel, with neural-tangents 0.6.5's arguments and
semantics: the layer of graph neural networks that replaces every vertex by the (weighted) sum
of its predecessors (Du et al. 2019, the Graph Neural Tangent Kernel).

Each input ``x_n`` comes with its own graph over the positions of the aggregated axes, an
adjacency ``P_n (V, V)`` (``V`` the number of those positions) with ``P_n[i, j]`` the weight of
the arc from tail ``i`` to head ``j``. The layer is linear in ``x`` and has no parameters:

    y_n(j) = sum_i P_n[i, j] x_n(i)          (every channel and every other axis alike)

so the channels of ``y`` are those of ``x`` mixed by a fixed matrix per input, and

    K'(x1_n, j; x2_m, j') = sum_{i, i'} P1_n[i, j] K(x1_n, i; x2_m, i') P2_m[i', j'],

i.e. ``K'_nm = P1_n^T K_nm P2_m`` over the aggregated position axes, for ``nngp``, ``ntk``,
``cov1`` (``P1`` on both sides) and ``cov2`` (``P2``).
"""
from __future__ import annotations

import string
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ntk.stax.core import (KernelFn, check_apply_kwargs, check_layout, diagonalize,
                           require_single)

__all__ = ["Aggregate"]

_IMPLEMENTATIONS = ("DENSE", "SPARSE")


def _check_axis(name: str, arg: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: {arg} must be an int, got {type(value).__name__} {value!r}")
    return int(value)


def _edges_to_dense(pattern, n_batch: int, agg_shape: tuple, dtype, name: str, arg: str):
    """Adjacency ``(N, *agg, *agg)`` of an edge list ``(N, E, K, 2)`` (or ``(N, E, 2)`` when
    ``K = 1``): ``[..., 0]`` tails, ``[..., 1]`` heads, repeated edges add up.

    As neural-tangents' segment-sum implementation reads them: coordinates wrap around the
    axis lengths; an edge whose head has a negative coordinate is dropped (padding); a
    negative coordinate in the tail makes it the last vertex.
    """
    pattern = jnp.asarray(pattern)
    if not jnp.issubdtype(pattern.dtype, jnp.integer):
        raise TypeError(f"{name}: with implementation='SPARSE', {arg} must be an integer edge "
                        f"list of shape (N, n_edges, K, 2), got dtype {pattern.dtype}")
    k = len(agg_shape)
    if pattern.ndim == 0 or pattern.shape[-1] != 2:
        raise ValueError(f"{name}: with implementation='SPARSE', {arg} must have a trailing axis "
                         f"of size 2 (tail, head), got shape {tuple(pattern.shape)}")
    tails, heads = pattern[..., 0], pattern[..., 1]
    if k == 1 and tails.ndim == 2:
        tails, heads = tails[..., None], heads[..., None]
    if tails.ndim != 3 or tails.shape[2] != k or tails.shape[0] != n_batch:
        raise ValueError(f"{name}: with implementation='SPARSE', {arg} must have shape "
                         f"(N, n_edges, K, 2) = ({n_batch}, n_edges, {k}, 2) for {k} "
                         f"aggregated axes, got shape {tuple(pattern.shape)}")
    n_vertices = int(np.prod(agg_shape))

    def flat(index):
        coords = tuple(jnp.moveaxis(index, -1, 0))
        return (jnp.ravel_multi_index(coords, agg_shape, mode="wrap"),
                jnp.all(index >= 0, axis=-1))

    t, t_ok = flat(tails)
    h, h_ok = flat(heads)
    t = jnp.where(t_ok, t, n_vertices - 1)
    rows = jnp.broadcast_to(jnp.arange(n_batch)[:, None], t.shape)
    dense = jnp.zeros((n_batch, n_vertices, n_vertices), dtype)
    dense = dense.at[rows, t, h].add(h_ok.astype(dtype))
    return dense.reshape((n_batch,) + agg_shape * 2)


def Aggregate(aggregate_axis=None, batch_axis: int = 0, channel_axis: int = -1,
              to_dense: Optional[Callable] = lambda p: p, implementation: str = "DENSE"):
    """Graph aggregation: every vertex becomes the weighted sum of its direct predecessors,
    ``apply_fn(params, x, pattern=P)`` (neural-tangents' ``stax.Aggregate``).

    Args:
      aggregate_axis: the axes of ``x`` whose positions are the vertices (an int or a
        sequence; ``None``: every axis but ``batch_axis`` and ``channel_axis``). Other axes are
        processed independently.
      batch_axis, channel_axis: of the inputs (the output keeps them); ``kernel_fn`` checks
        that the layers before it laid the activations out so.
      to_dense: ``implementation='DENSE'`` only: turns the pattern given to ``apply_fn`` /
        ``kernel_fn`` into the dense adjacency (default: the identity).
      implementation: ``'DENSE'``: ``pattern`` (after ``to_dense``) is the adjacency of shape
        ``(N, X_1, .., X_K, X_1, .., X_K)`` (batch, tails, heads; ``K`` aggregated axes,
        sorted), ``pattern[n, i, j] = w`` an arc from ``i`` to ``j`` of weight ``w``.
        ``'SPARSE'``: ``pattern`` is an integer edge list ``(N, n_edges, K, 2)`` (or
        ``(N, n_edges, 2)`` when ``K = 1``) of unit-weight arcs ``[..., 0] -> [..., 1]``,
        repeated arcs adding up, an arc whose head has a negative coordinate ignored (padding
        to a common ``n_edges``), coordinates wrapping around like neural-tangents'
        ``segment_sum`` (a negative tail coordinate reads the last vertex). Here it is turned
        into the dense adjacency first: same results, ``O(V^2)`` memory per input rather than
        neural-tangents' ``O(V + E)`` in ``apply_fn``.

    Finite layer (no parameters): ``y_n(.., j, ..) = sum_i P_n[i, j] x_n(.., i, ..)``;
    ``pattern=None`` is the identity.

    Kernel, with ``kernel_fn(x1, x2, pattern=(P1, P2))`` (``(P1, P1)`` or ``(P1, None)`` when
    ``x2`` is ``None``; ``pattern=None``: the identity): over the aggregated position axes,

        nngp'_nm = P1_n^T nngp_nm P2_m,   ntk' likewise,   cov1'_n = P1_n^T cov1_n P1_n

    (full spatial layout: aggregation mixes positions). Shapes: ``x (N, ..)`` -> same shape.

    Du, Hou, Poczos, Salakhutdinov, Wang & Xu (2019), "Graph Neural Tangent Kernel: Fusing
    Graph Neural Networks with Graph Kernels", arXiv:1905.13192.

    Examples:
      >>> init_fn, apply_fn, kernel_fn = Aggregate()
      >>> x = jnp.ones((2, 4, 3))                         # 2 graphs of 4 vertices, 3 channels
      >>> A = jnp.broadcast_to(jnp.eye(4, k=1), (2, 4, 4))  # arcs i -> i + 1
      >>> apply_fn((), x, pattern=A)[:, :, 0]
      Array([[0., 1., 1., 1.],
             [0., 1., 1., 1.]], dtype=float32)
      >>> kernel_fn(x, None, "nngp", pattern=(A, A)).shape
      (2, 2, 4, 4)
    """
    if not isinstance(implementation, str) or implementation.upper() not in _IMPLEMENTATIONS:
        raise ValueError(f"Aggregate: implementation must be 'DENSE' or 'SPARSE', got "
                         f"{implementation!r}")
    implementation = implementation.upper()
    batch_axis = _check_axis("Aggregate", "batch_axis", batch_axis)
    channel_axis = _check_axis("Aggregate", "channel_axis", channel_axis)
    if aggregate_axis is not None:
        try:
            axes_given = tuple(aggregate_axis)
        except TypeError:
            axes_given = (aggregate_axis,)
        axes_given = tuple(_check_axis("Aggregate", "aggregate_axis", a) for a in axes_given)
    if to_dense is None:
        to_dense = lambda p: p  # noqa: E731
    if not callable(to_dense):
        raise TypeError(f"Aggregate: to_dense must be callable, got {to_dense!r}")
    name = (f"Aggregate(aggregate_axis={aggregate_axis}, batch_axis={batch_axis}, "
            f"channel_axis={channel_axis}, {implementation})")

    def layout(ndim: int):
        """``(aggregated axes sorted, batch axis, channel axis)`` for inputs of rank ``ndim``."""
        for arg, a in (("batch_axis", batch_axis), ("channel_axis", channel_axis)):
            if not -ndim <= a < ndim:
                raise ValueError(f"{name}: {arg}={a} is out of range for inputs of rank {ndim}")
        b, c = batch_axis % ndim, channel_axis % ndim
        if b == c:
            raise ValueError(f"{name}: batch_axis and channel_axis are the same axis {b}")
        if aggregate_axis is None:
            return tuple(a for a in range(ndim) if a not in (b, c)), b, c
        for a in axes_given:
            if not -ndim <= a < ndim:
                raise ValueError(f"{name}: aggregate_axis {a} is out of range for inputs of "
                                 f"rank {ndim}")
        agg = tuple(sorted({a % ndim for a in axes_given}))
        if b in agg or c in agg:
            raise ValueError(f"{name}: aggregate_axis={aggregate_axis} includes the "
                             f"{'batch' if b in agg else 'channel'} axis; aggregate over the "
                             f"other (vertex) axes")
        return agg, b, c

    def dense_pattern(pattern, n_batch: int, agg_shape: tuple, dtype, arg: str):
        """The adjacency ``(N, *agg, *agg)`` in ``dtype``, its shape checked."""
        if implementation == "SPARSE":
            return _edges_to_dense(pattern, n_batch, agg_shape, dtype, name, arg)
        dense = jnp.asarray(to_dense(pattern))
        want = (n_batch,) + agg_shape * 2
        if tuple(dense.shape) != want:
            raise ValueError(f"{name}: {arg} (after to_dense) must have shape (N, *aggregated "
                             f"axes, *aggregated axes) = {want}, got {tuple(dense.shape)}")
        return dense.astype(dtype)

    def init_fn(key, input_shape):
        layout(len(input_shape))
        return tuple(input_shape), ()

    def apply_fn(params, x, *, pattern=None, **kwargs):
        check_apply_kwargs(name, kwargs)
        if pattern is None:
            return x
        agg, b, _ = layout(x.ndim)
        k = len(agg)
        moved = jnp.moveaxis(x, (b,) + agg, tuple(range(k + 1)))
        agg_shape = moved.shape[1:k + 1]
        adjacency = dense_pattern(pattern, moved.shape[0], agg_shape, x.dtype, "pattern")
        n_vertices = int(np.prod(agg_shape))
        flat = moved.reshape((moved.shape[0], n_vertices, -1))
        out = jnp.einsum("nir,nij->njr", flat,
                         adjacency.reshape((moved.shape[0], n_vertices, n_vertices)))
        return jnp.moveaxis(out.reshape(moved.shape), tuple(range(k + 1)), (b,) + agg)

    def transform(k, out_full: bool):
        k = require_single(k, name)
        check_layout(k, name, batch_axis, channel_axis)
        p1 = k.pattern1
        p2 = p1 if k.x1_is_x2 else k.pattern2
        if p1 is None and p2 is None:
            return k if out_full else diagonalize(k)
        if p1 is None or p2 is None:
            raise ValueError(f"{name}: needs the patterns of both x1 and x2, got "
                             f"pattern[{0 if p1 is None else 1}]=None")
        ndim = len(k.shape1)
        agg, b, c = layout(ndim)
        # position axes of the kernel: the inputs' axes other than batch and channel, in order
        spatial = tuple(a - (b < a) - (c < a) for a in agg)
        s = k.n_spatial
        if s and not k.full_spatial:
            raise ValueError(f"{name}: needs the full-spatial kernel layout (internal error: "
                             f"the layout planner gave a diagonal one)")
        agg_shape = tuple(k.shape1[1 + i] for i in spatial)
        dtype = k.nngp.dtype
        a1 = dense_pattern(p1, k.shape1[0], agg_shape, dtype, "pattern[0]")
        a2 = a1 if k.x1_is_x2 else dense_pattern(p2, k.shape2[0], agg_shape, dtype,
                                                 "pattern[1]")

        letters = iter(c for c in string.ascii_letters if c not in "nm")
        left = [next(letters) for _ in range(s)]
        right = [next(letters) for _ in range(s)]
        heads_left = {i: next(letters) for i in spatial}
        heads_right = {i: next(letters) for i in spatial}
        kernel_in = "".join(l + r for l, r in zip(left, right))
        kernel_out = "".join(heads_left.get(i, left[i]) + heads_right.get(i, right[i])
                             for i in range(s))

        def graph(batch, tails, heads):
            return batch + "".join(tails[i] for i in spatial) + "".join(heads[i]
                                                                        for i in spatial)

        def both_sides(mat, batch_left, batch_right, adj_left, adj_right):
            if mat is None:
                return None
            batch = batch_left + ("" if batch_left == batch_right else batch_right)
            spec = (f"{batch}{kernel_in},{graph(batch_left, left, heads_left)},"
                    f"{graph(batch_right, right, heads_right)}->{batch}{kernel_out}")
            return jnp.einsum(spec, mat, adj_left, adj_right,
                              precision=jax.lax.Precision.HIGHEST)

        out = k.replace(nngp=both_sides(k.nngp, "n", "m", a1, a2),
                        ntk=both_sides(k.ntk, "n", "m", a1, a2),
                        cov1=both_sides(k.cov1, "n", "n", a1, a1),
                        cov2=None if k.cov2 is None else both_sides(k.cov2, "n", "n", a2, a2))
        return out if out_full else diagonalize(out)

    init_fn.__name__ = apply_fn.__name__ = name
    return init_fn, apply_fn, KernelFn(name, transform, lambda out_full: True,
                                       uses_pattern=True,
                                       input_axes=(batch_axis, channel_axis))
