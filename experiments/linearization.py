"""A wide network trained by gradient descent follows its linearisation.

Lee, Xiao, Schoenholz, Bahri, Novak, Sohl-Dickstein & Pennington 2019, "Wide Neural Networks of
Any Depth Evolve as Linear Models Under Gradient Descent" (NeurIPS 2019, arXiv:1902.06720).

Model: an MLP in NTK parametrisation from :mod:`ntk.stax` (``hidden_layers`` blocks
``Dense(n, W_std, b_std) -> ReLU``, then ``Dense(1)``), on scikit-learn's digits with the
parity target ``y = +1`` (even digit) / ``-1`` (odd); inputs centred and scaled so that
``|x|^2 = d`` (each pixel O(1), as ``W_std / sqrt(d)`` expects). Both the network ``f(x; w)``
and its linearisation at initialisation (Lee et al. eq. 5)::

    f_lin(x; w) = f(x; w_0) + J(x; w_0) (w - w_0),        J = df/dw  (one jax.jvp),

are trained from the same ``w_0`` by the same full-batch GD on
``L = (1/2P) sum_i (f(x_i) - y_i)^2`` with ``eta = lr_fraction * 2P / lambda_max(Theta_inf)``.
For the linear model GD is solved exactly by the initial eNTK ``Theta_0 = J J^T``: the train
residual obeys ``r_{t+1} = (I - eta Theta_0 / P) r_t`` and the test outputs are
``f_lin,t(x) = f_0(x) + Theta_0(x, X) Theta_0^{-1} (I - (I - eta Theta_0 / P)^t) (Y - f_0(X))``
(:func:`experiments.grokking_lazy_rich.linearized_gd_prediction`; gradient flow is
:func:`ntk.predict.gradient_descent_mse`, Lee et al. eqs. 9-10).

What theory predicts as the width ``n`` grows (GD for a fixed time):

- Lee et al. Thm. 2.1: ``sup_t |f_t(x) - f_lin,t(x)| = O(n^{-1/2})`` and the eNTK moves by
  ``O(n^{-1/2})``. The bound need not be tight: the first-order kernel change is odd in the
  read-out weights and averages out, giving ``O(1/n)`` for smooth activations (Dyer & Gur-Ari
  2019); for ReLU the units whose preactivation crosses zero add an ``O(n^{-3/4})`` term. The
  fitted slope of ``RMS_test(f - f_lin)`` against ``n`` therefore lies between ``-1`` and the
  theorem's ``-1/2``.
- ``|w_T - w_0| = O(1)`` in NTK parametrisation (the function moves O(1) with an O(1)
  Jacobian), so the relative change ``|w_T - w_0| / |w_0|`` falls like ``1 / |w_0|``:
  ``n^{-1/2}`` with one hidden layer (``|w_0|^2 ~ n (d + 2)``) and ``n^{-1}`` with more
  (``|w_0|^2 ~ n^2``).
- The test loss of the network tends to that of the linear model, and as ``Theta_0 ->
  Theta_inf`` (fluctuations ``O(n^{-1/2})``) the network tends, at that rate, to the dynamics
  ``f_0(x) + Theta_inf(x, X) Theta_inf^{-1} (I - (I - eta Theta_inf / P)^t) (Y - f_0(X))`` from
  its own initial outputs ``f_0``; averaged over initialisations (``E f_0 = 0``) this is the
  NTK-GP mean of Lee et al. (eq. 16 at time t).

Scaled down: one hidden ReLU layer, 64 training digits (parity target), widths 64..1024, 3
inits, 200 GD steps (full: two hidden layers, 128 digits, widths 128..2048, 4 inits, 1000 steps).
"""
from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from experiments.claims import claim, close_to, less, within
from experiments.grokking_lazy_rich import linearized_gd_prediction
from experiments.loop import train
from experiments.ntk_finite_width import sample_params, width_slope
from ntk import predict, stax

SUMMARY = "Lee et al. 2019: a wide network against its linearisation during GD as width grows"
PAPER = "lee2019wide"
CITATION = ("Lee, J., Xiao, L., Schoenholz, S. S., Bahri, Y., Novak, R., Sohl-Dickstein, J. & "
            "Pennington, J. (2019). Wide Neural Networks of Any Depth Evolve as Linear Models "
            "Under Gradient Descent. NeurIPS 2019, arXiv:1902.06720.")

