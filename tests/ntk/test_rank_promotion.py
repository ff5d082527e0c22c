"""The public API works under ``jax.numpy_rank_promotion('raise')`` (neural-tangents' test
setting, and a common user one): every broadcast in ``ntk`` is explicit, and the results are
those computed with rank promotion allowed.

Each case is computed first under ``'raise'`` and then under ``'allow'`` (the flag is part of
JAX's trace context, so the second run retraces rather than reusing the first one's cache).
The whole suite's kernel tests run under the flag with ``NTK_LAB_TEST_RANK_PROMOTION=raise``
(see ``tests/conftest.py``).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk
from ntk import approx, predict, stax

KEY = jax.random.PRNGKey(0)


def _inputs(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape))


X1, X2 = _inputs((3, 4), 1), _inputs((2, 4), 2)
IMG1, IMG2 = _inputs((2, 4, 4, 2), 3), _inputs((3, 4, 4, 2), 4)


def _same_under_raise(compute):
    with jax.numpy_rank_promotion("raise"):
        strict = compute()
    with jax.numpy_rank_promotion("allow"):
        loose = compute()
    for a, b in zip(jax.tree_util.tree_leaves(strict), jax.tree_util.tree_leaves(loose),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)
    return strict


def _dense(act):
    return [stax.Dense(3, W_std=1.3, b_std=0.2), act]


# Every activation family, a few per network so that each network compiles once.
ACTIVATION_CHAINS = {
    "relu-like": [stax.Relu(), stax.LeakyRelu(0.1), stax.ABRelu(-0.5, 1.0), stax.Abs(),
                  stax.RectifiedMonomial(2)],
    "smooth": [stax.Erf(), stax.Gelu(), stax.Sin(), stax.Cos(), stax.Sigmoid_like(),
               stax.Tanh(deg=8)],
    "exp-family": [stax.Exp(a=0.5, b=0.5), stax.Gaussian(), stax.Rbf(0.5), stax.Monomial(2),
                   stax.Sign()],
    "numerical": [stax.ElementwiseNumerical(jnp.tanh, deg=8),
                  stax.Elementwise(jnp.sin, lambda q12, q11, q22: 0.5 * (
                      jnp.exp(-0.5 * (q11 + q22 - 2 * q12)) - jnp.exp(-0.5 * (q11 + q22 + 2 * q12)))),
                  stax.Polynomial([0.1, 1.0, 0.3]), stax.Hermite(2), stax.Gabor()],
}


def _network(name):
    if name in ACTIVATION_CHAINS:
        return stax.serial(*sum((_dense(a) for a in ACTIVATION_CHAINS[name]), []),
                           stax.Dense(2, W_std=1.1, b_std=0.1))
    if name == "standard-param":
        return stax.serial(stax.Dense(5, b_std=0.3, parameterization="standard"), stax.Relu(),
                           stax.Dense(2, b_std=0.3, parameterization="standard"))
    return stax.serial(  # "residual"
        stax.Dense(4, b_std=0.1), stax.FanOut(2),
        stax.parallel(stax.Identity(), stax.serial(stax.Relu(), stax.Dense(4, b_std=0.1))),
        stax.FanInSum(), stax.LayerNorm(), stax.Dense(2, b_std=0.1))


def _conv_network():
    return stax.serial(
        stax.Conv(3, (2, 2), padding="SAME", b_std=0.1), stax.Relu(),
        stax.AvgPool((2, 2), padding="SAME"),
        stax.Conv(3, (2, 2), strides=(1, 1), padding="VALID", b_std=0.1,
                  parameterization="standard"), stax.Erf(),
        stax.ConvTranspose(2, (2, 2), padding="SAME", b_std=0.1), stax.Relu(),
        stax.GlobalAvgPool(), stax.Dense(2, b_std=0.1))


# By default: the approximate kernels' sketches and the structured engine (the spots fixed
# outside ntk.stax), with tests/ntk/stax/test_rank_promotion.py covering a bias, ReLU, Tanh,
# ElementwiseNumerical, LayerNorm and a conv net; the rest under ``make test-all``.
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow)
                                  for n in ACTIVATION_CHAINS]
                         + [pytest.param(n, marks=pytest.mark.slow)
                            for n in ("standard-param", "residual")])
def test_dense_networks_init_apply_and_kernels(name):
    init_fn, apply_fn, kernel_fn = _network(name)

    def compute():
        _, params = init_fn(KEY, X1.shape)
        return apply_fn(params, X1), kernel_fn(X1, X2, ("nngp", "ntk")), kernel_fn(X1, None)

    out, k12, k11 = _same_under_raise(compute)
    assert out.shape == (3, 2) and k12.ntk.shape == (3, 2) and k11.cov1.shape == (3,)
    assert np.all(np.isfinite(k12.nngp)) and np.all(np.isfinite(k11.ntk))


@pytest.mark.slow
def test_conv_network_init_apply_and_kernels():
    init_fn, apply_fn, kernel_fn = _conv_network()

    def compute():
        _, params = init_fn(KEY, IMG1.shape)
        return (apply_fn(params, IMG1), kernel_fn(IMG1, IMG2, "ntk"),
                kernel_fn(IMG1, None, "nngp", diagonal_spatial=True))

    out, ntk12, nngp11 = _same_under_raise(compute)
    assert out.shape == (2, 2) and ntk12.shape == (2, 3) and nngp11.shape == (2, 2)


def _finite_net():
    return stax.serial(stax.Dense(6, b_std=0.1), stax.Erf(), stax.Dense(2, b_std=0.1))


@pytest.mark.parametrize("implementation", [pytest.param("jacobian", marks=pytest.mark.slow),
                                            pytest.param("ntvp", marks=pytest.mark.slow),
                                            "structured"])
def test_empirical_kernels(implementation):
    init_fn, apply_fn, _ = _finite_net()
    _, params = init_fn(KEY, X1.shape)
    ntk_fn = ntk.empirical_ntk_fn(apply_fn, trace_axes=(), implementation=implementation,
                                  vmap_axes=0)
    nngp_fn = ntk.empirical_nngp_fn(apply_fn, trace_axes=(), vmap_axes=0)
    theta, nngp = _same_under_raise(lambda: (ntk_fn(X1, X2, params), nngp_fn(X1, None, params)))
    assert theta.shape == (3, 2, 2, 2) and nngp.shape == (3, 3, 2, 2)


@pytest.mark.slow
def test_empirical_kernel_fn_with_diagonal_axes_and_scales():
    init_fn, apply_fn, _ = _finite_net()
    _, params = init_fn(KEY, X1.shape)
    kernel_fn = ntk.empirical_kernel_fn(apply_fn, trace_axes=(), diagonal_axes=(-1,))
    out = _same_under_raise(lambda: kernel_fn(X1, X2, "ntk", params))
    assert out.shape == (3, 2, 2)


@pytest.mark.slow
def test_monte_carlo_kernel_fn():
    init_fn, apply_fn, _ = _finite_net()
    kernel_fn = ntk.monte_carlo_kernel_fn(init_fn, apply_fn, KEY, 4)
    out = _same_under_raise(lambda: kernel_fn(X1, X2, ("nngp", "ntk")))
    assert out.ntk.shape == (3, 2)


def test_approximate_kernels():
    init_fn, apply_fn, _ = _finite_net()
    _, params = init_fn(KEY, X1.shape)
    fns = {"pntk": approx.pntk_fn(apply_fn), "trace": approx.trace_ntk_fn(apply_fn),
           "sign": approx.sign_kernel_fn(apply_fn), "adam": approx.adam_kernel_fn(apply_fn)}
    lpntk = approx.lpntk_fn(apply_fn)
    projected = approx.projected_kernel_fn(apply_fn, 16)

    def compute():
        out = {name: fn(X1, X2, params) for name, fn in fns.items()}
        out["lpntk"] = lpntk(X1, X2, params, labels1=jnp.array([0, 1, 1]),
                             labels2=jnp.array([1, 0]))
        out["projected"] = projected(X1, X2, params, KEY)
        out["lifted"] = approx.lift(out["pntk"], 2)
        return out

    out = _same_under_raise(compute)
    assert out["pntk"].shape == (3, 2) and out["projected"].shape == (3, 2)


@pytest.mark.slow
def test_predict():
    _, _, kernel_fn = _network("standard-param")
    y_train = _inputs((3, 2), 5)

    def compute():
        k_dd = kernel_fn(X1, None, ("nngp", "ntk"))
        k_td = kernel_fn(X2, X1, ("nngp", "ntk"))
        k_tt = kernel_fn(X2, None, ("nngp", "ntk"))
        gp = predict.gp_inference(k_dd, y_train, diag_reg=1e-3)
        posterior = gp(("nngp", "ntk", "ntkgp"), k_td, k_tt)
        gd = predict.gradient_descent_mse(k_dd.ntk, y_train, diag_reg=1e-3)
        gd_full = predict.gradient_descent_mse(
            jnp.einsum("ij,kl->ijkl", k_dd.ntk, jnp.eye(2)), y_train)
        ensemble = predict.gradient_descent_mse_ensemble(kernel_fn, X1, y_train, diag_reg=1e-3)
        return (posterior, gd(jnp.array([0.0, 1.0, jnp.inf]), 0.0, 0.0, k_td.ntk),
                gd_full(2.0), ensemble(t=3.0, x_test=X2, compute_cov=True))

    posterior, gd, gd_full, ensemble = _same_under_raise(compute)
    assert gd[1].shape == (3, 2, 2) and gd_full.shape == (3, 2)
