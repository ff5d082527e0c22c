"""Structured rules of ntk/structured.py for grouped convolutions, embedding lookups and
leaves with several uses, each against an explicit ``jax.jacrev`` contraction in float64.

The reference is the Jacobian of the concatenated batch with respect to every parameter
leaf (so a leaf used twice gets the sum of its uses' derivatives from autodiff), contracted
by the hand-written einsums of tests/ntk/test_architectures_entk.py.
"""
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np
import pytest

import architectures
import ntk
from tests.ntk.test_architectures_entk import SEQUENCE_MODES, VECTOR_MODES


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _leaf_names(params):
    return [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]


def _jacobians(apply_fn, params, x1, x2):
    """Flattened ``jax.jacrev`` Jacobians ``(N, *out, P)`` of x1 and x2, from one Jacobian of
    the concatenated batch (the examples are independent in every model here)."""
    x = jnp.concatenate([x1, x2])
    out_ndim = jax.eval_shape(apply_fn, params, x).ndim
    jac = jax.jit(jax.jacrev(apply_fn))(params, x)
    j = np.concatenate([np.asarray(l).reshape(l.shape[:out_ndim] + (-1,))
                        for l in jax.tree_util.tree_leaves(jac)], -1)
    return j[:len(x1)], j[len(x1):]


def _check_modes(apply_fn, params, x1, x2, modes, table=VECTOR_MODES):
    """Every mode of ``table`` against the Jacobian contraction; returns the last plan."""
    j1, j2 = _jacobians(apply_fn, params, x1, x2)
    for mode in modes:
        trace_axes, diagonal_axes, contract = table[mode]
        fn = ntk.empirical_ntk_fn(apply_fn, trace_axes, diagonal_axes, 0, "structured")
        expected = contract(j1, j2)
        actual = np.asarray(fn(x1, x2, params))
        assert actual.shape == expected.shape
        assert np.max(np.abs(actual - expected)) / np.max(np.abs(expected)) < 1e-10, mode
    return fn.plan(x1, x2, params)


def _normal(rng, shape, scale=1.0):
    return jnp.asarray(rng.standard_normal(shape) * scale)


def _grouped_cnn():
    """Plain, depthwise (channel multiplier 2, dilated) and grouped (strided, 3 groups)
    convolutions, then a dense head: ``(N, 7, 7, 3) -> (N, 3)``."""
    rng = np.random.RandomState(0)
    params = {"c1": _normal(rng, (3, 3, 3, 6), 1 / 5),
              "c2": _normal(rng, (3, 3, 1, 12), 1 / 3),   # 6 groups of 1 -> 2
              "c3": _normal(rng, (2, 2, 4, 6), 1 / 4),    # 3 groups of 4 -> 2
              "b3": _normal(rng, (6,)),
              "head": _normal(rng, (6, 3), 1 / 2)}
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

    return apply, params, _normal(rng, (3, 7, 7, 3)), _normal(rng, (2, 7, 7, 3))


@pytest.mark.parametrize("modes", [("full",), pytest.param(
    ("trace", "diagonal"), marks=pytest.mark.slow)])
def test_grouped_convolutions_are_structured_and_exact(modes):
    apply_fn, params, x1, x2 = _grouped_cnn()
    plan = _check_modes(apply_fn, params, x1, x2, modes)
    assert plan["fallback_leaves"] == []
    assert plan["structured_leaves"] == list(range(len(jax.tree_util.tree_leaves(params))))


@pytest.mark.slow
def test_grouped_convolutions_x2_none_and_without_vmap_axes():
    apply_fn, params, x1, _ = _grouped_cnn()
    j1, _ = _jacobians(apply_fn, params, x1, x1[:1])
    full = ntk.empirical_ntk_fn(apply_fn, (), (), 0, "structured")
    np.testing.assert_allclose(full(x1, None, params), VECTOR_MODES["full"][2](j1, j1),
                               rtol=0, atol=1e-10)
    trace = ntk.empirical_ntk_fn(apply_fn, (-1,), (), None, "structured")
    np.testing.assert_allclose(trace(x1, x1, params), VECTOR_MODES["trace"][2](j1, j1),
                               rtol=0, atol=1e-10)


