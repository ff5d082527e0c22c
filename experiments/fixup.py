"""Fixup: deep residual networks train without normalisation when the branches start small.

Zhang, Dauphin & Ma 2019, "Fixup Initialization: Residual Learning Without Normalization"
(ICLR 2019, arXiv:1901.09321).

Model: a residual MLP without normalisation, ``L`` blocks of ``m = 2`` layers each
(pre-activation style, row vectors, width ``n``, ``phi = ReLU``)::

    Y^0 = x W^in + b^in,
    Y^l = Y^{l-1} + s_l phi(phi(Y^{l-1}) W^l_1 + a_l) W^l_2 + c_l      (l = 1..L),
    f(x) = Y^L W^out + b^out,

with scalar multipliers ``s_l`` and scalar biases ``a_l, c_l`` (Fixup's replacement for the
affine part of normalisation). Two initialisations, both with ``W^in ~ N(0, 1)`` (inputs have
``|x|^2 ~ 1``, so ``Y^0`` has unit-variance coordinates):

- ``he`` (standard): ``W^l_1, W^l_2 ~ N(0, 2/n)``, ``s_l = 1``, ``W^out ~ N(0, 1/n)``, biases 0.
  Given ``Y = Y^{l-1}``, ``z = phi(Y) W_1`` is a centred Gaussian with
  ``E|phi(z)|^2 = |phi(Y)|^2``, the branch has ``E|branch|^2 = 2 |phi(Y)|^2`` and the cross
  term vanishes, so ``E[|Y^l|^2 | Y] = |Y|^2 + 2 |phi(Y)|^2 ~ 2 |Y|^2``: every block doubles the
  squared norm and ``|Y^L| ~ 2^{L/2}``. Backwards, ``dLoss/dY^{l-1} = dLoss/dY^l (I + J_l^T)``
  doubles squared gradients the same way (under the usual gradient-independence
  approximation). At finite width the ratios fluctuate and ``E log < log E``, so the log-norm
  grows a little slower than ``(log 2)/2`` per block; the claims therefore average the
  per-block ratios ``|Y^l|^2 / |Y^{l-1}|^2`` (expected 2; their mean over 64 blocks has a
  Monte Carlo standard deviation of about 0.08 at width 64, and the tolerance is 3 of those).
- ``fixup`` (Zhang et al., Sec. 3): the classifier ``W^out`` and the last layer of every
  branch ``W^l_2`` start at 0; the other ``m - 1`` branch layers get the standard init scaled
  by ``L^{-1/(2m-2)}`` (``L^{-1/2}`` here); ``s_l = 1``, biases 0. At init ``Y^L = Y^0`` and only
  the classifier has a gradient, so output and gradient are O(1) whatever the depth. Their
  argument for the exponent: once ``W^l_2`` moves by ``O(eta)``, a branch's inner activation is
  ``O(L^{-(m-1)/(2m-2)}) = O(L^{-1/2})``, its gradient step on ``W^l_2`` changes the branch
  output by ``eta * (L^{-1/2})^2 = eta / L``, and the ``L`` branches together change ``f`` by
  ``Theta(eta)``: the per-step function update is depth-independent.

Measured on scikit-learn digits (full-batch gradient descent, softmax cross-entropy, one
learning rate ``eta`` for both inits) at depths ``L`` in ``cfg.depths``: the per-block growth
of the stream and of its gradient at init, the parameter-gradient norm at init, training
curves, and after every ``log_every`` steps the function change of one more GD step,
``|f(theta - eta grad) - f(theta)|_rms / eta``, for all parameters, for the branch weights
``W_1, W_2`` alone and for the branch scalars ``s, a, c`` alone. The claim on the update uses
the branch weights, averaged over the logged steps ``0 < t <= update_window`` and over
``update_nets`` independently drawn networks per depth (one network's update varies by tens
of percent from draw to draw). At ``t = 0`` only the classifier moves, which is
depth-independent by construction; in runs of 100+ steps at width 64 the deepest nets'
updates kept growing, by about 2x at L = 64, so the claim is about the start of training,
where the argument lives. The argument covers the weight layers it scales, not the scalars:
the ``L`` stream biases ``c_l`` all receive the same gradient (the sum of ``dLoss/dY^l``,
nearly equal across blocks while the branches are small) and move together, so their summed
effect can grow with ``L``; measured, their update is depth-dependent and noisy in time.

Scaled down: width 64, 64 digits, L = 4, 16, 64 blocks, 50 GD steps (full: width 128, 512
digits, L = 4 .. 128, 500 steps).
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from experiments._init_nets import cross_entropy, digits_classification, gd_train, log_slope
from experiments.claims import claim, close_to, greater, less, within

SUMMARY = ("Zhang, Dauphin & Ma 2019: Fixup initialisation trains deep residual nets without "
           "normalisation")
PAPER = "zhang2019fixup"
CITATION = ("Zhang, H., Dauphin, Y. N. & Ma, T. (2019). Fixup initialization: residual "
            "learning without normalization. ICLR 2019, arXiv:1901.09321.")
INITS = ("he", "fixup")


@dataclasses.dataclass(frozen=True)
class Config:
    depths: tuple[int, ...] = (4, 16, 64)
    width: int = 64
    n_train: int = 64
    lr: float = 0.05
    n_steps: int = 50
    log_every: int = 5
    update_window: int = 25         # per-step updates averaged over logged steps in (0, this]
    update_nets: int = 3            # ... and over this many independent Fixup nets per depth
    checkpoint_every: int = 10
    seed: int = 0

    @classmethod
    def quick(cls) -> "Config":
        return cls()

    @classmethod
    def full(cls) -> "Config":
        return cls(depths=(4, 8, 16, 32, 64, 128), width=128, n_train=512, n_steps=500)

    def validate(self) -> None:
        if len(self.depths) < 2 or min(self.depths) < 1:
            raise ValueError(f"depths needs >= 2 positive depths, got {self.depths}")
        if self.n_steps % self.log_every:
            raise ValueError(f"n_steps={self.n_steps} must be a multiple of "
                             f"log_every={self.log_every}")
        if self.update_nets < 1:
            raise ValueError(f"update_nets must be >= 1, got {self.update_nets}")
        if (not self.log_every <= self.update_window <= self.n_steps
                or self.update_window % self.log_every):
            raise ValueError(f"update_window={self.update_window} must be a multiple of "
                             f"log_every in [log_every, n_steps] = [{self.log_every}, "
                             f"{self.n_steps}]")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


def fixup_branch_scale(depth: int, layers_per_branch: int) -> float:
    """Fixup's factor ``L^{-1/(2m-2)}`` for the first ``m - 1`` layers of every branch."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive int, got {depth!r}")
    if (isinstance(layers_per_branch, bool) or not isinstance(layers_per_branch, int)
            or layers_per_branch < 2):
        raise ValueError("layers_per_branch must be an int >= 2 (the exponent 1/(2m-2) needs "
                         f"m >= 2), got {layers_per_branch!r}")
    return float(depth) ** (-1.0 / (2 * layers_per_branch - 2))


