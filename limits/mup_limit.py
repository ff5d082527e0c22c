"""The muP infinite-width limit, computed directly; and its kernel (NTK) counterpart.

Yang & Hu (Tensor Programs IV, 2021) show that under the maximal-update parametrization (muP) a
network's training dynamics have a width -> infinity limit in which features move by ``Theta(1)``,
and that the limit is computable where its Gaussian description is finite. This module computes
it for two families, without sampling a wide network, and the kernel limit for comparison.

Networks and training (exactly :func:`limits.mlp` under :data:`limits.MUP`, TP V Table 8, with
``activation`` and base width ``n0``, trained by SGD with :func:`limits.optimizers.optimizer`):

    h^1 = x W^1,   h^l = phi(h^{l-1}) W^l (2 <= l <= L),   f(x) = (n0 / n) phi(h^L) W^{L+1},
    W^1_ij ~ N(0, sigma_w^2 / d),  W^l_ij ~ N(0, sigma_w^2 / n),
    W^{L+1}_ij ~ N(0, sigma_out^2 / n0) (or 0: ``readout_zero_init``),
    learning rates eta n / n0 (input), eta (hidden), eta n / n0 (readout).

An SGD step on a batch ``(X, Y)`` uses ``delta = dLoss / df`` ``(B, O)`` at the batch (e.g.
:func:`mse_output_grad`); every public ``step`` takes that ``delta`` and the learning rate ``eta``.

**Deep linear networks** (``phi = id``; TP IV's word2vec / MAML case is ``L = 1``). Write every
width-``n`` vector as ``z = sum_s c_s G_s`` over *sources* ``G_s`` that become orthonormal under
``<a, b> = a . b / n``: the ``d`` rows of ``W^1 sqrt(d) / sigma_w``, the ``O`` columns of
``W^{L+1} sqrt(n0) / sigma_out`` and, for each hidden ``A_l = W^{l T}`` at initialisation, the
new Gaussian vectors it creates. In the limit (the Tensor Program rule
``Z^{W x} = Zhat^{W x} + Zdot^{W x}``) the initial hidden matrix acts on sources as a free
creation-plus-annihilation operator:

    A_l G_s   = sigma_w ( S_l(s)  + G_k [s = S*_l(k)] ),
    A_l^T G_s = sigma_w ( S*_l(s) + G_k [s = S_l(k)] ),

where ``S_l(s)`` (``S*_l(s)``) is a new source, ``Zhat^{A_l G_s} / sigma_w`` (of ``A_l^T``),
made the first time it is needed, and the second term is ``Zdot``: ``A A^T ~ sigma_w^2 I`` on
what ``A^T`` made. Coefficients (row vectors) then follow finite equations: with ``U`` ``(d, K)``
the rows of ``W^1``, ``V`` ``(K, O)`` the columns of ``W^{L+1}``, ``Delta_l`` the finite-rank
change of ``A_l``,

    c(h^1) = x U,   c(h^l) = A_l c(h^{l-1}) + Delta_l c(h^{l-1}),   f(x) = n0 c(h^L) V,
    c(g^L) = n0 delta V^T,   c(g^{l-1}) = A_l^T c(g^l) + Delta_l^T c(g^l)     (g = n dLoss / dh),
    U += -(eta / n0) X^T c(g^1),   V += -eta c(h^L)^T delta,
    Delta_l += -eta sum_b c(g^l_b) c(h^{l-1}_b)^T,
    U_0 = sigma_w / sqrt(d) [I_d, 0],   V_0 = sigma_out / sqrt(n0) [0; I_O; 0].

``<h(x), h(x')> = c(h(x)) . c(h(x'))`` is the limit of the feature kernel ``h . h' / n``. For
``L = 1`` the sources stay the ``d + O`` initial ones (TP IV's "hidden vectors stay in the span of
the initial ones": the limit is a width-``d + O`` linear network with this init, as in
edwardjhu/TP4's MAML code); for ``L >= 2`` each step adds sources (``L = 2``: ``d + O`` per
full-batch step; deeper networks faster, polynomially in the number of steps), so a step costs
more the longer the training. Finite width ``n`` differs through the ``O(n^-1/2)`` fluctuations of
``<G_s, G_t>``.

**One-hidden-layer networks** (``L = 1``, any ``phi``). Unit ``j`` carries ``w_j = W^1_{:, j}``
and ``a_j = W^2_{j, :}``; muP makes every unit follow the same deterministic map of its initial
``(w_0, a_0)``:

    a <- a - eta sum_b delta_b phi(w . x_b),
    w <- w - eta sum_b (a . delta_b) phi'(w . x_b) x_b,
    f(x) = n0 E[ a phi(w . x) ],   w_0 ~ N(0, sigma_w^2 / d I_d),  a_0 ~ N(0, sigma_out^2 / n0 I_O)

(the mean-field form of muP for one hidden layer: a finite muP network is this with the
expectation replaced by the average over its ``n`` units, so Monte Carlo over the coordinates
with ``M`` samples is a width-``M`` network). :func:`shallow_mup_limit` computes the expectation
by tensor Gauss-Hermite quadrature over the ``d`` (+ ``O`` with a random readout) initial
Gaussian coordinates: deterministic, and for smooth ``phi`` and small ``d`` accurate to many
digits early in training; as training goes on the units' map of their initial coordinates
sharpens and the rule needs more nodes (refine ``n_nodes`` to check: a tanh network on 2-d inputs
of norm 1.5 keeps ~1e-6 after 10 steps at ``eta = 1`` with 192 nodes per dimension, and ~1e-3
after 20). Monte Carlo over the coordinates is offered as a check.

**The kernel limit.** In the kernel regime (:func:`limits.classify`: NTP, SP with learning rate
``~ 1/n``) the infinite-width network trains by kernel gradient descent
``f_{t+1} = f_t - eta Theta(., X_b) delta_t`` with the parametrization-aware NTK
``Theta = sum_l s_l J_l J_l^T`` at initialisation (:func:`linear_ntk`, :func:`shallow_ntk`,
:func:`kernel_descent`). Under an abc-parametrization (``rho = n / n0``) layer ``l``'s contribution
scales as ``rho^e_l`` with

    e_out = 1 - c_out - 2 a_out,
    e_l   = 2 - 2 (a + b)_out - c_l - 2 a_l    (hidden),
    e_1   = 1 - 2 (a + b)_out - c_1 - 2 a_1    (input),

so contributions with ``e < 0`` vanish in the limit and ``e > 0`` diverges. For the deep linear
net (``q = sigma_out^2``, ``0`` with a zero readout; ``s = sigma_w^2``;
``Sigma_l = s^l x . x' / d``):

    Theta = n0 Sigma_L rho^e_out + sum_{l=2}^{L} n0 q s^{L-l} Sigma_{l-1} rho^e_l
            + q s^{L-1} (x . x') rho^e_1.

muP, NTP and SP-with-``eta/n`` all have ``e = 0`` for the readout and hidden layers; the input
layer's ``e_1`` is ``-1`` under SP (it freezes). Under muP this ``Theta`` is the first step's
kernel only; the limit then leaves it (features move).

Reference: Yang, G. & Hu, E. J. (2021). Feature Learning in Infinite-Width Neural Networks
(Tensor Programs IV). ICML 2021, arXiv:2011.14522 (code: github.com/edwardjhu/TP4).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np

from limits.parametrization import Parametrization

__all__ = [
    "mse_output_grad",
    "LinearMupLimit",
    "linear_mup_limit",
    "ShallowMupLimit",
    "shallow_mup_limit",
    "gaussian_nodes",
    "ACTIVATION_PAIRS",
    "linear_ntk",
    "shallow_ntk",
    "kernel_descent",
]


# --------------------------------------------------------------------------------------------
# argument checks


def _positive_int(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _number(value, name, *, positive=False, allow_zero=True):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and (value < 0 or (value == 0 and not allow_zero)):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return value


def _matrix(x, name, columns=None):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or (columns is not None and x.shape[1] != columns):
        want = f"(N, {columns})" if columns is not None else "(N, D)"
        raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")
    return x


def _batch(x, output_grad, in_dim, out_dim):
    x = _matrix(x, "x", in_dim)
    delta = _matrix(output_grad, "output_grad", out_dim)
    if delta.shape[0] != x.shape[0]:
        raise ValueError(f"output_grad must have one row per input: x is {tuple(x.shape)}, "
                         f"output_grad is {tuple(delta.shape)}")
    return x, delta


def mse_output_grad(f, y, mask=None):
    """``delta = dLoss / df`` of ``Loss = 1 / (2 N) sum_{b, k} m_bk (f_bk - y_bk)^2`` (``m`` = 1
    without a ``mask``; a 0/1 mask leaves unobserved entries out): ``m (f - y) / N``, ``(N, O)``."""
    f = np.asarray(f, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if f.shape != y.shape or f.ndim != 2:
        raise ValueError(f"f and y must have the same (N, O) shape, got {f.shape} and {y.shape}")
    r = f - y
    if mask is not None:
        mask = np.asarray(mask, dtype=np.float64)
        if mask.shape != f.shape:
            raise ValueError(f"mask must have shape {f.shape}, got {mask.shape}")
        r = r * mask
    return r / f.shape[0]


# --------------------------------------------------------------------------------------------
# deep linear networks: the source basis


class _Sources:
    """The registry of sources during one computation: for each hidden layer, which source
    ``A_l`` (``A_l^T``) made from which (``-1``: none yet). Mutated only on private copies."""

    def __init__(self, size, fwd_child, bwd_child, fwd_parent, bwd_parent):
        self.size = size
        self.fwd_child = [a.copy() for a in fwd_child]
        self.bwd_child = [a.copy() for a in bwd_child]
        self.fwd_parent = [a.copy() for a in fwd_parent]
        self.bwd_parent = [a.copy() for a in bwd_parent]

    def _grow(self, count):
        first = self.size
        self.size += count
        for table in (self.fwd_child, self.bwd_child, self.fwd_parent, self.bwd_parent):
            for i, a in enumerate(table):
                table[i] = np.concatenate([a, np.full(count, -1, dtype=np.int64)])
        return np.arange(first, first + count)

    def free(self, layer, coef, transpose, sigma):
        """``A_l c`` (``A_l^T c`` with ``transpose``) for the initial hidden matrix, rows of
        ``coef`` ``(B, K)``: creation of new sources plus annihilation (the ``Zdot`` term)."""
        child = self.bwd_child if transpose else self.fwd_child
        made_by = self.bwd_parent if transpose else self.fwd_parent
        undone_by = self.fwd_parent if transpose else self.bwd_parent
        k = coef.shape[1]
        support = np.flatnonzero(np.any(coef != 0.0, axis=0))
        missing = support[child[layer][support] < 0]
        if missing.size:
            new = self._grow(missing.size)
            child[layer][missing] = new
            made_by[layer][new] = missing
        out = np.zeros((coef.shape[0], self.size))
        out[:, child[layer][support]] = coef[:, support]
        made = np.flatnonzero(undone_by[layer][:k] >= 0)
        out[:, undone_by[layer][made]] += coef[:, made]
        return sigma * out


def _fit(coef, size):
    """Columns of ``coef`` cut or zero-padded to ``size``."""
    k = coef.shape[-1]
    if k == size:
        return coef
    if k > size:
        return coef[..., :size]
    pad = np.zeros(coef.shape[:-1] + (size - k,))
    return np.concatenate([coef, pad], axis=-1)


def _stack(a, b):
    """Rows of ``a`` over rows of ``b``, columns padded to the wider."""
    size = max(a.shape[1], b.shape[1])
    return np.concatenate([_fit(a, size), _fit(b, size)])


def _add(a, b):
    size = max(a.shape[-1], b.shape[-1])
    return _fit(a, size) + _fit(b, size)


@dataclasses.dataclass(frozen=True)
class LinearMupLimit:
    """The muP limit of a deep linear network (module docstring), as finite coefficients.

    Treat as immutable: :meth:`step` returns a new limit. Attributes: ``input_coef`` ``U``
    ``(d, K1)``, ``output_coef`` ``V`` ``(K2, O)``, ``hidden_updates`` (per hidden layer, ``None``
    or the stacked blocks ``(G, H)`` ``(R, K)``: ``Delta_l c = (c H^T) G``), the source
    registry, ``size`` ``K`` (number of sources) and the network's constants. Coefficient
    arrays shorter than ``K`` are zero beyond their length.

    Yang & Hu (2021), arXiv:2011.14522 (the Tensor Program limit of a linear network).
    """

    in_dim: int
    depth: int
    out_dim: int
    base_width: float
    sigma_w: float
    sigma_out: float
    input_coef: np.ndarray
    output_coef: np.ndarray
    hidden_updates: tuple
    size: int
    fwd_child: tuple
    bwd_child: tuple
    fwd_parent: tuple
    bwd_parent: tuple
    steps: int = 0

    def _sources(self):
        return _Sources(self.size, self.fwd_child, self.bwd_child, self.fwd_parent,
                        self.bwd_parent)

    def _forward(self, src, x):
        coefs = [x @ self.input_coef]
        for i in range(self.depth - 1):
            c = coefs[-1]
            out = src.free(i, c, False, self.sigma_w)
            if self.hidden_updates[i] is not None:
                g, h = self.hidden_updates[i]
                out = _add(out, (_fit(c, h.shape[1]) @ h.T) @ g)
            coefs.append(out)
        return coefs

    def features(self, x) -> dict:
        """``{'layer_l': c(h^l(x))}`` ``(N, K_l)``: ``C C^T`` is the limit of ``h h'^T / n``."""
        x = _matrix(x, "x", self.in_dim)
        coefs = self._forward(self._sources(), x)
        return {f"layer_{l + 1}": c for l, c in enumerate(coefs)}

    def apply(self, x) -> np.ndarray:
        """``f(x) = n0 c(h^L(x)) V``: ``(N, d) -> (N, O)``, float64."""
        x = _matrix(x, "x", self.in_dim)
        c = self._forward(self._sources(), x)[-1]
        v = self.output_coef
        return self.base_width * (_fit(c, v.shape[0]) @ v)

    def step(self, x, output_grad, learning_rate) -> "LinearMupLimit":
        """One SGD step on the batch ``x`` ``(B, d)`` with ``output_grad`` ``delta = dLoss/df``
        at the batch ``(B, O)`` and global learning rate ``eta``; returns the new limit."""
        x, delta = _batch(x, output_grad, self.in_dim, self.out_dim)
        eta = _number(learning_rate, "learning_rate", positive=True, allow_zero=False)
        if not np.all(np.isfinite(delta)):
            raise FloatingPointError(f"output_grad is not finite at step {self.steps}: the "
                                     "dynamics diverged (learning rate too large?)")
        src = self._sources()
        hs = self._forward(src, x)
        n0 = self.base_width
        g = n0 * delta @ self.output_coef.T                      # c(g^L)
        new_updates = list(self.hidden_updates)
        for i in reversed(range(self.depth - 1)):                 # A_{i+2}, from the top
            back = src.free(i, g, True, self.sigma_w)
            block = (-eta * g, hs[i])
            if self.hidden_updates[i] is not None:
                gg, hh = self.hidden_updates[i]
                back = _add(back, (_fit(g, gg.shape[1]) @ gg.T) @ hh)
                block = (_stack(gg, block[0]), _stack(hh, block[1]))
            new_updates[i] = block
            g = back
        u = _add(self.input_coef, -(eta / n0) * x.T @ g)
        v_new = -eta * hs[-1].T @ delta
        size = max(self.output_coef.shape[0], v_new.shape[0])
        v = _fit(self.output_coef.T, size).T + _fit(v_new.T, size).T
        return dataclasses.replace(
            self, input_coef=u, output_coef=v, hidden_updates=tuple(new_updates),
            size=src.size, fwd_child=tuple(src.fwd_child), bwd_child=tuple(src.bwd_child),
            fwd_parent=tuple(src.fwd_parent), bwd_parent=tuple(src.bwd_parent),
            steps=self.steps + 1)


