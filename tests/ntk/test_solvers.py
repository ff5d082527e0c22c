"""Solvers checked against numpy's direct solves (float64)."""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk import solvers


def _psd(n, rank=None, seed=0, jitter=0.0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, rank or n))
    return jnp.asarray(a @ a.T / a.shape[1] + jitter * np.eye(n))


def _rbf(x1, x2, lengthscale=1.0):
    d2 = jnp.sum(x1**2, 1)[:, None] + jnp.sum(x2**2, 1)[None] - 2 * x1 @ x2.T
    return jnp.exp(-jnp.maximum(d2, 0.0) / (2 * lengthscale**2))


def test_cholesky_matches_direct_solve():
    k = _psd(40, seed=1)
    b = jnp.asarray(np.random.default_rng(2).normal(size=(40, 3)))
    x = solvers.cholesky_solve(k, b, diag_reg=1e-3)
    ref = np.linalg.solve(np.asarray(k) + 1e-3 * np.eye(40), np.asarray(b))
    np.testing.assert_allclose(x, ref, rtol=1e-9, atol=1e-9)


def test_cholesky_adaptive_jitter_warns_and_stays_finite():
    k = _psd(30, rank=5, seed=3)  # rank 5: singular
    b = k @ jnp.ones((30, 2))  # consistent right-hand side in the range of K
    with pytest.warns(solvers.JitterWarning, match="jitter"):
        chol = solvers.cholesky_factor(k)
    assert chol.jitter > 0
    x = solvers.cho_solve(chol, b)
    assert np.all(np.isfinite(np.asarray(x)))
    np.testing.assert_allclose(k @ x, b, atol=1e-5 * float(jnp.max(jnp.abs(b))))


def test_cholesky_no_warning_when_not_needed():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        chol = solvers.cholesky_factor(_psd(10, seed=4, jitter=0.1))
    assert chol.jitter == 0.0


def test_cholesky_rejects_indefinite():
    k = jnp.diag(jnp.array([1.0, 2.0, -1.0]))
    with pytest.raises(ValueError, match="not positive semi-definite"):
        solvers.cholesky_factor(k)


@pytest.mark.parametrize("bad,match", [
    (jnp.array([[1.0, 2.0], [0.0, 1.0]]), "not symmetric"),
    (jnp.array([[1.0, jnp.nan], [jnp.nan, 1.0]]), "non-finite"),
    (jnp.ones((2, 3)), "square"),
    (jnp.ones((2, 2, 2)), "2-D"),
])
def test_bad_kernels_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        solvers.cholesky_solve(bad, jnp.ones((bad.shape[0],)))


def test_bad_targets_and_ridge_raise():
    k = _psd(5, jitter=1.0)
    with pytest.raises(ValueError, match=r"leading dimension 5.*\(4, 2\)"):
        solvers.cholesky_solve(k, jnp.ones((4, 2)))
    with pytest.raises(ValueError, match="diag_reg"):
        solvers.cholesky_solve(k, jnp.ones((5,)), diag_reg=-1.0)
    with pytest.raises(ValueError, match="diag_reg"):
        solvers.conjugate_gradient(k, jnp.ones((5,)), diag_reg=-1.0)
    with pytest.raises(TypeError):
        solvers.cholesky_solve([[1.0]], jnp.ones((1,)))


def test_cholesky_under_jit():
    k = _psd(8, seed=5, jitter=0.5)
    b = jnp.ones((8, 2))
    x = jax.jit(lambda k, b: solvers.cho_solve(solvers.cholesky_factor(k, 0.1), b))(k, b)
    np.testing.assert_allclose(x, np.linalg.solve(np.asarray(k) + 0.1 * np.eye(8), b),
                               rtol=1e-10)


