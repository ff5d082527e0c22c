"""Neural signature kernels: the infinite-width(-depth) kernels of randomly initialised
controlled ResNets on paths, their Goursat PDE and its finite-difference solvers.

**The network** (a homogeneous controlled ResNet, the Euler scheme of a neural CDE). A path
``x`` sampled at ``M + 1`` points in ``R^d`` with increments ``dx_i = x_{i+1} - x_i`` drives a
width-``N`` hidden state through ``M`` residual blocks (depth = number of increments) with the
*same* weights in every block::

    Z_0 ~ N(0, sigma_0^2 I_N),   Z_{i+1} = Z_i + sum_{k=1}^d (A_k phi(Z_i) + b_k) dx^k_i,
    (A_k)_{mn} ~ N(0, sigma_A^2 / N),   (b_k)_m ~ N(0, sigma_b^2),   f(x) = <v, Z_M> / sqrt(N),

``v ~ N(0, I_N)``, so ``E_v[f(x) f(y)] = <Z^x_M, Z^y_M> / N``.

**Its infinite-width kernel at finite depth** (:func:`controlled_resnet_kernel`). Write
``K(i, j) = lim_N <Z^x_i, Z^y_j> / N``. Bilinearity alone gives, at every width,

    <Z^x_{i+1}, Z^y_{j+1}> - <Z^x_{i+1}, Z^y_j> - <Z^x_i, Z^y_{j+1}> + <Z^x_i, Z^y_j>
        = <Delta^x_i, Delta^y_j>,    Delta^x_i = sum_k (A_k phi(Z^x_i) + b_k) dx^k_i.

As ``N -> inf`` the vectors ``A_k phi(Z)`` of a weight-tied forward pass (no ``A^T``) are, by
the Gaussian conditioning of Tensor Programs (Yang 2019), jointly Gaussian across coordinates
exactly as for untied weights: ``<A_k phi(Z^x_i), A_l phi(Z^y_j)> / N -> delta_kl sigma_A^2
E[phi(u) phi(v)]``; the cross terms with ``b`` vanish and ``<b_k, b_l> / N -> delta_kl
sigma_b^2``. ``Z^x_i`` and ``Z^y_j`` are sums of such Gaussian vectors, so ``(u, v)`` is
centred Gaussian with covariance ``[[K_xx(i, i), K(i, j)], [K(i, j), K_yy(j, j)]]``. Hence

    K(i+1, j+1) = K(i+1, j) + K(i, j+1) - K(i, j)
                  + (sigma_A^2 V_phi(K_xx(i, i), K(i, j), K_yy(j, j)) + sigma_b^2) <dx_i, dy_j>,
    K(i, 0) = K(0, j) = sigma_0^2,     V_phi(a, b, c) = E_{(u,v) ~ N(0, [[a, b], [b, c]])}
                                                         [phi(u) phi(v)],

the kernel of the depth-``M`` network is ``K(M_x, M_y)``. With ``phi = id`` and ``sigma_b = 0``
the same kernel follows from free probability with no recursion: ``Z_M = prod_i (I + sum_k
A_k dx^k_i) Z_0``, the ``A_k`` are asymptotically free circular elements, and
``tr(W_w^T W_w') / N -> sigma_A^{2|w|} delta_{w w'}`` for words ``W_w = A_{k_m} ... A_{k_1}``, so
``K = sigma_0^2 sum_w sigma_A^{2|w|} D_w(x) D_w(y)`` with the discrete (ordered-sum)
signature ``D(x) = prod_i (1 + dx_i)`` in the tensor algebra
(:func:`truncated_signature_kernel` with ``discrete=True``).

**The infinite-width-depth limit** (:func:`neural_signature_kernel`). Refining a path's
sampling, the recursion is the explicit scheme of the Goursat problem (Muca Cirone, Lemercier
& Salvi 2023; the authors' code, MucaCirone/NeuralSignatureKernels, has this form with these
scalings)::

    d^2 K / ds dt = (sigma_A^2 V_phi(K_xx(s, s), K(s, t), K_yy(t, t)) + sigma_b^2) <xdot_s, ydot_t>,
    K(s, 0) = K(0, t) = sigma_0^2,

on ``[0, 1]^2`` for paths ``x, y`` (piecewise linear between their samples). With ``phi = id``,
``sigma_A = sigma_0 = 1``, ``sigma_b = 0`` it is the signature kernel PDE of Salvi et al.
(2021), ``k_st = k <xdot, ydot>``, whose solution is ``sum_n <S^n(x), S^n(y)>`` (``S^n``: the
level-``n`` signature); for straight lines ``x = a t``, ``y = b t`` it is
``sum_n <a, b>^n / (n!)^2 = I_0(2 sqrt(<a, b>))``. With ``phi = id`` and any sigmas,
``K + c`` with ``c = sigma_b^2 / sigma_A^2`` solves the linear PDE with ``sigma_A^2``, so
``K = (sigma_0^2 + c) sig_{sigma_A}(x, y) - c`` (level ``n`` weighted by ``sigma_A^{2n}``).

**Finite differences** (``dyadic_order = l`` splits every sampled increment into ``2^l`` equal
pieces: a grid of step ``h ~ 2^-l``; each cell ``[s_i, s_{i+1}] x [t_j, t_{j+1}]`` has a
constant ``<dx_i, dy_j>``). Every scheme adds to ``K_10 + K_01 - K_00`` an approximation of the
cell's integral ``int int F <xdot, ydot>``, ``F = sigma_A^2 V_phi + sigma_b^2``:

* ``'explicit'``: ``F_00 <dx_i, dy_j>`` (the network's own recursion), local error ``O(h^3)``,
  **order 1** globally (``h^-2`` cells);
* ``'trapezoid'``: ``(F_00 + F_10 + F_01 + F_11) <dx_i, dy_j> / 4`` with ``F_10, F_11`` at an
  explicit predictor of the new row (Heun), local error ``O(h^4)``, **order 2**; any ``phi``;
* ``'salvi'``: Salvi et al.'s (2021) update for the linear PDE ``k_st = k D``:
  ``k_11 = (k_10 + k_01)(1 + D/2 + D^2/12) - k_00 (1 - D^2/12)``, ``D = sigma_A^2 <dx_i, dy_j>``
  (applied to ``K + c``); local error ``O(h^4)`` (``-D (f_2 + g_2) / 6`` at order ``h^4`` for
  corner data ``f, g``, the same as the trapezoid's), **order 2**; ``phi = id`` only.

Rows are solved one after another; within a row every update is a cumulative sum (explicit,
trapezoid) or a first-order linear recurrence solved in closed form (salvi), so a ``M x M``
grid costs ``M`` vectorised NumPy steps. The self-kernels ``K_xx``, whose diagonal enters
``V_phi``, are solved first on the lower triangle (their diagonal cell needs ``K_xx(s+1,
s+1)``: the trapezoid scheme takes it from the predictor).

**Gaussian expectations.** ``V_phi`` in closed form for ``'identity'`` (``b``), ``'relu'``
(arc-cosine: ``sqrt(ac) (sqrt(1 - r^2) + (pi - arccos r) r) / (2 pi)``, ``r = b / sqrt(ac)``)
and ``'erf'`` (``(2/pi) arcsin(2b / sqrt((1 + 2a)(1 + 2c)))``); for ``'tanh'`` or any callable
by the product trapezoidal rule on ``u = sqrt(a) z_1``, ``v = (b / sqrt(a)) z_1 +
sqrt(c - b^2 / a) z_2``, ``z`` standard normal (:func:`gaussian_kernel_map` says why not
Gauss-Hermite).

**Monte Carlo** (:func:`init_controlled_resnet`, :func:`apply_controlled_resnet`,
:func:`empirical_kernels`): samplers of the finite network (weights shared across steps) from a
JAX key (jit, ``lax.scan`` over the blocks, ``lax.map`` over networks) or a NumPy Generator (the
cheap route on a CPU); one network's kernel ``<Z^x_M, Z^y_M> / N`` fluctuates around the limit
by ``O(N^-1/2)``.

Muca Cirone, N., Lemercier, M. & Salvi, C. (2023). Neural signature kernels as
infinite-width-depth-limits of controlled ResNets. ICML 2023, PMLR 202:25358-25425,
arXiv:2303.17671. Salvi, C., Cass, T., Foster, J., Lyons, T. & Yang, W. (2021). The signature
kernel is the solution of a Goursat PDE. SIAM J. Math. Data Sci. 3(3), arXiv:2006.14794.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special


__all__ = [
    "ACTIVATIONS",
    "SCHEMES",
    "SCHEME_ORDER",
    "KernelActivation",
    "kernel_activation",
    "gaussian_kernel_map",
    "refine",
    "neural_signature_kernel",
    "signature_kernel",
    "controlled_resnet_kernel",
    "truncated_signature",
    "truncated_signature_kernel",
    "linear_path_signature_kernel",
    "init_controlled_resnet",
    "apply_controlled_resnet",
    "empirical_kernels",
]

ACTIVATIONS = ("identity", "relu", "erf", "tanh")
SCHEMES = ("explicit", "trapezoid", "salvi")
SCHEME_ORDER = {"explicit": 1, "trapezoid": 2, "salvi": 2}

# quadrature evaluations per chunk: bounds the (chunk, points, points) temporaries to ~32 MB
_QUADRATURE_CHUNK = 1 << 22


# ---------------------------------------------------------------------------------------------
# activations and their Gaussian kernel maps V_phi(a, b, c)


@dataclasses.dataclass(frozen=True)
class KernelActivation:
    """An activation: ``phi`` (NumPy), ``jax_phi`` (traceable), ``kernel_map`` ``V_phi(a, b,
    c)`` (NumPy, broadcasting) and ``linear`` (``V_phi = b``: no self-kernels needed)."""

    name: str
    phi: Callable
    jax_phi: Callable
    kernel_map: Callable
    linear: bool = False


def _trapezoid_nodes(points: int, cutoff: float):
    z = np.linspace(-cutoff, cutoff, points)
    w = (z[1] - z[0]) * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return z, w


def gaussian_kernel_map(phi: Callable, points: int = 51, cutoff: float = 7.5) -> Callable:
    """``V(a, b, c) = E[phi(u) phi(v)]``, ``(u, v) ~ N(0, [[a, b], [b, c]])``, by the product
    trapezoidal rule with ``points`` equally spaced nodes per dimension on ``[-cutoff, cutoff]``
    (step ``h = 2 cutoff / (points - 1)``) in ``u = sqrt(a) z_1``,
    ``v = (b / sqrt(a)) z_1 + sqrt(max(c - b^2 / a, 0)) z_2``; ``a = 0`` gives ``u = 0``.
    Arguments broadcast; NumPy float64.

    For ``phi`` analytic in a strip ``|Im u| < delta`` the rule converges geometrically, like
    ``exp(-2 pi delta / (h s))`` with ``s`` the largest standard deviation (tanh: ``delta =
    pi / 2``); the default (``h = 0.3``) reaches about 1e-8 at variance 4 and 2e-5 at variance
    9 with correlation 0.99 (erf, against its closed form); the cutoff leaves a tail of about
    1e-12 relative for ``phi`` growing like ``|u|``. Gauss-Hermite nodes
    (:mod:`limits.criticality`) converge far more slowly here (1e-3 at variance 4 with 32 x 32
    nodes): a saturating ``phi(s z)`` with large ``s`` is nearly a step, which Hermite nodes,
    spread to ``+-sqrt(4 n)``, resolve poorly. Non-smooth ``phi`` (ReLU) converge like ``h^2``:
    use the closed forms of :func:`kernel_activation`.
    """
    if not callable(phi):
        raise TypeError(f"phi: expected a callable, got {type(phi).__name__}")
    points = _positive_int("points", points, 3)
    cutoff = _sigma("cutoff", cutoff, positive=True)
    z, w = _trapezoid_nodes(points, cutoff)
    ww = w[:, None] * w[None, :]

    def kernel_map(a, b, c):
        a, b, c = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (a, b, c)))
        shape = a.shape
        a, b, c = a.ravel(), b.ravel(), c.ravel()
        out = np.empty(a.shape)
        step = max(1, _QUADRATURE_CHUNK // (points * points))
        for lo in range(0, a.size, step):
            sl = slice(lo, lo + step)
            sa = np.sqrt(np.maximum(a[sl], 0.0))
            safe = np.where(sa > 0, sa, 1.0)
            rho = np.where(sa > 0, b[sl] / safe, 0.0)
            tau = np.sqrt(np.maximum(c[sl] - rho * rho, 0.0))
            fu = np.asarray(phi(sa[:, None] * z[None, :]), dtype=np.float64)       # (n, P)
            v = rho[:, None, None] * z[None, :, None] + tau[:, None, None] * z[None, None, :]
            fv = np.asarray(phi(v), dtype=np.float64)                              # (n, P, P)
            out[sl] = np.einsum("ni,nij,ij->n", fu, fv, ww)
        return out.reshape(shape)

    return kernel_map


def _identity(u):
    return u


def _identity_map(a, b, c):
    return np.asarray(b, dtype=np.float64) + 0.0 * (np.asarray(a) + np.asarray(c))


def _relu_map(a, b, c):
    a, b, c = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (a, b, c)))
    norm = np.sqrt(np.maximum(a * c, 0.0))
    r = np.clip(np.where(norm > 0, b / np.where(norm > 0, norm, 1.0), 0.0), -1.0, 1.0)
    return norm * (np.sqrt(1.0 - r * r) + (np.pi - np.arccos(r)) * r) / (2 * np.pi)


def _erf_map(a, b, c):
    a, b, c = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (a, b, c)))
    arg = 2 * b / np.sqrt((1 + 2 * np.maximum(a, 0.0)) * (1 + 2 * np.maximum(c, 0.0)))
    return 2 / np.pi * np.arcsin(np.clip(arg, -1.0, 1.0))


def kernel_activation(activation="identity", points: int = 51) -> KernelActivation:
    """``'identity'``, ``'relu'``, ``'erf'`` (closed-form ``V_phi``), ``'tanh'`` (quadrature),
    a :class:`KernelActivation`, or a callable ``phi`` (quadrature with ``points`` nodes per
    dimension, :func:`gaussian_kernel_map`; it must accept NumPy arrays, and JAX arrays for
    :func:`apply_controlled_resnet`)."""
    if isinstance(activation, KernelActivation):
        return activation
    if isinstance(activation, str):
        if activation == "identity":
            return KernelActivation("identity", _identity, _identity, _identity_map, True)
        if activation == "relu":
            return KernelActivation("relu", lambda u: np.maximum(u, 0.0), jax.nn.relu, _relu_map)
        if activation == "erf":
            return KernelActivation("erf", special.erf, jax.scipy.special.erf, _erf_map)
        if activation == "tanh":
            return KernelActivation("tanh", np.tanh, jnp.tanh, gaussian_kernel_map(np.tanh, points))
        raise ValueError(f"activation must be one of {ACTIVATIONS}, a KernelActivation or a "
                         f"callable, got {activation!r}")
    if callable(activation):
        name = getattr(activation, "__name__", "callable")
        return KernelActivation(name, activation, activation,
                                gaussian_kernel_map(activation, points))
    raise TypeError(f"activation must be a name in {ACTIVATIONS}, a KernelActivation or a "
                    f"callable, got {type(activation).__name__}")


# ---------------------------------------------------------------------------------------------
# validation


def _positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return int(value)


def _sigma(name, value, positive=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name}: expected a finite number {'> 0' if positive else '>= 0'}, "
                         f"got {value!r}")
    return value


def _paths(x, name) -> tuple[np.ndarray, bool]:
    """``(B, L, d)`` float64 and whether a single ``(L, d)`` path was given."""
    if isinstance(x, (jax.Array,)):
        x = np.asarray(x)
    arr = np.asarray(x, dtype=np.float64) if not isinstance(x, np.ndarray) else x.astype(
        np.float64, copy=False)
    if arr.ndim not in (2, 3):
        raise ValueError(f"{name}: expected a path (L, d) or a batch of paths (B, L, d), got "
                         f"shape {arr.shape}")
    single = arr.ndim == 2
    arr = arr[None] if single else arr
    if arr.shape[0] < 1 or arr.shape[1] < 2 or arr.shape[2] < 1:
        raise ValueError(f"{name}: expected at least one path of L >= 2 points in d >= 1 "
                         f"dimensions, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: paths must be finite")
    return arr, single


def _pair(x, y):
    xs, single_x = _paths(x, "x")
    if y is None:
        ys, single_y = xs, single_x
    else:
        ys, single_y = _paths(y, "y")
    if xs.shape[2] != ys.shape[2]:
        raise ValueError(f"x and y must live in the same R^d: x has shape {xs.shape}, y has "
                         f"shape {ys.shape} (last axis d)")
    return xs, ys, single_x, single_y


def refine(paths, dyadic_order: int = 0) -> np.ndarray:
    """Increments of ``paths`` ``(B, L, d)`` (or ``(L, d)``) on the grid that splits each sampled
    increment into ``2^dyadic_order`` equal pieces: ``(B, (L - 1) 2^l, d)`` (or without ``B``).
    The piecewise-linear path is unchanged; the grid step is ``2^-l`` of the sampling step."""
    arr, single = _paths(paths, "paths")
    dyadic_order = _positive_int("dyadic_order", dyadic_order, 0)
    inc = np.diff(arr, axis=1)
    m = 2 ** dyadic_order
    inc = np.repeat(inc / m, m, axis=1)
    return inc[0] if single else inc


# ---------------------------------------------------------------------------------------------
# the Goursat sweeps (rows one after another, each row vectorised)


def _with_boundary(s0, inc):
    """Row values ``[s0, s0 + cumsum(inc)]`` along the last axis."""
    head = np.full(inc.shape[:-1] + (1,), s0)
    return np.concatenate([head, s0 + np.cumsum(inc, axis=-1)], axis=-1)


def _self_sweep(ip, source, s0, scheme):
    """``K_xx`` ``(B, M+1, M+1)`` of each path with itself; ``ip`` ``(B, M, M)`` holds
    ``<dx_i, dx_j>``; ``source(a, b, c) = sigma_A^2 V_phi(a, b, c) + sigma_b^2``."""
    b_, m = ip.shape[0], ip.shape[1]
    k = np.zeros((b_, m + 1, m + 1))
    k[:, 0, :] = s0
    k[:, :, 0] = s0
    q = np.empty((b_, m + 1))
    q[:, 0] = s0
    for i in range(m):
        r = k[:, i, :i + 1]                                   # K(i, t), t = 0..i
        qi = q[:, i:i + 1]
        f0 = source(qi, r, q[:, :i + 1])                      # F(i, t)
        cells = ip[:, i, :i + 1]                              # cell (i, t)
        dr = np.diff(r, axis=-1)
        new = _with_boundary(s0, dr + f0[:, :-1] * cells[:, :-1])      # K(i+1, t), t = 0..i
        diag = 2 * new[:, i] - r[:, i] + f0[:, i] * cells[:, i]
        if scheme == "trapezoid":
            qhat = diag[:, None]
            fp = source(qhat, new, q[:, :i + 1])              # F(i+1, t) at the predictor
            new = _with_boundary(s0, dr + 0.25 * cells[:, :-1] * (
                f0[:, :-1] + f0[:, 1:] + fp[:, :-1] + fp[:, 1:]))
            side = source(qi[:, 0], new[:, i], qhat[:, 0])    # F(i, i+1) = F(i+1, i)
            corner = source(qhat[:, 0], qhat[:, 0], qhat[:, 0])
            diag = 2 * new[:, i] - r[:, i] + 0.25 * cells[:, i] * (f0[:, i] + 2 * side + corner)
        k[:, i + 1, :i + 1] = new
        k[:, i + 1, i + 1] = diag
        q[:, i + 1] = diag
    upper = np.triu_indices(m + 1, 1)
    k[:, upper[0], upper[1]] = k[:, upper[1], upper[0]]
    return k


def _cross_sweep(ip, qx, qy, source, s0, scheme, sigma_a2, shift, full):
    """``K`` ``(Bx, By)`` (or the grid ``(Bx, By, Mx+1, My+1)``) of every pair; ``ip``
    ``(Bx, By, Mx, My)``; ``qx`` ``(Bx, Mx+1)`` and ``qy`` ``(By, My+1)`` the self-kernels'
    diagonals (``None`` for a linear ``V_phi``)."""
    bx, by, mx, my = ip.shape
    row = np.full((bx, by, my + 1), s0)
    grid = [row] if full else None
    qx_at = (lambda i: None) if qx is None else (lambda i: qx[:, i][:, None, None])
    qy_b = None if qy is None else qy[None, :, :]
    f0 = None if scheme == "salvi" else source(qx_at(0), row, qy_b)
    for i in range(mx):
        cells = ip[:, :, i, :]                                # (bx, by, my)
        dr = np.diff(row, axis=-1)
        if scheme == "salvi":
            # on K + c: k_{j+1} = A_j k_j + (A_j r_{j+1} - B_j r_j), closed form with P_j
            d = sigma_a2 * cells
            amp = 1 + 0.5 * d + d * d / 12
            back = 1 - d * d / 12
            rs = row + shift
            c = amp * rs[..., 1:] - back * rs[..., :-1]
            log_p = np.concatenate([np.zeros((bx, by, 1)), np.cumsum(np.log(amp), axis=-1)],
                                   axis=-1)
            p = np.exp(log_p)
            acc = np.concatenate([np.zeros((bx, by, 1)), np.cumsum(c / p[..., 1:], axis=-1)],
                                 axis=-1)
            row = p * (s0 + shift + acc) - shift
        else:
            new = _with_boundary(s0, dr + f0[..., :-1] * cells)
            if scheme == "trapezoid":
                fp = source(qx_at(i + 1), new, qy_b)
                new = _with_boundary(s0, dr + 0.25 * cells * (
                    f0[..., :-1] + f0[..., 1:] + fp[..., :-1] + fp[..., 1:]))
            row = new
            f0 = source(qx_at(i + 1), row, qy_b)
        if full:
            grid.append(row)
    if full:
        return np.stack(grid, axis=2)
    return row[..., -1]


def _linear_source(sigma_a2, sigma_b2):
    return lambda a, b, c: sigma_a2 * b + sigma_b2


def neural_signature_kernel(x, y=None, activation="identity", *, sigma_0: float = 1.0,
                            sigma_A: float = 1.0, sigma_b: float = 0.0, dyadic_order: int = 0,
                            scheme: str = "trapezoid", points: int = 51, full: bool = False):
    """The neural signature kernel ``K_phi(x, y)``: the Goursat PDE

        K_st = (sigma_A^2 V_phi(K_xx(s, s), K(s, t), K_yy(t, t)) + sigma_b^2) <xdot_s, ydot_t>,
        K(s, 0) = K(0, t) = sigma_0^2,

    solved by finite differences on the piecewise-linear paths ``x`` ``(L_x, d)`` or
    ``(B_x, L_x, d)`` and ``y`` (default: ``x``), each sampled increment split into
    ``2^dyadic_order`` pieces. ``scheme``: ``'explicit'`` (order 1), ``'trapezoid'`` (order 2),
    ``'salvi'`` (order 2; ``activation='identity'`` only); see the module docstring.

    Returns ``K(1, 1)``: ``(B_x, B_y)`` (a scalar for two single paths), or with ``full=True``
    the whole grid ``(B_x, B_y, M_x + 1, M_y + 1)``. float64 NumPy.

    Muca Cirone, Lemercier & Salvi (2023), arXiv:2303.17671.
    """
    xs, ys, single_x, single_y = _pair(x, y)
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    s0 = _sigma("sigma_0", sigma_0) ** 2
    sa2 = _sigma("sigma_A", sigma_A) ** 2
    sb2 = _sigma("sigma_b", sigma_b) ** 2
    act = kernel_activation(activation, points)
    if scheme == "salvi" and not act.linear:
        raise ValueError(f"scheme='salvi' solves the linear PDE (activation='identity'); got "
                         f"activation {act.name!r}: use 'trapezoid' or 'explicit'")
    if scheme == "salvi" and sa2 == 0:
        raise ValueError("scheme='salvi' needs sigma_A > 0 (it solves the PDE for K + "
                         "sigma_b^2 / sigma_A^2); use 'trapezoid' or 'explicit'")
    dx, dy = refine(xs, dyadic_order), refine(ys, dyadic_order)
    ip = np.einsum("aid,bjd->abij", dx, dy)
    if act.linear:
        source = _linear_source(sa2, sb2)
        qx = qy = None
    else:
        vmap_ = act.kernel_map
        source = lambda a, b, c: sa2 * vmap_(a, b, c) + sb2
        kxx = _self_sweep(np.einsum("aid,ajd->aij", dx, dx), source, s0, scheme)
        qx = np.diagonal(kxx, axis1=1, axis2=2)
        if y is None:
            qy = qx
        else:
            kyy = _self_sweep(np.einsum("aid,ajd->aij", dy, dy), source, s0, scheme)
            qy = np.diagonal(kyy, axis1=1, axis2=2)
    shift = sb2 / sa2 if sa2 > 0 else 0.0
    out = _cross_sweep(ip, qx, qy, source, s0, scheme, sa2, shift, full)
    return out[(0 if single_x else slice(None), 0 if single_y else slice(None))]


def signature_kernel(x, y=None, *, dyadic_order: int = 0, scheme: str = "salvi",
                     full: bool = False):
    """The signature kernel ``k(x, y) = sum_n <S^n(x), S^n(y)>`` of piecewise-linear paths as the
    solution of ``k_st = k <xdot_s, ydot_t>``, ``k = 1`` on the boundary (Salvi et al. 2021): the
    neural signature kernel with ``phi = id``, ``sigma_0 = sigma_A = 1``, ``sigma_b = 0``.
    Shapes and schemes as :func:`neural_signature_kernel`.

    Salvi, Cass, Foster, Lyons & Yang (2021), arXiv:2006.14794.
    """
    return neural_signature_kernel(x, y, "identity", dyadic_order=dyadic_order, scheme=scheme,
                                   full=full)


def controlled_resnet_kernel(x, y=None, activation="identity", *, sigma_0: float = 1.0,
                             sigma_A: float = 1.0, sigma_b: float = 0.0, points: int = 51,
                             full: bool = False):
    """The infinite-width kernel ``lim_N <Z^x_M, Z^y_M> / N`` of the depth-``M`` homogeneous
    controlled ResNet driven by the sampled increments of ``x`` ``(M_x + 1, d)`` (or
    ``(B_x, M_x + 1, d)``) and ``y``: the recursion derived in the module docstring,

        K(i+1, j+1) = K(i+1, j) + K(i, j+1) - K(i, j)
                      + (sigma_A^2 V_phi(K_xx(i, i), K(i, j), K_yy(j, j)) + sigma_b^2) <dx_i, dy_j>,

    which is the explicit scheme of the neural signature kernel PDE on the sampling grid
    (``dyadic_order=0``). Shapes as :func:`neural_signature_kernel`.

    Muca Cirone, Lemercier & Salvi (2023), arXiv:2303.17671.
    """
    return neural_signature_kernel(x, y, activation, sigma_0=sigma_0, sigma_A=sigma_A,
                                   sigma_b=sigma_b, dyadic_order=0, scheme="explicit",
                                   points=points, full=full)


# ---------------------------------------------------------------------------------------------
# truncated signatures (levels computed explicitly in the tensor algebra)


def truncated_signature(x, depth: int, *, discrete: bool = False) -> list:
    """Levels ``S^0 .. S^depth`` of the signature of the piecewise-linear path ``x`` ``(L, d)``
    or ``(B, L, d)``: a list of ``(B, d^n)`` arrays (``(d^n,)`` for one path), level ``n``
    flattened in row-major order of ``(d,) * n``. Chen's identity, ``S(x) = exp(dx_0) ⊗ ...
    ⊗ exp(dx_{L-2})`` with ``exp(v)^n = v^{⊗n} / n!``; ``discrete=True`` multiplies
    ``(1 + dx_i)`` instead: the ordered sums ``D^n(x) = sum_{i_1 < .. < i_n} dx_{i_1} ⊗ .. ⊗
    dx_{i_n}`` of the discrete controlled ResNet with ``phi = id``.

    Lyons, Caruana & Levy (2007), Differential Equations Driven by Rough Paths, ch. 2.
    """
    arr, single = _paths(x, "x")
    depth = _positive_int("depth", depth, 0)
    b_, _, d = arr.shape
    size = arr.shape[0] * sum(d ** n for n in range(depth + 1))
    if size > 2 ** 26:
        raise ValueError(f"depth: {depth} levels in d = {d} dimensions for {arr.shape[0]} paths "
                         f"hold {size:.3g} numbers ({8 * size / 2 ** 30:.2g} GiB); lower depth")
    inc = np.diff(arr, axis=1)
    levels = [np.ones((b_, 1))] + [np.zeros((b_, d ** n)) for n in range(1, depth + 1)]
    for v in np.moveaxis(inc, 1, 0):                          # (B, d), one segment
        powers = [np.ones((b_, 1))]
        for n in range(1, depth + 1):
            powers.append(np.einsum("bi,bj->bij", powers[-1], v).reshape(b_, -1))
        if discrete:
            seg = [powers[0], powers[1]] + [np.zeros_like(p) for p in powers[2:]]
        else:
            seg = [p / math.factorial(n) for n, p in enumerate(powers)]
        new = []
        for n in range(depth + 1):
            total = np.zeros((b_, d ** n))
            for k in range(n + 1):
                if discrete and n - k > 1:
                    continue
                total += np.einsum("bi,bj->bij", levels[k], seg[n - k]).reshape(b_, -1)
            new.append(total)
        levels = new
    return [lv[0] for lv in levels] if single else levels


def truncated_signature_kernel(x, y=None, depth: int = 12, *, sigma_0: float = 1.0,
                               sigma_A: float = 1.0, sigma_b: float = 0.0,
                               discrete: bool = False):
    """``(sigma_0^2 + c) sum_{n <= depth} sigma_A^{2n} <S^n(x), S^n(y)> - c``,
    ``c = sigma_b^2 / sigma_A^2``: the identity-activation neural signature kernel (with
    ``discrete=True``: the depth-``M`` controlled ResNet kernel) from truncated signatures.
    ``(B_x, B_y)`` or a scalar for single paths.

    Muca Cirone, Lemercier & Salvi (2023), arXiv:2303.17671; Salvi et al. (2021).
    """
    xs, ys, single_x, single_y = _pair(x, y)
    s0 = _sigma("sigma_0", sigma_0) ** 2
    sa2 = _sigma("sigma_A", sigma_A, positive=True) ** 2
    shift = _sigma("sigma_b", sigma_b) ** 2 / sa2
    sx = truncated_signature(xs, depth, discrete=discrete)
    sy = sx if y is None else truncated_signature(ys, depth, discrete=discrete)
    total = sum(sa2 ** n * (a @ b.T) for n, (a, b) in enumerate(zip(sx, sy)))
    out = (s0 + shift) * total - shift
    if single_x:
        out = out[0]
    if single_y:
        out = out[..., 0]
    return out


def linear_path_signature_kernel(a, b):
    """Signature kernel of straight lines ``x(t) = a t``, ``y(t) = b t`` on ``[0, 1]``:
    ``sum_n <a, b>^n / (n!)^2 = I_0(2 sqrt(<a, b>))`` (``J_0(2 sqrt(-<a, b>))`` when
    ``<a, b> < 0``), since ``S^n(x) = a^{⊗n} / n!``.

    Salvi et al. (2021), arXiv:2006.14794.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape[-1:] != b.shape[-1:] or a.ndim < 1:
        raise ValueError(f"a and b: expected directions (..., d) of the same d, got shapes "
                         f"{a.shape} and {b.shape}")
    p = np.sum(a * b, axis=-1)
    root = np.sqrt(np.abs(p))
    return np.where(p >= 0, special.i0(2 * root), special.j0(2 * root))


