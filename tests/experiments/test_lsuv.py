"""LSUV pieces: orthonormal matrices, the rescaling loop, variances on a fresh batch."""
import json

import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.figure import Figure

from experiments import lsuv
from experiments._init_nets import mlp_preactivations, orthogonal_matrix, orthogonal_mlp
from experiments.records import jsonable
from experiments.runner import check_claims


@pytest.mark.parametrize("shape", [(5, 5), (3, 7), (7, 3)])
def test_orthogonal_matrix_has_orthonormal_rows_or_columns(shape):
    q = orthogonal_matrix(np.random.default_rng(0), *shape, gain=2.0)
    small = min(shape)
    gram = q @ q.T if shape[0] <= shape[1] else q.T @ q
    np.testing.assert_allclose(gram, 4.0 * np.eye(small), atol=1e-12)


def _data(n, d, seed):
    """Inputs with unequal pixel scales and a mean, like real data."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) * np.linspace(0.2, 2.0, d) + 0.3


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_lsuv_sets_unit_variance_per_layer_on_a_fresh_batch(activation):
    """After LSUV on 4 batches of 256, every layer's output variance on 2000 new inputs from
    the same distribution (computed with the JAX forward, an independent implementation of the
    net) is 1 within the tolerance plus sampling error."""
    d, width, depth = 12, 32, 10
    layers = orthogonal_mlp(np.random.default_rng(1), [d] + [width] * (depth - 1) + [5])
    batches = _data(4 * 256, d, 2).reshape(4, 256, d)
    layers, its, var = lsuv.lsuv(layers, batches, activation, tol_var=0.05, max_iter=10)
    assert all(abs(v - 1) < 0.05 for v in var) and max(its) < 10
    fresh = jnp.asarray(_data(2000, d, 3), jnp.float32)
    got = [float(jnp.var(z)) for z in mlp_preactivations(layers, fresh, activation)]
    np.testing.assert_allclose(got, 1.0, atol=0.15)


def test_one_batch_one_rescale_is_exact():
    """z^l is linear in W^l (zero biases): on a single batch one rescale gives Var = 1 to
    rounding, so every layer takes exactly two passes (rescale, then the passing check)."""
    d = 6
    layers = orthogonal_mlp(np.random.default_rng(4), [d, 16, 16, 16, 3])
    batch = _data(64, d, 5)[None]
    layers, its, var = lsuv.lsuv(layers, batch, "relu", tol_var=1e-9, max_iter=5)
    assert its == [2, 2, 2, 2]
    np.testing.assert_allclose(var, 1.0, atol=1e-9)
    z = lsuv.preactivations_np(layers, batch[0], "relu")
    np.testing.assert_allclose([np.var(v) for v in z], 1.0, atol=1e-6)   # float32 weights


def test_numpy_forward_matches_the_jax_forward():
    layers = orthogonal_mlp(np.random.default_rng(6), [4, 8, 8, 2])
    x = _data(10, 4, 7)
    for a in ("relu", "tanh"):
        ref = mlp_preactivations(layers, jnp.asarray(x, jnp.float32), a)
        for zn, zj in zip(lsuv.preactivations_np(layers, x, a), ref):
            np.testing.assert_allclose(zn, zj, rtol=1e-5, atol=1e-5)


def test_bad_inputs_raise():
    layers = orthogonal_mlp(np.random.default_rng(0), [4, 8, 2])
    with pytest.raises(ValueError, match="batches"):
        lsuv.lsuv(layers, np.zeros((10, 4)), "relu")
    with pytest.raises(ValueError, match="activations"):
        lsuv.Config(activations=("sigmoid",)).validate()


def _made_up_results(relu_iterations):
    """Metrics shaped as run() returns them (4 layers), through the JSON round trip of
    results.json; the tanh Gaussian baseline diverged (an infinite final loss)."""
    m = {"activations": ["relu", "tanh"], "inits": list(lsuv.INITS), "depth": 4,
         "tol_var": 0.1, "max_iter": 10, "lsuv_batch": 128, "lr": 0.05, "n_steps": 50}
    for a, its in (("relu", relu_iterations), ("tanh", [2, 3, 2, 2])):
        out = {}
        for init, final in zip(lsuv.INITS, (0.1, 0.5, float("inf"))):
            out[init] = {"variance_test": [1.05, 0.9, 1.1, 0.95], "step": [0, 25, 50],
                         "loss": [2.3, 1.0, final], "final_loss": final}
        out["lsuv"].update(iterations=its, max_dev_test=0.1)
        for base in lsuv.INITS[1:]:
            out[f"loss_ratio_vs_{base}"] = 0.1 / out[base]["final_loss"]
        m[a] = out
    return json.loads(json.dumps(jsonable({"study": "lsuv", "config": {}, "metrics": m})))


def test_claims_and_figures_from_stored_results():
    checked = check_claims(lsuv, _made_up_results([2, 2, 3, 2]))
    assert [c["id"] for c in checked] == [
        "relu_unit_variance", "relu_iterations", "relu_faster_than_orthogonal",
        "tanh_unit_variance", "tanh_iterations", "tanh_faster_than_orthogonal",
        "tanh_faster_than_gaussian"]
    assert all(c["holds"] for c in checked)
    # a layer that used all T_max passes did not meet the tolerance
    results = _made_up_results([2, 10, 3, 2])
    failed = [c["id"] for c in check_claims(lsuv, results) if not c["holds"]]
    assert failed == ["relu_iterations"]
    figs = lsuv.figures(results)
    assert list(figs) == ["lsuv"] and all(isinstance(f, Figure) for f in figs.values())
