"""Infinitely wide *and* deep networks on the sphere: the depth-L NNGP / NTK, their limits as
the depth grows, and the classifiers those limits implement.

Setting (Radhakrishnan, Belkin & Uhler 2023; the normalisation of the authors' code). Inputs
lie on the unit sphere, ``rho = <x, x'>``; a bias-free fully connected network in the NTK
parametrisation has, per layer, an activation ``phi`` with ``E phi(z)^2 = 1`` for
``z ~ N(0, 1)`` (the readout scale ``W_std`` of each layer makes it so). Then every
preactivation has unit variance and the infinite-width kernels depend on the inputs through
``rho`` alone, by the *normalised dual activation*

    a(rho) = E[phi(u) phi(v)],   (u, v) standard Gaussians with correlation rho,
    a(rho) = sum_k c_k rho^k,    c_k = (Hermite coefficient k of phi)^2 >= 0,  sum_k c_k = a(1) = 1.

The depth-L kernels (``L`` hidden layers; the input layer gives ``rho_0 = rho``,
``Theta_0 = rho``):

    rho_l   = a(rho_{l-1})                                    (NNGP),
    Theta_l = a(rho_{l-1}) + a'(rho_{l-1}) Theta_{l-1}        (NTK),

so ``Theta_L(rho) = sum_{l=0}^{L} rho_l prod_{k=l}^{L-1} a'(rho_k)`` and on the diagonal
``Theta_L(1) = sum_{l=0}^{L} lambda^l``, ``lambda = a'(1)``: ``L + 1`` for ``lambda = 1``, else
``(lambda^(L+1) - 1) / (lambda - 1)``. The ``ntk.stax`` network ``Dense(W_std=sqrt(d)) ->
repeat(phi -> Dense(W_std) -> LayerNorm, L)`` has exactly these kernels (:func:`block`,
:func:`depth_kernels`; ``LayerNorm`` is the identity at unit variance and pins the variance
against rounding, which the variance maps of polynomial activations amplify).

The limit (derived here from the fixed points of ``a`` on ``[0, 1]``; ``a`` is increasing and
convex there with ``a(1) = 1``). With ``c0 = a(0)``, ``c1 = a'(0)``, ``lambda = a'(1)``:

* ``lambda = 1`` (ReLU, whose dual is not analytic at 1): every correlation tends to 1,
  ``1 - rho_l ~ 1/l^2`` for ReLU (``theta_l = arccos rho_l ~ 3 pi / l``) so
  ``a'(rho_l) ~ 1 - 3/l`` and ``Theta_L(rho) / Theta_L(1) -> int_0^1 t^3 dt = 1/4`` for every
  ``rho > -1`` (the gap falls like ``(kappa log L + c(rho)) / L``). The train kernel tends to
  ``(3/4) I + (1/4) 1 1^T`` and a test row to ``(1/4) 1^T``, so kernel regression predicts
  ``(1/4) 1^T K^-1 y = sum_i y_i / (n + 3)``: **majority vote**. An analytic dual with
  ``lambda = 1`` has ``1 - rho_l ~ 2 / (a''(1) l)`` and the constant ``1/3``: majority vote.
* ``lambda > 1`` and ``c0 > 0``: correlations tend to the attracting fixed point
  ``xi* in (0, 1)``; the NNGP tends to ``xi* 1 1^T + (1 - xi*) I`` and the normalised NTK to
  ``I`` plus a constant off-diagonal part: **majority vote** again.
* ``lambda > 1``, ``c0 = 0``, ``0 < c1 < 1``: ``xi* = 0`` attracts with rate ``mu = c1`` and
  ``rho = 1`` repels with rate ``lambda``. By Koenigs' theorem
  ``rho_L / mu^L -> psi(rho)``, the linearising function ``psi(a(rho)) = mu psi(rho)``, and a
  point at ``1 - rho = delta`` needs ``log(1/delta) / log(lambda)`` layers to leave 1, so
  ``psi(1 - delta) ~ C delta^(-alpha/2)``, i.e. ``psi ~ |x - x'|^-alpha`` near the diagonal, with

      alpha = 2 log(1 / c1) / log(lambda).

  The NTK follows the same profile more slowly: ``Theta_L(rho) / (L mu^L) -> psi(rho)`` with a
  relative error ``~ c(rho) / L`` (``c ~ 1/(1 - rho)`` near the diagonal; the early layers'
  derivative terms ``rho_l mu^(L-l) psi'(rho_l)`` are ``O(1)`` against ``L``). Both train
  kernels tend to multiples of ``I``, so the classifier tends to ``sign sum_i y_i psi(rho_i)``:
  a **singular kernel** classifier, the Hilbert kernel estimate (consistent; Devroye, Gyorfi &
  Krzyzak 1998) when ``alpha`` equals the dimension of the data's support, ``d - 1`` on
  ``S^(d-1)``. The activations the authors' code tunes for 2-, 3-, 5- and 9-dimensional data
  (``a = (rho + rho^7)/2``, ``(rho + rho^3)/2``, ``sinh(a rho)/sinh(a)`` with ``a = 2.676``,
  ``6.135``, ``13.83``) all give ``alpha = d - 1`` by this formula (tested).
* ``lambda > 1``, ``c0 = c1 = 0``: ``xi* = 0`` is superattracting (``rho_{l+1} ~ c_k rho_l^k``),
  ``psi`` has an infinite exponent and the nearest training point wins: **1-nearest
  neighbour**. For ``a = rho^k`` (``phi`` the k-th Hermite polynomial) in closed form:
  ``rho_L = rho^(k^L)`` and ``Theta_L(rho) / Theta_L(1) = rho^(k^L)`` too.
* ``lambda < 1`` (duals with a large constant part): every correlation tends to 1
  exponentially and the normalised NTK to ``1 1^T``; the classifier is set by subleading terms
  and is not predicted here (``'undetermined'``); affine duals (linear networks) are
  ``'linear'``.

Inputs on the positive orthant (``rho >= 0``, as in the authors' Dirichlet data and raw pixel
images) keep every weight ``psi(rho_i)`` positive; odd duals give antipodal points negative
weight.

Numerics. For ``lambda > 1``, ``rho = 1`` is a *repelling* fixed point: an input with itself
computed as ``1 - 1e-16`` (rounding) leaves 1 after ``~37 / log(lambda)`` layers, and the
diagonal of a deep kernel is rounding noise amplified by ``lambda^L`` (``ntk.stax`` included,
where a polynomial dual then overflows to inf/NaN on the diagonal only). Every function here
sets pairs with ``1 - rho <= SAME_POINT`` to their exact values (``rho_L = 1``,
``Theta_L(1)``); distinct points closer than that are not resolved by float64 anyway.

Radhakrishnan, A., Belkin, M. & Uhler, C. (2023). Wide and deep neural networks achieve
consistency for classification. PNAS 120(14), e2208779120; arXiv:2204.14126 (code: the
normalised dual and NTK recursions and the activations above).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, NamedTuple, Sequence

import numpy as np

__all__ = ["DualActivation", "relu", "erf", "sine", "hermite", "polynomial", "SAME_POINT",
           "RELU_NTK_LIMIT", "DepthKernels", "depth_recursion", "diagonal_ntk", "fixed_point",
           "LimitPrediction", "predict_limit", "limit_profile", "block",
           "depth_kernels", "kernel_classifier", "majority_vote", "nearest_neighbour",
           "singular_kernel_classifier", "weighted_vote", "limit_classifier", "REGIMES"]

#: pairs with ``1 - rho`` at most this are one point (an input with itself: ``<x, x>`` of a
#: unit vector in ``d`` dimensions is 1 up to ``~d`` float64 rounding errors)
SAME_POINT = 1e-14
#: ``lim_L Theta_L(x, x') / Theta_L(x, x)`` for ReLU, any ``x' != -x``
RELU_NTK_LIMIT = 0.25
REGIMES = ("majority_vote", "nearest_neighbour", "singular_kernel", "undetermined", "linear")
_TOL = 1e-9


# ---------------------------------------------------------------------------------------------
# normalised dual activations


@dataclasses.dataclass(frozen=True)
class DualActivation:
    """A normalised dual activation ``a(rho)`` (``a(1) = 1``) with its network layer.

    Attributes:
      name: a label.
      value, slope: ``a(rho)`` and ``a'(rho)`` on ``[-1, 1]`` (NumPy, elementwise, float64).
      layer: ``() -> (init_fn, apply_fn, kernel_fn)``, the ``ntk.stax`` activation ``phi``.
      w_std: ``W_std`` of the ``Dense`` layer after ``phi``: ``W_std^2 E phi(z)^2 = 1``.
    """
    name: str
    value: Callable[[np.ndarray], np.ndarray]
    slope: Callable[[np.ndarray], np.ndarray]
    layer: Callable[[], tuple]
    w_std: float

    @property
    def c0(self) -> float:
        """``a(0)``: the squared mean of ``phi``."""
        return float(self.value(np.float64(0.0)))

    @property
    def c1(self) -> float:
        """``a'(0)``: the attracting rate of ``rho = 0`` when ``a(0) = 0``."""
        return float(self.slope(np.float64(0.0)))

    @property
    def lam(self) -> float:
        """``lambda = a'(1)``: the repelling rate of ``rho = 1`` (``Theta_L(1)`` grows like
        ``lambda^L``)."""
        return float(self.slope(np.float64(1.0)))


