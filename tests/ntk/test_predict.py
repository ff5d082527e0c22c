"""predict: GP posteriors vs direct solves and Monte Carlo, GD-MSE vs explicit linearized GD."""
import os
import subprocess
import tempfile
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk import predict

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REF_PYTHON = os.path.join(ROOT, ".venv-ref", "bin", "python")


def _mlp(key, sizes):
    params = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        key, k1, k2 = jax.random.split(key, 3)
        params.append({"w": jax.random.normal(k1, (a, b)), "b": 0.1 * jax.random.normal(k2, (b,))})
    return params


def _apply(params, x):
    h = x
    for i, p in enumerate(params):
        h = h @ p["w"] / jnp.sqrt(p["w"].shape[0]) + p["b"]
        if i < len(params) - 1:
            h = jnp.tanh(h)
    return h


def _full_ntk(params, x1, x2):
    """Reference full eNTK (N1, N2, O, O) by jacrev, leaf by leaf."""
    j1 = jax.jacrev(_apply)(params, x1)
    j2 = jax.jacrev(_apply)(params, x2)
    terms = jax.tree_util.tree_map(
        lambda a, b: jnp.einsum("ioP,jpP->ijop", a.reshape(a.shape[:2] + (-1,)),
                                b.reshape(b.shape[:2] + (-1,))), j1, j2)
    return sum(jax.tree_util.tree_leaves(terms))


def _psd(n, seed, jitter=1e-2):
    a = np.random.default_rng(seed).normal(size=(n, n))
    return jnp.asarray(a @ a.T / n + jitter * np.eye(n))


def _kernels(n_train=12, n_test=5, seed=0):
    """A joint NNGP / NTK pair on train + test from random features."""
    rng = np.random.default_rng(seed)
    f1 = rng.normal(size=(n_train + n_test, 40))
    f2 = np.concatenate([f1, rng.normal(size=(n_train + n_test, 20))], 1)
    nngp = jnp.asarray(f1 @ f1.T / 40)
    ntk = jnp.asarray(f2 @ f2.T / 60)
    d, t = slice(0, n_train), slice(n_train, None)
    return nngp, ntk, d, t


def test_gp_inference_nngp_equals_direct_solve():
    nngp, _, d, t = _kernels()
    y = jnp.asarray(np.random.default_rng(1).normal(size=(12, 3)))
    ridge = 0.1
    pred = predict.gp_inference(nngp[d, d], y, diag_reg=ridge)(
        "nngp", k_test_train=nngp[t, d], k_test_test=nngp[t, t])
    kdd = np.asarray(nngp[d, d])
    kreg = kdd + ridge * np.trace(kdd) / 12 * np.eye(12)  # relative ridge
    np.testing.assert_allclose(pred.mean, nngp[t, d] @ np.linalg.solve(kreg, y), rtol=1e-9)
    cov = nngp[t, t] - nngp[t, d] @ np.linalg.solve(kreg, nngp[d, t])
    np.testing.assert_allclose(pred.covariance, cov, rtol=1e-9, atol=1e-12)
    # absolute ridge
    pred_abs = predict.gp_inference(nngp[d, d], y, diag_reg=ridge, diag_reg_absolute_scale=True)(
        "nngp", k_test_train=nngp[t, d])
    np.testing.assert_allclose(
        pred_abs, nngp[t, d] @ np.linalg.solve(kdd + ridge * np.eye(12), y), rtol=1e-9)


def test_ntk_gp_reduces_to_nngp_when_kernels_coincide():
    nngp, _, d, t = _kernels(seed=2)
    y = jnp.ones((12, 2))
    k = {"nngp": nngp, "ntk": nngp}
    out = predict.gp_inference({"nngp": nngp[d, d], "ntk": nngp[d, d]}, y)(
        k_test_train={g: v[t, d] for g, v in k.items()},
        k_test_test={g: v[t, t] for g, v in k.items()})
    np.testing.assert_allclose(out["ntk"].mean, out["nngp"].mean, rtol=1e-9)
    np.testing.assert_allclose(out["ntk"].covariance, out["nngp"].covariance, atol=1e-10)


