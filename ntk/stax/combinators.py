"""Composition: ``serial``, ``parallel`` and the branch layers ``FanOut``, ``FanInSum``,
``FanInConcat``.

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

from ntk.stax.core import KernelFn, check_positive_int, diagonalize, no_kernel_fn
from ntk.stax.kernel import Kernel

__all__ = ["serial", "parallel", "FanOut", "FanInSum", "FanInConcat"]


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
                                       missing=_first_missing(kernel_fns))


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
                                       missing=_first_missing(kernel_fns))


def FanOut(num: int):
    """``x -> [x] * num`` (branches share the input; their kernels start equal)."""
    num = check_positive_int("num", num)
    name = f"FanOut({num})"

    def init_fn(key, input_shape):
        return [input_shape] * num, ()

    def apply_fn(params, x, **kwargs):
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


def FanInConcat(axis: int = -1):
    """Concatenate the inputs along the channel axis (the only axis supported here).

    Kernel: the channel-weighted average ``K = sum_i C_i K_i / sum_i C_i`` (``C_i`` the finite
    channel counts), as a following ``Dense``/``Conv`` sees it. The result is not Gaussian per
    channel, so a random affine layer must follow before a nonlinearity.
    """
    if axis != -1:
        raise NotImplementedError(f"FanInConcat(axis={axis}): only channel concatenation "
                                  f"(axis=-1) is implemented in ntk.stax")
    name = "FanInConcat"

    def init_fn(key, input_shapes):
        shapes = [tuple(s) for s in input_shapes]
        if any(s[:-1] != shapes[0][:-1] for s in shapes):
            raise ValueError(f"{name}: inputs must agree in all but the channel axis, got "
                             f"{shapes}")
        return shapes[0][:-1] + (sum(s[-1] for s in shapes),), ()

    def apply_fn(params, xs, **kwargs):
        import jax.numpy as jnp
        return jnp.concatenate(xs, axis=-1)

    def transform(ks, out_full):
        ks = _check_fan_in(ks, name)
        if any(k.shape1[:-1] != ks[0].shape1[:-1] for k in ks):
            raise ValueError(f"{name}: inputs must agree in all but the channel axis, got "
                             f"{[k.shape1 for k in ks]}")
        widths = np.array([k.shape1[-1] for k in ks], dtype=float)
        fr = widths / widths.sum()

        def avg(field):
            mats = [getattr(k, field) for k in ks]
            if mats[0] is None:
                return None
            return sum(f * m for f, m in zip(fr, mats))

        c = int(widths.sum())
        return ks[0].replace(nngp=avg("nngp"), ntk=avg("ntk"), cov1=avg("cov1"),
                             cov2=avg("cov2"), shape1=ks[0].shape1[:-1] + (c,),
                             shape2=ks[0].shape2[:-1] + (c,), is_gaussian=False,
                             is_input=False)

    init_fn.__name__ = apply_fn.__name__ = name
    return init_fn, apply_fn, KernelFn(name, transform)
