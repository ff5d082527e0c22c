"""Eigenlearning (KRR) and the RF eigenframework (Simon, Karkada, Ghosh & Belkin 2023) against
truths that do not share their derivation.

* Monte Carlo: ridge regression and random-feature ridge regression actually fitted on Gaussian
  data whose covariance has a power-law spectrum; for Gaussian data the population test MSE of a
  fitted linear predictor is exact (``|v - beta_hat|^2 + sigma^2``), so only the trials' spread
  and the estimate's finite-``n`` corrections separate the two (tolerance: a few percent plus
  three standard errors).
* Closed forms for an isotropic spectrum (Marchenko-Pastur): Hastie, Montanari, Rosset &
  Tibshirani (2022)'s ridgeless risks and their ridge risk through the Marchenko-Pastur
  Stieltjes transform (differentiated with sympy), and Dobriban & Wager (2018)'s optimal ridge
  ``lambda* = gamma sigma^2 / r^2``.
* The defining equations' residuals, ``k -> inf`` (RF -> KRR, at rate ``1/k``), and the
  paper's Section 4 result (at the optimal ridge the predicted MSE falls in ``n`` and ``k``).
"""
import math

import numpy as np
import pytest
import sympy

from limits import eigenlearning as el
from limits.scaling import loglog_slope


def power_law_task(m=400, alpha=1.5, beta=1.3):
    """``lambda_i ~ i^-alpha`` (trace 1), ``v_i^2 ~ i^-beta`` (``|v| = 1``)."""
    i = np.arange(1, m + 1)
    lam = i ** -alpha
    v = np.sqrt(i ** -beta)
    return lam / lam.sum(), v / np.linalg.norm(v)


def monte_carlo(lam, v, n, ridge, noise_variance, trials, n_features=None, seed=0):
    """Population test MSE and train MSE of ridge regression (``n_features=None``: on the kernel
    ``x^T diag(lam) x``; otherwise on ``k`` Gaussian random features ``W diag(lam)^1/2 x /
    sqrt(k)``) fitted on ``n`` Gaussian samples ``x ~ N(0, I)``, ``y = v.x + noise``. Returns
    ``(mean test, standard error of test, mean train)``."""
    rng = np.random.default_rng(seed)
    m = len(lam)
    tests, trains = [], []
    for _ in range(trials):
        x = rng.standard_normal((n, m))
        y = x @ v + math.sqrt(noise_variance) * rng.standard_normal(n)
        if n_features is None:
            lift = np.diag(np.sqrt(lam))                       # feature map x -> lift x
        else:
            lift = rng.standard_normal((n_features, m)) * np.sqrt(lam) / math.sqrt(n_features)
        features = x @ lift.T
        if ridge > 0 or features.shape[1] >= n:                # dual: (F F^T + delta I) a = y
            weights = features.T @ np.linalg.solve(features @ features.T + ridge * np.eye(n), y)
        else:                                                  # ridgeless, k < n: least squares
            weights = np.linalg.lstsq(features, y, rcond=None)[0]
        beta = lift.T @ weights                                # f(x) = beta . x
        tests.append(np.sum((v - beta) ** 2) + noise_variance)
        trains.append(np.mean((y - features @ weights) ** 2))
    tests = np.asarray(tests)
    return tests.mean(), tests.std(ddof=1) / math.sqrt(trials), float(np.mean(trains))


# --------------------------------------------------------------------------- the equations

SPECTRA = {
    "power_law": power_law_task()[0],
    "isotropic_with_zeros": np.concatenate([np.full(50, 0.02), np.zeros(10)]),
    "random": np.random.default_rng(1).exponential(size=300) ** 3,
}


@pytest.mark.parametrize("spectrum", list(SPECTRA))
@pytest.mark.parametrize("n, ridge", [(10, 0.0), (40, 0.0), (40, 1e-4), (200, 0.3),
                                      (1000, 1e-6), (1000, 0.0)])
def test_kappa_solves_its_equation(spectrum, n, ridge):
    lam = SPECTRA[spectrum]
    kappa = el.effective_regularization(lam, n, ridge)
    positive = int(np.sum(lam > 0))
    if ridge == 0 and n >= positive:
        assert kappa == 0.0                    # underparameterised: no positive root
        return
    lhs = np.sum(lam / (lam + kappa)) + ridge / kappa
    assert kappa > 0 and lhs == pytest.approx(n, rel=1e-10)