def linear_mup_limit(in_dim: int, depth: int, out_dim: int, *, base_width: float = 1.0,
                     sigma_w: float = 1.0, sigma_out: float = 1.0,
                     readout_zero_init: bool = False) -> LinearMupLimit:
    """The muP limit at initialisation of ``limits.mlp(in_dim, n, depth, out_dim, MUP,
    activation='identity', base_width=base_width, sigma_w=..., sigma_out=...,
    readout_zero_init=...)`` as ``n -> inf`` (module docstring).

    ``U_0 = sigma_w / sqrt(d) [I_d, 0]`` (rows of ``W^1`` on the ``d`` input sources),
    ``V_0 = sigma_out / sqrt(n0) [0; I_O]`` (columns of ``W^{L+1}`` on the ``O`` output sources;
    0 with ``readout_zero_init``), no hidden updates. ``f_0 = 0``: the readout and the features
    are orthogonal in the limit (a finite network's ``f_0`` is ``O(n^-1/2)``).

    Examples:
      >>> lim = linear_mup_limit(3, 2, 1, base_width=4.0)
      >>> x, y = np.eye(3), np.ones((3, 1))
      >>> for _ in range(5):
      ...     lim = lim.step(x, mse_output_grad(lim.apply(x), y), 0.1)

    Yang & Hu (2021), arXiv:2011.14522 (word2vec and MAML limits; code edwardjhu/TP4).
    """
    in_dim = _positive_int(in_dim, "in_dim")
    depth = _positive_int(depth, "depth")
    out_dim = _positive_int(out_dim, "out_dim")
    n0 = _number(base_width, "base_width", positive=True, allow_zero=False)
    sigma_w = _number(sigma_w, "sigma_w", positive=True)
    sigma_out = _number(sigma_out, "sigma_out", positive=True)
    size = in_dim + out_dim
    u = np.zeros((in_dim, size))
    u[:, :in_dim] = sigma_w / math.sqrt(in_dim) * np.eye(in_dim)
    v = np.zeros((size, out_dim))
    if not readout_zero_init:
        v[in_dim:] = sigma_out / math.sqrt(n0) * np.eye(out_dim)
    empty = tuple(np.full(size, -1, dtype=np.int64) for _ in range(depth - 1))
    return LinearMupLimit(in_dim, depth, out_dim, n0, sigma_w, sigma_out, u, v,
                          (None,) * (depth - 1), size, empty, empty, empty, empty)


