"""The adaptive-kernel theory of Rubin, Seroussi & Ringel (2024) against routes that do not share
its derivation.

* Gaussian moments: Gauss-Hermite quadrature in the plane of ``(w*, w)`` (the closed forms come
  from Stein's lemma and Sherman-Morrison).
* The action: eq. 7's continuum limit evaluated by quadrature at a ``w`` with ``|w_perp|^2 =
  sigma_w^2``, against eq. 13's closed form.
* GP regression in the ``(He1, He3)`` subspace: exact Bayesian linear regression on ``n``
  Gaussian samples (the rank-2 kernel's GP) at large ``n`` with ``n / sigma^2`` fixed.
* The droplet saddle: brute-force maximisation of ``h`` on a grid; the stationarity and
  degeneracy of ``Shat`` at ``q*`` by finite differences; the maximiser's algebra in sympy.
* The large-``d`` closed forms against the finite-``d`` quadrature solution (error ~ 1 / d).
* The paper's own numbers: the transition at ``u_c = 30.2``, ``sigma^2 = 0.18`` for its Fig. 2
  network, and between ``N = 2800`` and ``N = 1400`` for its App. D network.
"""
import math

import numpy as np
import pytest
import sympy
from numpy.polynomial.hermite_e import hermegauss
from scipy.special import erf

from limits import adaptive_kernel as ak

# The paper's Fig. 2 network (Sec. 3.1.1: N = 700, n = 3000, d = 150, sigma_w^2 = 0.5,
# sigma_a^2 = 8 / N, epsilon = -0.3) at the noise of its transition.
FIG2 = ak.TeacherStudent(input_dim=150, width=700, noise=0.18, readout_variance=8 / 700,
                         weight_variance=0.5, epsilon=-0.3)


def _gauss_expectation(fn, order=60):
    """``E fn(z, v)`` for independent standard normals ``z, v`` (tensor Gauss-Hermite)."""
    nodes, weights = hermegauss(order)
    weights = weights / weights.sum()
    z, v = np.meshgrid(nodes, nodes, indexing="ij")
    return float(np.sum(np.outer(weights, weights) * fn(z, v)))


@pytest.mark.parametrize("q, perp2", [(-0.8, 0.2), (1.4, 0.05)])
def test_erf_moments_and_projections_against_quadrature(q, perp2):
    """``x = z w* + v e + ...`` with ``w = q w* + sqrt(perp2) e``: the moments of eq. 17 / 19
    and the normalised Hermite projections by 2-D Gauss-Hermite quadrature."""
    p = math.sqrt(perp2)
    pre = lambda z, v: erf(q * z + p * v)
    i0, i1 = ak.erf_moments(q, q * q + perp2)
    assert i0 == pytest.approx(_gauss_expectation(lambda z, v: z * pre(z, v)), abs=1e-9)
    assert i1 == pytest.approx(_gauss_expectation(lambda z, v: z ** 3 * pre(z, v)), abs=1e-9)
    j = ak.hermite_projections(q, q * q + perp2)
    he3 = lambda z: (z ** 3 - 3 * z) / math.sqrt(6)
    assert j[0] == pytest.approx(i0, abs=1e-15)
    assert j[1] == pytest.approx(_gauss_expectation(lambda z, v: he3(z) * pre(z, v)),
                                 abs=1e-9)
    # the teacher's Hermite norms behind population_error = b^2 + 6 c^2
    b, c = 0.7, -0.4
    assert ak.population_error(b, c) == pytest.approx(_gauss_expectation(
        lambda z, v: (b * z + c * (z ** 3 - 3 * z)) ** 2 + 0 * v), rel=1e-12)


