"""The validation layer at the public boundary: empty batches give empty kernels of the shape
the non-empty call implies, bad values are refused naming the argument, and ``checked`` catches
non-finite values under ``jax.jit``."""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import limits
import ntk
from ntk import approx, predict, solvers, stax, validation
from tests.ntk import models


def _setup():
    apply_fn, params, shape = models.mlp(jax.random.PRNGKey(0))
    x1 = jax.random.normal(jax.random.PRNGKey(1), (3,) + shape)
    x2 = jax.random.normal(jax.random.PRNGKey(2), (2,) + shape)
    return apply_fn, params, x1, x2


@pytest.mark.parametrize("trace_axes, diagonal_axes", [((), ()), ((-1,), ()), ((), (-1,))])
def test_empty_batches_give_empty_kernels_of_the_implied_shape(trace_axes, diagonal_axes):
    apply_fn, params, x1, x2 = _setup()
    fn = ntk.empirical_ntk_fn(apply_fn, trace_axes, diagonal_axes, vmap_axes=0)
    full = fn(x1, x2, params).shape
    assert fn(x1[:0], x2, params).shape == (0,) + full[1:]
    assert fn(x1, x2[:0], params).shape == (full[0], 0) + full[2:]
    assert fn(x1[:0], None, params).shape == (0, 0) + full[2:]
    assert fn(x1[:0], None, params).dtype == fn(x1, None, params).dtype


@pytest.mark.parametrize("make", [approx.pntk_fn, approx.trace_ntk_fn, approx.sign_kernel_fn,
                                  approx.adam_kernel_fn])
def test_approximate_kernels_of_empty_batches(make):
    apply_fn, params, x1, x2 = _setup()
    fn = make(apply_fn)
    assert fn(x1[:0], x2, params).shape == (0, 2)
    assert fn(x1, x2[:0], params).shape == (3, 0)
    lp = approx.lpntk_fn(apply_fn)
    empty = jnp.zeros(0, jnp.int32)
    assert lp(x1[:0], x2, params, labels1=empty, labels2=jnp.array([0, 1])).shape == (0, 2)
    feats = approx.projected_features_fn(apply_fn, 8)(x1[:0], params, jax.random.PRNGKey(0))
    assert feats.shape == (0, 8)


def test_non_finite_params_are_refused_naming_the_leaf():
    apply_fn, params, x1, x2 = _setup()
    bad = [dict(p) for p in params]
    bad[1]["W"] = bad[1]["W"].at[0, 0].set(jnp.nan)
    for fn in (ntk.empirical_ntk_fn(apply_fn, vmap_axes=0), approx.pntk_fn(apply_fn)):
        with pytest.raises(ValueError, match=r"`params` has 1 non-finite .*\[1\]\['W'\]"):
            fn(x1, x2, params=bad)


def test_finiteness_is_checked_once_per_immutable_array_and_every_time_for_numpy():
    # a jax.Array cannot change, so a repeated call skips its check; a NumPy array can be
    # written in place between calls, so it is checked on every call
    apply_fn, params, x1, x2 = _setup()
    fn = ntk.empirical_ntk_fn(apply_fn, vmap_axes=0)
    fn(x1, x2, params)
    assert all(validation._known_finite(l) for l in jax.tree_util.tree_leaves(params))
    host = jax.tree_util.tree_map(np.array, params)
    fn(x1, x2, host)
    host[1]["W"][0, 0] = np.nan
    with pytest.raises(ValueError, match=r"`params` has 1 non-finite .*\[1\]\['W'\]"):
        fn(x1, x2, host)
    x_host = np.array(x1)
    fn(x_host, x2, params)
    x_host[0, 0] = np.inf
    with pytest.raises(ValueError, match="x1 of shape .* has 1 non-finite"):
        fn(x_host, x2, params)


def test_checked_catches_non_finite_values_under_jit():
    apply_fn, params, x1, x2 = _setup()
    plain = ntk.empirical_ntk_fn(apply_fn, vmap_axes=0)
    safe = validation.checked(plain)
    np.testing.assert_allclose(safe(x1, x2, params), plain(x1, x2, params), rtol=1e-12)
    np.testing.assert_allclose(safe(x1, None, params), plain(x1, None, params), rtol=1e-12)
    with pytest.raises(checkify.JaxRuntimeError, match="`x2` has non-finite"):
        safe(x1, x2.at[1, 0].set(jnp.inf), params)
    bad = [dict(p) for p in params]
    bad[0]["b"] = bad[0]["b"].at[0].set(jnp.nan)
    with pytest.raises(checkify.JaxRuntimeError, match="`params` has non-finite"):
        safe(x1, x2, bad)
    # the plain kernel under jit cannot look at values: NaN goes through unnoticed
    assert np.isnan(np.asarray(jax.jit(plain)(x1, x2, bad))).any()


