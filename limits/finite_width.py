"""Finite-width corrections at initialisation: the four-point vertex of the preactivations and
the variance of the NTK over initialisations, to leading order in ``1 / width``, and Monte Carlo
of the finite networks they describe (Roberts, Yaida & Hanin, "The Principles of Deep Learning
Theory", Chapters 4-5 and 8).

Network (one input ``x`` with ``q0 = |x|^2 / n_0``, hidden widths ``n``, one output; NTK
parametrisation, ``W_ij, b_i ~ N(0, 1)``)::

    z^1 = sqrt(C_W / n_0) W^1 x + sqrt(C_b) b^1,
    z^{l+1} = sqrt(C_W / n) W^{l+1} sigma(z^l) + sqrt(C_b) b^{l+1},     f = z^L (one unit).

Its NTK with learning-rate scales ``lambda_W`` on weights and ``lambda_b`` on biases
(``lambda = C`` is the NTK of the parametrisation above) is, with ``delta^l = df / dz^l``,

    Theta = sum_{l=1..L} |delta^l|^2 (lambda_b + lambda_W |sigma(z^{l-1})|^2 / n_{l-1}),
    sigma(z^0) := x,    delta^L = 1,    delta^l = sigma'(z^l) * sqrt(C_W / n) W^{l+1 T} delta^{l+1}.

Given layer ``l``, every unit of layer ``l + 1`` is Gaussian with the *stochastic* variance
``G^{l+1} = C_b + C_W |sigma(z^l)|^2 / n``, so the excess kurtosis of a preactivation is
exactly ``E z^4 / (E z^2)^2 - 3 = 3 Var(G) / E[G]^2``; and ``(z^{l+1}_i, Theta^{l+1}_ii)`` are
i.i.d. over units ``i`` given layer ``l`` (each uses its own row of ``W^{l+1}``). Write
``<.>`` for an average over ``z ~ N(0, K^l)`` and define, to leading order in ``1 / n``::

    Var(G^l) = V^l / n                         (the book's four-point vertex)
    Cov(G^l, Theta_bar^l) = D^l / n,  Var(Theta_bar^l) = A^l / n,
    E[(Theta^l_ij)^2] = B^l / n   (i != j),

with ``Theta_bar^l = E[Theta^l_ii | layer l - 1]`` the conditional mean of a diagonal entry of
the layer-``l`` NTK (``Theta^l_ij = sum_params dz^l_i dz^l_j``). Averages over the ``n`` units
of layer ``l`` give ``G^{l+1} = C_b + C_W avg_k sigma_k^2`` and ``Theta_bar^{l+1} = lambda_b
+ avg_k (lambda_W sigma_k^2 + C_W sigma'_k^2 Theta^l_kk)``; the law of total covariance over
the i.i.d. units, a first-order expansion of the conditional means in ``(G^l, Theta_bar^l)``
and ``E[(W_i^T M W_j)^2] = tr M^2`` for the off-diagonal entries give the recursions

    K^{l+1}     = C_b + C_W <s^2>,      Theta^{l+1} = lambda_b + lambda_W <s^2> + C_W <s'^2> Theta^l
    V^{l+1}     = C_W^2 (<s^4> - <s^2>^2) + chi_par^2 V^l,       chi_par = C_W d<s^2>/dK
    D^{l+1}     = C_W Cov(s^2, u) + chi_par (b_G V^l + chi_perp D^l)
    A^{l+1}     = Var(u) + b_G^2 V^l + 2 b_G chi_perp D^l + chi_perp^2 A^l
    B^{l+1}     = C_W^2 <s'^4> Theta^2 + chi_perp^2 B^l,            chi_perp = C_W <s'^2>

with ``u = lambda_W s^2 + C_W Theta^l s'^2`` (``s = sigma(z)``), ``b_G = lambda_W d<s^2>/dK +
C_W Theta^l d<s'^2>/dK``, and ``V^1 = D^1 = A^1 = B^1 = 0`` (the first layer is Gaussian and
its NTK deterministic and diagonal). ``d<f>/dK = <f (z^2 - K)> / (2 K^2)``. The output's
variance over initialisations is ``Var(Theta^L) = (A^L + 2 B^L) / n`` (``A`` from the
conditional mean, ``2 B`` from the readout row: ``Var(W^T M W) = 2 tr M^2``).
The ``V`` recursion has the form of the book's single-input four-point vertex (with
``chi_par = C_W d<s^2>/dK`` its parallel susceptibility) and gives its scale-invariant result
``V = (3 A_4 / A_2^2 - 1)(l - 1) K*^2``; every recursion here is derived as above (the book's
text, its Chapter 8 NTK-variance tensors included, could not be read) and checked by Monte
Carlo and the all-orders ReLU law in the tests.

Scale-invariant class (``sigma(z) = a_+ z`` for ``z > 0``, ``a_- z`` below; ReLU ``(1, 0)``),
``A_2 = (a_+^2 + a_-^2) / 2``, ``A_4 = (a_+^4 + a_-^4) / 2``, at criticality
``C_W = 1 / A_2, C_b = 0`` (``K^l = K*``, ``Theta^l = l lambda_W A_2 K*``)::

    V^l / K*^2 = v (l - 1),                          v = 3 A_4 / A_2^2 - 1   (ReLU 5, linear 2)
    n Var(Theta^L) / Theta^2 = sum_{j<L} [(v + 4 w + 2) j^2 + w j] / L^2,  w = A_4 / A_2^2 - 1
                             ~ (v + 4 w + 2) L / 3                       (ReLU 11 L / 3)

so the preactivation's excess kurtosis is ``3 v (L - 1) / n`` (ReLU ``15 (L - 1) / n``) and the
NTK's relative variance ``~ (11/3) L / n``. Here the kurtosis is also known to all orders:
``G^{l+1} = G^l (C_W / n) sum_j sigma(g_j)^2`` with ``g_j ~ N(0, 1)`` independent of ``G^l``,
so ``E G^2 / (E G)^2 = (1 + v / n)^{L - 1}`` and ``kurtosis = 3 ((1 + v / n)^{L - 1} - 1)``
(Hanin's ``exp(5 sum 1/n_l)`` for ReLU). Hanin & Nica (2020) state the NTK's
``E Theta^2 / (E Theta)^2 ~= exp(5 L / n)`` up to constant factors; at leading order the slope
in ``L / n`` computed here is ``11/3``, not ``5``.

``K* = 0`` class (tanh at ``C_W = 1, C_b = 0``, ``lambda = C``): expanding in small ``K``,
``K^l ~ 1 / (2 l)``, ``V^l / (K^l)^2 ~ 2 l / 3`` (kurtosis ``~ 2 L / n``), ``Theta^l -> 1/2``
and ``B^l ~ l / 12`` (``A`` stays bounded), so ``n Var(Theta) / Theta^2 ~ 2 L / 3``, with
corrections in ``log l / l``.

Monte Carlo (:func:`sample_single_input`): dense networks, or exact samples of the same law
at ``O(n L)`` cost per network: for one input the weights enter through ``y = W s`` forward
and ``W^T delta`` backward, and given ``y``, ``W = y s^T / |s|^2 + G (I - P_s)`` with ``G``
an independent Gaussian matrix, so ``y = |s| g`` and ``W^T delta = s (y . delta) / |s|^2 +
(I - P_s) |delta| g'`` with fresh standard normal vectors ``g, g'``.

Roberts, D. A., Yaida, S. & Hanin, B. (2022). The Principles of Deep Learning Theory.
Cambridge University Press, arXiv:2106.10165. Hanin, B. & Nica, M. (2020). Finite depth and
width corrections to the neural tangent kernel. ICLR 2020, arXiv:1909.05989.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from limits.criticality import SignalActivation, gaussian_expectation, signal_activation

__all__ = [
    "ScaleInvariant",
    "ASYMPTOTIC_SLOPES",
    "finite_width_activation",
    "gaussian_moments",
    "finite_width_recursion",
    "scale_invariant_four_point",
    "scale_invariant_ntk_variance",
    "scale_invariant_kurtosis_exact",
    "sample_single_input",
    "network_statistics",
    "relative_variance",
]


@dataclasses.dataclass(frozen=True)
class ScaleInvariant:
    """``sigma(z) = a_plus z`` (``z > 0``), ``a_minus z`` (``z <= 0``): ReLU is ``(1, 0)``,
    linear ``(1, 1)``. Gaussian averages are in closed form (no quadrature on the kink)."""

    a_plus: float = 1.0
    a_minus: float = 0.0
    name: str = "scale_invariant"

    def __post_init__(self):
        for field in ("a_plus", "a_minus"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{field} must be a finite number, got {v!r}")
        if self.a_plus == 0 and self.a_minus == 0:
            raise ValueError("a_plus and a_minus cannot both be 0")

    @property
    def A2(self) -> float:
        return (self.a_plus ** 2 + self.a_minus ** 2) / 2

    @property
    def A4(self) -> float:
        return (self.a_plus ** 4 + self.a_minus ** 4) / 2

    @property
    def critical_sigma_w2(self) -> float:
        """``C_W = 1 / A_2`` (with ``C_b = 0``)."""
        return 1.0 / self.A2

    @property
    def v(self) -> float:
        """``3 A_4 / A_2^2 - 1``: ``V^l / K*^2 = v (l - 1)`` at criticality."""
        return 3 * self.A4 / self.A2 ** 2 - 1

    @property
    def w(self) -> float:
        """``A_4 / A_2^2 - 1 = Var(sigma'^2) / <sigma'^2>^2``."""
        return self.A4 / self.A2 ** 2 - 1

    def phi(self, z):
        return np.where(z > 0, self.a_plus * z, self.a_minus * z)

    def dphi(self, z):
        return np.where(z > 0, self.a_plus, self.a_minus) * np.ones_like(z)


_NAMED = {"relu": ScaleInvariant(1.0, 0.0, "relu"), "linear": ScaleInvariant(1.0, 1.0, "linear")}

# Leading-order growth per unit of L / n at criticality (large L): the preactivation's excess
# kurtosis 3 V / (n K^2) and the NTK's relative variance n Var(Theta) / Theta^2 (see above).
ASYMPTOTIC_SLOPES = {
    "relu": {"kurtosis": 15.0, "ntk_variance": 11.0 / 3.0},
    "linear": {"kurtosis": 6.0, "ntk_variance": 4.0 / 3.0},
    "tanh": {"kurtosis": 2.0, "ntk_variance": 2.0 / 3.0},
}


def finite_width_activation(activation):
    """``'relu'`` / ``'linear'`` / a :class:`ScaleInvariant` (closed forms), or ``'tanh'``,
    ``'erf'`` / a :class:`limits.criticality.SignalActivation` (quadrature)."""
    if isinstance(activation, (ScaleInvariant, SignalActivation)):
        return activation
    if isinstance(activation, str) and activation in _NAMED:
        return _NAMED[activation]
    try:
        return signal_activation(activation)
    except ValueError:
        raise ValueError(f"activation must be 'relu', 'linear', 'tanh', 'erf', a ScaleInvariant "
                         f"or a SignalActivation, got {activation!r}") from None


_MOMENT_NAMES = ("s2", "s4", "d2", "d4", "sd", "g1", "g2")


def gaussian_moments(activation, K, deg: int = 201) -> dict:
    """Gaussian averages over ``z ~ N(0, K)`` that drive the recursions:
    ``s2 = <s^2>, s4 = <s^4>, d2 = <s'^2>, d4 = <s'^4>, sd = <s^2 s'^2>``,
    ``g1 = d<s^2>/dK``, ``g2 = d<s'^2>/dK`` (``s = sigma(z)``; derivatives through
    ``d<f>/dK = <f (z^2 - K)> / (2 K^2)``). Scale-invariant activations in closed form,
    others by :func:`limits.criticality.gaussian_expectation` with ``deg`` nodes (``<= 300``;
    for tanh the error is ~1e-8 at 101 nodes and below 1e-10 at 201 for ``K <= 2``)."""
    act = finite_width_activation(activation)
    if isinstance(deg, bool) or not isinstance(deg, (int, np.integer)) or not 2 <= deg <= 300:
        raise ValueError(f"deg must be an int in [2, 300], got {deg!r}")
    K = float(K)
    if not math.isfinite(K) or K <= 0:
        raise ValueError(f"K must be a finite variance > 0, got {K!r}")
    if isinstance(act, ScaleInvariant):
        A2, A4 = act.A2, act.A4
        return {"s2": A2 * K, "s4": 3 * A4 * K * K, "d2": A2, "d4": A4, "sd": A4 * K,
                "g1": A2, "g2": 0.0}

    def integrands(u):
        s, d = act.phi(u), act.dphi(u)
        s2, d2 = s * s, d * d
        return np.stack([s2, s2 * s2, d2, d2 * d2, s2 * d2, s2 * (u * u - K),
                         d2 * (u * u - K)])

    m = gaussian_expectation(integrands, K, deg)
    out = dict(zip(_MOMENT_NAMES, (float(x) for x in m)))
    out["g1"] /= 2 * K * K
    out["g2"] /= 2 * K * K
    return out


def _check_positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_hyper(sigma_w2, sigma_b2, q0, lambda_w, lambda_b):
    vals = {"sigma_w2": sigma_w2, "sigma_b2": sigma_b2, "q0": q0,
            "lambda_w": sigma_w2 if lambda_w is None else lambda_w,
            "lambda_b": sigma_b2 if lambda_b is None else lambda_b}
    for name, v in vals.items():
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or \
                not math.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    if sigma_w2 == 0 or q0 == 0:
        raise ValueError(f"sigma_w2 and q0 must be > 0, got {sigma_w2!r}, {q0!r}")
    return {k: float(v) for k, v in vals.items()}


def finite_width_recursion(activation, depth: int, sigma_w2: float, sigma_b2: float = 0.0, *,
                           q0: float = 1.0, lambda_w: float | None = None,
                           lambda_b: float | None = None, deg: int = 201) -> dict:
    """Layer-to-layer recursions of the module docstring for layers ``l = 1..depth``.

    ``q0 = |x|^2 / n_0`` (so ``K^1 = sigma_b2 + sigma_w2 q0``, ``Theta^1 = lambda_b + lambda_w
    q0``); ``lambda_w``, ``lambda_b`` default to ``sigma_w2``, ``sigma_b2`` (NTK
    parametrisation). Returns arrays of shape ``(depth,)``: ``K``, ``ntk`` (mean NTK
    ``Theta^l``), ``V``, ``D``, ``A``, ``B``, and the leading-order coefficients of ``1 / n``
    in the excess kurtosis of a layer-``l`` preactivation and the relative variance of the
    layer-``l`` NTK (diagonal entry):

        kurtosis_coefficient = 3 V / K^2,     ntk_variance_coefficient = (A + 2 B) / Theta^2.

    Roberts, Yaida & Hanin 2022, arXiv:2106.10165 (Ch. 4-5, 8).
    """
    act = finite_width_activation(activation)
    depth = _check_positive_int("depth", depth)
    h = _check_hyper(sigma_w2, sigma_b2, q0, lambda_w, lambda_b)
    cw, cb, lw, lb = h["sigma_w2"], h["sigma_b2"], h["lambda_w"], h["lambda_b"]
    K, T = cb + cw * h["q0"], lb + lw * h["q0"]
    V = D = A = B = 0.0
    rows = [(K, T, V, D, A, B)]
    for _ in range(depth - 1):
        m = gaussian_moments(act, K, deg)
        var_s2 = m["s4"] - m["s2"] ** 2
        cov_s2_d2 = m["sd"] - m["s2"] * m["d2"]
        var_d2 = m["d4"] - m["d2"] ** 2
        chi_par = cw * m["g1"]
        chi_perp = cw * m["d2"]
        b_g = lw * m["g1"] + cw * T * m["g2"]
        cov_s2_u = lw * var_s2 + cw * T * cov_s2_d2
        var_u = lw * lw * var_s2 + 2 * lw * cw * T * cov_s2_d2 + (cw * T) ** 2 * var_d2
        V, D, A, B = (cw * cw * var_s2 + chi_par ** 2 * V,
                      cw * cov_s2_u + chi_par * (b_g * V + chi_perp * D),
                      var_u + b_g ** 2 * V + 2 * b_g * chi_perp * D + chi_perp ** 2 * A,
                      cw * cw * m["d4"] * T * T + chi_perp ** 2 * B)
        K, T = cb + cw * m["s2"], lb + lw * m["s2"] + chi_perp * T
        rows.append((K, T, V, D, A, B))
    arr = np.asarray(rows, dtype=float)
    out = dict(zip(("K", "ntk", "V", "D", "A", "B"), arr.T))
    out["kurtosis_coefficient"] = 3 * out["V"] / out["K"] ** 2
    out["ntk_variance_coefficient"] = (out["A"] + 2 * out["B"]) / out["ntk"] ** 2
    return out


def _scale_invariant(a_plus, a_minus):
    return ScaleInvariant(float(a_plus), float(a_minus))


def scale_invariant_four_point(depth: int, a_plus: float = 1.0, a_minus: float = 0.0):
    """``V^l / K*^2 = (3 A_4 / A_2^2 - 1)(l - 1)`` for ``l = 1..depth`` (criticality,
    ``C_b = 0``): ReLU ``5 (l - 1)``. Shape ``(depth,)``."""
    depth = _check_positive_int("depth", depth)
    return _scale_invariant(a_plus, a_minus).v * np.arange(depth, dtype=float)


def scale_invariant_ntk_variance(depth: int, a_plus: float = 1.0, a_minus: float = 0.0):
    """``n Var(Theta^l) / (Theta^l)^2 = sum_{j<l} [(v + 4w + 2) j^2 + w j] / l^2`` for
    ``l = 1..depth`` (criticality, ``C_b = lambda_b = 0``, any ``lambda_W``): ReLU
    ``sum_{j<l} (11 j^2 + j) / l^2 ~ 11 l / 3``. Shape ``(depth,)``."""
    depth = _check_positive_int("depth", depth)
    act = _scale_invariant(a_plus, a_minus)
    v, w = act.v, act.w
    l = np.arange(1, depth + 1, dtype=float)
    sum_j2 = (l - 1) * l * (2 * l - 1) / 6
    sum_j = (l - 1) * l / 2
    return ((v + 4 * w + 2) * sum_j2 + w * sum_j) / l ** 2


def scale_invariant_kurtosis_exact(depth, width, a_plus: float = 1.0, a_minus: float = 0.0):
    """Excess kurtosis of a layer-``depth`` preactivation at every order in ``1 / width``
    (criticality, ``C_b = 0``): ``3 ((1 + v / width)^(depth - 1) - 1)``; its ``1 / width``
    term is ``3 v (depth - 1) / width``. Broadcasts over array ``depth`` / ``width``."""
    depth = np.asarray(depth, dtype=float)
    width = np.asarray(width, dtype=float)
    if np.any(depth < 1) or np.any(width < 1):
        raise ValueError(f"depth and width must be >= 1, got {depth!r}, {width!r}")
    v = _scale_invariant(a_plus, a_minus).v
    return 3 * np.expm1((depth - 1) * np.log1p(v / width))


# ---------------------------------------------------------------------------------------------
# Monte Carlo


def network_statistics(weights, x, activation, sigma_w2: float, sigma_b2: float = 0.0, *,
                       biases=None, lambda_w: float | None = None,
                       lambda_b: float | None = None) -> dict:
    """Output, output-variance ``G^L`` and NTK of a batch of dense networks at one input.

    ``weights``: list of ``L`` arrays ``(S, n_l, n_{l-1})`` (``S`` networks, ``n_L = 1``);
    ``biases``: ``None`` or list of ``(S, n_l)``; ``x``: ``(n_0,)``. The layer map is
    ``z^l = sqrt(sigma_w2 / n_{l-1}) W^l sigma(z^{l-1}) + sqrt(sigma_b2) b^l``; the NTK is
    ``sum_l |df/dz^l|^2 (lambda_b + lambda_W |sigma(z^{l-1})|^2 / n_{l-1})`` (with
    ``lambda_b`` only where there are biases). Returns ``{'output', 'G', 'ntk'}``, each
    ``(S,)``, with ``G = sigma_b2 + sigma_w2 |sigma(z^{L-1})|^2 / n_{L-1}``.
    """
    act = finite_width_activation(activation)
    h = _check_hyper(sigma_w2, sigma_b2, 1.0, lambda_w, lambda_b)
    cw, cb, lw, lb = h["sigma_w2"], h["sigma_b2"], h["lambda_w"], h["lambda_b"]
    x = np.asarray(x, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"x must be one input of shape (n_0,), got shape {x.shape}")
    if not weights or any(np.ndim(W) != 3 for W in weights):
        raise ValueError("weights must be a non-empty list of (S, n_out, n_in) arrays, got "
                         f"shapes {[np.shape(W) for W in weights]}")
    S = weights[0].shape[0]
    fan_in = x.shape[0]
    for i, W in enumerate(weights):
        if W.shape[0] != S or W.shape[2] != fan_in:
            raise ValueError(f"weights[{i}] has shape {W.shape}; expected ({S}, n, {fan_in})")
        fan_in = W.shape[1]
    if weights[-1].shape[1] != 1:
        raise ValueError(f"the last layer must have one output, got {weights[-1].shape}")
    if biases is not None and len(biases) != len(weights):
        raise ValueError(f"biases must be None or one (S, n_l) array per layer, got "
                         f"{len(biases)} for {len(weights)} layers")
    acts = [np.broadcast_to(x, (S, x.shape[0]))]
    pre = []
    for i, W in enumerate(weights):
        z = math.sqrt(cw / acts[-1].shape[1]) * np.einsum("sij,sj->si", W, acts[-1])
        if biases is not None:
            z = z + math.sqrt(cb) * biases[i]
        pre.append(z)
        if i < len(weights) - 1:
            acts.append(act.phi(z))
    bias_rate = lb if biases is not None else 0.0
    delta = np.ones((S, 1))
    ntk = np.zeros(S)
    for i in range(len(weights) - 1, -1, -1):
        a = acts[i]
        ntk += np.sum(delta ** 2, 1) * (bias_rate + lw * np.sum(a * a, 1) / a.shape[1])
        if i > 0:
            back = np.einsum("sij,si->sj", weights[i], delta)
            delta = act.dphi(pre[i - 1]) * math.sqrt(cw / a.shape[1]) * back
    last = acts[-1]
    G = cb + cw * np.sum(last * last, 1) / last.shape[1]
    return {"output": pre[-1][:, 0], "G": G, "ntk": ntk}


def _rotated_chunk(act, width, depth, S, cw, cb, lw, lb, q0, rng):
    """One chunk of exact single-input samples at O(width * depth) cost each."""
    n = width
    # layer 1: z^1 = sqrt(C_W q0) g + sqrt(C_b) b, exactly Gaussian for a fixed input
    ys, zs, ss = [None], [], []
    z = math.sqrt(cw * q0) * rng.standard_normal((S, n))
    if cb:
        z = z + math.sqrt(cb) * rng.standard_normal((S, n))
    zs.append(z)
    for l in range(1, depth):
        s = act.phi(zs[-1])
        ss.append(s)
        out = n if l < depth - 1 else 1
        y = np.sqrt(np.einsum("si,si->s", s, s))[:, None] * rng.standard_normal((S, out))
        z = math.sqrt(cw / n) * y
        if cb:
            z = z + math.sqrt(cb) * rng.standard_normal((S, out))
        ys.append(y)
        zs.append(z)
    if depth == 1:
        return {"output": zs[0][:, 0], "G": np.full(S, cb + cw * q0), "ntk": np.full(S, lb + lw * q0)}
    last = ss[-1]
    G = cb + cw * np.einsum("si,si->s", last, last) / n
    delta = np.ones((S, 1))
    ntk = np.zeros(S)
    for l in range(depth - 1, 0, -1):
        # layer l + 1 (index l) maps s^l = ss[l - 1] to y^{l+1} = ys[l]
        s = ss[l - 1]
        norm2 = np.einsum("si,si->s", s, s)
        ntk += np.einsum("si,si->s", delta, delta) * (lb + lw * norm2 / n)
        safe = np.where(norm2 > 0, norm2, 1.0)
        along = np.einsum("si,si->s", ys[l], delta) / safe
        free = np.sqrt(np.einsum("si,si->s", delta, delta))[:, None] * rng.standard_normal((S, n))
        free -= s * (np.einsum("si,si->s", s, free) / safe)[:, None]
        delta = act.dphi(zs[l - 1]) * math.sqrt(cw / n) * (s * along[:, None] + free)
    ntk += np.einsum("si,si->s", delta, delta) * (lb + lw * q0)
    return {"output": zs[-1][:, 0], "G": G, "ntk": ntk}


def sample_single_input(activation, width: int, depth: int, n_samples: int, sigma_w2: float,
                        sigma_b2: float = 0.0, *, q0: float = 1.0,
                        lambda_w: float | None = None, lambda_b: float | None = None,
                        method: str = "rotated", input_dim: int = 8, seed=0,
                        chunk_elements: int = 2 ** 23) -> dict:
    """Monte Carlo over ``n_samples`` independent networks (hidden width ``width``, ``depth``
    weight layers, one output) at one input with ``|x|^2 / n_0 = q0``.

    ``method='dense'`` draws every weight matrix (``input_dim`` inputs);
    ``method='rotated'`` samples the same joint law of output, ``G^L`` and NTK exactly at
    ``O(width * depth)`` per network (module docstring). ``seed``: anything
    :func:`numpy.random.default_rng` takes (an int or a sequence of ints). Returns
    ``{'output', 'G', 'ntk'}``, each ``(n_samples,)`` (see :func:`network_statistics`).
    """
    act = finite_width_activation(activation)
    width = _check_positive_int("width", width)
    depth = _check_positive_int("depth", depth)
    n_samples = _check_positive_int("n_samples", n_samples, 2)
    h = _check_hyper(sigma_w2, sigma_b2, q0, lambda_w, lambda_b)
    if method not in ("rotated", "dense"):
        raise ValueError(f"method must be 'rotated' or 'dense', got {method!r}")
    input_dim = _check_positive_int("input_dim", input_dim)
    rng = np.random.default_rng(seed)
    per = width * max(depth, 1) * (3 if method == "rotated" else width)
    chunk = max(1, min(n_samples, chunk_elements // per))
    parts = []
    done = 0
    while done < n_samples:
        S = min(chunk, n_samples - done)
        if method == "rotated":
            parts.append(_rotated_chunk(act, width, depth, S, h["sigma_w2"], h["sigma_b2"],
                                        h["lambda_w"], h["lambda_b"], h["q0"], rng))
        else:
            dims = [input_dim] + [width] * (depth - 1) + [1]
            weights = [rng.standard_normal((S, dims[i + 1], dims[i])) for i in range(depth)]
            biases = ([rng.standard_normal((S, dims[i + 1])) for i in range(depth)]
                      if h["sigma_b2"] or h["lambda_b"] else None)
            x = np.full(input_dim, math.sqrt(h["q0"]))
            parts.append(network_statistics(weights, x, act, h["sigma_w2"], h["sigma_b2"],
                                            biases=biases, lambda_w=h["lambda_w"],
                                            lambda_b=h["lambda_b"]))
        done += S
    return {k: np.concatenate([p[k] for p in parts]) for k in ("output", "G", "ntk")}


def relative_variance(samples) -> tuple[float, float]:
    """``R = E[x^2] / E[x]^2 - 1 = Var(x) / E[x]^2`` from samples ``(S,)`` and its standard
    error (delta method on the sample means of ``x`` and ``x^2``). The preactivation's excess
    kurtosis is ``3 R`` of its conditional variance ``G``."""
    x = np.asarray(samples, dtype=float)
    if x.ndim != 1 or x.size < 2 or not np.all(np.isfinite(x)):
        raise ValueError(f"samples must be a finite (S,) array with S >= 2, got shape "
                         f"{x.shape}")
    m1, m2 = x.mean(), np.mean(x * x)
    if m1 == 0:
        raise ValueError("samples have mean 0: the relative variance is undefined")
    r = m2 / m1 ** 2 - 1
    grad = np.stack([np.full_like(x, -2 * m2 / m1 ** 3), np.full_like(x, 1 / m1 ** 2)])
    terms = grad[0] * (x - m1) + grad[1] * (x * x - m2)
    se = math.sqrt(np.var(terms, ddof=1) / x.size)
    return float(r), float(se)
