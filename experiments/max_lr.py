"""Maximal initial learning rate of deep ReLU networks against depth x width.

Iyer, Hanin & Rolnick 2023, "Maximal initial learning rates in deep ReLU networks" (ICML 2023,
arXiv:2212.07295). They define the maximal initial learning rate ``eta*`` -- the largest
constant learning rate with which a randomly initialised network still begins to train and
reaches a threshold accuracy -- and find that for constant-width fully-connected ReLU networks
it is well predicted by a power of ``depth x width`` when the width is large compared to the
depth and the input layer is trained at a small learning rate. They relate ``eta*`` to the
sharpness ``lambda_1`` at initialisation ("closely though not inversely related") and prove
bounds on ``lambda_1`` in terms of depth x width.

Setup (scaled down). ReLU MLP with ``L`` hidden layers of width ``n`` in standard
parametrisation with He initialisation, a linear read-out, zero biases::

    h^1 = x W_in + b_in,  h^{l+1} = relu(h^l) W_l + b_l,  f = relu(h^L) w_out + b_out,
    W_in ~ N(0, 2/d),  W_l ~ N(0, 2/n),  w_out ~ N(0, 1/n),

trained by full-batch GD on ``loss = |f - y|^2 / (2 N)`` for ``n_steps`` steps, the input layer
at ``input_lr_scale`` times the learning rate (their condition (ii)). Data: ``N`` points on the
sphere of radius ``sqrt(d)``, standardised targets from a fixed smooth teacher. Training
"succeeds" at learning rate ``eta`` if after ``n_steps`` the loss is finite and at most
``loss_threshold`` times the loss of the best constant predictor (``Var(y) / 2``) -- the
regression form of their accuracy threshold. ``eta*`` is found per network by bisection in
``log eta`` on a bracket whose ends are checked to succeed / fail.

Kernel reference. With ``Theta_0`` the initial eNTK (per-layer learning-rate scales included),
one GD step maps the residual by ``I - (eta / N) Theta_0``, which is stable iff
``eta < eta_kernel = 2 N / lambda_max(Theta_0)`` (:func:`ntk.predict.max_learning_rate`); for
MSE ``lambda_max(Theta_0) / N`` is the Gauss-Newton sharpness. In standard parametrisation each
hidden layer adds ``O(n)`` to ``Theta_0``, so ``eta_kernel ~ (L n)^-1``. Beyond ``eta_kernel`` a
wide network can still train through the catapult phase (Lewkowycz et al. 2020), up to about
``12 / lambda_0`` for ReLU nets, i.e. ``6 eta_kernel``: the band we expect ``eta*`` in.

Claims: ``eta*`` falls with ``L n`` (rank correlation over the grid), its typical ratio to
``eta_kernel`` lies in the band ``[1, 6]`` and no network's ``eta*`` is below the kernel bound.
The fitted exponent of ``eta*`` in ``L n`` and that of the ratio ``eta* / eta_kernel`` (zero if
``eta*`` were inversely proportional to the sharpness) are reported; with three seeds per point
on one decade of ``L n`` they move by a few tenths with the seed, so no claim rests on them.

Scaled down: depth 2..8 and width 32..64 on 16 points, 30 full-batch GD steps, ``eta*`` by
bisection for 3 seeds each (full: depth 2..8, width 64..256, 32 points, 50 steps).

Networks of every depth share one compiled loop per width: layers beyond the depth are
pass-through (``jnp.where`` on the layer index), so their parameters get exactly zero gradient
and contribute nothing to the eNTK.
"""
from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

import ntk
from experiments.claims import at_least, at_most, claim, within

SUMMARY = "Iyer, Hanin & Rolnick 2023: maximal initial learning rate against depth x width"
PAPER = "iyer2023maxlr"
CITATION = ("Iyer, G., Hanin, B. & Rolnick, D. (2023). Maximal initial learning rates in deep "
            "ReLU networks. ICML 2023, arXiv:2212.07295.")


