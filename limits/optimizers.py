"""optax optimizers from per-leaf learning-rate scales (the ``c`` exponents made concrete).

SGD:  theta_l <- theta_l - eta s_l g_l
Adam: theta_l <- theta_l - eta s_l m_hat_l / (sqrt(v_hat_l) + eps)   (+ decoupled weight decay
      ``eta s_l lambda theta_l`` for AdamW, as microsoft/mup's MuAdamW scales it)

``s_l`` is ``network.lr_scales`` (:mod:`limits.networks`), e.g. TP V Table 8's ``fan_in`` /
``1`` / ``1/fan_in`` relative to the base width.
"""
from __future__ import annotations

import jax
import optax

from limits.networks import Network
from limits.parametrization import _check_optimizer

__all__ = ["scale_by_tree", "optimizer"]


def scale_by_tree(scales) -> optax.GradientTransformation:
    """Multiply every update leaf by the matching scalar in ``scales`` (a pytree with the
    structure of the parameters)."""

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params
        try:
            scaled = jax.tree.map(lambda u, s: u * s, updates, scales)
        except ValueError as e:
            raise ValueError("scales must have the structure of the parameters: "
                             f"{e}") from None
        return scaled, state

    return optax.GradientTransformation(init_fn, update_fn)


def optimizer(lr_scales, learning_rate: float, kind: str | None = None, *, b1: float = 0.9,
              b2: float = 0.999, eps: float = 1e-8,
              weight_decay: float = 0.0) -> optax.GradientTransformation:
    """An optax optimizer applying learning rate ``learning_rate * s_l`` to leaf ``l``.

    Args:
      lr_scales: a :class:`limits.Network` (its ``lr_scales`` and its parametrization's
        optimizer are used) or a pytree of floats.
      learning_rate: the global ``eta`` (> 0).
      kind: ``'sgd'`` or ``'adam'``; default: the network's parametrization's optimizer.
      b1, b2, eps: Adam's constants.  weight_decay: decoupled (AdamW) decay, scaled like the
        learning rate.
    """
    if isinstance(lr_scales, Network):
        kind = kind or lr_scales.parametrization.optimizer
        lr_scales = lr_scales.lr_scales
    if kind is None:
        raise ValueError("kind must be 'sgd' or 'adam' when lr_scales is not a Network")
    kind = _check_optimizer(kind)
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)):
        raise TypeError(f"learning_rate must be a number, got {type(learning_rate).__name__}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    chain = []
    if kind == "adam":
        chain.append(optax.scale_by_adam(b1=b1, b2=b2, eps=eps))
        if weight_decay:
            chain.append(optax.add_decayed_weights(weight_decay))
    elif weight_decay:
        chain.append(optax.add_decayed_weights(weight_decay))
    chain += [scale_by_tree(lr_scales), optax.scale(-float(learning_rate))]
    return optax.chain(*chain)