def _clip(rho):
    return np.clip(np.asarray(rho, np.float64), -1.0, 1.0)


def relu() -> DualActivation:
    """``phi(z) = sqrt(2) max(z, 0)``: the arccos kernel of degree 1 (Cho & Saul 2009),

        a(rho)  = (sqrt(1 - rho^2) + (pi - arccos rho) rho) / pi,
        a'(rho) = (pi - arccos rho) / pi;      c0 = 1/pi, c1 = 1/2, lambda = 1.
    """
    def value(rho):
        r = _clip(rho)
        return (np.sqrt(np.maximum(1 - r * r, 0.0)) + (math.pi - np.arccos(r)) * r) / math.pi

    def slope(rho):
        return (math.pi - np.arccos(_clip(rho))) / math.pi

    def layer():
        from ntk import stax
        return stax.Relu()

    return DualActivation("relu", value, slope, layer, math.sqrt(2.0))


def erf() -> DualActivation:
    """``phi(z) = erf(z) / sqrt(E erf^2)`` (Williams 1997 at unit variance):

        a(rho) = arcsin(2 rho / 3) / arcsin(2/3),  a'(rho) = (2/3) / (sqrt(1 - 4 rho^2/9) arcsin(2/3));

    ``c0 = 0``, ``c1 = 0.9136``, ``lambda = 1.2257``: a singular kernel with ``alpha = 0.888``.
    """
    s = math.asin(2.0 / 3.0)

    def value(rho):
        return np.arcsin(2 * _clip(rho) / 3) / s

    def slope(rho):
        r = _clip(rho)
        return (2.0 / 3.0) / (np.sqrt(1 - 4 * r * r / 9) * s)

    def layer():
        from ntk import stax
        return stax.Erf()

    return DualActivation("erf", value, slope, layer, math.sqrt(math.pi / (2 * s)))