_ACTIVATIONS = {"relu": stax.Relu, "erf": stax.Erf}


@dataclasses.dataclass(frozen=True)
class Config:
    hidden_layers: int = 1
    activation: str = "relu"
    w_std: float = 1.4142135623730951   # sqrt(2): the ReLU critical weight scale
    b_std: float = 0.1
    n_train: int = 64
    n_test: int = 128
    widths: tuple[int, ...] = (64, 256, 1024)
    n_seeds: int = 3
    lr_fraction: float = 0.5            # of the infinite-width maximum 2P / lambda_max
    n_steps: int = 200
    log_every: int = 50
    checkpoint_every: int = 4
    seed: int = 0

    @classmethod
    def quick(cls) -> "Config":
        return cls()

    @classmethod
    def full(cls) -> "Config":
        """Two hidden layers ("any depth"), widths 128..2048, 128 training digits, 5x longer."""
        return cls(hidden_layers=2, n_train=128, n_test=256,
                   widths=(128, 256, 512, 1024, 2048), n_seeds=4, n_steps=1000,
                   log_every=100)

    def validate(self) -> None:
        if self.hidden_layers < 1:
            raise ValueError(f"hidden_layers must be >= 1, got {self.hidden_layers}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, "
                             f"got {self.activation!r}")
        if len(self.widths) < 3 or min(self.widths) < 1 or list(self.widths) != sorted(
                set(self.widths)):
            raise ValueError(f"widths needs >= 3 increasing positive widths, got {self.widths}")
        if self.n_seeds < 1:
            raise ValueError(f"n_seeds must be >= 1, got {self.n_seeds}")
        if not 0 < self.lr_fraction < 1:
            raise ValueError(f"lr_fraction must be in (0, 1) (GD is unstable at 1), "
                             f"got {self.lr_fraction}")
        if self.n_steps % self.log_every:
            raise ValueError(f"n_steps={self.n_steps} must be a multiple of "
                             f"log_every={self.log_every}")


# ----------------------------------------------------------------------------- pieces
def network(width: int, cfg: Config):
    """stax ``(init_fn, apply_fn, kernel_fn)`` of the MLP, NTK parametrisation."""
    layers = []
    for _ in range(cfg.hidden_layers):
        layers += [stax.Dense(width, W_std=cfg.w_std, b_std=cfg.b_std, parameterization="ntk"),
                   _ACTIVATIONS[cfg.activation]()]
    layers.append(stax.Dense(1, W_std=cfg.w_std, b_std=cfg.b_std, parameterization="ntk"))
    return stax.serial(*layers)


def linearize(apply_fn, params0):
    """``f_lin(w, x) = f(x; w_0) + J(x; w_0) (w - w_0)`` (Lee et al. eq. 5), by one jvp."""
    def f_lin(params, x):
        delta = jax.tree.map(lambda a, b: a - b, params, params0)
        f0, df = jax.jvp(lambda p: apply_fn(p, x), (params0,), (delta,))
        return f0 + df
    return f_lin


def load_data(cfg: Config):
    """Digits, parity target ``+-1``; inputs with ``|x|^2 = d`` on average over the train set."""
    import tasks
    x_tr, l_tr, x_te, l_te = tasks.load("digits", cfg.n_train, cfg.n_test, cfg.seed)
    scale = np.sqrt(x_tr.shape[1])
    target = lambda labels: np.where(np.asarray(labels) % 2 == 0, 1.0, -1.0)
    return (jnp.asarray(x_tr * scale), jnp.asarray(target(l_tr)),
            jnp.asarray(x_te * scale), jnp.asarray(target(l_te)))


def _loss(f, y):
    """``L = (1/2P) sum (f - y)^2`` on outputs ``(P, 1)``."""
    return 0.5 * jnp.mean((f[:, 0] - y) ** 2)