def test_action_is_the_continuum_limit_of_eq7():
    """``d Shat(q) + d sigma_w^2 / (2 sigma_w^2)`` equals eq. 7 with ``sum_mu -> n E_x``,
    ``sigma^2 tbar = b He1 + c He3`` and ``|w|^2 = q^2 + sigma_w^2``, the expectation by
    quadrature; ``Shat`` is even in ``q`` and in ``(b, c) -> (-b, -c)``."""
    d, n, width, noise, sa2, sw2 = 40, 900.0, 60.0, 0.7, 0.3, 0.5
    problem = ak.TeacherStudent(d, width, noise, sa2, sw2, -1.2)
    u = problem.interaction(n)
    b, c = 0.45, -0.9
    p = math.sqrt(sw2)
    for q in (0.0, 0.35, 1.1, 2.0):
        overlap = _gauss_expectation(
            lambda z, v: (b * z + c * (z ** 3 - 3 * z)) * erf(q * z + p * v))
        eq7 = (d * (q * q + sw2) / (2 * sw2)
               - n ** 2 * sa2 / (2 * width * noise ** 2) * overlap ** 2)
        assert d * ak.action(q, b, c, u, sw2) + d / 2 == pytest.approx(eq7, rel=1e-8,
                                                                        abs=1e-10)
    qs = np.linspace(-2, 2, 41)
    s = ak.action(qs, b, c, u, sw2)
    np.testing.assert_allclose(s, s[::-1], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(ak.action(qs, -b, -c, u, sw2), s, rtol=1e-13, atol=1e-15)


def test_gpr_discrepancy_is_bayesian_linear_regression_in_the_teacher_subspace():
    """A GP whose kernel is ``Phi Lambda Phi^T`` with ``Phi = (He1(z), He3(z) / sqrt 6)`` is
    Bayesian linear regression; its posterior mean on ``n`` samples, ``n`` large with
    ``n / sigma^2 = 50`` fixed, leaves the discrepancy ``(b, c)`` of ``(I + M)^-1 y``,
    ``M = (n / sigma^2) Lambda`` (the equivalent-kernel limit, error ~ n^-1/2)."""
    lam = np.array([[0.04, -0.015], [-0.015, 0.02]])
    epsilon, n, ratio = -0.6, 100_000, 50.0
    rng = np.random.default_rng(0)
    z = rng.standard_normal(n)
    phi = np.stack([z, (z ** 3 - 3 * z) / math.sqrt(6)], 1)
    y = z + epsilon * (z ** 3 - 3 * z)
    noise = n / ratio
    beta = np.linalg.solve(phi.T @ phi / noise + np.linalg.inv(lam), phi.T @ y / noise)
    b, c = ak.gpr_discrepancy(ratio * lam, epsilon)
    assert 1 - beta[0] == pytest.approx(b, abs=0.02)
    assert epsilon - beta[1] / math.sqrt(6) == pytest.approx(c, abs=0.02)
    assert ak.gpr_discrepancy(np.zeros((2, 2)), epsilon) == (1.0, epsilon)


@pytest.mark.parametrize("b, c", [(0.3, -0.3), (0.05, -1.2), (0.9, -0.5), (-0.2, -0.6)])
def test_droplet_overlap_is_the_interior_maximum_of_h(b, c):
    """The closed-form ``h(q*)`` and ``q*`` against the interior local maximum of ``h`` on a
    fine grid (for ``b >= 0`` it is the maximum over ``q > 0``); ``b >= -2c``: no interior
    maximum, ``h`` falls from ``q = 0``."""
    a = 2.0
    q = np.linspace(1e-4, 6, 200_001)
    den = a + 2 * q * q
    h = (b - 2 * c * q * q / den) ** 2 / den
    inner = np.flatnonzero((h[1:-1] > h[:-2]) & (h[1:-1] >= h[2:])) + 1
    hmax, qstar = ak.droplet_overlap(b, c, 0.5)
    assert len(inner) == 1
    assert hmax == pytest.approx(h[inner[0]], rel=1e-8)
    assert qstar == pytest.approx(q[inner[0]], abs=1e-4)
    if b >= 0:
        assert hmax == pytest.approx(h.max(), rel=1e-8)
    assert ak.droplet_overlap(0.7, -0.3, 0.5) == (0.7 ** 2 / a, 0.0)


def test_droplet_overlap_algebra_in_sympy():
    """``dh/ds = 0`` at ``s* = A (-2c - b) / (2 (b - c))`` and ``h(s*) = 4 (b - c)^3 /
    (27 (-c) A)``, symbolically (``s = q^2``, ``h = (b - 2cs/D)^2 / D``, ``D = A + 2s``)."""
    a, b, c, s = sympy.symbols("A b c s", real=True)
    den = a + 2 * s
    h = (b - 2 * c * s / den) ** 2 / den
    sstar = a * (-2 * c - b) / (2 * (b - c))
    zero = lambda expr: sympy.cancel(sympy.together(expr)) == 0
    assert zero(sympy.diff(h, s).subs(s, sstar))
    assert zero(h.subs(s, sstar) - 4 * (b - c) ** 3 / (27 * (-c) * a))


def test_the_papers_transition_points():
    """Fig. 2 (Claim I): ``u_c = 30.2`` for ``epsilon = -0.3``, the cubic part learned from
    ``sigma^2 = 0.18`` on (n = 3000); App. D (Fig. 4): the transition lies between
    ``N = 2800`` (before) and ``N = 1400`` (after) for ``n = 600, d = 150, epsilon = -1.2,
    sigma^2 = 0.05, sigma_a^2 = 0.011, sigma_w^2 = 0.5``. Within 3 %, the paper's precision."""
    r = FIG2.gp_ratio(3000)
    assert ak.critical_interaction(r, 0.5, -0.3) == pytest.approx(30.2, rel=0.03)
    from scipy.optimize import brentq
    sigma2_c = brentq(lambda s2: ak.critical_samples(FIG2._replace(noise=s2)) - 3000, 0.05, 1)
    assert sigma2_c == pytest.approx(0.18, rel=0.03)
    app_d = ak.TeacherStudent(150, 2800, 0.05, 0.011, 0.5, -1.2)
    assert ak.large_d(app_d, 600).phase == "GFL"
    assert ak.large_d(app_d._replace(width=1400), 600).phase == "GMFL-I"
    assert ak.large_d(app_d._replace(width=700), 600).phase == "GMFL-I"


def test_mixed_phase_saddles_are_degenerate_and_the_onset_is_first_order():
    """In GMFL-I, ``Shat(q*) = Shat(0) = 0`` and ``Shat'(q*) = 0`` (central differences); the
    droplet density rises from 0 at ``n_c`` while ``q*`` is already ~0.7 there; the cubic part
    is learned only past ``n_c`` and the test error falls."""
    nc = ak.critical_samples(FIG2)
    below = ak.large_d(FIG2, 0.95 * nc)
    assert below.phase == "GFL" and below.c == FIG2.epsilon and below.droplet_density == 0
    sols = [ak.large_d(FIG2, f * nc) for f in (1.001, 1.2, 1.6, 2.0)]
    assert all(s.phase == "GMFL-I" for s in sols)
    for s in sols:
        u, h = s.interaction, 1e-5
        shat = lambda q: ak.action(q, s.b, s.c, u, 0.5)
        assert abs(shat(s.droplet_overlap)) < 1e-12
        assert abs((shat(s.droplet_overlap + h) - shat(s.droplet_overlap - h)) / (2 * h)) < 1e-8
        assert shat(s.droplet_overlap / 2) > 0                      # a barrier in between
    rho = [s.droplet_density for s in sols]
    assert rho[0] < 0.05 and np.all(np.diff(rho) > 0)
    assert sols[0].droplet_overlap > 0.65
    assert [s.c for s in sols] == sorted(s.c for s in sols)        # |c| falls: cubic learned
    assert np.all(np.diff([below.test_error] + [s.test_error for s in sols]) < 0)


def test_large_d_is_the_limit_of_the_finite_d_solution():
    """Scaling ``d -> sqrt(beta) d``, ``N, n -> beta (N, n)``, ``sigma_a^2 -> sigma_a^2 /
    sqrt(beta)`` keeps ``u`` and ``r``; the quadrature solution's ``b, c`` and ``d P(|q| >
    0.5)`` approach the closed forms' ``b, c, rho`` like ``1 / d``."""
    errors = []
    for d in (2000.0, 5000.0):
        beta = (d / 150) ** 2
        problem = ak.TeacherStudent(d, 700 * beta, 0.18, 8 / 700 / math.sqrt(beta), 0.5, -1.2)
        n = 1.5 * ak.critical_samples(problem)
        limit = ak.large_d(problem, n)
        mf = ak.mean_field(problem, n, start=(limit.b, limit.c), grid_points=4001,
                           overlap_max=2.5)
        assert mf.residual < 1e-9 and limit.phase == "GMFL-I"
        errors.append(max(abs(mf.b / limit.b - 1), abs(mf.c / limit.c - 1),
                          abs(mf.specialized_fraction(0.5) * d / limit.droplet_density - 1)))
    assert errors[1] < 0.005
    assert errors[0] / errors[1] > 2.0                              # ~ (5000 / 2000)^1


def test_gfl_discrepancy_is_the_gaussian_phase_of_the_quadrature_solution():
    """Below the transition the finite-``d`` solution at large ``d`` is GFL: ``c -> epsilon``,
    ``b`` -> the root of ``b (1 + 4 r sigma_w^2 / (pi A (1 - xi))) = 1``; ``u = 0`` is the
    NNGP, ``b = 1 / (1 + 4 r sigma_w^2 / (pi A))``."""
    d = 3000.0
    beta = (d / 150) ** 2
    problem = FIG2._replace(input_dim=d, width=700 * beta,
                            readout_variance=8 / 700 / math.sqrt(beta))
    n = 0.8 * ak.critical_samples(problem)
    mf = ak.mean_field(problem, n, grid_points=4001, overlap_max=2.5)
    b = ak.gfl_discrepancy(problem.interaction(n), problem.gp_ratio(n), 0.5)
    assert mf.b == pytest.approx(b, rel=3e-3)
    assert mf.c == pytest.approx(-0.3, rel=1e-3) and mf.specialized_fraction() < 1e-6
    r = 1.7
    assert ak.gfl_discrepancy(0.0, r, 0.5) == pytest.approx(1 / (1 + 4 * r * 0.5 / (2 * math.pi)),
                                                             rel=1e-12)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="input_dim"):
        ak.TeacherStudent(0, 10, 1.0, 1.0).validate()
    with pytest.raises(TypeError, match="noise"):
        ak.TeacherStudent(10, 10, "1", 1.0).validate()
    with pytest.raises(ValueError, match="n_samples"):
        FIG2.interaction(-3)
    with pytest.raises(ValueError, match="scaled_kernel"):
        ak.gpr_discrepancy(np.eye(3), -0.3)
    with pytest.raises(ValueError, match="norm2"):
        ak.erf_moments(1.0, 0.5)
    with pytest.raises(ValueError, match="epsilon"):
        ak.large_d(FIG2._replace(epsilon=0.3), 3000)
    with pytest.raises(ValueError, match="grid_points"):
        ak.mean_field(FIG2, 3000, grid_points=10)
