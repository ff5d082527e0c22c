"""Orthogonal weights make preactivation fluctuations depth-independent.

Day, Kahn & Roberts, "Feature learning and generalization in deep networks with orthogonal
weights" (arXiv:2310.07765; Machine Learning: Science and Technology, 2025). Gaussian-weight
baseline: Roberts, Yaida & Hanin, "The Principles of Deep Learning Theory" (RYH, 2022).

Network (width ``n``, one input ``x`` with ``|x|^2 = n``, no biases, at criticality: tanh with
``sigma_w^2 = 1``, ReLU with ``sigma_w^2 = 2``)::

    z^1 = W^1 x,    z^{l+1} = W^{l+1} phi(z^l),    E[W W^T] = sigma_w^2 I,

with ``W`` Gaussian (i.i.d. ``N(0, sigma_w^2 / n)``) or ``sigma_w`` times a Haar orthogonal
matrix. The observable is the excess kurtosis of one preactivation over initialisations,
``kappa_l = E[(z_i^l)^4] / E[(z_i^l)^2]^2 - 3 = 3 V^l / (n (K^l)^2)`` (``V``: RYH's four-point
vertex, ``K``: the kernel).

Monte Carlo by rotational invariance. For any vector ``a`` independent of ``W``,
``W a =_d sigma_w |a| xi`` with ``xi = g / sqrt(n)`` (Gaussian ``W``) or ``xi = g / |g|``
(Haar ``W``; ``O a / |a|`` is uniform on the sphere whatever ``a`` is), ``g ~ N(0, I_n)``. A
single input meets every ``W^l`` once, so the chain ``z^l -> z^{l+1}`` has exactly the law of
``z^{l+1} = sigma_w |phi(z^l)| xi_l`` with independent ``xi_l``: the two ensembles differ only in
the norm of ``xi``, which is exactly 1 for orthogonal weights and fluctuates as
``chi^2_n / n`` for Gaussian ones. This lets us draw ``n_inits`` full networks cheaply (the
equivalence with explicit weight matrices is checked in the tests).

Predictions.

- Gaussian, leading order in ``1/n`` (RYH ch. 4): with ``g(K) = <phi^2>_K`` and
  ``chi_par = sigma_w^2 g'(K)``,

      K^{l+1} = sigma_w^2 g(K^l),   V^{l+1} = sigma_w^4 (<phi^4>_K - <phi^2>_K^2) + chi_par^2 V^l,
      V^1 = 0,

  so ``kappa`` grows linearly in depth: ``kappa_l ~ 3 (2/3) l / n = 2 l / n`` for tanh (the
  ``K* = 0`` class, ``l >> 1``). For scale-invariant activations the finite-width law is exact:
  ``E[G_{l+1}^2] = E[G_l^2] (1 + c / n)`` for ``G = sigma_w^2 |phi(z)|^2 / n``, hence
  ``kappa_l = 3 ((1 + c/n)^{l-1} - 1)`` with ``c = 2`` (linear), ``c = 5`` (ReLU).
- Orthogonal (Day et al.): for tanh the 1/n vertex stops growing -- ``kappa`` is depth-independent
  to leading order in ``1/n`` (a linear orthogonal net gives exactly ``-6/(n+2)`` at every
  depth, the kurtosis of a coordinate of a uniform point on the sphere). ReLU keeps a
  depth-dependent growth (``|relu(z)|^2 / |z|^2`` fluctuates at every layer); we report it.

Claims: the Gaussian tanh slope of ``kappa`` against depth matches the RYH ``1/n`` recursion;
the orthogonal tanh slope is near 0 relative to it; the Gaussian ReLU kurtosis matches its exact
finite-width law.

Scaled down: width 64, depth 16, 40,000 initialisations (full: width 256, depth 64, 200,000).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from experiments.claims import claim, close_to, less, within
from limits import criticality

SUMMARY = ("Day et al.: orthogonal weights make preactivation fluctuations depth-independent; "
           "Gaussian: excess kurtosis ~ depth/width")
PAPER = "day2025orthogonal"
CITATION = ("Day, H., Kahn, Y. & Roberts, D. A. (2025). Feature learning and generalization in "
            "deep networks with orthogonal weights. Machine Learning: Science and Technology, "
            "arXiv:2310.07765.")

WEIGHTS = ("gaussian", "orthogonal")
CRITICAL_SIGMA_W2 = {"tanh": 1.0, "relu": 2.0, "linear": 1.0}
_PHI = {"tanh": np.tanh, "relu": lambda z: np.maximum(z, 0.0), "linear": lambda z: z}
EXACT_GROWTH = {"linear": 2.0, "relu": 5.0}   # c in kappa_l = 3 ((1 + c/n)^{l-1} - 1)


@dataclasses.dataclass(frozen=True)
class Config:
    width: int = 64
    depth: int = 16                    # layers 1..depth (depth <= width / 4: leading order in 1/n)
    n_inits: int = 40_000
    fit_from: float = 0.5              # slopes fitted on layers >= fit_from * depth
    chunk: int = 2_000                 # initialisations drawn at once (cache-sized)
    seed: int = 0

    @classmethod
    def quick(cls) -> "Config":
        return cls()

    @classmethod
    def full(cls) -> "Config":
        return cls(width=256, depth=64, n_inits=200_000, chunk=250)

    def validate(self) -> None:
        if self.width < 4:
            raise ValueError(f"width must be >= 4, got {self.width}")
        if self.depth < 4:
            raise ValueError(f"depth must be >= 4, got {self.depth}")
        if self.n_inits < 100 or self.chunk < 1:
            raise ValueError(f"n_inits must be >= 100 and chunk >= 1, got {self.n_inits}, "
                             f"{self.chunk}")
        if not 0 <= self.fit_from < 1 or int(self.fit_from * self.depth) > self.depth - 2:
            raise ValueError(f"fit_from must leave >= 2 layers to fit, got {self.fit_from}")


def excess_kurtosis(z, axis=None):
    """``E[z^4] / E[z^2]^2 - 3`` with moments about zero (preactivations are symmetric).

    Pools over ``axis`` (all axes by default). Gaussian: 0; uniform: -6/5; Laplace: 3.
    """
    z = np.asarray(z, dtype=np.float64)
    if z.size == 0:
        raise ValueError("z must be non-empty")
    m2 = np.mean(z ** 2, axis=axis)
    return np.mean(z ** 4, axis=axis) / m2 ** 2 - 3.0


def sample_preactivations(rng, activation: str, weights: str, width: int, depth: int,
                          n_inits: int, noise=None):
    """Preactivations ``z^l`` of one neuron-row per init: ``(n_inits, depth, width)`` drawn by
    rotational invariance, ``z^{l+1} = sigma_w |phi(z^l)| xi_l`` (see the module docstring).

    ``noise``: optional ``(n_inits, depth, width)`` standard normals ``g`` (to share draws
    between ensembles); drawn from ``rng`` otherwise.
    """
    if activation not in _PHI:
        raise ValueError(f"activation must be one of {sorted(_PHI)}, got {activation!r}")
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
    g = rng.standard_normal((n_inits, depth, width)) if noise is None else noise
    if g.shape != (n_inits, depth, width):
        raise ValueError(f"noise must have shape {(n_inits, depth, width)}, got {g.shape}")
    norm = np.sqrt(width) if weights == "gaussian" else np.linalg.norm(g, axis=2, keepdims=True)
    xi = g / norm
    sigma_w = np.sqrt(CRITICAL_SIGMA_W2[activation])
    phi = _PHI[activation]
    z = np.empty_like(g)
    a_norm = np.full((n_inits, 1), np.sqrt(width))          # |x| = sqrt(n)
    for layer in range(depth):
        z[:, layer] = sigma_w * a_norm * xi[:, layer]
        a_norm = np.linalg.norm(phi(z[:, layer]), axis=1, keepdims=True)
    return z


def ryh_gaussian_kurtosis(activation: str, width: int, depth: int, k1: float | None = None):
    """Leading-order (1/n) excess kurtosis ``3 V^l / (n (K^l)^2)``, ``l = 1..depth``, of the
    Gaussian-weight network from RYH's kernel and four-point-vertex recursions (docstring)."""
    if activation not in _PHI:
        raise ValueError(f"activation must be one of {sorted(_PHI)}, got {activation!r}")
    sw2 = CRITICAL_SIGMA_W2[activation]
    phi = _PHI[activation]
    k = sw2 if k1 is None else float(k1)
    v = 0.0
    out = []
    for _ in range(depth):
        out.append(3.0 * v / (width * k * k))
        m2 = float(criticality.gaussian_expectation(lambda u: phi(u) ** 2, k))
        m4 = float(criticality.gaussian_expectation(lambda u: phi(u) ** 4, k))
        # g'(K) = E[phi(u)^2 (u^2 - K)] / (2 K^2),  u ~ N(0, K)
        dg = float(criticality.gaussian_expectation(lambda u: phi(u) ** 2 * (u * u - k), k)) \
            / (2 * k * k)
        v = sw2 ** 2 * (m4 - m2 * m2) + (sw2 * dg) ** 2 * v
        k = sw2 * m2
    return np.asarray(out)


