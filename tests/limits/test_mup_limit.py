"""The computed muP limit and its kernel counterpart (:mod:`limits.mup_limit`) against routes
that do not share their derivation.

* Wide networks: :func:`limits.mlp` muP networks approach the computed limit as the width grows
  (at the rate of an average over ``n`` units, ``n^-1/2``). By default they are trained by the
  study's NumPy trainer (:func:`experiments.mup_limit.train_networks`, itself checked against
  ``jax.grad`` and :func:`limits.optimizers.optimizer` in tests/experiments/test_mup_limit.py),
  which reaches widths of thousands in a fraction of a second; the ``slow`` tests train them
  with ``jax.grad`` directly.
* Hand derivations: the first step of the deep linear limit is kernel gradient descent with
  ``Theta = s^{L-1} x.x' (n0 s / d + (L - 1) n0 q / d + q)`` from ``f_0 = 0``; for one hidden
  layer the limit is TP IV's width-``d + O`` network ``f = n0 x U V`` (trained by ``jax.grad``).
* Two derivations of one limit: the linear limit's source basis against the Gaussian quadrature
  of the one-hidden-layer description with ``phi = id`` (exact for polynomials).
* Kernels: :func:`linear_ntk` against the parametrization-aware empirical NTK of wide networks
  (:func:`limits.ntk_fn`); :func:`shallow_ntk` against Monte Carlo and :mod:`ntk.stax` (ReLU,
  Erf); :func:`kernel_descent` against the closed form ``r_t = (I - eta Theta / N)^t r_0``.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import limits
from limits import mup_limit as ml
from limits.optimizers import optimizer
from limits.scaling import loglog_slope


def _wide_networks(in_dim, width, depth, out_dim, activation, x, y, eta, steps, seeds, *,
                   base_width, sigma_w, sigma_out, readout_zero_init=False,
                   parametrization=limits.MUP):
    """Outputs ``(seeds, N, O)`` of ``limits.mlp`` networks trained ``steps`` full-batch SGD
    steps on ``L = 1 / (2N) |f - y|^2`` by ``jax.grad`` and the project's optimizer."""
    net = limits.mlp(in_dim, width, depth, out_dim, parametrization, activation=activation,
                     base_width=base_width, sigma_w=sigma_w, sigma_out=sigma_out,
                     readout_zero_init=readout_zero_init)
    opt = optimizer(net, eta)
    x, y = jnp.asarray(x), jnp.asarray(y)

    def loss(p):
        return 0.5 * jnp.sum((net.apply(p, x) - y) ** 2) / x.shape[0]

    @jax.jit
    def step(p, state):
        update, state = opt.update(jax.grad(loss)(p), state, p)
        return jax.tree.map(jnp.add, p, update), state

    out = []
    for s in range(seeds):
        p = net.init(jax.random.PRNGKey(s))
        state = opt.init(p)
        for _ in range(steps):
            p, state = step(p, state)
        out.append(np.asarray(net.apply(p, x)))
    return np.stack(out)


def _numpy_networks(in_dim, width, depth, out_dim, activation, x, y, eta, steps, seeds, *,
                    base_width, sigma_w, sigma_out, readout_zero_init=False):
    """The same as :func:`_wide_networks` with the study's NumPy trainer (seeded NumPy init at
    the standard deviations ``limits.mlp`` uses)."""
    from experiments import mup_limit as study
    cfg = study.Config(base_width=base_width, sigma_w=sigma_w)
    so = 0.0 if readout_zero_init else sigma_out
    net = study.network(in_dim, width, depth, out_dim, limits.MUP, activation, cfg, so)
    weights = study.init_weights(net, cfg, so, seeds, np.random.default_rng(width))
    loss = lambda f: (f - y) / x.shape[0]
    with threadpool_limits(limits=1, user_api="blas"):       # small matrices: no thread fights
        return study.train_networks(net, weights, x, loss, eta, steps, x, activation)[1]


def _train_limit(lim, x, y, eta, steps):
    for _ in range(steps):
        lim = lim.step(x, ml.mse_output_grad(lim.apply(x), y), eta)
    return lim


def _rms(a):
    return float(np.sqrt(np.mean(np.square(a))))


