"""Monte Carlo estimates of the NNGP and NTK over random initialisations of a finite network.

For a network ``f(theta, x)`` whose parameters are drawn by ``init_fn``,

    nngp_MC(x1, x2) = (1/S) sum_s  mean_{traced axes} f(theta_s, x1) f(theta_s, x2)^T
    ntk_MC(x1, x2)  = (1/S) sum_s  Theta_emp(theta_s; x1, x2)
                    = (1/S) sum_s  sum_l J_l(theta_s, x1) J_l(theta_s, x2)^T

(neural-tangents' ``monte_carlo_kernel_fn``; Novak et al. 2020). As the widths grow the
per-sample kernels concentrate on the analytic ``ntk.stax`` kernels (bias ``O(1/width)``,
fluctuation ``O(width^-1/2)``), and the average over ``S`` samples shrinks the fluctuation by
``S^-1/2``. The empirical kernels come from :func:`ntk.empirical_ntk_fn` and
:func:`ntk.empirical_nngp_fn`, so ``trace_axes``/``diagonal_axes`` mean what they mean there.
"""
from __future__ import annotations

import collections
import functools
from typing import Callable, Iterable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ntk import batching, validation
from ntk.empirical import empirical_nngp_fn, empirical_ntk_fn, may_split_keywords

__all__ = ["monte_carlo_kernel_fn", "MonteCarloKernel"]

class MonteCarloKernel(collections.namedtuple("MonteCarloKernel", ("nngp", "ntk"))):
    """Monte Carlo kernel estimate ``(nngp, ntk)`` (neural-tangents' pair: ``nngp, ntk =
    kernel_fn(x1, x2)`` unpacks it) and, as an attribute, the number of sampled networks
    ``n_samples`` behind it (``None`` on a copy rebuilt by ``jax.tree_util``)."""

    def __new__(cls, nngp, ntk, n_samples=None):
        self = super().__new__(cls, nngp, ntk)
        self.n_samples = n_samples
        return self

    def __repr__(self):
        return f"{super().__repr__()[:-1]}, n_samples={self.n_samples})"

_NAMES = ("nngp", "ntk")


def _parse_n_samples(n_samples):
    def ok(n):
        return isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1

    if ok(n_samples):
        return (int(n_samples),), False
    if isinstance(n_samples, Iterable) and not isinstance(n_samples, (str, bytes)):
        counts = tuple(n_samples)
        if counts and all(ok(n) for n in counts):
            if any(b <= a for a, b in zip(counts, counts[1:])):
                raise ValueError(f"n_samples must be increasing, got {counts}")
            return tuple(int(n) for n in counts), True
    raise ValueError(f"n_samples must be a positive integer or an increasing sequence of them, "
                     f"got {n_samples!r}")


def _parse_get(get):
    if get is None:
        return _NAMES, False
    if isinstance(get, str):
        names = (get,)
    elif isinstance(get, (tuple, list)) and all(isinstance(g, str) for g in get):
        names = tuple(get)
    else:
        raise TypeError(f"get must be None, 'nngp', 'ntk' or a tuple of them, got {get!r}")
    bad = [g for g in names if g not in _NAMES]
    if bad or not names:
        raise ValueError(f"get: unknown kernel name(s) {bad or names!r}; valid names are "
                         f"{_NAMES}")
    return names, isinstance(get, str)


