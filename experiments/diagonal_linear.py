"""Kernel and rich regimes in diagonal linear networks.

Woodworth, Gunasekar, Lee, Moroshko, Savarese, Golan, Soudry & Srebro 2020, "Kernel and Rich
Regimes in Overparametrized Models" (COLT 2020).

Model: ``beta = w_+^2 - w_-^2`` (elementwise), initialised at ``w_+ = w_- = alpha 1`` so
``beta_0 = 0``; full-batch GD on ``L = |X beta - y|^2 / (2n)`` with ``n < d`` (underdetermined).
Gradient flow keeps ``w_+- = alpha exp(+-2 s)`` with ``s`` in the row space of ``X``, hence

    beta_alpha = 2 alpha^2 sinh(X^T mu),   X beta_alpha = y,

which is the minimiser of ``Q_alpha(beta) = alpha^2 sum_i q(beta_i / alpha^2)``,
``q(z) = 2 - sqrt(4 + z^2) + z arcsinh(z / 2)``, subject to ``X beta = y``. We find ``mu`` by
minimising the convex dual ``F(mu) = 2 alpha^2 sum cosh(X^T mu) - mu . y`` (its gradient is
``X beta(mu) - y``). As ``alpha -> 0`` ``Q_alpha`` tends to the l1 norm (rich: sparse solution),
as ``alpha -> inf`` to the l2 norm (kernel regime: minimum-norm solution).

Scaled down: d = 100, n = 40, a 4-sparse teacher, alpha = 0.01 .. 10 (full: d = 300, n = 100,
8-sparse, alpha = 10^-3 .. 10^1.5).
"""
from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.optimize

from experiments.claims import at_least, claim, less
from experiments.loop import train

SUMMARY = ("Woodworth et al. 2020: diagonal linear nets, init scale moves GD from the min-l1 to "
           "the min-l2 interpolant")
PAPER = "woodworth2020kernel"
CITATION = ("Woodworth, B., Gunasekar, S., Lee, J. D., Moroshko, E., Savarese, P., Golan, I., "
            "Soudry, D. & Srebro, N. (2020). Kernel and rich regimes in overparametrized models. "
            "COLT 2020, arXiv:2002.09277.")


@dataclasses.dataclass(frozen=True)
class Config:
    dim: int = 100                  # d
    n_train: int = 40               # n < d
    sparsity: int = 4               # nonzeros of beta*
    alphas: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
    eta: float = 0.02               # learning rate / max(1, alpha^2) (stability at large alpha)
    n_steps: int = 40_000
    log_every: int = 2000
    checkpoint_every: int = 2
    seed: int = 0

    @classmethod
    def quick(cls) -> "Config":
        return cls()

    @classmethod
    def full(cls) -> "Config":
        return cls(dim=300, n_train=100, sparsity=8,
                   alphas=tuple(float(a) for a in np.logspace(-3, 1.5, 10)),
                   eta=0.01, n_steps=400_000, log_every=10_000)

    def validate(self) -> None:
        if not 0 < self.n_train < self.dim:
            raise ValueError(f"n_train must lie in (0, dim={self.dim}), got {self.n_train}")
        if not 0 < self.sparsity <= self.dim:
            raise ValueError(f"sparsity must lie in (0, dim], got {self.sparsity}")
        if self.n_steps % self.log_every:
            raise ValueError(f"n_steps={self.n_steps} must be a multiple of "
                             f"log_every={self.log_every}")
        if not self.alphas or min(self.alphas) <= 0:
            raise ValueError(f"alphas must be positive, got {self.alphas}")


def make_data(cfg: Config):
    rng = np.random.default_rng(cfg.seed)
    X = rng.standard_normal((cfg.n_train, cfg.dim))
    beta_star = np.zeros(cfg.dim)
    support = rng.choice(cfg.dim, cfg.sparsity, replace=False)
    beta_star[support] = rng.choice([-1.0, 1.0], cfg.sparsity) * rng.uniform(1, 2, cfg.sparsity)
    return X, X @ beta_star, beta_star