def test_cg_matches_cholesky():
    k = _psd(60, seed=6)
    b = jnp.asarray(np.random.default_rng(7).normal(size=(60, 4)))
    ref = solvers.cholesky_solve(k, b, diag_reg=0.05)
    res = solvers.conjugate_gradient(k, b, diag_reg=0.05, tol=1e-12)
    assert bool(res.converged)
    assert np.max(np.asarray(res.residual)) < 1e-10
    np.testing.assert_allclose(res.x, ref, rtol=1e-8, atol=1e-9)
    # the same through a matvec closure, and a 1-D right-hand side
    res1 = solvers.conjugate_gradient(lambda v: k @ v, b[:, 0], diag_reg=0.05, tol=1e-12, n=60)
    np.testing.assert_allclose(res1.x, ref[:, 0], rtol=1e-8, atol=1e-9)


def test_block_kernel_is_the_dense_kernel():
    x = jnp.asarray(np.random.default_rng(8).normal(size=(103, 3)))
    op = solvers.BlockKernel(_rbf, x, block_size=16)
    kd = _rbf(x, x)
    v = jnp.asarray(np.random.default_rng(9).normal(size=(103, 2)))
    np.testing.assert_allclose(op.matvec(v), kd @ v, rtol=1e-12, atol=1e-12)
    idx = jnp.array([0, 5, 102])
    np.testing.assert_allclose(op.columns(idx), kd[:, idx], rtol=1e-12)
    np.testing.assert_allclose(op.diagonal(), jnp.diagonal(kd), rtol=1e-12)


@pytest.mark.slow
def test_nystrom_pcg_matrix_free_matches_cholesky_and_beats_cg():
    rng = np.random.default_rng(10)
    x = jnp.asarray(rng.normal(size=(600, 4)))
    y = jnp.asarray(np.sin(np.asarray(x) @ np.ones(4))[:, None] + 0.1 * rng.normal(size=(600, 1)))
    op = solvers.BlockKernel(lambda a, b: _rbf(a, b, 2.0), x, block_size=256)
    ridge = 1e-4
    ref = solvers.cholesky_solve(_rbf(x, x, 2.0), y, diag_reg=ridge)
    pcg = solvers.nystrom_pcg(op, y, diag_reg=ridge, rank=150, key=jax.random.PRNGKey(1),
                              tol=1e-10)
    assert bool(pcg.converged)
    np.testing.assert_allclose(pcg.x, ref, rtol=1e-6, atol=1e-6 * float(jnp.max(jnp.abs(ref))))
    # plain CG needs ~2000 steps here (measured); after 5x the preconditioned count it is
    # still far from tol
    cg = solvers.conjugate_gradient(op, y, diag_reg=ridge, tol=1e-10,
                                    maxiter=5 * int(pcg.iterations))
    assert not bool(cg.converged)
    assert float(jnp.max(cg.residual)) > 1e3 * float(jnp.max(pcg.residual))


def test_nystrom_pcg_dense_rank_checks():
    k = _psd(20, seed=11)
    with pytest.raises(ValueError, match="rank"):
        solvers.nystrom_pcg(k, jnp.ones(20), diag_reg=1e-2, rank=0)
    res = solvers.nystrom_pcg(k, jnp.ones(20), diag_reg=1e-2, rank=20, tol=1e-12)
    np.testing.assert_allclose(res.x, solvers.cholesky_solve(k, jnp.ones(20), 1e-2), rtol=1e-8)


@pytest.mark.slow
def test_nystrom_pcg_solves_n_50000_without_forming_k():
    """N = 50,000 RBF kernel ridge regression: K would be 20 GB in float64; the solver only
    holds (N, rank) columns and (block, N) row blocks. Checked by an independent matrix-free
    residual."""
    n = 50_000
    rng = np.random.default_rng(12)
    x = jnp.asarray(rng.normal(size=(n, 6)))
    y = jnp.asarray(np.sin(np.asarray(x) @ np.ones(6) / 2)[:, None])
    op = solvers.BlockKernel(lambda a, b: _rbf(a, b, 3.0), x, block_size=512)
    ridge = 1e-2
    res = solvers.nystrom_pcg(op, y, diag_reg=ridge, rank=500, key=jax.random.PRNGKey(0),
                              tol=1e-6, maxiter=300)
    assert bool(res.converged), (int(res.iterations), res.residual)
    resid = op.matvec(res.x) + ridge * res.x - y
    assert float(jnp.linalg.norm(resid) / jnp.linalg.norm(y)) < 1e-5
