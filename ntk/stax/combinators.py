"""Composition: ``serial``, ``repeat``, ``parallel`` and the branch layers ``FanOut``,
``FanInSum``, ``FanInProd``, ``FanInConcat``.

Kernels of independent branches add: if ``y = sum_i a_i y_i`` with the ``y_i`` mean-zero and
independent given the input (each branch ends in its own random layer, or is the identity
next to such branches), then ``E[y y'] = sum_i a_i^2 E[y_i y_i']`` and the same holds for the
NTK, whose parameter sets are disjoint. A depth-L residual network
``x_{l+1} = x_l + L^(-1/2) g_l(x_l)`` (Hayou & Yang 2023; Yang et al. 2023) is

    serial(*[serial(FanOut(2), parallel(Identity(), g), FanInSum(weights=(1, L**-0.5)))
             for _ in range(L)])
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import jax
import numpy as np

from ntk.stax.core import (KernelFn, check_apply_kwargs, check_positive_int, diagonalize,
                           no_kernel_fn)
from ntk.stax.kernel import Kernel

__all__ = ["serial", "repeat", "parallel", "FanOut", "FanInSum", "FanInProd", "FanInConcat"]


def _as_triple(layer, position: str):
    """Accept a ``(init, apply, kernel)`` triple or a kernel-less ``(init, apply)`` pair."""
    if not isinstance(layer, (tuple, list)) or len(layer) not in (2, 3):
        raise TypeError(f"{position}: expected a layer (init_fn, apply_fn, kernel_fn), got "
                        f"{type(layer).__name__}")
    if len(layer) == 2:
        init_fn, apply_fn = layer
        name = getattr(init_fn, "__name__", None) or getattr(apply_fn, "__name__", "layer")
        return init_fn, apply_fn, no_kernel_fn(
            f"{name} ({position})", "it is an (init_fn, apply_fn) pair without kernel_fn")
    init_fn, apply_fn, kernel_fn = layer
    if not isinstance(kernel_fn, KernelFn):
        name = getattr(kernel_fn, "__name__", repr(kernel_fn))
        kernel_fn = no_kernel_fn(f"{name} ({position})",
                                 "its kernel_fn is not an ntk.stax kernel function")
    return init_fn, apply_fn, kernel_fn


def _first_missing(kernel_fns):
    return next((k.missing for k in kernel_fns if k.missing is not None), None)


def _network_keywords(name: str, kernel_fns) -> dict:
    """What a composite network's ``KernelFn`` inherits from its layers: whether one reads
    ``pattern=``, and the ``(batch_axis, channel_axis)`` its raw inputs are laid out with:
    those of the first layer that declares them (neural-tangents' rule; ``None``: no layer
    does, inputs are batch-first and channels-last). Every later layer checks the layout of
    the activations it gets at ``kernel_fn`` time (:func:`ntk.stax.core.check_layout`)."""
    axes = next((kf.input_axes for kf in kernel_fns if kf.input_axes is not None), None)
    return dict(uses_pattern=any(kf.uses_pattern for kf in kernel_fns), input_axes=axes,
                batch_coupled=any(kf.batch_coupled for kf in kernel_fns),
                rounding_ntk=all(kf.rounding_ntk for kf in kernel_fns))


def serial(*layers):
    """Compose layers: ``f = f_n o ... o f_1``; kernels compose the same way.

    The layout planner walks the layers backwards: a layer that reads only equal-position
    covariances (``Flatten``; ``Conv`` when its own output needs only those) lets everything
    before it drop the off-diagonal spatial covariances.
    """
    if not layers:
        raise ValueError("serial needs at least one layer")
    triples = [_as_triple(l, f"serial layer {i}") for i, l in enumerate(layers)]
    init_fns, apply_fns, kernel_fns = zip(*triples)
    name = "serial(" + ", ".join(k.name for k in kernel_fns) + ")"

    def init_fn(key, input_shape):
        params = []
        for f in init_fns:
            key, sub = jax.random.split(key)
            input_shape, p = f(sub, input_shape)
            params.append(p)
        return input_shape, tuple(params)

    def apply_fn(params, x, **kwargs):
        check_apply_kwargs(name, kwargs)
        if len(params) != len(apply_fns):
            raise ValueError(f"serial: params has {len(params)} entries for {len(apply_fns)} "
                             f"layers")
        for f, p in zip(apply_fns, params):
            x = f(p, x, **kwargs)
        return x

    def requirements(out_full):
        reqs = [None] * len(kernel_fns)
        need = out_full
        for i in range(len(kernel_fns) - 1, -1, -1):
            reqs[i] = need  # what layer i's output must keep
            need = kernel_fns[i].input_full(need)
        return reqs, need

    def input_full(out_full):
        return requirements(out_full)[1]

    def transform(k, out_full):
        reqs, _ = requirements(out_full)
        for kf, req in zip(kernel_fns, reqs):
            if not kf.input_full(req):
                k = diagonalize(k)
            k = kf.transform(k, req)
        return k

    init_fn.__name__ = apply_fn.__name__ = name
    return init_fn, apply_fn, KernelFn(name, transform, input_full,
                                       missing=_first_missing(kernel_fns),
                                       **_network_keywords("serial", kernel_fns))


def repeat(layer, n: int):
    """``serial(*[layer] * n)`` compiled as one loop (``jax.lax.scan``): depth ``n`` costs
    what depth 2 compiles.

    ``layer`` must map its input shape to the same shape (``init_fn`` checks it). Its
    parameters are stacked along a new leading axis of length ``n`` (``init_fn`` draws them
    in a scan with ``serial``'s keys, so ``params[l]`` is ``serial``'s ``params[l]`` from the
    same key); ``apply_fn`` scans ``x <- apply(params[l], x)`` over
    ``l = 0 .. n-1`` and passes its keyword arguments (e.g. ``rng``) to every step, as in
    neural-tangents.

    Kernel: ``K_n = T^n(K_0)`` for the layer's kernel map ``T``. The first application is made
    outside the loop (it turns the raw-input kernel's metadata -- ``is_input``,
    ``is_gaussian`` -- into the layer's own), the other ``n - 1`` by ``lax.scan``, so the
    layer's kernel function is traced twice whatever ``n`` is. A layer whose kernel changes its
    shape or metadata from one application to the next cannot be looped: use ``serial``.

    Shapes: ``(N, ..., C) -> (N, ..., C)``.

    Novak et al. (2020), "Neural Tangents: Fast and Easy Infinite Neural Networks in Python",
    arXiv:1912.02803 (``stax.repeat``).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"repeat: n must be a non-negative integer, got {n!r}")
    n = int(n)
    init_one, apply_one, kf = _as_triple(layer, "repeat layer")
    name = f"repeat({kf.name}, {n})"

    def init_fn(key, input_shape):
        out_shape, _ = init_one(key, input_shape)
        if tuple(out_shape) != tuple(input_shape):
            raise ValueError(f"{name}: the layer maps input_shape {tuple(input_shape)} to "
                             f"{tuple(out_shape)}; repeat needs equal shapes (use "
                             f"serial(*[layer] * n) instead)")

        def step(carry, _):
            carry, sub = jax.random.split(carry)
            return carry, init_one(sub, input_shape)[1]

        # The keys ``serial(*[layer] * n)`` draws (key, sub = split(key) per layer), so both
        # initialize the same network from the same key.
        _, params = jax.lax.scan(step, key, None, length=n)
        return input_shape, params

    def apply_fn(params, x, **kwargs):
        check_apply_kwargs(name, kwargs)
        def step(y, p):
            out = apply_one(p, y, **kwargs)
            if out.shape != y.shape:
                raise ValueError(f"{name}: the layer maps shape {y.shape} to {out.shape}; "
                                 f"repeat needs equal shapes (use serial(*[layer] * n))")
            return out, None

        y, _ = jax.lax.scan(step, x, params, length=n)
        return y

    def loop_layout(out_full):
        """What every looped application's output keeps: full if any application's must."""
        need, full = out_full, out_full
        for _ in range(min(n - 1, 3)):  # a map on {False, True} cycles within 2 steps
            need = kf.input_full(need)
            full = full or need
        return full

    def input_full(out_full):
        return out_full if n == 0 else kf.input_full(loop_layout(out_full))

    def transform(k, out_full):
        if n == 0:
            return k
        full = loop_layout(out_full)

        def step(k):
            if not kf.input_full(full):
                k = diagonalize(k)
            return kf.transform(k, full)

        k = step(k)
        if n == 1:
            return k
        try:
            k, _ = jax.lax.scan(lambda c, _: (step(c), None), k, None, length=n - 1)
        except TypeError as e:
            raise ValueError(
                f"{name}: the layer changes the kernel's shapes or metadata from one "
                f"application to the next, so it cannot be looped; use serial(*[layer] * n) "
                f"({e})") from None
        return k

    init_fn.__name__ = apply_fn.__name__ = name
    return init_fn, apply_fn, KernelFn(name, transform, input_full, missing=kf.missing,
                                       uses_pattern=kf.uses_pattern, input_axes=kf.input_axes,
                                       batch_coupled=kf.batch_coupled,
                                       rounding_ntk=kf.rounding_ntk)


