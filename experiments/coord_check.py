"""Coordinate checks and learning-rate transfer across width: SP against muP.

Yang, Hu, Babuschkin, Sidor, Liu, Farhi, Ryder, Pachocki, Chen & Gao 2021, "Tensor Programs V:
Tuning Large Neural Networks via Zero-Shot Hyperparameter Transfer" (arXiv:2203.03466).

Model: an ``mlp`` of :mod:`limits.networks` with ``depth`` hidden ReLU layers of width ``n``
under an abc-parametrization (:class:`limits.Parametrization`): layer ``l`` computes
``h^l = m_l x^{l-1} W^l`` with multiplier ``m_l = (n/n0)^-a_l``, initial weights
``W^l ~ N(0, sigma^2 (n/n0)^-2 b_l / fan_in(n0))`` and learning rate ``eta (n/n0)^-c_l``,
``n0`` the smallest width of the sweep (where muP and SP coincide). The optimizer is Adam
(``optimizer='adam'``, TP V's main setting; ``'sgd'`` is available) with the presets
``SP_ADAM`` / ``MUP_ADAM`` (or ``SP`` / ``MUP``).

1. Coordinate check (TP V Sec. 5 / App. D.1, :func:`limits.coord_check.coord_check`): train
   ``n_steps`` steps on one fixed batch (MSE against a fixed tanh teacher) and record the
   typical coordinate size ``mean |h_t|`` of every preactivation and of the output, and of its
   change ``mean |h_t - h_0|``, at widths ``n``; fit the log-log slope against ``n``. Under muP
   every slope is 0 at every step (a width-independent training trajectory: TP IV's
   feature-learning limit). Under SP with a width-independent learning rate the output's
   first update grows like ``n`` (TP IV: ``r``'s readout term ``u = -1``; for Adam the hidden
   layers' updates grow like ``n`` too): slope 1, and the network blows up as ``n`` grows.
   The readout starts at zero (as microsoft/mup recommends), so the output is 0 at ``t = 0``
   and the hidden layers do not move at ``t = 1``: those slopes are undefined (NaN) and are
   left out.
2. Learning-rate transfer (TP V Fig. 1 / Fig. 3, :func:`limits.transfer.lr_transfer`): the
   training loss (softmax cross-entropy on scikit-learn digits, full batch) after
   ``transfer_steps`` steps for every width and learning rate on a log2 grid. Under muP the
   loss-optimal learning rate is the same at every width (it transfers); under SP it drifts
   towards smaller rates as ``n`` grows (the maximal stable rate falls like ``1/n``). The
   drift is the spread ``max - min`` of the per-width argmin, in octaves of learning rate.
   TP V Fig. 1 also shows that under muP "wider is better": at its own best learning rate
   every wider network reaches a lower loss (checked as the largest ratio of consecutive
   best losses, < 1); under SP the widest network can be worse.

Everything is computed by :mod:`limits`; this module picks the sizes, draws the figures
with limits' plot functions and turns the numbers into claims.
"""
from __future__ import annotations

import dataclasses
import io

import numpy as np

from experiments.records import Claim, atomic_write_bytes
from limits import parametrization as P
from limits.coord_check import CoordCheckConfig, coord_check, plot_coord_check
from limits.transfer import TransferConfig, lr_transfer

NAME = "coord_check"
DESCRIPTION = ("Yang et al. (Tensor Programs IV/V): coordinate check and learning-rate "
               "transfer across width, SP vs muP")
PRESETS = {"adam": (P.SP_ADAM, P.MUP_ADAM), "sgd": (P.SP, P.MUP)}


