"""neural-tangents' calling conventions of the empirical kernels: the model as ``f=``, a
repeated ``trace_axes`` entry, keyword arguments split between the x1 and x2 calls (a pair
``(v1, v2)``, ``rng``) and batched by ``vmap_axes=(in_axes, out_axes, kwargs_axes)``.

References are built without ntk.empirical: ``jax.jacrev`` of each call's whole-batch output
with respect to every parameter leaf, contracted by einsum, with the keyword arguments each
call should see written out by hand.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk
from ntk import stax


def _params(seed=0, d=3, width=5, out=2):
    rng = np.random.default_rng(seed)
    return {"w": jnp.asarray(rng.standard_normal((d, width)) / np.sqrt(d)),
            "v": jnp.asarray(rng.standard_normal((width, out)) / np.sqrt(width))}


def scaled(params, x, scale=None, rng=None):
    """A two-layer net whose hidden units are multiplied by ``scale`` (per example ``(N,)``
    or shared ``(1, width)``) and by ``1 + 0.3 z``, ``z ~ N(0, 1)`` drawn from ``rng``."""
    h = jnp.tanh(x @ params["w"])
    if scale is not None:
        h = h * (scale[:, None] if scale.ndim == 1 else scale)
    if rng is not None:
        h = h * (1 + 0.3 * jax.random.normal(rng, h.shape[1:]))
    return h @ params["v"]


@functools.partial(jax.jit, static_argnums=0)
def explicit(f, params, x1, x2, kw1, kw2):
    """Full NTK ``(N1, N2, O, O)`` of f(., x1, **kw1) against f(., x2, **kw2)."""
    j1 = jax.jacrev(f)(params, x1, **kw1)
    j2 = jax.jacrev(f)(params, x2, **kw2)
    return sum(jnp.einsum("nap,mbp->nmab", a.reshape(a.shape[:2] + (-1,)),
                          b.reshape(b.shape[:2] + (-1,)))
               for a, b in zip(jax.tree_util.tree_leaves(j1), jax.tree_util.tree_leaves(j2)))


def _data(n1=3, n2=2):
    rng = np.random.default_rng(7)
    return tuple(jnp.asarray(rng.standard_normal(shape))
                 for shape in [(n1, 3), (n2, 3), (n1,), (n2,), (1, 5), (1, 5)])


def test_model_given_as_f():
    params = _params()
    x1, x2, *_ = _data()
    ref = explicit(scaled, params, x1, x2, {}, {})
    np.testing.assert_allclose(
        ntk.empirical_ntk_fn(f=scaled, trace_axes=(), vmap_axes=0,
                             implementation="jacobian")(x1, x2, params),
        ref, rtol=1e-10, atol=1e-12)
    for fn in (ntk.empirical_ntk_fn, ntk.empirical_nngp_fn, ntk.empirical_kernel_fn):
        with pytest.raises(TypeError, match="given twice, as apply_fn and as f"):
            fn(scaled, f=scaled)
        with pytest.raises(TypeError, match="missing the model"):
            fn()
        with pytest.raises(TypeError, match="f must be callable, got int"):
            fn(f=3)


@pytest.mark.parametrize("trace", [(0, 0, -3), pytest.param((-2, 1, 1), marks=pytest.mark.slow)])
def test_repeated_trace_axis_counts_once(trace):
    """NT's ``trace_axes=(0, 0, -3)``: an axis named twice is traced once."""
    params = _params(1, out=4)
    x1, _, *_ = _data()

    def image(p, x):   # outputs (N, 2, 2)
        return scaled(p, x).reshape(x.shape[0], 2, 2)

    raw = explicit(lambda p, x: image(p, x).reshape(x.shape[0], 4), params, x1, x1, {}, {})
    raw = raw.reshape(3, 3, 2, 2, 2, 2)   # (n, m, a, b, a', b') for outputs (n, a, b)
    # the batch axis traced: (1 / N) sum_n Theta[n, a, b; n, a', b'], layout (a, a', b, b')
    over_batch = jnp.einsum("nnabcd->acbd", raw) / 3
    # axis 1 traced: (1 / 2) sum_a Theta[n, a, b; m, a, b'], layout (n, m, b, b')
    over_rows = jnp.einsum("nmabac->nmbc", raw) / 2
    want, vmap = (over_batch, None) if trace[0] == 0 else (over_rows, 0)
    got = ntk.empirical_ntk_fn(image, trace_axes=trace, vmap_axes=vmap,
                               implementation="jacobian")(x1, None, params)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="out of range"):
        ntk.empirical_ntk_fn(image, trace_axes=(0, 3))(x1, None, params)


