"""The empirical NTK of a finite network against its infinite-width limit, and during training.

Jacot, Gabriel & Hongler 2018, "Neural Tangent Kernel: Convergence and Generalization in
Neural Networks" (NeurIPS 2018, arXiv:1806.07572), Section 6.1 and Figure 1.

Setup (their Fig. 1): a depth-4 ReLU network (three hidden layers of width ``n``, one output)
in NTK parametrisation with weight scale ``sigma_w = 1`` and bias scale ``beta = 0.1``::

    z^{l+1} = (sigma_w / sqrt(n_l)) W^l relu(z^l) + beta b^l,      W^l_ij, b^l_i ~ N(0, 1),

built from :mod:`ntk.stax` (``Dense(n, W_std=1, b_std=0.1, parameterization='ntk')``, ``Relu``).
Inputs lie on the unit circle, ``x(gamma) = (cos gamma, sin gamma)``, and we look at the kernel
row ``gamma -> Theta(x_0, x(gamma))`` with ``x_0 = (1, 0)``:

- ``Theta_inf``: the infinite-width NTK from the stax ``kernel_fn`` (Jacot et al. Thm. 1);
- ``Theta_n``: the empirical NTK ``sum_p df(x_0)/dtheta_p df(x)/dtheta_p`` of a network of
  width ``n`` (:func:`ntk.empirical_ntk_fn`), at initialisation and after training. Training is
  theirs: full-batch GD with learning rate 1 on ``C = (1/2P) sum_i (f(x_i) - x_i1 x_i2)^2``
  over ``P`` inputs ``x_i ~ N(0, I_2)``, for ``T = 200`` steps.

The math the claims check:

- At initialisation ``Theta_n = Theta_inf + n^{-1/2} G + O(1/n)`` with ``G`` a centred random
  field (a CLT over the ``n`` terms of each hidden layer; the ``O(1/n)`` bias comes from the
  nonlinear dual kernels of the layers after the first). So the relative deviation
  ``|Theta_n - Theta_inf| / |Theta_inf|`` (L2 over the gamma grid, RMS over inits) falls like
  ``n^{-1/2}``, and the mean over ``S`` inits equals the limit up to Monte Carlo error
  ``~ (S n)^{-1/2}``.
- During training (Jacot et al. Thm. 2) the kernel stays constant as ``n -> inf``. The
  parameters move by ``|theta_T - theta_0| = O(1)`` in NTK parametrisation, i.e. ``O(n^{-1/2})``
  per neuron, which bounds the kernel change by ``O(n^{-1/2})`` (the rate in the proofs of
  Jacot et al. and Lee et al. 2019). The first-order change cancels to leading order (it is odd
  in the read-out weights, whose signs are independent of everything else at initialisation), so
  for smooth activations ``|Theta_T - Theta_0| = O(1/n)`` (Dyer & Gur-Ari 2019; Huang & Yau
  2019). For ReLU, units whose preactivation crosses zero (a fraction ``O(n^{-1/2})``) add a
  term of random sign, ``O(n^{-3/4})``. The fitted slope of the relative kernel change against
  width therefore lies between ``-1`` and the bound ``-1/2``.

Scaled down: widths 64..512 (24 inits) at initialisation, 200 GD steps (learning rate 1) at
widths 128..512 (full: widths 125..10000, Jacot et al.'s 500 and 10000 included).
"""
from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

import ntk
from experiments.claims import at_most, claim, close_to, within
from experiments.loop import train
from limits.scaling import loglog_slope
from ntk import stax

SUMMARY = ("Jacot et al. 2018: empirical NTK against its infinite-width limit as width grows, "
           "and its change during training")
PAPER = "jacot2018ntk"
CITATION = ("Jacot, A., Gabriel, F. & Hongler, C. (2018). Neural Tangent Kernel: Convergence and "
            "Generalization in Neural Networks. NeurIPS 2018, arXiv:1806.07572.")


