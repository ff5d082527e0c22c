"""pNTK quality study (Mohamadi et al. 2023): its own pieces, checked against closed forms.

The n^-1/2 error trend itself is tested in tests/ntk/test_approx.py and the whole quick
study by tests/papers/test_verify.py; here: the fitter, the error measure, the readout-only
network (where pNTK (x) I equals the eNTK exactly), the cost model's one-output network,
the eigenvalue helper, config validation and the claim logic.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk
from experiments import pntk_quality as pq
from experiments.claims import check
from ntk import approx


def test_loglog_fit_recovers_a_power_law():
    n = np.array([16.0, 64.0, 256.0, 4096.0])
    slope, prefactor = pq.loglog_fit(n, 2.5 * n ** -0.5)
    assert slope == pytest.approx(-0.5, abs=1e-12) and prefactor == pytest.approx(2.5, rel=1e-12)
    # multiplicative noise symmetric in log space leaves the slope within its noise
    noise = np.exp(0.01 * np.array([1.0, -1.0, 1.0, -1.0]))
    assert pq.loglog_fit(n, 3.0 * n ** 0.7 * noise)[0] == pytest.approx(0.7, abs=0.01)
    with pytest.raises(ValueError, match="positive"):
        pq.loglog_fit(n, np.array([1.0, 0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="same length"):
        pq.loglog_fit(n, n[:3])


def test_relative_error_matches_the_closed_form_of_a_two_level_kernel():
    """Theta_ij = A delta_ij + B (1 - delta_ij): pNTK = A + (O - 1) B and
    |Theta - pNTK (x) I|_F^2 = O^2 (O - 1) |B|^2, |Theta|_F^2 = O |A|^2 + O (O - 1) |B|^2."""
    rng = np.random.default_rng(0)
    o, n1, n2 = 4, 5, 3
    a, b = rng.normal(size=(n1, n2)), 0.3 * rng.normal(size=(n1, n2))
    eye = np.eye(o)
    theta = a[:, :, None, None] * eye + b[:, :, None, None] * (1 - eye)
    err = pq.relative_frobenius_error(jnp.asarray(theta), jnp.asarray(a + (o - 1) * b))
    expected = np.sqrt(o ** 2 * (o - 1) * np.sum(b ** 2)
                       / (o * np.sum(a ** 2) + o * (o - 1) * np.sum(b ** 2)))
    assert err == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="full must be"):
        pq.relative_frobenius_error(jnp.asarray(theta), jnp.asarray(a.T))


@pytest.fixture(scope="module")
def tiny():
    cfg = pq.Config(readout_widths=(8, 16, 32))
    init_fn, apply_fn = pq.network(cfg, 24)
    x = jax.random.normal(jax.random.PRNGKey(1), (7, 6)) / np.sqrt(6.0)
    _, params = init_fn(jax.random.PRNGKey(2), x.shape)
    full = ntk.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0)(x, None, params)
    return cfg, apply_fn, params, x, full


def test_readout_only_network_pntk_lift_is_the_entk_exactly(tiny):
    """Training only the readout (NTK parametrisation, width n): Theta_ij(x, x') =
    (W_std^2 / n) phi(x) . phi(x') + b_std^2) delta_ij exactly, with phi the last hidden
    layer's features: block diagonal, so pNTK (x) I_O equals it at any width."""
    cfg, apply_fn, params, x, all_full = tiny
    hidden, readout = params[:-1], params[-1]

    def readout_only(ro, xx):
        return apply_fn((*hidden, ro), xx)

    full = ntk.empirical_ntk_fn(readout_only, trace_axes=(), vmap_axes=0)(x, None, readout)
    p = approx.pntk_fn(readout_only)(x, None, readout)
    assert pq.relative_frobenius_error(full, p) < 1e-12
    w, b = hidden[0]
    phi = jax.nn.relu(cfg.W_std * x @ w / np.sqrt(x.shape[1]) + cfg.b_std * b)
    closed = cfg.W_std ** 2 * phi @ phi.T / phi.shape[1] + cfg.b_std ** 2
    np.testing.assert_allclose(p, closed, rtol=1e-10)
    # with every layer trainable the off-diagonal blocks are not zero
    all_p = all_full.sum((2, 3)) / all_full.shape[2]
    assert pq.relative_frobenius_error(all_full, all_p) > 0.05


def test_cost_model_network_is_the_pntk_and_split_matches_separate_blocks(tiny):
    """The one-output model whose plan prices the pNTK has the kernel (1/O) sum_ij Theta_ij;
    one [train; test] x train call gives the train-train and test-train blocks."""
    _, apply_fn, params, x, full = tiny
    g_kernel = ntk.empirical_ntk_fn(pq.sum_of_logits(apply_fn), vmap_axes=0)(x, None, params)
    np.testing.assert_allclose(g_kernel, full.sum((2, 3)) / full.shape[2], rtol=1e-10)
    rows = ntk.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0)(x, x[:4], params)
    dd, td = pq._split(rows, 4)
    np.testing.assert_allclose(dd, full[:4, :4], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(td, full[4:, :4], rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(dd, jnp.transpose(dd, (1, 0, 3, 2)))


def test_extreme_eigenvalues_of_a_kronecker_kernel():
    """Theta[a, b, i, j] = A_ab B_ij is A (x) B as an (N O, N O) matrix: its eigenvalues are
    the products lambda_A lambda_B; for B = I_O those of A."""
    rng = np.random.default_rng(3)
    ga, gb = rng.normal(size=(5, 5)), rng.normal(size=(3, 3))
    a, b = ga @ ga.T + 0.1 * np.eye(5), gb @ gb.T + 0.1 * np.eye(3)
    ea, eb = np.linalg.eigvalsh(a), np.linalg.eigvalsh(b)
    lam_max, lam_min = pq.extreme_eigenvalues(np.einsum("ab,ij->abij", a, b))
    assert lam_max == pytest.approx(ea[-1] * eb[-1], rel=1e-10)
    assert lam_min == pytest.approx(ea[0] * eb[0], rel=1e-10)
    assert pq.extreme_eigenvalues(np.einsum("ab,ij->abij", a, np.eye(3))) == pytest.approx(
        (ea[-1], ea[0]), rel=1e-10)
    assert pq.extreme_eigenvalues(a) == pytest.approx((ea[-1], ea[0]), rel=1e-10)
    with pytest.raises(ValueError, match="k must be"):
        pq.extreme_eigenvalues(np.ones((2, 3)))


@pytest.mark.parametrize("field,value", [
    ("readout_widths", (64, 64, 128)), ("readout_widths", (64, 128)), ("n_train", 0),
    ("dataset", "cifar10"), ("implementation", "fast"), ("W_std", 0.0), ("diag_reg", -1.0),
])
def test_config_validation_names_the_field(field, value):
    cfg = dataclasses.replace(pq.Config(), **{field: value})
    with pytest.raises(ValueError, match=field):
        cfg.validate()
    pq.Config.quick().validate()
    pq.Config.full().validate()


def test_claims_follow_the_measured_numbers():
    good = {"readout_widths": [64, 512, 4096], "num_outputs": 10, "error_slope": -0.48,
            "lambda_max_ratio": [0.8, 0.9, 0.99], "condition_ratio": [0.3, 0.6, 0.9],
            "pntk_accuracy": [0.7, 0.8, 0.81], "entk_accuracy": [0.7, 0.8, 0.8],
            "prediction_agreement": [0.8, 0.9, 0.97], "flop_ratio": [50.0, 60.0, 63.0]}
    assert all(c["holds"] for c in check(pq.CLAIMS, good))
    bad = {**good, "error_slope": -0.2, "lambda_max_ratio": [0.9, 0.9, 0.9],
           "condition_ratio": [1, 1, 1.3], "pntk_accuracy": [0.7, 0.8, 0.77],
           "prediction_agreement": [1, 1, 0.9], "flop_ratio": [5.0, 6.0, 9.0]}
    assert not any(c["holds"] for c in check(pq.CLAIMS, bad))


def test_figures_redraw_from_json_results():
    """Results shaped like a quick run's (no kernels computed), read back from JSON."""
    import json
    from matplotlib.figure import Figure
    from experiments import config as configlib
    from experiments.records import jsonable
    n = np.array([64.0, 512.0, 4096.0])
    metrics = {"readout_widths": [64, 512, 4096], "num_outputs": 10,
               "frobenius_error": 2 * n ** -0.5, "frobenius_error_per_seed": [[0.26, 0.24],
                                                                              [0.09, 0.08],
                                                                              [0.03, 0.031]],
               "error_slope": -0.5, "error_prefactor": 2.0, "lambda_max_ratio": [0.8, 0.9, 0.99],
               "condition_ratio": [0.3, 0.6, float("nan")], "entk_accuracy": [0.7, 0.8, 0.8],
               "pntk_accuracy": [0.7, 0.8, 0.81], "prediction_agreement": [0.8, 0.9, 0.97],
               "flop_ratio": [50.0, 60.0, 63.0]}
    results = json.loads(json.dumps(jsonable(
        {"study": "pntk_quality", "config": configlib.to_dict(pq.Config()), "metrics": metrics})))
    figs = pq.figures(results)
    assert list(figs) == ["pntk_quality"] and all(isinstance(f, Figure) for f in figs.values())
