"""``Aggregate`` and ``ConvTranspose``, each checked against a truth it does not share:

* Monte Carlo: ``ntk.monte_carlo_kernel_fn`` over one-hidden-layer networks built by the same
  triples' ``init_fn``/``apply_fn``. With one nonlinearity right after the first random layer
  the expected empirical NNGP and NTK equal the infinite-width ones at any width (the hidden
  units are exactly Gaussian), so the only error is sampling noise: the running estimates at
  ``B, 2B, ..., 8B`` samples give 8 independent block means, whose spread is the standard error;
  every entry must lie within 4.5 of them, the standard error must be small (the check is not
  vacuous), and the error must fall with the number of samples;
* the linear map ``A`` each finite layer applies over positions (read off ``apply_fn`` on basis
  inputs -- per filter tap for ``ConvTranspose``, per graph for ``Aggregate``),
  ``K' = sum_taps A K A^T / taps`` and ``K' = P1^T K P2``, to 1e-12;
* neural-tangents 0.6.5's own kernels and finite layers, stored in
  ``tests/golden/stax_nt065_names3.npz`` by ``reference/make_stax_names3_golden.py`` (live in
  ``.venv-ref`` with ``-m "slow and reference"``): kernels to 1e-12 relative to the largest
  entry, except the NTK of an input with itself (``x2=None``, the batch diagonal) after a
  ReLU/erf, which both libraries compute through an arccos at correlation 1 and so only to
  ``sqrt(eps) ~ 1e-8``; ``apply_fn`` outputs for the same parameters to 1e-12.
"""
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk
from ntk import stax
from tests.golden_parity import assert_kernel_close, load_golden

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
GOLDEN = os.path.join(ROOT, "tests", "golden", "stax_nt065_names3.npz")
REF_PYTHON = os.path.join(ROOT, ".venv-ref", "bin", "python")
RTOL = 1e-12
RTOL_SELF_NTK = 1e-8
N_SE = 4.5


def _x(shape, seed=0):
    return np.random.RandomState(seed).randn(*shape)


def _positions(mat, batch_ndim=2):
    """Full-layout kernel ``(N1, N2, X, X', Y, Y', ..)`` -> ``(N1, N2, P, P')``."""
    from ntk.stax.attention import to_position_matrix
    n_spatial = (np.ndim(mat) - batch_ndim) // 2
    return np.asarray(to_position_matrix(jnp.asarray(mat), batch_ndim, n_spatial))


# ----------------------------------------------------------------------------------------
# Monte Carlo (one hidden layer: the finite network's expected kernels are the analytic ones)

BLOCK, N_BLOCKS = 16, 16


def _monte_carlo(init_fn, apply_fn, x, get, seed):
    """``ntk.monte_carlo_kernel_fn``'s running estimates at ``BLOCK, 2 BLOCK, ...`` samples,
    turned into the means of ``N_BLOCKS`` disjoint blocks (independent estimates).

    The memory budget of ``BLOCK`` samples' Jacobians makes each compiled chunk ``BLOCK``
    samples long, so the running estimates cost one pass over the samples.
    """
    params = init_fn(jax.random.PRNGKey(0), x.shape)[1]
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(params))
    n_out = jax.eval_shape(lambda p: apply_fn(p, x), params).shape[-1]
    budget = BLOCK * 3 * x.shape[0] * n_out * n_params * x.dtype.itemsize
    kernel_fn = ntk.monte_carlo_kernel_fn(init_fn, apply_fn, jax.random.PRNGKey(seed),
                                          [BLOCK * (i + 1) for i in range(N_BLOCKS)],
                                          memory_budget=budget)
    running = [np.asarray(m) for m in kernel_fn(x, None, get)]
    totals = [BLOCK * (i + 1) * m for i, m in enumerate(running)]
    return np.stack([totals[0]] + [b - a for a, b in zip(totals, totals[1:])]) / BLOCK


