"""Empirical-NTK parity cases shared by the golden-file generator and the live test.

``cases()`` lists (model, axes, vmap) combinations covering every axes mode on the plain-JAX
test models; ``run_reference(payload)`` runs them through neural-tangents 0.6.5 in
``.venv-ref`` (a subprocess) and returns its kernels.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE_PYTHON = os.path.join(ROOT, ".venv-ref", "bin", "python")
GOLDEN = os.path.join(ROOT, "tests", "golden", "empirical_nt065.npz")

MODELS = ("mlp", "cnn", "resnet", "sequence")
AXES = {
    "mlp": [((), ()), ((-1,), ()), ((), (-1,))],
    "cnn": [((), ()), ((-1,), ()), ((), (-1,))],
    "resnet": [((), ()), ((-1,), ())],
    "sequence": [((), ()), ((-1,), ()), ((1,), ()), ((), (1,)), ((-1,), (1,)),
                 ((1,), (2,))],
}


def cases() -> list[dict]:
    out = []
    for model in MODELS:
        for trace_axes, diagonal_axes in AXES[model]:
            for vmap_axes in (None, 0):
                for symmetric in (False, True):
                    out.append({"model": model, "x1": f"{model}/x1",
                                "x2": None if symmetric else f"{model}/x2",
                                "trace_axes": list(trace_axes),
                                "diagonal_axes": list(diagonal_axes),
                                "vmap_axes": vmap_axes})
    return out


def payload() -> dict:
    """Inputs and parameters (float64), made in this environment."""
    import jax

    from tests.ntk import models

    jax.config.update("jax_enable_x64", True)

    arrays = {}
    for i, model in enumerate(MODELS):
        _, params, shape = models.PLAIN_JAX[model](jax.random.PRNGKey(0))
        for j, leaf in enumerate(jax.tree_util.tree_leaves(params)):
            arrays[f"params/{model}/{j}"] = np.asarray(leaf, np.float64)
        rng = np.random.default_rng(i)
        arrays[f"{model}/x1"] = rng.standard_normal((3,) + shape)
        arrays[f"{model}/x2"] = rng.standard_normal((2,) + shape)
    arrays["spec"] = np.array(json.dumps(cases()))
    return arrays


def run_reference(arrays: dict, extra_args: tuple = (), timeout: int = 900) -> dict:
    """neural-tangents' kernels for ``arrays`` (see reference/nt_empirical.py)."""
    if not os.path.exists(REFERENCE_PYTHON):
        raise FileNotFoundError(f"{REFERENCE_PYTHON} is missing; run `make reference`")
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
        np.savez(src, **arrays)
        env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu",
                   TF_CPP_MIN_LOG_LEVEL="3")
        res = subprocess.run([REFERENCE_PYTHON, "-m", "reference.nt_empirical", src, dst,
                              *extra_args], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=timeout)
        if res.returncode != 0:
            raise RuntimeError(f"reference run failed:\n{res.stderr[-4000:]}")
        with np.load(dst) as out:
            return {k: out[k] for k in out.files}
