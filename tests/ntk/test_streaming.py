"""The streamed Jacobian engine, batch-independence detection and plan caching.

Every kernel is checked against explicit ``jax.jacrev`` Jacobians of the whole batch
(``tests.ntk.test_empirical.explicit_raw_kernel``), which share nothing with the engine.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk
from ntk import streaming
from ntk.empirical import detect_batch_independence
from tests.ntk import models
from tests.ntk.test_empirical import explicit_raw_kernel, inputs

REDUCE = {  # raw R[n, a, m, b] -> kernel, for outputs (N, O)
    "full": ((), (), lambda r: jnp.einsum("namb->nmab", r)),
    "trace": ((-1,), (), lambda r: jnp.einsum("nama->nm", r) / r.shape[1]),
    "diagonal": ((), (-1,), lambda r: jnp.einsum("nama->nma", r)),
}


def coupled(key, dtype=jnp.float64):
    """A network whose examples interact: batch normalisation on batch statistics."""
    apply_mlp, params, shape = models.mlp(key, sizes=(5, 7, 4), dtype=dtype)

    def apply(p, x):
        h = x @ p[0]["W"] + p[0]["b"]
        h = (h - h.mean(0)) / jnp.sqrt(h.var(0) + 1e-3)
        return jnp.tanh(h) @ p[1]["W"] + p[1]["b"]
    return apply, params, shape


def test_detects_independent_and_coupled_batches():
    mlp, p_mlp, shape = models.mlp(jax.random.PRNGKey(0))
    x, _ = inputs(shape, n1=4)
    assert detect_batch_independence(mlp, p_mlp, x)[0]
    bn, p_bn, shape = coupled(jax.random.PRNGKey(1))
    independent, reason = detect_batch_independence(bn, p_bn, x)
    assert not independent and "changes the others" in reason
    # a coupling that example 0 does not reach (a max over the batch set by another
    # example) is caught by comparing each example alone with its batch
    def max_coupled(p, x):
        return mlp(p, x) + jnp.max(x[:, :1], axis=0)
    x_big = x.at[1, 0].set(10.0)
    assert not detect_batch_independence(max_coupled, p_mlp, x_big)[0]
    # outputs without a leading batch axis
    assert not detect_batch_independence(lambda p, x: mlp(p, x).T, p_mlp, x)[0]
    # integer inputs (token ids)
    table = jax.random.normal(jax.random.PRNGKey(2), (11, 3))
    tokens = jnp.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    assert detect_batch_independence(lambda t, ids: t[ids].sum(1), table, tokens)[0]
    assert not detect_batch_independence(lambda t, ids: t[ids].sum((0, 1)) + t[ids].sum(1),
                                         table, tokens)[0]


@pytest.mark.slow
def test_auto_default_under_jit():
    """Under jax.jit the probe runs on fixed random stand-ins for traced inputs / params."""
    for build, independent in ((models.mlp, True), (coupled, False)):
        apply_fn, params, shape = build(jax.random.PRNGKey(7))
        x1, x2 = inputs(shape, n1=4, n2=3)
        fn = ntk.empirical_ntk_fn(apply_fn, trace_axes=())
        want = jnp.einsum("namb->nmab", explicit_raw_kernel(apply_fn, params, x1, x2))
        np.testing.assert_allclose(jax.jit(fn)(x1, x2, params), want, atol=1e-10)
        assert detect_batch_independence(apply_fn, params, x1)[0] is independent
        jax.jit(lambda p, x: jnp.sum(fn(x, x2, p)) + detect_batch_independence(
            apply_fn, p, x)[0] * 0.0)(params, x1)


@pytest.mark.parametrize("mode", list(REDUCE))
def test_auto_default_matches_explicit_on_both_kinds(mode):
    trace_axes, diagonal_axes, reduce = REDUCE[mode]
    for build, independent in ((models.mlp, True), (coupled, False)):
        apply_fn, params, shape = build(jax.random.PRNGKey(3))
        x1, x2 = inputs(shape, n1=4, n2=3)
        fn = ntk.empirical_ntk_fn(apply_fn, trace_axes, diagonal_axes)  # vmap_axes='auto'
        assert fn.plan(x1, x2, params)["batch_independent"] is independent
        for a, b in ((x1, x2), (x1, None)):
            want = reduce(explicit_raw_kernel(apply_fn, params, a, a if b is None else b))
            np.testing.assert_allclose(fn(a, b, params), want, atol=1e-10,
                                       err_msg=f"{build.__name__} {mode} x2={b is not None}")


@pytest.mark.parametrize("mode", [pytest.param(m, marks=pytest.mark.slow) if m != "trace" else m
                                  for m in REDUCE])
def test_tight_budgets_stream_outputs_blocks_and_leaf_groups(mode):
    """Budgets just above the output force output chunks, row / column blocks (kept rows,
    streamed columns, transposed lower blocks for x2=None) and leaf groups; the kernel does
    not change."""
    trace_axes, diagonal_axes, reduce = REDUCE[mode]
    apply_fn, params, shape = models.mlp(jax.random.PRNGKey(4), sizes=(5, 40, 40, 6))
    x1, x2 = inputs(shape, n1=7, n2=5)
    seen = set()
    for a, b in ((x1, x2), (x1, None)):
        want = reduce(explicit_raw_kernel(apply_fn, params, a, a if b is None else b))
        free = ntk.empirical_ntk_fn(apply_fn, trace_axes, diagonal_axes, vmap_axes=0,
                                    implementation="jacobian").plan(a, b, params)
        fractions = [0.5, 0.05]
        # the first budget (searched on plans alone: no compilation) that needs leaf groups
        for fraction in np.geomspace(0.5, 1e-3, 30):
            budget = free["output_bytes"] + int(fraction * free["bytes_per_block"])
            try:
                if ntk.empirical_ntk_fn(apply_fn, trace_axes, diagonal_axes, vmap_axes=0,
                                        implementation="jacobian", memory_budget=budget
                                        ).plan(a, b, params)["leaf_groups"] > 1:
                    fractions.append(fraction)
                    break
            except ntk.budget.MemoryBudgetError:
                break
        for fraction in fractions:
            budget = free["output_bytes"] + int(fraction * free["bytes_per_block"])
            fn = ntk.empirical_ntk_fn(apply_fn, trace_axes, diagonal_axes, vmap_axes=0,
                                      implementation="jacobian", memory_budget=budget)
            try:
                plan = fn.plan(a, b, params)
            except ntk.budget.MemoryBudgetError:
                continue
            assert plan["bytes_per_block"] + plan["output_bytes"] <= budget
            seen.add((plan["block_size"] != (a.shape[0], (a if b is None else b).shape[0]),
                      plan["chunk"] < 6 if plan["streamed_axis"] is not None else False,
                      plan["leaf_groups"] > 1))
            np.testing.assert_allclose(fn(a, b, params), want, atol=1e-10,
                                       err_msg=f"{mode} budget {fraction} {plan}")
    assert any(s[0] for s in seen), seen  # blocks were used
    if mode != "full":
        assert any(s[1] for s in seen), seen  # outputs were streamed
    assert any(s[2] for s in seen), seen  # leaves were grouped


def test_coupled_batch_streams_output_rows():
    """Batch mode: blocks are blocks of output rows, each from the whole batch's forward."""
    apply_fn, params, shape = coupled(jax.random.PRNGKey(5))
    x1, x2 = inputs(shape, n1=6, n2=4)
    want = jnp.einsum("namb->nmab", explicit_raw_kernel(apply_fn, params, x1, x2))
    for block in ((2, 3), (6, 1)):
        fn = ntk.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=None,
                                  implementation="jacobian", block_size=block)
        np.testing.assert_allclose(fn(x1, x2, params), want, atol=1e-10)