def sine(a: float) -> DualActivation:
    """``phi(z) = sin(sqrt(a) z) / sqrt(E sin^2)``, whose dual is

        a(rho) = sinh(a rho) / sinh(a),   a'(rho) = a cosh(a rho) / sinh(a)

    (``E sin(b u) sin(b v) = exp(-b^2) sinh(b^2 rho)``); ``c1 = a / sinh a``,
    ``lambda = a coth a``. The authors' code's ``sine_a`` activations.

    ``ntk.stax.Sin`` evaluates its dual as a difference of two exponentials, whose absolute
    error ~1e-16 leaves no relative precision once correlations fall below ~1e-12: past a few
    dozen layers (correlations ~ ``c1^L``) its deep kernels are rounding; the scalar recursion
    here evaluates ``sinh`` and has no such limit.
    """
    a = float(a)
    if not (math.isfinite(a) and 0 < a <= 300):
        raise ValueError(f"a must be a number in (0, 300], got {a!r}")
    sh = math.sinh(a)

    def value(rho):
        return np.sinh(a * _clip(rho)) / sh

    def slope(rho):
        return a * np.cosh(a * _clip(rho)) / sh

    def layer():
        from ntk import stax
        return stax.Sin(1.0, math.sqrt(a), 0.0)

    return DualActivation(f"sine({a:g})", value, slope, layer,
                          math.sqrt(2.0 / (1.0 - math.exp(-2 * a))))


