"""predict's neural-tangents entry points: gradient_descent (the function-space ODE of any
loss) and gradient_descent_mse_ensemble (the Gaussian over an infinite trained ensemble);
neural-tangents' conventions (``trace_axes``, return forms) in every predictor.

Truths that share no derivation with the code: the closed form of MSE dynamics
(eigenbasis, ``gradient_descent_mse``) for the ODE solver; weight-space training of a linear
model (its NTK is exact) for cross-entropy with and without momentum; ``np.linalg.solve`` /
``gp_inference`` (Cholesky) at t = inf; the exact push-forward of the NNGP prior through the
linear dynamics (``scipy.linalg.expm``) at finite t; and neural-tangents 0.6.5 itself in the
pinned reference environment (live, and the golden file
``tests/golden/predict_nt065.npz`` made by ``reference/make_predict_golden.py``).
"""
import collections
import functools
import json
import os
import subprocess
import tempfile
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from ntk import empirical_kernel_fn, predict, stax
from reference import make_predict_golden as golden

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REF_PYTHON = os.path.join(ROOT, ".venv-ref", "bin", "python")


def mse(fx, y):
    return 0.5 * jnp.mean((fx - y) ** 2)


def cross_entropy(fx, y):
    return -jnp.mean(jnp.sum(jax.nn.log_softmax(fx) * y, -1))


def _network():
    return stax.serial(stax.Dense(16, W_std=1.5, b_std=0.1), stax.Erf(),
                       stax.Dense(1, W_std=1.5, b_std=0.1))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x_train, x_test = rng.normal(size=(6, 3)), rng.normal(size=(4, 3))
    labels = np.eye(3)[rng.integers(0, 3, 6)]
    feats = rng.normal(size=(10, 3, 7)) / np.sqrt(7)  # a full (N, N, O, O) PSD kernel
    full = np.einsum("iap,jbp->ijab", feats, feats)
    return dict(x_train=x_train, x_test=x_test, y_train=rng.normal(size=(6, 2)), labels=labels,
                times=np.array([0.0, 0.3, 2.0, 7.5]),
                f0_train=0.3 * rng.normal(size=(6, 3)), f0_test=0.3 * rng.normal(size=(4, 3)),
                kfull_dd=full[:6, :6], kfull_td=full[6:, :6])


@pytest.fixture(scope="module")
def kernels(data):
    _, _, kernel_fn = _network()
    kdd = kernel_fn(data["x_train"], None, ("nngp", "ntk"))
    ktd = kernel_fn(data["x_test"], data["x_train"], ("nngp", "ntk"))
    ktt = kernel_fn(data["x_test"], None, ("nngp",))  # the calls the ensemble makes
    return kernel_fn, {g: np.asarray(getattr(kdd, g)) for g in ("nngp", "ntk")}, \
        {g: np.asarray(getattr(ktd, g)) for g in ("nngp", "ntk")}, np.asarray(ktt.nngp)


# ------------------------------------------------------------------------- gradient_descent


def test_gradient_descent_on_mse_is_the_closed_form(data):
    """ODE (adaptive Dormand-Prince, rtol 1.4e-8) = eigenbasis closed form to 1e-6 of the
    outputs' movement, on a full (N, N, O, O) kernel with trace_axes=(), times unsorted and
    including 0 (traced kernels: the tests below and the live comparison)."""
    kdd, ktd = data["kfull_dd"], data["kfull_td"]
    y, f0, ft0 = data["labels"], data["f0_train"], data["f0_test"]
    times = np.array([7.5, 0.0, 2.0])
    ode = predict.gradient_descent(mse, kdd, y, learning_rate=0.7, trace_axes=())
    closed = predict.gradient_descent_mse(kdd, y, learning_rate=0.7)
    got = ode(times, f0, ft0, ktd)
    want = jax.jit(lambda: closed(times, f0, ft0, k_test_train=ktd))()  # one compilation
    scale = float(np.max(np.abs(want[1] - ft0)))
    for a, b in zip(got, want):
        assert a.shape == (3,) + b.shape[1:]
        np.testing.assert_allclose(a, b, atol=1e-6 * scale)
    np.testing.assert_allclose(got[0][1], f0, atol=1e-12)  # t = 0
    # test outputs only (fx_train_0=None: the training outputs start from zero)
    test_only = ode(times, None, ft0, ktd)
    np.testing.assert_allclose(test_only, ode(times, 0.0, ft0, ktd)[1], atol=1e-12)
    assert test_only.shape == (3, 4, 3)


