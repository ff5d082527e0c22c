"""scikit-learn interop: network kernels as Gaussian-process kernels, and kernel regression
with them as estimators.

- :class:`StaxKernel` wraps an ``ntk.stax`` ``kernel_fn`` as a
  ``sklearn.gaussian_process.kernels.Kernel``: ``k(X, Y)`` is the network's NNGP ``K`` or
  NTK ``Theta`` on rows of ``X`` and ``Y``. It composes with scikit-learn's kernels
  (``ConstantKernel() * StaxKernel(kernel_fn) + WhiteKernel()``) and goes into
  ``GaussianProcessRegressor``; its own hyperparameters are fixed (the weight and bias scales
  live in the network), so ``eval_gradient=True`` returns an empty ``(N, N, 0)`` gradient.
- :class:`NTKRegressor` and :class:`NTKClassifier` are estimators (``fit`` / ``predict``,
  ``get_params`` / ``set_params``) for kernel regression with a network's NNGP, NTK or
  empirical NTK (``get='nngp' | 'ntk' | 'entk'``): at ``t=None`` the mean of
  :func:`ntk.predict.gp_inference`, at finite ``t`` the linearized network after gradient
  flow for time ``t`` (:func:`ntk.predict.gradient_descent_mse`). The classifier regresses
  one-hot targets and predicts the arg-max class. Both work in ``Pipeline`` and
  ``GridSearchCV`` (``diag_reg``, ``t``, ``get``, ``network`` are constructor parameters).

Inputs are the rows of a 2-D ``X (N, D)``; ``input_shape`` (e.g. ``(8, 8, 1)``) reshapes
each row for convolutional networks. Kernels are computed in JAX's default float type: turn
on ``jax_enable_x64`` for float64 kernels (scikit-learn works in float64).

    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from ntk import stax
    >>> from ntk.sklearn import NTKClassifier
    >>> net = stax.serial(stax.Dense(512, W_std=1.5, b_std=0.05), stax.Relu(), stax.Dense(1))
    >>> model = make_pipeline(StandardScaler(), NTKClassifier(net, get='ntk', diag_reg=1e-3))
    >>> model.fit(X_train, y_train).score(X_test, y_test)        # doctest: +SKIP

References:
  Lee, Bahri, Novak, Schoenholz, Pennington & Sohl-Dickstein, 2018, "Deep Neural Networks as
  Gaussian Processes", arXiv:1711.00165. Jacot, Gabriel & Hongler, 2018, "Neural Tangent
  Kernel: Convergence and Generalization in Neural Networks", arXiv:1806.07572. Lee, Xiao,
  Schoenholz, Bahri, Novak, Sohl-Dickstein & Pennington, 2019, "Wide Neural Networks of Any
  Depth Evolve as Linear Models Under Gradient Descent", arXiv:1902.06720.
"""
from __future__ import annotations

import functools
import math
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.gaussian_process.kernels import Kernel
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from ntk import predict, stax
from ntk.empirical import empirical_ntk_fn

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    def _validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)

__all__ = ["StaxKernel", "NTKRegressor", "NTKClassifier", "default_network"]

_GETS = ("nngp", "ntk", "entk")
_DIAG_BLOCK = 256


@functools.lru_cache(maxsize=1)
def default_network():
    """The network used when none is given: ``Dense(512) - Relu - Dense(1)`` with
    ``W_std=1.5``, ``b_std=0.05`` (NTK parameterization). One triple per process, so its
    compiled kernels are shared by every estimator and clone that uses it."""
    return stax.serial(stax.Dense(512, W_std=1.5, b_std=0.05), stax.Relu(),
                       stax.Dense(1, W_std=1.5, b_std=0.05))


@functools.lru_cache(maxsize=32)
def _empirical_ntk(apply_fn):
    # One compiled empirical kernel per apply_fn (GridSearchCV fits many clones of one net).
    return empirical_ntk_fn(apply_fn, trace_axes=(-1,), vmap_axes=0)


def _shape_rows(X, input_shape, name: str):
    X = jnp.asarray(X)
    if input_shape is None:
        return X
    shape = tuple(int(s) for s in input_shape)
    if math.prod(shape) != X.shape[1]:
        raise ValueError(f"{name}: input_shape={shape} has {math.prod(shape)} entries, but X "
                         f"has {X.shape[1]} features per row")
    return X.reshape((X.shape[0],) + shape)


