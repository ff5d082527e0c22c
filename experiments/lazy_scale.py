"""Lazy training: the output scale alpha sends a network to its linearisation.

Chizat, Oyallon & Bach 2019, "On Lazy Training in Differentiable Programming" (NeurIPS 2019).

Model: a two-layer tanh network in NTK parametrisation with independent Gaussian
initialisation (a doubled / antisymmetric init would cancel the first-order kernel change)::

    h(w, x) = (1/sqrt(N)) sum_j a_j tanh(u_j . x / sqrt(D)),   f_alpha(x) = alpha (h(w, x) - h(w_0, x)),

trained by full-batch GD on ``mean (f_alpha - y)^2`` with learning rate ``eta / alpha^2``. In
function space the step is alpha-independent (``alpha^2 Theta_h`` times ``eta / alpha^2``), while
the parameters need to move only ``O(1/alpha)`` to fit. Chizat et al.'s Theorem: the relative
weight change ``|w_T - w_0| / |w_0|`` and the relative kernel change
``|Theta_T - Theta_0|_F / |Theta_0|_F`` fall like ``1/alpha``, and as ``alpha -> inf`` the trained
network equals the initial-NTK linearised model (kernel regression with ``Theta_0`` when trained
to convergence). The eNTK comes from :func:`ntk.empirical_ntk_fn`.

Scaled down: width 200, 40 points on the sphere in 5 dimensions, alpha = 1 .. 64 (full: width
1000, 200 points, alpha = 1/4 .. 256).
"""
from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

import ntk
from experiments.claims import claim, less, within
from experiments.grokking_lazy_rich import linearized_gd_prediction
from experiments.loop import train

SUMMARY = ("Chizat, Oyallon & Bach 2019: output scale alpha; weight and kernel change ~ 1/alpha; "
           "large-alpha test error = initial-NTK regression")
PAPER = "chizat2019lazy"
CITATION = "Chizat, L., Oyallon, E. & Bach, F. (2019). On Lazy Training in Differentiable Programming. NeurIPS 2019, arXiv:1812.07956."


@dataclasses.dataclass(frozen=True)
class Config:
    dim: int = 5
    n_train: int = 40
    n_test: int = 200
    width: int = 200
    alphas: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
    eta: float = 0.5                # learning rate = eta / alpha^2
    n_steps: int = 2000
    log_every: int = 200
    checkpoint_every: int = 2
    seed: int = 0

    @classmethod
    def quick(cls) -> "Config":
        return cls()

    @classmethod
    def full(cls) -> "Config":
        return cls(dim=10, n_train=200, n_test=1000, width=1000,
                   alphas=tuple(2.0 ** k for k in range(-2, 9)), n_steps=20_000, log_every=1000)

    def validate(self) -> None:
        if self.n_steps % self.log_every:
            raise ValueError(f"n_steps={self.n_steps} must be a multiple of "
                             f"log_every={self.log_every}")
        if len(self.alphas) < 3 or min(self.alphas) <= 0:
            raise ValueError(f"alphas needs >= 3 positive values, got {self.alphas}")


def apply_fn(params, x):
    """``h(w, x) = a . tanh(x U^T / sqrt(D)) / sqrt(N)``: (P, D) -> (P, 1)."""
    u, a = params["u"], params["a"]
    return (jnp.tanh(x @ u.T / np.sqrt(x.shape[-1])) @ a / np.sqrt(a.shape[0]))[:, None]


def make_data(cfg: Config):
    """Teacher: a fixed random width-32 tanh net; inputs on the sphere of radius sqrt(D)."""
    k = jax.random.split(jax.random.PRNGKey(cfg.seed), 5)
    sphere = lambda key, n: (lambda z: z / jnp.linalg.norm(z, axis=1, keepdims=True)
                             * np.sqrt(cfg.dim))(jax.random.normal(key, (n, cfg.dim)))
    teacher = {"u": jax.random.normal(k[0], (32, cfg.dim)), "a": jax.random.normal(k[1], (32,))}
    x_tr, x_te = sphere(k[2], cfg.n_train), sphere(k[3], cfg.n_test)
    p0 = {"u": jax.random.normal(k[4], (cfg.width, cfg.dim)),
          "a": jax.random.normal(jax.random.fold_in(k[4], 1), (cfg.width,))}
    return p0, (x_tr, apply_fn(teacher, x_tr)[:, 0]), (x_te, apply_fn(teacher, x_te)[:, 0])


def _mse(params, p0, x, y, alpha):
    f = alpha * (apply_fn(params, x) - apply_fn(p0, x))[:, 0]
    return jnp.mean((f - y) ** 2)


@partial(jax.jit, static_argnames=("n_steps",))
def _gd_chunk(state, p0, x, y, alpha, lr, n_steps):
    opt = optax.sgd(lr)

    def step(s, _):
        grads = jax.grad(_mse)(s["params"], p0, x, y, alpha)
        upd, o = opt.update(grads, s["opt"], s["params"])
        return {"params": optax.apply_updates(s["params"], upd), "opt": o}, None
    return jax.lax.scan(step, state, None, length=n_steps)[0]


def _norm(tree):
    return float(jnp.sqrt(sum(jnp.sum(v ** 2) for v in jax.tree.leaves(tree))))


