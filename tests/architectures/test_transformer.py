"""ViT and GPT: shapes, the class-token readout, causality and the tied output head."""
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import architectures


def _f64(tree):
    return jax.tree_util.tree_map(lambda p: p.astype(jnp.float64), tree)


@pytest.fixture(scope="module")
def vit():
    module = architectures.vit_tiny(num_classes=5, image_size=8, patch_size=4, dim=8, depth=1,
                                    heads=2, mlp_dim=16)
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 8, 8, 3), jnp.float64)
    _, params = architectures.init(module, jax.random.PRNGKey(0), x)
    return module, _f64(params), x


@pytest.fixture(scope="module")
def gpt():
    module = architectures.gpt(vocab_size=11, context=6, dim=8, depth=2, heads=2)
    tokens = jax.random.randint(jax.random.PRNGKey(1), (3, 5), 0, 11)
    apply_fn, params = architectures.init(module, jax.random.PRNGKey(0), tokens)
    return module, apply_fn, _f64(params), tokens


def test_vit_reads_the_class_token(vit):
    module, params, x = vit
    out, state = module.apply({"params": params}, x, capture_intermediates=True)
    final = state["intermediates"]["LayerNorm_0"]["__call__"][0]      # (N, tokens, dim)
    assert out.shape == (3, 5) and out.dtype == jnp.float64
    assert final.shape == (3, (8 // 4) ** 2 + 1, 8)
    head = params["head"]
    np.testing.assert_allclose(out, final[:, 0] @ head["kernel"] + head["bias"], rtol=1e-12)
    # the class token's embedding reaches the output (a constant shift would not: LayerNorm)
    shift = jax.random.normal(jax.random.PRNGKey(4), params["cls_token"].shape, jnp.float64)
    moved = dict(params, cls_token=params["cls_token"] + shift)
    assert not np.allclose(module.apply({"params": moved}, x), out)


def test_vit_shapes_at_default_size():
    module = architectures.vit_tiny()
    x = jnp.zeros((2, 32, 32, 3))
    variables = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), x))
    assert jax.eval_shape(module.apply, variables, x).shape == (2, 10)
    assert variables["params"]["pos_embed"].shape == (1, 65, 192)
    with pytest.raises(ValueError, match="image"):
        jax.eval_shape(module.apply, variables, jnp.zeros((2, 16, 16, 3)))


def test_gpt_output_shape_and_dtype(gpt):
    _, apply_fn, params, tokens = gpt
    logits = apply_fn(params, tokens)
    assert logits.shape == (3, 5, 11) and logits.dtype == jnp.float64


@pytest.mark.parametrize("t", [1, 3, 4])
def test_gpt_is_causal(gpt, t):
    _, apply_fn, params, tokens = gpt
    changed = tokens.at[:, t].set((tokens[:, t] + 1) % 11)
    a, b = apply_fn(params, tokens), apply_fn(params, changed)
    np.testing.assert_array_equal(a[:, :t], b[:, :t])          # earlier positions: exactly
    assert np.all(np.max(np.abs(a[:, t:] - b[:, t:]), axis=-1) > 0)


def test_gpt_head_is_tied_to_the_token_embedding(gpt):
    module, _, params, tokens = gpt
    vocab = 11
    # no separate output layer: the only parameter with a vocabulary axis is the embedding
    shaped = [jax.tree_util.keystr(p) for p, leaf in jax.tree_util.tree_leaves_with_path(params)
              if vocab in leaf.shape]
    assert shaped == ["['token_embed']['embedding']"]

    weights = jax.random.normal(jax.random.PRNGKey(2), (3, 5, vocab), jnp.float64)

    def loss(p):
        return jnp.sum(module.apply({"params": p}, tokens) * weights)

    grad = jax.jit(jax.grad(loss))(params)["token_embed"]["embedding"]
    _, state = jax.jit(partial(module.apply, capture_intermediates=True))({"params": params},
                                                                          tokens)
    final = state["intermediates"]["LayerNorm_0"]["__call__"][0]       # (N, T, dim)
    # the head's share of the gradient: d/dE of sum w * (h E^T) = w^T h
    head_share = np.einsum("ntv,ntd->vd", weights, final)
    used = np.zeros(vocab, bool)
    used[np.asarray(tokens).ravel()] = True
    assert 0 < used.sum() < vocab
    # rows of tokens that never occur get gradient from the head alone ...
    np.testing.assert_allclose(grad[~used], head_share[~used], rtol=1e-10, atol=1e-14)
    # ... rows of occurring tokens from the head and from the input embedding
    assert np.all(np.max(np.abs(grad[used] - head_share[used]), axis=-1) > 1e-8)


def test_gpt_rejects_bad_tokens(gpt):
    module, _, params, _ = gpt
    with pytest.raises(ValueError, match="context"):
        module.apply({"params": params}, jnp.zeros((1, 7), jnp.int32))
    with pytest.raises(ValueError, match="integers"):
        module.apply({"params": params}, jnp.zeros((1, 4)))


@pytest.mark.parametrize("builder,kwargs,arg", [
    (architectures.gpt, dict(dim=10, heads=4), "dim"),
    (architectures.vit_tiny, dict(image_size=30, patch_size=4), "image_size"),
    (architectures.gpt, dict(vocab_size=0), "vocab_size")])
def test_builders_reject_bad_arguments(builder, kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        builder(**kwargs)
