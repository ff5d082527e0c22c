"""A Flax linen module as a pure function of its parameters: ``(apply_fn, params)``.

An NTK differentiates ``f(params, x)`` with respect to the trainable parameters only. Flax
keeps other state (BatchNorm running statistics) in separate variable collections; here
that state is fixed at initialisation and closed over, so

    apply_fn(params, x) = module.apply({'params': params, **state}, x, train=train)

is a pure function of ``(params, x)`` that ``jax.jit``, ``jax.vmap`` and ``jax.jacrev`` go
through. With ``train=False`` BatchNorm normalises by the running averages (inference mode:
each example's output depends on that example alone, so ``vmap_axes=0`` is exact); with
``train=True`` it normalises by the statistics of the batch it is given (examples are coupled;
the updated running averages are discarded).
"""
from __future__ import annotations

import inspect
from functools import partial
from typing import Any, Callable, Mapping, Tuple

import jax
import jax.numpy as jnp
import flax.linen as nn

__all__ = ["init", "FlaxApply"]


def _takes_train(module: nn.Module) -> bool:
    try:
        return "train" in inspect.signature(module.__call__).parameters
    except (TypeError, ValueError):
        return False


def _float_dtype(tree):
    """The promoted dtype of ``tree``'s floating leaves (``None`` when it has none)."""
    dtypes = [jnp.result_type(leaf) for leaf in jax.tree_util.tree_leaves(tree)
              if jnp.issubdtype(jnp.result_type(leaf), jnp.floating)]
    return jnp.result_type(*dtypes) if dtypes else None


class FlaxApply:
    """``apply_fn(params, x)`` of a Flax module with its non-parameter state closed over.

    Floating state (running statistics) is cast to the parameters' dtype on each call, so
    parameters cast to float64 give a float64 computation throughout.

    Attributes:
      module: the ``flax.linen.Module``.
      state: the variable collections other than ``'params'`` (may be empty).
      train: whether BatchNorm uses batch statistics (``True``) or running averages.
    """

    def __init__(self, module: nn.Module, state: Mapping[str, Any], train: bool,
                 takes_train: bool):
        self.module = module
        self.state = dict(state)
        self.train = bool(train)
        self._kwargs = {"train": self.train} if takes_train else {}

    def __call__(self, params, x):
        dtype = _float_dtype(params)
        state = self.state
        if dtype is not None:
            state = jax.tree_util.tree_map(
                lambda s: s.astype(dtype) if jnp.issubdtype(s.dtype, jnp.floating) else s,
                state)
        variables = {"params": params, **state}
        if self.train and state:
            out, _ = self.module.apply(variables, x, mutable=list(state), **self._kwargs)
            return out
        return self.module.apply(variables, x, **self._kwargs)

    def __repr__(self):
        return (f"FlaxApply({type(self.module).__name__}, train={self.train}, "
                f"state={sorted(self.state)})")


@partial(jax.jit, static_argnums=(0, 3))
def _init_variables(module, key, x, takes_train):
    return module.init(key, x, **({"train": False} if takes_train else {}))


@partial(jax.jit, static_argnums=(0,))
def _calibration_step(module, params, state, x):
    _, updates = module.apply({"params": params, **state}, x, train=True, mutable=list(state))
    return {**state, **updates}


def init(module: nn.Module, key: jax.Array, example_input, *, train: bool = False,
         calibration_steps: int = 8, calibration_batch: int = 16
         ) -> Tuple[Callable, Any]:
    """Initialise ``module`` and return ``(apply_fn, params)``.

    ``params`` is the ``'params'`` collection alone (what an NTK differentiates). Any other
    collections are closed over by ``apply_fn``. BatchNorm running statistics are given
    non-trivial values by ``calibration_steps`` train-mode forward passes on standard-normal
    inputs shaped like ``(calibration_batch,) + example_input.shape[1:]`` (integer inputs:
    on ``example_input`` itself), so that inference mode is not the identity; with the
    reference architectures' momentum 0.9, eight passes move the averages 57% of the way to
    the statistics of such data.

    Args:
      module: a ``flax.linen.Module``; when its ``__call__`` takes ``train``, it is passed.
      key: PRNG key for the parameters and the calibration data. The same key gives the same
        parameters and an ``apply_fn`` that computes the same function.
      example_input: an array ``(N, ...)`` fixing the input shape (and dtype).
      train: BatchNorm mode of ``apply_fn`` (see the module docstring).
      calibration_steps: train-mode passes that set the running statistics (0: keep the
        initial ones).
      calibration_batch: batch size of the calibration passes.

    Returns:
      ``(apply_fn, params)`` with ``apply_fn(params, x)`` a :class:`FlaxApply`.

    Examples:
      >>> import jax, jax.numpy as jnp, architectures
      >>> apply_fn, params = architectures.init(architectures.resnet18(width=4),
      ...                                       jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)))
      >>> apply_fn(params, jnp.ones((2, 8, 8, 3))).shape
      (2, 10)
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a flax.linen.Module, got {type(module).__name__}")
    if not isinstance(train, bool):
        raise TypeError(f"train must be a bool, got {train!r}")
    for name, value in (("calibration_steps", calibration_steps),
                        ("calibration_batch", calibration_batch)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    if calibration_batch < 1:
        raise ValueError(f"calibration_batch must be at least 1, got {calibration_batch}")
    try:
        x = jnp.asarray(example_input)
    except TypeError as e:
        raise TypeError(f"example_input must be an array, got {type(example_input).__name__}"
                        ) from e
    if x.ndim < 1:
        raise ValueError(f"example_input must have a leading batch axis, got shape {x.shape}")

    takes_train = _takes_train(module)
    init_key, data_key = jax.random.split(key)
    # module-level jits keyed on the (hashable) module: a second init of an equal module
    # reuses the compiled programs
    variables = dict(_init_variables(module, init_key, x, takes_train))
    params = variables.pop("params", {})
    state = variables

    if state and takes_train and calibration_steps:
        for k in jax.random.split(data_key, calibration_steps):
            if jnp.issubdtype(x.dtype, jnp.floating):
                xb = jax.random.normal(k, (calibration_batch,) + x.shape[1:], x.dtype)
            else:
                xb = x
            state = _calibration_step(module, params, state, xb)
    return FlaxApply(module, state, train, takes_train), params
