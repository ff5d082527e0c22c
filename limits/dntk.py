"""The NTK's change in training at finite width: the dNTK of a dense network in the NTK
parametrisation, exactly (forward-mode derivative of the empirical NTK along a gradient step),
the actual one-step change, and Monte Carlo of both over initialisations (Roberts, Yaida &
Hanin, "The Principles of Deep Learning Theory", Chapter 11).

Network (as in :mod:`limits.finite_width`; one output, all parameters ``~ N(0, 1)``)::

    z^1 = sqrt(C_W / n_0) W^1 x + sqrt(C_b) b^1,
    z^{l+1} = sqrt(C_W / n_l) W^{l+1} sigma(z^l) + sqrt(C_b) b^{l+1},      f = z^L,

trained by plain gradient descent on the raw parameters ``theta`` (so the learning-rate
scales are ``lambda_W = C_W``, ``lambda_b = C_b``) with the loss ``L = sum_a (f(x_a) -
y_a)^2 / 2`` over a batch; its empirical NTK is ``Theta(x1, x2) = sum_mu df(x1)/dtheta_mu
df(x2)/dtheta_mu``. One step ``dtheta = -eta grad L = -eta sum_a eps_a grad f(x_a)``
(``eps_a = f(x_a) - y_a``) changes the NTK by

    Delta Theta(x1, x2) = Theta_{theta + dtheta}(x1, x2) - Theta_theta(x1, x2)
                        = dTheta(x1, x2) + O(eta^2),
    dTheta(x1, x2) = sum_mu dTheta(x1, x2)/dtheta_mu dtheta_mu
                   = -eta sum_a eps_a dTheta_{a, 1, 2},

with the book's dNTK ``dTheta_{a,1,2} = sum_mu dTheta(x1, x2)/dtheta_mu df(x_a)/dtheta_mu``;
the ``O(eta^2)`` rest is its ddNTK terms. ``dTheta`` is computed here with one ``jax.jvp`` of
the NTK in the parameters (:func:`dntk`), ``Delta Theta`` by evaluating the NTK twice
(:func:`ntk_one_step_change`).

Normalisation (what :func:`sample_ntk_change` measures): one input ``x`` with ``q0 = |x|^2 /
n_0``, target ``y = 0`` and the fixed learning rate ``eta = 1 / Theta_inf`` with
``Theta_inf`` the infinite-width NTK of ``x`` (the step that would bring the linearised
network's residual to zero; the same for every initialisation). The relative change of the
diagonal NTK,

    r = dTheta(x, x) / Theta_inf = -f(x) dTheta_{x,x,x} / Theta_inf^2,

is dimensionless (invariant under rescaling the output), vanishes at infinite width (the NTK
is frozen), and its mean over initialisations ``E[r] = -E[f dTheta_{xxx}] / Theta_inf^2`` is
the book's dNTK-preactivation cross-correlation, of order ``1 / n``; its spread is of order
``1 / sqrt(n)``. (``E[dTheta_{xxx}] = 0``: flipping the sign of the readout flips it.)
The book's Chapter 11 finds these ``1 / n`` statistics growing with depth like ``L / n`` at
criticality; the coefficients for ReLU and tanh are not derived here (measured by
:mod:`experiments.finite_width_corrections`).

Hand-derived cases (``lambda = C``, ``C_b = 0``):

* two layers, linear activation, exactly for every parameter value: with ``alpha^2 =
  C_W^2 / (n n_0)``, ``p_a = W^1 x_a``,

      Theta(x1, x2) = alpha^2 (p_1 . p_2 + |W^2|^2 x1 . x2),
      dTheta(x1, x2) = -eta alpha^2 sum_a eps_a [(x_a . x1) f_2 + (x_a . x2) f_1
                                                  + 2 (x1 . x2) f_a],

  and for one input ``Delta Theta = -4 eta eps alpha^2 |x|^2 f + eta^2 eps^2 alpha^2 |x|^2
  Theta`` exactly (the NTK is quadratic in ``eta``); at ``eta = 1 / Theta_inf``, ``y = 0``,
  ``E[r] = -1 / n`` exactly (``E f^2 = C_W^2 q0``, ``Theta_inf = 2 C_W^2 q0``).
* deep linear networks at ``C_W = 1``, leading order in ``1 / n`` (:func:`deep_linear_dntk_mean`):
  the step moves the forward signals ``z^{l-1}`` and the backward ``delta^l = df / dz^l``
  through the Jacobians ``J`` between layers; each product ``z^T J^T J J^T delta``
  across ``k`` Gaussian layers averages (against ``f``) to ``(1 + k)`` times its
  infinite-width value (the leading Wick pairings: one more for each layer at which the
  pairing can switch), while the scalars ``|delta^l|^2 -> 1``, ``|z^l|^2 / n -> q0`` may be
  replaced by their limits at this order, so ``E[dTheta] = -(4 eta q0^2 / n) sum_{j<L} j (j +
  1) / 2`` and

      E[r] = -(2 / 3) (L^2 - 1) / (L n)   ~   -(2/3) L / n,

  which is ``-1 / n`` at ``L = 2`` (the tests and :mod:`experiments.finite_width_corrections`
  check it against Monte Carlo).

Roberts, D. A., Yaida, S. & Hanin, B. (2022). The Principles of Deep Learning Theory.
Cambridge University Press, arXiv:2106.10165 (Ch. 11, the dNTK).
"""
from __future__ import annotations