def parallel(*layers):
    """Apply layer ``i`` to input ``i`` of a list; kernels likewise (a list in, a list out)."""
    if not layers:
        raise ValueError("parallel needs at least one layer")
    triples = [_as_triple(l, f"parallel branch {i}") for i, l in enumerate(layers)]
    init_fns, apply_fns, kernel_fns = zip(*triples)
    name = "parallel(" + ", ".join(k.name for k in kernel_fns) + ")"
    n = len(triples)

    def check(xs, what):
        if not isinstance(xs, (list, tuple)) or len(xs) != n:
            raise ValueError(f"parallel of {n} branches needs a list of {n} {what}, got "
                             f"{type(xs).__name__}" + (f" of length {len(xs)}"
                                                       if isinstance(xs, (list, tuple)) else ""))

    def init_fn(key, input_shapes):
        check(input_shapes, "input shapes")
        keys = jax.random.split(key, n)
        out = [f(k, s) for f, k, s in zip(init_fns, keys, input_shapes)]
        return [o[0] for o in out], tuple(o[1] for o in out)

    def apply_fn(params, xs, **kwargs):
        check_apply_kwargs(name, kwargs)
        check(xs, "inputs")
        return [f(p, x, **kwargs) for f, p, x in zip(apply_fns, params, xs)]

    def input_full(out_full):
        return any(kf.input_full(out_full) for kf in kernel_fns)

    def transform(ks, out_full):
        check(ks, "kernels")
        out = []
        for kf, k in zip(kernel_fns, ks):
            if not kf.input_full(out_full):
                k = diagonalize(k)
            out.append(kf.transform(k, out_full))
        return out

    init_fn.__name__ = apply_fn.__name__ = name
    return init_fn, apply_fn, KernelFn(name, transform, input_full,
                                       missing=_first_missing(kernel_fns),
                                       **_network_keywords("parallel", kernel_fns))


