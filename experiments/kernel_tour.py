"""Kernel tour: the empirical NTK of an MLP on scikit-learn's bundled digits.

What a newcomer sees first. A 64-W-W-10 MLP in NTK parametrization is trained with
full-batch gradient descent on MSE to one-hot targets; along the way its empirical NTK
``Theta = sum_l J_l J_l^T`` (trace-averaged over the 10 logits, :func:`ntk.empirical_ntk_fn`)
is recomputed on a fixed subset, and we look at

- the spectrum at initialisation and after training (log-log: a power law lives there);
- the centered kernel-target alignment ``A(Theta, Y Y^T)`` (Cortes et al. 2012) and the kernel
  distance ``1 - <Theta_0, Theta_t> / (|Theta_0| |Theta_t|)`` (Fort et al. 2020) against steps:
  the kernel moves toward the task (Baratin et al. 2021; Atanasov et al. 2022);
- kernel regression with the initial and final eNTK against the trained network.

Figures: ``spectrum``, ``alignment`` and ``kernels`` (eNTK cosine similarity on 12 training
examples per digit, sorted by digit), all drawn from the metrics.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

import ntk
from ntk import diagnostics
from experiments.claims import claim, greater
from ntk.predict import max_learning_rate

SUMMARY = ("Kernel tour: the eNTK of an MLP on digits before and after training (spectrum, "
           "alignment with the task, kernel distance, eNTK regression)")


@dataclasses.dataclass(frozen=True)
class Config:
    width: int = 128
    n_train: int = 256
    n_test: int = 300
    steps: int = 300
    lr_fraction: float = 0.5  # of the kernel-regime maximum 2 N / lambda_max(Theta_0)
    n_snapshots: int = 6
    seed: int = 0

    @classmethod
    def quick(cls) -> "Config":
        return cls()

    @classmethod
    def full(cls) -> "Config":
        return cls(width=1024, n_train=1000, n_test=797, steps=2000, n_snapshots=11)


def init_mlp(key, sizes):
    """NTK parametrization: W ~ N(0, 1), the layer multiplies by 1/sqrt(fan_in)."""
    params = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        key, sub = jax.random.split(key)
        params.append({"W": jax.random.normal(sub, (a, b)), "b": jnp.zeros(b)})
    return params


def apply_mlp(params, x):
    for i, p in enumerate(params):
        x = x @ p["W"] / jnp.sqrt(p["W"].shape[0]) + 0.1 * p["b"]
        if i < len(params) - 1:
            x = jax.nn.relu(x)
    return x


def load_digits(n_train: int, n_test: int, seed: int):
    """scikit-learn's digits as ``(x_train, y_train, x_test, y_test, labels_train)`` with
    one-hot targets; inputs normalised as in :func:`tasks.load`."""
    import tasks

    x_tr, l_tr, x_te, l_te = tasks.load("digits", n_train, n_test, seed)
    eye = np.eye(10, dtype=np.float32)
    return x_tr, eye[l_tr], x_te, eye[l_te], l_tr


def _cosine_blocks(k, labels, per_class: int = 12) -> list:
    """Cosine similarity ``K_ij / sqrt(K_ii K_jj)`` on up to ``per_class`` examples of each
    digit, sorted by digit (4 decimals: a figure's worth, small in results.json)."""
    labels = np.asarray(labels)
    idx = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)])
    km = np.asarray(k, np.float64)[np.ix_(idx, idx)]
    d = np.sqrt(np.diag(km))
    return np.round(km / np.outer(d, d), 4).tolist()


def _spectrum(k) -> list:
    ev = np.asarray(diagnostics.spectrum(k), np.float64)
    ev = ev[ev > 0]
    return (ev / ev[0]).tolist()