import functools
import math

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

from limits import finite_width as fw
from limits.networks import activation_fn

__all__ = [
    "dense_network",
    "empirical_ntk",
    "gradient_step",
    "dntk",
    "ntk_one_step_change",
    "deep_linear_dntk_mean",
    "ntk_change_dense",
    "sample_ntk_change",
]


def _check_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_number(name, value, positive=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or \
            not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be a finite number {'>' if positive else '>='} 0, "
                         f"got {value!r}")
    return float(value)


def dense_network(activation, input_dim: int, width: int, depth: int, sigma_w2: float,
                  sigma_b2: float = 0.0):
    """A one-output dense network in the NTK parametrisation (module docstring).

    ``depth`` weight layers (``depth - 1`` hidden layers of ``width``), ``activation`` a name
    of :data:`limits.networks.ACTIVATIONS` or a callable. Returns ``(init, apply)``:
    ``init(key) -> params`` (``{'W': [(n_l, n_{l-1})...], 'b': [(n_l,)...]}``, all ``N(0,
    1)``; no biases when ``sigma_b2 == 0``), ``apply(params, x) -> (N,)`` for ``x`` of shape
    ``(N, input_dim)``.
    """
    phi = activation_fn(activation)
    input_dim = _check_int("input_dim", input_dim)
    width = _check_int("width", width)
    depth = _check_int("depth", depth)
    cw = _check_number("sigma_w2", sigma_w2, positive=True)
    cb = _check_number("sigma_b2", sigma_b2)
    dims = [input_dim] + [width] * (depth - 1) + [1]

    def init(key):
        keys = jax.random.split(key, 2 * depth)
        params = {"W": [jax.random.normal(keys[i], (dims[i + 1], dims[i]))
                        for i in range(depth)]}
        if cb:
            params["b"] = [jax.random.normal(keys[depth + i], (dims[i + 1],))
                           for i in range(depth)]
        return params

    def apply(params, x):
        if x.ndim != 2 or x.shape[1] != input_dim:
            raise ValueError(f"x must have shape (N, {input_dim}), got {tuple(x.shape)}")
        h = x
        for i, W in enumerate(params["W"]):
            z = math.sqrt(cw / dims[i]) * h @ W.T
            if "b" in params:
                z = z + math.sqrt(cb) * params["b"][i]
            h = phi(z) if i < depth - 1 else z
        return h[:, 0]

    return init, apply


def _jacobian(apply, params, x):
    """``(N, P)`` Jacobian of the ``(N,)`` outputs in the flattened parameters."""
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    return jax.jacrev(lambda p: apply(unravel(p), x))(flat)


def _ntk(apply, params, x1, x2):
    j1 = _jacobian(apply, params, x1)
    j2 = j1 if x2 is None else _jacobian(apply, params, x2)
    return j1 @ j2.T


def _step(apply, params, x, y, eta):
    grads = jax.grad(lambda p: 0.5 * jnp.sum((apply(p, x) - y) ** 2))(params)
    return jax.tree_util.tree_map(lambda g: -eta * g, grads)


@functools.partial(jax.jit, static_argnames="apply")
def _ntk_jit(apply, params, x1, x2):
    return _ntk(apply, params, x1, x2)


@functools.partial(jax.jit, static_argnames="apply")
def _step_jit(apply, params, x, y, eta):
    return _step(apply, params, x, y, eta)


@functools.partial(jax.jit, static_argnames="apply")
def _dntk_jit(apply, params, x, y, eta, x_eval):
    step = _step(apply, params, x, y, eta)
    return jax.jvp(lambda p: _ntk(apply, p, x_eval, None), (params,), (step,))


