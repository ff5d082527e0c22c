"""Pseudo-i.i.d. weight ensembles: moments by Monte Carlo (with standard errors), the orthogonal
and low-rank identities, the readout expectation, layer gains against autodiff, interop with
ntk.monte_carlo_kernel_fn, and convergence (or not) to the ntk.stax NNGP as width grows."""
import math
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk
from limits import criticality
from limits import pseudo_iid as pi
from limits.scaling import loglog_slope

ENSEMBLES = [pi.Ensemble("iid"), pi.Ensemble("orthogonal"),
             pi.Ensemble("low_rank", rank=2), pi.Ensemble("low_rank", rank_ratio=0.5),
             pi.Ensemble("block_sparse", density=0.5, block_size=2)]
PSEUDO = [pi.Ensemble("iid"), pi.Ensemble("orthogonal"), pi.Ensemble("low_rank", rank_ratio=0.25),
          pi.Ensemble("block_sparse", density=0.25)]


def _draws(ens, shape, sigma, n, seed):
    rng = np.random.default_rng(seed)
    return np.stack([ens.sample(rng, shape, sigma) for _ in range(n)])


@pytest.mark.parametrize("shape", [(3, 5), (5, 3)])
@pytest.mark.parametrize("ens", ENSEMBLES, ids=lambda e: e.label)
def test_first_and_second_moments(ens, shape):
    """E W_ij = 0 and E W_ij W_kl = sigma^2 / n_in delta_ik delta_jl, entry by entry, within 5
    Monte Carlo standard errors (sd / sqrt(S) of each product over S draws)."""
    sigma, n_draws = 1.3, 6000
    w = _draws(ens, shape, sigma, n_draws, seed=zlib.crc32(f"{ens.label}{shape}".encode()))
    flat = w.reshape(n_draws, -1)
    mean, se_mean = flat.mean(0), flat.std(0) / math.sqrt(n_draws)
    assert np.all(np.abs(mean) <= 5 * se_mean)
    products = flat[:, :, None] * flat[:, None, :]
    second = products.mean(0)
    se = products.std(0) / math.sqrt(n_draws)
    target = sigma ** 2 / shape[1] * np.eye(flat.shape[1])
    # entries with exactly zero spread (none here) would need an exact match
    assert np.all(np.abs(second - target) <= 5 * se + 1e-12)
    # and the diagonal is resolved sharply enough to fail a 25 % variance error
    assert np.all(5 * np.diagonal(se) < 0.25 * target[0, 0])


@pytest.mark.parametrize("shape", [(6, 6), (4, 9), (9, 4)])
def test_orthogonal_identities_both_backends(shape):
    """W W^T = sigma^2 I (n_out <= n_in), W^T W = sigma^2 (n_out / n_in) I (n_out >= n_in)."""
    n_out, n_in = shape
    sigma = 0.7
    for rng in (np.random.default_rng(0), jax.random.PRNGKey(0)):
        w = np.asarray(pi.orthogonal_weights(rng, shape, sigma))
        if n_out <= n_in:
            np.testing.assert_allclose(w @ w.T, sigma ** 2 * np.eye(n_out), atol=1e-12)
        if n_out >= n_in:
            np.testing.assert_allclose(w.T @ w, sigma ** 2 * n_out / n_in * np.eye(n_in),
                                       atol=1e-12)


def test_orthogonal_is_haar():
    """Haar (not just orthogonal): the first column of a square draw is uniform on the sphere,
    so W_11 / sigma has E = 0, E x^2 = 1/n, E x^4 = 3 / (n (n + 2)) (5 standard errors)."""
    n, n_draws = 5, 10_000
    rng = np.random.default_rng(1)
    x = np.array([pi.orthogonal_weights(rng, (n, n))[0, 0] for _ in range(n_draws)])
    for power, exact in ((1, 0.0), (2, 1 / n), (4, 3 / (n * (n + 2)))):
        v = x ** power
        assert abs(v.mean() - exact) <= 5 * v.std() / math.sqrt(n_draws)


