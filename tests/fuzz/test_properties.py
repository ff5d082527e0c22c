"""Property-based checks of the public API (hypothesis, derandomised, bounded): over shapes,
dtypes, axes modes and implementations, a kernel is the explicit Jacobian contraction (empty
batches included); over option values, a call gives a clear error naming the option or a
correct result."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ntk
from ntk import approx

SETTINGS = settings(max_examples=12, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
MODES = {"full": ((), (), "namb->nmab"), "trace": ((-1,), (), "nama->nm"),
         "diagonal": ((), (-1,), "nama->nma")}


def _mlp(d, o, dtype, seed=0):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    params = {"w1": jax.random.normal(k1, (d, 5), dtype), "b1": jnp.zeros(5, dtype),
              "w2": jax.random.normal(k2, (5, o), dtype) / np.sqrt(5)}

    def apply_fn(p, x):
        return jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"]
    return apply_fn, params, k3


def _explicit(apply_fn, params, x1, x2, einsum):
    j1 = jax.jacrev(apply_fn)(params, x1)
    j2 = jax.jacrev(apply_fn)(params, x2)
    raw = sum(jnp.einsum("na...,mb...->namb", j1[k], j2[k]) for k in params)
    out = jnp.einsum(einsum, raw)
    return out / raw.shape[1] if einsum == "nama->nm" else out


@settings(SETTINGS, max_examples=2)
@given(n1=st.integers(0, 4), n2=st.integers(0, 3), d=st.integers(1, 4), o=st.integers(1, 3),
       mode=st.sampled_from(sorted(MODES)),
       impl=st.sampled_from(["jacobian", "ntvp", "structured"]),
       f32=st.booleans())
def test_empirical_ntk_is_the_jacobian_contraction(n1, n2, d, o, mode, impl, f32):
    dtype = jnp.float32 if f32 else jnp.float64
    apply_fn, params, key = _mlp(d, o, dtype)
    x1 = jax.random.normal(key, (n1, d), dtype)
    x2 = jax.random.normal(jax.random.fold_in(key, 1), (n2, d), dtype)
    trace, diag, einsum = MODES[mode]
    k = ntk.empirical_ntk_fn(apply_fn, trace, diag, vmap_axes=0, implementation=impl)(
        x1, x2, params)
    if n1 and n2:
        want = _explicit(apply_fn, params, x1, x2, einsum)
    else:   # the shape the contraction would have
        want = jnp.zeros((n1, n2) + ({"full": (o, o), "trace": (), "diagonal": (o,)}[mode]))
    assert k.shape == want.shape
    tol = 1e-4 if f32 else 1e-10
    np.testing.assert_allclose(np.asarray(k), np.asarray(want), rtol=tol,
                               atol=tol * (1 + float(jnp.max(jnp.abs(want), initial=0.0))))


OPTION_VALUES = st.one_of(st.integers(-3, 64), st.floats(allow_nan=True, allow_infinity=True),
                          st.text(max_size=3), st.none(),
                          st.tuples(st.integers(-1, 4), st.integers(-1, 4)))


@SETTINGS
@given(option=st.sampled_from(["block_size", "memory_budget"]), value=OPTION_VALUES)
def test_options_give_a_clear_error_or_the_right_kernel(option, value):
    apply_fn, params, key = _mlp(3, 2, jnp.float64)
    x = jax.random.normal(key, (5, 3))
    try:
        fn = ntk.empirical_ntk_fn(apply_fn, (), (), vmap_axes=0, **{option: value})
        k = fn(x, x[:4], params)
    except (TypeError, ValueError) as err:
        assert option in str(err), (option, value, str(err))
        return
    np.testing.assert_allclose(k, _explicit(apply_fn, params, x, x[:4], "namb->nmab"),
                               rtol=1e-10, atol=1e-10)


@SETTINGS
@given(value=OPTION_VALUES, which=st.sampled_from(["batch_size", "memory_budget"]))
def test_approximate_kernel_options(value, which):
    apply_fn, params, key = _mlp(3, 2, jnp.float64)
    x = jax.random.normal(key, (5, 3))
    try:
        k = approx.pntk_fn(apply_fn, **{which: value})(x, None, params)
    except (TypeError, ValueError) as err:
        assert which in str(err), (which, value, str(err))
        return
    full = _explicit(apply_fn, params, x, x, "namb->nmab")
    np.testing.assert_allclose(k, full.sum((2, 3)) / 2, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_no_silent_nan_from_extreme_but_finite_inputs(dtype):
    """Inputs 1e-30 .. 1e15 (tanh saturates; every intermediate fits): finite kernels."""
    apply_fn, params, key = _mlp(3, 2, dtype)
    for scale in (1e-30, 1e-5, 1e5, 1e15):
        x = scale * jax.random.normal(key, (4, 3), dtype)
        k = ntk.empirical_ntk_fn(apply_fn, vmap_axes=0)(x, None, params)
        assert np.all(np.isfinite(np.asarray(k))), scale