@functools.partial(jax.jit, static_argnames="apply")
def _one_step_jit(apply, params, x, y, eta, x_eval):
    moved = jax.tree_util.tree_map(jnp.add, params, _step(apply, params, x, y, eta))
    return _ntk(apply, moved, x_eval, None) - _ntk(apply, params, x_eval, None)


def empirical_ntk(apply, params, x1, x2=None):
    """``Theta(x1, x2) = J(x1) J(x2)^T``, ``J = df / dtheta`` in the raw parameters:
    ``(N1, N2)`` for one-output ``apply(params, x) -> (N,)`` (compiled once per ``apply`` and
    shapes)."""
    _outputs(apply, params, x1)
    if x2 is not None:
        _outputs(apply, params, x2)
    return _ntk_jit(apply, params, x1, x2)


def _outputs(apply, params, x):
    """The outputs' shape, checked without running the network (errors name ``x``)."""
    out = jax.eval_shape(apply, params, x)
    if out.ndim != 1:
        raise ValueError(f"apply must return one output per input, shape (N,), got "
                         f"{tuple(out.shape)}")
    return out


def _check_batch(apply, params, x, y):
    f = _outputs(apply, params, x)
    y = jnp.asarray(y, dtype=f.dtype)
    if y.shape != f.shape:
        raise ValueError(f"y must have the outputs' shape {tuple(f.shape)}, got "
                         f"{tuple(y.shape)}")
    return y


def gradient_step(apply, params, x, y, eta: float):
    """``dtheta = -eta grad_theta sum_a (f(x_a) - y_a)^2 / 2``: a pytree like ``params``.
    ``x``: ``(N, n_0)``, ``y``: ``(N,)``."""
    y = _check_batch(apply, params, x, y)
    return _step_jit(apply, params, x, y, eta)


def dntk(apply, params, x, y, eta: float, x_eval=None):
    """The NTK and its first-order change along one gradient step on ``(x, y)``:
    ``(Theta(x_eval, x_eval), dTheta(x_eval, x_eval))``, each ``(M, M)``, with
    ``dTheta = sum_mu dTheta/dtheta_mu dtheta_mu = -eta sum_a eps_a dTheta_{a,.,.}``
    (:func:`gradient_step`; ``x_eval`` defaults to ``x``), computed by ``jax.jvp`` of
    :func:`empirical_ntk` in the parameters. Roberts, Yaida & Hanin 2022, arXiv:2106.10165,
    Ch. 11."""
    y = _check_batch(apply, params, x, y)
    x_eval = x if x_eval is None else x_eval
    _outputs(apply, params, x_eval)
    return _dntk_jit(apply, params, x, y, eta, x_eval)


def ntk_one_step_change(apply, params, x, y, eta: float, x_eval=None):
    """``Delta Theta = Theta_{theta + dtheta}(x_eval, x_eval) - Theta_theta(x_eval, x_eval)``
    for one gradient step on ``(x, y)``: ``(M, M)``; equals :func:`dntk`'s ``dTheta`` up to
    ``O(eta^2)``."""
    y = _check_batch(apply, params, x, y)
    x_eval = x if x_eval is None else x_eval
    _outputs(apply, params, x_eval)
    return _one_step_jit(apply, params, x, y, eta, x_eval)


def deep_linear_dntk_mean(depth, width):
    """Leading order of the mean relative change ``E[r] = -(2/3) (L^2 - 1) / (L n)`` of a deep
    linear network at ``C_W = 1`` (one input, ``y = 0``, ``eta = 1 / Theta_inf``; module
    docstring). Broadcasts over arrays."""
    depth = np.asarray(depth, dtype=float)
    width = np.asarray(width, dtype=float)
    if np.any(depth < 1) or np.any(width < 1):
        raise ValueError(f"depth and width must be >= 1, got {depth!r}, {width!r}")
    return -(2.0 / 3.0) * (depth ** 2 - 1) / (depth * width)


def _infinite_width_ntk(activation, depth, sigma_w2, q0):
    return float(fw.finite_width_recursion(activation, depth, sigma_w2, q0=q0)["ntk"][-1])


_PHI = {
    "relu": (lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(z.dtype),
             lambda z: np.zeros_like(z)),
    "linear": (lambda z: z, np.ones_like, np.zeros_like),
    "tanh": (np.tanh, lambda z: 1.0 - np.tanh(z) ** 2,
             lambda z: -2.0 * np.tanh(z) * (1.0 - np.tanh(z) ** 2)),
}


