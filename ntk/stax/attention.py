"""Global self-attention and its infinite-width kernel (Hron, Bahri, Sohl-Dickstein & Novak
2020), with neural-tangents 0.6.5's arguments and semantics.

The finite layer (NTK parameterization, positions ``p`` of the flattened spatial axes,
``n`` input channels, heads ``h``, ``d_k`` key and ``d_v`` value channels per head):

    K_h = x W^K_h,   Q_h = x W^Q_h (``W^Q_h = W^K_h`` when ``linear_scaling``),   V_h = x W^V_h
    G_h = phi(W_query_std W_key_std / (n d_k^a) Q_h K_h^T)      a = 1 (linear), 1/2 (sqrt)
    y   = W_out_std W_value_std / sqrt(n d_v H) concat_h(G_h V_h) W^O + b_std b

with all weights ``N(0, 1)`` and ``phi`` the attention mechanism (softmax over the attended
positions, identity, abs, relu). As ``d_k, d_v, H -> infinity``:

* ``linear_scaling=True`` (keys and queries tied, scaled by ``1 / d_k``): the attention
  weights of one input converge to the constant ``G(x) = phi(QK_std C_x)``, ``C_x (P, P)`` the
  input's own covariance over positions, so the layer acts as a fixed linear map per input:

      nngp'(x1, x2) = OV_std^2 G(x1) nngp(x1, x2) G(x2)^T + b_std^2
      ntk'(x1, x2)  = OV_std^2 G(x1) (ntk + 2 nngp)(x1, x2) G(x2)^T + b_std^2

  (``QK_std = W_query_std W_key_std``, ``OV_std = W_out_std W_value_std``; the factor 2 is the
  value and output weights; the keys' contribution vanishes in the limit).
* ``linear_scaling=False`` with ``attention_mechanism='IDENTITY'`` (independent keys and
  queries, scaled by ``1 / sqrt(d_k)``): the attention logits are Gaussian, and with
  ``<A, B> = sum_{p, p'} A(p, p') B(p, p')``

      nngp' = (QK_std OV_std)^2 <nngp, nngp> nngp + b_std^2
      ntk'  = (QK_std OV_std)^2 (2 <nngp, ntk> nngp + <nngp, nngp> (ntk + 4 nngp)) + b_std^2

  Other mechanisms under ``linear_scaling=False`` have no closed form (neural-tangents
  raises as well).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ntk.stax.core import check_positive_int, check_std, laid_out, layer, require_single
from ntk.stax.kernel import Kernel

__all__ = ["GlobalSelfAttention"]

_MECHANISMS = ("SOFTMAX", "IDENTITY", "ABS", "RELU")


def _mechanism_fn(mechanism: str) -> Callable:
    return {
        "SOFTMAX": lambda g: jax.nn.softmax(g, axis=-1),
        "IDENTITY": lambda g: g,
        "ABS": jnp.abs,
        "RELU": lambda g: jnp.maximum(g, 0.0),
    }[mechanism]


def to_position_matrix(mat, batch_ndim: int, n_spatial: int):
    """Full layout ``(B.., X, X', Y, Y', ...)`` -> ``(B.., P, P')`` (``P = X Y ...``); a
    kernel without spatial axes ``(B..)`` -> ``(B.., 1, 1)``."""
    if n_spatial == 0:
        return mat.reshape(mat.shape + (1, 1))
    perm = (tuple(range(batch_ndim))
            + tuple(batch_ndim + 2 * i for i in range(n_spatial))
            + tuple(batch_ndim + 2 * i + 1 for i in range(n_spatial)))
    m = jnp.transpose(mat, perm)
    batch = m.shape[:batch_ndim]
    p = int(np.prod(m.shape[batch_ndim:batch_ndim + n_spatial]))
    return m.reshape(batch + (p, p))


def from_position_matrix(mat, batch_ndim: int, spatial: tuple):
    """Inverse of :func:`to_position_matrix` for spatial shape ``spatial``."""
    batch = mat.shape[:batch_ndim]
    s = len(spatial)
    if s == 0:
        return mat.reshape(batch)
    m = mat.reshape(batch + tuple(spatial) + tuple(spatial))
    perm = list(range(batch_ndim))
    for i in range(s):
        perm += [batch_ndim + i, batch_ndim + s + i]
    return jnp.transpose(m, perm)


def GlobalSelfAttention(n_chan_out: int, n_chan_key: int, n_chan_val: int, n_heads: int,
                        linear_scaling: bool = True, W_key_std: float = 1.0,
                        W_value_std: float = 1.0, W_query_std: float = 1.0,
                        W_out_std: float = 1.0, b_std: Optional[float] = None,
                        attention_mechanism: str = "SOFTMAX", pos_emb_type: str = "NONE",
                        pos_emb_p_norm: float = 2, pos_emb_decay_fn: Optional[Callable] = None,
                        n_chan_pos_emb: Optional[int] = None, W_pos_emb_std: float = 1.0,
                        val_pos_emb: bool = False, batch_axis: int = 0,
                        channel_axis: int = -1):
    """Global scaled dot-product self-attention over all spatial positions (a sequence is one
    spatial axis), as ``neural_tangents.stax.GlobalSelfAttention``.

    Finite layer and kernel: see the module docstring (:mod:`ntk.stax.attention`). Parameters
    are neural-tangents' tuple ``(W^Q or None, W^K (H, n, d_k), W^V (H, n, d_v),
    W^O (d_v H, n_chan_out), b or None, None)``; ``W^Q`` is ``None`` under ``linear_scaling``
    (tied to ``W^K``, so ``W_key_std`` and ``W_query_std`` act through their product only).

    Kernel, ``linear_scaling=True`` (any mechanism):
    ``nngp' = OV_std^2 G1 nngp G2^T + b_std^2``, ``ntk' = OV_std^2 G1 (ntk + 2 nngp) G2^T +
    b_std^2`` with ``G = phi(W_query_std W_key_std C)`` of each input's covariance ``C`` over
    positions (softmax over the attended positions). ``linear_scaling=False``: closed form for
    ``attention_mechanism='IDENTITY'`` only; other mechanisms raise ``NotImplementedError``
    from ``kernel_fn`` (their ``apply_fn`` works).

    Not supported (raise ``NotImplementedError``): positional embeddings (``pos_emb_type``
    other than ``'NONE'`` and any non-default ``pos_emb_p_norm``, ``pos_emb_decay_fn``,
    ``n_chan_pos_emb``, ``W_pos_emb_std``, ``val_pos_emb``). Masked inputs
    (``mask_constant``, :mod:`ntk.stax.masking`): masked positions get no attention as keys
    (``-1e20`` before the softmax, zero for the other mechanisms), in ``apply_fn`` and in the
    ``linear_scaling=True`` kernels, as in neural-tangents. ``batch_axis`` / ``channel_axis``:
    where the inputs keep them (the output keeps both where they are; the positions are the
    other axes in their order).

    Shapes: ``(N, *spatial, C) -> (N, *spatial, n_chan_out)``; the kernel needs (and returns)
    covariances between all pairs of positions, memory ``N1 N2 P^2``.

    Hron, Bahri, Sohl-Dickstein & Novak (2020), "Infinite attention: NNGP and NTK for deep
    attention networks", ICML, arXiv:2006.10540.
    """
    n_chan_out = check_positive_int("n_chan_out", n_chan_out)
    n_chan_key = check_positive_int("n_chan_key", n_chan_key)
    n_chan_val = check_positive_int("n_chan_val", n_chan_val)
    n_heads = check_positive_int("n_heads", n_heads)
    stds = {n: check_std(n, v) for n, v in (("W_key_std", W_key_std),
                                             ("W_value_std", W_value_std),
                                             ("W_query_std", W_query_std),
                                             ("W_out_std", W_out_std))}
    b_std = check_std("b_std", b_std, allow_none=True)
    mechanism = getattr(attention_mechanism, "name", attention_mechanism)
    if not isinstance(mechanism, str) or mechanism.upper() not in _MECHANISMS:
        raise ValueError(f"GlobalSelfAttention: attention_mechanism must be one of "
                         f"{_MECHANISMS}, got {attention_mechanism!r}")
    mechanism = mechanism.upper()
    pos_type = getattr(pos_emb_type, "name", pos_emb_type)
    if not isinstance(pos_type, str) or pos_type.upper() not in ("NONE", "SUM", "CONCAT"):
        raise ValueError(f"GlobalSelfAttention: pos_emb_type must be 'NONE', 'SUM' or "
                         f"'CONCAT', got {pos_emb_type!r}")
    pos_args = {"pos_emb_type": (pos_type.upper(), "NONE"),
                "pos_emb_p_norm": (pos_emb_p_norm, 2), "pos_emb_decay_fn": (pos_emb_decay_fn, None),
                "n_chan_pos_emb": (n_chan_pos_emb, None), "W_pos_emb_std": (W_pos_emb_std, 1.0),
                "val_pos_emb": (val_pos_emb, False)}
    given = [f"{k}={v!r}" for k, (v, default) in pos_args.items() if v != default]
    if given:
        raise NotImplementedError(
            f"GlobalSelfAttention: positional embeddings are not implemented in ntk.stax "
            f"(got {', '.join(given)}); add them to the inputs before the layer (e.g. "
            f"FanOut + parallel + FanInSum/FanInConcat) or use neural-tangents")
    linear_scaling = bool(linear_scaling)
    qk_std = stds["W_query_std"] * stds["W_key_std"]
    ov_std = stds["W_out_std"] * stds["W_value_std"]
    b_var = None if b_std is None else b_std ** 2
    phi = _mechanism_fn(mechanism)
    name = (f"GlobalSelfAttention({n_chan_out}, {n_chan_key}, {n_chan_val}, {n_heads}, "
            f"linear_scaling={linear_scaling}, {mechanism})")

    def init_fn(key, input_shape):
        n_in = input_shape[-1]
        k_q, k_k, k_v, k_o, k_b = jax.random.split(key, 5)
        W_key = jax.random.normal(k_k, (n_heads, n_in, n_chan_key))
        W_val = jax.random.normal(k_v, (n_heads, n_in, n_chan_val))
        W_out = jax.random.normal(k_o, (n_chan_val * n_heads, n_chan_out))
        W_query = None if linear_scaling else jax.random.normal(
            k_q, (n_heads, n_in, n_chan_key))
        b = None if b_std is None else jax.random.normal(
            k_b, (1,) * (len(input_shape) - 1) + (n_chan_out,))
        out_shape = tuple(input_shape[:-1]) + (n_chan_out,)
        return out_shape, (W_query, W_key, W_val, W_out, b, None)

    def masked_logits(g, key_mask):
        """Masked keys get no attention: ``-1e20`` before a softmax (neural-tangents' finite
        stand-in for ``-inf``: a row of masked keys stays finite), zero otherwise."""
        if key_mask is None:
            return g
        return jnp.where(key_mask, jnp.asarray(-1e20 if mechanism == "SOFTMAX" else 0.0,
                                               g.dtype), g)

    def apply_fn(params, x, mask=None, **kwargs):
        W_query, W_key, W_val, W_out, b, _ = params
        n, n_in = x.shape[0], x.shape[-1]
        if W_key.shape[1] != n_in:
            raise ValueError(f"{name}: input has {n_in} channels (shape {x.shape}) but the "
                             f"key weights expect {W_key.shape[1]}")
        flat = x.reshape((n, -1, n_in))                       # (N, P, n)
        keys = jnp.einsum("npc,hck->hnpk", flat, W_key)       # (H, N, P, d_k)
        values = jnp.einsum("npc,hcv->hnpv", flat, W_val)     # (H, N, P, d_v)
        queries = keys if linear_scaling else jnp.einsum("npc,hck->hnpk", flat, W_query)
        scale = qk_std / (n_in * (n_chan_key if linear_scaling else math.sqrt(n_chan_key)))
        logits = scale * jnp.einsum("hnpk,hnqk->hnpq", queries, keys)
        if mask is not None:  # a position is masked when all its channels are
            keys_masked = jnp.broadcast_to(jnp.all(mask, axis=-1), x.shape[:-1])
            logits = masked_logits(logits, keys_masked.reshape((1, n, 1, -1)))
        heads = jnp.einsum("hnpq,hnqv->npvh", phi(logits), values)  # (N, P, d_v, H)
        heads = heads.reshape(heads.shape[:2] + (n_chan_val * n_heads,))
        out = (ov_std / math.sqrt(n_chan_val * n_heads * n_in)) * (heads @ W_out)
        out = out.reshape(x.shape[:-1] + (n_chan_out,))
        return out if b is None else out + b_std * b

    def weights(cov, s, key_weights=None):
        """``G (N, P, P')`` of each input from its own covariance over positions; masked
        keys (``key_weights (N, P')`` zero) get no attention."""
        c = qk_std * to_position_matrix(cov, 1, s)
        if key_weights is not None:
            c = masked_logits(c, (key_weights == 0).reshape(
                (key_weights.shape[0], 1, -1)))
        return phi(c)

    def weigh(mat, g1, g2, batch_ndim, s, spatial):
        m = to_position_matrix(mat, batch_ndim, s)
        if batch_ndim == 2:
            m = jnp.einsum("ipq,ijqr,jsr->ijps", g1, m, g2)
        else:
            m = jnp.einsum("ipq,iqr,isr->ips", g1, m, g1)
        return from_position_matrix(m, batch_ndim, spatial)

    def transform_linear(k: Kernel, s, spatial) -> dict:
        from ntk.stax.masking import position_weights
        w = position_weights(k, name)
        g1 = weights(k.cov1, s, None if w is None else w[0])
        g2 = g1 if k.cov2 is None else weights(k.cov2, s, None if w is None else w[1])
        var = ov_std ** 2

        def affine(mat):
            return mat * var if b_var is None else mat * var + b_var

        out = dict(nngp=affine(weigh(k.nngp, g1, g2, 2, s, spatial)),
                   cov1=affine(weigh(k.cov1, g1, None, 1, s, spatial)),
                   cov2=None if k.cov2 is None else affine(weigh(k.cov2, g2, None, 1, s,
                                                                spatial)))
        out["ntk"] = None if k.ntk is None else affine(
            weigh(k.ntk + 2 * k.nngp, g1, g2, 2, s, spatial))
        return out

    def transform_sqrt_identity(k: Kernel) -> dict:
        var = (qk_std * ov_std) ** 2

        def affine(mat):
            return mat * var if b_var is None else mat * var + b_var

        def inner(a, b, batch_ndim):
            axes = tuple(range(batch_ndim, a.ndim))
            return jnp.sum(a * b, axis=axes, keepdims=True)

        dot12 = inner(k.nngp, k.nngp, 2)
        out = dict(nngp=affine(dot12 * k.nngp),
                   cov1=affine(inner(k.cov1, k.cov1, 1) * k.cov1),
                   cov2=None if k.cov2 is None else affine(inner(k.cov2, k.cov2, 1) * k.cov2))
        out["ntk"] = None if k.ntk is None else affine(
            2 * inner(k.nngp, k.ntk, 2) * k.nngp + dot12 * (k.ntk + 4 * k.nngp))
        return out

    def transform(k: Kernel) -> Kernel:
        k = require_single(k, name)
        s = k.n_spatial
        if s and not k.full_spatial:
            raise ValueError(f"{name}: needs the full-spatial kernel layout (internal error: "
                             f"the layout planner gave a diagonal one)")
        if linear_scaling:
            out = transform_linear(k, s, tuple(k.shape1[1:-1]))
        elif mechanism == "IDENTITY":
            out = transform_sqrt_identity(k)
        else:
            raise NotImplementedError(
                f"{name}: no closed-form kernel for linear_scaling=False with "
                f"attention_mechanism={mechanism!r} (only 'IDENTITY'; as in neural-tangents); "
                f"use linear_scaling=True")
        return k.replace(**out, shape1=k.shape1[:-1] + (n_chan_out,),
                         shape2=k.shape2[:-1] + (n_chan_out,), is_gaussian=True,
                         is_input=False)

    return laid_out(name, layer(name, init_fn, apply_fn, transform,
                                input_full=lambda out_full: True), batch_axis, channel_axis)
