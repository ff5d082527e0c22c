"""Cheap approximations of the empirical NTK, for any ``apply_fn(params, x)``.

For a network with ``O`` outputs the full eNTK on ``N`` inputs is ``N O x N O``
(``Theta_ij(x1, x2) = <grad f_i(x1), grad f_j(x2)>``). The kernels here are ``N x N``:

- :func:`pntk_fn` — the sum-of-logits pseudo-NTK (Mohamadi, Bae & Sutherland 2023):
  ``pNTK(x1, x2) = <grad g(x1), grad g(x2)> = (1/O) sum_ij Theta_ij(x1, x2)`` with
  ``g = (1/sqrt O) sum_i f_i``. At initialisation ``Theta ~ pNTK (x) I_O`` with relative
  Frobenius error ``O(n^{-1/2})`` in the readout width ``n``; :func:`lift` builds
  ``pNTK (x) I_O`` where a full kernel is expected.
- :func:`trace_ntk_fn` — ``trNTK(x1, x2) = sum_c Theta_cc(x1, x2)`` (Engel et al. 2024,
  "Faithful and Efficient Explanations for Neural Networks via Neural Tangent Kernel
  Surrogate Models"), optionally cosine-normalised ``K / sqrt(diag(K1) diag(K2)^T)``. Note
  ``trNTK = O x`` the neural-tangents default ``trace_axes=(-1,)`` kernel (a mean).
- :func:`projected_features_fn` / :func:`projected_kernel_fn` — per-example gradients
  (of the scaled sum of logits, of each logit, or of any scalar of the output) multiplied
  by a random sketch ``S`` (``P x k``) with ``E[S S^T] = I_P``, so
  ``E[<S^T g(x1), S^T g(x2)>] = <g(x1), g(x2)>`` exactly (unbiased) and the relative error
  falls like ``k^{-1/2}`` (Johnson–Lindenstrauss; TRAK, Park et al. 2023; Engel et al. 2024).
  ``S`` is never stored: it is split into blocks of ``chunk_size`` rows of the parameters
  (all leaves, flattened and side by side), block ``i`` regenerated from
  ``fold_in(key, i)`` when needed, so the extra memory
  is ``O(B P + chunk_size k + N k)`` for example batches of size ``B`` — no ``P k`` term.
  Sketches: ``'gaussian'`` (``N(0, 1/k)``), ``'rademacher'`` (``+-1/sqrt k``),
  ``'sparse'`` (each parameter hashed to ``nonzeros`` random coordinates with random
  signs, scaled ``1/sqrt(nonzeros)``: Kane & Nelson's sparse JL; cost ``O(nonzeros P)``,
  independent of ``k``) and ``'srht'`` (subsampled randomized Hadamard transform
  ``S_block^T = sqrt(m/k) E R H D / sqrt m`` per block of ``m = 2^j`` rows — ``D`` random
  signs, ``H`` Walsh–Hadamard, ``R`` ``k`` rows sampled with replacement, ``E`` random
  output signs; cost ``O(P log m)``).
- :func:`lpntk_fn` — the labelled pseudo-NTK (Guo, Ren, Albrecht & Smith, ICLR 2024,
  "Sample Relationship from Learning Dynamics Matters for Generalisation"):
  ``lpNTK((x1, y1), (x2, y2)) = (1/O) s(x1, y1)^T Theta(x1, x2) s(x2, y2)`` with
  ``s(x, y) = sign(softmax(f(x)) - e_y) = 1 - 2 e_y``, the sign of the cross-entropy
  gradient in the logits. (The ``1/O`` normalisation is the pNTK one, so lpNTK = pNTK
  when all signs agree.)
- :func:`sign_kernel_fn`, :func:`adam_kernel_fn` — the kernels of Malladi et al. 2023
  ("A Kernel-Based View of Language Model Fine-Tuning"): SignGD
  ``K(x1, x2) = <sign grad f(x1), sign grad f(x2)>`` and the asymmetric Adam kernel
  ``K(x, x_train) = <grad f(x), sign grad f(x_train)>`` (solve it with
  :func:`ntk.predict.asymmetric_kernel_regression`).

Every builder returns a function of ``(x1, x2, params, ...)`` like
:func:`ntk.empirical_ntk_fn`; ``x2=None`` means ``x2 = x1``. ``apply_fn`` must map a batch
``(N, ...)`` to outputs ``(N, ...)`` with independent examples (flattened to ``(N, O)``);
per-example derivatives are taken by ``vmap`` over single examples. Inputs are processed in
batches of ``batch_size`` examples; by default :func:`plan_batch` picks the largest batch
whose per-example gradients and activations (estimated from the jaxpr of one example), plus
what every batch holds (a regenerated sketch block, the output), fit ``memory_budget``
bytes (default :func:`ntk.budget.default_memory_budget`). Kernels hold two batches of
gradients at a time; large batches matter for speed, since a sketch block is regenerated
once per batch and its product with the gradients is a matrix product of batch-many rows.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ntk import validation

__all__ = [
    "SKETCHES",
    "lift",
    "pntk_fn",
    "trace_ntk_fn",
    "lpntk_fn",
    "sign_kernel_fn",
    "adam_kernel_fn",
    "projected_features_fn",
    "projected_kernel_fn",
    "features_to_kernel",
    "sketch_matrix",
    "plan_batch",
]

SKETCHES = ("gaussian", "rademacher", "sparse", "srht")
_SKETCH_BLOCK_ENTRIES = 2**22  # entries of one regenerated sketch block (chunk_size * k)


# ---------------------------------------------------------------------------------------------
# Validation and plumbing
# ---------------------------------------------------------------------------------------------


def _check_apply_fn(apply_fn):
    if not callable(apply_fn):
        raise TypeError(f"`apply_fn` must be callable, got {type(apply_fn).__name__}.")


def _check_x(x, name):
    validation.array(x, name)
    validation.finite(x, name)


def _check_positive_int(value, name):
    validation.positive_int(value, name)


def _check_options(batch_size, memory_budget):
    validation.optional_positive_int(batch_size, "batch_size")
    validation.memory_budget(memory_budget)


def _public(fn):
    """The boundary of every kernel function here: inputs and parameters checked (arrays,
    finite), and an empty batch answered with an empty kernel (the kernel of one stand-in
    example, cut to zero rows or columns)."""
    def wrapped(x1, x2, params, *args, **kwargs):
        _check_x(x1, "x1")
        if x2 is not None:
            _check_x(x2, "x2")
        validation.finite_tree(params, "params")
        n1, n2 = x1.shape[0], (None if x2 is None else x2.shape[0])
        if n1 and n2 != 0:
            return fn(x1, x2, params, *args, **kwargs)
        stand = lambda x: jnp.zeros((1,) + x.shape[1:], x.dtype)
        kw = dict(kwargs)
        for lab, n in (("labels1", n1), ("labels2", n2)):
            if n == 0 and kw.get(lab) is not None:
                kw[lab] = jnp.zeros(1, jnp.asarray(kw[lab]).dtype)
        out = fn(stand(x1) if n1 == 0 else x1,
                 None if x2 is None else (stand(x2) if n2 == 0 else x2), params, *args, **kw)
        return out[:n1, :n1 if n2 is None else n2]
    wrapped.__doc__ = fn.__doc__
    return wrapped


def _check_output(output):
    if output in ("sum", "each") or callable(output):
        return
    raise ValueError(f"`output` must be 'sum', 'each' or a function of one example's outputs "
                     f"(O,) -> scalar, got {output!r}.")


def _split_kwargs(kwargs):
    """Array kwargs are traced; everything else is static (part of the jit cache key)."""
    dyn = {k: v for k, v in kwargs.items() if isinstance(v, (jax.Array, np.ndarray))}
    static = tuple(sorted((k, v) for k, v in kwargs.items() if k not in dyn))
    return dyn, static


def _out_dim(apply_fn, params, x, kwargs, name="x1"):
    out = validation.output_shape(apply_fn, params, x[:1], name, **kwargs)
    if out.shape[0] != 1:
        raise ValueError(f"`apply_fn` must keep the batch axis first: a batch of 1 gave "
                         f"outputs of shape {out.shape}.")
    return int(np.prod(out.shape[1:], dtype=int)), out.dtype


def _single(apply_fn, kwargs):
    """One example's outputs, flattened to ``(O,)``."""
    def f(params, xi):
        return apply_fn(params, xi[None], **kwargs)[0].reshape(-1)
    return f