def _check_monte_carlo(blocks, truth, max_se):
    """Every entry within ``N_SE`` standard errors (from the spread of the block means: a t
    statistic with ``N_BLOCKS - 1`` degrees of freedom), and the standard error small."""
    mean = blocks.mean(0)
    se = blocks.std(0, ddof=1) / np.sqrt(len(blocks))
    scale = np.max(np.abs(truth))
    assert np.max(se) < max_se * scale, np.max(se) / scale  # not a vacuous check
    z = np.abs(mean - truth) / np.maximum(se, 1e-12 * scale)
    assert np.all(z < N_SE), (np.max(z), mean, truth)
    return float(np.max(se) / scale), float(np.max(z))


def _graphs(n, v, seed):
    rng = np.random.RandomState(seed)
    return (rng.rand(n, v, v) < 0.4) * rng.uniform(0.5, 1.5, (n, v, v))


WIDTH = 256
#: read-out width: the NNGP estimate averages this many independent read-outs per network;
#: the NTK's spread is O(1 / WIDTH) already, and its Jacobians cost one pass per output
OUTPUTS = {"nngp": 128, "ntk": 1}


def _aggregate_network(get):
    return stax.serial(
        stax.Aggregate(), stax.Dense(WIDTH, W_std=1.3, b_std=0.2), stax.Relu(),
        stax.Aggregate(), stax.GlobalAvgPool(), stax.Dense(OUTPUTS[get], W_std=1.1, b_std=0.1))


@pytest.mark.parametrize("get", ["nngp", pytest.param("ntk", marks=pytest.mark.slow)])
def test_aggregate_matches_monte_carlo(get):
    """Each input with its own graph (the finite network closes over them)."""
    x = jnp.asarray(_x((5, 4, 3), 1))
    pattern = jnp.asarray(_graphs(5, 4, 2))
    init_fn, apply_fn, kernel_fn = _aggregate_network(get)
    truth = np.asarray(kernel_fn(x, None, get, pattern=(pattern, None)))
    closed = lambda params, inputs, **kw: apply_fn(params, inputs, pattern=pattern)  # noqa
    blocks = _monte_carlo(init_fn, closed, x, get, 7)
    _check_monte_carlo(blocks, truth, max_se=0.02 if get == "nngp" else 0.01)


CONV_TRANSPOSE_MC = {
    "circular_1d": dict(filter_shape=(4,), strides=(2,), padding="CIRCULAR"),
    "valid_2d": dict(filter_shape=(2, 3), strides=(2, 1), padding="VALID"),
    "same_1d_flatten": dict(filter_shape=(3,), strides=(2,), padding="SAME"),
}


@pytest.mark.parametrize("name, get", [
    ("circular_1d", "nngp")] + [pytest.param(n, g, marks=pytest.mark.slow)
                                for n in CONV_TRANSPOSE_MC for g in ("nngp", "ntk")
                                if (n, g) != ("circular_1d", "nngp")])
def test_conv_transpose_matches_monte_carlo(name, get):
    kwargs = CONV_TRANSPOSE_MC[name]
    spatial = (3, 2) if len(kwargs["filter_shape"]) == 2 else (4,)
    x = jnp.asarray(_x((4,) + spatial + (2,), 3))
    readout = stax.Flatten() if name.endswith("flatten") else stax.GlobalAvgPool()
    init_fn, apply_fn, kernel_fn = stax.serial(
        stax.ConvTranspose(WIDTH, W_std=1.2, b_std=0.1, **kwargs), stax.Relu(), readout,
        stax.Dense(OUTPUTS[get], W_std=1.3))
    blocks = _monte_carlo(init_fn, apply_fn, x, get, 11)
    _check_monte_carlo(blocks, np.asarray(kernel_fn(x, None, get)),
                       max_se=0.02 if get == "nngp" else 0.01)


# ----------------------------------------------------------------------------------------
# the kernels are the finite layers' own linear maps over positions


