"""Kernels that must be PSD are PSD or warn.

Gram matrices (``x2 = None``) of near-duplicate inputs -- four inputs and the same four plus
``1e-3`` noise, so the exact Gram matrix is nearly singular -- through deep float32 networks
``Dense -> act`` repeated 50 or 100 times, ``b_std = 0.05``. In the chaotic phase
(``W_std = 1.5, 2.0`` with Erf / Tanh) rounding is amplified layer after layer; with ReLU /
GELU at ``W_std = 2`` the variances grow like ``(W_std^2 / 2)^depth`` and leave float32's
range. Each returned NNGP and NTK must be PSD to round-off,

    lambda_min >= -N eps lambda_max,   N = 8, eps = float32's machine epsilon

(Weyl: an error ``E`` moves eigenvalues by at most ``|E|_2 <= N max|E_ij|``; a float32
kernel computed to a few ulps per entry is PSD to ``N eps``), or the call must warn.
Whole grid (``-m slow``): 4 activations x 3 ``W_std`` x 2 depths x 2 input sets x
(NNGP, NTK) = 96 Gram matrices; 12 come back non-finite (ReLU / GELU at ``W_std = 2``) and
all 12 warn, the other 84 are PSD to ``N eps`` (smallest ``lambda_min / lambda_max`` among
those returned without a warning: about -5e-8), and 28 of them warn because of the rounding
bound (chaotic Erf / Tanh). The networks use ``stax.repeat`` (compiled once per layer); a
few are also checked unrolled (``serial``), the form the issue was found with.
"""
import itertools
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

from ntk import stax

N = 8
TOLERANCE = N * float(np.finfo(np.float32).eps)
ACTIVATIONS = {"erf": stax.Erf, "tanh": stax.Tanh, "relu": stax.Relu, "gelu": stax.Gelu}
GRID = list(itertools.product(ACTIVATIONS, (1.0, 1.5, 2.0), (50, 100)))
QUICK = [("erf", 1.5, 50), ("relu", 2.0, 100), ("relu", 1.0, 50)]


def near_duplicates(seed: int, n: int = N, dim: int = 16):
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n // 2, dim))
    return jnp.asarray(np.concatenate([base, base + 1e-3 * rng.standard_normal(base.shape)]),
                       jnp.float32)


def deep_network(activation: str, w_std: float, depth: int, unrolled: bool = False):
    def block():
        return stax.serial(stax.Dense(512, W_std=w_std, b_std=0.05), ACTIVATIONS[activation]())
    body = [block() for _ in range(depth)] if unrolled else [block(),
                                                              stax.repeat(block(), depth - 1)]
    return stax.serial(*body, stax.Dense(1, W_std=w_std, b_std=0.05))[2]


def smallest_relative_eigenvalue(k) -> float:
    """``lambda_min / lambda_max`` of the symmetric part (``-inf`` when not finite)."""
    k = np.asarray(k, np.float64)
    if not np.all(np.isfinite(k)):
        return -np.inf
    evals = np.linalg.eigvalsh((k + k.T) / 2)
    return float(evals[0] / evals[-1])


def kernels_with_warnings(kernel_fn, x, get):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = kernel_fn(x, None, get)
    return out, [w for w in caught if issubclass(w.category, RuntimeWarning)]


def check_psd_or_warn(kernel_fn, seed):
    """Assert the property for one network and input set; return ``(relative lambda_min per
    kernel, warned)``."""
    (nngp, ntk), warned = kernels_with_warnings(kernel_fn, near_duplicates(seed),
                                                ("nngp", "ntk"))
    rel = [smallest_relative_eigenvalue(k) for k in (nngp, ntk)]
    for name, r in zip(("nngp", "ntk"), rel):
        assert warned or r >= -TOLERANCE, (name, r)
    return rel, bool(warned)


@pytest.mark.parametrize("activation,w_std,depth", QUICK)
def test_deep_float32_gram_matrices_are_psd_or_warn(activation, w_std, depth):
    kernel_fn = deep_network(activation, w_std, depth)
    rel, warned = check_psd_or_warn(kernel_fn, seed=0)
    if w_std == 1.0:  # the ordered phase is computed to round-off: no false alarm
        assert not warned and min(rel) >= -TOLERANCE, rel
    else:
        assert warned, rel
    # the NNGP alone is bounded like the NNGP with the NTK (the NTK carries the bound)
    _, warned_nngp = kernels_with_warnings(kernel_fn, near_duplicates(0), "nngp")
    assert bool(warned_nngp) == warned


@pytest.mark.slow
def test_deep_float32_gram_matrices_are_psd_or_warn_on_the_grid():
    results = []
    for activation, w_std, depth in GRID:
        kernel_fn = deep_network(activation, w_std, depth)
        for seed in (0, 1):
            rel, warned = check_psd_or_warn(kernel_fn, seed)
            results += [(r, warned) for r in rel]
    assert len(results) == 96
    not_psd = [r for r, _ in results if r < -TOLERANCE]
    assert all(w for r, w in results if r < -TOLERANCE)
    assert not_psd  # the grid does reach kernels float32 cannot hold


@pytest.mark.slow
@pytest.mark.parametrize("activation,w_std,depth", [("erf", 1.5, 50), ("relu", 2.0, 100),
                                                    ("gelu", 2.0, 50)])
def test_unrolled_deep_networks_are_psd_or_warn(activation, w_std, depth):
    check_psd_or_warn(deep_network(activation, w_std, depth, unrolled=True), seed=0)
