"""Deep limits on the sphere (Radhakrishnan, Belkin & Uhler 2023) against truths that do not
share their derivation.

* Monte Carlo of the activations themselves: ``a(rho) = E phi(u) phi(v) / E phi^2`` and, by
  Price's theorem, ``a'(rho) = E phi'(u) phi'(v) / E phi^2`` for correlated Gaussians.
* ``ntk.stax`` (its own duals, ``Dense`` / ``LayerNorm`` / ``repeat`` layers) against the scalar
  recursion.
* Closed forms: Hermite duals ``rho^(k^L)``; one ReLU layer in angle form; ``Theta_L(1)`` as an
  explicit sum; the fixed point of a cubic dual by ``numpy.roots``.
* The limits against large-depth numerics: ReLU's normalised NTK -> 1/4 at rate ~1/L; Koenigs'
  functional equation ``psi(a(rho)) = mu psi(rho)``; ``rho_L / mu^L -> psi``;
  ``Theta_L / (L mu^L psi) - 1 = c / L``; the near-diagonal exponent against the formula; the
  exponents of the activations the authors' code tunes for 3-, 5- and 9-dimensional data.
* The classifiers against brute force, and deep kernel regression against its predicted limit.
"""
import math

import numpy as np
import pytest
from scipy.special import erf as scipy_erf

from limits import deep_limits as dl


# --------------------------------------------------------------------------- Monte Carlo duals

def _hermite_poly(c):
    """``phi = sum_k sqrt(c_k) He_k / sqrt(k!)`` and its derivative, evaluated directly."""
    herm = np.sqrt(np.asarray(c, float)) / np.sqrt([math.factorial(k) for k in range(len(c))])
    d_herm = np.polynomial.hermite_e.hermeder(herm)
    return (lambda z: np.polynomial.hermite_e.hermeval(z, herm),
            lambda z: np.polynomial.hermite_e.hermeval(z, d_herm))


_ACTIVATIONS = {   # phi, phi' (unnormalised: the test divides by the Monte Carlo E phi^2)
    "relu": (dl.relu(), lambda z: np.maximum(z, 0), lambda z: (z > 0).astype(float)),
    "erf": (dl.erf(), scipy_erf, lambda z: 2 / math.sqrt(math.pi) * np.exp(-z * z)),
    "sine": (dl.sine(1.7), lambda z: np.sin(math.sqrt(1.7) * z),
             lambda z: math.sqrt(1.7) * np.cos(math.sqrt(1.7) * z)),
    "hermite": (dl.hermite(3),) + _hermite_poly([0, 0, 0, 1]),
    "poly": (dl.polynomial([0.2, 0.3, 0, 0.5]),) + _hermite_poly([0.2, 0.3, 0, 0.5]),
}


@pytest.mark.parametrize("name", sorted(_ACTIVATIONS))
def test_dual_and_its_slope_against_monte_carlo(name):
    dual, phi, dphi = _ACTIVATIONS[name]
    rng = np.random.default_rng(1)
    n = 200_000
    z1, z2 = rng.standard_normal((2, n))
    second = np.mean(phi(z1) ** 2)
    for rho in (-0.6, 0.3, 0.85):
        u, v = z1, rho * z1 + math.sqrt(1 - rho * rho) * z2
        for fn, f, exact in ((phi, phi, dual.value), (dphi, dphi, dual.slope)):
            samples = fn(u) * f(v) / second
            se = samples.std() / math.sqrt(n)
            assert abs(samples.mean() - float(exact(np.float64(rho)))) < 5 * se + 2e-3, \
                (name, rho, samples.mean(), float(exact(np.float64(rho))))
    assert float(dual.value(np.float64(1.0))) == pytest.approx(1.0, abs=1e-12)


# --------------------------------------------------------------------------- against ntk.stax

def _sphere(n, d, seed=0):
    x = np.abs(np.random.default_rng(seed).standard_normal((n, d)))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("dual", [dl.relu(), dl.erf(), dl.polynomial([0, 0.5, 0, 0, 0, 0, 0, 0.5])],
                         ids=lambda d: d.name)