def test_low_rank_and_block_sparse_structure():
    rng = np.random.default_rng(2)
    for rank, shape in ((1, (8, 6)), (3, (8, 6)), (10, (8, 6))):
        w = pi.low_rank_weights(rng, shape, rank)
        assert np.linalg.matrix_rank(w) == min(rank, *shape)
    ens = pi.Ensemble("low_rank", rank_ratio=0.25)
    assert ens.inner_rank((64, 64)) == 16 and ens.inner_rank((1, 64)) == 16
    # block sparse: kept fraction ~ density (binomial over blocks), and the permutations spread
    # the blocks so every position is non-zero with probability `density` (exchangeable)
    density, shape, n_draws = 0.3, (8, 12), 3000
    nz = np.stack([pi.block_sparse_weights(rng, shape, density, 4) != 0
                   for _ in range(n_draws)])
    n_blocks = 2 * 3
    se = math.sqrt(density * (1 - density) / (n_draws * n_blocks))
    assert abs(nz.mean() - density) < 5 * se
    per_position = nz.mean(0)
    assert np.all(np.abs(per_position - density)
                  < 5 * math.sqrt(density * (1 - density) / n_draws))
    # one draw: the rows of a block-row share their zero pattern (2 block-rows here)
    w = pi.block_sparse_weights(np.random.default_rng(3), (8, 8), 0.5, 4)
    assert len({tuple(r) for r in (w != 0)}) <= 2


def test_jax_draws_are_traceable_and_have_the_same_moments():
    """The JAX-key path under jit(vmap): mean 0 and variance sigma^2 / n_in (5 SE) for every
    ensemble, from one compiled program."""
    shape, sigma, n_draws = (4, 6), 1.0, 4000
    keys = jax.random.split(jax.random.PRNGKey(5), n_draws)
    draw_all = jax.jit(jax.vmap(lambda k: [e.sample(k, shape, sigma) for e in ENSEMBLES[:3]]
                                + [ENSEMBLES[4].sample(k, shape, sigma)]))
    for w in draw_all(keys):
        w = np.asarray(w).reshape(n_draws, -1)
        assert np.all(np.abs(w.mean(0)) <= 5 * w.std(0) / math.sqrt(n_draws))
        sq = w ** 2
        assert np.all(np.abs(sq.mean(0) - sigma ** 2 / shape[1])
                      <= 5 * sq.std(0) / math.sqrt(n_draws))


@pytest.mark.parametrize("ens", PSEUDO + [pi.Ensemble("low_rank", rank=1)], ids=lambda e: e.label)
def test_conditional_nngp_is_the_expectation_over_the_readout(ens):
    """For fixed hidden weights, the mean over readout draws of f f^T (per output) is
    sigma_w^2 / n phi phi^T + sigma_b^2, for every readout ensemble (5 standard errors)."""
    rng = np.random.default_rng(6)
    net = pi.mlp(ens, 16, 2, out_dim=4, activation="tanh", sigma_w=1.2, sigma_b=0.3)
    x = rng.standard_normal((3, 5))
    _, params = net.init(rng, x.shape)
    exact = net.conditional_nngp(params, x)
    samples = []
    for _ in range(4000):
        readout = {"W": ens.sample(rng, (4, 16), 1.2), "b": 0.3 * rng.standard_normal(4)}
        f = net.apply(params[:-1] + (readout,), x)                     # (3, 4)
        samples.append(f.T[:, :, None] * f.T[:, None, :])              # per output: (4, 3, 3)
    samples = np.concatenate(samples)
    se = samples.std(0) / math.sqrt(len(samples))
    assert np.all(np.abs(samples.mean(0) - exact) <= 5 * se)


def test_layer_gains_match_autodiff():
    """chi^l = |dz^l / dz^{l-1}|_F^2 / n from jax.jacfwd of each hidden-to-hidden layer."""
    rng = np.random.default_rng(1)
    net = pi.mlp(pi.Ensemble("low_rank", rank_ratio=0.5), 12, 3, activation="tanh",
                 sigma_w=1.3, sigma_b=0.2)
    x = rng.standard_normal((2, 4))
    _, params = net.init(rng, x.shape)
    gains = net.layer_gains(params, x)
    zs = net.preactivations(params, x)

    @jax.jit
    def autodiff(w, b, z):          # (N, n) preactivations -> (N,) |J|_F^2 / n
        layer = lambda u: w @ jnp.tanh(u) + b
        return jax.vmap(lambda u: jnp.sum(jax.jacfwd(layer)(u) ** 2))(z) / w.shape[0]

    for layer in (1, 2):
        expected = autodiff(params[layer]["W"], params[layer]["b"], zs[layer - 1])
        np.testing.assert_allclose(gains[layer - 1], np.asarray(expected), rtol=1e-10)


