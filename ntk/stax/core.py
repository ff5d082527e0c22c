"""Layer machinery: the ``kernel_fn`` object every ``ntk.stax`` layer returns.

A layer is the triple ``(init_fn, apply_fn, kernel_fn)`` of ``jax.example_libraries.stax``
plus the infinite-width ``kernel_fn``:

* ``init_fn(key, input_shape) -> (output_shape, params)``
* ``apply_fn(params, x, **kwargs) -> y``
* ``kernel_fn(x1, x2=None, get=None, *, diagonal_spatial=False, batch_size=None,
  memory_budget=None) -> Kernel`` (or one array when ``get`` is a name, a namedtuple when
  ``get`` is a tuple of names). ``kernel_fn`` also accepts a :class:`Kernel` (or a list of them
  for multi-input layers) and returns the transformed ``Kernel``, so layers compose by hand.

Inside, a ``KernelFn`` holds a pure map ``transform(kernel, out_full) -> kernel`` and a rule
``input_full(out_full) -> bool`` that says whether its input must keep covariances between
*different* spatial positions (full layout) given what its output must keep; ``serial`` chains
both so that, e.g., a CNN read out by ``Flatten`` only ever stores equal-position covariances.
"""
from __future__ import annotations

import collections
import functools
import math
import warnings
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ntk.stax.kernel import Kernel, input_kernel, to_diagonal

__all__ = ["KernelFn", "GET_NAMES", "check_std", "check_positive_int"]

GET_NAMES = ("nngp", "ntk", "cov1", "cov2")
#: neural-tangents' ``get`` also reads the shapes of the activations the kernel describes,
#: in their own layout (``batch_axis`` / ``channel_axis`` where the layers put them)
SHAPE_NAMES = ("shape1", "shape2")

#: how many kernel-sized float arrays one block keeps alive at once (nngp, ntk, the variances
#: broadcast to the kernel's shape and the temporaries of a dual activation)
_LIVE_ARRAYS = 10


def check_std(name: str, value, allow_none: bool = False):
    """Validate a standard deviation argument (``W_std``, ``b_std``): finite and >= 0."""
    if value is None:
        if allow_none:
            return None
        raise ValueError(f"{name} must be a finite non-negative number, got None")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a finite non-negative number, got "
                        f"{type(value).__name__} {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite non-negative number, got {value!r}")
    return v


def check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _is_kernel_input(x) -> bool:
    if isinstance(x, Kernel):
        return True
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(isinstance(k, Kernel) for k in x)


def _map_kernels(fn, ks):
    """``fn`` on a kernel, or on every kernel of a (nested: ``parallel`` inside ``parallel``)
    list of them."""
    if isinstance(ks, Kernel):
        return fn(ks)
    return [_map_kernels(fn, k) for k in ks]


def kernel_leaves(ks) -> list:
    """The kernels of a kernel or of a (nested) list of them, in order."""
    if isinstance(ks, Kernel):
        return [ks]
    return [k for sub in ks for k in kernel_leaves(sub)]


def diagonalize(ks):
    """Drop off-diagonal spatial covariances from a kernel or a list of kernels."""
    return _map_kernels(to_diagonal, ks)


def _validate_inputs(x1, x2, name: str):
    """Shape checks at the public boundary; returns ``(x1, x2)`` as jnp arrays."""
    def as_array(x, arg):
        if isinstance(x, (list, tuple)):
            raise TypeError(f"{name}: {arg} is a {type(x).__name__}; this network takes one "
                            f"array (pass a list only to a network that starts with parallel)")
        try:
            x = jnp.asarray(x)
        except TypeError:
            raise TypeError(f"{name}: {arg} must be an array, got {type(x).__name__}") from None
        if x.ndim < 2:
            raise ValueError(f"{name}: {arg} must have shape (N, ..., C) with at least 2 axes "
                             f"(batch and features), got shape {x.shape}")
        if not jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(jnp.result_type(float))
        try:
            finite = bool(jnp.all(jnp.isfinite(x)))
        except jax.errors.ConcretizationTypeError:  # under jit: cannot look at the values
            finite = True
        if not finite:
            raise ValueError(f"{name}: {arg} contains non-finite values (nan or inf)")
        try:
            largest = float(jnp.max(jnp.abs(x))) if x.size else 0.0
        except jax.errors.ConcretizationTypeError:
            largest = 0.0
        limit = float(jnp.finfo(x.dtype).max)
        if largest and largest ** 2 * np.prod(x.shape[1:]) > limit / 16:
            warnings.warn(f"{name}: {arg} has entries up to {largest:.3g}, whose second moments "
                          f"overflow {x.dtype} (max {limit:.3g}): the kernel will be inf or NaN."
                          f" Rescale the inputs or compute in float64 "
                          f"(jax.config.update('jax_enable_x64', True)).", RuntimeWarning,
                          stacklevel=4)
        return x

    x1 = as_array(x1, "x1")
    if x2 is None:
        return x1, None
    x2 = as_array(x2, "x2")
    if x1.shape[1:] != x2.shape[1:]:
        raise ValueError(f"{name}: x1 and x2 must agree in every axis but the batch axis; got "
                         f"x1.shape={x1.shape} and x2.shape={x2.shape}")
    if x1.dtype != x2.dtype:
        dtype = jnp.promote_types(x1.dtype, x2.dtype)
        x1, x2 = x1.astype(dtype), x2.astype(dtype)
    return x1, x2


PRECISION_TOLERANCE = 1e-3


