"""Neural tangent kernels on current JAX.

Empirical kernels of any ``apply_fn(params, x)`` (:mod:`ntk.empirical`), analytic
infinite-width kernels (:mod:`ntk.stax`), cheap approximations (:mod:`ntk.approx`),
kernel regression and training dynamics (:mod:`ntk.predict`), solvers and diagnostics;
:func:`linearize` / :func:`taylor_expand` expand any model in its parameters.
"""
from ntk.empirical import (
    Implementation,
    empirical_kernel_fn,
    empirical_nngp_fn,
    empirical_ntk_fn,
    empirical_ntk_vp_fn,
)
from ntk.batching import batch
from ntk.linearize import linearize, taylor_expand
from ntk.monte_carlo import monte_carlo_kernel_fn
from ntk import approx, budget, diagnostics, predict, solvers, stax  # noqa: E402,F401

__all__ = [
    "approx",
    "batch",
    "budget",
    "diagnostics",
    "predict",
    "solvers",
    "stax",
    "Implementation",
    "empirical_kernel_fn",
    "empirical_nngp_fn",
    "empirical_ntk_fn",
    "empirical_ntk_vp_fn",
    "linearize",
    "monte_carlo_kernel_fn",
    "taylor_expand",
]
__version__ = "0.1.0"