def _input_kernels(spatial, seed=0):
    from ntk.stax.kernel import input_kernel
    x1, x2, t1, t2 = (jnp.asarray(_x((n,) + tuple(spatial) + (2,), seed + s))
                      for n, s in ((3, 0), (2, 1), (3, 2), (2, 3)))
    k = input_kernel(x1, x2, True, True)
    return k.replace(ntk=input_kernel(t1, t2, True, False).nngp)  # a second covariance


_slow = pytest.mark.slow
CONV_TRANSPOSE_MAPS = [
    pytest.param((3,), (2,), "VALID", (5,), marks=_slow),
    pytest.param((3,), (2,), "SAME", (5,), marks=_slow),
    pytest.param((4,), (2,), "CIRCULAR", (3,), marks=_slow),
    pytest.param((2,), (3,), "SAME", (4,), marks=_slow),
    pytest.param((3,), (1,), "CIRCULAR", (4,), marks=_slow),
    pytest.param((2, 3), (2, 1), "VALID", (3, 4), marks=_slow),
    pytest.param((3, 2), (1, 2), "SAME", (3, 2), marks=_slow),
    pytest.param((3, 3), (2, 2), "CIRCULAR", (2, 3), marks=_slow),
]


@pytest.mark.parametrize("filter_shape, strides, padding, spatial", CONV_TRANSPOSE_MAPS)
def test_conv_transpose_kernel_is_the_mean_over_taps_of_its_maps(filter_shape, strides,
                                                                 padding, spatial):
    """Taps are independent: ``y = sum_o W_o A_o x`` with ``A_o`` the map of tap ``o`` alone,
    so ``K' = sum_o E[W_o^2] A_o K A_o^T``. One input and output channel and
    ``W_std = sqrt(taps)`` make ``E[W_o^2] = 1`` and ``A_o`` the layer with a one-hot filter."""
    taps = int(np.prod(filter_shape))
    init_fn, apply_fn, kernel_fn = stax.ConvTranspose(1, filter_shape, strides, padding,
                                                      W_std=np.sqrt(taps))
    p = int(np.prod(spatial))
    basis = jnp.eye(p).reshape((p,) + tuple(spatial) + (1,))
    one_hot = jnp.eye(taps).reshape((taps,) + tuple(filter_shape) + (1, 1))
    outputs = jax.jit(jax.vmap(lambda w: apply_fn((w, None), basis)))(one_hot)
    maps = [np.asarray(y).reshape(p, -1).T for y in outputs]
    out_shape, _ = init_fn(jax.random.PRNGKey(0), (1,) + tuple(spatial) + (1,))
    k = _input_kernels(spatial)
    out = jax.jit(kernel_fn)(k)
    assert out.shape1 == (3,) + tuple(out_shape[1:-1]) + (1,)
    want = {}
    for field, batch_ndim in (("nngp", 2), ("ntk", 2), ("cov1", 1), ("cov2", 1)):
        mat = _positions(getattr(k, field), batch_ndim)
        want[field] = sum(np.einsum("ap,...pq,bq->...ab", a, mat, a) for a in maps)
    want["ntk"] = want["ntk"] + want["nngp"]  # + the layer's own weights: d z / d W_o = A_o x
    for field, batch_ndim in (("nngp", 2), ("ntk", 2), ("cov1", 1), ("cov2", 1)):
        np.testing.assert_allclose(_positions(getattr(out, field), batch_ndim), want[field],
                                   rtol=1e-12, atol=1e-12)
    # the diagonal layout: equal positions of the full one
    diag = kernel_fn(_diag(k))
    full = _positions(out.nngp)
    np.testing.assert_allclose(np.asarray(diag.nngp).reshape(full.shape[:3]),
                               np.einsum("nmaa->nma", full), rtol=1e-12, atol=1e-12)


def _diag(k):
    from ntk.stax.kernel import to_diagonal
    return to_diagonal(k)


