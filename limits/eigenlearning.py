"""Eigenlearning: test and train MSE of kernel and random-feature ridge regression from the
kernel's eigenvalues and the target's eigencoefficients.

The task. A kernel ``K(x, x') = sum_i lambda_i phi_i(x) phi_i(x')`` with eigenfunctions
orthonormal under the data distribution (``E_x[phi_i(x) phi_j(x)] = delta_ij``), a target
``y(x) = sum_i v_i phi_i(x) + noise`` with noise variance ``sigma^2``, ``n`` i.i.d. samples and
a ridge ``delta`` on the unnormalised kernel matrix:
``f_hat(x) = K(x, X) (K(X, X) + delta I_n)^-1 y``. Random-feature ridge regression replaces
``K`` by ``K_k(x, x') = (1/k) sum_{j<=k} g_j(x) g_j(x')`` with ``k`` i.i.d. random features
whose average is ``K`` (``E_g[g(x) g(x')] = K(x, x')``), so ``k -> inf`` is kernel ridge
regression (KRR).

KRR (Simon, Dickens, Karkada & DeWeese 2021, "The Eigenlearning Framework", arXiv:2110.03922;
the same estimate as Bordelon, Canatar & Pehlevan 2020 and Jacot et al. 2020). The effective
regularisation ``kappa`` solves

    sum_i lambda_i / (lambda_i + kappa) + delta / kappa = n,

the learnabilities are ``L_i = lambda_i / (lambda_i + kappa)``, the overfitting coefficient
``E0 = n / (n - sum_i L_i^2)``, and

    test MSE  = E0 (sum_i (1 - L_i)^2 v_i^2 + sigma^2),
    train MSE = (delta / (n kappa))^2 test MSE = (1 - sum_i L_i / n)^2 test MSE.

Random features (Simon, Karkada, Ghosh & Belkin 2023, "More is Better in Modern Machine
Learning: when Infinite Overparameterization is Optimal and Overfitting is Obligatory",
arXiv:2311.14646, Section 4, the "RF eigenframework"). With ``L_i = lambda_i / (lambda_i +
gamma)``, ``df1 = sum_i L_i``, ``df2 = sum_i L_i^2``, the pair ``(kappa, gamma)`` solves

    n = df1(gamma) + delta / kappa,        k = df1(gamma) + k kappa / gamma,

and with ``E0 = 1 / (1 - [df2 (k - 2 df1) + df1^2] / (n (k - df2)))``

    test MSE  = E0 (sum_i v_i^2 (1 - L_i) (1 - L_i (k - df1) / (k - df2)) + sigma^2),
    train MSE = (delta / (n kappa))^2 test MSE = (1 - df1 / n)^2 test MSE.

As ``k -> inf``: ``gamma = kappa``, ``E0 -> n / (n - df2)`` and the bias weights
``-> (1 - L_i)^2``: the KRR estimate. The paper's Section 4 result (from these equations): at
the optimal ridge the test MSE falls monotonically in both ``n`` and ``k``.

Ridgeless limits are handled exactly: at ``delta = 0`` the equations are solved at
``min(n, k)`` (``df1(gamma) = min(n, k)``; ``gamma = 0`` once ``min(n, k)`` reaches the number
of positive eigenvalues) and ``E0`` is infinite at the interpolation threshold ``n = k`` (or
``n`` = the number of modes).

Test MSE includes the noise on the test labels (its ``n -> inf`` limit is ``sigma^2`` plus the
target's power on zero eigenvalues); subtract ``sigma^2`` for the error against the clean
target. Multi-output targets: ``target_coefficients`` ``(M, O)`` gives MSE summed over the
``O`` outputs (``v_i^2 = sum_o v_io^2``).

Everything is float64 numpy (the root finds are safeguarded Newton iterations in
``log kappa`` on monotone functions, converged to rounding).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = ["KRRPrediction", "RFPrediction", "OptimalRidge", "effective_regularization",
           "krr_prediction", "rf_effective_regularization", "rf_prediction", "optimal_ridge",
           "pool_eigensystem"]


class KRRPrediction(NamedTuple):
    """The KRR eigenlearning estimate (see the module docstring for the formulas).

    kappa: effective regularisation; learnabilities: ``L_i`` ``(M,)``;
    overfitting_coefficient: ``E0``; test_mse, train_mse: predicted MSEs."""
    kappa: float
    learnabilities: np.ndarray
    overfitting_coefficient: float
    test_mse: float
    train_mse: float


class RFPrediction(NamedTuple):
    """The random-feature estimate: ``kappa`` and ``gamma`` solve the two equations,
    ``learnabilities`` are ``lambda_i / (lambda_i + gamma)``."""
    kappa: float
    gamma: float
    learnabilities: np.ndarray
    overfitting_coefficient: float
    test_mse: float
    train_mse: float


class OptimalRidge(NamedTuple):
    """The ridge minimising the predicted test MSE, and that MSE."""
    ridge: float
    test_mse: float


# --------------------------------------------------------------------------- validation


def _eigenvalues(eigenvalues) -> np.ndarray:
    lam = np.asarray(eigenvalues, dtype=np.float64)
    if lam.ndim != 1 or lam.size == 0:
        raise ValueError(f"eigenvalues: expected a non-empty (M,) array, got shape {lam.shape}")
    if not np.all(np.isfinite(lam)) or np.any(lam < 0):
        raise ValueError("eigenvalues: expected finite values >= 0 (clip a numerical "
                         f"eigendecomposition's round-off first), got min {lam.min()!r}")
    if not np.any(lam > 0):
        raise ValueError("eigenvalues: expected at least one positive eigenvalue")
    return lam


def _coefficient_power(target_coefficients, m: int) -> np.ndarray:
    v = np.asarray(target_coefficients, dtype=np.float64)
    if v.ndim not in (1, 2) or v.shape[0] != m:
        raise ValueError(f"target_coefficients: expected (M,) or (M, O) with M = {m} (one per "
                         f"eigenvalue), got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError("target_coefficients: expected finite values")
    return v ** 2 if v.ndim == 1 else np.sum(v ** 2, axis=1)


def _count(name: str, value, allow_inf: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    value = float(value)
    if allow_inf and value == math.inf:
        return value
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: expected a positive finite number"
                         f"{' or inf' if allow_inf else ''}, got {value!r}")
    return value


def _nonnegative(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    return value


# --------------------------------------------------------------------------- root finding


def _decreasing_root(fn, lo: float, hi: float) -> float:
    """The root of a decreasing ``fn`` on ``[lo, hi]`` (``fn(lo) >= 0 >= fn(hi)``, ``0 < lo``),
    by Newton steps in ``t = log x`` kept inside the bracket (bisection otherwise).
    ``fn(x) -> (value, d value / d log x)``; ``value`` may be ``+inf`` left of the domain."""
    t_lo, t_hi = math.log(lo), math.log(hi)
    t = 0.5 * (t_lo + t_hi)
    for _ in range(300):
        f, slope = fn(math.exp(t))
        if f > 0:
            t_lo = t
        elif f < 0:
            t_hi = t
        else:
            break
        newton = t - f / slope if (math.isfinite(f) and slope < 0) else math.nan
        t_next = newton if t_lo < newton < t_hi else 0.5 * (t_lo + t_hi)
        converged = abs(t_next - t) <= 1e-15 * max(1.0, abs(t))
        t = t_next
        if converged or t_hi - t_lo <= 1e-15 * max(1.0, abs(t)):
            break
    return math.exp(t)


def _df(lam: np.ndarray, scale: float):
    """``df1 = sum L``, ``df2 = sum L^2`` at ``L = lam / (lam + scale)``."""
    learn = lam / (lam + scale)
    return learn, float(learn.sum()), float(learn @ learn)


def _solve_df(lam: np.ndarray, target: float) -> float:
    """``scale > 0`` with ``df1(scale) = target`` (``0 < target < #positive eigenvalues``)."""
    positive = lam[lam > 0]
    m = positive.size

    def fn(s):
        _, d1, d2 = _df(positive, s)
        return d1 - target, -(d1 - d2)
    lo = positive.min() * (m - target) / target
    hi = positive.sum() / target
    return _decreasing_root(fn, min(lo, hi), max(lo, hi))


# --------------------------------------------------------------------------- KRR


def effective_regularization(eigenvalues, n_samples, ridge=0.0) -> float:
    """``kappa >= 0`` solving ``sum_i lambda_i / (lambda_i + kappa) + ridge / kappa = n``.

    The left side falls strictly in ``kappa``, so the root is unique; at ``ridge = 0`` it
    exists while ``n`` is below the number ``M+`` of positive eigenvalues, and ``kappa = 0``
    for ``n >= M+`` (the kernel matrix is then rank-deficient: underparameterised).

    Args:
      eigenvalues: ``(M,)`` kernel eigenvalues ``>= 0``.
      n_samples: ``n > 0`` (a real number is accepted).
      ridge: ``delta >= 0`` on the unnormalised kernel matrix.

    Returns: ``kappa`` (float).

    Simon, Dickens, Karkada & DeWeese (2021), "The Eigenlearning Framework: A Conservation
    Law Perspective on Kernel Regression and Wide Neural Networks", arXiv:2110.03922.

    Examples:
      >>> round(effective_regularization([1.0, 1.0], 1, 0.0), 12)   # 2 / (1 + k) = 1
      1.0
    """
    lam = _eigenvalues(eigenvalues)
    return _kappa(lam, _count("n_samples", n_samples), _nonnegative("ridge", ridge))


def _kappa(lam, n, delta) -> float:
    positive = lam[lam > 0]
    if delta == 0:
        return 0.0 if n >= positive.size else _solve_df(positive, n)

    def fn(kappa):
        _, d1, d2 = _df(positive, kappa)
        return d1 + delta / kappa - n, -(d1 - d2) - delta / kappa
    lo = delta / n                                  # delta / kappa = n there: fn >= 0
    hi = (positive.sum() + delta) / n               # fn <= 0 there
    return _decreasing_root(fn, lo, hi)


def krr_prediction(eigenvalues, target_coefficients, n_samples, ridge=0.0,
                   noise_variance=0.0) -> KRRPrediction:
    """Kernel ridge regression's test and train MSE from the eigensystem (eigenlearning).

        sum_i L_i + delta / kappa = n,   L_i = lambda_i / (lambda_i + kappa),
        E0 = n / (n - sum_i L_i^2),
        test MSE  = E0 (sum_i (1 - L_i)^2 v_i^2 + sigma^2),
        train MSE = (delta / (n kappa))^2 test MSE.

    Args:
      eigenvalues: ``(M,)`` ``lambda_i >= 0`` (eigenfunctions orthonormal under the data).
      target_coefficients: ``(M,)`` or ``(M, O)`` ``v_i`` (MSE summed over outputs).
      n_samples: ``n``.
      ridge: ``delta >= 0`` on the unnormalised kernel matrix ``K(X, X) + delta I``.
      noise_variance: ``sigma^2 >= 0`` of the label noise (in train and test labels).

    Returns: :class:`KRRPrediction`. ``E0`` is ``inf`` at ``ridge = 0``, ``n = M+``.

    Simon, Dickens, Karkada & DeWeese (2021), arXiv:2110.03922; Simon, Karkada, Ghosh & Belkin
    (2023), arXiv:2311.14646 (Section 3).
    """
    return _krr(_eigenvalues(eigenvalues), target_coefficients, n_samples, ridge,
                noise_variance)


def _krr(lam, target_coefficients, n_samples, ridge, noise_variance) -> KRRPrediction:
    v2 = _coefficient_power(target_coefficients, lam.size)
    n = _count("n_samples", n_samples)
    delta = _nonnegative("ridge", ridge)
    sigma2 = _nonnegative("noise_variance", noise_variance)
    kappa = _kappa(lam, n, delta)
    learn = lam / (lam + kappa) if kappa > 0 else (lam > 0).astype(np.float64)
    d1, d2 = float(learn.sum()), float(learn @ learn)
    e0 = n / (n - d2) if n > d2 else math.inf
    signal = float(((1 - learn) ** 2) @ v2) + sigma2
    test = e0 * signal if signal > 0 else 0.0
    return KRRPrediction(kappa, learn, e0, test, _train(delta, kappa, n, d1, test))


# --------------------------------------------------------------------------- random features


def rf_effective_regularization(eigenvalues, n_samples, n_features, ridge=0.0):
    """``(kappa, gamma)`` solving the RF eigenframework's two equations

        n = df1(gamma) + delta / kappa,    k = df1(gamma) + k kappa / gamma,
        df1(gamma) = sum_i lambda_i / (lambda_i + gamma).

    Eliminating ``kappa = gamma (1 - df1(gamma) / k)`` leaves one equation in ``gamma``,
    ``df1(gamma) + delta k / (gamma (k - df1(gamma))) = n`` on ``df1(gamma) < k``, whose left
    side falls strictly (``d/dgamma [gamma (k - df1)] = k - df2 > 0``): the root is unique.
    ``n_features = inf`` gives ``gamma = kappa``, the KRR value. At ``ridge = 0``,
    ``df1(gamma) = min(n, k)`` and ``kappa = 0`` once ``n >= k``.

    Returns: ``(kappa, gamma)`` floats.

    Simon, Karkada, Ghosh & Belkin (2023), "More is Better in Modern Machine Learning: when
    Infinite Overparameterization is Optimal and Overfitting is Obligatory", arXiv:2311.14646.
    """
    lam = _eigenvalues(eigenvalues)
    n = _count("n_samples", n_samples)
    k = _count("n_features", n_features, allow_inf=True)
    delta = _nonnegative("ridge", ridge)
    return _rf_solve(lam, n, k, delta)


def _rf_solve(lam, n, k, delta):
    if k == math.inf:
        kappa = _kappa(lam, n, delta)
        return kappa, kappa
    positive = lam[lam > 0]
    if delta == 0:
        m = min(n, k)
        gamma = 0.0 if m >= positive.size else _solve_df(positive, m)
        kappa = gamma * (1 - m / k) if n < k else 0.0
        return kappa, gamma

    def fn(gamma):
        _, d1, d2 = _df(positive, gamma)
        room = gamma * (k - d1)                       # gamma (k - df1) > 0 on the domain
        if room <= 0:
            return math.inf, math.nan
        ridge_term = delta * k / room
        # d/dlog(gamma): df1 -> -(df1 - df2); delta k / room -> -ridge_term gamma (k - df2) / room
        return (d1 + ridge_term - n,
                -(d1 - d2) - ridge_term * gamma * (k - d2) / room)
    s = positive.sum()
    lo = delta / n                                    # fn >= 0 there (or outside the domain)
    hi = max(2 * s / min(n, k), (s + 2 * delta) / n)  # fn <= 0 there
    gamma = _decreasing_root(fn, min(lo, hi), max(lo, hi))
    _, d1, _ = _df(positive, gamma)
    return gamma * (1 - d1 / k), gamma


def rf_prediction(eigenvalues, target_coefficients, n_samples, n_features, ridge=0.0,
                  noise_variance=0.0) -> RFPrediction:
    """Random-feature ridge regression's test and train MSE (the RF eigenframework).

    With ``(kappa, gamma)`` from :func:`rf_effective_regularization`, ``L_i = lambda_i /
    (lambda_i + gamma)``, ``df1 = sum L_i``, ``df2 = sum L_i^2``:

        E0 = 1 / (1 - [df2 (k - 2 df1) + df1^2] / (n (k - df2))),
        test MSE  = E0 (sum_i v_i^2 (1 - L_i) (1 - L_i (k - df1) / (k - df2)) + sigma^2),
        train MSE = (delta / (n kappa))^2 test MSE = (1 - df1 / n)^2 test MSE.

    The model: ``k`` i.i.d. features ``g_j`` with ``E[g(x) g(x')] = K(x, x')`` (the kernel of
    ``eigenvalues``), ``f_hat(x) = k^-1 G(x) G(X)^T (k^-1 G(X) G(X)^T + delta I)^-1 y``. The
    estimate assumes Gaussian universality of the features' and the data's eigen-projections.
    ``n_features = inf`` is :func:`krr_prediction` exactly.

    Args:
      eigenvalues, target_coefficients, n_samples, ridge, noise_variance: as in
        :func:`krr_prediction`.
      n_features: ``k > 0`` or ``inf``.

    Returns: :class:`RFPrediction` (``E0 = inf`` at the ridgeless threshold ``n = k``).

    Simon, Karkada, Ghosh & Belkin (2023), "More is Better in Modern Machine Learning: when
    Infinite Overparameterization is Optimal and Overfitting is Obligatory", arXiv:2311.14646.
    """
    lam = _eigenvalues(eigenvalues)
    v2 = _coefficient_power(target_coefficients, lam.size)
    n = _count("n_samples", n_samples)
    k = _count("n_features", n_features, allow_inf=True)
    delta = _nonnegative("ridge", ridge)
    sigma2 = _nonnegative("noise_variance", noise_variance)
    return _rf(lam, v2, n, k, delta, sigma2)


def _rf(lam, v2, n, k, delta, sigma2) -> RFPrediction:
    """:func:`rf_prediction` on validated inputs (``v2``: the coefficients' power)."""
    kappa, gamma = _rf_solve(lam, n, k, delta)
    learn = lam / (lam + gamma) if gamma > 0 else (lam > 0).astype(np.float64)
    d1, d2 = float(learn.sum()), float(learn @ learn)
    inv_k = 0.0 if k == math.inf else 1.0 / k
    # written with 1/k so that k = inf is the KRR expression exactly
    denominator = n * (1 - d2 * inv_k)
    x = (d2 * (1 - 2 * d1 * inv_k) + d1 * d1 * inv_k) / denominator if denominator > 0 else 1.0
    e0 = 1.0 / (1.0 - x) if x < 1 - 1e-15 else math.inf
    feature_share = (1 - d1 * inv_k) / (1 - d2 * inv_k) if d2 * inv_k < 1 else 0.0
    bias = (1 - learn) * (1 - learn * feature_share)
    signal = float(bias @ v2) + sigma2
    test = e0 * signal if signal > 0 else 0.0
    return RFPrediction(kappa, gamma, learn, e0, test, _train(delta, kappa, n, d1, test))


def _train(delta, kappa, n, df1, test) -> float:
    """``(delta / (n kappa))^2 test``; at ``kappa = 0`` (ridgeless, underparameterised) its
    limit ``(1 - df1 / n)^2 test`` (the first equation: ``delta / kappa = n - df1``)."""
    if not math.isfinite(test):
        return math.inf
    ratio = delta / (n * kappa) if kappa > 0 else max(1 - df1 / n, 0.0)
    return ratio * ratio * test


# --------------------------------------------------------------------------- optimal ridge


def optimal_ridge(eigenvalues, target_coefficients, n_samples, n_features=math.inf,
                  noise_variance=0.0, *, grid_points: int = 57,
                  tolerance: float = 1e-7) -> OptimalRidge:
    """The ridge ``delta* >= 0`` minimising the predicted test MSE at ``(n, k)``.

    The predicted MSE is scanned at ``delta = 0`` and on ``grid_points`` log-spaced values
    ``n * tr(K) * 10^[-10 .. 2]`` (``tr(K) = sum_i lambda_i``; the effective regularisation
    is about ``delta / n`` once ``delta`` dominates), then the best bracket is refined by
    golden-section search in ``log delta`` to a relative width ``tolerance``. ``delta* = 0`` is
    returned when the ridgeless MSE is the smallest (interpolation is optimal).
    ``n_features = inf``: kernel ridge regression.

    Returns: :class:`OptimalRidge` ``(ridge, test_mse)``.

    Simon, Karkada, Ghosh & Belkin (2023), arXiv:2311.14646 (the optimal ridge, the monotonicity
    in ``n`` and ``k`` at it, and when it is zero).
    """
    lam = _eigenvalues(eigenvalues)
    n = _count("n_samples", n_samples)
    k = _count("n_features", n_features, allow_inf=True)
    if grid_points < 3:
        raise ValueError(f"grid_points: expected >= 3, got {grid_points}")
    v2 = _coefficient_power(target_coefficients, lam.size)
    sigma2 = _nonnegative("noise_variance", noise_variance)
    mse = lambda delta: _rf(lam, v2, n, k, delta, sigma2).test_mse
    logs = np.log(n * lam.sum()) + np.log(10.0) * np.linspace(-10, 2, grid_points)
    values = np.array([mse(math.exp(t)) for t in logs])
    at_zero = mse(0.0)
    best = int(np.argmin(values))
    if at_zero <= values[best] and best == 0:
        return OptimalRidge(0.0, at_zero)
    a = logs[max(best - 1, 0)]
    b = logs[min(best + 1, grid_points - 1)]
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = mse(math.exp(c)), mse(math.exp(d))
    while b - a > tolerance:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = mse(math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = mse(math.exp(d))
    t = 0.5 * (a + b)
    found = OptimalRidge(math.exp(t), mse(math.exp(t)))
    if at_zero <= found.test_mse:
        return OptimalRidge(0.0, at_zero)
    return found


# --------------------------------------------------------------------------- a pool as population


def pool_eigensystem(gram, targets):
    """Eigenvalues and target coefficients when the population is the uniform measure on
    ``P`` pool points (the finite proxy for a data distribution).

    With ``gram`` ``K`` ``(P, P)`` on the pool and ``K / P = U diag(lambda) U^T``, the
    eigenfunctions orthonormal under the uniform measure are ``phi_i = sqrt(P) U[:, i]`` and
    a target ``y`` ``(P,)`` or ``(P, O)`` has coefficients ``v_i = (1/P) sum_x phi_i(x) y(x)
    = U[:, i]^T y / sqrt(P)``. Negative round-off eigenvalues are clipped to 0.

    Returns: ``(eigenvalues (P,), coefficients (P,) or (P, O), eigenvectors U (P, P))``,
    eigenvalues in decreasing order.
    """
    k = np.asarray(gram, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"gram: expected a square (P, P) matrix, got shape {k.shape}")
    y = np.asarray(targets, dtype=np.float64)
    if y.ndim not in (1, 2) or y.shape[0] != k.shape[0]:
        raise ValueError(f"targets: expected (P,) or (P, O) with P = {k.shape[0]}, got shape "
                         f"{y.shape}")
    p = k.shape[0]
    lam, u = np.linalg.eigh(0.5 * (k + k.T) / p)
    lam, u = np.clip(lam[::-1], 0.0, None), u[:, ::-1]
    return lam, u.T @ y / math.sqrt(p), u