# ---------------------------------------------------------------------------------------------
# finite controlled ResNets (JAX)


def _is_numpy(rng) -> bool:
    return isinstance(rng, np.random.Generator)


def _check_rng(rng):
    if _is_numpy(rng):
        return rng
    if isinstance(rng, jax.Array) and (jnp.issubdtype(rng.dtype, jax.dtypes.prng_key)
                                       or (rng.dtype == jnp.uint32 and rng.shape == (2,))):
        return rng
    raise TypeError(f"rng must be a JAX PRNG key or a numpy.random.Generator, got "
                    f"{type(rng).__name__}")


def init_controlled_resnet(rng, d: int, width: int, *, sigma_0: float = 1.0,
                           sigma_A: float = 1.0, sigma_b: float = 0.0, dtype=None) -> dict:
    """One homogeneous controlled ResNet: ``{'A': (d, N, N), 'b': (d, N), 'z0': (N,), 'v':
    (N,)}`` with ``A ~ N(0, sigma_A^2 / N)``, ``b ~ N(0, sigma_b^2)``, ``z0 ~ N(0, sigma_0^2)``,
    ``v ~ N(0, 1)`` (the same ``A``, ``b`` in every block). ``rng``: a JAX PRNG key (JAX arrays,
    traceable) or a ``numpy.random.Generator`` (NumPy float64 arrays, nothing to compile); the
    law is the same.

    Muca Cirone, Lemercier & Salvi (2023), arXiv:2303.17671.
    """
    rng = _check_rng(rng)
    d = _positive_int("d", d)
    width = _positive_int("width", width)
    s0, sa, sb = (_sigma(n, v) for n, v in (("sigma_0", sigma_0), ("sigma_A", sigma_A),
                                             ("sigma_b", sigma_b)))
    shapes = {"A": (d, width, width), "b": (d, width), "z0": (width,), "v": (width,)}
    scales = {"A": sa / math.sqrt(width), "b": sb, "z0": s0, "v": 1.0}
    if _is_numpy(rng):
        return {name: scales[name] * rng.standard_normal(shape) for name, shape in shapes.items()}
    dtype = jnp.zeros(()).dtype if dtype is None else dtype
    keys = dict(zip(shapes, jax.random.split(rng, 4)))
    return {name: scales[name] * jax.random.normal(keys[name], shape, dtype)
            for name, shape in shapes.items()}


