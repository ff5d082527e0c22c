"""Empirical NTK / NNGP: every implementation against explicit leaf-by-leaf Jacobians.

The reference kernel is built independently of ntk.empirical: ``jax.jacrev`` of the whole
batch's output with respect to each parameter leaf, contracted by hand-written einsums.
"""
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk
from ntk.budget import MemoryBudgetError
from tests.ntk import models

_JACOBIANS = {}


def explicit_raw_kernel(apply_fn, params, x1, x2, scales=None):
    """R[n1, a, n2, b] = sum_l s_l <d f(x1)[n1, a] / d theta_l, d f(x2)[n2, b] / d theta_l>."""
    jac = _JACOBIANS.setdefault(apply_fn, jax.jit(jax.jacrev(apply_fn)))
    j1 = jax.tree_util.tree_leaves(jac(params, x1))
    j2 = jax.tree_util.tree_leaves(jac(params, x2))
    out1 = apply_fn(params, x1).shape
    out2 = apply_fn(params, x2).shape
    s = [1.0] * len(j1) if scales is None else jax.tree_util.tree_leaves(scales)
    total = 0.0
    for sl, a, b in zip(s, j1, j2):
        a = a.reshape(out1 + (-1,))
        b = b.reshape(out2 + (-1,))
        total = total + sl * jnp.tensordot(a, b, axes=([-1], [-1]))
    return total  # (*out1, *out2)


def inputs(shape, n1=3, n2=2, seed=1, dtype=jnp.float64):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    return (jax.random.normal(k1, (n1,) + shape, dtype),
            jax.random.normal(k2, (n2,) + shape, dtype))


# Hand-written reductions of R[n, a, m, b] for outputs (N, O).
MODES = {
    "full": ((), (), lambda r: jnp.einsum("namb->nmab", r)),
    "trace": ((-1,), (), lambda r: jnp.einsum("nama->nm", r) / r.shape[1]),
    "diagonal": ((), (-1,), lambda r: jnp.einsum("nama->nma", r)),
}


# The axes modes are reductions the engine applies whatever the network; they are checked on
# the hand-written MLP (every implementation) and CNN (every implementation in the full mode,
# 'structured' in every mode), and the residual net and the framework
# wrappers (whose point is their structure and parameter pytrees) in the full mode with the
# structured implementation by default, every mode and implementation under ``make test-all``.
ALL_MODES = ("mlp", "cnn")


def _model_cases():
    for m in models.MODELS:
        if m in ALL_MODES:
            yield pytest.param(m, True, id=m)
        else:
            yield pytest.param(m, False, id=f"{m}-full")
            yield pytest.param(m, True, id=f"{m}-all-modes", marks=pytest.mark.slow)


@pytest.mark.parametrize("model, all_modes", list(_model_cases()))
def test_matches_explicit_jacobians(model, all_modes):
    apply_fn, params, shape = models.MODELS[model](jax.random.PRNGKey(0))
    x1, x2 = inputs(shape)
    raw = explicit_raw_kernel(apply_fn, params, x1, x2)
    raw_sym = explicit_raw_kernel(apply_fn, params, x1, x1)
    modes = MODES if all_modes else {"full": MODES["full"]}
    # the framework wrappers' parameter pytrees matter most to the jaxpr-reading 'structured'
    # implementation: it alone by default, all three with every mode under ``make test-all``
    for implementation in (("jacobian", "ntvp", "structured") if all_modes
                           else ("structured",)):
        for vmap_axes in ([None, 0] if model == "mlp" else [0]):
            # whole-batch derivatives (vmap_axes=None) in the full mode: the reductions are
            # the vmapped path's
            # the reductions are the engine's, whatever the model: on the CNN the explicit
            # implementations run the full mode, 'structured' (whose rules differ per layer)
            # every mode
            every = vmap_axes is not None and (model != "cnn" or implementation == "structured")
            for mode, (trace_axes, diagonal_axes, reduce) in (
                    modes.items() if every else [("full", modes["full"])]):
                fn = ntk.empirical_ntk_fn(apply_fn, trace_axes, diagonal_axes, vmap_axes,
                                          implementation)
                np.testing.assert_allclose(
                    fn(x1, x2, params), reduce(raw), rtol=0, atol=1e-10,
                    err_msg=f"{implementation}, {mode}, vmap_axes={vmap_axes}")
        # x2=None reuses x1's derivatives
        fn = ntk.empirical_ntk_fn(apply_fn, (), (), 0, implementation)
        np.testing.assert_allclose(fn(x1, None, params), MODES["full"][2](raw_sym), rtol=0,
                                   atol=1e-10, err_msg=f"{implementation} symmetric")