@partial(jax.jit, static_argnames=("apply_fn", "n_steps"))
def _gd_chunk(state, params0, x, y, lr, apply_fn, n_steps):
    """``n_steps`` GD steps of the network and of its linearisation, for a stack of seeds."""
    def one_seed(net, lin, p0):
        f_lin = linearize(apply_fn, p0)

        def step(carry, _):
            net, lin = carry
            g_net = jax.grad(lambda p: _loss(apply_fn(p, x), y))(net)
            g_lin = jax.grad(lambda p: _loss(f_lin(p, x), y))(lin)
            sgd = lambda p, g: jax.tree.map(lambda a, b: a - lr * b, p, g)
            return (sgd(net, g_net), sgd(lin, g_lin)), None
        return jax.lax.scan(step, (net, lin), None, length=n_steps)[0]
    net, lin = jax.vmap(one_seed)(state["net"], state["lin"], params0)
    return {"net": net, "lin": lin}


@partial(jax.jit, static_argnames=("apply_fn",))
def _outputs(state, params0, x, apply_fn):
    """Network and linearised outputs ``(S, N)`` for a stack of seeds."""
    def one(net, lin, p0):
        return apply_fn(net, x)[:, 0], linearize(apply_fn, p0)(lin, x)[:, 0]
    return jax.vmap(one)(state["net"], state["lin"], params0)


def _norms(tree):
    """``|w|`` per seed for a stack of parameter trees, ``(S,)`` (numpy)."""
    return np.sqrt(sum(np.sum(np.asarray(v, np.float64).reshape(v.shape[0], -1) ** 2, axis=1)
                       for v in jax.tree.leaves(tree)))


# ----------------------------------------------------------------------------- the study
def run(cfg: Config, ctx) -> dict:
    cfg.validate()
    x_tr, y_tr, x_te, y_te = load_data(cfg)
    _, _, kernel_fn = network(1, cfg)
    k_inf_tr = np.asarray(kernel_fn(x_tr, x_tr, "ntk"), np.float64)
    k_inf_te = np.asarray(kernel_fn(x_te, x_tr, "ntk"), np.float64)
    lr = cfg.lr_fraction * predict.max_learning_rate(k_inf_tr, cfg.n_train)
    eta0 = lr / 2   # linearized_gd_prediction's step is 2 eta0 / P; ours is lr / P
    y_np, yte_np = np.asarray(y_tr, np.float64), np.asarray(y_te, np.float64)
    x_all, n_tr = jnp.concatenate([x_tr, x_te]), cfg.n_train
    # NTK-GP mean after the same T GD steps (E f_0 = 0; the gradient-flow form of Lee et al.
    # is ntk.predict.gradient_descent_mse, which discrete GD approaches as lr -> 0)
    ntk_gp_mean = linearized_gd_prediction(k_inf_tr, k_inf_te, y_np, eta0, cfg.n_steps)

    keys = ("rms_diff_end", "rms_diff_max", "relative_weight_change", "weight_change",
            "test_loss", "linearized_test_loss", "train_loss", "distance_to_limit_dynamics",
            "seed_mean_distance_to_ntk_gp_mean", "ntk_gp_monte_carlo_floor")
    out = {k: [] for k in keys}
    for width in cfg.widths:
        init_fn, apply_fn, _ = network(width, cfg)
        p0 = sample_params(init_fn, x_tr.shape, np.random.default_rng([cfg.seed, width]),
                           cfg.n_seeds)

        def outputs(s):   # (f_net, f_lin) on train and test, (S, P) each; one program
            f_net, f_lin = (np.asarray(a, np.float64) for a in _outputs(s, p0, x_all, apply_fn))
            return f_net[:, :n_tr], f_lin[:, :n_tr], f_net[:, n_tr:], f_lin[:, n_tr:]

        def record(s, t):
            f_tr, _, f_net, f_lin = outputs(s)
            return {"test_rms_diff": float(np.sqrt(np.mean((f_net - f_lin) ** 2))),
                    "train_loss": float(0.5 * np.mean((f_tr - y_np) ** 2))}
        state, hist, step = train(
            ctx, f"width={width}", init_state=lambda: {"net": p0, "lin": p0},
            chunk_fn=lambda s: _gd_chunk(s, p0, x_tr, y_tr, lr, apply_fn, cfg.log_every),
            n_steps=cfg.n_steps, chunk=cfg.log_every, record=record,
            checkpoint_every=cfg.checkpoint_every)
        _, _, f_net, f_lin = outputs(state)
        f0_tr, _, f0_te, _ = outputs({"net": p0, "lin": p0})
        dw = _norms(jax.tree.map(lambda a, b: np.asarray(a) - np.asarray(b), state["net"], p0))
        # infinite-width GD from each network's own initial outputs (exact for discrete GD)
        f_inf = np.stack([f0_te[i] + linearized_gd_prediction(
            k_inf_tr, k_inf_te, y_np - f0_tr[i], eta0, step) for i in range(cfg.n_seeds)])
        out["rms_diff_end"].append(float(np.sqrt(np.mean((f_net - f_lin) ** 2))))
        out["rms_diff_max"].append(max(hist["test_rms_diff"]))
        out["relative_weight_change"].append(float(np.sqrt(np.mean((dw / _norms(p0)) ** 2))))
        out["weight_change"].append(float(np.sqrt(np.mean(dw ** 2))))
        out["test_loss"].append(float(0.5 * np.mean((f_net - yte_np) ** 2)))
        out["linearized_test_loss"].append(float(0.5 * np.mean((f_lin - yte_np) ** 2)))
        out["train_loss"].append(hist["train_loss"][-1])
        out["distance_to_limit_dynamics"].append(
            float(np.linalg.norm(f_net - f_inf) / np.linalg.norm(f_inf)))
        out["seed_mean_distance_to_ntk_gp_mean"].append(
            float(np.linalg.norm(f_net.mean(0) - ntk_gp_mean) / np.linalg.norm(ntk_gp_mean)))
        out["ntk_gp_monte_carlo_floor"].append(   # |std of f_net over seeds| / sqrt(S)
            float(np.linalg.norm(f_net.std(0, ddof=1) if cfg.n_seeds > 1 else f0_te[0])
                  / np.sqrt(cfg.n_seeds) / np.linalg.norm(ntk_gp_mean)))
        if width == cfg.widths[-1]:
            history = {"step": hist["step"], "test_rms_diff": hist["test_rms_diff"]}

    w = cfg.widths
    metrics = {"widths": list(w), "learning_rate": float(lr), **out,
               "rms_diff_end_slope": width_slope(w, out["rms_diff_end"]),
               "rms_diff_max_slope": width_slope(w, out["rms_diff_max"]),
               "relative_weight_change_slope": width_slope(w, out["relative_weight_change"]),
               "weight_change_slope": width_slope(w, out["weight_change"]),
               "limit_distance_slope": width_slope(w, out["distance_to_limit_dynamics"]),
               "largest_width_history": history,
               "ntk_gp_test_loss": float(0.5 * np.mean((ntk_gp_mean - yte_np) ** 2)),
               "predicted_relative_weight_change_slope": predicted_weight_change_slope(cfg)}
    return metrics