# ----------------------------------------------------------------------- deep linear limit


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("zero_readout", [False, True])
def test_linear_limit_first_step_is_the_hand_derived_kernel_step(depth, zero_readout):
    """``f_0 = 0`` and ``f_1 = -eta Theta(x, X) delta_0`` with the muP kernel at init derived by
    hand: readout ``n0 Sigma_L``, hidden layer ``l`` ``n0 q s^{L-l} Sigma_{l-1}``, input layer
    ``q s^{L-1} x.x'``, ``Sigma_l = s^l x.x' / d`` (``q = 0`` for a zero readout)."""
    rng = np.random.default_rng(depth)
    d, o, n0, sw, so, eta = 5, 3, 2.5, 1.3, 0.7, 0.2
    x, y = rng.standard_normal((4, d)), rng.standard_normal((4, o))
    x_new = rng.standard_normal((2, d))
    lim = ml.linear_mup_limit(d, depth, o, base_width=n0, sigma_w=sw, sigma_out=so,
                              readout_zero_init=zero_readout)
    assert np.all(lim.apply(x) == 0)
    s, q = sw ** 2, 0.0 if zero_readout else so ** 2
    theta = lambda a, b: s ** (depth - 1) * (a @ b.T) * (n0 * s / d + (depth - 1) * n0 * q / d
                                                        + q)
    delta = (0 - y) / 4
    lim = lim.step(x, delta, eta)
    for pts in (x, x_new):
        np.testing.assert_allclose(lim.apply(pts), -eta * theta(pts, x) @ delta, atol=1e-12)
        kernel = ml.linear_ntk(pts, x, limits.MUP, depth, base_width=n0, sigma_w=sw,
                               sigma_out=so, readout_zero_init=zero_readout)
        np.testing.assert_allclose(kernel, theta(pts, x), rtol=1e-12)


@pytest.mark.slow
def test_one_hidden_layer_limit_is_a_width_d_plus_o_network():
    """TP IV's construction: for ``L = 1`` the limit is the linear network ``f = n0 x U V`` of
    width ``d + O`` started at ``U_0 = sigma_w / sqrt(d) [I, 0]``, ``V_0 = sigma_out / sqrt(n0)
    [0; I]`` and trained by gradient descent with learning rate ``eta / n0`` (``jax.grad``)."""
    rng = np.random.default_rng(0)
    d, o, n0, sw, so, eta, steps = 4, 3, 3.0, 0.9, 0.6, 0.15, 25
    x, y = rng.standard_normal((6, d)), rng.standard_normal((6, o))
    mask = (rng.random((6, o)) < 0.6).astype(float)
    u = jnp.zeros((d, d + o)).at[:, :d].set(sw / math.sqrt(d) * jnp.eye(d))
    v = jnp.zeros((d + o, o)).at[d:].set(so / math.sqrt(n0) * jnp.eye(o))

    def loss(params):
        f = n0 * x @ params[0] @ params[1]
        return 0.5 * jnp.sum(mask * (f - y) ** 2) / 6

    params, lim = (u, v), ml.linear_mup_limit(d, 1, o, base_width=n0, sigma_w=sw, sigma_out=so)
    grad = jax.jit(jax.grad(loss))
    for _ in range(steps):
        g = grad(params)
        params = tuple(p - eta / n0 * gp for p, gp in zip(params, g))
        lim = lim.step(x, ml.mse_output_grad(lim.apply(x), y, mask), eta)
    np.testing.assert_allclose(lim.apply(x), n0 * x @ params[0] @ params[1], atol=1e-10)
    assert lim.size == d + o


@pytest.mark.parametrize("zero_readout", [False, True])
def test_linear_limit_is_the_quadrature_limit_with_identity_activation(zero_readout):
    """Two derivations of the ``L = 1`` linear limit agree: the source basis of
    :func:`linear_mup_limit` and the unit-by-unit Gaussian description of
    :func:`shallow_mup_limit` with ``phi = id`` (its Gauss-Hermite rule is exact here: after
    ``t`` steps every unit's state is a polynomial of degree ``2 t + 1`` in its coordinates)."""
    rng = np.random.default_rng(1)
    d, o, n0, sw, so, eta = 2, 1, 2.0, 1.1, 0.8, 0.3
    x, y = rng.standard_normal((5, d)), rng.standard_normal((5, o))
    kw = dict(base_width=n0, sigma_w=sw, sigma_out=so, readout_zero_init=zero_readout)
    a = _train_limit(ml.linear_mup_limit(d, 1, o, **kw), x, y, eta, 4)
    b = _train_limit(ml.shallow_mup_limit(d, o, "identity", n_nodes=10, **kw), x, y, eta, 4)
    x_new = rng.standard_normal((3, d))
    np.testing.assert_allclose(a.apply(x_new), b.apply(x_new), atol=1e-11)
    c = a.features(x_new)["layer_1"]
    np.testing.assert_allclose(c @ c.T, b.features(x_new), atol=1e-11)