AGGREGATE_MAPS = {
    "1d": (dict(), (5,), lambda n, s: _graphs(n, 5, s)),
    "2d_all": (dict(), (3, 2), lambda n, s: _x((n, 3, 2, 3, 2), s)),
    "2d_axis_2": (dict(aggregate_axis=2), (3, 2), lambda n, s: _x((n, 2, 2), s)),
    "2d_axis_-3": (dict(aggregate_axis=-3), (3, 2), lambda n, s: _x((n, 3, 3), s)),
}


@pytest.mark.parametrize("name", [n if n == "2d_axis_2" else pytest.param(
    n, marks=pytest.mark.slow) for n in AGGREGATE_MAPS])
def test_aggregate_kernel_is_each_graphs_map_on_both_sides(name):
    kwargs, spatial, make = AGGREGATE_MAPS[name]
    _, apply_fn, kernel_fn = stax.Aggregate(**kwargs)
    p = int(np.prod(spatial))
    p1, p2 = make(3, 5), make(2, 6)

    def maps(pattern):  # A_n (P', P) of input n: its graph applied to basis inputs
        out = []
        for graph in pattern:
            basis = jnp.eye(p).reshape((p,) + tuple(spatial) + (1,))
            y = apply_fn((), basis, pattern=jnp.broadcast_to(graph, (p,) + graph.shape))
            out.append(np.asarray(y).reshape(p, -1).T)
        return np.stack(out)

    a1, a2 = maps(p1), maps(p2)
    k = _input_kernels(spatial, 4)
    out = kernel_fn(k, pattern=(p1, p2))
    for field, left, right in (("nngp", a1, a2), ("ntk", a1, a2)):
        want = np.einsum("nap,nmpq,mbq->nmab", left, _positions(getattr(k, field)), right)
        np.testing.assert_allclose(_positions(getattr(out, field)), want, rtol=1e-12,
                                   atol=1e-12)
    for field, a in (("cov1", a1), ("cov2", a2)):
        want = np.einsum("nap,npq,nbq->nab", a, _positions(getattr(k, field), 1), a)
        np.testing.assert_allclose(_positions(getattr(out, field), 1), want, rtol=1e-12,
                                   atol=1e-12)


def _edges_to_dense_by_loop(edges, n_vertices):
    """Edge list ``(N, E, 2)`` -> adjacency, one edge at a time; a negative head is padding."""
    dense = np.zeros((edges.shape[0], n_vertices, n_vertices))
    for n, graph in enumerate(edges):
        for tail, head in graph:
            if head >= 0 and tail >= 0:
                dense[n, tail, head] += 1
    return dense


@pytest.mark.slow
def test_sparse_edges_are_the_dense_adjacency():
    rng = np.random.RandomState(8)
    edges = rng.randint(0, 5, size=(3, 9, 2))
    edges[:, -2:, 1] = -1  # padding
    edges[0, 0] = edges[0, 1]  # a repeated edge counts twice
    dense = _edges_to_dense_by_loop(edges, 5)
    x = jnp.asarray(_x((3, 5, 2), 9))
    net = lambda impl: stax.serial(stax.Dense(4, b_std=0.1), stax.Relu(),  # noqa: E731
                                   stax.Aggregate(implementation=impl), stax.GlobalAvgPool())
    _, apply_sparse, kernel_sparse = net("SPARSE")
    _, apply_dense, kernel_dense = net("DENSE")
    np.testing.assert_allclose(kernel_sparse(x, None, "ntk", pattern=(edges, None)),
                               kernel_dense(x, None, "ntk", pattern=(dense, None)),
                               rtol=1e-12, atol=1e-12)
    _, apply_one, _ = stax.Aggregate(implementation="SPARSE")
    np.testing.assert_allclose(apply_one((), x, pattern=edges),
                               stax.Aggregate()[1]((), x, pattern=dense), rtol=1e-12)