def rounding_error_bound(k: Kernel) -> Optional[float]:
    """A first-order bound on the relative rounding error of ``k.nngp`` (None without the NTK
    or under tracing).

    Each layer's NNGP carries a rounding error of about ``eps`` relative to itself, and a later
    layer multiplies an absolute error in its input covariance by ``sigma_w^2 Tdot`` (``Tdot`` is
    the derivative of the activation's dual map). The NTK recursion sums exactly these
    products, ``Theta_L = sum_l K_l prod_{l' > l} sigma_w^2 Tdot_l'``, so the accumulated error
    is at most about ``eps Theta_L``, and relative to the output variances ``eps max|Theta| /
    max q``. In the ordered phase and at criticality ``Theta / K`` grows like the depth; in the
    chaotic phase like ``chi_1^depth``: there float32 (``eps = 1.2e-7``) loses every digit by
    depth 50-100 (``chi_1 ~ 1.3-1.5``) while float64 holds.
    """
    if k.ntk is None or not k.ntk.size or not k.cov1.size:
        return None
    try:
        ntk_scale = float(jnp.max(jnp.abs(k.ntk)))
        var_scale = float(jnp.max(jnp.abs(k.cov1)))
    except (jax.errors.ConcretizationTypeError, TypeError):
        return None
    if not (math.isfinite(ntk_scale) and var_scale > 0):
        return None
    return float(jnp.finfo(k.ntk.dtype).eps) * ntk_scale / var_scale


#: dtypes whose rounding a deep network can amplify past ``PRECISION_TOLERANCE`` at depths in
#: use (float32 by depth 50-100 in the chaotic phase; float64 only past amplification 4e12):
#: in these the NTK is computed even when only the NNGP is asked for, to bound the error
_BOUND_EPS = 1e-10


def needs_rounding_bound(dtype) -> bool:
    """Whether kernels in ``dtype`` carry the NTK for :func:`rounding_error_bound` even when
    only the NNGP is asked for (float32 and narrower)."""
    return jnp.issubdtype(dtype, jnp.floating) and float(jnp.finfo(dtype).eps) > _BOUND_EPS


def _non_finite(k) -> bool:
    try:
        return any(m is not None and m.size and not bool(jnp.all(jnp.isfinite(m)))
                   for m in (k.nngp, k.ntk, k.cov1, k.cov2))
    except (jax.errors.ConcretizationTypeError, TypeError):
        return False  # traced: cannot look


def _warn_if_imprecise(k, name: str) -> None:
    """Warn when a kernel is not to be trusted: non-finite entries, or a rounding bound above
    ``PRECISION_TOLERANCE``. Either covers the kernels that come back non-PSD."""
    if isinstance(k, (list, tuple)):
        return
    if _non_finite(k):
        dtype = k.nngp.dtype
        warnings.warn(f"{name}: the kernel has non-finite entries (inf or NaN): its variances "
                      f"left {dtype}'s range (max {float(jnp.finfo(dtype).max):.3g}), e.g. a "
                      f"deep network whose W_std makes them grow geometrically, or the "
                      f"inputs are too large. Compute in float64 "
                      f"(jax.config.update('jax_enable_x64', True)) or rescale.",
                      RuntimeWarning, stacklevel=3)
        return
    bound = rounding_error_bound(k)
    if bound is not None and bound > PRECISION_TOLERANCE:
        warnings.warn(f"{name}: the kernel may be off by up to {bound:.2g} (relative) from "
                      f"rounding in {k.ntk.dtype}: this network amplifies the error of every "
                      f"layer (max NTK / max variance = "
                      f"{bound / float(jnp.finfo(k.ntk.dtype).eps):.3g}). Compute in float64 "
                      f"(jax.config.update('jax_enable_x64', True)).", RuntimeWarning,
                      stacklevel=3)


def _parse_get(get):
    if get is None:
        return None, True
    if isinstance(get, str):
        names = (get,)
    elif isinstance(get, (tuple, list)) and all(isinstance(g, str) for g in get):
        names = tuple(get)
    else:
        raise TypeError(f"get must be None, one of {GET_NAMES} or a tuple of them, got {get!r}")
    bad = [g for g in names if g not in GET_NAMES + SHAPE_NAMES]
    if bad or not names:
        raise ValueError(f"get: unknown kernel name(s) {bad or names!r}; valid names are "
                         f"{GET_NAMES} and neural-tangents' {SHAPE_NAMES}")
    return names, "ntk" in names


@functools.lru_cache(maxsize=None)
def _namedtuple(names: tuple):
    return collections.namedtuple("Kernels", names)


def _select(k, get, single):
    if get is None:
        return k
    if isinstance(k, (list, tuple)):
        return [_select(ki, get, single) for ki in k]
    def value(g):
        if g in SHAPE_NAMES:  # the activations' shape as they are laid out
            return layout_shape(getattr(k, g), *layout_of(k))
        return getattr(k, g)
    vals = tuple(value(g) for g in get)
    return vals[0] if single else _namedtuple(get)(*vals)


_NT_KERNEL_KWARGS = {"rng": None, "diagonal_batch": True, "mask_constant": None,
                     "pattern": None}


def _mask_inputs(x, mask_constant):
    """``(x with masked entries zeroed, mask)`` for an input or a list of inputs (``None``
    masks without ``mask_constant``, or where nothing is masked is not known until run)."""
    from ntk.stax.masking import masked_input
    if x is None:
        return None, None
    if isinstance(x, (list, tuple)):
        pairs = [_mask_inputs(xi, mask_constant) for xi in x]
        return [v for v, _ in pairs], (None if mask_constant is None else
                                       [m for _, m in pairs])
    if mask_constant is None:
        return x, None
    try:
        x = jnp.asarray(x)
    except TypeError:
        raise TypeError(f"kernel_fn: inputs must be numeric arrays, got {type(x).__name__} "
                        f"{x!r:.40}") from None
    return masked_input(x, mask_constant)


