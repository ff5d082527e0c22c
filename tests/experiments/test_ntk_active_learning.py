"""EV-GP active learning (Hemachandra et al. 2023): the greedy rank-one selection against the
posterior variance computed afresh by a solve, that variance against the joint precision
matrix, LCMD against a hand-worked example, figures and claims from a JSON round trip."""
import json

import numpy as np
import pytest
from matplotlib.figure import Figure

from experiments import ntk_active_learning as al
from experiments.claims import check
from experiments.records import jsonable


def _kernel(p=14, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(p, 3))
    return np.exp(-0.5 * np.sum((x[:, None] - x[None]) ** 2, -1)) + 0.05 * (x @ x.T)


def test_posterior_variance_is_the_inverse_of_the_joint_precision():
    """Var(f(x) | noisy f(L)) = 1 / (joint precision)_xx, the precision of the covariance of
    (f(x), f(L) + noise): no solve against K_LL + s^2 I shared with the code."""
    k = _kernel()
    idx, noise = np.array([2, 5, 9]), 0.3
    for x in (0, 5, 11):
        rows = np.r_[x, idx]
        joint = k[np.ix_(rows, rows)] + np.diag(np.r_[0.0, np.full(3, noise ** 2)])
        want = 1 / np.linalg.inv(joint)[0, 0]
        got = al.posterior_variance(k[[x], [x]], k[np.ix_([x], idx)], k[np.ix_(idx, idx)], noise)
        np.testing.assert_allclose(got, [want], rtol=1e-10)


@pytest.mark.parametrize("rule", ["ev", "max_variance"])
def test_greedy_picks_are_the_brute_force_best(rule):
    """Each rank-one-updated pick equals the candidate that is best when every candidate's
    criterion is recomputed from scratch with posterior_variance."""
    k, noise, budget = _kernel(), 0.1, 6
    picks = al.greedy_gp_selection(k, budget, noise, rule=rule)
    diag = np.diag(k)
    for step in range(budget):
        chosen = list(picks[:step])
        best, best_c = -np.inf, None
        for c in range(len(k)):
            if c in chosen:
                continue
            if rule == "ev":
                idx = chosen + [c]
                value = -np.sum(al.posterior_variance(diag, k[:, idx], k[np.ix_(idx, idx)],
                                                      noise))
            else:
                value = (al.posterior_variance(diag[[c]], k[np.ix_([c], chosen)],
                                               k[np.ix_(chosen, chosen)], noise)[0]
                         if chosen else diag[c])
            if value > best + 1e-12:
                best, best_c = value, c
        assert picks[step] == best_c, (step, picks, best_c)
    assert len(set(picks.tolist())) == budget


def test_ev_gp_on_targets_only_counts_the_targets():
    """With targets restricted to one cluster, EV-GP's first pick is inside that cluster."""
    x = np.r_[np.linspace(0, 1, 5), np.linspace(10, 11, 5)]
    k = np.exp(-0.5 * (x[:, None] - x[None]) ** 2)
    assert al.greedy_gp_selection(k, 1, 1e-3, targets=np.arange(5, 10))[0] >= 5
    assert al.greedy_gp_selection(k, 1, 1e-3, targets=np.arange(5))[0] < 5


def test_lcmd_hand_worked():
    """Points 0, 1, 10, 11, 5 on a line: the largest norm (11) first; then its farthest point
    (0); then the heavier cluster, {0, 1, 5} (squared distances 0 + 1 + 25 against 1 + 0),
    gives up its farthest point, 5."""
    feats = np.array([[0.0], [1.0], [10.0], [11.0], [5.0]])
    np.testing.assert_array_equal(al.lcmd_selection(feats, 3), [3, 0, 4])


def test_kmeanspp_never_picks_a_copy_of_a_chosen_point():
    x = np.repeat(np.eye(4), 3, axis=0)          # 4 distinct points, 3 copies each
    picks = al.kmeanspp_selection(x, 4, np.random.default_rng(0))
    assert sorted(picks // 3) == [0, 1, 2, 3]


def test_selection_errors_name_the_argument():
    with pytest.raises(ValueError, match="budget"):
        al.greedy_gp_selection(np.eye(3), 4, 0.1)
    with pytest.raises(ValueError, match="kernel"):
        al.greedy_gp_selection(np.ones((2, 3)), 1, 0.1)
    with pytest.raises(ValueError, match="rule"):
        al.greedy_gp_selection(np.eye(3), 1, 0.1, rule="entropy")


def _made_up_metrics():
    rng = np.random.default_rng(0)
    budgets = [10, 20, 40]
    m = {"budgets": budgets, "methods": list(al.METHODS), "small_budget": al.SMALL_BUDGET,
         "evgp_minus_random_accuracy_small": 0.05, "evgp_over_random_variance_small": 0.8,
         "gp_variance_ranks_output_variance": 0.6,
         "evgp_minus_random_kernel_accuracy_small": 0.04,
         "selection_seconds": {k: 0.1 for k in al.METHODS}}
    for key in ("accuracy", "output_variance", "gp_variance", "kernel_accuracy",
                "final_train_loss"):
        m[key] = {k: rng.uniform(0.1, 0.9, (2, 3)) for k in al.METHODS}
    return m


def test_figures_and_claims_from_a_json_round_trip():
    results = json.loads(json.dumps(jsonable({"metrics": _made_up_metrics()})))
    figs = al.figures(results)
    assert set(figs) == {"learning_curves", "criterion_vs_variance"}
    for fig in figs.values():
        assert isinstance(fig, Figure)
        for ax in fig.axes:
            assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    checked = check(al.CLAIMS, results["metrics"])
    assert all(c["holds"] for c in checked)
    results["metrics"]["evgp_minus_random_accuracy_small"] = -0.01
    assert not check(al.CLAIMS, results["metrics"])[0]["holds"]


def test_config_validation():
    al.Config.quick().validate()
    al.Config.full().validate()
    for bad in (dict(budgets=(20, 10)), dict(budgets=(10, 700)), dict(budgets=(50, 60)),
                dict(n_inits=1), dict(lr_fraction=1.0), dict(noise=0.0),
                dict(n_pool=1500, n_test=400)):
        with pytest.raises(ValueError):
            al.Config(**bad).validate()
