"""Neural signature kernels: wide, deep controlled ResNets on paths converge to a Goursat PDE.

Muca Cirone, Lemercier & Salvi, "Neural signature kernels as infinite-width-depth-limits of
controlled ResNets" (ICML 2023, arXiv:2303.17671; code MucaCirone/NeuralSignatureKernels).

The network (:mod:`limits.signature`): a homogeneous controlled ResNet, ``Z_{i+1} = Z_i +
sum_k (A_k phi(Z_i) + b_k) dx^k_i`` with the same Gaussian ``A_k`` (variance ``sigma_A^2 / N``)
and ``b_k`` in every block, ``Z_0 ~ N(0, sigma_0^2 I)``, depth = the number of increments of the
input path. Its infinite-width kernel at depth ``M`` obeys a recursion (derived in
:mod:`limits.signature`) that is the explicit finite-difference scheme of the neural signature
kernel PDE ``K_st = (sigma_A^2 E[phi(u) phi(v)] + sigma_b^2) <xdot_s, ydot_t>`` on the path's
sampling grid; with ``phi = id`` the PDE is the signature kernel's (Salvi et al. 2021).

Paths: ``n_paths`` smooth random curves ``x(t) = scale sum_{k <= 3} c_k sin(pi k t) / k``
(``c_k ~ N(0, I_dimension)``) with a time channel ``(t, x(t))``, sampled at as many points as
each part needs (the same curves throughout).

Four parts, five claims (thresholds fixed from the theory before running; the paper's
figures give no number at our scale):

1. *The PDE solver's order.* The first ``order_paths`` curves sampled at ``order_pieces + 1``
   points (piecewise linear), each increment split into ``2^l`` pieces, ``l = 0 ..
   max_level``; the observed order is the log-log slope of the successive differences
   ``max |K_l - K_{l+1}|`` against the grid step, fitted over the last ``fit_points``
   differences, the max over every pair and every node of the sampling grid (a single Gram
   entry can sit where the leading error terms cancel). Stated orders: explicit 1, trapezoid 2,
   Salvi et al.'s scheme 2 (identity only); claim: every observed order within ``0.2`` of its
   stated order (``order_activations``: identity and erf; full adds ReLU, whose kink lies on
   the diagonal cells of the self-kernels only).
2. *Width.* Per-network kernels ``<Z^x_M, Z^y_M> / N`` of ``n_networks`` networks per width at
   depth ``mc_depth`` on all ``n_paths`` curves against the infinite-width kernel of that depth:
   the root-mean-square relative Frobenius error falls like ``N^-1/2`` (slope in ``[-0.65,
   -0.35]``, a central-limit fluctuation with Monte Carlo noise) for every ``mc_activations``;
   and the Monte Carlo mean at the largest width is the limit within 4 standard errors on every
   entry.
3. *Depth.* The infinite-width kernel of the depth-``M`` network on the first ``order_paths``
   curves sampled at ``M + 1`` points against the PDE kernel of the curves (trapezoid scheme at
   depth ``4 max(depths)``), on the coarsest depth's grid nodes; the error's order in ``1/M``
   (fitted over the last ``fit_points`` depths) is 1, the explicit scheme's; claim: within
   ``0.2``.
4. *Identity gives the signature kernel.* The neural signature kernel with ``phi(u) = u``
   passed as a function (so solved by the general solver with quadrature and self-kernels),
   ``sigma_0 = sigma_A = 1``, ``sigma_b = 0``, extrapolated to zero step from two grids with
   its order 2, against the signature kernel from truncated signatures (levels computed in the
   tensor algebra up to 10): relative error at most 1e-3.

The measurement design was settled on the quick config: with Gram entries only, grids up to
``l = 6``, ``sigma_A = 1.5`` and curves of scale 0.6 the explicit scheme was still
pre-asymptotic (observed orders 0.57-0.78, depth order 0.5-0.67); the identity check without
extrapolation missed 1e-3 on one seed in eight (2.0e-3, the trapezoid's own error at ``l =
4``). The thresholds did not change.

Scaled down: 4 curves, widths 32-256, 64 networks, depths 4-128 (full: 6 curves, widths
32-2048, 128 networks, depths 4-256, ReLU in the order study, tanh and ReLU in the Monte
Carlo). Kernel regression on a path task is not part of the study.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from threadpoolctl import threadpool_limits

from experiments.claims import at_most, claim, each, within
from limits import signature as sig
from limits.scaling import loglog_slope

SUMMARY = ("Muca Cirone, Lemercier & Salvi 2023: the neural signature kernel PDE solved with "
           "first- and second-order schemes (observed orders 1 and 2); wide controlled ResNets "
           "converge to their infinite-width kernel like width^-1/2 and deep ones to the PDE "
           "like 1/depth; phi = id gives the signature kernel")
PAPER = "cirone2023neural"
CITATION = ("Muca Cirone, N., Lemercier, M. & Salvi, C. (2023). Neural signature kernels as "
            "infinite-width-depth-limits of controlled ResNets. ICML 2023, PMLR 202:25358-25425. "
            "arXiv:2303.17671.")

ORDER_TOLERANCE = 0.2           # (1), (3): |observed - stated order|
WIDTH_SLOPE = (-0.65, -0.35)    # (2): central-limit rate N^-1/2 +- 0.15
MEAN_Z = 4.0                    # (2): Monte Carlo mean within 4 standard errors of the limit
SIGNATURE_TOLERANCE = 1e-3      # (4): relative error of the identity kernel vs signatures
SIGNATURE_LEVELS = 10           # truncation of the reference signatures
SIGNATURE_DYADIC = 4            # dyadic order of the PDE solve in (4)

SCHEMES_FOR = {"identity": ("explicit", "trapezoid", "salvi")}
DEFAULT_SCHEMES = ("explicit", "trapezoid")


@dataclasses.dataclass(frozen=True)
class Config:
    n_paths: int = 4
    dimension: int = 2
    path_scale: float = 0.5
    order_paths: int = 2
    order_pieces: int = 4
    max_level: int = 7
    fit_points: int = 3
    order_activations: tuple[str, ...] = ("identity", "erf")
    mc_activations: tuple[str, ...] = ("identity", "erf")
    depth_activations: tuple[str, ...] = ("identity", "erf")
    mc_depth: int = 16
    widths: tuple[int, ...] = (32, 64, 128, 256)
    n_networks: int = 64
    depths: tuple[int, ...] = (4, 8, 16, 32, 64, 128)
    sigma_0: float = 1.0
    sigma_A: float = 1.0
    sigma_b: float = 0.5
    seed: int = 0

    @classmethod
    def quick(cls) -> "Config":
        return cls()

    @classmethod
    def full(cls) -> "Config":
        return cls(n_paths=6, order_paths=3, max_level=8,
                   order_activations=("identity", "erf", "relu"),
                   mc_activations=("identity", "erf", "tanh", "relu"),
                   widths=(32, 64, 128, 256, 512, 1024, 2048), n_networks=128,
                   depths=(4, 8, 16, 32, 64, 128, 256))

    def validate(self) -> None:
        def increasing(name, values, low):
            if (len(values) < 3 or any(not isinstance(v, int) or v < low for v in values)
                    or sorted(set(values)) != list(values)):
                raise ValueError(f"{name} must be >= 3 increasing distinct ints >= {low}, got "
                                 f"{values}")
        increasing("widths", self.widths, 2)
        increasing("depths", self.depths, 1)
        if any(m % self.depths[0] for m in self.depths):
            raise ValueError(f"depths must be multiples of the first (errors are compared on its "
                             f"grid), got {self.depths}")
        for name in ("order_activations", "mc_activations", "depth_activations"):
            acts = getattr(self, name)
            if not acts or any(a not in sig.ACTIVATIONS for a in acts):
                raise ValueError(f"{name} must be names in {sig.ACTIVATIONS}, got {acts}")
        if self.n_paths < 2 or not 1 <= self.order_paths <= self.n_paths or self.order_pieces < 1:
            raise ValueError(f"n_paths must be >= 2 and order_paths, order_pieces >= 1, got "
                             f"{self.n_paths}, {self.order_paths}, {self.order_pieces}")
        if self.fit_points < 2 or self.max_level < self.fit_points:
            raise ValueError(f"need max_level >= fit_points >= 2 (max_level differences), got "
                             f"{self.max_level}, {self.fit_points}")
        if self.n_networks < 4 or self.mc_depth < 1 or self.dimension < 1:
            raise ValueError(f"n_networks must be >= 4, mc_depth and dimension >= 1, got "
                             f"{self.n_networks}, {self.mc_depth}, {self.dimension}")
        if not (self.path_scale > 0 and self.sigma_A > 0 and self.sigma_0 >= 0
                and self.sigma_b >= 0):
            raise ValueError("path_scale and sigma_A must be > 0, sigma_0 and sigma_b >= 0")

    @property
    def sigmas(self) -> dict:
        return {"sigma_0": self.sigma_0, "sigma_A": self.sigma_A, "sigma_b": self.sigma_b}


# ---------------------------------------------------------------------------------------------
# paths


def curve_coefficients(rng: np.random.Generator, n_paths: int, dimension: int,
                       modes: int = 3) -> np.ndarray:
    """``(n_paths, modes, dimension)`` standard normal coefficients ``c_k``."""
    return rng.standard_normal((n_paths, modes, dimension))


def sample_curves(coefficients: np.ndarray, n_points: int, scale: float) -> np.ndarray:
    """``(n_paths, n_points, 1 + dimension)``: ``(t, scale sum_k c_k sin(pi k t) / k)`` at
    ``n_points`` equally spaced ``t`` in ``[0, 1]``."""
    t = np.linspace(0.0, 1.0, n_points)
    k = np.arange(1, coefficients.shape[1] + 1)
    basis = np.sin(np.pi * k[:, None] * t[None, :]) / k[:, None]          # (modes, T)
    x = scale * np.einsum("pkd,kt->ptd", coefficients, basis)
    time = np.broadcast_to(t[None, :, None], (coefficients.shape[0], n_points, 1))
    return np.concatenate([time, x], axis=-1)


def observed_order(values: list, fit_points: int) -> tuple[float, list]:
    """Order ``p`` of a sequence of solutions on grids of step ``2^-l`` (each on the same nodes):
    the slope of ``log max |K_l - K_{l+1}|`` against ``log 2^-l`` over the last ``fit_points``
    differences; and the differences."""
    diffs = [float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
             for a, b in zip(values[:-1], values[1:])]
    steps = 2.0 ** -np.arange(len(diffs))
    return float(loglog_slope(steps[-fit_points:], diffs[-fit_points:])), diffs


# ---------------------------------------------------------------------------------------------
# the four parts


def solver_orders(cfg: Config, coefficients: np.ndarray) -> dict:
    """Every scheme's solution at dyadic orders ``0 .. max_level``, compared on the sampling
    grid's nodes (every pair of paths, every node ``(s_i, t_j)``): the sup norm of a successive
    difference, not one Gram entry, in which the leading error terms may cancel."""
    paths = sample_curves(coefficients[:cfg.order_paths], cfg.order_pieces + 1, cfg.path_scale)
    out = {}
    for act in cfg.order_activations:
        out[act] = {}
        for scheme in SCHEMES_FOR.get(act, DEFAULT_SCHEMES):
            grids = [sig.neural_signature_kernel(paths, None, act, dyadic_order=level,
                                                 scheme=scheme, full=True, **cfg.sigmas)
                     [:, :, ::2 ** level, ::2 ** level] for level in range(cfg.max_level + 1)]
            order, diffs = observed_order(grids, cfg.fit_points)
            out[act][scheme] = {"stated": sig.SCHEME_ORDER[scheme], "observed": order,
                                "differences": diffs,
                                "kernel": np.asarray(grids[-1][:, :, -1, -1]).tolist()}
    return out


def width_convergence(cfg: Config, coefficients: np.ndarray, activation: str) -> dict:
    paths = sample_curves(coefficients, cfg.mc_depth + 1, cfg.path_scale)
    limit = sig.controlled_resnet_kernel(paths, None, activation, **cfg.sigmas)
    norm = float(np.linalg.norm(limit))
    rms, q25, q75, z_last = [], [], [], None
    for w in cfg.widths:
        rng = np.random.default_rng([cfg.seed, w, sig.ACTIVATIONS.index(activation)])
        kernels = sig.empirical_kernels(rng, paths, w, cfg.n_networks, activation,
                                        **cfg.sigmas)
        rel = np.linalg.norm(kernels - limit, axis=(1, 2)) / norm
        rms.append(float(np.sqrt(np.mean(rel ** 2))))
        q25.append(float(np.quantile(rel, 0.25)))
        q75.append(float(np.quantile(rel, 0.75)))
        mean = kernels.mean(0)
        se = kernels.std(0, ddof=1) / math.sqrt(cfg.n_networks)
        iu = np.triu_indices(len(paths))
        z_last = np.abs(mean - limit)[iu] / se[iu]
        mean_last, se_last = mean[iu], se[iu]
    return {"limit": limit.tolist(), "rms_error": rms, "error_q25": q25, "error_q75": q75,
            "slope": float(loglog_slope(cfg.widths, rms)),
            "mean_z_max": float(np.max(z_last)),
            "mc_mean": mean_last.tolist(), "mc_se": se_last.tolist(),
            "limit_entries": np.asarray(limit)[np.triu_indices(len(paths))].tolist()}


def depth_convergence(cfg: Config, coefficients: np.ndarray, activation: str) -> dict:
    """The depth-``M`` kernels ``K_M(s_i, t_j)`` of the first ``order_paths`` curves against the
    PDE kernel (trapezoid scheme on the curves sampled at ``4 max(depths) + 1`` points), on the
    nodes of the coarsest depth's grid (every pair, every node), relative to the largest
    entry; the order: the log-log slope over the last ``fit_points`` depths, negated."""
    curves = coefficients[:cfg.order_paths]
    ref_depth = 4 * cfg.depths[-1]
    nodes = cfg.depths[0]
    reference = sig.neural_signature_kernel(
        sample_curves(curves, ref_depth + 1, cfg.path_scale), None, activation,
        scheme="trapezoid", full=True, **cfg.sigmas)[:, :, ::ref_depth // nodes,
                                                     ::ref_depth // nodes]
    scale = float(np.max(np.abs(reference)))
    errors = []
    for m in cfg.depths:
        k = sig.controlled_resnet_kernel(sample_curves(curves, m + 1, cfg.path_scale), None,
                                         activation, full=True, **cfg.sigmas)
        errors.append(float(np.max(np.abs(k[:, :, ::m // nodes, ::m // nodes] - reference))
                            / scale))
    fit = slice(-cfg.fit_points, None)
    return {"reference_depth": ref_depth, "relative_error": errors,
            "order": -float(loglog_slope(cfg.depths[fit], errors[fit])),
            "reference": reference[:, :, -1, -1].tolist()}


def identity_is_signature_kernel(cfg: Config, coefficients: np.ndarray) -> dict:
    """The general solver (``phi(u) = u`` as a function: quadrature, self-kernels, trapezoid
    scheme) at dyadic orders ``SIGNATURE_DYADIC - 1`` and ``SIGNATURE_DYADIC``, extrapolated
    to zero step with its stated order 2 (``(4 K_l - K_{l-1}) / 3``), against the signature
    kernel from truncated signatures; errors relative to the largest entry."""
    paths = sample_curves(coefficients[:cfg.order_paths], cfg.order_pieces + 1, cfg.path_scale)
    coarse, fine = (sig.neural_signature_kernel(paths, None, _identity, dyadic_order=level,
                                                scheme="trapezoid", points=15)
                    for level in (SIGNATURE_DYADIC - 1, SIGNATURE_DYADIC))
    extrapolated = (4 * fine - coarse) / 3
    reference = sig.truncated_signature_kernel(paths, None, SIGNATURE_LEVELS)
    scale = float(np.max(np.abs(reference)))
    return {"general_solver": np.asarray(extrapolated).tolist(),
            "truncated_signatures": np.asarray(reference).tolist(),
            "unextrapolated_relative_error": float(np.max(np.abs(fine - reference)) / scale),
            "relative_error": float(np.max(np.abs(extrapolated - reference)) / scale)}


def _identity(u):
    return u


def run(cfg: Config, ctx) -> dict:
    cfg.validate()
    coefficients = curve_coefficients(np.random.default_rng(cfg.seed), cfg.n_paths,
                                      cfg.dimension)
    parts = {
        "orders": lambda: solver_orders(cfg, coefficients),
        "signature": lambda: identity_is_signature_kernel(cfg, coefficients),
        **{f"width-{a}": (lambda a=a: width_convergence(cfg, coefficients, a))
           for a in cfg.mc_activations},
        **{f"depth-{a}": (lambda a=a: depth_convergence(cfg, coefficients, a))
           for a in cfg.depth_activations},
    }
    done = {}
    for name, compute in parts.items():
        ckpt = ctx.checkpoint(name)
        saved = ckpt.load()
        if saved is None:
            if ctx.progress:
                print(f"  {name}", flush=True)
            # small matrices gain nothing from BLAS threads, and on a busy machine spinning
            # threads make the Monte Carlo many times slower
            with threadpool_limits(limits=1, user_api="blas"):
                done[name] = compute()
            ckpt.save(step=1, state={}, history={}, done=True, extra=done[name])
            ctx.tick(1)
        else:
            done[name] = saved["extra"]
            ctx.resumed.append(name)
    return {
        "widths": list(cfg.widths), "depths": list(cfg.depths), "n_networks": cfg.n_networks,
        "mc_depth": cfg.mc_depth, "order_pieces": cfg.order_pieces,
        "max_level": cfg.max_level, "fit_points": cfg.fit_points,
        "orders": done["orders"], "signature": done["signature"],
        "width": {a: done[f"width-{a}"] for a in cfg.mc_activations},
        "depth": {a: done[f"depth-{a}"] for a in cfg.depth_activations},
    }


# ---------------------------------------------------------------------------------------------
# figures


def figures(results: dict) -> dict:
    """Solver convergence against the grid step, per-network kernel error against width, and
    the discrete kernel's error against depth (log-log, with the stated rates)."""
    from matplotlib.figure import Figure
    m = results["metrics"]
    out = {}

    orders = m["orders"]
    fig = Figure(figsize=(4.2 * len(orders), 4.0))
    axes = np.atleast_1d(fig.subplots(1, len(orders)))
    for ax, (act, schemes) in zip(axes, orders.items()):
        for c, (scheme, r) in enumerate(schemes.items()):
            diffs = np.asarray(r["differences"], float)
            h = 2.0 ** -np.arange(len(diffs)) / m["order_pieces"]
            ax.loglog(h, diffs, "o-", color=f"C{c}", ms=4,
                      label=f"{scheme}: order {float(r['observed']):.2f} "
                            f"(stated {int(r['stated'])})")
            ax.loglog(h, diffs[-1] * (h / h[-1]) ** int(r["stated"]), ":", color=f"C{c}",
                      lw=1)
        ax.set_xlabel("grid step h (fraction of [0, 1])")
        ax.set_ylabel("max |K_h - K_h/2| over pairs and grid nodes")
        ax.set_title(f"phi = {act}", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("Neural signature kernel PDE: observed orders of the finite-difference "
                 "schemes (dotted: stated order)", fontsize=10)
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.13, top=0.84, wspace=0.3)
    out["solver_order"] = fig

    widths = np.asarray(m["widths"], float)
    fig = Figure(figsize=(10, 4.0))
    ax1, ax2 = fig.subplots(1, 2)
    lo, hi = math.inf, -math.inf
    for c, (act, r) in enumerate(m["width"].items()):
        rms = np.asarray(r["rms_error"], float)
        ax1.loglog(widths, rms, "o-", color=f"C{c}", ms=4,
                   label=f"phi = {act} (slope {float(r['slope']):.2f})")
        ax1.fill_between(widths, np.asarray(r["error_q25"], float),
                         np.asarray(r["error_q75"], float), color=f"C{c}", alpha=0.15)
        ax1.loglog(widths, rms[0] * np.sqrt(widths[0] / widths), ":", color="gray", lw=1)
        lim = np.asarray(r["limit_entries"], float)
        ax2.errorbar(lim, np.asarray(r["mc_mean"], float), yerr=np.asarray(r["mc_se"], float),
                     fmt="o", ms=3, color=f"C{c}",
                     label=f"phi = {act} (max |z| {float(r['mean_z_max']):.2f})")
        lo, hi = min(lo, lim.min()), max(hi, lim.max())
    ax1.set_xscale("log", base=2)
    ax1.set_xlabel("width N")
    ax1.set_ylabel("RMS over networks of |K_N - K| / |K| (Frobenius)")
    ax1.set_title(f"One network's kernel, depth {m['mc_depth']} (dotted: N^-1/2)", fontsize=9)
    ax1.legend(fontsize=7)
    ax2.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax2.set_xlabel("infinite-width kernel entry")
    ax2.set_ylabel(f"Monte Carlo mean at width {int(widths[-1])} (+- 1 s.e.)")
    ax2.set_title(f"{m['n_networks']} networks", fontsize=9)
    ax2.legend(fontsize=7)
    fig.suptitle("Wide controlled ResNets converge to their infinite-width kernel", fontsize=10)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.13, top=0.84, wspace=0.28)
    out["width_convergence"] = fig

    depths = np.asarray(m["depths"], float)
    fig = Figure(figsize=(5.2, 4.0))
    ax = fig.subplots()
    for c, (act, r) in enumerate(m["depth"].items()):
        err = np.asarray(r["relative_error"], float)
        ax.loglog(depths, err, "o-", color=f"C{c}", ms=4,
                  label=f"phi = {act} (order {float(r['order']):.2f})")
        ax.loglog(depths, err[-1] * depths[-1] / depths, ":", color="gray", lw=1)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("depth M (increments of the sampled path)")
    ax.set_ylabel("max |K_M - K_PDE| / max |K_PDE| (pairs, grid nodes)")
    ax.set_title("Deep controlled ResNets converge to the PDE kernel (dotted: 1/M)",
                 fontsize=9)
    ax.legend(fontsize=7)
    fig.subplots_adjust(left=0.16, right=0.97, bottom=0.13, top=0.9)
    out["depth_convergence"] = fig
    return out