def _distances(limit_outputs, widths, trainer=_numpy_networks, **kw):
    return [_rms(trainer(width=n, **kw) - limit_outputs) for n in widths]


def test_wide_deep_linear_networks_approach_the_limit():
    """Two hidden layers: after 3 steps the RMS distance of muP networks (4 seeds) from the
    computed limit falls from width 64 to 1024 like ``n^-1/2`` (slope within 0.2 of it), and
    the limit has grown its sources (``Zdot`` terms at work)."""
    rng = np.random.default_rng(2)
    d, o, n0, sw, so, eta, steps = 4, 2, 2.0, 1.0, 1.0, 0.4, 3
    x, y = rng.standard_normal((3, d)), rng.standard_normal((3, o))
    lim = _train_limit(ml.linear_mup_limit(d, 2, o, base_width=n0, sigma_w=sw, sigma_out=so),
                       x, y, eta, steps)
    assert lim.size > d + o
    widths = [64, 1024]
    dist = _distances(lim.apply(x), widths, in_dim=d, depth=2, out_dim=o, activation="identity",
                      x=x, y=y, eta=eta, steps=steps, seeds=4, base_width=n0, sigma_w=sw,
                      sigma_out=so)
    assert abs(loglog_slope(widths, dist) + 0.5) < 0.2, dist


@pytest.mark.slow
@pytest.mark.parametrize("depth", [2, 3])
def test_deep_linear_rate_over_widths_with_autodiff(depth):
    """``jax.grad``-trained ``limits.mlp`` networks, four widths, 16 seeds, 4 steps: slope of
    the distance to the limit within 0.2 of ``-1/2``."""
    rng = np.random.default_rng(3)
    d, o, n0, eta, steps = 5, 2, 2.0, 0.1, 4
    x, y = rng.standard_normal((4, d)), rng.standard_normal((4, o))
    lim = _train_limit(ml.linear_mup_limit(d, depth, o, base_width=n0), x, y, eta, steps)
    widths = [128, 256, 512, 1024]
    dist = _distances(lim.apply(x), widths, trainer=_wide_networks, in_dim=d, depth=depth,
                      out_dim=o, activation="identity", x=x, y=y, eta=eta, steps=steps,
                      seeds=16, base_width=n0, sigma_w=1.0, sigma_out=1.0)
    assert abs(loglog_slope(widths, dist) + 0.5) < 0.2, dist


def test_diverging_dynamics_raise():
    x, y = 3 * np.eye(3), np.ones((3, 1))
    lim = ml.linear_mup_limit(3, 2, 1, base_width=1.0)
    with pytest.raises(FloatingPointError, match="diverged"), np.errstate(all="ignore"):
        _train_limit(lim, x, y, 40.0, 30)


# ----------------------------------------------------------------------- one hidden layer


@pytest.mark.parametrize("zero_readout, steps, trainer", [
    (True, 6, _numpy_networks),
    pytest.param(True, 6, _wide_networks, marks=pytest.mark.slow),
    pytest.param(False, 2, _wide_networks, marks=pytest.mark.slow)])