def test_auto_matches_explicit_jacobians():
    apply_fn, params, shape = models.resnet(jax.random.PRNGKey(0))
    x1, x2 = inputs(shape)
    raw = explicit_raw_kernel(apply_fn, params, x1, x2)
    fn = ntk.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0, implementation="auto")
    np.testing.assert_allclose(fn(x1, x2, params), MODES["full"][2](raw), atol=1e-10)


@pytest.mark.parametrize("model", ["mlp", "cnn", "resnet"])
def test_symmetric_and_psd(model):
    apply_fn, params, shape = models.MODELS[model](jax.random.PRNGKey(2))
    x, _ = inputs(shape, n1=5)
    k = ntk.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0)(x, None, params)
    n, o = k.shape[0], k.shape[2]
    mat = np.asarray(jnp.transpose(k, (0, 2, 1, 3)).reshape(n * o, n * o))
    np.testing.assert_allclose(mat, mat.T, atol=1e-12)
    assert np.linalg.eigvalsh(mat).min() > -1e-10 * np.abs(mat).max()


# Outputs (N, T, O): every combination of traced / diagonal token and feature axes.
SEQUENCE_MODES = [
    ((), (), "ntamsb->nmtsab"),
    ((-1,), (), "ntamsa->nmts"),
    ((1,), (), "ntamtb->nmab"),
    ((1, 2), (), "ntamta->nm"),
    ((), (1,), "ntamtb->nmtab"),
    ((), (2,), "ntamsa->nmtsa"),
    ((-1,), (1,), "ntamta->nmt"),
    ((1,), (2,), "ntamta->nma"),
    ((), (1, 2), "ntamta->nmta"),
]


# every implementation under ``make test-all``; 'structured' (the default plan's) by default
@pytest.mark.parametrize("implementation", [pytest.param("jacobian", marks=pytest.mark.slow),
                                            pytest.param("ntvp", marks=pytest.mark.slow),
                                            "structured"])
def test_multi_axis_outputs(implementation):
    apply_fn, params, shape = models.sequence(jax.random.PRNGKey(3))
    x1, x2 = inputs(shape)
    raw = explicit_raw_kernel(apply_fn, params, x1, x2)  # (N1, T, O, N2, T, O)
    t, o = raw.shape[1], raw.shape[2]
    for trace_axes, diagonal_axes, spec in SEQUENCE_MODES:
        divisor = (t if any(a % 3 == 1 for a in trace_axes) else 1) * \
                  (o if any(a % 3 == 2 for a in trace_axes) else 1)
        expected = jnp.einsum(spec, raw) / divisor
        for vmap_axes in ((None, 0) if (trace_axes, diagonal_axes) == ((1,), (2,)) else (0,)):
            got = ntk.empirical_ntk_fn(apply_fn, trace_axes, diagonal_axes, vmap_axes,
                                       implementation)(x1, x2, params)
            np.testing.assert_allclose(got, expected, atol=1e-10,
                                       err_msg=f"trace={trace_axes} diag={diagonal_axes}")


# The Jacobian contraction's batch-axis reductions are checked in every mode by
# test_matches_explicit_jacobians; here it runs under ``make test-all``.
@pytest.mark.parametrize("implementation", [pytest.param("jacobian", marks=pytest.mark.slow),
                                            "ntvp", "structured"])