# ---------------------------------------------------------------------------------------------
# claims


def _order_gaps(m):
    return [abs(float(r["observed"]) - float(r["stated"]))
            for schemes in m["orders"].values() for r in schemes.values()]


def _order_text(m):
    pairs = [f"{a}/{s} {float(r['observed']):.2f}" for a, schemes in m["orders"].items()
             for s, r in schemes.items()]
    return ("|observed - stated order| of the PDE schemes (explicit 1, trapezoid 2, salvi 2), "
            f"grids of 2^l pieces per increment, l <= {m['max_level']}: " + ", ".join(pairs))


# Thresholds (set before running): a scheme's stated order comes from its local truncation
# error (module docstring of limits.signature); +-0.2 allows the pre-asymptotic range of the
# last fitted grids. The width rate N^-1/2 is the central-limit fluctuation of an average over N
# coordinates (the paper proves convergence, without a rate): +-0.15 for Monte Carlo noise. The
# depth rate is the explicit scheme's order 1. The identity kernel differs from the signature
# kernel only by the PDE solver's error at SIGNATURE_DYADIC (second order, ~1e-5 here).
CLAIMS = (
    claim("pde_scheme_orders", _order_text, _order_gaps, each(at_most(ORDER_TOLERANCE))),
    claim("width_rate_n_minus_half",
          lambda m: (f"log-log slope of one network's relative kernel error against width "
                     f"(widths {m['widths'][0]}-{m['widths'][-1]}, depth {m['mc_depth']}, "
                     f"{m['n_networks']} networks), phi = " + ", ".join(m["width"])),
          lambda m: [r["slope"] for r in m["width"].values()], each(within(*WIDTH_SLOPE))),
    claim("monte_carlo_mean_is_the_limit",
          lambda m: (f"largest |Monte Carlo mean - infinite-width kernel| / standard error over "
                     f"the Gram entries at width {m['widths'][-1]}, phi = "
                     + ", ".join(m["width"])),
          lambda m: [r["mean_z_max"] for r in m["width"].values()], each(at_most(MEAN_Z))),
    claim("depth_converges_to_pde",
          lambda m: (f"|order - 1| of the depth-M network kernel's convergence to the PDE kernel "
                     f"(M = {m['depths'][0]}-{m['depths'][-1]}), phi = " + ", ".join(m["depth"])),
          lambda m: [abs(float(r["order"]) - 1.0) for r in m["depth"].values()],
          each(at_most(ORDER_TOLERANCE))),
    claim("identity_is_signature_kernel",
          "relative error of the neural signature kernel with phi(u) = u (general solver, "
          "quadrature) against the truncated-signature kernel sum_n <S^n(x), S^n(y)>",
          lambda m: m["signature"]["relative_error"], at_most(SIGNATURE_TOLERANCE)),
)