def run(cfg: Config, ctx) -> dict:
    x_tr, y_tr, x_te, y_te, labels = load_digits(cfg.n_train, cfg.n_test, cfg.seed)
    params = init_mlp(jax.random.PRNGKey(cfg.seed), (64, cfg.width, cfg.width, 10))
    kernel_fn = ntk.empirical_ntk_fn(apply_mlp, trace_axes=(-1,), vmap_axes=0)
    plan = kernel_fn.plan(x_tr, None, params)

    k0 = kernel_fn(x_tr, None, params)
    learning_rate = cfg.lr_fraction * max_learning_rate(k0)

    def loss(p):
        return 0.5 * jnp.mean(jnp.sum((apply_mlp(p, x_tr) - y_tr) ** 2, axis=-1))

    @jax.jit
    def step(p):
        g = jax.grad(loss)(p)
        return jax.tree_util.tree_map(lambda a, b: a - learning_rate * b, p, g)

    snapshots = np.unique(np.linspace(0, cfg.steps, cfg.n_snapshots).astype(int))
    history = {"step": [], "alignment": [], "kernel_distance": [], "train_loss": [],
               "test_accuracy": []}
    k, t = k0, 0
    for s in snapshots:
        while t < s:
            params = step(params)
            t += 1
        k = k0 if s == 0 else kernel_fn(x_tr, None, params)
        history["step"].append(int(s))
        history["alignment"].append(float(diagnostics.kernel_alignment(k, y_tr)))
        history["kernel_distance"].append(float(diagnostics.kernel_distance(k0, k)))
        history["train_loss"].append(float(loss(params)))
        pred = apply_mlp(params, x_te)
        history["test_accuracy"].append(float(np.mean(np.argmax(pred, 1) ==
                                                      np.argmax(y_te, 1))))
    ctx.tick(cfg.steps)

    def kernel_regression_accuracy(p, k_train):
        k_test = kernel_fn(x_te, x_tr, p)
        ridge = 1e-4 * float(jnp.trace(k_train)) / k_train.shape[0]
        alpha = jnp.linalg.solve(k_train + ridge * jnp.eye(k_train.shape[0]), y_tr)
        return float(np.mean(np.argmax(k_test @ alpha, 1) == np.argmax(y_te, 1)))

    params0 = init_mlp(jax.random.PRNGKey(cfg.seed), (64, cfg.width, cfg.width, 10))
    final = k
    return {
        "implementation": plan["implementation"],
        "learning_rate": learning_rate,
        "estimated_flops": plan["flops"],
        "history": history,
        "alignment_gain": history["alignment"][-1] - history["alignment"][0],
        "final_kernel_distance": history["kernel_distance"][-1],
        "effective_rank_init": float(diagnostics.effective_rank(k0)),
        "effective_rank_final": float(diagnostics.effective_rank(final)),
        "entk_regression_accuracy_init": kernel_regression_accuracy(params0, k0),
        "entk_regression_accuracy_final": kernel_regression_accuracy(params, final),
        "network_test_accuracy": history["test_accuracy"][-1],
        "spectrum_init": _spectrum(k0),
        "spectrum_final": _spectrum(final),
        "cosine_init": _cosine_blocks(k0, labels),
        "cosine_final": _cosine_blocks(final, labels),
    }


def figures(results: dict) -> dict:
    """Spectrum before / after training, alignment and kernel distance against steps, and
    the eNTK cosine-similarity blocks."""
    from matplotlib.figure import Figure
    m, steps = results["metrics"], results["config"]["steps"]
    spectrum = Figure(figsize=(5.5, 4))
    ax = spectrum.subplots()
    for key, name in (("spectrum_init", "initialisation"),
                      ("spectrum_final", f"after {steps} GD steps")):
        ev = np.asarray(m[key], float)
        ax.loglog(np.arange(1, len(ev) + 1), ev, label=name)
    ax.set_xlabel("eigenvalue index")
    ax.set_ylabel("eigenvalue / largest eigenvalue")
    ax.set_title("eNTK spectrum on digits: training lifts the top ~10 (one per class)")
    ax.legend()

    alignment = Figure(figsize=(5.5, 4))
    ax = alignment.subplots()
    h = m["history"]
    ax.plot(h["step"], h["alignment"], "o-", label="centered alignment A(Θ, YYᵀ)")
    ax.plot(h["step"], h["kernel_distance"], "s-", label="kernel distance to Θ₀")
    ax.set_xlabel("gradient-descent step")
    ax.set_ylabel("value (dimensionless)")
    ax.set_title("The eNTK moves toward the task during training")
    ax.legend()

    kernels = Figure(figsize=(10, 4.6))
    axes = kernels.subplots(1, 2)
    for ax, key, title in ((axes[0], "cosine_init", "Θ at initialisation"),
                           (axes[1], "cosine_final", "Θ trained")):
        im = ax.imshow(np.asarray(m[key], float), cmap="viridis", vmin=-0.2, vmax=1)
        ax.set_title(title)
        ax.set_xlabel("example (sorted by digit)")
    axes[0].set_ylabel("example (sorted by digit)")
    kernels.suptitle("eNTK cosine similarity: training sharpens the digit blocks")
    kernels.colorbar(im, ax=axes, shrink=0.8, label="cosine similarity")
    return {"spectrum": spectrum, "alignment": alignment, "kernels": kernels}


# Training moves the finite network's eNTK toward the task (Baratin et al. 2021; Atanasov et
# al. 2022); "moves" means a kernel distance above 0.01.
CLAIMS = (
    claim("alignment_rises", "training raises the eNTK's centered alignment with the task "
          "(final - initial)", "alignment_gain", greater(0.0)),
    claim("kernel_moves", "the eNTK of a finite network moves during training (kernel "
          "distance to the initial eNTK)", "final_kernel_distance", greater(0.01)),
)