def FanOut(num: int):
    """``x -> [x] * num`` (branches share the input; their kernels start equal)."""
    num = check_positive_int("num", num)
    name = f"FanOut({num})"

    def init_fn(key, input_shape):
        return [input_shape] * num, ()

    def apply_fn(params, x, **kwargs):
        check_apply_kwargs(name, kwargs)
        return [x] * num

    def transform(k, out_full):
        if not isinstance(k, Kernel):
            raise TypeError(f"{name} takes one input, got a list of {len(k)}")
        return [k] * num

    init_fn.__name__ = apply_fn.__name__ = name
    return init_fn, apply_fn, KernelFn(name, transform)


def _check_fan_in(ks, name):
    if isinstance(ks, Kernel) or not isinstance(ks, (list, tuple)) or not ks:
        raise TypeError(f"{name} takes a list of inputs (e.g. from FanOut/parallel), got "
                        f"{type(ks).__name__}")
    from ntk.stax.core import layout_of, layout_shape
    if len({layout_of(k) for k in ks}) > 1:
        raise ValueError(f"{name}: the inputs are laid out differently (batch and channel "
                         f"axes {[layout_of(k) for k in ks]} of activations of shapes "
                         f"{[layout_shape(k.shape1, *layout_of(k)) for k in ks]}); give the "
                         f"branches the same batch_axis / channel_axis")
    layouts = {(k.full_spatial, k.n_spatial) for k in ks}
    if len(layouts) > 1:
        ks = [diagonalize(k) for k in ks]
    return ks