def test_wide_tanh_networks_approach_the_quadrature_limit(zero_readout, steps, trainer):
    """One hidden tanh layer, 2-d inputs: the distance of muP networks (4 seeds) from the
    quadrature limit falls from width 256 to 8192 like ``n^-1/2`` (slope within 0.2), and
    refining the quadrature changes the limit by far less than that distance (a random readout
    adds a dimension to the quadrature, which then needs shorter training to stay accurate)."""
    rng = np.random.default_rng(4)
    d, o, n0, sw, so, eta = 2, 1, 2.0, 1.2, 0.5, 0.8
    x = rng.standard_normal((5, d))
    y = np.sin(2 * x[:, :1])
    kw = dict(base_width=n0, sigma_w=sw, sigma_out=so, readout_zero_init=zero_readout)
    nodes = 48 if zero_readout else 36
    f = [_train_limit(ml.shallow_mup_limit(d, o, "tanh", n_nodes=m, **kw), x, y, eta,
                      steps).apply(x) for m in (nodes * 2 // 3, nodes)]
    widths = [256, 8192]
    dist = _distances(f[1], widths, trainer=trainer, in_dim=d, depth=1, out_dim=o,
                      activation="tanh", x=x, y=y, eta=eta, steps=steps, seeds=4, **kw)
    assert abs(loglog_slope(widths, dist) + 0.5) < 0.2, dist
    assert _rms(f[0] - f[1]) < 0.1 * dist[-1]


def test_gaussian_nodes_integrate_moments():
    """Tensor Gauss-Hermite is exact for ``E z1^4 z2^2 = 3`` and ``E z1 z2^3 = 0``; antithetic
    Monte Carlo has every odd moment exactly 0."""
    z, w = ml.gaussian_nodes(2, 4)
    assert w.sum() == pytest.approx(1.0, abs=1e-14)
    assert np.sum(w * z[:, 0] ** 4 * z[:, 1] ** 2) == pytest.approx(3.0, abs=1e-12)
    assert np.sum(w * z[:, 0] * z[:, 1] ** 3) == pytest.approx(0.0, abs=1e-12)
    z, w = ml.gaussian_nodes(3, 500, "monte_carlo", seed=1)
    assert z.shape == (1000, 3) and np.sum(w * z[:, 1] ** 3) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="kind"):
        ml.gaussian_nodes(2, 4, "sobol")


# ----------------------------------------------------------------------- kernel limit


@pytest.mark.slow
@pytest.mark.parametrize("parametrization", [limits.NTP, limits.SP_LR_INV_WIDTH])
def test_linear_ntk_is_the_wide_networks_empirical_ntk(parametrization):
    """Two hidden layers (input, hidden and readout terms): the empirical NTK under the
    networks' learning-rate scales (:func:`limits.ntk_fn`), averaged over 4 networks of width
    1024, is the infinite-width kernel within 8 % (one network is off by about 5 %, its
    ``n^-1/2`` fluctuation: 3 standard errors of the mean); SP with ``lr ~ 1/n`` has no
    input-layer term, and leaving it out of NTP's kernel is refused by the same data. (The muP
    kernel is checked against the hand-derived first step.)"""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 3))
    kw = dict(base_width=2.0, sigma_w=1.2, sigma_out=0.8)
    net = limits.mlp(3, 1024, 2, 1, parametrization, activation="identity", **kw)
    fn = limits.ntk_fn(net)
    emp = np.mean([np.asarray(fn(x, x, net.init(jax.random.PRNGKey(s)))) for s in range(4)], 0)
    theta = ml.linear_ntk(x, None, parametrization, 2, **kw)
    other = ml.linear_ntk(x, None, limits.NTP if parametrization is not limits.NTP
                          else limits.SP_LR_INV_WIDTH, 2, **kw)
    err = lambda k: np.linalg.norm(emp - k) / np.linalg.norm(k)
    assert err(theta) < 0.08 < err(other)


def test_shallow_ntk_against_monte_carlo():
    """NTP, one tanh layer, random readout: ``n0 E[phi phi] + q x.x' E[phi' phi']`` estimated
    from 100,000 Gaussian first-layer weights agrees with the quadrature within 4 Monte Carlo
    standard errors at every entry."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((4, 3))
    sw, so, n0, m = 1.1, 0.6, 2.0, 100_000
    phi, dphi = ml.ACTIVATION_PAIRS["tanh"]
    pre = x @ (sw / math.sqrt(3) * rng.standard_normal((3, m)))           # (N, m)
    samples = (n0 * phi(pre)[:, None] * phi(pre)[None]
               + so ** 2 * (x @ x.T)[..., None] * dphi(pre)[:, None] * dphi(pre)[None])
    mean, se = samples.mean(-1), samples.std(-1) / math.sqrt(m)
    theta = ml.shallow_ntk(x, None, limits.NTP, "tanh", base_width=n0, sigma_w=sw,
                           sigma_out=so)
    assert np.all(np.abs(theta - mean) < 4 * se + 1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("activation, layer", [("relu", "Relu"), ("erf", "Erf")])
def test_shallow_ntk_against_stax(activation, layer):
    """:mod:`ntk.stax` (NTK parametrisation, ``Dense(W_std=sigma_w) -> phi -> Dense(sigma_out)``)
    has ``nngp = sigma_out^2 E[phi phi]`` and ``ntk - nngp = sigma_out^2 sigma_w^2 x.x' / d
    E[phi' phi']``; :func:`shallow_ntk` under NTP has ``n0 E[phi phi]`` (zero readout) and adds
    ``sigma_out^2 x.x' E[phi' phi']`` with a random readout (gradients in ``W``, not ``omega``)."""
    from ntk import stax
    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, 3))
    sw, so, n0 = 1.4, 0.7, 3.0
    _, _, kernel_fn = stax.serial(stax.Dense(8, W_std=sw), getattr(stax, layer)(),
                                  stax.Dense(1, W_std=so))
    k = kernel_fn(x, None, ("nngp", "ntk"))
    nngp, ntk = np.asarray(k.nngp), np.asarray(k.ntk)
    kw = dict(base_width=n0, sigma_w=sw, sigma_out=so, n_nodes=160)
    readout = ml.shallow_ntk(x, None, limits.NTP, activation, readout_zero_init=True, **kw)
    full = ml.shallow_ntk(x, None, limits.NTP, activation, **kw)
    tol = 3e-3 if activation == "relu" else 1e-4           # ReLU's kink: quadrature ~ 1 / m
    np.testing.assert_allclose(readout / n0, nngp / so ** 2, rtol=tol, atol=tol)
    np.testing.assert_allclose((full - readout) * sw ** 2 / x.shape[1], ntk - nngp, rtol=tol,
                               atol=tol)