@pytest.fixture(scope="module")
def linear_model(data):
    """f(x) = phi(x) W: its NTK phi phi^T (x) I is exact, so weight-space training is the
    function-space dynamics up to the step size."""
    rng = np.random.default_rng(1)
    phi = jnp.asarray(rng.normal(size=(10, 12)) / np.sqrt(12))
    w0 = jnp.asarray(rng.normal(size=(12, 3)))
    y = jnp.asarray(data["labels"])

    @jax.jit
    def train(lr, momentum, steps):
        def step(carry, i):
            w, v = carry
            g = jax.grad(lambda w: cross_entropy(phi[:6] @ w, y))(w)
            v_new = momentum * v - lr * g
            keep = i < steps
            return (jnp.where(keep, w + v_new, w), jnp.where(keep, v_new, v)), None
        (w, _), _ = jax.lax.scan(step, (w0, jnp.zeros_like(w0)), jnp.arange(80))
        return phi @ w

    k = phi @ phi.T
    return k[:6, :6], k[6:, :6], phi @ w0, y, train


@pytest.mark.parametrize("momentum", [False, True])
def test_gradient_descent_is_trained_linear_model(linear_model, momentum):
    """Cross-entropy: the ODE at t steps vs t steps of (heavy-ball) gradient descent on the
    weights; the gap is the step size's first-order error, so it halves with the step
    (plain: eta; momentum: h = sqrt(eta) at fixed damping (1 - m) / h = 1)."""
    kdd, ktd, f0, y, train = linear_model
    errors = []
    for h in (0.2, 0.1):
        lr, m, steps = (5 * h, 0.0, 8.0 / h) if not momentum else (h * h, 1 - h, 6.0 / h)
        fn = predict.gradient_descent(cross_entropy, kdd, y, learning_rate=lr,
                                      momentum=m if momentum else None)
        ftr, fte = fn(steps, f0[:6], f0[6:], ktd)
        trained = train(lr, m, int(round(steps)))
        moved = float(jnp.max(jnp.abs(trained - f0)))
        errors.append(float(jnp.max(jnp.abs(jnp.concatenate([ftr, fte]) - trained))))
        assert errors[-1] < 0.05 * moved, (errors, moved)
    assert 1.7 < errors[0] / errors[1] < 2.3, errors


def test_gradient_descent_state_and_errors(linear_model):
    kdd, ktd, f0, y, _ = linear_model
    fn = predict.gradient_descent(cross_entropy, kdd, y, learning_rate=0.01, momentum=0.9)
    # an ODEState in, an ODEState out; resuming from a state continues the same trajectory
    mid = fn(30.0, predict.ODEState(f0[:6], f0[6:]), k_test_train=ktd)
    assert isinstance(mid, predict.ODEState) and mid.qx_test.shape == (4, 3)
    assert float(jnp.max(jnp.abs(mid.qx_train))) > 1e-3
    resumed = fn(30.0, mid, k_test_train=ktd)
    direct = fn(60.0, predict.ODEState(f0[:6], f0[6:]), k_test_train=ktd)
    for a, b in zip(resumed, direct):
        np.testing.assert_allclose(a, b, atol=1e-7)
    with pytest.raises(ValueError, match="need not converge"):
        fn(None, f0[:6])
    with pytest.raises(ValueError, match="k_test_train"):
        fn(1.0, f0[:6], f0[6:])
    with pytest.raises(ValueError, match="`t` must be >= 0"):
        fn(-1.0, f0[:6])
    with pytest.raises(ValueError, match="momentum"):
        predict.gradient_descent(cross_entropy, kdd, y)(1.0, mid, k_test_train=ktd)
    with pytest.raises(ValueError, match=r"must be \(6, 6, 3, 3\)"):
        predict.gradient_descent(mse, kdd, y, trace_axes=())
    with pytest.raises(ValueError, match=r"trace_axes=\(0,\) it must be \(3, 3\)"):
        predict.gradient_descent(mse, kdd, y, trace_axes=(0,))  # the batch axis: (O, O)
    with pytest.raises(ValueError, match="momentum"):
        predict.gradient_descent(mse, kdd, y, momentum=1.5)


