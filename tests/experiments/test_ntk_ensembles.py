"""NTK ensembles (He, Lakshminarayanan & Teh 2020): the NTKGP-param construction against the
analytic kernels by Monte Carlo, the analytic twins against the ensemble Gaussian exactly, and
figures and claims from a JSON round trip."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.figure import Figure

from experiments import ntk_ensembles as ne
from experiments.claims import check
from experiments.records import jsonable
from ntk import predict

X = np.array([[-3.0], [-0.5], [1.0], [4.0]])


def test_prior_function_is_the_ntk_minus_nngp_gp():
    """One hidden layer, width 8, 20,000 draws of (theta_0, theta*): cov f_0 = K (NNGP) and
    cov delta = Theta - K (delta = J_{theta_0} theta*, readout zeroed), exactly in expectation
    at any width, and f_0, delta uncorrelated; every entry within 5 standard errors."""
    cfg = ne.Config(b_std=0.5)
    init_fn, apply_fn, kernel_fn = ne.network(cfg, 8, 1)
    rng = np.random.default_rng(0)
    draw = lambda: jax.tree.map(jnp.asarray, ne.draw_parameters(init_fn, 1, 20_000, rng))
    f0, _, delta, _ = ne._initial_functions(draw(), draw(), jnp.asarray(X), jnp.asarray(X[:1]),
                                            apply_fn=apply_fn)
    f0, delta = np.asarray(f0)[:, :, 0], np.asarray(delta)[:, :, 0]
    k = kernel_fn(X, None, ("nngp", "ntk"))
    truths = ((f0, f0, np.asarray(k.nngp)), (delta, delta, np.asarray(k.ntk - k.nngp)),
              (f0, delta, np.zeros((4, 4))))
    for a, b, want in truths:
        prod = a[:, :, None] * b[:, None, :]
        se = prod.std(0) / np.sqrt(len(a))
        assert np.all(np.abs(prod.mean(0) - want) < 5 * se + 1e-12), (prod.mean(0), want)
    assert np.min(np.linalg.eigvalsh(np.asarray(k.ntk - k.nngp))) > 0  # a real extra prior


@pytest.mark.parametrize("kind", ne.KINDS)
def test_twins_reproduce_the_ensemble_gaussian_exactly(kind):
    """Initial functions +-sqrt(P) L e_k (L L^T = the prior covariance: K, or Theta for NTKGP)
    have mean 0 and covariance exactly the prior; their analytic twins must then have exactly
    the mean and covariance of gradient_descent_mse_ensemble at t = T (members as columns with
    the learning rate scaled by M)."""
    cfg = ne.Config()
    _, _, kernel_fn = ne.network(cfg, 8, 1)
    x, y, _ = ne.toy_data(cfg)
    x_test = np.array([[-5.0], [0.0], [3.0]])
    xs = np.concatenate([x, x_test])
    k = kernel_fn(xs, None, ("nngp", "ntk"))
    prior = np.asarray(k.nngp if kind == "standard" else k.ntk)
    p = len(xs)
    chol = np.linalg.cholesky(prior + 1e-10 * np.eye(p)) * np.sqrt(p)
    g = np.concatenate([chol.T, -chol.T])[:, :, None]            # (2P members, P, 1)
    lr, steps, sigma2 = 0.2, 300, 0.01
    theta = np.asarray(k.ntk)
    tw = ne.twins(jnp.asarray(theta[:20, :20]), jnp.asarray(theta[20:, :20]), y, g[:, :20],
                  g[:, 20:], lr, steps, sigma2)[:, :, 0]
    fn = ne.ntk_prior(kernel_fn) if kind == "ntkgp" else ne.both_kernels(kernel_fn)
    ens = predict.gradient_descent_mse_ensemble(fn, x, y, learning_rate=lr, diag_reg=sigma2,
                                                diag_reg_absolute_scale=True)
    want = ens(t=float(steps), x_test=x_test, get="ntk", compute_cov=True)
    np.testing.assert_allclose(tw.mean(0), np.asarray(want.mean)[:, 0], atol=1e-7)
    centred = tw - tw.mean(0)
    np.testing.assert_allclose(centred.T @ centred / len(tw), want.covariance, atol=1e-6,
                               rtol=1e-6)


def test_auroc_counts_pairs():
    assert ne.auroc([0.1, 0.2], [0.3, 0.4]) == 1.0
    assert ne.auroc([0.3, 0.4], [0.1, 0.2]) == 0.0
    assert ne.auroc([1.0, 2.0], [1.0, 3.0]) == pytest.approx(5 / 8)


def _made_up_metrics():
    rng = np.random.default_rng(1)
    widths = [32, 128, 512]
    m = {"widths": widths, "n_members": 8, "var_ratio_mc_sd": float(np.sqrt(2 / 7)),
         "toy_var_ratio_geomean": 5.0, "toy_var_ratio_frac_ge_1": 1.0,
         "toy_analytic_var_excess_min": 1e-3}
    for kind in ne.KINDS:
        for what in ("mean_gap", "var_gap", "mean_gap_raw", "var_gap_raw"):
            m[f"{kind}_{what}"] = list(1.0 / np.sqrt(widths))
        m[f"{kind}_mean_gap_slope"] = m[f"{kind}_var_gap_slope"] = -0.5
        m[f"{kind}_mean_z_rms"] = [3.0, 2.0, 1.0]
        m[f"{kind}_var_ratio"] = [1.5, 1.2, 1.05]
        m[f"{kind}_final_loss"] = [0.01] * 3
    xt = np.linspace(-6, 6, 11)
    toy = {"x_train": rng.uniform(-2, 2, 6), "y_train": rng.normal(size=6), "x_test": xt,
           "y_true": xt * np.sin(xt), "learning_rate": 0.2, "steps": 100}
    for kind in ne.KINDS:
        for k in ("mean", "mean_inf", "ensemble_mean"):
            toy[f"{kind}_{k}"] = np.sin(xt)
        for k in ("var", "var_inf", "ensemble_var"):
            toy[f"{kind}_{k}"] = 0.1 + xt ** 2 / 10
    m["toy"] = toy
    dig = {"learning_rate": 1.0, "steps": 10, "n_id": 5, "auroc_gain": 0.02,
           "ood_var_ratio_geomean": 2.0, "id_var_ratio_geomean": 1.5}
    for kind in ne.KINDS:
        dig[f"{kind}_var_id"] = rng.uniform(0.1, 0.2, 5)
        dig[f"{kind}_var_ood"] = rng.uniform(0.2, 0.4, 5)
        dig[f"{kind}_auroc"] = 0.9
        dig[f"{kind}_ood_over_id_var"] = 2.0
    m["digits"] = dig
    return m


def test_figures_and_claims_from_a_json_round_trip():
    results = json.loads(json.dumps(jsonable({"metrics": _made_up_metrics(),
                                              "config": {"widths": [32, 128, 512]}})))
    figs = ne.figures(results)
    assert set(figs) == {"toy_regression", "width_convergence", "variance_ood"}
    for fig in figs.values():
        assert isinstance(fig, Figure)
        for ax in fig.axes:
            assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    assert figs["width_convergence"].axes[0].get_xscale() == "log"
    checked = check(ne.CLAIMS, results["metrics"])
    assert all(c["holds"] for c in checked), [(c["id"], c["measured"]) for c in checked]


def test_config_validation():
    ne.Config.quick().validate()
    ne.Config.full().validate()
    for bad in (dict(widths=(64,)), dict(widths=(128, 64)), dict(n_members=2),
                dict(toy_steps=510), dict(lr_fraction=1.0), dict(toy_train=21)):
        with pytest.raises(ValueError):
            ne.Config(**bad).validate()