@pytest.mark.parametrize("n, k, ridge", [(100, 30, 1e-3), (30, 100, 1e-3), (100, 100, 0.5),
                                         (100, 30, 0.0), (30, 100, 0.0), (1000, 2000, 1e-8)])
def test_rf_pair_solves_both_equations(n, k, ridge):
    lam = SPECTRA["power_law"]
    kappa, gamma = el.rf_effective_regularization(lam, n, k, ridge)
    df1 = np.sum(lam / (lam + gamma))
    assert gamma > 0
    if ridge > 0:
        assert df1 + ridge / kappa == pytest.approx(n, rel=1e-10)
        assert df1 + k * kappa / gamma == pytest.approx(k, rel=1e-10)
    else:                                      # ridgeless: df1 = min(n, k), kappa = 0 if n >= k
        assert df1 == pytest.approx(min(n, k), rel=1e-10)
        assert kappa == (0.0 if n >= k else pytest.approx(gamma * (1 - n / k), rel=1e-12))


def test_one_mode_kappa_is_the_quadratic_root():
    """One eigenvalue: ``lam / (lam + kappa) + delta / kappa = n`` is the quadratic
    ``n kappa^2 + (n lam - lam - delta) kappa - delta lam = 0``."""
    for lam, n, delta in [(1.0, 3, 0.5), (0.2, 1.5, 2.0), (5.0, 10, 1e-3)]:
        b = n * lam - lam - delta
        root = (-b + math.sqrt(b * b + 4 * n * delta * lam)) / (2 * n)
        assert el.effective_regularization([lam], n, delta) == pytest.approx(root, rel=1e-12)


# --------------------------------------------------------------------------- Monte Carlo


@pytest.mark.parametrize("n, ridge, noise", [(200, 0.0, 0.0), (200, 0.0, 0.1), (200, 1e-2, 0.1),
                                             (100, 1e-3, 0.0)])
def test_krr_test_and_train_mse_match_monte_carlo(n, ridge, noise):
    lam, v = power_law_task()
    pred = el.krr_prediction(lam, v, n, ridge, noise)
    mean, sem, train = monte_carlo(lam, v, n, ridge, noise, trials=20, seed=n)
    assert abs(mean - pred.test_mse) <= 0.03 * pred.test_mse + 3 * sem
    if ridge == 0:
        assert pred.train_mse < 1e-20 and train < 1e-12          # interpolation
    else:
        assert train == pytest.approx(pred.train_mse, rel=0.08)


@pytest.mark.parametrize("n, k, ridge, noise", [(200, 100, 0.0, 0.1), (200, 400, 0.0, 0.1),
                                                (200, 400, 1e-2, 0.0), (100, 100, 0.1, 0.1)])
def test_rf_test_and_train_mse_match_monte_carlo(n, k, ridge, noise):
    lam, v = power_law_task()
    pred = el.rf_prediction(lam, v, n, k, ridge, noise)
    mean, sem, train = monte_carlo(lam, v, n, ridge, noise, trials=20, n_features=k,
                                   seed=n + k)
    assert abs(mean - pred.test_mse) <= 0.04 * pred.test_mse + 3 * sem
    if ridge == 0 and n < k:
        assert pred.train_mse == 0.0 and train < 1e-12
    else:
        assert train == pytest.approx(pred.train_mse, rel=0.08)


@pytest.mark.slow
@pytest.mark.parametrize("n, k, ridge", [(1000, None, 0.0), (1000, None, 1e-3), (500, 250, 0.0),
                                         (500, 450, 1e-4), (500, 1000, 0.0), (500, 2000, 1e-3)])
def test_larger_monte_carlo_within_two_percent(n, k, ridge):
    lam, v = power_law_task(m=1500)
    pred = el.rf_prediction(lam, v, n, math.inf if k is None else k, ridge, 0.05)
    mean, sem, _ = monte_carlo(lam, v, n, ridge, 0.05, trials=30, n_features=k, seed=7)
    assert abs(mean - pred.test_mse) <= 0.02 * pred.test_mse + 3 * sem


# --------------------------------------------------------------------------- k -> inf