# -------------------------------------------------------------- gradient_descent_mse_ensemble


TIMES = np.array([[0.3], [4.0], [np.inf]])  # any shape: outputs get leading axes (3, 1)


def _pushforward(kdd, ktd, ktt, dynamics_dd, dynamics_td, y, s):
    """Mean and covariance of f_t = L(f_0) with f_0 ~ GP(0, NNGP), by expm and solve:
    f_t(X) = Y + E (f_0(X) - Y), f_t(x) = f_0(x) + T_xd T_dd^-1 (I - E)(Y - f_0(X)),
    E = expm(-s T_dd) (0 at s = inf) for the dynamics kernel T (the NTK; the NNGP for
    'nngp')."""
    n = len(kdd)
    e = np.zeros((n, n)) if np.isinf(s) else scipy.linalg.expm(-s * dynamics_dd)
    a = dynamics_td @ np.linalg.solve(dynamics_dd, np.eye(n) - e)
    test = a @ y, ktt - a @ ktd.T - ktd @ a.T + a @ kdd @ a.T
    train = (np.eye(n) - e) @ y, e @ kdd @ e
    return test, train


def test_ensemble_is_the_pushforward_of_the_prior(data, kernels):
    """Finite t and t = inf, test and training inputs, both modes: 1e-9 relative."""
    kernel_fn, kdd, ktd, ktt = kernels
    y, lr = data["y_train"], 0.7
    fn = predict.gradient_descent_mse_ensemble(kernel_fn, data["x_train"], y, learning_rate=lr)
    test = fn(TIMES, data["x_test"], compute_cov=True)
    train = fn(TIMES, None, ("ntk", "nngp"), compute_cov=True)
    assert type(test).__name__ == "Gaussians" and test._fields == ("nngp", "ntk")
    assert train._fields == ("ntk", "nngp")
    scale = np.max(np.abs(ktt))
    for g in ("nngp", "ntk"):
        assert getattr(test, g).mean.shape == (3, 1, 4, 2)
        assert getattr(test, g).covariance.shape == (3, 1, 4, 4)
        for i, t in enumerate(TIMES[:, 0]):
            (m_te, c_te), (m_tr, c_tr) = _pushforward(kdd["nngp"], ktd["nngp"], ktt, kdd[g],
                                                      ktd[g], y, lr * t / y.size)
            np.testing.assert_allclose(getattr(test, g).mean[i, 0], m_te, atol=1e-9)
            np.testing.assert_allclose(getattr(test, g).covariance[i, 0], c_te,
                                       atol=1e-9 * scale)
            np.testing.assert_allclose(getattr(train, g).mean[i, 0], m_tr, atol=1e-9)
            np.testing.assert_allclose(getattr(train, g).covariance[i, 0], c_tr,
                                       atol=1e-9 * scale)


