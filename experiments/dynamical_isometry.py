"""Dynamical isometry: the input-output Jacobian spectrum of deep tanh nets at criticality.

Pennington, Schoenholz & Ganguli 2017, "Resurrecting the sigmoid in deep learning through
dynamical isometry: theory and practice" (NeurIPS 2017, arXiv:1711.04735); deep linear nets:
Saxe, McClelland & Ganguli 2014 (arXiv:1312.6120).

Network (width ``N``, depth ``L``)::

    h^l = W^l x^{l-1} + b^l,   x^l = tanh(h^l),   W^l ~ sigma_w (Haar orthogonal  or  N(0, I/N)),
    b^l ~ N(0, sigma_b^2),      J = dx^L / dx^0 = prod_{l=L..1} D^l W^l,   D^l = diag(tanh'(h^l)).

Criticality. The preactivation variance has the fixed point ``q*``; the mean squared singular
value of one layer is ``chi = sigma_w^2 mu_1`` with ``mu_k = E_z[tanh'(sqrt(q*) z)^{2k}]``. We
pick a small ``q*`` and put the network on the critical line ``chi = 1`` (the edge of chaos of
:mod:`limits.criticality`)::

    sigma_w^2 = 1 / mu_1(q*),     sigma_b^2 = q* - sigma_w^2 E_z[tanh(sqrt(q*) z)^2],

and feed inputs ``x^0 = tanh(h^0)``, ``h^0 ~ N(0, q* I)``, so every layer sits at ``q*``.

Free-probability prediction (Pennington et al., Sec. 3, N -> inf). The moments of the spectrum
of ``J J^T`` are ``m_1 = chi^L`` and, at ``chi = 1``,

    sigma^2_{JJ^T} = m_2 - m_1^2 = L (mu_2 / mu_1^2 - 1 - s_1),

with ``s_1`` the first S-transform coefficient of ``W W^T / sigma_w^2``: ``s_1 = -1`` for Gaussian
weights (Marchenko-Pastur) and ``s_1 = 0`` for orthogonal weights. So at criticality the mean
squared singular value is 1 for both ensembles, but the *spread* grows like ``L`` with slope
``mu_2/mu_1^2 ~ 1`` for Gaussian weights and only ``mu_2/mu_1^2 - 1 = O(q*^2)`` for orthogonal
ones (``8 q*^2`` to leading order): with ``q* = 1/64`` the orthogonal spread stays O(1) up to
depths of hundreds -- dynamical isometry. For a deep *linear* net ``mu_2 = mu_1 = 1``: the
orthogonal spread is exactly 0 (``J`` is orthogonal) and the Gaussian one is ``L``.

Measured: the squared singular values of ``J`` at each recorded depth, pooled over ``n_seeds``
networks (the expected spectral distribution), its mean, variance and ``max / mean``, and a
histogram of ``log10`` of them at the largest depth.

Scaled down: width 128, depths 1..16, 16 networks per ensemble (full: width 512, depths 1..64,
32 networks).
"""
from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from experiments.claims import claim, close_to, less, within
from limits import criticality
from limits.scaling import loglog_slope

SUMMARY = ("Pennington et al. 2017: input-output Jacobian spectrum of deep tanh nets at "
           "criticality, orthogonal vs Gaussian weights")
PAPER = "pennington2017isometry"
CITATION = ("Pennington, J., Schoenholz, S. S. & Ganguli, S. (2017). Resurrecting the sigmoid "
            "in deep learning through dynamical isometry: theory and practice. NeurIPS 2017, "
            "arXiv:1711.04735.")
HISTOGRAM_BINS = 60

WEIGHTS = ("orthogonal", "gaussian")


