"""Width and depth limits of 1/sqrt(L) residual networks commute (Hayou & Yang 2023)."""
import numpy as np
import pytest
from scipy import integrate

from limits import width_depth as WD
from limits.criticality import relu_correlation_map
from limits.scaling import loglog_slope

X = np.random.default_rng(0).standard_normal((3, 10))
GRAM0 = X @ X.T / 10


def test_relu_ode_closed_forms():
    q1 = WD.residual_covariance_ode(GRAM0, "relu", n_steps=400)
    np.testing.assert_allclose(np.diag(q1), np.diag(GRAM0) * np.exp(0.5), rtol=1e-10)
    # correlation ODE dc/dt = (f(c) - c) / 2, solved independently
    c0 = GRAM0[0, 1] / np.sqrt(GRAM0[0, 0] * GRAM0[1, 1])
    sol = integrate.solve_ivp(lambda t, c: (relu_correlation_map(c) - c) / 2, (0, 1), [c0],
                              rtol=1e-12, atol=1e-12)
    c1 = q1[0, 1] / np.sqrt(q1[0, 0] * q1[1, 1])
    assert c1 == pytest.approx(sol.y[0, -1], abs=1e-9)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_width_first_recursion_converges_to_the_ode(activation):
    q1 = WD.residual_covariance_ode(GRAM0, activation, n_steps=200)
    depths = [8, 16, 32, 64, 128]
    errors = [np.abs(WD.residual_covariance_recursion(GRAM0, L, activation) - q1).max()
              for L in depths]
    assert loglog_slope(depths, errors) == pytest.approx(-1.0, abs=0.05)  # Euler: O(1/L)
    assert errors[-1] < 2e-3


def test_quadrature_matches_relu_closed_form():
    relu_quad = WD.gaussian_product_expectation(GRAM0, "relu")
    from limits.criticality import SignalActivation
    act = SignalActivation("relu-quadrature", lambda u: np.maximum(u, 0), None, None)
    np.testing.assert_allclose(WD.gaussian_product_expectation(GRAM0, act, deg=121),
                               relu_quad, atol=2e-3)  # the kink limits quadrature


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("width,depth", [(256, 64), (64, 256)])
def test_finite_networks_match_the_ode_in_either_order(activation, width, depth):
    """Width >> depth and depth >> width: the output covariance's Monte Carlo mean agrees
    with the depth-ODE limit within Monte Carlo error (4 standard errors, plus 3% for the
    O(1/n) bias of the nonlinear covariance map)."""
    n_samples = 16
    mc, grams0 = WD.simulate_residual_network(X, width, depth, activation,
                                              n_samples=n_samples, seed=width + depth,
                                              return_input_gram=True)
    # compare each sample with the ODE started from its own embedding covariance
    diff = np.stack([m - WD.residual_covariance_ode(g, activation, n_steps=50)
                     for m, g in zip(mc, grams0)])
    se = diff.std(0) / np.sqrt(n_samples)
    q1 = WD.residual_covariance_ode(GRAM0, activation, n_steps=50)
    assert np.all(np.abs(diff.mean(0)) < 4 * se + 0.03 * np.abs(q1).max())
    # and against the exact-input ODE too (the embedding adds its own fluctuation)
    se_raw = mc.std(0) / np.sqrt(n_samples)
    assert np.all(np.abs(mc.mean(0) - q1) < 4 * se_raw + 0.03 * np.abs(q1).max())


def test_bad_input():
    with pytest.raises(ValueError, match="gram0"):
        WD.residual_covariance_ode(np.ones((2, 3)))
    with pytest.raises(ValueError, match="gram0"):
        WD.residual_covariance_ode(-np.eye(2))
    with pytest.raises(ValueError, match="depth"):
        WD.residual_covariance_recursion(GRAM0, 0)
    with pytest.raises(ValueError, match="width"):
        WD.simulate_residual_network(X, -4, 3)
    with pytest.raises(ValueError, match="x must"):
        WD.simulate_residual_network(np.ones(3), 4, 3)
