"""ZerO pieces: Hadamard matrices, Algorithm 1's layers, the identity degeneracy, ranks."""
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.figure import Figure

from experiments import zero_init as zi
from experiments._init_nets import _gd_chunk, cross_entropy, numerical_rank, stable_rank
from experiments.records import jsonable
from experiments.runner import check_claims


def _sylvester(m):
    h = np.ones((1, 1))
    for _ in range(m):
        h = np.block([[h, h], [h, -h]])
    return h


@pytest.mark.parametrize("m", [0, 1, 3, 6])
def test_hadamard_is_sylvester_and_orthogonal(m):
    h = zi.hadamard(m)
    np.testing.assert_array_equal(h, _sylvester(m))
    np.testing.assert_array_equal(h @ h.T, 2 ** m * np.eye(2 ** m))


def test_expanding_zero_layer_is_full_rank_deterministic_and_norm_doubling():
    w = zi.zero_layer(48, 64)                    # m = 6, c = 2^(-5/2)
    c = 2.0 ** -2.5
    assert set(np.unique(w)) == {-c, c}
    np.testing.assert_array_equal(w, zi.zero_layer(48, 64))          # no randomness
    assert np.linalg.matrix_rank(w) == 48
    np.testing.assert_allclose(w @ w.T, 2.0 * np.eye(48), atol=1e-12)  # |x W|^2 = 2 |x|^2
    assert len({tuple(col) for col in w.T}) == 64                     # 64 distinct units


def test_square_shrinking_identity_and_readout():
    np.testing.assert_array_equal(zi.zero_layer(5, 5), np.eye(5))
    np.testing.assert_array_equal(zi.zero_layer(5, 3), np.eye(5, 3))
    np.testing.assert_array_equal(zi.zero_layer(3, 5, "identity"), np.eye(3, 5))
    layers = zi.zero_mlp([3, 4, 4, 2])
    np.testing.assert_array_equal(layers[-1]["w"], 0.0)
    np.testing.assert_array_equal(layers[1]["w"], np.eye(4))
    with pytest.raises(ValueError, match="expand"):
        zi.zero_layer(3, 5, "random")


def test_sylvester_cut_duplicates_units_when_expanding_by_two():
    """Algorithm 1 with P_in <= 2^(m-1): rows i and i + 2^(m-1) of H_m agree on the first
    P_in columns, so 64 -> 128 makes 64 pairs of identical units."""
    w = zi.zero_layer(64, 128)
    np.testing.assert_array_equal(w[:, :64], w[:, 64:])


def _loss(x, y):
    return lambda p: cross_entropy(zi.mlp_preactivations(p, x, "relu")[-1], y)


def test_identity_expansion_keeps_extra_units_dead_and_duplicates_stay_tied():
    """GD from the identity-expanded init never moves the extra units off zero (ReLU'(0) = 0),
    so the features keep rank <= d; from the 2x Sylvester cut the duplicated pairs stay equal
    (a permutation symmetry of the init that GD preserves); Hadamard with distinct units
    exceeds rank d."""
    rng = np.random.default_rng(0)
    d, n = 6, 8
    x = jnp.asarray(rng.standard_normal((40, d)), jnp.float32)
    y = jax.nn.one_hot(rng.integers(0, 3, 40), 3)
    train = _gd_chunk(_loss(x, y), 0.5, 20)        # one compiled program for both inits
    trained = train(zi.zero_mlp([d, n, n, n, 3], "identity"))
    h = np.asarray(zi.hidden_features(trained, x))
    assert np.all(h[:, d:] == 0) and np.linalg.matrix_rank(h) <= d
    for layer in trained[1:-1]:
        np.testing.assert_array_equal(np.asarray(layer["w"])[:, d:], np.eye(n)[:, d:])
    # tied up to rounding: float64 (the test session runs with x64)
    x64 = x[:, :4].astype(jnp.float64)
    init64 = jax.tree.map(lambda a: a.astype(jnp.float64), zi.zero_mlp([4, n, n, 3]))
    h2 = np.asarray(zi.hidden_features(_gd_chunk(_loss(x64, y), 0.5, 20)(init64), x64))
    np.testing.assert_allclose(h2[:, :4], h2[:, 4:], atol=1e-12)
    assert np.abs(h2).max() > 0.1
    mixed = train(zi.zero_mlp([d, n, n, n, 3], "hadamard"))
    assert np.linalg.matrix_rank(np.asarray(zi.hidden_features(mixed, x)), tol=1e-4) > d


def test_stable_and_numerical_rank():
    u, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((6, 6)))
    m = u @ np.diag([3.0, 1.0, 1.0, 0, 0, 0]) @ u.T
    assert stable_rank(m) == pytest.approx(11 / 9)
    assert numerical_rank(m) == 3
    assert stable_rank(np.outer([1.0, 2.0], [3.0, 1.0, 1.0])) == pytest.approx(1.0)
    assert stable_rank(np.zeros((3, 3))) == 0.0


def test_config_validation():
    with pytest.raises(ValueError, match="width"):
        zi.Config(width=128).validate()
    assert zi.PIXELS == 48 and math.ceil(math.log2(zi.PIXELS)) == 6


def _made_up_results(zero_accuracy):
    """Metrics shaped as run() returns them, through the JSON round trip of results.json."""
    m = {"inits": list(zi.INITS), "input_rank": 40, "depth": 8, "width": 64, "lr": 0.05,
         "n_steps": 20, "loss_ratio_zero_vs_random": 2.0}
    for init, acc, ranks, final_rank in (("zero", zero_accuracy, [0.0, 1.1, 1.5], 60),
                                          ("identity", 0.9, [0.0, 1.0, 1.2], 40),
                                          ("random", 0.9, [0.0, 1.0, 1.1], 64)):
        m[init] = {"step": [0, 10, 20], "loss": [2.3, 0.5, 0.01], "final_loss": 0.01,
                   "accuracy": [0.1, 0.8, 1.0], "delta_stable_rank": ranks,
                   "weight_stable_rank": [1.0, 1.0, 1.0], "test_accuracy": acc,
                   "feature_rank_init": 40, "feature_rank_final": final_rank}
    m["accuracy_noise"] = 2 * math.sqrt((zero_accuracy * (1 - zero_accuracy) + 0.09) / 100)
    return json.loads(json.dumps(jsonable({"study": "zero_init", "config": {}, "metrics": m})))


def test_claims_and_figures_from_stored_results():
    results = _made_up_results(0.89)
    checked = {c["id"]: c for c in check_claims(zi, results)}
    assert all(c["holds"] for c in checked.values())
    noise = results["metrics"]["accuracy_noise"]
    assert checked["zero_accuracy_like_random"]["measured"] == pytest.approx(-0.01 / noise)
    assert checked["zero_rank_grows"]["measured"] == pytest.approx(1.5 / 1.1)
    assert checked["identity_rank_bounded"]["measured"] == 1.0
    # more than two standard deviations worse: the claim fails
    failed = [c["id"] for c in check_claims(zi, _made_up_results(0.7)) if not c["holds"]]
    assert failed == ["zero_accuracy_like_random"]
    figs = zi.figures(results)
    assert list(figs) == ["zero_init"] and all(isinstance(f, Figure) for f in figs.values())
