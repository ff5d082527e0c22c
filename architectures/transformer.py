"""Pre-LN transformers: a Vision Transformer and a GPT-style decoder.

Both stack the same block (Vaswani et al. 2017 with the pre-LN placement of Xiong et al.
2020)::

    h <- h + MHSA(LN(h))            (multi-head self-attention, causal for the decoder)
    h <- h + W2 gelu(W1 LN(h))      (exact GELU)

and end with a LayerNorm. Attention and LayerNorm compute in the dtype of their inputs and
parameters, so parameters cast to float64 give a float64 network.
"""
from __future__ import annotations

from typing import Any, Optional

import jax.numpy as jnp
import flax.linen as nn

from architectures._checks import images, positive_int

__all__ = ["Block", "ViT", "GPT", "vit_tiny", "gpt"]


class Block(nn.Module):
    """One pre-LN transformer block on ``(N, T, dim)``; ``mask`` ``(N, 1, T, T)`` or None."""
    heads: int
    mlp_dim: int
    dtype: Optional[Any] = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, h, mask=None):
        dim = h.shape[-1]
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        a = nn.LayerNorm(**kw)(h)
        h = h + nn.MultiHeadDotProductAttention(num_heads=self.heads, qkv_features=dim,
                                                deterministic=True, **kw)(a, a, mask=mask)
        a = nn.LayerNorm(**kw)(h)
        a = nn.Dense(self.mlp_dim, **kw)(a)
        a = nn.Dense(dim, **kw)(nn.gelu(a, approximate=False))
        return h + a


def _check_heads(dim, heads):
    positive_int("dim", dim)
    positive_int("heads", heads)
    if dim % heads:
        raise ValueError(f"dim must be divisible by heads, got dim={dim}, heads={heads}")


class ViT(nn.Module):
    """Vision Transformer (see :func:`vit_tiny`)."""
    num_classes: int = 10
    image_size: int = 32
    patch_size: int = 4
    dim: int = 192
    depth: int = 12
    heads: int = 3
    mlp_dim: int = 768
    dtype: Optional[Any] = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = images("ViT", x)
        if x.shape[1:3] != (self.image_size, self.image_size):
            raise ValueError(f"ViT: expected ({self.image_size}, {self.image_size}) images, "
                             f"got inputs of shape {x.shape}")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        p = self.patch_size
        h = nn.Conv(self.dim, (p, p), strides=(p, p), padding="VALID", name="patch_embed",
                    **kw)(x)
        n = h.shape[0]
        h = h.reshape(n, -1, self.dim)
        cls = self.param("cls_token", nn.initializers.zeros, (1, 1, self.dim),
                         self.param_dtype)
        h = jnp.concatenate([jnp.broadcast_to(cls.astype(h.dtype), (n, 1, self.dim)), h],
                            axis=1)
        pos = self.param("pos_embed", nn.initializers.normal(0.02), (1,) + h.shape[1:],
                         self.param_dtype)
        h = h + pos
        for _ in range(self.depth):
            h = Block(self.heads, self.mlp_dim, **kw)(h)
        h = nn.LayerNorm(**kw)(h)
        return nn.Dense(self.num_classes, name="head", **kw)(h[:, 0])


def vit_tiny(num_classes: int = 10, image_size: int = 32, patch_size: int = 4, dim: int = 192,
             depth: int = 12, heads: int = 3, mlp_dim: int = 768) -> ViT:
    """ViT-Tiny (DeiT-Ti sizes) for small images.

    ``patches: conv(p x p, stride p, dim) -> prepend a learned class token -> + learned
    position embeddings -> depth x pre-LN block (heads-head self-attention, GELU MLP of
    mlp_dim) -> LayerNorm -> Dense(num_classes) on the class token``. Inputs
    ``(N, image_size, image_size, C)``, outputs ``(N, num_classes)``;
    ``(image_size / patch_size)^2 + 1`` tokens.

    References:
      Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words: Transformers for Image
      Recognition at Scale", arXiv:2010.11929; Touvron et al. 2021, "Training data-efficient
      image transformers & distillation through attention", arXiv:2012.12877.
    """
    for name, value in (("num_classes", num_classes), ("image_size", image_size),
                        ("patch_size", patch_size), ("depth", depth), ("mlp_dim", mlp_dim)):
        positive_int(name, value)
    _check_heads(dim, heads)
    if image_size % patch_size:
        raise ValueError(f"image_size must be a multiple of patch_size, got image_size="
                         f"{image_size}, patch_size={patch_size}")
    return ViT(num_classes, image_size, patch_size, dim, depth, heads, mlp_dim)


class GPT(nn.Module):
    """GPT-style decoder (see :func:`gpt`)."""
    vocab_size: int = 256
    context: int = 64
    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_dim: Optional[int] = None
    dtype: Optional[Any] = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, tokens, train: bool = False, features: bool = False):
        tokens = jnp.asarray(tokens)
        if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise ValueError(f"GPT: tokens must be integers of shape (N, T), got dtype "
                             f"{tokens.dtype} and shape {tokens.shape}")
        if tokens.shape[1] > self.context:
            raise ValueError(f"GPT: sequence length {tokens.shape[1]} exceeds the context "
                             f"{self.context} (tokens shape {tokens.shape})")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        embed = nn.Embed(self.vocab_size, self.dim, embedding_init=nn.initializers.normal(0.02),
                         name="token_embed", **kw)
        pos = self.param("pos_embed", nn.initializers.normal(0.02), (self.context, self.dim),
                         self.param_dtype)
        h = embed(tokens) + pos[: tokens.shape[1]]
        mask = nn.make_causal_mask(tokens)
        for _ in range(self.depth):
            h = Block(self.heads, self.mlp_dim or 4 * self.dim, **kw)(h, mask)
        h = nn.LayerNorm(**kw)(h)
        return h if features else embed.attend(h)


def gpt(vocab_size: int = 256, context: int = 64, dim: int = 128, depth: int = 4,
        heads: int = 4) -> GPT:
    """GPT-style decoder-only transformer with a tied output head.

    ``h = E[tokens] + P[:T] -> depth x pre-LN block (causal heads-head self-attention, GELU MLP
    of 4 dim) -> LayerNorm -> logits = h E^T`` (the token embedding ``E`` is the output layer,
    ``nn.Embed.attend``). Inputs int tokens ``(N, T)`` with ``T <= context``, outputs logits
    ``(N, T, vocab_size)``; position ``t``'s logits depend on tokens ``0..t`` only. Called with
    ``features=True`` it returns the final LayerNorm's output ``h`` ``(N, T, dim)`` instead (the
    representation a new classification head reads).

    References:
      Radford, Narasimhan, Salimans & Sutskever 2018, "Improving Language Understanding by
      Generative Pre-Training"; Press & Wolf 2017, "Using the Output Embedding to Improve
      Language Models", arXiv:1608.05859.
    """
    for name, value in (("vocab_size", vocab_size), ("context", context), ("depth", depth)):
        positive_int(name, value)
    _check_heads(dim, heads)
    return GPT(vocab_size, context, dim, depth, heads)