def min_l2_interpolant(X, y):
    return np.linalg.pinv(X) @ y


def min_l1_interpolant(X, y):
    """``argmin |beta|_1 s.t. X beta = y`` as a linear program in ``(beta_+, beta_-) >= 0``."""
    n, d = X.shape
    res = scipy.optimize.linprog(np.ones(2 * d), A_eq=np.hstack([X, -X]), b_eq=y,
                                 bounds=(0, None), method="highs")
    if not res.success:
        raise RuntimeError(f"min-l1 linear program failed: {res.message}")
    return res.x[:d] - res.x[d:]


def q_alpha(beta, alpha):
    """Woodworth et al.'s potential ``Q_alpha(beta) = alpha^2 sum q(beta / alpha^2)``."""
    z = np.asarray(beta) / alpha ** 2
    return alpha ** 2 * np.sum(2 - np.sqrt(4 + z ** 2) + z * np.arcsinh(z / 2))


def implicit_bias_solution(X, y, alpha):
    """``argmin Q_alpha(beta) s.t. X beta = y`` = ``2 alpha^2 sinh(X^T mu*)`` (dual Newton-CG)."""
    a2 = 2 * alpha ** 2

    def fun(mu):
        z = X.T @ mu
        return a2 * np.sum(np.cosh(z)) - mu @ y, X @ (a2 * np.sinh(z)) - y

    def hessp(mu, p):
        return X @ (a2 * np.cosh(X.T @ mu) * (X.T @ p))

    res = scipy.optimize.minimize(fun, np.zeros(len(y)), jac=True, hessp=hessp,
                                  method="trust-krylov", options={"gtol": 1e-12,
                                                                  "maxiter": 10_000})
    beta = a2 * np.sinh(X.T @ res.x)
    return beta


def _loss(params, X, y):
    beta = params["w_plus"] ** 2 - params["w_minus"] ** 2
    return 0.5 * jnp.mean((X @ beta - y) ** 2)


@partial(jax.jit, static_argnames=("n_steps",))
def _gd_chunk(state, X, y, lr, n_steps):
    opt = optax.sgd(lr)

    def step(s, _):
        grads = jax.grad(_loss)(s["params"], X, y)
        upd, o = opt.update(grads, s["opt"], s["params"])
        return {"params": optax.apply_updates(s["params"], upd), "opt": o}, None
    return jax.lax.scan(step, state, None, length=n_steps)[0]


def train_gd(cfg: Config, ctx, alpha: float, X, y) -> tuple[np.ndarray, dict]:
    X, y = jnp.asarray(X), jnp.asarray(y)
    lr = cfg.eta / max(1.0, alpha ** 2)
    p0 = {"w_plus": alpha * jnp.ones(cfg.dim), "w_minus": alpha * jnp.ones(cfg.dim)}
    opt = optax.sgd(lr)
    state, hist, _ = train(
        ctx, f"alpha={alpha:g}", init_state=lambda: {"params": p0, "opt": opt.init(p0)},
        chunk_fn=lambda s: _gd_chunk(s, X, y, lr, cfg.log_every), n_steps=cfg.n_steps,
        chunk=cfg.log_every, record=lambda s, t: {"train_loss": float(_loss(s["params"], X, y))},
        stop=lambda h: h["train_loss"][-1] < 1e-14, checkpoint_every=cfg.checkpoint_every)
    p = state["params"]
    return np.asarray(p["w_plus"] ** 2 - p["w_minus"] ** 2), hist