def parameter_count(width: int, cfg: Config, input_dim: int = 64) -> int:
    """Number of parameters; ``E |w_0|^2`` equals it (every leaf is N(0, 1))."""
    shapes = jax.eval_shape(lambda k: network(width, cfg)[0](k, (-1, input_dim))[1],
                            jax.random.PRNGKey(0))
    return int(sum(np.prod(s.shape) for s in jax.tree.leaves(shapes)))


def predicted_weight_change_slope(cfg: Config) -> float:
    """Slope of ``|w_T - w_0| / |w_0|`` when ``|w_T - w_0| = O(1)``: that of
    ``1 / sqrt(parameter count)`` over ``cfg.widths`` (``-1/2`` for one hidden layer, tending
    to ``-1`` for more)."""
    return width_slope(cfg.widths, [parameter_count(n, cfg) ** -0.5 for n in cfg.widths])


def figures(results: dict) -> dict:
    """Distances against width (log-log), test losses against width, and the gap during
    training at the largest width."""
    from matplotlib.figure import Figure
    m = results["metrics"]
    w = np.asarray(m["widths"], float)
    curve = lambda key: np.asarray(m[key], float)
    fig = Figure(figsize=(15, 4.0))
    axes = fig.subplots(1, 3, gridspec_kw={"wspace": 0.32})
    ax = axes[0]
    ax.loglog(w, curve("rms_diff_end"), "o-", label=f"RMS_test(f - f_lin), end (slope "
                                                    f"{float(m['rms_diff_end_slope']):.2f})")
    ax.loglog(w, curve("rms_diff_max"), "s--", label=f"RMS_test(f - f_lin), max over t (slope "
                                                     f"{float(m['rms_diff_max_slope']):.2f})")
    ax.loglog(w, curve("relative_weight_change"), "^-",
              label=f"|w_T - w_0| / |w_0| (slope "
                    f"{float(m['relative_weight_change_slope']):.2f})")
    ax.loglog(w, curve("distance_to_limit_dynamics"), "d-", color="tab:purple",
              label=f"|f - f_inf| / |f_inf| (slope {float(m['limit_distance_slope']):.2f})")
    ax.loglog(w, curve("rms_diff_end")[0] * np.sqrt(w[0] / w), "k:", label="n^-1/2")
    ax.loglog(w, curve("rms_diff_end")[0] * w[0] / w, "k--", lw=0.8, label="n^-1")
    ax.set_xlabel("hidden width n")
    ax.set_ylabel("distance (see legend)")
    ax.set_title("Network vs its linearisation and n = inf")
    ax.legend(fontsize=7)
    ax = axes[1]
    ax.semilogx(w, curve("test_loss"), "o-", label="network")
    ax.semilogx(w, curve("linearized_test_loss"), "k--", label="linearised network")
    ax.axhline(float(m["ntk_gp_test_loss"]), color="gray", ls=":", label="NTK-GP mean (n = inf)")
    ax.set_xlabel("hidden width n")
    ax.set_ylabel("test loss (1/2) mean (f - y)^2")
    ax.set_title("Test loss: network vs linear model")
    ax.legend(fontsize=7)
    ax = axes[2]
    h = m["largest_width_history"]
    ax.plot(np.asarray(h["step"], float), np.asarray(h["test_rms_diff"], float), "o-")
    ax.set_xlabel("GD step")
    ax.set_ylabel("RMS_test(f - f_lin)")
    ax.set_title(f"Width {m['widths'][-1]}: gap during training")
    return {"linearization": fig}


