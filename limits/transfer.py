"""Hyperparameter transfer: does the loss-optimal learning rate stay put as width grows?

Tensor Programs V (Yang et al. 2022, Fig. 1 and Sec. 3): under muP the training loss as a
function of ``log2(learning rate)`` has its argmin at the same place for every width, so a
learning rate tuned on a small model transfers; under SP with a width-independent rate
the argmin drifts (the maximal stable rate falls like ``1/n``).  Here at CPU scale: an
``mlp`` trained by full-batch steps of its parametrization's optimizer on scikit-learn's
``digits`` (8x8 images, 10 classes, softmax cross-entropy) or a synthetic teacher task, for
every (width, learning rate, seed); the result is the final training loss.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from limits.networks import mlp, resmlp
from limits.optimizers import optimizer as make_optimizer
from limits.parametrization import Parametrization

__all__ = ["TransferConfig", "lr_transfer", "lr_transfer_depth", "plot_transfer", "load_task"]


@dataclasses.dataclass(frozen=True)
class TransferConfig:
    """Learning-rate sweep across widths; ``learning_rates`` is a log2 grid.

    The defaults (= ``quick()``) train 10 full-batch steps on 256 digits: short enough that
    the loss has an interior optimum in the learning rate (with long training the loss is
    ~0 on a wide plateau and the argmin is ill-defined)."""

    widths: tuple = (16, 32, 64, 128, 256)
    learning_rates: tuple = tuple(2.0 ** k for k in range(-12, 1))
    depth: int = 2
    n_steps: int = 10
    n_train: int = 256
    seeds: tuple = (0, 1)
    base_width: int | None = None
    dataset: str = "digits"
    activation: str = "relu"
    readout_zero_init: bool = False

    @classmethod
    def quick(cls, **kw):
        return cls(**kw)

    @classmethod
    def full(cls, **kw):
        return cls(**{**dict(widths=(32, 64, 128, 256, 512, 1024), n_steps=30,
                             n_train=1024, seeds=(0, 1, 2),
                             learning_rates=tuple(2.0 ** (k / 2) for k in range(-28, 3))),
                      **kw})


def load_task(dataset: str = "digits", n_train: int = 512, seed: int = 0):
    """``(x, y_onehot)`` from :func:`tasks.load`: ``'digits'`` (scikit-learn's 8x8 digits),
    ``'mnist'`` or ``'synthetic'`` (its ``'teacher'`` task: Gaussian inputs in 16 dimensions,
    labels of a random two-layer teacher), 10 classes, inputs normalised as there."""
    import tasks
    names = {"digits": "digits", "mnist": "mnist", "synthetic": "teacher"}
    if dataset not in names:
        raise ValueError(f"dataset must be one of {sorted(names)}, got {dataset!r}")
    split = tasks.load(names[dataset], n_train, 0, seed, dtype=np.float64)
    return jnp.asarray(split.x_train), jnp.asarray(tasks.one_hot(split.labels_train,
                                                                 dtype=np.float64))


def lr_transfer(parametrization: Parametrization, config: TransferConfig | None = None,
                **overrides) -> dict:
    """Train an ``mlp`` under ``parametrization`` for every width x learning rate x seed.

    Returns a plain dict: ``parametrization``, ``config``, ``widths``, ``learning_rates``,
    ``loss`` (``(n_seeds, n_widths, n_lrs)`` final training loss, ``inf`` where training
    diverged), ``mean_loss`` (over seeds), ``argmin`` (grid index of the best rate per width),
    ``best_learning_rate`` per width, and ``argmin_shift`` (max - min of ``argmin``, in grid
    steps).
    """
    if not isinstance(parametrization, Parametrization):
        raise TypeError("parametrization must be a limits.Parametrization, got "
                        f"{type(parametrization).__name__}")
    config = dataclasses.replace(config or TransferConfig(), **overrides)
    widths = [int(w) for w in config.widths]
    if len(widths) < 2 or min(widths) < 1:
        raise ValueError(f"widths must hold at least two positive ints, got {config.widths}")
    lrs = _check_lrs(config.learning_rates)
    base_width = config.base_width or widths[0]
    sigma_w = np.sqrt(2.0) if config.activation == "relu" else 1.0

    def build(w, in_dim, out_dim):
        return mlp(in_dim, w, config.depth, out_dim, parametrization,
                   activation=config.activation, base_width=base_width, sigma_w=sigma_w,
                   readout_zero_init=config.readout_zero_init)

    out = _sweep(build, widths, lrs, config)
    return {"parametrization": parametrization.name, "config": dataclasses.asdict(config),
            "widths": widths, **out}


def lr_transfer_depth(parametrization: Parametrization, depths=(2, 4, 8, 16, 32), *,
                      width: int = 64, branch="sqrt", lr_depth_exponent=None,
                      config: TransferConfig | None = None, **overrides) -> dict:
    """Learning-rate sweep across depth for a :func:`limits.resmlp` with branch multiplier
    ``L^-alpha`` and block learning rates ``L^-kappa`` (default: depth-muP's ``kappa``,
    Yang et al. TP VI / Bordelon et al. 2023): the argmin should stay put.  Same output as
    :func:`lr_transfer` with ``depths`` instead of ``widths``."""
    if not isinstance(parametrization, Parametrization):
        raise TypeError("parametrization must be a limits.Parametrization, got "
                        f"{type(parametrization).__name__}")
    config = dataclasses.replace(config or TransferConfig(), **overrides)
    depths = [int(d) for d in depths]
    if len(depths) < 2 or min(depths) < 1:
        raise ValueError(f"depths must hold at least two positive ints, got {depths}")
    lrs = _check_lrs(config.learning_rates)
    sigma_w = np.sqrt(2.0) if config.activation == "relu" else 1.0

    def build(L, in_dim, out_dim):
        return resmlp(in_dim, width, L, out_dim, parametrization, branch=branch,
                      lr_depth_exponent=lr_depth_exponent, activation=config.activation,
                      sigma_w=sigma_w, readout_zero_init=config.readout_zero_init)

    out = _sweep(build, depths, lrs, config)
    kappa = "depth-muP" if lr_depth_exponent is None else lr_depth_exponent
    return {"parametrization": f"{parametrization.name}, branch {branch}, kappa {kappa}",
            "config": dataclasses.asdict(config), "depths": depths, "widths": depths, **out}


def _check_lrs(learning_rates):
    lrs = np.asarray(learning_rates, dtype=float)
    if lrs.ndim != 1 or lrs.size < 3 or np.any(lrs <= 0) or np.any(np.diff(lrs) <= 0):
        raise ValueError("learning_rates must be an increasing grid of >= 3 positive values, "
                         f"got {learning_rates}")
    return lrs


def _sweep(build, sizes, lrs, config):
    """Final training loss for every size x learning rate x seed (full-batch steps)."""
    x, y = load_task(config.dataset, config.n_train)
    loss = np.zeros((len(config.seeds), len(sizes), lrs.size))
    for i, size in enumerate(sizes):
        net = build(size, x.shape[1], y.shape[1])
        opt = make_optimizer(net, 1.0)  # updates are linear in the global rate

        def xent(p, net=net):
            logits = net.apply(p, x)
            return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(logits), axis=-1))

        def train(params, lr, opt=opt, xent=xent):
            def step(carry, _):
                p, s = carry
                u, s = opt.update(jax.grad(xent)(p), s, p)
                return (jax.tree.map(lambda a, b: a + lr * b, p, u), s), None

            (p, _), _ = jax.lax.scan(step, (params, opt.init(params)), None,
                                     length=config.n_steps)
            return xent(p)

        run = jax.jit(jax.vmap(train, in_axes=(None, 0)))
        for si, seed in enumerate(config.seeds):
            params = net.init(jax.random.PRNGKey(int(seed)))
            loss[si, i] = np.asarray(run(params, jnp.asarray(lrs)))
    loss = np.where(np.isfinite(loss), loss, np.inf)
    mean = loss.mean(0)
    argmin = mean.argmin(1)
    return {"learning_rates": lrs.tolist(), "loss": loss, "mean_loss": mean,
            "argmin": argmin.tolist(), "best_learning_rate": lrs[argmin].tolist(),
            "argmin_shift": int(argmin.max() - argmin.min())}


def plot_transfer(results, path=None, *, title: str | None = None):
    """Training loss against ``log2`` learning rate, one curve per width, one panel per
    result (e.g. SP and muP side by side); stars mark each width's best rate. Returns a
    ``matplotlib.figure.Figure`` (no backend is chosen); with ``path`` it is also written
    there as PNG."""
    import matplotlib
    from matplotlib.figure import Figure

    results = [results] if isinstance(results, dict) else list(results)
    fig = Figure(figsize=(5 * len(results), 4))
    axes = fig.subplots(1, len(results), squeeze=False)
    for ax, r in zip(axes[0], results):
        lr = np.log2(np.asarray(r["learning_rates"], float))
        colors = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, len(r["widths"])))
        loss = np.asarray(r["mean_loss"], float)
        finite = np.where(np.isfinite(loss), loss, np.nan)
        label = "depth" if "depths" in r else "width"
        for w, curve, k, col in zip(r["widths"], finite, r["argmin"], colors):
            ax.plot(lr, curve, "o-", color=col, ms=3, label=f"{label} {w}")
            ax.plot(lr[k], curve[k], "*", color=col, ms=14)
        ax.set_xlabel("log2 learning rate")
        ax.set_ylabel("training loss")
        top = np.nanmin(finite) * 4 if np.isfinite(np.nanmin(finite)) else 3
        ax.set_ylim(0, min(top, np.nanmax(finite)) * 1.05)
        ax.set_title(f"{r['parametrization']}: argmin moves {r['argmin_shift']} grid steps",
                     fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(title or "Learning-rate transfer across width (TP V Fig. 1)")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
