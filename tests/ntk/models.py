"""Small models, in several frameworks, shared by the empirical-kernel tests."""
import jax
import jax.numpy as jnp
from jax import lax


def _dense_params(key, sizes, dtype=jnp.float64):
    params = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        key, k1, k2 = jax.random.split(key, 3)
        params.append({"W": jax.random.normal(k1, (a, b), dtype),
                       "b": 0.1 * jax.random.normal(k2, (b,), dtype)})
    return params


def _plus(h, b):
    """``h + b`` with the bias broadcast explicitly (the models run under
    ``jax_numpy_rank_promotion='raise'``, batched or per example)."""
    return h + jnp.broadcast_to(b, h.shape)


def mlp(key, sizes=(5, 7, 6, 3), dtype=jnp.float64):
    params = _dense_params(key, sizes, dtype)

    def apply(ps, x):
        for i, p in enumerate(ps):
            x = _plus(x @ p["W"] / jnp.sqrt(p["W"].shape[0]), p["b"])
            if i < len(ps) - 1:
                x = jnp.tanh(x)
        return x
    return apply, params, (sizes[0],)


def cnn(key, dtype=jnp.float64):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    params = {"c1": jax.random.normal(k1, (3, 3, 2, 3), dtype) / 3,
              "c2": jax.random.normal(k2, (2, 2, 3, 4), dtype) / 3,
              "scale": 1.0 + 0.1 * jax.random.normal(k4, (4,), dtype),
              "out": _dense_params(k3, (4 * 2 * 2, 3), dtype)[0]}
    dn = ("NHWC", "HWIO", "NHWC")

    def apply(p, x):
        h = lax.conv_general_dilated(x, p["c1"], (1, 1), "SAME", dimension_numbers=dn)
        h = jax.nn.relu(h)
        h = lax.conv_general_dilated(h, p["c2"], (2, 2), "VALID", dimension_numbers=dn)
        h = jnp.sin(h) * jnp.broadcast_to(p["scale"], h.shape)
        h = h.reshape(h.shape[0], -1)
        return _plus(h @ p["out"]["W"] / 4.0, p["out"]["b"])
    return apply, params, (5, 5, 2)


def resnet(key, dtype=jnp.float64):
    ks = jax.random.split(key, 4)
    params = {"inp": _dense_params(ks[0], (4, 6), dtype)[0],
              "blocks": [_dense_params(k, (6, 8, 6), dtype) for k in ks[1:3]],
              "out": _dense_params(ks[3], (6, 2), dtype)[0]}

    def apply(p, x):
        h = _plus(x @ p["inp"]["W"], p["inp"]["b"])
        for a, b in p["blocks"]:
            h = h + 0.5 * _plus(jax.nn.gelu(_plus(h @ a["W"] / 3, a["b"])) @ b["W"] / 3, b["b"])
        return _plus(h @ p["out"]["W"], p["out"]["b"])
    return apply, params, (4,)


def sequence(key, dtype=jnp.float64):
    """Outputs of shape (N, T, O): a per-token dense map mixed along tokens."""
    k1, k2 = jax.random.split(key)
    params = {"W": jax.random.normal(k1, (3, 4), dtype), "mix": jax.random.normal(k2, (2, 2), dtype)}

    def apply(p, x):  # x: (N, T=2, 3)
        h = jnp.tanh(x @ p["W"])
        return jnp.einsum("ts,nsd->ntd", p["mix"], h)
    return apply, params, (2, 3)


def flax_linen(key, dtype=jnp.float64):
    import flax.linen as nn

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Dense(6, param_dtype=dtype, dtype=dtype)(x)
            x = nn.gelu(x)
            x = nn.LayerNorm(param_dtype=dtype, dtype=dtype)(x)
            return nn.Dense(3, param_dtype=dtype, dtype=dtype)(x)

    model = Net()
    params = model.init(key, jnp.zeros((1, 4), dtype))
    return model.apply, params, (4,)


def flax_nnx(key, dtype=jnp.float64):
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.conv = nnx.Conv(2, 3, kernel_size=(3,), rngs=rngs, param_dtype=dtype)
            self.out = nnx.Linear(3 * 5, 2, rngs=rngs, param_dtype=dtype)

        def __call__(self, x):  # x: (N, 5, 2)
            h = jnp.tanh(self.conv(x))
            return self.out(h.reshape(h.shape[0], -1))

    model = Net(nnx.Rngs(int(jax.random.randint(key, (), 0, 2**20))))
    graphdef, state = nnx.split(model)

    def apply(state, x):
        return nnx.merge(graphdef, state)(x)
    return apply, state, (5, 2)


def equinox(key, dtype=jnp.float64):
    import equinox as eqx

    model = eqx.nn.MLP(4, 3, 5, 2, activation=jax.nn.softplus, key=key, dtype=dtype)
    params, static = eqx.partition(model, eqx.is_array)

    def apply(p, x):
        return jax.vmap(eqx.combine(p, static))(x)
    return apply, params, (4,)


def stax_net(key, dtype=jnp.float64):
    """An ntk.stax network: its apply_fn is an ordinary function of a params pytree."""
    from ntk import stax

    init_fn, apply_fn, _ = stax.serial(
        stax.Conv(3, (2, 2), padding="SAME", W_std=1.3, b_std=0.2), stax.Relu(),
        stax.Flatten(), stax.Dense(5, W_std=1.2, b_std=0.1), stax.Erf(), stax.Dense(2))
    _, params = init_fn(key, (-1, 3, 3, 2))
    params = jax.tree_util.tree_map(lambda a: a.astype(dtype), params)
    return apply_fn, params, (3, 3, 2)


MODELS = {"mlp": mlp, "stax": stax_net, "cnn": cnn, "resnet": resnet, "flax_linen": flax_linen,
          "flax_nnx": flax_nnx, "equinox": equinox}

# Plain-JAX models that also run in the neural-tangents reference environment (JAX 0.4.25).
PLAIN_JAX = {"mlp": mlp, "cnn": cnn, "resnet": resnet, "sequence": sequence}