def exact_gaussian_kurtosis(activation: str, width: int, depth: int):
    """Finite-width ``kappa_l = 3 ((1 + c/n)^{l-1} - 1)`` for linear (c = 2) / ReLU (c = 5)."""
    if activation not in EXACT_GROWTH:
        raise ValueError(f"exact law known for {sorted(EXACT_GROWTH)}, got {activation!r}")
    layers = np.arange(1, depth + 1)
    return 3.0 * ((1.0 + EXACT_GROWTH[activation] / width) ** (layers - 1) - 1.0)


def _slope(layers, values):
    return float(np.polyfit(layers, values, 1)[0])


def run(cfg: Config, ctx) -> dict:
    cfg.validate()
    rng = np.random.default_rng(cfg.seed)
    n, depth = cfg.width, cfg.depth
    layers = np.arange(1, depth + 1)
    m2 = {(a, w): np.zeros(depth) for a in ("tanh", "relu") for w in WEIGHTS}
    m4 = {key: np.zeros(depth) for key in m2}
    done = 0
    while done < cfg.n_inits:
        size = min(cfg.chunk, cfg.n_inits - done)
        g = rng.standard_normal((size, depth, n))     # common random numbers for all four
        for (act, w) in m2:
            z = sample_preactivations(rng, act, w, n, depth, size, noise=g)
            z2 = z * z
            m2[act, w] += np.sum(z2, axis=(0, 2))
            m4[act, w] += np.sum(z2 * z2, axis=(0, 2))
        done += size
    kappa = {key: (m4[key] / (cfg.n_inits * n)) / (m2[key] / (cfg.n_inits * n)) ** 2 - 3.0
             for key in m2}
    fit = layers >= max(1, int(cfg.fit_from * depth))
    out = {"width": n, "layers": layers.tolist(), "fit_layers": layers[fit].tolist(),
           "sphere_kurtosis": -6.0 / (n + 2)}
    for (act, w), k in kappa.items():
        out[f"{act}_{w}_kurtosis"] = k.tolist()
        out[f"{act}_{w}_slope"] = _slope(layers[fit], k[fit])
    ryh = ryh_gaussian_kurtosis("tanh", n, depth)
    out["tanh_gaussian_ryh_kurtosis"] = ryh.tolist()
    out["tanh_gaussian_ryh_slope"] = _slope(layers[fit], ryh[fit])
    out["tanh_gaussian_slope_over_ryh"] = (out["tanh_gaussian_slope"]
                                           / out["tanh_gaussian_ryh_slope"])
    out["tanh_gaussian_slope_times_width"] = out["tanh_gaussian_slope"] * n   # -> 2 (K* = 0)
    out["tanh_orthogonal_over_gaussian_slope"] = (out["tanh_orthogonal_slope"]
                                                  / out["tanh_gaussian_slope"])
    exact = exact_gaussian_kurtosis("relu", n, depth)
    out["relu_gaussian_exact_kurtosis"] = exact.tolist()
    k = kappa["relu", "gaussian"]
    out["relu_gaussian_over_exact"] = float(k[1:] @ exact[1:] / (exact[1:] @ exact[1:]))
    out["relu_orthogonal_over_gaussian_slope"] = (out["relu_orthogonal_slope"]
                                                  / out["relu_gaussian_slope"])
    return out


