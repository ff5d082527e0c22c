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

Scaled down: depth-2 ReLU MLPs with Adam; coordinate check at widths 64, 256, 1024 (2 steps,
zero readout), learning-rate sweeps 2^-12..1 at widths 16, 64, 256 on digits (full: limits'
full coordinate-check and transfer configs).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from experiments.claims import at_least, at_most, claim, greater, less
from limits import parametrization as P
from limits.coord_check import CoordCheckConfig, coord_check, plot_coord_check
from limits.transfer import TransferConfig, lr_transfer

SUMMARY = ("Yang et al. (Tensor Programs IV/V): coordinate check and learning-rate transfer "
           "across width, SP vs muP")
PAPER = "yang2021tp5"
CITATION = ("Yang, G., Hu, E. J., Babuschkin, I., Sidor, S., Liu, X., Farhi, D., Ryder, N., "
            "Pachocki, J., Chen, W. & Gao, J. (2021). Tensor Programs V: Tuning large neural "
            "networks via zero-shot hyperparameter transfer. arXiv:2203.03466 (NeurIPS 2021).")
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
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")


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
    for label, preset in (("SP", sp), ("muP", mup)):
        tr = lr_transfer(preset, transfer_cfg)
        metrics[label.lower()] = {"parametrization": preset.name,
                                  **_coord_metrics(coord_check(preset, coord_cfg)),
                                  **_transfer_metrics(tr, octaves)}
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


def _coord_result(m: dict, label: str) -> dict:
    """One parametrization's coordinate check from the metrics, shaped like
    :func:`limits.coord_check.coord_check`'s result (the seed mean as a single seed)."""
    r = m[label]
    floats = lambda table, seed_axis: {
        name: np.asarray(v, float)[None] if seed_axis else np.asarray(v, float)
        for name, v in table.items()}
    return {"parametrization": r["parametrization"], "widths": m["widths"], "steps": m["steps"],
            "size": floats(r["size"], True), "update": floats(r["update"], True),
            "size_slope": floats(r["size_slope"], False),
            "update_slope": floats(r["update_slope"], False)}


def figures(results: dict) -> dict:
    """``coord_check``: every layer's coordinate size and update against width, SP and muP in
    the same panels (:func:`limits.coord_check.plot_coord_check`). ``lr_transfer``: final
    training loss against log2 learning rate, one curve per width, SP and muP side by side;
    stars mark each width's best rate. Log loss axis: the curves span decades."""
    import matplotlib
    from matplotlib.figure import Figure
    m, cfg = results["metrics"], results["config"]
    coord = plot_coord_check(
        side_by_side({"SP": _coord_result(m, "sp"), "muP": _coord_result(m, "mup")}),
        title=f"Coordinate check, {cfg['optimizer']} lr {cfg['learning_rate']:g}: SP grows "
              "with width, muP is flat (legend: log-log slope vs width)")
    lr = np.log2(np.asarray(m["learning_rates"], float))
    fig = Figure(figsize=(10, 3.8))
    axes = fig.subplots(1, 2, sharey=True)
    colors = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, len(m["transfer_widths"])))
    for ax, label in zip(axes, ("sp", "mup")):
        r = m[label]
        for w, curve, k, col in zip(m["transfer_widths"], r["mean_loss"], r["argmin"], colors):
            curve = np.asarray(curve, float)
            curve[~np.isfinite(curve)] = np.nan       # diverged runs leave a gap
            ax.semilogy(lr, curve, "o-", color=col, ms=3, label=f"width {w}")
            ax.semilogy(lr[k], curve[k], "*", color=col, ms=14)
        ax.set_xlabel("log2 learning rate")
        ax.set_title(f"{r['parametrization']}: best rate moves {r['shift_octaves']:g} "
                     "octaves", fontsize=9)
        ax.legend(fontsize=7)
    axes[0].set_ylabel(f"training loss after {cfg['transfer_steps']} steps")
    fig.suptitle(f"Learning-rate transfer across width ({cfg['optimizer']}, full-batch "
                 "cross-entropy on digits): muP's optimum stays, SP's drifts")
    fig.tight_layout()
    return {"coord_check": coord, "lr_transfer": fig}


def _widths(m: dict, key: str) -> str:
    return f"{m[key][0]}..{m[key][-1]}"


# Thresholds (the old defaults): muP's slopes within 0.1 of the theory's 0; SP's output update
# slope at least 0.5 (theory 1); muP's best rate moves at most one grid octave, SP's more.
CLAIMS = (
    claim("mup_coordinates_width_stable",
          lambda m: f"muP: largest absolute log-log slope vs width of every layer's coordinate "
                    f"size mean abs(h_t) and update mean abs(h_t - h_0), steps "
                    f"1..{m['steps'][-1]}, widths {_widths(m, 'widths')} (theory 0)",
          "mup_max_abs_slope", at_most(0.1)),
    claim("sp_output_update_grows",
          lambda m: f"SP: log-log slope of the output's first update mean abs(f_1 - f_0) vs "
                    f"width ({_widths(m, 'widths')}) (theory 1)",
          "sp_output_update_slope_step1", at_least(0.5)),
    claim("mup_learning_rate_transfers",
          lambda m: f"muP: spread of the loss-optimal learning rate over widths "
                    f"{_widths(m, 'transfer_widths')} (octaves)",
          lambda m: m["mup"]["shift_octaves"], at_most(1.0)),
    claim("sp_learning_rate_drifts",
          lambda m: f"SP: spread of the loss-optimal learning rate over widths "
                    f"{_widths(m, 'transfer_widths')} (octaves)",
          lambda m: m["sp"]["shift_octaves"], greater(1.0)),
    # TP V Fig. 1: under muP every wider network reaches a lower best loss
    claim("mup_wider_is_better",
          lambda m: f"muP: largest ratio best loss(next width) / best loss(width) over widths "
                    f"{_widths(m, 'transfer_widths')}, each at its own best learning rate",
          lambda m: m["mup"]["worst_widening_ratio"], less(1.0)),
)
