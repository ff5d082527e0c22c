"""The checks every public function of ``ntk`` runs on its arguments, in one place.

Each check names the argument, says what it got and what it expects, and raises ``TypeError``
for a wrong kind of value and ``ValueError`` for a wrong value. Checks that need values (NaN,
label ranges) run on concrete arrays only: under ``jax.jit`` they are skipped, and
:func:`checked` turns a kernel function's NaN checks into ``checkify`` checks instead.

    >>> from ntk import validation
    >>> validation.positive_int(0, "batch_size")
    Traceback (most recent call last):
    ...
    ValueError: `batch_size` must be a positive int, got 0.
"""
from __future__ import annotations

import math
import numbers
import weakref
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["array", "batch", "batch_tree", "finite", "finite_tree", "positive_int",
           "optional_positive_int", "memory_budget", "block_size", "finite_number", "prng_key",
           "labels", "output_shape", "checked", "is_tracer", "remember_finite"]


def is_tracer(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def _describe(value) -> str:
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"an array of shape {tuple(value.shape)} and dtype {value.dtype}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) < 60 else text[:60] + '...'}"


def positive_int(value, name: str) -> int:
    """An ``int`` (not a bool) ``>= 1``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be a positive int, got {_describe(value)}.")
    if value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value}.")
    return int(value)


def optional_positive_int(value, name: str) -> Optional[int]:
    return None if value is None else positive_int(value, name)


def finite_number(value, name: str, *, minimum: float | None = None,
                  strict: bool = False, maximum: float | None = None) -> float:
    """A real number, finite, optionally ``>= minimum`` (``> minimum`` if ``strict``) and
    ``<= maximum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) and not (
            hasattr(value, "shape") and np.shape(value) == () and not is_tracer(value)):
        raise TypeError(f"`{name}` must be a real number, got {_describe(value)}.")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"`{name}` must be finite, got {v}.")
    if minimum is not None and (v <= minimum if strict else v < minimum):
        raise ValueError(f"`{name}` must be {'>' if strict else '>='} {minimum}, got {v}.")
    if maximum is not None and v > maximum:
        raise ValueError(f"`{name}` must be <= {maximum}, got {v}.")
    return v


def memory_budget(value, name: str = "memory_budget") -> Optional[int]:
    """None (the default budget) or a positive, finite number of bytes."""
    if value is None:
        return None
    return int(finite_number(value, name, minimum=0, strict=True))


def block_size(value, name: str = "block_size"):
    """None, a positive int, or a pair of positive ints."""
    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"`{name}` must be an int or a pair of ints (x1, x2), got "
                             f"{value!r}.")
        return tuple(positive_int(v, f"{name}[{i}]") for i, v in enumerate(value))
    return positive_int(value, name)