def figures(results: dict) -> dict:
    """Excess kurtosis against layer for tanh and ReLU, both ensembles, with the Gaussian
    predictions (RYH recursion, exact ReLU law) and the orthogonal linear net's -6/(n+2)."""
    from matplotlib.figure import Figure
    m = results["metrics"]
    layers = np.asarray(m["layers"])
    curve = lambda key: np.asarray(m[key], float)
    fig = Figure(figsize=(10, 3.8))
    axes = fig.subplots(1, 2)
    for ax, act in zip(axes, ("tanh", "relu")):
        ax.plot(layers, curve(f"{act}_gaussian_kurtosis"), "o-", ms=3, label="Gaussian weights")
        ax.plot(layers, curve(f"{act}_orthogonal_kurtosis"), "s-", ms=3,
                label="orthogonal weights")
        if act == "tanh":
            ax.plot(layers, curve("tanh_gaussian_ryh_kurtosis"), "k--", lw=1,
                    label="Gaussian: RYH 1/n recursion")
        else:
            ax.plot(layers, curve("relu_gaussian_exact_kurtosis"), "k--", lw=1,
                    label="Gaussian: exact 3((1+5/n)^(l-1)-1)")
        ax.axhline(float(m["sphere_kurtosis"]), color="gray", lw=0.8, ls=":",
                   label="-6/(n+2) (orthogonal linear net)")
        ax.set_xlabel("layer l")
        ax.set_ylabel("excess kurtosis of a preactivation")
        ax.set_title(f"{act}, width {m['width']}: "
                     + ("orthogonal stays flat" if act == "tanh" else "ReLU: both grow"))
        ax.legend(fontsize=7)
    fig.tight_layout()
    return {"orthogonal_fluctuations": fig}


