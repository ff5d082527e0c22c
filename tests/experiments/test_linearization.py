"""Lee et al. linearisation study: independent checks of its pieces (float64, tiny sizes)."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import ntk
from experiments import linearization as lin
from experiments.grokking_lazy_rich import linearized_gd_prediction
from experiments.ntk_finite_width import sample_params

CFG = lin.Config(widths=(8, 16, 32), n_seeds=2, n_train=6, n_test=5)


def _tiny(width=12, hidden_layers=2, activation="relu"):
    cfg = dataclasses.replace(CFG, hidden_layers=hidden_layers, activation=activation)
    init_fn, apply_fn, _ = lin.network(width, cfg)
    x = jax.random.normal(jax.random.PRNGKey(0), (9, 4))
    stack = sample_params(init_fn, x.shape, np.random.default_rng(0), 2)
    p0, p1 = (jax.tree.map(lambda a, s=s: jnp.asarray(a[s]), stack) for s in (0, 1))
    return apply_fn, x, p0, p1


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_linearize_is_f0_plus_explicit_jacobian_times_displacement(activation):
    apply_fn, x, p0, p1 = _tiny(activation=activation)
    w = jax.tree.map(lambda a, b: a + 0.3 * (b - a), p0, p1)        # a finite step away
    flat0, unravel = ravel_pytree(p0)
    jac = jax.jit(jax.jacobian(lambda v: apply_fn(unravel(v), x)[:, 0]))(flat0)   # (N, P)
    want = np.asarray(apply_fn(p0, x))[:, 0] + np.asarray(jac) @ np.asarray(
        ravel_pytree(w)[0] - flat0)
    got = jax.jit(lin.linearize(apply_fn, p0))(w, x)[:, 0]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    # and it is not the network itself away from w0
    assert np.max(np.abs(got - apply_fn(w, x)[:, 0])) > 1e-3


def test_linearised_gd_equals_the_closed_form_on_the_initial_entk():
    """GD on f_lin (the study's training chunk) = the exact discrete-GD solution with Theta_0,
    and the network half of the chunk is plain GD on the network."""
    apply_fn, x, p0, _ = _tiny(width=10, hidden_layers=1)
    x_tr, x_te = x[:6], x[6:]
    y = jnp.sin(3.0 * x_tr[:, 0])
    stack = jax.tree.map(lambda a: a[None], p0)
    flat0, unravel = ravel_pytree(p0)         # Theta_0 = J J^T from an explicit Jacobian
    jac = np.asarray(jax.jit(jax.jacobian(lambda v: apply_fn(unravel(v), x)[:, 0]))(flat0))
    k_tr, k_te = jac[:6] @ jac[:6].T, jac[6:] @ jac[:6].T
    lr, steps = 0.5 * ntk.predict.max_learning_rate(k_tr, 6), 20
    out = lin._gd_chunk({"net": stack, "lin": stack}, stack, x_tr, y, lr, apply_fn, steps)
    f_lin = lin.linearize(apply_fn, p0)(jax.tree.map(lambda a: a[0], out["lin"]), x_te)[:, 0]
    f0_tr, f0_te = apply_fn(p0, x_tr)[:, 0], apply_fn(p0, x_te)[:, 0]
    want = f0_te + linearized_gd_prediction(k_tr, k_te, y - f0_tr, lr / 2, steps)
    np.testing.assert_allclose(f_lin, want, rtol=1e-8, atol=1e-10)

    @jax.jit
    def plain_step(p):
        g = jax.grad(lambda q: 0.5 * jnp.mean((apply_fn(q, x_tr)[:, 0] - y) ** 2))(p)
        return jax.tree.map(lambda a, b: a - lr * b, p, g)
    p = p0
    for _ in range(steps):
        p = plain_step(p)
    for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(out["net"])):
        np.testing.assert_allclose(a, b[0], rtol=1e-9, atol=1e-11)


def test_discrete_gd_closed_form_tends_to_ntk_predict_gradient_flow():
    """T steps of GD at rate lr follow the flow of ntk.predict.gradient_descent_mse to time
    lr T with a first-order error: halving lr (doubling T) halves the gap."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((30, 5))
    k_all = a @ a.T / 5 + 0.1                                  # a PSD kernel
    k_tr, k_te = k_all[:8, :8], k_all[8:, :8]
    y = rng.standard_normal(8)
    flow_time = 40.0
    flow = np.asarray(ntk.predict.gradient_descent_mse(k_tr, y, 1.0)(
        flow_time, 0.0, 0.0, k_te)[1])
    gaps = []
    for lr in (0.2, 0.1, 0.05):
        steps = int(round(flow_time / lr))
        gd = linearized_gd_prediction(k_tr, k_te, y, lr / 2, steps)
        gaps.append(np.linalg.norm(gd - flow))
    assert gaps[0] > 1e-4
    np.testing.assert_allclose(np.array(gaps[:-1]) / np.array(gaps[1:]), 2.0, rtol=0.1)


def test_parameter_count_and_the_predicted_weight_change_slope():
    """|w_0|^2 = #params: n (d + 2) + 1 with one hidden layer, (d + 1) n + (n + 1) n + n + 1
    with two; the predicted slope of 1/|w_0| is -1/2, resp. -> -1 at large widths."""
    d = 64
    one = dataclasses.replace(CFG, hidden_layers=1, widths=(256, 512, 1024))
    two = dataclasses.replace(CFG, hidden_layers=2, widths=(4096, 8192, 16384))
    for n in (8, 100):
        assert lin.parameter_count(n, one, d) == n * (d + 2) + 1
        assert lin.parameter_count(n, two, d) == (d + 1) * n + (n + 1) * n + n + 1
    assert lin.predicted_weight_change_slope(one) == pytest.approx(-0.5, abs=1e-3)
    assert lin.predicted_weight_change_slope(two) == pytest.approx(-1.0, abs=0.01)


def test_digits_parity_data_scaling():
    x_tr, y_tr, x_te, y_te = lin.load_data(lin.Config(n_train=50, n_test=20))
    assert x_tr.shape == (50, 64) and x_te.shape == (20, 64)
    assert float(jnp.mean(jnp.sum(x_tr ** 2, axis=1))) == pytest.approx(64.0, rel=1e-4)
    assert set(np.unique(np.asarray(y_tr))) <= {-1.0, 1.0}


@pytest.mark.parametrize("field,value", [("widths", (64, 32, 128)), ("activation", "tanh"),
                                         ("lr_fraction", 1.0), ("n_steps", 210),
                                         ("hidden_layers", 0)])
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(lin.Config(), **{field: value}).validate()


def test_figures_redraw_from_json_results_and_claims_read_metrics_only():
    """Results shaped like a quick run's (no training), read back from JSON."""
    import json
    from matplotlib.figure import Figure
    from experiments import config as configlib
    from experiments.records import jsonable
    from experiments.runner import check_claims
    w = np.array([64.0, 256.0, 1024.0])
    metrics = {"widths": [64, 256, 1024], "learning_rate": 1.0,
               "rms_diff_end": 0.3 / w, "rms_diff_max": 0.4 / w,
               "relative_weight_change": w ** -0.5, "distance_to_limit_dynamics": w ** -0.5,
               "test_loss": [0.40, 0.35, 0.301], "linearized_test_loss": [0.38, 0.34, 0.30],
               "rms_diff_end_slope": -1.0, "rms_diff_max_slope": -1.0,
               "relative_weight_change_slope": -0.45, "limit_distance_slope": float("nan"),
               "largest_width_history": {"step": [50, 100, 150, 200],
                                         "test_rms_diff": [1e-4, 2e-4, 3e-4, 3e-4]},
               "ntk_gp_test_loss": 0.29, "predicted_relative_weight_change_slope": -0.5}
    results = json.loads(json.dumps(jsonable(
        {"study": "linearization", "config": configlib.to_dict(lin.Config()),
         "metrics": metrics})))
    figs = lin.figures(results)
    assert list(figs) == ["linearization"] and all(isinstance(f, Figure) for f in figs.values())
    checked = {c["id"]: c for c in check_claims(lin, results)}
    assert [c.id for c in lin.CLAIMS] == list(checked)
    assert {k for k, c in checked.items() if not c["holds"]} == {
        "net_converges_to_infinite_width"}                            # NaN never holds
    assert checked["relative_weight_change"]["measured"] == pytest.approx(0.05)
    assert "after 200 GD steps" in checked["linearization_gap_end"]["text"]
