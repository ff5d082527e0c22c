"""Approximate eNTKs checked against the full eNTK (a leaf-by-leaf jacrev reference and
ntk.empirical_ntk_fn), and the sketches' statistics over keys (fixed seeds)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk
from ntk import approx

O = 4


def _init(key, sizes):
    params = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        key, k1, k2 = jax.random.split(key, 3)
        params.append({"w": jax.random.normal(k1, (a, b)), "b": jax.random.normal(k2, (b,))})
    return params


def _apply(params, x):
    """NTK-parametrized MLP, tanh hidden layers."""
    h = x
    for i, p in enumerate(params):
        h = h @ p["w"] / jnp.sqrt(p["w"].shape[0])
        h = h + 0.5 * jnp.broadcast_to(p["b"], h.shape)
        if i < len(params) - 1:
            h = jnp.tanh(h)
    return h


@jax.jit
def _jacobian(params, x):
    """(N, O, P) per-logit Jacobian, leaves in tree_leaves order."""
    jac = jax.jacrev(_apply)(params, x)
    return jnp.concatenate([j.reshape(j.shape[0], j.shape[1], -1)
                            for j in jax.tree_util.tree_leaves(jac)], axis=-1)


@jax.jit
def _full_ntk(params, x1, x2):
    j1, j2 = _jacobian(params, x1), _jacobian(params, x2)
    return jnp.einsum("aip,bjp->abij", j1, j2)


def _rel(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


@pytest.fixture(scope="module")
def problem():
    params = _init(jax.random.PRNGKey(0), [5, 24, 16, O])
    rng = np.random.default_rng(0)
    x1 = jnp.asarray(rng.normal(size=(7, 5)))
    x2 = jnp.asarray(rng.normal(size=(4, 5)))
    return params, x1, x2, _full_ntk(params, x1, x2), _full_ntk(params, x1, x1)


def test_reference_matches_empirical_ntk_fn(problem):
    params, x1, x2, full, _ = problem
    emp = ntk.empirical_ntk_fn(_apply, trace_axes=(), vmap_axes=0)(x1, x2, params)
    np.testing.assert_allclose(emp, full, rtol=1e-10, atol=1e-12)


def test_pntk_is_the_mean_of_all_logit_pairs(problem):
    params, x1, x2, full, full11 = problem
    k = approx.pntk_fn(_apply)(x1, x2, params)  # per-example gradients
    np.testing.assert_allclose(k, full.sum((2, 3)) / O, rtol=1e-10)
    for implementation in ("jacobian", "structured"):  # via ntk.empirical_ntk_fn
        k_engine = approx.pntk_fn(_apply, implementation=implementation)(x1, x2, params)
        np.testing.assert_allclose(k_engine, full.sum((2, 3)) / O, rtol=1e-10)
    # blocked over examples, and x2=None
    k11 = approx.pntk_fn(_apply, implementation="gradients", batch_size=3)(x1, None, params)
    np.testing.assert_allclose(k11, full11.sum((2, 3)) / O, rtol=1e-10)
    lifted = approx.lift(k, O)
    assert lifted.shape == (7, 4, O, O)
    np.testing.assert_allclose(lifted[:, :, 1, 1], k)
    np.testing.assert_allclose(lifted[:, :, 0, 1], 0.0)


def test_trace_ntk_is_the_sum_of_diagonal_blocks(problem):
    params, x1, x2, full, full11 = problem
    k = approx.trace_ntk_fn(_apply)(x1, x2, params)
    np.testing.assert_allclose(k, jnp.einsum("abii->ab", full), rtol=1e-10)
    k_grad = approx.trace_ntk_fn(_apply, implementation="gradients")(x1, x2, params)
    np.testing.assert_allclose(k_grad, jnp.einsum("abii->ab", full), rtol=1e-10)
    mean_kernel = ntk.empirical_ntk_fn(_apply, vmap_axes=0)(x1, x2, params)  # a mean
    np.testing.assert_allclose(k, O * mean_kernel, rtol=1e-10)
    cos = approx.trace_ntk_fn(_apply, normalize=True)(x1, x2, params)
    d1 = jnp.einsum("aaii->a", full11)
    d2 = jnp.einsum("aaii->a", _full_ntk(params, x2, x2))
    np.testing.assert_allclose(cos, k / jnp.sqrt(jnp.outer(d1, d2)), rtol=1e-10)
    np.testing.assert_allclose(jnp.diagonal(approx.trace_ntk_fn(_apply, normalize=True)(
        x1, None, params)), 1.0, rtol=1e-12)


def test_lpntk_is_the_label_signed_mean(problem):
    params, x1, x2, full, _ = problem
    l1 = jnp.array([0, 1, 2, 3, 0, 1, 2])
    l2 = jnp.array([3, 3, 0, 1])
    k = approx.lpntk_fn(_apply)(x1, x2, params, labels1=l1, labels2=l2)
    s1 = 1 - 2 * jax.nn.one_hot(l1, O)
    s2 = 1 - 2 * jax.nn.one_hot(l2, O)
    np.testing.assert_allclose(k, jnp.einsum("ai,abij,bj->ab", s1, full, s2) / O, rtol=1e-10)
    with pytest.raises(ValueError, match=r"labels2` has 3 labels for 4 inputs"):
        approx.lpntk_fn(_apply)(x1, x2, params, labels1=l1, labels2=l2[:3])
    with pytest.raises(ValueError, match="labels2"):
        approx.lpntk_fn(_apply)(x1, x2, params, labels1=l1)


def test_sign_and_adam_kernels(problem):
    params, x1, x2, _, _ = problem
    g1 = _jacobian(params, x1).sum(1) / np.sqrt(O)
    g2 = _jacobian(params, x2).sum(1) / np.sqrt(O)
    ks = approx.sign_kernel_fn(_apply)(x1, x2, params)
    np.testing.assert_allclose(ks, jnp.sign(g1) @ jnp.sign(g2).T, rtol=1e-12)
    ka = approx.adam_kernel_fn(_apply)(x1, x2, params)
    np.testing.assert_allclose(ka, g1 @ jnp.sign(g2).T, rtol=1e-10)
    # a scalar chosen by a function of the outputs: the first logit
    k0 = approx.sign_kernel_fn(_apply, output=lambda fx: fx[0])(x1, x2, params)
    j1, j2 = _jacobian(params, x1)[:, 0], _jacobian(params, x2)[:, 0]
    np.testing.assert_allclose(k0, jnp.sign(j1) @ jnp.sign(j2).T, rtol=1e-12)
    full_sign = approx.sign_kernel_fn(_apply, output="each")(x1, x2, params)
    np.testing.assert_allclose(full_sign, jnp.einsum("aip,bjp->abij", jnp.sign(_jacobian(
        params, x1)), jnp.sign(_jacobian(params, x2))), rtol=1e-12)


def test_pntk_error_falls_like_inverse_sqrt_readout_width():
    """Mohamadi et al. 2023, Thm: |Theta - pNTK (x) I|_F / |Theta|_F = O(n^-1/2) at init."""
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(6, 8)))
    widths = [64, 256, 1024]
    errors = []
    for n in widths:
        errs = []
        for seed in range(3):
            params = _init(jax.random.PRNGKey(100 + seed), [8, n, 5])
            full = _full_ntk(params, x, x)
            p = approx.pntk_fn(_apply)(x, None, params)
            errs.append(_rel(approx.lift(p, 5), full))
        errors.append(np.mean(errs))
    slope = np.polyfit(np.log(widths), np.log(errors), 1)[0]
    assert -0.65 < slope < -0.35, (errors, slope)


@pytest.mark.parametrize("sketch", approx.SKETCHES)
def test_projection_applies_the_explicit_sketch(sketch):
    """The implicit, block-regenerated S equals sketch_matrix(...), across several chunks."""
    params = _init(jax.random.PRNGKey(2), [3, 5, 2])  # P = 32, chunks of 7 rows
    x = jnp.asarray(np.random.default_rng(2).normal(size=(4, 3)))
    key = jax.random.PRNGKey(3)
    s = approx.sketch_matrix(params, key, 16, sketch=sketch, chunk_size=7)
    assert s.shape == (32, 16)
    g = _jacobian(params, x).sum(1) / np.sqrt(2)
    phi = approx.projected_features_fn(_apply, 16, sketch=sketch, chunk_size=7)(x, params, key)
    np.testing.assert_allclose(phi, g @ s, rtol=1e-10, atol=1e-12)


def _slope(dims, errors):
    return np.polyfit(np.log(dims), np.log(errors), 1)[0]


# The fast SRHT by default, every sketch under ``make test-all``; each
# sketch's product with the gradients is checked exactly against its explicit matrix below.
@pytest.mark.parametrize("sketch", [s if s == "srht" else pytest.param(s, marks=pytest.mark.slow)
                                    for s in approx.SKETCHES])
def test_projected_kernel_is_unbiased_and_error_falls_like_inverse_sqrt_k(problem, sketch):
    """K_hat = G S S^T G^T for the pNTK gradients G: mean relative error ~ k^-1/2 and the
    mean over keys converges to G G^T (S from sketch_matrix, tied to the features above)."""
    params, x1, _, _, full11 = problem
    exact = full11.sum((2, 3)) / O
    g = _jacobian(params, x1).sum(1) / np.sqrt(O)  # (N, P)
    flat = [jnp.zeros(g.shape[1])]
    dims = [16, 64, 256]
    n_keys = 64
    errors, means = [], []
    for k in dims:
        keys = jax.random.split(jax.random.PRNGKey(k), n_keys)
        phi = jax.vmap(lambda kk: g @ approx.sketch_matrix(flat, kk, k, sketch=sketch,
                                                            chunk_size=256))(keys)
        kernels = jnp.einsum("sak,sbk->sab", phi, phi)
        errors.append(np.mean([_rel(kk, exact) for kk in kernels]))
        means.append(_rel(kernels.mean(0), exact))
    assert -0.6 < _slope(dims, errors) < -0.4, (sketch, errors)
    # unbiased: averaging over keys keeps shrinking the error, about like 1/sqrt(n_keys)
    ratio = np.mean(np.array(means) / np.array(errors))
    assert ratio < 2.5 / np.sqrt(n_keys), (sketch, errors, means)


def test_mean_over_many_keys_equals_the_full_entk(problem):
    """Per-logit projected features: E[phi_i(x1) . phi_j(x2)] = Theta_ij(x1, x2)."""
    params, x1, x2, full, _ = problem
    fn = approx.projected_kernel_fn(_apply, 64, sketch="gaussian", output="each")
    n_keys = 64
    keys = jax.random.split(jax.random.PRNGKey(7), n_keys)
    kernels = jax.vmap(lambda kk: fn(x1, x2, params, kk))(keys)
    assert kernels.shape == (n_keys,) + full.shape
    singles = np.array([_rel(kk, full) for kk in kernels])
    err = _rel(kernels.mean(0), full)
    assert err < 1.5 * np.sqrt(np.mean(singles**2)) / np.sqrt(n_keys), (err, singles.mean())


# The Gaussian sketch's second moment is textbook; it runs under ``make test-all``.
@pytest.mark.parametrize("sketch", [s if s != "gaussian" else pytest.param(s, marks=pytest.mark.slow)
                                    for s in approx.SKETCHES])
def test_sketch_second_moment_is_identity(sketch):
    """E[S S^T] = I_P: the mean over 2000 keys is within Monte Carlo error of I."""
    leaves = [jnp.zeros((3, 2)), jnp.zeros(5)]  # P = 11, two leaves, chunks of 4 rows
    keys = jax.random.split(jax.random.PRNGKey(11), 2000)
    ss = jax.vmap(lambda kk: (lambda s: s @ s.T)(
        approx.sketch_matrix(leaves, kk, 8, sketch=sketch, chunk_size=4)))(keys)
    mean, sem = ss.mean(0), ss.std(0) / np.sqrt(2000)
    assert np.all(np.abs(mean - np.eye(11)) <= 5 * sem + 1e-12), (mean, sem)
    np.testing.assert_allclose(mean, np.eye(11), atol=0.1)


def test_projected_memory_has_no_p_times_k_term():
    """XLA's own memory plan: temp buffers grow with P only by the per-example gradients,
    never by P x k (a stored sketch would add (P2 - P1) k 8 bytes)."""
    k, chunk, batch = 512, 2048, 8
    x = jnp.ones((batch, 16))

    def temp_bytes(width):
        params = _init(jax.random.PRNGKey(0), [16, width, width, 10])
        o = 10

        def block(prm, xb, key):
            g = approx._grads(_apply, prm, xb, jnp.zeros((batch, o)), "sum", o, {})
            return approx._sketch_grads(g, key, "rademacher", k, chunk, 4)

        compiled = jax.jit(block).lower(params, x, jax.random.PRNGKey(0)).compile()
        analysis = compiled.memory_analysis()
        if analysis is None:
            pytest.skip("backend gives no memory analysis")
        return analysis.temp_size_in_bytes, sum(v.size for v in jax.tree_util.tree_leaves(params))

    (t1, p1), (t2, p2) = temp_bytes(128), temp_bytes(512)
    growth = t2 - t1
    assert growth < 0.05 * (p2 - p1) * k * 8, (t1, t2, p1, p2)
    assert growth < 8 * batch * (p2 - p1) * 8  # a few copies of the per-example gradients


@pytest.mark.parametrize("n,per_example,budget,fixed", [
    (2000, 11_173_962 * 4, 6 * 2**30, 2 * 4096 * 1024 * 4 + 2000 * 1024 * 4),
    (10, 1000, 3500, 500),
    (10, 1000, 10**9, 0),
    (5, 10**9, 10**6, 0),
])
def test_plan_batch_is_the_largest_batch_within_the_budget(n, per_example, budget, fixed):
    b = approx.plan_batch(n, per_example, budget, fixed)
    assert 1 <= b <= n
    if b > 1:
        assert fixed + b * per_example <= budget
    if b < n:
        assert fixed + (b + 1) * per_example > budget
    assert approx.plan_batch(n, per_example, budget, fixed, batch_size=3) == min(3, n)


def test_projected_features_of_a_resnet18_sized_model_plan_within_the_default_budget():
    """N = 2000 projected features (k = 1024) of an 11.2M-parameter network: batches of
    gradients, one sketch block and the output fit the default budget; no P x k term."""
    p, k, n, itemsize = 11_173_962, 1024, 2000, 4
    budget = ntk.budget.default_memory_budget()
    chunk = approx._chunk(None, k)
    fixed = 2 * chunk * k * itemsize + n * k * itemsize
    b = approx._batch_size(None, n, 1, p, itemsize, None, 0, fixed)
    assert fixed + b * p * itemsize <= budget < p * k * itemsize
    assert b == min(n, (budget - fixed) // (p * itemsize))


@pytest.mark.parametrize("kind", ["pntk", "trace", "sign_each"])
def test_gram_recomputed_in_symmetric_blocks_under_a_small_budget(problem, kind):
    """A budget that holds neither side's gradients at once: blocks on and above the
    diagonal are computed, the others transposed; the kernel equals the unblocked one."""
    params, x1, _, _, full11 = problem
    tiny = 20_000  # bytes: a few examples' gradients (P = 612 float64 numbers)
    if kind == "pntk":
        make = lambda **kw: approx.pntk_fn(_apply, implementation="gradients", **kw)  # noqa
        expected = full11.sum((2, 3)) / O
    elif kind == "trace":
        make = lambda **kw: approx.trace_ntk_fn(_apply, implementation="gradients", **kw)  # noqa
        expected = jnp.trace(full11, axis1=2, axis2=3)
    else:
        make = lambda **kw: approx.sign_kernel_fn(_apply, output="each", **kw)  # noqa
        expected = make()(x1, None, params)
    k = make(memory_budget=tiny)(x1, None, params)
    np.testing.assert_allclose(k, expected, rtol=1e-10, atol=1e-12)


def test_bad_inputs(problem):
    params, x1, _, _, _ = problem
    with pytest.raises(ValueError, match="dim"):
        approx.projected_features_fn(_apply, 0)
    with pytest.raises(ValueError, match="dim"):
        approx.projected_kernel_fn(_apply, -3)
    with pytest.raises(TypeError, match="dim"):
        approx.projected_features_fn(_apply, 2.5)
    with pytest.raises(ValueError, match="sketch"):
        approx.projected_features_fn(_apply, 8, sketch="fourier")
    with pytest.raises(ValueError, match="output"):
        approx.sign_kernel_fn(_apply, output="max")
    with pytest.raises(TypeError, match="apply_fn"):
        approx.pntk_fn(None)
    with pytest.raises(ValueError, match="implementation"):
        approx.pntk_fn(_apply, implementation="fast")
    with pytest.raises(ValueError, match="num_outputs"):
        approx.lift(jnp.eye(2), 0)
    with pytest.raises(ValueError, match="batch axis"):
        approx.pntk_fn(_apply)(jnp.float64(1.0), None, params)
