"""Reference architectures (Flax linen) shared by benchmarks, studies and tests.

Each builder returns a ``flax.linen.Module`` whose ``__call__(x, train=False)`` maps a batch
to outputs; :func:`init` turns one into ``(apply_fn, params)`` for ``ntk.empirical_ntk_fn``
and friends. :func:`myrtle_stax` gives the Myrtle CNN as an ``ntk.stax`` triple with its
infinite-width kernels.

=====================================  =====================  ===============  ===========
builder (defaults)                     input                  output            parameters
=====================================  =====================  ===============  ===========
``resnet18()`` (width 64)              ``(N, 32, 32, 3)``     ``(N, 10)``       11,173,962
``wide_resnet()`` (WRN-16-4)           ``(N, 32, 32, 3)``     ``(N, 10)``        2,748,890
``wide_resnet(28, 10)``                ``(N, 32, 32, 3)``     ``(N, 10)``       36,479,194
``myrtle(5)`` (width 128)              ``(N, 32, 32, 3)``     ``(N, 10)``          447,626
``myrtle(7)``                          ``(N, 32, 32, 3)``     ``(N, 10)``          742,794
``myrtle(10)``                         ``(N, 32, 32, 3)``     ``(N, 10)``        1,185,546
``vit_tiny()`` (dim 192, depth 12)     ``(N, 32, 32, 3)``     ``(N, 10)``        5,362,762
``gpt()`` (dim 128, depth 4)           int ``(N, T<=64)``     ``(N, T, 256)``      834,304
=====================================  =====================  ===============  ===========

All modules compute in the dtype of their inputs and parameters (cast the parameters to
float64 with ``jax.tree_util.tree_map(lambda p: p.astype(jnp.float64), params)`` under
``jax_enable_x64`` for a float64 network).

Examples:
  >>> import jax, jax.numpy as jnp, architectures, ntk
  >>> x = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 8, 3))
  >>> apply_fn, params = architectures.init(architectures.myrtle(5, width=8),
  ...                                       jax.random.PRNGKey(0), x)
  >>> ntk.empirical_ntk_fn(apply_fn, vmap_axes=0)(x, None, params).shape
  (4, 4)
"""
from architectures.functional import FlaxApply, init
from architectures.myrtle import MYRTLE_STAGES, Myrtle, myrtle, myrtle_stax
from architectures.resnet import ResNet, WideResNet, resnet18, wide_resnet
from architectures.transformer import GPT, ViT, gpt, vit_tiny

REGISTRY = {
    "resnet18": resnet18,
    "wide_resnet": wide_resnet,
    "myrtle": myrtle,
    "vit_tiny": vit_tiny,
    "gpt": gpt,
}
"""Builder name -> builder (each returns a ``flax.linen.Module``)."""


def names() -> tuple:
    """Names of the reference architectures' builders (keys of :data:`REGISTRY`)."""
    return tuple(REGISTRY)


__all__ = ["init", "FlaxApply", "REGISTRY", "names",
           "resnet18", "wide_resnet", "myrtle", "myrtle_stax", "vit_tiny", "gpt",
           "ResNet", "WideResNet", "Myrtle", "ViT", "GPT", "MYRTLE_STAGES"]