def polynomial(coefficients: Sequence[float], name: str | None = None) -> DualActivation:
    """The dual ``a(rho) = sum_k c_k rho^k`` (``c_k = coefficients[k] >= 0``, ``sum_k c_k = 1``)
    of ``phi(z) = sum_k sqrt(c_k) He_k(z) / sqrt(k!)`` (Mehler's formula;
    ``ntk.stax.Polynomial`` with these monomial coefficients). E.g. ``(0, 1/2, 0, 1/2)`` is
    ``(rho + rho^3)/2``."""
    try:
        c = np.asarray([float(v) for v in coefficients], np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"coefficients must be a sequence of numbers, got {coefficients!r}"
                        ) from None
    if c.ndim != 1 or c.size == 0 or not np.all(np.isfinite(c)) or np.any(c < 0):
        raise ValueError(f"coefficients must be a non-empty sequence of finite numbers >= 0, got "
                         f"{coefficients!r}")
    if abs(c.sum() - 1.0) > 1e-12:
        raise ValueError(f"coefficients must sum to 1 (a(1) = 1), got sum {c.sum()!r}")
    herm = np.sqrt(c) / np.sqrt([math.factorial(k) for k in range(c.size)])
    monomial = tuple(float(v) for v in np.polynomial.hermite_e.herme2poly(herm))
    powers = np.arange(c.size)

    def value(rho):
        r = _clip(rho)
        return np.polynomial.polynomial.polyval(r, c)

    def slope(rho):
        r = _clip(rho)
        return np.polynomial.polynomial.polyval(r, (powers * c)[1:]) if c.size > 1 else 0 * r

    def layer():
        from ntk import stax
        return stax.Polynomial(monomial)

    label = name or "poly(" + ", ".join(f"{v:g}" for v in c) + ")"
    return DualActivation(label, value, slope, layer, 1.0)


def hermite(degree: int) -> DualActivation:
    """``phi = He_k / sqrt(k!)`` (``ntk.stax.Hermite``): ``a(rho) = rho^k`` (``k >= 2``: the
    1-nearest-neighbour regime)."""
    if isinstance(degree, bool) or not isinstance(degree, (int, np.integer)) or degree < 1:
        raise ValueError(f"degree must be an integer >= 1, got {degree!r}")
    k = int(degree)
    dual = polynomial([0.0] * k + [1.0], name=f"hermite({k})")

    def layer():
        from ntk import stax
        return stax.Hermite(k)

    return dataclasses.replace(dual, layer=layer)


# ---------------------------------------------------------------------------------------------
# the depth recursion


class DepthKernels(NamedTuple):
    """Kernels at several depths: ``nngp``, ``ntk`` of shape ``(len(depths), *rho.shape)``.

    From :func:`depth_recursion` the NTK is normalised, ``Theta_L(rho) / Theta_L(1)``
    (``log_ntk_diagonal = log Theta_L(1)``); from :func:`depth_kernels` it is the raw
    ``ntk.stax`` kernel (``log_ntk_diagonal`` the same closed form)."""
    depths: tuple
    nngp: np.ndarray
    ntk: np.ndarray
    log_ntk_diagonal: np.ndarray


def _check_depths(depths) -> tuple:
    try:
        ds = tuple(int(d) for d in depths)
    except (TypeError, ValueError):
        raise TypeError(f"depths must be a sequence of integers, got {depths!r}") from None
    if (not ds or any(d < 1 for d in ds) or any(b <= a for a, b in zip(ds, ds[1:]))
            or any(isinstance(d, bool) or float(d) != float(o) for d, o in zip(ds, depths))):
        raise ValueError(f"depths must be strictly increasing integers >= 1, got {depths!r}")
    return ds


def _check_rho(rho, name="rho") -> np.ndarray:
    r = np.asarray(rho, np.float64)
    if not np.all(np.isfinite(r)) or np.any(np.abs(r) > 1 + 1e-9):
        raise ValueError(f"{name} must hold correlations in [-1, 1] (inputs on the unit sphere), "
                         f"got values in [{np.nanmin(r):.6g}, {np.nanmax(r):.6g}] "
                         f"(shape {r.shape})")
    return np.clip(r, -1.0, 1.0)