@dataclasses.dataclass(frozen=True)
class Config:
    optimizer: str = "adam"
    depth: int = 2
    # coordinate check
    widths: tuple[int, ...] = (64, 256, 1024)
    n_steps: int = 2
    learning_rate: float = 0.01
    batch: int = 32
    n_coord_seeds: int = 2
    # learning-rate transfer
    transfer_widths: tuple[int, ...] = (16, 64, 256)
    learning_rates: tuple[float, ...] = tuple(2.0 ** k for k in range(-12, 1))
    transfer_steps: int = 10
    n_train: int = 256
    n_transfer_seeds: int = 2
    # claims
    slope_tolerance: float = 0.1       # muP: every |slope| <= this
    sp_growth_threshold: float = 0.5   # SP: output update slope >= this (theory 1)
    shift_tolerance_octaves: float = 1.0   # muP argmin spread <= this; SP's exceeds it
    seed: int = 0

    @classmethod
    def quick(cls) -> "Config":
        return cls()

    @classmethod
    def full(cls) -> "Config":
        transfer = TransferConfig.full()
        coord = CoordCheckConfig.full()
        return cls(widths=coord.widths, n_steps=coord.n_steps, batch=coord.batch,
                   n_coord_seeds=len(coord.seeds), transfer_widths=transfer.widths,
                   learning_rates=transfer.learning_rates, transfer_steps=transfer.n_steps,
                   n_train=transfer.n_train, n_transfer_seeds=len(transfer.seeds))

    def validate(self) -> None:
        if self.optimizer not in PRESETS:
            raise ValueError(f"optimizer must be one of {sorted(PRESETS)}, got "
                             f"{self.optimizer!r}")
        for name in ("depth", "n_steps", "batch", "n_coord_seeds", "transfer_steps",
                     "n_train", "n_transfer_seeds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name, least in (("widths", 3), ("transfer_widths", 2)):
            w = getattr(self, name)
            if (len(w) < least or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                                      for v in w) or any(b <= a for a, b in zip(w, w[1:]))):
                raise ValueError(f"{name} needs >= {least} increasing positive ints, got {w}")
        lrs = np.asarray(self.learning_rates, float)
        if lrs.size < 3 or np.any(lrs <= 0) or np.any(np.diff(lrs) <= 0):
            raise ValueError(f"learning_rates must be an increasing grid of >= 3 positive "
                             f"values, got {self.learning_rates}")
        if not np.allclose(np.diff(np.log2(lrs)), np.log2(lrs[1] / lrs[0])):
            raise ValueError(f"learning_rates must be evenly spaced in log2, got "
                             f"{self.learning_rates}")
        for name in ("learning_rate", "slope_tolerance", "sp_growth_threshold",
                     "shift_tolerance_octaves"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")


def octaves_per_step(learning_rates) -> float:
    """Spacing of a log2-even learning-rate grid, in octaves (factors of 2)."""
    lrs = np.asarray(learning_rates, float)
    return float(np.log2(lrs[1] / lrs[0]))


def max_abs_slope(slopes: dict, steps) -> float:
    """``max |slope[layer][t]|`` over every layer and the given steps, ignoring the slopes
    that are undefined (NaN: the quantity is exactly zero at every width)."""
    values = np.array([np.asarray(v, float)[list(steps)] for v in slopes.values()])
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise ValueError(f"no finite slope among steps {list(steps)}")
    return float(np.max(np.abs(finite)))


def side_by_side(results: dict) -> dict:
    """Several :func:`limits.coord_check.coord_check` results (same widths and steps) as one,
    with every layer named ``'<label> <layer>'``, so that
    :func:`limits.coord_check.plot_coord_check` draws them in the same panels."""
    first = next(iter(results.values()))
    merged = {"parametrization": " vs ".join(results), "widths": first["widths"],
              "steps": first["steps"]}
    for key in ("size", "update", "size_slope", "update_slope"):
        merged[key] = {f"{label} {name}": value for label, r in results.items()
                       for name, value in r[key].items()}
    return merged


def _coord_metrics(r: dict) -> dict:
    """The plain-JSON part of a :func:`limits.coord_check.coord_check` result."""
    return {"size_slope": {k: v.tolist() for k, v in r["size_slope"].items()},
            "update_slope": {k: v.tolist() for k, v in r["update_slope"].items()},
            "size": {k: v.mean(0).tolist() for k, v in r["size"].items()},
            "update": {k: v.mean(0).tolist() for k, v in r["update"].items()},
            "final_loss": r["loss"][:, :, -1].mean(0).tolist()}


def _transfer_metrics(r: dict, octaves: float) -> dict:
    return {"mean_loss": np.asarray(r["mean_loss"]).tolist(), "argmin": list(r["argmin"]),
            "best_learning_rate": list(r["best_learning_rate"]),
            "argmin_shift": int(r["argmin_shift"]),
            "shift_octaves": float(r["argmin_shift"] * octaves)}


def _save_png(ctx, name: str, draw) -> None:
    """Let a limits plot function (which writes to a path or file) draw into memory, then
    write the PNG atomically into the run folder."""
    buf = io.BytesIO()
    draw(buf)
    atomic_write_bytes(ctx.run_dir / f"{name}.png", buf.getvalue())
    ctx.figures.append(f"{name}.png")


def run(cfg: Config, ctx) -> dict:
    cfg.validate()
    sp, mup = PRESETS[cfg.optimizer]
    coord_cfg = CoordCheckConfig(
        widths=cfg.widths, depth=cfg.depth, n_steps=cfg.n_steps,
        learning_rate=cfg.learning_rate, batch=cfg.batch, readout_zero_init=True,
        seeds=tuple(range(cfg.seed, cfg.seed + cfg.n_coord_seeds)))
    transfer_cfg = TransferConfig(
        widths=cfg.transfer_widths, learning_rates=cfg.learning_rates, depth=cfg.depth,
        n_steps=cfg.transfer_steps, n_train=cfg.n_train,
        seeds=tuple(range(cfg.seed, cfg.seed + cfg.n_transfer_seeds)))
    octaves = octaves_per_step(cfg.learning_rates)
    metrics = {"widths": list(cfg.widths), "steps": list(range(cfg.n_steps + 1)),
               "transfer_widths": list(cfg.transfer_widths),
               "learning_rates": list(cfg.learning_rates), "octaves_per_grid_step": octaves}
    checks, transfers = {}, []
    for label, preset in (("SP", sp), ("muP", mup)):
        checks[label] = coord_check(preset, coord_cfg)
        tr = lr_transfer(preset, transfer_cfg)
        transfers.append(tr)
        metrics[label.lower()] = {"parametrization": preset.name,
                                  **_coord_metrics(checks[label]),
                                  **_transfer_metrics(tr, octaves)}
    _save_png(ctx, "coord_check", lambda f: plot_coord_check(
        side_by_side(checks), f,
        title=f"Coordinate check, {cfg.optimizer} lr {cfg.learning_rate:g}: SP grows with "
              "width, muP is flat (legend: log-log slope vs width)"))
    _transfer_figure(cfg, metrics, ctx)
    steps = range(1, cfg.n_steps + 1)
    metrics["mup_max_abs_slope"] = max(max_abs_slope(metrics["mup"]["size_slope"], steps),
                                       max_abs_slope(metrics["mup"]["update_slope"], steps))
    metrics["sp_output_update_slope_step1"] = metrics["sp"]["update_slope"]["output"][1]
    metrics["mup_output_update_slope_step1"] = metrics["mup"]["update_slope"]["output"][1]
    for label in ("sp", "mup"):   # "wider is better": best loss of each width over the last
        best = [min(float(v) for v in curve) for curve in metrics[label]["mean_loss"]]
        metrics[label]["best_loss"] = best
        metrics[label]["worst_widening_ratio"] = max(b / a for a, b in zip(best, best[1:]))
    return metrics


def _transfer_figure(cfg: Config, m: dict, ctx) -> None:
    """Final training loss against log2 learning rate, one curve per width, SP and muP side
    by side; stars mark each width's best rate. Log loss axis: the curves span decades."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    lr = np.log2(m["learning_rates"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(m["transfer_widths"])))
    for ax, label in zip(axes, ("sp", "mup")):
        r = m[label]
        for w, curve, k, col in zip(m["transfer_widths"], r["mean_loss"], r["argmin"], colors):
            curve = np.array([float(v) for v in curve])
            curve[~np.isfinite(curve)] = np.nan       # diverged runs leave a gap
            ax.semilogy(lr, curve, "o-", color=col, ms=3, label=f"width {w}")
            ax.semilogy(lr[k], curve[k], "*", color=col, ms=14)
        ax.set_xlabel("log2 learning rate")
        ax.set_title(f"{r['parametrization']}: best rate moves {r['shift_octaves']:g} "
                     "octaves", fontsize=9)
        ax.legend(fontsize=7)
    axes[0].set_ylabel(f"training loss after {cfg.transfer_steps} steps")
    fig.suptitle(f"Learning-rate transfer across width ({cfg.optimizer}, full-batch "
                 "cross-entropy on digits): muP's optimum stays, SP's drifts")
    fig.tight_layout()
    ctx.save_figure(fig, "lr_transfer")


def claims(m: dict, cfg: Config) -> list[Claim]:
    tol, thr, shift_tol = cfg.slope_tolerance, cfg.sp_growth_threshold, cfg.shift_tolerance_octaves
    w, tw = m["widths"], m["transfer_widths"]
    mu, sp_slope = m["mup_max_abs_slope"], m["sp_output_update_slope_step1"]
    mu_shift, sp_shift = m["mup"]["shift_octaves"], m["sp"]["shift_octaves"]
    widen = m["mup"]["worst_widening_ratio"]
    return [
        Claim("mup_coordinates_width_stable",
              f"muP: largest absolute log-log slope vs width of every layer's coordinate "
              f"size mean abs(h_t) and update mean abs(h_t - h_0), steps 1..{cfg.n_steps}, "
              f"widths {w[0]}..{w[-1]}",
              f"<= {tol:g} (theory 0)", mu, bool(mu <= tol)),
        Claim("sp_output_update_grows",
              f"SP: log-log slope of the output's first update mean abs(f_1 - f_0) vs width "
              f"({w[0]}..{w[-1]})", f">= {thr:g} (theory 1)", sp_slope, bool(sp_slope >= thr)),
        Claim("mup_learning_rate_transfers",
              f"muP: spread of the loss-optimal learning rate over widths {tw[0]}..{tw[-1]} "
              f"(octaves)", f"<= {shift_tol:g}", mu_shift, bool(mu_shift <= shift_tol)),
        Claim("sp_learning_rate_drifts",
              f"SP: spread of the loss-optimal learning rate over widths {tw[0]}..{tw[-1]} "
              f"(octaves)", f"> {shift_tol:g}", sp_shift, bool(sp_shift > shift_tol)),
        Claim("mup_wider_is_better",
              f"muP: largest ratio best loss(next width) / best loss(width) over widths "
              f"{tw[0]}..{tw[-1]}, each at its own best learning rate", "< 1", widen,
              bool(widen < 1)),
    ]