def test_ntk_gp_covariance_is_the_ensemble_of_trained_linear_networks():
    """f_inf(x) = f0(x) + Theta_xd Theta_dd^-1 (Y - f0(X)), f0 ~ GP(0, NNGP): Monte Carlo."""
    nngp, ntk, d, t = _kernels(n_train=6, n_test=3, seed=3)
    y = jnp.asarray(np.random.default_rng(4).normal(size=(6, 1)))
    out = predict.gp_inference({"nngp": nngp[d, d], "ntk": ntk[d, d]}, y)(
        "ntk", k_test_train={"nngp": nngp[t, d], "ntk": ntk[t, d]},
        k_test_test={"nngp": nngp[t, t], "ntk": ntk[t, t]})
    n_samples = 100_000
    f0 = np.random.default_rng(5).multivariate_normal(np.zeros(9), np.asarray(nngp), n_samples)
    a = np.asarray(ntk[t, d]) @ np.linalg.inv(np.asarray(ntk[d, d]))
    finf = f0[:, 6:] + (np.asarray(y)[:, 0] - f0[:, :6]) @ a.T
    np.testing.assert_allclose(out.mean[:, 0], finf.mean(0), atol=4 * finf.std(0).max() / 300)
    mc_cov = np.cov(finf.T)
    scale = np.sqrt(np.outer(np.diag(mc_cov), np.diag(mc_cov)))
    assert np.max(np.abs(out.covariance - mc_cov) / scale) < 0.02


def _ntkgp_kernels(n_train=8, n_test=4, seed=20):
    """NNGP ``K`` and NTK ``Theta = K + D`` with ``D`` positive semi-definite (as for a network
    whose non-readout layers add ``J J^T``), on train + test points."""
    rng = np.random.default_rng(seed)
    f1, f2 = rng.normal(size=(n_train + n_test, 30)), rng.normal(size=(n_train + n_test, 10))
    nngp = f1 @ f1.T / 30
    return nngp, nngp + f2 @ f2.T / 10, slice(0, n_train), slice(n_train, None)


