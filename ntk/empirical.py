"""Empirical neural tangent and NNGP kernels of any ``apply_fn(params, x)``.

The empirical NTK of a network ``f(params, x)`` with parameter leaves ``theta_l`` is

    Theta(x1, x2) = sum_l s_l J_l(x1) J_l(x2)^T,      J_l = d f / d theta_l,

with ``s_l = 1`` by default; per-leaf scales ``s_l`` give the kernel of layer-wise learning
rates (muP, SP with per-layer rates) and ``s_l = 0`` drops a leaf (parameter subsets).
The empirical NNGP kernel is the output covariance ``f(x1) f(x2)^T``.

Output axes follow neural-tangents: for outputs of shape ``(N, O)`` the full kernel
(``trace_axes=()``) has shape ``(N1, N2, O, O)``; ``trace_axes=(-1,)`` (the default) returns
the *mean* over the traced axis, ``(N1, N2)``; ``diagonal_axes=(-1,)`` keeps only matching
outputs, ``(N1, N2, O)``. In general every output axis contributes, in order, two axes
(one per input) if it is free, one if it is diagonal and none if it is traced.

Three exact implementations (Novak, Sohl-Dickstein & Schoenholz 2022):

- ``'jacobian'``: Jacobian contraction, ``N O [FP] + N^2 O^2 P``.
- ``'ntvp'``: NTK-vector products, ``Theta e_b = J1 (s * J2^T e_b)`` by one vjp and one
  jvp per column, ``N^2 O [FP]``; never stores a Jacobian.
- ``'structured'``: structured derivatives (:mod:`ntk.structured`): dense, convolution
  (grouped and depthwise included), embedding-lookup, additive and multiplicative
  parameters use their layer's structure, and a leaf used several times as a dense layer or
  lookup (a tied embedding) sums the cross terms of its uses where that costs less than its
  Jacobian; the rest falls back to Jacobian contraction.
- ``'auto'``: the cheapest of the three by a FLOP model of N, O, P and the layer sizes.

Inputs and outputs may be pytrees (neural-tangents' semantics). Input leaves share the batch
size; each example's leaves are packed into one row of an ``(N, D)`` array (exactly: mixed
dtypes travel as bytes) and ``apply_fn`` is wrapped to unpack it, so planning, blocking and
caching are those of array inputs. A pytree-valued ``apply_fn`` has one kernel per output leaf,
returned in the output's structure: ``Theta[leaf] = sum_l s_l J_l^leaf(x1) J_l^leaf(x2)^T``,
with no covariance between different leaves; ``trace_axes`` and ``diagonal_axes`` apply to
each leaf's own axes. ``vmap_axes=(in_axes, out_axes)`` may be pytrees (prefixes of the
inputs' and outputs' structures, as in ``jax.vmap``).

Large kernels are computed in blocks of inputs under a memory budget (:mod:`ntk.budget`);
rows of blocks can be sharded over devices (:mod:`ntk.distributed`).
"""
from __future__ import annotations

import collections
import enum
import functools
import math
import string
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ntk import budget as _budget
from ntk import distributed as _distributed
from ntk import streaming as _streaming
from ntk import structured as _structured
from ntk import validation


class Implementation(str, enum.Enum):
    """Names of the empirical-NTK implementations (strings are accepted too).

    neural-tangents' ``NtkImplementation`` names are aliases of the same members
    (``JACOBIAN_CONTRACTION is JACOBIAN``, ``NTK_VECTOR_PRODUCTS is NTVP``,
    ``STRUCTURED_DERIVATIVES is STRUCTURED``), and its integer codes are accepted wherever an
    implementation is: ``0`` auto, ``1`` Jacobian contraction, ``2`` NTK-vector products,
    ``3`` structured derivatives. Iteration yields the four methods once each.

    Novak et al. (2022), "Fast Finite Width Neural Tangent Kernel", arXiv:2206.08720.
    """

    JACOBIAN = "jacobian"
    NTVP = "ntvp"
    STRUCTURED = "structured"
    AUTO = "auto"
    JACOBIAN_CONTRACTION = "jacobian"
    NTK_VECTOR_PRODUCTS = "ntvp"
    STRUCTURED_DERIVATIVES = "structured"


_IMPLEMENTATIONS = {i.value: i for i in Implementation}
# neural-tangents' integer codes (``NtkImplementation`` is an ``IntEnum``).
_NT_IMPLEMENTATION_CODES = {0: Implementation.AUTO, 1: Implementation.JACOBIAN,
                            2: Implementation.NTVP, 3: Implementation.STRUCTURED}


# --------------------------------------------------------------------------- validation

def _as_axes(axes, name: str) -> tuple:
    if axes is None:
        return ()
    if isinstance(axes, (int, np.integer)):
        return (int(axes),)
    try:
        axes = tuple(axes)
    except TypeError:
        raise TypeError(f"{name} must be an int or a tuple of ints, got {axes!r}") from None
    for a in axes:
        if not isinstance(a, (int, np.integer)) or isinstance(a, bool):
            raise TypeError(f"{name} must contain ints, got {axes!r}")
    return tuple(int(a) for a in axes)


def _canonical_axes(axes: tuple, ndim: int, name: str, out_shape) -> tuple:
    result = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"{name}={axes} has axis {a}, out of range for outputs of shape "
                             f"{tuple(out_shape)} (rank {ndim})")
        a %= ndim
        if a not in result:   # a repeated axis counts once (neural-tangents' reading)
            result.append(a)
    return tuple(sorted(result))


def _parse_implementation(implementation) -> Implementation:
    if isinstance(implementation, Implementation):
        return implementation
    if isinstance(implementation, str) and implementation.lower() in _IMPLEMENTATIONS:
        return _IMPLEMENTATIONS[implementation.lower()]
    if (isinstance(implementation, (int, np.integer)) and not isinstance(implementation, bool)
            and int(implementation) in _NT_IMPLEMENTATION_CODES):
        return _NT_IMPLEMENTATION_CODES[int(implementation)]
    raise ValueError(f"implementation={implementation!r} is not one of "
                     f"{sorted(_IMPLEMENTATIONS)} or neural-tangents' codes 0-3")


def _parse_vmap_axes(vmap_axes):
    """``None`` (no batch independence assumed), ``'auto'``, an int (same axis for inputs and
    outputs) or ``(in_axes, out_axes)`` / ``(in_axes, out_axes, kwargs_axes)``, where
    ``in_axes`` and ``out_axes`` are ints or pytrees of ints (prefixes of the inputs' and the
    outputs' structures, as in ``jax.vmap``). Returns ``None``, ``'auto'``, ``(in, out)`` with
    each an int or an :class:`_AxesTree`, or an :class:`_AmbiguousAxes` for a pair that
    neural-tangents would read as ``in_axes = out_axes = vmap_axes``."""
    if vmap_axes is None:
        return None
    if isinstance(vmap_axes, str):
        if vmap_axes != "auto":
            raise ValueError(f"vmap_axes={vmap_axes!r}: the only string accepted is 'auto'")
        return "auto"
    if isinstance(vmap_axes, (int, np.integer)) and not isinstance(vmap_axes, bool):
        return int(vmap_axes), int(vmap_axes)
    if isinstance(vmap_axes, (tuple, list)) and len(vmap_axes) in (2, 3):
        in_axes, out_axes = vmap_axes[0], vmap_axes[1]
        parsed = (_axes_spec(in_axes, "in_axes", vmap_axes),
                  _axes_spec(out_axes, "out_axes", vmap_axes))
        if len(vmap_axes) == 2 and not all(isinstance(a, int) for a in parsed):
            # neural-tangents reads a pair as in_axes = out_axes = the pair; which reading
            # fits is known once the inputs' structure is
            return _AmbiguousAxes(parsed, _axes_spec(tuple(vmap_axes), "vmap_axes",
                                                     vmap_axes))
        return parsed
    if isinstance(vmap_axes, (tuple, list, dict)):
        raise TypeError(f"vmap_axes must be None, 'auto', an int or (in_axes, out_axes[, "
                        f"kwargs_axes]) with int or pytree axes, got {vmap_axes!r}")
    raise TypeError(f"vmap_axes must be None, an int or (in_axes, out_axes[, kwargs_axes]), "
                    f"got {vmap_axes!r}")


def _parse_kwargs_axes(vmap_axes) -> dict | int:
    """``kwargs_axes`` of ``vmap_axes=(in_axes, out_axes, kwargs_axes)``: ``{}`` when absent,
    an int (every keyword argument batched along it, as neural-tangents reads it) or a dict
    from keyword name to its batch axis (an int, ``None``, or a pytree of them)."""
    if not (isinstance(vmap_axes, (tuple, list)) and len(vmap_axes) == 3):
        return {}
    kw = vmap_axes[2]
    if kw is None:
        return {}
    if isinstance(kw, (int, np.integer)) and not isinstance(kw, bool):
        return int(kw)
    if not isinstance(kw, dict) or not all(isinstance(k, str) for k in kw):
        raise TypeError(f"vmap_axes: kwargs_axes must be None, an int or a dict from keyword "
                        f"names to batch axes, got {kw!r}")
    for name, axes in kw.items():
        for a in jax.tree_util.tree_leaves(axes):
            if not isinstance(a, (int, np.integer)) or isinstance(a, bool):
                raise TypeError(f"vmap_axes: kwargs_axes[{name!r}] must be an int, None or a "
                                f"pytree of them, got {axes!r}")
    return {k: v for k, v in kw.items() if jax.tree_util.tree_leaves(v)}


def _axes_spec(axes, name, whole):
    if isinstance(axes, (int, np.integer)) and not isinstance(axes, bool):
        return int(axes)
    leaves, treedef = jax.tree_util.tree_flatten(axes, is_leaf=lambda a: a is None)
    if axes is None or not leaves:
        raise TypeError(f"vmap_axes=(in_axes, out_axes[, kwargs_axes]) needs int axes or "
                        f"pytrees of them, got {name}={axes!r} in vmap_axes={whole!r}")
    for a in leaves:
        if a is not None and (not isinstance(a, (int, np.integer)) or isinstance(a, bool)):
            raise TypeError(f"vmap_axes=(in_axes, out_axes[, kwargs_axes]) needs int axes or "
                            f"pytrees of them, got {name}={axes!r} in vmap_axes={whole!r}")
    return _AxesTree(treedef, tuple(None if a is None else int(a) for a in leaves), name)


class _AxesTree:
    """A pytree of batch axes (ints; ``None`` where the tree holds no arrays), hashable.

    Each axis applies to every array leaf of the subtree at its position (a prefix of the
    tree's structure, as ``jax.vmap``'s ``in_axes``)."""

    __slots__ = ("treedef", "leaves", "name", "_hash")

    def __init__(self, treedef, leaves: tuple, name: str):
        self.treedef, self.leaves, self.name = treedef, leaves, name
        self._hash = hash((treedef, leaves))

    def __eq__(self, other):
        return (isinstance(other, _AxesTree) and self.treedef == other.treedef
                and self.leaves == other.leaves)

    def __hash__(self):
        return self._hash

    def __repr__(self):
        return repr(jax.tree_util.tree_unflatten(self.treedef, self.leaves))

    def _subtrees(self, tree, lenient: bool = True):
        """The subtrees of ``tree`` under each axis; where the structures differ only in
        lists against tuples they match when ``lenient`` (neural-tangents' networks return
        lists where users write tuples)."""
        try:
            return self.treedef.flatten_up_to(tree)
        except (ValueError, TypeError):
            if not lenient:
                raise
            axes = _lists_as_tuples(jax.tree_util.tree_unflatten(self.treedef, self.leaves))
            treedef = jax.tree_util.tree_structure(axes, is_leaf=lambda a: a is None)
            return treedef.flatten_up_to(_lists_as_tuples(tree))

    def fits(self, tree, lenient: bool) -> bool:
        try:
            self._subtrees(tree, lenient)
            return True
        except (ValueError, TypeError):
            return False

    def per_leaf(self, tree, what: str) -> list:
        """The axis of every array leaf of ``tree``, in ``tree_leaves`` order."""
        try:
            subtrees = self._subtrees(tree)
        except (ValueError, TypeError) as err:
            raise ValueError(f"vmap_axes: {self.name}={self!r} does not match the structure of "
                             f"{what}, {jax.tree_util.tree_structure(tree)}") from err
        out = []
        for axis, sub in zip(self.leaves, subtrees):
            out.extend([axis] * len(jax.tree_util.tree_leaves(sub)))
        return out


def _lists_as_tuples(tree):
    if isinstance(tree, list) or type(tree) is tuple:
        return tuple(_lists_as_tuples(t) for t in tree)
    if type(tree) is dict:
        return {k: _lists_as_tuples(v) for k, v in tree.items()}
    return tree


class _AmbiguousAxes:
    """A pair ``vmap_axes=(a, b)`` with a pytree in it: ``(in_axes=a, out_axes=b)`` when
    ``a`` fits the inputs' structure, else neural-tangents' ``in_axes = out_axes = (a, b)``."""

    __slots__ = ("pair", "whole")

    def __init__(self, pair, whole):
        self.pair, self.whole = pair, whole

    def __eq__(self, other):
        return isinstance(other, _AmbiguousAxes) and self.pair == other.pair

    def __hash__(self):
        return hash(self.pair)

    def resolve(self, x1):
        in_axes = self.pair[0]
        if isinstance(in_axes, int):
            return self.pair
        for lenient in (False, True):   # an exact match first, then lists as tuples
            if in_axes.fits(x1, lenient):
                return self.pair
            if self.whole.fits(x1, lenient):
                return self.whole, self.whole
        raise ValueError(f"vmap_axes={self.whole!r} fits x1's structure "
                         f"{jax.tree_util.tree_structure(x1)} neither as (in_axes, out_axes) "
                         "nor as in_axes = out_axes = vmap_axes")