def _reduce(output, o):
    """(fx (O,), weights (O,) or None) -> scalar or (O,)."""
    if output == "sum":
        return lambda fx, w: jnp.sum(fx) / math.sqrt(o)
    if output == "weighted":
        return lambda fx, w: jnp.dot(w, fx) / math.sqrt(o)
    if output == "each":
        return lambda fx, w: fx
    return lambda fx, w: jnp.asarray(output(fx)).reshape(())


def _grads(apply_fn, params, xb, weights, output, o, kwargs):
    """Per-example gradients, one ``(B, R, n_l)`` array per leaf (``R = O`` for 'each' else 1)."""
    f = _single(apply_fn, kwargs)
    red = _reduce(output, o)

    def g(p, xi, wi):
        return red(f(p, xi), wi)

    if output == "each":
        jac = jax.vmap(jax.jacrev(g), (None, 0, 0))(params, xb, weights)
        leaves = jax.tree_util.tree_leaves(jac)
        return [lf.reshape(lf.shape[0], lf.shape[1], -1) for lf in leaves]
    grad = jax.vmap(jax.grad(g), (None, 0, 0))(params, xb, weights)
    leaves = jax.tree_util.tree_leaves(grad)
    return [lf.reshape(lf.shape[0], 1, -1) for lf in leaves]


def _n_params(params):
    return int(sum(np.prod(np.shape(lf), dtype=int) for lf in jax.tree_util.tree_leaves(params)))


def _budget(budget):
    if budget is None:
        from ntk.budget import default_memory_budget
        return default_memory_budget()
    return validation.memory_budget(budget)