def diagonal_ntk(dual: DualActivation, depth: int) -> float:
    """``log Theta_L(1)``, ``Theta_L(1) = sum_{l=0}^{L} lambda^l`` (``L + 1`` for
    ``lambda = 1``): the NTK of an input with itself."""
    lam = dual.lam
    if abs(lam - 1) < _TOL:
        return math.log(depth + 1)
    if lam > 1:  # (lam^(L+1) - 1)/(lam - 1), in logs
        return (depth + 1) * math.log(lam) + math.log1p(-lam ** -(depth + 1)) - math.log(lam - 1)
    return math.log1p(-lam ** (depth + 1)) - math.log1p(-lam)


def depth_recursion(dual: DualActivation, rho, depths: Sequence[int]) -> DepthKernels:
    """The NNGP ``rho_L`` and the normalised NTK ``Theta_L(rho) / Theta_L(1)`` at each depth,
    by the scalar recursion of the module docstring (NumPy, float64, elementwise in ``rho``).

    The NTK is carried divided by ``s_l = Theta_l(1)`` so nothing overflows at any depth:
    ``T_l = a(rho_{l-1}) / s_l + a'(rho_{l-1}) (s_{l-1} / s_l) T_{l-1}``. Entries with
    ``1 - rho <= SAME_POINT`` are exactly 1 (see the module docstring).

    Args:
      rho: correlations ``<x, x'>`` in ``[-1, 1]``, any shape.
      depths: strictly increasing depths ``L >= 1``.
    """
    ds = _check_depths(depths)
    r0 = _check_rho(rho)
    same = r0 >= 1 - SAME_POINT
    lam = dual.lam
    scaled = lam > 1
    # s = Theta_l(1) (lam <= 1) or Theta_l(1) / lam^l = sum_{j<=l} lam^-j (lam > 1): bounded
    r, t, s = r0.copy(), r0.copy(), 1.0
    out_n, out_t = [], []
    want = set(ds)
    for l in range(1, ds[-1] + 1):
        a, da = dual.value(r), dual.slope(r)
        if scaled:
            s_new = s + lam ** -l
            t = a * (lam ** -l / s_new) + da * t * (s / (lam * s_new))
        else:
            s_new = 1.0 + lam * s
            t = (a + da * s * t) / s_new
        s = s_new
        r = a
        if l in want:
            out_n.append(np.where(same, 1.0, r))
            out_t.append(np.where(same, 1.0, t))
    return DepthKernels(ds, np.stack(out_n), np.stack(out_t),
                        np.array([diagonal_ntk(dual, d) for d in ds]))


def fixed_point(dual: DualActivation, max_iter: int = 100_000) -> float:
    """``xi* = lim_m a^m(0)``: the smallest fixed point of ``a`` in ``[0, 1]`` (``a`` is
    increasing there, so the orbit of 0 increases to it); 1 when ``a(rho) > rho`` on
    ``[0, 1)``."""
    x = 0.0
    for _ in range(max_iter):
        nxt = float(dual.value(np.float64(x)))
        if abs(nxt - x) <= 1e-15 * max(1.0, abs(x)):
            return nxt
        x = nxt
    return x


# ---------------------------------------------------------------------------------------------
# the predicted limit


class LimitPrediction(NamedTuple):
    """What the depth -> infinity limit of the kernel classifier is (module docstring).

    regime: one of :data:`REGIMES`; fixed_point: ``xi*``; lam: ``a'(1)``; mu: ``a'(xi*)``;
    alpha: the singular exponent ``2 log(1/mu) / log(lam)`` (``inf`` for nearest neighbour,
    ``nan`` otherwise)."""
    regime: str
    fixed_point: float
    lam: float
    mu: float
    alpha: float