def monte_carlo_kernel_fn(init_fn: Callable, apply_fn: Callable, key: jax.Array, n_samples,
                          batch_size: int = 0, device_count: int = -1,
                          store_on_device: bool = True, trace_axes=(-1,), diagonal_axes=(),
                          vmap_axes=None, implementation: str = "auto",
                          memory_budget: Optional[int] = None):
    """Monte Carlo NNGP / NTK of the network ``(init_fn, apply_fn)``.

    Args:
      init_fn: ``init_fn(key, input_shape) -> (output_shape, params)`` (e.g. from ntk.stax).
      apply_fn: ``apply_fn(params, x, **kwargs) -> (N, ...)``.
      key: PRNG key; sample ``s`` uses ``jax.random.split(key, max(n_samples))[s]``, so the
        estimate at ``S`` samples is the same whether asked alone or as part of a sequence.
      n_samples: an int, or an increasing sequence of ints: then ``kernel_fn`` returns a
        generator of running estimates, one per count (each sampled network is used once).
      batch_size, device_count, store_on_device: as in :func:`ntk.batch` (neural-tangents'
        positions and meanings): with ``batch_size > 0`` the estimate is computed in
        ``batch_size x batch_size`` blocks of ``(x1, x2)``, every block from the same sampled
        networks, so it equals the unbatched estimate; ``apply_kwargs`` go to every block
        unchanged.
      trace_axes, diagonal_axes, vmap_axes, implementation, memory_budget: passed to
        :func:`ntk.empirical_ntk_fn` / :func:`ntk.empirical_nngp_fn`.

    Returns:
      ``kernel_fn(x1, x2=None, get=None, **apply_kwargs)``: a :class:`MonteCarloKernel`
      ``(nngp, ntk)`` with the attribute ``n_samples`` (``get`` a name: that array; a tuple: a namedtuple of those
      names), or a generator of them when ``n_samples`` is a sequence. ``apply_kwargs`` as
      in :func:`ntk.empirical_ntk_fn` (a pair ``(v1, v2)`` split between x1 and x2).
      Shapes are those of the empirical kernels, ``(N1, N2)`` for outputs ``(N, O)`` and
      the default ``trace_axes``.
      Inputs may be pytrees whose leaves share the batch size (``init_fn`` then gets the
      pytree of their shapes); a pytree-valued ``apply_fn`` gives the output's structure
      with one kernel per leaf (a name), or a :class:`MonteCarloKernel` / namedtuple per
      leaf (``None`` / a tuple), as neural-tangents does.
    """
    if not callable(init_fn) or not callable(apply_fn):
        raise TypeError("init_fn and apply_fn must be callable")
    counts, as_generator = _parse_n_samples(n_samples)
    keys = jax.random.split(key, counts[-1])
    memory_budget = validation.memory_budget(memory_budget)
    if not isinstance(store_on_device, (bool, np.bool_)):
        raise TypeError(f"store_on_device: expected a bool, got {store_on_device!r}")

    compiled = {}

    def running(x1, x2, names, apply_kwargs):
        x1, x2 = _inputs(x1, x2)
        mode = _fast_mode(init_fn, apply_fn, x1, trace_axes, diagonal_axes, vmap_axes,
                          implementation)
        if mode is not None and may_split_keywords(apply_kwargs, x2):
            mode = None   # the x1 and x2 calls may differ: ntk.empirical splits them
        sample_rng = _needs_rng(init_fn, apply_fn, keys[0], x1, apply_kwargs)
        if sample_rng:
            mode = None   # a key per sample, split between x1 and x2 by ntk.empirical
        if mode is not None:
            sample_sums = _fast_sums(init_fn, apply_fn, keys, x1, x2, names, mode,
                                     memory_budget, apply_kwargs, compiled)
        else:
            sample_sums = _empirical_sums(init_fn, apply_fn, keys, x1, x2, names, trace_axes,
                                          diagonal_axes, vmap_axes, implementation,
                                          memory_budget, apply_kwargs, sample_rng)
        sums = {name: None for name in names}
        done = 0
        for chunk_sums, size in sample_sums(counts):
            for name in names:
                sums[name] = chunk_sums[name] if sums[name] is None else (
                    jax.tree_util.tree_map(jnp.add, sums[name], chunk_sums[name]))
            done += size
            if done in counts:
                yield {name: jax.tree_util.tree_map(lambda s: s / done, sums[name])
                       for name in names}, done

    structures = {}

    def block_means(x1, x2, names, apply_kwargs):
        """Every count's means as one flat tuple of arrays (what ntk.batch assembles); a
        pytree kernel (of a pytree-valued ``apply_fn``) contributes its leaves."""
        flat = []
        for means, _ in running(x1, x2, names, apply_kwargs):
            for name in names:
                leaves, structures[name] = jax.tree_util.tree_flatten(means[name])
                flat.extend(leaves)
        return tuple(flat)

    # validates batch_size / device_count now, not at the first call
    batched_means = batching.batch(block_means, batch_size, device_count, store_on_device)

    def blocked(x1, x2, names, apply_kwargs):
        flat = list(batched_means(x1, x2, names, apply_kwargs))
        for n in counts:
            means = {}
            for name in names:
                size = structures[name].num_leaves
                means[name] = jax.tree_util.tree_unflatten(structures[name], flat[:size])
                del flat[:size]
            yield means, n

    def kernel_fn(x1, x2=None, get=None, **apply_kwargs):
        names, single = _parse_get(get)
        estimates = blocked if batch_size else running

        def package(means, n):
            # a pytree-valued apply_fn: the output's structure with a namedtuple per leaf
            if get is None:
                return jax.tree_util.tree_map(lambda *k: MonteCarloKernel(*k, n),
                                              means["nngp"], means["ntk"])
            if single:
                return means[names[0]]
            return jax.tree_util.tree_map(_kernels_tuple(names),
                                          *(means[g] for g in names))

        gen = (package(means, n) for means, n in estimates(x1, x2, names, apply_kwargs))
        if as_generator:
            return gen
        return next(iter(gen))

    return kernel_fn


