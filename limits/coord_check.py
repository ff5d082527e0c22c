"""Coordinate checks: how big are activations, outputs and their updates as width grows?

``coord_check`` follows microsoft/mup (Tensor Programs V, Sec. 5 / App. D.1): train a
network of each width for a few steps on one fixed batch and record the typical coordinate
size ``mean |h|`` of every layer's preactivation and of the output, and of their change
since initialization ``mean |h_t - h_0|``; fit log-log slopes against width.  Under muP
they are flat (slope 0) after the first step, except that the output at init shrinks like
``n^-1/2`` unless the readout is zero-initialised; under SP with a fixed learning rate the
output and last-layer updates grow with width.

``one_step_update_sizes`` measures TP IV's per-layer exponents ``r_l`` directly: the size of
layer ``l``'s own update ``m_l x^{l-1} Delta W^l`` after one step, which scales as
``n^-r_l`` (:func:`limits.update_exponents`).
"""
from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from limits.networks import Network, mlp, resmlp
from limits.optimizers import optimizer as make_optimizer
from limits.parametrization import Parametrization
from limits.scaling import loglog_slope

__all__ = ["one_step_update_sizes", "update_size_exponents", "CoordCheckConfig",
           "coord_check", "plot_coord_check", "depth_update_sizes"]


def _mean_abs(x):
    return jnp.mean(jnp.abs(x))


def one_step_update_sizes(network: Network, params, x, learning_rate: float, *,
                          readout_warmup: bool = True, kind: str | None = None) -> dict:
    """Per-layer one-step update sizes under a linear loss ``L = mean_i sum_k f_k(x_i)``.

    With ``readout_warmup`` the readout first takes one step alone (so the backward signal
    has its trained size ``n^-min(a+b, 2a+c)`` of TP IV), then every layer takes one step
    and we record, per layer ``l``, ``mean |m_l x^{l-1} (W^l_new - W^l_old)|`` (its update
    of its own preactivation; biases: ``mean |m_b Delta b|``).  The linear loss keeps the
    loss derivative ``chi`` fixed, so only the parametrization sets the sizes.

    Returns ``{layer name: float}`` (plus ``'<layer>.b'`` for biases).
    """
    kind = kind or network.parametrization.optimizer
    opt = make_optimizer(network.lr_scales, learning_rate, kind)

    def loss(p):
        return jnp.mean(jnp.sum(network.apply(p, x), axis=-1))

    state = opt.init(params)
    if readout_warmup:
        g = jax.grad(loss)(params)
        g = {k: (v if k == "output" else jax.tree.map(jnp.zeros_like, v)) for k, v in g.items()}
        upd, state = opt.update(g, state, params)
        params = jax.tree.map(lambda p, u: p + u, params, upd)
    g = jax.grad(loss)(params)
    upd, state = opt.update(g, state, params)
    inputs = network.layer_inputs(params, x)
    sizes = {}
    for name, leaves in upd.items():
        mult = network.multipliers[name]
        sizes[name] = _mean_abs(mult * (inputs[name] @ leaves["w"]))
        if "b" in leaves:
            sizes[f"{name}.b"] = _mean_abs(network.multipliers["bias"] * leaves["b"])
    return sizes


def _one_step_sizes_of(net, learning_rate, warm, params, x):
    return one_step_update_sizes(net, params, x, learning_rate, readout_warmup=warm)


def _seeded_params_and_inputs(net, seeds, batch, in_dim):
    """Parameters ``net.init(PRNGKey(seed))`` and inputs ``x ~ N(0, I)`` (numpy, seeded),
    stacked over seeds.  Initialised eagerly: the random kernels are compiled once."""
    params = [net.init(jax.random.PRNGKey(int(s))) for s in seeds]
    params = jax.tree.map(lambda *a: jnp.stack(a), *params)
    xs = np.stack([np.random.default_rng(10_000 + int(s)).standard_normal((batch, in_dim))
                   for s in seeds])
    return params, jnp.asarray(xs)