def array(x, name: str, *, min_ndim: int = 1):
    """An array (anything with ``shape`` and ``dtype``) with at least ``min_ndim`` axes and a
    numeric dtype."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"`{name}` must be an array, got {_describe(x)}.")
    if x.ndim < min_ndim:
        raise ValueError(f"`{name}` must have at least {min_ndim} axes (a batch axis first), "
                         f"got shape {tuple(x.shape)}.")
    if not (jnp.issubdtype(x.dtype, jnp.number) or jnp.issubdtype(x.dtype, jnp.bool_)):
        raise TypeError(f"`{name}` must be numeric, got dtype {x.dtype}.")
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        raise TypeError(f"`{name}` has dtype {x.dtype}: kernels take real inputs.")
    return x


@jax.jit
def count_non_finite(leaves):
    """Non-finite entries of each array in ``leaves``: one compiled reduction and one small
    transfer for a whole parameter tree (not one dispatch and one sync per leaf)."""
    return jnp.stack([jnp.sum(~jnp.isfinite(a)) for a in leaves])


# jax.Arrays already found finite, by id (a weak reference checks it is the same object).
# A jax.Array is immutable, so one check per array is enough: a repeated call with the same
# parameters and inputs pays no check and no host transfer. NumPy arrays are mutable and are
# checked every time.
_FINITE: dict = {}


def _known_finite(x) -> bool:
    ref = _FINITE.get(id(x))
    return ref is not None and ref() is x


def remember_finite(x):
    """Record that the ``jax.Array`` ``x`` holds no NaN or inf (it was checked, or built from
    arrays that were), so that a later check of ``x`` costs nothing. Returns ``x``."""
    if isinstance(x, jax.Array) and not is_tracer(x):
        key = id(x)
        try:
            _FINITE[key] = weakref.ref(x, lambda _, key=key: _FINITE.pop(key, None))
        except TypeError:  # not weakly referenceable: check it every time
            pass
    return x


def non_finite_counts(arrays) -> list:
    """Non-finite entries of each concrete array in ``arrays`` (one compiled reduction and one
    transfer for those not already known to be finite; 0 for those that are)."""
    todo = [i for i, a in enumerate(arrays) if not _known_finite(a)]
    counts = [0] * len(arrays)
    if not todo:
        return counts
    with jax.ensure_compile_time_eval():
        found = np.asarray(count_non_finite([arrays[i] for i in todo]))
    for i, bad in zip(todo, found):
        counts[i] = int(bad)
        if not bad:
            remember_finite(arrays[i])
    return counts


def _count_non_finite(x) -> int:
    return non_finite_counts([x])[0]


def finite(x, name: str):
    """Raise if a concrete floating array holds NaN or inf (tracers pass)."""
    if is_tracer(x) or not jnp.issubdtype(x.dtype, jnp.inexact):
        return x
    bad = _count_non_finite(x)
    if bad:
        raise ValueError(f"`{name}` of shape {tuple(x.shape)} has {bad} non-finite entries "
                         "(NaN or inf).")
    return x


def finite_tree(tree, name: str = "params"):
    """Raise if any concrete floating leaf of ``tree`` holds NaN or inf, naming the leaf."""
    checked = [(path, leaf) for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
               if hasattr(leaf, "dtype") and not is_tracer(leaf)
               and jnp.issubdtype(leaf.dtype, jnp.inexact)]
    if not checked:
        return tree
    counts = non_finite_counts([leaf for _, leaf in checked])
    for (path, leaf), bad in zip(checked, counts):
        if bad:
            where = jax.tree_util.keystr(path) or "(the array)"
            raise ValueError(f"`{name}` has {int(bad)} non-finite entries (NaN or inf) in "
                             f"leaf {where} of shape {tuple(leaf.shape)}.")
    return tree


def batch(x, name: str, axis: int = 0) -> int:
    """The batch size of ``x`` along ``axis`` (checked to exist)."""
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"`{name}` of shape {tuple(x.shape)} has no batch axis {axis}.")
    return int(x.shape[axis])


def batch_tree(x, name: str, axes=0) -> int:
    """The batch size shared by every leaf of the pytree ``x`` (an array is a one-leaf tree).

    ``axes`` is one int for every leaf or a list with one per leaf (``tree_leaves`` order).
    Every leaf must be a real array with that axis, and all leaves must agree on its size;
    the error names the offending leaf by its path and shape.
    """
    found = jax.tree_util.tree_leaves_with_path(x)
    if not found:
        raise ValueError(f"`{name}` has no array leaves, got {_describe(x)}.")
    per_leaf = [axes] * len(found) if isinstance(axes, numbers.Integral) else list(axes)
    sizes = []
    for (path, leaf), axis in zip(found, per_leaf):
        where = f"`{name}`" + (f" leaf {jax.tree_util.keystr(path)}" if path else "")
        if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
            raise TypeError(f"{where} must be an array, got {_describe(leaf)}.")
        if not (jnp.issubdtype(leaf.dtype, jnp.number) or jnp.issubdtype(leaf.dtype, jnp.bool_)):
            raise TypeError(f"{where} must be numeric, got dtype {leaf.dtype}.")
        if jnp.issubdtype(leaf.dtype, jnp.complexfloating):
            raise TypeError(f"{where} has dtype {leaf.dtype}: kernels take real inputs.")
        if not -leaf.ndim <= axis < leaf.ndim:
            raise ValueError(f"{where} of shape {tuple(leaf.shape)} has no batch axis {axis}.")
        sizes.append((jax.tree_util.keystr(path), tuple(leaf.shape), int(leaf.shape[axis])))
    if len({n for _, _, n in sizes}) > 1:
        listed = ", ".join(f"{p or '(root)'} {s} -> {n}" for p, s, n in sizes)
        raise ValueError(f"every leaf of `{name}` must have the same batch size; got (leaf, "
                         f"shape -> batch size along its batch axis): {listed}.")
    return sizes[0][2]


def prng_key(key, name: str = "key"):
    """A JAX PRNG key: a typed key array, or a raw ``uint32`` key of shape ``(2,)``."""
    if hasattr(key, "dtype") and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if (hasattr(key, "dtype") and key.dtype == jnp.uint32 and tuple(key.shape) == (2,)):
        return key
    raise TypeError(f"`{name}` must be a JAX PRNG key (jax.random.key(seed) or "
                    f"jax.random.PRNGKey(seed)), got {_describe(key)}.")


def labels(values, n: int, num_classes: int, name: str = "labels"):
    """Integer class labels ``(n,)`` in ``[0, num_classes)`` (range checked when concrete)."""
    arr = values if hasattr(values, "dtype") else np.asarray(values)
    if arr.ndim != 1 or not jnp.issubdtype(arr.dtype, jnp.integer):
        raise ValueError(f"`{name}` must be a 1-D integer array, got shape {tuple(arr.shape)} "
                         f"and dtype {arr.dtype}.")
    if arr.shape[0] != n:
        raise ValueError(f"`{name}` has {arr.shape[0]} labels for {n} inputs.")
    if not is_tracer(arr) and n:
        with jax.ensure_compile_time_eval():
            lo, hi = int(jnp.min(arr)), int(jnp.max(arr))
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"`{name}` must lie in [0, {num_classes}) ({num_classes} "
                             f"outputs), got values from {lo} to {hi}.")
    return arr


def _shapes(x):
    """The shape of an array, or the pytree of its leaves' shapes."""
    if hasattr(x, "shape"):
        return tuple(x.shape)
    return jax.tree_util.tree_map(lambda a: tuple(jnp.shape(a)), x)