@functools.lru_cache(maxsize=None)
def _kernels_tuple(names: tuple):
    return collections.namedtuple("Kernels", names)


def _inputs(x1, x2):
    """Inputs as arrays (a pytree: as a pytree of arrays), NaN / inf refused by leaf."""
    if x2 is not None and not hasattr(x2, "shape") and not jax.tree_util.tree_leaves(x2):
        x2 = None   # neural-tangents' x2 = (None, None): the same inputs as x1
    if hasattr(x1, "shape") and (x2 is None or hasattr(x2, "shape")):
        x1 = jnp.asarray(x1)
        x2 = None if x2 is None else jnp.asarray(x2)
        if x2 is not None and x1.shape[1:] != x2.shape[1:]:
            raise ValueError(f"x1 and x2 must agree in every axis but the batch axis; got "
                             f"x1.shape={x1.shape} and x2.shape={x2.shape}")
    else:
        x1 = jax.tree_util.tree_map(jnp.asarray, x1)
        validation.batch_tree(x1, "x1")
        if x2 is not None:
            x2 = jax.tree_util.tree_map(jnp.asarray, x2)
            if jax.tree_util.tree_structure(x2) != jax.tree_util.tree_structure(x1):
                raise ValueError(f"x1 and x2 must have the same pytree structure, got "
                                 f"{jax.tree_util.tree_structure(x1)} and "
                                 f"{jax.tree_util.tree_structure(x2)}")
            validation.batch_tree(x2, "x2")
    validation.finite_tree(x1, "x1")
    if x2 is not None:
        validation.finite_tree(x2, "x2")
    return x1, x2


def _shapes(x):
    """``init_fn``'s input shape: ``x.shape``, or the pytree of its leaves' shapes."""
    return jax.tree_util.tree_map(lambda a: tuple(a.shape), x)


# ----------------------------------------------------------------------------------------
# per-sample kernels


def _fast_mode(init_fn, apply_fn, x1, trace_axes, diagonal_axes, vmap_axes, implementation):
    """``'trace'``/``'diagonal'``/``'full'`` when outputs are ``(N, O)`` and the axes are the
    common ones; then samples are vmapped in chunks under one jit. ``None``: use ntk.empirical
    sample by sample."""
    if implementation not in ("auto", "jacobian") or vmap_axes is not None:
        return None
    try:
        out = jax.eval_shape(lambda k: apply_fn(init_fn(k, _shapes(x1))[1], x1),
                             jax.random.PRNGKey(0))
    except Exception:  # noqa: BLE001 - anything unusual goes through ntk.empirical
        return None
    if not hasattr(out, "shape") or not hasattr(x1, "shape") or len(out.shape) != 2:
        return None
    last = {(-1,), (1,)}
    t, d = tuple(trace_axes), tuple(diagonal_axes)
    if t in last and not d:
        return "trace"
    if d in last and not t:
        return "diagonal"
    if not t and not d:
        return "full"
    return None


def _contract(a, b, mode):
    """Per-sample kernel from ``(N1, O, ...)`` and ``(N2, O, ...)`` summed over the rest."""
    a = a.reshape(a.shape[:2] + (-1,))
    b = b.reshape(b.shape[:2] + (-1,))
    if mode == "trace":
        return jnp.einsum("nop,mop->nm", a, b) / a.shape[1]
    if mode == "diagonal":
        return jnp.einsum("nop,mop->nmo", a, b)
    return jnp.einsum("nop,mqp->nmoq", a, b)


