"""Dual activations: Gaussian expectations that carry a kernel through a nonlinearity.

For ``(u, v) ~ N(0, [[q11, q12], [q12, q22]])`` and an activation ``phi`` each function here
returns

    T(q12, q11, q22)     = E[phi(u) phi(v)]      (the NNGP map; Cho & Saul 2009, Lee et al. 2018)
    Tdot(q12, q11, q22)  = E[phi'(u) phi'(v)]    (the NTK map;  Jacot et al. 2018, Arora et al. 2019)

so that after the layer ``nngp <- T(nngp, q11, q22)`` and ``ntk <- ntk * Tdot(...)``. By
Price's theorem ``Tdot = dT/dq12``; the tests check every pair against that identity (autodiff),
against high-order adaptive quadrature in float64 and against neural-tangents 0.6.5.

Numerics: the correlation ``rho = q12 / sqrt(q11 q22)`` is clipped to ``[-1, 1]`` and set to 0
where an input has zero variance, so every map is finite for finite input; square roots use a
custom derivative that is 0 (not inf) at 0, so ``jax.grad`` through a kernel stays finite.

All arguments broadcast against each other; every function is elementwise and jit-safe.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "angle", "correlation", "abrelu", "erf", "gelu", "sin", "exp", "gaussian", "sign", "monomial",
    "rectified_monomial", "gauss_hermite", "hermite_rule", "polynomial", "gabor",
    "exp_normalized",
]

Dual = Callable  # (q12, q11, q22, need_dot) -> (T, Tdot | None)


@jax.custom_jvp
def safe_sqrt(x):
    """``sqrt(max(x, 0))`` whose derivative at 0 is 0 instead of inf."""
    return jnp.sqrt(jnp.maximum(x, 0.0))


@safe_sqrt.defjvp
def _safe_sqrt_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    y = safe_sqrt(x)
    positive = x > 0
    return y, jnp.where(positive, dx / (2 * jnp.where(positive, y, 1.0)), 0.0)


@jax.custom_jvp
def clip_rounding(x, lo, hi):
    """``clip(x, lo, hi)`` for values that leave ``[lo, hi]`` only by rounding (a
    correlation of equal inputs computed as ``1 + eps``): the value is clipped, the
    derivative is that of ``x`` (``jnp.clip``'s is 1/2 on the boundary, 0 past it, which
    halves the curvature of a kernel in its inputs at ``x1 == x2``)."""
    return jnp.clip(x, lo, hi)


@clip_rounding.defjvp
def _clip_rounding_jvp(primals, tangents):
    x, lo, hi = primals
    return jnp.clip(x, lo, hi), tangents[0]


_FIND_SELF_PAIRS = contextvars.ContextVar("ntk_stax_find_self_pairs", default=True)


@contextlib.contextmanager
def self_pairs_set_by_caller():
    """Within this context (at trace time) the duals skip the equality test that finds
    self-pairs (``q12 == q11 == q22``) and evaluate the general formula everywhere: for a
    caller that writes the self-pairs of its kernel itself (the x1-with-itself kernel of an
    elementwise layer writes its diagonal from the variances), so that the ``(N, N, ...)``
    pass carries no masks."""
    token = _FIND_SELF_PAIRS.set(False)
    try:
        yield
    finally:
        _FIND_SELF_PAIRS.reset(token)


def _self_norm(q12, q11, q22):
    """``(sqrt(q11 q22), self)`` where ``self`` marks ``q12 == q11 == q22 > 0`` (an input met
    with itself: correlation exactly 1). There the norm is ``q12`` itself -- not the rounded
    ``sqrt(q11 q22)``, which may differ by an ulp or overflow -- with the derivative of
    ``sqrt(q11 q22)``. ``self`` is ``None`` inside :func:`self_pairs_set_by_caller`."""
    norm = safe_sqrt(q11 * q22)
    if not _FIND_SELF_PAIRS.get():
        return norm, None
    same = (q12 == q11) & (q11 == q22) & (q11 > 0)
    # value q12 (exact: the two differ by rounding only, Sterbenz), tangent that of norm
    exact = jnp.where(jnp.isfinite(norm), norm + jax.lax.stop_gradient(q12 - norm), q12)
    return jnp.where(same, exact, norm), same


def correlation(q12, q11, q22):
    """``(rho, sqrt(q11 q22))`` with ``rho`` clipped to [-1, 1] (:func:`clip_rounding`), 0
    where a variance is 0, and exactly 1 where ``q12 == q11 == q22 > 0`` (a self-pair: the
    diagonal of a kernel of ``x`` with itself), whatever the rounding of ``sqrt(q11 q22)``.
    Derivatives are those of ``q12 / sqrt(q11 q22)`` in every case."""
    norm, same = _self_norm(q12, q11, q22)
    ok = norm > 0
    rho = jnp.where(ok, q12 / jnp.where(ok, norm, 1.0), 0.0)
    lo = -1.0 if same is None else jnp.where(same, 1.0, -1.0)
    return clip_rounding(rho, lo, 1.0), norm


#: ``atan(u) = u + u^3 p(u^2)`` on ``|u| <= tan(pi / 8)``: coefficients of ``p`` from Chebyshev
#: interpolation of ``(atan(sqrt z) - sqrt z) / z^(3/2)`` on ``[0, tan(pi / 8)^2]`` (50-digit
#: arithmetic); the error of the rounded evaluation is below one ulp in each precision
_ATAN_POLY = {
    8: (-0.3333333333333333, 0.19999999999999804, -0.14285714285659828, 0.11111111105155447,
        -0.09090908753500877, 0.07692296375032143, -0.06666424885738255, 0.05878928997834775,
        -0.05230454270650244, 0.04551593220626549, -0.034570561981427744,
        0.016285756855221028),
    4: (-0.3333333176116852, 0.19999540483648964, -0.1426395559798464, 0.10743731490791084,
        -0.06451928208121749),
}
_TAN_PI_8 = 0.41421356237309503


@jax.custom_jvp
def angle(y, x):
    """``theta = atan2(y, x)`` in ``[0, pi]`` for ``y >= 0``; ``pi / 2`` at ``x = y = 0``.

    With ``y = sqrt(q11 q22 - q12^2)`` and ``x = q12`` this is ``arccos(rho)`` without the
    division by ``sqrt(q11 q22)``. Pure arithmetic (one division and a polynomial), so XLA
    vectorises it, where ``jnp.arctan2`` is a scalar library call per element (about 10x
    slower on CPU): with ``a = min(y, |x|)``, ``b = max(y, |x|)``, ``atan(a / b)`` is
    ``atan(u)`` or ``pi / 4 + atan(u)`` with ``u = a / b`` or ``(a - b) / (a + b)``
    (``|u| <= tan(pi / 8)``), then reflected into the octant of ``(x, y)``. Accurate to about
    one ulp in float32 and float64 (tests compare with ``jnp.arctan2``). The derivative is the
    exact ``(x dy - y dx) / (x^2 + y^2)`` (0 at the origin).
    """
    ax = jnp.abs(x)
    lo, hi = jnp.minimum(y, ax), jnp.maximum(y, ax)
    reduce = lo > _TAN_PI_8 * hi
    num = jnp.where(reduce, lo - hi, lo)
    den = jnp.where(reduce, lo + hi, hi)
    u = num / jnp.where(den > 0, den, 1.0)
    z = u * u
    coef = _ATAN_POLY[8 if u.dtype.itemsize >= 8 else 4]
    p = jnp.full_like(z, coef[-1])
    for c in coef[-2::-1]:
        p = p * z + c
    t = u + u * z * p
    t = jnp.where(reduce, t + math.pi / 4, t)
    t = jnp.where(y > ax, math.pi / 2 - t, t)
    t = jnp.where(x < 0, math.pi - t, t)
    return jnp.where(hi > 0, t, math.pi / 2)


@angle.defjvp
def _angle_jvp(primals, tangents):
    (y, x), (dy, dx) = primals, tangents
    r2 = x * x + y * y
    ok = r2 > 0
    return angle(y, x), jnp.where(ok, (x * dy - y * dx) / jnp.where(ok, r2, 1.0), 0.0)


def _angle(rho):
    """``theta = arccos(rho)`` for ``rho`` in ``[-1, 1]`` (finite gradient)."""
    return angle(safe_sqrt(1.0 - rho * rho), rho)


# ----------------------------------------------------------------------------------------
# closed forms


def abrelu(a: float, b: float) -> Dual:
    """``phi(x) = a min(x, 0) + b max(x, 0)`` (ReLU: a=0, b=1; leaky: a=alpha, b=1; |x|: a=-1).

    With ``theta = arccos(rho)`` (the arc-cosine kernel of Cho & Saul 2009, degree 1):

        T    = sqrt(q11 q22) [ (a - b)^2 / (2 pi) sin(theta)
                               + ((a^2 + b^2) / 2 - (a - b)^2 theta / (2 pi)) rho ]
        Tdot = (a^2 + b^2) / 2 - (a - b)^2 theta / (2 pi)

    (``Tdot``: ``a^2 P(u<0, v<0) + b^2 P(u>0, v>0) + ab P(opposite signs)`` with
    ``P(u>0, v>0) = (pi - theta) / (2 pi)``.)
    """
    spread = (a - b) ** 2 / (2 * math.pi)
    mean_sq = (a * a + b * b) / 2

    def dual(q12, q11, q22, need_dot=True):
        # unnormalised: q12 clipped to [-sqrt(q11 q22), sqrt(q11 q22)] is rho sqrt(q11 q22)
        norm, same = _self_norm(q12, q11, q22)
        q12 = clip_rounding(q12, -norm, norm)
        # sqrt(q11 q22) sin(theta); exactly 0 on a self-pair (theta = 0)
        sin_norm = safe_sqrt(q11 * q22 - q12 * q12)
        if same is not None:
            sin_norm = jnp.where(same, 0.0, sin_norm)
        tdot = mean_sq - spread * angle(sin_norm, q12)
        t = spread * sin_norm + tdot * q12
        return t, (tdot if need_dot else None)

    # T(q, q, q): an input with itself (rho = 1, theta = 0), bitwise what ``dual`` returns there
    dual.variance_map = lambda q: mean_sq * q
    # Tdot(q, q, q): theta = 0 where q > 0; a zero-variance input has rho = 0, theta = pi / 2
    dual.variance_dot = lambda q: jnp.where(q > 0, mean_sq, mean_sq - spread * (math.pi / 2))
    return dual


def erf(a: float, b: float, c: float) -> Dual:
    """``phi(x) = a erf(b x) + c`` (Williams 1997).

    With ``p_ij = b^2 q_ij``:

        T    = a^2 (2 / pi) arcsin(2 p12 / sqrt((1 + 2 p11)(1 + 2 p22))) + c^2
        Tdot = a^2 b^2 (4 / pi) / sqrt((1 + 2 p11)(1 + 2 p22) - 4 p12^2)

    The last square root is evaluated as ``sqrt(1 + 2 p11 + 2 p22 + 4 p11 p22 (1 - rho^2))``,
    which is >= 1 for any correlation.
    """

    def dual(q12, q11, q22, need_dot=True):
        rho, norm = correlation(q12, q11, q22)
        p11, p22, pnorm = b * b * q11, b * b * q22, b * b * norm
        denom = jnp.sqrt((1 + 2 * p11) * (1 + 2 * p22))
        t = a * a * (2 / math.pi) * jnp.arcsin(clip_rounding(2 * pnorm * rho / denom, -1.0, 1.0)) + c * c
        if not need_dot:
            return t, None
        inner = 1 + 2 * p11 + 2 * p22 + 4 * p11 * p22 * (1 - rho * rho)
        return t, a * a * b * b * (4 / math.pi) / jnp.sqrt(inner)

    return dual


def gelu() -> Dual:
    """``phi(x) = x Phi(x)`` (Phi the standard normal CDF; Tsuchida, Pearce et al. 2020).

    With ``A = (1 + q11)(1 + q22)``, ``D = sqrt(A - q12^2)`` and ``alpha = arcsin(q12 / sqrt(A))``:

        T    = q12 / 4 + q12 alpha / (2 pi) + (q12^2 + q11 q22 D^2) / (2 pi A D)
        Tdot = 1 / 4 + alpha / (2 pi) + q12 / (2 pi D) (1 + 1 / D^2 + (1 - q11 q22) / A)

    ``Tdot`` is ``dT/dq12`` (Price's theorem); D >= 1 always, so both are smooth.
    """

    def dual(q12, q11, q22, need_dot=True):
        rho, norm = correlation(q12, q11, q22)
        q12c = rho * norm
        big_a = (1 + q11) * (1 + q22)
        d_sq = 1 + q11 + q22 + norm * norm * (1 - rho * rho)  # = A - q12^2 >= 1
        d = jnp.sqrt(d_sq)
        alpha = jnp.arctan2(q12c, d)
        t = (q12c / 4 + q12c * alpha / (2 * math.pi)
             + (q12c * q12c + q11 * q22 * d_sq) / (2 * math.pi * big_a * d))
        if not need_dot:
            return t, None
        tdot = (0.25 + alpha / (2 * math.pi)
                + q12c / (2 * math.pi * d) * (1 + 1 / d_sq + (1 - q11 * q22) / big_a))
        return t, tdot

    return dual


def sin(a: float, b: float, c: float) -> Dual:
    """``phi(x) = a sin(b x + c)`` (``Cos`` is ``c + pi/2``; ``Rbf`` a special case).

    From ``sin x sin y = (cos(x - y) - cos(x + y)) / 2`` and ``E[cos(w + d)] = cos(d)
    exp(-Var(w) / 2)`` for Gaussian ``w``, with ``s = b^2 (q11 + q22) / 2`` and
    ``x = b^2 q12``:

        T    = a^2 / 2 e^-s (e^x - cos(2c) e^-x) = a^2 e^-s (cos^2(c) sinh x + sin^2(c) cosh x)
        Tdot = a^2 b^2 / 2 e^-s (e^x + cos(2c) e^-x) = a^2 b^2 e^-s (cos^2(c) cosh x + sin^2(c) sinh x)

    The difference of exponentials loses all relative precision once ``|x|`` is below the
    rounding unit (deep sine kernels, whose correlations decay to 0); the second form has
    no cancellation for ``x >= 0``. It is evaluated as ``e^-s sinh x = sign(x) e^(|x| - s)
    (-expm1(-2|x|)) / 2`` and ``e^-s cosh x = e^(|x| - s) (1 + e^(-2|x|)) / 2``, so nothing
    overflows (``|x| <= s``). For ``x < 0`` and ``sin(c) != 0`` the two terms have opposite
    signs and cancel only near a true zero of the map.
    """
    cos_sq, sin_sq = math.cos(c) ** 2, math.sin(c) ** 2

    def dual(q12, q11, q22, need_dot=True):
        rho, norm = correlation(q12, q11, q22)
        q12c = rho * norm
        abs_q = jnp.abs(q12c)
        lead = jnp.exp(-b * b * (0.5 * (q11 + q22) - abs_q))   # e^(|x| - s) <= 1
        # sign(x) (1 - e^(-2|x|)), written per sign so its derivative at x = 0 is exact (2)
        # (each branch sees only its own sign, so neither overflows under autodiff)
        pos = q12c >= 0
        odd = jnp.where(pos, -jnp.expm1(-2 * b * b * jnp.where(pos, q12c, 0.0)),
                        jnp.expm1(2 * b * b * jnp.where(pos, 0.0, q12c)))
        even = 1 + jnp.exp(-2 * b * b * abs_q)                   # 1 + e^(-2|x|)
        sinh_part, cosh_part = 0.5 * lead * odd, 0.5 * lead * even  # e^-s sinh x, e^-s cosh x
        # for |x| < 1, e^-s cosh x = e^-s (1 + 2 sinh^2(x / 2)): same value, and its autodiff
        # derivative e^-s sinh x keeps full precision (that of ``lead * even`` cancels)
        small = b * b * abs_q < 1
        half = 0.5 * b * b * jnp.where(small, q12c, 0.0)
        cosh_small = jnp.exp(-0.5 * b * b * (q11 + q22)) * (1 + 2 * jnp.sinh(half) ** 2)
        cosh_part = jnp.where(small, cosh_small, cosh_part)
        t = a * a * (cos_sq * sinh_part + sin_sq * cosh_part)
        if not need_dot:
            return t, None
        return t, a * a * b * b * (cos_sq * cosh_part + sin_sq * sinh_part)

    return dual


def rbf(gamma: float) -> Dual:
    """``phi(x) = sqrt(2) sin(sqrt(2 gamma) x + pi / 4)``: the RBF kernel's dual activation.

        T    = exp(-gamma (q11 + q22 - 2 q12))       Tdot = 2 gamma T
    """

    def dual(q12, q11, q22, need_dot=True):
        rho, norm = correlation(q12, q11, q22)
        t = jnp.exp(-gamma * (q11 + q22 - 2 * rho * norm))
        return t, (2 * gamma * t if need_dot else None)

    return dual


def exp(a: float, b: float) -> Dual:
    """``phi(x) = a exp(b x)``: ``T = a^2 exp(b^2 (q11 + q22) / 2 + b^2 q12)``, ``Tdot = b^2 T``."""

    def dual(q12, q11, q22, need_dot=True):
        rho, norm = correlation(q12, q11, q22)
        t = a * a * jnp.exp(b * b * (0.5 * (q11 + q22) + rho * norm))
        return t, (b * b * t if need_dot else None)

    return dual


def gaussian(a: float, b: float) -> Dual:
    """``phi(x) = a exp(b x^2)`` (finite for ``1 - 2 b q > 0``, e.g. any ``b <= 0``).

    With ``det = (1 - 2 b q11)(1 - 2 b q22) - 4 b^2 q12^2`` (the determinant of ``I - 2 b Sigma``):

        T = a^2 / sqrt(det)        Tdot = 4 a^2 b^2 q12 / det^(3/2)
    """

    def dual(q12, q11, q22, need_dot=True):
        rho, norm = correlation(q12, q11, q22)
        q12c = rho * norm
        det = (1 - 2 * b * q11) * (1 - 2 * b * q22) - 4 * b * b * q12c * q12c
        root = jnp.sqrt(det)
        t = a * a / root
        return t, (4 * a * a * b * b * q12c / (det * root) if need_dot else None)

    return dual


def sign() -> Dual:
    """``phi(x) = sign(x)``: ``T = (2 / pi) arcsin(rho)`` (0 where a variance is 0), ``Tdot = 0``.

    ``Tdot`` is the almost-everywhere derivative, the one autodiff gives a finite network.
    """

    def dual(q12, q11, q22, need_dot=True):
        rho, norm = correlation(q12, q11, q22)
        t = jnp.where(norm > 0, 1.0 - 2.0 * _angle(rho) / math.pi, 0.0)
        return t, (jnp.zeros_like(t) if need_dot else None)

    return dual


def _monomial_moment(degree: int, q12, prod):
    """``E[u^n v^n] = sum_k (n!)^2 / (k! ((n-k)/2)!^2 4^((n-k)/2)) q12^k (q11 q22)^((n-k)/2)``.

    From ``x^n = sum_k n! / (k! ((n-k)/2)! 2^((n-k)/2)) He_k(x)`` over ``k = n, n-2, ...`` and
    Mehler's formula ``E[He_k(z1) He_l(z2)] = delta_kl k! rho^k`` for standard normals.
    """
    if degree < 0:
        return jnp.zeros_like(q12)
    total = jnp.zeros_like(q12)
    n = degree
    for k in range(n % 2, n + 1, 2):
        m = (n - k) // 2
        coef = math.factorial(n) ** 2 / (math.factorial(k) * math.factorial(m) ** 2 * 4**m)
        total = total + coef * q12**k * prod**m
    return total


def monomial(degree: int) -> Dual:
    """``phi(x) = x^n``: ``T = E[u^n v^n]`` (see ``_monomial_moment``), ``Tdot = n^2 T_{n-1}``."""

    def dual(q12, q11, q22, need_dot=True):
        rho, norm = correlation(q12, q11, q22)
        q12c, prod = rho * norm, q11 * q22
        t = _monomial_moment(degree, q12c, prod)
        if not need_dot:
            return t, None
        return t, degree * degree * _monomial_moment(degree - 1, q12c, prod)

    return dual


@functools.lru_cache(maxsize=None)
def _arccos_kernel_fn(degree: int):
    """``J_n(theta)`` of Cho & Saul (2009) as a jnp function of ``(cos, sin, theta)``.

    ``J_n = (-1)^n sin^(2n+1)(theta) ((1/sin theta) d/dtheta)^n ((pi - theta) / sin theta)``,
    derived symbolically with sympy once per degree and rewritten as a polynomial in
    ``cos theta``, ``sin theta`` and ``theta`` (no division by ``sin theta``: finite at rho = +-1).
    """
    import sympy as sp

    t, c, s = sp.symbols("theta c s")
    f = (sp.pi - t) / sp.sin(t)
    for _ in range(degree):
        f = sp.diff(f, t) / sp.sin(t)
    expr = sp.simplify((-1) ** degree * sp.sin(t) ** (2 * degree + 1) * f)
    expr = sp.expand(sp.expand_trig(sp.expand(expr)))
    expr = expr.subs({sp.sin(t): s, sp.cos(t): c})
    if expr.has(sp.sin) or expr.has(sp.cos) or any(p.is_Pow and p.exp.is_negative
                                                   for p in sp.preorder_traversal(expr)):
        raise NotImplementedError(f"RectifiedMonomial({degree}): no polynomial form found")
    return sp.lambdify((c, s, t), expr, modules=[{"pi": jnp.pi}, jnp])


def rectified_monomial(degree: int) -> Dual:
    """``phi(x) = x^n 1[x >= 0]``: the arc-cosine kernel of degree n (Cho & Saul 2009).

        T    = (q11 q22)^(n/2) J_n(theta) / (2 pi)
        Tdot = n^2 (q11 q22)^((n-1)/2) J_{n-1}(theta) / (2 pi)     (0 for n = 0)

    (``Tdot``: ``phi'(x) = n x^(n-1) 1[x >= 0]``, so Tdot is ``n^2`` times the degree n-1 map.)
    """

    def one(n, rho, norm):
        theta = _angle(rho)
        jn = _arccos_kernel_fn(n)
        return norm**n * jn(rho, safe_sqrt(1 - rho * rho), theta) / (2 * math.pi)

    def dual(q12, q11, q22, need_dot=True):
        rho, norm = correlation(q12, q11, q22)
        t = one(degree, rho, norm) + jnp.zeros_like(q12)
        if not need_dot:
            return t, None
        if degree == 0:
            return t, jnp.zeros_like(t)
        return t, degree * degree * (one(degree - 1, rho, norm) + jnp.zeros_like(q12))

    return dual


# ----------------------------------------------------------------------------------------
# numerical integration


@functools.lru_cache(maxsize=None)
def hermite_rule(deg: int):
    """Gauss-Hermite nodes and weights for ``int exp(-x^2) f(x) dx`` (numpy float64)."""
    if not isinstance(deg, (int, np.integer)) or deg < 1:
        raise ValueError(f"deg must be a positive integer, got {deg!r}")
    return np.polynomial.hermite.hermgauss(int(deg))


def gauss_hermite(fn: Callable, deg: int, dfn: Optional[Callable] = None) -> Dual:
    """Dual activation of any elementwise ``fn`` by tensor-product Gauss-Hermite quadrature.

    Writing ``u = sqrt(2 q11) x``, ``v = sqrt(2 q22) (rho x + sqrt(1 - rho^2) y)``:

        E[f(u) g(v)] ~= (1 / pi) sum_ij w_i w_j f(u(x_i)) g(v(x_i, y_j))

    exact for polynomials of degree < 2 deg in each variable; for analytic ``fn`` the error
    falls geometrically in ``deg`` (tanh: ~1e-8 at deg = 60 for variances of order 1). The
    sum over ``i`` is a ``lax.scan``, so memory is ``deg`` times the kernel, not ``deg^2``.
    ``dfn`` defaults to ``grad`` of ``sum(fn)`` (valid because ``fn`` is elementwise).
    """
    xs, ws = hermite_rule(deg)
    if dfn is None:
        dfn = jax.grad(lambda x: jnp.sum(fn(x)))

    def integrate(f, rho, q11, q22, shape, dtype):
        x = jnp.asarray(xs, dtype)
        w = jnp.asarray(ws, dtype)
        r1 = jnp.sqrt(2 * q11)
        r2 = jnp.sqrt(2 * q22)
        comp = safe_sqrt(1 - rho * rho)
        y = x.reshape((-1,) + (1,) * len(shape))

        def step(acc, xw):
            xi, wi = xw
            # Explicit leading axes: works under jax_numpy_rank_promotion='raise'.
            v = r2[None] * (rho[None] * xi + comp[None] * y)  # (deg, *shape)
            inner = jnp.tensordot(w, f(v), axes=(0, 0))
            return acc + wi * f(r1 * xi) * inner, None

        acc, _ = jax.lax.scan(step, jnp.zeros(shape, dtype), (x, w))
        return acc / math.pi

    def dual(q12, q11, q22, need_dot=True):
        rho, _ = correlation(q12, q11, q22)
        shape = jnp.broadcast_shapes(jnp.shape(q12), jnp.shape(q11), jnp.shape(q22))
        dtype = jnp.result_type(q12)
        rho, q11, q22 = (jnp.broadcast_to(a, shape) for a in (rho, q11, q22))
        t = integrate(fn, rho, q11, q22, shape, dtype)
        if not need_dot:
            return t, None
        return t, integrate(dfn, rho, q11, q22, shape, dtype)

    return dual


def from_nngp_fn(nngp_fn: Callable, d_nngp_fn: Optional[Callable] = None) -> Dual:
    """Dual from a user ``nngp_fn(q12, q11, q22) = E[phi(u) phi(v)]`` (scalar, jnp-traceable).

    ``Tdot`` is ``d_nngp_fn`` if given, else ``d nngp_fn / d q12`` by autodiff (Price's theorem).
    """
    if d_nngp_fn is None:
        d_nngp_fn = jax.grad(nngp_fn, argnums=0)
    t_fn = jnp.vectorize(nngp_fn)
    d_fn = jnp.vectorize(d_nngp_fn)

    def dual(q12, q11, q22, need_dot=True):
        shape = jnp.broadcast_shapes(jnp.shape(q12), jnp.shape(q11), jnp.shape(q22))
        q12, q11, q22 = (jnp.broadcast_to(a, shape) for a in (q12, q11, q22))
        t = t_fn(q12, q11, q22)
        return t, (d_fn(q12, q11, q22) if need_dot else None)

    return dual


# ----------------------------------------------------------------------------------------
# polynomials, Gabor, the normalised exponential kernel


def polynomial(coef) -> Dual:
    """``phi(x) = sum_k a_k x^k`` (``coef = (a_0, a_1, ...)``, numpy's order).

    Expanding ``phi(sqrt(q) z)`` in probabilists' Hermite polynomials and applying Mehler's
    formula ``E[He_l(z1) He_m(z2)] = delta_lm l! rho^l``:

        T    = sum_l l! s_l(q11) s_l(q22) q12^l
        Tdot = sum_l l l! s_l(q11) s_l(q22) q12^(l-1)
        s_l(q) = sum_i a_{l+2i} (l+2i)! / (l! i! 2^i) q^i

    exact for any variances and a polynomial in ``q12``, ``q11``, ``q22`` (no correlation, so
    no clipping and no division).
    """
    a = [float(c) for c in coef]
    deg = len(a) - 1
    # s[l][i]: coefficient of q^i in s_l(q)
    s = [[a[l + 2 * i] * math.factorial(l + 2 * i)
          / (math.factorial(l) * math.factorial(i) * 2**i)
          for i in range((deg - l) // 2 + 1)] for l in range(deg + 1)]

    def s_of(l, q):
        out = jnp.zeros_like(q)
        for c in reversed(s[l]):
            out = out * q + c
        return out

    def dual(q12, q11, q22, need_dot=True):
        shape = jnp.broadcast_shapes(jnp.shape(q12), jnp.shape(q11), jnp.shape(q22))
        dtype = jnp.result_type(q12, q11, q22)
        w = [math.factorial(l) * s_of(l, q11) * s_of(l, q22) for l in range(deg + 1)]
        t = jnp.zeros(shape, dtype)
        for l in range(deg, -1, -1):  # Horner in q12
            t = t * q12 + w[l]
        if not need_dot:
            return t, None
        tdot = jnp.zeros(shape, dtype)
        for l in range(deg, 0, -1):
            tdot = tdot * q12 + l * w[l]
        return t, tdot

    return dual


def gabor() -> Dual:
    """``phi(x) = exp(-x^2) sin(x)``.

    ``sin u sin v = (cos(u - v) - cos(u + v)) / 2`` and, for ``w ~ N(0, Sigma)``,
    ``E[exp(-|w|^2) cos(c.w)] = det(I + 2 Sigma)^(-1/2) exp(-c' M c / 2)`` with
    ``M = Sigma (I + 2 Sigma)^(-1)``. With ``delta = q11 q22 - q12^2``,
    ``D = det(I + 2 Sigma) = 1 + 2 (q11 + q22) + 4 delta`` and ``c = (1, -+1)``:

        T = [exp(-(q11 + q22 + 4 delta - 2 q12) / (2 D))
             - exp(-(q11 + q22 + 4 delta + 2 q12) / (2 D))] / (2 sqrt(D))

    ``Tdot = dT / dq12`` (Price's theorem), by forward-mode autodiff of ``T``.
    """

    def nngp(q12, q11, q22):
        rho, norm = correlation(q12, q11, q22)
        q12c = rho * norm
        delta = norm * norm * (1 - rho * rho)
        d = 1 + 2 * (q11 + q22) + 4 * delta
        base = q11 + q22 + 4 * delta
        return (jnp.exp(-(base - 2 * q12c) / (2 * d))
                - jnp.exp(-(base + 2 * q12c) / (2 * d))) / (2 * jnp.sqrt(d))

    def dual(q12, q11, q22, need_dot=True):
        shape = jnp.broadcast_shapes(jnp.shape(q12), jnp.shape(q11), jnp.shape(q22))
        q12 = jnp.broadcast_to(q12, shape)
        if not need_dot:
            return nngp(q12, q11, q22), None
        return jax.jvp(lambda q: nngp(q, q11, q22), (q12,), (jnp.ones_like(q12),))

    return dual


def exp_normalized(gamma: float, shift: float, do_clip: bool) -> Dual:
    """The "Gaussian normalized kernel" (a kernel map; no finite activation has it):

        T    = sqrt(q11 q22) exp(gamma (rho + shift))     Tdot = gamma exp(gamma (rho + shift))

    with ``rho = q12 / sqrt(q11 q22)`` (0 where a variance is 0), clipped to [-1, 1] when
    ``do_clip``; ``Tdot = dT / dq12``.
    """

    def dual(q12, q11, q22, need_dot=True):
        norm, _ = _self_norm(q12, q11, q22)
        ok = norm > 0
        rho = jnp.where(ok, q12 / jnp.where(ok, norm, 1.0), 0.0)
        if do_clip:
            rho = jnp.clip(rho, -1.0, 1.0)
        e = jnp.exp(gamma * (rho + shift))
        return norm * e, (gamma * e if need_dot else None)

    return dual
