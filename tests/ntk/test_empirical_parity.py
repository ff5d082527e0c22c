"""Parity of the empirical NTK with neural-tangents 0.6.5.

The golden file was written in the pinned reference environment by
``reference/make_empirical_golden.py`` (all three of neural-tangents' implementations, float64);
the live test recomputes a subset there through a subprocess. The main environment never
imports neural-tangents.
"""
import json
import os

import jax
import numpy as np
import pytest

import ntk
from reference import empirical_parity
from tests.ntk import models

OURS = ("jacobian", "ntvp", "structured")


def _model(name, golden):
    apply_fn, params, _ = models.PLAIN_JAX[name](jax.random.PRNGKey(0))
    treedef = jax.tree_util.tree_structure(params)
    leaves = [golden[f"params/{name}/{i}"] for i in range(treedef.num_leaves)]
    return apply_fn, jax.tree_util.tree_unflatten(treedef, leaves)


def _ours(case, golden, implementation):
    apply_fn, params = _model(case["model"], golden)
    x2 = None if case["x2"] is None else golden[case["x2"]]
    fn = ntk.empirical_ntk_fn(apply_fn, tuple(case["trace_axes"]), tuple(case["diagonal_axes"]),
                              case["vmap_axes"], implementation)
    return np.asarray(fn(golden[case["x1"]], x2, params))


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def golden():
    with np.load(empirical_parity.GOLDEN) as data:
        return {k: data[k] for k in data.files}


def test_golden_covers_every_axes_mode(golden):
    cases = json.loads(str(golden["spec"]))
    assert cases == empirical_parity.cases()
    modes = {(tuple(c["trace_axes"]), tuple(c["diagonal_axes"])) for c in cases}
    assert {((), ()), ((-1,), ()), ((), (-1,)), ((1,), (2,))} <= modes


def test_matches_neural_tangents_golden(golden):
    cases = json.loads(str(golden["spec"]))
    worst = 0.0
    for c, case in enumerate(cases):
        nt_kernels = [golden[f"nt/{c}/{i}"] for i in (1, 2, 3)]
        for other in nt_kernels[1:]:  # neural-tangents agrees with itself
            assert _rel(other, nt_kernels[0]) < 1e-10
        if c % 4 != (0 if (c // 4) % 2 == 0 else 3):
            continue  # per group one of (vmap None, x2 given) / (vmap 0, x2=None), alternating
        ours = _ours(case, golden, OURS[(c // 4) % 3])
        assert ours.shape == nt_kernels[0].shape, case
        err = _rel(ours, nt_kernels[0])
        worst = max(worst, err)
        assert err < 1e-5, (case, OURS[(c // 4) % 3], err)
    assert worst < 1e-10  # float64 throughout: agreement to rounding


# Fresh inputs through neural-tangents itself: under ``make test-all`` (the golden file above,
# made by the same reference environment, is checked by default).
@pytest.mark.slow
@pytest.mark.reference
@pytest.mark.skipif(not os.path.exists(empirical_parity.REFERENCE_PYTHON),
                    reason="neural-tangents reference environment (.venv-ref) absent")
def test_matches_neural_tangents_live():
    arrays = empirical_parity.payload()
    cases = json.loads(str(arrays["spec"]))
    subset = [c for c in range(len(cases)) if c % 8 == 1]
    arrays["spec"] = np.array(json.dumps([cases[c] for c in subset]))
    kernels = empirical_parity.run_reference(arrays)
    for j, c in enumerate(subset):
        ours = _ours(cases[c], arrays, OURS[j % 3])
        for impl in (1, 2, 3):
            assert _rel(ours, kernels[f"{j}/{impl}"]) < 1e-5, (cases[c], impl)
