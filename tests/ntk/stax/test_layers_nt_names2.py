"""neural-tangents' layer names in ntk.stax, second batch, each checked against a truth it does
not share:

* ``GlobalSelfAttention``: Monte Carlo over independent draws of one wide finite layer built by
  the same triple's ``init_fn``/``apply_fn``, on the raw inputs (whose kernel is exact, so the
  only finite-width bias is the ``O(1/n_chan_key)`` spread of the attention weights, ~0.2 % of
  the kernel here, far below the tolerance). Each draw gives a channel-averaged NNGP (and, in
  the slow test, the empirical NTK of ``serial(layer, Dense(1))`` at every position); the
  spread across draws gives the standard error, and every entry must lie within 4.5 standard
  errors (errors ~2 % of the kernel);
* ``ConvLocal``: Monte Carlo over the i.i.d. channels of one wide layer on raw inputs;
* ``DotGeneral``, ``ImageResize``: the linear map ``A`` the finite layer applies over positions
  (read off ``apply_fn`` on basis images), ``K' = A K A^T``, to 1e-12;
* everything: neural-tangents 0.6.5's own kernels, stored in
  ``tests/golden/stax_nt065_names2.npz`` by ``reference/make_stax_names2_golden.py`` (and live in
  ``.venv-ref`` with ``-m "slow and reference"``), to 1e-6 relative. neural-tangents 0.6.5's
  ``ImageResize`` kernel is wrong after an odd number of ``Conv`` layers (it resizes a kernel
  whose spatial axes it stores reversed along the wrong axes, and then disagrees with its own
  ``apply_fn``), so the golden cases resize after ``Dense`` or two ``Conv`` layers; likewise
  its ``ConvLocal`` with a non-square filter after one ``Conv`` differs from ``ntk.stax`` (it
  agrees on raw inputs, after ``Dense``, and with square filters -- the same reversed-layout
  pattern), so that golden case uses a square filter.
"""
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk import stax
from tests.golden_parity import check_against_golden, load_golden

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
GOLDEN = os.path.join(ROOT, "tests", "golden", "stax_nt065_names2.npz")
REF_PYTHON = os.path.join(ROOT, ".venv-ref", "bin", "python")
RTOL = 1e-6
N_SE = 4.5


def _x(shape, seed=0):
    return np.random.RandomState(seed).randn(*shape)


def _positions(mat):
    """Full-layout ``(N, N, P, P)`` kernel of one spatial axis -> ``(N P, N P)``."""
    n, _, p, _ = mat.shape
    return np.asarray(mat).transpose(0, 2, 1, 3).reshape(n * p, n * p)


def _assert_within(draws, truth, max_se):
    """Mean of the draws within ``N_SE`` standard errors of ``truth``, entry by entry."""
    draws = np.asarray(draws)
    mean = draws.mean(0)
    se = draws.std(0, ddof=1) / np.sqrt(draws.shape[0])
    scale = np.max(np.abs(truth))
    assert np.max(se) < max_se * scale, (np.max(se) / scale)  # not a vacuous check
    z = np.abs(mean - truth) / se
    assert np.all(z < N_SE), (np.max(z), mean, truth)


# ----------------------------------------------------------------------------------------
# GlobalSelfAttention: Monte Carlo

# n_chan_key large (the only bias), the rest sized for a ~2 % standard error at low cost
KEY, HEADS, VAL, OUT = 512, 32, 16, 256


def _attention_inputs():
    x = _x((3, 4, 2), 3)
    x[1] *= 0.5  # different variances across inputs
    return jnp.asarray(x)


def _draws_nngp(layer, x, n_draws, seed):
    init_fn, apply_fn, _ = layer

    def one(key):
        _, params = init_fn(key, x.shape)
        y = apply_fn(params, x)
        y = y.reshape(-1, y.shape[-1])
        return y @ y.T / y.shape[-1]

    keys = jax.random.split(jax.random.PRNGKey(seed), n_draws)
    return jax.jit(jax.vmap(one))(keys)


ATTENTION_MC = {
    "softmax": dict(b_std=0.2, W_key_std=1.5, W_query_std=0.8, W_out_std=1.2),
    "sqrt_identity": dict(linear_scaling=False, attention_mechanism="IDENTITY",
                          W_key_std=1.3, b_std=0.1),
}


