"""Structured rules of ntk/structured.py for grouped convolutions, embedding lookups and
leaves with several uses, each against an explicit ``jax.jacrev`` contraction in float64.

The reference is the full Jacobian of the batch with respect to each parameter leaf (so a
leaf used twice gets the sum of its uses' derivatives from autodiff), contracted by the
hand-written einsums of tests/ntk/test_empirical.py and test_architectures_entk.py.
"""
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np
import pytest

import architectures
import ntk
from tests.ntk.test_architectures_entk import SEQUENCE_MODES
from tests.ntk.test_empirical import MODES, explicit_raw_kernel


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _leaf_names(params):
    return [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]


def _grouped_cnn():
    """Plain, depthwise (channel multiplier 2, dilated) and grouped (strided, 3 groups)
    convolutions, then a dense head: ``(N, 7, 7, 3) -> (N, 3)``."""
    k = jax.random.split(jax.random.PRNGKey(0), 6)
    params = {"c1": jax.random.normal(k[0], (3, 3, 3, 6)) / 5,
              "c2": jax.random.normal(k[1], (3, 3, 1, 12)) / 3,   # 6 groups of 1 -> 2
              "c3": jax.random.normal(k[2], (2, 2, 4, 6)) / 4,    # 3 groups of 4 -> 2
              "b3": jax.random.normal(k[3], (6,)),
              "head": jax.random.normal(k[4], (6, 3)) / 2}
    dn = ("NHWC", "HWIO", "NHWC")

    def apply(p, x):
        h = jnp.tanh(lax.conv_general_dilated(x, p["c1"], (1, 1), "SAME",
                                              dimension_numbers=dn))
        h = jnp.tanh(lax.conv_general_dilated(h, p["c2"], (1, 1), "SAME", rhs_dilation=(2, 2),
                                              dimension_numbers=dn, feature_group_count=6))
        h = jnp.tanh(lax.conv_general_dilated(h, p["c3"], (2, 2), "VALID",
                                              dimension_numbers=dn, feature_group_count=3)
                     + p["b3"])
        return h.mean((1, 2)) @ p["head"]

    k1, k2 = jax.random.split(k[5])
    return (apply, params, jax.random.normal(k1, (3, 7, 7, 3)),
            jax.random.normal(k2, (2, 7, 7, 3)))


def _check_modes(apply_fn, params, x1, x2, modes):
    raw = explicit_raw_kernel(apply_fn, params, x1, x2)
    for mode in modes:
        trace_axes, diagonal_axes, reduce = MODES[mode]
        fn = ntk.empirical_ntk_fn(apply_fn, trace_axes, diagonal_axes, 0, "structured")
        np.testing.assert_allclose(fn(x1, x2, params), reduce(raw), rtol=0, atol=1e-10,
                                   err_msg=mode)
    return fn.plan(x1, x2, params)


@pytest.mark.parametrize("modes", [("full",), pytest.param(
    ("trace", "diagonal"), marks=pytest.mark.slow)])
def test_grouped_convolutions_are_structured_and_exact(modes):
    apply_fn, params, x1, x2 = _grouped_cnn()
    plan = _check_modes(apply_fn, params, x1, x2, modes)
    assert plan["fallback_leaves"] == []
    assert plan["structured_leaves"] == list(range(len(jax.tree_util.tree_leaves(params))))


@pytest.mark.slow
def test_grouped_convolutions_x2_none():
    apply_fn, params, x1, _ = _grouped_cnn()
    fn = ntk.empirical_ntk_fn(apply_fn, (), (), 0, "structured")
    np.testing.assert_allclose(fn(x1, None, params),
                               MODES["full"][2](explicit_raw_kernel(apply_fn, params, x1, x1)),
                               rtol=0, atol=1e-10)


@pytest.mark.slow
def test_grouped_convolutions_without_vmap_axes():
    apply_fn, params, x1, x2 = _grouped_cnn()
    raw = explicit_raw_kernel(apply_fn, params, x1, x2)
    fn = ntk.empirical_ntk_fn(apply_fn, (-1,), (), None, "structured")
    np.testing.assert_allclose(fn(x1, x2, params), MODES["trace"][2](raw), rtol=0, atol=1e-10)


def _gpt(vocab_size, context, dim):
    k1, k2 = jax.random.split(jax.random.PRNGKey(1))
    x1 = jax.random.randint(k1, (3, context), 0, vocab_size)
    x2 = jax.random.randint(k2, (2, context), 0, vocab_size)
    module = architectures.gpt(vocab_size=vocab_size, context=context, dim=dim, depth=1,
                               heads=2)
    apply_fn, params = architectures.init(module, jax.random.PRNGKey(0), x1,
                                          calibration_steps=0)
    params = jax.tree_util.tree_map(lambda p: p.astype(jnp.float64), params)
    jac = jax.jit(jax.jacrev(apply_fn))

    def flat(x):  # J: (N, T, V, P) with the tied embedding's two uses summed by autodiff
        return np.concatenate([j.reshape(j.shape[:3] + (-1,))
                               for j in jax.tree_util.tree_leaves(jac(params, x))], -1)

    return apply_fn, params, x1, x2, flat(x1), flat(x2)