def test_infinite_features_is_krr_and_the_gap_closes_like_one_over_k():
    lam, v = power_law_task()
    for n, ridge in [(50, 0.0), (200, 1e-3), (300, 0.5)]:
        krr = el.krr_prediction(lam, v, n, ridge, 0.1)
        rf = el.rf_prediction(lam, v, n, math.inf, ridge, 0.1)
        assert rf.kappa == rf.gamma == krr.kappa
        for a, b in [(rf.test_mse, krr.test_mse), (rf.train_mse, krr.train_mse),
                     (rf.overfitting_coefficient, krr.overfitting_coefficient)]:
            assert a == pytest.approx(b, rel=1e-14)
        ks = np.array([1e4, 1e5, 1e6, 1e7])
        gaps = [abs(el.rf_prediction(lam, v, n, k, ridge, 0.1).test_mse / krr.test_mse - 1)
                for k in ks]
        assert loglog_slope(ks, gaps) == pytest.approx(-1.0, abs=0.05)
        assert gaps[-1] < 1e-4


# --------------------------------------------------------------------------- isotropic closed forms


def mp_ridge_risk(aspect, lam_h, signal, noise):
    """Hastie et al. (2022), isotropic features, ridge ``lam_h`` on ``(1/n)|y - X b|^2``:
    ``B = lam_h^2 r^2 m'(-lam_h)``, ``V = sigma^2 gamma (m(-lam_h) - lam_h m'(-lam_h))`` with the
    Marchenko-Pastur Stieltjes transform ``m(z)`` of aspect ratio ``gamma = d / n``; the test MSE
    on noisy labels is ``B + V + sigma^2``."""
    z, g = sympy.symbols("z gamma")
    m = (1 - g - z - sympy.sqrt((1 - g - z) ** 2 - 4 * g * z)) / (2 * g * z)
    dm = sympy.diff(m, z)
    at = {z: -lam_h, g: aspect}
    m0, dm0 = float(m.subs(at)), float(dm.subs(at))
    return lam_h ** 2 * signal * dm0 + noise * aspect * (m0 - lam_h * dm0) + noise


@pytest.mark.parametrize("n", [100, 300, 600])
@pytest.mark.parametrize("ridge", [0.05, 0.5, 3.0])
def test_isotropic_ridge_risk_is_marchenko_pastur(n, ridge):
    d, signal, noise = 300, 0.8, 0.3
    lam = np.full(d, 1.0 / d)
    v = np.full(d, math.sqrt(signal / d))
    pred = el.krr_prediction(lam, v, n, ridge, noise)
    # kernel x^T x / d with ridge delta  <=>  (1/n)|y - X b|^2 + (delta d / n) |b|^2
    assert pred.test_mse == pytest.approx(mp_ridge_risk(d / n, ridge * d / n, signal, noise),
                                          rel=1e-9)


@pytest.mark.parametrize("n", [50, 150, 290, 310, 600])
def test_isotropic_ridgeless_risk_and_train_error(n):
    """Hastie et al.'s isotropic ridgeless risks: ``n < d``:
    ``r^2 (1 - n/d) + sigma^2 d / (d - n)``;
    ``n > d``: ``sigma^2 n / (n - d)`` (noisy test labels), train ``sigma^2 (n - d) / n``."""
    d, signal, noise = 300, 0.8, 0.3
    pred = el.krr_prediction(np.full(d, 1.0 / d), np.full(d, math.sqrt(signal / d)), n, 0.0,
                             noise)
    if n < d:
        assert pred.test_mse == pytest.approx(signal * (1 - n / d) + noise * d / (d - n),
                                              rel=1e-10)
        assert pred.train_mse == 0.0
    else:
        assert pred.test_mse == pytest.approx(noise * n / (n - d), rel=1e-12)
        assert pred.train_mse == pytest.approx(noise * (n - d) / n, rel=1e-12)
        assert pred.kappa == 0.0


def test_ridgeless_threshold_diverges():
    lam, v = power_law_task(m=50)
    assert math.isinf(el.krr_prediction(lam, v, 50, 0.0, 0.1).overfitting_coefficient)
    assert math.isinf(el.rf_prediction(lam, v, 30, 30, 0.0, 0.1).test_mse)