def _widths(m: dict) -> str:
    return f"widths {m['widths'][0]}..{m['widths'][-1]}"


# Thresholds (the old defaults): fitted slopes within 0.15 of the prediction (a fit over 3-5
# widths); the test losses of network and linear model within 5 % at the largest width.
CLAIMS = (
    # between the O(1/n) perturbative rate and Lee et al.'s O(n^-1/2) bound, each widened by 0.15
    claim("linearization_gap_end",
          lambda m: f"RMS over test points of f - f_lin after "
                    f"{m['largest_width_history']['step'][-1]} GD steps ~ width^s ({_widths(m)}; "
                    "O(n^-1/2) bound, O(1/n) perturbative rate)",
          "rms_diff_end_slope", within(-1.15, -0.35)),
    claim("linearization_gap_max",
          lambda m: f"max over training of RMS_test(f - f_lin) ~ width^s ({_widths(m)})",
          "rms_diff_max_slope", within(-1.15, -0.35)),
    # |w_T - w_0| = O(1), |w_0| = sqrt(#params): the predicted slope depends on the depth
    claim("relative_weight_change",
          lambda m: f"|w_T - w_0| / |w_0| ~ width^s, s minus its prediction "
                    f"{float(m['predicted_relative_weight_change_slope']):.3g} (|w_T - w_0| = "
                    "O(1), |w_0| = sqrt(#params))",
          lambda m: float(m["relative_weight_change_slope"])
          - float(m["predicted_relative_weight_change_slope"]), close_to(0.0, 0.15)),
    claim("test_loss_matches_linearized",
          lambda m: f"width {m['widths'][-1]}: |test loss - linearised test loss| / linearised "
                    "test loss",
          lambda m: abs(m["test_loss"][-1] - m["linearized_test_loss"][-1])
          / m["linearized_test_loss"][-1], less(0.05)),
    # eNTK fluctuations O(n^-1/2) carry over to the function
    claim("net_converges_to_infinite_width",
          lambda m: f"|f_net - f_inf| / |f_inf| on test ~ width^s ({_widths(m)}; f_inf = GD with "
                    f"the stax NTK from the same initial outputs; "
                    f"{float(m['distance_to_limit_dynamics'][-1]):.3g} at width "
                    f"{m['widths'][-1]}; eNTK fluctuations O(n^-1/2))",
          "limit_distance_slope", close_to(-0.5, 0.15)),
)
