"""Mok et al. NAS metrics: the metrics against direct computations, Kendall tau against a
brute-force pair count, the search space, and figures from a JSON round trip."""
import itertools
import json

import numpy as np
import pytest

from experiments import ntk_nas as nas
from experiments.claims import check
from experiments.records import jsonable


def test_ntk_metrics_match_their_definitions():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(12, 30))
    k = a @ a.T
    labels = rng.integers(0, 3, 12)
    m = nas.ntk_metrics(k, labels, shift=1e-3)
    ev = np.linalg.eigvalsh(k)
    assert m["neg_condition"] == pytest.approx(-ev[-1] / ev[0], rel=1e-8)
    assert m["trace"] == pytest.approx(np.trace(k), rel=1e-10)
    assert m["frobenius"] == pytest.approx(np.sqrt(np.sum(k ** 2)), rel=1e-10)
    assert m["eigen_score"] == pytest.approx(-np.sum(np.log(ev + 1e-3) + 1 / (ev + 1e-3)),
                                             rel=1e-8)
    assert -1 <= m["lga"] <= 1


def test_kendall_tau_is_the_pair_count_without_ties():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=15), rng.normal(size=15)
    pairs = list(itertools.combinations(range(15), 2))
    concordant = sum(np.sign(x[i] - x[j]) == np.sign(y[i] - y[j]) for i, j in pairs)
    tau, p = nas.kendall_tau(x, y)
    assert tau == pytest.approx((2 * concordant - len(pairs)) / len(pairs), rel=1e-12)
    assert 0 < p <= 1


def test_search_space_skips_need_two_hidden_layers_and_names_are_unique():
    cfg = nas.Config.quick()
    archs = cfg.architectures()
    assert all(d >= 2 for d, _, _, s in archs if s)
    assert len({nas.arch_name(*a) for a in archs}) == len(archs) == 12
    with pytest.raises(ValueError, match="early_steps"):
        nas.Config(early_steps=7).validate()
    with pytest.raises(ValueError, match="activations"):
        nas.Config(activations=("relu", "swish")).validate()


def test_figures_and_claims_from_the_json_round_trip():
    rng = np.random.default_rng(2)
    rows = [{"name": f"a{i}", "test_accuracy": float(rng.uniform(0.7, 0.95)),
             **{m: float(rng.normal()) for m in nas.METRICS}} for i in range(8)]
    for r in rows:
        r["neg_condition"] = -abs(r["neg_condition"]) - 1.0
    acc = [r["test_accuracy"] for r in rows]
    taus = {m: nas.kendall_tau([r[m] for r in rows], acc) for m in nas.METRICS}
    metrics = {"architectures": rows, "kendall_tau": {m: t for m, (t, _) in taus.items()},
               "kendall_p": {m: p for m, (_, p) in taus.items()},
               "lga_minus_condition_tau": taus["lga_early"][0] - taus["neg_condition"][0],
               "n_architectures": 8, "accuracy_range": [min(acc), max(acc)]}
    plain = json.loads(json.dumps(jsonable({"metrics": metrics, "config": {}})))
    assert set(nas.figures(plain)) == {"ntk_nas"}
    out = check(nas.CLAIMS, plain["metrics"])
    assert out[0]["measured"] == pytest.approx(taus["lga_early"][0])
    assert [c["reported"] for c in out] == [False, True, True]