def test_ensemble_infinite_time_is_kernel_regression(data, kernels):
    """t = None with a relative ridge: NTK / NNGP kernel regression, the NNGP posterior
    covariance and the NTK-GP covariance of Lee et al. 2019 eq. 16 (dense solves), 1e-9."""
    kernel_fn, kdd, ktd, ktt = kernels
    y, ridge = data["y_train"], 1e-2
    fn = predict.gradient_descent_mse_ensemble(kernel_fn, data["x_train"], y, diag_reg=ridge)
    out = fn(None, data["x_test"], compute_cov=True)
    scale = np.max(np.abs(ktt))
    for g in ("nngp", "ntk"):
        reg = kdd[g] + ridge * np.trace(kdd[g]) / 6 * np.eye(6)
        a = ktd[g] @ np.linalg.inv(reg)
        np.testing.assert_allclose(getattr(out, g).mean, a @ y, rtol=1e-9)
        if g == "nngp":
            cov = ktt - a @ ktd["nngp"].T
        else:
            cov = ktt + a @ kdd["nngp"] @ a.T - a @ ktd["nngp"].T - ktd["nngp"] @ a.T
        np.testing.assert_allclose(getattr(out, g).covariance, cov, atol=1e-9 * scale)
    np.testing.assert_allclose(fn(None, data["x_test"], "ntk", compute_cov=True).mean,
                               out.ntk.mean, rtol=1e-14)