def _window(m: dict) -> str:
    return f"layers {m['fit_layers'][0]}-{m['fit_layers'][-1]}, width {m['width']}"


# Thresholds (the old defaults): the Gaussian tanh slope within a factor 1.25 of RYH's leading
# order in 1/n (higher orders matter at depth/width = 1/4); the orthogonal tanh slope below a
# tenth of the Gaussian one; the Gaussian ReLU kurtosis within 15 % of its exact finite-width law.
CLAIMS = (
    claim("gaussian_tanh_kurtosis_grows_as_ryh",
          lambda m: f"tanh, Gaussian weights: slope of the excess kurtosis vs depth ({_window(m)}) "
                    f"/ RYH 1/n prediction "
                    f"({float(m['tanh_gaussian_ryh_slope']) * m['width']:.2f}/n per layer)",
          "tanh_gaussian_slope_over_ryh", within(1 / 1.25, 1.25)),
    claim("orthogonal_tanh_kurtosis_depth_independent",
          lambda m: f"tanh: |orthogonal slope| / Gaussian slope of the excess kurtosis "
                    f"({_window(m)})",
          lambda m: abs(float(m["tanh_orthogonal_over_gaussian_slope"])), less(0.1)),
    claim("gaussian_relu_kurtosis_exact",
          "ReLU, Gaussian weights: measured / exact 3((1+5/n)^(l-1)-1) excess kurtosis "
          "(least squares over layers)",
          "relu_gaussian_over_exact", close_to(1.0, 0.15)),
)