@pytest.mark.parametrize("name", [n if n == "softmax" else pytest.param(
    n, marks=pytest.mark.slow) for n in ATTENTION_MC])
def test_attention_nngp_matches_monte_carlo(name):
    x = _attention_inputs()
    layer = stax.GlobalSelfAttention(OUT, KEY, VAL, HEADS, **ATTENTION_MC[name])
    draws = _draws_nngp(layer, x, 32, seed=5)
    _assert_within(draws, _positions(layer[2](x, get="nngp")), max_se=0.04)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ATTENTION_MC))
def test_attention_ntk_matches_monte_carlo(name):
    """Empirical NTK of ``serial(attention, Dense(1))`` at every position, all parameters
    (keys and queries included: their share vanishes only in the limit)."""
    x = _attention_inputs()
    layer = stax.GlobalSelfAttention(OUT, KEY, VAL, HEADS, **ATTENTION_MC[name])
    init_fn, apply_fn, kernel_fn = stax.serial(layer, stax.Dense(1))

    def one(key):
        _, params = init_fn(key, x.shape)
        jac = jax.jacrev(lambda p: apply_fn(p, x).reshape(-1))(params)
        flat = [leaf.reshape(leaf.shape[0], -1) for leaf in jax.tree_util.tree_leaves(jac)]
        return sum(j @ j.T for j in flat)

    keys = jax.random.split(jax.random.PRNGKey(9), 64)
    draws = jax.jit(lambda ks: jax.lax.map(one, ks, batch_size=8))(keys)
    _assert_within(draws, _positions(kernel_fn(x, get="ntk")), max_se=0.04)


def test_attention_refuses_what_it_does_not_implement():
    x = _x((2, 3, 4))
    with pytest.raises(NotImplementedError, match="pos_emb_type='SUM'"):
        stax.GlobalSelfAttention(4, 4, 4, 1, pos_emb_type="SUM")
    with pytest.raises(NotImplementedError, match="val_pos_emb"):
        stax.GlobalSelfAttention(4, 4, 4, 1, val_pos_emb=True)
    with pytest.raises(ValueError, match="attention_mechanism"):
        stax.GlobalSelfAttention(4, 4, 4, 1, attention_mechanism="GELU")
    _, apply_fn, kernel_fn = stax.GlobalSelfAttention(4, 4, 4, 2, linear_scaling=False)
    with pytest.raises(NotImplementedError, match="no closed-form"):
        kernel_fn(x)
    with pytest.raises(ValueError, match="channel_axis=5 is out of range"):
        stax.GlobalSelfAttention(4, 4, 4, 1, channel_axis=5)[2](x)


# ----------------------------------------------------------------------------------------
# linear maps over positions: K' = A K A^T


def _position_map(apply_fn, spatial):
    """``A (Q, P)``: the finite layer on basis images of one channel."""
    p = int(np.prod(spatial))
    basis = jnp.eye(p).reshape((p,) + tuple(spatial) + (1,))
    out = apply_fn((), basis)
    return np.asarray(out).reshape(p, -1).T, tuple(out.shape[1:-1])


LINEAR_MAPS = {
    "dot_general_contract": lambda: stax.DotGeneral(
        rhs=jnp.array([1.0, -1.0, 0.5, 2.0, 0.3]), dimension_numbers=(((1,), (0,)), ((), ()))),
    "dot_general_lhs": lambda: stax.DotGeneral(
        lhs=jnp.array([0.5, -1.0, 1.5, 0.2]), dimension_numbers=(((0,), (2,)), ((), ()))),
    "resize_linear": lambda: stax.ImageResize((-1, 3, 7, -1), "linear"),
    # neural-tangents' kernel_fn raises for cubic; it is a linear map all the same
    "resize_cubic": lambda: stax.ImageResize((-1, 8, 2, -1), "cubic"),
}


