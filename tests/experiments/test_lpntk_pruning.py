"""lpNTK pruning study (Guo et al. 2024): its pieces against independent truths.

The lpNTK of :func:`ntk.approx.lpntk_fn` against the authors' definition (label masks
``+1`` on the label, ``-1`` elsewhere, around the full eNTK, summed), the union-find clustering
against scipy's single linkage, forgetting counts and pruning masks by hand, and the figure
redrawn from a JSON round trip. The whole quick study runs in tests/papers/test_verify.py.
"""
import json

import jax
import numpy as np
import pytest

import ntk
from experiments import config as configlib
from experiments import lpntk_pruning as lp
from experiments.records import jsonable
from experiments.runner import check_claims
from ntk import approx


@pytest.fixture
def x64():
    """float64 for this test, and the session's setting back afterwards."""
    before = bool(jax.config.jax_enable_x64)
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", before)


def test_lpntk_is_the_label_masked_sum_of_the_full_entk(x64):
    """Authors' exp2.1: ``sum_ab Theta_ab(x, x') m_a(y) m_b(y')``, ``m = 2 e_y - 1``; ours is
    that divided by the number of outputs O."""
    init_fn, apply_fn, _ = lp.network(16)
    x = jax.random.normal(jax.random.PRNGKey(0), (7, 5))
    labels = np.array([0, 3, 3, 9, 1, 0, 9])
    _, params = init_fn(jax.random.PRNGKey(1), x.shape)
    full = np.asarray(ntk.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0)(
        x, None, params))                                    # (N, N, O, O)
    mask = 2.0 * np.eye(10)[labels] - 1.0
    brute = np.einsum("ijab,ia,jb->ij", full, mask, mask)
    ours = np.asarray(approx.lpntk_fn(apply_fn)(x, None, params, labels1=labels))
    np.testing.assert_allclose(10 * ours, brute, rtol=1e-10, atol=1e-12)
    # readout-only part: s.s' = O - 4 + 4 delta_yy' > 0, so no entry is negative at init here
    assert np.all(brute > 0)


def test_union_find_cut_is_scipy_single_linkage():
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform
    rng = np.random.default_rng(0)
    z = rng.normal(size=(30, 4))
    sim = z @ z.T
    dist = sim.max() - sim
    np.fill_diagonal(dist, 0.0)
    tree = linkage(squareform(dist, checks=False), method="single")
    for k in (1, 2, 5, 13, 30):
        ours = lp.single_linkage_clusters(sim, k)
        theirs = fcluster(tree, k, criterion="maxclust")
        assert len(set(ours)) == k
        # the same partition: labels correspond one to one
        pairs = set(zip(ours.tolist(), theirs.tolist()))
        assert len(pairs) == k == len(set(theirs))
    with pytest.raises(ValueError, match="n_clusters"):
        lp.single_linkage_clusters(sim, 0)


def test_forgetting_events_and_contradictory_partners_by_hand():
    correct = np.array([[0, 1, 1, 0],
                        [1, 0, 1, 0],
                        [0, 1, 1, 0],
                        [1, 0, 0, 0]], bool)
    np.testing.assert_array_equal(lp.count_forgetting(correct), [1, 2, 1, 0])
    k = np.array([[-1.0, -0.2, 0.3], [-0.2, 2.0, 0.0], [0.3, 0.0, 1.0]])
    np.testing.assert_array_equal(lp.contradictory_partners(k), [1, 1, 0])


def test_pruning_masks_keep_the_same_number_per_class_and_collapse_tight_groups():
    # class 0: two tight pairs {0, 1}, {2, 3} and a loner 4; class 1: three samples
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    k = np.eye(8)
    k[0, 1] = k[1, 0] = 0.9
    k[2, 3] = k[3, 2] = 0.8
    k[5, 6] = k[6, 5] = 0.5
    rng = np.random.default_rng(0)
    keep = lp.lpntk_keep_mask(k, labels, 0.6, rng)          # 3 of 5, 2 of 3
    assert keep[labels == 0].sum() == 3 and keep[labels == 1].sum() == 2
    assert keep[4] and keep[7] and keep[[0, 1]].sum() == 1 and keep[[2, 3]].sum() == 1
    rand = lp.random_keep_mask(labels, 0.6, rng)
    assert rand[labels == 0].sum() == 3 and rand[labels == 1].sum() == 2


def test_config_validation_names_the_field():
    lp.Config.quick().validate()
    lp.Config.full().validate()
    for bad, field in ((dict(keep_ratios=(0.9, 0.5)), "keep_ratios"),
                       (dict(keep_ratios=(1.0,)), "keep_ratios"),
                       (dict(dataset="cifar"), "dataset"),
                       (dict(n_seeds=1), "n_seeds")):
        with pytest.raises(ValueError, match=field):
            lp.Config(**bad).validate()


def test_figures_redraw_from_json_results_and_claims_read_metrics_only():
    from matplotlib.figure import Figure
    rng = np.random.default_rng(0)
    ratios, seeds = [0.5, 0.7, 0.9], 3
    forgets = rng.integers(0, 4, 50)
    edges = np.linspace(-0.2, 2.0, 81)
    metrics = {
        "dataset": "digits", "n_train": 50, "n_test": 500, "n_steps": 10, "n_seeds": seeds,
        "keep_ratios": ratios,
        "full_test_accuracy": [0.95, 0.94, 0.95],
        "lpntk_test_accuracy": (0.93 + 0.02 * rng.random((3, seeds))).tolist(),
        "random_test_accuracy": (0.92 + 0.02 * rng.random((3, seeds))).tolist(),
        "full_mean": 0.9467, "lpntk_mean": [0.93, 0.94, 0.95], "accuracy_noise": 0.028,
        "lpntk_minus_random": 0.01, "lpntk_largest_ratio_gap_in_noise_units": 0.1,
        "random_smallest_ratio_drop": 0.02,
        "lpntk_histogram_edges": edges,
        "lpntk_histogram_same_class": rng.integers(0, 100, 80),
        "lpntk_histogram_other_class": rng.integers(0, 100, 80),
        "forgetting_events": forgets, "contradictory_partners": forgets + rng.integers(0, 2, 50),
        "forgotten_fraction": 0.7, "partners_forgotten_mean": 2.0,
        "partners_never_forgotten_mean": 0.5,
    }
    results = json.loads(json.dumps(jsonable(
        {"study": "lpntk_pruning", "config": configlib.to_dict(lp.Config.quick()),
         "metrics": metrics})))
    figs = lp.figures(results)
    assert list(figs) == ["lpntk_pruning"] and isinstance(figs["lpntk_pruning"], Figure)
    checked = check_claims(lp, results)
    assert [c["id"] for c in checked] == [c.id for c in lp.CLAIMS]
    assert all(c["holds"] for c in checked)
    results["metrics"]["partners_never_forgotten_mean"] = 0.0      # 2 / 0: infinitely more
    results["metrics"]["lpntk_minus_random"] = -0.01
    verdicts = {c["id"]: c["holds"] for c in check_claims(lp, results)}
    assert verdicts["forgetting_on_contradictory"] and not verdicts["lpntk_beats_random"]
