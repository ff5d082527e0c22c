"""ZerO: deterministic initialisation with only zeros, ones and Hadamard transforms.

Zhao, Schaefer & Anandkumar, "ZerO Initialization: Initializing Neural Networks with only
Zeros and Ones" (TMLR 2022, arXiv:2110.12661).

Their Algorithm 1 for a layer ``W in R^{P_out x P_in}`` (here stored transposed, row vectors):

- ``P_out = P_in``: ``W = I``;
- ``P_out < P_in``: ``W = I*`` (partial identity: keep the first ``P_out`` coordinates);
- ``P_out > P_in``: ``W = c I*_{P_out x 2^m} H_m I*_{2^m x P_in}`` with ``m = ceil(log2 P_out)``,
  ``H_m`` the ``2^m x 2^m`` Sylvester-Hadamard matrix (entries +-1, ``H_m H_m^T = 2^m I``) and
  ``c = 2^{-(m-1)/2}``, so ``W W^T = 2 I`` when ``P_out = 2^m`` (ReLU halves it back);

and the readout starts at zero. With plain partial identity in an expanding layer
(``W = I*``, "identity" below) the extra ``P_out - P_in`` units start at exactly 0 for every
input; their ReLU derivative is 0, so they get no gradient and stay 0 in every later layer:
the network trains as if it were ``P_in`` wide, and the hidden features keep rank
``<= rank(X) <= P_in`` forever (for any activation, all extra units stay interchangeable by
permutation symmetry, rank ``<= P_in + 1``). The Hadamard transform mixes every input
coordinate into every unit and breaks the symmetry. The paper also reports a low-rank
learning trajectory: the learned part ``W_l(t) - W_l(0)`` of the identity-initialised
layers starts at rank 0 and its (stable) rank grows during training.

A property of the Sylvester cut worth knowing: ``H_m = [[H', H'], [H', -H']]``, so when
``P_in <= 2^{m-1}`` rows ``i`` and ``i + 2^{m-1}`` of ``H_m`` agree on the first ``P_in``
columns and the expanding layer makes *pairs of identical units*; the simultaneous swap of
each pair is a symmetry of the whole init (identity layers, zero readout) that GD keeps, so
the features again have rank ``<= P_in``. This happens for every expansion of the 64 digit
pixels (``64 <= 2^{m-1}`` for any ``P_out > 64``). The study therefore crops the digits to the
central 8 x 6 pixels (``P_in = 48``, the outer columns are nearly blank) and expands to
width 64 (``m = 6``, ``2^{m-1} = 32 < 48``): all 64 units are distinct.

Model: ReLU MLP ``48 -> 64 -> ... -> 64 -> 10`` on scikit-learn digits (``depth`` hidden
layers, the first expanding; inputs scaled to unit mean-square coordinates), full-batch GD on
the softmax cross-entropy at one learning rate, three inits: ``zero`` (Algorithm 1 with a zero
readout), ``identity`` (the same with ``I*`` in the expanding layer) and ``random`` (He
Gaussian hidden layers, LeCun readout).

Claims: ZerO's held-out accuracy is no worse than random init's beyond two binomial standard
deviations of the difference; the stable rank of ZerO's learned part ``W_l(t) - W_l(0)``
grows during training; with ``I*`` the trained features keep rank ``<= rank(X)``, with the
Hadamard layer they exceed it. Recorded but not claimed: the training loss after
``n_steps`` is 2 to 3 times lower for random init (both below 0.01, after both fit the
training set); the stable rank of random init's learned part grows too (GD's incremental
learning, not specific to ZerO) and stays below ZerO's; and on digits the width lost to the
identity degeneracy (48 of 64 units alive) costs little loss or accuracy, so the degeneracy
shows in the rank, not as a stall.

Scaled down: 8 hidden layers, 512 training digits, 200 GD steps (full: 16 hidden layers, 1200
digits, 3000 steps).
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from experiments._init_nets import (accuracy, cross_entropy, digits_classification,
                                    gaussian_mlp, gd_train, mlp_preactivations, numerical_rank,
                                    stable_rank)
from experiments.claims import at_least, at_most, claim, greater

SUMMARY = "Zhao et al. 2022: ZerO initialisation with only zeros, ones and Hadamard transforms"
PAPER = "zhao2022zero"
CITATION = ("Zhao, J., Schaefer, F. & Anandkumar, A. (2022). ZerO initialization: initializing "
            "neural networks with only zeros and ones. TMLR 2022, arXiv:2110.12661.")
INITS = ("zero", "identity", "random")
#: the 8 x 6 central pixel columns of the 8 x 8 digits (the outer columns are nearly blank)
CROP = tuple(r * 8 + c for r in range(8) for c in range(1, 7))
PIXELS = len(CROP)


@dataclasses.dataclass(frozen=True)
class Config:
    depth: int = 8                  # hidden layers (the first expands 48 pixels -> width)
    width: int = 64
    n_train: int = 512
    n_test: int = 512
    lr: float = 0.05
    n_steps: int = 200
    log_every: int = 10
    rank_tol: float = 1e-3          # numerical rank: singular values above this x the largest
    checkpoint_every: int = 10
    seed: int = 0

    @classmethod
    def quick(cls) -> "Config":
        return cls()

    @classmethod
    def full(cls) -> "Config":
        return cls(depth=16, n_train=1200, n_test=597, n_steps=3000, log_every=50)

    def validate(self) -> None:
        if self.depth < 2:
            raise ValueError(f"depth must be >= 2, got {self.depth}")
        if not PIXELS < self.width <= 2 ** math.ceil(math.log2(PIXELS + 1)):
            raise ValueError(f"width must lie in ({PIXELS}, 64]: an expanding first layer "
                             f"whose Hadamard rows are distinct, got {self.width}")
        if self.n_steps % self.log_every:
            raise ValueError(f"n_steps={self.n_steps} must be a multiple of "
                             f"log_every={self.log_every}")


def hadamard(m: int) -> np.ndarray:
    """The ``2^m x 2^m`` Sylvester-Hadamard matrix (entries +-1)."""
    if isinstance(m, bool) or not isinstance(m, int) or m < 0:
        raise ValueError(f"m must be a non-negative int, got {m!r}")
    return scipy.linalg.hadamard(2 ** m).astype(np.float64)


def zero_layer(fan_in: int, fan_out: int, expand: str = "hadamard") -> np.ndarray:
    """ZerO's ``(fan_in, fan_out)`` weight (row-vector convention, Algorithm 1): identity,
    partial identity when shrinking, and when expanding ``c H_m`` cut to ``fan_in x fan_out``
    (``expand='hadamard'``, ``m = ceil(log2 fan_out)``, ``c = 2^{-(m-1)/2}``) or the partial
    identity ``[I, 0]`` (``expand='identity'``, the degenerate variant)."""
    if fan_in < 1 or fan_out < 1:
        raise ValueError(f"fan_in and fan_out must be positive, got {fan_in}, {fan_out}")
    if expand not in ("hadamard", "identity"):
        raise ValueError(f"expand must be 'hadamard' or 'identity', got {expand!r}")
    if fan_out <= fan_in or expand == "identity":
        return np.eye(fan_in, fan_out)
    m = math.ceil(math.log2(fan_out))
    return 2.0 ** (-(m - 1) / 2) * hadamard(m)[:fan_in, :fan_out]


def zero_mlp(widths, expand: str = "hadamard") -> list:
    """ZerO layers for ``widths = [d, n_1, ..., n_H, out]``: :func:`zero_layer` for every
    hidden layer, zero readout, zero biases (float32)."""
    if len(widths) < 2:
        raise ValueError(f"widths must list >= 2 sizes, got {widths}")
    layers = [{"w": zero_layer(a, b, expand), "b": np.zeros(b)}
              for a, b in zip(widths[:-2], widths[1:-1])]
    layers.append({"w": np.zeros((widths[-2], widths[-1])), "b": np.zeros(widths[-1])})
    return jax.tree.map(lambda a: jnp.asarray(np.asarray(a, np.float32)), layers)


def make_init(cfg: Config, init: str, in_dim: int) -> list:
    widths = [in_dim] + [cfg.width] * cfg.depth + [10]
    if init == "zero":
        return zero_mlp(widths, "hadamard")
    if init == "identity":
        return zero_mlp(widths, "identity")
    if init == "random":
        return gaussian_mlp(np.random.default_rng(cfg.seed), widths, gain=math.sqrt(2.0),
                            readout_gain=1.0)
    raise ValueError(f"init must be one of {INITS}, got {init!r}")


def hidden_features(layers, x):
    """``phi(z^H)``, the input of the readout: ``(N, width)``."""
    return jax.nn.relu(mlp_preactivations(layers, x, "relu")[-2])


def run(cfg: Config, ctx) -> dict:
    cfg.validate()
    x_tr, y_tr, x_te, y_te = digits_classification(cfg.n_train, cfg.n_test, cfg.seed)
    x_tr, x_te = x_tr[:, CROP], x_te[:, CROP]
    scale = 1.0 / float(jnp.sqrt(jnp.mean(x_tr ** 2)))   # unit mean-square input coordinates
    x_tr, x_te = x_tr * scale, x_te * scale
    loss = lambda p: cross_entropy(mlp_preactivations(p, x_tr, "relu")[-1], y_tr)
    evaluate = jax.jit(lambda p: (loss(p), accuracy(mlp_preactivations(p, x_tr, "relu")[-1],
                                                    y_tr)))
    features = jax.jit(hidden_features)
    # layers whose learned part is tracked: the square hidden layers 2..H
    square = list(range(1, cfg.depth))
    m = {"inits": list(INITS), "input_rank": numerical_rank(x_tr, cfg.rank_tol),
         "depth": cfg.depth, "width": cfg.width, "lr": cfg.lr, "n_steps": cfg.n_steps}
    for init in INITS:
        p0 = make_init(cfg, init, x_tr.shape[1])
        w0 = [np.asarray(p0[l]["w"], np.float64) for l in square]

        def record(p, t, w0=w0):
            value, acc = evaluate(p)
            dw = [np.asarray(p[l]["w"], np.float64) - w for l, w in zip(square, w0)]
            return {"loss": float(value), "accuracy": float(acc),
                    "delta_stable_rank": float(np.mean([stable_rank(d) for d in dw])),
                    "weight_stable_rank": float(np.mean(
                        [stable_rank(np.asarray(p[l]["w"])) for l in square]))}

        p, hist, _ = gd_train(ctx, init, p0, loss, lr=cfg.lr, n_steps=cfg.n_steps,
                              chunk=cfg.log_every, record=record,
                              checkpoint_every=cfg.checkpoint_every)
        logits_te = mlp_preactivations(p, x_te, "relu")[-1]
        m[init] = {**hist, "final_loss": hist["loss"][-1],
                   "test_accuracy": float(accuracy(logits_te, y_te)),
                   "feature_rank_init": numerical_rank(features(p0, x_tr), cfg.rank_tol),
                   "feature_rank_final": numerical_rank(features(p, x_tr), cfg.rank_tol)}
    az, ar = m["zero"]["test_accuracy"], m["random"]["test_accuracy"]
    m["accuracy_noise"] = 2 * math.sqrt((az * (1 - az) + ar * (1 - ar)) / cfg.n_test)
    m["loss_ratio_zero_vs_random"] = m["zero"]["final_loss"] / m["random"]["final_loss"]
    return m


def figures(results: dict) -> dict:
    """Training curves, the stable rank of the learned weights over training, and the feature
    rank at init and after training, for the three inits."""
    from matplotlib.figure import Figure
    m = results["metrics"]
    colors = {"zero": "tab:blue", "identity": "tab:orange", "random": "tab:green"}
    fig = Figure(figsize=(15, 4))
    axes = fig.subplots(1, 3)
    for init in INITS:
        r = m[init]
        axes[0].semilogy(r["step"], np.asarray(r["loss"], float), "-", color=colors[init],
                         label=f"{init} (final {float(r['final_loss']):.3g}, test acc "
                               f"{r['test_accuracy']:.3f})")
        steps = np.asarray(r["step"][1:])
        axes[1].plot(steps, np.asarray(r["delta_stable_rank"][1:], float), "o-", ms=3,
                     color=colors[init], label=init)
        axes[2].bar(INITS.index(init) - 0.2, r["feature_rank_init"], 0.4, color=colors[init],
                    alpha=0.4)
        axes[2].bar(INITS.index(init) + 0.2, r["feature_rank_final"], 0.4, color=colors[init])
    axes[0].set_xlabel(f"full-batch GD step (lr {m['lr']:g})")
    axes[0].set_ylabel("training cross-entropy")
    axes[0].set_title(f"ReLU MLP, {m['depth']} hidden layers of {m['width']}, digits")
    axes[0].legend(fontsize=7)
    axes[1].set_xlabel("GD step")
    axes[1].set_ylabel("stable rank of W_l(t) - W_l(0), mean over square layers")
    axes[1].set_title("Learned part of the weights: rank over training")
    axes[1].legend(fontsize=7)
    axes[2].axhline(m["input_rank"], color="k", ls=":", label=f"rank of inputs ({m['input_rank']})")
    axes[2].set_xticks(range(len(INITS)), INITS)
    axes[2].set_ylabel(f"numerical rank of last hidden features (N x {m['width']})")
    axes[2].set_title("Feature rank at init (light) and after training")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    return {"zero_init": fig}


def _accuracy_gap_in_noise_units(m: dict) -> float:
    """``(acc_ZerO - acc_random) / noise`` with ``noise`` two binomial standard deviations of
    the difference (when both accuracies are 0 or 1 the noise is 0: the sign of the gap)."""
    gap = m["zero"]["test_accuracy"] - m["random"]["test_accuracy"]
    noise = m["accuracy_noise"]
    return gap / noise if noise > 0 else (0.0 if gap == 0 else math.copysign(math.inf, gap))


def _stable_rank_growth(r: dict) -> float:
    return float(r["delta_stable_rank"][-1]) / float(r["delta_stable_rank"][1])


# Bounds: ZerO no worse than random init beyond the noise (-1 in units of two binomial standard
# deviations of the accuracy difference); a growing rank (ratio > 1); the identity expansion's
# feature rank at most the inputs' (ratio <= 1); Hadamard above the identity (ratio > 1).
CLAIMS = (
    claim("zero_accuracy_like_random",
          lambda m: f"held-out accuracy after {m['n_steps']} GD steps, ZerO - random (He) init, "
                    "in units of 2 binomial sd of the difference "
                    f"({m['zero']['test_accuracy']:.3f} vs {m['random']['test_accuracy']:.3f}, "
                    f"2 sd = {m['accuracy_noise']:.3f}; training loss ratio "
                    f"{float(m['loss_ratio_zero_vs_random']):.2f})",
          _accuracy_gap_in_noise_units, at_least(-1.0)),
    claim("zero_rank_grows",
          lambda m: "ZerO: stable rank of W_l(t) - W_l(0) (square hidden layers), "
                    f"step {m['n_steps']} over step {m['zero']['step'][1]} (random init: "
                    f"{_stable_rank_growth(m['random']):.2f})",
          lambda m: _stable_rank_growth(m["zero"]), greater(1.0)),
    claim("identity_rank_bounded",
          lambda m: "identity in the expanding layer: numerical rank of the trained last "
                    f"hidden features / rank of the inputs ({m['identity']['feature_rank_final']}"
                    f" / {m['input_rank']})",
          lambda m: m["identity"]["feature_rank_final"] / m["input_rank"], at_most(1.0)),
    claim("hadamard_breaks_symmetry",
          lambda m: "trained last-hidden-feature rank, ZerO (Hadamard) / identity expanding "
                    f"layer ({m['zero']['feature_rank_final']} vs "
                    f"{m['identity']['feature_rank_final']}, width {m['width']})",
          lambda m: m["zero"]["feature_rank_final"] / m["identity"]["feature_rank_final"],
          greater(1.0)),
)
