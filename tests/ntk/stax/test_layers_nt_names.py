"""neural-tangents' layer names in ntk.stax, each checked against a truth it does not share:

* ``repeat``: ``serial(*[layer] * n)`` (kernels and the finite network, float64 rounding) and
  the number of traces of the layer, which must not grow with the depth;
* ``Dropout``, ``Polynomial``, ``Hermite``, ``Gabor``, ``FanInProd``: Monte Carlo over one wide
  finite network built by the same triple's ``init_fn``/``apply_fn``. Both kernels are sums of
  i.i.d. per-channel terms (``nngp = mean_c y_c y_c'``; the NTK ``J J^T`` grouped by the hidden
  channel each parameter feeds), so the estimate comes with its own standard error; the
  tolerance is 4.5 standard errors per entry (width 2^15, errors ~0.3 % of the kernel);
* ``SumPool``, ``GlobalSumPool``, ``Index``: the linear map ``A`` the finite layer applies over
  positions (read off ``apply_fn`` on basis images), ``K' = A K A^T``, to 1e-12;
* everything, ``ExpNormalized`` included: neural-tangents 0.6.5's own kernels, stored in
  ``tests/golden/stax_nt065_names.npz`` by ``reference/make_stax_names_golden.py`` (and live in
  ``.venv-ref`` with ``-m "slow and reference"``), to 1e-6 relative.
"""
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk import stax
from tests.golden_parity import check_against_golden, load_golden
from ntk.stax.core import KernelFn
from ntk.stax.kernel import input_kernel, spatial_diagonal, to_diagonal

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
GOLDEN = os.path.join(ROOT, "tests", "golden", "stax_nt065_names.npz")
REF_PYTHON = os.path.join(ROOT, ".venv-ref", "bin", "python")
RTOL = 1e-6


def _x(shape, seed=0):
    return np.random.RandomState(seed).randn(*shape)


# ----------------------------------------------------------------------------------------
# repeat


def _counting(layer, counts):
    """The same layer, counting how often its kernel map and apply_fn are traced."""
    init_fn, apply_fn, kf = layer

    def transform(k, out_full):
        counts["kernel"] += 1
        return kf.transform(k, out_full)

    def apply(params, x, **kwargs):
        counts["apply"] += 1
        return apply_fn(params, x, **kwargs)

    return init_fn, apply, KernelFn("counting", transform, kf.input_full)


def test_repeat_traces_the_layer_independently_of_depth():
    x = jnp.asarray(_x((3, 6)))
    block = stax.serial(stax.Dense(6, 1.3, 0.1), stax.Relu())
    traced = {}
    for depth in (2, 50):
        counts = {"kernel": 0, "apply": 0}
        init_fn, apply_fn, kernel_fn = stax.repeat(_counting(block, counts), depth)
        k0 = input_kernel(x, None, False, True)
        jax.make_jaxpr(lambda k: kernel_fn.transform(k, True))(k0)
        params = jax.eval_shape(lambda key: init_fn(key, x.shape)[1], jax.random.PRNGKey(0))
        counts["init"] = counts["apply"]
        jax.make_jaxpr(apply_fn)(params, x)
        traced[depth] = (counts["kernel"], counts["apply"] - counts["init"])
    # the first application (raw-input metadata -> the layer's) and the loop body
    assert traced[50] == traced[2] == (2, 1)


def test_repeat_equals_serial_kernels_and_network():
    depth = 3  # any depth: the trace count above is what depth 50 needs
    x1, x2 = _x((3, 4)), _x((2, 4), 1)
    block = stax.serial(stax.Dense(5, 1.4, 0.1), stax.Erf(), stax.Dense(4, 1.2))
    head = stax.Dense(1, 1.1)
    _, _, rep = stax.serial(stax.Identity(), stax.repeat(block, depth),
                            head)
    _, _, ser = stax.serial(stax.Identity(), *[block] * depth, head)
    a, b = rep(x1, x2), ser(x1, x2)
    for name in ("nngp", "ntk", "cov1", "cov2"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-12, atol=0)

    # the finite network: repeat's stacked parameters are serial's, layer by layer
    init_r, apply_r, _ = stax.repeat(block, depth)
    init_s, apply_s, _ = stax.serial(*[block] * depth)
    params_r = jax.eval_shape(lambda key: init_r(key, x1.shape)[1], jax.random.PRNGKey(1))
    _, params_s = init_s(jax.random.PRNGKey(2), x1.shape)
    stacked = jax.tree_util.tree_map(lambda *ps: jnp.stack(ps), *params_s)
    assert jax.tree_util.tree_structure(params_r) == jax.tree_util.tree_structure(stacked)
    assert [p.shape for p in jax.tree_util.tree_leaves(params_r)] == [
        p.shape for p in jax.tree_util.tree_leaves(stacked)]
    np.testing.assert_allclose(apply_r(stacked, x1), apply_s(params_s, x1), rtol=1e-12)