def test_linear_and_shallow_ntk_agree_for_one_linear_layer():
    x = np.random.default_rng(7).standard_normal((4, 3))
    for p in (limits.NTP, limits.MUP, limits.SP_LR_INV_WIDTH):
        kw = dict(base_width=2.0, sigma_w=0.9, sigma_out=1.3)
        np.testing.assert_allclose(ml.shallow_ntk(x, x[:2], p, "identity", **kw),
                                   ml.linear_ntk(x, x[:2], p, 1, **kw), rtol=1e-10)


def test_kernel_descent_matches_the_closed_form():
    """Full-batch MSE: training residuals ``r_t = (I - eta Theta_XX / N)^t r_0`` and elsewhere
    ``f_t = f_0 - eta / N Theta_PX sum_{s < t} r_s``."""
    rng = np.random.default_rng(8)
    a = rng.standard_normal((7, 7))
    theta = a @ a.T / 7
    f0, y = rng.standard_normal((7, 2)), rng.standard_normal((4, 2))
    idx, eta, steps = np.array([0, 2, 3, 5]), 0.3, 12
    traj = ml.kernel_descent(theta, f0, idx, lambda f: ml.mse_output_grad(f, y), eta, steps)
    step = np.eye(4) - eta * theta[np.ix_(idx, idx)] / 4
    r = [np.linalg.matrix_power(step, t) @ (f0[idx] - y) for t in range(steps + 1)]
    np.testing.assert_allclose(traj[steps][idx] - y, r[steps], atol=1e-12)
    expect = f0 - eta / 4 * theta[:, idx] @ np.sum(r[:steps], axis=0)
    np.testing.assert_allclose(traj[steps], expect, atol=1e-12)


def test_layer_exponents_refuse_parametrizations_without_a_kernel_limit():
    x = np.eye(3)
    with pytest.raises(ValueError, match="grows like width"):
        ml.linear_ntk(x, None, limits.SP, 2)                 # lr ~ 1: the readout's term ~ n
    with pytest.raises(ValueError, match="SGD"):
        ml.linear_ntk(x, None, limits.MUP_ADAM, 2)
    with pytest.raises(ValueError, match="depth"):
        ml.linear_ntk(x, None, limits.MFP, 2)                # one hidden layer only
    np.testing.assert_allclose(ml.linear_ntk(x, None, limits.MFP, 1),
                               ml.linear_ntk(x, None, limits.MUP, 1))   # MFP = muP at L = 1


def test_bad_inputs_are_refused_with_their_names():
    lim = ml.linear_mup_limit(3, 2, 2)
    with pytest.raises(ValueError, match="x must have shape"):
        lim.apply(np.ones((2, 4)))
    with pytest.raises(ValueError, match="output_grad"):
        lim.step(np.ones((2, 3)), np.ones((3, 2)), 0.1)
    with pytest.raises(ValueError, match="learning_rate"):
        lim.step(np.ones((2, 3)), np.ones((2, 2)), 0.0)
    with pytest.raises(TypeError, match="depth"):
        ml.linear_mup_limit(3, 2.0, 1)
    with pytest.raises(ValueError, match="activation"):
        ml.shallow_mup_limit(2, 1, "softplus")
    with pytest.raises(ValueError, match="theta"):
        ml.kernel_descent(np.eye(3), np.zeros((4, 1)), np.arange(2), lambda f: f, 0.1, 2)
    with pytest.raises(ValueError, match="mask"):
        ml.mse_output_grad(np.ones((2, 2)), np.ones((2, 2)), np.ones((2, 3)))