# --------------------------------------------------------------------------------------------
# one-hidden-layer networks: the Gaussian (particle) description


def _erf(x):
    from scipy.special import erf
    return erf(x)


def _gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _dgelu(x):
    return (0.5 * (1.0 + _erf(x / math.sqrt(2.0)))
            + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi))


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


#: NumPy ``(phi, phi')`` of the named activations of :data:`limits.networks.ACTIVATIONS`
#: (``relu'(0) = 0``, as ``jax.grad`` gives).
ACTIVATION_PAIRS: dict[str, tuple[Callable, Callable]] = {
    "identity": (lambda x: x, np.ones_like),
    "tanh": (np.tanh, lambda x: 1.0 - np.tanh(x) ** 2),
    "erf": (_erf, lambda x: 2.0 / math.sqrt(math.pi) * np.exp(-x * x)),
    "relu": (lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(np.float64)),
    "sin": (np.sin, np.cos),
    "sigmoid": (_sigmoid, lambda x: _sigmoid(x) * (1.0 - _sigmoid(x))),
    "gelu": (_gelu, _dgelu),
}


def _activation_pair(activation):
    if isinstance(activation, str):
        if activation not in ACTIVATION_PAIRS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATION_PAIRS)} or a pair "
                             f"(phi, dphi) of NumPy callables, got {activation!r}")
        return activation, ACTIVATION_PAIRS[activation]
    if (isinstance(activation, tuple) and len(activation) == 2
            and all(callable(f) for f in activation)):
        return getattr(activation[0], "__name__", "custom"), activation
    raise TypeError("activation must be a name or a pair (phi, dphi) of NumPy callables, got "
                    f"{type(activation).__name__}")