@dataclasses.dataclass(frozen=True)
class Config:
    depth: int = 4                  # weight layers (Jacot's L): depth - 1 hidden ReLU layers
    w_std: float = 1.0              # sigma_w
    b_std: float = 0.1              # Jacot's beta
    widths: tuple[int, ...] = (64, 128, 256, 512)
    n_angles: int = 33              # gamma grid on [-pi, pi]
    n_inits: int = 24               # initialisations per width for the kernel at t = 0
    n_trained: int = 4              # of those, how many are trained (the kernel change)
    train_widths: tuple[int, ...] = (128, 256, 512)
    n_train: int = 8                # P training inputs x ~ N(0, I_2), target x1 x2
    learning_rate: float = 1.0
    n_steps: int = 200              # Jacot et al.: t = 200 steps
    log_every: int = 50
    n_figure_inits: int = 3         # inits drawn per width in the Fig. 1 panel
    checkpoint_every: int = 2
    seed: int = 0

    @classmethod
    def quick(cls) -> "Config":
        return cls()

    @classmethod
    def full(cls) -> "Config":
        """Jacot et al.'s widths 500 and 10000 inside a sweep; 40 inits per width, 4 of them
        trained for 200 steps with learning rate 1 (inits are drawn ``n_trained`` at a time,
        so memory holds 4 networks of width 10000, 2e8 parameters each)."""
        return cls(widths=(125, 250, 500, 1000, 2000, 4000, 10000), n_inits=40, n_trained=4,
                   train_widths=(125, 250, 500, 1000, 2000, 4000, 10000), n_train=64,
                   n_angles=129, n_figure_inits=4)

    def validate(self) -> None:
        if self.depth < 2:
            raise ValueError(f"depth must be >= 2 (at least one hidden layer), got {self.depth}")
        for name in ("widths", "train_widths"):
            w = getattr(self, name)
            if len(w) < 3 or min(w) < 1 or list(w) != sorted(set(w)):
                raise ValueError(f"{name} needs >= 3 increasing positive widths, got {w}")
        if not set(self.train_widths) <= set(self.widths):
            raise ValueError(f"train_widths={self.train_widths} must be a subset of "
                             f"widths={self.widths}")
        if self.n_inits < 2:
            raise ValueError(f"n_inits must be >= 2 (Monte Carlo error), got {self.n_inits}")
        if not 1 <= self.n_trained <= self.n_inits:
            raise ValueError(f"n_trained must be in [1, n_inits={self.n_inits}], "
                             f"got {self.n_trained}")
        if not 1 <= self.n_figure_inits <= self.n_trained:
            raise ValueError(f"n_figure_inits must be in [1, n_trained={self.n_trained}], "
                             f"got {self.n_figure_inits}")
        if self.n_steps % self.log_every:
            raise ValueError(f"n_steps={self.n_steps} must be a multiple of "
                             f"log_every={self.log_every}")
        if self.n_angles < 3:
            raise ValueError(f"n_angles must be >= 3, got {self.n_angles}")


# ----------------------------------------------------------------------------- pieces
def network(width: int, depth: int = 4, w_std: float = 1.0, b_std: float = 0.1):
    """stax ``(init_fn, apply_fn, kernel_fn)``: ``depth - 1`` hidden ``Dense(width) -> Relu``
    layers and a ``Dense(1)`` read-out, all in NTK parametrisation."""
    layers = []
    for _ in range(depth - 1):
        layers += [stax.Dense(width, W_std=w_std, b_std=b_std, parameterization="ntk"),
                   stax.Relu()]
    layers.append(stax.Dense(1, W_std=w_std, b_std=b_std, parameterization="ntk"))
    return stax.serial(*layers)


def sample_params(init_fn, input_shape, rng: np.random.Generator, n_samples: int):
    """``n_samples`` parameter draws stacked on a leading axis, with the tree structure and
    shapes of ``init_fn(key, input_shape)``.

    In NTK parametrisation every stax ``Dense`` weight and bias is ``N(0, 1)`` (the scales live
    in ``apply_fn``), so a draw is a standard normal per leaf; numpy's generator makes the
    millions of normals of a wide sweep much faster than a per-width compiled ``init_fn``.
    Leaves are numpy arrays of JAX's default float dtype.
    """
    shapes = jax.eval_shape(lambda k: init_fn(k, input_shape)[1], jax.random.PRNGKey(0))
    dtype = jnp.result_type(float)     # float64 under jax_enable_x64, else float32
    return jax.tree.map(lambda s: rng.standard_normal((n_samples,) + s.shape).astype(dtype),
                        shapes)