def run(cfg: Config, ctx) -> dict:
    cfg.validate()
    p0, (x_tr, y_tr), (x_te, y_te) = make_data(cfg)
    kernel = ntk.empirical_ntk_fn(apply_fn)
    k0_tr, k0_te = kernel(x_tr, x_tr, p0), kernel(x_te, x_tr, p0)
    out = {k: [] for k in ("relative_weight_change", "relative_kernel_change", "train_loss",
                           "test_loss", "linearized_test_loss", "net_vs_linearized_rel_dist")}
    for alpha in map(float, cfg.alphas):
        lr = cfg.eta / alpha ** 2
        opt = optax.sgd(lr)
        state, hist, step = train(
            ctx, f"alpha={alpha:g}", init_state=lambda: {"params": p0, "opt": opt.init(p0)},
            chunk_fn=lambda s: _gd_chunk(s, p0, x_tr, y_tr, alpha, lr, cfg.log_every),
            n_steps=cfg.n_steps, chunk=cfg.log_every,
            record=lambda s, t: {"train_loss": float(_mse(s["params"], p0, x_tr, y_tr, alpha))},
            checkpoint_every=cfg.checkpoint_every)
        p = state["params"]
        dp = jax.tree.map(lambda a, b: a - b, p, p0)
        kT = kernel(x_tr, x_tr, p)
        f_net = np.asarray(alpha * (apply_fn(p, x_te) - apply_fn(p0, x_te))[:, 0])
        f_lin = linearized_gd_prediction(k0_tr, k0_te, y_tr, cfg.eta, step)
        out["relative_weight_change"].append(_norm(dp) / _norm(p0))
        out["relative_kernel_change"].append(float(jnp.linalg.norm(kT - k0_tr)
                                                   / jnp.linalg.norm(k0_tr)))
        out["train_loss"].append(hist["train_loss"][-1])
        out["test_loss"].append(float(np.mean((f_net - np.asarray(y_te)) ** 2)))
        out["linearized_test_loss"].append(float(np.mean((f_lin - np.asarray(y_te)) ** 2)))
        out["net_vs_linearized_rel_dist"].append(float(np.linalg.norm(f_net - f_lin)
                                                       / np.linalg.norm(f_lin)))
    a = np.log(cfg.alphas)
    half = len(a) // 2   # fit the slopes on the larger half of the alphas (the lazy side)
    slope = lambda v: float(np.polyfit(a[half:], np.log(v[half:]), 1)[0])
    metrics = {"alphas": list(cfg.alphas), **out,
               "weight_change_slope": slope(np.array(out["relative_weight_change"])),
               "kernel_change_slope": slope(np.array(out["relative_kernel_change"])),
               "slope_fit_alphas": list(cfg.alphas[half:]),
               "test_variance": float(np.var(np.asarray(y_te)))}
    return metrics


def figures(results: dict) -> dict:
    """Weight / kernel change against alpha (log-log); test MSE against the linearised model."""
    from matplotlib.figure import Figure
    m = results["metrics"]
    a = np.array(m["alphas"])
    fig = Figure(figsize=(9, 3.4))
    axes = fig.subplots(1, 2)
    axes[0].loglog(a, m["relative_weight_change"], "o-",
                   label=f"|w_T - w_0|/|w_0| (slope {m['weight_change_slope']:.2f})")
    axes[0].loglog(a, m["relative_kernel_change"], "s-",
                   label=f"|K_T - K_0|/|K_0| (slope {m['kernel_change_slope']:.2f})")
    axes[0].loglog(a, m["relative_weight_change"][0] * a[0] / a, "k:", label="1/alpha")
    axes[0].set_xlabel("output scale alpha")
    axes[0].set_ylabel("relative change after training")
    axes[0].set_title("Weight and kernel change fall like 1/alpha")
    axes[0].legend(fontsize=7)
    axes[1].semilogx(a, m["test_loss"], "o-", label="network")
    axes[1].semilogx(a, m["linearized_test_loss"], "k--", label="initial-NTK linearised model")
    axes[1].set_xlabel("output scale alpha")
    axes[1].set_ylabel("test MSE")
    axes[1].set_title("Large alpha: network = initial-NTK model")
    axes[1].legend(fontsize=7)
    return {"lazy_scale": fig}


def _fit_range(m: dict) -> str:
    return f"alpha in [{m['slope_fit_alphas'][0]:g}, {m['slope_fit_alphas'][-1]:g}]"


# Chizat et al.'s Theorem: changes O(1/alpha), so the log-log slope is -1 (+- 0.2 for a finite
# fit); at the largest alpha the network is its linearisation to 5 %.
CLAIMS = (
    claim("weight_change_1_over_alpha",
          lambda m: f"relative weight change ~ alpha^s ({_fit_range(m)})",
          "weight_change_slope", within(-1.2, -0.8)),
    claim("kernel_change_1_over_alpha",
          lambda m: f"relative eNTK change ~ alpha^s ({_fit_range(m)})",
          "kernel_change_slope", within(-1.2, -0.8)),
    claim("large_alpha_is_linearized",
          lambda m: f"largest alpha ({m['alphas'][-1]:g}): test outputs = initial-NTK linearised "
                    "model after the same steps (relative L2 distance)",
          lambda m: m["net_vs_linearized_rel_dist"][-1], less(0.05)),
    claim("large_alpha_test_error",
          "largest alpha: |test MSE - initial-NTK test MSE| / initial-NTK test MSE",
          lambda m: abs(m["test_loss"][-1] - m["linearized_test_loss"][-1])
          / m["linearized_test_loss"][-1], less(0.05)),
)