def _check_widths(widths, name="widths", minimum=2):
    widths = list(widths)
    if len(widths) < minimum:
        raise ValueError(f"{name} needs at least {minimum} values, got {widths}")
    for w in widths:
        if isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1:
            raise ValueError(f"{name} must be positive ints, got {widths}")
    return [int(w) for w in widths]


def update_size_exponents(parametrization: Parametrization, widths, *, depth: int = 3,
                          learning_rate: float = 0.01, seeds=(0, 1, 2), in_dim: int = 8,
                          batch: int = 32, base_width: int | None = None,
                          activation="relu") -> dict:
    """Measured one-step width exponents of every layer of an ``mlp`` (theory: ``-r_l``,
    ``-u`` for the output; :func:`limits.update_exponents`).

    TP IV's ``r_l = m + c_l - 1 + 2 a_l + 1(l=1)`` has ``m = min(a_out + b_out, 2 a_out +
    c_out)``: the backward signal is the initial readout plus the readout's own update.  At
    finite width the subleading one blurs a fitted slope, so the two are measured apart
    (:func:`one_step_update_sizes`, linear loss):

    * ``'init'``: one step from initialization (signal ``n^-(a_out + b_out)``);
    * ``'readout'``: zero-initialised readout, one readout-only step, then one step
      (signal ``n^-(2 a_out + c_out)``).  Adam normalises the signal away, so only ``'init'``
      is run for Adam.

    Sizes add, so the larger growth wins: the measured exponent of a layer is the larger of
    the two fitted slopes.  Slopes are fitted on the geometric mean over seeds.

    Returns ``{'widths', 'sizes': {source: {layer: (n_seeds, n_widths)}}, 'slopes_by_source':
    {source: {layer: float}}, 'slopes': {layer: float}}``.
    """
    widths = _check_widths(widths, minimum=3)
    base_width = base_width or widths[0]
    sources = ("init", "readout") if parametrization.optimizer == "sgd" else ("init",)
    sizes = {src: {} for src in sources}
    sigma_w = np.sqrt(2.0) if activation == "relu" else 1.0
    for wi, w in enumerate(widths):
        for src in sources:
            net = mlp(in_dim, w, depth, 1, parametrization, activation=activation,
                      base_width=base_width, sigma_w=sigma_w,
                      readout_zero_init=(src == "readout"))
            params, xs = _seeded_params_and_inputs(net, seeds, batch, in_dim)
            run = jax.jit(jax.vmap(partial(_one_step_sizes_of, net, learning_rate,
                                           src == "readout")))
            out = run(params, xs)
            for k, v in out.items():
                sizes[src].setdefault(k, np.zeros((len(seeds), len(widths))))[:, wi] = v
    by_source = {src: {k: float(loglog_slope(widths, np.exp(np.log(v).mean(0))))
                       for k, v in sizes[src].items()} for src in sources}
    slopes = {k: max(by_source[src][k] for src in sources) for k in by_source["init"]}
    return {"widths": widths, "sizes": sizes, "slopes_by_source": by_source, "slopes": slopes}


@dataclasses.dataclass(frozen=True)
class CoordCheckConfig:
    """Coordinate-check setup (microsoft/mup's defaults, shrunk for a CPU)."""

    widths: tuple = (64, 128, 256, 512, 1024)
    depth: int = 3
    n_steps: int = 3
    learning_rate: float = 0.05
    seeds: tuple = (0, 1, 2)
    in_dim: int = 16
    out_dim: int = 4
    batch: int = 64
    base_width: int | None = None
    activation: str = "relu"
    readout_zero_init: bool = False

    @classmethod
    def quick(cls, **kw):
        return cls(**{**dict(widths=(64, 128, 256, 512, 1024), seeds=(0, 1)), **kw})

    @classmethod
    def full(cls, **kw):
        return cls(**{**dict(widths=(64, 128, 256, 512, 1024, 2048, 4096), seeds=(0, 1, 2, 3, 4),
                             n_steps=5), **kw})


