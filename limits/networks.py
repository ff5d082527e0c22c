"""Networks built under a parametrization: an MLP and a residual MLP with depth scaling.

``mlp`` (``L = depth`` hidden layers, width ``n``, base width ``n0``, ``rho = n / n0``):

    h^1 = m_1 x W^1 + m_b b^1,     h^l = m_h phi(h^{l-1}) W^l + m_b b^l   (2 <= l <= L),
    f(x) = m_out phi(h^L) W^{L+1},

with ``m_role = rho^-a_role`` and ``W^l_ij ~ N(0, sigma^2 / fan_in(n0) * rho^-2b_role)``
(:class:`limits.Parametrization`).  ``resmlp`` (``L = depth`` residual blocks):

    Y^0 = m_1 x W^in,     Y^l = Y^{l-1} + beta m_h phi(Y^{l-1}) W^l,     f = m_out Y^L W^out,

with the branch multiplier ``beta = (L / L0)^-alpha`` (:mod:`limits.depth`); this is the
residual network of Hayou & Yang (2023) and Yang et al. (TP VI, 2023) with one-layer branches.

Both return a :class:`Network`: ``init(key) -> params``, ``apply(params, x) -> (N, out_dim)``,
``features(params, x) -> {name: (N, width)}`` (every preactivation / residual stream and
``'output'``), ``lr_scales`` (a pytree of floats matching ``params``: the learning rate of a
leaf is ``eta * lr_scale``) and the multipliers.  Parameters are plain nested dicts.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from limits.depth import _check_depth, branch_exponent, branch_multiplier, depth_lr_exponent
from limits.parametrization import Parametrization, _exponent

__all__ = ["ACTIVATIONS", "Network", "mlp", "resmlp", "ntk_fn"]


def _erf(x):
    return jax.scipy.special.erf(x)


ACTIVATIONS: dict[str, Callable] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "erf": _erf,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "sigmoid": jax.nn.sigmoid,
    "sin": jnp.sin,
    "identity": lambda x: x,
}


def activation_fn(activation):
    """Resolve an activation name (see :data:`ACTIVATIONS`) or pass a callable through."""
    if callable(activation):
        return activation
    if isinstance(activation, str) and activation in ACTIVATIONS:
        return ACTIVATIONS[activation]
    raise ValueError(f"activation must be a callable or one of {sorted(ACTIVATIONS)}, "
                     f"got {activation!r}")


def _check_int(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_positive(value, name, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>=' if allow_zero else '>'} 0, got {value}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class Network:
    """A network under a parametrization (see module docstring).

    ``layer_inputs(params, x)`` gives, per layer name, the array its weight multiplies
    (``x``, ``phi(h^{l-1})``, ...), so ``multipliers[name] * inputs[name] @ W`` is the layer's
    contribution.  ``roles`` mirrors ``params`` with the role name of every leaf
    (``'input'``, ``'hidden'``, ``'output'``, ``'bias'``); ``multipliers`` maps each
    layer name to its forward multiplier.
    """

    init: Callable
    apply: Callable
    features: Callable
    layer_inputs: Callable
    lr_scales: dict
    roles: dict
    multipliers: dict
    parametrization: Parametrization
    width: int
    depth: int
    in_dim: int
    out_dim: int
    kind: str


def _check_common(parametrization, in_dim, width, depth, out_dim, base_width):
    if not isinstance(parametrization, Parametrization):
        raise TypeError("parametrization must be a limits.Parametrization, got "
                        f"{type(parametrization).__name__}")
    _check_int(in_dim, "in_dim"), _check_int(width, "width"), _check_int(out_dim, "out_dim")
    _check_int(depth, "depth")
    base_width = width if base_width is None else base_width
    _check_positive(base_width, "base_width")
    return base_width


def mlp(in_dim: int, width: int, depth: int, out_dim: int,
        parametrization: Parametrization, *, activation="relu", base_width=None,
        sigma_w: float = 1.0, sigma_out: float = 1.0, bias: bool = False,
        sigma_b: float = 0.0, readout_zero_init: bool = False) -> Network:
    """An MLP with ``depth`` hidden layers of ``width`` under ``parametrization``.

    Args:
      in_dim, width, depth, out_dim: input dimension ``d``, width ``n``, number of hidden
        layers ``L`` (weights ``W^1 .. W^{L+1}``), output dimension ``O``.
      parametrization: a :class:`limits.Parametrization`; depth >= 2 needs its hidden role.
      activation: name in :data:`ACTIVATIONS` or a callable.
      base_width: ``n0`` (default: ``width``, i.e. every parametrization is SP-like there).
      sigma_w, sigma_out: init std constants of the hidden/input and output weights.
      bias, sigma_b: hidden-layer biases (role ``'bias'``) and their init std constant.
      readout_zero_init: start the output weights at zero (muP's usual choice).

    Returns a :class:`Network`; ``apply(params, x)`` maps ``(N, d) -> (N, O)``.
    """
    p = parametrization
    base_width = _check_common(p, in_dim, width, depth, out_dim, base_width)
    p.check_depth(depth)
    phi = activation_fn(activation)
    sigma_w = _check_positive(sigma_w, "sigma_w", allow_zero=True)
    sigma_out = _check_positive(sigma_out, "sigma_out", allow_zero=True)
    sigma_b = _check_positive(sigma_b, "sigma_b", allow_zero=True)

    names = [f"layer_{l}" for l in range(1, depth + 1)]
    shapes, stds, roles, lrs, mults = {}, {}, {}, {}, {}
    for l, name in enumerate(names, start=1):
        role = "input" if l == 1 else "hidden"
        fan_in, fan_in_base = (in_dim, in_dim) if l == 1 else (width, base_width)
        shapes[name] = {"w": (fan_in, width)}
        stds[name] = {"w": p.init_std(role, width, base_width, fan_in_base, sigma_w)}
        roles[name] = {"w": role}
        lrs[name] = {"w": p.lr_scale(role, width, base_width)}
        mults[name] = p.multiplier(role, width, base_width)
        if bias:
            shapes[name]["b"] = (width,)
            stds[name]["b"] = p.init_std("bias", width, base_width, 1, sigma_b)
            roles[name]["b"] = "bias"
            lrs[name]["b"] = p.lr_scale("bias", width, base_width)
    shapes["output"] = {"w": (width, out_dim)}
    stds["output"] = {"w": 0.0 if readout_zero_init else
                      p.init_std("output", width, base_width, base_width, sigma_out)}
    roles["output"] = {"w": "output"}
    lrs["output"] = {"w": p.lr_scale("output", width, base_width)}
    mults["output"] = p.multiplier("output", width, base_width)
    bias_mult = p.multiplier("bias", width, base_width) if bias else None
    if bias:
        mults["bias"] = bias_mult

    def init(key):
        return _gaussian_init(key, shapes, stds)

    def features(params, x):
        x = _check_input(x, in_dim)
        out, h = {}, x
        for l, name in enumerate(names, start=1):
            inp = h if l == 1 else phi(h)
            h = mults[name] * (inp @ params[name]["w"])
            if bias:
                h = h + bias_mult * params[name]["b"]
            out[name] = h
        out["output"] = mults["output"] * (phi(h) @ params["output"]["w"])
        return out

    def apply(params, x):
        return features(params, x)["output"]

    def layer_inputs(params, x):
        feats = features(params, x)
        out = {"layer_1": x}
        for l in range(2, depth + 1):
            out[f"layer_{l}"] = phi(feats[f"layer_{l - 1}"])
        out["output"] = phi(feats[names[-1]])
        return out

    return Network(init, apply, features, layer_inputs, lrs, roles, mults, p, width, depth, in_dim,
                   out_dim, "mlp")


def resmlp(in_dim: int, width: int, depth: int, out_dim: int,
           parametrization: Parametrization, *, branch="sqrt", lr_depth_exponent=None,
           activation="relu", base_width=None, base_depth: int = 1, sigma_w: float = 1.0,
           sigma_out: float = 1.0, readout_zero_init: bool = False) -> Network:
    """A residual MLP with ``depth`` one-layer blocks ``Y^l = Y^{l-1} + beta phi(Y^{l-1}) W^l``.

    Args:
      branch: branch scaling ``beta = (L / L0)^-alpha``: ``'none'`` (alpha = 0), ``'sqrt'`` or
        ``'depth_mup'`` (1/2), ``'linear'`` (1), or a number ``alpha``.
      lr_depth_exponent: ``kappa``; block learning rates get ``(L / L0)^-kappa``.  Default:
        the ``kappa`` of :func:`limits.depth.depth_lr_exponent` (``alpha + gamma = 1``; for
        ``alpha = 1/2`` this is depth-muP: SGD 0, Adam 1/2).
      base_depth: ``L0``; at ``depth = base_depth`` no depth scaling is applied.
      Other arguments as in :func:`mlp`; blocks use the ``hidden`` role, the embedding the
      ``input`` role and the readout the ``output`` role.

    ``features`` returns the residual stream after the embedding (``'block_0'``) and after
    every block (``'block_l'``), and ``'output'``.
    """
    p = parametrization
    base_width = _check_common(p, in_dim, width, depth, out_dim, base_width)
    _check_depth(base_depth, "base_depth")
    if p.hidden is None:
        raise ValueError(f"parametrization {p.name!r} has no hidden-layer exponents; a "
                         "residual MLP needs them for its blocks")
    phi = activation_fn(activation)
    sigma_w = _check_positive(sigma_w, "sigma_w", allow_zero=True)
    sigma_out = _check_positive(sigma_out, "sigma_out", allow_zero=True)
    alpha = branch_exponent(branch)
    kappa = (depth_lr_exponent(p.optimizer, alpha) if lr_depth_exponent is None
             else _exponent(lr_depth_exponent, "lr_depth_exponent"))
    beta = branch_multiplier(depth, alpha, base_depth)
    depth_lr = (depth / base_depth) ** -float(kappa)

    blocks = [f"block_{l}" for l in range(1, depth + 1)]
    shapes = {"input": {"w": (in_dim, width)}, "output": {"w": (width, out_dim)}}
    stds = {"input": {"w": p.init_std("input", width, base_width, in_dim, sigma_w)},
            "output": {"w": 0.0 if readout_zero_init else
                       p.init_std("output", width, base_width, base_width, sigma_out)}}
    roles = {"input": {"w": "input"}, "output": {"w": "output"}}
    lrs = {"input": {"w": p.lr_scale("input", width, base_width)},
           "output": {"w": p.lr_scale("output", width, base_width)}}
    mults = {"input": p.multiplier("input", width, base_width),
             "output": p.multiplier("output", width, base_width)}
    hidden_std = p.init_std("hidden", width, base_width, base_width, sigma_w)
    for name in blocks:
        shapes[name] = {"w": (width, width)}
        stds[name] = {"w": hidden_std}
        roles[name] = {"w": "hidden"}
        lrs[name] = {"w": p.lr_scale("hidden", width, base_width) * depth_lr}
        mults[name] = beta * p.multiplier("hidden", width, base_width)

    def init(key):
        return _gaussian_init(key, shapes, stds)

    mult_block = mults[blocks[0]]

    def block_step(h, w):
        h = h + mult_block * (phi(h) @ w)
        return h, h

    def block_step_last_only(h, w):
        return h + mult_block * (phi(h) @ w), None

    def features(params, x):
        x = _check_input(x, in_dim)
        h = mults["input"] * (x @ params["input"]["w"])
        out = {"block_0": h}
        ws = jnp.stack([params[name]["w"] for name in blocks])
        h, hs = jax.lax.scan(block_step, h, ws)
        for l, name in enumerate(blocks):
            out[name] = hs[l]
        out["output"] = mults["output"] * (h @ params["output"]["w"])
        return out

    def apply(params, x):
        x = _check_input(x, in_dim)
        h = mults["input"] * (x @ params["input"]["w"])
        ws = jnp.stack([params[name]["w"] for name in blocks])
        h, _ = jax.lax.scan(block_step_last_only, h, ws)
        return mults["output"] * (h @ params["output"]["w"])

    def layer_inputs(params, x):
        feats = features(params, x)
        out = {"input": x, "output": feats[blocks[-1]]}
        for l, name in enumerate(blocks):
            out[name] = phi(feats[f"block_{l}"])
        return out

    net = Network(init, apply, features, layer_inputs, lrs, roles, mults, p, width, depth, in_dim,
                  out_dim, "resmlp")
    return net


_CHUNK = 1 << 15


def standard_normal(key, size: int):
    """``size`` iid N(0, 1) numbers drawn in fixed-size chunks ``normal(fold_in(key, i),
    (32768,))``: every network size reuses the same compiled random-number kernel, so
    building networks of many widths eagerly compiles it once."""
    n_chunks = -(-size // _CHUNK)
    parts = [jax.random.normal(jax.random.fold_in(key, i), (_CHUNK,)) for i in range(n_chunks)]
    return jnp.concatenate(parts)[:size] if n_chunks > 1 else parts[0][:size]


def _gaussian_init(key, shapes, stds):
    """``params[layer][leaf] = std * z`` with ``z ~ N(0, I)``, all drawn as one flat vector
    (one random-number kernel per network instead of one per leaf: much cheaper to compile)."""
    order = [(name, leaf) for name in sorted(shapes) for leaf in sorted(shapes[name])]
    sizes = [int(np.prod(shapes[n][l])) for n, l in order]
    z = standard_normal(key, sum(sizes))
    params, start = {}, 0
    for (name, leaf), size in zip(order, sizes):
        params.setdefault(name, {})[leaf] = (
            stds[name][leaf] * z[start:start + size].reshape(shapes[name][leaf]))
        start += size
    return params


def _check_input(x, in_dim):
    if x.ndim != 2 or x.shape[-1] != in_dim:
        raise ValueError(f"x must have shape (N, {in_dim}), got {tuple(x.shape)}")
    return x


def ntk_fn(network: Network, **kwargs):
    """Empirical NTK of ``network`` under its learning-rate scales:
    ``Theta(x1, x2) = sum_l s_l J_l(x1) J_l(x2)^T`` with ``s_l`` = ``network.lr_scales``
    (the kernel that drives SGD with per-layer learning rates ``eta s_l``; TP IV Sec. 3).

    A thin wrapper over ``ntk.empirical_ntk_fn(network.apply, param_scales=...,
    **kwargs)``; returns ``fn(x1, x2, params)``.
    """
    if not isinstance(network, Network):
        raise TypeError(f"network must be a limits.Network, got {type(network).__name__}")
    import ntk  # the kernels room; imported lazily so limits works without it

    return ntk.empirical_ntk_fn(network.apply, param_scales=network.lr_scales, **kwargs)