def test_batch_axis_diagonal_and_trace(implementation):
    apply_fn, params, shape = models.mlp(jax.random.PRNGKey(4))
    x, _ = inputs(shape, n1=4)
    raw = explicit_raw_kernel(apply_fn, params, x, x)
    per_example = ntk.empirical_ntk_fn(apply_fn, trace_axes=(-1,), diagonal_axes=(0,),
                                       vmap_axes=0, implementation=implementation)
    np.testing.assert_allclose(per_example(x, None, params),
                               jnp.einsum("nana->n", raw) / raw.shape[1], atol=1e-10)
    traced = ntk.empirical_ntk_fn(apply_fn, trace_axes=(0,), diagonal_axes=(),
                                  vmap_axes=0, implementation=implementation)
    np.testing.assert_allclose(traced(x, None, params),
                               jnp.einsum("nanb->ab", raw) / raw.shape[0], atol=1e-10)


def test_float32_implementations_agree_on_wider_net():
    apply_fn, params, shape = models.mlp(jax.random.PRNGKey(5), sizes=(32, 256, 256, 10),
                                         dtype=jnp.float32)
    x1, x2 = inputs(shape, n1=6, n2=5, dtype=jnp.float32)
    kernels = {impl: ntk.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0,
                                          implementation=impl)(x1, x2, params)
               for impl in ("jacobian", "ntvp", "structured")}
    assert all(k.dtype == jnp.float32 for k in kernels.values())
    ref = kernels["jacobian"]
    for impl, k in kernels.items():
        rel = float(jnp.linalg.norm(k - ref) / jnp.linalg.norm(ref))
        assert rel < 1e-5, (impl, rel)


@pytest.mark.parametrize("implementation", ["jacobian", "ntvp", "structured"])
def test_param_scales_give_layerwise_kernel(implementation):
    apply_fn, params, shape = models.mlp(jax.random.PRNGKey(6))
    x1, x2 = inputs(shape)
    scales = [{"W": 2.0, "b": 0.5}, {"W": 0.0, "b": 1.0}, {"W": 3.0, "b": 0.0}]
    raw = explicit_raw_kernel(apply_fn, params, x1, x2, scales)
    fn = ntk.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0,
                              implementation=implementation, param_scales=scales)
    np.testing.assert_allclose(fn(x1, x2, params), jnp.einsum("namb->nmab", raw), atol=1e-10)
    # A parameter subset: only the last layer's weights.
    subset = [{"W": 0.0, "b": 0.0}, {"W": 0.0, "b": 0.0}, {"W": 1.0, "b": 0.0}]
    sub = ntk.empirical_ntk_fn(apply_fn, vmap_axes=0, implementation=implementation,
                               param_scales=subset)(x1, x2, params)
    # d f_a / d W3[i, a] = phi_i / sqrt(6), so the kernel is phi(x1) . phi(x2) / 6
    phi = lambda x: jnp.tanh(apply_fn(params[:2], x))  # noqa: E731
    np.testing.assert_allclose(sub, phi(x1) @ phi(x2).T / 6, atol=1e-10)


def test_blocks_match_single_pass_and_budget_errors():
    apply_fn, params, shape = models.cnn(jax.random.PRNGKey(7))
    x1, x2 = inputs(shape, n1=6, n2=4)
    full = ntk.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0)(x1, x2, params)
    sym = ntk.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0)(x1, None, params)
    for impl in ("jacobian", "ntvp", "structured"):
        blocked = ntk.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0,
                                       implementation=impl, block_size=(3, 2))
        # blocks (3, 2) divide (6, 4): one compiled shape per block kind
        np.testing.assert_allclose(blocked(x1, x2, params), full, atol=1e-10)
        np.testing.assert_allclose(blocked(x1, None, params), sym, atol=1e-10)
    # A budget that forces blocks: the planner picks them and the result is unchanged.
    fn = ntk.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0, implementation="jacobian")
    plan_free = fn.plan(x1, x2, params)
    small = plan_free["output_bytes"] + plan_free["bytes_per_block"] // 3
    tight = ntk.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0,
                                 implementation="jacobian", memory_budget=small)
    plan = tight.plan(x1, x2, params)
    assert plan["block_size"] != (6, 4)
    assert plan["bytes_per_block"] + plan["output_bytes"] <= small
    np.testing.assert_allclose(tight(x1, x2, params), full, atol=1e-10)
    # Too small for even the output: the error names the cheaper options.
    with pytest.raises(MemoryBudgetError, match="pntk") as err:
        ntk.empirical_ntk_fn(apply_fn, trace_axes=(), memory_budget=100)(x1, x2, params)
    assert "trace_axes" in str(err.value) and "project" in str(err.value)