def init_resmlp(rng: np.random.Generator, in_dim: int, width: int, depth: int, out_dim: int,
                init: str) -> dict:
    """Parameters of the residual MLP (block weights stacked along a leading ``(L, ...)`` axis)
    under ``init`` in :data:`INITS` (see the module docstring); Gaussians from NumPy's ``rng``
    in the order embedding, ``W_1``, ``W_2``, classifier (whatever the init, so both inits
    share the embedding and ``W_1`` directions at a given seed)."""
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    he = math.sqrt(2.0 / width)
    w_in = rng.standard_normal((in_dim, width))
    w1 = he * rng.standard_normal((depth, width, width))
    w2 = he * rng.standard_normal((depth, width, width))
    w_out = rng.standard_normal((width, out_dim)) / math.sqrt(width)
    if init == "fixup":
        w1 = w1 * fixup_branch_scale(depth, 2)
        w2, w_out = np.zeros_like(w2), np.zeros_like(w_out)
    params = {"input": {"w": w_in, "b": np.zeros(width)},
              "blocks": {"w1": w1, "w2": w2, "a": np.zeros(depth), "c": np.zeros(depth),
                         "s": np.ones(depth)},
              "output": {"w": w_out, "b": np.zeros(out_dim)}}
    return jax.tree.map(lambda a: jnp.asarray(np.asarray(a, np.float32)), params)


def resmlp_streams(params, x, perturbation=None):
    """The residual stream ``[Y^0, ..., Y^L]`` stacked as ``(L + 1, N, n)``. An optional
    ``perturbation`` of that shape is added to every ``Y^l`` as it is formed, so the gradient
    of a loss with respect to it at zero is ``[dLoss/dY^0, ..., dLoss/dY^L]``."""
    eps = (jnp.zeros((params["blocks"]["s"].shape[0] + 1, x.shape[0],
                      params["input"]["w"].shape[1]), x.dtype)
           if perturbation is None else perturbation)
    y0 = x @ params["input"]["w"] + params["input"]["b"] + eps[0]

    def block(y, inputs):
        p, e = inputs
        branch = jax.nn.relu(jax.nn.relu(y) @ p["w1"] + p["a"]) @ p["w2"]
        y = y + p["s"] * branch + p["c"] + e
        return y, y
    _, ys = jax.lax.scan(block, y0, (params["blocks"], eps[1:]))
    return jnp.concatenate([y0[None], ys])