def _check_get(get, allowed, name: str):
    if get not in allowed:
        raise ValueError(f"{name}: get must be one of {allowed}, got {get!r}")


def _as_kernel_fn(kernel_fn, name: str):
    if isinstance(kernel_fn, (tuple, list)) and len(kernel_fn) == 3:
        kernel_fn = kernel_fn[2]  # a whole stax triple
    if not callable(kernel_fn):
        raise TypeError(f"{name}: kernel_fn must be an ntk.stax kernel_fn (or a stax "
                        f"(init_fn, apply_fn, kernel_fn) triple), got "
                        f"{type(kernel_fn).__name__}")
    return kernel_fn


class StaxKernel(Kernel):
    """An ``ntk.stax`` network's infinite-width kernel as a scikit-learn GP kernel.

    ``k(x, y) = K(x, y)`` (``get='nngp'``: the covariance of the network's outputs at
    initialization, Lee et al. 2018) or ``Theta(x, y)`` (``get='ntk'``: the neural tangent
    kernel, Jacot et al. 2018) of the network whose ``kernel_fn`` is given, on rows
    ``x, y`` of ``X (N1, D)``, ``Y (N2, D)`` (reshaped to ``(N, *input_shape)`` when given).

    The kernel has no free hyperparameters (``theta`` is empty; ``eval_gradient=True`` gives an
    ``(N, N, 0)`` gradient), so ``GaussianProcessRegressor`` does not optimize it; scale it
    with ``ConstantKernel`` and add ``WhiteKernel`` noise for learnable amplitudes. It is not
    stationary (it depends on the norms of the inputs, not only on ``x - y``).

    Args:
      kernel_fn: an ``ntk.stax`` ``kernel_fn`` (or the whole ``(init_fn, apply_fn,
        kernel_fn)`` triple).
      get: ``'nngp'`` or ``'ntk'``.
      input_shape: shape of one input, e.g. ``(8, 8, 1)`` for a convolutional network;
        ``None``: rows are inputs.

    References:
      Lee, Bahri, Novak, Schoenholz, Pennington & Sohl-Dickstein, 2018, "Deep Neural Networks
      as Gaussian Processes", arXiv:1711.00165. Jacot, Gabriel & Hongler, 2018, "Neural
      Tangent Kernel", arXiv:1806.07572.

    Examples:
      >>> from sklearn.gaussian_process import GaussianProcessRegressor
      >>> from ntk import stax
      >>> net = stax.serial(stax.Dense(1, b_std=0.1), stax.Relu(), stax.Dense(1))
      >>> gp = GaussianProcessRegressor(StaxKernel(net[2], get='ntk'), alpha=1e-3)
      >>> gp.fit(X_train, y_train).predict(X_test)                # doctest: +SKIP
    """

    def __init__(self, kernel_fn, get: str = "nngp", input_shape: Optional[Sequence[int]] = None):
        self.kernel_fn = kernel_fn
        self.get = get
        self.input_shape = input_shape

    def _kernel(self, X, Y):
        kernel_fn = _as_kernel_fn(self.kernel_fn, "StaxKernel")
        _check_get(self.get, ("nngp", "ntk"), "StaxKernel")
        X = _shape_rows(np.atleast_2d(X), self.input_shape, "StaxKernel")
        Y = None if Y is None else _shape_rows(np.atleast_2d(Y), self.input_shape, "StaxKernel")
        return np.array(kernel_fn(X, Y, self.get), dtype=np.float64)

    def __call__(self, X, Y=None, eval_gradient: bool = False):
        """``k(X, Y) (N1, N2)``; with ``eval_gradient`` (``Y`` must be ``None``) also the
        gradient in the (empty) log-hyperparameters, ``(N1, N1, 0)``."""
        if eval_gradient and Y is not None:
            raise ValueError("StaxKernel: the gradient can only be evaluated when Y is None")
        k = self._kernel(X, Y)
        if eval_gradient:
            return k, np.empty((k.shape[0], k.shape[0], 0))
        return k

    def diag(self, X):
        """``k(x, x)`` for each row ``x`` of ``X``: ``(N,)``, in blocks of rows."""
        X = np.atleast_2d(X)
        return np.concatenate([np.diag(self._kernel(X[i:i + _DIAG_BLOCK], None))
                               for i in range(0, X.shape[0], _DIAG_BLOCK)]
                              or [np.empty((0,))])

    def is_stationary(self) -> bool:
        return False

    def __repr__(self):
        name = getattr(_as_kernel_fn(self.kernel_fn, "StaxKernel"), "name", None)
        return f"StaxKernel(get={self.get!r}" + (f", {name}" if name else "") + ")"