def test_repeat_initializes_the_network_serial_initializes_from_the_same_key():
    """``repeat(layer, n)`` and ``serial(*[layer] * n)`` are one network: the same key gives
    the same parameters (``serial``'s ``key, sub = split(key)`` per layer), hence the same
    outputs -- what a neural-tangents user swapping one for the other expects."""
    x = jnp.asarray(_x((3, 4)))
    block = stax.serial(stax.Dense(4, 1.4, 0.1), stax.Relu(), stax.Dense(4, 1.2, 0.2))
    init_r, apply_r, _ = stax.repeat(block, 3)
    init_s, apply_s, _ = stax.serial(*[block] * 3)
    key = jax.random.PRNGKey(5)
    params_r, params_s = init_r(key, x.shape)[1], init_s(key, x.shape)[1]
    stacked = jax.tree_util.tree_map(lambda *ps: jnp.stack(ps), *params_s)
    for a, b in zip(jax.tree_util.tree_leaves(params_r), jax.tree_util.tree_leaves(stacked)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(apply_r(params_r, x), apply_s(params_s, x))


def test_repeat_refuses_a_shape_changing_layer():
    with pytest.raises(ValueError, match="equal shapes"):
        stax.repeat(stax.Dense(5), 3)[0](jax.random.PRNGKey(0), (2, 3))
    with pytest.raises(ValueError, match="non-negative integer"):
        stax.repeat(stax.Relu(), -1)


# ----------------------------------------------------------------------------------------
# Monte Carlo over one wide finite network

WIDTH = 2 ** 15


def _monte_carlo(body, x, seed, **apply_kwargs):
    """Per-channel estimates of ``nngp`` after ``body`` (width ``WIDTH``) and of the NTK of
    ``serial(body, Dense(1))``, each with its standard error (``(N, N)`` arrays)."""
    init_fn, apply_fn, kernel_fn = stax.serial(body, stax.Dense(1))
    body_apply = stax.serial(body)[1]

    @jax.jit
    def per_channel(key, x):
        _, params = init_fn(key, x.shape)
        y = body_apply((params[0],), x, **apply_kwargs)
        terms = {"nngp": y[:, None, :] * y[None, :, :]}
        jac = jax.jacrev(lambda p: apply_fn(p, x, **apply_kwargs)[:, 0])(params)
        ntk = 0.0
        for leaf in jax.tree_util.tree_leaves(jac):
            axes = [a for a in range(1, leaf.ndim) if leaf.shape[a] == WIDTH]
            assert len(axes) == 1, leaf.shape
            g = jnp.moveaxis(leaf, axes[0], -1).reshape((x.shape[0], -1, WIDTH))
            ntk = ntk + jnp.einsum("iac,jac->ijc", g, g)
        terms["ntk"] = ntk * WIDTH  # a channel's share of the sum, times the channel count
        return {k: (jnp.mean(v, -1), jnp.std(v, -1) / np.sqrt(WIDTH))
                for k, v in terms.items()}

    estimates = per_channel(jax.random.PRNGKey(seed), x)
    return estimates, kernel_fn(x, None, ("nngp", "ntk"))


def _assert_within(estimates, exact, n_se=4.5):
    for name, (mean, se) in estimates.items():
        truth = np.asarray(getattr(exact, name))
        scale = np.max(np.abs(truth))
        assert np.max(se) < 0.04 * scale, (name, np.max(se), scale)  # not a vacuous check
        z = np.abs(mean - truth) / se
        assert np.all(z < n_se), (name, np.max(z), mean, truth)


MC_LAYERS = {
    "dropout": (stax.serial(stax.Dense(WIDTH, 1.2, 0.1), stax.Relu(), stax.Dropout(0.6)),
                dict(rng=jax.random.PRNGKey(7))),
    "polynomial": (stax.serial(stax.Dense(WIDTH, 0.9, 0.2),
                               stax.Polynomial([0.3, -1.0, 0.5, 0.2])), {}),
    # variances far from 1: the kernel is the finite layer's, not only NT's unit-variance map
    "hermite": (stax.serial(stax.Dense(WIDTH, 0.7, 0.3), stax.Hermite(3)), {}),
    "gabor": (stax.serial(stax.Dense(WIDTH, 1.3, 0.2), stax.Gabor()), {}),
    "fanin_prod": (stax.serial(
        stax.FanOut(2),
        stax.parallel(stax.serial(stax.Dense(WIDTH, 1.2, 0.2), stax.Erf()),
                      stax.Dense(WIDTH, 0.9, 0.3)),
        stax.FanInProd()), {}),
}


@pytest.mark.parametrize("name", list(MC_LAYERS))
def test_kernel_matches_monte_carlo_of_the_finite_network(name):
    body, kwargs = MC_LAYERS[name]
    x = _x((4, 3), 3)
    x[1] *= 0.4  # different variances across inputs
    estimates, exact = _monte_carlo(body, jnp.asarray(x), seed=11, **kwargs)
    _assert_within(estimates, exact)


def test_dropout_semantics():
    x = _x((3, 4))
    plain = stax.serial(stax.Dense(6, 1.2), stax.Relu())
    init_fn, apply_fn, _ = stax.serial(plain, stax.Dropout(0.5))
    _, params = init_fn(jax.random.PRNGKey(0), x.shape)
    with pytest.raises(ValueError, match="PRNG key"):
        apply_fn(params, x)
    # x2 = None: 1/rate on the diagonal (one mask per input); x2 given: independent masks
    dropout = stax.Dropout(0.5)[2]
    k0 = plain[2](x, None)
    k = dropout(k0)
    np.testing.assert_allclose(np.diag(k.nngp), 2 * np.diag(k0.nngp), rtol=1e-12)
    off = ~np.eye(3, dtype=bool)
    np.testing.assert_allclose(np.asarray(k.nngp)[off], np.asarray(k0.nngp)[off], rtol=1e-12)
    np.testing.assert_allclose(k.cov1, 2 * k0.cov1, rtol=1e-12)
    k0 = k0.replace(cov2=k0.cov1)  # as if x2 were passed: a different draw of masks
    np.testing.assert_allclose(dropout(k0).nngp, k0.nngp, rtol=1e-12)
    np.testing.assert_allclose(dropout(k0).cov2, 2 * k0.cov2, rtol=1e-12)
    # test mode is the identity, and dropout on the raw input has no kernel
    assert stax.Dropout(0.5, mode="test")[1]((), x) is x
    with pytest.raises(ValueError, match="raw network input"):
        dropout(input_kernel(jnp.asarray(x), None, False, True))
    with pytest.raises(ValueError, match="keep probability"):
        stax.Dropout(0.0)
    with pytest.raises(ValueError, match="mode"):
        stax.Dropout(0.5, mode="eval")


# ----------------------------------------------------------------------------------------
# linear maps over positions: K' = A K A^T


def _position_map(apply_fn, spatial):
    """``A (Q, P)``: the finite layer on basis images of one channel."""
    p = int(np.prod(spatial))
    basis = jnp.eye(p).reshape((p,) + tuple(spatial) + (1,))
    out = apply_fn((), basis)
    return np.asarray(out).reshape(p, -1).T, tuple(out.shape[1:-1])


def _as_matrix(mat, batch_ndim):
    """``(B.., X, X', Y, Y')`` -> ``(B.., P, P')``."""
    s = (mat.ndim - batch_ndim) // 2
    perm = (list(range(batch_ndim)) + [batch_ndim + 2 * i for i in range(s)]
            + [batch_ndim + 2 * i + 1 for i in range(s)])
    m = np.transpose(mat, perm)
    b = m.shape[:batch_ndim]
    p = int(np.prod(m.shape[batch_ndim:batch_ndim + s]))
    return m.reshape(b + (p, p))


SPATIAL_LAYERS = {
    "sumpool_same": stax.SumPool((2, 3), strides=(2, 1), padding="SAME"),
    "sumpool_valid": stax.SumPool((2, 2)),
    "global_sum_pool": stax.GlobalSumPool(),
    "index": stax.Index(stax.Slice[:, 1:4, ::2]),
    "index_int": stax.Index(stax.Slice[..., 2, :]),
}


@pytest.mark.parametrize("name", list(SPATIAL_LAYERS))
def test_spatial_layer_kernel_is_its_linear_map_on_both_sides(name):
    _, apply_fn, kernel_fn = SPATIAL_LAYERS[name]
    spatial = (5, 4)
    x1, x2, t1, t2 = (jnp.asarray(_x((n,) + spatial + (2,), s))
                      for n, s in ((3, 0), (2, 1), (3, 2), (2, 3)))
    k = input_kernel(x1, x2, True, True)
    other = input_kernel(t1, t2, True, False)
    k = k.replace(ntk=other.nngp)  # a second, different covariance through the same map
    out = jax.jit(kernel_fn)(k)
    a, out_spatial = _position_map(apply_fn, spatial)
    assert out.shape1 == (3,) + out_spatial + (2,)
    for field, batch_ndim in (("nngp", 2), ("ntk", 2), ("cov1", 1), ("cov2", 1)):
        mat = _as_matrix(np.asarray(getattr(k, field)), batch_ndim)
        want = a @ mat @ a.T
        got = np.asarray(getattr(out, field))
        got = got.reshape(got.shape[:batch_ndim] + (-1,)) if not out_spatial else \
            _as_matrix(got, batch_ndim)
        if not out_spatial:
            want = want.reshape(want.shape[:batch_ndim] + (-1,))
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    if name.startswith("index"):  # the diagonal layout selects the same entries
        diag = jax.jit(lambda k: kernel_fn(k, diagonal_spatial=True))(to_diagonal(k))
        np.testing.assert_allclose(diag.nngp, spatial_diagonal(out.nngp, 2, len(out_spatial)),
                                   rtol=1e-12)


def test_index_batch_axis_and_refusals():
    x1, x2 = _x((4, 3)), _x((3, 3), 1)
    k = stax.serial(stax.Dense(5, 1.3, 0.2), stax.Relu())[2](x1, x2)
    out = stax.Index(stax.Slice[::2])[2](k)
    np.testing.assert_allclose(out.ntk, k.ntk[::2, ::2], rtol=1e-12)
    np.testing.assert_allclose(out.cov2, k.cov2[::2], rtol=1e-12)
    assert out.shape1 == (2, 5) and out.shape2 == (2, 5)
    _, _, sliced = stax.serial(stax.Dense(5), stax.Index(stax.Slice[::2]))
    with pytest.raises(ValueError, match="blocks"):
        sliced(x1, x2, batch_size=2)
    with pytest.raises(NotImplementedError, match="channel axis"):
        stax.Index(stax.Slice[..., :2])[2](x1)
    with pytest.raises(NotImplementedError, match="slice"):
        stax.Index(stax.Slice[0])[2](x1)
    with pytest.raises(ValueError, match="batch_axis=0 and channel_axis=-3 are the same axis"):
        stax.SumPool((2,), channel_axis=-3)[2](_x((2, 4, 3)))
    assert stax.Slice[1:10, :, ::-1] == (slice(1, 10), slice(None), slice(None, None, -1))


def test_fanin_prod_refuses_raw_input_branches():
    _, _, kernel_fn = stax.serial(stax.FanOut(2), stax.FanInProd())
    with pytest.raises(ValueError, match="independent"):
        kernel_fn(_x((2, 3)))


# ----------------------------------------------------------------------------------------
# neural-tangents 0.6.5: golden file and live


def _reference_module():
    sys.path.insert(0, ROOT)
    try:
        import reference.make_stax_names_golden as module
    finally:
        sys.path.remove(ROOT)
    return module


NAMES, SPECS, ARRAYS, NT = load_golden(GOLDEN)
#: cases run by default (each costs an XLA compilation); the convolutional rest are `slow`
#: (the Monte Carlo and serial checks above cover the other layers by default)
QUICK = ("dropout_mlp", "hermite_unit_x2", "exp_normalized_clip_x2",
         "exp_normalized")


def _check(index, spec, arrays, reference, build):
    check_against_golden(index, spec, arrays, reference, build, RTOL)


@pytest.mark.parametrize("name", [n if n in QUICK else pytest.param(n, marks=pytest.mark.slow)
                                  for n in NAMES])
def test_golden_parity_with_neural_tangents(name):
    index = NAMES.index(name)
    _check(index, SPECS[index], ARRAYS, NT, _reference_module().build)


@pytest.mark.slow
@pytest.mark.reference
@pytest.mark.skipif(not os.path.exists(REF_PYTHON), reason="no .venv-ref (make reference)")
def test_live_parity_with_neural_tangents_fresh_inputs():
    module = _reference_module()
    rng = np.random.RandomState(2024)
    arrays = {k: rng.randn(*v.shape) for k, v in ARRAYS.items()}
    for k in ("u1", "u2"):  # Hermite's cases need unit-norm inputs
        arrays[k] /= np.sqrt(np.mean(arrays[k] ** 2, -1, keepdims=True))
    reference = module.run_reference(SPECS, arrays)
    for i, spec in enumerate(SPECS):
        _check(i, spec, arrays, reference, module.build)