def resmlp_apply(params, x):
    """Logits ``f(x) = Y^L W^out + b^out``: ``(N, d) -> (N, C)``."""
    y0 = x @ params["input"]["w"] + params["input"]["b"]

    def block(y, p):
        branch = jax.nn.relu(jax.nn.relu(y) @ p["w1"] + p["a"]) @ p["w2"]
        return y + p["s"] * branch + p["c"], None
    y_last = jax.lax.scan(block, y0, params["blocks"])[0]
    return y_last @ params["output"]["w"] + params["output"]["b"]


def per_block_growth(stream) -> np.ndarray:
    """``|Z^l|_F^2 / |Z^{l-1}|_F^2`` for ``l = 1..L`` from a stacked ``(L + 1, N, n)`` stream,
    in float64 (deep He networks overflow float32 squares)."""
    sq = np.sum(np.asarray(stream, np.float64) ** 2, axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return sq[1:] / sq[:-1]


def _tree_norm(tree) -> float:
    return float(np.sqrt(sum(np.sum(np.asarray(v, np.float64) ** 2)
                             for v in jax.tree.leaves(tree))))


def _init_rng(cfg, depth):
    # one stream per depth, the same for both inits
    return np.random.default_rng([cfg.seed, depth])


def measurements(params, x, y, lr) -> dict:
    """Everything the study reads at one parameter point (cross-entropy loss on ``(x, y)``):

    - ``loss``; ``stream`` ``[Y^0..Y^L]``, ``stream_grad`` ``[dLoss/dY^0..dLoss/dY^L]``
      (gradient with respect to a zero perturbation of the stream), ``grad`` (parameters);
    - one GD step's function change ``|f(theta') - f(theta)|_rms / lr``,
      ``theta' = theta - lr grad``: ``update`` (all parameters), ``weight_update`` (only the
      branch weights ``W_1, W_2``, the layers Fixup's Theta(eta) argument scales) and
      ``scalar_update`` (only the branch multipliers and scalar biases ``s, a, c``).
    """
    eps = jnp.zeros((params["blocks"]["s"].shape[0] + 1, x.shape[0],
                     params["input"]["w"].shape[1]), x.dtype)
    logits = lambda p, ys: ys[-1] @ p["output"]["w"] + p["output"]["b"]

    def loss(p, e):
        ys = resmlp_streams(p, x, e)
        return cross_entropy(logits(p, ys), y), ys
    (value, ys), (g, g_stream) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
        params, eps)
    f0 = logits(params, ys)
    stepped = jax.tree.map(lambda a, b: a - lr * b, params, g)

    def only(names):
        blocks = {k: (stepped if k in names else params)["blocks"][k] for k in params["blocks"]}
        return {**params, "blocks": blocks}
    rms = lambda p: jnp.sqrt(jnp.mean((resmlp_apply(p, x) - f0) ** 2)) / lr
    return {"loss": value, "stream": ys, "stream_grad": g_stream, "grad": g,
            "update": rms(stepped), "weight_update": rms(only(("w1", "w2"))),
            "scalar_update": rms(only(("s", "a", "c")))}