def circle_inputs(n_angles: int):
    """``gamma`` on an even grid of ``[-pi, pi]`` and ``x(gamma) = (cos gamma, sin gamma)``:
    ``(n_angles,)`` and ``(n_angles, 2)``."""
    gamma = np.linspace(-np.pi, np.pi, n_angles)
    return gamma, np.stack([np.cos(gamma), np.sin(gamma)], axis=1)


def width_slope(widths, values) -> float:
    """Fitted exponent ``s`` of ``values ~ C width^s``.

    ``values``: ``(K,)`` or ``(S, K)`` (``S`` seeds; the fit uses the RMS over seeds, the
    natural average of a deviation whose square has a ``1/width`` expectation).
    """
    v = np.asarray(values, dtype=float)
    if v.ndim == 2:
        v = np.sqrt(np.mean(v ** 2, axis=0))
    if v.ndim != 1 or v.shape[0] != len(widths):
        raise ValueError(f"values must be (K,) or (S, K) with K = len(widths) = {len(widths)}, "
                         f"got shape {np.shape(values)}")
    if np.any(~np.isfinite(v)) or np.any(v <= 0):
        raise ValueError(f"values must be positive and finite to fit a power law, got {v}")
    return float(loglog_slope(np.asarray(widths, float), v))


def mean_kernel_z(kernels, limit) -> float:
    """Distance of the Monte Carlo mean of ``S`` kernel rows from ``limit`` in units of its
    standard error: ``|mean_s k_s - limit| / sqrt(sum_s |k_s - mean|^2 / (S (S - 1)))``.

    With no bias ``E[numerator^2] = E[denominator^2]``, so the ratio is ``O(1)``.
    ``kernels``: ``(S, M)``, ``limit``: ``(M,)``.
    """
    k = np.asarray(kernels, dtype=float)
    limit = np.asarray(limit, dtype=float)
    if k.ndim != 2 or k.shape[0] < 2 or limit.shape != k.shape[1:]:
        raise ValueError(f"kernels must be (S >= 2, M) and limit (M,), got {k.shape} and "
                         f"{limit.shape}")
    mean = k.mean(axis=0)
    se = np.sqrt(np.sum((k - mean) ** 2) / (k.shape[0] * (k.shape[0] - 1)))
    return float(np.linalg.norm(mean - limit) / se)


def relative_distance(a, b, axis=-1):
    """``|a - b| / |b|`` (L2 along ``axis``)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.linalg.norm(a - b, axis=axis) / np.linalg.norm(b, axis=axis)


def _train_data(cfg: Config):
    x = jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 10_000),
                          (cfg.n_train, 2))
    return x, x[:, 0] * x[:, 1]


def _loss(params, x, y, apply_fn):
    """Jacot et al.'s cost ``C = (1/2P) sum_i (f(x_i) - y_i)^2``."""
    return 0.5 * jnp.mean((apply_fn(params, x)[:, 0] - y) ** 2)


@partial(jax.jit, static_argnames=("apply_fn",))
def _mean_loss(params, x, y, apply_fn):
    """``C`` averaged over a stack of networks."""
    return jnp.mean(jax.vmap(lambda p: _loss(p, x, y, apply_fn))(params))


@partial(jax.jit, static_argnames=("apply_fn", "n_steps"))
def _gd_chunk(params, x, y, lr, apply_fn, n_steps):
    """``n_steps`` of full-batch GD on ``C`` for a stack of networks (leading axis of every
    leaf); returns the new stack and ``C`` after the chunk averaged over the stack."""
    def step(p, _):
        g = jax.grad(_loss)(p, x, y, apply_fn)
        return jax.tree.map(lambda w, d: w - lr * d, p, g), None
    new = jax.vmap(lambda p: jax.lax.scan(step, p, None, length=n_steps)[0])(params)
    return new, jnp.mean(jax.vmap(lambda p: _loss(p, x, y, apply_fn))(new))