# ----------------------------------------------------------------------------------------
# patterns travel with their inputs: blocks, Index, jit, None


def _gnn(*index):
    return stax.serial(stax.Dense(4, W_std=1.2, b_std=0.1), stax.Relu(), *index,
                       stax.Aggregate(), stax.GlobalAvgPool())[2]


def test_patterns_follow_their_inputs_through_blocks():
    """Blocks of inputs take the rows of their graphs: blocked kernels equal the whole."""
    x1, x2 = jnp.asarray(_x((4, 3, 2), 1)), jnp.asarray(_x((2, 3, 2), 2))
    p1, p2 = jnp.asarray(_graphs(4, 3, 3)), jnp.asarray(_graphs(2, 3, 4))
    kernel_fn = _gnn()
    whole = kernel_fn(x1, x2, "ntk", pattern=(p1, p2))
    np.testing.assert_allclose(kernel_fn(x1, x2, "ntk", pattern=(p1, p2), batch_size=2),
                               whole, rtol=1e-12)
    # the same inputs as x2 = None, in blocks (the mirrored blocks use the same graphs)
    same = kernel_fn(x1, None, "ntk", pattern=(p1, None), batch_size=2)
    np.testing.assert_allclose(same[:, :2], np.asarray(
        kernel_fn(x1, x1[:2], "ntk", pattern=(p1, p1[:2]), batch_size=2)), rtol=1e-12)


@pytest.mark.slow
def test_patterns_follow_their_inputs_through_index_jit_and_none():
    x1, x2 = jnp.asarray(_x((4, 3, 2), 1)), jnp.asarray(_x((2, 3, 2), 2))
    p1, p2 = jnp.asarray(_graphs(4, 3, 3)), jnp.asarray(_graphs(2, 3, 4))
    kernel_fn = _gnn()
    # an Index on the batch keeps inputs 1: and their graphs
    np.testing.assert_allclose(
        _gnn(stax.Index(stax.Slice[1:]))(x1, x2, "ntk", pattern=(p1, p2)),
        kernel_fn(x1[1:], x2[1:], "ntk", pattern=(p1[1:], p2[1:])), rtol=1e-12)
    jitted = jax.jit(lambda a, p: kernel_fn(a, None, "ntk", pattern=(p, p)))
    np.testing.assert_allclose(jitted(x1, p1), kernel_fn(x1, None, "ntk", pattern=(p1, None)),
                               rtol=1e-12)
    # pattern=None or (None, None): aggregation is the identity, as apply_fn's pattern=None
    identity = stax.serial(stax.Dense(4, W_std=1.2, b_std=0.1), stax.Relu(),
                           stax.GlobalAvgPool())[2]
    for pattern in (None, (None, None)):
        np.testing.assert_allclose(kernel_fn(x1, x2, "ntk", pattern=pattern),
                                   identity(x1, x2, "ntk"), rtol=1e-12)


@pytest.mark.slow
def test_aggregate_axes_other_than_batch_first_channels_last():
    """``channel_axis=1``: the inputs are moved, the kernel is that of the moved inputs."""
    x1, x2 = _x((3, 5, 2), 1), _x((2, 5, 2), 2)
    p1, p2 = _graphs(3, 5, 3), _graphs(2, 5, 4)
    _, apply_c, kernel_c = stax.serial(stax.Aggregate(channel_axis=1),
                                       stax.Aggregate(channel_axis=1))
    _, apply_d, kernel_d = stax.serial(stax.Aggregate(), stax.Aggregate())
    nchw = lambda x: np.moveaxis(x, -1, 1)  # noqa: E731
    np.testing.assert_allclose(kernel_c(nchw(x1), nchw(x2), "nngp", pattern=(p1, p2)),
                               kernel_d(x1, x2, "nngp", pattern=(p1, p2)), rtol=1e-12)
    np.testing.assert_allclose(apply_c((None, None), nchw(x1), pattern=p1),
                               nchw(apply_d((None, None), x1, pattern=p1)), rtol=1e-12)