@dataclasses.dataclass(frozen=True)
class Config:
    in_dim: int = 8
    n_train: int = 16
    depths: tuple[int, ...] = (2, 4, 8)
    widths: tuple[int, ...] = (32, 64)
    n_seeds: int = 3
    n_steps: int = 30
    loss_threshold: float = 0.5        # success: loss_T <= this * Var(y) / 2
    input_lr_scale: float = 0.1
    bracket: tuple[float, float] = (0.5, 32.0)   # bisection bracket in units of eta_kernel
    n_bisections: int = 6              # resolution (bracket ratio)^(2^-n): 6.7 %
    seed: int = 0

    @classmethod
    def quick(cls) -> "Config":
        return cls()

    @classmethod
    def full(cls) -> "Config":
        return cls(in_dim=16, n_train=32, depths=(2, 4, 8), widths=(64, 128, 256),
                   n_seeds=6, n_steps=50, n_bisections=8)

    def validate(self) -> None:
        if self.in_dim < 1 or self.n_train < 2:
            raise ValueError(f"in_dim must be >= 1 and n_train >= 2, got {self.in_dim}, "
                             f"{self.n_train}")
        for name in ("depths", "widths"):
            v = getattr(self, name)
            if not v or min(v) < 1 or list(v) != sorted(set(v)):
                raise ValueError(f"{name} must be increasing positive ints, got {v}")
        if len(self.depths) * len(self.widths) < 3:
            raise ValueError("depths x widths must give >= 3 grid points to fit an exponent")
        if self.n_seeds < 1 or self.n_steps < 1 or self.n_bisections < 1:
            raise ValueError("n_seeds, n_steps and n_bisections must be >= 1")
        if not 0 < self.bracket[0] < self.bracket[1]:
            raise ValueError(f"bracket must be 0 < low < high, got {self.bracket}")
        if not 0 < self.loss_threshold < 1:
            raise ValueError(f"loss_threshold must lie in (0, 1), got {self.loss_threshold}")
        if self.input_lr_scale <= 0:
            raise ValueError(f"input_lr_scale must be > 0, got {self.input_lr_scale}")


def init_params(rng, in_dim: int, width: int, max_depth: int, dtype=np.float32):
    """He-initialised ReLU MLP with ``max_depth`` hidden layers and zero biases, drawn from
    the numpy Generator ``rng`` (blocks beyond a network's depth are drawn but unused)."""
    n_hidden = max(max_depth - 1, 1)   # keep one (unused) block so shapes never vanish
    normal = lambda shape, fan_in: (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
                                    ).astype(dtype)
    return {
        "w_in": normal((in_dim, width), in_dim),
        "b_in": np.zeros(width, dtype),
        "w_hidden": normal((n_hidden, width, width), width),
        "b_hidden": np.zeros((n_hidden, width), dtype),
        "w_out": normal((width, 1), 2 * width),       # variance 1 / width: linear read-out
        "b_out": np.zeros(1, dtype),
    }


def apply_fn(params, x, depth):
    """``f(x)``, ``(N, d) -> (N, 1)``, of the network with ``depth`` hidden layers: hidden
    blocks with index ``>= depth - 1`` pass their input through unchanged."""
    h = jax.nn.relu(x @ params["w_in"] + params["b_in"])

    def block(h, inputs):
        index, w, b = inputs
        return jnp.where(index < depth - 1, jax.nn.relu(h @ w + b), h), None

    n_hidden = params["w_hidden"].shape[0]
    h, _ = jax.lax.scan(block, h, (jnp.arange(n_hidden), params["w_hidden"],
                                   params["b_hidden"]))
    return h @ params["w_out"] + params["b_out"]


def lr_scales(params, input_lr_scale: float):
    """Per-leaf learning-rate multipliers: ``input_lr_scale`` on the input layer, 1 elsewhere."""
    return {k: (input_lr_scale if k in ("w_in", "b_in") else 1.0) for k in params}


def make_data(cfg: Config, dtype=np.float32):
    """``N`` inputs on the sphere of radius ``sqrt(d)``; targets ``sin(2 x . beta / sqrt(d))``
    with ``beta ~ N(0, I)``, standardised to zero mean and unit variance."""
    rng = np.random.default_rng([cfg.seed, 1000])
    x = rng.standard_normal((cfg.n_train, cfg.in_dim))
    x = x / np.linalg.norm(x, axis=1, keepdims=True) * np.sqrt(cfg.in_dim)
    y = np.sin(2.0 * x @ rng.standard_normal(cfg.in_dim) / np.sqrt(cfg.in_dim))
    return x.astype(dtype), ((y - y.mean()) / y.std()).astype(dtype)


def _loss(params, x, y, depth):
    return 0.5 * jnp.mean((apply_fn(params, x, depth)[:, 0] - y) ** 2)


@partial(jax.jit, static_argnames=("n_steps",))
def final_losses(params, depth, lr, x, y, scales, n_steps):
    """Loss after ``n_steps`` of full-batch GD, batched over the leading axis of ``params``,
    ``depth`` and ``lr`` (``scales``: per-leaf learning-rate multipliers)."""
    def one(p, d, eta):
        def step(p, _):
            g = jax.grad(_loss)(p, x, y, d)
            return jax.tree.map(lambda a, b, s: a - eta * s * b, p, g, scales), None
        p, _ = jax.lax.scan(step, p, None, length=n_steps)
        return _loss(p, x, y, d)
    return jax.vmap(one)(params, depth, lr)