def coord_check(parametrization: Parametrization, config: CoordCheckConfig | None = None,
                **overrides) -> dict:
    """microsoft/mup-style coordinate check of an ``mlp`` under ``parametrization``.

    Trains ``config.n_steps`` steps (the parametrization's optimizer, MSE) on one fixed batch
    per seed at every width.  Records at step ``t = 0 .. n_steps`` (after ``t`` updates):
    ``size[name][seed, width, t] = mean |h_t|`` and ``update[name][seed, width, t] =
    mean |h_t - h_0|`` for every layer's preactivation and the output.

    Returns a plain dict: ``parametrization``, ``config`` (dict), ``widths``, ``steps``,
    ``size`` / ``update`` (``{name: (n_seeds, n_widths, n_steps + 1)}`` numpy arrays),
    ``size_slope`` / ``update_slope`` (``{name: (n_steps + 1,)}``: log-log slope against width
    of the seed mean at every step; ``update_slope[:, 0]`` is NaN), ``loss`` (seed x width x
    step).
    """
    if not isinstance(parametrization, Parametrization):
        raise TypeError("parametrization must be a limits.Parametrization, got "
                        f"{type(parametrization).__name__}")
    config = dataclasses.replace(config or CoordCheckConfig(), **overrides)
    widths = _check_widths(config.widths)
    if config.n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {config.n_steps}")
    base_width = config.base_width or widths[0]
    sigma_w = np.sqrt(2.0) if config.activation == "relu" else 1.0
    size, update, losses = {}, {}, []
    # regression targets y = tanh(x V), V ~ N(0, 1/d): a fixed teacher shared by all widths
    teacher = jnp.asarray(np.random.default_rng(12345).standard_normal(
        (config.in_dim, config.out_dim)) / np.sqrt(config.in_dim))
    for wi, w in enumerate(widths):
        net = mlp(config.in_dim, w, config.depth, config.out_dim, parametrization,
                  activation=config.activation, base_width=base_width, sigma_w=sigma_w,
                  readout_zero_init=config.readout_zero_init)
        opt = make_optimizer(net, config.learning_rate)

        def run(params, x, y, net=net, opt=opt):
            def loss(p):
                return 0.5 * jnp.mean(jnp.sum((net.apply(p, x) - y) ** 2, axis=-1))

            def step(carry, _):
                p, s = carry
                feats = net.features(p, x)
                val, g = jax.value_and_grad(loss)(p)
                u, s = opt.update(g, s, p)
                return (jax.tree.map(lambda a, b: a + b, p, u), s), (feats, val)

            (p_end, _), (feats, vals) = jax.lax.scan(step, (params, opt.init(params)), None,
                                                     length=config.n_steps)
            last = net.features(p_end, x)
            feats = jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]]), feats, last)
            vals = jnp.concatenate([vals, loss(p_end)[None]])
            sz = {k: jnp.mean(jnp.abs(v), axis=(1, 2)) for k, v in feats.items()}
            up = {k: jnp.mean(jnp.abs(v - v[0]), axis=(1, 2)) for k, v in feats.items()}
            return sz, up, vals

        params, xs = _seeded_params_and_inputs(net, config.seeds, config.batch, config.in_dim)
        ys = jnp.tanh(xs @ teacher)
        sz, up, vals = jax.jit(jax.vmap(run))(params, xs, ys)
        for k in sz:
            size.setdefault(k, np.zeros((len(config.seeds), len(widths), config.n_steps + 1)))
            update.setdefault(k, np.zeros_like(size[k]))
            size[k][:, wi] = np.asarray(sz[k])
            update[k][:, wi] = np.asarray(up[k])
        losses.append(np.asarray(vals))
    size_slope = {k: loglog_slope(widths, v.mean(0), axis=0) for k, v in size.items()}
    update_slope = {k: loglog_slope(widths, v.mean(0), axis=0) for k, v in update.items()}
    for v in update_slope.values():
        v[0] = np.nan
    return {"parametrization": parametrization.name, "config": dataclasses.asdict(config),
            "widths": widths, "steps": list(range(config.n_steps + 1)), "size": size,
            "update": update, "size_slope": size_slope, "update_slope": update_slope,
            "loss": np.stack(losses, axis=1)}