def gaussian_nodes(dim: int, n_nodes: int, kind: str = "hermite", seed: int = 0):
    """Nodes and weights for ``E g(z)``, ``z ~ N(0, I_dim)``: ``(M, dim)`` and ``(M,)`` (sum 1).

    ``'hermite'``: the tensor product of ``n_nodes``-point Gauss-Hermite rules (``M = n_nodes^dim``;
    exact for polynomials of degree ``< 2 n_nodes`` in each coordinate). ``'monte_carlo'``:
    ``n_nodes`` antithetic pairs ``+-z`` (``M = 2 n_nodes``), weights ``1 / M``, seeded.
    """
    dim = _positive_int(dim, "dim")
    n_nodes = _positive_int(n_nodes, "n_nodes")
    if kind == "hermite":
        if n_nodes ** dim > 4_000_000:
            raise ValueError(f"n_nodes^dim = {n_nodes}^{dim} nodes is too many for a tensor rule; "
                             "use kind='monte_carlo'")
        z1, w1 = np.polynomial.hermite_e.hermegauss(n_nodes)
        w1 = w1 / w1.sum()
        grids = np.meshgrid(*([z1] * dim), indexing="ij")
        weights = np.ones(())
        for _ in range(dim):
            weights = np.multiply.outer(weights, w1)
        return np.stack([g.ravel() for g in grids], axis=1), weights.ravel()
    if kind == "monte_carlo":
        z = np.random.default_rng(seed).standard_normal((n_nodes, dim))
        z = np.concatenate([z, -z])
        return z, np.full(2 * n_nodes, 1.0 / (2 * n_nodes))
    raise ValueError(f"kind must be 'hermite' or 'monte_carlo', got {kind!r}")