def output_shape(apply_fn: Callable, params, x, name: str = "x1", **kwargs):
    """``jax.eval_shape`` of ``apply_fn(params, x)``, with a failure reported against the
    input's and the parameters' shapes, and a scalar output refused."""
    try:
        out = jax.eval_shape(lambda p, xx: apply_fn(p, xx, **kwargs), params, x)
    except Exception as e:  # noqa: BLE001 - re-raised with the shapes involved
        shapes = jax.tree_util.tree_map(lambda p: tuple(jnp.shape(p)), params)
        text = str(shapes)
        raise TypeError(f"`{name}` of shape {_shapes(x)} does not fit `apply_fn` and "
                        f"`params`: {type(e).__name__}: {e}\nparams shapes: "
                        f"{text if len(text) < 400 else text[:400] + '...'}") from e
    for leaf in jax.tree_util.tree_leaves(out):
        if leaf.ndim == 0:
            raise ValueError("`apply_fn` must return outputs with a batch axis, got a scalar "
                             f"for `{name}` of shape {_shapes(x)}.")
    return out


def checked(kernel_fn: Callable) -> Callable:
    """``kernel_fn`` compiled with its non-finite checks as ``checkify`` checks.

    Under ``jax.jit`` no value can be inspected, so the eager NaN checks of the kernel
    functions are skipped there. ``checked(kernel_fn)`` is ``kernel_fn`` jitted with
    ``jax.experimental.checkify``: it raises ``checkify.JaxRuntimeError`` naming the argument
    when ``x1``, ``x2``, the parameters or the result hold NaN or inf, at the cost of one
    reduction over each. ``kernel_fn(x1, x2, params, **kwargs)`` is any empirical kernel
    function of this package (keyword arguments are passed as traced values).

        >>> import jax.numpy as jnp, ntk
        >>> f = lambda p, x: x @ p
        >>> safe = ntk.validation.checked(ntk.empirical_ntk_fn(f, vmap_axes=0))
        >>> safe(jnp.ones((2, 3)), None, jnp.ones((3, 1))).shape
        (2, 2)
    """
    from jax.experimental import checkify

    def finite_check(tree, what):
        for leaf in jax.tree_util.tree_leaves(tree):
            if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.inexact):
                checkify.check(jnp.all(jnp.isfinite(leaf)),
                               f"`{what}` has non-finite entries (NaN or inf)")

    def body(x1, x2, params, kwargs):
        finite_check(x1, "x1")
        finite_check(x2, "x2")
        finite_check(params, "params")
        out = kernel_fn(x1, x2, params, **kwargs)
        finite_check(out, "kernel (the result)")
        return out

    compiled = jax.jit(checkify.checkify(body))

    def fn(x1, x2, params, **kwargs):
        err, out = compiled(x1, x2, params, kwargs)
        err.throw()
        return out

    return fn