def predict_limit(dual: DualActivation) -> LimitPrediction:
    """The classifier the infinitely deep NNGP / NTK kernel regression implements, from
    ``c0 = a(0)``, ``c1 = a'(0)`` and ``lambda = a'(1)`` (module docstring)."""
    lam = dual.lam
    grid = np.linspace(-1, 1, 41)
    curvature = dual.value(grid) - (dual.value(np.float64(0.0)) + dual.slope(np.float64(0.0))
                                    * grid)
    if np.max(np.abs(curvature)) < 1e-12:
        return LimitPrediction("linear", math.nan, lam, lam, math.nan)
    if lam < 1 - _TOL:
        return LimitPrediction("undetermined", 1.0, lam, lam, math.nan)
    if lam <= 1 + _TOL:
        return LimitPrediction("majority_vote", 1.0, lam, lam, math.nan)
    xi = fixed_point(dual)
    mu = float(dual.slope(np.float64(xi)))
    if xi > 1e-12:
        return LimitPrediction("majority_vote", xi, lam, mu, math.nan)
    if mu <= 1e-12:
        return LimitPrediction("nearest_neighbour", 0.0, lam, 0.0, math.inf)
    return LimitPrediction("singular_kernel", 0.0, lam, mu, 2 * math.log(1 / mu) / math.log(lam))


def limit_profile(dual: DualActivation, rho, tol: float = 1e-13,
                  max_iter: int = 200_000) -> np.ndarray:
    """Koenigs' linearising function ``psi(rho) = lim_m a^m(rho) / mu^m`` of the attracting
    fixed point 0 (singular-kernel regime only): the limit of ``rho_L / mu^L`` and of
    ``Theta_L(rho) / (L mu^L)``, ``~ C (1 - rho)^(-alpha/2)`` near ``rho = 1`` (``+inf`` at
    ``rho = 1``).

    Iterates ``a`` until every ``|a^m(rho)| < tol`` (the neglected ``O(a^m)`` relative
    correction is then below ``tol``), then divides by ``mu^m`` in logs."""
    pred = predict_limit(dual)
    if pred.regime != "singular_kernel":
        raise ValueError(f"limit_profile: {dual.name} is in the {pred.regime!r} regime; the "
                         "profile exists in the 'singular_kernel' regime only")
    r0 = _check_rho(rho)
    plus = r0 >= 1 - SAME_POINT
    minus = (r0 <= -1 + SAME_POINT) & (abs(float(dual.value(np.float64(-1.0))) + 1) < 1e-12)
    x = np.where(plus | minus, 0.0, r0)
    log_mu = math.log(pred.mu)
    psi = np.zeros_like(x)
    active = np.abs(x) >= tol
    psi[~active] = x[~active]
    m = 0
    while np.any(active):
        m += 1
        if m > max_iter:
            raise ValueError(f"limit_profile: {dual.name} did not reach |a^m(rho)| < {tol} in "
                             f"{max_iter} iterations")
        x[active] = dual.value(x[active])
        done = active & (np.abs(x) < tol)
        psi[done] = x[done] * np.exp(-m * log_mu)
        active &= ~done
    return np.where(plus, np.inf, np.where(minus, -np.inf, psi))


# ---------------------------------------------------------------------------------------------
# the network kernels, by ntk.stax


def block(dual: DualActivation, width: int = 512, layer_norm_eps: float = 0.0):
    """One hidden layer ``phi -> Dense(width, W_std) -> LayerNorm``: at unit variance its
    ``ntk.stax`` kernel map is ``rho -> a(rho)``, ``Theta -> a(rho) + a'(rho) Theta``."""
    from ntk import stax
    return stax.serial(dual.layer(), stax.Dense(width, W_std=dual.w_std),
                       stax.LayerNorm(eps=layer_norm_eps))


def _rows_on_sphere(x, name):
    x = np.asarray(x, np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be (N, d), got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1)
    if not np.all(np.abs(norms - 1) < 1e-6):
        raise ValueError(f"{name} rows must lie on the unit sphere (norms in "
                         f"[{norms.min():.6g}, {norms.max():.6g}])")
    return x


@functools.lru_cache(maxsize=8)
def _input_kernel_fn(input_dim: int):
    """``jax.jit`` of the input layer's kernel: one compilation per input shapes (the eager
    call would also compile its input checks for every new shape)."""
    import jax
    from ntk import stax
    kernel_fn = stax.Dense(1, W_std=math.sqrt(input_dim))[2]
    return jax.jit(lambda x1, x2: kernel_fn(x1, x2))