def plot_coord_check(result: dict, path=None, *, title: str | None = None):
    """The coordinate-check figure: one panel per step, ``mean |h_t|`` and ``mean |h_t - h_0|``
    against width, log-log. Returns a ``matplotlib.figure.Figure`` (no backend is chosen);
    with ``path`` it is also written there as PNG. ``result`` is :func:`coord_check`'s output
    or its JSON round trip (lists for arrays)."""
    from matplotlib.figure import Figure

    steps, widths = result["steps"], result["widths"]
    fig = Figure(figsize=(3.2 * len(steps), 6.4))
    axes = fig.subplots(2, len(steps), squeeze=False, sharex=True)
    for row, key in enumerate(("size", "update")):
        for t in steps:
            ax = axes[row, t]
            if key == "update" and t == 0:
                ax.axis("off")
                continue
            for name, arr in result[key].items():
                slope = result[f"{key}_slope"][name][t]
                ax.plot(widths, np.asarray(arr).mean(0)[:, t], "o-",
                        label=f"{name} ({slope:+.2f})")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{'mean |h_t|' if key == 'size' else 'mean |h_t - h_0|'}, t = {t}",
                         fontsize=9)
            ax.set_xlabel("width n")
            ax.legend(fontsize=6)
    fig.suptitle(title or f"Coordinate check: {result['parametrization']} "
                 "(flat in width = width-stable; slope in legend)")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def depth_update_sizes(parametrization: Parametrization, depths, *, width: int = 128,
                       branch="sqrt", lr_depth_exponent=None, learning_rate: float = 0.01,
                       seeds=(0, 1, 2), in_dim: int = 8, batch: int = 32,
                       activation="relu") -> dict:
    """One-step change of the residual stream ``mean |Y^L_1 - Y^L_0|`` and of the output
    of a :func:`limits.resmlp` against depth ``L`` (linear loss, one step of the
    parametrization's optimizer).  TP VI: it scales like ``L^(1 - alpha - gamma)``
    (:func:`limits.depth_update_exponent`): flat under depth-muP, ``sqrt(L)`` for Adam
    without the ``1/sqrt(L)`` learning-rate scaling.

    Returns ``{'depths', 'features': (n_seeds, n_depths), 'output': ..., 'slopes':
    {'features': float, 'output': float}}``.
    """
    depths = _check_widths(depths, "depths")
    feats = np.zeros((len(seeds), len(depths)))
    outs = np.zeros_like(feats)
    for di, L in enumerate(depths):
        net = resmlp(in_dim, width, L, 1, parametrization, branch=branch,
                     lr_depth_exponent=lr_depth_exponent, activation=activation)
        opt = make_optimizer(net, learning_rate)

        def run(params, x, net=net, opt=opt, L=L):
            g = jax.grad(lambda p: jnp.mean(net.apply(p, x)))(params)
            u, _ = opt.update(g, opt.init(params), params)
            new = jax.tree.map(lambda a, b: a + b, params, u)
            f0, f1 = net.features(params, x), net.features(new, x)
            name = f"block_{L}"
            return _mean_abs(f1[name] - f0[name]), _mean_abs(f1["output"] - f0["output"])

        params, xs = _seeded_params_and_inputs(net, seeds, batch, in_dim)
        a, b = jax.jit(jax.vmap(run))(params, xs)
        feats[:, di], outs[:, di] = np.asarray(a), np.asarray(b)
    return {"depths": depths, "features": feats, "output": outs,
            "slopes": {"features": float(loglog_slope(depths, feats.mean(0))),
                       "output": float(loglog_slope(depths, outs.mean(0)))}}