def _attach_masks(k, m1, m2):
    if m1 is None and m2 is None:
        return k
    if isinstance(k, Kernel):
        return k.replace(mask1=m1, mask2=m2)
    m1s = [None] * len(k) if m1 is None else m1
    m2s = [None] * len(k) if m2 is None else m2
    return [_attach_masks(ki, a, b) for ki, a, b in zip(k, m1s, m2s)]


def _nested(fn, x1, x2, leaf=None):
    """``fn(a, b)`` on the paired leaves of (nested) lists of inputs ``x1`` and ``x2``
    (``x2 = None``: ``b = None`` throughout); lists in, lists out."""
    is_leaf = leaf or (lambda x: not isinstance(x, (list, tuple)))
    if is_leaf(x1):
        return fn(x1, x2)
    x2s = [None] * len(x1) if x2 is None else x2
    return [_nested(fn, a, b, leaf) for a, b in zip(x1, x2s)]


def _check_apply_kwargs(name: str, kwargs: dict, uses_pattern: bool = False) -> None:
    """Refuse keyword arguments a kernel function would otherwise drop (see ``__call__``);
    ``pattern`` is honoured by networks with an ``Aggregate`` layer (``uses_pattern``); others
    accept only ``pattern=None`` or ``(None, None)`` (neural-tangents' spelling of "none")."""
    unknown = sorted(set(kwargs) - set(_NT_KERNEL_KWARGS))
    if unknown:
        raise TypeError(f"{name} kernel_fn got unexpected keyword argument(s) {unknown}; it "
                        "takes x1, x2, get, diagonal_spatial, batch_size, memory_budget and "
                        "neural-tangents' rng / diagonal_batch=True / mask_constant / "
                        "pattern (with an Aggregate layer; None otherwise)")
    for key in ("diagonal_batch",) + (() if uses_pattern else ("pattern",)):
        value = kwargs.get(key, _NT_KERNEL_KWARGS[key])
        if (key == "pattern" and isinstance(value, (tuple, list))
                and all(v is None for v in value)):
            value = None  # neural-tangents' ``pattern=(None, None)``: no pattern for either input
        if not (value is _NT_KERNEL_KWARGS[key] or (isinstance(value, bool)
                                                    and value == _NT_KERNEL_KWARGS[key])):
            def show(v):
                return f"<array of shape {tuple(v.shape)}>" if hasattr(v, "shape") else repr(v)
            shown = ("(" + ", ".join(show(v) for v in value) + ")"
                     if isinstance(value, (tuple, list)) else show(value))
            raise NotImplementedError(
                f"{name} kernel_fn: {key}={shown} is not supported (only "
                f"{key}={_NT_KERNEL_KWARGS[key]!r}"
                + ("; a pattern is read only by networks with an Aggregate layer"
                   if key == "pattern" else "") + "); it is refused rather than ignored")


def _batch_size_of(p):
    shape = getattr(p, "shape", None)
    return None if shape is None or len(shape) == 0 else int(shape[0])


def _split_pattern(pattern, n1: int, n2: Optional[int], name: str):
    """``(pattern1, pattern2)`` from neural-tangents' ``pattern=(pattern1, pattern2)``.

    ``n2 is None`` means ``x2`` is ``x1``: then ``pattern2`` must be ``None`` or ``pattern1``
    itself (or equal to it) and is returned as ``None``. Arrays become ``jnp`` arrays; other
    objects (a sparse format for ``Aggregate``'s ``to_dense``) pass unchanged. Each pattern's
    leading axis, where it has one, must be its input's batch size.
    """
    if pattern is None:
        return None, None
    if not isinstance(pattern, (tuple, list)) or len(pattern) != 2:
        shown = (f"an array of shape {tuple(pattern.shape)}" if hasattr(pattern, "shape")
                 else f"{type(pattern).__name__} {pattern!r}")
        raise TypeError(f"{name} kernel_fn: pattern must be a pair (pattern1, pattern2), the "
                        f"graphs of x1 and x2 (neural-tangents' convention; pass (p, p) or "
                        f"(p, None) when x2 is None), got {shown}")
    p1, p2 = (p if p is None or not isinstance(p, (np.ndarray, jax.Array, list))
              else jnp.asarray(p) for p in pattern)
    if n2 is None:
        if p2 is not None and p2 is not pattern[0]:
            same = (p1 is not None and getattr(p1, "shape", None) == getattr(p2, "shape", 0))
            try:
                same = same and bool(jnp.array_equal(p1, p2))
            except (TypeError, jax.errors.ConcretizationTypeError):
                pass  # under jit, or not an array: trusted
            if not same:
                raise ValueError(f"{name} kernel_fn: x2 is None (x2 = x1), so pattern[1] must "
                                 f"be None or pattern[0]; got a different pattern[1]")
        p2 = None
    elif (p1 is None) != (p2 is None):
        raise ValueError(f"{name} kernel_fn: pattern=(pattern1, pattern2) needs both graphs or "
                         f"neither; got pattern[{0 if p1 is None else 1}]=None")
    for i, (p, n, arg) in enumerate(((p1, n1, "x1"), (p2, n2, "x2"))):
        size = None if p is None else _batch_size_of(p)
        if size is not None and size != n:
            raise ValueError(f"{name} kernel_fn: pattern[{i}] has leading (batch) axis of size "
                             f"{size} (shape {tuple(p.shape)}), but {arg} has {n} inputs")
    return p1, p2


def _attach_patterns(k, p1, p2):
    if p1 is None:
        return k
    if not isinstance(k, Kernel):
        raise NotImplementedError("pattern= with a list of inputs (a network that starts with "
                                  "parallel) is not supported")
    return k.replace(pattern1=p1, pattern2=p2)