def _fast_sums(init_fn, apply_fn, keys, x1, x2, names, mode, memory_budget, apply_kwargs,
               cache):
    """Sums of per-sample kernels over chunks of samples (vmapped, jitted).

    NTK per sample by Jacobian contraction ``sum_l J_l(x1) J_l(x2)^T`` (``jax.jacrev``).
    ``cache`` keeps the compiled chunk function between calls of one ``kernel_fn``.
    """
    def per_sample(k, x1, x2):
        params = init_fn(k, x1.shape)[1]
        f = lambda p, x: apply_fn(p, x, **apply_kwargs)
        out = {}
        if "nngp" in names:
            y1 = f(params, x1)
            y2 = y1 if x2 is None else f(params, x2)
            out["nngp"] = _contract(y1[..., None], y2[..., None], mode)
        if "ntk" in names:
            j1 = jax.jacrev(f)(params, x1)
            j2 = j1 if x2 is None else jax.jacrev(f)(params, x2)
            leaves = zip(jax.tree_util.tree_leaves(j1), jax.tree_util.tree_leaves(j2))
            out["ntk"] = sum(_contract(a, b, mode) for a, b in leaves)
        return out

    n_params = sum(int(np.prod(l.shape)) for l in jax.tree_util.tree_leaves(
        jax.eval_shape(lambda k: init_fn(k, x1.shape)[1], keys[0])))
    n_out = jax.eval_shape(lambda k: apply_fn(init_fn(k, x1.shape)[1], x1), keys[0]).shape[1]
    n_rows = x1.shape[0] + (0 if x2 is None else x2.shape[0])
    per_sample_bytes = 3 * n_rows * n_out * n_params * x1.dtype.itemsize
    budget = memory_budget or 512 * 1024**2
    chunk_max = int(max(1, min(64, budget // max(per_sample_bytes, 1))))

    chunk = min(chunk_max, counts_max := len(keys))
    cache_key = (tuple(names), mode, chunk, tuple(sorted(apply_kwargs.items())))
    if cache_key not in cache:
        def chunk_sum(chunk_keys, weights, x1, x2):
            # one compiled shape for every chunk: short chunks are padded and weighted out
            out = jax.vmap(per_sample, in_axes=(0, None, None))(chunk_keys, x1, x2)
            return {name: jnp.tensordot(weights.astype(v.dtype), v, axes=(0, 0))
                    for name, v in out.items()}
        cache[cache_key] = jax.jit(chunk_sum)
    chunk_sum = cache[cache_key]

    def generate(counts):
        start = 0
        for target in counts:
            while start < target:
                size = min(chunk, target - start)
                idx = np.minimum(np.arange(start, start + chunk), counts_max - 1)
                weights = jnp.asarray(np.arange(chunk) < size)
                yield chunk_sum(keys[idx], weights, x1, x2), size
                start += size

    return generate


def _needs_rng(init_fn, apply_fn, key, x1, apply_kwargs) -> bool:
    """Whether ``apply_fn`` runs only with an ``rng`` keyword (a stochastic layer such as
    ``stax.Dropout`` in ``mode='train'``) that the caller did not pass: then each sampled
    network also gets its own key, as neural-tangents' estimator gives one (a function that
    runs without it is called as it is)."""
    if "rng" in apply_kwargs:
        return False
    params = jax.eval_shape(lambda k: init_fn(k, _shapes(x1))[1], key)
    try:
        jax.eval_shape(lambda p: apply_fn(p, x1, **apply_kwargs), params)
        return False
    except Exception:  # noqa: BLE001 - probing: a failure here is reported by the real call
        pass
    try:
        jax.eval_shape(lambda p: apply_fn(p, x1, rng=key, **apply_kwargs), params)
        return True
    except Exception:  # noqa: BLE001
        return False


def _empirical_sums(init_fn, apply_fn, keys, x1, x2, names, trace_axes, diagonal_axes,
                    vmap_axes, implementation, memory_budget, apply_kwargs,
                    sample_rng: bool = False):
    """Per-sample kernels through :mod:`ntk.empirical`, one sample at a time (with
    ``sample_rng``, sample ``s`` is applied with ``rng=fold_in(key_s, 1)``)."""

    nngp_fn = empirical_nngp_fn(apply_fn, trace_axes=trace_axes, diagonal_axes=diagonal_axes,
                                vmap_axes=vmap_axes, memory_budget=memory_budget)
    ntk_fn = empirical_ntk_fn(apply_fn, trace_axes=trace_axes, diagonal_axes=diagonal_axes,
                              vmap_axes=vmap_axes, implementation=implementation,
                              memory_budget=memory_budget)
    shapes = _shapes(x1)
    init = jax.jit(lambda k: init_fn(k, shapes)[1])

    def generate(counts):
        for s in range(counts[-1]):
            params = init(keys[s])
            kwargs = (dict(apply_kwargs, rng=jax.random.fold_in(keys[s], 1)) if sample_rng
                      else apply_kwargs)
            yield {name: (nngp_fn if name == "nngp" else ntk_fn)(x1, x2, params, **kwargs)
                   for name in names}, 1

    return generate
