"""Finite-width corrections at initialisation grow like depth / width.

Roberts, Yaida & Hanin, "The Principles of Deep Learning Theory" (Cambridge University Press
2022, arXiv:2106.10165), Chapters 4-5 (the four-point vertex) and 8 (NTK fluctuations): at
criticality a network's deviations from its infinite-width Gaussian / frozen-kernel limit are
governed by the aspect ratio ``L / n``. Two observables, for one input, over random
initialisations of networks of depth ``L`` (weight layers) and hidden width ``n``:

* the excess kurtosis of the output preactivation, ``3 Var(G) / E[G]^2`` with ``G`` its
  variance given the last hidden layer (exactly the kurtosis, the output being ``N(0, G)``
  given that layer); leading order ``3 V^L / (n K^2)`` with the book's four-point vertex ``V``;
* the relative variance ``Var(Theta) / E[Theta]^2`` of the (diagonal) NTK; leading order
  ``(A^L + 2 B^L) / (n Theta^2)`` from the recursions of :mod:`limits.finite_width` (derived
  there; the book's Chapter 8 coefficients could not be read here).

Two universality classes at criticality (NTK parametrisation, zero biases, ``K^1 = 1``):
ReLU (scale-invariant, ``C_W = 2``): ``V^L / K^2 = 5 (L - 1)``, kurtosis ``15 (L - 1) / n``
(all orders: ``3 ((1 + 5/n)^(L-1) - 1)``), NTK relative variance ``sum_{j<L} (11 j^2 + j) /
(n L^2) ~ (11/3) L / n``; tanh (``K* = 0``, ``C_W = 1``): kurtosis ``~ 2 L / n``, NTK ``~
(2/3) L / n`` (with ``log L / L`` corrections, computed exactly by the recursions). Hanin &
Nica (2020) give ReLU's ``E[Theta^2] / E[Theta]^2 ~= exp(5 L / n)`` up to constant factors;
its small-``L/n`` slope 5 is tested against the 11/3 here.

Monte Carlo: :func:`limits.finite_width.sample_single_input` (exact samples of the network's
single-input law at ``O(n L)`` cost; checked against dense networks in every run) at widths
``n`` and depths ``L`` with ``L / n <= 1/4``. For each cell the ratio ``rho`` of the measured
value to the leading-order prediction; at each depth ``rho(n) = rho_0 + c / n`` is fitted over
the widths with ``L / n <= 1/8`` (weighted least squares), ``rho_0`` being the measured
coefficient of ``1 / n`` relative to the book's.

Claims (thresholds fixed from the leading-order theory before running):

* leading order: ``rho_0`` within ``[0.9, 1.1]`` at every depth with three or more widths in
  the fit (the truncation bias of this extrapolation, computed on ReLU's all-orders kurtosis
  for the same grids, is <= 0.021; Monte Carlo errors <= 0.025);
* collapse on ``L / n`` with the book's coefficient: the measured slope ``d(n y) / dL`` between
  the two deepest such depths, over the book's asymptotic coefficient (15, 11/3, 2, 2/3), in
  ``[0.8, 1.2]`` (at the depths used the leading-order slopes are 0.88-1.06 of the asymptotic
  ones; Monte Carlo <= 4 %);
* tanh against ReLU: tanh's slopes are a small fraction of ReLU's, in ``[0.05, 0.3]``
  (leading order 0.12-0.13 for the kurtosis, 0.18-0.20 for the NTK);
* ReLU's kurtosis matches its all-orders law in every cell (within 4 standard errors; this
  covers ``L / n = 1/4``, where the leading order is off by half);
* ReLU's measured NTK slope is below 4.5, so ``exp(5 L / n)`` overstates the small-``L/n``
  growth;
* the ``O(n L)`` sampler has the dense networks' law (relative variances within 4 standard
  errors at width 32, depth 4).

Quick: widths 32-128, depths 2 and 4, 6,000 networks per cell. Full: widths 64-1,024, depths
2-64, 8,000 networks per cell (15 minutes here, on 2 CPU cores shared with other work).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from experiments.claims import at_most, claim, each, less, within
from limits import finite_width as fw

SUMMARY = ("Roberts, Yaida & Hanin 2022: preactivation kurtosis and NTK variance over "
           "initialisations grow like L/n with the 1/n recursions' coefficients (ReLU, tanh)")
PAPER = "roberts2022principles"
CITATION = ("Roberts, D. A., Yaida, S. & Hanin, B. (2022). The Principles of Deep Learning "
            "Theory. Cambridge University Press, arXiv:2106.10165.")

ACTIVATIONS = ("relu", "tanh")
SETTINGS = {"relu": {"sigma_w2": 2.0, "q0": 0.5}, "tanh": {"sigma_w2": 1.0, "q0": 1.0}}
OBSERVABLES = ("kurtosis", "ntk_variance")
FIT_RATIO = 1 / 8          # cells with L / n <= FIT_RATIO enter the width -> infinity fits
MIN_FIT_WIDTHS = 3         # a depth's leading coefficient needs this many widths
DENSE_CELL = (32, 4)       # (width, depth) of the dense-network check


@dataclasses.dataclass(frozen=True)
class Config:
    widths: tuple[int, ...] = (32, 64, 128)
    depths: tuple[int, ...] = (2, 4)
    n_samples: int = 6000             # networks per (activation, width, depth)
    max_ratio: float = 0.25           # cells with depth / width <= max_ratio
    dense_samples: int = 2000         # dense networks (and O(nL) samples) in the law check
    seed: int = 0

    @classmethod
    def quick(cls) -> "Config":
        return cls()

    @classmethod
    def full(cls) -> "Config":
        return cls(widths=(64, 128, 256, 512, 1024), depths=(2, 4, 8, 16, 32, 64),
                   n_samples=8000)

    def validate(self) -> None:
        for name in ("widths", "depths"):
            v = getattr(self, name)
            if (len(v) < 2 or any(isinstance(x, bool) or not isinstance(x, int) for x in v)
                    or list(v) != sorted(set(v))):
                raise ValueError(f"{name} must be >= 2 increasing ints, got {v}")
        if self.widths[0] < 8 or self.depths[0] < 2:
            raise ValueError(f"widths must be >= 8 and depths >= 2, got {self.widths}, "
                             f"{self.depths}")
        if not 0 < self.max_ratio <= 1:
            raise ValueError(f"max_ratio must be in (0, 1], got {self.max_ratio}")
        if self.n_samples < 100 or self.dense_samples < 100:
            raise ValueError(f"n_samples and dense_samples must be >= 100, got "
                             f"{self.n_samples}, {self.dense_samples}")
        fit_depths = [d for d in self.depths
                      if sum(d / n <= FIT_RATIO for n in self.widths) >= MIN_FIT_WIDTHS]
        if len(fit_depths) < 2:
            raise ValueError(f"at least two depths need {MIN_FIT_WIDTHS} widths with "
                             f"depth / width <= {FIT_RATIO}; got {fit_depths} for widths "
                             f"{self.widths}, depths {self.depths}")


def coefficients(name: str, depth: int) -> dict:
    """Leading-order coefficients of ``1 / n`` for layers ``1..depth``: ``kurtosis`` (``3 V /
    K^2``), ``ntk_variance`` (``(A + 2B) / Theta^2``) and the mean NTK ``ntk``."""
    s = SETTINGS[name]
    r = fw.finite_width_recursion(name, depth, s["sigma_w2"], q0=s["q0"])
    return {"kurtosis": r["kurtosis_coefficient"], "ntk_variance": r["ntk_variance_coefficient"],
            "ntk": r["ntk"]}


def measure_cell(name: str, width: int, depth: int, n_samples: int, seed, coef: dict) -> dict:
    """Monte Carlo of one (activation, width, depth) cell against the leading order."""
    s = SETTINGS[name]
    samples = fw.sample_single_input(name, width, depth, n_samples, s["sigma_w2"], q0=s["q0"],
                                     seed=seed)
    rel_g, rel_g_se = fw.relative_variance(samples["G"])
    rel_t, rel_t_se = fw.relative_variance(samples["ntk"])
    cell = {"width": width, "depth": depth, "ratio": depth / width,
            "kurtosis": 3 * rel_g, "kurtosis_se": 3 * rel_g_se,
            "kurtosis_lo": float(coef["kurtosis"][depth - 1]) / width,
            "ntk_variance": rel_t, "ntk_variance_se": rel_t_se,
            "ntk_variance_lo": float(coef["ntk_variance"][depth - 1]) / width,
            "ntk_mean": float(samples["ntk"].mean()),
            "ntk_mean_limit": float(coef["ntk"][depth - 1]),
            "ntk_log_second_moment_per_ratio": math.log1p(rel_t) * width / depth}
    if name == "relu":
        cell["kurtosis_exact"] = float(fw.scale_invariant_kurtosis_exact(depth, width))
    return cell


def extrapolate(cells: list, observable: str, coef: dict) -> dict:
    """Per depth, weighted least squares ``rho(n) = rho_0 + c / n`` of ``rho = measured /
    leading order`` over the widths with ``L / n <= FIT_RATIO`` (depths with at least
    ``MIN_FIT_WIDTHS`` widths), then the slope ``d(n y)/dL`` of the extrapolated leading
    coefficients ``rho_0(L) P(L)`` between the two deepest depths."""
    out = {"depths": [], "rho0": [], "rho0_se": [], "c": []}
    for depth in sorted({c["depth"] for c in cells}):
        sel = [c for c in cells if c["depth"] == depth and c["ratio"] <= FIT_RATIO + 1e-12]
        if len(sel) < MIN_FIT_WIDTHS:
            continue
        inv_n = np.array([1.0 / c["width"] for c in sel])
        rho = np.array([c[observable] / c[f"{observable}_lo"] for c in sel])
        se = np.array([c[f"{observable}_se"] / c[f"{observable}_lo"] for c in sel])
        design = np.stack([np.ones_like(inv_n), inv_n], axis=1)
        weights = 1.0 / np.maximum(se, 1e-12) ** 2
        cov = np.linalg.inv(design.T @ (weights[:, None] * design))
        beta = cov @ design.T @ (weights * rho)
        out["depths"].append(depth)
        out["rho0"].append(float(beta[0]))
        out["rho0_se"].append(float(math.sqrt(cov[0, 0])))
        out["c"].append(float(beta[1]))
    d1, d2 = out["depths"][-2], out["depths"][-1]
    p1, p2 = float(coef[observable][d1 - 1]), float(coef[observable][d2 - 1])
    (r1, s1), (r2, s2) = [(out["rho0"][i], out["rho0_se"][i]) for i in (-2, -1)]
    out["slope_depths"] = [d1, d2]
    out["slope"] = (r2 * p2 - r1 * p1) / (d2 - d1)
    out["slope_se"] = math.hypot(s2 * p2, s1 * p1) / (d2 - d1)
    out["slope_lo"] = (p2 - p1) / (d2 - d1)
    return out


def _dense_check(name: str, cfg: Config) -> dict:
    """Relative variances of ``G`` and the NTK from dense networks against the O(nL)
    sampler at ``DENSE_CELL``: two-sample z-scores."""
    s = SETTINGS[name]
    width, depth = DENSE_CELL
    out = {}
    runs = {m: fw.sample_single_input(name, width, depth, cfg.dense_samples, s["sigma_w2"],
                                      q0=s["q0"], method=m,
                                      seed=[cfg.seed, ACTIVATIONS.index(name), i, 99])
            for i, m in enumerate(("dense", "rotated"))}
    for key, obs in (("G", "kurtosis"), ("ntk", "ntk_variance")):
        (a, sa), (b, sb) = (fw.relative_variance(runs[m][key]) for m in ("dense", "rotated"))
        out[obs] = {"dense": a, "rotated": b, "z": abs(a - b) / math.hypot(sa, sb)}
    return out


def run(cfg: Config, ctx) -> dict:
    cfg.validate()
    out = {"widths": list(cfg.widths), "depths": list(cfg.depths), "n_samples": cfg.n_samples,
           "max_ratio": cfg.max_ratio, "fit_ratio": FIT_RATIO, "dense_cell": list(DENSE_CELL),
           "book_slopes": {a: dict(fw.ASYMPTOTIC_SLOPES[a]) for a in ACTIVATIONS},
           "activations": {}}
    for a_idx, name in enumerate(ACTIVATIONS):
        coef = coefficients(name, max(cfg.depths))
        cells = []
        for width in cfg.widths:
            ckpt = ctx.checkpoint(f"{name}-width{width}")
            saved = ckpt.load()
            if saved is not None:
                cells += saved["extra"]["cells"]
                ctx.resumed.append(f"{name}-width{width}")
                continue
            if ctx.progress:
                print(f"  {name}, width {width}", flush=True)
            new = [measure_cell(name, width, depth, cfg.n_samples,
                                [cfg.seed, a_idx, width, depth], coef)
                   for depth in cfg.depths if depth / width <= cfg.max_ratio + 1e-12]
            ckpt.save(step=1, state={}, history={}, done=True, extra={"cells": new})
            cells += new
            ctx.tick(1)
        fits = {obs: extrapolate(cells, obs, coef) for obs in OBSERVABLES}
        for obs in OBSERVABLES:
            fits[obs]["slope_over_book"] = fits[obs]["slope"] / fw.ASYMPTOTIC_SLOPES[name][obs]
        entry = dict(SETTINGS[name], cells=cells, fits=fits, dense_check=_dense_check(name, cfg),
                     coefficients={k: [float(x) for x in v] for k, v in coef.items()})
        if name == "relu":
            entry["kurtosis_exact_z"] = [abs(c["kurtosis"] - c["kurtosis_exact"])
                                         / c["kurtosis_se"] for c in cells]
        out["activations"][name] = entry
    out["tanh_over_relu_slope"] = {
        obs: out["activations"]["tanh"]["fits"][obs]["slope"]
        / out["activations"]["relu"]["fits"][obs]["slope"] for obs in OBSERVABLES}
    return out


# ---------------------------------------------------------------------------------------------
# figures

_LABELS = {"kurtosis": "excess kurtosis of the output preactivation",
           "ntk_variance": "Var(Theta) / E[Theta]^2"}


def figures(results: dict) -> dict:
    """``collapse``: both observables against ``L / n``, every width, with the leading-order
    predictions per width, the book's asymptotic slope (and ReLU's all-orders kurtosis,
    Hanin & Nica's ``exp(5 L/n) - 1``); ``leading_order``: ``rho = measured / leading order``
    against ``1 / n`` per depth with the fits extrapolated to ``n -> inf``."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    m = results["metrics"]
    widths = list(m["widths"])
    colors = {n: colormaps["viridis"](i / max(1, len(widths) - 1)) for i, n in enumerate(widths)}
    out = {}

    fig = Figure(figsize=(11, 8.5))
    axes = fig.subplots(2, 2)
    for col, name in enumerate(ACTIVATIONS):
        a = m["activations"][name]
        for row, obs in enumerate(OBSERVABLES):
            ax = axes[row][col]
            coef = np.asarray(a["coefficients"][obs], float)
            r_max = 0.0
            for n in widths:
                cs = [c for c in a["cells"] if c["width"] == n]
                if not cs:
                    continue
                r = np.array([c["ratio"] for c in cs])
                r_max = max(r_max, float(r.max()))
                ax.errorbar(r, [c[obs] for c in cs], yerr=[c[f"{obs}_se"] for c in cs],
                            fmt="o", ms=4, color=colors[n], capsize=2, label=f"n = {n}")
                depths = np.arange(2, int(round(r.max() * n)) + 1)
                ax.plot(depths / n, coef[depths - 1] / n, "-", lw=0.8, color=colors[n])
            grid = np.linspace(0, r_max, 50)
            book = float(m["book_slopes"][name][obs])
            ax.plot(grid, book * grid, "k--", lw=1, label=f"book: {book:.3g} L/n")
            if name == "relu" and obs == "kurtosis":
                ax.plot(grid, 3 * np.expm1(5 * grid), "k:", lw=1,
                        label="all orders, n -> inf: 3 (e^(5L/n) - 1)")
            if name == "relu" and obs == "ntk_variance":
                ax.plot(grid, np.expm1(5 * grid), "r:", lw=1,
                        label="Hanin & Nica: e^(5L/n) - 1")
            ax.set_xlabel("aspect ratio L / n")
            ax.set_ylabel(_LABELS[obs])
            ax.set_title(f"{name}: {_LABELS[obs]} (lines: 1/n recursions per width)",
                         fontsize=9)
            ax.legend(fontsize=7)
    fig.suptitle("Finite-width corrections at initialisation collapse on L/n "
                 "(Roberts, Yaida & Hanin)")
    fig.tight_layout()
    out["collapse"] = fig

    fig = Figure(figsize=(14, 3.8))
    axes = fig.subplots(1, 4)
    panels = [(name, obs) for name in ACTIVATIONS for obs in OBSERVABLES]
    for ax, (name, obs) in zip(axes, panels):
        a = m["activations"][name]
        fit = a["fits"][obs]
        depth_colors = colormaps["plasma"]
        for i, depth in enumerate(fit["depths"]):
            cs = [c for c in a["cells"] if c["depth"] == depth and
                  c["ratio"] <= float(m["fit_ratio"]) + 1e-12]
            x = np.array([1 / c["width"] for c in cs])
            y = np.array([c[obs] / c[f"{obs}_lo"] for c in cs])
            e = np.array([c[f"{obs}_se"] / c[f"{obs}_lo"] for c in cs])
            color = depth_colors(i / max(1, len(fit["depths"]) - 1) * 0.85)
            ax.errorbar(x, y, yerr=e, fmt="o", ms=4, color=color, capsize=2,
                        label=f"L = {depth}: rho0 = {fit['rho0'][i]:.3f}")
            grid = np.linspace(0, x.max(), 20)
            ax.plot(grid, fit["rho0"][i] + fit["c"][i] * grid, "-", lw=0.8, color=color)
        ax.axhline(1.0, color="gray", lw=0.8)
        ax.set_xlabel("1 / width")
        ax.set_ylabel("measured / leading order")
        ax.set_title(f"{name}, {obs.replace('_', ' ')}", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("The 1/n recursions give the leading order: rho -> 1 as n -> inf at fixed L")
    fig.tight_layout()
    out["leading_order"] = fig
    return out


# ---------------------------------------------------------------------------------------------
# claims


def _fit(m, name, obs):
    return m["activations"][name]["fits"][obs]


def _grid(m):
    return (f"widths {m['widths'][0]}-{m['widths'][-1]}, depths {m['depths'][0]}-"
            f"{m['depths'][-1]}, L/n <= {m['max_ratio']:g}, {m['n_samples']} networks per cell")


_BOOK = {("relu", "kurtosis"): "V = 5 (L-1) K^2, kurtosis 15 (L-1)/n",
         ("tanh", "kurtosis"): "K* = 0 four-point vertex recursion",
         ("relu", "ntk_variance"): "sum_j<L (11 j^2 + j) / (n L^2)",
         ("tanh", "ntk_variance"): "NTK-variance recursion"}


def _leading_claim(name, obs):
    return claim(
        f"{name}_{obs}_leading_order",
        lambda m: (f"{name}: {_LABELS[obs]}, measured / leading order ({_BOOK[name, obs]}) "
                   f"extrapolated to n -> inf (fit rho0 + c/n over widths with L/n <= "
                   f"{float(m['fit_ratio']):g}) at depths {_fit(m, name, obs)['depths']}; "
                   f"{_grid(m)}"),
        lambda m: _fit(m, name, obs)["rho0"], each(within(0.9, 1.1)))


def _slope_claim(name, obs):
    return claim(
        f"{name}_{obs}_slope",
        lambda m: (f"{name}: slope d(n y)/dL of the extrapolated {_LABELS[obs]} between depths "
                   f"{_fit(m, name, obs)['slope_depths']}, over the book's asymptotic "
                   f"{float(m['book_slopes'][name][obs]):.4g} per unit L/n"),
        lambda m: _fit(m, name, obs)["slope_over_book"], within(0.8, 1.2))


# Thresholds (module docstring): the extrapolation's truncation bias is <= 0.021 and Monte Carlo
# errors <= 0.025 (+-0.1 on rho0); finite-depth leading-order slopes are 0.88-1.06 of the
# asymptotic coefficients (+-0.2); tanh / ReLU slopes 0.12-0.20 at leading order.
CLAIMS = (
    *(_leading_claim(a, o) for a in ACTIVATIONS for o in OBSERVABLES),
    *(_slope_claim(a, o) for a in ACTIVATIONS for o in OBSERVABLES),
    claim("tanh_smaller_than_relu",
          "slope of tanh's kurtosis, then NTK relative variance, over ReLU's (same depths)",
          lambda m: [m["tanh_over_relu_slope"][o] for o in OBSERVABLES],
          each(within(0.05, 0.3))),
    claim("relu_kurtosis_all_orders",
          lambda m: (f"ReLU: |measured kurtosis - 3((1 + 5/n)^(L-1) - 1)| / standard error in "
                     f"every cell ({_grid(m)})"),
          lambda m: m["activations"]["relu"]["kurtosis_exact_z"], each(at_most(4.0))),
    claim("relu_ntk_slope_below_hanin_nica",
          "ReLU: measured slope d(n Var(Theta)/E[Theta]^2)/dL (exp(5 L/n) - 1 has slope 5)",
          lambda m: _fit(m, "relu", "ntk_variance")["slope"], less(4.5)),
    claim("sampler_is_the_dense_network",
          lambda m: (f"dense networks against the O(nL) sampler at (width, depth) = "
                     f"{tuple(m['dense_cell'])}: z-scores of the relative variances of G and "
                     f"Theta, ReLU then tanh"),
          lambda m: [m["activations"][a]["dense_check"][o]["z"] for a in ACTIVATIONS
                     for o in OBSERVABLES], each(at_most(4.0))),
)