@functools.lru_cache(maxsize=32)
def _compiled_step(dual: DualActivation, n_layers: int):
    """``jax.jit`` of ``repeat(block(dual), n_layers)``'s kernel map on a ``Kernel``, cached per
    dual object so that repeated calls (new inputs of the same shapes) reuse its compilation."""
    import jax
    from ntk import stax
    step_fn = stax.repeat(block(dual, 1), n_layers)[2]
    return jax.jit(lambda k: step_fn(k))


def depth_kernels(dual: DualActivation, x1, x2, depths: Sequence[int]) -> DepthKernels:
    """``ntk.stax`` NNGP and NTK of ``x1 (N1, d)`` against ``x2 (N2, d)`` (unit rows) after
    ``L`` hidden layers, for every ``L`` in ``depths``, shapes ``(len(depths), N1, N2)``.

    The input layer's kernel is computed once; then ``repeat(block, g)`` (``g`` the greatest
    common divisor of the depth increments) is compiled once with ``jax.jit`` (cached per
    ``dual`` object and ``g``: calls with new inputs of the same shapes do not recompile) and
    applied to the ``Kernel`` ``depths[-1] / g`` times, recording the requested depths. Pairs with
    ``1 - <x1, x2> <= SAME_POINT`` get their exact values ``1`` and ``Theta_L(1)`` (the
    module docstring: for ``a'(1) > 1`` the computed ones are amplified rounding).
    """
    ds = _check_depths(depths)
    x1 = _rows_on_sphere(x1, "x1")
    x2 = _rows_on_sphere(x2, "x2")
    if x1.shape[1] != x2.shape[1]:
        raise ValueError(f"x1 {x1.shape} and x2 {x2.shape} must have the same dimension")
    same = x1 @ x2.T >= 1 - SAME_POINT
    g = math.gcd(*([ds[0]] + [b - a for a, b in zip(ds, ds[1:])]))
    step = _compiled_step(dual, g)
    k = _input_kernel_fn(x1.shape[1])(x1, x2)
    want = set(ds)
    nngp, ntk = [], []
    for l in range(g, ds[-1] + 1, g):
        k = step(k)
        if l in want:
            log_diag = diagonal_ntk(dual, l)
            nngp.append(np.where(same, 1.0, np.asarray(k.nngp, np.float64)))
            ntk.append(np.where(same, math.exp(log_diag), np.asarray(k.ntk, np.float64)))
    return DepthKernels(ds, np.stack(nngp), np.stack(ntk),
                        np.array([diagonal_ntk(dual, d) for d in ds]))


# ---------------------------------------------------------------------------------------------
# classifiers


def _labels(labels, name="labels_train"):
    y = np.asarray(labels)
    if y.ndim != 1 or y.size == 0 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must be a non-empty 1-D integer array, got {y.dtype} {y.shape}")
    return y


def weighted_vote(weights, labels_train) -> np.ndarray:
    """``argmax_c sum_{i: y_i = c} w_ti`` for weights ``(N_test, N_train)``: ``(N_test,)`` labels
    (ties to the smallest label)."""
    y = _labels(labels_train)
    w = np.asarray(weights, np.float64)
    if w.ndim != 2 or w.shape[1] != y.size:
        raise ValueError(f"weights must be (N_test, {y.size}), got shape {w.shape}")
    classes = np.unique(y)
    onehot = (y[:, None] == classes[None, :]).astype(np.float64)
    return classes[np.argmax(w @ onehot, axis=1)]


