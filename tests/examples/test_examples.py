"""The examples run on tiny data, and what each prints is true.

Each example's ``main(argv)`` is called in-process (the repository root is on ``sys.path``
under pytest, so ``examples`` imports as a package) with sizes that take a fraction of a
second, and its returned numbers are checked against something it does not compute itself:
kernel regression by ``np.linalg.solve`` on the kernels, an explicit Jacobian contraction,
a hand-derived kernel, and the width trend the linearization theorems bound.

Each example compiles its own programs (a few CPU-seconds even on tiny data), so the default
run checks ``infinite_fcn`` and that every example imports and documents ``--quick``; the
other five run in ``make test-all`` (``-m slow``).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from examples import attention, elementwise, empirical_ntk, function_space, infinite_fcn
from examples import weight_space


def _kernel_regression(kernel_fn, x_train, y_train, x_test, diag_reg):
    """``K_td (K_dd + lambda tr(K_dd) / n I)^{-1} Y`` for NNGP and NTK, by a dense solve."""
    out = {}
    train_train = kernel_fn(x_train, None, ("nngp", "ntk"))  # the calls the ensemble makes
    test_train = kernel_fn(x_test, x_train, ("nngp", "ntk"))
    for g in ("nngp", "ntk"):
        k_dd, k_td = np.asarray(getattr(train_train, g)), np.asarray(getattr(test_train, g))
        n = len(k_dd)
        out[g] = k_td @ np.linalg.solve(k_dd + diag_reg * np.trace(k_dd) / n * np.eye(n),
                                        y_train)
    return out


def _falls_with_width(rows, key):
    """Log-log slope of ``key`` against width over ``rows`` (ordered by width)."""
    widths = np.array([r["width"] for r in rows], float)
    values = np.array([r[key] for r in rows])
    return np.polyfit(np.log(widths), np.log(values), 1)[0]


def test_infinite_fcn_is_kernel_regression(capsys):
    """The ensemble at t = None equals NNGP / NTK ridge regression by np.linalg.solve."""
    out = infinite_fcn.main(["--n-train", "24", "--n-test", "8"])
    assert "NNGP  test accuracy" in capsys.readouterr().out
    want = _kernel_regression(infinite_fcn.network()[2], out["x_train"], out["y_train"],
                              out["x_test"], out["diag_reg"])
    np.testing.assert_allclose(out["fx_nngp"], want["nngp"], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(out["fx_ntk"], want["ntk"], rtol=1e-8, atol=1e-12)


@pytest.mark.slow  # compilation: ~4-10 CPU-s on 2 cores (make test-all)
def test_function_space_prediction_approaches_the_network_with_width():
    """The trained network's distance to the closed-form dynamics of its empirical NTK falls
    with width at least like the width^-1/2 the theorems allow (with slack: slope < -0.35),
    while the outputs themselves move by much more than that distance."""
    out = function_space.main(["--n-train", "16", "--n-test", "8", "--widths", "32,512",
                               "--steps", "60"])
    rows = out["rows"]
    assert _falls_with_width(rows, "rmse_test") < -0.35, rows
    assert rows[-1]["rmse_test"] < 0.1 * rows[-1]["moved_test"], rows[-1]


@pytest.mark.slow  # compilation: ~4-10 CPU-s on 2 cores (make test-all)
def test_weight_space_linearization_approaches_the_network_with_width():
    """SGD with momentum on cross-entropy: network and linearization end closer as the width
    grows (slope < -0.35 against the width^-1/2 bound), both having moved."""
    out = weight_space.main(["--n-train", "32", "--n-test", "16", "--widths", "32,512",
                             "--epochs", "2", "--batch-size", "16"])
    rows = out["rows"]
    assert _falls_with_width(rows, "rmse_test") < -0.35, rows
    assert rows[-1]["rmse_test"] < 0.1 * rows[-1]["moved_test"], rows[-1]


@pytest.mark.slow  # compilation: ~4-10 CPU-s on 2 cores (make test-all)
def test_empirical_ntk_implementations_agree_with_a_jacobian_contraction():
    """The three implementations give the same (N2, N1, O, O) kernel, equal to d f(x2)/dp
    d f(x1)/dp^T contracted leaf by leaf from jax.jacrev, to float64 rounding ('auto' runs
    one of them)."""
    out = empirical_ntk.main(["--channels", "2", "--size", "7", "--n1", "2", "--n2", "2",
                              "--outputs", "3", "--implementations", "jacobian,ntvp,structured"])
    apply_fn, params = out["apply_fn"], out["params"]

    def jac(x):
        return jax.tree_util.tree_leaves(jax.jacrev(apply_fn)(params, x))

    want = sum(jnp.einsum("aoP,bpP->abop", a.reshape(a.shape[:2] + (-1,)),
                          b.reshape(b.shape[:2] + (-1,)))
               for a, b in zip(jac(out["x2"]), jac(out["x1"])))
    scale = float(jnp.max(jnp.abs(want)))
    for name, k in out["kernels"].items():
        assert k.shape == (2, 2, 3, 3), name
        assert float(np.max(np.abs(k - np.asarray(want)))) < 1e-10 * scale, name
    assert out["max_relative_difference"] < 1e-10


@pytest.mark.slow  # compilation: ~4-10 CPU-s on 2 cores (make test-all)
def test_elementwise_kernels_match_closed_forms():
    """The NTK derived by autodiff from the normalized exponential's NNGP map equals the
    hand-derived ExpNormalized to rounding; GELU by quadrature approaches its closed form as
    the degree grows."""
    out = elementwise.main(["--n1", "4", "--n2", "5", "--degrees", "5,25"])
    assert max(out["exp_normalized"].values()) < 1e-12
    for g in ("nngp", "ntk"):
        assert out["gelu"][25][g] < 1e-3
        assert out["gelu"][25][g] < 0.1 * out["gelu"][5][g]


@pytest.mark.slow  # compilation: ~4-10 CPU-s on 2 cores (make test-all)
def test_attention_is_kernel_regression():
    """Infinite-width attention at t = None is NNGP / NTK ridge regression on its kernels."""
    out = attention.main(["--n-train", "8", "--n-test", "4", "--length", "5"])
    assert np.any(out["x_train"] == attention.PAD)  # padded sentences of several lengths
    want = _kernel_regression(attention.kernel_fn(), out["x_train"], out["y_train"],
                              out["x_test"], out["diag_reg"])
    np.testing.assert_allclose(out["fx_nngp"], want["nngp"], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(out["fx_ntk"], want["ntk"], rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("module", [attention, elementwise, empirical_ntk, function_space,
                                    infinite_fcn, weight_space])
def test_quick_option_and_help(module, capsys):
    """Every example documents ``--quick`` in its command-line help."""
    with pytest.raises(SystemExit):
        module.main(["--help"])
    assert "--quick" in capsys.readouterr().out