def test_auto_prefers_structured_for_wide_dense_layers():
    """Novak et al.'s FCN costs: SD < NTVP < JC for W >> O (their Table / Fig. 2)."""
    apply_fn, params, shape = models.mlp(jax.random.PRNGKey(8), sizes=(64, 512, 512, 8),
                                         dtype=jnp.float32)
    x1, _ = inputs(shape, n1=16, dtype=jnp.float32)
    plan = ntk.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0).plan(x1, None, params)
    assert plan["implementation"] == "structured"
    assert plan["flops"]["structured"] < plan["flops"]["ntvp"] < plan["flops"]["jacobian"]
    assert plan["fallback_leaves"] == []


def test_structured_uses_layer_structure():
    """Dense, convolution, bias (add) and scale (mul) parameters all get structured rules."""
    apply_fn, params, shape = models.cnn(jax.random.PRNGKey(9))
    x1, _ = inputs(shape)
    plan = ntk.empirical_ntk_fn(apply_fn, vmap_axes=0).plan(x1, None, params)
    n_leaves = len(jax.tree_util.tree_leaves(params))
    assert plan["structured_leaves"] == list(range(n_leaves))


def test_nngp_is_output_covariance():
    apply_fn, params, shape = models.sequence(jax.random.PRNGKey(10))
    x1, x2 = inputs(shape)
    f1, f2 = apply_fn(params, x1), apply_fn(params, x2)
    np.testing.assert_allclose(
        ntk.empirical_nngp_fn(apply_fn, trace_axes=(-1,))(x1, x2, params),
        jnp.einsum("nta,msa->nmts", f1, f2) / f1.shape[-1], atol=1e-12)
    np.testing.assert_allclose(
        ntk.empirical_nngp_fn(apply_fn, trace_axes=(), diagonal_axes=(1,))(x1, x2, params),
        jnp.einsum("nta,mtb->nmtab", f1, f2), atol=1e-12)
    kernel_fn = ntk.empirical_kernel_fn(apply_fn, vmap_axes=0)
    nngp = ntk.empirical_nngp_fn(apply_fn, vmap_axes=0)(x1, x2, params)
    ntk_ = ntk.empirical_ntk_fn(apply_fn, vmap_axes=0)(x1, x2, params)
    # get as in ntk.stax and neural-tangents: a name -> array, a tuple -> namedtuple in that
    # order, None -> both; names in any case
    both = kernel_fn(x1, x2, ("ntk", "NNGP"), params)
    assert both._fields == ("ntk", "nngp")
    everything = kernel_fn(x1, x2, None, params)
    assert everything._fields == ("nngp", "ntk")
    for got, want in [(both.ntk, ntk_), (both.nngp, nngp), (everything.nngp, nngp),
                      (everything.ntk, ntk_), (kernel_fn(x1, x2, "Ntk", params), ntk_)]:
        np.testing.assert_allclose(got, want, rtol=1e-12)
    for get, error in [(("ntk", "ntk"), ValueError), ((), ValueError), (3, TypeError),
                       (("ntk", 3), TypeError), ("cov1", ValueError)]:
        with pytest.raises(error, match="get"):
            kernel_fn(x1, x2, get, params)