@pytest.mark.parametrize("kwargs, match", [
    (dict(block_size="a"), "`block_size` must be a positive int"),
    (dict(block_size=(2, 0)), r"`block_size\[1\]` must be a positive int"),
    (dict(block_size=2.5), "`block_size` must be a positive int"),
    (dict(memory_budget=float("nan")), "`memory_budget` must be finite"),
    (dict(memory_budget=-1), "`memory_budget` must be > 0"),
])
def test_options_are_checked_when_the_kernel_function_is_made(kwargs, match):
    apply_fn, _, _, _ = _setup()
    with pytest.raises((TypeError, ValueError), match=match):
        ntk.empirical_ntk_fn(apply_fn, **kwargs)


def test_label_ranges_and_solver_options():
    apply_fn, params, x1, _ = _setup()
    with pytest.raises(ValueError, match=r"`labels1` must lie in \[0, 3\).*from 0 to 5"):
        approx.lpntk_fn(apply_fn)(x1, None, params, labels1=jnp.array([0, 5, 1]))
    with pytest.raises(ValueError, match=r"from -1 to 1"):
        approx.lpntk_fn(apply_fn)(x1, None, params, labels1=jnp.array([0, -1, 1]))
    k = jnp.eye(3) * 2.0
    with pytest.raises(ValueError, match="`tol` must be finite"):
        solvers.conjugate_gradient(k, jnp.ones(3), tol=float("nan"))
    with pytest.raises(ValueError, match="`maxiter` must be a positive int"):
        solvers.conjugate_gradient(k, jnp.ones(3), maxiter=-5)
    with pytest.raises(ValueError, match="not positive semi-definite"):
        predict.max_learning_rate(-k)
    with pytest.raises(TypeError, match="float16"):
        predict.gp_inference(k.astype(jnp.float16), jnp.ones((3, 1)))
    with pytest.raises(TypeError, match="`learning_rate` must be a real number"):
        predict.gradient_descent_mse(k, jnp.ones((3, 1)), learning_rate="fast")


def test_correlation_map_refuses_what_is_not_a_correlation():
    with pytest.raises(ValueError, match=r"`c` is a correlation"):
        limits.correlation_map(2.0, 1.0, 1.5, 0.05)
    with pytest.raises(ValueError, match="`qstar`"):
        limits.correlation_map(0.5, -1.0, 1.5, 0.05)
    # the boundary itself is a correlation: the map at c = 1 is the length map, c* = 1
    np.testing.assert_allclose(limits.correlation_map(1.0, 1.0, 2.0, 0.0, "relu"), 1.0)


def test_stax_warns_when_input_moments_overflow_float32():
    _, _, kernel_fn = stax.serial(stax.Dense(8), stax.Relu(), stax.Dense(1))
    x = jnp.ones((2, 3), jnp.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kernel_fn(x * 1e3, None, "ntk")          # fits: no warning
    with pytest.warns(RuntimeWarning, match="overflow float32.*float64"):
        k = kernel_fn(x * 1e25, None, "ntk")
    assert not np.all(np.isfinite(np.asarray(k)))    # the warning was right


@pytest.mark.parametrize("depth", [5, 20, 50, 100])
def test_deep_float32_kernels_that_are_wrong_warn(depth):
    """Erf network in the chaotic phase (W_std 1.5, b_std 0.05, as in the issue), two inputs
    1e-6 apart: whenever the float32 NNGP is off the float64 one by more than the tolerance the
    call warns, and the rounding-error bound is not below the error it bounds."""
    from ntk.stax import core
    block = stax.serial(stax.Dense(64, 1.5, 0.05), stax.Erf())
    _, _, kernel_fn = stax.serial(stax.Dense(64, 1.5, 0.05), stax.Erf(),
                                  stax.repeat(block, depth - 1), stax.Dense(1, 1.5, 0.05))
    x = np.random.default_rng(0).normal(size=(6, 10))
    x[1] = x[0] * (1 + 1e-6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        k32 = kernel_fn(jnp.asarray(x, jnp.float32), None, None)
    k64 = kernel_fn(jnp.asarray(x), None, None)
    err = float(np.max(np.abs(np.asarray(k32.nngp, float) - np.asarray(k64.nngp)))
                / np.max(np.abs(np.asarray(k64.nngp))))
    bound = core.rounding_error_bound(k32)
    warned = any("float64" in str(w.message) for w in caught)
    assert warned == (bound > core.PRECISION_TOLERANCE)
    if err > core.PRECISION_TOLERANCE:
        assert warned, (depth, err, bound)
    assert bound >= err, (depth, err, bound)
    assert core.rounding_error_bound(k64) < core.PRECISION_TOLERANCE   # float64 holds here