def test_ntkgp_posterior_equals_dense_closed_form():
    """'ntkgp': mean Theta_td (Theta_dd + lambda I)^-1 Y (the 'ntk' mean), covariance
    Theta_tt - Theta_td (Theta_dd + lambda I)^-1 Theta_dt, by np.linalg.solve; only the NTK
    is needed."""
    nngp, theta, d, t = _ntkgp_kernels()
    y = np.random.default_rng(21).normal(size=(8, 2))
    ridge = 0.05
    kreg = theta[d, d] + ridge * np.trace(theta[d, d]) / 8 * np.eye(8)  # relative ridge
    want_mean = theta[t, d] @ np.linalg.solve(kreg, y)
    want_cov = theta[t, t] - theta[t, d] @ np.linalg.solve(kreg, theta[d, t])
    k = {g: jnp.asarray(v) for g, v in (("nngp", nngp), ("ntk", theta))}
    both = predict.gp_inference({g: v[d, d] for g, v in k.items()}, jnp.asarray(y),
                                diag_reg=ridge)(("ntk", "ntkgp"),
                                                {g: v[t, d] for g, v in k.items()},
                                                {g: v[t, t] for g, v in k.items()})
    np.testing.assert_allclose(both["ntkgp"].mean, want_mean, rtol=1e-9)
    np.testing.assert_allclose(both["ntkgp"].covariance, want_cov, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(both["ntkgp"].mean, both["ntk"].mean, rtol=1e-12)
    only_ntk = predict.gp_inference({"ntk": k["ntk"][d, d]}, jnp.asarray(y), diag_reg=ridge)(
        "ntkgp", {"ntk": k["ntk"][t, d]}, {"ntk": k["ntk"][t, t]})
    np.testing.assert_allclose(only_ntk.covariance, want_cov, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="'ntkgp'"):
        predict.gp_inference({"ntk": k["ntk"][d, d]}, jnp.asarray(y))("ntgp")


def test_ntkgp_is_what_trained_networks_with_an_added_prior_function_sample():
    """NTKGP-param in the linear regime (Monte Carlo, 200,000 draws): ``g = f0 + delta`` with
    ``f0 ~ GP(0, K)`` and an untrainable ``delta ~ GP(0, Theta - K)``, trained to t = inf,
    ``g_t + A (Y - g_d)``, has the 'ntkgp' mean and covariance; its variance exceeds the
    standard ensemble's ('ntk') by ``cov(delta_t - A delta_d)``."""
    nngp, theta, d, t = _ntkgp_kernels(n_train=6, n_test=3, seed=22)
    y = np.random.default_rng(23).normal(size=(6, 1))
    k = {g: jnp.asarray(v) for g, v in (("nngp", nngp), ("ntk", theta))}
    out = predict.gp_inference({g: v[d, d] for g, v in k.items()}, jnp.asarray(y))(
        ("ntk", "ntkgp"), {g: v[t, d] for g, v in k.items()}, {g: v[t, t] for g, v in k.items()})
    rng = np.random.default_rng(24)
    n_samples = 200_000
    g0 = (rng.multivariate_normal(np.zeros(9), nngp, n_samples)
          + rng.multivariate_normal(np.zeros(9), theta - nngp, n_samples))
    a = theta[t, d] @ np.linalg.inv(theta[d, d])
    finf = g0[:, 6:] + (y[:, 0] - g0[:, :6]) @ a.T
    np.testing.assert_allclose(out["ntkgp"].mean[:, 0], finf.mean(0),
                               atol=4 * finf.std(0).max() / np.sqrt(n_samples))
    mc_cov = np.cov(finf.T)
    scale = np.sqrt(np.outer(np.diag(mc_cov), np.diag(mc_cov)))
    assert np.max(np.abs(out["ntkgp"].covariance - mc_cov) / scale) < 0.015
    dd = theta - nngp
    extra = dd[t, t] - a @ dd[d, t] - dd[t, d] @ a.T + a @ dd[d, d] @ a.T
    np.testing.assert_allclose(out["ntkgp"].covariance - out["ntk"].covariance, extra,
                               rtol=1e-8, atol=1e-10)
    assert np.linalg.eigvalsh(extra).min() > -1e-10


_REFERENCE_NTKGP = textwrap.dedent("""
    import sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import collections
    import numpy as np
    from neural_tangents import predict
    a = dict(np.load(sys.argv[1]))
    Kernels = collections.namedtuple("Kernels", "nngp ntk")
    kern = lambda s: Kernels(a["nngp" + s], a["ntk" + s])
    fn = predict.gp_inference(kern("_dd"), a["y"], diag_reg=1e-2)
    out = fn(("nngp", "ntk", "ntkgp"), kern("_td"), kern("_tt"))
    np.savez(sys.argv[2], **{f"{g}/{m}": np.asarray(getattr(getattr(out, g), m))
                            for g in ("nngp", "ntk", "ntkgp") for m in ("mean", "covariance")})
""")


@pytest.mark.slow  # neural-tangents imports TensorFlow (~8 CPU-s): make test-all
@pytest.mark.reference
@pytest.mark.skipif(not os.path.exists(REF_PYTHON),
                    reason="neural-tangents reference environment (.venv-ref) absent")
def test_gp_inference_matches_neural_tangents_live():
    """The same posteriors ('nngp', 'ntk', 'ntkgp', relative ridge) in neural-tangents 0.6.5."""
    nngp, theta, d, t = _ntkgp_kernels(seed=25)
    y = np.random.default_rng(26).normal(size=(8, 2))
    arrays = {"y": y}
    for g, v in (("nngp", nngp), ("ntk", theta)):
        arrays.update({f"{g}_dd": v[d, d], f"{g}_td": v[t, d], f"{g}_tt": v[t, t]})
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
        np.savez(src, **arrays)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
        proc = subprocess.run([REF_PYTHON, "-c", _REFERENCE_NTKGP, src, dst], cwd=tmp, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-4000:]
        with np.load(dst) as f:
            nt = {k: np.asarray(f[k]) for k in f.files}
    k = {"nngp": nngp, "ntk": theta}
    ours = predict.gp_inference({g: jnp.asarray(v[d, d]) for g, v in k.items()},
                                jnp.asarray(y), diag_reg=1e-2)(
        ("nngp", "ntk", "ntkgp"), {g: jnp.asarray(v[t, d]) for g, v in k.items()},
        {g: jnp.asarray(v[t, t]) for g, v in k.items()})
    for key, want in nt.items():
        g, m = key.split("/")
        got = np.asarray(getattr(ours[g], m))
        assert got.shape == want.shape, (key, got.shape, want.shape)
        assert np.max(np.abs(got - want)) < 1e-9 * max(np.max(np.abs(want)), 1.0), key


def test_gp_inference_full_kernel_and_errors():
    nngp, _, d, t = _kernels(seed=6)
    o = 2
    full = jnp.einsum("ij,ab->ijab", nngp, jnp.eye(o))
    y = jnp.asarray(np.random.default_rng(7).normal(size=(12, o)))
    p_full = predict.gp_inference(full[d, d], y, diag_reg=1e-2)(
        "nngp", k_test_train=full[t, d], k_test_test=full[t, t])
    p_tr = predict.gp_inference(nngp[d, d], y, diag_reg=1e-2)(
        "nngp", k_test_train=nngp[t, d], k_test_test=nngp[t, t])
    np.testing.assert_allclose(p_full.mean, p_tr.mean, rtol=1e-9)
    # K (x) I: the traced covariance (x) I, in the kernel layout (N_test, N_test, O, O)
    np.testing.assert_allclose(p_full.covariance,
                               jnp.einsum("ij,ab->ijab", p_tr.covariance, jnp.eye(o)),
                               atol=1e-12)
    with pytest.raises(ValueError, match=r"leading dimension 12.*\(11, 2\)"):
        predict.gp_inference(nngp[d, d], y[:11])
    with pytest.raises(ValueError, match="diag_reg"):
        predict.gp_inference(nngp[d, d], y, diag_reg=-1.0)()
    with pytest.raises(ValueError, match="symmetric"):
        predict.gp_inference(nngp[d, d] + jnp.triu(jnp.ones((12, 12)), 1), y)()
    with pytest.raises(ValueError, match=r"must be \(N_test, 12\)"):
        predict.gp_inference(nngp[d, d], y)(k_test_train=nngp[t, :11])


@pytest.fixture(scope="module")
def linearized_problem():
    key = jax.random.PRNGKey(0)
    params = _mlp(key, [3, 16, 2])
    rng = np.random.default_rng(8)
    x_train = jnp.asarray(rng.normal(size=(6, 3)))
    x_test = jnp.asarray(rng.normal(size=(4, 3)))
    y = jnp.asarray(rng.normal(size=(6, 2)))
    return params, x_train, x_test, y


def _explicit_linearized_gd(params, x_train, x_test, y, lr, steps):
    """Gradient descent on the linearized model f_lin(p) = f(p0) + J(p0)(p - p0)."""
    f0_tr, f0_te = _apply(params, x_train), _apply(params, x_test)

    def f_lin(p, x, f0):
        dp = jax.tree_util.tree_map(lambda a, b: a - b, p, params)
        return f0 + jax.jvp(lambda q: _apply(q, x), (params,), (dp,))[1]

    def loss(p):
        return jnp.sum((f_lin(p, x_train, f0_tr) - y) ** 2) / (2 * y.size)

    @jax.jit
    def run(p):
        def step(p, _):
            g = jax.grad(loss)(p)
            return jax.tree_util.tree_map(lambda a, b: a - lr * b, p, g), None
        p, _ = jax.lax.scan(step, p, None, length=steps)
        return f_lin(p, x_train, f0_tr), f_lin(p, x_test, f0_te)

    return run(params)


def test_gradient_descent_mse_equals_explicit_linearized_gd(linearized_problem):
    params, x_train, x_test, y = linearized_problem
    k_dd = _full_ntk(params, x_train, x_train)
    k_td = _full_ntk(params, x_test, x_train)
    f0_tr, f0_te = _apply(params, x_train), _apply(params, x_test)
    t = 400.0
    errors = []
    for lr in (0.5, 0.25):
        fn = predict.gradient_descent_mse(k_dd, y, learning_rate=lr)
        ftr, fte = fn(t / lr, f0_tr, f0_te, k_test_train=k_td)
        gtr, gte = _explicit_linearized_gd(params, x_train, x_test, y, lr, int(t / lr))
        errors.append(max(float(jnp.max(jnp.abs(ftr - gtr))), float(jnp.max(jnp.abs(fte - gte)))))
        moved = float(jnp.max(jnp.abs(gtr - f0_tr)))
        assert errors[-1] < 0.02 * moved
    # discrete GD -> gradient flow at first order in the step size
    assert 1.7 < errors[0] / errors[1] < 2.3


def test_gradient_descent_mse_infinite_time_and_time_axis(linearized_problem):
    params, x_train, x_test, y = linearized_problem
    k_dd = _full_ntk(params, x_train, x_train)
    k_td = _full_ntk(params, x_test, x_train)
    f0_tr, f0_te = _apply(params, x_train), _apply(params, x_test)
    fn = predict.gradient_descent_mse(k_dd, y)
    ftr, fte = fn(None, f0_tr, f0_te, k_test_train=k_td)
    a = np.asarray(jnp.transpose(k_dd, (0, 2, 1, 3)).reshape(12, 12))
    b = np.asarray(jnp.transpose(k_td, (0, 2, 1, 3)).reshape(8, 12))
    ref = np.asarray(f0_te).reshape(-1) + b @ np.linalg.solve(a, np.asarray(y - f0_tr).reshape(-1))
    np.testing.assert_allclose(fte.reshape(-1), ref, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(ftr, y, atol=1e-8)
    # a vector of times gets a leading axis; t = 0 returns the initial outputs
    ts = jnp.array([0.0, 10.0, jnp.inf])
    ftr_t, fte_t = fn(ts, f0_tr, f0_te, k_test_train=k_td)
    assert ftr_t.shape == (3, 6, 2) and fte_t.shape == (3, 4, 2)
    np.testing.assert_allclose(ftr_t[0], f0_tr, atol=1e-12)
    np.testing.assert_allclose(fte_t[0], f0_te, atol=1e-12)
    np.testing.assert_allclose(fte_t[2], fte, atol=1e-9)


def test_gradient_descent_mse_traced_kernel_and_singular_kernel():
    rng = np.random.default_rng(9)
    feats = rng.normal(size=(10, 3))  # rank-3 kernel on 10 points
    k = jnp.asarray(feats @ feats.T)
    y = jnp.asarray(rng.normal(size=(10, 2)))
    fn = predict.gradient_descent_mse(k, y, learning_rate=2.0)
    for t in (1.0, 100.0, None):
        out = fn(t)
        assert np.all(np.isfinite(np.asarray(out)))
    # t = inf on a singular kernel: the projection of Y on the range of K (min-norm solution)
    proj = feats @ np.linalg.pinv(feats)
    np.testing.assert_allclose(fn(None), proj @ np.asarray(y), atol=1e-8)
    # column-by-column: the traced kernel acts on each output separately
    single = predict.gradient_descent_mse(k, y[:, :1], learning_rate=2.0 * 1)
    np.testing.assert_allclose(single(3.0 / 2)[:, 0], fn(3.0)[:, 0], rtol=1e-10)


def test_gradient_descent_mse_errors():
    k = _psd(5, 1)
    y = jnp.ones((5, 1))
    fn = predict.gradient_descent_mse(k, y)
    with pytest.raises(ValueError, match="`t` must be >= 0"):
        fn(-1.0)
    with pytest.raises(ValueError, match="`t` must be >= 0"):
        fn(jnp.array([1.0, -2.0]))
    with pytest.raises(ValueError, match="leading dimension 5"):
        predict.gradient_descent_mse(k, jnp.ones((4, 1)))
    with pytest.raises(ValueError, match="non-finite"):
        predict.gradient_descent_mse(k.at[0, 0].set(jnp.inf), y)
    with pytest.raises(ValueError, match="learning_rate"):
        predict.gradient_descent_mse(k, y, learning_rate=-1.0)
    with pytest.raises(ValueError, match="fx_test_0"):
        fn(1.0, 0.0, jnp.ones((2, 1)))
    indefinite = jnp.diag(jnp.array([1.0, 2.0, -1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="not positive semi-definite"):
        predict.gradient_descent_mse(indefinite, y)
    with pytest.raises(ValueError, match="not positive semi-definite"):
        predict.gp_inference(indefinite, y)


def test_max_learning_rate_is_the_stability_edge():
    k = _psd(8, 10)
    y = jnp.asarray(np.random.default_rng(11).normal(size=(8, 3)))
    lr_max = predict.max_learning_rate(k, y_train_size=y.size)
    for factor, diverges in ((0.98, False), (1.02, True)):
        lr = factor * lr_max
        f = jnp.zeros_like(y)
        for _ in range(3000):  # explicit function-space GD on loss |f - y|^2 / (2 n)
            f = f - lr / y.size * (k @ (f - y))
        err = float(jnp.max(jnp.abs(f - y)))
        assert (err > 1.0) == diverges, (factor, err)
    assert predict.max_learning_rate(k) == pytest.approx(lr_max / 3, rel=1e-12)


def test_asymmetric_kernel_regression_interpolates():
    rng = np.random.default_rng(12)
    k = jnp.asarray(rng.normal(size=(6, 6)) + 6 * np.eye(6))  # not symmetric
    k_td = jnp.asarray(rng.normal(size=(3, 6)))
    y = jnp.asarray(rng.normal(size=(6, 2)))
    np.testing.assert_allclose(predict.asymmetric_kernel_regression(k, y), y, atol=1e-10)
    out = predict.asymmetric_kernel_regression(k, y, k_td)
    np.testing.assert_allclose(out, np.asarray(k_td) @ np.linalg.solve(k, y), rtol=1e-9)


def test_classification_helpers():
    labels = jnp.array([0, 2, 1, 2])
    y = predict.one_hot(labels, 3)
    assert y.shape == (4, 3) and float(y.sum()) == 4
    np.testing.assert_allclose(predict.one_hot(labels, 3, centered=True).sum(1), 0, atol=1e-12)
    fx = jnp.array([[1.0, 0, 0], [0, 0, 1], [0, 0, 1], [0, 0, 1]])
    assert predict.accuracy(fx, y) == 0.75
    assert predict.accuracy(fx, labels) == 0.75
    with pytest.raises(ValueError, match="leading dimension"):
        predict.accuracy(fx, labels[:3])


def test_kernel_names_in_get_are_case_insensitive():
    """neural-tangents lower-cases ``get``: ``'NTK'`` is ``'ntk'`` in ``gp_inference`` and in
    ``gradient_descent_mse_ensemble``'s ``predict_fn``."""
    nngp, ntk, d, t = _kernels()
    y = jnp.asarray(np.random.default_rng(1).normal(size=(12, 2)))
    fn = predict.gp_inference({"nngp": nngp[d, d], "ntk": ntk[d, d]}, y, diag_reg=1e-3)
    lower = fn(("ntk", "nngp"), {"nngp": nngp[t, d], "ntk": ntk[t, d]},
               {"nngp": nngp[t, t], "ntk": ntk[t, t]})
    upper = fn(("NTK", "Nngp"), {"nngp": nngp[t, d], "ntk": ntk[t, d]},
               {"nngp": nngp[t, t], "ntk": ntk[t, t]})
    for g in ("ntk", "nngp"):
        np.testing.assert_array_equal(upper[g].mean, lower[g].mean)
        np.testing.assert_array_equal(upper[g].covariance, lower[g].covariance)

    x = jnp.asarray(np.random.default_rng(2).normal(size=(17, 3)))
    from ntk import stax
    kernel_fn = stax.serial(stax.Dense(8, 1.5, 0.1), stax.Relu(), stax.Dense(1))[2]
    ens = predict.gradient_descent_mse_ensemble(kernel_fn, x[:12], y, diag_reg=1e-3)
    a = ens(2.0, x[12:], ("NTK", "NNGP"), compute_cov=True)
    b = ens(2.0, x[12:], ("ntk", "nngp"), compute_cov=True)
    for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(u, v)


def test_gp_inference_returns_a_namedtuple_in_get_order():
    """neural-tangents' return convention for a tuple ``get``: a namedtuple of Gaussians with
    those fields in that order (also indexable by name); a repeated name raises."""
    nngp, ntk, d, t = _kernels(seed=6)
    y = jnp.asarray(np.random.default_rng(7).normal(size=(12, 1)))
    fn = predict.gp_inference({"nngp": nngp[d, d], "ntk": ntk[d, d]}, y, diag_reg=1e-3)
    ktd = {"nngp": nngp[t, d], "ntk": ntk[t, d]}
    ktt = {"nngp": nngp[t, t], "ntk": ntk[t, t]}
    out = fn(("ntk", "nngp"), ktd, ktt)
    assert out._fields == ("ntk", "nngp")
    ntk_mean, nngp_mean = (g.mean for g in out)
    np.testing.assert_array_equal(out["ntk"].mean, ntk_mean)
    np.testing.assert_array_equal(out.nngp.mean, nngp_mean)
    np.testing.assert_array_equal(fn("ntk", ktd, ktt).mean, ntk_mean)
    assert fn(None, ktd, ktt)._fields == ("nngp", "ntk")
    with pytest.raises(ValueError, match="unique"):
        fn(("ntk", "ntk"), ktd, ktt)
