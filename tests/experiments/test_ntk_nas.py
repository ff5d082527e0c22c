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


def test_a_padded_group_member_is_its_own_network():
    """Every architecture of a width run as a member of one padded group (depth 3, flags for
    its activation, residual skips and missing layers): the same initial parameters as
    ``init_mlp``, the same outputs as ``apply_mlp``, the same parameter gradient of a random
    projection ``v . f`` of the outputs (``J^T v``: different Jacobians, hence eNTKs, would
    differ here with probability 1) and exactly zero gradient for the missing layers and the
    flags (float64)."""
    import jax
    import jax.numpy as jnp
    from functools import partial
    acts = ("relu", "tanh")
    archs = [(1, 8, "relu", 0), (3, 8, "tanh", 1), (3, 8, "relu", 0)]
    keys = jax.random.split(jax.random.PRNGKey(3), len(archs))
    layers = nas.init_group(keys, jnp.asarray([a[0] for a in archs]),
                            jnp.asarray([nas.ACTIVATIONS[a[2]][1] for a in archs]),
                            d_in=5, width=8, n_hidden=3)
    flags = [nas.architecture_flags(d, a, s, 3, acts) for d, _, a, s in archs]
    group = {"layers": layers, "arch": {k: jnp.asarray(np.stack([f[k] for f in flags]))
                                        for k in flags[0]}}
    rng = np.random.default_rng(4)
    x, v = jnp.asarray(rng.normal(size=(6, 5))), jnp.asarray(rng.normal(size=(6, 10)))

    def value_and_grad(f):     # outputs, and the gradient of their projection on v
        return jax.jit(lambda p: (f(p, x), jax.grad(lambda q: jnp.sum(v * f(q, x)))(p)))
    grouped = value_and_grad(partial(nas.apply_group, activations=acts))
    for j, (depth, width, act, skip) in enumerate(archs):
        own = nas.init_mlp(keys[j], 5, depth, width, act)
        member = jax.tree.map(jnp.asarray, nas._per_net(group, j))
        kept = lambda tree: tree["layers"][:depth] + tree["layers"][-1:]
        for (w, b), (w0, b0) in zip(kept(member), own):
            np.testing.assert_allclose(w, w0, rtol=1e-14, atol=0)
            np.testing.assert_array_equal(b, b0)
        out_member, g_member = grouped(member)
        out_own, g_own = value_and_grad(partial(nas.apply_mlp, act=act, skip=bool(skip)))(own)
        np.testing.assert_allclose(out_member, out_own, rtol=1e-13, atol=1e-13)
        for got, want in zip(jax.tree.leaves(kept(g_member)), jax.tree.leaves(g_own)):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        padded = g_member["layers"][depth:-1]
        assert all(not np.any(g) for g in jax.tree.leaves((padded, g_member["arch"])))


def test_groups_pad_small_networks_and_split_costly_ones():
    archs = [(1, 16, "relu", 0), (3, 16, "relu", 0), (1, 256, "relu", 0), (6, 256, "relu", 0)]
    found = [(w, d, [i for i, _ in m]) for w, d, m in nas.groups(archs, 64)]
    # width 16: padded 2 x 1,754 parameters <= 1.5 x (1,210 + 1,754); width 256:
    # 2 x 348,170 > 1.5 x (19,210 + 348,170)
    assert found == [(16, 3, [0, 1]), (256, 1, [2]), (256, 6, [3])]
    assert nas.n_params(64, 3, 16) == 64 * 16 + 2 * 16 * 16 + 16 * 10 + 3 * 16 + 10