def run(cfg: Config, ctx) -> dict:
    cfg.validate()
    X, y, beta_star = make_data(cfg)
    b_l1, b_l2 = min_l1_interpolant(X, y), min_l2_interpolant(X, y)
    rel = lambda a, b: float(np.linalg.norm(a - b) / np.linalg.norm(b))
    out = {k: [] for k in ("dist_to_l1", "dist_to_l2", "dist_to_q_alpha_solution", "l1_norm",
                           "recovery_error", "final_train_loss")}
    for alpha in cfg.alphas:
        beta, hist = train_gd(cfg, ctx, float(alpha), X, y)
        b_q = implicit_bias_solution(X, y, float(alpha))
        out["dist_to_l1"].append(rel(beta, b_l1))
        out["dist_to_l2"].append(rel(beta, b_l2))
        out["dist_to_q_alpha_solution"].append(rel(beta, b_q))
        out["l1_norm"].append(float(np.abs(beta).sum()))
        out["recovery_error"].append(rel(beta, beta_star))
        out["final_train_loss"].append(hist["train_loss"][-1])
    metrics = {"alphas": list(cfg.alphas), **out,
               "min_l1_norm": float(np.abs(b_l1).sum()), "min_l2_l1_norm": float(np.abs(b_l2).sum()),
               "min_l1_recovery_error": rel(b_l1, beta_star),
               "min_l2_recovery_error": rel(b_l2, beta_star)}
    return metrics


def figures(results: dict) -> dict:
    """Distances of the GD solution to the min-l1 / min-l2 / argmin Q_alpha interpolants, and
    its l1 norm, against alpha."""
    from matplotlib.figure import Figure

    m = results["metrics"]
    a = np.asarray(m["alphas"], float)
    col = lambda key: np.asarray(m[key], float)
    fig = Figure(figsize=(9, 3.4))
    axes = fig.subplots(1, 2)
    axes[0].loglog(a, col("dist_to_l1"), "o-", label="to min-l1 interpolant")
    axes[0].loglog(a, col("dist_to_l2"), "s-", label="to min-l2 interpolant")
    axes[0].loglog(a, col("dist_to_q_alpha_solution"), "k.:", label="to argmin Q_alpha")
    axes[0].set_xlabel("init scale alpha")
    axes[0].set_ylabel("relative L2 distance of GD solution")
    axes[0].set_title("Small init: min-l1 (rich); large init: min-l2 (kernel)")
    axes[0].legend(fontsize=7)
    axes[1].semilogx(a, col("l1_norm"), "o-", label="GD solution")
    axes[1].axhline(float(m["min_l1_norm"]), color="C0", ls=":", label="min-l1 interpolant")
    axes[1].axhline(float(m["min_l2_l1_norm"]), color="C1", ls=":", label="min-l2 interpolant")
    axes[1].set_xlabel("init scale alpha")
    axes[1].set_ylabel("|beta|_1")
    axes[1].set_title("l1 norm grows with alpha")
    axes[1].legend(fontsize=7)
    return {"implicit_bias": fig}


# Bounds: Woodworth et al.'s limits are exact (alpha -> 0: min-l1, alpha -> inf: min-l2, every
# alpha: argmin Q_alpha under gradient flow); 5 % relative distance absorbs finite alpha, finite
# steps and the GD step size (the study's earlier default tolerance).
CLAIMS = (
    claim("q_alpha", "GD reaches argmin Q_alpha s.t. X beta = y at every alpha (largest "
          "relative distance)",
          lambda m: float(np.max(np.asarray(m["dist_to_q_alpha_solution"], float))),
          less(0.05)),
    claim("small_alpha_l1",
          lambda m: f"smallest alpha ({min(m['alphas']):g}): GD solution = min-l1 interpolant "
                    "(relative distance)",
          lambda m: m["dist_to_l1"][0], less(0.05)),
    claim("large_alpha_l2",
          lambda m: f"largest alpha ({max(m['alphas']):g}): GD solution = min-l2 interpolant "
                    "(relative distance)",
          lambda m: m["dist_to_l2"][-1], less(0.05)),
    claim("l1_grows", "the l1 norm of the GD solution grows with alpha (fraction of consecutive "
          "alphas where it grows)",
          lambda m: float(np.mean(np.diff(np.asarray(m["l1_norm"], float)) > 0)), at_least(1.0)),
)