def test_stax_nngp_against_the_relu_closed_form():
    """ReLU at (2, 0): the diagonal 2 |x|^2 / d0 is kept and correlations follow the arc-cosine
    map c -> (sqrt(1 - c^2) + (pi - arccos c) c) / pi once per hidden layer."""
    x = np.random.default_rng(0).standard_normal((4, 6))
    depth = 3
    k = np.asarray(pi.nngp(x, depth=depth, activation="relu"))
    q = 2 * np.sum(x ** 2, axis=1) / 6
    np.testing.assert_allclose(np.diagonal(k), q, rtol=1e-10)
    c = 2 * (x @ x.T) / 6 / np.sqrt(np.outer(q, q))
    for _ in range(depth):
        c = criticality.relu_correlation_map(np.clip(c, -1, 1))
    np.testing.assert_allclose(k, c * np.sqrt(np.outer(q, q)), rtol=1e-8, atol=1e-10)


def test_interop_with_monte_carlo_kernel_fn():
    """ntk.monte_carlo_kernel_fn(net.init, net.apply) traces the JAX-key samplers; with one
    hidden layer (i.i.d. Gaussian input layer) the output covariance is exactly the NNGP for
    every readout ensemble, so its estimate is within 5 standard errors of ntk.stax (the
    spread of the per-network f f^T / O from NumPy draws of the same network)."""
    x = np.random.default_rng(3).standard_normal((3, 4))
    net = pi.mlp(pi.Ensemble("orthogonal"), 32, 1, out_dim=8)
    n_samples = 64
    mc = ntk.monte_carlo_kernel_fn(net.init, net.apply, jax.random.PRNGKey(7), n_samples)(
        jnp.asarray(x), None, "nngp")
    rng = np.random.default_rng(4)
    per = np.stack([(lambda f: f @ f.T / f.shape[1])(net.apply(net.init(rng, x.shape)[1], x))
                    for _ in range(1000)])
    se = per.std(0) / math.sqrt(n_samples)
    kernel = np.asarray(net.nngp(x))
    assert np.all(np.abs(np.asarray(mc) - kernel) <= 5 * se)
    assert np.all(np.abs(per.mean(0) - kernel) <= 5 * per.std(0) / math.sqrt(len(per)))


def _median_errors(ens, widths, depth, n_networks, seed, activation="relu", sigma_w=math.sqrt(2),
                   sigma_b=0.0):
    x = np.random.default_rng(seed).standard_normal((4, 6))
    x *= math.sqrt(6) / np.linalg.norm(x, axis=1, keepdims=True) / sigma_w
    kernel = np.asarray(pi.nngp(x, depth=depth, activation=activation, sigma_w=sigma_w,
                                sigma_b=sigma_b))
    out = []
    for width in widths:
        rng = np.random.default_rng([seed, width])
        net = pi.mlp(ens, width, depth, activation=activation, sigma_w=sigma_w, sigma_b=sigma_b)
        errs = [pi.relative_frobenius_error(net.conditional_nngp(net.init(rng, x.shape)[1], x),
                                            kernel) for _ in range(n_networks)]
        out.append(np.median(errs))
    return np.asarray(out)


@pytest.mark.parametrize("ens", PSEUDO, ids=lambda e: e.label)
def test_pseudo_iid_networks_converge_to_the_iid_nngp(ens):
    """Median distance of one network's output covariance from the ntk.stax NNGP falls like
    width^-1/2 (ReLU at (2, 0), 2 hidden layers, widths 32-256, 24 networks, fixed seeds):
    slope within 0.2 of -1/2 (Monte Carlo noise ~0.07 and the next order in 1/n)."""
    widths = (32, 64, 128, 256)
    errors = _median_errors(ens, widths, depth=2, n_networks=24, seed=11)
    assert float(loglog_slope(widths, errors)) == pytest.approx(-0.5, abs=0.2)


def test_fixed_rank_one_does_not_converge():
    """Rank 1 at every width (the paper's conditions exclude it): the kernel stays random, so
    the distance neither falls like width^-1/2 nor becomes small."""
    widths = (32, 64, 128, 256)
    errors = _median_errors(pi.Ensemble("low_rank", rank=1), widths, depth=2, n_networks=24,
                            seed=11)
    assert float(loglog_slope(widths, errors)) > -0.2
    iid = _median_errors(pi.Ensemble("iid"), widths[-1:], depth=2, n_networks=24, seed=11)
    assert errors[-1] > 2 * iid[-1]