@dataclasses.dataclass(frozen=True)
class Config:
    width: int = 128                   # L / N <= 1/8: free probability is an N -> inf law
    depths: tuple[int, ...] = (1, 2, 4, 8, 16)   # recorded depths (one net of max depth)
    q_star: float = 1.0 / 64                       # preactivation variance fixed point
    n_seeds: int = 16                  # the Gaussian spread is heavy-tailed: ~10 % MC error
    seed: int = 0

    @classmethod
    def quick(cls) -> "Config":
        return cls()

    @classmethod
    def full(cls) -> "Config":
        return cls(width=512, depths=(1, 2, 4, 8, 16, 32, 64), n_seeds=32)

    def validate(self) -> None:
        if self.width < 2:
            raise ValueError(f"width must be >= 2, got {self.width}")
        if (len(self.depths) < 3 or min(self.depths) < 1
                or list(self.depths) != sorted(set(self.depths))):
            raise ValueError(f"depths must be >= 3 increasing positive ints, got {self.depths}")
        if not 0 < self.q_star < 10:
            raise ValueError(f"q_star must lie in (0, 10), got {self.q_star}")
        if self.n_seeds < 1:
            raise ValueError(f"n_seeds must be >= 1, got {self.n_seeds}")


def critical_point(q_star: float) -> tuple[float, float]:
    """``(sigma_w^2, sigma_b^2)`` of the tanh network whose length map has fixed point
    ``q*`` and ``chi_1 = sigma_w^2 E[tanh'(sqrt(q*) z)^2] = 1`` (the edge of chaos)."""
    if not np.isfinite(q_star) or q_star <= 0:
        raise ValueError(f"q_star must be positive and finite, got {q_star!r}")
    act = criticality.signal_activation("tanh")
    mu_1 = float(criticality.gaussian_expectation(lambda u: act.dphi(u) ** 2, q_star))
    sigma_w2 = 1.0 / mu_1
    sigma_b2 = q_star - sigma_w2 * float(criticality.gaussian_expectation(
        lambda u: act.phi(u) ** 2, q_star))
    if sigma_b2 < 0:
        raise ValueError(f"q_star={q_star} is not reachable on the tanh critical line")
    return sigma_w2, sigma_b2


def derivative_moments(q_star: float) -> tuple[float, float]:
    """``(mu_1, mu_2)``, ``mu_k = E_z[tanh'(sqrt(q*) z)^{2k}]``."""
    act = criticality.signal_activation("tanh")
    return tuple(float(criticality.gaussian_expectation(lambda u: act.dphi(u) ** (2 * k),
                                                        q_star)) for k in (1, 2))


def free_probability_variance(depth, q_star: float, weights: str):
    """Pennington et al.'s ``sigma^2_{JJ^T} = L (mu_2/mu_1^2 - 1 - s_1)`` at ``chi = 1``;
    ``s_1 = -1`` (Gaussian) or ``0`` (orthogonal). ``depth`` scalar or array."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
    mu_1, mu_2 = derivative_moments(q_star)
    s_1 = -1.0 if weights == "gaussian" else 0.0
    return np.asarray(depth, float) * (mu_2 / mu_1 ** 2 - 1.0 - s_1)


def sample_weights(key, weights: str, depth: int, width: int, sigma_w2: float,
                   dtype=jnp.float32):
    """``(depth, width, width)`` weight matrices with ``E[W W^T] = sigma_w^2 I``: Haar
    orthogonal times ``sigma_w``, or i.i.d. ``N(0, sigma_w^2 / width)``."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
    keys = jax.random.split(key, depth)
    if weights == "orthogonal":
        init = jax.nn.initializers.orthogonal()
        w = jax.vmap(lambda k: init(k, (width, width), dtype))(keys)
        return w * jnp.asarray(np.sqrt(sigma_w2), dtype)
    w = jax.vmap(lambda k: jax.random.normal(k, (width, width), dtype))(keys)
    return w * jnp.asarray(np.sqrt(sigma_w2 / width), dtype)


def jacobian_spectra(weights, biases, x0, record, activation=jnp.tanh):
    """Squared singular values of ``J^l = D^l W^l ... D^1 W^1`` (the eigenvalues of
    ``J^l J^l^T``) for every layer ``l`` where ``record[l-1]`` is true (zeros elsewhere).

    weights ``(L, N, N)``, biases ``(L, N)``, x0 ``(N,)``, record ``(L,)`` bool.
    Returns ``(L, N)``, ascending in each row. ``J`` is accumulated as an explicit product.
    """
    if weights.ndim != 3 or weights.shape[1] != weights.shape[2]:
        raise ValueError(f"weights must be (L, N, N), got shape {weights.shape}")
    n_layers, width = weights.shape[:2]
    if biases.shape != (n_layers, width) or x0.shape != (width,):
        raise ValueError(f"biases must be {(n_layers, width)} and x0 {(width,)}; got "
                         f"{biases.shape} and {x0.shape}")
    dphi = jax.grad(lambda h: activation(h))

    def layer(carry, inputs):
        x, jac = carry
        w, b, rec = inputs
        h = w @ x + b
        jac = (jax.vmap(dphi)(h)[:, None] * w) @ jac
        eig = jax.lax.cond(rec, lambda j: jnp.linalg.eigvalsh(j @ j.T),
                           lambda j: jnp.zeros(width, j.dtype), jac)
        return (activation(h), jac), eig

    eye = jnp.eye(width, dtype=weights.dtype)
    return jax.lax.scan(layer, (x0, eye), (weights, biases, jnp.asarray(record)))[1]


