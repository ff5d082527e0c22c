"""The NTK's change in one gradient step (dNTK), against routes that do not share its code:

* the empirical NTK against the explicit layer sum of
  :func:`limits.finite_width.network_statistics` (numpy);
* ``jax.jvp``'s dNTK against central finite differences of the NTK along the step, and the
  hand-written tangent passes of :func:`limits.dntk.ntk_change_dense` against ``jax.jvp``;
* the one-step change against the dNTK: the residual falls like ``eta^2``;
* two-layer linear networks, where the NTK's change is derived by hand (module docstring):
  the NTK and dNTK on a batch, and the exact one-step change at one input;
* the deep-linear leading order ``-(2/3)(L^2 - 1)/(L n)`` against Monte Carlo at small ``L/n``.
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from limits import dntk
from limits import finite_width as fw


@functools.lru_cache(maxsize=None)
def _net(activation, sigma_w2=1.0, sigma_b2=0.0, width=7, depth=3, input_dim=4, seed=0):
    """A network and its parameters (numpy draws: no random-number kernels to compile); cached
    so that every test of one network shares its compiled kernels."""
    _, apply = dntk.dense_network(activation, input_dim, width, depth, sigma_w2, sigma_b2)
    rng = np.random.default_rng(seed)
    dims = [input_dim] + [width] * (depth - 1) + [1]
    params = {"W": [jnp.asarray(rng.standard_normal((dims[i + 1], dims[i])))
                    for i in range(depth)]}
    if sigma_b2:
        params["b"] = [jnp.asarray(rng.standard_normal(dims[i + 1])) for i in range(depth)]
    return params, apply


X = jnp.array([[0.3, -1.1, 0.7, 0.2], [1.0, 0.4, -0.5, 0.9], [-0.6, 0.8, 0.1, -1.2]])
Y = jnp.array([0.5, -0.2, 0.1])


def test_empirical_ntk_against_the_layer_sum():
    params, apply = _net("tanh", 1.0, 0.3)
    theta = dntk.empirical_ntk(apply, params, X)
    # the explicit sum_l |delta^l|^2 (C_b + C_W |a^{l-1}|^2 / n_{l-1}) of limits.finite_width
    stats = fw.network_statistics([np.asarray(W)[None] for W in params["W"]],
                                  np.asarray(X[1]), "tanh", 1.0, 0.3,
                                  biases=[np.asarray(b)[None] for b in params["b"]])
    assert float(theta[1, 1]) == pytest.approx(float(stats["ntk"][0]), rel=1e-12)
    assert float(apply(params, X)[1]) == pytest.approx(float(stats["output"][0]), rel=1e-12)


def test_dntk_against_central_finite_differences():
    """On a batch of three training inputs, evaluated on all three (off-diagonal entries
    included), with biases."""
    params, apply = _net("tanh", 1.0, 0.3)
    eta = 0.3
    theta, d_theta = dntk.dntk(apply, params, X, Y, eta)
    step = dntk.gradient_step(apply, params, X, Y, eta)
    h = 1e-5
    shifted = [dntk.empirical_ntk(apply, jax.tree_util.tree_map(
        lambda p, v: p + sign * h * v, params, step), X) for sign in (1, -1)]
    fd = (shifted[0] - shifted[1]) / (2 * h)
    assert d_theta.shape == theta.shape == (3, 3)
    np.testing.assert_allclose(d_theta, fd, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(theta, dntk.empirical_ntk(apply, params, X), rtol=1e-14)
    assert float(jnp.max(jnp.abs(d_theta))) > 1e-3          # a change that is not trivial


def test_one_step_change_is_the_dntk_to_second_order():
    """``Delta Theta - dTheta = O(eta^2)``: halving ``eta`` divides the residual by ~4 while
    ``dTheta`` itself halves."""
    params, apply = _net("tanh", 1.0, 0.3)
    residual, first = [], []
    for eta in (0.04, 0.02, 0.01):
        _, d_theta = dntk.dntk(apply, params, X, Y, eta)
        delta = dntk.ntk_one_step_change(apply, params, X, Y, eta)
        residual.append(float(jnp.max(jnp.abs(delta - d_theta))))
        first.append(float(jnp.max(jnp.abs(d_theta))))
    np.testing.assert_allclose(np.array(first[:-1]) / first[1:], 2.0, rtol=1e-12)
    ratios = np.array(residual[:-1]) / residual[1:]
    assert np.all((ratios > 3.6) & (ratios < 4.4)), ratios
    assert residual[-1] < 0.05 * first[-1]


@pytest.mark.parametrize("activation, sigma_w2", [("relu", 2.0), ("tanh", 1.0)])
def test_hand_written_tangents_match_jvp(activation, sigma_w2):
    """The Monte Carlo's tangent passes against ``jax.jvp`` (its one-step change, a rerun of the
    network at the moved weights, is checked by hand in the two-layer test)."""
    params, apply = _net(activation, sigma_w2, width=6, depth=4, seed=3)
    x, y, eta = X[:1], Y[:1], 0.37
    theta, d_theta = dntk.dntk(apply, params, x, y, eta)
    out = dntk.ntk_change_dense([np.asarray(W)[None] for W in params["W"]], np.asarray(x[0]),
                                activation, sigma_w2, eta, y=float(y[0]))
    np.testing.assert_allclose(out["ntk"], theta[0, 0], rtol=1e-12)
    np.testing.assert_allclose(out["dntk"], d_theta[0, 0], rtol=1e-10)
    assert abs(float(d_theta[0, 0])) > 1e-3


def test_two_layer_linear_network_by_hand():
    """``f = alpha v . W x`` (``alpha^2 = C_W^2 / (n n_0)``): ``dTheta(x1, x2) = -eta alpha^2
    sum_a eps_a [(x_a.x1) f_2 + (x_a.x2) f_1 + 2 (x1.x2) f_a]``; at one input the NTK is
    quadratic in ``eta``: ``Delta Theta = -4 eta eps alpha^2 |x|^2 f + eta^2 eps^2 alpha^2
    |x|^2 Theta``."""
    cw, width, eta = 1.7, 5, 0.23
    params, apply = _net("identity", cw, width=width, depth=2, seed=4)
    w, v = (np.asarray(W) for W in params["W"])               # the hand side in numpy
    x, y = np.asarray(X), np.asarray(Y)
    alpha2 = cw ** 2 / (width * x.shape[1])
    p = x @ w.T
    f = math.sqrt(alpha2) * p @ v[0]
    eps = f - y
    gram = x @ x.T
    by_hand = -eta * alpha2 * (np.einsum("a,ai,j->ij", eps, gram, f)
                               + np.einsum("a,aj,i->ij", eps, gram, f)
                               + 2 * gram * np.dot(eps, f))
    theta, d_theta = dntk.dntk(apply, params, X, Y, eta)
    np.testing.assert_allclose(d_theta, by_hand, rtol=1e-12)
    np.testing.assert_allclose(theta, alpha2 * (p @ p.T + np.sum(v ** 2) * gram), rtol=1e-12)
    for eta in (0.23, 1.9):                                   # exact, not only to first order
        e, s = eps[0], gram[0, 0]
        single = -4 * eta * e * alpha2 * s * f[0] + eta ** 2 * e ** 2 * alpha2 * s * theta[0, 0]
        one_input = dntk.ntk_change_dense([w[None], v[None]], x[0], "linear", cw, eta, y=y[0])
        assert float(one_input["one_step"][0]) == pytest.approx(float(single), rel=1e-11)
        assert float(one_input["dntk"][0]) == pytest.approx(-4 * eta * e * alpha2 * s * f[0],
                                                            rel=1e-11)


def test_deep_linear_leading_order_against_monte_carlo():
    """``E[r] = -(2/3)(L^2 - 1)/(L n)``: exactly ``-1/n`` at ``L = 2`` (any width), and within
    Monte Carlo plus ``O(L^2/n^2)`` at ``L = 3``, ``n = 48``."""
    assert dntk.deep_linear_dntk_mean(2, 10) == pytest.approx(-0.1)
    for depth, width, tol in ((2, 12, 0.08), (3, 48, 0.12)):
        out = dntk.sample_ntk_change("linear", width, depth, 1500, 1.0, seed=depth)
        r = out["dntk"]
        ratio = r.mean() / dntk.deep_linear_dntk_mean(depth, width)
        se = r.std() / math.sqrt(r.size) / abs(dntk.deep_linear_dntk_mean(depth, width))
        assert se < 0.05
        assert abs(ratio - 1) < tol, (depth, ratio, se)
    assert out["ntk_limit"] == pytest.approx(3.0) and out["eta"] == pytest.approx(1 / 3)


def test_bad_input_is_named():
    params, apply = _net("tanh")
    with pytest.raises(ValueError, match="x must have shape"):
        dntk.empirical_ntk(apply, params, X[:, :3])
    with pytest.raises(ValueError, match="y must have"):
        dntk.dntk(apply, params, X, Y[:2], 0.1)
    with pytest.raises(ValueError, match="width"):
        dntk.dense_network("tanh", 4, 0, 3, 1.0)
    with pytest.raises(ValueError, match="activation"):
        dntk.sample_ntk_change("gelu", 8, 2, 10, 1.0)
    with pytest.raises(ValueError, match="weights"):
        dntk.ntk_change_dense([np.ones((2, 3, 4))], np.ones(4), "relu", 2.0, 0.1)
    with pytest.raises(ValueError, match="sigma_w2"):
        dntk.dense_network("tanh", 4, 5, 3, 0.0)