def test_jit_of_kernel_fn():
    apply_fn, params, shape = models.mlp(jax.random.PRNGKey(11))
    x1, x2 = inputs(shape)
    fn = ntk.empirical_ntk_fn(apply_fn, vmap_axes=0, implementation="structured")
    direct = fn(x1, x2, params)
    np.testing.assert_allclose(jax.jit(fn)(x1, x2, params), direct, atol=1e-12)
    # concrete inputs closed over inside jit, and a vmap over parameter draws
    np.testing.assert_allclose(jax.jit(lambda p: fn(x1, x2, p))(params), direct, atol=1e-12)
    stacked = jax.tree_util.tree_map(lambda a: jnp.stack([a, 2 * a]), params)
    doubled = [{k: 2 * v for k, v in layer.items()} for layer in params]
    np.testing.assert_allclose(jax.vmap(lambda p: fn(x1, x2, p))(stacked)[1],
                               fn(x1, x2, doubled), atol=1e-10)


# The sharding wraps whichever implementation computes a block: 'structured' by default, the
# other two under ``make test-all`` (each case is a fresh 4-device process).
@pytest.mark.parametrize("impl", ["structured", pytest.param("jacobian", marks=pytest.mark.slow),
                                  pytest.param("ntvp", marks=pytest.mark.slow)])
