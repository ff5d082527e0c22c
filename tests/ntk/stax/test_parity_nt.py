"""Parity of ntk.stax with neural-tangents 0.6.5: golden file, and live in its environment.

The battery (``reference/make_stax_golden.py``) covers every layer both libraries have: all
activations in both parameterizations, depths 1-12, W_std/b_std, x2=None, a zero-norm input,
residual blocks, channel concatenation, LayerNorm, 1D/2D convolutions with SAME/VALID padding
and strides, AvgPool (also SAME with edge normalisation), GlobalAvgPool and Flatten.
Tolerance: 1e-6 relative (max entrywise error over the kernel's max), float64.
"""
import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from ntk import stax

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
GOLDEN = os.path.join(ROOT, "tests", "golden", "stax_nt065.npz")
REF_PYTHON = os.path.join(ROOT, ".venv-ref", "bin", "python")
RTOL = 1e-6


def build(spec):
    """The ``ntk.stax`` triple of a battery LAYER spec (same names/arguments as nt)."""
    name, arg = spec
    if name in ("serial", "parallel"):
        return getattr(stax, name)(*[build(s) for s in arg])
    kwargs = dict(arg)
    for key in ("filter_shape", "strides", "window_shape"):
        if kwargs.get(key) is not None:
            kwargs[key] = tuple(kwargs[key])
    if name == "ElementwiseNumerical":
        kwargs["fn"] = getattr(jnp, kwargs["fn"])
    return getattr(stax, name)(**kwargs)


def compute(spec, arrays):
    _, _, kernel_fn = build(spec["layers"])
    x1 = arrays[spec["x1"]]
    x2 = None if spec.get("x2") is None else arrays[spec["x2"]]
    get = tuple(spec["get"])
    out = kernel_fn(x1, x2, get=get)
    return {g: (None if v is None else np.asarray(v)) for g, v in zip(get, out)}


def relative_error(ours, theirs):
    scale = max(float(np.max(np.abs(theirs))), 1e-300)
    return float(np.max(np.abs(np.asarray(ours) - theirs))) / scale


def _golden():
    with np.load(GOLDEN) as data:
        specs = json.loads(str(data["spec"]))
        names = json.loads(str(data["names"]))
        arrays = {k[len("input/"):]: np.asarray(data[k]) for k in data.files
                  if k.startswith("input/")}
        nt = {k[len("nt/"):]: np.asarray(data[k]) for k in data.files if k.startswith("nt/")}
    return names, specs, arrays, nt


NAMES, SPECS, ARRAYS, NT = _golden()


def _check(index, spec, arrays, reference):
    ours = compute(spec, arrays)
    for name, value in ours.items():
        key = f"{index}/{name}"
        if key not in reference:  # neural-tangents returns None (cov2 when x2 is None)
            assert value is None, name
            continue
        theirs = reference[key]
        assert value.shape == theirs.shape, (name, value.shape, theirs.shape)
        assert np.all(np.isfinite(value)), name
        err = relative_error(value, theirs)
        assert err < RTOL, f"{name}: relative error {err:.2e}"


#: standard-parameterization activation cases run by default (the rest are `slow`: each case
#: costs one XLA compilation, ~1 s on this machine)
QUICK_STANDARD = ("relu", "erf", "gelu", "sin", "rect_monomial2")


#: cases run under ``make test-all`` only: a depth-12 ReLU chain compiles for ~7 s (depths 1,
#: 4 and Erf at depth 8 run by default)
SLOW_CASES = ("relu_depth12",)


def _marks(name):
    if name in SLOW_CASES or ("_standard" in name and name.startswith("mlp") and not any(
            f"_{a}_standard" in name for a in QUICK_STANDARD)):
        return pytest.param(name, marks=pytest.mark.slow, id=name)
    return pytest.param(name, id=name)


@pytest.mark.parametrize("name", [_marks(n) for n in NAMES])
def test_golden_parity(name):
    index = NAMES.index(name)
    _check(index, SPECS[index], ARRAYS, NT)


def test_golden_covers_every_shared_layer():
    used = set()

    def walk(spec):
        name, arg = spec
        if name in ("serial", "parallel"):
            for s in arg:
                walk(s)
        else:
            used.add(name)

    for spec in SPECS:
        walk(spec["layers"])
    shared = {"Dense", "Conv", "AvgPool", "GlobalAvgPool", "Flatten", "LayerNorm", "Identity",
              "FanOut", "FanInSum", "FanInConcat", "Relu", "LeakyRelu", "ABRelu", "Abs", "Erf",
              "Sigmoid_like", "Gelu", "Sin", "Cos", "Monomial", "RectifiedMonomial", "Sign",
              "Exp", "Gaussian", "Rbf", "ElementwiseNumerical"}
    assert shared <= used, shared - used
    params = {json.dumps(s["layers"]).count('"standard"') > 0 for s in SPECS}
    assert params == {True, False}


def test_no_nan_where_neural_tangents_has_nan():
    """nt 0.6.5's RectifiedMonomial is NaN at theta = 0 (equal inputs); ours stays finite."""
    x = ARRAYS["v1"]
    _, _, kernel_fn = stax.serial(stax.Dense(8, 1.2, 0.3), stax.RectifiedMonomial(2),
                                  stax.Dense(8, 1.2, 0.3), stax.RectifiedMonomial(2),
                                  stax.Dense(1))
    k = kernel_fn(x, None)
    for m in (k.nngp, k.ntk, k.cov1):
        assert np.all(np.isfinite(np.asarray(m)))
    # the diagonal of nngp is cov1 (x2 = x1)
    np.testing.assert_allclose(np.diag(np.asarray(k.nngp)), np.asarray(k.cov1), rtol=1e-12)


# ----------------------------------------------------------------------------------------
# live parity in the reference environment


def _run_reference(cases, arrays):
    sys.path.insert(0, ROOT)
    try:
        from reference.make_stax_golden import run_reference
    finally:
        sys.path.remove(ROOT)
    return run_reference(cases, arrays, timeout=600)


@pytest.mark.slow
@pytest.mark.reference
@pytest.mark.skipif(not os.path.exists(REF_PYTHON), reason="no .venv-ref (make reference)")
def test_live_parity_fresh_inputs():
    """A fresh random draw of inputs through a subset of the battery, run in .venv-ref now."""
    rng = np.random.RandomState(1234)
    arrays = {k: rng.randn(*v.shape) for k, v in ARRAYS.items()}
    live = ("mlp_relu_ntk", "mlp_erf_standard", "mlp_gelu_ntk", "mlp_numerical_sin_ntk",
            "relu_depth12", "resnet_relu", "concat", "layernorm_mlp", "cnn1d_flatten",
            "cnn2d_gap", "cnn2d_avgpool_same_edges", "cnn2d_layernorm")
    pick = [NAMES.index(n) for n in live]
    cases = [SPECS[i] for i in pick]
    reference = _run_reference(cases, arrays)
    for j, spec in enumerate(cases):
        _check(j, spec, arrays, reference)