def _forward_backward(weights, x, phi, dphi, cw):
    """Preactivations ``z^l``, layer inputs ``a^{l-1}`` and ``delta^l = df/dz^l`` of ``S``
    networks; ``weights[l]``: ``(S, n_l, n_{l-1})``, ``x``: ``(n_0,)``."""
    S = weights[0].shape[0]
    acts, pre, scales = [np.broadcast_to(x, (S, x.shape[0]))], [], []
    for i, W in enumerate(weights):
        scales.append(math.sqrt(cw / acts[-1].shape[1]))
        z = scales[-1] * np.einsum("sij,sj->si", W, acts[-1])
        pre.append(z)
        if i < len(weights) - 1:
            acts.append(phi(z))
    deltas = [None] * len(weights)
    deltas[-1] = np.ones((S, 1))
    for i in range(len(weights) - 1, 0, -1):
        deltas[i - 1] = dphi(pre[i - 1]) * scales[i] * np.einsum("sij,si->sj", weights[i],
                                                                 deltas[i])
    return pre, acts, deltas, scales


def _layer_sum_ntk(acts, deltas, scales):
    return sum(c * c * np.sum(d * d, 1) * np.sum(a * a, 1)
               for a, d, c in zip(acts, deltas, scales))


def ntk_change_dense(weights, x, activation, sigma_w2: float, eta, y=0.0) -> dict:
    """NTK, dNTK and one-step change of ``S`` dense networks (``C_b = 0``) at one input,
    by hand-written forward-mode (tangent) passes instead of :func:`dntk`'s ``jax.jvp``.

    ``weights``: list of ``L`` arrays ``(S, n_l, n_{l-1})`` (``n_L = 1``), ``x``: ``(n_0,)``,
    ``activation``: ``'relu'``, ``'tanh'`` or ``'linear'``; ``eta``, ``y``: scalars or
    ``(S,)``. With ``V^l = dtheta`` on ``W^l`` ``= -eta eps c_l delta^l a^{l-1 T}`` (``c_l =
    sqrt(C_W / n_{l-1})``, ``eps = f - y``), ``Theta = sum_l c_l^2 |delta^l|^2 |a^{l-1}|^2``
    and its tangents

        dz^l = c_l (V^l a^{l-1} + W^l da^{l-1}),   da^l = sigma'(z^l) dz^l,
        d delta^{l-1} = sigma''(z^{l-1}) dz^{l-1} c_l W^{l T} delta^l
                        + sigma'(z^{l-1}) c_l (V^{l T} delta^l + W^{l T} d delta^l),
        dTheta = sum_l 2 c_l^2 (delta^l . d delta^l |a^{l-1}|^2 + |delta^l|^2 a^{l-1} . da^{l-1}).

    Returns ``(S,)`` arrays ``output``, ``ntk``, ``dntk`` (``dTheta``) and ``one_step``
    (``Theta(W + V) - Theta(W)``).
    """
    if activation not in _PHI:
        raise ValueError(f"activation must be one of {sorted(_PHI)}, got {activation!r}")
    phi, dphi, d2phi = _PHI[activation]
    x = np.asarray(x, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"x must be one input of shape (n_0,), got shape {x.shape}")
    if not weights or any(np.ndim(W) != 3 for W in weights) or weights[-1].shape[1] != 1:
        raise ValueError("weights must be a non-empty list of (S, n_out, n_in) arrays ending "
                         f"in one output, got shapes {[np.shape(W) for W in weights]}")
    fan_in = x.shape[0]
    for i, W in enumerate(weights):
        if W.shape[0] != weights[0].shape[0] or W.shape[2] != fan_in:
            raise ValueError(f"weights[{i}] has shape {W.shape}; expected "
                             f"({weights[0].shape[0]}, n, {fan_in})")
        fan_in = W.shape[1]
    pre, acts, deltas, scales = _forward_backward(weights, x, phi, dphi, sigma_w2)
    f = pre[-1][:, 0]
    step = -np.asarray(eta, float) * (f - np.asarray(y, float))          # -eta eps, (S,)
    # dtheta on W^l is step c_l delta^l a^{l-1 T}: apply it without forming the matrix
    da, dzs = np.zeros_like(acts[0]), []
    for i, W in enumerate(weights):
        a, d, c = acts[i], deltas[i], scales[i]
        Va = (step * c * np.sum(a * a, 1))[:, None] * d
        dz = c * (Va + np.einsum("sij,sj->si", W, da))
        dzs.append(dz)
        if i < len(weights) - 1:
            da = dphi(pre[i]) * dz
    d_delta = [None] * len(weights)
    d_delta[-1] = np.zeros_like(deltas[-1])
    for i in range(len(weights) - 1, 0, -1):
        W, d, c, a = weights[i], deltas[i], scales[i], acts[i]
        back = c * np.einsum("sij,si->sj", W, d)
        Vt_delta = (step * c * np.sum(d * d, 1))[:, None] * a
        d_delta[i - 1] = (d2phi(pre[i - 1]) * dzs[i - 1] * back + dphi(pre[i - 1]) *
                          (c * Vt_delta + c * np.einsum("sij,si->sj", W, d_delta[i])))
    d_acts = [np.zeros_like(acts[0])] + [dphi(pre[i]) * dzs[i] for i in range(len(weights) - 1)]
    d_theta = sum(2 * c * c * (np.sum(d * dd, 1) * np.sum(a * a, 1) +
                               np.sum(d * d, 1) * np.sum(a * a_dot, 1))
                  for a, a_dot, d, dd, c in zip(acts, d_acts, deltas, d_delta, scales))
    theta = _layer_sum_ntk(acts, deltas, scales)
    moved = [W + (step * c)[:, None, None] * d[:, :, None] * a[:, None, :]
             for W, a, d, c in zip(weights, acts, deltas, scales)]
    _, acts2, deltas2, _ = _forward_backward(moved, x, phi, dphi, sigma_w2)
    return {"output": f, "ntk": theta, "dntk": d_theta,
            "one_step": _layer_sum_ntk(acts2, deltas2, scales) - theta}