def test_sharded_blocks_equal_single_device(impl):
    code = textwrap.dedent("""
        import jax, jax.numpy as jnp, numpy as np
        jax.config.update("jax_enable_x64", True)
        assert len(jax.devices()) == 4, jax.devices()
        import ntk
        from tests.ntk import models
        apply_fn, params, shape = models.mlp(jax.random.PRNGKey(0))
        x1 = jax.random.normal(jax.random.PRNGKey(1), (7,) + shape)
        x2 = jax.random.normal(jax.random.PRNGKey(2), (5,) + shape)
        traces = []
        def counted(p, x):
            traces.append(1)
            return apply_fn(p, x)
        for impl in (IMPL,):
            one = ntk.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0,
                                       implementation=impl)(x1, x2, params)
            fn = ntk.empirical_ntk_fn(counted, trace_axes=(), vmap_axes=0,
                                      implementation=impl, devices="all")
            four = fn(x1, x2, params)
            np.testing.assert_allclose(four, one, atol=1e-10)
            np.testing.assert_allclose(fn(x1, None, params), ntk.empirical_ntk_fn(
                apply_fn, trace_axes=(), vmap_axes=0, implementation=impl)(x1, None, params),
                atol=1e-10)
            count = len(traces)
            fn(x1 * 2.0, x2, params)  # same shapes: compiled once, no new trace
            fn(x1, None, params)
            assert len(traces) == count, (impl, count, len(traces))
        print("OK")
    """).replace("IMPL", repr(impl))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    res = subprocess.run([sys.executable, "-c", code], env=env, cwd=root,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "OK" in res.stdout, res.stderr[-3000:]


# ----------------------------------------------------------------------- bad input

def test_neural_tangents_implementation_names_and_codes():
    """neural-tangents' ``NtkImplementation`` names and integer codes select the same method
    (each still matches the explicit Jacobians), and iteration lists each method once."""
    I = ntk.Implementation
    assert list(I) == [I.JACOBIAN, I.NTVP, I.STRUCTURED, I.AUTO]
    assert (I.JACOBIAN_CONTRACTION, I.NTK_VECTOR_PRODUCTS, I.STRUCTURED_DERIVATIVES) == (
        I.JACOBIAN, I.NTVP, I.STRUCTURED)
    apply_fn, params, shape = models.mlp(jax.random.PRNGKey(4))
    x1, x2 = inputs(shape)
    raw = explicit_raw_kernel(apply_fn, params, x1, x2)
    expected = jnp.einsum("nama->nm", raw) / raw.shape[1]
    for code in (0, 1, 2, 3, np.int64(3), I.NTK_VECTOR_PRODUCTS):
        fn = ntk.empirical_ntk_fn(apply_fn, vmap_axes=0, implementation=code)
        np.testing.assert_allclose(fn(x1, x2, params), expected, atol=1e-10)
    for bad in (4, -1, True, 1.0):
        with pytest.raises(ValueError, match="codes 0-3"):
            ntk.empirical_ntk_fn(apply_fn, implementation=bad)


@pytest.mark.parametrize("same", [False, True])
def test_ntk_vector_products_against_explicit_jacobians(same):
    """``empirical_ntk_vp_fn(f, x1, x2, params)(v) = sum_{m,b} Theta[n,a,m,b] v[m,b]``, under
    ``jit``, and ``vmap`` over the identity rebuilds the full kernel."""
    apply_fn, params, shape = models.mlp(jax.random.PRNGKey(7))
    x1, x2 = inputs(shape, n1=3, n2=4)
    x2 = None if same else x2
    raw = explicit_raw_kernel(apply_fn, params, x1, x1 if same else x2)  # (N1, O, N2, O)
    n2, o = raw.shape[2], raw.shape[3]
    vp = jax.jit(ntk.empirical_ntk_vp_fn(apply_fn, x1, x2, params))
    v = jax.random.normal(jax.random.PRNGKey(8), (n2, o), jnp.float64)
    np.testing.assert_allclose(vp(v), jnp.einsum("namb,mb->na", raw, v), rtol=1e-10)
    columns = jax.vmap(vp)(jnp.eye(n2 * o).reshape(n2 * o, n2, o))  # (N2 O, N1, O)
    np.testing.assert_allclose(jnp.moveaxis(columns, 0, -1).reshape(raw.shape), raw,
                               rtol=1e-10, atol=1e-12)


def test_bad_input_errors():
    apply_fn, params, shape = models.mlp(jax.random.PRNGKey(12))
    x1, x2 = inputs(shape)
    fn = ntk.empirical_ntk_fn(apply_fn, vmap_axes=0)
    with pytest.raises(ValueError, match=r"x1 and x2 .*\(3, 5\).*\(2, 4\)"):
        fn(x1, x2[:, :4], params)
    with pytest.raises(ValueError, match="x2 of shape .* non-finite"):
        fn(x1, x2.at[0, 0].set(jnp.nan), params)
    with pytest.raises(ValueError, match="implementation='fast'"):
        ntk.empirical_ntk_fn(apply_fn, implementation="fast")
    with pytest.raises(ValueError, match=r"trace_axes=\(5,\).*out of range.*\(3, 3\)"):
        ntk.empirical_ntk_fn(apply_fn, trace_axes=(5,))(x1, x2, params)
    with pytest.raises(ValueError, match="share axes"):
        ntk.empirical_ntk_fn(apply_fn, trace_axes=(-1,), diagonal_axes=(1,))(x1, x2, params)
    with pytest.raises(TypeError, match=r"`x1` of shape \(1, 5\) does not fit `apply_fn`"):
        fn(x1, x2, params[:1] + [{"W": jnp.ones((9, 9)), "b": jnp.ones(9)}] + params[2:])
    with pytest.raises(ValueError, match="param_scales must be a pytree"):
        ntk.empirical_ntk_fn(apply_fn, param_scales=[1.0, 2.0])(x1, x2, params)
    with pytest.raises(ValueError, match="non-negative"):
        ntk.empirical_ntk_fn(apply_fn, param_scales=[{"W": -1.0, "b": 1.0}] * 3)(
            x1, x2, params)
    with pytest.raises(TypeError, match="trace_axes must contain ints"):
        ntk.empirical_ntk_fn(apply_fn, trace_axes=("a",))
    with pytest.raises(ValueError, match="N1=3 and N2=2"):
        ntk.empirical_ntk_fn(apply_fn, diagonal_axes=(0,), vmap_axes=0)(x1, x2, params)
    with pytest.raises(TypeError, match="x1 must be an array"):
        fn([[1.0] * 5], None, params)


def test_batch_axis_elsewhere_matches_neural_tangents_layout():
    """Inputs (d, N) -> outputs (O, N). Kernel axes follow the output axes in order, as in
    neural-tangents 0.6.5 (checked there: (O, O, N1, N2), (N1, N2) for trace_axes=(0,),
    (O, N1, N2) for diagonal_axes=(0,)), with or without vmap_axes=(1, 1)."""
    w = jax.random.normal(jax.random.PRNGKey(13), (3, 4))
    apply_fn = lambda p, x: jnp.tanh(p @ x)  # noqa: E731
    x1 = jax.random.normal(jax.random.PRNGKey(14), (4, 5))
    x2 = jax.random.normal(jax.random.PRNGKey(15), (4, 2))
    raw = explicit_raw_kernel(apply_fn, w, x1, x2)  # (O, N1, O, N2)
    expected = {((), ()): jnp.einsum("anbm->abnm", raw),
                ((0,), ()): jnp.einsum("anam->nm", raw) / 3,
                ((), (0,)): jnp.einsum("anam->anm", raw)}
    for (trace_axes, diagonal_axes), value in expected.items():
        for vmap_axes in (None, (1, 1)):
            for impl in ("jacobian", "ntvp", "structured"):
                got = ntk.empirical_ntk_fn(apply_fn, trace_axes, diagonal_axes, vmap_axes,
                                           impl)(x1, x2, w)
                np.testing.assert_allclose(got, value, atol=1e-10,
                                           err_msg=f"{trace_axes} {diagonal_axes} {vmap_axes}")


def test_mismatched_inputs_without_vmap_axes():
    apply_fn, params, shape = models.mlp(jax.random.PRNGKey(16))
    x1, x2 = inputs(shape)
    with pytest.raises(ValueError, match=r"x1 and x2 .*\(3, 5\).*\(2, 4\)"):
        ntk.empirical_ntk_fn(apply_fn)(x1, x2[:, :4], params)


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_cost_model_counts_one_example_with_or_without_vmap_axes(model):
    """vmap mode traces one example, batch mode the whole batch divided by N: the forward
    profile must agree (it once differed by a factor N in vmap mode, which made 'auto'
    pick NTVP over a 27x faster structured kernel). Derivatives of a coupled batch cost
    more: each backward pass runs over the whole batch."""
    if model == "mlp":
        apply_fn, params, shape = models.mlp(jax.random.PRNGKey(12), sizes=(64, 256, 10),
                                             dtype=jnp.float32)
    else:
        apply_fn, params, shape = models.cnn(jax.random.PRNGKey(12), dtype=jnp.float32)
    x1, _ = inputs(shape, n1=12, dtype=jnp.float32)
    with_vmap = ntk.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0).plan(x1, None, params)
    without = ntk.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=None).plan(x1, None, params)
    assert with_vmap["flops_forward_per_example"] == pytest.approx(
        without["flops_forward_per_example"], rel=0.05)
    assert with_vmap["batch_independent"] and not without["batch_independent"]
    for impl in ("jacobian", "structured"):
        assert without["flops"][impl] > with_vmap["flops"][impl], impl


def test_ntvp_cost_is_novak_et_al():
    """NTVP: N2 O (3 FP + 3 N1 FP) with FP = 2 sum fan_in fan_out for a dense net (plus its
    elementwise ops, a few percent here)."""
    sizes = (64, 512, 10)
    apply_fn, params, shape = models.mlp(jax.random.PRNGKey(13), sizes=sizes, dtype=jnp.float32)
    x1, _ = inputs(shape, n1=16, dtype=jnp.float32)
    plan = ntk.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0).plan(x1, None, params)
    fp = 2 * sum(a * b for a, b in zip(sizes, sizes[1:]))
    n, o = 16, sizes[-1]
    assert plan["flops"]["ntvp"] == pytest.approx(n * o * (3 * fp + 3 * n * fp), rel=0.05)