@dataclasses.dataclass(frozen=True)
class ShallowMupLimit:
    """The muP limit of a one-hidden-layer network as a weighted set of units (nodes).

    ``w`` ``(M, d)``, ``a`` ``(M, O)``: each node's input weights and readout now;
    ``weights`` ``(M,)``: its quadrature weight (the expectation over the initial Gaussian).
    ``f(x) = n0 sum_m weights_m a_m phi(w_m . x)``. Treat as immutable.

    Yang & Hu (2021), arXiv:2011.14522 (muP = mean field for one hidden layer).
    """

    w: np.ndarray
    a: np.ndarray
    weights: np.ndarray
    base_width: float
    activation: str
    phi: Callable
    dphi: Callable
    steps: int = 0

    @property
    def in_dim(self):
        return self.w.shape[1]

    @property
    def out_dim(self):
        return self.a.shape[1]

    def features(self, x) -> np.ndarray:
        """The limit feature kernel ``E[phi(w . x) phi(w . x')]`` on ``x`` ``(N, d)``:
        ``(N, N)``."""
        x = _matrix(x, "x", self.in_dim)
        act = self.phi(x @ self.w.T)
        return (act * self.weights) @ act.T

    def apply(self, x) -> np.ndarray:
        """``f(x) = n0 E[a phi(w . x)]``: ``(N, d) -> (N, O)``, float64."""
        x = _matrix(x, "x", self.in_dim)
        return self.base_width * (self.phi(x @ self.w.T) * self.weights) @ self.a

    def step(self, x, output_grad, learning_rate) -> "ShallowMupLimit":
        """One SGD step (every node moves by the muP unit map of the module docstring)."""
        x, delta = _batch(x, output_grad, self.in_dim, self.out_dim)
        eta = _number(learning_rate, "learning_rate", positive=True, allow_zero=False)
        pre = x @ self.w.T                                     # (B, M)
        a_new = self.a - eta * self.phi(pre).T @ delta
        w_new = self.w - eta * ((delta @ self.a.T) * self.dphi(pre)).T @ x
        return dataclasses.replace(self, w=w_new, a=a_new, steps=self.steps + 1)