def run(cfg: Config, ctx) -> dict:
    cfg.validate()
    x, y, _, _ = digits_classification(cfg.n_train, 0, cfg.seed)
    loss = lambda p: cross_entropy(resmlp_apply(p, x), y)

    measure = jax.jit(lambda p: measurements(p, x, y, cfg.lr))   # one program per depth

    def record(p, t):
        got = measure(p)
        return {k: float(got[k]) for k in ("loss", "update", "weight_update", "scalar_update")}

    m = {"depths": list(cfg.depths), "lr": cfg.lr, "update_window": cfg.update_window,
         "update_nets": cfg.update_nets}
    for init in INITS:
        fwd, bwd, grad_norm, curves, final, best, diverged_at = [], [], [], [], [], [], []
        for depth in cfg.depths:
            p0 = init_resmlp(_init_rng(cfg, depth), x.shape[1], cfg.width, depth, y.shape[1],
                             init)
            got = measure(p0)
            fwd.append(per_block_growth(got["stream"]).tolist())
            # |G^{l-1}|^2 / |G^l|^2 (nan for Fixup at init, whose stream gradient is 0)
            bwd.append(per_block_growth(np.asarray(got["stream_grad"])[::-1]).tolist()[::-1])
            grad_norm.append(_tree_norm(got["grad"]))
            _, hist, _ = gd_train(
                ctx, f"{init}-L{depth}", p0, loss, lr=cfg.lr, n_steps=cfg.n_steps,
                chunk=cfg.log_every, record=record,
                stop=lambda h: not math.isfinite(h["loss"][-1]),
                checkpoint_every=cfg.checkpoint_every)
            curves.append(hist)
            finite = [v for v in hist["loss"] if math.isfinite(v)]
            final.append(hist["loss"][-1])
            best.append(min(finite))
            bad = [s for s, v in zip(hist["step"], hist["loss"]) if not math.isfinite(v)]
            diverged_at.append(bad[0] if bad else -1)
        ratio = [float(np.sqrt(np.prod(f))) for f in fwd]   # |Y^L|_F / |Y^0|_F
        m[init] = {"forward_growth_per_block": fwd, "backward_growth_per_block": bwd,
                   "mean_forward_growth": [float(np.mean(f)) for f in fwd],
                   "mean_backward_growth": [float(np.mean(b)) for b in bwd],
                   "forward_ratio": ratio, "init_grad_norm": grad_norm,
                   "forward_slope_per_block": log_slope(cfg.depths, ratio),
                   "grad_slope_per_block": log_slope(cfg.depths, grad_norm),
                   "curves": curves, "final_loss": final, "best_loss": best,
                   "nonfinite_at_step": diverged_at}
        # per-step updates averaged over the early window (logged steps 0 < t <= window; at
        # t = 0 a Fixup network's blocks have no gradient: the classifier is zero) and, for
        # Fixup, over update_nets independent networks per depth (the update of a single
        # network varies by tens of percent from draw to draw)
        window = lambda h, key: float(np.mean(
            [v for t, v in zip(h["step"], h[key]) if 0 < t <= cfg.update_window]))
        per_net = {key: [[window(h, key)] for h in curves]
                   for key in ("update", "weight_update", "scalar_update")}
        if init == "fixup":
            for i, depth in enumerate(cfg.depths):
                for k in range(1, cfg.update_nets):
                    p0 = init_resmlp(np.random.default_rng([cfg.seed, depth, k]), x.shape[1],
                                     cfg.width, depth, y.shape[1], init)
                    _, hist, _ = gd_train(ctx, f"{init}-L{depth}-net{k}", p0, loss, lr=cfg.lr,
                                          n_steps=cfg.update_window, chunk=cfg.log_every,
                                          record=record, checkpoint_every=cfg.checkpoint_every)
                    for key in per_net:
                        per_net[key][i].append(window(hist, key))
        for key, values in per_net.items():
            means = [float(np.mean(v)) for v in values]
            m[init][f"early_{key}_per_net"] = values
            m[init][f"early_{key}"] = means
            ok = all(math.isfinite(v) and v > 0 for v in means)
            m[init][f"{key}_slope_log_depth"] = (log_slope(np.log(cfg.depths), means) if ok
                                                 else float("nan"))
    return m


