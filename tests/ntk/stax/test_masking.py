"""Masked inputs (``mask_constant``), ``LayerNorm`` over the batch axis and ``FanInConcat``
along spatial and batch axes, each against a truth it does not share:

* variable-length inputs: a sequence padded with the mask constant has, after a network whose
  layers do not mix positions (``Dense``, activations) read out by ``GlobalAvgPool``, exactly
  the kernel and the outputs of the same sequence cut to its unmasked length;
* independence of concatenated branches: ``FanInConcat`` along the batch axis of two branches
  equals the branches' own kernels laid block-diagonally (computed separately);
* the finite layers' definitions, in numpy (masked moments of ``LayerNorm`` over the batch);
* attention over a padded sentence: at the unmasked positions, the outputs of the cut one;
* neural-tangents 0.6.5's own kernels and finite layers on the same masked inputs, stored in
  ``tests/golden/stax_nt065_names4.npz`` by ``reference/make_stax_names4_golden.py``: kernels
  to 1e-12 relative to the largest entry (the NTK of an input with itself after an arccos to
  1e-8), ``apply_fn`` values and masks exactly.
"""
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk import stax
from tests.golden_parity import assert_kernel_close, load_golden

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
GOLDEN = os.path.join(ROOT, "tests", "golden", "stax_nt065_names4.npz")
RTOL, RTOL_SELF_NTK = 1e-12, 1e-8


def _sequences(seed=0, n=3, length=7, chan=3):
    return np.random.RandomState(seed).randn(n, length, chan)


def test_padded_sequences_have_the_kernel_and_outputs_of_the_cut_sequences():
    _, _, kernel_fn = stax.serial(
        stax.Dense(16, 1.3, 0.2), stax.Relu(), stax.Dense(16, 1.1, 0.1), stax.Erf(),
        stax.GlobalAvgPool(), stax.Dense(1, 1.2, 0.1))
    x = _sequences()
    lengths = (7, 4, 2)
    padded = np.stack([np.where(np.arange(7)[:, None] < n, row, -1.0)
                       for row, n in zip(x, lengths)])
    both = kernel_fn(padded, None, ("nngp", "ntk"), mask_constant=-1.0)
    ntk_padded, nngp_padded = both.ntk, both.nngp
    # the cut sequences' kernel: the position-wise MLP's kernel of every pair of (unpadded)
    # positions, averaged over the pairs, then the read-out Dense(W_std=1.2, b_std=0.1)
    _, _, mlp = stax.serial(stax.Dense(16, 1.3, 0.2), stax.Relu(), stax.Dense(16, 1.1, 0.1),
                            stax.Erf())
    positions = mlp(x.reshape(-1, 3), None, ("nngp", "ntk"))
    for i, a in enumerate(lengths):
        for j, b in enumerate(lengths):
            rows, cols = slice(7 * i, 7 * i + a), slice(7 * j, 7 * j + b)
            nngp = 1.2 ** 2 * np.mean(positions.nngp[rows, cols]) + 0.1 ** 2
            ntk = 1.2 ** 2 * np.mean(positions.ntk[rows, cols]) + nngp
            np.testing.assert_allclose(ntk_padded[i, j], ntk, rtol=1e-12)
            np.testing.assert_allclose(nngp_padded[i, j], nngp, rtol=1e-12)
    # the finite network: padded positions stay zero without biases (f(0) = 0 here), and the
    # pool averages over the unmasked ones
    init_fn, apply_fn, _ = stax.serial(stax.Dense(16, 1.3), stax.Relu(), stax.Dense(16, 1.1),
                                       stax.Erf(), stax.GlobalAvgPool(), stax.Dense(1, 1.2, 0.1))
    params = init_fn(jax.random.PRNGKey(0), padded.shape)[1]
    out = apply_fn(params, padded, mask_constant=-1.0)
    assert isinstance(out, stax.MaskedArray) and not np.any(out.mask)
    for i, n in enumerate(lengths):
        np.testing.assert_allclose(out.masked_value[i], apply_fn(params, x[i:i + 1, :n])[0],
                                   rtol=1e-12)
    # unmask_fn hands back the values (nothing left masked after the global pool)
    np.testing.assert_array_equal(stax.unmask_fn(apply_fn)(params, padded, mask_constant=-1.0),
                                  out.masked_value)