def plan_batch(n: int, per_example_bytes: int, budget: int, fixed_bytes: int = 0,
               batch_size: Optional[int] = None) -> int:
    """Examples per batch ``b``: the largest ``b <= n`` with
    ``fixed_bytes + b * per_example_bytes <= budget`` (at least 1), or ``batch_size`` when
    given (capped at ``n``).

    ``per_example_bytes`` is what one example of a batch holds (its per-example gradients,
    ``R P`` numbers, plus its share of activations); ``fixed_bytes`` what a batch holds
    whatever its size (a regenerated sketch block, the accumulated output).
    """
    if batch_size is not None:
        _check_positive_int(batch_size, "batch_size")
        return int(min(batch_size, n))
    room = budget - fixed_bytes
    return int(max(1, min(n, room // max(1, per_example_bytes))))


def _batch_size(batch_size, n, rows, n_params, itemsize, budget, activation_bytes=0,
                fixed_bytes=0):
    per_example = rows * n_params * itemsize + activation_bytes
    return plan_batch(n, per_example, _budget(budget), fixed_bytes, batch_size)


def _activation_bytes(apply_fn, params, x, kwargs, cache):
    """Bytes of one example's intermediate values in ``apply_fn`` (every equation's outputs in
    its jaxpr), doubled for the cotangents of the backward pass: the per-example share of a
    batch's working memory besides its gradients. Cached per input shape and dtype."""
    key = ("activations", tuple(x.shape[1:]), str(x.dtype), _split_kwargs(kwargs)[1])
    try:
        hash(key)
    except TypeError:
        key = None
    if key is not None and key in cache:
        return cache[key]
    jaxpr = jax.make_jaxpr(lambda p, xi: apply_fn(p, xi, **kwargs))(params, x[:1])
    total = 0
    for eqn in jaxpr.jaxpr.eqns:
        for v in eqn.outvars:
            aval = getattr(v, "aval", None)
            if hasattr(aval, "shape") and hasattr(aval, "dtype"):
                total += int(np.prod(aval.shape, dtype=int)) * np.dtype(aval.dtype).itemsize
    total *= 2
    if key is not None:
        cache[key] = total
    return total


def _batches(x, b):
    """Yield (x_block padded to b rows, number of valid rows)."""
    n = x.shape[0]
    for start in range(0, n, b):
        xb = x[start:start + b]
        valid = xb.shape[0]
        if valid < b:
            xb = jnp.concatenate([xb, jnp.repeat(xb[:1], b - valid, axis=0)], axis=0)
        yield xb, valid


def _pad_rows(w, b):
    if w.shape[0] < b:
        w = jnp.concatenate([w, jnp.repeat(w[:1], b - w.shape[0], axis=0)], axis=0)
    return w


class _Jitted:
    """A jitted function cached per static keyword arguments."""

    def __init__(self, fn):
        self.fn = fn
        self.cache = {}

    def __call__(self, *args, kwargs):
        dyn, static = _split_kwargs(kwargs)
        try:
            hash(static)
        except TypeError:
            raise TypeError("Non-array keyword arguments to apply_fn must be hashable, got "
                            f"{dict(static)}.") from None
        if static not in self.cache:
            static_dict = dict(static)
            self.cache[static] = jax.jit(
                lambda *a, dyn_kw: self.fn(*a, kwargs={**dyn_kw, **static_dict}))
        return self.cache[static](*args, dyn_kw=dyn)


# ---------------------------------------------------------------------------------------------
# Exact small kernels from per-example gradients
# ---------------------------------------------------------------------------------------------


def lift(k, num_outputs: int):
    """``K (x) I_O``: an ``(N1, N2)`` kernel as the full ``(N1, N2, O, O)`` kernel
    ``K[a, b] * delta_ij`` — the pNTK's stand-in for the full eNTK."""
    _check_positive_int(num_outputs, "num_outputs")
    if not hasattr(k, "ndim") or k.ndim != 2:
        raise ValueError(f"`k` must be (N1, N2), got {getattr(k, 'shape', type(k).__name__)}.")
    return k[:, :, None, None] * jnp.eye(num_outputs, dtype=k.dtype)[None, None]


def _gram_fn(output, contraction, transform=None):
    """(side-1 gradient fn, side-2 gradient fn, contraction) for one kind of kernel."""
    t1, t2 = transform if transform is not None else (None, None)

    def side(t):
        def grads(params, xb, wb, apply_fn, o, kwargs):
            g = _grads(apply_fn, params, xb, wb, output, o, kwargs)
            return g if t is None else [t(a) for a in g]
        return grads

    def contract(g1, g2):
        return sum(jnp.einsum(contraction, a, b) for a, b in zip(g1, g2))

    one = side(t1)
    return one, (one if t2 is t1 else side(t2)), contract


def _blocked_kernel(block, apply_fn, x1, x2, params, w1, w2, rows, batch_size, budget,
                    kwargs, cache, symmetric=False):
    """Assemble ``(N1, N2, ...)`` from per-example gradients of example batches.

    Two batches of gradients (a row batch and a column batch) fit ``memory_budget``. All
    side-2 gradients are computed once and kept when they fit beside one row batch; else
    they are recomputed per row batch — and when the kernel is symmetric (``x2=None`` and
    the same map on both sides) only the blocks on and above the diagonal are computed, the
    others are their transposes.
    """
    grads1, grads2, contract = block
    _check_x(x1, "x1")
    same = x2 is None
    x2 = x1 if x2 is None else x2
    _check_x(x2, "x2")
    o, dtype = _out_dim(apply_fn, params, x1, kwargs)
    p = _n_params(params)
    itemsize = np.dtype(dtype).itemsize
    budget = _budget(budget)
    act = _activation_bytes(apply_fn, params, x1, kwargs, cache)
    per_example = rows(o) * p * itemsize + act
    out_bytes = x1.shape[0] * x2.shape[0] * rows(o) ** 2 * itemsize
    b1 = plan_batch(x1.shape[0], per_example, budget // 2, out_bytes // 2, batch_size)
    b2 = plan_batch(x2.shape[0], per_example, budget // 2, out_bytes // 2, batch_size)
    w1 = jnp.zeros((x1.shape[0], o), dtype) if w1 is None else w1
    w2 = (w1 if same else jnp.zeros((x2.shape[0], o), dtype)) if w2 is None else w2
    if o not in cache:
        cache[o] = (
            _Jitted(lambda prm, a, wa, kwargs: grads1(prm, a, wa, apply_fn, o, kwargs)),
            _Jitted(lambda prm, a, wa, kwargs: grads2(prm, a, wa, apply_fn, o, kwargs)),
            jax.jit(contract))
    g1_fn, g2_fn, contract_fn = cache[o]
    keep = (x2.shape[0] * rows(o) * p * itemsize + b1 * per_example + out_bytes <= budget)
    symmetric = symmetric and same and not keep and b1 == b2
    side2 = []
    for s2 in range(0, x2.shape[0], b2):
        xb = _pad_rows(x2[s2:s2 + b2], b2)
        wb = _pad_rows(w2[s2:s2 + b2], b2)
        valid = min(b2, x2.shape[0] - s2)
        side2.append((g2_fn(params, xb, wb, kwargs=kwargs) if keep else (xb, wb), valid))
    blocks = {}
    for i, s1 in enumerate(range(0, x1.shape[0], b1)):
        va = min(b1, x1.shape[0] - s1)
        if keep and same and b1 == b2 and grads1 is grads2:
            g1 = side2[i][0]  # x2=None: the kept side-2 batch is this row batch
        else:
            g1 = g1_fn(params, _pad_rows(x1[s1:s1 + b1], b1), _pad_rows(w1[s1:s1 + b1], b1),
                       kwargs=kwargs)
        for j, (item, vb) in enumerate(side2):
            if symmetric and j < i:
                blk = blocks[(j, i)]
                blocks[(i, j)] = jnp.swapaxes(blk, 0, 1)
                if blk.ndim == 4:
                    blocks[(i, j)] = jnp.swapaxes(blocks[(i, j)], 2, 3)
                continue
            if keep:
                g2 = item
            elif symmetric and j == i:
                g2 = g1
            else:
                g2 = g2_fn(params, item[0], item[1], kwargs=kwargs)
            blocks[(i, j)] = contract_fn(g1, g2)[:va, :vb]
            del g2
        del g1
    n_rows, n_cols = -(-x1.shape[0] // b1), len(side2)
    return jnp.concatenate([jnp.concatenate([blocks[(i, j)] for j in range(n_cols)], axis=1)
                            for i in range(n_rows)], axis=0)


def pntk_fn(apply_fn: Callable, *, implementation: str = "auto",
            batch_size: Optional[int] = None, memory_budget: Optional[int] = None):
    """Sum-of-logits pseudo-NTK (Mohamadi, Bae & Sutherland 2023).

    ``pNTK(x1, x2) = <grad g(x1), grad g(x2)>``, ``g(x) = (1/sqrt O) sum_i f_i(x)``,
    which equals ``(1/O) sum_ij Theta_ij(x1, x2)`` of the full eNTK — ``O^2`` cheaper.

    ``implementation``: ``'gradients'`` (also what ``'auto'`` means) contracts per-example
    gradients here — ``N`` gradient evaluations and ``N1 N2 P`` multiply-adds, in batches
    planned on ``memory_budget`` (symmetric blocks once for ``x2=None``); ``'jacobian'``,
    ``'ntvp'`` or ``'structured'`` compute the eNTK of the one-output model ``g`` by
    :func:`ntk.empirical_ntk_fn` with that implementation (structured derivatives avoid the
    ``P``-long rows for wide dense layers, at a cost that grows with the spatial positions
    of convolutions). On the CIFAR ResNet-18 the per-example gradients are the fastest.

    Returns ``fn(x1, x2=None, params, **apply_kwargs) -> (N1, N2)``.
    """
    _check_apply_fn(apply_fn)
    _check_options(batch_size, memory_budget)
    engine_kinds = ("jacobian", "ntvp", "structured")
    if implementation not in ("auto", "gradients") + engine_kinds:
        raise ValueError(f"`implementation` must be one of "
                         f"{('auto', 'gradients') + engine_kinds}, got {implementation!r}.")
    block = _gram_fn("sum", "aRn,bRn->ab")
    cache = {}
    engines = {}

    def engine(o):
        if o not in engines:
            from ntk.empirical import empirical_ntk_fn

            def summed(params, x, **kw):
                fx = apply_fn(params, x, **kw)
                return fx.reshape(fx.shape[0], -1).sum(-1, keepdims=True) / math.sqrt(o)

            engines[o] = empirical_ntk_fn(summed, vmap_axes=0, implementation=implementation,
                                          memory_budget=memory_budget)
        return engines[o]

    def fn(x1, x2, params, **apply_kwargs):
        if implementation in engine_kinds:
            _check_x(x1, "x1")
            o, _ = _out_dim(apply_fn, params, x1, apply_kwargs)
            return engine(o)(x1, x2, params, **apply_kwargs)
        return _blocked_kernel(block, apply_fn, x1, x2, params, None, None, lambda o: 1,
                               batch_size, memory_budget, apply_kwargs, cache, symmetric=True)

    return _public(fn)


def trace_ntk_fn(apply_fn: Callable, *, normalize: bool = False, implementation: str = "auto",
                 batch_size: Optional[int] = None, memory_budget: Optional[int] = None):
    """Trace NTK (Engel et al. 2024): ``trNTK(x1, x2) = sum_c Theta_cc(x1, x2)``.

    With ``normalize=True`` the cosine-normalised kernel
    ``trNTK(x1, x2) / sqrt(trNTK(x1, x1) trNTK(x2, x2))`` (entries in ``[-1, 1]``, unit
    diagonal; the self-similarities are per-example gradient norms, ``O(N)`` extra).
    ``implementation``: ``'gradients'`` contracts per-example per-logit gradients here
    (``N1 N2 O P``); otherwise ``O x`` :func:`ntk.empirical_ntk_fn` (``trace_axes=(-1,)``,
    a mean) with that implementation.

    Returns ``fn(x1, x2=None, params, **apply_kwargs) -> (N1, N2)``.
    """
    _check_apply_fn(apply_fn)
    _check_options(batch_size, memory_budget)
    block = _gram_fn("each", "aon,bon->ab")
    diag_block = _gram_fn("each", "aon,bon->ab")
    cache, dcache = {}, {}
    engine = []

    def fn(x1, x2, params, **apply_kwargs):
        _check_x(x1, "x1")
        if implementation == "gradients":
            k = _blocked_kernel(block, apply_fn, x1, x2, params, None, None, lambda o: o,
                                batch_size, memory_budget, apply_kwargs, cache, symmetric=True)
        else:
            if not engine:
                from ntk.empirical import empirical_ntk_fn

                def flat(params, x, **kw):
                    fx = apply_fn(params, x, **kw)
                    return fx.reshape(fx.shape[0], -1)

                engine.append(empirical_ntk_fn(flat, vmap_axes=0,
                                               implementation=implementation,
                                               memory_budget=memory_budget))
            o, _ = _out_dim(apply_fn, params, x1, apply_kwargs)
            k = o * engine[0](x1, x2, params, **apply_kwargs)
        if not normalize:
            return k
        d1 = _self_norms(diag_block, apply_fn, x1, params, batch_size, memory_budget,
                         apply_kwargs, dcache)
        d2 = d1 if x2 is None else _self_norms(diag_block, apply_fn, x2, params, batch_size,
                                               memory_budget, apply_kwargs, dcache)
        return k / jnp.sqrt(jnp.outer(d1, d2))

    return _public(fn)


def _self_norms(diag_block, apply_fn, x, params, batch_size, budget, kwargs, cache):
    grads, _, _ = diag_block
    o, dtype = _out_dim(apply_fn, params, x, kwargs)
    b = _batch_size(batch_size, x.shape[0], o, _n_params(params), np.dtype(dtype).itemsize,
                    budget)
    if o not in cache:
        cache[o] = _Jitted(lambda prm, a, wa, kwargs: sum(
            jnp.sum(g**2, axis=(1, 2)) for g in grads(prm, a, wa, apply_fn, o, kwargs)))
    jitted = cache[o]
    w = jnp.zeros((b, o), dtype)
    return jnp.concatenate([jitted(params, xb, w, kwargs=kwargs)[:v] for xb, v in _batches(x, b)])


def _label_signs(labels, o, name, n, dtype):
    labels = validation.labels(jnp.asarray(labels), n, o, name)
    return 1.0 - 2.0 * jax.nn.one_hot(labels, o, dtype=dtype)


def lpntk_fn(apply_fn: Callable, *, batch_size: Optional[int] = None,
             memory_budget: Optional[int] = None):
    """Labelled pseudo-NTK (Guo, Ren, Albrecht & Smith 2024).

    ``lpNTK((x1, y1), (x2, y2)) = (1/O) s1^T Theta(x1, x2) s2``, ``s = 1 - 2 e_y`` — the
    sign of the cross-entropy logit gradient ``softmax(f(x)) - e_y`` — computed as
    ``<grad (s1 . f(x1)) / sqrt O, grad (s2 . f(x2)) / sqrt O>``. Positive entries: learning
    one sample helps the other ("interchangeable"); negative: "contradictory".

    Returns ``fn(x1, x2, params, *, labels1, labels2=None, **apply_kwargs) -> (N1, N2)``.
    """
    _check_apply_fn(apply_fn)
    _check_options(batch_size, memory_budget)
    block = _gram_fn("weighted", "aRn,bRn->ab")
    cache = {}

    def fn(x1, x2, params, *, labels1, labels2=None, **apply_kwargs):
        _check_x(x1, "x1")
        o, dtype = _out_dim(apply_fn, params, x1, apply_kwargs)
        s1 = _label_signs(labels1, o, "labels1", x1.shape[0], dtype)
        if x2 is None:
            s2 = s1
        else:
            if labels2 is None:
                raise ValueError("`labels2` is required when `x2` is given.")
            s2 = _label_signs(labels2, o, "labels2", x2.shape[0], dtype)
        return _blocked_kernel(block, apply_fn, x1, x2, params, s1, s2, lambda o: 1,
                               batch_size, memory_budget, apply_kwargs, cache, symmetric=True)

    return _public(fn)


def sign_kernel_fn(apply_fn: Callable, *, output: Union[str, Callable] = "sum",
                   batch_size: Optional[int] = None, memory_budget: Optional[int] = None):
    """SignGD kernel (Malladi et al. 2023): ``K(x1, x2) = <sign grad f(x1), sign grad f(x2)>``.

    ``f`` is the scalar selected by ``output``: ``'sum'`` (``(1/sqrt O) sum_i f_i``; the
    scale does not change signs), a function ``(O,) -> scalar`` (e.g. the logit of a
    label word), or ``'each'`` for the full ``(N1, N2, O, O)`` kernel of per-logit signs.

    Returns ``fn(x1, x2=None, params, **apply_kwargs)``.
    """
    _check_apply_fn(apply_fn)
    _check_options(batch_size, memory_budget)
    _check_output(output)
    contraction = "aon,bpn->abop" if output == "each" else "aRn,bRn->ab"
    block = _gram_fn(output, contraction, (jnp.sign, jnp.sign))
    cache = {}

    def fn(x1, x2, params, **apply_kwargs):
        return _blocked_kernel(block, apply_fn, x1, x2, params, None, None,
                               (lambda o: o) if output == "each" else (lambda o: 1),
                               batch_size, memory_budget, apply_kwargs, cache, symmetric=True)

    return _public(fn)


def adam_kernel_fn(apply_fn: Callable, *, output: Union[str, Callable] = "sum",
                   batch_size: Optional[int] = None, memory_budget: Optional[int] = None):
    """Asymmetric Adam kernel (Malladi et al. 2023, early-time Adam = SignGD):
    ``K(x, x') = <grad f(x), sign grad f(x')>``, ``x'`` the training point.

    Not symmetric: ``fn(x_train, None, params)`` is the ``(N, N)`` train matrix and
    ``fn(x_test, x_train, params)`` the ``(N_test, N)`` cross kernel for
    :func:`ntk.predict.asymmetric_kernel_regression`. ``output`` as in
    :func:`sign_kernel_fn`.
    """
    _check_apply_fn(apply_fn)
    _check_options(batch_size, memory_budget)
    _check_output(output)
    contraction = "aon,bpn->abop" if output == "each" else "aRn,bRn->ab"
    block = _gram_fn(output, contraction, (lambda a: a, jnp.sign))
    cache = {}

    def fn(x1, x2, params, **apply_kwargs):
        return _blocked_kernel(block, apply_fn, x1, x2, params, None, None,
                               (lambda o: o) if output == "each" else (lambda o: 1),
                               batch_size, memory_budget, apply_kwargs, cache)

    return _public(fn)


# ---------------------------------------------------------------------------------------------
# Sketches, regenerated block by block
# ---------------------------------------------------------------------------------------------


def _fwht(x):
    """Unnormalised fast Walsh–Hadamard transform along the last axis (length 2^j)."""
    m = x.shape[-1]
    lead = x.shape[:-1]
    h = 1
    while h < m:
        y = x.reshape(lead + (m // (2 * h), 2, h))
        a, b = y[..., 0, :], y[..., 1, :]
        x = jnp.stack([a + b, a - b], axis=-2).reshape(lead + (m,))
        h *= 2
    return x


def _next_pow2(n):
    return 1 << max(0, int(n - 1).bit_length())


def _random_signs(key, shape, dtype):
    """i.i.d. +-1 entries, 32 per random 32-bit word (TRAK's fast_jl also packs bits): a
    Rademacher matrix for 1/32 of the random-number generation."""
    rows, cols = shape
    words = jax.random.bits(key, (rows, -(-cols // 32)), jnp.uint32)
    bits = (words[:, :, None] >> jnp.arange(32, dtype=jnp.uint32)[None, None]) & 1
    return (2 * bits.reshape(rows, -1)[:, :cols].astype(dtype) - 1)


def _apply_block(g, key, kind, k, nonzeros):
    """``g (R, c) -> g S_block (R, k)`` for one regenerated block of the sketch."""
    c = g.shape[1]
    dtype = g.dtype
    if kind == "gaussian":
        s = jax.random.normal(key, (c, k), dtype) / math.sqrt(k)
        return g @ s
    if kind == "rademacher":
        return g @ (_random_signs(key, (c, k), dtype) / math.sqrt(k))
    if kind == "sparse":
        kb, ks = jax.random.split(key)
        buckets = jax.random.randint(kb, (c, nonzeros), 0, k)
        signs = jax.random.rademacher(ks, (c, nonzeros), dtype) / math.sqrt(nonzeros)
        vals = (g[:, :, None] * signs[None]).reshape(g.shape[0], -1)
        return jnp.zeros((g.shape[0], k), dtype).at[:, buckets.reshape(-1)].add(vals)
    if kind == "srht":
        m = _next_pow2(c)
        kd, kr, ke = jax.random.split(key, 3)
        d = jax.random.rademacher(kd, (c,), dtype)
        xg = g * d[None]
        if m > c:
            xg = jnp.pad(xg, ((0, 0), (0, m - c)))
        hx = _fwht(xg) / math.sqrt(m)
        idx = jax.random.randint(kr, (k,), 0, m)
        # Output signs: without them E[phi_block | D] != 0 (the all-ones Hadamard row), and
        # the cross terms between blocks would carry a k-independent variance.
        eps = jax.random.rademacher(ke, (k,), dtype)
        return hx[:, idx] * (eps * math.sqrt(m / k))[None]
    raise ValueError(f"`sketch` must be one of {SKETCHES}, got {kind!r}.")


def _sketch_leaf(g, key, kind, k, chunk, nonzeros):
    """``g (R, n) -> g S (R, k)``, ``S`` regenerated in ``chunk``-row blocks: block ``i``
    from ``fold_in(key, i)``; a shorter last block when ``chunk`` does not divide ``n``."""
    n = g.shape[1]
    c = min(chunk, n)
    n_full, tail = divmod(n, c)
    if n_full == 1 and not tail:
        return _apply_block(g, jax.random.fold_in(key, 0), kind, k, nonzeros)

    def body(i, acc):
        gi = lax.dynamic_slice_in_dim(g, i * c, c, axis=1)
        return acc + _apply_block(gi, jax.random.fold_in(key, i), kind, k, nonzeros)

    acc = lax.fori_loop(0, n_full, body, jnp.zeros((g.shape[0], k), g.dtype))
    if tail:
        acc = acc + _apply_block(g[:, n_full * c:], jax.random.fold_in(key, n_full), kind, k,
                                 nonzeros)
    return acc


def _sketch_grads(grads, key, kind, k, chunk, nonzeros):
    """``[G_l (B, R, n_l)] -> [G_1 ... G_L] S`` ``(B, R, k)``: the leaves side by side (one
    copy of the gradients) and one loop over sketch blocks, so that a network with many
    leaves compiles one block computation rather than one per leaf."""
    b, r = grads[0].shape[:2]
    flat = [gl.reshape(b * r, -1) for gl in grads]
    flat = flat[0] if len(flat) == 1 else jnp.concatenate(flat, axis=1)
    return _sketch_leaf(flat, key, kind, k, chunk, nonzeros).reshape(b, r, k)


def sketch_matrix(params, key, dim: int, *, sketch: str = "rademacher",
                  chunk_size: Optional[int] = None, nonzeros: int = 4):
    """The dense ``(P, dim)`` sketch that :func:`projected_features_fn` applies implicitly
    (rows in ``jax.tree_util.tree_leaves(params)`` order, each leaf flattened row-major,
    cut into blocks of ``chunk_size`` rows regardless of where leaves end).

    For tests and small ``P`` only — the whole point of the projected features is never to
    build this. Computed by sketching the identity leaf by leaf.
    """
    _check_positive_int(dim, "dim")
    if sketch not in SKETCHES:
        raise ValueError(f"`sketch` must be one of {SKETCHES}, got {sketch!r}.")
    chunk = _chunk(chunk_size, dim)
    leaves = jax.tree_util.tree_leaves(params)
    eye = jnp.eye(_n_params(params), dtype=jnp.result_type(*leaves))
    return _sketch_leaf_jit(eye, key, sketch, dim, chunk, nonzeros)


_sketch_leaf_jit = jax.jit(_sketch_leaf, static_argnums=(2, 3, 4, 5))


def _chunk(chunk_size, dim):
    if chunk_size is None:
        return max(1, _SKETCH_BLOCK_ENTRIES // dim)
    _check_positive_int(chunk_size, "chunk_size")
    return int(chunk_size)


def projected_features_fn(apply_fn: Callable, dim: int, *, sketch: str = "rademacher",
                          output: Union[str, Callable] = "sum",
                          chunk_size: Optional[int] = None, nonzeros: int = 4,
                          batch_size: Optional[int] = None,
                          memory_budget: Optional[int] = None):
    """Randomly projected per-example gradients ``phi(x) = S^T grad f(x)``.

    ``f`` is chosen by ``output``: ``'sum'`` — ``(1/sqrt O) sum_i f_i`` (then
    ``phi(x1) . phi(x2)`` estimates the pNTK), ``'each'`` — every logit (features
    ``(N, O, dim)``; their inner products estimate the full eNTK, their per-logit traces the
    trNTK), or a function ``(O,) -> scalar`` of one example's outputs. ``S`` is ``(P, dim)``
    with independent blocks of ``chunk_size`` rows drawn from ``key`` and
    ``E[S S^T] = I_P`` for every ``sketch`` in :data:`SKETCHES`; it is regenerated, never
    stored, so the same ``key`` gives the same features across calls (save them and build
    kernels later with :func:`features_to_kernel`).

    Args:
      dim: sketch dimension ``k > 0``.
      chunk_size: parameter rows per regenerated block (default ``2^22 // dim``).
      nonzeros: nonzeros per parameter for the ``'sparse'`` sketch.
    Returns:
      ``fn(x, params, key, **apply_kwargs) -> (N, dim)`` (or ``(N, O, dim)`` for 'each').
    """
    _check_apply_fn(apply_fn)
    _check_options(batch_size, memory_budget)
    _check_positive_int(dim, "dim")
    _check_output(output)
    if sketch not in SKETCHES:
        raise ValueError(f"`sketch` must be one of {SKETCHES}, got {sketch!r}.")
    _check_positive_int(nonzeros, "nonzeros")
    chunk = _chunk(chunk_size, dim)
    jitted_cache = {}

    def features_block(params, xb, key, apply_fn, o, kwargs):
        w = jnp.zeros((xb.shape[0], o), jnp.result_type(float))
        g = _grads(apply_fn, params, xb, w, output, o, kwargs)
        return _sketch_grads(g, key, sketch, dim, chunk, nonzeros)

    def fn(x, params, key, **apply_kwargs):
        _check_x(x, "x")
        validation.prng_key(key, "key")
        validation.finite_tree(params, "params")
        if x.shape[0] == 0:    # an empty batch: the features of a stand-in example, cut
            return fn(jnp.zeros((1,) + x.shape[1:], x.dtype), params, key, **apply_kwargs)[:0]
        o, dtype = _out_dim(apply_fn, params, x, apply_kwargs, "x")
        rows = o if output == "each" else 1
        itemsize = np.dtype(dtype).itemsize
        # A batch holds its gradients twice (per leaf, and the leaves side by side while
        # they are sketched) and activations; whatever its size, one regenerated sketch
        # block (its random words and its values) and the accumulated features.
        fixed = 2 * chunk * dim * itemsize + x.shape[0] * rows * dim * itemsize
        b = _batch_size(batch_size, x.shape[0], rows, 2 * _n_params(params), itemsize,
                        memory_budget,
                        _activation_bytes(apply_fn, params, x, apply_kwargs, jitted_cache),
                        fixed)
        if o not in jitted_cache:
            jitted_cache[o] = _Jitted(
                lambda prm, xb, kk, kwargs: features_block(prm, xb, kk, apply_fn, o, kwargs))
        jitted = jitted_cache[o]
        out = jnp.concatenate([jitted(params, xb, key, kwargs=apply_kwargs)[:v]
                               for xb, v in _batches(x, b)])
        return out if output == "each" else out[:, 0, :]

    return fn


def features_to_kernel(phi1, phi2=None):
    """Kernel from (projected) features: ``(N1, k), (N2, k) -> (N1, N2)``; for per-logit
    features ``(N1, O, k), (N2, O, k) -> (N1, N2, O, O)``."""
    phi2 = phi1 if phi2 is None else phi2
    if phi1.ndim != phi2.ndim or phi1.shape[-1] != phi2.shape[-1] or phi1.ndim not in (2, 3):
        raise ValueError(f"features must be (N, k) or (N, O, k) with matching k, got "
                         f"{tuple(phi1.shape)} and {tuple(phi2.shape)}.")
    if phi1.ndim == 2:
        return phi1 @ phi2.T
    return jnp.einsum("aik,bjk->abij", phi1, phi2)


def projected_kernel_fn(apply_fn: Callable, dim: int, **kwargs):
    """Kernel of :func:`projected_features_fn` features (same arguments):
    ``K_hat(x1, x2) = phi(x1) . phi(x2)``, an unbiased estimate of the exact kernel
    (pNTK for ``output='sum'``, the full eNTK ``(N1, N2, O, O)`` for ``'each'``).

    Returns ``fn(x1, x2, params, key, **apply_kwargs)``.
    """
    feats = projected_features_fn(apply_fn, dim, **kwargs)

    def fn(x1, x2, params, key, **apply_kwargs):
        for name, x in (("x1", x1), ("x2", x2)):
            if x is not None:
                _out_dim(apply_fn, params, x, apply_kwargs, name)
        phi1 = feats(x1, params, key, **apply_kwargs)
        phi2 = phi1 if x2 is None else feats(x2, params, key, **apply_kwargs)
        return features_to_kernel(phi1, phi2)

    return _public(fn)


# Short names of the kernel-function factories above.
pntk = pntk_fn
trace_ntk = trace_ntk_fn
projected_kernel = projected_kernel_fn
projected_features = projected_features_fn
__all__ += ["pntk", "trace_ntk", "projected_kernel", "projected_features"]