# ----------------------------------------------------------------------------- the study
def run(cfg: Config, ctx) -> dict:
    cfg.validate()
    gamma, x_circle = circle_inputs(cfg.n_angles)
    x_circle = jnp.asarray(x_circle)
    x0 = jnp.asarray([[1.0, 0.0]])
    _, _, kernel_fn = network(1, cfg.depth, cfg.w_std, cfg.b_std)
    limit = np.asarray(kernel_fn(x_circle, x0, "ntk"))[:, 0]
    x_tr, y_tr = _train_data(cfg)

    init_dev, train_change, train_loss, figure = [], [], [], {}
    for width in cfg.widths:
        init_fn, apply_fn, _ = network(width, cfg.depth, cfg.w_std, cfg.b_std)
        # kernel rows Theta(x(gamma), x0) of a stack of inits, (S, n_angles): one NTK-vector
        # product (a vjp at x0, a jvp on the circle) per init, vmapped over the stack; inits
        # are drawn n_trained at a time (one compiled batch size, bounded memory) and the
        # first batch is the one trained below
        entk = ntk.empirical_ntk_fn(apply_fn, vmap_axes=0, implementation="ntvp")
        rows_fn = jax.jit(jax.vmap(lambda p: entk(x_circle, x0, p)[:, 0]))
        rows = lambda p: np.asarray(rows_fn(p), np.float64)
        rng = np.random.default_rng([cfg.seed, width])
        k0 = []
        for start in range(0, cfg.n_inits, cfg.n_trained):
            batch = sample_params(init_fn, (-1, 2), rng, cfg.n_trained)
            trained0 = batch if start == 0 else trained0
            k0.append(rows(batch)[:cfg.n_inits - start])
        k0 = np.concatenate(k0)
        init_dev.append(relative_distance(k0, limit[None]).tolist())
        if width == cfg.widths[-1]:
            largest_k0 = k0
        if width not in cfg.train_widths:
            continue
        loss0 = float(_mean_loss(trained0, x_tr, y_tr, apply_fn))
        state, hist, _ = train(   # state: (stack of params, mean C after the last chunk)
            ctx, f"width={width}", init_state=lambda: (trained0, loss0),
            chunk_fn=lambda s: _gd_chunk(s[0], x_tr, y_tr, cfg.learning_rate, apply_fn,
                                         cfg.log_every),
            n_steps=cfg.n_steps, chunk=cfg.log_every,
            record=lambda s, t: {"train_loss": float(s[1])},
            checkpoint_every=cfg.checkpoint_every)
        kT = rows(state[0])
        train_change.append(relative_distance(kT, k0[:cfg.n_trained]).tolist())
        train_loss.append(hist["train_loss"])
        if width in (cfg.train_widths[0], cfg.train_widths[-1]):
            figure[str(width)] = {"init": k0[:cfg.n_figure_inits].tolist(),
                                  "trained": kT[:cfg.n_figure_inits].tolist()}

    init_dev_arr = np.array(init_dev).T                # (n_inits, K)
    change_arr = np.array(train_change).T              # (n_trained, K_train)
    metrics = {
        "widths": list(cfg.widths), "train_widths": list(cfg.train_widths),
        "n_steps": cfg.n_steps,
        "gamma": gamma.tolist(), "limit_ntk": limit.tolist(),
        "init_relative_deviation": init_dev,            # [width][init]
        "init_rms_relative_deviation": np.sqrt(np.mean(init_dev_arr ** 2, 0)).tolist(),
        "init_deviation_slope": width_slope(cfg.widths, init_dev_arr),
        "train_relative_change": train_change,          # [train width][trained init]
        "train_rms_relative_change": np.sqrt(np.mean(change_arr ** 2, 0)).tolist(),
        "train_change_slope": width_slope(cfg.train_widths, change_arr),
        "train_loss_history": train_loss,               # [train width][chunk], mean over inits
        "largest_width_mean_z": mean_kernel_z(largest_k0, limit),
        "largest_width_mean_relative_deviation": float(relative_distance(largest_k0.mean(0),
                                                                         limit)),
        "figure_kernels": figure,
    }
    return metrics