def shallow_mup_limit(in_dim: int, out_dim: int, activation="tanh", *, base_width: float = 1.0,
                      sigma_w: float = 1.0, sigma_out: float = 1.0,
                      readout_zero_init: bool = False, quadrature: str = "hermite",
                      n_nodes: int = 16, seed: int = 0) -> ShallowMupLimit:
    """The muP limit at initialisation of ``limits.mlp(in_dim, n, 1, out_dim, MUP,
    activation=activation, base_width=..., sigma_w=..., sigma_out=..., readout_zero_init=...)``.

    The units' initial ``(w_0, a_0)`` are Gaussian: ``w_0 = sigma_w / sqrt(d) z_w`` and
    ``a_0 = sigma_out / sqrt(n0) z_a`` (``a_0 = 0`` with ``readout_zero_init``), ``z`` on the nodes
    of :func:`gaussian_nodes` in ``d`` (+ ``O``) dimensions (``quadrature``: ``'hermite'`` with
    ``n_nodes`` per dimension, or ``'monte_carlo'`` with ``n_nodes`` antithetic pairs).
    ``activation``: a name in :data:`ACTIVATION_PAIRS` or ``(phi, dphi)``.

    Yang & Hu (2021), arXiv:2011.14522.
    """
    in_dim = _positive_int(in_dim, "in_dim")
    out_dim = _positive_int(out_dim, "out_dim")
    name, (phi, dphi) = _activation_pair(activation)
    n0 = _number(base_width, "base_width", positive=True, allow_zero=False)
    sigma_w = _number(sigma_w, "sigma_w", positive=True)
    sigma_out = _number(sigma_out, "sigma_out", positive=True)
    dim = in_dim + (0 if readout_zero_init else out_dim)
    z, weights = gaussian_nodes(dim, n_nodes, quadrature, seed)
    w = sigma_w / math.sqrt(in_dim) * z[:, :in_dim]
    a = (np.zeros((len(z), out_dim)) if readout_zero_init
         else sigma_out / math.sqrt(n0) * z[:, in_dim:])
    return ShallowMupLimit(w, a, weights, n0, name, phi, dphi)


