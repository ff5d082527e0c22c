"""Liu et al. 2024 rank study: the initialisations, kernels and measures, checked independently."""
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.linalg import subspace_angles

from experiments import rank_richness as rr
from experiments.claims import check
from experiments.records import jsonable


@pytest.mark.parametrize("rank", [1, 3, 7, 12])
def test_low_rank_init_has_rank_r_and_the_gaussian_norm(rank):
    g = np.random.default_rng(0).standard_normal((12, 12)) * 1.25
    w = rr.low_rank_init(g, rank)
    s = np.linalg.svd(w, compute_uv=False)
    assert np.all(s[:rank] > 1e-3 * s[0])
    np.testing.assert_allclose(s[rank:], 0.0, atol=1e-10 * s[0])   # exactly rank r
    assert np.linalg.norm(w) == pytest.approx(np.linalg.norm(g), rel=1e-12)
    # Eckart-Young: the rescaled best rank-r approximation keeps G's top singular subspaces
    u_g = np.linalg.svd(g)[0][:, :rank]
    u_w = np.linalg.svd(w)[0][:, :rank]
    np.testing.assert_allclose(subspace_angles(u_g, u_w), 0.0, atol=1e-7)


def test_full_rank_init_is_the_gaussian_itself():
    g = np.random.default_rng(1).standard_normal((6, 6))
    np.testing.assert_allclose(rr.low_rank_init(g, 6), g, atol=1e-12)
    with pytest.raises(ValueError, match="rank"):
        rr.low_rank_init(g, 7)
    with pytest.raises(ValueError, match="gaussian"):
        rr.low_rank_init(g[0], 1)


def test_aligned_init_column_space_is_the_basis_span():
    rng = np.random.default_rng(2)
    basis = rng.standard_normal((10, 3))
    w = rr.aligned_init(basis, rng.standard_normal((3, 10)), norm=5.0)
    u = np.linalg.svd(w)[0][:, :3]
    np.testing.assert_allclose(subspace_angles(u, basis), 0.0, atol=1e-7)  # principal angles
    assert np.linalg.matrix_rank(w) == 3
    assert np.linalg.norm(w) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="right_factor"):
        rr.aligned_init(basis, rng.standard_normal((2, 10)), norm=1.0)


def test_make_seed_inits_share_norm_and_aligned_reads_only_task_directions():
    cfg = dataclasses.replace(rr.Config(), dim=6, width=8, n_train=5, ranks=(1, 2, 4, 8))
    x, y, q, p0 = rr.make_seed(cfg, 0)
    ws, w1 = p0["w"], p0["w1"][0]
    norms = np.linalg.norm(ws, axis=(1, 2))
    np.testing.assert_allclose(norms, norms[-1], rtol=1e-12)
    for w, r in zip(ws, cfg.ranks):
        assert np.linalg.matrix_rank(w, tol=1e-8 * np.linalg.norm(w)) == r
    aligned = ws[-1]
    assert np.linalg.matrix_rank(aligned, tol=1e-8 * np.linalg.norm(aligned)) == cfg.task_dim
    # first layer linearised: inputs orthogonal to the task subspace Q give zero pre-activations
    # in the second layer; inputs inside it do not
    rng = np.random.default_rng(3)
    x_perp = rng.standard_normal((4, cfg.dim))
    x_perp -= x_perp @ q @ q.T
    np.testing.assert_allclose(x_perp @ w1 @ aligned, 0.0, atol=1e-10 * np.linalg.norm(aligned))
    x_task = rng.standard_normal((4, cfg.task_dim)) @ q.T
    assert np.linalg.norm(x_task @ w1 @ aligned) > 1e-3 * np.linalg.norm(aligned)
    np.testing.assert_allclose([np.mean(y), np.std(y)], [0.0, 1.0], atol=1e-12)


def _tiny_params(key=0, d=3, n=5):
    k = jax.random.split(jax.random.PRNGKey(key), 3)
    return {"w1": jax.random.normal(k[0], (d, n)), "w": jax.random.normal(k[1], (n, n)),
            "a": jax.random.normal(k[2], (n,))}


def _hidden_kernel_closed_form(x, p):
    """K_W(x, x') = (h1 . h1' / N) (delta . delta'), delta_j = a_j tanh'(z2_j) / sqrt(N)."""
    x, p = np.asarray(x), {k: np.asarray(v) for k, v in p.items()}
    n = p["a"].shape[0]
    h1 = np.tanh(x @ p["w1"] / np.sqrt(x.shape[1]))
    z2 = h1 @ p["w"] / np.sqrt(n)
    delta = p["a"] * (1 - np.tanh(z2) ** 2) / np.sqrt(n)
    return (h1 @ h1.T / n) * (delta @ delta.T)


def test_hidden_weight_ntk_matches_closed_form():
    p = _tiny_params()
    x = jax.random.normal(jax.random.PRNGKey(9), (4, 3))
    np.testing.assert_allclose(jax.jit(rr.hidden_weight_ntk)(x, p),
                               _hidden_kernel_closed_form(x, p), rtol=1e-10, atol=1e-14)


