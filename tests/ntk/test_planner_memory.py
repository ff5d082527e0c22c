"""The memory planner against XLA's own buffer assignment.

``kernel_fn.plan`` predicts, per block, the bytes of the Jacobian (feature) blocks held, of
the block's result (``tile_bytes``) and of everything the block needs at once
(``bytes_per_block``), and the bytes of the whole result (``output_bytes``).
``kernel_fn.lower_blocks`` lowers the computations one block runs; their
``compiled.memory_analysis()`` is what XLA allocates. The relations checked:

- output: the planner's ``tile_bytes`` equal the block's ``output_size_in_bytes`` and
  ``output_bytes`` the whole jitted kernel's, exactly, in every axes mode (a traced
  kernel's output was once counted ``O`` times);
- Jacobian blocks: ``feature_bytes`` equal the arrays the derivative passes return; XLA
  adds an 8-byte index table per array to a tuple result, nothing else;
- working set: the peak of the block, as the plan runs it (eagerly: the row side's
  Jacobians held while the column side's are derived, then both contracted), is at most
  ``bytes_per_block`` (an upper bound, so a plan that fits ``memory_budget`` fits), and
  ``bytes_per_block`` is within ``SLACK`` of it. The bound is not tight: activations are
  counted without XLA's fusion and buffer reuse, which the planner cannot see.

Arguments (inputs and parameters) are not counted: they exist before the kernel is asked
for. Measured over the whole grid (``-m slow``): 5 models x 3 axes modes x 2 batch modes x
4 implementations x (x2, None) = 240 blocks, outputs equal in all, peaks within
[1.0, 6.5] x of the plan's estimate.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import ntk
from tests.ntk import models

SLACK = 10.0  # bytes_per_block / XLA's peak, at most (measured at most 6.5 over the grid)
TUPLE_ENTRY = 8  # bytes XLA's CPU backend adds per array of a tuple result (its index table)

MODES = {"full": ((), ()), "trace": ((-1,), ()), "diagonal": ((), (-1,))}
VMAP = {"vmap": (0, 0), "batch": None}


def wide_cnn(key, dtype=jnp.float64):
    """A convolutional net whose activations and patches outweigh its parameters."""
    k = jax.random.split(key, 3)
    params = {"c1": jax.random.normal(k[0], (3, 3, 3, 8), dtype) / 5,
              "c2": jax.random.normal(k[1], (3, 3, 8, 8), dtype) / 8,
              "W": jax.random.normal(k[2], (8, 10), dtype) / 3}
    dn = ("NHWC", "HWIO", "NHWC")

    def apply(p, x):
        h = jax.nn.relu(lax.conv_general_dilated(x, p["c1"], (1, 1), "SAME",
                                                 dimension_numbers=dn))
        h = jnp.tanh(lax.conv_general_dilated(h, p["c2"], (1, 1), "SAME",
                                              dimension_numbers=dn))
        return h.mean((1, 2)) @ p["W"]
    return apply, params, (10, 10, 3)


MODELS = {
    "mlp": lambda key: models.mlp(key, sizes=(5, 16, 16, 10)),
    "cnn": models.cnn,
    "wide_cnn": wide_cnn,
    "resnet": models.resnet,
    "sequence": models.sequence,  # outputs (N, T, D): the last axis is reduced
}


def _memory(lowered):
    analysis = lowered.compile().memory_analysis()
    if analysis is None:
        pytest.skip("backend gives no memory analysis")
    return analysis.output_size_in_bytes, analysis.temp_size_in_bytes


def _array_bytes(tree):
    leaves = jax.tree_util.tree_leaves(tree)
    return sum(int(np.prod(a.shape)) * jnp.dtype(a.dtype).itemsize for a in leaves), len(leaves)


def _kernel_fn(apply_fn, impl, mode, vmap):
    trace_axes, diagonal_axes = MODES[mode]
    if impl == "nngp":
        return ntk.empirical_nngp_fn(apply_fn, trace_axes, diagonal_axes, VMAP[vmap])
    return ntk.empirical_ntk_fn(apply_fn, trace_axes, diagonal_axes, VMAP[vmap],
                                implementation=impl)


def check_block(fn, x1, x2, params):
    """Assert the relations of the module docstring for one plan; return
    ``(bytes_per_block / XLA's peak, plan)``."""
    plan = fn.plan(x1, x2, params)
    lowered = fn.lower_blocks(x1, x2, params)
    if "block" in lowered:  # a tile implementation: one jitted computation per block
        out, temp = _memory(lowered["block"])
        assert out == plan["tile_bytes"], (out, plan)
        peak = out + temp
    else:  # streamed Jacobian: derive x1's rows, then x2's, then contract
        out_a, temp_a = _memory(lowered["features_x1"])
        arrays_a, n_a = _array_bytes(lowered["features_x1"].out_info)
        out_b = temp_b = arrays_b = n_b = 0
        if "features_x2" in lowered:
            out_b, temp_b = _memory(lowered["features_x2"])
            arrays_b, n_b = _array_bytes(lowered["features_x2"].out_info)
        out_g, temp_g = _memory(lowered["gram"])
        assert plan["feature_bytes"] == arrays_a + arrays_b, plan
        assert out_a - arrays_a in (0, TUPLE_ENTRY * n_a), (out_a, arrays_a)
        assert out_b - arrays_b in (0, TUPLE_ENTRY * n_b), (out_b, arrays_b)
        assert out_g == plan["tile_bytes"], (out_g, plan)
        # XLA's peaks hold the index tables the planner does not count
        tables = out_a - arrays_a + out_b - arrays_b
        peak = max(out_a + temp_a, out_a + out_b + temp_b, out_a + out_b + out_g + temp_g)
        peak -= tables
    assert peak <= plan["bytes_per_block"], (peak, plan)
    ratio = plan["bytes_per_block"] / peak
    assert ratio <= SLACK, (ratio, plan)
    return ratio, plan


def _inputs(shape, n1=6, n2=4):
    rng = np.random.default_rng(1)  # numpy: no compilation per input shape
    return (jnp.asarray(rng.standard_normal((n1,) + shape)),
            jnp.asarray(rng.standard_normal((n2,) + shape)))


@functools.lru_cache(maxsize=None)
def _model(name):
    """``MODELS[name]`` with parameters of the same shapes drawn by numpy: bytes depend on
    shapes only, and eager ``jax.random`` would compile once per parameter shape."""
    built = {}

    def params_of(key):
        built["apply_fn"], params, built["shape"] = MODELS[name](key)
        return params

    spec = jax.eval_shape(params_of, jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    params = jax.tree_util.tree_map(
        lambda s: jnp.asarray(rng.standard_normal(s.shape) / 2, s.dtype), spec)
    return built["apply_fn"], params, built["shape"]


# every axes mode x implementation once, models and batch modes in rotation (the default
# run); the whole grid, with the residual net, under -m slow
QUICK = [("mlp", "full", "vmap", "jacobian"), ("cnn", "trace", "batch", "jacobian"),
         ("wide_cnn", "diagonal", "vmap", "jacobian"), ("sequence", "full", "batch", "ntvp"),
         ("wide_cnn", "trace", "vmap", "ntvp"), ("mlp", "diagonal", "batch", "ntvp"),
         ("cnn", "full", "vmap", "structured"), ("mlp", "trace", "batch", "structured"),
         ("sequence", "diagonal", "vmap", "structured"), ("mlp", "full", "batch", "nngp"),
         ("sequence", "trace", "vmap", "nngp"), ("cnn", "diagonal", "batch", "nngp")]
GRID = [(m, a, v, i) for m in MODELS for a in MODES for v in VMAP
        for i in ("jacobian", "ntvp", "structured", "nngp")]


@pytest.mark.parametrize("model,mode,vmap,impl", QUICK)
def test_planned_bytes_bound_xla_allocation(model, mode, vmap, impl):
    apply_fn, params, shape = _model(model)
    x1, x2 = _inputs(shape)
    # x2 = None (one side derived, contracted with itself) for the streamed Jacobian
    check_block(_kernel_fn(apply_fn, impl, mode, vmap), x1,
                None if impl == "jacobian" and mode != "full" else x2, params)


@pytest.mark.slow
def test_planned_bytes_bound_xla_allocation_on_the_grid():
    ratios = []
    for model, mode, vmap, impl in GRID:
        apply_fn, params, shape = _model(model)
        x1, x2 = _inputs(shape)
        fn = _kernel_fn(apply_fn, impl, mode, vmap)
        for b in (x2, None):
            ratios.append(check_block(fn, x1, b, params)[0])
    assert len(ratios) == 2 * len(GRID)
    assert min(ratios) >= 1.0 and max(ratios) <= SLACK


@pytest.mark.parametrize("mode", MODES)
def test_output_bytes_are_the_whole_kernels(mode):
    apply_fn, params, shape = _model("mlp")
    x1, x2 = _inputs(shape)
    fn = _kernel_fn(apply_fn, "jacobian", mode, "vmap")
    compiled = jax.jit(lambda p, a, b: fn(a, b, p)).lower(params, x1, x2)
    out, _ = _memory(compiled)
    assert fn.plan(x1, x2, params)["output_bytes"] == out


def test_tight_budget_blocks_chunks_and_groups_still_bound_xla():
    """A budget that forces row / column blocks, output chunks and leaf groups: the block
    the plan runs (its largest leaf group) is still bounded by the plan."""
    apply_fn, params, shape = _model("mlp")
    x1, x2 = _inputs(shape, n1=7, n2=5)
    free = ntk.empirical_ntk_fn(apply_fn, (), (-1,), 0, "jacobian").plan(x1, x2, params)
    for fraction in np.geomspace(0.5, 1e-3, 20):  # the first budget that needs all three
        budget = free["output_bytes"] + int(fraction * free["bytes_per_block"])
        fn = ntk.empirical_ntk_fn(apply_fn, (), (-1,), 0, "jacobian", memory_budget=budget)
        tried = fn.plan(x1, x2, params)
        if (tried["leaf_groups"] > 1 and tried["chunk"] < 10
                and tried["block_size"] != (7, 5)):
            break
    _, plan = check_block(fn, x1, x2, params)
    assert plan["leaf_groups"] > 1 and plan["chunk"] < 10 and plan["block_size"] != (7, 5)
    assert plan["bytes_per_block"] + plan["output_bytes"] <= budget


def test_traced_kernel_output_is_counted_once():
    """A traced N = 20,000, O = 100 kernel is N^2 floats (1.49 GiB in float32), not
    O N^2: planned within a 2 GiB budget (planning only; nothing is computed)."""
    n, o = 20_000, 100
    params = {"W": jnp.ones((8, o), jnp.float32)}
    x = jnp.ones((n, 8), jnp.float32)
    fn = ntk.empirical_ntk_fn(lambda p, x: x @ p["W"], trace_axes=(-1,), vmap_axes=0,
                              memory_budget=2 * 1024**3)
    plan = fn.plan(x, None, params)
    assert plan["output_bytes"] == n * n * 4
