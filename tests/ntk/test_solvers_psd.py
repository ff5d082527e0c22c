"""Solvers that need a PSD kernel refuse, or warn about, one that is not.

A kernel with eigenvalue ``-0.49 lambda_max`` (what a deep float32 kernel once returned
without a warning) into every solver that assumes ``K >= 0``: a ``ValueError`` naming the
smallest eigenvalue (dense solvers, ``gp_inference``, ``gradient_descent_mse``,
``max_learning_rate``, the Nystrom preconditioner) or an ``IndefiniteKernelWarning`` (CG,
which cannot afford an eigendecomposition and certifies indefiniteness by negative
curvature). Kernels that are PSD up to round-off pass silently.
"""
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

from ntk import predict, solvers


def kernel_with_spectrum(evals, seed=0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((len(evals), len(evals))))
    k = q @ np.diag(evals) @ q.T
    return jnp.asarray((k + k.T) / 2)


INDEFINITE = [1.0, 0.8, 0.5, 0.3, 0.1, -0.49]
ROUND_OFF = [1.0, 0.8, 0.5, 0.3, 0.1, -1e-13]  # PSD up to float64 round-off
Y = jnp.asarray(np.random.default_rng(1).standard_normal((6, 2)))

REFUSING = {
    "gp_inference": lambda k: predict.gp_inference(k, Y)(),
    "gradient_descent_mse": lambda k: predict.gradient_descent_mse(k, Y)(t=1.0),
    "max_learning_rate": lambda k: predict.max_learning_rate(k),
    "cholesky_solve": lambda k: solvers.cholesky_solve(k, Y),
    "nystrom_pcg": lambda k: solvers.nystrom_pcg(k, Y, diag_reg=1e-3, rank=3),
}


@pytest.mark.parametrize("solver", REFUSING)
def test_indefinite_kernels_are_refused(solver):
    with pytest.raises(ValueError, match="positive semi-definite.*smallest eigenvalue"):
        REFUSING[solver](kernel_with_spectrum(INDEFINITE))


def test_conjugate_gradient_warns_on_negative_curvature():
    with pytest.warns(solvers.IndefiniteKernelWarning, match="not positive semi-definite"):
        solvers.conjugate_gradient(kernel_with_spectrum(INDEFINITE), Y)


@pytest.mark.parametrize("solver", list(REFUSING) + ["conjugate_gradient"])
def test_round_off_is_not_an_indefinite_kernel(solver):
    run = REFUSING.get(solver, lambda k: solvers.conjugate_gradient(k, Y, diag_reg=1e-3))
    with warnings.catch_warnings():
        warnings.simplefilter("error", solvers.IndefiniteKernelWarning)
        warnings.simplefilter("ignore", solvers.JitterWarning)
        run(kernel_with_spectrum(ROUND_OFF))