class _NetworkKernelEstimator(BaseEstimator):
    """Shared by :class:`NTKRegressor` and :class:`NTKClassifier`: kernel regression of 2-D
    targets ``Y (N, O)`` with a network's kernel."""

    def __init__(self, network=None, get: str = "ntk", *, t: Optional[float] = None,
                 learning_rate: float = 1.0, diag_reg: float = 1e-4,
                 diag_reg_absolute_scale: bool = False,
                 input_shape: Optional[Sequence[int]] = None, random_state: int = 0):
        self.network = network
        self.get = get
        self.t = t
        self.learning_rate = learning_rate
        self.diag_reg = diag_reg
        self.diag_reg_absolute_scale = diag_reg_absolute_scale
        self.input_shape = input_shape
        self.random_state = random_state

    # -- kernels ----------------------------------------------------------------------------
    def _triple(self):
        net = default_network() if self.network is None else self.network
        if callable(net) and not isinstance(net, (tuple, list)):
            net = net()  # a factory: estimators holding it pickle (by reference)
        if not (isinstance(net, (tuple, list)) and len(net) == 3):
            raise TypeError(f"{type(self).__name__}: network must be an ntk.stax "
                            f"(init_fn, apply_fn, kernel_fn) triple, a function returning "
                            f"one, or None, got {type(net).__name__}")
        return net

    def _kernel(self, X1, X2):
        name = type(self).__name__
        x1 = _shape_rows(X1, self.input_shape, name)
        x2 = None if X2 is None else _shape_rows(X2, self.input_shape, name)
        init_fn, apply_fn, kernel_fn = self._triple()
        if self.get == "entk":
            return _empirical_ntk(apply_fn)(x1, x2, self.params_)
        return kernel_fn(x1, x2, self.get)

    def _init_params(self, X):
        if self.get != "entk":
            return
        init_fn = self._triple()[0]
        shape = (-1,) + (tuple(self.input_shape) if self.input_shape is not None
                         else (X.shape[1],))
        _, self.params_ = init_fn(jax.random.PRNGKey(int(self.random_state)), shape)

    def _make_predictor(self):
        k_train_train = self._kernel(self.X_fit_, None)
        y = jnp.asarray(self.y_fit_, k_train_train.dtype)
        if self.t is None or np.isinf(self.t):
            fn = predict.gp_inference(k_train_train, y, diag_reg=self.diag_reg,
                                      diag_reg_absolute_scale=self.diag_reg_absolute_scale)

            return lambda k_test_train: fn("nngp", k_test_train)
        fn = predict.gradient_descent_mse(
            k_train_train, y, self.learning_rate, diag_reg=self.diag_reg,
            diag_reg_absolute_scale=self.diag_reg_absolute_scale)
        return lambda k_test_train: fn(self.t, 0.0, 0.0, k_test_train)[1]

    def _fit_targets(self, X, Y):
        """Store the training set and prepare the regression of ``Y (N, O)``."""
        _check_get(self.get, _GETS, type(self).__name__)
        if self.t is not None and not (self.t >= 0):
            raise ValueError(f"{type(self).__name__}: t must be None (t = infinity) or >= 0, "
                             f"got {self.t!r}")
        self.X_fit_ = X
        self.y_fit_ = Y
        self._init_params(X)
        self._predictor = self._make_predictor()
        return self

    def _outputs(self, X):
        """Predicted targets ``(N_test, O)``."""
        check_is_fitted(self, "X_fit_")
        X = _validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        # After unpickling the (unpicklable) prepared predictor is rebuilt, not stored.
        predictor = self.__dict__.get("_predictor") or self._make_predictor()
        return np.array(predictor(self._kernel(X, self.X_fit_)), dtype=np.float64)

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_predictor", None)
        return state