def bisect_log(success, low, high, n_iter: int):
    """Largest ``eta`` in ``[low, high]`` (arrays, one per problem) with ``success(eta)``,
    assuming success below and failure above a threshold, by ``n_iter`` geometric bisections.

    ``success``: ``(B,) -> (B,) bool``. Returns ``(eta, ok_low, ok_high)``: ``eta`` is the
    largest point known to succeed; where ``low`` fails it is NaN, where ``high`` succeeds it
    is ``high`` (the threshold lies above the bracket).
    """
    low, high = np.asarray(low, float), np.asarray(high, float)
    if low.shape != high.shape or np.any(~(0 < low)) or np.any(~(low < high)):
        raise ValueError(f"need 0 < low < high elementwise, got low={low}, high={high}")
    ok_low, ok_high = np.asarray(success(low)), np.asarray(success(high))
    lo, hi = low.copy(), high.copy()
    for _ in range(n_iter):
        mid = np.sqrt(lo * hi)
        ok = np.asarray(success(mid))
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    eta = np.where(ok_high, high, np.where(ok_low, lo, np.nan))
    return eta, ok_low, ok_high


def run(cfg: Config, ctx) -> dict:
    cfg.validate()
    x, y = make_data(cfg)
    baseline = 0.5 * float(np.var(y))             # loss of the best constant predictor
    max_depth = max(cfg.depths)
    depths = np.repeat(np.asarray(cfg.depths), cfg.n_seeds)          # (B,) depth-major
    n_batch = len(depths)
    grid = {k: [] for k in ("depth", "width", "eta_star", "eta_kernel", "ok_low", "ok_high")}
    for width in cfg.widths:
        rng = np.random.default_rng([cfg.seed, width])
        nets = [init_params(rng, cfg.in_dim, width, max_depth) for _ in range(cfg.n_seeds)]
        # batch (depth-major): every depth reuses the same n_seeds initialisations
        params = jax.tree.map(lambda *a: jnp.asarray(np.stack(a * len(cfg.depths))), *nets)
        scales = lr_scales(nets[0], cfg.input_lr_scale)
        kernel_fn = ntk.empirical_ntk_fn(apply_fn, implementation="jacobian", vmap_axes=0,
                                         param_scales=scales)
        kernels = jax.jit(jax.vmap(lambda p, d: kernel_fn(x, x, p, depth=d)))(
            params, jnp.asarray(depths))
        eta_kernel = np.array([ntk.predict.max_learning_rate(k) for k in np.asarray(kernels)])

        def success(lr):
            loss = np.asarray(final_losses(params, jnp.asarray(depths),
                                           jnp.asarray(lr, jnp.float32), x, y, scales,
                                           cfg.n_steps))
            return np.isfinite(loss) & (loss <= cfg.loss_threshold * baseline)

        eta, ok_low, ok_high = bisect_log(success, cfg.bracket[0] * eta_kernel,
                                          cfg.bracket[1] * eta_kernel, cfg.n_bisections)
        grid["depth"] += depths.tolist()
        grid["width"] += [width] * n_batch
        grid["eta_star"] += eta.tolist()
        grid["eta_kernel"] += eta_kernel.tolist()
        grid["ok_low"] += ok_low.tolist()
        grid["ok_high"] += ok_high.tolist()
    return _summarise(cfg, grid)


def _summarise(cfg, grid) -> dict:
    """Per-(L, n) geometric means over the seeds whose bracket was valid, and the fits."""
    d, w = np.asarray(grid["depth"]), np.asarray(grid["width"])
    eta, kern = np.asarray(grid["eta_star"]), np.asarray(grid["eta_kernel"])
    valid = np.isfinite(eta) & ~np.asarray(grid["ok_high"], bool)
    geo = lambda v: float(np.exp(np.mean(np.log(v)))) if len(v) else float("nan")
    per = {k: [] for k in ("depth", "width", "depth_x_width", "eta_star", "eta_kernel",
                           "ratio", "n_valid")}
    for n in cfg.widths:
        for L in cfg.depths:
            sel = (d == L) & (w == n) & valid
            per["depth"].append(int(L))
            per["width"].append(int(n))
            per["depth_x_width"].append(int(L * n))
            per["eta_star"].append(geo(eta[sel]))
            per["eta_kernel"].append(geo(kern[sel]))
            per["ratio"].append(geo(eta[sel] / kern[sel]))
            per["n_valid"].append(int(sel.sum()))
    ln = np.log(per["depth_x_width"])
    e, k, r = (np.asarray(per[key]) for key in ("eta_star", "eta_kernel", "ratio"))
    fit = lambda v: ([float(c) for c in np.polyfit(ln, np.log(v), 1)]
                     if np.all(np.isfinite(v)) else [float("nan")] * 2)
    exponent, log_c = fit(e)
    ratios = eta[valid] / kern[valid]
    return {
        "per_network": grid, "grid": per,
        "eta_star_exponent": exponent, "eta_star_prefactor": float(np.exp(log_c)),
        "eta_kernel_exponent": fit(k)[0],
        "ratio_exponent": fit(r)[0],
        "ratio_geometric_mean": geo(ratios),
        "ratio_min": float(np.min(ratios)) if len(ratios) else float("nan"),
        "ratio_max": float(np.max(ratios)) if len(ratios) else float("nan"),
        "spearman_eta_star_vs_depth_x_width": (float(stats.spearmanr(e, ln).statistic)
                                               if np.all(np.isfinite(e)) else float("nan")),
        "n_networks": int(len(eta)), "n_valid": int(valid.sum()),
        "n_low_end_failed": int(np.sum(~np.asarray(grid["ok_low"], bool))),
        "n_high_end_succeeded": int(np.sum(np.asarray(grid["ok_high"], bool))),
    }