# Vocabulary much larger than the context: in the full kernel the tied embedding's four
# terms (lookup x lookup, head x head and the two swapped cross terms) cost less than
# contracting its Jacobian, so it is structured (per input pair about 1.2e6 against
# pairs V D = 96^2 * 384 = 3.5e6). With the vocabulary traced or diagonal, pairs (T V or
# T^2 V) is about the o = T V rows each term multiplies by position pairs, and it falls back.


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(SEQUENCE_MODES))
def test_tied_embedding_is_structured_and_exact(mode):
    apply_fn, params, x1, x2, j1, j2 = _gpt(vocab_size=48, context=2, dim=8)
    trace_axes, diagonal_axes, contract = SEQUENCE_MODES[mode]
    fn = ntk.empirical_ntk_fn(apply_fn, trace_axes, diagonal_axes, 0, "structured")
    expected = contract(j1, j2)
    actual = np.asarray(fn(x1, x2, params))
    assert np.max(np.abs(actual - expected)) / np.max(np.abs(expected)) < 1e-10
    plan = fn.plan(x1, x2, params)
    embed = _leaf_names(params).index("['token_embed']['embedding']")
    if mode == "full":
        assert embed in plan["structured_leaves"] and plan["fallback_leaves"] == []


@pytest.mark.slow
def test_tied_embedding_falls_back_where_not_cheaper():
    """A context as long as the vocabulary makes position pairs dearer than the Jacobian:
    per input pair and output pair, lookup x lookup costs T D, head x head T V and each
    swapped term T^2, against V D for the Jacobian (here 5 * 8 + 5 * 5 + 2 * 25 = 115 >
    40)."""
    apply_fn, params, x1, x2, j1, j2 = _gpt(vocab_size=5, context=5, dim=8)
    trace_axes, diagonal_axes, contract = SEQUENCE_MODES["full"]
    fn = ntk.empirical_ntk_fn(apply_fn, trace_axes, diagonal_axes, 0, "structured")
    plan = fn.plan(x1, x2, params)
    embed = _leaf_names(params).index("['token_embed']['embedding']")
    assert plan["fallback_leaves"] == [embed]
    expected = contract(j1, j2)
    actual = np.asarray(fn(x1, x2, params))
    assert np.max(np.abs(actual - expected)) / np.max(np.abs(expected)) < 1e-10


def _shared(kind):
    """A leaf used twice: a dense weight ``W`` then ``W`` again ('same'), ``W`` then ``W^T``
    ('transposed', a tied autoencoder), an embedding table looked up then used as a dense
    layer ('lookup'), a tied decoder ('tied': logits ``tanh(E[ids]) E^T``), or a weight used
    once as a dense layer and once as a shift ('mixed', which falls back)."""
    k = jax.random.split(jax.random.PRNGKey(3), 4)
    d = 64  # wide enough that the cross terms cost less than the leaf's Jacobian
    if kind == "tied":
        params = {"w": jax.random.normal(k[0], (64, 16)) / 4}  # (vocabulary, width)
    else:
        params = {"w": jax.random.normal(k[0], (d, d)) / d ** 0.5,
                  "v": jax.random.normal(k[1], (d, 2)) / d ** 0.5}

    def apply(p, x):
        if kind == "tied":
            return jnp.tanh(jnp.take(p["w"], x, axis=0)) @ p["w"].T  # (N, T, vocabulary)
        if kind == "lookup":
            h = jnp.take(p["w"], x, axis=0, mode="clip")  # (N, T, d) from ids (N, T)
            return jnp.tanh(h @ p["w"]).sum(1) @ p["v"]
        h = jnp.tanh(x @ p["w"])
        if kind == "same":
            h = jnp.tanh(h @ p["w"])
        elif kind == "transposed":
            h = jnp.tanh(h @ p["w"].T)
        else:
            h = jnp.tanh(h + p["w"][0])
        return h @ p["v"]

    if kind in ("lookup", "tied"):
        rows = params["w"].shape[0]
        x1 = jax.random.randint(k[2], (3, 2), -2, rows + 2)  # out of range: clipped / dropped
        x2 = jax.random.randint(k[3], (2, 2), 0, rows)
    else:
        x1 = jax.random.normal(k[2], (3, d))
        x2 = jax.random.normal(k[3], (2, d))
    return apply, params, x1, x2


@pytest.mark.parametrize("kind, modes", [("tied", ("full",))] + [
    pytest.param(kind, tuple(MODES), marks=pytest.mark.slow)
    for kind in ("tied", "same", "transposed", "lookup", "mixed")])
def test_shared_weights(kind, modes):
    apply_fn, params, x1, x2 = _shared(kind)
    if kind == "tied":  # the (N, T, V) output: trace / diagonal over the vocabulary
        j = jax.jit(jax.jacrev(apply_fn))
        j1, j2 = np.asarray(j(params, x1)["w"]), np.asarray(j(params, x2)["w"])
        j1, j2 = j1.reshape(j1.shape[:3] + (-1,)), j2.reshape(j2.shape[:3] + (-1,))
        for mode in modes:
            trace_axes, diagonal_axes, contract = SEQUENCE_MODES[mode]
            fn = ntk.empirical_ntk_fn(apply_fn, trace_axes, diagonal_axes, 0, "structured")
            np.testing.assert_allclose(fn(x1, x2, params), contract(j1, j2), rtol=0,
                                       atol=1e-10, err_msg=mode)
        plan = fn.plan(x1, x2, params)
    else:
        plan = _check_modes(apply_fn, params, x1, x2, modes)
    assert plan["fallback_leaves"] == ([1] if kind == "mixed" else [])
