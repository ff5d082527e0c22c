"""Diagnostics against independent formulas (explicit centering matrices, feature-space CKA)."""
import jax.numpy as jnp
import numpy as np
import pytest

from ntk import diagnostics


def _features(n=20, d=7, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


def test_alignment_matches_explicit_centering():
    x = _features()
    k = jnp.asarray(x @ x.T)
    y = np.random.default_rng(1).normal(size=(20, 3))
    h = np.eye(20) - np.ones((20, 20)) / 20
    kc, yc = h @ np.asarray(k) @ h, h @ (y @ y.T) @ h
    ref = np.sum(kc * yc) / (np.linalg.norm(kc) * np.linalg.norm(yc))
    assert float(diagnostics.kernel_alignment(k, jnp.asarray(y))) == pytest.approx(ref, rel=1e-10)
    ref_u = np.sum(np.asarray(k) * (y @ y.T)) / (np.linalg.norm(k) * np.linalg.norm(y @ y.T))
    assert float(diagnostics.kernel_alignment(k, jnp.asarray(y), centered=False)) == \
        pytest.approx(ref_u, rel=1e-10)
    # the target kernel is perfectly aligned with itself, at any scale
    yy = jnp.asarray(3.0 * y @ y.T)
    assert float(diagnostics.kernel_alignment(yy, jnp.asarray(y))) == pytest.approx(1.0, rel=1e-12)


def test_linear_cka_equals_feature_space_formula_and_invariances():
    x = _features(30, 5, 2)
    z = _features(30, 8, 3)
    xc, zc = x - x.mean(0), z - z.mean(0)
    ref = np.linalg.norm(zc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(zc.T @ zc))
    val = diagnostics.cka(jnp.asarray(x @ x.T), jnp.asarray(z @ z.T))
    assert float(val) == pytest.approx(ref, rel=1e-10)
    q, _ = np.linalg.qr(np.random.default_rng(4).normal(size=(5, 5)))
    xr = 2.5 * x @ q + 1.0  # rotation, isotropic scaling and a shift leave CKA at 1
    assert float(diagnostics.cka(jnp.asarray(x @ x.T), jnp.asarray(xr @ xr.T))) == \
        pytest.approx(1.0, rel=1e-10)


def test_kernel_distance():
    x = _features(15, 4, 5)
    k0 = jnp.asarray(x @ x.T)
    assert float(diagnostics.kernel_distance(k0, 7.0 * k0)) == pytest.approx(0.0, abs=1e-12)
    k1 = jnp.asarray(np.exp(-np.sum((x[:, None] - x[None]) ** 2, -1)))
    ref = 1 - np.sum(np.asarray(k0) * np.asarray(k1)) / (np.linalg.norm(k0) * np.linalg.norm(k1))
    assert float(diagnostics.kernel_distance(k0, k1)) == pytest.approx(ref, rel=1e-10)
    assert float(diagnostics.kernel_distance(k1, k0)) == pytest.approx(ref, rel=1e-10)


def test_spectrum_and_effective_rank():
    rng = np.random.default_rng(6)
    q, _ = np.linalg.qr(rng.normal(size=(12, 12)))
    evals = np.array([5.0, 3.0, 2.0] + [0.0] * 9)
    k = jnp.asarray(q @ np.diag(evals) @ q.T)
    spec = diagnostics.spectrum(k)
    np.testing.assert_allclose(spec, np.sort(evals)[::-1], atol=1e-12)
    np.testing.assert_allclose(diagnostics.spectrum(k, normalize=True).sum(), 1.0, rtol=1e-12)
    # r equal eigenvalues: both effective ranks are exactly r
    proj = jnp.asarray(q[:, :4] @ q[:, :4].T)
    for kind in ("entropy", "participation"):
        assert float(diagnostics.effective_rank(proj, kind=kind)) == pytest.approx(4.0, rel=1e-9)
    p = evals[:3] / evals.sum()
    assert float(diagnostics.effective_rank(k)) == pytest.approx(np.exp(-np.sum(p * np.log(p))),
                                                                 rel=1e-9)
    assert float(diagnostics.effective_rank(jnp.asarray(evals), kind="participation")) == \
        pytest.approx(evals.sum() ** 2 / np.sum(evals**2), rel=1e-12)


def test_full_kernels_are_flattened():
    x = _features(6, 3, 7)
    k = jnp.asarray(x @ x.T)
    full = jnp.einsum("ij,ab->ijab", k, jnp.eye(2))
    assert diagnostics.spectrum(full).shape == (12,)
    assert float(diagnostics.kernel_distance(full, 2 * full)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("fn", [
    lambda k: diagnostics.spectrum(k),
    lambda k: diagnostics.kernel_alignment(k, jnp.ones(k.shape[0])),
    lambda k: diagnostics.cka(k, k),
    lambda k: diagnostics.kernel_distance(k, k),
])
def test_bad_kernels_raise(fn):
    with pytest.raises(ValueError, match="not symmetric"):
        fn(jnp.array([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="non-finite"):
        fn(jnp.array([[1.0, jnp.nan], [jnp.nan, 1.0]]))
    with pytest.raises(ValueError, match="square"):
        fn(jnp.ones((2, 3)))


def test_other_bad_inputs_raise():
    k = jnp.eye(3)
    with pytest.raises(ValueError, match="leading dimension 3"):
        diagnostics.kernel_alignment(k, jnp.ones((4, 2)))
    with pytest.raises(ValueError, match="same shape"):
        diagnostics.cka(k, jnp.eye(4))
    with pytest.raises(ValueError, match="not PSD"):
        diagnostics.effective_rank(jnp.diag(jnp.array([1.0, -0.5])))
    with pytest.raises(ValueError, match="kind"):
        diagnostics.effective_rank(k, kind="nope")
    with pytest.raises(ValueError, match="undefined"):
        diagnostics.kernel_alignment(jnp.ones((3, 3)), jnp.arange(3.0))  # constant kernel


def test_label_gradient_alignment_extremes_invariance_and_a_brute_force_sum():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, size=12)
    y = np.where(labels[:, None] == labels[None, :], 1.0, -1.0)
    lga = diagnostics.label_gradient_alignment
    assert float(lga(jnp.asarray(y), labels)) == pytest.approx(1.0, abs=1e-12)
    assert float(lga(jnp.asarray(-y), labels)) == pytest.approx(-1.0, abs=1e-12)
    a = rng.normal(size=(12, 5))
    k = a @ a.T
    value = float(lga(jnp.asarray(k), labels))
    assert float(lga(jnp.asarray(3.0 * k + 7.0), labels)) == pytest.approx(value, rel=1e-10)
    # the same number as an explicit double loop over pairs
    km, ym = k.mean(), y.mean()
    num = sum((k[i, j] - km) * (y[i, j] - ym) for i in range(12) for j in range(12))
    den = np.sqrt(sum((k[i, j] - km) ** 2 for i in range(12) for j in range(12))
                  * sum((y[i, j] - ym) ** 2 for i in range(12) for j in range(12)))
    assert value == pytest.approx(num / den, rel=1e-10)
    with pytest.raises(ValueError, match="labels"):
        lga(jnp.asarray(k), labels[:5])
    with pytest.raises(TypeError, match="labels"):
        lga(jnp.asarray(k), labels.astype(float))