def test_pair_keyword_is_split_between_x1_and_x2_quick():
    params = _params(2)
    x1, x2, s1, s2, _, _ = _data()
    fn = ntk.empirical_ntk_fn(scaled, trace_axes=(), vmap_axes=(0, 0, {"scale": 0}),
                              implementation="jacobian")
    np.testing.assert_allclose(fn(x1, x2, params, scale=(s1, s2)),
                               explicit(scaled, params, x1, x2, {"scale": s1}, {"scale": s2}),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("implementation", ["jacobian", "ntvp", "structured"])
def test_pair_keyword_is_split_between_x1_and_x2(implementation):
    params = _params(2)
    x1, x2, s1, s2, t1, t2 = _data()
    ref = explicit(scaled, params, x1, x2, {"scale": s1}, {"scale": s2})
    ref_same = explicit(scaled, params, x1, x1, {"scale": s1}, {"scale": s1})
    for vmap in [None, "auto", (0, 0, {"scale": 0}), (0, 0, 0)]:
        fn = ntk.empirical_ntk_fn(scaled, trace_axes=(), vmap_axes=vmap,
                                  implementation=implementation)
        np.testing.assert_allclose(fn(x1, x2, params, scale=(s1, s2)), ref, rtol=1e-10,
                                   atol=1e-12, err_msg=str(vmap))
        # x2 = None: the first half serves both calls (neural-tangents' kwargs1)
        np.testing.assert_allclose(fn(x1, None, params, scale=(s1, s2)), ref_same,
                                   rtol=1e-10, atol=1e-12, err_msg=str(vmap))
    # unbatched halves (the same for every example) under explicit vmap_axes
    fn = ntk.empirical_ntk_fn(scaled, trace_axes=(), vmap_axes=(0, 0),
                              implementation=implementation)
    np.testing.assert_allclose(fn(x1, x2, params, scale=(t1, t2)),
                               explicit(scaled, params, x1, x2, {"scale": t1}, {"scale": t2}),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_split_keywords_nngp_jit_and_plan_cache():
    params = _params(3)
    x1, x2, s1, s2, _, _ = _data()
    fn = ntk.empirical_nngp_fn(f=scaled, trace_axes=(), vmap_axes=(0, 0, {"scale": 0}))
    want = jnp.einsum("na,mb->nmab", scaled(params, x1, s1), scaled(params, x2, s2))
    np.testing.assert_allclose(fn(x1, x2, params, scale=(s1, s2)), want, rtol=1e-10)
    np.testing.assert_allclose(jax.jit(fn)(x1, x2, params, scale=(s1, s2)), want, rtol=1e-10)
    # a batched keyword argument that is not a pair: the same value's rows follow x1's
    fn = ntk.empirical_ntk_fn(scaled, trace_axes=(), vmap_axes=(0, 0, {"scale": 0}))
    np.testing.assert_allclose(fn(x1, None, params, scale=s1),
                               explicit(scaled, params, x1, x1, {"scale": s1}, {"scale": s1}),
                               rtol=1e-10, atol=1e-12)
    traces = []

    def counted(p, x, scale):
        traces.append(1)
        return scaled(p, x, scale)

    fn = ntk.empirical_ntk_fn(counted, vmap_axes=(0, 0, {"scale": 0}),
                              implementation="jacobian")
    fn(x1, x2, params, scale=(s1, s2))
    before = len(traces)
    fn(x1 + 1, x2, params, scale=(s2[:1] * s1, s2))
    assert len(traces) == before   # same shapes: the plan is reused, nothing retraced


@pytest.mark.slow
def test_rng_gives_x2_a_folded_key_unless_inputs_are_equal():
    params = _params(4)
    x1, x2, *_ = _data()
    key = jax.random.PRNGKey(11)
    fn = ntk.empirical_ntk_fn(scaled, trace_axes=(), vmap_axes=None)
    np.testing.assert_allclose(
        fn(x1, x2, params, rng=key),
        explicit(scaled, params, x1, x2, {"rng": key}, {"rng": jax.random.fold_in(key, 1)}),
        rtol=1e-10, atol=1e-12)
    same = explicit(scaled, params, x1, x1, {"rng": key}, {"rng": key})
    np.testing.assert_allclose(fn(x1, x1 + 0.0, params, rng=key), same, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fn(x1, None, params, rng=key), same, rtol=1e-10, atol=1e-12)
    # a pair of keys is a pair like any other
    k2 = jax.random.PRNGKey(12)
    np.testing.assert_allclose(
        fn(x1, x2, params, rng=(key, k2)),
        explicit(scaled, params, x1, x2, {"rng": key}, {"rng": k2}), rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_graph_network_with_split_and_batched_patterns():
    """NT's own setting: an ``Aggregate`` network with ``pattern=(p1, p2)`` batched by
    ``kwargs_axes``; every implementation against the explicit contraction."""
    init_fn, apply_fn, _ = stax.serial(stax.Dense(4), stax.Relu(), stax.Aggregate(),
                                       stax.GlobalAvgPool(), stax.Dense(2))
    k = jax.random.split(jax.random.PRNGKey(5), 4)
    x1, x2 = jax.random.normal(k[0], (3, 4, 2)), jax.random.normal(k[1], (2, 4, 2))
    p1, p2 = jax.random.normal(k[2], (3, 4, 4)), jax.random.normal(k[3], (2, 4, 4))
    _, params = init_fn(jax.random.PRNGKey(6), x1.shape)
    ref = explicit(apply_fn, params, x1, x2, {"pattern": p1}, {"pattern": p2})
    for implementation in ("jacobian", "structured"):
        for vmap in (None, (0, 0, {"pattern": 0})):
            fn = ntk.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=vmap,
                                      implementation=implementation)
            np.testing.assert_allclose(fn(x1, x2, params, pattern=(p1, p2)), ref, rtol=1e-9,
                                       atol=1e-12, err_msg=f"{implementation} {vmap}")


@pytest.mark.slow
def test_monte_carlo_splits_pairs_like_the_empirical_kernels():
    def init_fn(key, input_shape):
        k = jax.random.split(key)
        return (input_shape[0], 2), {
            "w": jax.random.normal(k[0], (input_shape[1], 5)) / np.sqrt(input_shape[1]),
            "v": jax.random.normal(k[1], (5, 2)) / np.sqrt(5)}

    x1, x2, s1, s2, _, _ = _data()
    mc = ntk.monte_carlo_kernel_fn(init_fn, scaled, jax.random.PRNGKey(9), 2, trace_axes=())
    got = mc(x1, x2, "ntk", scale=(s1, s2))
    keys = jax.random.split(jax.random.PRNGKey(9), 2)
    want = sum(explicit(scaled, init_fn(kk, x1.shape)[1], x1, x2, {"scale": s1},
                        {"scale": s2}) for kk in keys) / 2
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_clear_errors_for_keywords():
    params = _params()
    x1, x2, s1, s2, _, _ = _data()
    fn = ntk.empirical_ntk_fn(scaled)
    with pytest.raises(TypeError, match=r"keyword argument scale=.*value for the x2 call is "
                                        r"None"):
        fn(x1, x2, params, scale=(s1, None))
    with pytest.raises(ValueError, match="v1 and v2 must have one pytree structure"):
        fn(x1, x2, params, scale=(s1, [s2]))
    with pytest.raises(TypeError, match="kwargs_axes must be None, an int or a dict"):
        ntk.empirical_ntk_fn(scaled, vmap_axes=(0, 0, ["scale"]))
    with pytest.raises(ValueError, match="same batch size"):
        ntk.empirical_ntk_fn(scaled, vmap_axes=(0, 0, {"scale": 0}))(x1, x2, params,
                                                                    scale=(s2, s2))


@pytest.mark.parametrize("implementation", [
    "ntvp", pytest.param("jacobian", marks=pytest.mark.slow),
    pytest.param("structured", marks=pytest.mark.slow)])
def test_negative_output_batch_axis(implementation):
    """``vmap_axes=(0, -3)`` for outputs ``(H, N, W, C)`` (NT's ``test_vmap_axes`` counts
    output axes from the end); the kernel is laid out by output axis, traced over C."""
    params = {"w": jnp.asarray(np.random.default_rng(0).standard_normal((3, 40)))}

    def f(p, x):   # (N, 3) -> (4, N, 5, 2)
        return jnp.transpose(jnp.tanh(x @ p["w"]).reshape(x.shape[0], 4, 5, 2), (1, 0, 2, 3))

    x1, x2, *_ = _data()
    flat = lambda p, x: jnp.transpose(f(p, x), (1, 0, 2, 3)).reshape(x.shape[0], -1)  # noqa
    raw = explicit(flat, params, x1, x2, {}, {}).reshape(3, 2, 4, 5, 2, 4, 5, 2)
    want = jnp.einsum("nmhwcgvc->hgnmwv", raw) / 2   # (H, H', N1, N2, W, W')
    got = ntk.empirical_ntk_fn(f, vmap_axes=(0, -3), implementation=implementation,
                               _j_rules=False, _s_rules=True, _fwd=None)(x1, x2, params)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    with pytest.raises(TypeError, match="_fwd must be a bool or None"):
        ntk.empirical_kernel_fn(f, _fwd="yes")