def _forward(params, increments, phi):
    """Hidden states ``Z_M`` ``(B, N)``: ``Z_{i+1} = Z_i + sum_k (A_k phi(Z_i) + b_k) dx^k_i``
    (a scan for JAX arrays, a loop for NumPy ones)."""
    a, b, z0 = params["A"], params["b"], params["z0"]
    if isinstance(a, np.ndarray):
        d, n = b.shape
        z = np.broadcast_to(z0, (increments.shape[0], n))
        stacked = a.reshape(d * n, n).T                       # one GEMM per step
        for i in range(increments.shape[1]):
            field = (phi(z) @ stacked).reshape(-1, d, n) + b
            z = z + np.einsum("bkn,bk->bn", field, increments[:, i])
        return z
    z = jnp.broadcast_to(z0, (increments.shape[0], z0.shape[0]))

    def step(z, dx):                                          # z (B, N), dx (B, d)
        field = jnp.einsum("knm,bm->bkn", a, phi(z)) + b      # (B, d, N)
        return z + jnp.einsum("bkn,bk->bn", field, dx), None

    z, _ = jax.lax.scan(step, z, jnp.swapaxes(increments, 0, 1))
    return z


def apply_controlled_resnet(params: dict, x, activation="identity", *, readout: bool = True):
    """Outputs ``f(x) = <v, Z^x_M> / sqrt(N)`` ``(B,)`` of paths ``x`` ``(B, M + 1, d)`` (or
    ``(M + 1, d)``: a scalar), or with ``readout=False`` the hidden states ``Z^x_M``
    ``(B, N)``. JAX parameters: traceable (``jit``, ``vmap``, ``grad``); NumPy parameters
    (from a ``numpy.random.Generator``): NumPy float64."""
    act = kernel_activation(activation)
    numpy = isinstance(params["A"], np.ndarray)
    xp = np if numpy else jnp
    x = np.asarray(x, dtype=np.float64) if numpy else jnp.asarray(x)
    single = x.ndim == 2
    xb = x[None] if single else x
    if xb.ndim != 3 or xb.shape[-1] != params["A"].shape[0] or xb.shape[1] < 2:
        raise ValueError(f"x: expected paths (B, L >= 2, d={params['A'].shape[0]}), got shape "
                         f"{x.shape}")
    z = _forward(params, xp.diff(xb, axis=1), act.phi if numpy else act.jax_phi)
    out = z @ params["v"] / math.sqrt(z.shape[-1]) if readout else z
    return out[0] if single else out