def figures(results: dict) -> dict:
    """``eta*`` and the kernel bound against ``L n`` (log-log, with the fitted power law);
    their ratio against ``L n`` with the band the claims check."""
    from matplotlib.figure import Figure
    m = results["metrics"]
    g = m["grid"]
    ln = np.asarray(g["depth_x_width"], float)
    widths = np.asarray(g["width"])
    eta_star, eta_kernel = np.asarray(g["eta_star"], float), np.asarray(g["eta_kernel"], float)
    ratio = np.asarray(g["ratio"], float)
    fig = Figure(figsize=(10, 3.8))
    axes = fig.subplots(1, 2)
    for n, mark in zip(sorted(set(widths.tolist())), "osd^v<>"):
        sel = widths == n
        axes[0].loglog(ln[sel], eta_star[sel], mark, label=f"eta*, width {n}")
        axes[0].loglog(ln[sel], eta_kernel[sel], mark, mfc="none", color="gray",
                       label=f"2N/lambda_max(Theta_0), width {n}")
        axes[1].semilogx(ln[sel], ratio[sel], mark + "-", label=f"width {n}")
    xs = np.geomspace(ln.min(), ln.max(), 20)
    exponent = float(m["eta_star_exponent"])
    axes[0].loglog(xs, float(m["eta_star_prefactor"]) * xs ** exponent, "k--", lw=1,
                   label=f"fit (L n)^{exponent:.2f}")
    axes[0].set_xlabel("depth x width  L n")
    axes[0].set_ylabel("learning rate")
    axes[0].set_title("Maximal initial learning rate vs depth x width")
    axes[0].legend(fontsize=6)
    band = next(c for c in CLAIMS if c.id == "eta_star_in_catapult_band").bound.args
    for v, text in zip(band, ("kernel bound", "catapult limit 12/lambda_0")):
        axes[1].axhline(v, color="gray", lw=0.8, ls=":")
        axes[1].annotate(text, (ln.min(), v), fontsize=7, color="gray", va="bottom")
    axes[1].set_xlabel("depth x width  L n")
    axes[1].set_ylabel("eta* / (2N / lambda_max(Theta_0))")
    axes[1].set_title("eta* against the kernel stability bound")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return {"max_lr": fig}


def _excluded(m: dict) -> str:
    return (f"; {m['n_networks'] - m['n_valid']} of {m['n_networks']} networks reached the "
            "loss threshold at no learning rate of the bracket and are left out")


# Thresholds (the old Config defaults): a rank correlation of -0.8 or below over the grid; the
# band [1, 6] is the kernel bound 2N / lambda_max(Theta_0) and the catapult limit 12 / lambda_0
# of Lewkowycz et al. 2020 (= 6 x the kernel bound), in units of the kernel bound.
CLAIMS = (
    claim("eta_star_decreases_with_depth_x_width",
          lambda m: "Spearman rank correlation of eta* with L n over the grid (fit: eta* ~ "
                    f"(L n)^{float(m['eta_star_exponent']):.2f}; kernel bound "
                    f"(L n)^{float(m['eta_kernel_exponent']):.2f})",
          "spearman_eta_star_vs_depth_x_width", at_most(-0.8)),
    claim("eta_star_in_catapult_band",
          lambda m: "geometric mean over networks of eta* / (2N / lambda_max(Theta_0)) (its "
                    f"exponent in L n: {float(m['ratio_exponent']):.2f})",
          "ratio_geometric_mean", within(1.0, 6.0)),
    claim("eta_star_above_kernel_bound",
          lambda m: "min over networks of eta* / (2N / lambda_max(Theta_0))" + _excluded(m),
          "ratio_min", at_least(1.0)),
)