def FanInSum(weights: Optional[Sequence[float]] = None):
    """``[y_1, ..., y_m] -> sum_i w_i y_i`` (``weights=None``: all ones, as in neural-tangents).

    Kernel: ``nngp = sum_i w_i^2 nngp_i`` and ``ntk = sum_i w_i^2 ntk_i`` -- exact when the
    branches are independent mean-zero Gaussians given the input (the weights are the branch
    scalings of residual networks). All inputs must be Gaussian unless there is only one.
    """
    if weights is not None:
        weights = tuple(float(w) for w in weights)
        if not all(math.isfinite(w) for w in weights):
            raise ValueError(f"FanInSum: weights must be finite, got {weights}")
    name = "FanInSum" if weights is None else f"FanInSum(weights={weights})"

    def _weights(m):
        if weights is None:
            return (1.0,) * m
        if len(weights) != m:
            raise ValueError(f"{name}: {len(weights)} weights for {m} inputs")
        return weights

    def init_fn(key, input_shapes):
        shapes = [tuple(s) for s in input_shapes]
        if any(s != shapes[0] for s in shapes):
            raise ValueError(f"{name}: all input shapes must be equal, got {shapes}")
        _weights(len(shapes))
        return shapes[0], ()

    def apply_fn(params, xs, **kwargs):
        check_apply_kwargs(name, kwargs)
        ws = _weights(len(xs))
        return sum(w * x for w, x in zip(ws, xs))

    def transform(ks, out_full):
        ks = _check_fan_in(ks, name)
        ws = _weights(len(ks))
        if any(k.shape1 != ks[0].shape1 or k.shape2 != ks[0].shape2 for k in ks):
            raise ValueError(f"{name}: all input shapes must be equal, got "
                             f"{[k.shape1 for k in ks]}")
        if len(ks) > 1 and not all(k.is_gaussian for k in ks):
            raise ValueError(
                f"{name}: summing branches is only exact for mean-zero Gaussian branches "
                f"(each ending in a Dense/Conv layer, or the identity of one), got is_gaussian="
                f"{[k.is_gaussian for k in ks]}")

        def wsum(field):
            mats = [getattr(k, field) for k in ks]
            if mats[0] is None:
                return None
            return sum(w * w * m for w, m in zip(ws, mats))

        return ks[0].replace(nngp=wsum("nngp"), ntk=wsum("ntk"), cov1=wsum("cov1"),
                             cov2=wsum("cov2"), is_gaussian=all(k.is_gaussian for k in ks),
                             is_input=all(k.is_input for k in ks))

    init_fn.__name__ = apply_fn.__name__ = name
    return init_fn, apply_fn, KernelFn(name, transform)


def FanInProd():
    """``[y_1, ..., y_m] -> y_1 * ... * y_m`` (elementwise product of the branches).

    For branches independent given the input (each ends in its own random layer),
    expectations of products factor:

        nngp = prod_i nngp_i,      cov = prod_i cov_i
        ntk  = sum_i ntk_i prod_{j != i} nngp_j       (product rule: branch i's parameters
                                                        see the others as constants)

    The product of independent Gaussians is not Gaussian (unless ``m = 1``), so a random
    affine layer must follow before a nonlinearity.

    Novak et al. (2020), "Neural Tangents: Fast and Easy Infinite Neural Networks in Python",
    arXiv:1912.02803 (``stax.FanInProd``).
    """
    name = "FanInProd"

    def init_fn(key, input_shapes):
        shapes = [tuple(s) for s in input_shapes]
        if any(s != shapes[0] for s in shapes):
            raise ValueError(f"{name}: all input shapes must be equal, got {shapes}")
        return shapes[0], ()

    def apply_fn(params, xs, **kwargs):
        check_apply_kwargs(name, kwargs)
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        return out

    def transform(ks, out_full):
        ks = _check_fan_in(ks, name)
        if any(k.shape1 != ks[0].shape1 or k.shape2 != ks[0].shape2 for k in ks):
            raise ValueError(f"{name}: all input shapes must be equal, got "
                             f"{[k.shape1 for k in ks]}")
        if len(ks) > 1 and any(k.is_input for k in ks):
            raise ValueError(f"{name}: a branch is the raw network input; products factor "
                             f"only for independent branches, so give every branch its own "
                             f"random layer (Dense/Conv) first")

        def prod(field):
            mats = [getattr(k, field) for k in ks]
            if mats[0] is None:
                return None
            out = mats[0]
            for m in mats[1:]:
                out = out * m
            return out

        ntk = None
        if ks[0].ntk is not None:
            nngp_prod = ks[0].nngp
            ntk = ks[0].ntk
            for k in ks[1:]:
                ntk = ntk * k.nngp + nngp_prod * k.ntk
                nngp_prod = nngp_prod * k.nngp
        return ks[0].replace(nngp=prod("nngp"), ntk=ntk, cov1=prod("cov1"),
                             cov2=prod("cov2"),
                             is_gaussian=len(ks) == 1 and ks[0].is_gaussian,
                             is_input=all(k.is_input for k in ks))

    init_fn.__name__ = apply_fn.__name__ = name
    return init_fn, apply_fn, KernelFn(name, transform)


