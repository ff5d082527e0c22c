"""Cheap eNTK approximations against the full eNTK: time and peak memory.

Two sweeps, each configuration in a fresh subprocess so that its peak resident memory
(``VmHWM``, minus the process's resident size just before the kernel call) is its own:

1. **Output count O.** A ReLU MLP ``32 - 256 - 256 - O`` on ``N = 64`` inputs, float32. The
   full eNTK (``ntk.empirical_ntk_fn``, ``trace_axes=()``, ``(N, N, O, O)``) against the pNTK
   (``ntk.approx.pntk_fn``, ``(N, N)``) and projected pNTK features (``k = 256``, Rademacher).
   Expected (Mohamadi et al. 2023): the full kernel costs about ``O x`` more time and
   ``O^2 x`` more memory than the pNTK as ``O`` grows.
2. **Parameter count P at fixed k.** Projected features (``k = 512``, ``N = 32``, batches of
   8) of MLPs of growing width: the sketch is regenerated in blocks, so memory grows with P
   only through the model and one batch of per-example gradients — never ``P x k`` (the
   ``stored sketch`` column is what a materialised sketch would need). XLA's compiled memory
   plan (``temp_size_in_bytes`` of one features block) is reported next to the RSS.

Times are medians of repeats after a warm-up call (compilation excluded).
``main(out_dir, quick=False)`` writes ``bench_approx.json`` and ``bench_approx.md``.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

REPEATS = 3


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    # VmHWM belongs to this process's own address space; ru_maxrss would carry the parent's
    # peak across fork + exec (a worker started by a large driver process reads the driver's).
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _worker(spec: dict) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import ntk
    from ntk import approx

    width, o, n = spec["width"], spec["outputs"], spec["n"]
    d = 32
    sizes = [d, width, width, o]
    key = jax.random.PRNGKey(0)
    params = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        key, k1 = jax.random.split(key)
        params.append({"w": jax.random.normal(k1, (a, b), jnp.float32),
                       "b": jnp.zeros((b,), jnp.float32)})

    def apply_fn(p, x):
        h = x
        for i, layer in enumerate(p):
            h = h @ layer["w"] / jnp.sqrt(layer["w"].shape[0]) + 0.1 * layer["b"]
            if i < len(p) - 1:
                h = jax.nn.relu(h)
        return h

    x = jax.random.normal(jax.random.PRNGKey(1), (n, d), jnp.float32)
    method = spec["method"]
    if method == "full_entk":
        fn = ntk.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0)
        call = lambda: fn(x, None, params)  # noqa: E731
    elif method == "pntk":
        fn = approx.pntk_fn(apply_fn)
        call = lambda: fn(x, None, params)  # noqa: E731
    elif method == "pntk_gradients":
        fn = approx.pntk_fn(apply_fn, implementation="gradients")
        call = lambda: fn(x, None, params)  # noqa: E731
    elif method == "projected":
        feats = approx.projected_features_fn(apply_fn, spec["k"], sketch="rademacher",
                                             batch_size=spec.get("batch_size"))
        call = lambda: feats(x, params, jax.random.PRNGKey(2))  # noqa: E731
    else:
        raise ValueError(method)
    base = _rss_mb()
    out = jax.block_until_ready(call())
    peak = _peak_mb() - base
    times = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - t)
    result = {**spec, "time_s": float(np.median(times)), "peak_extra_mb": round(peak, 1),
              "output_shape": list(out.shape),
              "n_params": int(sum(v.size for v in jax.tree_util.tree_leaves(params)))}
    if method == "projected":
        b = spec.get("batch_size") or n
        o_dim = o

        def block(prm, xb, kk):
            g = approx._grads(apply_fn, prm, xb, jnp.zeros((b, o_dim), jnp.float32), "sum",
                              o_dim, {})
            return approx._sketch_grads(g, kk, "rademacher", spec["k"],
                                        approx._chunk(None, spec["k"]), 4)

        analysis = jax.jit(block).lower(params, x[:b], jax.random.PRNGKey(2)).compile() \
            .memory_analysis()
        if analysis is not None:
            result["xla_temp_mb"] = round(analysis.temp_size_in_bytes / 2**20, 1)
        result["stored_sketch_mb"] = round(result["n_params"] * spec["k"] * 4 / 2**20, 1)
    return result


def _run(spec: dict, timeout: float = 300) -> dict:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_approx", "--worker",
                           json.dumps(spec)], capture_output=True, text=True, timeout=timeout,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if proc.returncode != 0:
        return {**spec, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr else
                f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(out_dir: str, quick: bool = False) -> dict:
    os.makedirs(out_dir, exist_ok=True)
    outputs = [1, 4, 16] if quick else [1, 4, 16, 64]
    widths = [64, 256, 1024] if quick else [64, 256, 1024, 2048]
    sweep_o, sweep_p = [], []
    for o in outputs:
        for method in ("full_entk", "pntk", "projected"):
            r = _run({"method": method, "outputs": o, "width": 256, "n": 64, "k": 256})
            sweep_o.append(r)
            print(f"  O={o:3d} {method:10s} {r.get('time_s', float('nan')):.4f}s "
                  f"peak+{r.get('peak_extra_mb', float('nan'))} MB {r.get('error', '')}",
                  flush=True)
    for w in widths:
        r = _run({"method": "projected", "outputs": 10, "width": w, "n": 32, "k": 512,
                  "batch_size": 8})
        sweep_p.append(r)
        print(f"  P={r.get('n_params', '?')} projected {r.get('time_s', float('nan')):.4f}s "
              f"peak+{r.get('peak_extra_mb', float('nan'))} MB "
              f"xla_temp {r.get('xla_temp_mb', '?')} MB stored sketch "
              f"{r.get('stored_sketch_mb', '?')} MB {r.get('error', '')}", flush=True)
    ratios = []
    for o in outputs:
        row = {m: next((r for r in sweep_o if r["outputs"] == o and r["method"] == m), {})
               for m in ("full_entk", "pntk", "projected")}
        if "time_s" in row["full_entk"] and "time_s" in row["pntk"]:
            ratios.append({"outputs": o,
                           "time_full_over_pntk": row["full_entk"]["time_s"] /
                           row["pntk"]["time_s"],
                           "kernel_bytes_full_over_pntk": o * o})
    results = {"sweep_outputs": sweep_o, "sweep_params": sweep_p, "ratios": ratios}
    with open(os.path.join(out_dir, "bench_approx.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(out_dir, "bench_approx.md"), "w") as f:
        f.write(_markdown(results))
    return results


def _markdown(results) -> str:
    lines = ["# eNTK approximations: time and peak memory (CPU, float32)", "",
             "## Versus the number of outputs O (MLP 32-256-256-O, N = 64)", "",
             "| O | method | kernel shape | time (s) | peak extra RSS (MB) |",
             "|---|---|---|---|---|"]
    for r in results["sweep_outputs"]:
        lines.append(f"| {r['outputs']} | {r['method']} | {r.get('output_shape', '')} | "
                     f"{r.get('time_s', float('nan')):.4f} | {r.get('peak_extra_mb', 'n/a')} |"
                     + (f" error: {r['error']}" if "error" in r else ""))
    lines += ["", "| O | time full / pNTK | kernel entries full / pNTK |", "|---|---|---|"]
    for r in results["ratios"]:
        lines.append(f"| {r['outputs']} | {r['time_full_over_pntk']:.1f} | "
                     f"{r['kernel_bytes_full_over_pntk']} |")
    lines += ["", "## Projected features versus P at fixed k = 512 (N = 32, batches of 8)", "",
              "| P | time (s) | peak extra RSS (MB) | XLA temp per block (MB) | "
              "a stored P x k sketch (MB) |", "|---|---|---|---|---|"]
    for r in results["sweep_params"]:
        lines.append(f"| {r.get('n_params', '?')} | {r.get('time_s', float('nan')):.4f} | "
                     f"{r.get('peak_extra_mb', 'n/a')} | {r.get('xla_temp_mb', 'n/a')} | "
                     f"{r.get('stored_sketch_mb', 'n/a')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        print(json.dumps(_worker(json.loads(sys.argv[2]))))
    else:
        res = main(sys.argv[1] if len(sys.argv) > 1 else "results/bench",
                   quick="--quick" in sys.argv)
        print(_markdown(res))