def figures(results: dict) -> dict:
    """Jacot et al.'s Fig. 1 (kernel rows at init and after training, smallest and largest
    trained width, against the limit) and the two deviations against width (log-log)."""
    from matplotlib.figure import Figure
    m, cfg = results["metrics"], results["config"]
    gamma = np.asarray(m["gamma"], float)
    train_widths = [str(w) for w in m["train_widths"]]
    fig = Figure(figsize=(10, 3.8))
    axes = fig.subplots(1, 2)
    ax = axes[0]
    colors = {train_widths[0]: "tab:orange", train_widths[-1]: "tab:blue"}
    for w, k in m["figure_kernels"].items():
        for i, (a, b) in enumerate(zip(k["init"], k["trained"])):
            ax.plot(gamma, np.asarray(a, float), "-", color=colors[w], lw=0.9,
                    label=f"n={w}, t=0" if i == 0 else None)
            ax.plot(gamma, np.asarray(b, float), ":", color=colors[w], lw=1.2,
                    label=f"n={w}, t={m['n_steps']}" if i == 0 else None)
    ax.plot(gamma, np.asarray(m["limit_ntk"], float), "k-", lw=2, label="n = inf (ntk.stax)")
    ax.set_xlabel("gamma (rad), x = (cos gamma, sin gamma)")
    ax.set_ylabel("Theta(x0, x), x0 = (1, 0)")
    ax.set_title(f"Depth-{cfg['depth']} ReLU NTK: finite widths vs the limit")
    ax.legend(fontsize=7)
    ax = axes[1]
    w = np.asarray(m["widths"], float)
    wt = np.asarray(m["train_widths"], float)
    d0 = np.asarray(m["init_rms_relative_deviation"], float)
    dc = np.asarray(m["train_rms_relative_change"], float)
    ax.loglog(w, d0, "o-", label=f"|Theta_n(0) - Theta_inf| / |Theta_inf| "
                                 f"(slope {float(m['init_deviation_slope']):.2f})")
    ax.loglog(wt, dc, "s-", label=f"|Theta_n(T) - Theta_n(0)| / |Theta_n(0)| "
                                  f"(slope {float(m['train_change_slope']):.2f})")
    ax.loglog(w, d0[0] * np.sqrt(w[0] / w), "k:", label="n^-1/2")
    ax.loglog(wt, dc[0] * wt[0] / wt, "k--", lw=0.8, label="n^-1")
    ax.set_xlabel("hidden width n")
    ax.set_ylabel("relative distance (RMS over inits)")
    ax.set_title("Init fluctuation ~ n^-1/2; change in training ~ n^-1")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return {"ntk_finite_width": fig}


def _widths(m: dict) -> str:
    return f"widths {m['widths'][0]}..{m['widths'][-1]}"


# Thresholds: the slopes +- 0.15 (a fit over 3-4 widths); the Monte Carlo mean within 3
# standard errors of the limit (the old defaults slope_tolerance = 0.15, mc_z_tolerance = 3).
CLAIMS = (
    # Jacot et al. Thm. 1 with CLT fluctuations: deviation ~ n^-1/2
    claim("init_deviation_sqrt_width",
          lambda m: f"relative deviation of the eNTK from the stax limit at init ~ width^s "
                    f"(RMS over {len(m['init_relative_deviation'][0])} inits, {_widths(m)})",
          "init_deviation_slope", close_to(-0.5, 0.15)),
    # between the O(1/n) perturbative rate and the O(n^-1/2) bound, each widened by 0.15
    claim("training_change_shrinks",
          lambda m: f"relative eNTK change over {m['n_steps']} GD steps ~ width^s (between the "
                    "O(1/n) perturbative rate and the O(n^-1/2) bound)",
          "train_change_slope", within(-1.15, -0.35)),
    claim("largest_width_mean_is_limit",
          lambda m: f"width {m['widths'][-1]}: |mean of {len(m['init_relative_deviation'][-1])} "
                    "eNTKs - Theta_inf| in Monte Carlo standard errors",
          "largest_width_mean_z", at_most(3.0)),
)
