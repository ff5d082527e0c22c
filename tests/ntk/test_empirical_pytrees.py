"""Empirical and Monte Carlo kernels of models with pytree inputs and pytree outputs.

neural-tangents' semantics: inputs may be any pytree whose leaves share the batch size; a
pytree-valued model has one kernel per output leaf, in the output's structure (no covariance
between different leaves); ``vmap_axes=(in_axes, out_axes)`` may be pytrees. The references
are built without ntk.empirical: ``jax.jacrev`` of the whole batch's output with respect to
every parameter leaf, contracted by einsum, and the same model with its outputs (or inputs)
concatenated by hand.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk

IMPLEMENTATIONS = ("jacobian", "ntvp", "structured", "auto")


def _params(seed=0, d_a=3, d_b=2, width=5, out=4):
    key = seed if hasattr(seed, "dtype") else jax.random.PRNGKey(seed)
    k = jax.random.split(key, 4)
    return {"wa": jax.random.normal(k[0], (d_a, width)) / np.sqrt(d_a),
            "wb": jax.random.normal(k[1], (d_b, width)) / np.sqrt(d_b),
            "b": 0.1 * jax.random.normal(k[2], (width,)),
            "v": jax.random.normal(k[3], (width, out)) / np.sqrt(width)}


def two_input(params, x):
    """f(params, (x_a, x_b)): x_a (N, 3), x_b (2, N) (its batch axis is 1)."""
    x_a, x_b = x
    h = jnp.tanh(x_a @ params["wa"] + x_b.T @ params["wb"] + params["b"])
    return h @ params["v"]


def dict_output(params, x):
    """{'logits': (N, 4), 'hidden': (N, 5)} of one input (N, 3)."""
    h = jnp.tanh(x @ params["wa"] + params["b"])
    return {"logits": h @ params["v"], "hidden": h}


@functools.partial(jax.jit, static_argnums=0)
def explicit_ntk(f, params, x1, x2):
    """Per output leaf of ``f``: R[n, a, m, b] = sum_l <d f(x1)[n, a] / d theta_l,
    d f(x2)[m, b] / d theta_l>, by ``jax.jacrev`` of the whole batch and a tensordot."""
    out1, out2 = f(params, x1), f(params, x2)
    j1, j2 = jax.jacrev(f)(params, x1), jax.jacrev(f)(params, x2)
    structure = jax.tree_util.tree_structure(out1)

    def contract(o1, o2, a, b):
        return sum(jnp.tensordot(u.reshape(o1.shape + (-1,)), v.reshape(o2.shape + (-1,)),
                                 axes=(-1, -1))
                   for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))

    split = structure.flatten_up_to
    return jax.tree_util.tree_unflatten(
        structure, [contract(*p) for p in zip(split(out1), split(out2), split(j1), split(j2))])


def full(raw):
    return jnp.einsum("namb->nmab", raw)


def mean_trace(raw):
    return jnp.einsum("nama->nm", raw) / raw.shape[1]


def _inputs(seed, n1=3, n2=2):
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    x1 = (jax.random.normal(k[0], (n1, 3)), jax.random.normal(k[1], (2, n1)))
    x2 = (jax.random.normal(k[2], (n2, 3)), jax.random.normal(k[3], (2, n2)))
    return x1, x2


def _cases(modes, fast):
    return [pytest.param(implementation, vmap, trace,
                         marks=() if (implementation, k) in fast else pytest.mark.slow,
                         id=f"{implementation}-{vmap}-{'trace' if trace else 'full'}")
            for implementation in IMPLEMENTATIONS for k, (vmap, trace) in enumerate(modes)]


# vmap_axes given as pytrees ((0, 1): x_b's batch axis is 1) vmaps over examples; None (and
# 'auto', which finds no common axis 0 here) packs the whole input as one row (whole-batch
# derivatives). Every implementation in the default run; the rest of the matrix is `slow`.
@pytest.mark.parametrize("implementation,vmap,trace", _cases(
    [(((0, 1), 0), False), (None, False), ("auto", False), (((0, 1), 0), True),
     (None, True)], fast={("jacobian", 0), ("ntvp", 0), ("structured", 1)}))
def test_two_input_model_matches_explicit_jacobians(implementation, vmap, trace):
    params = _params()
    x1, x2 = _inputs(1)
    ref = explicit_ntk(two_input, params, x1, x2)              # (N1, O, N2, O)
    fn = ntk.empirical_ntk_fn(two_input, trace_axes=(-1,) if trace else (), vmap_axes=vmap,
                              implementation=implementation)
    np.testing.assert_allclose(fn(x1, x2, params), mean_trace(ref) if trace else full(ref),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("implementation,vmap,trace", _cases(
    [((0, {"logits": 0, "hidden": 0}), False), (None, False), ("auto", False), (0, True)],
    fast={("structured", 0)}))
def test_dict_output_model_matches_explicit_jacobians(implementation, vmap, trace):
    params = _params()
    k1, k2 = jax.random.split(jax.random.PRNGKey(2))
    x1, x2 = jax.random.normal(k1, (3, 3)), jax.random.normal(k2, (2, 3))
    fn = ntk.empirical_ntk_fn(dict_output, trace_axes=(-1,) if trace else (), vmap_axes=vmap,
                              implementation=implementation)
    out = fn(x1, x2, params)
    ref = explicit_ntk(dict_output, params, x1, x2)
    assert set(out) == {"logits", "hidden"}
    for name in ("logits", "hidden"):
        np.testing.assert_allclose(out[name], mean_trace(ref[name]) if trace
                                   else full(ref[name]), rtol=1e-12, atol=1e-12, err_msg=name)


def test_pytree_output_is_the_diagonal_blocks_of_the_concatenated_output():
    """The kernels of {'logits', 'hidden'} equal the (logits, logits) and (hidden, hidden)
    blocks of the kernels of the model whose output is the two concatenated by hand (the
    trace_axes mean runs over each leaf's own last axis); a tuple get gives the output's
    structure with a namedtuple per leaf."""
    params = _params(3)
    x1 = jax.random.normal(jax.random.PRNGKey(4), (3, 3))
    x2 = jax.random.normal(jax.random.PRNGKey(5), (4, 3))

    def concatenated(p, x):
        out = dict_output(p, x)
        return jnp.concatenate([out["logits"], out["hidden"]], axis=1)

    whole = ntk.empirical_ntk_fn(concatenated, trace_axes=(), vmap_axes=0,
                                 implementation="structured")(x1, x2, params)
    kernel_fn = ntk.empirical_kernel_fn(dict_output, vmap_axes=0, implementation="structured")
    parts = kernel_fn(x1, x2, ("ntk", "nngp"), params)
    assert set(parts) == {"logits", "hidden"} and parts["hidden"]._fields == ("ntk", "nngp")
    blocks = {"logits": slice(0, 4), "hidden": slice(4, 9)}
    f1, f2 = concatenated(params, x1), concatenated(params, x2)
    for name, cut in blocks.items():
        size = cut.stop - cut.start
        np.testing.assert_allclose(parts[name].ntk,
                                   jnp.einsum("nmaa->nm", whole[:, :, cut, cut]) / size,
                                   rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(parts[name].nngp, f1[:, cut] @ f2[:, cut].T / size,
                                   rtol=1e-12)


@pytest.mark.slow
def test_pytree_inputs_equal_inputs_concatenated_by_hand():
    """The two-input model's kernels equal those of the same model taking one array
    [x_a, x_b^T] and splitting it itself."""
    params = _params(6)
    x1, x2 = _inputs(7, n1=4, n2=3)

    def one_array(p, x):
        return two_input(p, (x[:, :3], x[:, 3:].T))

    c1 = jnp.concatenate([x1[0], x1[1].T], axis=1)
    c2 = jnp.concatenate([x2[0], x2[1].T], axis=1)
    for implementation in IMPLEMENTATIONS:
        tree = ntk.empirical_ntk_fn(two_input, trace_axes=(), vmap_axes=((0, 1), 0),
                                    implementation=implementation)
        flat = ntk.empirical_ntk_fn(one_array, trace_axes=(), vmap_axes=0,
                                    implementation=implementation)
        np.testing.assert_allclose(tree(x1, x2, params), flat(c1, c2, params), rtol=1e-12,
                                   atol=1e-13)
    np.testing.assert_allclose(ntk.empirical_nngp_fn(two_input)(x1, x2, params),
                               ntk.empirical_nngp_fn(one_array)(c1, c2, params), rtol=1e-12)


def test_mixed_dtype_inputs_are_passed_exactly():
    """Float features with int64 ids beyond float64's integer range (2^53 + k) and a bool
    mask: a model that uses ``ids % 5`` would see other values if the inputs were cast to a
    common float dtype on their way through. Batch independence is probed on the pytree."""
    k = jax.random.split(jax.random.PRNGKey(8), 3)
    params = {"table": jax.random.normal(k[0], (5, 4)), "w": jax.random.normal(k[1], (3, 4))}

    def model(p, x):
        h = jnp.tanh(x["feats"] @ p["w"] + p["table"][x["ids"] % 5])
        return jnp.where(x["mask"][:, None], h, 2 * h)

    ids = 2 ** 53 + jnp.array([1, 2, 3, 4], dtype=jnp.int64)
    assert len(set(np.asarray(ids.astype(jnp.float64)).tolist())) < 4   # floats would merge
    x = {"feats": jax.random.normal(k[2], (4, 3)), "ids": ids,
         "mask": jnp.array([True, False, True, False])}
    fn = ntk.empirical_ntk_fn(model, trace_axes=(), implementation="structured")
    np.testing.assert_allclose(fn(x, None, params), full(explicit_ntk(model, params, x, x)),
                               rtol=1e-12, atol=1e-12)
    assert fn.plan(x, None, params)["batch_independent"]


def test_neural_tangents_conventions_and_caching():
    """vmap_axes=([0], 0) read as in_axes = out_axes = vmap_axes where its first entry does
    not fit the inputs (neural-tangents' reading of a pair), x2 = ([None], None) meaning
    x2 = x1, nested list / tuple inputs and outputs, and jax.jit of the kernel function with
    pytree inputs. A repeated call with the same shapes does not trace the model again
    (the packing, the per-leaf plans and their compiled functions are cached)."""
    params = _params(9)
    traces = []

    def nested(p, x):
        traces.append(1)
        [x_a], x_b = x
        h = jnp.tanh(x_a @ p["wa"] + x_b @ p["wb"])
        return [h @ p["v"]], h[:, :2]

    k = jax.random.split(jax.random.PRNGKey(10), 2)
    x1 = ([jax.random.normal(k[0], (3, 3))], jax.random.normal(k[1], (3, 2)))
    fn = ntk.empirical_ntk_fn(nested, vmap_axes=([0], 0), implementation="structured")
    got = fn(x1, ([None], None), params)
    n_traces = len(traces)
    shifted = fn(jax.tree_util.tree_map(lambda a: a + 1.0, x1), None, params)
    assert len(traces) == n_traces
    assert not np.allclose(shifted[1], got[1])
    jitted = jax.jit(fn)(x1, None, params)
    ref = jax.tree_util.tree_map(mean_trace, explicit_ntk(nested, params, x1, x1))
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(([0], 0))
    for a, b, c in zip(*map(jax.tree_util.tree_leaves, (ref, got, jitted))):
        np.testing.assert_allclose(b, a, rtol=1e-12)
        np.testing.assert_allclose(c, a, rtol=1e-12)
    plan = fn.plan(x1, None, params)
    assert isinstance(plan[0], list) and plan[1]["batch_independent"]


def test_clear_errors():
    params = _params()
    x1, x2 = _inputs(13)
    fn = ntk.empirical_ntk_fn(two_input, vmap_axes=((0, 1), 0))
    with pytest.raises(ValueError, match=r"same batch size.*\[0\] \(3, 3\) -> 3.*\[1\] "
                                         r"\(2, 4\) -> 4"):
        fn((x1[0], jnp.ones((2, 4))), None, params)
    with pytest.raises(ValueError, match="same pytree structure"):
        fn(x1, [x2[0], x2[1]], params)
    with pytest.raises(ValueError, match=r"same per-example shape in every leaf: leaf \[1\] "
                                         r"has shape \(2, 3\) in x1 and \(5, 2\) in x2"):
        fn(x1, (x2[0], jnp.ones((5, 2))), params)
    with pytest.raises(ValueError, match="in_axes=.* does not match the structure of x1"):
        ntk.empirical_ntk_fn(two_input, vmap_axes=((0, 1, 0), 0, None))(x1, None, params)
    with pytest.raises(ValueError, match="fits x1's structure .* neither as"):
        ntk.empirical_ntk_fn(two_input, vmap_axes=((0, 1, 0), 0))(x1, None, params)
    with pytest.raises(ValueError, match="no batch axis 1"):
        fn((x1[0], jnp.ones(3)), None, params)
    with pytest.raises(ValueError, match=r"x1.* leaf \[0\] of shape \(3, 3\)"):
        fn((x1[0].at[1, 1].set(jnp.nan), x1[1]), None, params)
    with pytest.raises(TypeError, match=r"x1 must be an array or a pytree of arrays; its leaf "
                                        r"\[1\] is float"):
        fn((x1[0], 1.0), None, params)
    with pytest.raises(ValueError, match=r"out_axes .* output leaf \['hidden'\] no batch"):
        ntk.empirical_ntk_fn(dict_output, vmap_axes=(0, {"logits": 0, "hidden": None}))(
            x1[0], None, params)
    with pytest.raises(ValueError, match="does not match the structure of apply_fn's output"):
        ntk.empirical_ntk_fn(dict_output, vmap_axes=(0, [0, 0]))(x1[0], None, params)
    with pytest.raises(ValueError, match=r"trace_axes=\(2,\)") as info:
        ntk.empirical_ntk_fn(dict_output, trace_axes=(2,))(x1[0], None, params)
    assert any("output leaf ['hidden']" in note for note in info.value.__notes__)
    with pytest.raises(TypeError, match="kwargs_axes must be None, an int or a dict"):
        ntk.empirical_ntk_fn(two_input, vmap_axes=(0, 0, ("mask", 0)))


def _mc_network():
    def init_fn(key, input_shape):
        shape_a, shape_b = input_shape
        return None, _params(key, d_a=shape_a[1], d_b=shape_b[1])

    def apply_fn(params, x):
        h = jnp.tanh(x[0] @ params["wa"] + x[1] @ params["wb"])
        return {"logits": h @ params["v"], "hidden": h}

    return init_fn, apply_fn


def test_monte_carlo_pytree_inputs_and_outputs():
    """The Monte Carlo estimate of a two-input, dict-output network is the mean over its
    sampled networks of the explicit per-leaf kernels; computed in 2 x 2 blocks it is the
    same; get=None gives a MonteCarloKernel per output leaf."""
    init_fn, apply_fn = _mc_network()
    k = jax.random.split(jax.random.PRNGKey(14), 4)
    x1 = (jax.random.normal(k[0], (4, 3)), jax.random.normal(k[1], (4, 2)))
    x2 = (jax.random.normal(k[2], (2, 3)), jax.random.normal(k[3], (2, 2)))
    key, n_samples = jax.random.PRNGKey(15), 2
    ntk_ref, nngp_ref = {"logits": 0.0, "hidden": 0.0}, {"logits": 0.0, "hidden": 0.0}
    for sample_key in jax.random.split(key, n_samples):
        params = init_fn(sample_key, ((4, 3), (4, 2)))[1]
        raw = explicit_ntk(apply_fn, params, x1, x2)
        f1, f2 = apply_fn(params, x1), apply_fn(params, x2)
        for name in ntk_ref:
            ntk_ref[name] = ntk_ref[name] + mean_trace(raw[name]) / n_samples
            nngp_ref[name] = nngp_ref[name] + (f1[name] @ f2[name].T / f1[name].shape[1]
                                               / n_samples)

    kernel_fn = ntk.monte_carlo_kernel_fn(init_fn, apply_fn, key, n_samples)
    both = kernel_fn(x1, x2)
    assert set(both) == {"logits", "hidden"} and both["hidden"].n_samples == n_samples
    for name in ntk_ref:
        np.testing.assert_allclose(both[name].ntk, ntk_ref[name], rtol=1e-10)
        np.testing.assert_allclose(both[name].nngp, nngp_ref[name], rtol=1e-10)
    with pytest.raises(ValueError, match="same batch size"):
        kernel_fn((x1[0], x1[1][:3]), None, "nngp")


@pytest.mark.slow
def test_monte_carlo_pytree_kernels_in_blocks():
    """batch_size=2 blocks of pytree inputs assemble every leaf of a pytree kernel (and
    every count of a generator) to the unblocked estimate."""
    init_fn, apply_fn = _mc_network()
    k = jax.random.split(jax.random.PRNGKey(16), 4)
    x1 = (jax.random.normal(k[0], (4, 3)), jax.random.normal(k[1], (4, 2)))
    x2 = (jax.random.normal(k[2], (2, 3)), jax.random.normal(k[3], (2, 2)))
    key = jax.random.PRNGKey(17)
    whole = ntk.monte_carlo_kernel_fn(init_fn, apply_fn, key, (1, 2))
    blocked = ntk.monte_carlo_kernel_fn(init_fn, apply_fn, key, (1, 2), batch_size=2)
    for x2_ in (x2, None):
        for a, b in zip(whole(x1, x2_, ("ntk", "nngp")), blocked(x1, x2_, ("ntk", "nngp"))):
            assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
            for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
                np.testing.assert_allclose(v, u, rtol=1e-10)
