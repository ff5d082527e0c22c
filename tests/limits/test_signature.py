"""Neural signature kernels: the PDE solvers against the straight-line closed form
(``I_0(2 sqrt(<a, b>))``) and against truncated signatures computed level by level in the
tensor algebra; truncated signatures against Chen's identity, the shuffle identity and the
shoelace Levy area; the solvers' orders by grid refinement; the depth-M controlled ResNet's
recursion against the ordered-sum (free-probability) formula; the Gaussian kernel maps against
closed forms and Monte Carlo; and Monte Carlo of wide controlled ResNets against the kernel."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special
from threadpoolctl import threadpool_limits

from limits import signature as sig
from limits.scaling import loglog_slope


def _paths(seed, n_paths, n_points, d, scale):
    rng = np.random.default_rng(seed)
    steps = scale * rng.standard_normal((n_paths, n_points - 1, d))
    return np.concatenate([np.zeros((n_paths, 1, d)), np.cumsum(steps, axis=1)], axis=1)


def _identity(u):
    return u


# ---------------------------------------------------------------------------------------------
# straight lines: the closed form


@pytest.mark.parametrize("a, b", [([0.9, 0.4], [0.7, 1.1]), ([0.8, -0.5], [-0.9, 0.3])],
                         ids=["positive", "negative"])
def test_straight_lines_against_bessel(a, b):
    """x = a t, y = b t: sum_n <a,b>^n/(n!)^2 is I_0(2 sqrt(p)) (J_0(2 sqrt(-p)) for p < 0); the
    truncated signatures give the series to rounding, every scheme converges to it at its stated
    order (error ratio between dyadic orders 4 and 5 is about 2^order)."""
    a, b = np.asarray(a), np.asarray(b)
    p = float(a @ b)
    series = sum(p ** n / math.factorial(n) ** 2 for n in range(30))
    exact = sig.linear_path_signature_kernel(a, b)
    assert exact == pytest.approx(series, rel=1e-13)
    x, y = np.stack([0 * a, a]), np.stack([0 * b, b])
    assert sig.truncated_signature_kernel(x, y, 14) == pytest.approx(series, rel=1e-13)
    for scheme, order in sig.SCHEME_ORDER.items():
        errors = [abs(sig.signature_kernel(x, y, dyadic_order=level, scheme=scheme) - exact)
                  for level in (4, 5)]
        assert errors[1] < (0.05 if order == 1 else 1e-3) * exact
        assert math.log2(errors[0] / errors[1]) == pytest.approx(order, abs=0.15), scheme


# ---------------------------------------------------------------------------------------------
# truncated signatures: Chen, shuffle, Levy area


def test_truncated_signature_identities():
    """Level 1 = the increment; the symmetric part of level 2 = increment^2 / 2 (shuffle) and
    its antisymmetric part = the Levy area (shoelace formula); Chen: S(x * y) = S(x) ⊗ S(y);
    a path followed by its reversal has signature 1 (all levels >= 1 vanish)."""
    x = _paths(0, 1, 5, 2, 0.7)[0]
    s = sig.truncated_signature(x, 4)
    inc = x[-1] - x[0]
    np.testing.assert_allclose(s[1], inc, atol=1e-14)
    s2 = s[2].reshape(2, 2)
    np.testing.assert_allclose((s2 + s2.T) / 2, np.outer(inc, inc) / 2, atol=1e-14)
    rel = x - x[0]
    area = 0.5 * np.sum(rel[:-1, 0] * rel[1:, 1] - rel[1:, 0] * rel[:-1, 1])
    assert (s2[0, 1] - s2[1, 0]) / 2 == pytest.approx(area, abs=1e-14)

    first, second = x[:3], x[2:]
    s_a, s_b = sig.truncated_signature(first, 4), sig.truncated_signature(second, 4)
    for n in range(5):
        chen = sum(np.outer(s_a[k], s_b[n - k]).ravel() for k in range(n + 1))
        np.testing.assert_allclose(s[n], chen, atol=1e-13)
    loop = sig.truncated_signature(np.concatenate([x, x[::-1][1:]]), 4)
    for n in range(1, 5):
        np.testing.assert_allclose(loop[n], 0.0, atol=1e-13)


def test_truncated_signature_refuses_too_many_levels():
    with pytest.raises(ValueError, match="depth"):
        sig.truncated_signature(np.zeros((3, 5)), 20)


# ---------------------------------------------------------------------------------------------
# the PDE against truncated signatures


@pytest.mark.parametrize("sigmas", [dict(sigma_0=1.0, sigma_A=1.0, sigma_b=0.0),
                                    dict(sigma_0=0.7, sigma_A=1.4, sigma_b=0.6)],
                         ids=["signature", "scaled"])
def test_identity_pde_against_truncated_signatures(sigmas):
    """phi = id: the PDE's solution is (sigma_0^2 + c) sum_n sigma_A^{2n} <S^n(x), S^n(y)> - c,
    c = sigma_b^2 / sigma_A^2, with the signature levels computed explicitly; the
    second-order schemes at dyadic order 6 are within 2e-4 of the largest entry (their error
    is O(4^-l)), the explicit scheme within 2e-2 (O(2^-l))."""
    x = _paths(1, 3, 4, 2, 0.5)
    reference = sig.truncated_signature_kernel(x, None, 14, **sigmas)
    assert np.all(np.isfinite(reference)) and reference.shape == (3, 3)
    for scheme, tol in (("trapezoid", 2e-4), ("salvi", 2e-4), ("explicit", 2e-2)):
        k = sig.neural_signature_kernel(x, None, "identity", dyadic_order=6, scheme=scheme,
                                        **sigmas)
        np.testing.assert_allclose(k, reference, rtol=0, atol=tol * np.max(np.abs(reference)),
                                   err_msg=scheme)
    # the general solver (phi given as a function: quadrature and self-kernels) agrees with
    # the linear one to rounding
    general = sig.neural_signature_kernel(x[:2], x[1:], _identity, dyadic_order=3, **sigmas)
    linear = sig.neural_signature_kernel(x[:2], x[1:], "identity", dyadic_order=3, **sigmas)
    np.testing.assert_allclose(general, linear, rtol=1e-9)


def test_depth_m_kernel_is_the_ordered_sum_signature_kernel():
    """phi = id: the depth-M network's infinite-width kernel from the recursion equals
    sigma_0^2 sum_w sigma_A^{2|w|} D_w(x) D_w(y) (+ the sigma_b shift) with D(x) = prod_i
    (1 + dx_i) in the tensor algebra (the free-probability limit of tr(W_w^T W_w') / N)."""
    sigmas = dict(sigma_0=0.8, sigma_A=1.3, sigma_b=0.4)
    x, y = _paths(2, 2, 6, 2, 0.4), _paths(3, 3, 5, 2, 0.4)
    recursion = sig.controlled_resnet_kernel(x, y, **sigmas)
    ordered = sig.truncated_signature_kernel(x, y, 5, discrete=True, **sigmas)  # exact: M <= 5
    np.testing.assert_allclose(recursion, ordered, rtol=1e-12)
    # and it is not the continuous-time kernel: the sampled path's PDE differs at depth 5
    pde = sig.neural_signature_kernel(x, y, dyadic_order=6, **sigmas)
    assert np.max(np.abs(recursion - pde)) > 1e-3


# ---------------------------------------------------------------------------------------------
# the solvers' orders by grid refinement, nonlinear phi


@pytest.mark.parametrize("activation", ["erf", "relu"])
def test_observed_orders_by_grid_refinement(activation):
    """Successive differences max |K_l - K_{l+1}| on the sampling grid's nodes (every pair)
    fall like 2^-l (explicit) and 4^-l (trapezoid) between dyadic orders 3, 4 and 5."""
    x = _paths(4, 2, 3, 2, 0.35)
    for scheme, order in (("explicit", 1), ("trapezoid", 2)):
        grids = [sig.neural_signature_kernel(x, None, activation, sigma_A=1.2, sigma_b=0.3,
                                             dyadic_order=lvl, scheme=scheme, full=True)
                 [:, :, ::2 ** lvl, ::2 ** lvl]
                 for lvl in (3, 4, 5)]
        d1, d2 = (np.max(np.abs(a - b)) for a, b in zip(grids[:-1], grids[1:]))
        assert math.log2(d1 / d2) == pytest.approx(order, abs=0.25), scheme


def test_grid_boundary_symmetry_and_self_kernels():
    """K = sigma_0^2 on the boundary; the explicit scheme's K(x, x) grid is symmetric; the Gram
    of x with itself has the self-kernels on its diagonal; a single pair gives a scalar."""
    x = _paths(5, 2, 4, 3, 0.4)
    grid = sig.neural_signature_kernel(x, None, "erf", sigma_0=0.6, dyadic_order=1,
                                       scheme="explicit", full=True)
    assert grid.shape == (2, 2, 7, 7)
    np.testing.assert_allclose(grid[:, :, 0, :], 0.36)
    np.testing.assert_allclose(grid[:, :, :, 0], 0.36)
    np.testing.assert_allclose(grid[0, 0], grid[0, 0].T, rtol=1e-13)
    np.testing.assert_allclose(grid[0, 1], grid[1, 0].T, rtol=1e-13)
    single = sig.neural_signature_kernel(x[1], x[1], "erf", sigma_0=0.6, dyadic_order=1,
                                         scheme="explicit")
    assert np.ndim(single) == 0 and single == pytest.approx(grid[1, 1, -1, -1], rel=1e-13)


# ---------------------------------------------------------------------------------------------
# Gaussian kernel maps


def test_kernel_maps_against_closed_forms_and_monte_carlo():
    """Quadrature: exact for u^2 (E[u^2 v^2] = ac + 2b^2), erf's arcsine formula to 1e-8 at
    variances up to 4; ReLU's arc-cosine form and tanh's quadrature against Monte Carlo (5
    standard errors)."""
    a = np.array([0.3, 1.0, 2.5, 4.0, 0.0])
    b = np.array([0.1, -0.5, 2.0, 3.9, 0.0])
    c = np.array([0.5, 1.2, 2.0, 4.0, 1.0])
    square = sig.gaussian_kernel_map(lambda u: u * u)
    np.testing.assert_allclose(square(a, b, c), a * c + 2 * b * b, rtol=1e-10, atol=1e-12)
    erf = sig.kernel_activation("erf").kernel_map
    np.testing.assert_allclose(sig.gaussian_kernel_map(special.erf)(a, b, c), erf(a, b, c),
                               atol=1e-8)
    rng = np.random.default_rng(0)
    z = rng.standard_normal((2, 200_000))
    for name in ("relu", "tanh"):
        act = sig.kernel_activation(name)
        for ai, bi, ci in zip(a[:4], b[:4], c[:4]):
            u = math.sqrt(ai) * z[0]
            v = bi / math.sqrt(ai) * z[0] + math.sqrt(max(ci - bi * bi / ai, 0)) * z[1]
            prod = act.phi(u) * act.phi(v)
            se = prod.std() / math.sqrt(prod.size)
            assert abs(act.kernel_map(ai, bi, ci) - prod.mean()) < 5 * se, (name, ai, bi, ci)
    assert sig.kernel_activation("identity").kernel_map(2.0, 0.3, 5.0) == 0.3


# ---------------------------------------------------------------------------------------------
# wide controlled ResNets


def test_wide_networks_converge_to_the_depth_m_kernel():
    """NumPy sampler, erf, depth 6, 3 paths: the Monte Carlo mean at width 512 is the limit
    within 4 standard errors on every entry, and one network's relative error falls like
    width^-1/2 (slope over widths 32, 128, 512 in [-0.75, -0.25])."""
    x = _paths(6, 3, 7, 2, 0.4)
    sigmas = dict(sigma_0=1.0, sigma_A=1.3, sigma_b=0.5)
    limit = sig.controlled_resnet_kernel(x, None, "erf", **sigmas)
    widths, rms = (32, 128, 512), []
    with threadpool_limits(limits=1, user_api="blas"):
        for w in widths:
            k = sig.empirical_kernels(np.random.default_rng(w), x, w, 12, "erf", **sigmas)
            assert k.shape == (12, 3, 3)
            rel = np.linalg.norm(k - limit, axis=(1, 2)) / np.linalg.norm(limit)
            rms.append(np.sqrt(np.mean(rel ** 2)))
    se = k.std(0, ddof=1) / math.sqrt(12)
    assert np.all(np.abs(k.mean(0) - limit) <= 4 * se)
    assert -0.75 <= loglog_slope(widths, rms) <= -0.25


def test_jax_and_numpy_samplers_agree():
    """The JAX route (lax.scan) computes the NumPy forward pass on the same parameters, and
    its per-network kernels (jit, lax.map over keys) have the NumPy route's law: mean kernels
    within 4 combined standard errors; readout f = <v, Z_M> / sqrt(N)."""
    x = _paths(7, 3, 5, 2, 0.4)
    sigmas = dict(sigma_0=1.0, sigma_A=1.2, sigma_b=0.3)
    params = sig.init_controlled_resnet(np.random.default_rng(0), 2, 24, **sigmas)
    z_np = sig.apply_controlled_resnet(params, x, "tanh", readout=False)
    z_jax = sig.apply_controlled_resnet(jax.tree.map(jnp.asarray, params), jnp.asarray(x),
                                        "tanh", readout=False)
    assert isinstance(z_jax, jax.Array) and isinstance(z_np, np.ndarray)
    np.testing.assert_allclose(np.asarray(z_jax), z_np, rtol=1e-10, atol=1e-12)
    f = sig.apply_controlled_resnet(params, x[0], "tanh")
    assert np.ndim(f) == 0 and f == pytest.approx(z_np[0] @ params["v"] / math.sqrt(24))

    n = 48
    k_jax = np.asarray(sig.empirical_kernels(jax.random.PRNGKey(0), x, 32, n, "tanh",
                                             **sigmas))
    with threadpool_limits(limits=1, user_api="blas"):
        k_np = sig.empirical_kernels(np.random.default_rng(1), x, 32, n, "tanh", **sigmas)
    assert k_jax.shape == k_np.shape == (n, 3, 3)
    se = np.sqrt((k_jax.var(0, ddof=1) + k_np.var(0, ddof=1)) / n)
    assert np.all(np.abs(k_jax.mean(0) - k_np.mean(0)) <= 4 * se)
    # and the draws differ (independent networks, not one network repeated)
    assert np.std(k_jax[:, 0, 0]) > 0.01 * np.mean(k_jax[:, 0, 0])


# ---------------------------------------------------------------------------------------------
# bad input


def test_bad_input_is_refused():
    x = _paths(8, 2, 4, 2, 0.3)
    with pytest.raises(ValueError, match="path"):
        sig.signature_kernel(np.zeros(5))
    with pytest.raises(ValueError, match="same R\\^d"):
        sig.signature_kernel(x, _paths(8, 2, 4, 3, 0.3))
    with pytest.raises(ValueError, match="salvi"):
        sig.neural_signature_kernel(x, None, "erf", scheme="salvi")
    with pytest.raises(ValueError, match="scheme"):
        sig.neural_signature_kernel(x, scheme="rk4")
    with pytest.raises(ValueError, match="activation"):
        sig.neural_signature_kernel(x, None, "swish")
    with pytest.raises(ValueError, match="sigma_b"):
        sig.neural_signature_kernel(x, sigma_b=-1.0)
    with pytest.raises(ValueError, match="dyadic_order"):
        sig.neural_signature_kernel(x, dyadic_order=-1)
    with pytest.raises(ValueError, match="finite"):
        sig.signature_kernel(np.full((3, 2), np.nan))
    with pytest.raises(TypeError, match="rng"):
        sig.empirical_kernels(0, x, 8, 2)
    with pytest.raises(ValueError, match="x"):
        sig.empirical_kernels(np.random.default_rng(0), x[0], 8, 2)