# ----------------------------------------------------------------------------------------
# bad input: named, plain errors


def test_bad_patterns_are_refused_naming_the_argument():
    x1, x2 = _x((3, 4, 2)), _x((2, 4, 2), 1)
    kernel_fn = stax.serial(stax.Dense(3), stax.Aggregate())[2]
    good1, good2 = _graphs(3, 4, 0), _graphs(2, 4, 1)
    with pytest.raises(ValueError, match=r"pattern\[0\] \(after to_dense\) must have shape .*"
                                         r"\(3, 4, 4\), got \(3, 5, 5\)"):
        kernel_fn(x1, x2, "nngp", pattern=(_graphs(3, 5, 0), good2))
    with pytest.raises(ValueError, match=r"pattern\[1\] has leading \(batch\) axis of size 3"):
        kernel_fn(x1, x2, "nngp", pattern=(good1, good1))
    with pytest.raises(TypeError, match="pattern must be a pair"):
        kernel_fn(x1, x2, "nngp", pattern=good1)
    with pytest.raises(ValueError, match="needs both graphs or neither"):
        kernel_fn(x1, x2, "nngp", pattern=(good1, None))
    with pytest.raises(ValueError, match=r"x2 is None .* pattern\[1\] must be None or "
                                         r"pattern\[0\]"):
        kernel_fn(x1, None, "nngp", pattern=(good1, _graphs(3, 4, 9)))
    with pytest.raises(ValueError, match=r"pattern \(after to_dense\) must have shape"):
        stax.Aggregate()[1]((), x1, pattern=_graphs(3, 3, 0))
    with pytest.raises(NotImplementedError, match=r"pattern=\(<array of shape \(3, 4, 4\)>"):
        stax.serial(stax.Dense(3), stax.Relu())[2](x1, x2, pattern=(good1, good2))
    sparse = stax.Aggregate(implementation="SPARSE")[1]
    with pytest.raises(TypeError, match="integer edge list"):
        sparse((), x1, pattern=np.zeros((3, 4, 2)))
    with pytest.raises(ValueError, match=r"shape \(N, n_edges, K, 2\) = \(3, n_edges, 1, 2\)"):
        sparse((), x1, pattern=np.zeros((2, 4, 2), int))


def test_bad_layer_arguments_are_refused_naming_the_argument():
    with pytest.raises(ValueError, match="implementation must be 'DENSE' or 'SPARSE'"):
        stax.Aggregate(implementation="COO")
    with pytest.raises(TypeError, match="to_dense must be callable"):
        stax.Aggregate(to_dense=3)
    with pytest.raises(TypeError, match="aggregate_axis must be an int"):
        stax.Aggregate(aggregate_axis=1.5)
    with pytest.raises(ValueError, match="aggregate_axis=2 includes the channel axis"):
        stax.Aggregate(aggregate_axis=2)[0](None, (3, 4, 2))
    with pytest.raises(ValueError, match="aggregate_axis 5 is out of range"):
        stax.Aggregate(aggregate_axis=5)[0](None, (3, 4, 2))
    mixed = stax.serial(stax.Dense(3), stax.Aggregate(channel_axis=1))[2]
    with pytest.raises(ValueError, match=r"declared batch_axis=0, channel_axis=1, but its input "
                                         r"activations \(shape \(3, 4, 3\)\) have .* channel "
                                         r"axis at 2"):
        mixed(np.ones((3, 4, 2)))
    with pytest.raises(ValueError, match="padding must be 'VALID' or 'SAME'"):
        stax.ConvTranspose(3, (2,), padding="FULL")
    with pytest.raises(ValueError, match="strides"):
        stax.ConvTranspose(3, (2, 2), strides=(1,))
    with pytest.raises(NotImplementedError, match="channels-last"):
        stax.ConvTranspose(3, (2, 2), padding="CIRCULAR",
                           dimension_numbers=("NCHW", "OIHW", "NCHW"))
    with pytest.raises(ValueError, match=r"s must be a pair of positive integers"):
        stax.ConvTranspose(3, (2,), parameterization="standard", s=(2, 0))
    with pytest.raises(ValueError, match="out_chan"):
        stax.ConvTranspose(0, (2,))
    with pytest.raises(ValueError, match="rank 3"):
        stax.ConvTranspose(3, (2,))[2](_x((2, 4, 4, 1)))