def _detach_patterns(k):
    """Outputs do not carry the graphs (they were inputs)."""
    return _map_kernels(lambda ki: ki if ki.pattern1 is None and ki.pattern2 is None
                        else ki.replace(pattern1=None, pattern2=None), k)


def is_default_axes(axes) -> bool:
    return axes is None or tuple(axes) == (0, -1)


def normalize_axes(name: str, batch_axis, channel_axis, ndim: int) -> tuple:
    """``(batch_axis, channel_axis)`` as non-negative positions for activations of rank
    ``ndim`` (``channel_axis=None``: the last axis that is not the batch axis), checked."""
    for arg, a in (("batch_axis", batch_axis), ("channel_axis", channel_axis)):
        if a is None and arg == "channel_axis":
            continue
        if isinstance(a, bool) or not isinstance(a, (int, np.integer)):
            raise TypeError(f"{name}: {arg} must be an int, got {type(a).__name__} {a!r}")
        if not -ndim <= a < ndim:
            raise ValueError(f"{name}: {arg}={a} is out of range for activations of rank "
                             f"{ndim}")
    b = int(batch_axis) % ndim
    if channel_axis is None:
        return b, ndim - 1 if b != ndim - 1 else ndim - 2
    c = int(channel_axis) % ndim
    if b == c:
        raise ValueError(f"{name}: batch_axis={batch_axis} and channel_axis={channel_axis} "
                         f"are the same axis {b} of activations of rank {ndim}")
    return b, c


def to_standard(x, b: int, c: int):
    """Activations with batch axis ``b`` and channel axis ``c`` moved to ``(0, -1)`` (the
    other axes keep their order)."""
    if (b, c) == (0, x.ndim - 1):
        return x
    return jnp.moveaxis(x, (b, c), (0, -1))


def from_standard(y, b: int, c: int):
    """The inverse of :func:`to_standard`."""
    if (b, c) == (0, y.ndim - 1):
        return y
    return jnp.moveaxis(y, (0, -1), (b, c))


def standard_shape(shape, b: int, c: int) -> tuple:
    """The shape of :func:`to_standard`'s result."""
    shape = tuple(shape)
    rest = [n for i, n in enumerate(shape) if i not in (b, c)]
    return (shape[b],) + tuple(rest) + (shape[c],)


def layout_shape(shape, b: int, c: int) -> tuple:
    """The inverse of :func:`standard_shape`: a batch-first, channels-last shape laid out
    with the batch axis at ``b`` and the channel axis at ``c``."""
    shape = tuple(shape)
    out, rest = [None] * len(shape), iter(shape[1:-1])
    out[b], out[c] = shape[0], shape[-1]
    return tuple(next(rest) if n is None else n for n in out)


def layout_of(k: Kernel) -> tuple:
    """``(batch_axis, channel_axis)`` of the activations a kernel describes, non-negative."""
    ndim = len(k.shape1)
    return k.batch_axis % ndim, k.channel_axis % ndim


def with_layout(k, b: int, c: int):
    """``k`` (or every kernel of a list) recorded as describing activations with batch axis
    ``b`` and channel axis ``c``."""
    def one(ki):
        ndim = len(ki.shape1)
        want = (b % ndim, c % ndim)
        want = (0, -1) if want == (0, ndim - 1) else want  # one spelling: repeat's scan
        return ki if (ki.batch_axis, ki.channel_axis) == want else ki.replace(
            batch_axis=want[0], channel_axis=want[1])
    return _map_kernels(one, k)


def check_layout(k: Kernel, name: str, batch_axis, channel_axis) -> tuple:
    """Refuse a kernel whose activations are not laid out as the layer declares (as
    neural-tangents does: the infinite-width limit would be taken along the wrong axis).
    Returns the declared ``(batch_axis, channel_axis)``, non-negative."""
    ndim = len(k.shape1)
    b, c = normalize_axes(name, batch_axis, channel_axis, ndim)
    have_b, have_c = layout_of(k)
    if have_b != b or (channel_axis is not None and have_c != c):
        raise ValueError(
            f"{name}: declared batch_axis={batch_axis}, channel_axis={channel_axis}, but its "
            f"input activations (shape {layout_shape(k.shape1, have_b, have_c)}) have their "
            f"batch axis at {have_b} and their channel axis at {have_c}, as laid out by the "
            f"layers before it or the network's inputs (the first layer that declares axes). "
            f"Give every layer the axes its inputs have; Flatten(batch_axis_out=...), "
            f"GlobalAvgPool / GlobalSumPool and Conv's dimension_numbers change them.")
    return b, c


def _standard_layout(x, axes):
    """Move ``axes = (batch_axis, channel_axis)`` of an input to ``(0, -1)``."""
    if is_default_axes(axes) or isinstance(x, (list, tuple)):
        return x
    try:
        x = jnp.asarray(x)
    except TypeError:
        return x  # refused with its own message by _validate_inputs
    if x.ndim < 2:
        return x
    b, c = normalize_axes("kernel_fn", axes[0], axes[1], x.ndim)
    return to_standard(x, b, c)


def _input_layout(k, axes):
    """The raw-input kernel(s) recorded with the inputs' ``(batch_axis, channel_axis)``."""
    if axes is None:
        return k

    def one(ki):
        return with_layout(ki, *normalize_axes("kernel_fn", axes[0], axes[1],
                                               len(ki.shape1)))
    return _map_kernels(one, k)


