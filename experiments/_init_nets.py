"""Small networks and training loops shared by the initialisation studies (Fixup, LSUV, ZerO,
IDInit, maxout).

An MLP is a list of layers ``[{"w": (fan_in, fan_out), "b": (fan_out,)}, ...]`` (row-vector
convention, ``x`` is ``(N, d)``)::

    z^1 = x W^1 + b^1,     z^l = phi(z^{l-1}) W^l + b^l   (2 <= l <= L),     f(x) = z^L,

so the last layer is linear (the logits). :func:`mlp_preactivations` returns every ``z^l``
(LSUV rescales layer ``l`` by the standard deviation of ``z^l``; ZerO reads the hidden
features ``phi(z^{L-1})``). Training is full-batch gradient descent on the softmax
cross-entropy ``-mean_i sum_c y_ic log softmax(f(x_i))_c`` through the resumable
:func:`experiments.loop.train`. All parameters are float32 whatever the JAX x64 setting, so a
run gives the same numbers under the CLI and under pytest.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

import tasks
from experiments.loop import train
from limits.networks import activation_fn

DTYPE = jnp.float32


def digits_classification(n_train: int, n_test: int, seed: int):
    """scikit-learn digits via :func:`tasks.load` (per-pixel
    centered, ``|x|^2 ~ 1``): ``(x_train (N, 64), y_train (N, 10) one-hot, x_test, y_test)``."""
    x_tr, l_tr, x_te, l_te = tasks.load("digits", n_train, n_test, seed)
    eye = np.eye(10, dtype=np.float32)
    return (jnp.asarray(x_tr, DTYPE), jnp.asarray(eye[l_tr]), jnp.asarray(x_te, DTYPE),
            jnp.asarray(eye[l_te]))


def _check_layers(layers):
    if not isinstance(layers, (list, tuple)) or not layers:
        raise ValueError(f"layers must be a non-empty list of {{'w', 'b'}} dicts, got {layers!r}")


def mlp_preactivations(layers, x, activation="relu") -> list:
    """Every layer's output ``[z^1, ..., z^L]`` (shapes ``(N, fan_out_l)``); ``z^L`` are
    the logits. ``activation`` is a name in :data:`limits.networks.ACTIVATIONS` or a callable."""
    _check_layers(layers)
    phi = activation_fn(activation)
    if x.ndim != 2 or x.shape[1] != layers[0]["w"].shape[0]:
        raise ValueError(f"x must have shape (N, {layers[0]['w'].shape[0]}), got {x.shape}")
    out, h = [], x
    for l, layer in enumerate(layers):
        z = (h if l == 0 else phi(h)) @ layer["w"] + layer["b"]
        out.append(z)
        h = z
    return out


def mlp_apply(layers, x, activation="relu"):
    """``f(x) = z^L``: ``(N, d) -> (N, fan_out_L)``."""
    return mlp_preactivations(layers, x, activation)[-1]


def _check_widths(widths):
    if len(widths) < 2 or any(int(w) < 1 for w in widths):
        raise ValueError(f"widths must list >= 2 positive sizes (input, ..., output), got {widths}")


def _as_params(arrays):
    return jax.tree.map(lambda a: jnp.asarray(np.asarray(a, np.float32)), arrays)


def gaussian_mlp(rng: np.random.Generator, widths, gain: float = 1.0,
                 readout_gain: float | None = None) -> list:
    """``W^l_ij ~ N(0, gain^2 / fan_in)``, ``b^l = 0``; the last layer uses ``readout_gain``
    (default ``gain``). ``gain = sqrt(2)`` is He (ReLU), ``gain = 1`` LeCun. Drawn with NumPy's
    ``rng`` (no compiled random kernels per shape)."""
    _check_widths(widths)
    readout_gain = gain if readout_gain is None else readout_gain
    layers = []
    for l, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        g = readout_gain if l == len(widths) - 2 else gain
        layers.append({"w": g / np.sqrt(n_in) * rng.standard_normal((n_in, n_out)),
                       "b": np.zeros(n_out)})
    return _as_params(layers)


def orthogonal_matrix(rng: np.random.Generator, n_in: int, n_out: int, gain: float = 1.0):
    """Haar-distributed ``(n_in, n_out)`` matrix with orthonormal rows (``n_in <= n_out``) or
    columns (``n_in >= n_out``), times ``gain``: QR of a Gaussian matrix with the signs of
    ``R``'s diagonal folded into ``Q`` (Mezzadri 2007). NumPy float64."""
    big, small = max(n_in, n_out), min(n_in, n_out)
    q, r = np.linalg.qr(rng.standard_normal((big, small)))
    q = q * np.sign(np.diag(r))
    return gain * (q if n_in >= n_out else q.T)


def orthogonal_mlp(rng: np.random.Generator, widths, gain: float = 1.0) -> list:
    """Orthonormal weights (Saxe et al.): ``W^l = gain Q^l`` (:func:`orthogonal_matrix`),
    ``b^l = 0``."""
    _check_widths(widths)
    return _as_params([{"w": orthogonal_matrix(rng, n_in, n_out, gain), "b": np.zeros(n_out)}
                       for n_in, n_out in zip(widths[:-1], widths[1:])])


