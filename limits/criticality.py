"""Signal propagation at initialization: length and correlation maps, fixed points, chi_1,
depth scales, the edge of chaos (Poole et al. 2016; Schoenholz et al. 2017; Roberts, Yaida &
Hanin, "The Principles of Deep Learning Theory").

Deep network ``h^l = W^l phi(h^{l-1}) + b^l``, ``W_ij ~ N(0, sigma_w^2 / N)``,
``b ~ N(0, sigma_b^2)``; at infinite width each preactivation is Gaussian with

    length map       q^l = sigma_w^2 E_z[phi(sqrt(q^{l-1}) z)^2] + sigma_b^2       (fixed point q*)
    correlation map  c^l = (sigma_w^2 E[phi(u_1) phi(u_2)] + sigma_b^2) / q*,
                     u_1 = sqrt(q*) z_1,  u_2 = sqrt(q*) (c z_1 + sqrt(1 - c^2) z_2)
    chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2]     (order chi_1 < 1, chaos chi_1 > 1, edge = 1)
    xi_q^-1 = -log(chi_1 + sigma_w^2 E[phi''(u) phi(u)]),
    xi_c^-1 = -log(sigma_w^2 E[phi'(u_1) phi'(u_2)])  at (q*, c*)  (= -log chi_1 if c* = 1).

Gaussian expectations use Gauss-Hermite quadrature (``deg`` nodes per dimension) for smooth
activations; ReLU uses its closed forms (arc-cosine kernel: ``E[relu(u1) relu(u2)] =
q (sqrt(1 - c^2) + (pi - arccos c) c) / (2 pi)``).  At the ReLU critical point
``(sigma_w^2, sigma_b^2) = (2, 0)`` the correlation map is ``f(c) = (sqrt(1-c^2) + (pi -
arccos c) c) / pi`` and ``1 - c^l ~ 9 pi^2 / (2 l^2)``; tanh at ``(1, 0)`` has
``q^l ~ 1 / (2 l)``.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np
from scipy import optimize, special

__all__ = [
    "SignalActivation",
    "signal_activation",
    "gaussian_expectation",
    "length_map",
    "q_star",
    "correlation_map",
    "c_star",
    "chi_1",
    "chi_c",
    "depth_scales",
    "edge_of_chaos",
    "relu_correlation_map",
    "phase_diagram",
    "plot_phase_diagram",
    "simulate_deep_network",
]


@dataclasses.dataclass(frozen=True)
class SignalActivation:
    """An activation with its first two derivatives (numpy, elementwise)."""

    name: str
    phi: object
    dphi: object
    d2phi: object


def _tanh_d(x):
    return 1.0 - np.tanh(x) ** 2


def _erf_d(x):
    return 2.0 / np.sqrt(np.pi) * np.exp(-x * x)


_ACTIVATIONS = {
    "tanh": SignalActivation("tanh", np.tanh, _tanh_d, lambda x: -2 * np.tanh(x) * _tanh_d(x)),
    "erf": SignalActivation("erf", special.erf, _erf_d, lambda x: -2 * x * _erf_d(x)),
    "relu": SignalActivation("relu", lambda x: np.maximum(x, 0.0),
                             lambda x: (x > 0).astype(float), lambda x: np.zeros_like(x)),
}


def signal_activation(activation) -> SignalActivation:
    """``'tanh'``, ``'erf'``, ``'relu'`` or a :class:`SignalActivation`."""
    if isinstance(activation, SignalActivation):
        return activation
    if isinstance(activation, str) and activation in _ACTIVATIONS:
        return _ACTIVATIONS[activation]
    raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)} or a "
                     f"SignalActivation, got {activation!r}")


@functools.lru_cache(maxsize=16)
def _nodes(deg):
    x, w = np.polynomial.hermite_e.hermegauss(deg)
    return x, w / np.sqrt(2 * np.pi)


def gaussian_expectation(f, q, deg: int = 101):
    """``E_{z ~ N(0,1)}[f(sqrt(q) z)]`` by Gauss-Hermite quadrature; ``q`` scalar or array."""
    x, w = _nodes(deg)
    q = np.asarray(q, dtype=float)
    return np.tensordot(f(np.sqrt(q)[..., None] * x), w, axes=([-1], [0]))


def _bivariate(f, g, q, c, deg):
    x, w = _nodes(deg)
    z1, z2 = x[:, None], x[None, :]
    ww = w[:, None] * w[None, :]
    s = np.sqrt(q)
    c = np.clip(c, -1.0, 1.0)
    u1 = s * z1
    u2 = s * (c * z1 + np.sqrt(1 - c * c) * z2)
    return float(np.sum(f(u1) * g(u2) * ww))


def _check_sigmas(sigma_w2, sigma_b2):
    for name, v in (("sigma_w2", sigma_w2), ("sigma_b2", sigma_b2)):
        if isinstance(v, bool) or not np.all(np.isfinite(v)):
            raise ValueError(f"{name} must be finite, got {v!r}")
        if np.any(np.asarray(v) < 0):
            raise ValueError(f"{name} must be >= 0, got {v!r}")
    if np.any(np.asarray(sigma_w2) == 0):
        raise ValueError("sigma_w2 must be > 0")


def _second_moment(act, q, deg):
    if act.name == "relu":
        return np.asarray(q, dtype=float) / 2
    return gaussian_expectation(lambda u: act.phi(u) ** 2, q, deg)


def length_map(q, sigma_w2, sigma_b2, activation="tanh", deg: int = 101):
    """``q^{l+1} = sigma_w^2 E[phi(sqrt(q) z)^2] + sigma_b^2``."""
    act = signal_activation(activation)
    _check_sigmas(sigma_w2, sigma_b2)
    return sigma_w2 * _second_moment(act, q, deg) + sigma_b2


def q_star(sigma_w2, sigma_b2, activation="tanh", q0: float = 1.0, tol: float = 1e-13,
           max_iter: int = 100_000, deg: int = 101) -> float:
    """Fixed point of the length map, iterated from ``q0`` (``inf`` if it diverges; for
    ReLU with ``sigma_w^2 = 2, sigma_b^2 = 0`` every ``q`` is fixed and ``q0`` is returned)."""
    act = signal_activation(activation)
    _check_sigmas(sigma_w2, sigma_b2)
    if act.name == "relu":
        if sigma_w2 < 2:
            return sigma_b2 / (1 - sigma_w2 / 2)
        return float(q0) if (sigma_w2 == 2 and sigma_b2 == 0) else float("inf")
    if sigma_b2 == 0 and sigma_w2 * float(act.dphi(np.zeros(1))[0]) ** 2 <= 1:
        return 0.0  # odd, slope maximal at 0: the length decays to the fixed point 0
    q = float(q0)
    for _ in range(min(max_iter, 2000)):
        new = float(length_map(q, sigma_w2, sigma_b2, act, deg))
        if abs(new - q) <= tol * max(1.0, q):
            return new
        q = new
        if q > 1e12:
            return float("inf")
    # slow (near-critical) convergence: solve L(q) = q on a bracket around the iterate
    gap = lambda x: float(length_map(x, sigma_w2, sigma_b2, act, deg)) - x
    lo, hi = q / 2, q * 2
    for _ in range(60):
        if gap(lo) > 0 > gap(hi):
            return optimize.brentq(gap, lo, hi, xtol=1e-15, rtol=1e-14)
        lo, hi = lo / 2, hi * 2
    return q


def correlation_map(c, qstar, sigma_w2, sigma_b2, activation="tanh", deg: int = 101):
    """``c^{l+1} = (sigma_w^2 E[phi(u_1) phi(u_2)] + sigma_b^2) / q*`` for inputs at the
    fixed length ``q*``."""
    act = signal_activation(activation)
    c_arr = np.asarray(c, dtype=float)
    if not np.all(np.isfinite(c_arr)) or np.any(np.abs(c_arr) > 1):
        raise ValueError(f"`c` is a correlation: expected values in [-1, 1], got {c!r}.")
    if not np.isfinite(qstar) or qstar <= 0:
        raise ValueError(f"`qstar` is a squared length: expected a finite value > 0, got "
                         f"{qstar!r}.")
    if act.name == "relu":
        cc = np.clip(np.asarray(c, dtype=float), -1, 1)
        cov = qstar * (np.sqrt(1 - cc * cc) + (np.pi - np.arccos(cc)) * cc) / (2 * np.pi)
        return (sigma_w2 * cov + sigma_b2) / qstar
    c = np.asarray(c, dtype=float)
    out = np.vectorize(lambda cc: _bivariate(act.phi, act.phi, qstar, cc, deg))(c)
    return (sigma_w2 * out + sigma_b2) / qstar


def relu_correlation_map(c):
    """ReLU at criticality: ``f(c) = (sqrt(1 - c^2) + (pi - arccos c) c) / pi``."""
    return correlation_map(c, 1.0, 2.0, 0.0, "relu")


def c_star(sigma_w2, sigma_b2, activation="tanh", c0: float = 0.5, tol: float = 1e-12,
           max_iter: int = 100_000, deg: int = 61) -> float:
    """Stable fixed point of the correlation map reached from ``c0``."""
    act = signal_activation(activation)
    qs = q_star(sigma_w2, sigma_b2, act)
    c = float(c0)
    for _ in range(max_iter):
        new = float(correlation_map(c, qs, sigma_w2, sigma_b2, act, deg))
        if abs(new - c) <= tol:
            return min(new, 1.0)
        c = new
    return c


def chi_1(sigma_w2, sigma_b2, activation="tanh", q=None, deg: int = 101) -> float:
    """``chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2]`` (at ``q`` if given)."""
    act = signal_activation(activation)
    q = q_star(sigma_w2, sigma_b2, act) if q is None else q
    if act.name == "relu":
        return sigma_w2 / 2
    return float(sigma_w2 * gaussian_expectation(lambda u: act.dphi(u) ** 2, q, deg))


def chi_c(sigma_w2, sigma_b2, activation="tanh", deg: int = 61) -> float:
    """Slope of the correlation map at ``c*``: ``sigma_w^2 E[phi'(u_1) phi'(u_2)]``."""
    act = signal_activation(activation)
    qs = q_star(sigma_w2, sigma_b2, act)
    cs = c_star(sigma_w2, sigma_b2, act)
    if act.name == "relu":
        return float(sigma_w2 * (np.pi - np.arccos(np.clip(cs, -1, 1))) / (2 * np.pi))
    return sigma_w2 * _bivariate(act.dphi, act.dphi, qs, cs, deg)


def depth_scales(sigma_w2, sigma_b2, activation="tanh", deg: int = 61) -> dict:
    """``{'q_star', 'c_star', 'chi_1', 'chi_c', 'xi_q', 'xi_c'}``: the depths over which the
    length and the correlation approach their fixed points, ``|q^l - q*| ~ exp(-l / xi_q)``,
    ``|c^l - c*| ~ exp(-l / xi_c)`` (Schoenholz et al. 2017, eqs. 5-9)."""
    act = signal_activation(activation)
    qs = q_star(sigma_w2, sigma_b2, act)
    cs = c_star(sigma_w2, sigma_b2, act)
    x1 = chi_1(sigma_w2, sigma_b2, act, qs)
    xc = chi_c(sigma_w2, sigma_b2, act, deg)
    if act.name == "relu":
        slope_q = sigma_w2 / 2
    else:
        slope_q = x1 + sigma_w2 * float(gaussian_expectation(
            lambda u: act.d2phi(u) * act.phi(u), qs, 101))
    with np.errstate(divide="ignore"):
        xi_q = -1.0 / np.log(slope_q) if 0 < slope_q < 1 else float("inf")
        xi_c = -1.0 / np.log(xc) if 0 < xc < 1 else float("inf")
    return {"q_star": qs, "c_star": cs, "chi_1": x1, "chi_c": xc, "xi_q": float(xi_q),
            "xi_c": float(xi_c)}


def edge_of_chaos(sigma_b2, activation="tanh", bracket=(0.5, 20.0)):
    """``sigma_w^2`` on the critical line ``chi_1(sigma_w^2, sigma_b^2) = 1`` for each
    ``sigma_b^2`` (scalar or array); ReLU: ``2`` at ``sigma_b^2 = 0`` only."""
    act = signal_activation(activation)
    sb = np.atleast_1d(np.asarray(sigma_b2, dtype=float))
    _check_sigmas(1.0, sb)
    out = []
    for b in sb:
        if act.name == "relu":
            out.append(2.0 if b == 0 else float("nan"))
            continue
        if b == 0 and act.name in ("tanh", "erf"):
            # odd, slope maximal at 0: q* = 0 up to the edge, where chi_1 = sigma_w^2 phi'(0)^2
            out.append(1.0 / float(act.dphi(np.zeros(1))[0]) ** 2)
            continue
        out.append(optimize.brentq(lambda w: chi_1(w, b, act) - 1.0, *bracket, xtol=1e-12))
    out = np.asarray(out)
    return out[0] if np.ndim(sigma_b2) == 0 else out


def phase_diagram(activation="tanh", sigma_w2=None, sigma_b2=None) -> dict:
    """``chi_1`` on a grid: ``{'sigma_w2': (W,), 'sigma_b2': (B,), 'chi_1': (B, W),
    'critical_sigma_w2': (B,)}``."""
    sigma_w2 = np.linspace(0.5, 4.0, 36) if sigma_w2 is None else np.asarray(sigma_w2, float)
    sigma_b2 = np.linspace(0.0, 0.5, 11) if sigma_b2 is None else np.asarray(sigma_b2, float)
    chi = np.array([[chi_1(w, b, activation) for w in sigma_w2] for b in sigma_b2])
    return {"activation": signal_activation(activation).name, "sigma_w2": sigma_w2,
            "sigma_b2": sigma_b2, "chi_1": chi,
            "critical_sigma_w2": edge_of_chaos(sigma_b2, activation)}


def plot_phase_diagram(activations=("tanh", "erf"), sigma_w2=None, sigma_b2=None, *,
                       path=None):
    """Order/chaos phase diagram: ``log chi_1`` over ``(sigma_w^2, sigma_b^2)`` with the
    edge of chaos of each activation, one panel each. Returns a ``matplotlib.figure.Figure``
    (no backend is chosen); with ``path`` it is also written there as PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5 * len(activations), 4))
    axes = fig.subplots(1, len(activations), squeeze=False)
    for ax, act in zip(axes[0], activations):
        d = phase_diagram(act, sigma_w2, sigma_b2)
        mesh = ax.pcolormesh(d["sigma_w2"], d["sigma_b2"], np.log(d["chi_1"]), cmap="RdBu_r",
                             vmin=-1, vmax=1, shading="auto")
        ax.plot(d["critical_sigma_w2"], d["sigma_b2"], "k-", lw=2, label="edge of chaos")
        ax.set_xlabel("sigma_w^2")
        ax.set_ylabel("sigma_b^2")
        ax.set_title(f"{act}: log chi_1 (<0 ordered, >0 chaotic)")
        ax.legend(loc="upper left")
        fig.colorbar(mesh, ax=ax)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def simulate_deep_network(sigma_w2, sigma_b2, activation="tanh", *, width: int = 512,
                          depth: int = 20, q0: float = 1.0, c0: float = 0.5,
                          n_samples: int = 8, seed: int = 0) -> dict:
    """Monte Carlo of finite deep networks on two inputs of squared length ``q0 * d`` and
    correlation ``c0`` (the first layer sees them through ``W ~ N(0, sigma_w^2 / d)``).

    Per layer ``l = 1..depth`` and sample: ``q^l = |h^l(a)|^2 / N``, ``c^l`` the cosine of
    ``h^l(a), h^l(b)``, and ``chi^l = |J^l v|^2 / |v|^2`` for a random direction ``v`` (the
    growth of a perturbation through layer ``l``; ``E chi^l -> chi_1`` at ``q*``).
    Returns arrays ``(n_samples, depth)`` under ``'q'``, ``'c'``, ``'chi'``.
    """
    act = signal_activation(activation)
    _check_sigmas(sigma_w2, sigma_b2)
    rng = np.random.default_rng(seed)
    qs, cs, chis = (np.zeros((n_samples, depth)) for _ in range(3))
    for s in range(n_samples):
        # preactivations of layer 0 with the requested q0, c0
        z = rng.standard_normal((2, width))
        ha = np.sqrt(q0) * z[0]
        hb = np.sqrt(q0) * (c0 * z[0] + np.sqrt(1 - c0 ** 2) * z[1])
        for l in range(depth):
            W = rng.standard_normal((width, width)) * np.sqrt(sigma_w2 / width)
            b = rng.standard_normal(width) * np.sqrt(sigma_b2)
            v = rng.standard_normal(width)
            jv = W @ (act.dphi(ha) * v)
            chis[s, l] = (jv @ jv) / (v @ v)
            ha, hb = W @ act.phi(ha) + b, W @ act.phi(hb) + b
            qs[s, l] = ha @ ha / width
            cs[s, l] = ha @ hb / np.sqrt((ha @ ha) * (hb @ hb))
    return {"q": qs, "c": cs, "chi": chis}