class KernelFn:
    """The infinite-width ``kernel_fn`` of a layer or network (see the module docstring)."""

    def __init__(self, name: str, transform: Callable[[Any, bool], Any],
                 input_full: Callable[[bool], bool] = lambda out_full: out_full,
                 missing: Optional[str] = None, *, uses_pattern: bool = False,
                 input_axes: Optional[tuple] = None, batch_coupled: bool = False,
                 rounding_ntk: bool = True):
        self.name = name
        self.transform = transform
        self.input_full = input_full
        #: ``None``, or why (and in which layer) the network has no infinite-width kernel
        self.missing = missing
        #: whether a layer reads ``pattern=`` (``Aggregate``); otherwise a pattern is refused
        self.uses_pattern = uses_pattern
        #: ``(batch_axis, channel_axis)`` the layer (the network's first layer that declares
        #: them) expects of its inputs, ``None`` when it does not care (activations, branch
        #: layers; then ``(0, -1)``). Raw inputs are moved to ``(0, -1)`` and the input kernel
        #: records the declared layout (:attr:`Kernel.batch_axis`), which later layers check
        self.input_axes = None if input_axes is None else tuple(input_axes)
        #: whether the kernel of one input depends on the other inputs of its batch
        #: (``LayerNorm`` over the batch axis): then it is never computed in blocks
        self.batch_coupled = batch_coupled
        #: whether the NTK may be computed, when only the NNGP is asked for, to bound the
        #: NNGP's rounding error in float32 (not through custom layers, ``stax.layer``, whose
        #: kernel functions may define no NTK)
        self.rounding_ntk = rounding_ntk
        self._jitted = {}
        self._out_bytes_cache = {}

    def __repr__(self):
        return f"KernelFn({self.name})"

    @property
    def __name__(self):
        """The layer's name without its arguments (neural-tangents' kernel functions are
        named after their layer, ``'Sin'``, ``'serial'``)."""
        return self.name.split("(")[0]

    # -- the computation on one block of inputs -----------------------------------------
    def _compute(self, x1, x2, pattern1=None, pattern2=None, mask1=None, mask2=None, *,
                 compute_ntk: bool, out_full: bool, input_axes=None):
        in_full = self.input_full(out_full)
        k = _nested(lambda a, b: input_kernel(a, b, in_full, compute_ntk), x1, x2)
        k = _attach_masks(k, mask1, mask2)
        k = _input_layout(k, input_axes)
        k = self.transform(_attach_patterns(k, pattern1, pattern2), out_full)
        if not out_full:
            k = diagonalize(k)
        return _detach_patterns(k)

    def _jit(self, compute_ntk: bool, out_full: bool, input_axes=None):
        key = (compute_ntk, out_full, input_axes)
        if key not in self._jitted:
            self._jitted[key] = jax.jit(
                functools.partial(self._compute, compute_ntk=compute_ntk, out_full=out_full,
                                  input_axes=input_axes))
        return self._jitted[key]

    def _call_axes(self, batch_axis, channel_axis):
        """The raw inputs' ``(batch_axis, channel_axis)``: ``kernel_fn``'s keyword arguments
        where given, else the network's first declaring layer's (``None``: ``(0, -1)``)."""
        if batch_axis is None and channel_axis is None:
            return self.input_axes
        declared = self.input_axes or (0, -1)
        return (declared[0] if batch_axis is None else batch_axis,
                declared[1] if channel_axis is None else channel_axis)

    # -- public call ----------------------------------------------------------------------
    def __call__(self, x1, x2=None, get=None, *, diagonal_spatial: bool = False,
                 batch_size: Optional[int | tuple] = None, memory_budget: Optional[int] = None,
                 batch_axis: Optional[int] = None, channel_axis: Optional[int] = None,
                 **apply_kwargs):
        """Infinite-width kernels of ``x1 (N1, *spatial, C)`` against ``x2 (N2, ...)``.

        Args:
          x1, x2: inputs; ``x2=None`` means ``x2 = x1`` (then ``cov2`` is ``None``). Or a
            :class:`Kernel` (list of kernels) to transform, as in neural-tangents.
          get: ``None`` (the whole :class:`Kernel`), a name in ``('nngp', 'ntk', 'cov1',
            'cov2')`` (that array) or a tuple of names (a namedtuple in that order). The NTK
            is only computed when asked for.
          diagonal_spatial: for outputs that keep spatial axes, return only the covariances of
            equal positions ``(N1, N2, X, Y, ...)`` instead of ``(N1, N2, X, X, Y, Y, ...)``.
          batch_size: compute the ``(N1, N2)`` kernel in blocks of this many rows/columns
            (an int or a pair); by default blocks are only used when the working memory,
            estimated before anything is materialized, would exceed ``memory_budget``.
          memory_budget: bytes a block may use (default: ``ntk.budget.default_memory_budget``).
          batch_axis, channel_axis: neural-tangents' keywords: where the raw inputs keep their
            batch and channel axes (default: as the network's first layer that declares them
            says, else ``0`` and ``-1``). Every layer still checks the layout it gets against
            its own ``batch_axis`` / ``channel_axis`` (neural-tangents lets these keywords
            override the layers' declarations; here a mismatch raises ``ValueError``).
          apply_kwargs: neural-tangents' keyword arguments, honoured or refused, never dropped:
            ``rng`` (an apply-time argument; the infinite-width kernel does not depend on it),
            ``diagonal_batch=True`` (the only mode: ``cov1`` / ``cov2`` hold per-example
            variances), ``mask_constant`` (input entries equal to it are masked, see
            :mod:`ntk.stax.masking`) and
            ``pattern=(pattern1, pattern2)``: the graphs of ``x1`` and ``x2`` (leading axis the
            batch), read by the network's ``Aggregate`` layers (``None``: no aggregation;
            refused by networks without one). Anything else raises ``TypeError``.
        """
        _check_apply_kwargs(self.name, apply_kwargs, self.uses_pattern)
        if self.missing is not None:
            raise NotImplementedError(self.missing)
        get_names, compute_ntk = _parse_get(get)
        single = isinstance(get, str)
        asked_ntk = compute_ntk
        pattern = apply_kwargs.get("pattern")
        input_axes = self._call_axes(batch_axis, channel_axis)
        if _is_kernel_input(x1):
            if batch_axis is not None or channel_axis is not None:
                x1 = _input_layout(x1, input_axes)
            p1, p2 = None, None
            if pattern is not None:
                if not isinstance(x1, Kernel):
                    _attach_patterns(x1, pattern, None)  # raises: a list of kernels
                p1, p2 = _split_pattern(pattern, x1.shape1[0],
                                        None if x1.x1_is_x2 else x1.shape2[0], self.name)
            if apply_kwargs.get("mask_constant") is not None:
                raise NotImplementedError(f"{self.name} kernel_fn: mask_constant applies to "
                                          f"array inputs; a Kernel input carries its masks in "
                                          f"Kernel.mask1 / mask2")
            k = self.transform(_attach_patterns(x1, p1, p2), not diagonal_spatial)
            return _select(_detach_patterns(k), get_names, single)
        mask_constant = apply_kwargs.get("mask_constant")

        if isinstance(x1, (list, tuple)):
            if pattern is not None:
                _attach_patterns(x1, pattern, None)  # raises: a list of inputs
            name = self.name

            def check(a, b):
                if b is not None and isinstance(a, (list, tuple)) and (
                        not isinstance(b, (list, tuple)) or len(b) != len(a)):
                    raise ValueError(f"{name}: x1 is a list of {len(a)} inputs, so x2 must be "
                                     f"None or a list of as many; got {type(b).__name__}")
                if b is not None and isinstance(b, (list, tuple)) and not isinstance(
                        a, (list, tuple)):
                    raise ValueError(f"{name}: x2 is a list where x1 is an array")
                return a, b
            _nested(check, x1, x2)
            x1 = _nested(lambda a, b: _standard_layout(a, input_axes), x1, None)
            x2 = None if x2 is None else _nested(lambda a, b: _standard_layout(a, input_axes),
                                                 x2, None)
            x1, m1 = _mask_inputs(x1, mask_constant)
            x2, m2 = _mask_inputs(x2, mask_constant)
            pairs = _nested(lambda a, b: _validate_inputs(a, b, name), x1, x2)
            x1 = _nested(lambda pair, _: pair[0], pairs, None, leaf=lambda p: not isinstance(
                p, list))
            x2 = None if x2 is None else _nested(lambda pair, _: pair[1], pairs, None,
                                                 leaf=lambda p: not isinstance(p, list))
            k = self._jit(compute_ntk, not diagonal_spatial, input_axes)(x1, x2, None, None,
                                                                         m1, m2)
            return _select(k, get_names, single)

        x1 = _standard_layout(x1, input_axes)
        x2 = None if x2 is None else _standard_layout(x2, input_axes)
        x1, m1 = _mask_inputs(x1, mask_constant)
        x2, m2 = _mask_inputs(x2, mask_constant)
        x1, x2 = _validate_inputs(x1, x2, self.name)
        p1, p2 = _split_pattern(pattern, x1.shape[0], None if x2 is None else x2.shape[0],
                                self.name)
        out_full = not diagonal_spatial
        # the NTK bounds the NNGP's rounding error too: kept in reduced precision
        compute_ntk = compute_ntk or (needs_rounding_bound(x1.dtype) and self.rounding_ntk)
        if self.batch_coupled:
            if batch_size is not None:
                raise ValueError(f"{self.name}: normalising over the batch axis couples the "
                                 f"inputs, so the kernel cannot be computed in blocks; pass "
                                 f"batch_size=None (got batch_size={batch_size!r})")
            plan = None
        else:
            plan = self._plan(x1, x2, compute_ntk, batch_size, memory_budget, out_full,
                              asked_ntk, input_axes)
        fn = self._jit(compute_ntk, out_full, input_axes)
        if plan is None:
            k = fn(x1, x2, p1, p2, m1, m2)
        else:
            k = self._blocked(fn, x1, x2, plan, p1, p2, m1, m2)
        _warn_if_imprecise(k, self.name)
        return _select(k, get_names, single)

    # -- memory planning and blocks -------------------------------------------------------
    def _plan(self, x1, x2, compute_ntk, batch_size, memory_budget, out_full=True,
              asked_ntk=None, input_axes=None):
        """Block sizes ``(b1, b2)``, or ``None`` when one shot fits ``memory_budget``.

        Working bytes of a ``b1 x b2`` block: ``_LIVE_ARRAYS`` kernel-sized arrays at the
        largest layout the network keeps (``P^2`` per pair for ``P`` pixels in the full
        layout, ``P`` in the diagonal one; strided layers only shrink it) plus the inputs.
        The assembled output (shape found by ``jax.eval_shape``) must fit as well.
        """
        n1 = x1.shape[0]
        n2 = n1 if x2 is None else x2.shape[0]
        item = x1.dtype.itemsize
        pixels = int(np.prod(x1.shape[1:-1])) if x1.ndim > 2 else 1
        full = x1.ndim > 2 and self.input_full(out_full)
        per_pair = (pixels * pixels if full else pixels) * item
        n_arrays = _LIVE_ARRAYS if compute_ntk else _LIVE_ARRAYS // 2 + 1
        out_bytes = self._out_bytes(x1, x2, compute_ntk, out_full, input_axes)
        # layers that add positions (ConvTranspose, ImageResize up) make the output larger
        per_pair = max(per_pair, out_bytes // max(n1 * n2 * (2 if compute_ntk else 1), 1))

        def block_bytes(b1, b2):
            inputs = (b1 + b2) * int(np.prod(x1.shape[1:])) * item
            return b1 * b2 * per_pair * n_arrays + inputs

        from ntk.budget import default_memory_budget, plan_blocks

        if memory_budget is None:
            memory_budget = default_memory_budget()
        if memory_budget <= 0:
            raise ValueError(f"memory_budget must be a positive number of bytes, got "
                             f"{memory_budget!r}")
        if batch_size is not None:
            b1, b2 = (batch_size, batch_size) if isinstance(batch_size, int) else batch_size
            if b1 < 1 or b2 < 1:
                raise ValueError(f"batch_size must be positive, got {batch_size!r}")
            return min(b1, n1), min(b2, n2)
        if block_bytes(n1, n2) + out_bytes <= memory_budget:
            return None
        skip = ("get='nngp' (skips the NTK), " if asked_ntk is not False and not
                needs_rounding_bound(x1.dtype) else "")
        cheaper = (f"cheaper options: {skip}a Flatten read-out instead "
                   "of pooling (equal-position covariances only, P instead of P^2 per pair), "
                   "diagonal_spatial=True for spatial outputs, fewer inputs, or a larger "
                   "memory_budget")
        plan = plan_blocks(n1, n2, block_bytes, out_bytes, memory_budget,
                           what=f"{self.name} kernel (inputs {x1.shape[1:]})", cheaper=cheaper)
        return plan.block1, plan.block2

    def _out_bytes(self, x1, x2, compute_ntk, out_full, input_axes=None) -> int:
        """Bytes of the assembled ``nngp``/``ntk`` (shapes by ``jax.eval_shape``, which traces
        the whole network: cached per input shapes so a repeated call does not retrace)."""
        key = (x1.shape, str(x1.dtype), None if x2 is None else (x2.shape, str(x2.dtype)),
               compute_ntk, out_full, input_axes)
        if key not in self._out_bytes_cache:
            out = jax.eval_shape(functools.partial(self._compute, compute_ntk=compute_ntk,
                                                   out_full=out_full, input_axes=input_axes),
                                 x1, x2)
            self._out_bytes_cache[key] = sum(
                int(np.prod(m.shape)) * m.dtype.itemsize
                for k in kernel_leaves(out) for m in (k.nngp, k.ntk) if m is not None)
        return self._out_bytes_cache[key]

    def _blocked(self, fn, x1, x2, plan, pattern1=None, pattern2=None, mask1=None, mask2=None):
        """Assemble the kernel from ``(b1, b2)`` blocks; each block is an independent call.

        Entries of a block depend only on its own inputs (``cov1``/``cov2`` keep the batch
        diagonal only), so blocks can be computed in any order. When ``x2`` is ``x1``
        only blocks on or above the diagonal are computed and the rest mirrored. Graph patterns
        and input masks are sliced with their inputs (their leading axis is the batch axis).
        """
        b1, b2 = plan
        same = x2 is None
        if same:
            b1 = b2 = min(b1, b2)
        xb = x1 if same else x2
        pb = pattern1 if same else pattern2
        mb = mask1 if same else mask2

        def rows_of(p, start, size):
            return None if p is None else p[start:start + size]
        n1, n2 = x1.shape[0], xb.shape[0]
        starts1 = list(range(0, n1, b1))
        starts2 = list(range(0, n2, b2))
        rows = []  # rows[bi][bj]: the block's kernels (every output of a list network)
        template = None
        cache = {}
        for bi, i in enumerate(starts1):
            row = []
            for bj, j in enumerate(starts2):
                if same and bj < bi:
                    row.append(cache[(bj, bi)])
                    continue
                a = x1[i:i + b1]
                b = xb[j:j + b2]
                diagonal_block = same and i == j
                out = fn(a, None if diagonal_block else b, rows_of(pattern1, i, b1),
                         None if diagonal_block else rows_of(pb, j, b2),
                         rows_of(mask1, i, b1), None if diagonal_block else rows_of(mb, j, b2))
                ks = kernel_leaves(out)
                if any(k.nngp.shape[:2] != (a.shape[0], b.shape[0]) for k in ks):
                    raise ValueError(
                        f"{self.name}: the network changes the batch (Index on the batch "
                        f"axis), so its kernel cannot be computed in blocks of inputs; pass "
                        f"batch_size=None with a larger memory_budget, or index the inputs")
                if same:
                    cache[(bi, bj)] = ks
                if template is None:
                    template = out
                row.append(ks)
            rows.append(row)

        def assemble(m, field):
            if getattr(rows[0][0][m], field) is None:
                return None
            out_rows = []
            for bi, row in enumerate(rows):
                parts = []
                for bj, ks in enumerate(row):
                    part = getattr(ks[m], field)
                    if same and bj < bi:
                        part = _transpose_pair(part, ks[m])
                    parts.append(part)
                out_rows.append(jnp.concatenate(parts, axis=1))
            return jnp.concatenate(out_rows, axis=0)

        def whole(m):
            first = rows[0][0][m]
            # cov1 from the blocks on the diagonal (x2 = x1) or the first column; cov2 from
            # the first row of blocks
            cov1 = [rows[bi][bi if same else 0][m].cov1 for bi in range(len(rows))]
            cov2 = None if same else jnp.concatenate(
                [k[m].cov2 if k[m].cov2 is not None else k[m].cov1 for k in rows[0]], axis=0)

            def masks(blocks, field, other):
                parts = [getattr(b, field) if getattr(b, field) is not None else
                         getattr(b, other) for b in blocks]
                return None if any(p is None for p in parts) else jnp.concatenate(parts, 0)
            mask1 = masks([rows[bi][bi if same else 0][m] for bi in range(len(rows))],
                          "mask1", "mask1")
            mask2 = None if same else masks([k[m] for k in rows[0]], "mask2", "mask1")
            return first.replace(
                mask1=mask1, mask2=mask2,
                nngp=assemble(m, "nngp"), ntk=assemble(m, "ntk"),
                cov1=jnp.concatenate(cov1, axis=0), cov2=cov2,
                shape1=(n1,) + tuple(first.shape1[1:]),
                shape2=(n2,) + tuple(first.shape2[1:]))

        return _like(template, iter([whole(m) for m in range(len(rows[0][0]))]))


def _like(structure, kernels):
    """The kernels from the iterator ``kernels`` in the (nested list) shape of ``structure``."""
    if isinstance(structure, Kernel):
        return next(kernels)
    return [_like(k, kernels) for k in structure]


def _transpose_pair(m, k: Kernel):
    """``K(x2, x1) -> K(x1, x2)``: swap batch axes and each pair of spatial axes."""
    perm = [1, 0]
    if k.full_spatial:
        for s in range(k.n_spatial):
            base = 2 + 2 * s
            perm += [base + 1, base]
    else:
        perm += list(range(2, m.ndim))
    return jnp.transpose(m, perm)


def no_kernel_fn(name: str, reason: str = "") -> KernelFn:
    """``kernel_fn`` of a layer that has no infinite-width kernel: raises, naming the layer."""
    message = f"layer {name} has no infinite-width kernel" + (f": {reason}" if reason else "")

    def transform(k, out_full):
        raise NotImplementedError(message)
    return KernelFn(name, transform, missing=message)


#: the keyword arguments of a stax ``apply_fn`` (neural-tangents' names). ``serial``,
#: ``parallel`` and ``repeat`` pass them to every layer; the layers that use one read it
#: (``rng``: ``Dropout``; ``pattern``: ``Aggregate``; ``mask``: ``GlobalSelfAttention``,
#: ``None`` only), the others ignore it, as in neural-tangents.
APPLY_KWARGS = ("rng", "pattern", "mask", "mask_constant")


def check_apply_kwargs(name: str, kwargs: dict) -> None:
    """Refuse ``apply_fn`` keyword arguments that no layer reads (a misspelling would
    otherwise be dropped)."""
    unknown = sorted(set(kwargs) - set(APPLY_KWARGS))
    if unknown:
        raise TypeError(f"{name} apply_fn got unexpected keyword argument(s) {unknown}; it "
                        f"takes params, x and neural-tangents' rng (Dropout), pattern "
                        f"(Aggregate), mask and mask_constant (masked inputs)")


def layer(name: str, init_fn, apply_fn, transform, input_full=None):
    """Bundle a layer triple; ``transform(k: Kernel) -> Kernel`` acts on one kernel.
    ``apply_fn``'s keyword arguments are checked (:func:`check_apply_kwargs`)."""
    kf = KernelFn(name, lambda k, out_full: transform(k),
                  input_full if input_full is not None else (lambda out_full: out_full))
    layer_apply_fn = apply_fn

    def apply_fn(params, x, *args, **kwargs):
        check_apply_kwargs(name, kwargs)
        return layer_apply_fn(params, x, *args, **kwargs)

    init_fn.__name__ = apply_fn.__name__ = name
    return init_fn, apply_fn, kf


def laid_out(name: str, triple, batch_axis, channel_axis):
    """A batch-first, channels-last layer ``triple`` given neural-tangents' ``batch_axis`` /
    ``channel_axis``: ``init_fn`` / ``apply_fn`` move those axes of their inputs to
    ``(0, -1)``, run the layer and move them back (its output keeps the input's rank and
    layout); ``kernel_fn`` checks that its input kernel describes activations laid out so
    (:func:`check_layout`) and is the layer's own otherwise: the kernel's spatial axes are
    the activations' in their order either way. ``name`` appears in the errors."""
    init_std, apply_std, kf = triple

    def axes(ndim):
        return normalize_axes(name, batch_axis, channel_axis, ndim)

    def init_fn(key, input_shape):
        b, c = axes(len(input_shape))
        out_shape, params = init_std(key, standard_shape(input_shape, b, c))
        return layout_shape(out_shape, b, c), params

    def apply_fn(params, x, **kwargs):
        check_apply_kwargs(name, kwargs)
        b, c = axes(x.ndim)
        return from_standard(apply_std(params, to_standard(x, b, c), **kwargs), b, c)

    def transform(k, out_full):
        k = require_single(k, name)
        b, c = check_layout(k, name, batch_axis, channel_axis)
        out = kf.transform(with_layout(k, 0, -1), out_full)
        return with_layout(out, b, c)

    init_fn.__name__ = apply_fn.__name__ = name
    return init_fn, apply_fn, KernelFn(name, transform, kf.input_full, missing=kf.missing,
                                       uses_pattern=kf.uses_pattern,
                                       input_axes=(batch_axis, channel_axis),
                                       batch_coupled=kf.batch_coupled,
                                       rounding_ntk=kf.rounding_ntk)


def require_single(k, name: str) -> Kernel:
    if not isinstance(k, Kernel):
        raise TypeError(f"{name} takes one input, got a list of {len(k)} (use FanInSum / "
                        f"FanInConcat to merge branches first)")
    return k


def require_gaussian(k: Kernel, name: str):
    if not k.is_gaussian:
        raise ValueError(
            f"{name}: the input of this layer must be Gaussian, i.e. the output of a random "
            f"affine layer (Dense or Conv); got "
            f"{'the raw network input' if k.is_input else 'a non-Gaussian layer output'}. "
            f"Insert a Dense/Conv layer before {name}.")


def check_rank(shape: Sequence[int], n_spatial: int, name: str, arg: str = "input"):
    if len(shape) != n_spatial + 2:
        raise ValueError(
            f"{name}: expects {arg} of rank {n_spatial + 2} (N, {n_spatial} spatial axes, C), "
            f"got shape {tuple(shape)} of rank {len(shape)}")
