"""Chizat et al. lazy scale and Woodworth et al. diagonal nets: independent checks."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import diagonal_linear as dl
from experiments import lazy_scale as ls
from experiments.records import jsonable
from experiments.runner import check_claims, run_study


def test_q_alpha_solution_minimises_q_alpha_on_the_constraint_set():
    """The dual solution is feasible and no feasible perturbation lowers Q_alpha."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((6, 15))
    y = rng.standard_normal(6)
    _, _, Vt = np.linalg.svd(X)
    null = Vt[6:]                                      # X null = 0
    for alpha in (0.1, 1.0, 5.0):
        b = dl.implicit_bias_solution(X, y, alpha)
        np.testing.assert_allclose(X @ b, y, atol=1e-8)
        q = dl.q_alpha(b, alpha)
        for _ in range(20):
            step = null.T @ rng.standard_normal(len(null)) * 1e-2
            assert dl.q_alpha(b + step, alpha) >= q - 1e-12


def test_q_alpha_limits_are_l1_and_l2():
    """alpha^2 q(b/alpha^2) -> |b| log(1/alpha^2)-scaled l1 as alpha -> 0; -> |b|^2/(4 alpha^2)."""
    b = np.array([0.3, -1.2, 2.0])
    big = 30.0
    assert dl.q_alpha(b, big) * 4 * big ** 2 == pytest.approx(np.sum(b ** 2), rel=1e-5)
    small = 1e-4
    ratio = dl.q_alpha(b, small) / (np.abs(b).sum() * np.log(1 / small ** 2))
    assert ratio == pytest.approx(1.0, abs=0.1)


def test_min_l1_interpolant_is_sparse_recovery():
    X, y, beta_star = dl.make_data(dl.Config())
    np.testing.assert_allclose(dl.min_l1_interpolant(X, y), beta_star, atol=1e-8)


def test_diagonal_study_runs_and_orders(tmp_path):
    res = run_study("diagonal_linear", overrides=["alphas=0.01,10", "n_steps=20000"],
                    out=tmp_path, progress=False)
    m = res["metrics"]
    assert m["dist_to_l1"][0] < 0.05 and m["dist_to_l2"][1] < 0.05
    assert max(m["dist_to_q_alpha_solution"]) < 0.05
    plain = json.loads(json.dumps(jsonable(res)))
    figs = dl.figures(plain)
    assert set(figs) == {"implicit_bias"} and res["figures"] == ["implicit_bias.png"]
    assert type(figs["implicit_bias"]).__name__ == "Figure"
    assert check_claims(dl, plain) == res["claims"]
    assert all(c["holds"] for c in res["claims"])


def test_lazy_scale_changes_shrink_like_one_over_alpha(tmp_path):
    res = run_study("lazy_scale", overrides=["alphas=4,8,16,32", "n_steps=400", "width=64",
                                             "n_train=16", "n_test=32"],
                    out=tmp_path, progress=False)
    m = res["metrics"]
    w = np.array(m["relative_weight_change"])
    np.testing.assert_allclose(w[:-1] / w[1:], 2.0, rtol=0.1)     # halves as alpha doubles
    d = m["net_vs_linearized_rel_dist"]
    assert all(a > b for a, b in zip(d, d[1:]))


def test_lazy_scale_apply_fn_is_ntk_parametrised():
    """Output variance at init is O(1) whatever the width (NTK parametrisation)."""
    x = jax.random.normal(jax.random.PRNGKey(0), (256, 5))
    x = x / jnp.linalg.norm(x, axis=1, keepdims=True) * np.sqrt(5)
    for n in (64, 4096):
        p = {"u": jax.random.normal(jax.random.PRNGKey(1), (n, 5)),
             "a": jax.random.normal(jax.random.PRNGKey(2), (n,))}
        assert 0.1 < float(jnp.var(ls.apply_fn(p, x))) < 1.0
