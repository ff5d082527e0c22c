"""ntk.stax layers: API semantics, layouts, blocked evaluation, residual scaling and errors."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk import stax
from ntk.stax.kernel import input_kernel


def _x(shape, seed=0):
    return np.random.RandomState(seed).randn(*shape)


MLP = stax.serial(stax.Dense(32, 1.4, 0.1), stax.Relu(), stax.Dense(32, 1.4, 0.1), stax.Erf(),
                  stax.Dense(1, 1.1, 0.1))
CNN_GAP = stax.serial(stax.Conv(8, (3, 3), padding="SAME", W_std=1.3, b_std=0.1), stax.Relu(),
                      stax.Conv(8, (2, 2), strides=(2, 2), W_std=1.2), stax.Gelu(),
                      stax.GlobalAvgPool(), stax.Dense(1))


def test_get_semantics_and_shapes():
    x1, x2 = _x((5, 3)), _x((4, 3), 1)
    _, _, kernel_fn = MLP
    k = kernel_fn(x1, x2)
    assert isinstance(k, stax.Kernel)
    assert k.nngp.shape == k.ntk.shape == (5, 4)
    assert k.cov1.shape == (5,) and k.cov2.shape == (4,)
    assert kernel_fn(x1, x2, "ntk").shape == (5, 4)
    pair = kernel_fn(x1, x2, ("ntk", "nngp"))
    assert pair._fields == ("ntk", "nngp")
    np.testing.assert_allclose(pair.nngp, k.nngp)
    # NTK is only computed when asked for
    assert kernel_fn(x1, x2, ("nngp", "cov1")).nngp.shape == (5, 4)
    assert kernel_fn(x1, x2, ("nngp",))[0].shape == (5, 4)
    same = kernel_fn(x1, None)
    assert same.cov2 is None and same.nngp.shape == (5, 5)
    np.testing.assert_allclose(np.diag(same.nngp), same.cov1, rtol=1e-12)
    np.testing.assert_allclose(same.nngp, same.nngp.T, rtol=1e-12)


def test_init_apply_shapes_match_kernel_shapes():
    x = _x((3, 6, 5, 2))
    init_fn, apply_fn, kernel_fn = stax.serial(
        stax.Conv(4, (3, 2), strides=(2, 1), padding="SAME"), stax.Relu(),
        stax.AvgPool((2, 2), padding="VALID"), stax.Conv(5, (2,) * 2), stax.Relu())
    out_shape, params = init_fn(jax.random.PRNGKey(0), x.shape)
    y = apply_fn(params, x)
    assert y.shape == out_shape
    k = kernel_fn(x, None)
    assert k.shape1 == out_shape
    # full spatial layout (N1, N2, H, H, W, W) and the diagonal one on request
    h, w = out_shape[1:3]
    assert k.nngp.shape == (3, 3, h, h, w, w)
    kd = kernel_fn(x, None, diagonal_spatial=True)
    assert kd.nngp.shape == (3, 3, h, w)
    full = np.asarray(k.nngp)
    np.testing.assert_allclose(kd.nngp, np.einsum("nmaabb->nmab", full), rtol=1e-12)


def test_flatten_uses_diagonal_layout_and_equals_full_computation():
    """Conv-Relu-Conv-Flatten is planned in the diagonal layout; computing the full spatial
    kernel and averaging its diagonal by hand gives the same numbers."""
    x1, x2 = _x((3, 5, 4, 2)), _x((2, 5, 4, 2), 1)
    body = [stax.Conv(4, (3, 3), padding="SAME", W_std=1.3, b_std=0.2), stax.Erf(),
            stax.Conv(4, (2, 2), strides=(1, 2), W_std=1.1)]
    _, _, flat_fn = stax.serial(*body, stax.Flatten())
    _, _, body_fn = stax.serial(*body)
    assert not flat_fn.input_full(True) and body_fn.input_full(True)
    flat = flat_fn(x1, x2)
    full = body_fn(x1, x2)
    by_hand = np.einsum("nmaabb->nm", np.asarray(full.ntk)) / (
        full.ntk.shape[2] * full.ntk.shape[4])
    np.testing.assert_allclose(flat.ntk, by_hand, rtol=1e-12)


# the CNN with x2 given (the costliest case) under ``make test-all``: the default cases cover
# the CNN's blocks with x2 = None and the MLP's with x2 given
@pytest.mark.parametrize("net, same", [("mlp", False), ("mlp", True), ("cnn", True),
                                       pytest.param("cnn", False, marks=pytest.mark.slow)])
def test_blocked_evaluation_equals_one_shot(net, same):
    _, _, kernel_fn = MLP if net == "mlp" else CNN_GAP
    shape = (7, 3) if net == "mlp" else (7, 4, 4, 2)
    x1 = _x(shape)
    x2 = None if same else _x((5,) + shape[1:], 1)
    whole = kernel_fn(x1, x2)
    blocked = kernel_fn(x1, x2, batch_size=3)
    for field in ("nngp", "ntk", "cov1", "cov2"):
        a, b = getattr(whole, field), getattr(blocked, field)
        if a is None:
            assert b is None
            continue
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)
    # a tiny memory budget plans blocks by itself
    budgeted = kernel_fn(x1, x2, get="ntk", memory_budget=60_000 if net == "cnn" else 6_000)
    np.testing.assert_allclose(budgeted, whole.ntk, rtol=1e-12, atol=1e-14)
    # a budget below the output itself is refused, naming the cheaper options
    from ntk.budget import MemoryBudgetError
    with pytest.raises(MemoryBudgetError, match="get='nngp'"):
        kernel_fn(x1, x2, memory_budget=64)


def test_kernel_input_composes_by_hand():
    x1, x2 = _x((4, 3)), _x((3, 3), 1)
    first = stax.serial(stax.Dense(8, 1.2, 0.1), stax.Relu())
    second = stax.serial(stax.Dense(8, 1.3), stax.Erf(), stax.Dense(1))
    composed = stax.serial(first, second)[2](x1, x2)
    by_hand = second[2](first[2](input_kernel(jnp.asarray(x1), jnp.asarray(x2), False, True)))
    np.testing.assert_allclose(by_hand.ntk, composed.ntk, rtol=1e-12)


def test_fanin_weights_equal_scale_layer():
    x = _x((4, 3))
    branch = stax.serial(stax.Relu(), stax.Dense(16, 1.3, 0.1))
    a = stax.serial(stax.Dense(16), stax.FanOut(2), stax.parallel(stax.Identity(), branch),
                    stax.FanInSum(weights=(1.0, 0.3)))
    b = stax.serial(stax.Dense(16), stax.FanOut(2),
                    stax.parallel(stax.Identity(), stax.serial(branch, stax.Scale(0.3))),
                    stax.FanInSum())
    ka, kb = a[2](x, None), b[2](x, None)
    np.testing.assert_allclose(ka.nngp, kb.nngp, rtol=1e-12)
    np.testing.assert_allclose(ka.ntk, kb.ntk, rtol=1e-12)
    # and the finite networks agree too
    dense, fan, (ident, branch_params), fan_in = a[0](jax.random.PRNGKey(0), x.shape)[1]
    b_params = (dense, fan, (ident, (branch_params, ())), fan_in)
    np.testing.assert_allclose(a[1]((dense, fan, (ident, branch_params), fan_in), x),
                               b[1](b_params, x), rtol=1e-12)


def test_parallel_inside_parallel_gives_the_nested_branch_kernels():
    """A network whose output is a nested list of kernels: each entry is the kernel of the
    flat network along its branch (FanOut copies its input), whole and in blocks."""
    x = _x((5, 3))
    head = stax.Dense(8, 1.2, 0.1)
    inner = stax.serial(stax.FanOut(2), stax.parallel(stax.Relu(), stax.Erf()))
    net = stax.serial(head, stax.FanOut(2), stax.parallel(inner, stax.Identity()))
    branches = [[stax.serial(head, stax.Relu()), stax.serial(head, stax.Erf())], head]
    for batch_size in (None, 2):
        k = net[2](x, None, ("nngp", "ntk"), batch_size=batch_size)
        assert isinstance(k, list) and isinstance(k[0], list) and len(k[0]) == 2
        for got, flat in ((k[0][0], branches[0][0]), (k[0][1], branches[0][1]),
                          (k[1], branches[1])):
            want = flat[2](x, None, ("nngp", "ntk"))
            np.testing.assert_allclose(got.nngp, want.nngp, rtol=1e-12)
            np.testing.assert_allclose(got.ntk, want.ntk, rtol=1e-12)


def test_residual_depth_scaling_reaches_the_width_depth_ode_limit():
    """``Y_l = Y_{l-1} + L^-1/2 W_l relu(Y_{l-1})`` with ``W ~ N(0, 1/n)``: the variance
    follows ``dq/dt = E[relu(Z)^2] = q / 2``, so ``q_1 = q_0 e^{1/2}`` (Hayou & Yang 2023);
    at depth L it is ``q_0 (1 + 1/(2L))^L``: the error falls like 1/L. (Built with ``repeat``,
    so depth 64 compiles what depth 2 does.)"""
    x = _x((3, 4))
    errors = []
    for depth in (4, 16, 64):
        block = stax.serial(stax.FanOut(2),
                            stax.parallel(stax.Identity(), stax.serial(stax.Relu(),
                                                                       stax.Dense(8))),
                            stax.FanInSum(weights=(1.0, depth ** -0.5)))
        _, _, kernel_fn = stax.serial(stax.Dense(8), stax.repeat(block, depth))
        k = jax.jit(lambda z: kernel_fn(z, None))(x)
        q0 = np.sum(x * x, axis=1) / x.shape[1]
        np.testing.assert_allclose(k.cov1, q0 * (1 + 1 / (2 * depth)) ** depth, rtol=1e-12)
        errors.append(np.max(np.abs(k.cov1 / (q0 * math.exp(0.5)) - 1)))
    assert errors[0] / errors[-1] > 10  # 16x the depth, ~16x closer


def test_no_nan_for_zero_inputs_and_extreme_scales():
    x = _x((4, 3))
    x[1] = 0.0
    x[2] *= 1e6
    for act in (stax.Relu(), stax.Erf(), stax.Gelu(), stax.Sign(), stax.Sin(), stax.Tanh(),
                stax.RectifiedMonomial(2), stax.LeakyRelu(0.1)):
        _, _, kernel_fn = stax.serial(stax.Dense(8, 1.0), act, stax.Dense(8), stax.LayerNorm(),
                                      act, stax.Dense(1))
        k = kernel_fn(x, None)
        for m in (k.nngp, k.ntk, k.cov1):
            assert np.all(np.isfinite(np.asarray(m))), act
    # gradients with respect to the inputs stay finite too
    _, _, kernel_fn = stax.serial(stax.Dense(8), stax.Relu(), stax.Dense(1))
    g = jax.grad(lambda z: jnp.sum(kernel_fn(z, None, "ntk")))(jnp.asarray(x))
    assert np.all(np.isfinite(np.asarray(g)))


def test_float32_inputs_stay_float32():
    x = _x((3, 4)).astype(np.float32)
    k = MLP[2](x, None)
    assert k.ntk.dtype == jnp.float32


# ----------------------------------------------------------------------------------------
# errors


def test_error_feature_mismatch_names_shapes():
    with pytest.raises(ValueError, match=r"x1.shape=\(3, 4\).*x2.shape=\(2, 5\)"):
        MLP[2](_x((3, 4)), _x((2, 5)))


def test_error_conv_on_wrong_rank():
    _, _, kernel_fn = stax.Conv(4, (3, 3))
    with pytest.raises(ValueError, match=r"rank 4 .*got shape \(3, 5, 2\)"):
        stax.serial(stax.Conv(4, (3, 3)), stax.Relu())[2](_x((3, 5, 2)))
    init_fn, apply_fn, _ = stax.Conv(4, (3,))
    with pytest.raises(ValueError, match="input_shape"):
        init_fn(jax.random.PRNGKey(0), (3, 5, 5, 2))


def test_error_unknown_get_name():
    with pytest.raises(ValueError, match="unknown kernel name.*'ntkk'"):
        MLP[2](_x((3, 4)), None, "ntkk")
    with pytest.raises(ValueError, match="unknown kernel name"):
        MLP[2](_x((3, 4)), None, ("nngp", "var"))


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_error_bad_std(bad):
    with pytest.raises(ValueError, match="W_std"):
        stax.Dense(4, W_std=bad)
    with pytest.raises(ValueError, match="b_std"):
        stax.Conv(4, (2,), b_std=bad)


def test_error_bad_parameterization_and_padding():
    with pytest.raises(ValueError, match="parameterization"):
        stax.Dense(4, parameterization="mup")
    with pytest.raises(ValueError, match="padding"):
        stax.Conv(4, (2,), padding="FULL")


def test_error_layer_without_kernel_is_named():
    relu6 = lambda x: jnp.clip(x, 0, 6)
    relu6.__name__ = "relu6"
    _, _, kernel_fn = stax.serial(stax.Dense(4), stax.Elementwise(relu6))
    with pytest.raises(NotImplementedError, match="Elementwise\\(relu6\\).*no infinite-width"):
        kernel_fn(_x((2, 3)))
    # an (init_fn, apply_fn) pair from jax.example_libraries.stax has no kernel either
    from jax.example_libraries import stax as ostax
    _, _, kernel_fn = stax.serial(stax.Dense(4), ostax.Tanh)
    with pytest.raises(NotImplementedError, match="no infinite-width kernel"):
        kernel_fn(_x((2, 3)))


def test_error_nonlinearity_on_raw_input():
    with pytest.raises(ValueError, match="must be Gaussian.*Relu|ABRelu"):
        stax.serial(stax.Relu(), stax.Dense(1))[2](_x((2, 3)))


def test_error_non_finite_input():
    x = _x((2, 3))
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match="x1 contains non-finite"):
        MLP[2](x)


def test_elementwise_with_nngp_fn_matches_closed_form():
    """A user nngp_fn (here the erf one) gives the Erf kernel; Tdot by autodiff."""
    def nngp_fn(q12, q11, q22):
        return 2 / jnp.pi * jnp.arcsin(2 * q12 / jnp.sqrt((1 + 2 * q11) * (1 + 2 * q22)))

    x = _x((4, 3))
    user = stax.serial(stax.Dense(8, 1.3, 0.1), stax.Elementwise(jax.scipy.special.erf, nngp_fn),
                       stax.Dense(1))[2](x, None)
    ours = stax.serial(stax.Dense(8, 1.3, 0.1), stax.Erf(), stax.Dense(1))[2](x, None)
    np.testing.assert_allclose(user.ntk, ours.ntk, rtol=1e-12)


def _selection(length, window, stride, padding):
    """``S_o[a, h] = 1[h = a s + o - lo]``: one matrix per window offset (zero padding)."""
    if padding == "VALID":
        out, lo = (length - window) // stride + 1, 0
    else:
        out = -(-length // stride)
        lo = max((out - 1) * stride + window - length, 0) // 2
    mats = []
    for o in range(window):
        s = np.zeros((out, length))
        for a in range(out):
            h = a * stride + o - lo
            if 0 <= h < length:
                s[a, h] = 1.0
        mats.append(s)
    return mats


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("padding,strides", [("SAME", (1, 1)), ("SAME", (2, 1)),
                                             ("VALID", (1, 2))])
def test_conv_and_pool_kernels_equal_explicit_covariance_maps(dtype, padding, strides):
    """Linear Conv -> AvgPool -> Conv: the kernel as ``(N P) x (N P)`` matrices, each layer
    ``Sigma' = W^2 / k sum_o S_o Sigma S_o^T + b^2`` (conv) or ``P Sigma P^T`` (pool)."""
    rng = np.random.RandomState(3)
    x1 = rng.randn(3, 7, 6, 2).astype(dtype)
    x2 = rng.randn(2, 7, 6, 2).astype(dtype)
    w_std, b_std = 1.3, 0.2
    _, _, kernel_fn = stax.serial(
        stax.Conv(4, (3, 2), strides, padding, W_std=w_std, b_std=b_std),
        stax.AvgPool((2, 2), (1, 2), "SAME"),
        stax.Conv(4, (3, 3), None, "SAME", W_std=w_std, b_std=b_std))
    got = kernel_fn(x1, x2, ("nngp", "ntk"))
    assert got.nngp.dtype == dtype

    def conv_map(shape, fs, st, pad):
        rows = [_selection(shape[i], fs[i], st[i], pad) for i in range(2)]
        ops = [np.kron(a, b) for a in rows[0] for b in rows[1]]
        return ops, (rows[0][0].shape[0], rows[1][0].shape[0])

    x = np.concatenate([x1, x2]).astype(np.float64)
    n, h, w, c = x.shape
    flat = x.reshape(n, h * w, c)
    sigma = np.einsum("npc,mqc->npmq", flat, flat) / c
    ntk = np.zeros_like(sigma)
    shape = (h, w)

    def apply(ops, mat, scale):
        return scale * sum(np.einsum("ap,npmq,bq->namb", s, mat, s) for s in ops)

    for kind, fs, st, pad in [("conv", (3, 2), strides, padding),
                              ("pool", (2, 2), (1, 2), "SAME"),
                              ("conv", (3, 3), (1, 1), "SAME")]:
        ops, shape = conv_map(shape, fs, st, pad)
        if kind == "conv":
            sigma = apply(ops, sigma, w_std**2 / len(ops)) + b_std**2
            ntk = sigma + apply(ops, ntk, w_std**2 / len(ops))
        else:
            pool = sum(ops) / len(ops)
            sigma = np.einsum("ap,npmq,bq->namb", pool, sigma, pool)
            ntk = np.einsum("ap,npmq,bq->namb", pool, ntk, pool)
    p = shape[0] * shape[1]
    for name, want in (("nngp", sigma), ("ntk", ntk)):
        # ours: (N1, N2, X, X', Y, Y') -> (N1, X, Y, N2, X', Y')
        mine = np.asarray(getattr(got, name), np.float64).transpose(0, 2, 4, 1, 3, 5)
        mine = mine.reshape(3, p, 2, p)
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(mine, want[:3, :, 3:, :], rtol=tol, atol=tol)


def test_repeated_call_does_not_retrace():
    """The memory planner's shape evaluation is cached with the compiled function."""
    traces = []

    def nngp_fn(q12, q11, q22):
        traces.append(1)
        return q12 * 0.5

    _, _, kernel_fn = stax.serial(stax.Dense(8), stax.Elementwise(jnp.tanh, nngp_fn),
                                  stax.Dense(1))
    x = np.random.RandomState(0).randn(5, 3)
    kernel_fn(x, None, "ntk")
    first = len(traces)
    kernel_fn(x + 1.0, None, "ntk")
    assert first > 0 and len(traces) == first
