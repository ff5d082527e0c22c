"""Elementwise nonlinearities: the finite activation and its dual (see :mod:`ntk.stax.duals`).

Each layer maps a Gaussian input kernel through ``T`` and ``Tdot``:

    nngp' = T(nngp, q11, q22)      ntk' = ntk * Tdot(nngp, q11, q22)
    cov1' = T(cov1, q11, q11)      (and cov2)

where ``q11``, ``q22`` are the variances of the two inputs at the two positions involved.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ntk.stax import duals
from ntk.stax.core import (check_apply_kwargs, check_positive_int, layer, no_kernel_fn,
                           require_gaussian, require_single)
from ntk.stax.kernel import Kernel, cross_variances, self_variances, variances

__all__ = [
    "Relu", "LeakyRelu", "ABRelu", "Abs", "Erf", "Sigmoid_like", "Gelu", "Sin", "Cos",
    "Monomial", "RectifiedMonomial", "Sign", "Exp", "Gaussian", "Rbf", "Tanh",
    "ElementwiseNumerical", "Elementwise", "Polynomial", "Hermite", "Gabor", "ExpNormalized",
]


def _finite(name, value):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a finite number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return v


def set_self_pairs(kernel: jax.Array, values: jax.Array, n_spatial: int, full: bool,
                   pairs: bool = True) -> jax.Array:
    """Replace the entries of ``kernel`` that pair an input with itself at the same position
    by ``values (N, X, Y, ...)``.

    ``pairs=True``: ``kernel (N, N, ...)`` of ``x1`` with itself, entries ``i == j`` and, in
    the full-spatial layout ``(N, N, X, X', Y, Y', ...)``, ``X == X'``, ``Y == Y'``.
    ``pairs=False``: a same-input covariance ``(N, X, X', Y, Y', ...)`` (full-spatial layout),
    entries ``X == X'``, ``Y == Y'``.
    """
    n = kernel.shape[0]
    values = jnp.asarray(values, kernel.dtype)
    batch = [jnp.arange(n).reshape((n,) + (1,) * (n_spatial if full else 0))]
    batch = batch * (2 if pairs else 1)
    if not full or n_spatial == 0:
        return kernel.at[tuple(batch)].set(jnp.broadcast_to(values, (n,) + kernel.shape[2:]))
    index, sizes = batch, kernel.shape[len(batch)::2]
    for a, d in enumerate(sizes):
        shape = [1] * (1 + n_spatial)
        shape[1 + a] = d
        index = index + [jnp.arange(d).reshape(shape)] * 2
    return kernel.at[tuple(index)].set(jnp.broadcast_to(values, (n,) + tuple(sizes)))


def elementwise_transform(name: str, dual, gaussian_input: bool = True
                          ) -> Callable[[Kernel], Kernel]:
    """Kernel map of an elementwise activation with dual ``(q12, q11, q22) -> (T, Tdot)``;
    ``gaussian_input=False`` for kernel maps that are not the limit of a finite activation.

    Entries that pair an input with itself at the same position (the diagonal of a kernel of
    ``x1`` with itself, and of its per-input covariances) have correlation exactly 1. They
    are written from the variances, ``T(q, q, q)``, rather than computed from the separately
    rounded covariance entry: otherwise the rounding gap between the two is multiplied by the
    slope of the correlation map at 1 in every layer and, past criticality, explodes. The
    passes over ``(N, N, ...)`` arrays therefore carry no masks or equality tests.
    """
    variance_map = getattr(dual, "variance_map", None)
    variance_dot = getattr(dual, "variance_dot", None)

    def on_variances(v, need_dot):
        """``(T, Tdot)(v, v, v)``: an input with itself at one position (correlation 1)."""
        if variance_map is not None and (variance_dot is not None or not need_dot):
            # a fraction of the dual's operations, which matters to XLA's compile time of
            # deep networks
            return variance_map(v), (variance_dot(v) if need_dot else None)
        return dual(v, v, v, need_dot)

    def transform(k: Kernel) -> Kernel:
        k = require_single(k, name)
        if gaussian_input:
            require_gaussian(k, name)
        s, full = k.n_spatial, k.full_spatial
        need_dot = k.ntk is not None
        v1 = variances(k.cov1, s, full)
        v2 = v1 if k.cov2 is None else variances(k.cov2, s, full)
        q1, q2 = cross_variances(v1, v2, s, full)
        with duals.self_pairs_set_by_caller():
            nngp, tdot = dual(k.nngp, q1, q2, need_dot)
        t1 = None
        if k.cov2 is None:   # x2 is x1
            t1, tdot_self = on_variances(v1, need_dot)
            nngp = set_self_pairs(nngp, t1, s, full)
            if need_dot:
                tdot = set_self_pairs(jnp.broadcast_to(tdot, nngp.shape), tdot_self, s, full)
        ntk = None if k.ntk is None else k.ntk * tdot

        def same(cov, v, t_self):
            if cov is None:
                return None
            if t_self is None:
                t_self = on_variances(v, False)[0]
            if s == 0 or not full:
                return t_self   # cov holds per-position variances
            a, b = self_variances(v, s, full)
            with duals.self_pairs_set_by_caller():
                out = dual(cov, a, b, False)[0]
            return set_self_pairs(jnp.broadcast_to(out, cov.shape), t_self, s, full,
                                  pairs=False)

        return k.replace(nngp=nngp, ntk=ntk, cov1=same(k.cov1, v1, t1),
                         cov2=same(k.cov2, v2, None), is_gaussian=False, is_input=False)

    return transform


def _activation(name: str, fn: Callable, dual):
    def init_fn(key, input_shape):
        return input_shape, ()

    def apply_fn(params, x, **kwargs):
        return fn(x)

    return layer(name, init_fn, apply_fn, elementwise_transform(name, dual))


def ABRelu(a: float, b: float, do_stabilize: bool = False):
    """``phi(x) = a min(x, 0) + b max(x, 0)`` (arc-cosine kernel; ``do_stabilize`` is accepted
    for neural-tangents compatibility and not needed: the map works on correlations)."""
    a, b = _finite("a", a), _finite("b", b)
    return _activation(f"ABRelu({a}, {b})",
                       lambda x: a * jnp.minimum(x, 0) + b * jnp.maximum(x, 0),
                       duals.abrelu(a, b))


def Relu(do_stabilize: bool = False):
    """``phi(x) = max(x, 0)``: ``T = sqrt(q11 q22) (sin t + (pi - t) cos t) / (2 pi)``,
    ``Tdot = (pi - t) / (2 pi)``, ``t = arccos(rho)`` (Cho & Saul 2009)."""
    return ABRelu(0.0, 1.0)


def LeakyRelu(alpha: float, do_stabilize: bool = False):
    """``phi(x) = max(x, 0) + alpha min(x, 0)``."""
    return ABRelu(alpha, 1.0)


def Abs(do_stabilize: bool = False):
    """``phi(x) = |x|``."""
    return ABRelu(-1.0, 1.0)


def Erf(a: float = 1.0, b: float = 1.0, c: float = 0.0):
    """``phi(x) = a erf(b x) + c`` (Williams 1997; see :func:`ntk.stax.duals.erf`)."""
    a, b, c = _finite("a", a), _finite("b", b), _finite("c", c)
    return _activation(f"Erf({a}, {b}, {c})",
                       lambda x: a * jax.scipy.special.erf(b * x) + c, duals.erf(a, b, c))


def Sigmoid_like():
    """``phi(x) = erf(x / 2.4020563531719796) / 2 + 1 / 2``: neural-tangents' closed-form
    stand-in for the logistic sigmoid (least-squares fit on [-5, 5]). For the exact logistic
    function use ``ElementwiseNumerical(jax.nn.sigmoid, deg)``."""
    return Erf(a=0.5, b=1 / 2.4020563531719796, c=0.5)


def Gelu(approximate: bool = False):
    """``phi(x) = x Phi(x)`` (the kernel is that of the exact GELU; ``approximate`` only
    switches the finite network to the tanh approximation, as in neural-tangents)."""
    return _activation("Gelu", lambda x: jax.nn.gelu(x, approximate=approximate), duals.gelu())


def Sin(a: float = 1.0, b: float = 1.0, c: float = 0.0):
    """``phi(x) = a sin(b x + c)``."""
    a, b, c = _finite("a", a), _finite("b", b), _finite("c", c)
    return _activation(f"Sin({a}, {b}, {c})", lambda x: a * jnp.sin(b * x + c),
                       duals.sin(a, b, c))


def Cos(a: float = 1.0, b: float = 1.0, c: float = 0.0):
    """``phi(x) = a cos(b x + c) = a sin(b x + c + pi / 2)``."""
    a, b, c = _finite("a", a), _finite("b", b), _finite("c", c)
    return _activation(f"Cos({a}, {b}, {c})", lambda x: a * jnp.cos(b * x + c),
                       duals.sin(a, b, c + math.pi / 2))


def Rbf(gamma: float = 1.0):
    """``phi(x) = sqrt(2) sin(sqrt(2 gamma) x + pi / 4)``, whose NNGP map is the RBF kernel
    ``exp(-gamma (q11 + q22 - 2 q12))``."""
    gamma = _finite("gamma", gamma)
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    return _activation(
        f"Rbf({gamma})",
        lambda x: math.sqrt(2) * jnp.sin(math.sqrt(2 * gamma) * x + math.pi / 4),
        duals.rbf(gamma))


def Sign():
    """``phi(x) = sign(x)``: ``T = (2 / pi) arcsin(rho)``; ``Tdot = 0`` (a.e. derivative)."""
    return _activation("Sign", jnp.sign, duals.sign())


def Exp(a: float = 1.0, b: float = 1.0):
    """``phi(x) = a exp(b x)``."""
    a, b = _finite("a", a), _finite("b", b)
    return _activation(f"Exp({a}, {b})", lambda x: a * jnp.exp(b * x), duals.exp(a, b))


def Gaussian(a: float = 1.0, b: float = -1.0):
    """``phi(x) = a exp(b x^2)``."""
    a, b = _finite("a", a), _finite("b", b)
    return _activation(f"Gaussian({a}, {b})", lambda x: a * jnp.exp(b * x * x),
                       duals.gaussian(a, b))


def Monomial(degree: int):
    """``phi(x) = x^degree`` for any integer degree >= 0 (closed form via Hermite expansion)."""
    if isinstance(degree, bool) or not isinstance(degree, int) or degree < 0:
        raise ValueError(f"degree must be a non-negative integer, got {degree!r}")
    return _activation(f"Monomial({degree})", lambda x: x**degree, duals.monomial(degree))


def RectifiedMonomial(degree: int):
    """``phi(x) = x^degree 1[x >= 0]`` (arc-cosine kernel of that degree, Cho & Saul 2009)."""
    if isinstance(degree, bool) or not isinstance(degree, int) or degree < 0:
        raise ValueError(f"degree must be a non-negative integer, got {degree!r}")
    return _activation(f"RectifiedMonomial({degree})",
                       lambda x: jnp.where(x >= 0, x, 0.0) ** degree if degree else
                       (x >= 0).astype(x.dtype),
                       duals.rectified_monomial(degree))


def ElementwiseNumerical(fn: Callable, deg: int, df: Optional[Callable] = None):
    """Any elementwise ``fn`` with its kernel by Gauss-Hermite quadrature of order ``deg``.

    ``T`` and ``Tdot`` are ``deg x deg`` tensor-product Gauss-Hermite sums on the bivariate
    Gaussian (see :func:`ntk.stax.duals.gauss_hermite`); the error is controlled by ``deg``
    (geometric in ``deg`` for analytic ``fn``; slow, algebraic for kinks -- use a closed form
    or Monte Carlo there). ``df`` defaults to ``jax.grad`` of ``fn``.
    """
    deg = check_positive_int("deg", deg)
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    name = f"ElementwiseNumerical({getattr(fn, '__name__', 'fn')}, deg={deg})"
    return _activation(name, fn, duals.gauss_hermite(fn, deg, df))


def Tanh(deg: int = 64):
    """``phi(x) = tanh(x)`` -- missing from neural-tangents (its issue #15) -- by Gauss-Hermite
    quadrature of order ``deg`` (``Tdot`` uses ``tanh' = 1 - tanh^2``).

    The error falls geometrically in ``sqrt(deg)`` at a rate set by the poles of
    ``tanh(sqrt(2 q) x)`` at ``x = +-i pi / (2 sqrt(2 q))``: measured against adaptive
    quadrature, at ``deg = 64`` it is ~5e-9 for variances q ~ 1 and ~1e-5 for q ~ 4; at
    ``deg = 128`` ~1e-12 and ~4e-8. Cost and memory: ``deg^2`` and ``deg`` times the kernel.
    """
    deg = check_positive_int("deg", deg)
    return _activation(f"Tanh(deg={deg})", jnp.tanh,
                       duals.gauss_hermite(jnp.tanh, deg, lambda x: 1 - jnp.tanh(x) ** 2))


def Elementwise(fn: Optional[Callable] = None, nngp_fn: Optional[Callable] = None,
                d_nngp_fn: Optional[Callable] = None):
    """An activation from its finite ``fn`` and its NNGP map
    ``nngp_fn(q12, q11, q22) = E[fn(u) fn(v)]`` (scalar, jnp-traceable); the NTK map is
    ``d_nngp_fn`` or ``d nngp_fn / d q12`` by autodiff (Price's theorem). Without ``nngp_fn``
    the layer has no kernel and ``kernel_fn`` says so."""
    if fn is None and nngp_fn is None:
        raise ValueError("Elementwise needs fn (finite network) or nngp_fn (kernel), got neither")
    name = f"Elementwise({getattr(fn, '__name__', None) or getattr(nngp_fn, '__name__', '?')})"

    def init_fn(key, input_shape):
        return input_shape, ()

    def apply_fn(params, x, **kwargs):
        check_apply_kwargs(name, kwargs)
        if fn is None:
            raise NotImplementedError(f"layer {name} has no finite network: pass fn")
        return fn(x)

    if nngp_fn is None:
        init_fn.__name__ = apply_fn.__name__ = name
        return init_fn, apply_fn, no_kernel_fn(
            name, "pass nngp_fn, or use ElementwiseNumerical(fn, deg) for quadrature or "
                  "ntk.monte_carlo_kernel_fn for Monte Carlo")
    return layer(name, init_fn, apply_fn,
                 elementwise_transform(name, duals.from_nngp_fn(nngp_fn, d_nngp_fn)))


def Polynomial(coef):
    """``phi(x) = coef[0] + coef[1] x + ... + coef[n] x^n`` (numpy's coefficient order).

    Closed-form dual for any variances (Hermite expansion and Mehler's formula, see
    :func:`ntk.stax.duals.polynomial`): ``T = sum_l l! s_l(q11) s_l(q22) q12^l``.

    Novak et al. (2020), "Neural Tangents: Fast and Easy Infinite Neural Networks in Python",
    arXiv:1912.02803 (``stax.Polynomial``).
    """
    try:
        coef = tuple(_finite("coef", c) for c in coef)
    except TypeError:
        raise TypeError(f"coef must be a sequence of finite numbers, got {coef!r}") from None
    return _polynomial(f"Polynomial({list(coef)})", coef)


def _polynomial(name: str, coef: tuple):
    def fn(x):
        out = jnp.zeros_like(x)
        for c in reversed(coef):
            out = out * x + c
        return out

    return _activation(name, fn, duals.polynomial(coef))


def Hermite(degree: int):
    """``phi(x) = He_n(x) / sqrt(n!)``: the probabilists' Hermite polynomial of degree ``n``,
    normalised to unit norm under the standard Gaussian (neural-tangents' convention).

    Kernel: for unit variances (``q11 = q22 = 1``, e.g. inputs of unit norm per channel into
    ``Dense(W_std=1)`` without bias), Mehler's formula gives ``T = q12^n`` and
    ``Tdot = n q12^(n-1)`` -- neural-tangents' map, which it applies whatever the variances.
    Here the kernel is the exact one of the finite layer for any variances (the
    :func:`Polynomial` dual of ``He_n / sqrt(n!)``), equal to neural-tangents' at unit variance.

    Novak et al. (2020), "Neural Tangents: Fast and Easy Infinite Neural Networks in Python",
    arXiv:1912.02803 (``stax.Hermite``).
    """
    if isinstance(degree, bool) or not isinstance(degree, int) or degree < 0:
        raise ValueError(f"degree must be a non-negative integer, got {degree!r}")
    coef = np.polynomial.hermite_e.herme2poly([0] * degree + [1]) / math.sqrt(
        math.factorial(degree))
    return _polynomial(f"Hermite({degree})", tuple(float(c) for c in coef))


def Gabor():
    """``phi(x) = exp(-x^2) sin(x)`` (closed form: :func:`ntk.stax.duals.gabor`).

    Novak et al. (2020), "Neural Tangents: Fast and Easy Infinite Neural Networks in Python",
    arXiv:1912.02803 (``stax.Gabor``).
    """
    return _activation("Gabor", lambda x: jnp.exp(-x * x) * jnp.sin(x), duals.gabor())


def ExpNormalized(gamma: float = 1.0, shift: float = -1.0, do_clip: bool = False):
    """The "Gaussian normalized kernel" map ``K -> sqrt(q11 q22) exp(gamma (rho + shift))``
    (``rho = K / sqrt(q11 q22)``; ``ntk -> gamma exp(gamma (rho + shift)) ntk``).

    A kernel map only: no finite activation has it, so ``apply_fn`` raises, and it applies to
    any kernel (Gaussian or not). ``do_clip`` clips ``rho`` to [-1, 1].

    Shankar et al. (2020), "Neural Kernels Without Tangents", arXiv:2003.02237 (p. 6).
    """
    gamma, shift = _finite("gamma", gamma), _finite("shift", shift)
    name = f"ExpNormalized(gamma={gamma}, shift={shift}, do_clip={bool(do_clip)})"

    def init_fn(key, input_shape):
        return input_shape, ()

    def apply_fn(params, x, **kwargs):
        raise NotImplementedError(f"{name} is a kernel map without a finite network "
                                  f"(as in neural-tangents); only kernel_fn is defined")

    return layer(name, init_fn, apply_fn,
                 elementwise_transform(name, duals.exp_normalized(gamma, shift, bool(do_clip)),
                                       gaussian_input=False))