def _gpt(vocab_size, context, dim):
    rng = np.random.RandomState(1)
    x1 = jnp.asarray(rng.randint(0, vocab_size, (3, context)))
    x2 = jnp.asarray(rng.randint(0, vocab_size, (2, context)))
    module = architectures.gpt(vocab_size=vocab_size, context=context, dim=dim, depth=1,
                               heads=2)
    apply_fn, params = architectures.init(module, jax.random.PRNGKey(0), x1,
                                          calibration_steps=0)
    params = jax.tree_util.tree_map(lambda p: p.astype(jnp.float64), params)
    return apply_fn, params, x1, x2, _leaf_names(params).index("['token_embed']['embedding']")


# Vocabulary much larger than the context: in the full kernel the tied embedding's four
# terms (lookup x lookup, head x head and the two swapped cross terms) cost less than
# contracting its Jacobian, so it is structured (per input pair about 1.2e6 against
# pairs V D = 96^2 * 384 = 3.5e6). With the vocabulary traced or diagonal, pairs (T V or
# T^2 V) is about the o = T V rows each term multiplies by position pairs, and it falls back.
@pytest.mark.slow
@pytest.mark.parametrize("mode", list(SEQUENCE_MODES))
def test_tied_embedding_is_structured_and_exact(mode):
    apply_fn, params, x1, x2, embed = _gpt(vocab_size=48, context=2, dim=8)
    plan = _check_modes(apply_fn, params, x1, x2, (mode,), SEQUENCE_MODES)
    if mode == "full":
        assert embed in plan["structured_leaves"] and plan["fallback_leaves"] == []


@pytest.mark.slow
def test_tied_embedding_falls_back_where_not_cheaper():
    """A context as long as the vocabulary makes position pairs dearer than the Jacobian:
    per input pair and output pair, lookup x lookup costs T D, head x head T V and each
    swapped term T^2, against V D for the Jacobian (here 5 * 8 + 5 * 5 + 2 * 25 = 115 >
    40)."""
    apply_fn, params, x1, x2, embed = _gpt(vocab_size=5, context=5, dim=8)
    plan = _check_modes(apply_fn, params, x1, x2, ("full",), SEQUENCE_MODES)
    assert plan["fallback_leaves"] == [embed]


def _shared(kind):
    """A leaf used twice: a dense weight ``W`` then ``W`` again ('same'), ``W`` then ``W^T``
    ('transposed', a tied autoencoder), an embedding table looked up then used as a dense
    layer ('lookup'), a tied decoder ('tied': logits ``tanh(E[ids]) E^T``), or a weight used
    once as a dense layer and once as a shift ('mixed', which falls back); 'embed' looks a
    table up once."""
    rng = np.random.RandomState(3)
    d = 64  # wide enough that the cross terms cost less than the leaf's Jacobian
    if kind == "tied":
        params = {"w": _normal(rng, (64, 16), 1 / 4)}  # (vocabulary, width)
    elif kind == "embed":
        params = {"w": _normal(rng, (64, 16), 1 / 4), "v": _normal(rng, (16, 2), 1 / 4)}
    else:
        params = {"w": _normal(rng, (d, d), d ** -0.5), "v": _normal(rng, (d, 2), d ** -0.5)}

    def apply(p, x):
        if kind == "tied":
            return jnp.tanh(jnp.take(p["w"], x, axis=0)) @ p["w"].T  # (N, T, vocabulary)
        if kind == "embed":  # one use: a lookup (a row of ids past the end is clipped)
            return jnp.tanh(jnp.take(p["w"], x, axis=0, mode="clip")).sum(1) @ p["v"]
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

    if kind in ("lookup", "tied", "embed"):
        rows = params["w"].shape[0]
        # negative ids count from the end; 'lookup' clips ids past the end ('tied' would
        # fill them with NaN)
        x1 = jnp.asarray(rng.randint(-2, rows + (0 if kind == "tied" else 2), (3, 2)))
        x2 = jnp.asarray(rng.randint(0, rows, (2, 2)))
    else:
        x1, x2 = _normal(rng, (3, d)), _normal(rng, (2, d))
    return apply, params, x1, x2


@pytest.mark.parametrize("kind", ["tied"] + [
    pytest.param(kind, marks=pytest.mark.slow)
    for kind in ("transposed", "same", "lookup", "embed", "mixed")])
def test_shared_weights(kind):
    apply_fn, params, x1, x2 = _shared(kind)
    # the tied decoder's (N, T, V) output: trace / diagonal over the vocabulary
    plan = _check_modes(apply_fn, params, x1, x2, tuple(VECTOR_MODES),
                        SEQUENCE_MODES if kind == "tied" else VECTOR_MODES)
    assert plan["fallback_leaves"] == ([1] if kind == "mixed" else [])