@pytest.mark.slow
@pytest.mark.parametrize("ens", PSEUDO, ids=lambda e: e.label)
def test_convergence_at_the_tanh_edge_of_chaos_deeper_and_wider(ens):
    """tanh on the edge of chaos (sigma_b^2 = 0.05), 5 hidden layers, widths 64-1024."""
    sw = math.sqrt(criticality.edge_of_chaos(0.05, "tanh"))
    widths = (64, 128, 256, 512, 1024)
    errors = _median_errors(ens, widths, depth=5, n_networks=32, seed=12, activation="tanh",
                            sigma_w=sw, sigma_b=math.sqrt(0.05))
    assert float(loglog_slope(widths, errors)) == pytest.approx(-0.5, abs=0.15)


def test_conv_network_at_depth_one_is_the_stax_cnn_gp():
    """One convolution (i.i.d. Gaussian filters, SAME padding), Flatten, a readout from any
    ensemble: the output covariance is exactly the ntk.stax CNN-GP (Conv, Flatten, Dense), so
    the Monte Carlo mean of the per-network covariance is within 5 standard errors of it."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 5, 2))
    net = pi.conv1d(pi.Ensemble("block_sparse", density=0.5, block_size=2), 8, 1)
    kernel = np.asarray(net.nngp(x))
    per = np.stack([net.conditional_nngp(net.init(rng, x.shape)[1], x) for _ in range(1500)])
    assert np.all(np.abs(per.mean(0) - kernel) <= 5 * per.std(0) / math.sqrt(len(per)))
    assert net.apply(net.init(rng, x.shape)[1], x).shape == (3, 1)


def _conv_median_errors(ens, widths, depth, n_networks, seed):
    x = np.random.default_rng(seed).standard_normal((3, 5, 2))
    kernel = np.asarray(pi.conv1d(ens, widths[0], depth).nngp(x))
    out = []
    for width in widths:
        rng = np.random.default_rng([seed, width])
        net = pi.conv1d(ens, width, depth)
        out.append(np.median([pi.relative_frobenius_error(
            net.conditional_nngp(net.init(rng, x.shape)[1], x), kernel)
            for _ in range(n_networks)]))
    return np.asarray(out)


def test_block_sparse_cnn_converges_to_the_stax_cnn_gp():
    """A ReLU CNN (3 convolutions of width n, filter 3) with block-sparse filters: the distance
    from the ntk.stax CNN-GP falls like width^-1/2 (slope within 0.2)."""
    widths = (16, 32, 64, 128)
    errors = _conv_median_errors(pi.Ensemble("block_sparse", density=0.25), widths, 3, 24, 13)
    assert float(loglog_slope(widths, errors)) == pytest.approx(-0.5, abs=0.2)


@pytest.mark.slow
@pytest.mark.parametrize("ens", PSEUDO + [pi.Ensemble("low_rank", rank=1)], ids=lambda e: e.label)
def test_cnns_converge_unless_the_rank_is_fixed(ens):
    widths = (16, 32, 64, 128, 256)
    slope = float(loglog_slope(widths, _conv_median_errors(ens, widths, 3, 32, 14)))
    if ens.rank == 1:
        assert slope > -0.2
    else:
        assert slope == pytest.approx(-0.5, abs=0.15)


def test_inputs_are_validated():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="shape"):
        pi.iid_weights(rng, (3,))
    with pytest.raises(ValueError, match="rank"):
        pi.low_rank_weights(rng, (3, 3), 0)
    with pytest.raises(ValueError, match="density"):
        pi.block_sparse_weights(rng, (3, 3), 1.5)
    with pytest.raises(ValueError, match="sigma_w"):
        pi.iid_weights(rng, (3, 3), -1.0)
    with pytest.raises(TypeError, match="rng"):
        pi.iid_weights(0, (3, 3))
    with pytest.raises(ValueError, match="exactly one"):
        pi.Ensemble("low_rank")
    with pytest.raises(ValueError, match="low_rank"):
        pi.Ensemble("iid", rank=2)
    with pytest.raises(ValueError, match="density"):
        pi.Ensemble("block_sparse")
    with pytest.raises(ValueError, match="name"):
        pi.Ensemble("sparse")
    with pytest.raises(TypeError, match="Ensemble"):
        pi.mlp("iid", 8, 2)
    with pytest.raises(ValueError, match="activation"):
        pi.mlp(pi.Ensemble("iid"), 8, 2, activation="gelu")
    with pytest.raises(ValueError, match="width"):
        pi.mlp(pi.Ensemble("iid"), 0, 2)
    with pytest.raises(TypeError, match="keyword"):
        net = pi.mlp(pi.Ensemble("iid"), 4, 1)
        net.apply(net.init(rng, (2, 3))[1], np.ones((2, 3)), train=True)
