"""Pseudo-i.i.d. weight ensembles and the finite networks built from them.

Nait Saada, Naderi & Tanner (ICLR 2024, arXiv:2310.16597) extend the Gaussian-process limit of
Matthews et al. (2018) from i.i.d. Gaussian weights to a class of *pseudo-i.i.d.* weight
distributions that contains i.i.d., orthogonal, low-rank and structured-sparse matrices: a fully
connected (or convolutional) network whose layers draw their weights from such an ensemble
converges, as the widths grow, to the same Gaussian process as the i.i.d. network of the same
variance (the NNGP of :mod:`ntk.stax`), so edge-of-chaos tuning carries over unchanged.

Every sampler here draws an ``(n_out, n_in)`` matrix ``W`` with matched second moments,

    E W_ij = 0,     E W_ij W_kl = (sigma_w^2 / n_in) delta_ik delta_jl,

and a law that is unchanged by permuting rows and by permuting columns (row- and
column-exchangeable). They differ in everything else:

==============  ========================================================  =====================
ensemble        W                                                          entries independent?
==============  ========================================================  =====================
``iid``         ``sigma_w / sqrt(n_in) G``, ``G_ij ~ N(0, 1)``              yes
``orthogonal``  ``sigma_w max(1, sqrt(n_out/n_in)) Q``, ``Q`` Haar on the    no: ``W W^T`` (or
                Stiefel manifold (orthonormal rows or columns)              ``W^T W``) is fixed
``low_rank``    ``sigma_w / sqrt(n_in r) A B^T``, ``A (n_out, r)``,         no: rank <= r
                ``B (n_in, r)`` standard Gaussian
``block_sparse``  ``sigma_w / sqrt(p n_in) M o G`` with a random block mask   no: blocks share
                ``M`` (blocks of ``b x b`` kept with probability ``p``),     their mask
                rows and columns then randomly permuted
==============  ========================================================  =====================

What the limit needs, by the argument below (the paper's own list of conditions could not be
read here beyond its abstract; what follows is derived, and checked in the tests by Monte
Carlo). Given the previous layer's post-activations ``a = phi(z)`` (independent of ``W``), the
next preactivations are ``z'_i = sum_j W_ij a_j``. Their covariance over ``W`` is
``sigma_w^2 |a|^2 / n_in`` for every ensemble (second moments match), so all ensembles share the
NNGP recursion; the limit is that recursion only if the *empirical* kernel
``(1/n) sum_i phi(z'_i(x)) phi(z'_i(x'))`` concentrates, i.e. if each ``z'_i`` averages over a
number of independent sources that grows with the width:

* ``iid``: ``n_in`` independent terms (Matthews et al. 2018).
* ``orthogonal``: ``W a / |a|`` is uniform on a sphere of growing dimension: its coordinates
  become independent Gaussians.
* ``low_rank``: ``z' = A (B^T a) sigma_w / sqrt(n_in r)``; given ``B``, ``z'_i`` are i.i.d.
  Gaussian with covariance ``sigma_w^2 (B^T a)(x).(B^T a)(x') / (n_in r)``, an average over the
  ``r`` inner coordinates. It converges only if **r grows with the width** (``r = rank_ratio *
  width`` here); at a fixed ``r`` (``rank=1``: every unit a multiple of one random function) the
  kernel stays random and the limit is a mixture of Gaussian processes, not the NNGP.
* ``block_sparse``: each row keeps about ``p n_in`` entries; the kernel concentrates if that
  number grows, i.e. at a fixed density ``p`` with blocks of fixed size (``p n_in / b`` kept
  blocks per row). A fixed number of non-zeros per row would not converge.

Every sampler takes either a JAX PRNG key (traceable: ``jit``, ``vmap``,
``ntk.monte_carlo_kernel_fn``) or a ``numpy.random.Generator`` (eager NumPy, nothing to compile:
the cheap route for Monte Carlo over many small networks on a CPU); the draw comes back as a JAX
or a NumPy array accordingly, with the same law.

A layer whose fan-in does not grow (the input layer, fan-in ``d0``) has no averaging to do: its
preactivations are Gaussian only for Gaussian rows. :func:`mlp` therefore draws the input layer
from ``input_ensemble`` (i.i.d. Gaussian by default) and every layer whose fan-in is the width
(hidden-to-hidden and readout) from the pseudo-i.i.d. ensemble. :func:`conv1d` does the same
for a 1D CNN (filters as ``(C_out, k C_in)`` matrices, readout on the flattened features),
compared with the ``ntk.stax`` CNN-GP.

Nait Saada, T., Naderi, A. & Tanner, J. (2024). Beyond IID weights: sparse and low-rank deep
neural networks are also Gaussian processes. ICLR 2024, arXiv:2310.16597.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

__all__ = [
    "ENSEMBLES",
    "ACTIVATIONS",
    "Ensemble",
    "iid_weights",
    "orthogonal_weights",
    "low_rank_weights",
    "block_sparse_weights",
    "PseudoIIDNetwork",
    "PseudoIIDConvNetwork",
    "mlp",
    "conv1d",
    "nngp",
    "relative_frobenius_error",
]

ENSEMBLES = ("iid", "orthogonal", "low_rank", "block_sparse")
ACTIVATIONS = ("relu", "tanh", "erf", "linear")


# ---------------------------------------------------------------------------------------------
# random sources: a JAX key or a NumPy Generator, one implementation of each sampler


def _is_numpy(rng) -> bool:
    return isinstance(rng, np.random.Generator)


def _check_rng(rng):
    if isinstance(rng, (int, np.integer, np.random.RandomState)) or rng is None:
        raise TypeError(f"rng must be a JAX PRNG key or a numpy.random.Generator, got "
                        f"{type(rng).__name__}")
    return rng


def _split(rng, n: int) -> list:
    return [rng] * n if _is_numpy(rng) else list(jax.random.split(rng, n))


def _normal(rng, shape):
    return rng.standard_normal(shape) if _is_numpy(rng) else jax.random.normal(rng, shape)


def _bernoulli(rng, p, shape):
    return rng.random(shape) < p if _is_numpy(rng) else jax.random.bernoulli(rng, p, shape)


def _permutation(rng, n):
    return rng.permutation(n) if _is_numpy(rng) else jax.random.permutation(rng, n)


def _xp(rng_or_array):
    return np if _is_numpy(rng_or_array) or isinstance(rng_or_array, np.ndarray) else jnp


def _shape(shape) -> tuple[int, int]:
    if (not isinstance(shape, (tuple, list)) or len(shape) != 2
            or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1
                       for s in shape)):
        raise ValueError(f"shape must be (n_out, n_in) with positive ints, got {shape!r}")
    return int(shape[0]), int(shape[1])


def _sigma(value, name: str = "sigma_w") -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float, np.floating))
            or not value >= 0 or not math.isfinite(value)):
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return float(value)


# ---------------------------------------------------------------------------------------------
# samplers


def iid_weights(rng, shape, sigma_w: float = 1.0):
    """i.i.d. Gaussian ``W_ij ~ N(0, sigma_w^2 / n_in)``: ``(n_out, n_in)``.

    ``rng``: a JAX PRNG key or a ``numpy.random.Generator``.

    Nait Saada, Naderi & Tanner (2024), arXiv:2310.16597 (the i.i.d. member of the class).
    """
    n_out, n_in = _shape(shape)
    return _sigma(sigma_w) / math.sqrt(n_in) * _normal(_check_rng(rng), (n_out, n_in))


def orthogonal_weights(rng, shape, sigma_w: float = 1.0):
    """Scaled Haar-orthogonal ``W`` of shape ``(n_out, n_in)`` with ``E W_ij^2 = sigma_w^2/n_in``.

    ``Q`` is uniform (Haar) on the matrices with orthonormal columns (``n_out >= n_in``) or rows
    (``n_out < n_in``), from the QR decomposition of a Gaussian matrix with the signs of
    ``diag(R)`` moved into ``Q`` (Mezzadri 2007). Then

        n_out >= n_in:  W = sigma_w sqrt(n_out / n_in) Q,   W^T W = sigma_w^2 (n_out/n_in) I_{n_in}
        n_out <= n_in:  W = sigma_w Q,                      W W^T = sigma_w^2 I_{n_out}

    exactly (a square ``W`` is ``sigma_w`` times an orthogonal matrix). Entries are uncorrelated
    (the law is invariant under sign flips of rows and of columns) and exchangeable.

    Nait Saada, Naderi & Tanner (2024), arXiv:2310.16597 (orthogonal weights are pseudo-i.i.d.).
    """
    n_out, n_in = _shape(shape)
    sigma_w = _sigma(sigma_w)
    xp = _xp(_check_rng(rng))
    tall = n_out >= n_in
    m, k = (n_out, n_in) if tall else (n_in, n_out)
    q, r = xp.linalg.qr(_normal(rng, (m, k)))
    q = q * xp.where(xp.diagonal(r) < 0, -1.0, 1.0)
    return sigma_w * math.sqrt(n_out / n_in) * q if tall else sigma_w * q.T


def low_rank_weights(rng, shape, rank: int, sigma_w: float = 1.0):
    """Low-rank ``W = sigma_w / sqrt(n_in r) A B^T`` with ``A (n_out, r)``, ``B (n_in, r)`` i.i.d.
    ``N(0, 1)``: rank ``min(r, n_out, n_in)``, shape ``(n_out, n_in)``.

    ``E W_ij W_kl = sigma_w^2 / (n_in r) sum_a E[A_ia A_ka] E[B_ja B_la]
    = (sigma_w^2 / n_in) delta_ik delta_jl``. The entries are sums of ``r`` products of
    Gaussians (excess kurtosis ``6 / r``); the Gaussian-process limit needs ``r`` to grow with
    the width (see the module docstring).

    Nait Saada, Naderi & Tanner (2024), arXiv:2310.16597; Nait Saada & Tanner (2023),
    arXiv:2301.13710 (low-rank initialisation at the edge of chaos).
    """
    n_out, n_in = _shape(shape)
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
        raise ValueError(f"rank must be a positive int, got {rank!r}")
    ka, kb = _split(_check_rng(rng), 2)
    a = _normal(ka, (n_out, int(rank)))
    b = _normal(kb, (n_in, int(rank)))
    return _sigma(sigma_w) / math.sqrt(n_in * rank) * (a @ b.T)


def block_sparse_weights(rng, shape, density: float, block_size: int = 4,
                         sigma_w: float = 1.0):
    """Structured-sparse ``W = sigma_w / sqrt(p n_in) P_r (M o G) P_c``: ``(n_out, n_in)``.

    ``M`` is a block mask: the matrix is tiled by ``b_out x b_in`` blocks
    (``b = min(block_size, dim)``), each kept independently with probability ``p = density``;
    ``G`` is i.i.d. ``N(0, 1)``; ``P_r``, ``P_c`` are uniform random permutations of rows and
    columns (so the law is exchangeable; equivalently, a fixed block pattern with permuted layer
    inputs and outputs). ``E W_ij^2 = sigma_w^2 / n_in`` and entries are uncorrelated (a shared
    mask multiplies independent zero-mean Gaussians). A row keeps about ``p n_in`` entries.

    Nait Saada, Naderi & Tanner (2024), arXiv:2310.16597 (structured sparse weights).
    """
    n_out, n_in = _shape(shape)
    if (isinstance(density, bool) or not isinstance(density, (int, float, np.floating))
            or not 0 < density <= 1):
        raise ValueError(f"density must be in (0, 1], got {density!r}")
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) \
            or block_size < 1:
        raise ValueError(f"block_size must be a positive int, got {block_size!r}")
    xp = _xp(_check_rng(rng))
    bo, bi = min(block_size, n_out), min(block_size, n_in)
    km, kg, kr, kc = _split(rng, 4)
    blocks = _bernoulli(km, density, (-(-n_out // bo), -(-n_in // bi)))
    mask = xp.repeat(xp.repeat(blocks, bo, axis=0), bi, axis=1)[:n_out, :n_in]
    w = xp.where(mask, _normal(kg, (n_out, n_in)), 0.0)
    w = w[_permutation(kr, n_out)][:, _permutation(kc, n_in)]
    return _sigma(sigma_w) / math.sqrt(density * n_in) * w


@dataclasses.dataclass(frozen=True)
class Ensemble:
    """A pseudo-i.i.d. weight ensemble: ``Ensemble(name, ...).sample(rng, (n_out, n_in), sigma_w)``.

    ``name`` is one of :data:`ENSEMBLES`. ``low_rank`` takes either ``rank`` (a fixed inner
    dimension ``r``: the counter-example at ``rank=1``) or ``rank_ratio`` (``r = ceil(rank_ratio
    * max(n_out, n_in))``, growing with the width); ``block_sparse`` takes ``density`` and
    ``block_size``. ``label`` names it in tables and figures.
    """

    name: str
    rank: Optional[int] = None
    rank_ratio: Optional[float] = None
    density: Optional[float] = None
    block_size: int = 4

    def __post_init__(self):
        if self.name not in ENSEMBLES:
            raise ValueError(f"Ensemble: name must be one of {ENSEMBLES}, got {self.name!r}")
        if self.name == "low_rank":
            if (self.rank is None) == (self.rank_ratio is None):
                raise ValueError("Ensemble('low_rank') needs exactly one of rank (fixed) or "
                                 f"rank_ratio (growing with width), got rank={self.rank!r}, "
                                 f"rank_ratio={self.rank_ratio!r}")
            if self.rank is not None and (isinstance(self.rank, bool)
                                          or not isinstance(self.rank, int) or self.rank < 1):
                raise ValueError(f"Ensemble: rank must be a positive int, got {self.rank!r}")
            if self.rank_ratio is not None and not 0 < self.rank_ratio <= 1:
                raise ValueError(f"Ensemble: rank_ratio must be in (0, 1], got "
                                 f"{self.rank_ratio!r}")
        elif self.rank is not None or self.rank_ratio is not None:
            raise ValueError(f"Ensemble({self.name!r}): rank / rank_ratio are for 'low_rank'")
        if self.name == "block_sparse":
            if self.density is None or not 0 < self.density <= 1:
                raise ValueError(f"Ensemble('block_sparse'): density must be in (0, 1], got "
                                 f"{self.density!r}")
            if isinstance(self.block_size, bool) or not isinstance(self.block_size, int) \
                    or self.block_size < 1:
                raise ValueError(f"Ensemble: block_size must be a positive int, got "
                                 f"{self.block_size!r}")
        elif self.density is not None:
            raise ValueError(f"Ensemble({self.name!r}): density is for 'block_sparse'")

    def inner_rank(self, shape) -> int:
        """The inner dimension ``r`` of a low-rank draw of ``shape``."""
        if self.name != "low_rank":
            raise ValueError(f"inner_rank: {self.name!r} is not low-rank")
        n_out, n_in = _shape(shape)
        if self.rank is not None:
            return self.rank
        return max(1, math.ceil(self.rank_ratio * max(n_out, n_in)))

    def sample(self, rng, shape, sigma_w: float = 1.0):
        """One ``(n_out, n_in)`` draw with ``E W_ij W_kl = sigma_w^2 / n_in delta delta``."""
        if self.name == "iid":
            return iid_weights(rng, shape, sigma_w)
        if self.name == "orthogonal":
            return orthogonal_weights(rng, shape, sigma_w)
        if self.name == "low_rank":
            return low_rank_weights(rng, shape, self.inner_rank(shape), sigma_w)
        return block_sparse_weights(rng, shape, self.density, self.block_size, sigma_w)

    @property
    def label(self) -> str:
        if self.name == "low_rank":
            return (f"low_rank_r{self.rank}" if self.rank is not None
                    else f"low_rank_{self.rank_ratio:g}n")
        if self.name == "block_sparse":
            return f"block_sparse_p{self.density:g}_b{self.block_size}"
        return self.name


# ---------------------------------------------------------------------------------------------
# networks


def _phi(name: str, z):
    if isinstance(z, np.ndarray):
        return {"relu": lambda u: np.maximum(u, 0.0), "tanh": np.tanh, "erf": special.erf,
                "linear": lambda u: u}[name](z)
    return {"relu": jax.nn.relu, "tanh": jnp.tanh, "erf": jax.scipy.special.erf,
            "linear": lambda u: u}[name](z)


def _dphi(name: str, z):
    xp = _xp(z)
    if name == "relu":
        return (z > 0).astype(z.dtype)
    if name == "tanh":
        return 1.0 - xp.tanh(z) ** 2
    if name == "erf":
        return 2.0 / math.sqrt(math.pi) * xp.exp(-z * z)
    return xp.ones_like(z)


def _stax_activation(name: str):
    from ntk import stax
    return {"relu": stax.Relu, "tanh": stax.Tanh, "erf": stax.Erf,
            "linear": stax.Identity}[name]()


@dataclasses.dataclass(frozen=True)
class PseudoIIDNetwork:
    """A fully connected network with pseudo-i.i.d. weights (see :func:`mlp`).

    ``init(rng, input_shape) -> (output_shape, params)`` and ``apply(params, x) -> (N, out_dim)``
    follow the ``ntk.stax`` convention, so ``ntk.monte_carlo_kernel_fn(net.init, net.apply, key,
    n_samples)`` estimates its output covariance. ``params`` is a tuple of ``{"W", "b"}`` dicts
    (``W`` of shape ``(n_out, n_in)``), input layer first; NumPy arrays when ``rng`` is a
    ``numpy.random.Generator``, JAX arrays when it is a key.
    """

    ensemble: Ensemble
    width: int
    depth: int
    out_dim: int
    activation: str
    sigma_w: float
    sigma_b: float
    input_ensemble: Ensemble

    def init(self, rng, input_shape):
        d_in = int(input_shape[-1])
        dims = [d_in] + [self.width] * self.depth + [self.out_dim]
        keys = _split(_check_rng(rng), 2 * (len(dims) - 1))
        params = []
        for layer, (n_in, n_out) in enumerate(zip(dims[:-1], dims[1:])):
            ens = self.input_ensemble if layer == 0 else self.ensemble
            w = ens.sample(keys[2 * layer], (n_out, n_in), self.sigma_w)
            b = self.sigma_b * _normal(keys[2 * layer + 1], (n_out,))
            params.append({"W": w, "b": b})
        return tuple(input_shape[:-1]) + (self.out_dim,), tuple(params)

    def preactivations(self, params, x) -> list:
        """``[z^1, ..., z^depth, f]``: ``z^1 = x W_1^T + b_1``, ``z^{l+1} = phi(z^l) W^T + b``;
        each ``(N, width)``, the output ``f`` ``(N, out_dim)`` (fewer when ``params`` is cut)."""
        z = x @ params[0]["W"].T + params[0]["b"]
        out = [z]
        for p in params[1:]:
            z = _phi(self.activation, z) @ p["W"].T + p["b"]
            out.append(z)
        return out

    def apply(self, params, x, **kwargs):
        if kwargs:
            raise TypeError(f"apply: unexpected keyword arguments {sorted(kwargs)}")
        return self.preactivations(params, x)[-1]

    def conditional_nngp(self, params, x1, x2=None):
        """The output covariance given the hidden weights, ``(N1, N2)``:

            E[f(x1) f(x2) | hidden layers] = sigma_w^2 / n  phi(z^L(x1)) . phi(z^L(x2)) + sigma_b^2

        (per output), exact for any readout ensemble with the matched second moments drawn
        independently of the hidden layers. It converges in probability to the NNGP in the
        Gaussian-process regime; its spread over networks is the distance of one network from
        the limit.
        """
        h1 = _phi(self.activation, self.preactivations(params[:-1], x1)[-1])
        h2 = h1 if x2 is None else _phi(self.activation,
                                        self.preactivations(params[:-1], x2)[-1])
        return self.sigma_w ** 2 / self.width * h1 @ h2.T + self.sigma_b ** 2

    def layer_gains(self, params, x):
        """``chi^l(x) = |W_l diag(phi'(z^{l-1}(x)))|_F^2 / width`` for the hidden-to-hidden layers
        ``l = 2..depth``: ``(depth - 1, N)``. The mean squared singular value of the layer's
        Jacobian ``dz^l / dz^{l-1}``; for every ensemble its expectation is
        ``sigma_w^2 E[phi'(z)^2]``, whose infinite-width value is ``chi_1`` (1 at the edge of
        chaos; Poole et al. 2016, Schoenholz et al. 2017).
        """
        zs = self.preactivations(params[:-1], x)
        gains = []
        for z_prev, p in zip(zs[:-1], params[1:self.depth]):
            col = (p["W"] ** 2).sum(axis=0)                        # |W[:, j]|^2
            gains.append((_dphi(self.activation, z_prev) ** 2) @ col / self.width)
        xp = _xp(x if not gains else gains[0])
        return xp.stack(gains) if gains else xp.zeros((0, x.shape[0]))

    def nngp(self, x1, x2=None):
        """The i.i.d. network's NNGP from :mod:`ntk.stax`, ``(N1, N2)``."""
        return nngp(x1, x2, depth=self.depth, activation=self.activation,
                    sigma_w=self.sigma_w, sigma_b=self.sigma_b)


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def mlp(ensemble: Ensemble, width: int, depth: int, *, out_dim: int = 1,
        activation: str = "relu", sigma_w: float = math.sqrt(2.0), sigma_b: float = 0.0,
        input_ensemble: Optional[Ensemble] = None) -> PseudoIIDNetwork:
    """A network ``x -> z^1 -> ... -> z^depth -> f`` of ``depth`` hidden layers of ``width``.

    ``z^1 = W_1 x + b_1``, ``z^{l+1} = W_{l+1} phi(z^l) + b_{l+1}``, ``f = W_out phi(z^L) + b``,
    every ``W`` with ``E W_ij W_kl = sigma_w^2 / fan_in delta delta`` and ``b ~ N(0, sigma_b^2)``
    (the variances of ``ntk.stax.Dense(W_std=sigma_w, b_std=sigma_b)``). Layers whose fan-in is
    the width (hidden and readout) draw from ``ensemble``; the input layer (fixed fan-in) from
    ``input_ensemble`` (default i.i.d. Gaussian; see the module docstring).

    Nait Saada, Naderi & Tanner (2024), arXiv:2310.16597.

    Examples:
      >>> net = mlp(Ensemble("low_rank", rank_ratio=0.25), width=64, depth=3)
      >>> _, params = net.init(jax.random.PRNGKey(0), (5, 8))
      >>> net.apply(params, jnp.ones((5, 8))).shape
      (5, 1)
    """
    if not isinstance(ensemble, Ensemble):
        raise TypeError(f"ensemble must be a limits.pseudo_iid.Ensemble, got "
                        f"{type(ensemble).__name__}")
    input_ensemble = Ensemble("iid") if input_ensemble is None else input_ensemble
    if not isinstance(input_ensemble, Ensemble):
        raise TypeError(f"input_ensemble must be an Ensemble, got "
                        f"{type(input_ensemble).__name__}")
    width, depth = _positive_int(width, "width"), _positive_int(depth, "depth")
    out_dim = _positive_int(out_dim, "out_dim")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    return PseudoIIDNetwork(ensemble, width, depth, out_dim, activation, _sigma(sigma_w),
                            _sigma(sigma_b, "sigma_b"), input_ensemble)


def _patches(x, filter_size: int):
    """``(N, P, C) -> (N, P, k C)``: the ``k`` taps around each position (SAME zero padding,
    ``lo = (k - 1) // 2`` before), tap-major."""
    xp = _xp(x)
    lo = (filter_size - 1) // 2
    pad = [(0, 0), (lo, filter_size - 1 - lo), (0, 0)]
    padded = xp.pad(x, pad)
    width = x.shape[1]
    return xp.concatenate([padded[:, t:t + width] for t in range(filter_size)], axis=-1)


@dataclasses.dataclass(frozen=True)
class PseudoIIDConvNetwork:
    """A 1D convolutional network with pseudo-i.i.d. filters (see :func:`conv1d`).

    A layer's filter is the ``(C_out, k C_in)`` matrix ``W`` acting on the ``k`` taps around
    each position (SAME zero padding), drawn from the ensemble with fan-in ``k C_in``; the
    readout is a ``Dense`` layer on the flattened ``(P, C)`` features (fan-in ``P C``).
    ``init`` / ``apply`` follow the ``ntk.stax`` convention; inputs ``(N, P, C_in)``.
    """

    ensemble: Ensemble
    channels: int
    depth: int
    filter_size: int
    out_dim: int
    activation: str
    sigma_w: float
    sigma_b: float
    input_ensemble: Ensemble

    def init(self, rng, input_shape):
        n_pos, c_in = int(input_shape[-2]), int(input_shape[-1])
        keys = _split(_check_rng(rng), 2 * (self.depth + 1))
        params = []
        for layer in range(self.depth):
            fan_in = self.filter_size * (c_in if layer == 0 else self.channels)
            ens = self.input_ensemble if layer == 0 else self.ensemble
            params.append({"W": ens.sample(keys[2 * layer], (self.channels, fan_in),
                                           self.sigma_w),
                           "b": self.sigma_b * _normal(keys[2 * layer + 1], (self.channels,))})
        params.append({"W": self.ensemble.sample(keys[-2], (self.out_dim, n_pos * self.channels),
                                                 self.sigma_w),
                       "b": self.sigma_b * _normal(keys[-1], (self.out_dim,))})
        return (input_shape[0], self.out_dim), tuple(params)

    def preactivations(self, params, x) -> list:
        """``[z^1, ..., z^depth, f]``: ``z^l`` of shape ``(N, P, channels)``, ``f`` ``(N, out_dim)``
        (the hidden ones only when ``params`` stops before the readout)."""
        z = _patches(x, self.filter_size) @ params[0]["W"].T + params[0]["b"]
        out = [z]
        for p in params[1:self.depth]:
            z = _patches(_phi(self.activation, z), self.filter_size) @ p["W"].T + p["b"]
            out.append(z)
        if len(params) > self.depth:
            h = _phi(self.activation, z)
            out.append(h.reshape(h.shape[0], -1) @ params[self.depth]["W"].T
                       + params[self.depth]["b"])
        return out

    def apply(self, params, x, **kwargs):
        if kwargs:
            raise TypeError(f"apply: unexpected keyword arguments {sorted(kwargs)}")
        return self.preactivations(params, x)[-1]

    def conditional_nngp(self, params, x1, x2=None):
        """The output covariance given the hidden filters, ``(N1, N2)``:

            E[f(x1) f(x2) | hidden] = sigma_w^2 / (P C) sum_{p, c} phi(z^L)_pc(x1) phi(z^L)_pc(x2)
                                      + sigma_b^2

        (see :meth:`PseudoIIDNetwork.conditional_nngp`)."""
        def feats(x):
            h = _phi(self.activation, self.preactivations(params[:self.depth], x)[-1])
            return h.reshape(h.shape[0], -1)

        h1 = feats(x1)
        h2 = h1 if x2 is None else feats(x2)
        return self.sigma_w ** 2 / h1.shape[1] * h1 @ h2.T + self.sigma_b ** 2

    def nngp(self, x1, x2=None):
        """The i.i.d. CNN's NNGP from ``ntk.stax`` (``Conv(SAME)`` layers, ``Flatten``, ``Dense``):
        ``(N1, N2)``."""
        from ntk import stax
        b_std = self.sigma_b or None
        layers = []
        for _ in range(self.depth):
            layers += [stax.Conv(1, (self.filter_size,), padding="SAME", W_std=self.sigma_w,
                                 b_std=b_std), _stax_activation(self.activation)]
        layers += [stax.Flatten(), stax.Dense(1, W_std=self.sigma_w, b_std=b_std)]
        _, _, kernel_fn = stax.serial(*layers)
        return kernel_fn(x1, x1 if x2 is None else x2, "nngp")


def conv1d(ensemble: Ensemble, channels: int, depth: int, *, filter_size: int = 3,
           out_dim: int = 1, activation: str = "relu", sigma_w: float = math.sqrt(2.0),
           sigma_b: float = 0.0, input_ensemble: Optional[Ensemble] = None
           ) -> PseudoIIDConvNetwork:
    """A 1D CNN: ``depth`` convolutions of ``channels`` channels (filter ``k``, SAME zero
    padding), then ``Flatten`` and a readout, every filter with
    ``E W_ij W_kl = sigma_w^2 / (k C_in) delta delta`` (``ntk.stax.Conv(W_std=sigma_w)``
    variances). The filters of layers whose fan-in grows with ``channels`` and the readout come
    from ``ensemble``; the input layer's from ``input_ensemble`` (i.i.d. Gaussian by default).

    Nait Saada, Naderi & Tanner (2024), arXiv:2310.16597 (convolutional networks with
    pseudo-i.i.d. filters have the same GP limit; which matrix of a filter bank the paper
    requires to be pseudo-i.i.d. is not checked here: this module uses the ``(C_out, k C_in)``
    one).
    """
    if not isinstance(ensemble, Ensemble):
        raise TypeError(f"ensemble must be a limits.pseudo_iid.Ensemble, got "
                        f"{type(ensemble).__name__}")
    input_ensemble = Ensemble("iid") if input_ensemble is None else input_ensemble
    if not isinstance(input_ensemble, Ensemble):
        raise TypeError(f"input_ensemble must be an Ensemble, got "
                        f"{type(input_ensemble).__name__}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    return PseudoIIDConvNetwork(ensemble, _positive_int(channels, "channels"),
                                _positive_int(depth, "depth"),
                                _positive_int(filter_size, "filter_size"),
                                _positive_int(out_dim, "out_dim"), activation,
                                _sigma(sigma_w), _sigma(sigma_b, "sigma_b"), input_ensemble)


def nngp(x1, x2=None, *, depth: int, activation: str = "relu", sigma_w: float = math.sqrt(2.0),
         sigma_b: float = 0.0):
    """The NNGP ``(N1, N2)`` of the i.i.d. network of :func:`mlp` (any width) from ``ntk.stax``:
    ``serial(*[Dense(., W_std=sigma_w, b_std=sigma_b), phi] * depth, Dense(1, ...))``.

    Nait Saada, Naderi & Tanner (2024), arXiv:2310.16597: every pseudo-i.i.d. network converges
    to it.
    """
    from ntk import stax
    depth = _positive_int(depth, "depth")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    sigma_w, b_std = _sigma(sigma_w), _sigma(sigma_b, "sigma_b") or None
    layers = []
    for _ in range(depth):
        layers += [stax.Dense(1, W_std=sigma_w, b_std=b_std), _stax_activation(activation)]
    layers.append(stax.Dense(1, W_std=sigma_w, b_std=b_std))
    _, _, kernel_fn = stax.serial(*layers)
    return kernel_fn(x1, x1 if x2 is None else x2, "nngp")


def relative_frobenius_error(estimate, reference):
    """``|estimate - reference|_F / |reference|_F`` over the last two axes (batched)."""
    xp = _xp(estimate)
    diff = xp.linalg.norm(estimate - reference, axis=(-2, -1))
    return diff / xp.linalg.norm(reference, axis=(-2, -1))