@pytest.mark.parametrize("name", list(LINEAR_MAPS))
def test_linear_map_kernel_is_its_map_on_both_sides(name):
    from ntk.stax.attention import to_position_matrix
    from ntk.stax.kernel import input_kernel

    _, apply_fn, kernel_fn = LINEAR_MAPS[name]()
    spatial = (5, 4)
    x1, x2, t1, t2 = (jnp.asarray(_x((n,) + spatial + (2,), s))
                      for n, s in ((3, 0), (2, 1), (3, 2), (2, 3)))
    k = input_kernel(x1, x2, True, True)
    k = k.replace(ntk=input_kernel(t1, t2, True, False).nngp)  # a second covariance
    out = jax.jit(kernel_fn)(k)
    a, out_spatial = _position_map(apply_fn, spatial)
    assert out.shape1 == (3,) + out_spatial + (2,)
    for field, batch_ndim in (("nngp", 2), ("ntk", 2), ("cov1", 1), ("cov2", 1)):
        mat = to_position_matrix(np.asarray(getattr(k, field)), batch_ndim, 2)
        want = np.einsum("ap,...pq,bq->...ab", a, mat, a)
        got = to_position_matrix(getattr(out, field), batch_ndim, len(out_spatial))
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_conv_local_nngp_matches_monte_carlo():
    """Raw inputs (exact kernel): the output channels of one wide ConvLocal + Relu are i.i.d.,
    so the channel average has its own standard error; 4.5 of them per entry."""
    width = 2 ** 11
    x = jnp.asarray(_x((3, 5, 4, 2), 4))
    layer = stax.serial(stax.ConvLocal(width, (3, 2), strides=(2, 1), padding="SAME",
                                       W_std=1.3, b_std=0.2), stax.Relu(), stax.Flatten())
    init_fn, apply_fn, kernel_fn = layer
    _, params = init_fn(jax.random.PRNGKey(3), x.shape)
    y = apply_fn(params, x).reshape(3, -1, width)            # (N, positions, channels)
    terms = jnp.einsum("ipc,jpc->ijc", y, y) / y.shape[1]    # Flatten: mean over positions
    mean, se = np.mean(terms, -1), np.std(terms, -1) / np.sqrt(width)
    truth = np.asarray(kernel_fn(x, get="nngp"))
    assert np.max(se) < 0.04 * np.max(np.abs(truth))
    assert np.all(np.abs(mean - truth) / se < N_SE), (mean, truth)


def test_linear_maps_refuse_layouts_they_cannot_keep():
    x = _x((2, 4, 3))
    with pytest.raises(ValueError, match="at most one"):
        stax.DotGeneral(lhs=1.0, rhs=2.0)
    with pytest.raises(ValueError, match="channel axis"):
        stax.DotGeneral(rhs=jnp.ones(3), dimension_numbers=(((2,), (0,)), ((), ())))[0](
            None, x.shape)
    with pytest.raises(NotImplementedError, match="batch axis"):
        stax.DotGeneral(rhs=jnp.ones(2), dimension_numbers=(((0,), (0,)), ((), ())))[0](
            None, x.shape)
    # rhs's free axis comes last: the channel axis moves to 1, which the next layer declares
    moved = stax.DotGeneral(rhs=jnp.ones((4, 5)), dimension_numbers=(((1,), (0,)), ((), ())))
    assert moved[0](None, x.shape)[0] == (2, 3, 5)
    with pytest.raises(ValueError, match="channel axis at 1"):
        stax.serial(moved, stax.Dense(2))[2](x)
    assert stax.DotGeneral(rhs=2.0)[1]((), x).shape == x.shape
    with pytest.raises(ValueError, match="channel axis"):
        stax.ImageResize((-1, 2, 5), "linear")[2](x)
    with pytest.raises(NotImplementedError, match="batch axis"):
        stax.ImageResize((3, 2, -1), "linear")[2](x)


# ----------------------------------------------------------------------------------------
# neural-tangents 0.6.5: golden file and live


def _reference_module():
    sys.path.insert(0, ROOT)
    try:
        import reference.make_stax_names2_golden as module
    finally:
        sys.path.remove(ROOT)
    return module


NAMES, SPECS, ARRAYS, NT = load_golden(GOLDEN)
#: cases run by default (each costs an XLA compilation); the rest are `slow`
QUICK = ("attention_softmax_x2",)


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
    rng = np.random.RandomState(2025)
    arrays = {k: rng.randn(*v.shape) for k, v in ARRAYS.items()}
    reference = module.run_reference(SPECS, arrays)
    for i, spec in enumerate(SPECS):
        _check(i, spec, arrays, reference, module.build)