@pytest.mark.parametrize("n", [60, 300, 900])
def test_isotropic_optimal_ridge_is_dobriban_wager(n):
    """``lambda* = gamma sigma^2 / r^2`` on ``(1/n)|y - Xb|^2``, i.e. ``delta* = sigma^2 tr(K) /
    r^2`` on the kernel matrix, whatever ``n``."""
    d, signal, noise = 300, 0.8, 0.3
    best = el.optimal_ridge(np.full(d, 1.0 / d), np.full(d, math.sqrt(signal / d)), n,
                            noise_variance=noise)
    assert best.ridge == pytest.approx(noise * 1.0 / signal, rel=1e-5)


# --------------------------------------------------------------------------- the optimal ridge


def test_optimal_ridge_is_a_minimum_and_zero_when_interpolation_wins():
    lam, v = power_law_task()
    best = el.optimal_ridge(lam, v, 200, 300, noise_variance=0.2)
    mse = lambda r: el.rf_prediction(lam, v, 200, 300, r, 0.2).test_mse
    assert best.ridge > 0 and best.test_mse == pytest.approx(mse(best.ridge), rel=1e-14)
    for r in [0.0, best.ridge * 0.98, best.ridge * 1.02, best.ridge * 10, best.ridge / 10]:
        assert mse(r) >= best.test_mse
    # noiseless isotropic task: the optimum is ridgeless (lambda* = gamma sigma^2 / r^2 = 0)
    assert el.optimal_ridge(np.full(100, 0.01), np.full(100, 0.1), 40).ridge == 0.0


@pytest.mark.parametrize("alpha, beta, noise", [(1.5, 1.3, 0.1), (1.2, 2.0, 0.0), (2.0, 1.1, 0.5)])
def test_more_data_and_features_never_hurt_at_the_optimal_ridge(alpha, beta, noise):
    lam, v = power_law_task(m=300, alpha=alpha, beta=beta)
    ns, ks = [20, 60, 180], [10, 40, 160, 640, math.inf]
    best = np.array([[el.optimal_ridge(lam, v, n, k, noise, grid_points=25,
                                       tolerance=1e-6).test_mse for k in ks] for n in ns])
    assert np.all(np.diff(best, axis=0) <= 1e-9 * best[1:])
    assert np.all(np.diff(best, axis=1) <= 1e-9 * best[:, 1:])


# --------------------------------------------------------------------------- a pool as population


def test_pool_eigensystem_reconstructs_the_kernel_and_the_target():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 5))
    gram = np.exp(-0.5 * np.sum((x[:, None] - x[None]) ** 2, -1))
    y = rng.standard_normal((40, 3))
    lam, coef, u = el.pool_eigensystem(gram, y)
    assert np.all(np.diff(lam) <= 0) and lam.min() >= 0
    np.testing.assert_allclose((u * lam * 40) @ u.T, gram, atol=1e-12)
    phi = math.sqrt(40) * u                                 # orthonormal under the pool's mean
    np.testing.assert_allclose(phi.T @ phi / 40, np.eye(40), atol=1e-12)
    np.testing.assert_allclose(phi @ coef, y, atol=1e-12)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("call, name", [
    (lambda: el.krr_prediction([1.0, -0.1], [1.0, 1.0], 10), "eigenvalues"),
    (lambda: el.krr_prediction([0.0, 0.0], [1.0, 1.0], 10), "eigenvalues"),
    (lambda: el.krr_prediction([1.0, 0.5], [1.0], 10), "target_coefficients"),
    (lambda: el.krr_prediction([1.0, 0.5], [1.0, 1.0], 0), "n_samples"),
    (lambda: el.krr_prediction([1.0, 0.5], [1.0, 1.0], 10, -1.0), "ridge"),
    (lambda: el.krr_prediction([1.0, 0.5], [1.0, 1.0], 10, 0.0, math.nan), "noise_variance"),
    (lambda: el.rf_prediction([1.0, 0.5], [1.0, 1.0], 10, 0), "n_features"),
    (lambda: el.pool_eigensystem(np.ones((3, 4)), np.ones(3)), "gram"),
    (lambda: el.pool_eigensystem(np.eye(3), np.ones(4)), "targets"),
])
def test_bad_arguments_are_refused_by_name(call, name):
    with pytest.raises(ValueError, match=name):
        call()
    with pytest.raises(TypeError, match="n_samples"):
        el.krr_prediction([1.0], [1.0], "10")
