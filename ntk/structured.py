"""Structured derivatives: NTK contributions from the structure of each primitive.

Novak, Sohl-Dickstein & Schoenholz (2022), "Fast Finite Width Neural Tangent Kernel".
For a parameter ``W`` that enters the network through one dense layer ``y = h W`` the
Jacobian row of an output ``f_a`` is ``dF_a/dW = h^T g_a`` with ``g_a = d f_a / d y``, so

    <dF_a/dW (x1), dF_b/dW (x2)> = sum_{p,q} (h1_p . h2_q) (g1_{a,p} . g2_{b,q})

over the positions ``p, q`` (batch, pixels, tokens) at which ``W`` is applied: the
``P``-long rows are never formed. A convolution is the same once its input is cut into
patches; a grouped (or depthwise) convolution is one such convolution per group, so its
features carry a group axis and pairs of positions meet only within a group. An embedding
lookup ``y_p = E[i_p]`` is a dense layer on one-hot rows, ``h_p = onehot(i_p)``. A parameter
that enters additively (a bias) or multiplicatively (a scale) has a Jacobian that is ``g``
(or ``h * g``) pulled back through broadcasting: cheap, leaf-sized.

A leaf used several times (a tied embedding: lookup and output head) has the sum of its
uses' Jacobians, so its kernel is the sum over ordered pairs of uses ``(u, v)`` of
``<dF/dW|_u (x1), dF/dW|_v (x2)>``. When every use is a dense layer or a lookup, each
``dF/dW|_u = sum_p h_p g_p^T`` is a sum of outer products over the same split of ``W``'s
axes into two groups (possibly swapped: the lookup ``E[i]`` and the head ``h E^T`` contract
opposite axes of ``E``), and each cross term is a pairwise contraction like the one above.

This module is the only place that reads jaxprs (``jax.make_jaxpr`` + ``jax.extend``). It
finds, for every parameter leaf, its uses; leaves with a use no rule covers (or several
uses not all dense / lookups over one split of the leaf's axes), or uses inside control flow
/ custom derivatives, fall back to plain Jacobian contraction, so any model gets the exact
kernel.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jex
from jax.extend.core import primitives as prims

_JIT_PRIMITIVES = tuple(p for p in (getattr(prims, "jit_p", None), getattr(prims, "pjit_p", None),
                                    getattr(prims, "closed_call_p", None)) if p is not None)
# Views: linear maps that only move, retype or duplicate entries.
_VIEW_PRIMITIVES = tuple(getattr(prims, name) for name in (
    "reshape_p", "transpose_p", "convert_element_type_p", "squeeze_p", "broadcast_in_dim_p",
    "copy_p") if hasattr(prims, name))


@dataclasses.dataclass
class Tap:
    """One structured use of a parameter leaf.

    kind: 'dot' | 'conv' (W enters a dense / convolution, grouped or not), 'gather' (rows
    of W looked up by integer ids), 'add' (enters additively with ``sign``) or 'mul'
    (multiplies another operand elementwise).
    path: indices of the equation through nested jit calls.
    For a leaf with several uses (dot / gather taps only): ``perm_h`` / ``perm_g`` reorder
    the features' last axes so that every use flattens the leaf's two axis groups the same
    way, and ``swap`` says this use's (h, g) groups are the first use's (g, h) ones.
    """

    kind: str
    leaf: int
    path: tuple
    operand: int
    out_shape: tuple
    out_dtype: Any
    operand_shape: tuple
    params: dict
    chain: list  # view equations from the leaf to the operand (add/mul)
    sign: float = 1.0
    perm_h: Any = None
    perm_g: Any = None
    swap: bool = False


@dataclasses.dataclass
class Analysis:
    taps: list  # several per leaf where a leaf has several uses
    fallback: list  # leaf indices handled by Jacobian contraction
    flops_forward: float  # flops of one forward pass of the traced call
    activation_size: int  # total size of intermediate values (entries)
    n_examples: int = 1  # examples in the traced call
    max_activation: int = 1  # entries of the largest intermediate value
    has_conv: bool = False  # the traced call convolves


def _size(shape) -> int:
    return int(math.prod(shape))


def _eqn_flops(eqn) -> float:
    prim = eqn.primitive
    out = eqn.outvars[0].aval if eqn.outvars else None
    if prim is prims.dot_general_p:
        (lc, _), _ = eqn.params["dimension_numbers"]
        lhs = eqn.invars[0].aval
        return 2.0 * _size(out.shape) * _size([lhs.shape[d] for d in lc])
    if prim is prims.conv_general_dilated_p:
        rhs = eqn.invars[1].aval
        spec = eqn.params["dimension_numbers"].rhs_spec
        return 2.0 * _size(out.shape) * _size(rhs.shape) / rhs.shape[spec[0]]
    if out is not None and hasattr(out, "shape"):
        return float(_size(out.shape))
    return 0.0


def sub_jaxprs(eqn):
    for value in eqn.params.values():
        items = value if isinstance(value, (tuple, list)) else (value,)
        for item in items:
            if isinstance(item, jex.ClosedJaxpr):
                yield item.jaxpr
            elif isinstance(item, jex.Jaxpr):
                yield item


def _cost(jaxpr) -> tuple[float, int]:
    flops, acts = 0.0, 0
    for eqn in jaxpr.eqns:
        subs = list(sub_jaxprs(eqn))
        if subs:
            for sub in subs:
                f, a = _cost(sub)
                flops, acts = flops + f, acts + a
        else:
            flops += _eqn_flops(eqn)
            acts += sum(_size(v.aval.shape) for v in eqn.outvars if hasattr(v.aval, "shape"))
    return flops, acts


def analyze(closed_jaxpr, n_leaves: int) -> Analysis:
    """Find each leaf's uses in ``closed_jaxpr`` (whose first ``n_leaves`` invars are the
    parameter leaves) and decide which leaves get a structured rule."""
    uses: dict[int, list] = {i: [] for i in range(n_leaves)}

    def walk(jaxpr, origin, path):
        # origin: var -> (leaf, chain of view eqns, orthogonal?)
        for i, eqn in enumerate(jaxpr.eqns):
            p = path + (i,)
            derived = [(k, origin[v]) for k, v in enumerate(eqn.invars)
                       if not isinstance(v, jex.Literal) and v in origin]
            if not derived:
                continue
            if eqn.primitive in _JIT_PRIMITIVES and "jaxpr" in eqn.params:
                inner = eqn.params["jaxpr"].jaxpr
                inner_origin = {inner.invars[k]: o for k, o in derived}
                inner_out = walk(inner, inner_origin, p)
                for ov, iv in zip(eqn.outvars, inner.outvars):
                    if not isinstance(iv, jex.Literal) and iv in inner_out:
                        origin[ov] = inner_out[iv]
                continue
            if (eqn.primitive in _VIEW_PRIMITIVES and len(eqn.invars) == 1):
                leaf, chain, ortho = derived[0][1]
                same_size = (_size(eqn.invars[0].aval.shape) == _size(eqn.outvars[0].aval.shape))
                origin[eqn.outvars[0]] = (leaf, chain + [eqn], ortho and same_size)
                continue
            for k, (leaf, chain, ortho) in derived:
                uses[leaf].append((eqn, p, k, chain, ortho, derived))
        outs = {}
        for v in jaxpr.outvars:
            if not isinstance(v, jex.Literal) and v in origin:
                outs[v] = origin[v]
        return outs

    jaxpr = closed_jaxpr.jaxpr
    origin = {jaxpr.invars[i]: (i, [], True) for i in range(n_leaves)}
    top_out = walk(jaxpr, origin, ())
    for v, (leaf, _, _) in top_out.items():
        uses[leaf].append((None, None, None, None, None, None))  # returned directly

    taps, fallback = [], []
    for leaf in range(n_leaves):
        leaf_taps = _structured_use(leaf, uses[leaf], tuple(jaxpr.invars[leaf].aval.shape))
        if leaf_taps is None:
            fallback.append(leaf)
        else:
            taps.extend(leaf_taps)
    flops, acts = _cost(jaxpr)
    return Analysis(taps=taps, fallback=fallback, flops_forward=flops, activation_size=acts)


def _structured_use(leaf, leaf_uses, leaf_shape) -> list | None:
    """The taps of one leaf (one per use), or None where it falls back."""
    if not leaf_uses:
        return None
    taps = [_tap_for_use(leaf, use) for use in leaf_uses]
    if any(t is None for t in taps):
        return None
    if len(taps) == 1:
        return taps
    return _align_uses(taps, leaf_shape)


def _gather_axis(eqn, k) -> int | None:
    """The looked-up axis ``a`` of a 2-D table for ``gather`` rows / columns of the operand
    (``nn.Embed``, ``jnp.take(E, ids, axis=a)``), or None for any other gather."""
    if k != 0:
        return None
    table = eqn.invars[0].aval.shape
    idx = eqn.invars[1].aval.shape
    out = eqn.outvars[0].aval.shape
    dn = eqn.params["dimension_numbers"]
    if len(table) != 2 or not idx or idx[-1] != 1:
        return None
    if tuple(getattr(dn, "operand_batching_dims", ())) or tuple(
            getattr(dn, "start_indices_batching_dims", ())):
        return None
    if tuple(dn.collapsed_slice_dims) != tuple(dn.start_index_map) or len(
            dn.collapsed_slice_dims) != 1:
        return None
    a = dn.collapsed_slice_dims[0]
    if tuple(dn.offset_dims) != (len(out) - 1,):
        return None
    sizes = tuple(eqn.params["slice_sizes"])
    if sizes[a] != 1 or sizes[1 - a] != table[1 - a]:
        return None
    return a


def _tap_for_use(leaf, use) -> Tap | None:
    eqn, path, k, chain, ortho, derived = use
    if eqn is None or len(derived) != 1:
        return None  # returned directly, or both operands come from parameters
    prim = eqn.primitive
    out = eqn.outvars[0].aval
    common = dict(leaf=leaf, path=path, operand=k, out_shape=tuple(out.shape),
                  out_dtype=out.dtype, operand_shape=tuple(eqn.invars[k].aval.shape),
                  params=dict(eqn.params), chain=chain)
    if prim is prims.dot_general_p and ortho:
        (_, _), (lb, rb) = eqn.params["dimension_numbers"]
        if not lb and not rb:
            return Tap(kind="dot", **common)
    if prim is prims.conv_general_dilated_p and ortho and k == 1:
        if eqn.params["batch_group_count"] == 1:
            return Tap(kind="conv", **common)
    if prim is prims.gather_p and ortho and _gather_axis(eqn, k) is not None:
        return Tap(kind="gather", **common)
    # lax binary ops broadcast size-1 dimensions of equal-rank operands
    shapes_equal = all(len(v.aval.shape) == len(out.shape)
                       and all(a in (b, 1) for a, b in zip(v.aval.shape, out.shape))
                       for v in eqn.invars if not isinstance(v, jex.Literal))
    if prim in (prims.add_p, prims.sub_p) and shapes_equal and len(eqn.invars) == 2:
        sign = -1.0 if (prim is prims.sub_p and k == 1) else 1.0
        return Tap(kind="add", sign=sign, **common)
    if prim is prims.mul_p and shapes_equal and len(eqn.invars) == 2:
        return Tap(kind="mul", **common)
    return None


def _view_indices(chain, shape):
    """Apply a chain of same-size view equations to ``arange`` over the leaf: the leaf
    entry at each position of the operand; None for a view not emulated here."""
    a = np.arange(_size(shape)).reshape(shape)
    for eqn in chain:
        name, prm = eqn.primitive.name, eqn.params
        if name in ("convert_element_type", "copy", "copy_p"):
            continue
        if name == "transpose":
            a = np.transpose(a, prm["permutation"])
        elif name == "reshape" and prm.get("dimensions") is None:
            a = a.reshape(prm["new_sizes"])
        elif name == "squeeze":
            a = np.squeeze(a, axis=tuple(prm["dimensions"]))
        elif name == "broadcast_in_dim" and _size(prm["shape"]) == a.size:
            tmp = [1] * len(prm["shape"])
            for i, d in enumerate(prm["broadcast_dimensions"]):
                tmp[d] = a.shape[i]
            a = a.reshape(tmp)
        else:
            return None
        if tuple(a.shape) != tuple(eqn.outvars[0].aval.shape):
            return None
    return a


def _factor_grid(tap: Tap, leaf_shape):
    """``M[c, f]``: the leaf entry that a dot / gather tap's ``h`` column ``c`` and ``g``
    column ``f`` (its two flattened axis groups) address; None where unknown."""
    op = _view_indices(tap.chain, leaf_shape)
    if op is None or tuple(op.shape) != tuple(tap.operand_shape):
        return None
    if tap.kind == "dot":
        (lc, rc), _ = tap.params["dimension_numbers"]
        w_contract = list(rc if tap.operand == 1 else lc)
        w_free = [d for d in range(op.ndim) if d not in w_contract]
        c = _size([op.shape[d] for d in w_contract])
        return np.transpose(op, w_contract + w_free).reshape(c, -1)
    if tap.kind == "gather":
        a = tap.params["dimension_numbers"].collapsed_slice_dims[0]
        return op if a == 0 else op.T
    return None


def _align_uses(taps, leaf_shape) -> list | None:
    """Give the uses of one leaf a common flattening of its two axis groups (the first
    use's), or None when some use splits the leaf's axes differently."""
    grids = [_factor_grid(t, leaf_shape) for t in taps]
    if any(g is None for g in grids):
        return None
    ref = grids[0]
    n = ref.size
    ref_c = np.empty(n, np.int64)
    ref_f = np.empty(n, np.int64)
    ref_c[ref] = np.arange(ref.shape[0])[:, None]
    ref_f[ref] = np.arange(ref.shape[1])[None, :]
    for t, grid in zip(taps[1:], grids[1:]):
        for swap, (rows, cols) in ((False, (ref_c, ref_f)), (True, (ref_f, ref_c))):
            map_c, map_f = rows[grid[:, 0]], cols[grid[0, :]]
            if (grid.shape == (ref.shape[::-1] if swap else ref.shape)
                    and np.array_equal(rows[grid], np.broadcast_to(map_c[:, None], grid.shape))
                    and np.array_equal(cols[grid], np.broadcast_to(map_f[None, :], grid.shape))):
                t.swap = swap
                perm_h, perm_g = np.argsort(map_c), np.argsort(map_f)
                t.perm_h = None if np.array_equal(perm_h, np.arange(perm_h.size)) else perm_h
                t.perm_g = None if np.array_equal(perm_g, np.arange(perm_g.size)) else perm_g
                break
        else:
            return None
    return taps


def bind(eqn, invals) -> list:
    """Apply one jaxpr equation to values (as ``jax.core.eval_jaxpr`` does)."""
    res = eqn.primitive.get_bind_params(eqn.params)
    if isinstance(res, tuple) and len(res) == 2 and isinstance(res[1], dict):
        subfuns, params = res  # JAX < 0.7 returned (subfuns, params)
    else:
        subfuns, params = (), res
    with eqn.ctx.manager:
        out = eqn.primitive.bind(*subfuns, *invals, **params)
    return list(out) if eqn.primitive.multiple_results else [out]


def evaluate(closed_jaxpr, args: Sequence, taps: list, deltas: Sequence):
    """Evaluate the jaxpr, adding ``deltas[i]`` to the output of tap ``i`` and recording
    the other operand of every dense / convolution / multiplicative tap.

    Returns ``(outputs, recorded)`` with ``recorded[i]`` the non-parameter operand of tap i.
    """
    where = {t.path: i for i, t in enumerate(taps)}
    prefixes = {t.path[:j] for t in taps for j in range(1, len(t.path))}
    recorded: list = [None] * len(taps)

    def run(jaxpr, consts, values, path):
        env = {}

        def read(v):
            return v.val if isinstance(v, jex.Literal) else env[v]

        for v, val in zip(jaxpr.constvars, consts):
            env[v] = val
        for v, val in zip(jaxpr.invars, values):
            env[v] = val
        for i, eqn in enumerate(jaxpr.eqns):
            p = path + (i,)
            invals = [read(v) for v in eqn.invars]
            if p in prefixes:
                inner = eqn.params["jaxpr"]
                outvals = run(inner.jaxpr, inner.consts, invals, p)
            else:
                outvals = bind(eqn, invals)
                if p in where:
                    t = where[p]
                    if taps[t].kind in ("dot", "conv", "gather", "mul"):
                        recorded[t] = invals[1 - taps[t].operand]
                    outvals = [outvals[0] + deltas[t]]
            for v, val in zip(eqn.outvars, outvals):
                env[v] = val
        return [read(v) for v in jaxpr.outvars]

    outs = run(closed_jaxpr.jaxpr, closed_jaxpr.consts, list(args), ())
    return outs, recorded


def _pullback_through_views(chain, leaf_value, cotangent):
    """``T^T cotangent`` for the view chain ``T`` from a leaf to its operand."""
    def forward(value):
        for eqn in chain:
            value = bind(eqn, [value])[0]
        return value

    _, vjp = jax.vjp(forward, leaf_value)
    return vjp(cotangent)[0]


@functools.partial(jax.tree_util.register_dataclass, data_fields=["h", "g", "jac"],
                   meta_fields=["kind", "leaf", "grouped", "swap"])
@dataclasses.dataclass
class TapFeatures:
    """Per-call features of one tap.

    For 'dot'/'conv'/'gather': ``h`` of shape ``(Ph, C)`` and ``g`` of shape ``(*out, Ph, F)``
    (``grouped``: ``(G, Ph, C)`` and ``(*out, G, Ph, F)``, one block per convolution group).
    For 'add'/'mul': ``jac`` of shape ``(*out, *leaf_shape)`` (the leaf's Jacobian).
    ``swap``: see :class:`Tap`.
    """

    kind: str
    leaf: int
    h: Any = None
    g: Any = None
    jac: Any = None
    grouped: bool = False
    swap: bool = False


def _factored(tap: Tap, h, g, grouped=False) -> TapFeatures:
    if tap.perm_h is not None:
        h = jnp.take(h, jnp.asarray(tap.perm_h), axis=-1)
    if tap.perm_g is not None:
        g = jnp.take(g, jnp.asarray(tap.perm_g), axis=-1)
    return TapFeatures(tap.kind, tap.leaf, h=h, g=g, grouped=grouped, swap=tap.swap)


def tap_features(tap: Tap, recorded, g, out_ndim: int, leaf_value) -> TapFeatures:
    """Turn the recorded operand and ``g = d out / d y`` (shape ``(*out, *y)``) into
    contraction-ready features for one tap."""
    out_axes = tuple(range(out_ndim))
    if tap.kind == "dot":
        (lc, rc), _ = tap.params["dimension_numbers"]
        h_contract = lc if tap.operand == 1 else rc
        h = recorded
        h_free = [d for d in range(h.ndim) if d not in h_contract]
        n_hfree = len(h_free)
        h = jnp.transpose(h, h_free + list(h_contract))
        h = h.reshape(_size(h.shape[:n_hfree]), -1)
        y_ndim = len(tap.out_shape)
        n_wfree = y_ndim - n_hfree
        if tap.operand == 0:  # y = (W free..., h free...): move h free first
            perm = (list(out_axes) + [out_ndim + n_wfree + j for j in range(n_hfree)]
                    + [out_ndim + j for j in range(n_wfree)])
            g = jnp.transpose(g, perm)
        g = g.reshape(g.shape[:out_ndim] + (h.shape[0], -1))
        return _factored(tap, h, g)
    if tap.kind == "gather":
        # y[..., :] = W[i, :] (or W[:, i]) is a dense layer on one-hot rows of the ids
        a = tap.params["dimension_numbers"].collapsed_slice_dims[0]
        rows = tap.operand_shape[a]
        ids = recorded[..., 0].reshape(-1)
        if str(tap.params.get("mode")).endswith("CLIP") or "PROMISE" in str(
                tap.params.get("mode")):
            ids = jnp.clip(ids, 0, rows - 1)
        h = jax.nn.one_hot(ids, rows, dtype=g.dtype)  # out-of-range ids: a zero row
        g = g.reshape(g.shape[:out_ndim] + (h.shape[0], -1))
        return _factored(tap, h, g)
    if tap.kind == "conv":
        prm = tap.params
        dn = prm["dimension_numbers"]
        lhs = recorded
        rhs_spatial = tuple(tap.operand_shape[d] for d in dn.rhs_spec[2:])
        patches = lax.conv_general_dilated_patches(
            lhs, rhs_spatial, prm["window_strides"], prm["padding"],
            lhs_dilation=prm["lhs_dilation"], rhs_dilation=prm["rhs_dilation"],
            dimension_numbers=dn, precision=prm.get("precision"),
            preferred_element_type=prm.get("preferred_element_type"))
        spec = dn.out_spec
        order = [spec[0]] + list(spec[2:]) + [spec[1]]
        h = jnp.transpose(patches, order)
        h = h.reshape(-1, h.shape[-1])
        g = jnp.transpose(g, list(out_axes) + [out_ndim + d for d in order])
        g = g.reshape(g.shape[:out_ndim] + (h.shape[0], -1))
        groups = prm["feature_group_count"]
        if groups == 1:
            return _factored(tap, h, g)
        # patch features are input-channel major, so group k's are a contiguous block, as
        # are its output features: (P, G C_k) -> (G, P, C_k), (*out, P, G F_k) -> (*out, G, P, F_k)
        h = jnp.moveaxis(h.reshape(h.shape[0], groups, -1), 1, 0)
        g = g.reshape(g.shape[:-1] + (groups, -1))
        g = jnp.moveaxis(g, -2, -3)
        return _factored(tap, h, g, grouped=True)
    if tap.kind == "add":
        cot = tap.sign * g
    else:  # mul
        # recorded has the shape of y; g has out_ndim leading axes more (made explicit)
        cot = g * jnp.reshape(recorded, (1,) * (g.ndim - jnp.ndim(recorded))
                              + jnp.shape(recorded))
    # undo size-1 broadcasting of the parameter's operand
    summed = tuple(out_ndim + d for d, (a, b) in enumerate(zip(tap.operand_shape, tap.out_shape))
                   if a == 1 and b != 1)
    if summed:
        cot = jnp.sum(cot, axis=summed, keepdims=True)
    pull = lambda c: _pullback_through_views(tap.chain, leaf_value, c)  # noqa: E731
    flat = cot.reshape((-1,) + cot.shape[out_ndim:])
    jac = jax.vmap(pull)(flat).reshape(cot.shape[:out_ndim] + leaf_value.shape)
    return TapFeatures(tap.kind, tap.leaf, jac=jac)


def make_feature_fn(apply_flat: Callable, leaves_avals, x_avals,
                    active: Sequence[int] | None = None,
                    fallback: Sequence[int] = ()) -> tuple[Callable, Analysis]:
    """Trace ``apply_flat(leaves, x)`` once and return ``features(leaves, x)``.

    ``features`` returns ``(out, tap_features, fallback_jacobians)``:
      out: the call's output, shape ``(*out)``;
      tap_features: list of :class:`TapFeatures`;
      fallback_jacobians: dict leaf index -> Jacobian ``(*out, *leaf_shape)``.
    Only leaves in ``active`` (default: all) get taps or Jacobians; leaves in ``fallback``
    get Jacobians even where a rule covers them.
    """
    closed = jax.make_jaxpr(apply_flat)(leaves_avals, x_avals)
    n_leaves = len(leaves_avals)
    if len(closed.jaxpr.outvars) != 1:
        raise TypeError("structured derivatives need apply_fn to return a single array, got "
                        f"{len(closed.jaxpr.outvars)} outputs")
    analysis = analyze(closed, n_leaves)
    forced = set(fallback) & {t.leaf for t in analysis.taps}
    if forced:
        analysis.taps = [t for t in analysis.taps if t.leaf not in forced]
        analysis.fallback = sorted(set(analysis.fallback) | forced)
    if active is not None:
        keep = set(active)
        analysis.taps = [t for t in analysis.taps if t.leaf in keep]
        analysis.fallback = [i for i in analysis.fallback if i in keep]
    taps = analysis.taps
    out_ndim = len(closed.jaxpr.outvars[0].aval.shape)

    def features(leaves, x):
        x_flat = jax.tree_util.tree_leaves(x)
        fb = [leaves[i] for i in analysis.fallback]

        def f(deltas, fb_leaves):
            full = list(leaves)
            for i, v in zip(analysis.fallback, fb_leaves):
                full[i] = v
            outs, recorded = evaluate(closed, list(full) + x_flat, taps, deltas)
            return outs[0], (outs[0], recorded)

        zeros = [jnp.zeros(t.out_shape, t.out_dtype) for t in taps]
        (g_taps, jac_fb), (out, recorded) = jax.jacrev(f, argnums=(0, 1), has_aux=True)(
            zeros, fb)
        feats = [tap_features(t, recorded[i], g_taps[i], out_ndim, leaves[t.leaf])
                 for i, t in enumerate(taps)]
        return out, feats, dict(zip(analysis.fallback, jac_fb))

    return features, analysis