@functools.partial(jax.jit, static_argnames=("width", "n_networks", "phi", "sigmas"))
def _empirical_kernels(key, increments, width, n_networks, phi, sigmas):
    d = increments.shape[-1]

    def one(k):
        params = init_controlled_resnet(k, d, width, sigma_0=sigmas[0], sigma_A=sigmas[1],
                                        sigma_b=sigmas[2], dtype=increments.dtype)
        z = _forward(params, increments, phi)
        return z @ z.T / width

    return jax.lax.map(one, jax.random.split(key, n_networks))


def empirical_kernels(rng, x, width: int, n_networks: int, activation="identity", *,
                      sigma_0: float = 1.0, sigma_A: float = 1.0, sigma_b: float = 0.0):
    """Per-network kernels ``<Z^x_M, Z^y_M> / N`` (the readout integrated out) of
    ``n_networks`` independent homogeneous controlled ResNets of width ``N`` on the paths
    ``x`` ``(B, M + 1, d)``: ``(n_networks, B, B)``. ``rng``: a JAX PRNG key (one jitted
    program, networks drawn one after another by ``lax.map``, so memory holds one ``(d, N, N)``
    weight tensor; a JAX array) or a ``numpy.random.Generator`` (eager NumPy float64, nothing
    to compile: the cheap route on a CPU). Their mean converges to
    :func:`controlled_resnet_kernel` as ``N -> inf``; one network deviates by ``O(N^-1/2)``.

    Muca Cirone, Lemercier & Salvi (2023), arXiv:2303.17671.
    """
    rng = _check_rng(rng)
    width = _positive_int("width", width)
    n_networks = _positive_int("n_networks", n_networks)
    sigmas = tuple(_sigma(n, v) for n, v in (("sigma_0", sigma_0), ("sigma_A", sigma_A),
                                              ("sigma_b", sigma_b)))
    act = kernel_activation(activation)
    shape = np.shape(x)
    if len(shape) != 3 or shape[1] < 2:
        raise ValueError(f"x: expected paths (B, L >= 2, d), got shape {shape}")
    if _is_numpy(rng):
        inc = np.diff(np.asarray(x, dtype=np.float64), axis=1)
        out = np.empty((n_networks, shape[0], shape[0]))
        for n in range(n_networks):
            params = init_controlled_resnet(rng, shape[2], width, sigma_0=sigmas[0],
                                            sigma_A=sigmas[1], sigma_b=sigmas[2])
            z = _forward(params, inc, act.phi)
            out[n] = z @ z.T / width
        return out
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.zeros(()).dtype)
    return _empirical_kernels(rng, jnp.diff(x, axis=1), width, n_networks, act.jax_phi, sigmas)