def test_masked_positions_are_zeroed_and_channel_masks_refused():
    _, apply_fn, kernel_fn = stax.serial(stax.Dense(4), stax.Relu())
    x = _sequences(1)
    x[0, 5:] = 9.0
    k = kernel_fn(x, None, get=None, mask_constant=9.0)
    # a traced mask constant (a jitted kernel_fn) masks the same entries
    jitted = jax.jit(kernel_fn, static_argnames="get")(x, None, "nngp", mask_constant=9.0)
    np.testing.assert_allclose(jitted, k.nngp, rtol=1e-12)
    assert k.mask1.shape == (3, 7, 1) and bool(k.mask1[0, 6, 0]) and not bool(k.mask1[1, 6, 0])
    assert np.all(np.asarray(k.nngp)[0, :, 5:, :] == 0) and np.all(np.asarray(k.cov1)[0, 5:] == 0)
    # in blocks of inputs (masks sliced with them; x2 = x1 blocks mirrored): the same kernel
    # (x2 = x[1:] is a sub-block of the x2 = None kernel)
    blocked = kernel_fn(x, None, get=None, mask_constant=9.0, batch_size=1)
    np.testing.assert_allclose(blocked.nngp, k.nngp, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(blocked.mask1, k.mask1)
    blocked = kernel_fn(x, x[1:], get=None, mask_constant=9.0, batch_size=1)
    np.testing.assert_allclose(blocked.nngp, k.nngp[:, 1:], rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(blocked.mask2, k.mask1[1:])
    x[1, 0, 0] = 9.0  # one channel of one position: Dense keeps the position
    assert not bool(kernel_fn(x, None, get=None, mask_constant=9.0).mask1[1, 0, 0])
    _, _, pool_first = stax.AvgPool((2,))
    with pytest.raises(NotImplementedError, match="differ between channels"):
        pool_first(x, None, "nngp", mask_constant=9.0)


def test_masked_attention_attends_to_the_unmasked_positions_only():
    """Softmax attention over a padded sentence: at the unmasked positions, the outputs of the
    sentence cut to its length (masked keys get weight exp(-1e20) = 0)."""
    init_fn, apply_fn, _ = stax.GlobalSelfAttention(6, 4, 5, 2, linear_scaling=False,
                                                    b_std=0.2)
    x = _sequences(8, n=2, length=6, chan=3)
    padded = x.copy()
    padded[0, 4:], padded[1, 1:] = 7.0, 7.0
    params = init_fn(jax.random.PRNGKey(1), padded.shape)[1]
    out = apply_fn(params, padded, mask_constant=7.0)
    for i, n in enumerate((4, 1)):
        np.testing.assert_allclose(out.masked_value[i, :n], apply_fn(params, x[i:i + 1, :n])[0],
                                   rtol=1e-12)
    assert np.array_equal(np.asarray(out.mask)[:, :, 0], padded[..., 0] == 7.0)


def test_layernorm_over_the_batch_normalises_by_the_batch_and_is_not_blocked():
    rng = np.random.RandomState(3)
    x = rng.randn(5, 4, 3)
    _, apply_fn, _ = stax.LayerNorm(axis=(0, -1))
    y = np.asarray(apply_fn((), x))
    want = (x - x.mean(axis=(0, 2), keepdims=True)) / np.sqrt(
        x.var(axis=(0, 2), keepdims=True) + 1e-12)
    np.testing.assert_allclose(y, want, rtol=1e-10)
    _, _, kernel_fn = stax.serial(stax.Dense(8), stax.LayerNorm(axis=(0, -1)), stax.Relu(),
                                  stax.Flatten(), stax.Dense(1))
    whole = kernel_fn(x, None, "nngp")
    halves = kernel_fn(x, None, "nngp", memory_budget=1)  # would block; coupled: one piece
    np.testing.assert_allclose(halves, whole, rtol=1e-14)
    # the batch statistics are x1's: another batch changes the kernel of the same inputs
    other = kernel_fn(np.concatenate([x, 3 * x[:2]]), None, "nngp")[:5, :5]
    assert np.max(np.abs(other - whole)) > 1e-3 * np.max(np.abs(whole))
    with pytest.raises(ValueError, match="batch_size"):
        kernel_fn(x, None, "nngp", batch_size=2)


def test_concatenating_independent_branches_along_the_batch_is_block_diagonal():
    x1, x2 = np.random.RandomState(4).randn(3, 5), np.random.RandomState(5).randn(2, 5)
    first = stax.serial(stax.Dense(3, 1.2, 0.1), stax.Relu(), stax.Dense(3, 1.1))
    second = stax.serial(stax.Dense(3, 0.9), stax.Erf(), stax.Dense(3, 1.4, 0.3))
    _, apply_fn, kernel_fn = stax.serial(stax.FanOut(2), stax.parallel(first, second),
                                         stax.FanInConcat(axis=0))
    get = ("nngp", "ntk", "cov1")
    k = kernel_fn(x1, x2, get)
    a, b = (net[2](x1, x2, get) for net in (first, second))
    for field in ("nngp", "ntk"):
        want = np.block([[getattr(a, field), np.zeros((3, 2))],
                         [np.zeros((3, 2)), getattr(b, field)]])
        np.testing.assert_allclose(getattr(k, field), want, rtol=1e-13)
    np.testing.assert_allclose(k.cov1, np.concatenate([a.cov1, b.cov1]), rtol=1e-13)


# ----------------------------------------------------------------------------------------
# neural-tangents 0.6.5: golden file

def _reference_module():
    sys.path.insert(0, ROOT)
    try:
        import reference.make_stax_names4_golden as module
    finally:
        sys.path.remove(ROOT)
    return module


NAMES, SPECS, ARRAYS, NT = load_golden(GOLDEN)
#: run by default (each kernel case costs XLA compilations); the rest are `slow`
QUICK = ("attention_softmax_masked_x2", "apply_layernorm", "apply_conv", "apply_convt")


def _check(index, spec, arrays, reference, build, constant):
    init_fn, apply_fn, kernel_fn = build(stax, spec["layers"])
    arr = lambda name: None if name is None else arrays[name]  # noqa: E731
    kwargs = {} if spec["mask_constant"] is None else {
        "mask_constant": constant(spec["mask_constant"])}
    if spec["kind"] == "apply":
        x = arr(spec["x"])
        params = tuple(arr(p) for p in spec["params"])
        out = apply_fn(params, x, **kwargs)
        value, mask = (out.masked_value, out.mask) if isinstance(out, stax.MaskedArray) else (
            out, None)
        theirs = reference[f"{index}/out"]
        assert value.shape == theirs.shape
        np.testing.assert_allclose(value, theirs, rtol=RTOL, atol=RTOL * np.max(np.abs(theirs)))
        mask = np.zeros(value.shape, bool) if mask is None else np.broadcast_to(mask,
                                                                                value.shape)
        np.testing.assert_array_equal(mask, reference[f"{index}/mask"])
        return
    get = tuple(spec["get"])
    for name, value in zip(get, kernel_fn(arr(spec["x1"]), arr(spec["x2"]), get=get,
                                          **kwargs)):
        assert_kernel_close(value, reference[f"{index}/{name}"], name, spec["x2"] is None,
                            RTOL, RTOL_SELF_NTK, spec["layers"])


@pytest.mark.parametrize("name", [n if n in QUICK else pytest.param(n, marks=pytest.mark.slow)
                                  for n in NAMES])
def test_golden_parity_with_neural_tangents(name):
    module = _reference_module()
    index = NAMES.index(name)
    _check(index, SPECS[index], ARRAYS, NT, module.build, module._constant)


def test_a_constant_linear_map_passes_values_and_masks():
    x = _sequences(9)
    x[0, 3:] = 5.0
    _, apply_fn, _ = stax.DotGeneral(rhs=0.5)
    out = apply_fn((), x, mask_constant=5.0)
    np.testing.assert_array_equal(out.mask, x == 5.0)
    np.testing.assert_allclose(out.masked_value, 0.5 * np.where(x == 5.0, 0.0, x), rtol=1e-15)


def test_a_custom_layer_written_against_the_kernel_runs_as_a_layer():
    @stax.layer
    def Rbf(gamma):
        def kernel_fn(k, **kwargs):
            if k.ntk is not None:  # neural-tangents' own example layer: an NNGP only
                raise ValueError("RBF Kernel does not have an associated NTK.")
            c1 = k.cov1.reshape(-1, 1)
            c2 = (k.cov1 if k.cov2 is None else k.cov2).reshape(1, -1)
            return k.replace(nngp=jnp.exp(-k.shape1[1] * gamma * (c1 + c2 - 2 * k.nngp)))
        return (lambda key, shape: (shape, ())), (lambda params, x, **kw: x), kernel_fn

    x1, x2 = np.random.RandomState(6).randn(3, 4), np.random.RandomState(7).randn(2, 4)
    got = Rbf(0.3)[2](x1, x2, "nngp")  # raw inputs: nngp = <x1, x2> / d
    want = np.exp(-0.3 * np.sum((x1[:, None] - x2[None]) ** 2, axis=-1))
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # float32: no NTK computed behind the caller's back to bound the rounding error
    got32 = Rbf(0.3)[2](x1.astype(np.float32), x2.astype(np.float32), "nngp")
    np.testing.assert_allclose(got32, want, rtol=1e-5)
    with pytest.raises(ValueError, match="layer function returns"):
        stax.layer(lambda: (None, None))()
