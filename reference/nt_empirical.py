"""Run neural-tangents 0.6.5's empirical NTK on the test models.

Runs *inside the reference environment* (``.venv-ref``: JAX 0.4.25 + neural-tangents), never in
the main one:

    .venv-ref/bin/python -m reference.nt_empirical in.npz out.npz

``in.npz`` holds ``spec`` (a JSON list of cases ``{"model", "x1", "x2", "trace_axes",
"diagonal_axes", "vmap_axes", "repeat"}``), the inputs it names and each model's parameter
leaves as ``params/{model}/{i}``. Models come from ``tests/ntk/models.py`` (plain JAX that
runs on both JAX versions); their parameters are replaced by the stored leaves so both
environments evaluate the same function at the same point. ``out.npz`` holds
``{case}/{implementation}`` for neural-tangents' implementations 1 (Jacobian contraction),
2 (NTK-vector products) and 3 (structured derivatives), and with ``repeat > 0`` the best
wall time of ``repeat`` calls after a compiling call as ``{case}/{implementation}/seconds``,
and peak host memory is left to the caller to measure per process.
"""
import json
import sys
import time
import warnings


def main(argv):
    in_path, out_path = argv[1], argv[2]
    warnings.filterwarnings("ignore")
    import jax
    data_x64 = "--float32" not in argv
    jax.config.update("jax_enable_x64", data_x64)
    import numpy as np
    import neural_tangents as nt

    from tests.ntk import models

    data = np.load(in_path)
    cases = json.loads(str(data["spec"]))
    implementations = [int(i) for i in json.loads(str(data["implementations"]))] \
        if "implementations" in data else [1, 2, 3]
    out = {}
    built = {}
    for c, case in enumerate(cases):
        name = case["model"]
        if name not in built:
            kwargs = case.get("model_kwargs", {})
            apply_fn, params, _ = models.PLAIN_JAX[name](jax.random.PRNGKey(0), **kwargs)
            treedef = jax.tree_util.tree_structure(params)
            count = treedef.num_leaves
            leaves = [jax.numpy.asarray(data[f"params/{name}/{i}"]) for i in range(count)]
            built[name] = (apply_fn, jax.tree_util.tree_unflatten(treedef, leaves))
        apply_fn, params = built[name]
        x1 = jax.numpy.asarray(data[case["x1"]])
        x2 = None if case["x2"] is None else jax.numpy.asarray(data[case["x2"]])
        vmap_axes = case["vmap_axes"]
        for impl in implementations:
            fn = jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=tuple(case["trace_axes"]),
                                             diagonal_axes=tuple(case["diagonal_axes"]),
                                             vmap_axes=vmap_axes, implementation=impl))
            try:
                k = np.asarray(fn(x1, x2, params))
            except Exception as e:  # noqa: BLE001 - recorded, the caller decides
                out[f"{c}/{impl}/error"] = np.array(f"{type(e).__name__}: {e}"[:500])
                continue
            out[f"{c}/{impl}"] = k
            repeat = int(case.get("repeat", 0))
            if repeat:
                best = float("inf")
                for _ in range(repeat):
                    t = time.perf_counter()
                    jax.block_until_ready(fn(x1, x2, params))
                    best = min(best, time.perf_counter() - t)
                out[f"{c}/{impl}/seconds"] = np.array(best)
    np.savez(out_path, **out)


if __name__ == "__main__":
    main(sys.argv)
