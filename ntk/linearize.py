"""Taylor expansions of a model in its parameters: the linearized network and beyond.

For a model ``f(params, *args, **kwargs)`` returning any pytree and an expansion point
``params_0``, with ``delta = params - params_0``:

    f_lin(params, x)  = f(params_0, x) + J(params_0, x) delta
    f_tayl(params, x) = sum_{k=0}^{degree} D^k f(params_0, x)[delta, ..., delta] / k!

``f_lin`` is the model whose gradient-descent training the NTK describes exactly (Lee et
al. 2019); higher degrees measure how far a finite network is from it. Directional
derivatives are Jacobian-vector products (``jax.jvp``, nested for ``D^k``): no Jacobian is
formed, so the cost is about ``2^k`` forward passes for degree ``k``. Names and signatures
are neural-tangents' ``nt.linearize`` / ``nt.taylor_expand``.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp

__all__ = ["linearize", "taylor_expand"]

PyTree = Any


def _check_model(f, params) -> None:
    if not callable(f):
        raise TypeError(f"`f` must be callable as f(params, *args, **kwargs), got "
                        f"{type(f).__name__}.")
    leaves = jax.tree_util.tree_leaves(params)
    for leaf in leaves:
        dtype = getattr(leaf, "dtype", None)
        if dtype is None or not jnp.issubdtype(dtype, jnp.inexact):
            raise TypeError(f"`params` leaves must be floating (or complex) arrays to expand "
                            f"around, got a leaf of type {type(leaf).__name__}"
                            f"{'' if dtype is None else ' and dtype ' + str(dtype)}.")


def _displacement(new_params, params, treedef):
    """``new_params - params``, leaf by leaf, after checking the two have one structure."""
    new_def = jax.tree_util.tree_structure(new_params)
    if new_def != treedef:
        raise ValueError(f"The parameters passed in have structure {new_def}, but the "
                         f"expansion point has {treedef}.")

    def sub(a, b):
        if jnp.shape(a) != jnp.shape(b):
            raise ValueError(f"`params`: a leaf has shape {jnp.shape(a)}, but the expansion "
                             f"point's leaf has shape {jnp.shape(b)}.")
        return (jnp.asarray(a) - b).astype(jnp.result_type(b))

    return jax.tree_util.tree_map(sub, new_params, params)


def linearize(f: Callable, params: PyTree) -> Callable:
    """The first-order Taylor expansion of ``f`` in its parameters around ``params``.

    ``f_lin(p, *args, **kwargs) = f(params, *args, **kwargs) + J(params) (p - params)``,
    computed as one ``jax.jvp`` (no Jacobian is materialized). ``f`` may return any pytree;
    ``f_lin`` returns the same structure, and is ``jit`` / ``grad`` / ``vmap`` friendly.

    Args:
      f: the model, ``f(params, *args, **kwargs) -> pytree``.
      params: the expansion point (a pytree of floating arrays).
    Returns:
      ``f_lin(p, *args, **kwargs)`` with ``p`` of the structure and shapes of ``params``.

    References:
      Lee, Xiao, Schoenholz, Bahri, Novak, Sohl-Dickstein & Pennington, 2019, "Wide Neural
      Networks of Any Depth Evolve as Linear Models Under Gradient Descent",
      arXiv:1902.06720.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntk import linearize
      >>> f = lambda p, x: jnp.tanh(x @ p)
      >>> f_lin = linearize(f, jnp.zeros(2))
      >>> f_lin(jnp.array([1.0, -1.0]), jnp.array([[0.5, 0.25]]))
      Array([0.25], dtype=float32)
    """
    _check_model(f, params)
    treedef = jax.tree_util.tree_structure(params)

    def f_lin(new_params, *args, **kwargs):
        delta = _displacement(new_params, params, treedef)
        value, change = jax.jvp(lambda p: f(p, *args, **kwargs), (params,), (delta,))
        return jax.tree_util.tree_map(jnp.add, value, change)

    return f_lin


def _directional_derivatives(g: Callable, delta: PyTree, degree: int) -> Callable:
    """``p -> (g(p), Dg(p)[delta], ..., D^degree g(p)[delta]^degree)``: each level is the
    JVP of the level below along ``delta``, keeping the lower ones from its primal part."""
    def level_0(p):
        return (g(p),)

    def next_level(below):
        def level(p):
            values, tangents = jax.jvp(below, (p,), (delta,))
            return values + (tangents[-1],)
        return level

    fn = level_0
    for _ in range(degree):
        fn = next_level(fn)
    return fn


def taylor_expand(f: Callable, params: PyTree, degree: int) -> Callable:
    """The Taylor polynomial of ``f`` in its parameters around ``params``, of ``degree``.

    ``f_tayl(p, *args, **kwargs) = sum_{k=0}^{degree} D^k f(params)[delta]^k / k!`` with
    ``delta = p - params``; ``D^k f[delta]^k`` is the ``k``-th derivative of
    ``s -> f(params + s delta)`` at ``s = 0``, by nested ``jax.jvp``. Degree 0 is the constant
    ``f(params)``, degree 1 :func:`linearize`; a polynomial of degree ``<= degree`` in the
    parameters is reproduced exactly.

    Args:
      f: the model, ``f(params, *args, **kwargs) -> pytree``.
      params: the expansion point (a pytree of floating arrays).
      degree: a non-negative int.
    Returns:
      ``f_tayl(p, *args, **kwargs)`` with the output structure of ``f``.

    References:
      Lee, Xiao, Schoenholz, Bahri, Novak, Sohl-Dickstein & Pennington, 2019, "Wide Neural
      Networks of Any Depth Evolve as Linear Models Under Gradient Descent",
      arXiv:1902.06720 (the degree-1 case; higher degrees quantify its error).

    Examples:
      >>> import jax.numpy as jnp
      >>> from ntk import taylor_expand
      >>> f = lambda p, x: (x * p) ** 2
      >>> taylor_expand(f, jnp.array(1.0), 2)(jnp.array(3.0), 2.0)  # exact: (2 * 3) ** 2
      Array(36., dtype=float32)
    """
    if isinstance(degree, bool) or not isinstance(degree, int) or degree < 0:
        raise ValueError(f"`degree` must be a non-negative int, got {degree!r}.")
    _check_model(f, params)
    treedef = jax.tree_util.tree_structure(params)

    def f_tayl(new_params, *args, **kwargs):
        delta = _displacement(new_params, params, treedef)
        terms = _directional_derivatives(lambda p: f(p, *args, **kwargs), delta,
                                         degree)(params)
        scaled = [jax.tree_util.tree_map(lambda t, k=k: t / math.factorial(k), term)
                  for k, term in enumerate(terms)]
        return jax.tree_util.tree_map(lambda *ts: sum(ts[1:], ts[0]), *scaled)

    return f_tayl
