"""Analytic kernels against finite networks: Monte Carlo means and single-network eNTKs.

Trends, with fixed seeds and honest tolerances:
* every activation: a one-hidden-layer network's Monte Carlo NNGP/NTK is an unbiased estimate
  of the analytic kernel at any width, so its error falls like ``n_samples^-1/2``;
* deeper networks, convolutions, pooling, LayerNorm and residual branches: at a fixed number of
  samples the error falls as the width grows (bias ``O(1/n)``, fluctuation ``O(n^-1/2)``);
* one network's empirical NTK converges to the analytic NTK with log-log slope near -1/2.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk import stax
from ntk.monte_carlo import MonteCarloKernel, monte_carlo_kernel_fn

ACTIVATIONS = {
    "Relu": stax.Relu(), "LeakyRelu": stax.LeakyRelu(0.2), "ABRelu": stax.ABRelu(-0.4, 1.3),
    "Abs": stax.Abs(), "Erf": stax.Erf(1.3, 0.7, 0.2), "Sigmoid_like": stax.Sigmoid_like(),
    "Gelu": stax.Gelu(), "Sin": stax.Sin(1.2, 0.8, 0.3), "Cos": stax.Cos(0.9, 1.1, -0.2),
    "Monomial2": stax.Monomial(2), "Monomial3": stax.Monomial(3),
    "RectifiedMonomial0": stax.RectifiedMonomial(0),
    "RectifiedMonomial2": stax.RectifiedMonomial(2), "Sign": stax.Sign(),
    "Exp": stax.Exp(0.7, 0.4), "Gaussian": stax.Gaussian(1.1, -0.6), "Rbf": stax.Rbf(0.3),
    "Tanh": stax.Tanh(), "ElementwiseNumerical(softplus)":
        stax.ElementwiseNumerical(jax.nn.softplus, 48),
}


def _inputs(n=4, d=5, seed=0):
    x = np.random.RandomState(seed).randn(n, d)
    return x / np.linalg.norm(x, axis=1, keepdims=True) * np.sqrt(d)


def _rel(estimate, exact):
    return float(np.linalg.norm(np.asarray(estimate) - exact) / np.linalg.norm(exact))


def _slope(xs, ys):
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


QUICK_ACTIVATIONS = ("Relu", "Sign")


@pytest.mark.parametrize("names", [
    pytest.param(QUICK_ACTIVATIONS, id="quick"),
    pytest.param(tuple(ACTIVATIONS), id="all", marks=pytest.mark.slow)])
def test_activations_mc_error_falls_like_inverse_sqrt_samples(names):
    """One network holding every activation as a separate one-hidden-layer branch.

    Output ``i`` is ``Dense(1)(act_i(Dense(n)(x)))``; with ``diagonal_axes=(-1,)`` the Monte
    Carlo kernel of output ``i`` involves only branch ``i``'s parameters, so a single compiled
    sampler checks all activations at once.
    """
    names = list(names)
    width = 64  # a one-hidden-layer network's MC kernel is unbiased at any width
    branches = [stax.serial(stax.Dense(width, 1.3, 0.2), ACTIVATIONS[n], stax.Dense(1, 1.1, 0.1))
                for n in names]
    init_fn, apply_fn, _ = stax.serial(stax.FanOut(len(names)), stax.parallel(*branches),
                                       stax.FanInConcat())
    x1, x2 = _inputs(4, 5, 0), _inputs(3, 5, 1)
    counts = (16, 64, 256, 1024)
    mc = monte_carlo_kernel_fn(init_fn, apply_fn, jax.random.PRNGKey(1), counts,
                               trace_axes=(), diagonal_axes=(-1,))
    estimates = list(mc(x1, x2))
    assert [e.n_samples for e in estimates] == list(counts)
    all_errors = {"nngp": [], "ntk": []}
    for i, name in enumerate(names):
        exact = branches[i][2](x1, x2, ("nngp", "ntk"))
        for field in ("nngp", "ntk"):
            target = np.asarray(getattr(exact, field))
            errors = [_rel(np.asarray(getattr(e, field))[..., i], target) for e in estimates]
            all_errors[field].append(errors)
            # each activation: 64x the samples must help, and end close (no bias)
            assert errors[-1] < errors[0], (name, field, errors)
            assert errors[-1] < 0.2, (name, field, errors)
    for field, errors in all_errors.items():
        # pooled over activations (geometric mean), the rate is the Monte Carlo rate -1/2
        pooled = np.exp(np.mean(np.log(np.asarray(errors)), axis=0))
        slope = _slope(counts, pooled)
        assert -0.65 < slope < -0.35, (field, pooled, slope)


def _width_trend(make, x1, x2, widths, n_samples, seed=0):
    """MC errors at each width: NNGP with a wide readout (1024 outputs, averaged by the trace,
    and 4x the samples -- forward passes only -- so the readout's own noise ``(S O)^-1/2``
    stays below the width effect), NTK with one
    output (its per-network fluctuation is ``O(width^-1/2)`` whatever the readout)."""
    errors = {"nngp": [], "ntk": []}
    for width in widths:
        for field, n_out, n in (("nngp", 1024, 4 * n_samples), ("ntk", 1, n_samples)):
            init_fn, apply_fn, kernel_fn = make(width, n_out)
            exact = np.asarray(kernel_fn(x1, x2, field))
            est = monte_carlo_kernel_fn(init_fn, apply_fn, jax.random.PRNGKey(seed),
                                        n)(x1, x2, field)
            errors[field].append(_rel(est, exact))
    return errors


ARCHITECTURES = {
    # Dense, Erf/Relu/Gelu, LayerNorm, a residual branch scaled by
    # 1/sqrt(2) (FanOut/parallel/FanInSum), FanInConcat
    "mlp": lambda n, o: stax.serial(
        stax.Dense(n, 1.5, 0.1),
        stax.FanOut(2),
        stax.parallel(stax.Identity(),
                      stax.serial(stax.Erf(), stax.Dense(n, 1.3, 0.1), stax.Relu(),
                                  stax.Dense(n, 1.2))),
        stax.FanInSum(weights=(1.0, 0.5**0.5)),
        stax.LayerNorm(), stax.Gelu(),
        stax.FanOut(2), stax.parallel(stax.Dense(n, 1.1), stax.Identity()),
        stax.FanInConcat(),
        stax.Dense(o, 1.0, 0.1)),
    # 1D CNN: SAME/VALID padding, strides, AvgPool, then GlobalAvgPool and Flatten read-outs
    # concatenated (full- and diagonal-spatial kernel paths in one network)
    "cnn1d": lambda n, o: stax.serial(
        stax.Conv(n, (3,), padding="SAME", W_std=1.4, b_std=0.1), stax.Relu(),
        stax.AvgPool((2,), strides=(2,), padding="SAME"),
        stax.Conv(n, (2,), strides=(1,), W_std=1.3), stax.Erf(),
        stax.FanOut(2), stax.parallel(stax.GlobalAvgPool(), stax.Flatten()),
        stax.FanInConcat(), stax.Dense(o, 1.0)),
    # 2D CNN read out by Flatten
    "cnn2d": lambda n, o: stax.serial(
        stax.Conv(n, (2, 2), padding="SAME", W_std=1.3, b_std=0.1), stax.Relu(),
        stax.Conv(n, (2, 2), strides=(2, 2), W_std=1.3), stax.Sin(), stax.Flatten(),
        stax.Dense(o, 1.0)),
}


@pytest.mark.parametrize("arch,widths", [
    pytest.param("mlp", (8, 128), marks=pytest.mark.slow),
    pytest.param("mlp", (16, 1024), marks=pytest.mark.slow, id="mlp-wide"),
    pytest.param("cnn1d", (8, 256), marks=pytest.mark.slow),
    pytest.param("cnn2d", (8, 256), marks=pytest.mark.slow)])
def test_mc_error_falls_with_width(arch, widths):
    rng = np.random.RandomState(3)
    if arch == "cnn1d":
        x1, x2 = rng.randn(2, 4, 2), rng.randn(1, 4, 2)
    elif arch == "cnn2d":
        x1, x2 = rng.randn(2, 4, 4, 2), rng.randn(2, 4, 4, 2)
    else:
        x1, x2 = _inputs(3, 5, 2), _inputs(2, 5, 3)
    errors = _width_trend(ARCHITECTURES[arch], x1, x2, widths, n_samples=32)
    for field, errs in errors.items():
        # 16-64x the width: fluctuations fall 4-8x (bias more); demand at least 2x
        assert errs[-1] < errs[0] / 2, (field, errs)


def _entk(apply_fn, params, x):
    """Empirical NTK ``J J^T`` of a scalar-output network, built leaf by leaf with jacrev."""
    jac = jax.jacrev(lambda p: apply_fn(p, x)[:, 0])(params)
    leaves = [j.reshape(x.shape[0], -1) for j in jax.tree_util.tree_leaves(jac)]
    return sum(j @ j.T for j in leaves)


@pytest.mark.slow
@pytest.mark.parametrize("act", ["Relu", "Erf"])
def test_single_network_entk_converges_with_slope_minus_half(act):
    """||Theta_emp - Theta_inf|| / ||Theta_inf|| ~ n^-1/2 for one network (Jacot et al. 2018)."""
    x = _inputs(4, 5, 5)
    widths = (32, 128, 512, 2048)
    seeds = range(4)
    mean_errors = []
    for width in widths:
        init_fn, apply_fn, kernel_fn = stax.serial(
            stax.Dense(width, 1.5, 0.1), ACTIVATIONS[act], stax.Dense(width, 1.5, 0.1),
            ACTIVATIONS[act], stax.Dense(1, 1.5, 0.1))
        exact = np.asarray(kernel_fn(x, None, "ntk"))
        entk = jax.jit(lambda p: _entk(apply_fn, p, x))
        errs = [_rel(entk(init_fn(jax.random.PRNGKey(s), x.shape)[1]), exact) for s in seeds]
        mean_errors.append(np.mean(errs))
    slope = _slope(widths, mean_errors)
    assert -0.7 < slope < -0.35, (mean_errors, slope)


def test_entk_matches_ntk_empirical_module():
    """Our eNTK helper agrees with ntk.empirical_ntk_fn on a stax network (cross-check)."""
    from ntk import empirical_ntk_fn

    x = _inputs(3, 4, 7)
    init_fn, apply_fn, _ = stax.serial(stax.Dense(32, 1.2, 0.1), stax.Gelu(), stax.Dense(1))
    params = init_fn(jax.random.PRNGKey(0), x.shape)[1]
    theirs = empirical_ntk_fn(apply_fn)(x, None, params)
    np.testing.assert_allclose(np.asarray(theirs), np.asarray(_entk(apply_fn, params, x)),
                               rtol=1e-10, atol=1e-12)


def test_running_estimates_equal_standalone_estimates():
    x1, x2 = _inputs(3, 4, 1), _inputs(2, 4, 2)
    init_fn, apply_fn, _ = stax.serial(stax.Dense(16), stax.Relu(), stax.Dense(2))
    key = jax.random.PRNGKey(4)
    running = list(monte_carlo_kernel_fn(init_fn, apply_fn, key, (3, 7))(x1, x2))
    alone_fn = monte_carlo_kernel_fn(init_fn, apply_fn, key, 7)
    alone = alone_fn(x1, x2)
    assert isinstance(alone, MonteCarloKernel) and alone.n_samples == 7
    nngp, ntk = alone  # neural-tangents' pair unpacks
    assert nngp is alone.nngp and ntk is alone.ntk and len(alone) == 2
    assert [r.n_samples for r in running] == [3, 7]
    np.testing.assert_allclose(running[-1].nngp, alone.nngp, rtol=1e-12)
    np.testing.assert_allclose(running[-1].ntk, alone.ntk, rtol=1e-12)
    # get semantics: a name -> array, a tuple -> namedtuple in that order
    pair = alone_fn(x1, x2, ("ntk", "nngp"))
    assert pair._fields == ("ntk", "nngp")
    np.testing.assert_allclose(pair.ntk, alone.ntk, rtol=1e-12)


@pytest.mark.parametrize("x2_none", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_blocks_equal_the_unbatched_estimate(x2_none):
    """neural-tangents' positional ``(..., n_samples, batch_size, device_count,
    store_on_device)``: blocks of rows and columns come from the same sampled networks, so the
    assembled estimate is the unbatched one (single count and running counts alike)."""
    x1, x2 = _inputs(4, 4, 1), _inputs(6, 4, 2)
    x2 = None if x2_none else x2
    init_fn, apply_fn, _ = stax.serial(stax.Dense(16, b_std=0.1), stax.Relu(), stax.Dense(2))
    key = jax.random.PRNGKey(6)
    whole = monte_carlo_kernel_fn(init_fn, apply_fn, key, 3)(x1, x2)
    for store in (True, False):
        blocks = monte_carlo_kernel_fn(init_fn, apply_fn, key, 3, 2, -1, store)(x1, x2)
        assert isinstance(blocks, MonteCarloKernel) and blocks.n_samples == 3
        np.testing.assert_allclose(blocks.nngp, whole.nngp, rtol=1e-12)
        np.testing.assert_allclose(blocks.ntk, whole.ntk, rtol=1e-12)
    running = list(monte_carlo_kernel_fn(init_fn, apply_fn, key, (1, 3), batch_size=2,
                                         trace_axes=())(x1, x2, "ntk"))
    alone = monte_carlo_kernel_fn(init_fn, apply_fn, key, 3, trace_axes=())(x1, x2, "ntk")
    assert running[-1].shape == alone.shape == (4, 4 if x2_none else 6, 2, 2)
    np.testing.assert_allclose(running[-1], alone, rtol=1e-12)


def test_block_arguments_are_checked_when_built():
    init_fn, apply_fn, _ = stax.serial(stax.Dense(4), stax.Relu(), stax.Dense(1))
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="batch_size"):
        monte_carlo_kernel_fn(init_fn, apply_fn, key, 2, batch_size=-1)
    with pytest.raises(NotImplementedError, match="device_count=2"):
        monte_carlo_kernel_fn(init_fn, apply_fn, key, 2, device_count=2)
    with pytest.raises(TypeError, match="store_on_device"):
        monte_carlo_kernel_fn(init_fn, apply_fn, key, 2, store_on_device="no")
    with pytest.raises(ValueError, match="must divide"):
        monte_carlo_kernel_fn(init_fn, apply_fn, key, 2, batch_size=3)(np.ones((4, 3)))


def test_fast_path_matches_ntk_empirical_path():
    """The vmapped Jacobian-contraction sampler equals the sample-by-sample ntk.empirical one."""
    x1, x2 = _inputs(3, 4, 1), _inputs(2, 4, 2)
    init_fn, apply_fn, _ = stax.serial(stax.Dense(16, b_std=0.1), stax.Erf(), stax.Dense(3))
    key = jax.random.PRNGKey(5)
    fast = monte_carlo_kernel_fn(init_fn, apply_fn, key, 5)(x1, x2)
    slow = monte_carlo_kernel_fn(init_fn, apply_fn, key, 5, implementation="ntvp")(x1, x2)
    np.testing.assert_allclose(fast.nngp, slow.nngp, rtol=1e-10)
    np.testing.assert_allclose(fast.ntk, slow.ntk, rtol=1e-10)


def test_bad_arguments():
    init_fn, apply_fn, _ = stax.serial(stax.Dense(4), stax.Relu(), stax.Dense(1))
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="n_samples"):
        monte_carlo_kernel_fn(init_fn, apply_fn, key, 0)
    with pytest.raises(ValueError, match="increasing"):
        monte_carlo_kernel_fn(init_fn, apply_fn, key, (8, 4))
    fn = monte_carlo_kernel_fn(init_fn, apply_fn, key, 2)
    with pytest.raises(ValueError, match="x1.shape=.*x2.shape"):
        fn(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="unknown kernel name"):
        fn(np.ones((2, 3)), None, "cov1")
    with pytest.raises(ValueError, match="non-finite"):
        fn(np.full((2, 3), np.nan))


@pytest.mark.slow  # ~7 s: one compiled empirical kernel per sample shape (make test-all)
def test_stochastic_layers_get_a_key_per_sample_as_in_neural_tangents():
    """A network that runs only with ``rng`` (``Dropout`` in train mode) is sampled with a key
    per network, without the caller passing one: its estimate approaches the analytic
    kernel, which has ``1 / rate`` on the diagonal (one mask per input) and the plain
    kernel off it."""
    x = _inputs(3, 4, 5)
    init_fn, apply_fn, kernel_fn = stax.serial(stax.Dense(256, 1.2, 0.1), stax.Relu(),
                                               stax.Dropout(0.5), stax.Dense(256))
    # 16 networks x 256 outputs averaged (trace_axes=(-1,)): a few per cent of noise
    mc = monte_carlo_kernel_fn(init_fn, apply_fn, jax.random.PRNGKey(8), 16)(x, None, "nngp")
    exact = np.asarray(kernel_fn(x, None, "nngp"))
    np.testing.assert_allclose(mc, exact, atol=0.1 * np.max(exact))
    assert np.min(np.diag(exact)) > 1.5 * np.max(np.abs(exact - np.diag(np.diag(exact))))