# --------------------------------------------------------------------------------------------
# the kernel limit


def _layer_exponents(p: Parametrization, depth: int) -> dict:
    """``{'input': e_1, 'hidden': e_l, 'output': e_out}`` (module docstring), checking that the
    forward pass has a limit: ``(a + b)_input = 0``, ``(a + b)_hidden = 1/2``,
    ``(a + b)_output >= 1/2``."""
    if not isinstance(p, Parametrization):
        raise TypeError(f"parametrization must be a limits.Parametrization, got "
                        f"{type(p).__name__}")
    if p.optimizer != "sgd":
        raise ValueError(f"the kernel limit here is for SGD; parametrization {p.name!r} is for "
                         f"{p.optimizer}")
    p.check_depth(depth)
    f = lambda e: float(e)
    i, o = p.role("input"), p.role("output")
    if f(i.a + i.b) != 0 or f(o.a + o.b) < 0.5 or (depth > 1 and f(p.role("hidden").a
                                                                     + p.role("hidden").b) != 0.5):
        raise ValueError(f"parametrization {p.name!r} has no width limit at initialisation: "
                         "needs (a + b) = 0 (input), 1/2 (hidden), >= 1/2 (output)")
    ab_out = f(o.a + o.b)
    out = {"input": 1 - 2 * ab_out - f(i.c) - 2 * f(i.a),
           "output": 1 - f(o.c) - 2 * f(o.a)}
    if depth > 1:
        h = p.role("hidden")
        out["hidden"] = 2 - 2 * ab_out - f(h.c) - 2 * f(h.a)
    diverging = {k: v for k, v in out.items() if v > 1e-12}
    if diverging:
        raise ValueError(f"parametrization {p.name!r}: the NTK contribution of "
                         f"{sorted(diverging)} grows like width^{max(diverging.values()):g}; "
                         "no kernel limit")
    return out


def _kernel_inputs(x1, x2):
    x1 = _matrix(x1, "x1")
    x2 = x1 if x2 is None else _matrix(x2, "x2", x1.shape[1])
    return x1, x2


def linear_ntk(x1, x2, parametrization: Parametrization, depth: int, *,
               base_width: float = 1.0, sigma_w: float = 1.0, sigma_out: float = 1.0,
               readout_zero_init: bool = False) -> np.ndarray:
    """The infinite-width NTK at initialisation, ``Theta(x1, x2)`` ``(N1, N2)`` (times ``I_O``),
    of ``limits.mlp(d, n, depth, O, parametrization, activation='identity', ...)`` under its
    learning-rate scales (module docstring; ``x2=None``: ``x1``). Raises ``ValueError`` where a
    contribution diverges with width.

    Jacot, Gabriel & Hongler (2018), arXiv:1806.07572; Yang & Hu (2021), arXiv:2011.14522
    (the kernel regime of abc-parametrizations)."""
    depth = _positive_int(depth, "depth")
    e = _layer_exponents(parametrization, depth)
    x1, x2 = _kernel_inputs(x1, x2)
    n0 = _number(base_width, "base_width", positive=True, allow_zero=False)
    s = _number(sigma_w, "sigma_w", positive=True) ** 2
    q = 0.0 if readout_zero_init else _number(sigma_out, "sigma_out", positive=True) ** 2
    dot = x1 @ x2.T
    d = x1.shape[1]
    keep = lambda name: float(abs(e[name]) < 1e-12)
    theta = keep("output") * n0 * s ** depth * dot / d
    for l in range(2, depth + 1):
        theta = theta + keep("hidden") * n0 * q * s ** (depth - l) * s ** (l - 1) * dot / d
    return theta + keep("input") * q * s ** (depth - 1) * dot


