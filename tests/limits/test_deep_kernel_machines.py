"""Deep kernel machines (Yang et al. 2023) against truths that do not share their derivation.

* The kernel maps against :mod:`ntk.stax`'s NNGP of the matching network; the likelihood and
  the KL against ``scipy.stats.multivariate_normal`` (the KL by Monte Carlo over samples).
* The whitened parametrisation's shortcut KL against the Cholesky one, its round trip, and the
  objective's autodiff gradient against central finite differences.
* The maximiser: as ``nu -> inf`` it tends to the stax NNGP Grams at rate ``1/nu`` (first-order
  perturbation of a maximum held by a ``nu``-weighted term); at finite ``nu`` the gradient in
  the Grams themselves vanishes; for the deep linear DKM with one layer and no noise it is the
  closed-form root of ``nu G K^-1 G - (nu - C) G = Y Y^T`` (derived by hand below).
* Prediction: at ``nu = inf`` it is NNGP regression (stax kernels, :func:`ntk.predict.
  gp_inference`); at finite ``nu`` a training input's propagated Grams are its learned ones.

The default suite runs the KL, likelihood, gradient, ``nu -> inf`` and stationarity checks (and
the quick study checks ``nu = inf`` prediction against stax); the rest is ``slow``.
"""
import math

import numpy as np
import pytest
import scipy.stats
from threadpoolctl import threadpool_limits

from experiments import deep_kernel_machines as study
from limits import deep_kernel_machines as dkm
from ntk import stax
from ntk.predict import gp_inference

# The fits below share one shape, P = 24 training inputs, depth 2, ReLU, and the scales and test
# shape of the synthetic task of experiments/deep_kernel_machines.py (whose stax network gives the
# reference NNGPs): their compiled programs (the fit's objective, the predictive, the stax
# kernels) are the quick study's, compiled once per test session.
W_STD, B_STD = math.sqrt(2.0), 1.0
P, DEPTH = 24, 2


@pytest.fixture(autouse=True)
def one_blas_thread():
    """The fits solve many small systems: BLAS threads only spin."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def task():
    """The chirp of the synthetic task: 24 training inputs, 72 test inputs, with their stax
    NNGPs ``G_1, G_2`` (training block) and top kernel (joint), by the study's stax network."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-2.0, 2.0, (P + 72, 1))
    y = np.sin(2 * np.pi * x / (x + 3)) + 0.1 * rng.standard_normal(x.shape)
    return x[:P], y[:P], x[P:], study.stax_nngps(x, DEPTH, W_STD, B_STD)


def _gram(x):
    return W_STD ** 2 * x @ x.T / x.shape[1] + B_STD ** 2


def _random_spd(rng, p, scale=1.0):
    a = rng.standard_normal((p, p))
    return scale * (a @ a.T / p + 0.3 * np.eye(p))


def _stax_nngp(x, n_layers, activation="relu", x2=None):
    """NNGP of ``serial(Dense, *[phi, Dense] * n_layers)`` with the module's W_std, b_std."""
    phi = {"relu": stax.Relu, "erf": stax.Erf, "gelu": stax.Gelu, "identity": stax.Identity}
    layers = [stax.Dense(1, W_STD, B_STD)]
    for _ in range(n_layers):
        layers += [phi[activation](), stax.Dense(1, W_STD, B_STD)]
    _, _, kernel_fn = stax.serial(*layers)
    return np.asarray(kernel_fn(x, x2, "nngp"))


