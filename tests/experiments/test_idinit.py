"""IDInit (Pan et al. 2025): identity-like matrices, norm preservation at init, He's 3x growth
per block and the rank constraint of zero padding, checked by explicit loops, exact
identities and Monte Carlo."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.figure import Figure

from experiments import idinit as idi
from experiments.records import jsonable
from experiments.runner import check_claims


@pytest.mark.parametrize("n_in,n_out", [(4, 4), (4, 8), (5, 7), (12, 5), (128, 10)])
def test_identity_like_maps_coordinates_as_described(n_in, n_out):
    """x W: output j is the sum of the inputs i with i = j (mod min(n_in, n_out)) (explicit
    loop); expanding repeats x, contracting folds it."""
    x = np.random.default_rng(0).standard_normal(n_in)
    w = np.asarray(idi.identity_like(n_in, n_out, tau=2.0), np.float64)
    assert w.shape == (n_in, n_out)
    m = min(n_in, n_out)
    expected = [2.0 * sum(x[i] for i in range(n_in) if i % m == j % m) for j in range(n_out)]
    np.testing.assert_allclose(x @ w, expected, atol=1e-12)
    if n_out >= n_in:
        np.testing.assert_allclose(x @ w, 2.0 * np.resize(x, n_out), atol=1e-12)


def test_repeated_identity_is_a_scaled_isometry_when_sizes_divide():
    """W_in W_in^T = k I for a k-fold repetition (so |x W| = sqrt(k) |x|), W^T W = k I when
    contracting by k; the zero-padded identity is an exact isometry onto its first n_in
    coordinates."""
    w = np.asarray(idi.identity_like(16, 48), np.float64)
    np.testing.assert_allclose(w @ w.T, 3 * np.eye(16), atol=0)
    w = np.asarray(idi.identity_like(48, 16), np.float64)
    np.testing.assert_allclose(w.T @ w, 3 * np.eye(16), atol=0)
    z = np.asarray(idi.zero_padded_identity(16, 48), np.float64)
    x = np.random.default_rng(1).standard_normal(16)
    np.testing.assert_allclose(x @ z, np.concatenate([x, np.zeros(32)]), atol=0)


def test_bad_shapes_and_kinds_are_rejected():
    with pytest.raises(ValueError, match="n_in, n_out"):
        idi.identity_like(0, 3)
    with pytest.raises(ValueError, match="kind"):
        idi.init_resmlp("orthogonal", None, 4, 8, 8, 2, 3)
    with pytest.raises(ValueError, match="width"):
        idi.Config(width=64).validate()
    with pytest.raises(ValueError, match="train_steps"):
        idi.Config(train_steps=45, chunk=10).validate()


def _small(kind, key=None, epsilon=1e-6):
    return idi.init_resmlp(kind, key, in_dim=6, width=12, branch_width=18, depth=5, out_dim=4,
                           epsilon=epsilon)


def test_idinit_stream_is_the_identity_at_init():
    """eps = 0: h_l = h_0 = (x, x) exactly for every block; eps > 0: a branch moves the stream
    by at most eps |W1|_2 |IDI_1(18 -> 12)|_2 |h| (relu is 1-Lipschitz), so the norm ratio stays
    within (1 + g eps)^l - 1 with g the product of spectral norms (2 here: 12 -> 18 -> 12)."""
    x = jax.random.normal(jax.random.PRNGKey(0), (7, 6), jnp.float64)
    hs = np.asarray(idi.main_stem(_small("idinit", epsilon=0.0), x))
    xn = np.asarray(x)
    for h in hs:
        np.testing.assert_array_equal(h, np.concatenate([xn, xn], axis=1))
    eps = 1e-3
    hs = np.asarray(idi.main_stem(_small("idinit", epsilon=eps), x), np.float64)
    ratio = np.linalg.norm(hs, axis=-1) / np.linalg.norm(hs[0], axis=-1)
    g = (np.linalg.norm(np.asarray(idi.identity_like(12, 18), np.float64), 2)
         * np.linalg.norm(np.asarray(idi.identity_like(18, 12), np.float64), 2))
    assert g == pytest.approx(2.0)
    bound = (1 + g * eps) ** np.arange(len(hs))[:, None] - 1
    assert np.all(np.abs(ratio - 1) <= bound + 1e-6)
    assert np.max(ratio - 1) > 0.3 * eps           # the branches do contribute


def test_he_block_triples_the_squared_norm():
    """One He residual block: E|h_1|^2 / |h_0|^2 = 1 + 2 = 3 over random networks (4 SE)."""
    x = jax.random.normal(jax.random.PRNGKey(1), (1, 6))

    def growth(key):
        hs = idi.main_stem(idi.init_resmlp("he", key, 6, 12, 18, 1, 4), x)
        return jnp.sum(hs[1] ** 2) / jnp.sum(hs[0] ** 2)
    g = np.asarray(jax.jit(jax.vmap(growth))(jax.random.split(jax.random.PRNGKey(2), 8000)))
    assert abs(g.mean() - 3.0) < 4 * g.std() / np.sqrt(g.size)


def test_zero_padding_is_an_invariant_subspace_and_repetition_is_not():
    """Heavy-ball SGD on random data: with zero-padded identities the stream's coordinates
    >= in_dim stay exactly zero (the rank constraint, momentum included); with the repeated
    identity the duplicated coordinates i and i + in_dim separate."""
    kx, ky = jax.random.split(jax.random.PRNGKey(3))
    x = jax.random.normal(kx, (16, 6), jnp.float32)
    y = jax.nn.one_hot(jax.random.randint(ky, (16,), 0, 4), 4)

    def trained(kind):
        params = _small(kind)
        loss = lambda p: -jnp.mean(jnp.sum(y * jax.nn.log_softmax(idi.resmlp_apply(p, x)), -1))

        def step(s, _):
            p, m = s
            m = jax.tree.map(lambda a, g: 0.9 * a + g, m, jax.grad(loss)(p))
            return (jax.tree.map(lambda a, b: a - 0.05 * b, p, m), m), None
        params = jax.lax.scan(step, (params, jax.tree.map(jnp.zeros_like, params)), None,
                              length=30)[0][0]
        return np.asarray(idi.main_stem(params, x)[-1])
    h = trained("zero_padded")
    assert np.all(h[:, 6:] == 0) and np.abs(h[:, :6]).max() > 0.1
    h = trained("idinit")
    assert np.abs(h[:, :6] - h[:, 6:]).max() > 1e-3 * np.abs(h).max()


def _made_up_results(he_trains: bool):
    """Metrics shaped as run() returns them (3 blocks, 2 rates; He diverges at the larger rate,
    or at both), through the JSON round trip of results.json."""
    inf = float("inf")
    he_curves = [[5.0, 1.0, 0.5], [5.0, inf, inf]] if he_trains else [[5.0, inf, inf]] * 2
    he_mean = [0.75, inf] if he_trains else [inf, inf]
    m = {"depth": 3, "tau": 1.0, "epsilon": 1e-6, "n_train": 32, "learning_rates": [0.001, 0.01],
         "blocks": [0, 1, 2, 3], "idinit_input_gain": 1.41,
         "idinit_norm_ratio_mean": [1.0, 1.0, 1.0, 1.0], "idinit_norm_max_deviation": 3e-6,
         "idinit_norm_slope": 0.0, "he_sq_norm": [1.0, 3.1, 9.0, 27.5], "he_norm_slope": 1.1,
         "he_predicted_slope": float(np.log(3.0)), "train_steps": [0, 10, 20],
         "idinit_loss_curves": [[2.3, 1.0, 0.4], [2.3, 0.5, 0.1]], "idinit_mean_loss": [0.7, 0.3],
         "idinit_best_lr": 0.01, "idinit_best_mean_loss": 0.3, "idinit_best_final_loss": 0.1,
         "idinit_n_rates_trained": 2, "he_loss_curves": he_curves, "he_mean_loss": he_mean,
         "he_best_lr": 0.001, "he_best_mean_loss": min(he_mean), "he_best_final_loss": 0.5,
         "he_n_rates_trained": int(he_trains), "zero_padded_loss_curve": [2.3, 1.1, 0.6],
         "input_dim": 64, "data_rank": 60, "idinit_feature_rank_init": 60,
         "zero_padded_feature_rank_init": 60, "idinit_feature_rank_end": 100,
         "zero_padded_feature_rank_end": 60}
    return json.loads(json.dumps(jsonable({"study": "idinit", "config": {}, "metrics": m})))


@pytest.mark.parametrize("he_trains", [True, False])
def test_claims_and_figures_from_stored_results(he_trains):
    results = _made_up_results(he_trains)
    checked = {c["id"]: c for c in check_claims(idi, results)}
    assert all(c["holds"] for c in checked.values())
    assert checked["idinit_trains_faster_than_he"]["measured"] == pytest.approx(
        0.4 if he_trains else 0.0)
    assert checked["repeated_identity_breaks_rank_constraint"]["measured"] == 100 / 64
    figs = idi.figures(results)
    assert list(figs) == ["idinit"] and all(isinstance(f, Figure) for f in figs.values())