# ----------------------------------------------------------------------------------------
# neural-tangents 0.6.5: golden file and live


def _reference_module():
    sys.path.insert(0, ROOT)
    try:
        import reference.make_stax_names3_golden as module
    finally:
        sys.path.remove(ROOT)
    return module


NAMES, SPECS, ARRAYS, NT = load_golden(GOLDEN)
#: run by default (each kernel case costs XLA compilations); the rest are `slow`
QUICK = ("aggregate_gnn_x2", "convt_2d_circular_x2", "apply_aggregate_sparse_2d",
         "apply_convt_2d_circular")


def _check(index, spec, arrays, reference, build):
    init_fn, apply_fn, kernel_fn = build(stax, spec["layers"])
    arr = lambda name: None if name is None else arrays[name]  # noqa: E731
    if spec["kind"] == "apply":
        x = arr(spec["x"])
        params = tuple(arr(p) for p in spec["params"])
        kwargs = {} if spec["pattern"] is None else {"pattern": arr(spec["pattern"])}
        out = np.asarray(apply_fn(params, x, **kwargs))
        theirs = reference[f"{index}/out"]
        assert out.shape == theirs.shape
        np.testing.assert_allclose(out, theirs, rtol=RTOL, atol=RTOL * np.max(np.abs(theirs)))
        shape, ours = init_fn(jax.random.PRNGKey(0), x.shape)
        assert tuple(shape) == tuple(reference[f"{index}/init_shape"])
        for j, p in enumerate(ours):  # a bias (C,) here, (1, .., 1, C) there: the same draws
            want = tuple(reference[f"{index}/param_shape_{j}"])
            got = () if p is None else p.shape
            assert int(np.prod(got)) == int(np.prod(want)) and got[-1:] == want[-1:], (got, want)
        return
    kwargs = {} if spec["pattern"] is None else {
        "pattern": tuple(arr(p) for p in spec["pattern"])}
    get = tuple(spec["get"])
    for name, value in zip(get, kernel_fn(arr(spec["x1"]), arr(spec["x2"]), get=get,
                                          **kwargs)):
        assert_kernel_close(value, reference[f"{index}/{name}"], name, spec["x2"] is None,
                            RTOL, RTOL_SELF_NTK, spec["layers"])


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
    rng = np.random.RandomState(2026)
    arrays = {}
    for key, value in ARRAYS.items():  # fresh values of the same kinds (edge lists stay ints)
        if np.issubdtype(value.dtype, np.integer):
            fresh = rng.randint(0, 2, size=value.shape) * (value >= 0) + (value < 0) * value
        elif set(np.unique(value)) <= {0.0, 1.0}:
            fresh = (rng.rand(*value.shape) < 0.5).astype(value.dtype)
        else:
            fresh = rng.randn(*value.shape)
        arrays[key] = fresh
    for a, b in (("gc", "g"), ("gb", "g"), ("At", "A")):  # layouts of the same arrays
        for i in "12":
            if a == "gc":
                arrays[a + i] = np.moveaxis(arrays[b + i], -1, 1)
            elif a == "gb":
                arrays[a + i] = np.moveaxis(arrays[b + i], 0, 1)
            else:
                arrays[a + i] = np.swapaxes(arrays[b + i], 1, 2)
    reference = module.run_reference(SPECS, arrays)
    for i, spec in enumerate(SPECS):
        _check(i, spec, arrays, reference, module.build)