@pytest.fixture(scope="module")
def tabular():
    """24 points in 3 dimensions: Grams far better conditioned than the 1-D task's (whose input
    Gram has rank 2), for checks that difference or invert them."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((P, 3))
    y = np.stack([np.sin(2 * x[:, 0]), x[:, 1] * x[:, 2]], 1) + 0.1 * rng.standard_normal((P, 2))
    return x, y


def _relu_dual(g):
    """The ReLU arc-cosine map and its partial derivatives in NumPy (Cho & Saul 2009): with
    ``theta = arccos(G_ij / sqrt(G_ii G_jj))``, ``T = sqrt(G_ii G_jj) (sin theta + (pi - theta)
    cos theta) / (2 pi)``, ``dT/dG_ij = (pi - theta) / (2 pi)`` and, T being homogeneous of
    degree 1 and symmetric in ``(G_ii, G_jj)``, ``dT/dG_ii = (T - G_ij dT/dG_ij) / (2 G_ii)``."""
    d = np.diag(g)
    norm = np.sqrt(np.outer(d, d))
    theta = np.arccos(np.clip(g / norm, -1.0, 1.0))
    t = norm * (np.sin(theta) + (np.pi - theta) * np.cos(theta)) / (2 * np.pi)
    t_dot = (np.pi - theta) / (2 * np.pi)
    return t, t_dot, (t - g * t_dot) / (2 * d[:, None])


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["relu", "erf", "gelu", "identity"])
def test_nngp_grams_are_the_stax_nngp(activation):
    x = np.random.default_rng(1).standard_normal((6, 4))
    g0 = dkm.input_gram(x, W_STD, B_STD)
    np.testing.assert_allclose(g0, _stax_nngp(x, 0, activation), rtol=1e-12)
    grams = dkm.nngp_grams(g0, 3, activation, W_STD, B_STD)
    for l in range(3):
        np.testing.assert_allclose(grams[l], _stax_nngp(x, l + 1, activation), rtol=1e-10,
                                   atol=1e-12)


def test_log_likelihood_is_the_gaussian_density():
    rng = np.random.default_rng(2)
    k, y = _random_spd(rng, 5), rng.standard_normal((5, 3))
    want = sum(scipy.stats.multivariate_normal(np.zeros(5), k + 0.2 * np.eye(5)).logpdf(y[:, c])
               for c in range(3))
    assert float(dkm.log_likelihood(k, y, 0.2)) == pytest.approx(want, rel=1e-12)


def test_kl_divergence_against_monte_carlo():
    """``KL(N(0, G) || N(0, K)) = E_{f ~ N(0, G)}[log N(f; 0, G) - log N(f; 0, K)]`` estimated
    from 100,000 draws (scipy's densities): within 4 standard errors, and 0 at ``G = K``."""
    rng = np.random.default_rng(3)
    g, k = _random_spd(rng, 4), _random_spd(rng, 4, 1.5)
    f = rng.multivariate_normal(np.zeros(4), g, size=100_000)
    log_ratio = (scipy.stats.multivariate_normal(np.zeros(4), g).logpdf(f)
                 - scipy.stats.multivariate_normal(np.zeros(4), k).logpdf(f))
    se = log_ratio.std() / math.sqrt(len(f))
    assert abs(float(dkm.kl_divergence(g, k)) - log_ratio.mean()) < 4 * se
    assert float(dkm.kl_divergence(k, k)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.slow
def test_whitened_factors_round_trip_and_give_the_same_objective(tabular):
    """Grams -> factors -> Grams is the identity; the whitened shortcut KL
    ``1/2 (|U|_F^2 - 2 sum diag V - P)`` agrees with the Cholesky KL of :func:`objective`."""
    x, y = tabular
    rng = np.random.default_rng(4)
    g0 = dkm.input_gram(x, W_STD, B_STD)
    raw = 0.2 * rng.standard_normal((DEPTH, P, P))
    grams = dkm.grams_from_factors(raw, g0, "relu", W_STD, B_STD)
    back = dkm.factors_from_grams(grams, g0, "relu", W_STD, B_STD)
    np.testing.assert_allclose(np.tril(back), np.tril(raw), atol=1e-9)
    args = (g0, y, [2.0, 0.5], "relu", W_STD, B_STD, 0.1)
    assert float(dkm.objective_from_factors(raw, *args)) == pytest.approx(
        float(dkm.objective(grams, *args)), rel=1e-10)
    # V = 0 is the NNGP, where every KL vanishes: the objective is the NNGP's likelihood
    nngp = dkm.nngp_grams(g0, DEPTH, "relu", W_STD, B_STD)
    assert float(dkm.objective_from_factors(np.zeros_like(raw), *args)) == pytest.approx(
        float(dkm.log_likelihood(dkm.kernel_map(nngp[-1], "relu", W_STD, B_STD), y, 0.1)),
        rel=1e-10)


def test_gradient_against_finite_differences(tabular):
    """The fit's gradient (autodiff of the objective in the whitened factors) against central
    differences along random directions, float64."""
    x, y = tabular
    rng = np.random.default_rng(5)
    g0 = _gram(x)
    raw = 0.1 * rng.standard_normal((DEPTH, P, P))
    args = (g0, y, [1.5, 0.7], "relu", W_STD, B_STD, 0.1)
    _, grad = dkm.objective_and_gradient(raw, *args)
    assert np.all(np.triu(grad, 1) == 0)          # the upper triangle is not a parameter
    h = 1e-5
    for _ in range(3):
        d = np.tril(rng.standard_normal(raw.shape))
        fd = (dkm.objective_and_gradient(raw + h * d, *args)[0]
              - dkm.objective_and_gradient(raw - h * d, *args)[0]) / (2 * h)
        assert np.sum(grad * d) == pytest.approx(fd, rel=1e-6)


def test_large_nu_recovers_the_nngp_at_rate_one_over_nu(task):
    """The maximiser's distance from the stax NNGP Grams falls tenfold per decade of ``nu``
    (first order in ``1/nu``), and ``nu = inf`` returns the NNGP Grams themselves."""
    x, y, _, kernels = task
    nngp = np.stack([k[:P, :P] for k in kernels[:DEPTH]])
    exact = dkm.fit(x, y, DEPTH, math.inf, noise_var=0.01, W_std=W_STD, b_std=B_STD)
    np.testing.assert_allclose(exact.grams, nngp, rtol=1e-10)
    dist = []
    for nu in (1e2, 1e3, 1e4):
        fit = dkm.fit(x, y, DEPTH, nu, noise_var=0.01, W_std=W_STD, b_std=B_STD)
        assert fit.converged
        dist.append(np.linalg.norm(fit.grams - nngp) / np.linalg.norm(nngp))
    ratios = np.asarray(dist[:-1]) / np.asarray(dist[1:])
    assert np.all((9 < ratios) & (ratios < 11)), dist
    assert dist[-1] < 1e-2


def test_prediction_at_nu_inf_is_nngp_regression(task):
    """``nu = inf``: the mean and covariance are those of GP regression with the stax NNGP of
    ``serial(Dense, *[Relu, Dense] * (L + 1))`` (:func:`ntk.predict.gp_inference`)."""
    x, y, x_test, kernels = task
    model = dkm.fit(x, y, DEPTH, math.inf, noise_var=0.01, W_std=W_STD, b_std=B_STD)
    pred = dkm.predict(model, x_test)
    k = kernels[-1]
    want = gp_inference(k[:P, :P], y, diag_reg=0.01, diag_reg_absolute_scale=True)(
        "nngp", k_test_train=k[P:, :P], k_test_test=k[P:, P:])
    np.testing.assert_allclose(pred.mean, want.mean, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(pred.covariance, want.covariance, rtol=1e-7, atol=1e-10)


def test_maximiser_is_stationary_in_the_grams(tabular):
    """At the fitted Grams the objective's gradient in the symmetric Grams, written out by hand
    (no autodiff), vanishes layer by layer. With ``K_l = K(G_{l-1})``, ``S = K_{L+1} + sigma^2
    I``, ``B_{L+1} = dlog P / dK_{L+1} = (S^-1 Y Y^T S^-1 - C S^-1) / 2``,
    ``B_l = -nu_l (K_l^-1 - K_l^-1 G_l K_l^-1) / 2`` (the KL's derivative in its second
    argument) and ``J^T[B] = W^2 (B o dT/dG_ij) + diag(2 W^2 sum_j B_ij dT_ij/dG_ii)`` (the
    elementwise kernel map pulled back), stationarity is

        ``-nu_l (K_l^-1 - G_l^-1) / 2 + J^T[B_{l+1}] = 0``,  l = 1 .. L:

    the KL's pull towards the prior cancels the pull from above, both of order 1, to 1e-5 of
    their size. The learned Grams are not the NNGP's: finite ``nu`` learns."""
    x, y = tabular
    nu, noise = (3.0, 10.0), 0.05
    fit = dkm.fit(x, y, DEPTH, nu, noise_var=noise, W_std=W_STD, b_std=B_STD)
    grams = [_gram(x)] + list(fit.grams)
    kernels, pullbacks = [], []
    for g in grams:
        t, t_dot, t_diag = _relu_dual(g)
        kernels.append(W_STD ** 2 * t + B_STD ** 2)
        pullbacks.append(lambda b, t_dot=t_dot, t_diag=t_diag: W_STD ** 2 * (
            b * t_dot + np.diag(2 * np.sum(b * t_diag, 1))))
    s_inv = np.linalg.inv(kernels[DEPTH] + noise * np.eye(P))
    upstream = (s_inv @ y @ y.T @ s_inv - y.shape[1] * s_inv) / 2
    for l in range(DEPTH, 0, -1):                                  # G_l, l = L .. 1
        k_inv, g_inv = np.linalg.inv(kernels[l - 1]), np.linalg.inv(grams[l])
        prior_pull = -nu[l - 1] * (k_inv - g_inv) / 2
        from_above = pullbacks[l](upstream)
        assert np.linalg.norm(prior_pull) > 0.1
        assert np.linalg.norm(prior_pull + from_above) < 1e-5 * np.linalg.norm(prior_pull)
        upstream = -nu[l - 1] * (k_inv - k_inv @ grams[l] @ k_inv) / 2
    nngp = [grams[0]]
    for _ in range(DEPTH):
        nngp.append(W_STD ** 2 * _relu_dual(nngp[-1])[0] + B_STD ** 2)
    nngp = np.stack(nngp[1:])
    assert np.linalg.norm(fit.grams - nngp) / np.linalg.norm(nngp) > 0.05


@pytest.mark.slow
def test_deep_linear_one_layer_closed_form():
    """Identity activation, one layer, no noise: ``L(G) = log N(Y; 0, G) - nu KL(G || K)`` with
    ``K = X X^T / d``. Setting its gradient to zero,

        ``1/2 G^-1 Y Y^T G^-1 - C/2 G^-1 - nu/2 K^-1 + nu/2 G^-1 = 0``
        ``<=> nu G K^-1 G - (nu - C) G = Y Y^T``,

    and with ``G = K^1/2 H K^1/2``, ``nu H^2 - (nu - C) H = M = K^-1/2 Y Y^T K^-1/2``: ``H``
    shares ``M``'s eigenvectors with eigenvalues ``h = [(nu - C) + sqrt((nu - C)^2 + 4 nu m)] /
    (2 nu)`` (the positive root; ``nu > C`` keeps ``h > 0`` on ``M``'s null space)."""
    rng = np.random.default_rng(6)
    p, c, nu = 6, 2, 3.0
    x, y = rng.standard_normal((p, 8)), rng.standard_normal((p, c))
    k = x @ x.T / 8
    evals, evecs = np.linalg.eigh(k)
    k_half = evecs @ np.diag(np.sqrt(evals)) @ evecs.T
    k_half_inv = evecs @ np.diag(1 / np.sqrt(evals)) @ evecs.T
    m, q = np.linalg.eigh(k_half_inv @ y @ y.T @ k_half_inv)
    h = ((nu - c) + np.sqrt((nu - c) ** 2 + 4 * nu * np.maximum(m, 0))) / (2 * nu)
    want = k_half @ q @ np.diag(h) @ q.T @ k_half
    fit = dkm.fit(x, y, 1, nu, noise_var=0.0, activation="identity", tol=1e-11)
    np.testing.assert_allclose(fit.grams[0], want, rtol=1e-5, atol=1e-6 * np.abs(want).max())


@pytest.mark.slow
def test_training_inputs_propagate_to_their_learned_grams(task):
    """Conditioning a training input's features on the training features returns them: with
    test inputs equal to training inputs the propagated joint Grams repeat the learned ones, and
    the predictive mean there is the GP posterior mean of the top kernel at the training
    points."""
    x, y, _, _ = task
    model = dkm.fit(x, y, DEPTH, 3.0, noise_var=0.01, W_std=W_STD, b_std=B_STD)
    rows = np.array([1, 2, 4])
    joint = dkm.propagate(model.grams, x, x[rows], "relu", W_STD, B_STD)
    for l in range(DEPTH):
        g = np.asarray(joint[l + 1])
        np.testing.assert_allclose(g[P:, :P], model.grams[l][rows], rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(g[P:, P:], model.grams[l][np.ix_(rows, rows)], rtol=1e-7,
                                   atol=1e-9)
    k = np.asarray(dkm.kernel_map(model.grams[-1], "relu", W_STD, B_STD))
    posterior = k @ np.linalg.solve(k + 0.01 * np.eye(P), y)
    np.testing.assert_allclose(dkm.predict(model, x[rows]).mean, posterior[rows], rtol=1e-7,
                               atol=1e-9)


def test_bad_input_is_a_clear_error(task):
    x, y, _, _ = task
    with pytest.raises(ValueError, match="nu"):
        dkm.fit(x, y, DEPTH, [1.0, math.inf], noise_var=0.1)
    with pytest.raises(ValueError, match="nu"):
        dkm.fit(x, y, DEPTH, [1.0, 2.0, 3.0], noise_var=0.1)
    with pytest.raises(ValueError, match="nu"):
        dkm.fit(x, y, DEPTH, -1.0, noise_var=0.1)
    with pytest.raises(ValueError, match="y"):
        dkm.fit(x, y[:-1], DEPTH, 1.0, noise_var=0.1)
    with pytest.raises(ValueError, match="depth"):
        dkm.fit(x, y, 0, 1.0, noise_var=0.1)
    with pytest.raises(ValueError, match="noise_var"):
        dkm.fit(x, y, DEPTH, 1.0, noise_var=-0.1)
    with pytest.raises(ValueError, match="activation"):
        dkm.kernel_map(np.eye(3), "swish")
    with pytest.raises(ValueError, match="gram"):
        dkm.kernel_map(np.ones((3, 4)))
    with pytest.raises(TypeError, match="DKMFit"):
        dkm.predict((1, 2), x)


@pytest.mark.slow
def test_singular_start_is_a_clear_error():
    """Duplicate inputs without a bias: the NNGP start is singular."""
    with pytest.raises(ValueError, match="positive definite"):
        dkm.fit(np.ones((3, 2)), np.ones(3), 1, 1.0, noise_var=0.0, activation="identity")