def cross_entropy(logits, y_onehot):
    """Mean softmax cross-entropy ``-mean_i sum_c y_ic log softmax(logits_i)_c``."""
    return -jnp.mean(jnp.sum(y_onehot * jax.nn.log_softmax(logits), axis=-1))


def accuracy(logits, y_onehot):
    """Fraction of rows whose argmax logit is the true class."""
    return jnp.mean(jnp.argmax(logits, -1) == jnp.argmax(y_onehot, -1))


def stable_rank(matrix) -> float:
    """``|M|_F^2 / |M|_2^2`` (between 1 and rank M; 0 for the zero matrix)."""
    m = np.asarray(matrix, np.float64)
    if m.ndim != 2:
        raise ValueError(f"matrix must be 2-D, got shape {m.shape}")
    top = np.linalg.norm(m, 2)
    return 0.0 if top == 0 else float(np.sum(m ** 2) / top ** 2)


def numerical_rank(matrix, rel_tol: float = 1e-3) -> int:
    """Number of singular values above ``rel_tol`` times the largest."""
    s = np.linalg.svd(np.asarray(matrix, np.float64), compute_uv=False)
    return int(np.sum(s > rel_tol * s[0])) if s.size and s[0] > 0 else 0


def log_slope(x, y) -> float:
    """Least-squares slope of ``log y`` against ``x``."""
    return float(np.polyfit(np.asarray(x, float), np.log(np.asarray(y, float)), 1)[0])


@functools.lru_cache(maxsize=64)
def _gd_chunk(loss_fn: Callable, lr: float, chunk: int):
    """The jitted ``chunk``-step GD scan for ``loss_fn`` (cached: networks of the same shapes
    trained with the same loss share one compiled program)."""
    grad_fn = jax.grad(loss_fn)

    @jax.jit
    def run_chunk(params):
        def step(p, _):
            return jax.tree.map(lambda a, g: a - lr * g, p, grad_fn(p)), None
        return jax.lax.scan(step, params, None, length=chunk)[0]
    return run_chunk


def gd_train(ctx, task: str, params0, loss_fn: Callable, *, lr: float, n_steps: int,
             chunk: int, record: Callable, stop: Callable | None = None,
             checkpoint_every: int = 1):
    """Full-batch gradient descent ``theta <- theta - lr grad loss_fn(theta)`` for ``n_steps``
    steps, ``chunk`` steps per jitted ``lax.scan`` call, resumable through
    :func:`experiments.loop.train`. ``record(params, step) -> {name: float}``.
    Returns ``(params, history, step)``."""
    return train(ctx, task, init_state=lambda: params0,
                 chunk_fn=_gd_chunk(loss_fn, float(lr), int(chunk)), n_steps=n_steps,
                 chunk=chunk, record=record, stop=stop, checkpoint_every=checkpoint_every)


@functools.lru_cache(maxsize=64)
def _heavy_ball_chunk(loss_fn: Callable, momentum: float, chunk: int):
    """The jitted ``chunk``-step heavy-ball scan for ``loss_fn``; the learning rate is an
    argument, so every rate (and every network of the same shapes) shares one program."""
    grad_fn = jax.grad(loss_fn)

    @jax.jit
    def run_chunk(state, lr):
        def step(s, _):
            mom = jax.tree.map(lambda m, g: momentum * m + g, s["momentum"], grad_fn(s["params"]))
            return {"params": jax.tree.map(lambda p, m: p - lr * m, s["params"], mom),
                    "momentum": mom}, None
        return jax.lax.scan(step, state, None, length=chunk)[0]
    return run_chunk


def heavy_ball_train(ctx, task: str, init_params: Callable, loss_fn: Callable, *, lr: float,
                     momentum: float, n_steps: int, chunk: int, checkpoint_every: int = 1):
    """Full-batch heavy-ball SGD ``m <- momentum m + grad, theta <- theta - lr m`` (``m_0 = 0``)
    for ``n_steps`` steps, resumable through :func:`experiments.loop.train`, stopping at the
    first non-finite loss. ``init_params()`` builds the initial parameters (called only when
    there is no checkpoint).

    Returns ``(state, losses)``: the final ``{"params", "momentum"}`` and the loss every
    ``chunk`` steps from step 0, padded with ``inf`` after a divergence to
    ``n_steps // chunk + 1`` entries.
    """
    run_chunk = _heavy_ball_chunk(loss_fn, float(momentum), int(chunk))
    loss_jit = jax.jit(loss_fn)
    lr = jnp.asarray(lr, DTYPE)

    def record(state, step):
        value = float(loss_jit(state["params"]))
        return {"loss": value if np.isfinite(value) else float("inf")}

    def init_state():
        params = init_params()
        return {"params": params, "momentum": jax.tree.map(jnp.zeros_like, params)}
    state, hist, _ = train(ctx, task, init_state=init_state,
                           chunk_fn=lambda s: run_chunk(s, lr), n_steps=n_steps, chunk=chunk,
                           record=record, stop=lambda h: not np.isfinite(h["loss"][-1]),
                           checkpoint_every=checkpoint_every)
    n_points = n_steps // chunk + 1
    return state, hist["loss"] + [float("inf")] * (n_points - len(hist["loss"]))