def test_stax_depth_kernels_match_the_recursion(dual):
    """``ntk.stax`` kernels (compiled once by :func:`depth_kernels`) equal the scalar recursion,
    including pairs of an input with itself, which the polynomial dual (``lambda = 4``) would
    otherwise blow up from rounding (inf/NaN on the diagonal after ~25 layers)."""
    x = _sphere(9, 3)
    depths = (2, 6, 60)
    dk = dl.depth_kernels(dual, x, x[:5], depths)
    rec = dl.depth_recursion(dual, np.clip(x @ x[:5].T, -1, 1), depths)
    assert np.all(np.isfinite(dk.nngp)) and np.all(np.isfinite(dk.ntk))
    np.testing.assert_allclose(dk.nngp, rec.nngp, rtol=1e-9, atol=1e-13)
    ntk = dk.ntk / np.exp(dk.log_ntk_diagonal)[:, None, None]
    np.testing.assert_allclose(ntk, rec.ntk, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(dk.ntk[:, range(5), range(5)],
                               np.exp(dk.log_ntk_diagonal)[:, None] * np.ones(5), rtol=1e-12)


# --------------------------------------------------------------------------- closed forms

def test_closed_forms():
    rho = np.array([-0.7, 0.0, 0.4, 0.93])
    for k in (2, 3):
        rec = dl.depth_recursion(dl.hermite(k), rho, [1, 3, 5])
        for i, depth in enumerate(rec.depths):
            np.testing.assert_allclose(rec.nngp[i], rho ** (k ** depth), rtol=1e-10, atol=1e-300)
            np.testing.assert_allclose(rec.ntk[i], rho ** (k ** depth), rtol=1e-10, atol=1e-300)
    # one ReLU layer in angle form (Cho & Saul): cos theta_1 = (sin t + (pi - t) cos t) / pi,
    # Theta_1 = rho_1 + rho (pi - t) / pi, Theta_1(1) = 2
    t = np.arccos(rho)
    rec = dl.depth_recursion(dl.relu(), rho, [1])
    rho1 = (np.sin(t) + (math.pi - t) * np.cos(t)) / math.pi
    np.testing.assert_allclose(rec.nngp[0], rho1, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(rec.ntk[0] * 2, rho1 + rho * (math.pi - t) / math.pi, rtol=1e-12)
    for dual in (dl.relu(), dl.polynomial([0, 0.5, 0, 0.5]), dl.polynomial([0.5, 0.3, 0.2])):
        for depth in (1, 7, 40):
            direct = sum(dual.lam ** l for l in range(depth + 1))
            assert math.exp(dl.diagonal_ntk(dual, depth)) == pytest.approx(direct, rel=1e-12)


# --------------------------------------------------------------------------- limits

def test_relu_ntk_tends_to_a_quarter_at_rate_one_over_depth():
    """``Theta_L(rho) / Theta_L(1) -> 1/4`` for every ``rho > -1``, the gap falling ten-fold per
    decade of depth up to a logarithm (``(kappa log L + c) / L``: ratio in ``[0.1, 0.14]``)."""
    rho = np.array([-0.9, 0.0, 0.5, 0.9])
    rec = dl.depth_recursion(dl.relu(), rho, [1000, 10_000])
    gap = np.abs(rec.ntk - dl.RELU_NTK_LIMIT)
    assert np.all(gap[1] < 8e-3), gap
    assert np.all((gap[1] / gap[0] > 0.1) & (gap[1] / gap[0] < 0.14)), gap[1] / gap[0]
    assert np.all(1 - rec.nngp[1] < 1e-6)                      # every correlation -> 1


@pytest.mark.parametrize("dual", [dl.erf(), dl.polynomial([0, 0.5, 0, 0.5]), dl.sine(2.0)],
                         ids=lambda d: d.name)
def test_koenigs_profile_is_the_large_depth_limit(dual):
    pred = dl.predict_limit(dual)
    assert pred.regime == "singular_kernel"
    rho = np.array([-0.4, 0.1, 0.6, 0.95, 0.999])
    psi = dl.limit_profile(dual, rho)
    # Koenigs' functional equation, an identity the iteration does not impose pointwise
    np.testing.assert_allclose(dl.limit_profile(dual, dual.value(rho)), pred.mu * psi,
                               rtol=1e-9)
    depths = [150, 300] if pred.mu > 0.5 else [60, 120]
    rec = dl.depth_recursion(dual, rho, depths)
    for i, depth in enumerate(depths):
        np.testing.assert_allclose(rec.nngp[i] / pred.mu ** depth, psi, rtol=1e-8)
    # NTK: Theta_L / (L mu^L psi) = 1 + c(rho) / L, so L * (ratio - 1) does not depend on L
    excess = [depth * (rec.ntk[i] * math.exp(rec.log_ntk_diagonal[i])
                       / (depth * pred.mu ** depth * psi) - 1) for i, depth in enumerate(depths)]
    np.testing.assert_allclose(excess[1], excess[0], rtol=0.02)
    # near the diagonal psi ~ (1 - rho)^(-alpha/2), alpha = 2 log(1/mu) / log(lambda)
    delta = np.logspace(-10, -6, 5)
    slope = np.polyfit(np.log(delta), np.log(dl.limit_profile(dual, 1 - delta)), 1)[0]
    assert slope == pytest.approx(-pred.alpha / 2, rel=2e-3)


def test_predicted_regimes_and_the_authors_tuned_activations():
    assert dl.predict_limit(dl.relu()).regime == "majority_vote"
    assert dl.predict_limit(dl.hermite(2)).regime == "nearest_neighbour"
    assert dl.predict_limit(dl.erf()).alpha == pytest.approx(0.888, abs=1e-3)
    # the authors' code: sine_a and polynomial duals "consistent for" 2-, 3-, 5-, 9-dim data
    for dual, dim in ((dl.sine(2.676), 3), (dl.sine(6.13539), 5), (dl.sine(13.8258), 9),
                      (dl.polynomial([0, 0.5, 0, 0, 0, 0, 0, 0.5]), 2),
                      (dl.polynomial([0, 0.5, 0, 0.5]), 3),
                      (dl.polynomial([0, 0.25, 0.5, 0.25]), 5),
                      (dl.polynomial([0, 1 / 16, 7 / 8, 1 / 16]), 9)):
        pred = dl.predict_limit(dual)
        assert pred.regime == "singular_kernel"
        assert pred.alpha == pytest.approx(dim - 1, abs=2e-3), dual.name
    # a constant part: the orbit of 0 stops at the cubic's root in (0, 1) -> majority vote
    cubic = dl.polynomial([0.2, 0.3, 0, 0.5])
    roots = np.roots([0.5, 0, 0.3 - 1, 0.2])
    root = min(r.real for r in roots if abs(r.imag) < 1e-12 and 0 < r.real < 1)
    pred = dl.predict_limit(cubic)
    assert pred.regime == "majority_vote" and pred.fixed_point == pytest.approx(root, abs=1e-12)
    assert dl.predict_limit(dl.polynomial([0.5, 0.3, 0.2])).regime == "undetermined"
    assert dl.predict_limit(dl.polynomial([0.3, 0.7])).regime == "linear"


# --------------------------------------------------------------------------- classifiers

def test_classifiers_against_brute_force():
    rng = np.random.default_rng(4)
    xtr, xte = _sphere(30, 3, seed=5), _sphere(40, 3, seed=6)
    ytr = rng.integers(0, 3, 30)
    gram = np.clip(xte @ xtr.T, -1, 1)
    dist = np.linalg.norm(xte[:, None] - xtr[None], axis=-1)
    np.testing.assert_array_equal(dl.nearest_neighbour(gram, ytr), ytr[dist.argmin(1)])
    # the singular vote: brute force, and a huge exponent is 1-NN
    alpha = 2.0
    votes = np.stack([(dist ** -alpha * (ytr == c)).sum(1) for c in range(3)], 1)
    np.testing.assert_array_equal(dl.singular_kernel_classifier(gram, ytr, alpha),
                                  votes.argmax(1))
    np.testing.assert_array_equal(dl.singular_kernel_classifier(gram, ytr, 400.0),
                                  ytr[dist.argmin(1)])
    counts = np.bincount(ytr, minlength=3)
    assert np.all(dl.majority_vote(ytr, 5) == counts.argmax())
    k_tr = np.exp(-np.linalg.norm(xtr[:, None] - xtr[None], axis=-1))
    k_te = np.exp(-dist)
    direct = (k_te @ np.linalg.inv(k_tr) @ np.eye(3)[ytr]).argmax(1)
    np.testing.assert_array_equal(dl.kernel_classifier(k_te, k_tr, ytr), direct)
    # a repeated training point makes K singular: the minimum-norm interpolant (pseudo-inverse)
    xdup = np.vstack([xtr, xtr[:1]])
    ydup = np.append(ytr, ytr[0])
    k_tr = np.exp(-np.linalg.norm(xdup[:, None] - xdup[None], axis=-1))
    k_te = np.exp(-np.linalg.norm(xte[:, None] - xdup[None], axis=-1))
    direct = (k_te @ np.linalg.pinv(k_tr) @ np.eye(3)[ydup]).argmax(1)
    np.testing.assert_array_equal(dl.kernel_classifier(k_te, k_tr, ydup), direct)


@pytest.mark.parametrize("dual, depth", [(dl.hermite(2), 12), (dl.polynomial([0.2, 0.3, 0, 0.5]), 60),
                                         (dl.polynomial([0, 0.5, 0, 0.5]), 120)],
                         ids=["nearest_neighbour", "majority_vote", "singular_kernel"])
def test_deep_kernel_regression_reaches_its_predicted_limit(dual, depth):
    xtr, xte = _sphere(25, 3, seed=7), _sphere(60, 3, seed=8)
    ytr = (np.random.default_rng(9).random(25) < 0.4).astype(int)
    rho = np.clip(np.vstack([xtr, xte]) @ xtr.T, -1, 1)
    rec = dl.depth_recursion(dual, rho, [depth])
    limit = dl.limit_classifier(dual, rho[25:], ytr)
    for k in (rec.nngp[0], rec.ntk[0]):
        pred = dl.kernel_classifier(k[25:], k[:25], ytr)
        assert np.mean(pred == limit) >= 0.95


def test_bad_input_is_refused_with_the_argument_named():
    dual = dl.relu()
    with pytest.raises(ValueError, match="rho"):
        dl.depth_recursion(dual, [0.5, 1.5], [3])
    with pytest.raises(ValueError, match="depths"):
        dl.depth_recursion(dual, [0.5], [3, 3])
    with pytest.raises(ValueError, match="depths"):
        dl.depth_recursion(dual, [0.5], [0, 2])
    with pytest.raises(ValueError, match="sum to 1"):
        dl.polynomial([0.5, 0.6])
    with pytest.raises(ValueError, match=">= 0"):
        dl.polynomial([1.5, -0.5])
    with pytest.raises(ValueError, match="degree"):
        dl.hermite(0)
    with pytest.raises(ValueError, match="a must"):
        dl.sine(-1.0)
    with pytest.raises(ValueError, match="singular_kernel"):
        dl.limit_profile(dual, [0.5])
    with pytest.raises(ValueError, match="unit sphere"):
        dl.depth_kernels(dual, np.ones((3, 2)), np.ones((2, 2)), [2])
    with pytest.raises(ValueError, match="labels_train"):
        dl.nearest_neighbour(np.zeros((4, 3)), np.array([0.5, 1.0, 0.0]))
    with pytest.raises(ValueError, match="gram_test_train"):
        dl.nearest_neighbour(np.zeros((4, 2)), np.array([0, 1, 0]))
    with pytest.raises(ValueError, match="alpha"):
        dl.singular_kernel_classifier(np.zeros((2, 3)), np.array([0, 1, 0]), 0.0)