def _is_tracer(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def _concrete(x):
    """``x`` as a numpy array, or ``None`` when it is traced (under jit / vmap / grad), where
    values cannot be checked; inside jit even jnp operations on constants are traced, so
    the check runs in numpy."""
    if _is_tracer(x):
        return None
    try:
        return np.asarray(x)
    except (TypeError, jax.errors.TracerArrayConversionError):
        return None


def _check_inputs(x1, x2, in_axis: int):
    for name, x in (("x1", x1), ("x2", x2)):
        if x is None and name == "x2":
            continue
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            raise TypeError(f"{name} must be an array, got {type(x).__name__}")
        if x.ndim == 0:
            raise ValueError(f"{name} must have a batch axis, got a scalar")
        if not -x.ndim <= in_axis < x.ndim:
            raise ValueError(f"{name} of shape {tuple(x.shape)} has no batch axis {in_axis}")
        if jnp.issubdtype(x.dtype, jnp.complexfloating):
            raise TypeError(f"{name} has dtype {x.dtype}: empirical kernels take real inputs")
        if not _is_tracer(x) and jnp.issubdtype(x.dtype, jnp.inexact):
            bad = validation.non_finite_counts([x])[0]
            if bad:
                raise ValueError(f"{name} of shape {tuple(x.shape)} has {bad} non-finite "
                                 "entries (NaN or inf)")


class _TreeOutput(Exception):
    """Raised while planning for a single array output when ``apply_fn`` returns a pytree:
    the call is planned again as one kernel per output leaf (:func:`_make_tree_plan`)."""


def _output_shape(apply_fn, params, x, kwargs):
    out = validation.output_shape(apply_fn, params, x, "x1", **kwargs)
    if not hasattr(out, "shape"):
        raise _TreeOutput()
    return tuple(out.shape), out.dtype


def _scale_list(param_scales, params, leaves) -> list:
    if param_scales is None:
        return [1.0] * len(leaves)
    treedef = jax.tree_util.tree_structure(params)
    try:
        scales = treedef.flatten_up_to(param_scales)
    except (ValueError, TypeError) as e:
        raise ValueError("param_scales must be a pytree of scalars with the structure of "
                         f"params; params has structure {treedef}, param_scales is "
                         f"{jax.tree_util.tree_structure(param_scales)}") from e
    out = []
    for s in scales:
        if _is_tracer(s):
            raise TypeError("param_scales must be concrete numbers, not traced values")
        s = np.asarray(s)
        if s.shape != ():
            raise ValueError(f"param_scales must hold scalars, got an entry of shape {s.shape}")
        s = float(s)
        if not math.isfinite(s) or s < 0:
            raise ValueError(f"param_scales must be finite and non-negative, got {s}")
        out.append(s)
    return out


# ----------------------------------------------------------------------------- layout

class _Layout:
    """Einsum letters for one kernel: per full-output axis, free (a pair of letters),
    diagonal (one shared kept letter) or traced (one shared summed letter)."""

    def __init__(self, out_shape: Sequence[int], trace: tuple, diag: tuple, batch_axis: int):
        letters = iter(string.ascii_letters)
        self.ndim = len(out_shape)
        self.left, self.right, self.out = [], [], []
        self.trace_size = 1
        for ax in range(self.ndim):
            a = next(letters)
            if ax in trace or ax in diag:
                self.left.append(a)
                self.right.append(a)
                if ax in diag:
                    self.out.append(a)
                else:
                    self.trace_size *= out_shape[ax]
            else:
                b = next(letters)
                self.left.append(a)
                self.right.append(b)
                self.out.extend([a, b])
        self.spare = "".join(letters)
        self.trace_axes = tuple(trace)
        self.batch_axis = batch_axis
        self.batch_paired = batch_axis in trace or batch_axis in diag
        # number of (output entry, output entry) pairs per pair of inputs (what the
        # contraction sums over) and entries of the result per pair of inputs (a traced
        # axis is summed away: its O pairs make one entry)
        self.pairs = self.out_pairs = 1
        for ax in range(self.ndim):
            if ax == batch_axis:
                continue
            self.pairs *= out_shape[ax] if (ax in trace or ax in diag) else out_shape[ax] ** 2
            self.out_pairs *= 1 if ax in trace else out_shape[ax] if ax in diag \
                else out_shape[ax] ** 2

        # contract() moves diagonal axes first, free ones next and traced ones last; any
        # other order of an input's axes makes it copy that input
        shared = [l for l in self.left if l in self.right]
        order = ([l for l in shared if l in self.out] + [l for l in self.left if l not in shared]
                 + [l for l in shared if l not in self.out])
        order2 = ([l for l in shared if l in self.out]
                  + [l for l in self.right if l not in shared]
                  + [l for l in shared if l not in self.out])
        self.contract_copies = order != self.left or order2 != self.right

    def lhs(self) -> str:
        return "".join(self.left)

    def rhs(self) -> str:
        return "".join(self.right)

    def result(self) -> str:
        return "".join(self.out)

    def contract(self, a, b, extra: int = 0):
        """sum over the trailing ``extra`` axes shared by ``a`` and ``b``, as one batched
        matrix product ``(D, Fa, T) x (D, Fb, T) -> (D, Fa, Fb)``: D the diagonal axes, F
        the free ones, T the traced ones and the trailing ``extra`` (einsum's own lowering
        of this contraction runs about 2x slower on CPU)."""
        lhs, rhs = list(self.left), list(self.right)
        shared = [l for l in lhs if l in rhs]
        kept = [l for l in shared if l in self.out]
        summed = [l for l in shared if l not in self.out]
        free_a = [l for l in lhs if l not in rhs]
        free_b = [l for l in rhs if l not in lhs]
        nd = len(lhs)
        size = dict(zip(lhs, a.shape[:nd]))
        size.update(zip(rhs, b.shape[:nd]))
        ta = a.transpose([lhs.index(l) for l in kept + free_a + summed]
                         + list(range(nd, a.ndim)))
        tb = b.transpose([rhs.index(l) for l in kept + free_b + summed]
                         + list(range(nd, b.ndim)))
        d = int(np.prod([size[l] for l in kept]))
        fa = int(np.prod([size[l] for l in free_a]))
        fb = int(np.prod([size[l] for l in free_b]))
        ta = ta.reshape(d, fa, -1)
        tb = tb.reshape(d, fb, -1)
        prod = lax.dot_general(ta, tb, (((2,), (2,)), ((0,), (0,))))
        prod = prod.reshape([size[l] for l in kept + free_a + free_b])
        order = kept + free_a + free_b
        return prod.transpose([order.index(l) for l in self.out])

    def reduce_raw(self, raw):
        """Apply trace / diagonal to a raw ``(*S1, *S2)`` kernel."""
        return jnp.einsum(f"{self.lhs()}{self.rhs()}->{self.result()}", raw)

    def swap_permutation(self) -> tuple:
        """Axes permutation taking ``K(x2, x1)`` to ``K(x1, x2)``: each free axis's two
        letters trade places."""
        partner = {}
        for a, b in zip(self.left, self.right):
            partner[a], partner[b] = b, a
        return tuple(self.out.index(partner[letter]) for letter in self.out)

    def concat_axis(self, side: int) -> int:
        """Position of the batch axis of input ``side`` (1 or 2) in the result."""
        letter = (self.left if side == 1 else self.right)[self.batch_axis]
        return self.out.index(letter)


# ---------------------------------------------------------------------- the engine

class _Model:
    """``apply_fn`` seen as a function of a flat list of leaves and one call's input."""

    def __init__(self, apply_fn, treedef, kwargs, vmap):
        self.apply_fn, self.treedef, self.kwargs, self.vmap = apply_fn, treedef, kwargs, vmap

    def call(self, leaves, x):
        """One call: a single example (``vmap``) or the whole batch."""
        params = jax.tree_util.tree_unflatten(self.treedef, list(leaves))
        if self.vmap is None:
            return self.apply_fn(params, x, **self.kwargs)
        in_axis, out_axis = self.vmap
        out = self.apply_fn(params, jnp.expand_dims(x, in_axis), **self.kwargs)
        return jnp.take(out, 0, axis=out_axis)

    def batch(self, leaves, x):
        """The whole batch's output (vmapped over single examples where allowed)."""
        if self.vmap is None:
            return self.call(leaves, x)
        in_axis, out_axis = self.vmap
        return jax.vmap(self.call, in_axes=(None, in_axis), out_axes=out_axis)(leaves, x)

    def over_examples(self, fn, leaves, x):
        """Map ``fn(leaves, x_call) -> pytree`` over calls; leading axis = example."""
        if self.vmap is None:
            return jax.tree_util.tree_map(lambda a: a[None], fn(leaves, x))
        return jax.vmap(fn, in_axes=(None, self.vmap[0]))(leaves, x)


def _jacobian_features(model: _Model, leaves, active, x):
    def per_call(lv, xc):
        def f(act):
            full = list(lv)
            for i, v in zip(active, act):
                full[i] = v
            return model.call(full, xc)
        return jax.jacrev(f)([lv[i] for i in active])

    return _features_full(model, per_call, leaves, x)


def _features_full(model: _Model, per_call, leaves, x):
    """Per-call features with the example axis placed at the output's batch axis."""
    feats = model.over_examples(per_call, leaves, x)
    if model.vmap is None:
        return jax.tree_util.tree_map(lambda a: a[0], feats)
    out_axis = model.vmap[1]
    return _place_batch(feats, out_axis)


def _place_batch(tree, out_axis):
    return jax.tree_util.tree_map(lambda a: jnp.moveaxis(a, 0, out_axis), tree)


def _contract_jacobians(layout: _Layout, j1, j2, scales, active):
    total = 0.0
    for k, i in enumerate(active):
        extra = j1[k].ndim - layout.ndim
        total = total + scales[i] * layout.contract(j1[k], j2[k], extra)
    return total


def _jacobian_block(model, layout, leaves, scales, active, x1, x2):
    j1 = _jacobian_features(model, leaves, active, x1)
    j2 = j1 if x2 is None else _jacobian_features(model, leaves, active, x2)
    return _contract_jacobians(layout, j1, j2, scales, active)


def _ntvp_block(model, layout, leaves, scales, active, x1, x2, chunk):
    x2 = x1 if x2 is None else x2
    act = [leaves[i] for i in active]
    act_scales = [scales[i] for i in active]

    def with_active(a):
        full = list(leaves)
        for i, v in zip(active, a):
            full[i] = v
        return full

    def push(v):  # J1 (s * v): one jvp over the whole x1 batch
        v = [s * t for s, t in zip(act_scales, v)]
        return jax.jvp(lambda a: model.batch(with_active(a), x1), (act,), (v,))[1]

    if model.vmap is None:
        # No batch independence: each column pulls back through the whole x2 batch.
        out2 = jax.eval_shape(lambda a: model.batch(with_active(a), x2), act)
        size2 = int(np.prod(out2.shape))
        _, vjp2 = jax.vjp(lambda a: model.batch(with_active(a), x2), act)

        def column(index):
            cot = jnp.zeros(size2, out2.dtype).at[index].set(1).reshape(out2.shape)
            return push(vjp2(cot)[0])

        cols = jax.lax.map(column, jnp.arange(size2), batch_size=max(1, min(chunk, size2)))
        s2_full = tuple(out2.shape)
        cols = cols.reshape(s2_full + cols.shape[1:])
    else:
        # Independent examples: column (n2, b) pulls e_b back through example n2 alone.
        in_axis, out_axis = model.vmap
        xs2 = jnp.moveaxis(x2, in_axis, 0)
        s2 = tuple(jax.eval_shape(lambda a: model.call(with_active(a), xs2[0]), act).shape)
        o2 = int(np.prod(s2))
        size2 = xs2.shape[0] * o2

        def column(index):
            n, b = index // o2, index % o2
            out, vjp = jax.vjp(lambda a: model.call(with_active(a), xs2[n]), act)
            cot = jnp.zeros(o2, out.dtype).at[b].set(1).reshape(s2)
            return push(vjp(cot)[0])

        cols = jax.lax.map(column, jnp.arange(size2), batch_size=max(1, min(chunk, size2)))
        cols = cols.reshape((xs2.shape[0],) + s2 + cols.shape[1:])
        cols = jnp.moveaxis(cols, 0, out_axis)
        s2_full = s2[:out_axis] + (xs2.shape[0],) + s2[out_axis:]
    # cols: (*S2, *S1) -> raw (*S1, *S2)
    n2_ndim = len(s2_full)
    raw = jnp.moveaxis(cols, tuple(range(n2_ndim)),
                       tuple(range(cols.ndim - n2_ndim, cols.ndim)))
    return layout.reduce_raw(raw)


def _structured_block(model, layout, leaves, scales, active, x1, x2, feature_fn):
    f1 = _features_full(model, lambda lv, xc: feature_fn(lv, xc)[1:], leaves, x1)
    f2 = f1 if x2 is None else _features_full(
        model, lambda lv, xc: feature_fn(lv, xc)[1:], leaves, x2)
    taps1, fb1 = f1
    taps2, fb2 = f2
    total = 0.0
    h_batch = model.vmap is not None
    by_leaf = {}
    for k, t in enumerate(taps1):
        by_leaf.setdefault(t.leaf, []).append(k)
    for leaf, ks in by_leaf.items():
        s = scales[leaf]
        if s == 0.0:
            continue
        # a leaf with several uses: the sum over ordered pairs of uses
        for i in ks:
            for j in ks:
                t1, t2 = taps1[i], taps2[j]
                if t1.kind in ("add", "mul"):
                    term = layout.contract(t1.jac, t2.jac, t1.jac.ndim - layout.ndim)
                else:
                    term = _contract_tap(layout, t1, t2, h_batch)
                total = total + s * term
    for i in fb1:
        if scales[i] == 0.0:
            continue
        total = total + scales[i] * layout.contract(fb1[i], fb2[i], fb1[i].ndim - layout.ndim)
    return total


def _contract_tap(layout: _Layout, t1, t2, h_batch: bool):
    """``sum_{p,q} (h1_p . h2_q)(g1_p . g2_q)`` with g ``(*S, P, F)`` and h
    ``([N,] P, C)`` (with a group axis ``k`` before ``P`` in both for a grouped
    convolution; where one use's groups are the other's swapped, ``(h1_p . g2_q)(g1_p .
    h2_q)``); opt_einsum decides between pairwise and materialized order."""
    p, q, f, c, k = layout.spare[:5]
    if h_batch:
        b1, b2 = layout.left[layout.batch_axis], layout.right[layout.batch_axis]
    else:
        b1 = b2 = ""
    k = k if t1.grouped else ""
    if t1.swap == t2.swap:
        spec = (f"{layout.lhs()}{k}{p}{f},{layout.rhs()}{k}{q}{f},{b1}{k}{p}{c},{b2}{k}{q}{c}"
                f"->{layout.result()}")
    else:
        spec = (f"{layout.lhs()}{p}{f},{layout.rhs()}{q}{c},{b1}{p}{c},{b2}{q}{f}"
                f"->{layout.result()}")
    return jnp.einsum(spec, t1.g, t2.g, _h_lead(t1.h, h_batch, layout),
                      _h_lead(t2.h, h_batch, layout), optimize="optimal")


def _h_lead(h, h_batch, layout):
    # h was moved like every feature (example axis to the batch position); h has no output
    # axes other than the example one, so move it back to the front.
    if not h_batch:
        return h
    return jnp.moveaxis(h, layout.batch_axis, 0)


# ------------------------------------------------------------------------- cost model

def _profile(model: _Model, leaves, x, in_axis: int, n_examples: int = 1):
    """Trace one call for the cost model: a single example in vmap mode; otherwise the
    whole batch, with costs divided by its ``n_examples``."""
    if model.vmap is None:
        xc = jax.ShapeDtypeStruct(tuple(x.shape), x.dtype)
    else:
        shape = list(x.shape)
        del shape[in_axis]
        xc = jax.ShapeDtypeStruct(tuple(shape), x.dtype)
        n_examples = 1   # the traced call is already one example
    avals = [jax.ShapeDtypeStruct(jnp.shape(l), jnp.result_type(l)) for l in leaves]
    closed = jax.make_jaxpr(model.call)(avals, xc)
    analysis = _structured.analyze(closed, len(leaves))
    analysis.max_activation = max(_largest_value(closed.jaxpr) // n_examples, 1)
    analysis.max_patch = _largest_patch(closed.jaxpr) // n_examples
    analysis.has_conv = _has_primitive(closed.jaxpr, "conv_general_dilated")
    analysis.flops_forward /= n_examples
    analysis.activation_size //= n_examples
    analysis.n_examples = n_examples
    return analysis


def _largest_value(jaxpr) -> int:
    """Entries of the largest intermediate value of a jaxpr (nested calls included)."""
    best = 0
    for eqn in jaxpr.eqns:
        for sub in _structured.sub_jaxprs(eqn):
            best = max(best, _largest_value(sub))
        for v in eqn.outvars:
            shape = getattr(v.aval, "shape", None)
            if shape is not None:
                best = max(best, int(np.prod(shape)))
    return best


def _largest_patch(jaxpr) -> int:
    """Entries of the largest convolution patch matrix of a jaxpr: output positions x
    (kernel window x input channels). A per-example weight gradient under ``vmap`` forms
    it for every Jacobian row (XLA lowers it as a grouped convolution over patches)."""
    best = 0
    for eqn in jaxpr.eqns:
        for sub in _structured.sub_jaxprs(eqn):
            best = max(best, _largest_patch(sub))
        if eqn.primitive.name == "conv_general_dilated":
            rhs = eqn.invars[1].aval.shape
            features = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
            out = int(np.prod(eqn.outvars[0].aval.shape))
            best = max(best, out // max(features, 1) * (int(np.prod(rhs)) // max(features, 1)))
    return best


def _has_primitive(jaxpr, name: str) -> bool:
    return any(eqn.primitive.name == name
               or any(_has_primitive(sub, name) for sub in _structured.sub_jaxprs(eqn))
               for eqn in jaxpr.eqns)


def _tap_dims(tap) -> tuple[int, int, int, int]:
    """(positions, input size C, output size F, groups G) of a dense / conv / lookup tap
    for one call: its features are ``G`` blocks of ``positions x C`` and ``positions x F``
    (a lookup is a dense layer on one-hot rows: C = rows of the table)."""
    if tap.kind == "dot":
        (lc, rc), _ = tap.params["dimension_numbers"]
        w_contract = rc if tap.operand == 1 else lc
        c = int(np.prod([tap.operand_shape[d] for d in w_contract]))
        f = int(np.prod(tap.operand_shape)) // max(c, 1)
        pos = int(np.prod(tap.out_shape)) // max(f, 1)
        return pos, c, f, 1
    if tap.kind == "gather":
        a = tap.params["dimension_numbers"].collapsed_slice_dims[0]
        c, f = tap.operand_shape[a], tap.operand_shape[1 - a]
        return int(np.prod(tap.out_shape)) // max(f, 1), c, f, 1
    dn = tap.params["dimension_numbers"]
    groups = tap.params["feature_group_count"]
    out_features = tap.operand_shape[dn.rhs_spec[0]]
    c = int(np.prod(tap.operand_shape)) // out_features
    pos = int(np.prod(tap.out_shape)) // out_features
    return pos, c, out_features // groups, groups


def _pair_cost(t1, t2, pos_examples, n1, n2, pairs, o, nf, shared=False):
    """FLOPs of the contraction of two dense / conv / lookup taps of one leaf over all
    ``n1 x n2`` pairs of inputs, and whether it pairs positions (else it materializes
    per-input weight gradients, ``o`` rows of ``C x F``, then their Gram).

    A single-use tap keeps the planner's estimate ``P^2 C + pairs P^2 F`` per input pair.
    The terms of a leaf with several uses (``shared``) are costed by the order opt_einsum
    takes: the Gram of ``h`` (``P1 P2 C``), ``g1`` against it (``o P1 P2 F``), then ``g2``
    (``pairs P2 F``); a swapped pair (the second use contracts the leaf's other axis
    group) pairs ``h1`` with ``g2`` and ``g1`` with ``h2`` (``o P1 P2 (C + F)``) and then
    sums position pairs (``pairs P1 P2``)."""
    pos1, c, f, groups = _tap_dims(t1)
    pos2 = _tap_dims(t2)[0]
    pos1, pos2 = max(1, pos1 // pos_examples), max(1, pos2 // pos_examples)
    if t1.swap != t2.swap:
        return n1 * n2 * (o * pos1 * pos2 * (c + f) + pairs * pos1 * pos2), True
    if shared:
        pairwise = n1 * n2 * groups * (pos1 * pos2 * c + o * pos1 * pos2 * f + pairs * pos2 * f)
    else:
        pairwise = n1 * n2 * groups * (pos1 * pos2 * c + pairs * pos1 * pos2 * f)
    if t1 is not t2:
        return pairwise, True
    materialized = nf * o * groups * pos1 * c * f + n1 * n2 * pairs * groups * c * f
    return min(pairwise, materialized), pairwise <= materialized


def _shared_fallback(analysis, active, layout, n1, n2, out_size, symmetric, sizes) -> list:
    """Leaves with several uses, or one lookup, whose terms cost at least the Jacobian
    contraction of the leaf (``n1 n2 pairs size``): they fall back."""
    by_leaf = {}
    for t in analysis.taps:
        if t.leaf in active:
            by_leaf.setdefault(t.leaf, []).append(t)
    nf = n1 if symmetric else n1 + n2
    demoted = []
    for leaf, taps in by_leaf.items():
        if len(taps) < 2 and taps[0].kind != "gather":
            continue
        cost = sum(_pair_cost(a, b, analysis.n_examples, n1, n2, layout.pairs, out_size, nf,
                              shared=len(taps) > 1)[0] for a in taps for b in taps)
        if cost >= n1 * n2 * layout.pairs * sizes[leaf]:
            demoted.append(leaf)
    return demoted


def _costs(analysis, leaves, active, layout, n1, n2, out_size, symmetric, examples=1,
           budget=None, itemsize=4):
    """FLOPs and per-block entries (as functions of block sizes ``b1, b2``) of each
    implementation, and the columns NTVP pulls back at once (``ntvp_columns(b1, b2)``).

    ``examples`` is how many examples each derivative pass runs over: 1 with independent
    examples (vmap), the batch size otherwise (a backward pass per output entry through
    the whole batch; a block of ``b`` rows then runs over its ``b`` examples).

    Entries of one block, for x1's and x2's sides of ``b`` rows (one side when x2 is None
    and one block covers it) and ``a`` activations per example (``acts``):

    - jacobian: the Jacobian blocks ``b o P`` held, plus the larger of deriving one side
      (another ``b o P`` and the backward activations ``b o a``, times ``b`` in batch
      mode) and contracting (a copy of both blocks where the layout transposes them, a
      tile per leaf), plus the tile;
    - ntvp: the forward activations of both sides, ``columns`` pulls back at once (each
      a parameter-sized vector and, per example of its vjp and of the jvp over x1, four of
      the largest intermediates and, in vmap mode, the largest convolution patch matrix),
      the raw ``(b1 O, b2 O)`` kernel and the tile;
    - structured: per dense / convolution tap ``g`` (``b o`` rows of positions x output
      features) and ``h`` (positions x input features), per other leaf its Jacobian, the
      backward activations, and the larger intermediate of the contraction order
      opt_einsum picks (position-pair products or materialized weight gradients).

    Checked against ``compiled.memory_analysis()`` in tests/ntk/test_planner_memory.py.
    """
    fp = max(analysis.flops_forward, 1.0) * examples
    acts = analysis.activation_size
    sizes = [int(np.prod(jnp.shape(l))) for l in leaves]
    p_active = sum(sizes[i] for i in active)
    o = out_size
    pairs = layout.pairs
    nf = n1 if symmetric else n1 + n2
    flops = {
        Implementation.JACOBIAN: nf * o * 3 * fp + n1 * n2 * pairs * p_active,
        Implementation.NTVP: n2 * o * (3 * fp + 3 * n1 * fp / examples),
    }
    tap_cost, tap_dims, tap_other = 0.0, [], 0
    handled = set()
    taps = [t for t in analysis.taps if t.leaf in active]
    for t in taps:
        handled.add(t.leaf)
        if t.kind in ("dot", "conv", "gather"):
            pos, c, f, groups = _tap_dims(t)
            pos = max(1, pos // analysis.n_examples)
            # with every use of the same leaf (itself included): a leaf's kernel is the sum
            # over ordered pairs of its uses
            uses = [u for u in taps if u.leaf == t.leaf]
            costs = [_pair_cost(t, u, analysis.n_examples, n1, n2, pairs, o, nf,
                                shared=len(uses) > 1) for u in uses]
            tap_cost += sum(cost for cost, _ in costs)
            tap_dims.append((pos, c, f, groups, all(pw for _, pw in costs), len(uses) > 1))
        else:
            tap_cost += n1 * n2 * pairs * sizes[t.leaf]
            tap_other += sizes[t.leaf]
    p_fallback = sum(sizes[i] for i in active if i not in handled)
    flops[Implementation.STRUCTURED] = (nf * o * 3 * fp + tap_cost
                                        + n1 * n2 * pairs * p_fallback)

    batch = examples > 1
    patch = analysis.max_patch
    n_leaves = len(active)

    def tile(b1, b2):  # entries of one block's result
        return (b1 if layout.batch_paired else b1 * b2) * layout.out_pairs

    def sides(b1, b2):  # rows derived per side (x2 = None: one block is its own column)
        if symmetric and (layout.batch_paired or (b1 >= n1 and b2 >= n2)):
            return (b1,)
        return (b1, b1 if layout.batch_paired else b2)

    def through(b):  # examples one derivative pass of a block of b rows runs over
        return b if batch else 1

    def jac_bytes(b1, b2):
        rows = sides(b1, b2)
        held = sum(rows) * o * p_active
        derive = max(b * o * (p_active + through(b) * acts + patch) for b in rows)
        copies = (2 * b1 * o * p_active if len(rows) == 1 else held) \
            if layout.contract_copies else 0
        return held + max(derive, copies + n_leaves * tile(b1, b2)) + tile(b1, b2)

    def ntvp_columns(b1, b2):
        # a column: its parameter-space vector and, per example of the jvp over x1 and of
        # the vjp over its own example(s), the live tangents / cotangents (at most four of
        # the largest intermediates) and, in vmap mode, a convolution's patches (a
        # column-batched kernel on one example is a grouped convolution over them)
        per_col = p_active + (b1 + through(b2)) * (4 * analysis.max_activation
                                                   + (0 if batch else patch))
        if budget is None:
            return per_col, 1024
        return per_col, int(max(1, min(1024, (budget // 4) // max(per_col * itemsize, 1))))

    def ntvp_bytes(b1, b2):
        b2 = b1 if layout.batch_paired else b2
        per_col, columns = ntvp_columns(b1, b2)
        return ((b1 + b2) * 3 * acts + min(b2 * o, columns) * per_col + b1 * b2 * o * o
                + tile(b1, b2))

    def sd_bytes(b1, b2):
        rows = sides(b1, b2)
        feats = sum(b * (o * (p_fallback + tap_other) + sum(
            groups * (pos * c + o * pos * through(b) * f) for pos, c, f, groups, _, _ in tap_dims))
            for b in rows)
        derive = max(b * o * (through(b) * acts + patch) for b in rows)
        pb1, pb2 = b1, (b1 if layout.batch_paired else b2)
        contract = 0
        for pos, c, f, groups, pairwise, shared in tap_dims:
            p1, p2 = pos * through(pb1), pos * through(pb2)
            if shared:
                # the order _pair_cost counts: the Gram of h, g1 against it, and for a
                # swapped pair h1 . g2 and g1 . h2 over position pairs
                if batch:
                    need = p1 * p2 + pb1 * o * p2 * f + (pb1 + pb2) * o * p1 * p2
                else:
                    need = pb1 * pb2 * (pos * pos + o * pos * f + 2 * o * pos * pos)
            elif pairwise:
                need = groups * (pb1 * p1 * pb2 * p2 if batch else pb1 * pb2 * pos * pos) * (
                    1 + pairs)
            else:
                need = (pb1 + pb2) * o * groups * c * f
            contract = max(contract, need)
        return feats + max(derive, contract + n_leaves * tile(b1, b2)) + tile(b1, b2)

    block_bytes = {Implementation.JACOBIAN: jac_bytes, Implementation.NTVP: ntvp_bytes,
                   Implementation.STRUCTURED: sd_bytes}
    return flops, block_bytes, ntvp_columns


# ------------------------------------------------------------------------ public API

def _nt_rule_switches(j_rules, s_rules, fwd) -> None:
    """neural-tangents' ``_j_rules``, ``_s_rules``, ``_fwd``: checked, then unused."""
    for name, value, allowed in (("_j_rules", j_rules, (bool,)), ("_s_rules", s_rules, (bool,)),
                                 ("_fwd", fwd, (bool, type(None)))):
        if not isinstance(value, allowed + (np.bool_,)):
            raise TypeError(f"{name} must be a bool{' or None' if name == '_fwd' else ''}, "
                            f"got {value!r}")


def _model_argument(apply_fn, f, caller: str) -> Callable:
    """The model, given as ``apply_fn`` or by neural-tangents' keyword ``f`` (not both)."""
    if f is not None:
        if apply_fn is not None:
            raise TypeError(f"{caller}: the model was given twice, as apply_fn and as f "
                            "(neural-tangents' name for it); pass one")
        apply_fn, name = f, "f"
    else:
        name = "apply_fn"
    if apply_fn is None:
        raise TypeError(f"{caller}: missing the model, apply_fn(params, x, **kwargs) (or f=)")
    if not callable(apply_fn):
        raise TypeError(f"{name} must be callable, got {type(apply_fn).__name__}")
    return apply_fn


def empirical_ntk_fn(apply_fn: Callable | None = None, trace_axes=(-1,), diagonal_axes=(),
                     vmap_axes="auto", implementation: str | Implementation = "auto",
                     param_scales=None, memory_budget: int | None = None,
                     block_size: int | tuple[int, int] | None = None,
                     devices: Sequence[jax.Device] | str | None = None, *,
                     f: Callable | None = None, _j_rules: bool = True,
                     _s_rules: bool = True, _fwd: bool | None = None):
    """Empirical NTK ``Theta(x1, x2) = sum_l s_l J_l(x1) J_l(x2)^T`` of ``apply_fn``.

    Args:
      apply_fn: ``apply_fn(params, x, **apply_kwargs) -> array`` with outputs ``(N, ...)``
        (``x`` and the output may be pytrees: see the module docstring)
        (the batch axis where ``vmap_axes`` says). Any pytree of parameters: plain JAX,
        ``ntk.stax``, Flax (``model.apply``) or Equinox (a partitioned model). ``f=`` (a
        keyword, neural-tangents' name) is the same argument.
      trace_axes: output axes to trace over; the kernel holds their *mean*
        (neural-tangents semantics). ``()`` gives the full ``(N1, N2, O, O)`` kernel.
      diagonal_axes: output axes on which only matching entries are kept, e.g. ``(-1,)``
        gives ``(N1, N2, O)``; including the batch axis gives per-example diagonals.
      vmap_axes: ``'auto'`` (default): find out whether examples along axis 0 are
        independent (:func:`detect_batch_independence`, once per input shape; ``plan()``
        reports what was found) and vmap over them if so; ``None``: assume nothing
        (Jacobians of whole batches, neural-tangents' default); or the batch axis of
        inputs and outputs, an int or ``(in_axes, out_axes[, kwargs_axes])``, along which
        examples are independent: per-example derivatives are vmapped, which is much
        cheaper. ``in_axes`` / ``out_axes`` may be pytrees of ints matching (a prefix of)
        the inputs' / outputs' structure; a pair with a pytree in it whose first entry
        does not fit the inputs is read as neural-tangents reads it, ``in_axes = out_axes
        = vmap_axes``. With ``None`` or ``'auto'``, pytree inputs are split along axis 0
        of every leaf where they share it, and taken whole otherwise. ``kwargs_axes`` (a
        dict from keyword name to batch axis, or one int for all) batches keyword arguments
        with the examples, as neural-tangents does; an ``in_axes`` leaf ``None`` is the same
        for every example.
      implementation: ``'jacobian'``, ``'ntvp'``, ``'structured'`` or ``'auto'``.
      param_scales: optional pytree of non-negative scalars with the structure of params;
        leaf ``l`` contributes ``s_l J_l J_l^T`` (``0`` drops it).
      memory_budget: bytes the computation may use (default
        :func:`ntk.budget.default_memory_budget`); larger requests are cut into blocks of
        inputs, and impossible ones raise :class:`ntk.budget.MemoryBudgetError`.
      block_size: force blocks of this many inputs (an int, or a pair for x1 / x2).
      devices: ``None`` (default device), ``'all'`` or a list of devices over which blocks
        of rows are sharded (:mod:`ntk.distributed`).
      _j_rules, _s_rules, _fwd: neural-tangents' switches of its own structured-derivative
        rules; accepted (bools, ``_fwd`` also ``None``) and without effect, since they
        change how neural-tangents computes the kernel, not the kernel.

    The Jacobian implementation is streamed (:mod:`ntk.streaming`): a row block's
    derivatives are kept while column blocks stream past, a traced or diagonal output axis
    is processed in chunks and parameter leaves in groups when memory requires, and only
    blocks on or above the diagonal are computed for ``x2 = None``. ``'auto'`` compares
    the whole kernel's FLOPs of every implementation under its memory plan, counting what
    each recomputes. Plans and compiled functions are made once per input shapes, dtypes
    and settings; a repeated call costs its compiled computation.

    Returns:
      ``ntk_fn(x1, x2, params, **apply_kwargs)``; ``x2=None`` (or a pytree of ``None``)
      means ``x2 = x1`` (and reuses x1's derivatives). Keyword arguments follow
      neural-tangents: a pair ``name=(v1, v2)`` gives ``v1`` to the calls on ``x1`` and
      ``v2`` to those on ``x2`` (``x2=None``: ``v1`` to both); ``rng=key`` gives ``x2``
      ``fold_in(key, 1)`` unless ``x2`` equals ``x1``; any other value goes to every call.
      The result has shape ``(N1, N2)``
      for outputs ``(N, O)`` with the default ``trace_axes``; see the module docstring for
      the general layout. A pytree-valued ``apply_fn`` gives a pytree of kernels (and
      ``plan()`` a pytree of reports) with the output's structure.
    """
    apply_fn = _model_argument(apply_fn, f, "empirical_ntk_fn")
    _nt_rule_switches(_j_rules, _s_rules, _fwd)
    impl = _parse_implementation(implementation)
    trace = _as_axes(trace_axes, "trace_axes")
    diag = _as_axes(diagonal_axes, "diagonal_axes")
    vmap, kw_axes = _parse_vmap_axes(vmap_axes), _parse_kwargs_axes(vmap_axes)
    memory_budget = validation.memory_budget(memory_budget)
    block_size = validation.block_size(block_size)

    def ntk_fn(x1, x2, params, **apply_kwargs):
        return _split_compute("ntk", apply_fn, x1, x2, params, apply_kwargs, kw_axes,
                              trace, diag, vmap, impl, param_scales, memory_budget,
                              block_size, devices)

    def plan(x1, x2, params, **apply_kwargs) -> dict:
        """What ``ntk_fn(x1, x2, params)`` would do, without doing it: the implementation
        ``'auto'`` picks, the estimated FLOPs of each implementation, the block sizes and
        the estimated bytes per block and of the output."""
        return _split_compute("ntk", apply_fn, x1, x2, params, apply_kwargs, kw_axes,
                              trace, diag, vmap, impl, param_scales, memory_budget,
                              block_size, devices, dry_run=True)

    def lower_blocks(x1, x2, params, **apply_kwargs) -> dict:
        """The computations one block of the plan runs, lowered (``jax.stages.Lowered``,
        on one device), by name: ``'block'`` for a tile implementation; ``'features_x1'``,
        ``'features_x2'`` (absent where x1's block serves both sides) and ``'gram'`` for the
        streamed Jacobian contraction (its largest leaf group). ``.compile()
        .memory_analysis()`` of each says what XLA allocates for what ``plan`` counts."""
        return _split_compute("ntk", apply_fn, x1, x2, params, apply_kwargs, kw_axes,
                              trace, diag, vmap, impl, param_scales, memory_budget,
                              block_size, devices, dry_run="lower")

    ntk_fn.plan = plan
    ntk_fn.lower_blocks = lower_blocks
    ntk_fn.implementation = impl
    return ntk_fn


def empirical_nngp_fn(apply_fn: Callable | None = None, trace_axes=(-1,), diagonal_axes=(),
                      vmap_axes="auto", memory_budget: int | None = None,
                      block_size: int | tuple[int, int] | None = None, *,
                      f: Callable | None = None):
    """Empirical NNGP kernel ``K(x1, x2) = f(x1) f(x2)^T`` (output covariance).

    ``trace_axes`` (mean) and ``diagonal_axes`` as in :func:`empirical_ntk_fn`; for outputs
    of shape ``(N, O)`` the default gives ``(1/O) f(x1) . f(x2)``, shape ``(N1, N2)``. For
    the covariance of hidden features, pass an ``apply_fn`` that returns them. Pytree inputs
    and outputs as in :func:`empirical_ntk_fn`: one kernel per output leaf,
    ``f_leaf(x1) f_leaf(x2)^T``.

    The model may be given as ``f=`` (neural-tangents' keyword) instead of ``apply_fn``.

    Returns ``nngp_fn(x1, x2, params, **apply_kwargs)``.
    """
    apply_fn = _model_argument(apply_fn, f, "empirical_nngp_fn")
    trace = _as_axes(trace_axes, "trace_axes")
    diag = _as_axes(diagonal_axes, "diagonal_axes")
    vmap, kw_axes = _parse_vmap_axes(vmap_axes), _parse_kwargs_axes(vmap_axes)

    def nngp_fn(x1, x2, params, **apply_kwargs):
        return _split_compute("nngp", apply_fn, x1, x2, params, apply_kwargs, kw_axes,
                              trace, diag, vmap, Implementation.JACOBIAN, None,
                              memory_budget, block_size, None)

    def plan(x1, x2, params, **apply_kwargs) -> dict:
        """Block sizes and estimated bytes per block and of the output (see
        :func:`empirical_ntk_fn`)."""
        return _split_compute("nngp", apply_fn, x1, x2, params, apply_kwargs, kw_axes,
                              trace, diag, vmap, Implementation.JACOBIAN, None,
                              memory_budget, block_size, None, dry_run=True)

    def lower_blocks(x1, x2, params, **apply_kwargs) -> dict:
        """``{'block': jax.stages.Lowered}``: the computation one block runs."""
        return _split_compute("nngp", apply_fn, x1, x2, params, apply_kwargs, kw_axes,
                              trace, diag, vmap, Implementation.JACOBIAN, None,
                              memory_budget, block_size, None, dry_run="lower")

    nngp_fn.plan, nngp_fn.lower_blocks = plan, lower_blocks
    return nngp_fn


def empirical_kernel_fn(apply_fn: Callable | None = None, trace_axes=(-1,), diagonal_axes=(),
                        vmap_axes="auto", implementation: str | Implementation = "auto",
                        param_scales=None, memory_budget: int | None = None, *,
                        f: Callable | None = None, _j_rules: bool = True,
                        _s_rules: bool = True, _fwd: bool | None = None):
    """Both empirical kernels: ``kernel_fn(x1, x2, get, params, **kw)``.

    ``get`` follows ``ntk.stax`` and neural-tangents: a name (``'nngp'`` or ``'ntk'``, any
    case) returns that kernel's array, a tuple of names a namedtuple ``Kernels`` with those
    fields in that order, and ``None`` both, as ``Kernels(nngp, ntk)``. The kernels are those
    of :func:`empirical_nngp_fn` (``f(x1) f(x2)^T`` over the traced axes) and
    :func:`empirical_ntk_fn` (``J(x1) J(x2)^T``). For a pytree-valued ``apply_fn`` a name
    gives the pytree of kernels and a tuple the output's structure with a ``Kernels`` at
    each leaf (as neural-tangents).
    """
    apply_fn = _model_argument(apply_fn, f, "empirical_kernel_fn")
    _nt_rule_switches(_j_rules, _s_rules, _fwd)
    ntk = empirical_ntk_fn(apply_fn, trace_axes, diagonal_axes, vmap_axes, implementation,
                           param_scales, memory_budget)
    nngp = empirical_nngp_fn(apply_fn, trace_axes, diagonal_axes, vmap_axes, memory_budget)
    fns = {"ntk": ntk, "nngp": nngp}

    def kernel_fn(x1, x2, get, params, **apply_kwargs):
        if get is None:
            get = ("nngp", "ntk")
        if not isinstance(get, (str, tuple, list)):
            raise TypeError(f"get must be None, 'nngp', 'ntk' or a tuple of them, got {get!r}")
        names = (get,) if isinstance(get, str) else tuple(get)
        if not all(isinstance(g, str) for g in names):
            raise TypeError(f"get must be None, 'nngp', 'ntk' or a tuple of them, got {get!r}")
        names = tuple(g.lower() for g in names)
        for g in names:
            if g not in fns:
                raise ValueError(f"get={get!r}: unknown kernel {g!r}; expected 'nngp' or 'ntk'")
        if not names or len(set(names)) != len(names):
            raise ValueError(f"get={get!r}: expected distinct names")
        out = [fns[g](x1, x2, params, **apply_kwargs) for g in names]
        if isinstance(get, str):
            return out[0]
        # a pytree-valued apply_fn: the output's structure, a namedtuple at each leaf
        return jax.tree_util.tree_map(_kernels_tuple(names), *out)

    return kernel_fn


@functools.lru_cache(maxsize=None)
def _kernels_tuple(names: tuple):
    return collections.namedtuple("Kernels", names)


def empirical_ntk_vp_fn(apply_fn: Callable, x1, x2, params, **apply_kwargs) -> Callable:
    """NTK-vector products without the kernel (neural-tangents' ``empirical_ntk_vp_fn``).

    For ``f(x) = apply_fn(params, x, **apply_kwargs)`` and cotangents ``v`` shaped like
    ``f(x2)``::

        ntk_vp_fn(v) = Theta(x1, x2) . v = J(x1) (J(x2)^T v),   J(x) = d f(x) / d params

    i.e. ``sum_{n2, b} Theta[n1, a, n2, b] v[n2, b]`` with the full (untraced) NTK, computed as
    one vector-Jacobian product of ``f(x2)`` followed by one Jacobian-vector product of
    ``f(x1)``: the cost of about ``N1 + N2`` forward passes and the memory of one VJP; the
    kernel is never formed. ``x2=None`` means ``x2 = x1``; ``apply_kwargs`` go to both passes
    unchanged (as in :func:`empirical_ntk_fn`). The returned function can be ``jit``-ed and
    ``vmap``-ed over cotangents (``vmap`` over an identity recovers the NTK).

    Args:
      apply_fn: ``apply_fn(params, x, **apply_kwargs)``; any pytree output.
      x1, x2: inputs (``x2=None``: ``x1``).
      params: the parameter pytree the kernel is taken in.

    Returns:
      ``ntk_vp_fn(cotangents)``: cotangents with the structure and shapes of ``f(x2)``;
      returns the structure and shapes of ``f(x1)``.

    Novak, Sohl-Dickstein & Schoenholz (2022), "Fast Finite Width Neural Tangent Kernel",
    arXiv:2206.08720 (appendix L).
    """
    if not callable(apply_fn):
        raise TypeError(f"apply_fn must be callable, got {type(apply_fn).__name__}")

    def f1(p):
        return apply_fn(p, x1, **apply_kwargs)

    def f2(p):
        return apply_fn(p, x1 if x2 is None else x2, **apply_kwargs)

    def ntk_vp_fn(cotangents):
        _, vjp = jax.vjp(f2, params)
        (tangents,) = vjp(cotangents)
        return jax.jvp(f1, (params,), (tangents,))[1]

    return ntk_vp_fn


# ------------------------------------------------------------------------ computation

def _split_keywords(kwargs: dict, x1, x2) -> tuple[dict, dict]:
    """neural-tangents' ``split_kwargs``: a 2-tuple value ``(v1, v2)`` gives ``v1`` to the
    call on ``x1`` and ``v2`` to the call on ``x2`` (``x2=None``: ``v1`` to both); with a
    separate ``x2``, ``rng=key`` gives ``key`` to ``x1``'s call and ``fold_in(key, 1)`` to
    ``x2``'s unless ``x2`` equals ``x1`` (``rng=(k1, k2)`` is a pair like any other);
    anything else goes to both calls unchanged."""
    kw1, kw2 = {}, {}
    for name, value in kwargs.items():
        split = _split_kind(name, value, x2)
        if split == "pair":
            kw1[name], kw2[name] = value
        elif split == "rng":
            kw1[name], kw2[name] = value, _second_key(value, x1, x2)
        else:
            kw1[name] = kw2[name] = value
    if x2 is None:
        kw2 = kw1
    return kw1, kw2


def _split_kind(name: str, value, x2) -> str | None:
    """How :func:`_split_keywords` treats one keyword argument: ``'pair'`` (a 2-tuple),
    ``'rng'`` (a key, with a separate ``x2``) or ``None`` (the same for both calls)."""
    if isinstance(value, tuple) and len(value) == 2:
        return "pair"
    if name == "rng" and x2 is not None and value is not None and hasattr(value, "dtype"):
        return "rng"
    return None


def may_split_keywords(kwargs: dict, x2) -> bool:
    """Whether :func:`_split_keywords` may give the x1 and x2 calls different keyword
    arguments (a ``rng`` key counts even where ``x2`` turns out to equal ``x1``)."""
    return any(_split_kind(k, v, x2) for k, v in kwargs.items())


def _second_key(key, x1, x2):
    """``key`` where ``x2`` equals ``x1`` (same structure, shapes and values to 1e-12),
    ``fold_in(key, 1)`` otherwise: equal inputs see equal randomness."""
    if x1 is x2:
        return key
    l1, d1 = jax.tree_util.tree_flatten(x1)
    l2, d2 = jax.tree_util.tree_flatten(x2)
    if d1 != d2 or any(jnp.shape(a) != jnp.shape(b) for a, b in zip(l1, l2)):
        return jax.random.fold_in(key, 1)
    same = jnp.all(jnp.array([jnp.all(jnp.abs(jnp.asarray(a) - jnp.asarray(b)) < 1e-12)
                              for a, b in zip(l1, l2)]))
    return jnp.where(same, key, jax.random.fold_in(key, 1))


def _split_compute(kind, apply_fn, x1, x2, params, kwargs, kw_axes, trace, diag, vmap, *rest,
                   **options):
    """Keyword arguments as neural-tangents passes them (:func:`_split_keywords`), then
    :func:`_compute`. Those that differ between the x1 and x2 calls, or are batched by
    ``kwargs_axes``, travel as inputs: ``x -> (x, {name: value})`` with ``apply_fn``
    wrapped to pass them back as keywords (:class:`_KeywordInputs`), their batch axes
    (``kwargs_axes``, else none: the same value for every example) appended to
    ``in_axes``."""
    if x2 is not None and not hasattr(x2, "shape") and not jax.tree_util.tree_leaves(x2):
        x2 = None   # neural-tangents' x2 = (None, None): the same inputs as x1
    kw1, kw2 = _split_keywords(kwargs, x1, x2)
    batched = (dict.fromkeys(kwargs, kw_axes) if isinstance(kw_axes, int)
               else {k: a for k, a in kw_axes.items() if k in kwargs})
    moved = [k for k in kwargs if k in batched or kw1[k] is not kw2[k]]
    if not moved:
        return _compute(kind, apply_fn, x1, x2, params, kw1, trace, diag, vmap, *rest,
                        **options)
    typed = []
    for k in moved:
        for side, value in (("x1", kw1[k]), ("x2", kw2[k])):
            leaves = jax.tree_util.tree_leaves(value)
            if not leaves or not all(hasattr(a, "shape") and hasattr(a, "dtype")
                                     for a in leaves):
                raise TypeError(
                    f"keyword argument {k}={_show(kwargs[k])}: its value for the {side} call "
                    f"is {_show(value)}; a keyword argument that differs between the x1 and "
                    "x2 calls (a pair (v1, v2)) or is batched by kwargs_axes must be an array "
                    "or a pytree of arrays on both sides")
        if x2 is not None and (jax.tree_util.tree_structure(kw1[k])
                               != jax.tree_util.tree_structure(kw2[k])):
            raise ValueError(f"keyword argument {k}=(v1, v2): v1 and v2 must have one pytree "
                             f"structure, got {jax.tree_util.tree_structure(kw1[k])} and "
                             f"{jax.tree_util.tree_structure(kw2[k])}")
        if any(jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key)
               for a in jax.tree_util.tree_leaves(kw1[k])):
            if not hasattr(kw1[k], "dtype"):
                raise TypeError(f"keyword argument {k}: typed PRNG keys inside a pytree "
                                "cannot differ between the x1 and x2 calls; pass key data")
            typed.append((k, jax.random.key_impl(kw1[k])))
    as_data = lambda kw: {k: (jax.random.key_data(kw[k]) if k in dict(typed) else kw[k])
                          for k in moved}
    static = {k: v for k, v in kw1.items() if k not in moved}
    y1 = (x1, as_data(kw1))
    y2 = None if x2 is None else (x2, as_data(kw2))
    if vmap.__class__ is _AmbiguousAxes:
        vmap = vmap.resolve(x1)
    if isinstance(vmap, tuple):
        in_axes = vmap[0]
        if isinstance(in_axes, _AxesTree):
            in_axes = jax.tree_util.tree_unflatten(in_axes.treedef, in_axes.leaves)
        vmap = (_axes_spec((in_axes, {k: batched.get(k) for k in moved}), "in_axes",
                           (in_axes, kw_axes)), vmap[1])
    model = _keyword_inputs(apply_fn, tuple(typed))
    return _compute(kind, model, y1, y2, params, static, trace, diag, vmap, *rest, **options)


def _show(value) -> str:
    text = repr(jax.tree_util.tree_map(lambda a: f"<{getattr(a, 'dtype', '')}"
                                                 f"{tuple(getattr(a, 'shape', ()))}>", value)
                if jax.tree_util.tree_leaves(value) else value)
    return text if len(text) < 120 else text[:117] + "..."


@functools.lru_cache(maxsize=64)
def _keyword_inputs(apply_fn, typed: tuple) -> "_KeywordInputs":
    return _KeywordInputs(apply_fn, typed)   # one object per model, so plans cache


class _KeywordInputs:
    """``apply_fn`` of inputs ``(x, {name: value})``: ``apply_fn(params, x, **{name: value},
    **kwargs)`` (typed PRNG keys travel as their data and are wrapped back here)."""

    def __init__(self, fn, typed: tuple):
        self.fn, self.typed = fn, typed

    def __call__(self, params, x, **kwargs):
        x, moved = x
        moved = dict(moved)
        for name, impl in self.typed:
            moved[name] = jax.random.wrap_key_data(moved[name], impl=impl)
        return self.fn(params, x, **moved, **kwargs)


def _compute(kind, apply_fn, x1, x2, params, kwargs, trace, diag, vmap, impl, param_scales,
             memory_budget, block_size, devices, dry_run=False):
    """Validate, find (or make) the plan for these shapes and settings, and run it."""
    if (not (hasattr(x1, "shape") and hasattr(x1, "dtype"))
            or not (x2 is None or (hasattr(x2, "shape") and hasattr(x2, "dtype")))
            or vmap.__class__ is _AmbiguousAxes
            or (vmap.__class__ is tuple and vmap[0].__class__ is _AxesTree)):
        return _compute_tree(kind, apply_fn, x1, x2, params, kwargs, trace, diag, vmap, impl,
                             param_scales, memory_budget, block_size, devices, dry_run)
    in_axis = vmap[0] if isinstance(vmap, tuple) else 0
    _check_inputs(x1, x2, in_axis)
    per_example = lambda x: np.delete(x.shape, in_axis % x.ndim).tolist()
    if vmap is not None and x2 is not None and (x1.ndim != x2.ndim
                                                or per_example(x1) != per_example(x2)):
        raise ValueError(f"x1 and x2 must have the same per-example shape: x1 has shape "
                         f"{tuple(x1.shape)} and x2 has shape {tuple(x2.shape)} (batch axis "
                         f"{in_axis})")
    n1, n2 = x1.shape[in_axis], (None if x2 is None else x2.shape[in_axis])
    if n1 == 0 or n2 == 0:
        # an empty batch: the kernel of one stand-in example, cut to zero rows / columns
        stand = lambda x: jnp.zeros(x.shape[:in_axis] + (1,) + x.shape[in_axis + 1:], x.dtype)
        s1 = stand(x1) if n1 == 0 else x1
        s2 = None if x2 is None else (stand(x2) if n2 == 0 else x2)
        out = _compute(kind, apply_fn, s1, s2, params, kwargs, trace, diag, vmap, impl,
                       param_scales, memory_budget, block_size, devices, dry_run)
        if dry_run:
            return out
        return jax.tree_util.tree_map(lambda k: k[:n1, :n1 if n2 is None else n2], out)
    validation.finite_tree(params, "params")
    leaves, treedef = jax.tree_util.tree_flatten(params)
    if not leaves and kind == "ntk":
        raise ValueError("params has no array leaves; the NTK of a parameter-free function "
                         "is zero")
    scales = tuple(_scale_list(param_scales, params, leaves)) if kind == "ntk" else ()
    key = (kind, apply_fn, _aval(x1), None if x2 is None else _aval(x2), treedef,
           tuple(_aval(l) for l in leaves), trace, diag, vmap, impl, scales, memory_budget,
           block_size if not isinstance(block_size, list) else tuple(block_size),
           _device_key(devices), _kwargs_key(kwargs))
    plan = _PLANS.get(key) if key[-1] is not None else None
    if plan is None:
        plan = _make_plan(kind, apply_fn, x1, x2, params, leaves, treedef, kwargs, trace, diag,
                          vmap, impl, list(scales), memory_budget, block_size, devices)
        if key[-1] is not None:
            _PLANS[key] = plan
            if len(_PLANS) > _PLANS_MAX:
                _PLANS.popitem(last=False)
    else:
        _PLANS.move_to_end(key)
    if dry_run == "lower":
        return plan.lower(leaves, x1, x2)
    if dry_run:
        return plan.report()
    return plan.execute(leaves, x1, x2)


def _aval(x):
    if isinstance(x, (jax.Array, np.ndarray)):
        return (x.shape, x.dtype.name)
    return (tuple(jnp.shape(x)), jnp.result_type(x).name)


def _kwargs_key(kwargs):
    """A hashable key of the keyword arguments, or ``None`` when one is not hashable (an
    array): such calls are planned afresh each time."""
    items = tuple(sorted(kwargs.items()))
    try:
        hash(items)
    except TypeError:
        return None
    return ("kw",) + items


_PLANS: "collections.OrderedDict" = collections.OrderedDict()
_PLANS_MAX = 64


class _Plan:
    """What a kernel call does for one set of shapes: ``execute(leaves, x1, x2)``, the
    ``info`` that ``kernel_fn.plan`` reports and ``lower(leaves, x1, x2)``, the lowered
    computations of one block (``kernel_fn.lower_blocks``)."""

    def __init__(self, execute, info, lower):
        self.execute, self.info, self.lower = execute, info, lower

    def report(self):
        return dict(self.info)


class _TreePlan:
    """The plan of a pytree-valued ``apply_fn``: one :class:`_Plan` per output leaf, run one
    after another; results, ``plan()`` reports and lowered blocks have the output's
    structure."""

    def __init__(self, out_def, plans):
        self.out_def, self.plans = out_def, plans

    def execute(self, leaves, x1, x2):
        return jax.tree_util.tree_unflatten(
            self.out_def, [p.execute(leaves, x1, x2) for p in self.plans])

    def lower(self, leaves, x1, x2):
        return jax.tree_util.tree_unflatten(
            self.out_def, [p.lower(leaves, x1, x2) for p in self.plans])

    def report(self):
        return jax.tree_util.tree_unflatten(self.out_def, [p.report() for p in self.plans])


def _spec(x):
    return jax.ShapeDtypeStruct(tuple(jnp.shape(x)), jnp.result_type(x))


def _lower_tile_block(block, plan, layout, in_axis, n1, n2):
    """``lower(leaves, x1, x2)`` of the largest block :func:`_run_blocks` runs: both sides
    derived unless x2 is None and one block covers it (or the rows are paired)."""
    def lower(leaves, x1, x2):
        def rows(x, b):
            shape = list(jnp.shape(x))
            shape[in_axis] = b
            return jax.ShapeDtypeStruct(tuple(shape), jnp.result_type(x))
        paired = layout.batch_paired
        xa = rows(x1, plan.block1)
        if x2 is None and (paired or (plan.block1 >= n1 and plan.block2 >= n2)):
            xb = None
        else:
            xb = rows(x1 if x2 is None else x2, plan.block1 if paired else plan.block2)
        return {"block": jax.jit(block).lower([_spec(l) for l in leaves], xa, xb)}
    return lower


def _perturbed(x0):
    """A different value for one example, in its own domain: its entries reversed (and
    negated for floats, so that symmetric examples change too)."""
    x0 = np.asarray(x0)
    flat = x0.ravel()[::-1]
    if np.issubdtype(x0.dtype, np.inexact) or jnp.issubdtype(x0.dtype, jnp.inexact):
        flat = (-flat + np.asarray(0.5, x0.dtype)).astype(x0.dtype)
    return flat.reshape(x0.shape)


def detect_batch_independence(apply_fn, params, x, kwargs=None) -> tuple[bool, str]:
    """Whether ``apply_fn``'s examples (axis 0 of inputs and outputs) are independent.

    A probe of two examples: (i) changing example 0 must leave example 1's output bitwise
    unchanged; (ii) each example's output must equal the output of a batch holding that
    example alone (to float rounding). BatchNorm on batch statistics, attention across the
    batch or any batch reduction fails (i) or (ii). Inputs and outputs may be pytrees: every
    input leaf is cut along its axis 0, and every output leaf must pass both tests. Traced
    inputs or parameters (under ``jax.jit``) are replaced by fixed random probes of the same
    shape (integer inputs by 0 / 1); a model that cannot be probed (it closes over traced
    values) is reported coupled, which is always exact.

    Returns ``(independent, reason)``.
    """
    if isinstance(apply_fn, _PackedInputs):   # probe the caller's function on its pytree
        x = apply_fn.packer.unpack(x)
        apply_fn = apply_fn.fn
    try:
        with jax.ensure_compile_time_eval():
            return _probe_independence(functools.partial(apply_fn, **(kwargs or {})),
                                       params, x)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerBoolConversionError,
            jax.errors.TracerArrayConversionError) as err:
        return False, f"could not probe the batch ({type(err).__name__})"
    except (TypeError, ValueError) as err:
        # e.g. a keyword argument with one row per example does not fit a probe batch
        return False, (f"the model cannot run on a probe batch of 2 examples "
                       f"({type(err).__name__}: {str(err).splitlines()[0][:120]})")


def _probe_independence(fn, params, x):
    x_leaves, x_def = jax.tree_util.tree_flatten(x)
    if not x_leaves or any(getattr(a, "ndim", 0) == 0 for a in x_leaves):
        return False, "inputs have no batch axis"
    sizes = {a.shape[0] for a in x_leaves}
    if len(sizes) > 1:
        return False, "input leaves do not share a batch size along axis 0"
    n = sizes.pop()
    if n == 0:
        return False, "inputs have no batch axis"
    m = min(n, 2)
    # the probe's inputs are built in NumPy and the model runs compiled (one compilation
    # per probe shape, not one per operation of an eager run)
    probes = []
    for i, a in enumerate(x_leaves):
        value = _concrete(a)
        if value is not None:
            probes.append(value[:m])
            continue
        shape, dtype = (m,) + tuple(a.shape[1:]), np.dtype(a.dtype)
        if jnp.issubdtype(dtype, jnp.inexact):
            probes.append(np.random.default_rng(i).standard_normal(shape).astype(dtype))
        else:
            probes.append((np.arange(int(np.prod(shape))) % 2).astype(dtype).reshape(shape))
    leaves, treedef = jax.tree_util.tree_flatten(params)
    if any(_is_tracer(l) for l in leaves):
        keys = jax.random.split(jax.random.PRNGKey(1), max(len(leaves), 1))
        leaves = [jax.random.normal(k, jnp.shape(l), jnp.result_type(l)) * 0.5
                  if jnp.issubdtype(jnp.result_type(l), jnp.inexact) else jnp.zeros_like(l)
                  for k, l in zip(keys, leaves)]
        params = jax.tree_util.tree_unflatten(treedef, leaves)
    if m == 1:
        probes = [np.concatenate([a, _perturbed(a[0])[None]], axis=0) for a in probes]
    compiled = jax.jit(lambda p, xs: jax.tree_util.tree_leaves(
        fn(p, jax.tree_util.tree_unflatten(x_def, xs))))
    call = lambda xs: [np.asarray(o) for o in compiled(params, xs)]  # noqa: E731
    out = call(probes)
    if not out or any(o.ndim == 0 or o.shape[0] != 2 for o in out):
        shown = lambda t: tuple(t[0].shape) if len(t) == 1 else [tuple(a.shape) for a in t]  # noqa
        return False, (f"outputs of shape {shown(out) if out else None} do not lead with "
                       f"the batch axis of inputs {shown(probes)}")
    changed = []
    for a in probes:
        a = a.copy()
        a[0] = _perturbed(a[0])
        changed.append(a)
    out_changed = call(changed)
    if not all(np.array_equal(c[1], o[1]) for c, o in zip(out_changed, out)):
        return False, "changing one example changes the others' outputs"
    for i in range(2):
        alone = call([a[i:i + 1] for a in probes])
        for o, a in zip(out, alone):
            tol = 1e3 * float(jnp.finfo(o.dtype).eps) if jnp.issubdtype(o.dtype, jnp.inexact) \
                else 0.0
            scale = float(np.max(np.abs(o[i]), initial=0.0)) + 1e-30
            err = float(np.max(np.abs(a[0].astype(np.float64) - o[i].astype(np.float64)),
                               initial=0.0))
            if err > tol * scale:
                return False, (f"example {i} alone gives another output than in a batch "
                               f"(relative difference {err / scale:.2g})")
    return True, "independent: one example's change leaves the others' outputs unchanged"


# ------------------------------------------------------------------------- pytree inputs

def _compute_tree(kind, apply_fn, x1, x2, params, kwargs, trace, diag, vmap, impl,
                  param_scales, memory_budget, block_size, devices, dry_run):
    """Pytree inputs (or pytree ``vmap_axes``): each example's leaves are packed into one row
    of a ``(N, D)`` array (:class:`_Packer`) and ``apply_fn`` is wrapped to unpack it
    (:class:`_PackedInputs`); the array engine then plans, blocks and caches as usual."""
    if x2 is not None and not hasattr(x2, "shape") and not jax.tree_util.tree_leaves(x2):
        x2 = None   # neural-tangents' x2 = (None, None): the same inputs as x1
    if vmap.__class__ is _AmbiguousAxes:
        vmap = vmap.resolve(x1)
    in_axes = vmap[0] if isinstance(vmap, tuple) else None
    if (hasattr(x1, "shape") and (x2 is None or hasattr(x2, "shape"))
            and not isinstance(in_axes, _AxesTree)):
        return _compute(kind, apply_fn, x1, x2, params, kwargs, trace, diag, vmap, impl,
                        param_scales, memory_budget, block_size, devices, dry_run)
    packer = _packer(x1, x2, in_axes)
    validation.finite_tree(x1, "x1")
    if x2 is not None:
        validation.finite_tree(x2, "x2")
    p1 = validation.remember_finite(packer.pack(x1, 0))
    p2 = None if x2 is None else validation.remember_finite(packer.pack(x2, 1))
    engine_vmap = (0, vmap[1]) if isinstance(vmap, tuple) else vmap
    if packer.whole:
        engine_vmap = None
    out = _compute(kind, packer.wrap(apply_fn), p1, p2, params, kwargs, trace, diag,
                   engine_vmap, impl, param_scales, memory_budget, block_size, devices,
                   dry_run)
    if packer.whole and vmap == "auto" and dry_run is True:
        note = ("auto: input leaves do not share a batch axis 0 with one per-example shape "
                "(whole-batch derivatives)")
        for report in jax.tree_util.tree_leaves(
                out, is_leaf=lambda r: isinstance(r, dict) and "batch_detection" in r):
            report["batch_detection"] = note
    return out


_PACKERS: "collections.OrderedDict" = collections.OrderedDict()


def _packer(x1, x2, in_axes) -> "_Packer":
    """The packer of inputs with ``x1``'s (and ``x2``'s) structure, shapes and dtypes;
    ``in_axes`` ``None`` means vmap_axes ``None`` or ``'auto'`` (axis 0 where possible)."""
    l1, def1 = jax.tree_util.tree_flatten(x1)
    l2, def2 = (None, None) if x2 is None else jax.tree_util.tree_flatten(x2)
    key = (def1, tuple(_leaf_key(a) for a in l1), def2,
           None if l2 is None else tuple(_leaf_key(a) for a in l2), in_axes)
    packer = _PACKERS.get(key)
    if packer is None:
        packer = _Packer.make(x1, l1, def1, x2, l2, def2, in_axes)
        _PACKERS[key] = packer
        if len(_PACKERS) > _PLANS_MAX:
            _PACKERS.popitem(last=False)
    else:
        _PACKERS.move_to_end(key)
    return packer


def _leaf_key(a):
    shape, dtype = getattr(a, "shape", None), getattr(a, "dtype", None)
    if shape is None or dtype is None:
        return (type(a).__name__,)
    return tuple(shape), np.dtype(dtype).name


class _Packer:
    """Packs a pytree of inputs into one ``(N, D)`` array, one example per row, and back.

    Each leaf's batch axis (``in_axes``; axis 0 for ``vmap_axes`` ``None`` / ``'auto'``) is
    moved first and the rest raveled; the rows of all leaves are concatenated. Leaves of one
    dtype keep it; mixed dtypes are packed as their bytes (``uint8``, exact for every
    dtype), so no value is rounded. Unpacking inverts it, with the batch axis back in each
    leaf's place.

    Where ``vmap_axes`` is ``None`` or ``'auto'`` and the leaves do not share axis 0 (or x1
    and x2 differ in a per-example shape), the whole input is one row (``whole``: ``(1, D)``,
    whole-batch derivatives). x1 and x2 then have a layout each, told apart by their widths
    (x2's row gets a padding column where the two widths would coincide)."""

    def __init__(self, treedef, layouts, packed_dtype, whole):
        self.treedef, self.layouts, self.whole = treedef, layouts, whole
        self.packed_dtype = packed_dtype
        self.by_bytes = packed_dtype == np.dtype(np.uint8) and any(
            d != np.dtype(np.uint8) for lay in layouts for d in lay["dtypes"])
        self._by_width = {}
        for lay in layouts:
            lay["widths"] = [int(np.prod(s, dtype=np.int64)) *
                             (d.itemsize if self.by_bytes else 1)
                             for s, d in zip(lay["shapes"], lay["dtypes"])]
            width = sum(lay["widths"])
            lay["pad"] = 1 if width in self._by_width else 0
            self._by_width[width + lay["pad"]] = lay
        self._pack = [jax.jit(functools.partial(self._pack_layout, lay)) for lay in layouts]
        self._wrappers = {}

    @staticmethod
    def make(x1, l1, def1, x2, l2, def2, in_axes):
        for name, x in (("x1", x1), ("x2", x2)):
            for path, leaf in ([] if x is None else jax.tree_util.tree_leaves_with_path(x)):
                if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
                    raise TypeError(f"{name} must be an array or a pytree of arrays; its leaf "
                                    f"{jax.tree_util.keystr(path) or '(root)'} is "
                                    f"{type(leaf).__name__}")
        if x2 is not None and def2 != def1:
            raise ValueError(f"x1 and x2 must have the same pytree structure, got {def1} and "
                             f"{def2}")
        if in_axes is None:
            try:
                return _Packer._rows(x1, l1, def1, x2, l2, [0] * len(l1))
            except ValueError:   # no common axis 0: one row holds the whole input
                layouts = [_Packer._layout(l, [None] * len(l)) for l in (l1, l2) if l]
                if len(layouts) == 2 and layouts[0] == layouts[1]:
                    layouts = layouts[:1]
                return _Packer._finish(def1, layouts, whole=True)
        if isinstance(in_axes, _AxesTree):
            axes = in_axes.per_leaf(x1, "x1")
        else:
            axes = [in_axes] * len(l1)
        if all(a is None for a in axes):
            raise ValueError(f"vmap_axes: in_axes={in_axes!r} batches no input leaf of x1")
        return _Packer._rows(x1, l1, def1, x2, l2, axes)

    @staticmethod
    def _rows(x1, l1, def1, x2, l2, axes):
        """One row per example; a leaf with batch axis ``None`` is the same for every
        example (``jax.vmap``'s ``in_axes=None``) and is repeated in every row."""
        def batched(x):   # the leaves with a batch axis (all of them: x itself)
            if None not in axes:
                return x, axes
            found = jax.tree_util.tree_leaves_with_path(x)
            return ({jax.tree_util.keystr(p): leaf
                     for (p, leaf), a in zip(found, axes) if a is not None},
                    [a for a in axes if a is not None])
        validation.batch_tree(*batched(x1)[:1], "x1", batched(x1)[1])
        if x2 is not None:
            validation.batch_tree(batched(x2)[0], "x2", batched(x2)[1])
        lay = _Packer._layout(l1, axes)
        if l2 is not None:
            paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(x1)]
            lay2 = _Packer._layout(l2, axes)
            for i, (a, b) in enumerate(zip(l1, l2)):
                if a.ndim != b.ndim or lay["shapes"][i] != lay2["shapes"][i]:
                    raise ValueError(
                        f"x1 and x2 must have the same per-example shape in every leaf: leaf "
                        f"{paths[i] or '(root)'} has shape {tuple(a.shape)} in x1 and "
                        f"{tuple(b.shape)} in x2 (batch axis {axes[i]})")
            lay["dtypes"] = [np.dtype(jnp.promote_types(a, b))
                             for a, b in zip(lay["dtypes"], lay2["dtypes"])]
        return _Packer._finish(def1, [lay], whole=False)

    @staticmethod
    def _layout(leaves, axes):
        shapes, canon = [], []
        for a, axis in zip(leaves, axes):
            if axis is None:
                shapes.append(tuple(a.shape))
                canon.append(None)
            else:
                axis %= a.ndim
                shapes.append(tuple(s for d, s in enumerate(a.shape) if d != axis))
                canon.append(axis)
        return {"shapes": shapes, "axes": canon, "dtypes": [np.dtype(a.dtype) for a in leaves]}

    @staticmethod
    def _finish(treedef, layouts, whole):
        dtypes = {d for lay in layouts for d in lay["dtypes"]}
        packed = dtypes.pop() if len(dtypes) == 1 else np.dtype(np.uint8)
        if packed == np.dtype(np.bool_):
            packed = np.dtype(np.uint8)
        return _Packer(treedef, layouts, packed, whole)

    def pack(self, x, which: int = 0):
        """``x`` (x1: ``which=0``, x2: ``1``) as one ``(N, D)`` array."""
        return self._pack[min(which, len(self._pack) - 1)](x)

    def _pack_layout(self, lay, x):
        rows = []
        for a, dtype, axis in zip(jax.tree_util.tree_leaves(x), lay["dtypes"], lay["axes"]):
            a = jnp.asarray(a).astype(dtype)
            a = a[None] if axis is None else jnp.moveaxis(a, axis, 0)
            if dtype == np.dtype(np.bool_):
                a = a.astype(np.uint8)
            elif self.by_bytes:   # (n, *shape[, itemsize]) bytes
                a = lax.bitcast_convert_type(a, np.uint8)
            rows.append(a.reshape(a.shape[0], int(np.prod(a.shape[1:], dtype=np.int64)))
                        .astype(self.packed_dtype))
        n = max(r.shape[0] for r in rows)   # an unbatched leaf: the same in every row
        rows = [r if r.shape[0] == n else jnp.broadcast_to(r, (n,) + r.shape[1:])
                for r in rows]
        if lay["pad"]:
            rows.append(jnp.zeros((rows[0].shape[0], 1), self.packed_dtype))
        return rows[0] if len(rows) == 1 else jnp.concatenate(rows, axis=1)

    def unpack(self, packed):
        """The pytree of a packed ``(N, D)`` array."""
        lay = self._by_width[packed.shape[-1]]
        n = packed.shape[0]
        leaves, start = [], 0
        for shape, dtype, axis, width in zip(lay["shapes"], lay["dtypes"], lay["axes"],
                                             lay["widths"]):
            cols = lax.slice_in_dim(packed, start, start + width, axis=1)
            start += width
            if dtype == np.dtype(np.bool_):
                a = cols.reshape((n,) + shape) != 0
            elif self.by_bytes and dtype.itemsize > 1:
                a = lax.bitcast_convert_type(cols.reshape((n,) + shape + (dtype.itemsize,)),
                                             dtype)
            elif self.by_bytes:
                a = lax.bitcast_convert_type(cols.reshape((n,) + shape), dtype)
            else:
                a = cols.reshape((n,) + shape).astype(dtype)
            leaves.append(a[0] if axis is None else jnp.moveaxis(a, 0, axis))
        return jax.tree_util.tree_unflatten(self.treedef, leaves)

    def wrap(self, fn) -> "_PackedInputs":
        """``fn`` taking packed inputs; one object per ``fn``, so plans cache."""
        wrapper = self._wrappers.get(fn)
        if wrapper is None:
            wrapper = self._wrappers[fn] = _PackedInputs(fn, self)
        return wrapper


class _PackedInputs:
    """``apply_fn(params, x_tree)`` as a function of packed inputs ``(N, D)``."""

    def __init__(self, fn, packer: _Packer):
        self.fn, self.packer = fn, packer

    def __call__(self, params, x, **kwargs):
        return self.fn(params, self.packer.unpack(x), **kwargs)


def _make_plan(kind, apply_fn, x1, x2, params, leaves, treedef, kwargs, trace, diag, vmap,
               impl, scales, memory_budget, block_size, devices):
    args = (kind, apply_fn, x1, x2, params, leaves, treedef, kwargs, trace, diag, vmap, impl,
            scales, memory_budget, block_size, devices)
    if not (isinstance(vmap, tuple) and isinstance(vmap[1], _AxesTree)):
        try:
            return _make_array_plan(*args)
        except _TreeOutput:
            pass
    return _make_tree_plan(*args)


def _make_tree_plan(kind, apply_fn, x1, x2, params, leaves, treedef, kwargs, trace, diag,
                    vmap, impl, scales, memory_budget, block_size, devices):
    """One plan per leaf of a pytree output, each the plan of ``apply_fn`` followed by taking
    that leaf (neural-tangents' semantics: no covariance between different output leaves);
    batch independence is decided once for the whole output."""
    out = validation.output_shape(apply_fn, params, x1, "x1", **kwargs)
    found, out_def = jax.tree_util.tree_flatten_with_path(out)
    if not found:
        raise TypeError(f"apply_fn returned no arrays: {out_def}")
    if x2 is not None:
        out2 = validation.output_shape(apply_fn, params, x2, "x2", **kwargs)
        if jax.tree_util.tree_structure(out2) != out_def:
            raise ValueError(f"apply_fn's outputs for x1 and x2 have different structures: "
                             f"{out_def} and {jax.tree_util.tree_structure(out2)}")
    detection = "given by vmap_axes"
    if vmap == "auto":
        independent, reason = detect_batch_independence(apply_fn, params, x1, kwargs)
        vmap = (0, 0) if independent else None
        detection = ("auto: " + reason + (" (vmap over axis 0)" if independent
                                          else " (whole-batch derivatives)"))
    elif vmap is None:
        detection = "vmap_axes=None: whole-batch derivatives"
    if vmap is None:
        per_leaf = [None] * len(found)
    else:
        in_axis, out_axes = vmap
        axes = (out_axes.per_leaf(out, "apply_fn's output")
                if isinstance(out_axes, _AxesTree) else [out_axes] * len(found))
        for (path, _), axis in zip(found, axes):
            if axis is None:
                raise ValueError(f"vmap_axes: out_axes gives output leaf "
                                 f"{jax.tree_util.keystr(path)} no batch axis (None); every "
                                 "output leaf needs one")
        per_leaf = [(in_axis, axis) for axis in axes]
    plans = []
    for k, ((path, _), leaf_vmap) in enumerate(zip(found, per_leaf)):
        try:
            plan = _make_array_plan(kind, _OutputLeaf(apply_fn, k), x1, x2, params, leaves,
                                    treedef, kwargs, trace, diag, leaf_vmap, impl, scales,
                                    memory_budget, block_size, devices)
        except (ValueError, TypeError) as err:
            err.add_note(f"(in the kernel of output leaf {jax.tree_util.keystr(path)} of "
                         f"{out_def})")
            raise
        plan.info["batch_detection"] = detection
        plans.append(plan)
    return _TreePlan(out_def, plans)


class _OutputLeaf:
    """``apply_fn`` followed by taking its ``index``-th output leaf."""

    def __init__(self, fn, index: int):
        self.fn, self.index = fn, index

    def __call__(self, params, x, **kwargs):
        return jax.tree_util.tree_leaves(self.fn(params, x, **kwargs))[self.index]


def _make_array_plan(kind, apply_fn, x1, x2, params, leaves, treedef, kwargs, trace, diag,
                     vmap, impl, scales, memory_budget, block_size, devices):
    detection = "given by vmap_axes"
    if vmap == "auto":
        _output_shape(apply_fn, params, x1, kwargs)     # a clear error before the probing
        independent, reason = detect_batch_independence(apply_fn, params, x1, kwargs)
        vmap = (0, 0) if independent else None
        detection = ("auto: " + reason + (" (vmap over axis 0)" if independent
                                          else " (whole-batch derivatives)"))
    elif vmap is None:
        detection = "vmap_axes=None: whole-batch derivatives"
    in_axis = vmap[0] if vmap is not None else 0
    active = [i for i, s in enumerate(scales) if s != 0.0]

    if vmap is None:  # no assumption about the batch: shapes of the whole calls
        out_shape, out_dtype = _output_shape(apply_fn, params, x1, kwargs)
        try:
            out2_shape = out_shape if x2 is None else \
                _output_shape(apply_fn, params, x2, kwargs)[0]
        except TypeError as e:
            if x1.shape[1:] != x2.shape[1:]:
                raise ValueError(f"x1 and x2 must have the same per-example shape: x1 has "
                                 f"shape {tuple(x1.shape)} and x2 has shape "
                                 f"{tuple(x2.shape)}") from e
            raise
        if len(out2_shape) != len(out_shape):
            raise ValueError(f"apply_fn's outputs for x1 {out_shape} and x2 {out2_shape} "
                             "have different ranks")
        batch_like = (out_shape[0] == x1.shape[0]
                      and (x2 is None or out2_shape[0] == x2.shape[0]))
    else:
        if x2 is not None:
            f1 = tuple(np.delete(np.array(x1.shape), in_axis % x1.ndim))
            f2 = tuple(np.delete(np.array(x2.shape), in_axis % x2.ndim))
            if x1.ndim != x2.ndim or f1 != f2:
                raise ValueError(f"x1 and x2 must have the same per-example shape: x1 has "
                                 f"shape {tuple(x1.shape)} and x2 has shape "
                                 f"{tuple(x2.shape)} (batch axis {in_axis})")
        probe = jax.ShapeDtypeStruct(
            tuple(1 if d == in_axis % x1.ndim else s for d, s in enumerate(x1.shape)), x1.dtype)
        out_shape, out_dtype = _output_shape(apply_fn, params, probe, kwargs)
        batch_like = True
    batch_axis = vmap[1] if vmap is not None else 0
    if not -len(out_shape) <= batch_axis < len(out_shape):
        raise ValueError(f"vmap_axes: output axis {batch_axis} out of range for outputs of "
                         f"shape {out_shape}")
    batch_axis %= len(out_shape)
    ndim = len(out_shape)
    shown = list(out_shape)  # the batch's output shape, for messages
    if vmap is not None:
        shown[batch_axis] = x1.shape[in_axis]
    tr = _canonical_axes(trace, ndim, "trace_axes", shown)
    dg = _canonical_axes(diag, ndim, "diagonal_axes", shown)
    if set(tr) & set(dg):
        raise ValueError(f"trace_axes={trace} and diagonal_axes={diag} share axes")
    if vmap is None:
        for a in tr + dg:
            if out_shape[a] != out2_shape[a]:
                raise ValueError(f"output axis {a} is traced or diagonal but has size "
                                 f"{out_shape[a]} for x1 and {out2_shape[a]} for x2")
        n1, n2 = out_shape[0], out2_shape[0]
    else:
        n1 = x1.shape[in_axis]
        n2 = n1 if x2 is None else x2.shape[in_axis]
    batch_mean = batch_axis in tr
    if batch_mean or batch_axis in dg:
        if n1 != n2:
            raise ValueError(f"tracing or taking the diagonal over the batch axis needs as "
                             f"many x1 as x2 inputs, got N1={n1} and N2={n2}")
        tr = tuple(a for a in tr if a != batch_axis)
        dg = tuple(sorted(dg + (batch_axis,)))

    full_shape = list(out_shape)
    full_shape[batch_axis] = n1
    layout = _Layout(full_shape, tr, dg, batch_axis)
    # the output's batch axis counted from the front: per-example features carry parameter
    # axes after the output's, where a negative axis would land among them
    model = _Model(apply_fn, treedef, kwargs, None if vmap is None else (vmap[0], batch_axis))
    per_call_out = int(np.prod(out_shape)) // (out_shape[batch_axis] if batch_like else 1)
    dtype = jnp.result_type(out_dtype, *[jnp.result_type(l) for l in leaves]) if leaves \
        else out_dtype
    itemsize = jnp.dtype(dtype).itemsize
    out_entries = n1 * (1 if layout.batch_paired else n2) * layout.out_pairs
    budget = int(memory_budget or _budget.default_memory_budget())
    base_info = {"batch_independent": vmap is not None, "batch_detection": detection,
                 "memory_budget": budget, "output_bytes": out_entries * itemsize}

    def finish(result):
        if batch_mean:
            result = jnp.mean(result, axis=layout.concat_axis(1))
        return result / layout.trace_size

    def in_block(result):
        # the division by the traced size, inside a block's compiled function: a call of one
        # block then costs one dispatch, not two
        return result if batch_mean else result / layout.trace_size

    def finish_blocks(result):
        # what is left after the blocks: the mean over a traced batch axis
        return finish(result) if batch_mean else result

    if kind == "nngp":
        profile = _profile(model, leaves, x1, in_axis, n1 if batch_like else 1)
        live = min(profile.activation_size, 4 * profile.max_activation)

        def nngp_bytes(b1, b2):
            # both sides' outputs (and a copy where the contraction transposes them), the
            # live values of their forward passes (at most four of the largest per example:
            # XLA fuses the elementwise rest) and the tile
            b2 = b1 if layout.batch_paired else b2
            return (b1 + b2) * (per_call_out * 2 + live) + b1 * b2 * layout.out_pairs

        if not batch_like:
            block_size = (n1, n2)
        bplan = _budget.plan_blocks(n1, n2, lambda a, b: nngp_bytes(a, b) * itemsize,
                                    out_entries * itemsize, budget, block_size, "NNGP kernel")

        def block(lv, xa, xb):
            fa = model.batch(lv, xa)
            fb = fa if xb is None else model.batch(lv, xb)
            return in_block(layout.contract(fa, fb))

        run = _distributed.row_sharded(block, devices, in_axis)
        info = dict(base_info, block_size=(bplan.block1, bplan.block2),
                    bytes_per_block=bplan.bytes_per_block,
                    tile_bytes=_tile_entries(layout, bplan) * itemsize)
        return _Plan(lambda lv, a, b: finish_blocks(_run_blocks(run, lv, a, b, bplan, layout,
                                                                in_axis, devices, n1, n2)), info,
                     _lower_tile_block(block, bplan, layout, in_axis, n1, n2))

    analysis = _profile(model, leaves, x1, in_axis, n1 if batch_like else 1)
    examples = 1 if vmap is not None else max(n1 if batch_like else 1, 1)
    sizes = [int(np.prod(jnp.shape(l))) for l in leaves]
    # a leaf with several uses keeps its structured rule only where that is cheaper
    shared_fallback = _shared_fallback(analysis, active, layout, n1, n2, per_call_out,
                                       x2 is None, sizes)
    if shared_fallback:
        analysis.taps = [t for t in analysis.taps if t.leaf not in shared_fallback]
        analysis.fallback = sorted(set(analysis.fallback) | set(shared_fallback))

    # -- streamed Jacobian contraction (vmap mode, or batch mode split by output rows)
    row_axis = batch_axis if vmap is not None else 0
    streamable = {a: full_shape[a] for a in tr + dg if a != row_axis and full_shape[a] > 1}
    stream = None
    if devices is None and (vmap is not None or batch_like or block_size is None):
        per_row = int(np.prod(full_shape)) // full_shape[row_axis]
        rows_n1 = n1 if vmap is not None else out_shape[0]
        rows_n2 = n2 if vmap is not None else out2_shape[0]
        bs = None if block_size is None else (
            (block_size, block_size) if isinstance(block_size, int) else tuple(block_size))
        if bs is not None and (bs[0] <= 0 or bs[1] <= 0):
            raise ValueError(f"block_size must be positive, got {block_size!r}")
        stream = _streaming.plan(
            n1=rows_n1, n2=rows_n2, symmetric=x2 is None, batch_paired=layout.batch_paired,
            vmap=vmap is not None, n_batch=examples, per_row_out=per_row,
            streamable=streamable, sizes=sizes, active=active,
            flops_forward=analysis.flops_forward, activation_size=analysis.activation_size,
            max_activation=analysis.max_activation, max_patch=analysis.max_patch,
            pairs=layout.pairs,
            out_pairs=layout.out_pairs, traced=tr, contract_copies=layout.contract_copies,
            output_bytes=out_entries * itemsize, itemsize=itemsize, budget=budget,
            block_size=bs, **_conv_cpu_factors(analysis, vmap))

    flops, block_bytes, ntvp_columns = _costs(
        analysis, leaves, active, layout, n1, n2, per_call_out, symmetric=x2 is None,
        examples=examples, budget=budget, itemsize=itemsize)
    tile_plans = {}
    for name in (Implementation.NTVP, Implementation.STRUCTURED, Implementation.JACOBIAN):
        bs = block_size if batch_like else (n1, n2)
        try:
            tile_plans[name] = _budget.plan_blocks(
                n1, n2, lambda a, b, name=name: block_bytes[name](a, b) * itemsize,
                out_entries * itemsize, budget, bs, f"empirical NTK ({name.value})")
        except _budget.MemoryBudgetError as err:
            tile_plans[name] = err
    # whole-kernel cost: derivatives recomputed once per tile they appear in
    for name, tp in tile_plans.items():
        if isinstance(tp, _budget.BlockPlan):
            flops[name] = _tile_cost(flops[name], analysis, tp, n1, n2, x2 is None)
    if stream is not None:
        flops[Implementation.JACOBIAN] = stream.flops

    def feasible(name):
        if name is Implementation.JACOBIAN and stream is not None:
            return True
        tp = tile_plans[name]
        if not isinstance(tp, _budget.BlockPlan):
            return False
        return batch_like or tp.bytes_per_block + tp.output_bytes <= budget

    if impl is Implementation.AUTO:
        candidates = [k for k in flops if feasible(k)]
        if not candidates:
            err = tile_plans[Implementation.JACOBIAN]
            raise err if isinstance(err, Exception) else _budget.MemoryBudgetError(
                "the empirical NTK does not fit memory_budget=" + _budget.format_bytes(budget)
                + "; " + _budget.CHEAPER_OPTIONS)
        impl = min(candidates, key=flops.get)
    elif not feasible(impl):
        err = tile_plans[impl]
        if isinstance(err, Exception):
            raise err
        raise _budget.MemoryBudgetError(
            f"the empirical NTK needs {_budget.format_bytes(err.bytes_per_block)} in one "
            f"block but memory_budget={_budget.format_bytes(budget)}, and it cannot be cut "
            "into blocks without vmap_axes (outputs do not lead with the batch axis); "
            + _budget.CHEAPER_OPTIONS)

    info = dict(base_info, implementation=impl.value,
                flops={k.value: float(v) for k, v in flops.items()},
                flops_forward_per_example=float(analysis.flops_forward),
                structured_leaves=sorted({t.leaf for t in analysis.taps}),
                fallback_leaves=sorted(analysis.fallback))

    if impl is Implementation.JACOBIAN and stream is not None:
        info.update(block_size=(stream.row_block, stream.col_block),
                    bytes_per_block=stream.bytes_per_block,
                    feature_bytes=stream.feature_bytes, tile_bytes=stream.tile_bytes,
                    streamed_axis=stream.chunk_axis, chunk=stream.chunk,
                    leaf_groups=len(stream.groups))
        execute = _stream_executor(model, layout, stream, scales, row_axis, in_axis,
                                   n1 if vmap is not None else out_shape[0],
                                   n2 if vmap is not None else out2_shape[0], vmap)
        return _Plan(lambda lv, a, b: finish(execute(lv, a, b)), info, execute.lower)

    tp = tile_plans[impl]
    info.update(block_size=(tp.block1, tp.block2), bytes_per_block=tp.bytes_per_block,
                tile_bytes=_tile_entries(layout, tp) * itemsize)
    chunk = 0
    if impl is Implementation.NTVP:
        chunk = ntvp_columns(tp.block1, tp.block2)[1]
    if impl is Implementation.JACOBIAN:
        part = functools.partial(_jacobian_block, model, layout, scales=scales, active=active)
    elif impl is Implementation.NTVP:
        part = functools.partial(_ntvp_block, model, layout, scales=scales, active=active,
                                 chunk=chunk)
    else:
        feature_fn = _structured_feature_fn(model, leaves, active, shared_fallback)
        part = functools.partial(_structured_block, model, layout, scales=scales,
                                 active=active, feature_fn=feature_fn)

    def block(lv, xa, xb):
        return in_block(part(lv, x1=xa, x2=xb))

    run = _distributed.row_sharded(block, devices, in_axis)
    return _Plan(lambda lv, a, b: finish_blocks(_run_blocks(run, lv, a, b, tp, layout, in_axis,
                                                            devices, n1, n2)), info,
                 _lower_tile_block(block, tp, layout, in_axis, n1, n2))


def _tile_entries(layout: _Layout, plan) -> int:
    """Entries of one block's result under a :class:`ntk.budget.BlockPlan`."""
    rows = plan.block1 if layout.batch_paired else plan.block1 * plan.block2
    return rows * layout.out_pairs


def _conv_cpu_factors(analysis, vmap) -> dict:
    """Measured slowdowns of per-example convolution weight gradients on CPU (see
    :func:`ntk.streaming.plan`): 4x per pass, 2x more per row when rows are batched."""
    if vmap is None or not analysis.has_conv or jax.default_backend() != "cpu":
        return {}
    return {"backward_factor": 4.0, "row_batch_penalty": 2.0}


def _tile_cost(flops, analysis, tp, n1, n2, symmetric):
    """Scale the derivative part of a tile-based implementation's FLOPs by how often its
    blocks recompute derivatives (each tile derives both of its sides)."""
    if tp.block1 >= n1 and tp.block2 >= n2:
        return flops
    computed = n1 * math.ceil(n2 / tp.block2) + n2 * math.ceil(n1 / tp.block1)
    once = n1 if symmetric else n1 + n2
    return flops * computed / max(once, 1)


def _stream_executor(model, layout, stream, scales, row_axis, in_axis, n1, n2, vmap):
    """``execute(leaves, x1, x2)`` for a :class:`ntk.streaming.StreamPlan`."""
    groups = stream.groups
    chunk_axis = stream.chunk_axis
    full_ndim = layout.ndim
    if vmap is not None and chunk_axis is not None:
        call_axis = chunk_axis - (1 if chunk_axis > row_axis else 0)
    else:
        call_axis = chunk_axis
    cache = {}

    def make_features(g, size):
        group = groups[g]

        def with_group(lv, values):
            full = list(lv)
            for i, v in zip(group, values):
                full[i] = v
            return full

        if vmap is not None:
            def per_call(lv, xc, c0):
                def f(values):
                    out = model.call(with_group(lv, values), xc)
                    if call_axis is not None:
                        out = lax.dynamic_slice_in_dim(out, c0, stream.chunk, axis=call_axis)
                    return out
                return jax.jacrev(f)([lv[i] for i in group])

            def features(lv, x, start, c0):
                xb = lax.dynamic_slice_in_dim(x, start, size, axis=in_axis)
                jac = jax.vmap(per_call, in_axes=(None, in_axis, None))(lv, xb, c0)
                return [jnp.moveaxis(j, 0, row_axis) for j in jac]
        else:
            def features(lv, x, start, c0):
                def f(values):
                    out = model.call(with_group(lv, values), x)
                    out = lax.dynamic_slice_in_dim(out, start, size, axis=0)
                    if call_axis is not None:
                        out = lax.dynamic_slice_in_dim(out, c0, stream.chunk, axis=call_axis)
                    return out
                return jax.jacrev(f)([lv[i] for i in group])
        return jax.jit(features)

    def features_fn(g, size):
        fn = cache.get((g, size))
        if fn is None:
            fn = cache[(g, size)] = make_features(g, size)
        return fn

    def features(lv, x, start, size, g, c0):
        return features_fn(g, size)(lv, x, start, c0)

    grams = {}

    def gram_fn(g):
        fn = grams.get(g)
        if fn is None:
            group = groups[g]

            def contract(a, b):
                total = 0.0
                for k, i in enumerate(group):
                    part = layout.contract(a[k], b[k], a[k].ndim - full_ndim)
                    total = total + (part if scales[i] == 1.0 else scales[i] * part)
                return total
            fn = grams[g] = jax.jit(contract)
        return fn

    def gram(g, fa, fb):
        return gram_fn(g)(fa, fb)

    perm = layout.swap_permutation()

    def swap(t):
        return jnp.transpose(t, perm)

    def drop(t, axis, skip):
        return t if skip == 0 else lax.slice_in_dim(t, skip, t.shape[axis], axis=axis)

    chunk_result_axis = None
    if chunk_axis is not None and chunk_axis not in layout.trace_axes:
        chunk_result_axis = layout.out.index(layout.left[chunk_axis])

    def execute(lv, x1, x2):
        return _streaming.run(stream, features=features, gram=gram, leaves=lv, x1=x1, x2=x2,
                              n1=n1, n2=n2 if x2 is not None else n1, symmetric=x2 is None,
                              batch_paired=layout.batch_paired,
                              concat1=layout.concat_axis(1), concat2=layout.concat_axis(2),
                              chunk_result_axis=chunk_result_axis, swap=swap, drop=drop)

    def lower(lv, x1, x2):
        # the largest leaf group; the column side is derived separately unless x2 is None
        # and the block is its own column block (as in _streaming.run)
        sizes = [int(np.prod(jnp.shape(l))) for l in lv]
        g = max(range(len(groups)), key=lambda k: sum(sizes[i] for i in groups[k]))
        specs = [_spec(l) for l in lv]
        b1, b2 = stream.row_block, stream.col_block
        one_side = x2 is None and (layout.batch_paired or (b1 >= n1 and b2 >= n2))
        xs1, xs2 = _spec(x1), _spec(x1 if x2 is None else x2)
        out = {"features_x1": features_fn(g, b1).lower(specs, xs1, 0, 0)}
        fa = fb = jax.eval_shape(features_fn(g, b1), specs, xs1, 0, 0)
        if not one_side:
            size = b1 if layout.batch_paired else b2
            out["features_x2"] = features_fn(g, size).lower(specs, xs2, 0, 0)
            fb = jax.eval_shape(features_fn(g, size), specs, xs2, 0, 0)
        out["gram"] = gram_fn(g).lower(fa, fb)
        return out

    execute.lower = lower
    return execute


def _device_key(devices):
    if devices is None or isinstance(devices, str):
        return devices
    return tuple(d.id for d in devices)


def _structured_feature_fn(model: _Model, leaves, active, fallback=()):
    avals = [jax.ShapeDtypeStruct(jnp.shape(l), jnp.result_type(l)) for l in leaves]
    traced = {}

    def feature_fn(lv, x_call):
        key = (tuple(x_call.shape), str(x_call.dtype))
        if key not in traced:
            aval = jax.ShapeDtypeStruct(key[0], x_call.dtype)
            traced[key] = _structured.make_feature_fn(model.call, avals, aval, active=active,
                                                      fallback=fallback)[0]
        return traced[key](lv, x_call)

    return feature_fn


def _run_blocks(run, leaves, x1, x2, plan, layout, in_axis, devices, n1, n2):
    if devices is not None and layout.concat_axis(1) != 0:
        raise ValueError("devices: sharding needs the x1 batch axis to be the kernel's "
                         f"leading axis; got vmap_axes output axis {layout.batch_axis}")
    b1, b2 = plan.block1, plan.block2
    paired = layout.batch_paired
    if b1 >= n1 and b2 >= n2:
        return run(leaves, x1, x2)
    ax1, ax2 = layout.concat_axis(1), layout.concat_axis(2)
    rows = []
    for i in range(0, n1, b1):
        xa = jax.lax.slice_in_dim(x1, i, min(i + b1, n1), axis=in_axis)
        if paired:
            xb = None if x2 is None else jax.lax.slice_in_dim(x2, i, min(i + b1, n1),
                                                                axis=in_axis)
            rows.append(run(leaves, xa, xb))
            continue
        cols = []
        for j in range(0, n2, b2):
            src = x1 if x2 is None else x2
            xb = jax.lax.slice_in_dim(src, j, min(j + b2, n2), axis=in_axis)
            if x2 is None and i == j and xa.shape == xb.shape:
                xb = None
            cols.append(run(leaves, xa, xb))
        rows.append(jnp.concatenate(cols, axis=ax2) if len(cols) > 1 else cols[0])
    return jnp.concatenate(rows, axis=ax1) if len(rows) > 1 else rows[0]
