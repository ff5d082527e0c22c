"""scikit-learn interop (``ntk/sklearn.py``): a stax kernel inside ``GaussianProcessRegressor``
is ``ntk.predict.gp_inference`` on that kernel; the estimators run in a ``Pipeline`` under
``GridSearchCV`` and predict what a direct computation with the chosen hyperparameters does;
scikit-learn's own estimator checks pass."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, WhiteKernel
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import ntk
from ntk import predict, stax
from ntk.sklearn import NTKClassifier, NTKRegressor, StaxKernel


@functools.lru_cache(maxsize=1)
def network():
    """Module-level factory: estimators holding it pickle, and share its compiled kernels."""
    return stax.serial(stax.Dense(16, W_std=1.5, b_std=0.05), stax.Relu(),
                       stax.Dense(1, W_std=1.5, b_std=0.05))


def _data(n, d=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    return x, np.sin(x[:, 0]) + 0.1 * rng.normal(size=n)


@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_gp_kernel_posterior_mean_is_gp_inference(get):
    x, y = _data(20)
    x_test, _ = _data(7, seed=1)
    kernel_fn = network()[2]
    gp = GaussianProcessRegressor(StaxKernel(kernel_fn, get=get), alpha=1e-3).fit(x, y)
    k_dd, k_td = kernel_fn(x, None, get), kernel_fn(x_test, x, get)
    direct = predict.gp_inference(k_dd, jnp.asarray(y)[:, None], diag_reg=1e-3,
                                  diag_reg_absolute_scale=True)("nngp", k_td)
    np.testing.assert_allclose(gp.predict(x_test), np.asarray(direct)[:, 0], rtol=1e-9,
                               atol=1e-12)

    kernel = StaxKernel(network(), get=get)  # the whole triple is accepted too
    k, grad = kernel(x, eval_gradient=True)
    np.testing.assert_allclose(k, k_dd, rtol=1e-12)
    assert grad.shape == (20, 20, 0) and kernel.theta.shape == (0,)
    np.testing.assert_allclose(kernel.diag(x), np.diag(k), rtol=1e-12)
    assert not kernel.is_stationary()
    with pytest.raises(ValueError, match="Y is None"):
        kernel(x, x_test, eval_gradient=True)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_gp_kernel_composes_with_sklearn_kernels_and_their_optimizer():
    x, y = _data(20)
    kernel = ConstantKernel(1.0) * StaxKernel(network()[2], get="ntk") + WhiteKernel(0.1)
    gp = GaussianProcessRegressor(kernel, random_state=0).fit(x, y)
    assert gp.kernel_.theta.shape == (2,)  # amplitude and noise were fitted
    assert gp.log_marginal_likelihood_value_ > gp.log_marginal_likelihood(kernel.theta)


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return x[:120], y[:120], x[120:160], y[120:160]


def test_classifier_in_pipeline_and_grid_search_predicts_the_direct_computation(digits):
    x, y, x_test, _ = digits
    search = GridSearchCV(make_pipeline(StandardScaler(), NTKClassifier(network)),
                          {"ntkclassifier__diag_reg": [1e-3, 1e-1],
                           "ntkclassifier__t": [None, 30.0]}, cv=2)
    search.fit(x, y)
    best = search.best_params_
    assert search.best_score_ > 0.8

    scaler = StandardScaler().fit(x)
    xs, xts = jnp.asarray(scaler.transform(x)), jnp.asarray(scaler.transform(x_test))
    kernel_fn = network()[2]
    k_dd, k_td = kernel_fn(xs, None, "ntk"), kernel_fn(xts, xs, "ntk")
    targets = predict.one_hot(jnp.asarray(y), 10)
    diag_reg, t = best["ntkclassifier__diag_reg"], best["ntkclassifier__t"]
    if t is None:
        scores = predict.gp_inference(k_dd, targets, diag_reg=diag_reg)("nngp", k_td)
    else:
        scores = predict.gradient_descent_mse(k_dd, targets, diag_reg=diag_reg)(
            t, 0.0, 0.0, k_td)[1]
    np.testing.assert_array_equal(search.predict(x_test), np.argmax(scores, axis=1))
    np.testing.assert_allclose(search.best_estimator_[-1].decision_function(xts), scores,
                               rtol=1e-9, atol=1e-12)


def test_empirical_ntk_regressor_is_kernel_regression_with_the_empirical_ntk():
    x, y = _data(8)
    x_test, _ = _data(3, seed=1)
    model = NTKRegressor(network, get="entk", diag_reg=1e-2, random_state=3).fit(x, y)
    init_fn, apply_fn, _ = network()
    _, params = init_fn(jax.random.PRNGKey(3), (-1, 5))
    ntk_fn = ntk.empirical_ntk_fn(apply_fn, vmap_axes=0)
    direct = predict.gp_inference(ntk_fn(x, None, params), jnp.asarray(y)[:, None],
                                  diag_reg=1e-2)("nngp", ntk_fn(x_test, x, params))
    np.testing.assert_allclose(model.predict(x_test), np.asarray(direct)[:, 0], rtol=1e-9)
    multi = NTKRegressor(network, get="nngp").fit(x, np.stack([y, 2 * y], axis=1))
    np.testing.assert_allclose(multi.predict(x_test)[:, 1], 2 * multi.predict(x_test)[:, 0],
                               rtol=1e-9)


def test_estimators_refuse_bad_settings():
    x, y = _data(6)
    with pytest.raises(ValueError, match="get must be one of"):
        NTKRegressor(network, get="cov1").fit(x, y)
    with pytest.raises(ValueError, match="t must be"):
        NTKRegressor(network, t=-1.0).fit(x, y)
    with pytest.raises(ValueError, match="input_shape"):
        NTKRegressor(network, input_shape=(2, 2)).fit(x, y)


# scikit-learn's estimator checks (all of them apply; none is expected to fail). Each fits
# on new shapes, so together they compile many kernels: the full battery is a slow test, and
# the default run checks the API conventions that need few fits.
_QUICK_CHECKS = {
    "check_no_attributes_set_in_init", "check_parameters_default_constructible",
    "check_get_params_invariance", "check_set_params", "check_estimators_unfitted",
    "check_estimators_fit_returns_self", "check_dont_overwrite_parameters",
    "check_n_features_in", "check_estimators_pickle", "check_fit_check_is_fitted",
    "check_estimator_cloneable", "check_estimator_repr", "check_estimator_tags_renamed",
    "check_valid_tag_types", "check_mixin_order", "check_estimators_overwrite_params",
}


def _check_name(check):
    return getattr(check, "func", check).__name__


def _estimator_checks():
    mark = parametrize_with_checks([NTKRegressor(network), NTKClassifier(network)])
    ids = mark.kwargs["ids"]
    # ids from the class name: an estimator's repr shows its network factory's address, which
    # differs between pytest-xdist workers (they must collect the same ids)
    return [pytest.param(estimator, check, id=f"{type(estimator).__name__}-{ids(check)}",
                         marks=() if _check_name(check) in _QUICK_CHECKS else pytest.mark.slow)
            for estimator, check in mark.args[1]]


@pytest.mark.parametrize("estimator, check", _estimator_checks())
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
