"""The ``Kernel`` container that flows between infinite-width layers, and its layouts.

A layer of width ``n -> infinity`` with i.i.d. Gaussian weights has outputs whose channels are
i.i.d. Gaussian processes (Neal 1996; Lee et al. 2018; Matthews et al. 2018). Everything a
following layer needs is then the per-channel covariance of the pre-activations,

    nngp[i, j, s, s'] = E[z_c(x1_i, s) z_c(x2_j, s')]          (NNGP, Lee et al. 2018)

and the neural tangent kernel of the sub-network so far (Jacot et al. 2018),

    ntk[i, j, s, s'] = sum_theta E[d z_c(x1_i, s)/d theta  d z_c(x2_j, s')/d theta],

plus the same-input covariances ``cov1`` (x1 with itself) and ``cov2`` (x2 with itself), which
hold the variances ``q11``, ``q22`` that nonlinearities need.

Layouts (channels-last inputs ``(N, *spatial, C)``; ``S`` spatial axes ``X, Y, ...``):

* ``diagonal_spatial=False`` ("full"): ``nngp``/``ntk`` have shape
  ``(N1, N2, X, X, Y, Y, ...)`` -- every pair of positions, axes interleaved as in
  neural-tangents; ``cov1`` has shape ``(N1, X, X, Y, Y, ...)``.
* ``diagonal_spatial=True``: only equal positions are kept: ``(N1, N2, X, Y, ...)`` and
  ``cov1`` ``(N1, X, Y, ...)``. Enough for a CNN read out by ``Flatten`` (the CNN-GP without
  pooling, Novak et al. 2019), at a cost linear rather than quadratic in the pixels.

For inputs without spatial axes both layouts coincide: ``nngp (N1, N2)``, ``cov1 (N1,)``.
``cov1``/``cov2`` always keep only the batch diagonal (each input with itself).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax
import jax.numpy as jnp

__all__ = ["Kernel"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Kernel:
    """Infinite-width NNGP and NTK of a network (or of the inputs, before any layer).

    Attributes:
      nngp: ``(N1, N2, ...)`` covariance of pre-activations between x1 and x2 (per channel).
      ntk: same shape, the neural tangent kernel; ``None`` when it was not requested.
      cov1: ``(N1, ...)`` covariance of each x1 input with itself (variances ``q11``).
      cov2: ``(N2, ...)`` the same for x2; ``None`` when ``x2`` is ``x1`` (``x2=None``).
      shape1, shape2: shapes of the finite-width activations ``(N, *spatial, C)`` at this
        point of the network (``C`` is the finite ``out_dim``; the kernel itself is the
        ``C -> infinity`` limit, except in the 'standard' parameterization where the NTK
        scales with the widths, as in neural-tangents).
      is_gaussian: whether the channels are (conditionally) i.i.d. mean-zero Gaussian, i.e. a
        random affine layer came last; nonlinearities and ``LayerNorm`` require it.
      diagonal_spatial: layout flag (see the module docstring).
      pattern1, pattern2: the graphs of the x1 and x2 inputs, ``kernel_fn(..., pattern=(pattern1,
        pattern2))``, carried along (like neural-tangents' masks) to the ``Aggregate`` layers
        that read them; ``None`` outside a network that has one. Their leading axis is the
        batch axis. ``pattern2`` is ``None`` when ``x2`` is ``x1``.
      batch_axis, channel_axis: where the batch and channel axes of the finite-width
        activations are at this point of the network (neural-tangents' layout attributes,
        set by the layers' ``batch_axis`` / ``channel_axis`` / ``dimension_numbers``). The
        arrays and ``shape1`` / ``shape2`` above are always batch-first and channels-last,
        their spatial axes in the order the activations have them, which is
        neural-tangents' kernel layout; these two only say how the activations are laid out.
      mask1, mask2: boolean masks of the x1 / x2 activations (``kernel_fn(...,
        mask_constant=c)``: input entries equal to ``c`` are masked), batch-first and
        channels-last like ``shape1`` / ``shape2``, with a channel axis of size 1 once a
        ``Dense`` / ``Conv`` layer has collapsed it; ``None`` without masking
        (:mod:`ntk.stax.masking`). ``mask2`` is ``None`` when ``x2`` is ``x1``.
    """

    nngp: jax.Array
    ntk: Optional[jax.Array]
    cov1: jax.Array
    cov2: Optional[jax.Array]
    shape1: tuple = dataclasses.field(metadata=dict(static=True), default=())
    shape2: tuple = dataclasses.field(metadata=dict(static=True), default=())
    is_gaussian: bool = dataclasses.field(metadata=dict(static=True), default=False)
    is_input: bool = dataclasses.field(metadata=dict(static=True), default=False)
    diagonal_spatial: bool = dataclasses.field(metadata=dict(static=True), default=False)
    pattern1: Any = None
    pattern2: Any = None
    mask1: Any = None
    mask2: Any = None
    batch_axis: int = dataclasses.field(metadata=dict(static=True), default=0)
    channel_axis: int = dataclasses.field(metadata=dict(static=True), default=-1)

    def replace(self, **changes: Any) -> "Kernel":
        return dataclasses.replace(self, **changes)

    @property
    def n_spatial(self) -> int:
        """Number of spatial axes of the activations (0 for vectors)."""
        return len(self.shape1) - 2

    @property
    def full_spatial(self) -> bool:
        return self.n_spatial > 0 and not self.diagonal_spatial

    @property
    def x1_is_x2(self) -> bool:
        return self.cov2 is None


# ----------------------------------------------------------------------------------------
# layout helpers


def variances(cov: jax.Array, n_spatial: int, full: bool) -> jax.Array:
    """Per-position variances ``(N, *spatial)`` from a same-input covariance ``cov``.

    ``cov`` is ``(N, X, X', Y, Y', ...)`` when ``full`` (take ``X = X'`` etc.) and already
    ``(N, X, Y, ...)`` otherwise.
    """
    if not full:
        return cov
    out = cov
    for i in range(n_spatial):
        # axes of ``out``: (N, [done spatial axes], X_i, X_i', rest...)
        out = jnp.diagonal(out, axis1=1 + i, axis2=2 + i)  # appends the diagonal at the end
        out = jnp.moveaxis(out, -1, 1 + i)
    return out


def cross_variances(v1: jax.Array, v2: jax.Array, n_spatial: int, full: bool):
    """``q11``, ``q22`` broadcastable against an ``(N1, N2, ...)`` kernel.

    ``v1 (N1, *spatial)``, ``v2 (N2, *spatial)`` are per-position variances.
    """
    n1, n2 = v1.shape[0], v2.shape[0]
    if not full or n_spatial == 0:
        q1 = v1.reshape((n1, 1) + v1.shape[1:])
        q2 = v2.reshape((1, n2) + v2.shape[1:])
        return q1, q2
    s1, s2 = (n1, 1), (1, n2)
    for d in v1.shape[1:]:
        s1 += (d, 1)
        s2 += (1, d)
    return v1.reshape(s1), v2.reshape(s2)


def self_variances(v: jax.Array, n_spatial: int, full: bool):
    """``q11``, ``q22`` broadcastable against a same-input covariance ``cov (N, ...)``."""
    if not full or n_spatial == 0:
        return v, v
    n = v.shape[0]
    s1, s2 = (n,), (n,)
    for d in v.shape[1:]:
        s1 += (d, 1)
        s2 += (1, d)
    return v.reshape(s1), v.reshape(s2)


def spatial_diagonal(mat: Optional[jax.Array], batch_ndim: int, n_spatial: int):
    """Keep equal positions only: ``(B.., X, X, Y, Y)`` -> ``(B.., X, Y)``."""
    if mat is None or n_spatial == 0:
        return mat
    out = mat
    for i in range(n_spatial):
        out = jnp.diagonal(out, axis1=batch_ndim + i, axis2=batch_ndim + i + 1)
        out = jnp.moveaxis(out, -1, batch_ndim + i)
    return out


def to_diagonal(k: Kernel) -> Kernel:
    """Convert a full-spatial kernel to the diagonal-spatial layout (no-op otherwise)."""
    if not k.full_spatial:
        return k.replace(diagonal_spatial=True) if k.n_spatial else k
    s = k.n_spatial
    return k.replace(
        nngp=spatial_diagonal(k.nngp, 2, s),
        ntk=spatial_diagonal(k.ntk, 2, s),
        cov1=spatial_diagonal(k.cov1, 1, s),
        cov2=spatial_diagonal(k.cov2, 1, s),
        diagonal_spatial=True,
    )


def input_kernel(x1: jax.Array, x2: Optional[jax.Array], full: bool,
                 compute_ntk: bool) -> Kernel:
    """Kernel of the raw inputs: ``nngp = <x1, x2> / C`` per pair of positions, ``ntk = 0``.

    Shapes: ``x1 (N1, *spatial, C)``, ``x2 (N2, *spatial, C)`` or ``None`` (x2 = x1).
    The normalisation by the channel count ``C`` makes the first ``Dense``/``Conv`` layer
    (weights ``W_std / sqrt(C)``) produce ``W_std^2 nngp + b_std^2`` -- the neural-tangents
    convention.
    """
    n_spatial = x1.ndim - 2
    c = x1.shape[-1]
    letters = "abdefghijk"[:n_spatial]
    primed = "ABDEFGHIJK"[:n_spatial]

    def cross(a, b):
        if n_spatial == 0:
            return a @ b.T / c
        if full:
            out = "nm" + "".join(p + q for p, q in zip(letters, primed))
            return jnp.einsum(f"n{letters}z,m{primed}z->{out}", a, b) / c
        return jnp.einsum(f"n{letters}z,m{letters}z->nm{letters}", a, b) / c

    def self_cov(a):
        if n_spatial == 0:
            return jnp.sum(a * a, axis=-1) / c
        if full:
            out = "n" + "".join(p + q for p, q in zip(letters, primed))
            return jnp.einsum(f"n{letters}z,n{primed}z->{out}", a, a) / c
        return jnp.sum(a * a, axis=-1) / c

    nngp = cross(x1, x1 if x2 is None else x2)
    ntk = jnp.zeros_like(nngp) if compute_ntk else None
    return Kernel(
        nngp=nngp,
        ntk=ntk,
        cov1=self_cov(x1),
        cov2=None if x2 is None else self_cov(x2),
        shape1=tuple(x1.shape),
        shape2=tuple((x1 if x2 is None else x2).shape),
        is_gaussian=False,
        is_input=True,
        diagonal_spatial=(not full) and n_spatial > 0,
    )