def sample_ntk_change(activation, width: int, depth: int, n_samples: int, sigma_w2: float, *,
                      q0: float = 1.0, eta_scale: float = 1.0, input_dim: int = 8, seed=0,
                      chunk_elements: int = 2 ** 22) -> dict:
    """Monte Carlo over ``n_samples`` dense networks (``C_b = 0``, hidden width ``width``,
    ``depth`` weight layers) at one input with ``|x|^2 / n_0 = q0``, target ``y = 0`` and
    the fixed learning rate ``eta = eta_scale / Theta_inf`` (``Theta_inf``: the infinite-width
    NTK, :func:`limits.finite_width.finite_width_recursion`), by :func:`ntk_change_dense`.

    ``activation``: ``'relu'``, ``'tanh'`` or ``'linear'``; ``seed``: anything
    :func:`numpy.random.default_rng` takes. Returns ``(n_samples,)`` arrays ``output``,
    ``ntk`` (``Theta(x, x)``), ``dntk`` (``r = dTheta(x, x) / Theta_inf``, module docstring)
    and ``one_step`` (``Delta Theta(x, x) / Theta_inf``), and the floats ``ntk_limit``
    (``Theta_inf``) and ``eta``.
    """
    if activation not in _PHI:
        raise ValueError(f"activation must be one of {sorted(_PHI)}, got {activation!r}")
    width = _check_int("width", width)
    depth = _check_int("depth", depth, 2)
    n_samples = _check_int("n_samples", n_samples, 2)
    input_dim = _check_int("input_dim", input_dim)
    cw = _check_number("sigma_w2", sigma_w2, positive=True)
    q0 = _check_number("q0", q0, positive=True)
    eta_scale = _check_number("eta_scale", eta_scale, positive=True)
    theta_inf = float(fw.finite_width_recursion(activation, depth, cw, q0=q0)["ntk"][-1])
    eta = eta_scale / theta_inf
    rng = np.random.default_rng(seed)
    x = np.full(input_dim, math.sqrt(q0))
    dims = [input_dim] + [width] * (depth - 1) + [1]
    per = sum(dims[i] * dims[i + 1] for i in range(depth))
    chunk = max(1, min(n_samples, chunk_elements // per))
    parts, done = [], 0
    while done < n_samples:
        S = min(chunk, n_samples - done)
        weights = [rng.standard_normal((S, dims[i + 1], dims[i])) for i in range(depth)]
        parts.append(ntk_change_dense(weights, x, activation, cw, eta))
        done += S
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    out["dntk"] = out["dntk"] / theta_inf
    out["one_step"] = out["one_step"] / theta_inf
    out["ntk_limit"], out["eta"] = theta_inf, eta
    return out