def test_measures_match_explicit_numpy_formulas():
    """Kernel change = 1 - <K0, KT>_F / (|K0|_F |KT|_F); task alignment = centered cosine."""
    p0, pt = _tiny_params(0), _tiny_params(1)
    x = jax.random.normal(jax.random.PRNGKey(9), (6, 3))
    y = jnp.asarray(np.random.default_rng(4).standard_normal(6))
    m = jax.jit(rr._measures)(p0, pt, x, y)
    k0, kt = _hidden_kernel_closed_form(x, p0), _hidden_kernel_closed_form(x, pt)
    ka = np.sum(k0 * kt) / np.linalg.norm(k0) / np.linalg.norm(kt)
    assert float(m["hidden_kernel_change"]) == pytest.approx(1 - ka, rel=1e-9)
    h = np.eye(6) - 1 / 6
    kc, yc = h @ k0 @ h, h @ np.outer(y, y) @ h
    ta = np.sum(kc * yc) / np.linalg.norm(kc) / np.linalg.norm(yc)
    assert float(m["hidden_kernel_task_alignment_0"]) == pytest.approx(ta, rel=1e-9)
    dw = np.linalg.norm(np.asarray(pt["w"] - p0["w"])) / np.linalg.norm(np.asarray(p0["w"]))
    assert float(m["weight_change"]) == pytest.approx(dw, rel=1e-12)
    # the full NTK is the sum of the three layers' kernels, so it dominates the hidden one
    jac = jax.jit(jax.jacrev(lambda q: rr.apply_fn(q, x)[:, 0]))(p0)
    k_full = sum(np.asarray(j).reshape(6, -1) @ np.asarray(j).reshape(6, -1).T
                 for j in jax.tree.leaves(jac))
    np.testing.assert_allclose(jax.jit(rr.full_ntk)(x, p0), k_full, rtol=1e-10, atol=1e-14)


def test_batched_gd_equals_one_network_loop():
    """The stacked (seeds, inits) GD is plain GD on each network's centered loss."""
    ps = [[_tiny_params(3 * s + m) for m in range(2)] for s in range(2)]
    stack = {k: jnp.stack([jnp.stack([ps[s][m][k] for m in range(2)]) for s in range(2)])
             for k in ("w1", "w", "a")}
    x = jax.random.normal(jax.random.PRNGKey(5), (2, 4, 3))
    y = jax.random.normal(jax.random.PRNGKey(6), (2, 4))
    out = rr._gd_chunk(stack, stack, x, y, 0.3, 3)
    s, m = 1, 0
    p, p0 = ps[s][m], ps[s][m]

    def loss(q):
        f = (rr.apply_fn(q, x[s]) - rr.apply_fn(p0, x[s]))[:, 0]
        return jnp.sum((f - y[s]) ** 2) / 4
    grad = jax.jit(jax.grad(loss))
    for _ in range(3):
        g = grad(p)
        p = {k: p[k] - 0.3 * g[k] for k in p}
    for k in p:
        np.testing.assert_allclose(out[k][s, m], p[k], rtol=1e-10, atol=1e-13)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="ranks"):
        dataclasses.replace(rr.Config(), ranks=(1, 2, 16)).validate()
    with pytest.raises(ValueError, match="task_dim"):
        dataclasses.replace(rr.Config(), task_dim=3).validate()
    with pytest.raises(ValueError, match="n_steps"):
        dataclasses.replace(rr.Config(), n_steps=150).validate()
    rr.Config.full().validate()


def _synthetic_metrics(trend):
    """Metrics shaped like a quick run's, every change following ``trend`` over the ranks."""
    cfg = rr.Config()
    ranks = list(cfg.ranks)
    m = {"ranks": ranks, "task_dim": cfg.task_dim, "n_seeds": cfg.n_seeds}
    for key in ("weight_change", "hidden_kernel_change", "ntk_change", "ntk_task_alignment_0",
                "ntk_task_alignment_T"):
        m[key + "_mean"] = list(trend)
        m[key + "_std"] = [0.1 * v for v in trend]
        m[key + "_aligned_mean"], m[key + "_aligned_std"] = 2 * trend[1], 0.1 * trend[1]
        m[key + "_spearman"] = rr._spearman(ranks, trend)
        m[key + "_lowest_over_full"] = trend[0] / trend[-1]
        m[key + "_aligned_over_random"] = 2.0
    m["ntk_task_alignment_0_aligned_over_random"] = 0.5
    m["max_final_relative_loss"] = 0.5
    return m


def test_claims_fail_when_the_trend_is_reversed():
    """Synthetic metrics: a change that grows with rank and an aligned init that moves more."""
    up = [0.01 * (i + 1) for i in range(len(rr.Config().ranks))]
    checked = check(rr.CLAIMS, _synthetic_metrics(up))
    assert len(checked) == 9 and not any(c["holds"] for c in checked)
    assert all(isinstance(c["measured"], float) for c in checked)
    assert "weight_change_rank_1_over_full" in {c["id"] for c in checked}


def test_figures_redraw_from_a_json_round_trip():
    down = [0.32 / 2 ** i for i in range(len(rr.Config().ranks))]
    results = json.loads(json.dumps(jsonable({"study": "rank_richness", "config": rr.Config(),
                                              "metrics": _synthetic_metrics(down)})))
    figs = rr.figures(results)
    assert set(figs) == {"richness_vs_rank", "task_alignment"}
    assert all(type(f).__name__ == "Figure" and f.axes for f in figs.values())