def test_plans_and_compilations_are_made_once():
    traces = []
    apply_mlp, params, shape = models.mlp(jax.random.PRNGKey(6))

    def apply_fn(p, x):
        traces.append(x.shape)
        return apply_mlp(p, x)

    x1, x2 = inputs(shape, n1=5, n2=3)
    for impl in ("jacobian", "ntvp", "structured"):
        fn = ntk.empirical_ntk_fn(apply_fn, implementation=impl)
        first = fn(x1, x2, params)
        count = len(traces)
        again = fn(x1 + 1.0, x2, params)  # new values, same shapes: no tracing at all
        assert len(traces) == count, impl
        assert not np.allclose(first, again)
        # a fresh kernel function with the same settings reuses the plan
        ntk.empirical_ntk_fn(apply_fn, implementation=impl)(x1, x2, params)
        assert len(traces) == count, impl
        # other shapes are planned anew
        fn(x1[:4], x2, params)
        assert len(traces) > count, impl


def test_plan_cost_counts_recomputation():
    """Smaller blocks recompute the column derivatives once per row block: the cost model
    grows accordingly and the planner prefers streaming outputs to shrinking blocks."""
    kwargs = dict(n2=64, symmetric=False, batch_paired=False, vmap=True, n_batch=1,
                  per_row_out=10, streamable={1: 10}, sizes=[1000, 10], active=[0, 1],
                  flops_forward=1e4, activation_size=100, max_activation=20, pairs=10,
                  output_bytes=64 * 64 * 4, itemsize=4)
    roomy = streaming.plan(n1=64, budget=10**9, **kwargs)
    assert (roomy.row_block, roomy.col_block, roomy.chunk) == (64, 64, 10)
    # less room: outputs are streamed or blocks shrink, never for free
    tight = streaming.plan(n1=64, budget=roomy.bytes_per_block // 3 + 64 * 64 * 4, **kwargs)
    assert tight.chunk < 10 or tight.col_block < 64
    assert tight.flops >= roomy.flops
    # with several row blocks the column derivatives are recomputed once per row block
    args = dict(n2=64, symmetric=False, batch_paired=False, vmap=True, examples=1, fp=1e4,
                row_out=1, n_chunks=10, n_groups=1, p_total=1010, pairs=10)
    one_row_block = streaming._cost(64, b1=64, b2=8, **args)
    two_row_blocks = streaming._cost(64, b1=32, b2=8, **args)
    derivative_pass = 64 * (1e4 + 2e4) * 10
    assert two_row_blocks - one_row_block == pytest.approx(derivative_pass)
    assert streaming.plan(n1=64, budget=100, **kwargs) is None
    assert streaming.divisors(12) == [12, 6, 4, 3, 2, 1]
    groups = streaming.leaf_groups([5, 5, 5, 5, 100], [0, 1, 2, 3, 4], 2)
    assert sorted(i for g in groups for i in g) == [0, 1, 2, 3, 4] and len(groups) == 2


@pytest.mark.parametrize("symmetric", [True, False])
def test_traffic_counts_every_block_written_and_both_operands_of_every_tile(symmetric):
    """Jacobian traffic by enumerating the tiles a plan computes, against the closed count."""
    n1, n2, b = 12, 12, 4
    blocks = list(range(0, n1, b))
    written, read = set(), 0
    for i in blocks:
        for j in blocks:
            if symmetric and j < i:
                continue  # the transpose of a computed tile
            # a row block is derived once; a column block once per row block, except on
            # the diagonal of a symmetric kernel, where the row block is reused
            written |= {("r", i)} | (set() if symmetric and i == j else {("c", i, j)})
            read += b if symmetric and i == j else 2 * b
    expected = (len(written) * b + read) * 7.0
    assert streaming._traffic(n1, n2, b, b, symmetric, False, 7.0) == expected


def test_thin_blocks_lose_to_leaf_groups_that_keep_blocks_wide():
    """When one group of leaves fits only with blocks of 2 rows (a contraction reading every
    Jacobian entry for 2 multiply-adds), the plan splits the leaves and keeps wide blocks."""
    sizes = [6_000_000, 4_000_000, 4_000_000, 16_000]
    kwargs = dict(n1=16, n2=16, symmetric=True, batch_paired=False, vmap=True, n_batch=1,
                  per_row_out=8, streamable={}, sizes=sizes, active=[0, 1, 2, 3],
                  flops_forward=3e7, activation_size=10_000, max_activation=2048, pairs=64,
                  output_bytes=16 * 16 * 64 * 4, itemsize=4, budget=6 * 2**30)
    one_group = streaming.plan(max_groups=1, **kwargs)
    chosen = streaming.plan(**kwargs)
    assert one_group.row_block <= 4 and len(one_group.groups) == 1
    assert chosen.row_block > one_group.row_block and len(chosen.groups) > 1
    assert chosen.traffic_bytes < one_group.traffic_bytes
    assert chosen.bytes_per_block + kwargs["output_bytes"] <= kwargs["budget"]
