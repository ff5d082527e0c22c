"""Structured derivatives: NTK contributions from the structure of each primitive.

Novak, Sohl-Dickstein & Schoenholz (2022), "Fast Finite Width Neural Tangent Kernel".
For a parameter ``W`` that enters the network through one dense layer ``y = h W`` the
Jacobian row of an output ``f_a`` is ``dF_a/dW = h^T g_a`` with ``g_a = d f_a / d y``, so

    <dF_a/dW (x1), dF_b/dW (x2)> = sum_{p,q} (h1_p . h2_q) (g1_{a,p} . g2_{b,q})

over the positions ``p, q`` (batch, pixels, tokens) at which ``W`` is applied: the
``P``-long rows are never formed. A convolution is the same once its input is cut into
patches. A parameter that enters additively (a bias) or multiplicatively (a scale) has a
Jacobian that is ``g`` (or ``h * g``) pulled back through broadcasting: cheap, leaf-sized.

This module is the only place that reads jaxprs (``jax.make_jaxpr`` + ``jax.extend``). It
finds, for every parameter leaf, its single use; leaves with several uses, or uses inside
control flow / custom derivatives, fall back to plain Jacobian contraction, so any model
gets the exact kernel.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
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

    kind: 'dot' | 'conv' (W enters a dense / convolution), 'add' (enters additively with
    ``sign``) or 'mul' (multiplies another operand elementwise).
    path: indices of the equation through nested jit calls.
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


@dataclasses.dataclass
class Analysis:
    taps: list
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
        tap = _structured_use(leaf, uses[leaf])
        if tap is None:
            fallback.append(leaf)
        else:
            taps.append(tap)
    flops, acts = _cost(jaxpr)
    return Analysis(taps=taps, fallback=fallback, flops_forward=flops, activation_size=acts)


def _structured_use(leaf, leaf_uses) -> Tap | None:
    if len(leaf_uses) != 1:
        return None
    eqn, path, k, chain, ortho, derived = leaf_uses[0]
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
        if eqn.params["feature_group_count"] == 1 and eqn.params["batch_group_count"] == 1:
            return Tap(kind="conv", **common)
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
                    if taps[t].kind in ("dot", "conv", "mul"):
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
                   meta_fields=["kind", "leaf"])
@dataclasses.dataclass
class TapFeatures:
    """Per-call features of one tap.

    For 'dot'/'conv': ``h`` of shape ``(Ph, C)`` and ``g`` of shape ``(*out, Ph, F)``.
    For 'add'/'mul': ``jac`` of shape ``(*out, *leaf_shape)`` (the leaf's Jacobian).
    """

    kind: str
    leaf: int
    h: Any = None
    g: Any = None
    jac: Any = None


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
        return TapFeatures("dot", tap.leaf, h=h, g=g)
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
        return TapFeatures("conv", tap.leaf, h=h, g=g)
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
                    active: Sequence[int] | None = None) -> tuple[Callable, Analysis]:
    """Trace ``apply_flat(leaves, x)`` once and return ``features(leaves, x)``.

    ``features`` returns ``(out, tap_features, fallback_jacobians)``:
      out: the call's output, shape ``(*out)``;
      tap_features: list of :class:`TapFeatures`;
      fallback_jacobians: dict leaf index -> Jacobian ``(*out, *leaf_shape)``.
    Only leaves in ``active`` (default: all) get taps or Jacobians.
    """
    closed = jax.make_jaxpr(apply_flat)(leaves_avals, x_avals)
    n_leaves = len(leaves_avals)
    if len(closed.jaxpr.outvars) != 1:
        raise TypeError("structured derivatives need apply_fn to return a single array, got "
                        f"{len(closed.jaxpr.outvars)} outputs")
    analysis = analyze(closed, n_leaves)
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