def FanInConcat(axis: int = -1):
    """Concatenate the inputs along ``axis`` of the activations (neural-tangents' axes: any
    axis, channel, spatial or batch, counted in the activations' own layout).

    Kernel, channel axis: the channel-weighted average ``K = sum_i C_i K_i / sum_i C_i``
    (``C_i`` the finite channel counts), as a following ``Dense``/``Conv`` sees it; the result
    is not Gaussian per channel, so a random affine layer must follow before a nonlinearity.
    A spatial or the batch axis: the branches are independent mean-zero Gaussians (every
    input must be), so positions (inputs) from different branches are uncorrelated: the
    kernels are laid block-diagonally along that axis pair (concatenated where only equal
    positions, or each input with itself, are kept). Concatenating along the batch axis
    changes the batch, so such a kernel is not computed in blocks of inputs.
    """
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"FanInConcat: axis must be an int, got {axis!r}")
    name = "FanInConcat" + ("" if axis == -1 else f"(axis={axis})")

    def init_fn(key, input_shapes):
        shapes = [tuple(s) for s in input_shapes]
        a = axis % len(shapes[0])
        rest = [s[:a] + s[a + 1:] for s in shapes]
        if any(len(s) != len(shapes[0]) or r != rest[0] for s, r in zip(shapes, rest)):
            raise ValueError(f"{name}: inputs must agree in all but axis {axis}, got {shapes}")
        return shapes[0][:a] + (sum(s[a] for s in shapes),) + shapes[0][a + 1:], ()

    def apply_fn(params, xs, **kwargs):
        check_apply_kwargs(name, kwargs)
        import jax.numpy as jnp
        return jnp.concatenate(xs, axis=axis)

    def block_diagonal(mats, p, q):
        """The arrays ``mats`` laid block-diagonally along the axis pair ``(p, q)``."""
        import jax.numpy as jnp
        tp, tq = sum(m.shape[p] for m in mats), sum(m.shape[q] for m in mats)
        out, op, oq = 0, 0, 0
        for m in mats:
            pads = [(0, 0)] * m.ndim
            pads[p] = (op, tp - op - m.shape[p])
            pads[q] = (oq, tq - oq - m.shape[q])
            out = out + jnp.pad(m, pads)
            op, oq = op + m.shape[p], oq + m.shape[q]
        return out

    def transform(ks, out_full):
        ks = _check_fan_in(ks, name)
        import jax.numpy as jnp
        from ntk.stax.core import layout_of, layout_shape
        b, c = layout_of(ks[0])
        ndim = len(ks[0].shape1)
        a = axis % ndim
        if a == c % ndim:
            std = ndim - 1
        elif a == b % ndim:
            std = 0
        else:
            std = 1 + [i for i in range(ndim) if i not in (b % ndim, c % ndim)].index(a)
        for field in ("shape1", "shape2"):
            rest = [getattr(k, field)[:std] + getattr(k, field)[std + 1:] for k in ks]
            if any(r != rest[0] for r in rest):
                raise ValueError(
                    f"{name}: inputs must agree in all but axis {axis}, got activations of "
                    f"shapes {[layout_shape(getattr(k, field), b, c) for k in ks]}")

        def grown(field):
            shape = getattr(ks[0], field)
            return (shape[:std] + (sum(getattr(k, field)[std] for k in ks),)
                    + shape[std + 1:])

        if std == ndim - 1:
            widths = np.array([k.shape1[-1] for k in ks], dtype=float)
            fr = widths / widths.sum()

            def avg(field):
                mats = [getattr(k, field) for k in ks]
                if mats[0] is None:
                    return None
                return sum(f * m for f, m in zip(fr, mats))

            return ks[0].replace(nngp=avg("nngp"), ntk=avg("ntk"), cov1=avg("cov1"),
                                 cov2=avg("cov2"), shape1=grown("shape1"),
                                 shape2=grown("shape2"), is_gaussian=False,
                                 is_input=False)
        if not all(k.is_gaussian for k in ks):
            raise NotImplementedError(
                f"{name}: concatenating along a spatial or the batch axis needs every input "
                f"to be mean-zero Gaussian (a Dense / Conv layer last in each branch)")
        full = ks[0].full_spatial

        def concat(field, batch_ndim):
            mats = [getattr(k, field) for k in ks]
            if mats[0] is None:
                return None
            if std == 0:
                if batch_ndim == 1:
                    return jnp.concatenate(mats, axis=0)
                return block_diagonal(mats, 0, 1)
            j = std - 1
            if not full:
                return jnp.concatenate(mats, axis=batch_ndim + j)
            return block_diagonal(mats, batch_ndim + 2 * j, batch_ndim + 2 * j + 1)

        return ks[0].replace(nngp=concat("nngp", 2), ntk=concat("ntk", 2),
                             cov1=concat("cov1", 1), cov2=concat("cov2", 1),
                             shape1=grown("shape1"), shape2=grown("shape2"),
                             is_gaussian=True, is_input=False)

    init_fn.__name__ = apply_fn.__name__ = name
    return init_fn, apply_fn, KernelFn(name, transform)