def test_ensemble_full_kernels_and_empirical_kernel_fn(data, kernels):
    """trace_axes=() with kernels K (x) I gives the traced answer in the kernel layout
    (N_test, N_test, O, O); an empirical kernel_fn takes params as a keyword, as in NT."""
    kernel_fn, kdd, ktd, ktt = kernels
    eye = np.eye(2)

    def full_kernel_fn(x1, x2, get):
        k = kernel_fn(x1, x2, get)
        return {g: np.einsum("ij,ab->ijab", getattr(k, g), eye) for g in get}

    y = data["y_train"]
    traced = predict.gradient_descent_mse_ensemble(kernel_fn, data["x_train"], y,
                                                   learning_rate=0.7)(
        TIMES, data["x_test"], compute_cov=True)
    full = predict.gradient_descent_mse_ensemble(full_kernel_fn, data["x_train"], y,
                                                 learning_rate=0.7, trace_axes=())(
        TIMES, data["x_test"], compute_cov=True)
    for g in ("nngp", "ntk"):
        np.testing.assert_allclose(getattr(full, g).mean, getattr(traced, g).mean,
                                   rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(
            getattr(full, g).covariance,
            np.einsum("tuij,ab->tuiajb", getattr(traced, g).covariance, eye).transpose(
                0, 1, 2, 4, 3, 5), atol=1e-10)

    rng = np.random.default_rng(3)
    params = {"w": jnp.asarray(rng.normal(size=(3, 5))), "v": jnp.asarray(rng.normal(size=(5, 2)))}

    def apply_fn(p, x):
        return jnp.tanh(x @ p["w"]) @ p["v"] / jnp.sqrt(5.0)

    emp = empirical_kernel_fn(apply_fn)
    fn = predict.gradient_descent_mse_ensemble(emp, data["x_train"], y, learning_rate=2.0,
                                               params=params)
    mean = fn(3.0, None, "ntk")  # on the training inputs: one empirical kernel to compile
    k_dd = np.asarray(emp(data["x_train"], None, "ntk", params))
    _, (want, _) = _pushforward(k_dd, k_dd, k_dd, k_dd, k_dd, y, 2.0 * 3.0 / y.size)
    np.testing.assert_allclose(mean, want, rtol=1e-9)


def test_ensemble_errors(data, kernels):
    kernel_fn = kernels[0]
    fn = predict.gradient_descent_mse_ensemble(kernel_fn, data["x_train"], data["y_train"])
    with pytest.raises(ValueError, match="'nngp' or 'ntk'"):
        fn(1.0, data["x_test"], "cov1")
    with pytest.raises(ValueError, match="unique"):
        fn(1.0, data["x_test"], ("ntk", "ntk"))
    with pytest.raises(ValueError, match="`t` must be >= 0"):
        fn(-1.0, data["x_test"])
    with pytest.raises(ValueError, match=r"must be \(6, 6, 2, 2\)"):
        predict.gradient_descent_mse_ensemble(kernel_fn, data["x_train"], data["y_train"],
                                              trace_axes=())(1.0)
    with pytest.raises(ValueError, match="diag_reg"):
        predict.gradient_descent_mse_ensemble(kernel_fn, data["x_train"], data["y_train"],
                                              diag_reg=-1.0)
    with pytest.raises(ValueError, match="learning_rate"):
        predict.gradient_descent_mse_ensemble(kernel_fn, data["x_train"], data["y_train"],
                                              learning_rate=0.0)


# ------------------------------------------- neural-tangents' conventions, against closed forms


def test_gradient_descent_mse_trace_axes_and_times(data):
    """trace_axes as in neural-tangents: a full (N, N, O, O) kernel with trace_axes=() (or
    read from its rank) is the dynamics of the flattened (N O, N O) kernel by
    scipy.linalg.expm and solve; times of any shape lead the outputs; fx_train_0=None
    returns the test outputs alone (the dynamics starting from zero training outputs)."""
    kdd, ktd, y = data["kfull_dd"], data["kfull_td"], data["labels"]
    f0, ft0 = data["f0_train"], data["f0_test"]
    t = data["times"].reshape(2, 2)
    explicit = predict.gradient_descent_mse(kdd, y, 0.7, 0.0, False, ())  # NT's positions
    ftr, fte = explicit(t, f0, ft0, ktd)
    assert ftr.shape == (2, 2, 6, 3) and fte.shape == (2, 2, 4, 3)
    inferred = predict.gradient_descent_mse(kdd, y, learning_rate=0.7)
    np.testing.assert_array_equal(inferred(t, f0, ft0, ktd)[1], fte)
    k = kdd.transpose(0, 2, 1, 3).reshape(18, 18)
    k_td = ktd.transpose(0, 2, 1, 3).reshape(12, 18)
    for time, got_tr, got_te in zip(t.reshape(-1), ftr.reshape(4, -1), fte.reshape(4, -1)):
        decay = scipy.linalg.expm(-0.7 * time / y.size * k)
        resid = (f0 - y).reshape(-1)
        np.testing.assert_allclose(got_tr, y.reshape(-1) + decay @ resid, atol=1e-10)
        want_te = ft0.reshape(-1) - k_td @ np.linalg.solve(k, resid - decay @ resid)
        np.testing.assert_allclose(got_te, want_te, atol=1e-8)
    test_only = explicit(t, None, ft0, ktd)
    np.testing.assert_allclose(test_only, explicit(t, 0.0, ft0, ktd)[1], atol=1e-12)
    with pytest.raises(ValueError, match=r"trace_axes=\(1,\) it must be \(6, 6\)"):
        predict.gradient_descent_mse(kdd, y, trace_axes=(-1,))


def test_gp_inference_return_forms(data, kernels):
    """neural-tangents' forms: the mean alone without k_test_test (equal to the ridge
    regression by np.linalg.solve), a Gaussians namedtuple for tuple / None get, N(y, 0) on
    the training inputs; the 'ntk' covariance refuses kernels without the NNGP."""
    _, kdd, ktd, ktt = kernels
    y, ridge = data["y_train"], 1e-2
    fn = predict.gp_inference(kdd, y, ridge)  # a dict of arrays; diag_reg by position
    reg = {g: kdd[g] + ridge * np.trace(kdd[g]) / 6 * np.eye(6) for g in kdd}
    want = {g: ktd[g] @ np.linalg.solve(reg[g], y) for g in kdd}
    mean = fn("nngp", ktd)
    assert isinstance(mean, jax.Array) and mean.shape == (4, 2)
    np.testing.assert_allclose(mean, want["nngp"], rtol=1e-10)
    both = fn(None, ktd)
    assert both._fields == ("nngp", "ntk")
    np.testing.assert_allclose(both.ntk, want["ntk"], rtol=1e-10)
    train = fn(("ntk", "nngp"), None, True)
    for g in ("ntk", "nngp"):
        np.testing.assert_array_equal(train[g].mean, y)
        np.testing.assert_array_equal(train[g].covariance, np.zeros((6, 6)))
    np.testing.assert_array_equal(fn("ntk"), y)
    with pytest.raises(ValueError, match="needs the NNGP"):
        predict.gp_inference(kdd["ntk"], y)("ntk", ktd["ntk"], ktt)
    # an array kernel with get=None: its posterior as both 'nngp' and 'ntk' (neural-tangents)
    plain = predict.gp_inference(kdd["nngp"], y, ridge)(k_test_train=ktd["nngp"])
    assert plain._fields == ("nngp", "ntk")
    np.testing.assert_allclose(plain.nngp, want["nngp"], rtol=1e-10)
    np.testing.assert_allclose(plain.ntk, want["nngp"], rtol=1e-10)


# ------------------------------------------------------------------- neural-tangents, live

_REFERENCE = textwrap.dedent("""
    import sys
    import numpy as np
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import neural_tangents as nt
    from neural_tangents import stax

    d = dict(np.load(sys.argv[1]))
    _, _, kernel_fn = stax.serial(stax.Dense(16, W_std=1.5, b_std=0.1), stax.Erf(),
                                  stax.Dense(1, W_std=1.5, b_std=0.1))
    out = {}
    ens = nt.predict.gradient_descent_mse_ensemble(kernel_fn, d["x_train"], d["y_train"],
                                                   learning_rate=0.7, diag_reg=1e-3)
    for name, t in (("finite", d["times"]), ("inf", None)):
        for where, x in (("test", d["x_test"]), ("train", None)):
            res = ens(t, x, ("nngp", "ntk"), compute_cov=True)
            for g in ("nngp", "ntk"):
                out[f"ens/{name}/{where}/{g}/mean"] = getattr(res, g).mean
                out[f"ens/{name}/{where}/{g}/cov"] = getattr(res, g).covariance
    xent = lambda fx, y: -jnp.mean(jnp.sum(jax.nn.log_softmax(fx) * y, -1))
    for key, mom, axes in (("traced", 0.9, (-1,)), ("full", None, ())):
        fn = nt.predict.gradient_descent(xent, d[f"{key}_dd"], d["labels"], learning_rate=0.5,
                                         momentum=mom, trace_axes=axes)
        ftr, fte = fn(d["times"], d["f0_train"], d["f0_test"], d[f"{key}_td"])
        out[f"gd/{key}/train"], out[f"gd/{key}/test"] = ftr, fte
    np.savez(sys.argv[2], **{k: np.asarray(v) for k, v in out.items()})
""")


@pytest.mark.slow  # ~8 CPU-s (neural-tangents imports TensorFlow): make test-all
@pytest.mark.reference
@pytest.mark.skipif(not os.path.exists(REF_PYTHON),
                    reason="neural-tangents reference environment (.venv-ref) absent")
def test_matches_neural_tangents_live(data, kernels):
    """The same calls in neural-tangents 0.6.5 (float64): ensembles at finite times and
    t = None on test and train inputs with a ridge; cross-entropy ODEs with momentum and
    with a full kernel. Agreement to 1e-7 relative (the ODE solver's tolerance)."""
    kernel_fn, kdd, ktd, _ = kernels
    arrays = dict(data, traced_dd=kdd["ntk"], traced_td=ktd["ntk"], full_dd=data["kfull_dd"],
                  full_td=data["kfull_td"])
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
        np.savez(src, **arrays)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
        proc = subprocess.run([REF_PYTHON, "-c", _REFERENCE, src, dst], cwd=tmp, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-4000:]
        with np.load(dst) as f:
            nt = {k: np.asarray(f[k]) for k in f.files}

    ours = collections.OrderedDict()
    ens = predict.gradient_descent_mse_ensemble(kernel_fn, data["x_train"], data["y_train"],
                                                learning_rate=0.7, diag_reg=1e-3)
    for name, t in (("finite", data["times"]), ("inf", None)):
        for where, x in (("test", data["x_test"]), ("train", None)):
            res = ens(t, x, ("nngp", "ntk"), compute_cov=True)
            for g in ("nngp", "ntk"):
                ours[f"ens/{name}/{where}/{g}/mean"] = getattr(res, g).mean
                ours[f"ens/{name}/{where}/{g}/cov"] = getattr(res, g).covariance
    for key, mom, axes in (("traced", 0.9, (-1,)), ("full", None, ())):
        fn = predict.gradient_descent(cross_entropy, arrays[f"{key}_dd"], data["labels"],
                                      learning_rate=0.5, momentum=mom, trace_axes=axes)
        ours[f"gd/{key}/train"], ours[f"gd/{key}/test"] = fn(
            data["times"], data["f0_train"], data["f0_test"], arrays[f"{key}_td"])
    assert set(ours) == set(nt)
    for key, value in ours.items():
        assert value.shape == nt[key].shape, (key, value.shape, nt[key].shape)
        scale = max(float(np.max(np.abs(nt[key]))), 1e-3)
        err = float(np.max(np.abs(np.asarray(value) - nt[key]))) / scale
        assert err < 1e-7, (key, err)


# ------------------------------------------------------------ neural-tangents, golden file


@functools.lru_cache(maxsize=1)
def _golden():
    with np.load(golden.GOLDEN) as data:
        specs = json.loads(str(data["spec"]))
        names = json.loads(str(data["names"]))
        inputs = {k[len("input/"):]: np.asarray(data[k]) for k in data.files
                  if k.startswith("input/")}
        nt = {k[len("nt/"):]: np.asarray(data[k]) for k in data.files if k.startswith("nt/")}
    return names, specs, inputs, nt


# one case per convention in the default run (each new kernel shape costs compilations);
# the other layouts and times run in `make test-all`
_GOLDEN_DEFAULT = ("gd_traced_grid", "gd_3d_batch", "gd_test_only", "gp_default_get",
                   "gp_three_gets", "gp_mean_only", "gp_mean_only_tuple", "gp_train_set_cov",
                   "gp_train_set_mean", "gp_array_nngp", "gp_array_ntkgp", "gp_array_ntk_mean",
                   "gp_3d_last", "ens_means")


@pytest.mark.parametrize("name", [n if n in _GOLDEN_DEFAULT else
                                  pytest.param(n, marks=pytest.mark.slow)
                                  for n in _golden()[0]])
def test_predictors_match_neural_tangents_golden(name):
    """neural-tangents 0.6.5's gradient_descent_mse, gp_inference and
    gradient_descent_mse_ensemble (float64, made in .venv-ref): the same calls, written once
    for both libraries (``reference.make_predict_golden.call``), give the same nesting of
    ``Gaussians`` / ``Gaussian`` / tuples / arrays and the same numbers to 1e-10 of the
    largest entry, for traced, full, 3-D and batch-traced ``trace_axes`` layouts."""
    names, specs, inputs, nt = _golden()
    i = names.index(name)
    structure, ours = golden.flatten(golden.call(
        predict, specs[i], lambda key: None if key is None else inputs[key]))
    assert structure == str(nt[f"{i}/structure"])
    for path, value in ours.items():
        want = nt[f"{i}{path}"]
        assert value.shape == want.shape, (path, value.shape, want.shape)
        scale = max(float(np.max(np.abs(want), initial=0.0)), 1e-3)
        assert float(np.max(np.abs(value - want), initial=0.0)) < 1e-10 * scale, path