def figures(results: dict) -> dict:
    """At init: stream and gradient norms against depth for both inits; Fixup's one-step
    function change against depth; training curves at one learning rate."""
    from matplotlib.figure import Figure
    m = results["metrics"]
    d = np.asarray(m["depths"])
    colors = {"he": "tab:red", "fixup": "tab:blue"}
    fig = Figure(figsize=(15, 4.2))
    axes = fig.subplots(1, 3)
    for init in INITS:
        axes[0].semilogy(d, np.asarray(m[init]["forward_ratio"], float), "o-",
                         color=colors[init], label=f"{init}: |Y^L| / |Y^0|")
        axes[0].semilogy(d, np.asarray(m[init]["init_grad_norm"], float), "s--",
                         color=colors[init], label=f"{init}: |grad loss|")
    axes[0].semilogy(d, float(m["he"]["forward_ratio"][0]) * 2 ** ((d - d[0]) / 2), "k:",
                     label="2^(L/2) (theory, He)")
    axes[0].set_xlabel("residual blocks L")
    axes[0].set_ylabel("value at initialisation")
    axes[0].set_title("At init: He explodes with depth, Fixup is O(1)")
    axes[0].legend(fontsize=7)
    for key, ls, what in (("update", "o-", "all parameters"),
                          ("weight_update", "s--", "branch weights W_1, W_2"),
                          ("scalar_update", "^:", "scalars s, a, c")):
        v = np.asarray(m["fixup"][f"early_{key}"], float)
        slope = float(m["fixup"][f"{key}_slope_log_depth"])
        axes[1].loglog(d, v, ls, color=colors["fixup"] if key != "scalar_update" else "gray",
                       label=f"Fixup, {what} (slope {slope:.2f})")
    he_up = np.asarray(m["he"]["early_update"], float)
    ok = np.isfinite(he_up)
    axes[1].loglog(d[ok], he_up[ok], "x", color=colors["he"], ms=9,
                   label="He, all parameters (non-finite beyond)")
    axes[1].set_xticks(d, [str(v) for v in d])
    axes[1].minorticks_off()
    axes[1].set_xlabel("residual blocks L")
    axes[1].set_ylabel("|f(theta - eta grad) - f(theta)|_rms / eta")
    axes[1].set_title("One-step function change, mean over steps 0 < t <= "
                      f"{m['update_window']}", fontsize=10)
    axes[1].legend(fontsize=7)
    styles = ("-", "--", ":", "-.")
    for init in INITS:
        for i, (depth, c) in enumerate(zip(m["depths"], m[init]["curves"])):
            loss = np.asarray(c["loss"], float)
            label = f"{init} L={depth}"
            if not np.isfinite(loss).all():
                label += f" (non-finite at step {c['step'][int(np.argmin(np.isfinite(loss)))]})"
            axes[2].semilogy(c["step"], np.where(np.isfinite(loss), loss, np.nan),
                             styles[i % 4], marker="o" if len(loss) < 4 else None,
                             color=colors[init], label=label)
    axes[2].set_xlabel(f"full-batch GD step (lr {m['lr']:g})")
    axes[2].set_ylabel("training cross-entropy")
    axes[2].set_title("Same learning rate: Fixup trains at every depth")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    return {"fixup": fig}


def _ratio(a, b) -> float:
    return float(a) / float(b)


# Thresholds (the old Config defaults): He's per-block growth 2 +- 0.25 (3 Monte Carlo standard
# deviations of a 64-block mean at width 64, see above); "O(1) in depth" as within a factor 2
# from the smallest to the largest depth; Fixup's update slope in log L within +- 0.15 (the
# paper's Theta(eta)); Fixup's loss at least halved; He at least 10x worse at the same rate.
CLAIMS = (
    claim("he_forward_doubles",
          lambda m: f"He init, L = {m['depths'][-1]}: mean over blocks of "
                    "|Y^l|^2 / |Y^(l-1)|^2 at init (theory: 2, so |Y^L| ~ 2^(L/2))",
          lambda m: m["he"]["mean_forward_growth"][-1], close_to(2.0, 0.25)),
    claim("he_backward_doubles",
          lambda m: f"He init, L = {m['depths'][-1]}: mean over blocks of "
                    "|dLoss/dY^(l-1)|^2 / |dLoss/dY^l|^2 at init (theory: 2)",
          lambda m: m["he"]["mean_backward_growth"][-1], close_to(2.0, 0.25)),
    claim("fixup_gradient_depth_free",
          lambda m: f"Fixup: |grad loss| at init, L = {m['depths'][-1]} over L = "
                    f"{m['depths'][0]} (He: "
                    f"{_ratio(m['he']['init_grad_norm'][-1], m['he']['init_grad_norm'][0]):.3g})",
          lambda m: _ratio(m["fixup"]["init_grad_norm"][-1], m["fixup"]["init_grad_norm"][0]),
          within(0.5, 2.0)),
    claim("fixup_update_theta_eta",
          lambda m: "Fixup: slope against log L of the function change from one GD step on the "
                    "branch weights, |df|_rms / eta (mean over steps "
                    f"0 < t <= {m['update_window']} and {m['update_nets']} networks per depth)",
          lambda m: m["fixup"]["weight_update_slope_log_depth"], within(-0.15, 0.15)),
    claim("fixup_trains_deep",
          lambda m: f"Fixup, L = {m['depths'][-1]}, lr {m['lr']:g}: final / initial training "
                    "loss",
          lambda m: _ratio(m["fixup"]["final_loss"][-1], m["fixup"]["curves"][-1]["loss"][0]),
          less(0.5)),
    claim("he_fails_same_lr",
          lambda m: f"L = {m['depths'][-1]}, lr {m['lr']:g}: He's best training loss / "
                    "Fixup's final loss",
          lambda m: _ratio(m["he"]["best_loss"][-1], m["fixup"]["final_loss"][-1]),
          greater(10.0)),
)