class NTKRegressor(RegressorMixin, _NetworkKernelEstimator):
    """Kernel regression with a network's NNGP, NTK or empirical NTK (scikit-learn estimator).

    With ``K`` the chosen kernel, ``d`` the training and ``t`` the test inputs, ``Y (N, O)``
    the targets and ``lambda = diag_reg`` (relative to the mean diagonal of ``K_dd`` unless
    ``diag_reg_absolute_scale``):

        t=None:  f(x_t) = K_td (K_dd + lambda I)^{-1} Y                (ntk.predict.gp_inference)
        t < inf: f(x_t) = K_td K^{-1} (I - exp(-eta t K / n)) Y,  K = K_dd + lambda I
                                                             (ntk.predict.gradient_descent_mse)

    i.e. the posterior mean of a GP with the NNGP (``get='nngp'``), the mean output of an
    infinitely wide network trained by gradient flow on MSE (``'ntk'``; Lee et al. 2019), or
    the linearized finite network (``'entk'``: the empirical NTK of ``network`` at parameters
    drawn with ``random_state``; its initial outputs are not added, i.e. ``f_0 = 0``).

    Args:
      network: an ``ntk.stax`` ``(init_fn, apply_fn, kernel_fn)`` triple, or a module-level
        function returning one (estimators then pickle, since the triple's closures do not;
        cache the triple in it so its compiled kernels are reused); ``None``:
        :func:`default_network`.
      get: ``'nngp'``, ``'ntk'`` or ``'entk'``.
      t: training time (``None``: infinity); ``learning_rate`` is ``eta``.
      diag_reg, diag_reg_absolute_scale: the ridge ``lambda`` and how it is scaled.
      input_shape: shape of one input (rows of ``X`` are reshaped to it), e.g. ``(8, 8, 1)``.
      random_state: integer seed of the parameters for ``get='entk'``.

    ``fit(X (N, D), y (N,) or (N, O))``; ``predict(X) -> (N_test,)`` or ``(N_test, O)``.

    References:
      Lee, Xiao, Schoenholz, Bahri, Novak, Sohl-Dickstein & Pennington, 2019, "Wide Neural
      Networks of Any Depth Evolve as Linear Models Under Gradient Descent", arXiv:1902.06720.

    Examples:
      >>> from sklearn.model_selection import GridSearchCV
      >>> search = GridSearchCV(NTKRegressor(), {'diag_reg': [1e-4, 1e-2], 't': [None, 1e3]})
      >>> search.fit(X, y).best_params_                            # doctest: +SKIP
    """

    def fit(self, X, y):
        X, y = _validate_data(self, X, y, multi_output=True, y_numeric=True,
                              dtype=[np.float64, np.float32])
        y = np.asarray(y, dtype=np.float64)
        self._single_output = y.ndim == 1
        return self._fit_targets(X, y.reshape(y.shape[0], -1))

    def predict(self, X):
        out = self._outputs(X)
        return out[:, 0] if self._single_output else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags


class NTKClassifier(ClassifierMixin, _NetworkKernelEstimator):
    """Classification by kernel regression of one-hot targets with a network's NNGP, NTK or
    empirical NTK; the predicted class is the arg-max output (scikit-learn estimator).

    ``fit(X, y)`` regresses ``Y = one_hot(y) (N, C)`` as :class:`NTKRegressor` does (same
    parameters); ``decision_function(X)`` is the regression output ``(N_test, C)`` (for two
    classes, ``f_1 - f_0``, positive for ``classes_[1]``) and ``predict(X)`` is
    ``classes_[argmax]``.

    References:
      Lee, Xiao, Schoenholz, Bahri, Novak, Sohl-Dickstein & Pennington, 2019, "Wide Neural
      Networks of Any Depth Evolve as Linear Models Under Gradient Descent", arXiv:1902.06720.
    """

    def fit(self, X, y):
        X, y = _validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        self.classes_, labels = np.unique(y, return_inverse=True)
        targets = np.asarray(predict.one_hot(jnp.asarray(labels.reshape(-1)),
                                             len(self.classes_)), dtype=np.float64)
        return self._fit_targets(X, targets)

    def decision_function(self, X):
        scores = self._outputs(X)
        return scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores

    def predict(self, X):
        scores = self._outputs(X)
        return self.classes_[np.argmax(scores, axis=1)]