def shallow_ntk(x1, x2, parametrization: Parametrization, activation="tanh", *,
                base_width: float = 1.0, sigma_w: float = 1.0, sigma_out: float = 1.0,
                readout_zero_init: bool = False, n_nodes: int = 64) -> np.ndarray:
    """The infinite-width NTK at initialisation ``(N1, N2)`` of a one-hidden-layer network
    ``limits.mlp(d, n, 1, O, parametrization, activation=...)`` under its learning rates:

        Theta = n0 E[phi(z) phi(z')] [e_out = 0] + q (x . x') E[phi'(z) phi'(z')] [e_1 = 0],
        (z, z') ~ N(0, sigma_w^2 / d [[x.x, x.x'], [x.x', x'.x']]),

    the expectations by ``n_nodes^2``-point Gauss-Hermite quadrature per pair: spectrally
    accurate for smooth ``phi`` when ``sigma_w |x| / sqrt(d)`` is of order 1 (steeper scales need
    more nodes; ReLU's kink converges like ``1 / n_nodes``).

    Jacot, Gabriel & Hongler (2018), arXiv:1806.07572; Yang & Hu (2021), arXiv:2011.14522."""
    e = _layer_exponents(parametrization, 1)
    _, (phi, dphi) = _activation_pair(activation)
    x1, x2 = _kernel_inputs(x1, x2)
    n0 = _number(base_width, "base_width", positive=True, allow_zero=False)
    s = _number(sigma_w, "sigma_w", positive=True) ** 2 / x1.shape[1]
    q = 0.0 if readout_zero_init else _number(sigma_out, "sigma_out", positive=True) ** 2
    z, w = gaussian_nodes(2, _positive_int(n_nodes, "n_nodes"))
    readout, inputs = abs(e["output"]) < 1e-12, abs(e["input"]) < 1e-12 and q > 0
    v2 = s * np.sum(x2 * x2, 1)[None, :]                        # (1, N2)
    theta = np.zeros((x1.shape[0], x2.shape[0]))
    rows = max(1, (1 << 22) // max(1, x2.shape[0] * len(w)))    # bounded memory per chunk
    for start in range(0, x1.shape[0], rows):
        a = x1[start:start + rows]
        l11 = np.sqrt(s * np.sum(a * a, 1))[:, None]             # (R, 1)
        c = s * a @ x2.T
        l21 = np.where(l11 > 0, c / np.where(l11 > 0, l11, 1.0), 0.0)
        l22 = np.sqrt(np.maximum(v2 - l21 ** 2, 0.0))
        za = l11[..., None] * z[:, 0]                            # (R, 1, M)
        zb = l21[..., None] * z[:, 0] + l22[..., None] * z[:, 1]  # (R, N2, M)
        if readout:
            theta[start:start + rows] += n0 * np.sum(w * phi(za) * phi(zb), -1)
        if inputs:
            theta[start:start + rows] += q * (a @ x2.T) * np.sum(w * dphi(za) * dphi(zb), -1)
    return theta


def kernel_descent(theta, f0, train_index, output_grad: Callable, learning_rate: float,
                   steps: int) -> np.ndarray:
    """Kernel gradient descent, the training dynamics of the kernel limit, full batch:

        f_{t+1}(P) = f_t(P) - eta Theta(P, X) delta_t,   delta_t = output_grad(f_t(X))

    on ``P`` points (training points ``X = P[train_index]`` among them). ``theta`` ``(P, P)``,
    ``f0`` ``(P, O)``; ``output_grad`` maps the training outputs ``(B, O)`` to ``dLoss/df``.
    Returns the trajectory ``(steps + 1, P, O)``.

    Jacot, Gabriel & Hongler (2018), arXiv:1806.07572 (discrete-time kernel gradient descent)."""
    theta = _matrix(theta, "theta")
    f = _matrix(f0, "f0")
    if theta.shape != (f.shape[0], f.shape[0]):
        raise ValueError(f"theta must be (P, P) with P = f0.shape[0] = {f.shape[0]}, got "
                         f"{theta.shape}")
    idx = np.asarray(train_index)
    if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"train_index must be a non-empty 1-D integer array, got {idx!r}")
    if idx.min() < 0 or idx.max() >= f.shape[0]:
        raise ValueError(f"train_index must lie in [0, {f.shape[0]}), got {idx.min()}..{idx.max()}")
    eta = _number(learning_rate, "learning_rate", positive=True, allow_zero=False)
    steps = _positive_int(steps, "steps", minimum=0)
    cols = theta[:, idx]
    out = [f]
    for _ in range(steps):
        delta = np.asarray(output_grad(f[idx]), dtype=np.float64)
        if delta.shape != (idx.size, f.shape[1]):
            raise ValueError(f"output_grad must return ({idx.size}, {f.shape[1]}), got "
                             f"{delta.shape}")
        f = f - eta * cols @ delta
        out.append(f)
    return np.stack(out)