@partial(jax.jit, static_argnames=("weights", "depth", "width", "sigma_w2", "sigma_b2",
                                   "q_star"))
def _spectra_of_seeds(keys, record, weights, depth, width, sigma_w2, sigma_b2, q_star):
    # networks are vmapped in batches holding at most ~2^26 weights (256 MB in float32)
    batch = int(max(1, min(len(keys), 2 ** 26 // (depth * width * width))))

    def one(key):
        k_w, k_b, k_x = jax.random.split(key, 3)
        w = sample_weights(k_w, weights, depth, width, sigma_w2)
        b = jax.random.normal(k_b, (depth, width), w.dtype) * np.float32(np.sqrt(sigma_b2))
        x0 = jnp.tanh(jax.random.normal(k_x, (width,), w.dtype) * np.float32(np.sqrt(q_star)))
        return jacobian_spectra(w, b, x0, record)
    return jax.lax.map(one, keys, batch_size=batch)


def log_spectrum_histogram(spectra, bins: int = HISTOGRAM_BINS):
    """Density histogram of ``log10`` of squared singular values (floored at ``1e-12``), pooled
    over every entry of ``spectra``: ``(density (bins,), edges (bins + 1,))``."""
    values = np.log10(np.maximum(np.asarray(spectra, np.float64).ravel(), 1e-12))
    return np.histogram(values, bins=bins, density=True)


def run(cfg: Config, ctx) -> dict:
    cfg.validate()
    sigma_w2, sigma_b2 = critical_point(cfg.q_star)
    edge = float(criticality.edge_of_chaos(sigma_b2, "tanh"))
    q_fixed = float(criticality.q_star(sigma_w2, sigma_b2, "tanh"))
    depth = max(cfg.depths)
    record = np.zeros(depth, bool)
    record[np.asarray(cfg.depths) - 1] = True
    keys = jax.random.split(jax.random.PRNGKey(cfg.seed), cfg.n_seeds)
    out = {"sigma_w2": sigma_w2, "sigma_b2": sigma_b2, "edge_of_chaos_sigma_w2": edge,
           "q_star_of_sigmas": q_fixed,
           "chi_1": float(criticality.chi_1(sigma_w2, sigma_b2, "tanh")),
           "depths": list(cfg.depths)}
    for kind in WEIGHTS:
        spec = _spectra_of_seeds(keys, record, kind, depth, cfg.width, sigma_w2, sigma_b2,
                                 cfg.q_star)
        spec = np.asarray(spec, np.float64)[:, np.asarray(cfg.depths) - 1]  # (S, D, N)
        pooled = spec.transpose(1, 0, 2).reshape(len(cfg.depths), -1)
        out[f"{kind}_mean"] = pooled.mean(1).tolist()
        out[f"{kind}_variance"] = pooled.var(1).tolist()
        out[f"{kind}_max_over_mean"] = (spec.max(2) / spec.mean(2)).mean(0).tolist()
        theory = free_probability_variance(cfg.depths, cfg.q_star, kind)
        out[f"{kind}_variance_theory"] = theory.tolist()
        var = np.asarray(out[f"{kind}_variance"])
        # least-squares ratio of the measured variances to the prediction, over all depths
        out[f"{kind}_variance_over_theory"] = float(var @ theory / (theory @ theory))
        out[f"{kind}_variance_slope"] = float(loglog_slope(cfg.depths, var))
        density, edges = log_spectrum_histogram(spec[:, -1])
        out[f"{kind}_log10_spectrum_density"] = density.tolist()
        out[f"{kind}_log10_spectrum_edges"] = edges.tolist()
    out["orthogonal_over_gaussian_variance"] = (out["orthogonal_variance"][-1]
                                                / out["gaussian_variance"][-1])
    out["orthogonal_over_gaussian_theory"] = float(
        free_probability_variance(depth, cfg.q_star, "orthogonal")
        / free_probability_variance(depth, cfg.q_star, "gaussian"))
    out["max_abs_mean_minus_one"] = float(max(
        np.max(np.abs(np.asarray(out[f"{k}_mean"]) - 1.0)) for k in WEIGHTS))
    return out


def figures(results: dict) -> dict:
    """Spectral variance against depth with the free-probability lines (log-log), max / mean
    against depth, and the spectrum at the largest depth for both ensembles."""
    from matplotlib.figure import Figure
    m, cfg = results["metrics"], results["config"]
    depths = np.asarray(m["depths"])
    fig = Figure(figsize=(14, 3.8))
    axes = fig.subplots(1, 3)
    for kind, mark in zip(WEIGHTS, ("o", "s")):
        axes[0].loglog(depths, np.asarray(m[f"{kind}_variance"], float), mark + "-",
                       label=f"{kind} (slope {float(m[f'{kind}_variance_slope']):.2f})")
        axes[0].loglog(depths, np.asarray(m[f"{kind}_variance_theory"], float),
                       "k:" if kind == "gaussian" else "k--", lw=1,
                       label=f"{kind}: free probability")
        axes[1].semilogx(depths, np.asarray(m[f"{kind}_max_over_mean"], float), mark + "-",
                         label=kind)
        axes[2].stairs(np.asarray(m[f"{kind}_log10_spectrum_density"], float),
                       np.asarray(m[f"{kind}_log10_spectrum_edges"], float), fill=True,
                       alpha=0.6, label=kind)
    axes[0].set_xlabel("depth L")
    axes[0].set_ylabel("variance of squared singular values of J")
    axes[0].set_title("Gaussian spread grows ~ L; orthogonal stays small")
    axes[0].legend(fontsize=7)
    axes[1].set_xlabel("depth L")
    axes[1].set_ylabel("max / mean squared singular value")
    axes[1].set_title("Largest squared singular value relative to the mean")
    axes[1].legend(fontsize=7)
    axes[2].set_xlabel("log10 squared singular value of J")
    axes[2].set_ylabel("density")
    axes[2].set_title(f"Spectrum at depth {depths[-1]} (q* = {cfg['q_star']:g}, "
                      f"width {cfg['width']})")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    return {"dynamical_isometry": fig}


# Thresholds (the old defaults): the Gaussian variance slope 1 +- 0.2 (a fit over five depths,
# ~10 % Monte Carlo error per point); measured / free-probability variance within a factor
# 1.3 either way (finite width N adds O(L / N)); orthogonal / Gaussian variance at the largest
# depth below 0.01 (free probability: 0.0017 at q* = 1/64); mean squared singular value 1
# within 0.1 (chi = 1).
CLAIMS = (
    claim("gaussian_spread_linear_in_depth",
          "Gaussian weights: variance of the squared singular values of J ~ L^s",
          "gaussian_variance_slope", close_to(1.0, 0.2)),
    claim("gaussian_spread_free_probability",
          "Gaussian weights: measured variance / L (mu_2/mu_1^2) (least squares over depths)",
          "gaussian_variance_over_theory", within(1 / 1.3, 1.3)),
    claim("orthogonal_spread_free_probability",
          "orthogonal weights: measured variance / L (mu_2/mu_1^2 - 1) (least squares)",
          "orthogonal_variance_over_theory", within(1 / 1.3, 1.3)),
    claim("orthogonal_isometry",
          lambda m: f"depth {m['depths'][-1]}: orthogonal / Gaussian variance of the squared "
                    f"singular values (free probability: "
                    f"{float(m['orthogonal_over_gaussian_theory']):.2g})",
          "orthogonal_over_gaussian_variance", less(0.01)),
    claim("mean_squared_singular_value_one",
          "chi = 1: max over depths and ensembles of |mean squared singular value - 1|",
          "max_abs_mean_minus_one", less(0.1)),
)