def kernel_classifier(k_test_train, k_train_train, labels_train) -> np.ndarray:
    """Kernel regression to one-hot labels, ``argmax_c [K(x, X) K(X, X)^+ Y]_c`` (the
    infinitely wide network trained by gradient flow on the MSE from zero output: the
    minimum-norm interpolant, ``K^+`` the pseudo-inverse, ``K^-1`` when ``K`` is invertible;
    ``sign`` for two classes)."""
    y = _labels(labels_train)
    kt = np.asarray(k_test_train, np.float64)
    kk = np.asarray(k_train_train, np.float64)
    if kk.shape != (y.size, y.size) or kt.ndim != 2 or kt.shape[1] != y.size:
        raise ValueError(f"k_train_train must be ({y.size}, {y.size}) and k_test_train "
                         f"(N_test, {y.size}); got {kk.shape} and {kt.shape}")
    # argmax is unchanged by positive scalings of K(X, X) and of each test row: scaling both
    # to unit maximum keeps deep kernels (entries ~ mu^L against a diagonal ~ lambda^L) in range
    scale = np.max(np.abs(np.diag(kk)))
    rows = np.max(np.abs(kt), axis=1, keepdims=True)
    classes = np.unique(y)
    onehot = (y[:, None] == classes[None, :]).astype(np.float64)
    coef = np.linalg.lstsq(kk / scale, onehot, rcond=None)[0]
    return classes[np.argmax((kt / np.where(rows > 0, rows, 1.0)) @ coef, axis=1)]


def majority_vote(labels_train, n_test: int) -> np.ndarray:
    """The most frequent training label, ``n_test`` times (ties to the smallest label)."""
    y = _labels(labels_train)
    classes, counts = np.unique(y, return_counts=True)
    return np.full(int(n_test), classes[np.argmax(counts)])


def nearest_neighbour(gram_test_train, labels_train) -> np.ndarray:
    """1-NN on the sphere: the label of ``argmax_i <x, x_i>`` (``= argmin |x - x_i|``)."""
    y = _labels(labels_train)
    g = np.asarray(gram_test_train, np.float64)
    if g.ndim != 2 or g.shape[1] != y.size:
        raise ValueError(f"gram_test_train must be (N_test, {y.size}), got {g.shape}")
    return y[np.argmax(g, axis=1)]


def _with_coincidences(weights, g):
    """A test point equal to training points takes their vote alone (infinite weight)."""
    hit = g >= 1 - SAME_POINT
    rows = np.any(hit, axis=1)
    weights = np.where(np.isfinite(weights), weights, 0.0)
    weights[rows] = hit[rows].astype(np.float64)
    return weights


def singular_kernel_classifier(gram_test_train, labels_train, alpha: float) -> np.ndarray:
    """The singular kernel vote with weights ``|x - x_i|^-alpha = (2 - 2 <x, x_i>)^(-alpha/2)``
    (the Hilbert kernel estimate for ``alpha`` = the data's dimension)."""
    y = _labels(labels_train)
    g = _check_rho(gram_test_train, "gram_test_train")
    if g.ndim != 2 or g.shape[1] != y.size:
        raise ValueError(f"gram_test_train must be (N_test, {y.size}), got {g.shape}")
    if not (alpha > 0 and math.isfinite(alpha)):
        raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
    dist2 = np.maximum(2 - 2 * g, 0.0)
    with np.errstate(divide="ignore", over="ignore"):
        logw = -0.5 * alpha * np.log(dist2)
    logw = np.where(np.isfinite(logw), logw, -np.inf)
    shift = np.max(np.where(np.isfinite(logw), logw, -np.inf), axis=1, keepdims=True)
    w = np.exp(logw - np.where(np.isfinite(shift), shift, 0.0))
    return weighted_vote(_with_coincidences(w, g), y)


def limit_classifier(dual: DualActivation, gram_test_train, labels_train) -> np.ndarray:
    """The predicted depth -> infinity classifier (:func:`predict_limit`): majority vote, 1-NN,
    or the vote weighted by the Koenigs profile ``psi(<x, x_i>)`` (singular kernel)."""
    y = _labels(labels_train)
    g = _check_rho(gram_test_train, "gram_test_train")
    if g.ndim != 2 or g.shape[1] != y.size:
        raise ValueError(f"gram_test_train must be (N_test, {y.size}), got {g.shape}")
    regime = predict_limit(dual).regime
    if regime == "majority_vote":
        return majority_vote(y, g.shape[0])
    if regime == "nearest_neighbour":
        return nearest_neighbour(g, y)
    if regime == "singular_kernel":
        return weighted_vote(_with_coincidences(limit_profile(dual, g), g), y)
    raise ValueError(f"limit_classifier: {dual.name} is in the {regime!r} regime, whose limit "
                     "classifier is not predicted")
