"""Deep kernel machines: the Bayesian representation-learning limit of a deep Gaussian process.

The model (Yang et al. 2023). A deep Gaussian process on ``P`` inputs ``X`` ``(P, d)`` with
``L`` hidden layers of features ``F_l`` ``(P, N_l)`` whose columns are independent given the
layer below,

    f_l,lambda | F_{l-1} ~ N(0, K(G_{l-1})),      G_l = F_l F_l^T / N_l,

and outputs ``Y`` ``(P, C)`` whose columns are ``y_c ~ N(0, K(G_L) + sigma^2 I)``. Take every
width to infinity *together with* the number of output copies, ``N_l = nu_l N``, ``N -> inf``
(the Bayesian representation-learning limit): the posterior over the Gram matrices concentrates
on the maximiser of the **DKM objective**

    L(G_1, ..., G_L) = log P(Y | G_L) - sum_{l=1}^{L} nu_l KL( N(0, G_l) || N(0, K(G_{l-1})) ),

    log P(Y | G_L)   = sum_c log N(y_c; 0, S)
                     = -1/2 tr(S^-1 Y Y^T) - C/2 log det S - P C/2 log(2 pi),
                       S = K(G_L) + sigma^2 I,

    KL(N(0, G) || N(0, K)) = 1/2 [ tr(K^-1 G) - log det(K^-1 G) - P ],

a log-likelihood that pulls the top Gram towards the data and one KL per layer that keeps each
Gram near the kernel of the one below (``nu_l``: the width of layer ``l`` relative to the
number of output copies). As ``nu_l -> inf`` the KL terms force ``G_l = K(G_{l-1})``: the
maximiser is the NNGP's Gram sequence and the model is NNGP regression; at finite ``nu`` the
Grams, the representations, are learned.

Kernel maps (this module's conventions, chosen to match :mod:`ntk.stax` number for number).
The input Gram is the first pre-activation covariance of a ``Dense(W_std, b_std)`` layer,
``G_0 = W_std^2 X X^T / d + b_std^2`` (``W_std = 1, b_std = 0``: the paper's ``X X^T / N_0``),
and every layer's kernel is an activation followed by a ``Dense`` layer,

    K(G)_ij = W_std^2 T_phi(G_ij, G_ii, G_jj) + b_std^2,

with ``T_phi`` the dual activation of :mod:`ntk.stax.duals` (``relu``: the arc-cosine kernel
of Cho & Saul 2009; ``erf``, ``gelu``; ``identity``: ``T(G) = G``, the deep linear DKM). So
the ``nu = inf`` Grams are the NNGP kernels of ``stax.serial(Dense, *[phi, Dense] * l)`` and
the top kernel ``K(G_L)`` is the NNGP of ``stax.serial(Dense, *[phi, Dense] * (L + 1))``.

Optimisation (:func:`fit`). Whitened factors: ``G_l = R_l U_l U_l^T R_l^T`` with ``R_l`` the
Cholesky factor of ``K(G_{l-1})`` and ``U_l = tril(V_l, -1) + diag(exp(diag V_l))`` for an
unconstrained ``V_l`` (:func:`grams_from_factors`). Every ``G_l`` is positive definite, ``V = 0``
is the NNGP, and ``KL(N(0, G_l) || N(0, K(G_{l-1}))) = 1/2 [|U_l|_F^2 - 2 sum diag V_l - P]``
whatever the layers below do, so the ``nu``-weighted terms stay well conditioned as ``nu``
grows (in the Grams themselves the KL's curvature is ``nu / (2 lambda_i lambda_j)`` with
eigenvalues ``lambda`` down to ``1e-4`` of the largest). ``-L / P`` is minimised by L-BFGS from
the NNGP (the ``nu = inf`` maximiser). The parametrisation and the optimiser are this
module's.

What was checked against the paper. Its abstract states the structure (a log-likelihood plus a
series of KL divergences that keep the posteriors near the prior, maximised over the layers'
posterior covariances; the NNGP's limit removes representation learning); the per-layer term
``-nu_l KL(N(0, G_l) || N(0, K(G_{l-1})))``, written ``-nu/2 [tr(K^-1 G) - log det(K^-1 G) -
P]``, is the one the authors' later convolutional-DKM code (Milsom, Anson & Aitchison,
arXiv:2309.09814) regularises each Gram with. The paper's text beyond its abstract could not be
read here: the likelihood's normalisation (summed over the ``C`` output columns, ``nu_l`` per
copy of ``Y``) is this module's reading, and any other normalisation is a rescaling of ``nu``.

Prediction (:func:`predict`). The sparse DKM (in the paper; in the authors' later code) gives
the Grams at points outside the optimised set by the Gaussian conditional of each layer's
features on those at the optimised points (inducing points). Here the optimised points are the
training inputs ``i`` and the test inputs ``t`` are conditioned on them, layer by layer: with
``K = K(G_{l-1})`` over ``(i, t)`` and ``A = K_ti K_ii^-1``,

    G_ii = the learned G_l,    G_ti = A G_ii,    G_tt = K_tt - A K_it + A G_ii A^T,

(the second moment of ``f_t = A f_i + N(0, K_tt - A K_it)``) and at the top the GP posterior
with kernel ``K(G_L)``: ``mean = K_ti (K_ii + sigma^2 I)^-1 Y``, ``cov = K_tt - K_ti (K_ii +
sigma^2 I)^-1 K_it``. At ``nu = inf`` (``G_ii = K_ii``) this is exactly NNGP regression on the
joint NNGP kernel.

Reference: Yang, A. X., Robeyns, M., Milsom, E., Anson, B., Schoots, N. & Aitchison, L. (2023).
A theory of representation learning gives a deep generalisation of kernel methods. ICML 2023,
arXiv:2108.13097.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from ntk.stax import duals

__all__ = ["ACTIVATIONS", "DKMFit", "Prediction", "input_gram", "kernel_map", "nngp_grams",
           "kl_divergence", "log_likelihood", "objective", "grams_from_factors",
           "factors_from_grams", "objective_from_factors", "objective_and_gradient", "fit",
           "predict", "propagate"]

#: activation name -> dual activation ``(q12, q11, q22, need_dot) -> (T, Tdot)`` of
#: :mod:`ntk.stax.duals` (``identity``: ``None``, ``T(G) = G``)
ACTIVATIONS: dict = {
    "relu": duals.abrelu(0.0, 1.0),
    "erf": duals.erf(1.0, 1.0, 0.0),
    "gelu": duals.gelu(),
    "identity": None,
}

Activation = Union[str, Callable]


def _dual(activation: Activation):
    if callable(activation):
        return activation
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)} or a dual activation "
                         f"from ntk.stax.duals, got {activation!r}")
    return ACTIVATIONS[activation]


def _square(name: str, a, batch: bool = False):
    a = jnp.asarray(a)
    want = 3 if batch else 2
    if a.ndim != want or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"{name}: expected {'(L, P, P)' if batch else '(P, P)'} square "
                         f"matrices, got shape {a.shape}")
    return a


def _inputs(name: str, x):
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name}: expected inputs (P, d), got shape {x.shape}")
    return x


def _check_std(W_std, b_std):
    for name, v, ok in (("W_std", W_std, lambda v: v > 0), ("b_std", b_std, lambda v: v >= 0)):
        if isinstance(v, (int, float, np.floating)) and not ok(v):
            raise ValueError(f"{name} must be {'> 0' if name == 'W_std' else '>= 0'}, got {v}")


def _check_depth(depth):
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")


def _targets(y, p):
    y = jnp.asarray(y)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[0] != p:
        raise ValueError(f"y: expected targets (P,) or (P, C) with P = {p}, got shape {y.shape}")
    return y


def _nus(nu, depth, finite=True):
    nu = np.asarray(nu, np.float64)
    nu = np.broadcast_to(nu, (depth,)) if nu.ndim == 0 else nu
    if nu.shape != (depth,):
        raise ValueError(f"nu: expected a scalar or {depth} values (one per layer), got shape "
                         f"{nu.shape}")
    if np.any(np.isnan(nu)) or np.any(nu <= 0) or (finite and not np.all(np.isfinite(nu))):
        raise ValueError(f"nu must be {'finite and ' if finite else ''}> 0 per layer, got "
                         f"{nu.tolist()}")
    return nu


# ------------------------------------------------------------------------------------------
# the math (traceable cores; the public functions below validate and call them compiled)


def _gram(x, W_std, b_std):
    return W_std ** 2 * (x @ x.T) / x.shape[1] + b_std ** 2


def _kmap(g, dual, W_std, b_std):
    """``W_std^2 T(G) + b_std^2`` with ``T`` the dual ``dual`` (None: the identity)."""
    if dual is None:
        t = g
    else:
        d = jnp.diagonal(g)
        t, _ = dual(g, d[:, None], d[None, :], False)
    return W_std ** 2 * t + b_std ** 2


def _nngp(g0, depth, dual, W_std, b_std):
    out, g = [], g0
    for _ in range(depth):
        g = _kmap(g, dual, W_std, b_std)
        out.append(g)
    return jnp.stack(out)


def _logdet_from_chol(c):
    return 2.0 * jnp.sum(jnp.log(jnp.diagonal(c, axis1=-2, axis2=-1)), -1)


def _kl_from_chols(chol_g, chol_k):
    """``KL(N(0, C_g C_g^T) || N(0, C_k C_k^T))`` from Cholesky factors."""
    p = chol_g.shape[-1]
    m = jax.scipy.linalg.solve_triangular(chol_k, chol_g, lower=True)   # C_k^-1 C_g
    return 0.5 * (jnp.sum(m * m) - p + _logdet_from_chol(chol_k) - _logdet_from_chol(chol_g))


def _log_likelihood_gram(k, yyt, n_out, noise_var):
    """``sum_c log N(y_c; 0, K + sigma^2 I)`` from ``Y Y^T`` and ``C`` (one program for every
    ``C``)."""
    p = k.shape[0]
    chol = jnp.linalg.cholesky(k + noise_var * jnp.eye(p, dtype=k.dtype))
    fit_term = jnp.trace(jax.scipy.linalg.cho_solve((chol, True), yyt))
    return (-0.5 * fit_term - 0.5 * n_out * _logdet_from_chol(chol)
            - 0.5 * p * n_out * math.log(2 * math.pi))


def _objective(grams, g0, yyt, n_out, nu, dual, W_std, b_std, noise_var):
    """The DKM objective at Grams ``(L, P, P)`` (Cholesky KLs)."""
    total, below = 0.0, g0
    for l in range(grams.shape[0]):
        chol_k = jnp.linalg.cholesky(_kmap(below, dual, W_std, b_std))
        total = total - nu[l] * _kl_from_chols(jnp.linalg.cholesky(grams[l]), chol_k)
        below = grams[l]
    return total + _log_likelihood_gram(_kmap(below, dual, W_std, b_std), yyt, n_out, noise_var)


def _triangular(raw):
    """``tril(V, -1) + diag(exp(diag V))``: a lower-triangular factor with a positive
    diagonal from an unconstrained ``V`` (``(..., P, P)``; the upper triangle is ignored)."""
    diag = jnp.diagonal(raw, axis1=-2, axis2=-1)
    eye = jnp.eye(raw.shape[-1], dtype=bool)
    return jnp.where(eye, jnp.exp(diag)[..., None, :], jnp.tril(raw, -1))


def _forward(raw, g0, dual, W_std, b_std):
    """Grams ``(L, P, P)`` and the per-layer KLs ``(L,)`` from whitened factors ``raw``."""
    below, grams, kls = g0, [], []
    p = g0.shape[0]
    for l in range(raw.shape[0]):
        chol_k = jnp.linalg.cholesky(_kmap(below, dual, W_std, b_std))
        u = _triangular(raw[l])
        chol_g = chol_k @ u
        below = chol_g @ chol_g.T
        # KL(N(0, R U U^T R^T) || N(0, R R^T)) = KL(N(0, U U^T) || N(0, I))
        kls.append(0.5 * (jnp.sum(u * u) - p - 2.0 * jnp.sum(jnp.diagonal(raw[l]))))
        grams.append(below)
    return jnp.stack(grams), jnp.stack(kls)


def _objective_whitened(raw, g0, yyt, n_out, nu, dual, W_std, b_std, noise_var):
    grams, kls = _forward(raw, g0, dual, W_std, b_std)
    return _log_likelihood_gram(_kmap(grams[-1], dual, W_std, b_std), yyt, n_out,
                                noise_var) - jnp.sum(nu * kls)


def _factors(grams, g0, dual, W_std, b_std):
    eye = jnp.eye(g0.shape[0], dtype=bool)
    out, below = [], g0
    for l in range(grams.shape[0]):
        chol_k = jnp.linalg.cholesky(_kmap(below, dual, W_std, b_std))
        u = jax.scipy.linalg.solve_triangular(chol_k, jnp.linalg.cholesky(grams[l]), lower=True)
        out.append(jnp.where(eye, jnp.log(jnp.diagonal(u))[None, :], jnp.tril(u, -1)))
        below = grams[l]
    return jnp.stack(out)


def _propagate(grams, g_joint, dual, W_std, b_std):
    """Joint Grams ``(L + 1, P + T, P + T)`` from the learned ``grams`` and the joint input
    Gram ``g_joint`` (train rows first)."""
    p = grams.shape[-1]
    g = g_joint
    out = [g]
    for l in range(grams.shape[0]):
        k = _kmap(g, dual, W_std, b_std)
        k_ii, k_ti, k_tt = k[:p, :p], k[p:, :p], k[p:, p:]
        a = jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(k_ii), True), k_ti.T).T  # K_ti K_ii^-1
        g_ii = grams[l]
        g_ti = a @ g_ii
        g_tt = k_tt - a @ k_ti.T + a @ g_ii @ a.T
        g = jnp.block([[g_ii, g_ti.T], [g_ti, 0.5 * (g_tt + g_tt.T)]])
        out.append(g)
    return jnp.stack(out)


def _predict(grams, g_joint, noise_var, dual, W_std, b_std):
    """``(K_ti (K_ii + sigma^2 I)^-1, K_tt - K_ti (K_ii + sigma^2 I)^-1 K_it)`` of the top
    kernel: the mean is the first times ``Y`` (one program for every number of outputs)."""
    p = grams.shape[-1]
    k = _kmap(_propagate(grams, g_joint, dual, W_std, b_std)[-1], dual, W_std, b_std)
    k_ii, k_ti, k_tt = k[:p, :p], k[p:, :p], k[p:, p:]
    chol = jnp.linalg.cholesky(k_ii + noise_var * jnp.eye(p, dtype=k.dtype))
    v = jax.scipy.linalg.solve_triangular(chol, k_ti.T, lower=True)
    weights = jax.scipy.linalg.solve_triangular(chol, v, lower=True, trans=1).T
    return weights, k_tt - v.T @ v


def _numpy_gram(x, W_std, b_std):
    """:func:`input_gram` in float64 NumPy (nothing to compile per input dimension)."""
    return W_std ** 2 * (x @ x.T) / x.shape[1] + b_std ** 2


_compiled = functools.partial(jax.jit, static_argnames=("dual",))
_gram_jit = jax.jit(_gram)
_kmap_jit = _compiled(_kmap)
_nngp_jit = jax.jit(_nngp, static_argnames=("dual", "depth"))
_kl_jit = jax.jit(lambda g, k: _kl_from_chols(jnp.linalg.cholesky(g), jnp.linalg.cholesky(k)))
_log_likelihood_jit = jax.jit(_log_likelihood_gram)
_objective_jit = _compiled(_objective)
_objective_whitened_jit = _compiled(_objective_whitened)
_forward_jit = _compiled(_forward)
_factors_jit = _compiled(_factors)
_propagate_jit = _compiled(_propagate)
_predict_jit = _compiled(_predict)


@_compiled
def _evaluate(raw, g0, yyt, n_out, nu, W_std, b_std, noise_var, dual):
    """``(-L / P, grams)`` and the gradient of ``-L / P`` in the whitened factors: the one
    compiled program of a fit (per ``P``, depth and activation)."""
    p = g0.shape[0]

    def loss(r):
        grams, kls = _forward(r, g0, dual, W_std, b_std)
        value = _log_likelihood_gram(_kmap(grams[-1], dual, W_std, b_std), yyt, n_out,
                                     noise_var) - jnp.sum(nu * kls)
        return -value / p, grams

    return jax.value_and_grad(loss, has_aux=True)(raw)


# ------------------------------------------------------------------------------------------
# public functions


def input_gram(x, W_std: float = 1.0, b_std: float = 0.0):
    """``G_0 = W_std^2 X X^T / d + b_std^2`` for inputs ``x`` ``(P, d)``: ``(P, P)``, the
    NNGP of ``stax.Dense(., W_std, b_std)`` on ``x``.

    Reference: Yang et al. (2023), arXiv:2108.13097 (``G_0 = X X^T / N_0``)."""
    x = _inputs("x", x)
    _check_std(W_std, b_std)
    return _gram_jit(x, W_std, b_std)


def kernel_map(gram, activation: Activation = "relu", W_std: float = 1.0, b_std: float = 0.0):
    """``K(G)_ij = W_std^2 T_phi(G_ij, G_ii, G_jj) + b_std^2``: the NNGP map of
    ``stax.serial(phi, stax.Dense(., W_std, b_std))`` applied to a Gram matrix ``G`` ``(P, P)``
    (``T_phi``: the dual activation of :mod:`ntk.stax.duals`; ``identity``: ``T(G) = G``).

    Reference: Cho & Saul (2009), Kernel methods for deep learning (the arc-cosine kernel);
    Yang et al. (2023), arXiv:2108.13097."""
    gram = _square("gram", gram)
    _check_std(W_std, b_std)
    return _kmap_jit(gram, dual=_dual(activation), W_std=W_std, b_std=b_std)


def nngp_grams(g0, depth: int, activation: Activation = "relu", W_std: float = 1.0,
               b_std: float = 0.0):
    """The ``nu = inf`` maximiser: ``G_l = K(G_{l-1})`` for ``l = 1 .. depth`` from ``G_0 =
    g0`` ``(P, P)``; ``(depth, P, P)``.

    Reference: Yang et al. (2023), arXiv:2108.13097 (the NNGP as the infinite-regularisation
    limit of the DKM)."""
    g0 = _square("g0", g0)
    _check_depth(depth)
    _check_std(W_std, b_std)
    return _nngp_jit(g0, depth=int(depth), dual=_dual(activation), W_std=W_std, b_std=b_std)


def kl_divergence(g, k):
    """``KL(N(0, G) || N(0, K)) = 1/2 [tr(K^-1 G) - log det(K^-1 G) - P]`` for positive
    definite ``G`` and ``K`` ``(P, P)`` (Cholesky factors; NaN if either is not positive
    definite).

    Reference: Yang et al. (2023), arXiv:2108.13097 (the DKM's per-layer regulariser)."""
    g, k = _square("g", g), _square("k", k)
    if g.shape != k.shape:
        raise ValueError(f"g {g.shape} and k {k.shape} must have the same shape")
    return _kl_jit(g, k)


def log_likelihood(k, y, noise_var: float = 0.0):
    """``sum_c log N(y_c; 0, K + sigma^2 I)`` for ``K`` ``(P, P)`` and targets ``y`` ``(P, C)``
    (or ``(P,)``): ``-1/2 tr(S^-1 Y Y^T) - C/2 log det S - P C/2 log 2 pi``, ``S = K +
    sigma^2 I``.

    Reference: Rasmussen & Williams (2006), Gaussian Processes for Machine Learning, eq. 2.30."""
    k = _square("k", k)
    y = _targets(y, k.shape[0])
    return _log_likelihood_jit(k, y @ y.T, y.shape[1], noise_var)


def _layers_and_input(name, stack, g0, W_std, b_std):
    """``stack`` ``(L, P, P)`` (Grams or factors) and the input Gram ``g0`` ``(P, P)``,
    checked square and matching, and the kernel map's ``W_std`` / ``b_std``."""
    stack = _square(name, stack, batch=True)
    g0 = _square("g0", g0)
    if stack.shape[1:] != g0.shape:
        raise ValueError(f"{name} {stack.shape} and g0 {g0.shape}: every layer must be (P, P)")
    _check_std(W_std, b_std)
    return stack, g0


def objective(grams, g0, y, nu, activation: Activation = "relu", W_std: float = 1.0,
              b_std: float = 0.0, noise_var: float = 0.0):
    """The DKM objective

        ``L = log P(Y | G_L) - sum_l nu_l KL(N(0, G_l) || N(0, K(G_{l-1})))``

    for Grams ``grams`` ``(L, P, P)`` (positive definite), input Gram ``g0`` ``(P, P)``,
    targets ``y`` ``(P, C)``, per-layer ``nu`` (scalar or ``(L,)``, finite, > 0) and the
    likelihood noise ``noise_var`` (``log P(Y | G_L)`` as in :func:`log_likelihood` with
    ``K(G_L)``). Differentiable in ``grams``.

    Reference: Yang et al. (2023), arXiv:2108.13097."""
    grams, g0 = _layers_and_input("grams", grams, g0, W_std, b_std)
    y = _targets(y, g0.shape[0])
    nu = jnp.asarray(_nus(nu, grams.shape[0]), grams.dtype)
    return _objective_jit(grams, g0, y @ y.T, y.shape[1], nu, dual=_dual(activation),
                          W_std=W_std, b_std=b_std, noise_var=noise_var)


def grams_from_factors(raw, g0, activation: Activation = "relu", W_std: float = 1.0,
                       b_std: float = 0.0):
    """The Grams of whitened factors ``raw = V`` ``(L, P, P)``:

        ``G_l = R_l U_l U_l^T R_l^T``,  ``U_l = tril(V_l, -1) + diag(exp(diag V_l))``,
        ``R_l = chol K(G_{l-1})``,

    from ``G_0 = g0`` (``V = 0``: the NNGP Grams). Then ``chol G_l = R_l U_l`` and
    ``KL(N(0, G_l) || N(0, K(G_{l-1}))) = 1/2 [|U_l|_F^2 - 2 sum diag V_l - P]``: the KL terms
    are those of standard Gaussians whatever the lower layers do, which keeps the optimisation
    well conditioned as ``nu`` grows. A smooth bijection onto positive definite Grams:
    stationary points correspond. Returns ``(L, P, P)``."""
    raw, g0 = _layers_and_input("raw", raw, g0, W_std, b_std)
    return _forward_jit(raw, g0, dual=_dual(activation), W_std=W_std, b_std=b_std)[0]


def factors_from_grams(grams, g0, activation: Activation = "relu", W_std: float = 1.0,
                       b_std: float = 0.0):
    """The inverse of :func:`grams_from_factors`: ``U_l = R_l^-1 chol G_l`` with ``R_l = chol
    K(G_{l-1})`` (``G_0 = g0``), ``V_l = tril(U_l, -1) + diag(log diag U_l)``; ``(L, P, P)``
    (NaN where a Gram is not positive definite)."""
    grams, g0 = _layers_and_input("grams", grams, g0, W_std, b_std)
    return _factors_jit(grams, g0, dual=_dual(activation), W_std=W_std, b_std=b_std)


def objective_from_factors(raw, g0, y, nu, activation: Activation = "relu", W_std: float = 1.0,
                           b_std: float = 0.0, noise_var: float = 0.0):
    """:func:`objective` at the Grams :func:`grams_from_factors` ``(raw, g0, ...)``, with each
    KL in the whitened form: what :func:`fit` maximises (differentiable in ``raw``
    ``(L, P, P)``)."""
    raw, g0 = _layers_and_input("raw", raw, g0, W_std, b_std)
    y = _targets(y, g0.shape[0])
    nu = jnp.asarray(_nus(nu, raw.shape[0]), raw.dtype)
    return _objective_whitened_jit(raw, g0, y @ y.T, y.shape[1], nu, dual=_dual(activation),
                                   W_std=W_std, b_std=b_std, noise_var=noise_var)


def objective_and_gradient(raw, g0, y, nu, activation: Activation = "relu", W_std: float = 1.0,
                           b_std: float = 0.0, noise_var: float = 0.0):
    """``(L, dL/dV)``: :func:`objective_from_factors` and its gradient in the whitened factors
    ``raw = V`` ``(L, P, P)`` (zero on the ignored upper triangle), float64 NumPy, by the
    compiled program :func:`fit` runs (one per ``P``, depth and activation)."""
    raw, g0 = _layers_and_input("raw", raw, g0, W_std, b_std)
    y = np.asarray(_targets(y, g0.shape[0]), np.float64)
    nu = _nus(nu, raw.shape[0])
    p = g0.shape[0]
    with jax.enable_x64(True):
        (value, _), grad = _evaluate(
            jnp.asarray(np.asarray(raw, np.float64)), jnp.asarray(np.asarray(g0, np.float64)),
            jnp.asarray(y @ y.T), jnp.asarray(float(y.shape[1])), jnp.asarray(nu),
            jnp.asarray(float(W_std)), jnp.asarray(float(b_std)), jnp.asarray(float(noise_var)),
            _dual(activation))
        return -float(value) * p, -np.asarray(grad) * p


class DKMFit(NamedTuple):
    """A fitted deep kernel machine (NumPy float64 arrays).

    grams: the learned ``G_1 .. G_L`` ``(L, P, P)`` (the NNGP Grams when ``nu = inf``);
    objective: the DKM objective there (at ``nu = inf``: the NNGP's log-likelihood, the KL
    terms being 0); grad_norm: the 2-norm of ``d(-L / P) / dV`` at the end (0 at ``nu = inf``);
    iterations: L-BFGS iterations; converged: the largest gradient entry is ``<= tol max(1,
    nu)``, or L-BFGS-B met its own stopping rules; message: L-BFGS-B's reason for stopping
    (``ABNORMAL_TERMINATION_IN_LNSRCH`` with a small ``grad_norm``: the line search cannot
    decrease ``-L / P`` beyond its float64 rounding, about ``1e-12`` relative for Grams with
    condition numbers near ``1e6``, which floors the gradient near ``1e-6``); and what
    :func:`predict` needs: x_train ``(P, d)``, y_train ``(P, C)``, nu (per layer), activation,
    W_std, b_std, noise_var."""
    grams: np.ndarray
    objective: float
    grad_norm: float
    iterations: int
    converged: bool
    message: str
    x_train: np.ndarray
    y_train: np.ndarray
    nu: tuple
    activation: Activation
    W_std: float
    b_std: float
    noise_var: float


def fit(x, y, depth: int, nu, *, noise_var: float, activation: Activation = "relu",
        W_std: float = 1.0, b_std: float = 0.0, max_iter: int = 5000, tol: float = 1e-8,
        memory_size: int = 20, init=None) -> DKMFit:
    """Maximise the DKM objective over ``G_1 .. G_depth`` on training inputs ``x`` ``(P, d)``
    and targets ``y`` ``(P, C)`` (or ``(P,)``) with likelihood noise ``noise_var``.

    ``nu``: scalar or one value per layer, > 0; ``inf`` (every layer) returns the NNGP Grams
    without optimising. The unknowns are the whitened factors of :func:`grams_from_factors`
    (their lower triangles, ``L P (P + 1) / 2`` numbers), from ``V = 0`` (the NNGP Grams) or
    from the factors of ``init`` ``(L, P, P)``; ``-L / P`` is minimised by L-BFGS (scipy's
    L-BFGS-B, ``memory_size`` correction pairs) with its value and gradient from one compiled
    JAX function (compiled once per ``P``, ``depth`` and activation), until the largest
    gradient entry is ``<= tol max(1, nu)`` (the KL terms' curvature in ``V`` is ``nu / P``, so
    this bounds the distance to the maximiser alike for every ``nu``), no step improves it in
    float64, or ``max_iter`` iterations.
    Computes in float64 (inside ``jax.enable_x64``): NNGP Grams of a few hundred points have
    condition numbers of ``1e6`` and more. Small dense matrices: limit BLAS to one thread
    (``threadpoolctl``) on a busy machine.

    Returns a :class:`DKMFit`.

    Reference: Yang et al. (2023), arXiv:2108.13097."""
    import scipy.optimize

    _check_depth(depth)
    _check_std(W_std, b_std)
    if isinstance(noise_var, bool) or not (np.isfinite(noise_var) and noise_var >= 0):
        raise ValueError(f"noise_var must be finite and >= 0, got {noise_var!r}")
    for name, v in (("max_iter", max_iter), ("memory_size", memory_size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol!r}")
    nus = _nus(nu, depth, finite=False)
    if np.any(np.isinf(nus)) and not np.all(np.isinf(nus)):
        raise ValueError(f"nu: every layer finite or every layer inf, got {nus.tolist()}")
    dual = _dual(activation)
    x_np = np.asarray(x, np.float64)
    if x_np.ndim != 2 or x_np.shape[0] < 1 or x_np.shape[1] < 1:
        raise ValueError(f"x: expected inputs (P, d), got shape {x_np.shape}")
    y_np = np.asarray(y, np.float64)
    y_np = y_np[:, None] if y_np.ndim == 1 else y_np
    if y_np.ndim != 2 or y_np.shape[0] != x_np.shape[0]:
        raise ValueError(f"y: expected targets (P,) or (P, C) with P = {x_np.shape[0]}, got "
                         f"shape {np.shape(y)}")
    settings = dict(x_train=x_np, y_train=y_np, nu=tuple(float(v) for v in nus),
                    activation=activation, W_std=float(W_std), b_std=float(b_std),
                    noise_var=float(noise_var))
    p = x_np.shape[0]
    rows, cols = np.tril_indices(p)
    gtol = float(tol) * max(1.0, float(np.max(nus)))
    with jax.enable_x64(True):
        g0 = jnp.asarray(_numpy_gram(x_np, float(W_std), float(b_std)))
        # at nu = inf only V = 0 is feasible; any finite weight evaluates it (its KLs are 0)
        weights = np.where(np.isinf(nus), 1.0, nus)
        args = (g0, jnp.asarray(y_np @ y_np.T), jnp.asarray(float(y_np.shape[1])),
                jnp.asarray(weights), jnp.asarray(float(W_std)), jnp.asarray(float(b_std)),
                jnp.asarray(float(noise_var)))

        def unpack(theta):
            return jnp.zeros((depth, p, p)).at[:, rows, cols].set(
                jnp.asarray(theta).reshape(depth, -1))

        def evaluate(theta):
            (value, grams), grad = _evaluate(unpack(theta), *args, dual)
            return float(value), np.asarray(grad[:, rows, cols], np.float64).ravel(), grams

        if init is None:
            theta0 = np.zeros(depth * len(rows))                     # V = 0: the NNGP Grams
        else:
            start = jnp.asarray(np.asarray(init, np.float64))
            if start.shape != (depth, p, p):
                raise ValueError(f"init: expected shape {(depth, p, p)}, got {start.shape}")
            raw0 = factors_from_grams(start, g0, activation, W_std, b_std)
            theta0 = np.asarray(raw0[:, rows, cols], np.float64).ravel()
        value, grad, grams = evaluate(theta0)
        if not (np.isfinite(value) and np.all(np.isfinite(theta0))):
            raise ValueError("the starting Grams or kernels are not positive definite "
                             "(duplicate inputs with b_std = 0?); pass distinct inputs, "
                             "b_std > 0 or init")
        if np.all(np.isinf(nus)):
            return DKMFit(np.asarray(grams), -value * p, 0.0, 0, True, "nu = inf: the NNGP",
                          **settings)

        def fun(theta):
            value, grad, _ = evaluate(theta)
            if not np.isfinite(value):        # a trial step too long: the line search backs off
                return np.inf, np.zeros_like(theta)
            return value, grad

        res = scipy.optimize.minimize(fun, theta0, jac=True, method="L-BFGS-B", options=dict(
            maxiter=int(max_iter), maxcor=int(memory_size), gtol=gtol, ftol=1e-15,
            maxfun=4 * int(max_iter)))
        value, grad, grams = evaluate(res.x)
    converged = bool(res.success) or bool(np.max(np.abs(grad)) <= gtol)
    return DKMFit(np.asarray(grams), -value * p, float(np.linalg.norm(grad)), int(res.nit),
                  converged, str(res.message), **settings)


def propagate(grams, x_train, x_test, activation: Activation = "relu", W_std: float = 1.0,
              b_std: float = 0.0):
    """The joint Grams over ``(train, test)`` inputs, layer by layer, from the learned training
    Grams ``grams`` ``(L, P, P)``: with ``K = K(G_{l-1})`` joint and ``A = K_ti K_ii^-1``,
    ``G_ii = grams[l]``, ``G_ti = A G_ii``, ``G_tt = K_tt - A K_it + A G_ii A^T``. Returns
    ``[G_0, G_1, .., G_L]`` stacked, ``(L + 1, P + T, P + T)`` (train rows first).

    Reference: Yang et al. (2023), arXiv:2108.13097 (the sparse DKM's conditional for points
    outside the inducing set)."""
    grams = _square("grams", grams, batch=True)
    x_train, x_test = _inputs("x_train", x_train), _inputs("x_test", x_test)
    if x_test.shape[1] != x_train.shape[1]:
        raise ValueError(f"x_train {x_train.shape} and x_test {x_test.shape} must have the "
                         "same d")
    if grams.shape[1] != x_train.shape[0]:
        raise ValueError(f"grams {grams.shape} do not match x_train {x_train.shape}")
    _check_std(W_std, b_std)
    g_joint = _gram_jit(jnp.concatenate([x_train, x_test]), W_std, b_std)
    return _propagate_jit(grams, g_joint, dual=_dual(activation), W_std=W_std, b_std=b_std)


class Prediction(NamedTuple):
    """The DKM's predictive at test points (float64 NumPy): ``mean`` ``(T, C)``,
    ``covariance`` ``(T, T)`` of the latent function (add ``noise_var`` for a new
    observation)."""
    mean: np.ndarray
    covariance: np.ndarray


def predict(model: DKMFit, x_test) -> Prediction:
    """GP regression with the top kernel ``K(G_L)`` of the joint Grams from :func:`propagate`:
    ``mean = K_ti (K_ii + sigma^2 I)^-1 Y``, ``cov = K_tt - K_ti (K_ii + sigma^2 I)^-1 K_it``
    (float64). At ``nu = inf`` this is NNGP regression.

    Reference: Yang et al. (2023), arXiv:2108.13097."""
    if not isinstance(model, DKMFit):
        raise TypeError(f"model: expected a DKMFit from fit(), got {type(model).__name__}")
    x_test = np.asarray(x_test, np.float64)
    if x_test.ndim != 2 or x_test.shape[1] != model.x_train.shape[1]:
        raise ValueError(f"x_test: expected (T, {model.x_train.shape[1]}), got {x_test.shape}")
    with jax.enable_x64(True):
        g_joint = _numpy_gram(np.concatenate([model.x_train, x_test]), model.W_std,
                              model.b_std)
        weights, cov = _predict_jit(jnp.asarray(model.grams), jnp.asarray(g_joint),
                                    model.noise_var, dual=_dual(model.activation),
                                    W_std=model.W_std, b_std=model.b_std)
        return Prediction(np.asarray(weights) @ model.y_train, np.asarray(cov))
