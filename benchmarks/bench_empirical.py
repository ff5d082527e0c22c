"""Empirical-NTK benchmark: our three implementations against neural-tangents' three.

Models (float32, full kernels ``trace_axes=()`` unless noted):

- ``fcn``: the FCN of Novak, Sohl-Dickstein & Schoenholz 2022 (Fast Finite Width NTK):
  3 x [Dense(2048) + Relu] + Dense(8), input 3072, N = 16, O = 8.
- a width / O sweep across the crossover of the cost model (widths 256 .. 2048, O 1 .. 32);
- ``cnn``: 3 x [Conv(3x3, 32) + Relu] + GlobalAvgPool + Dense(10) on 16x16x3 images, N = 16.

Every measurement runs in a fresh process (ours in this environment, neural-tangents in
``.venv-ref`` through ``python -m benchmarks.bench_empirical --one ...``): the best wall
time of ``repeat`` calls after one compiling call, and the peak resident memory the call
added (``VmHWM`` after minus ``VmRSS`` before). Achieved FLOP/s uses our cost model's FLOP
count of the algorithm and is compared with a plain float32 matmul on the same machine.

    .venv/bin/python -m benchmarks.bench_empirical --out results/bench [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE_PYTHON = os.path.join(ROOT, ".venv-ref", "bin", "python")
OURS = ("jacobian", "ntvp", "structured")
NT = {"jacobian": 1, "ntvp": 2, "structured": 3}
# what a newcomer writes: no vmap_axes (detected), implementation 'auto', no jax.jit
DEFAULT = "default"


# ------------------------------------------------------------ models (both JAX versions)

def make_model(spec: dict):
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    rng = np.random.default_rng(0)
    kind = spec["model"]
    if kind == "fcn":
        widths = [spec["input"]] + [spec["width"]] * spec["depth"] + [spec["out"]]
        params = [{"W": jnp.asarray(rng.standard_normal((a, b)), jnp.float32),
                   "b": jnp.asarray(0.1 * rng.standard_normal(b), jnp.float32)}
                  for a, b in zip(widths[:-1], widths[1:])]

        def apply_fn(ps, x):
            for i, p in enumerate(ps):
                x = x @ p["W"] / np.sqrt(p["W"].shape[0]).astype(np.float32) + p["b"]
                if i < len(ps) - 1:
                    x = jax.nn.relu(x)
            return x
        x = jnp.asarray(rng.standard_normal((spec["n"], spec["input"])), jnp.float32)
        return apply_fn, params, x
    if kind == "cnn":
        c, dn = spec["channels"], ("NHWC", "HWIO", "NHWC")
        shapes = [(3, 3, 3, c)] + [(3, 3, c, c)] * (spec["depth"] - 1)
        params = {"convs": [jnp.asarray(rng.standard_normal(s) / np.sqrt(np.prod(s[:3])),
                                        jnp.float32) for s in shapes],
                  "W": jnp.asarray(rng.standard_normal((c, spec["out"])) / np.sqrt(c),
                                   jnp.float32)}

        def apply_fn(p, x):
            for w in p["convs"]:
                x = jax.nn.relu(lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                                         dimension_numbers=dn))
            return jnp.mean(x, axis=(1, 2)) @ p["W"]
        side = spec["side"]
        x = jnp.asarray(rng.standard_normal((spec["n"], side, side, 3)), jnp.float32)
        return apply_fn, params, x
    raise ValueError(f"unknown model {kind!r}")


def _rss(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def measure_one(spec: dict, lib: str, implementation: str, repeat: int) -> dict:
    """Time and peak memory of one kernel computation in this process."""
    import jax
    import numpy as np

    apply_fn, params, x = make_model(spec)
    trace_axes = tuple(spec.get("trace_axes", ()))
    if lib == "nt":
        import neural_tangents as nt
        fn = jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=trace_axes, vmap_axes=0,
                                         implementation=NT[implementation]))
    elif implementation == DEFAULT:
        import ntk
        fn = ntk.empirical_ntk_fn(apply_fn, trace_axes=trace_axes)
    else:
        import ntk
        kernel_fn = ntk.empirical_ntk_fn(apply_fn, trace_axes=trace_axes, vmap_axes=0,
                                         implementation=implementation)
        fn = jax.jit(kernel_fn)  # like neural-tangents' jitted function
    flops = _xla_flops(fn, x, params) if implementation != DEFAULT else None
    before = _rss("VmRSS")
    t0 = time.perf_counter()
    k = jax.block_until_ready(fn(x, None, params))
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(x, None, params))
        best = min(best, time.perf_counter() - t0)
    peak = _rss("VmHWM") - before
    k = np.asarray(k, np.float64)
    return {"seconds": best, "first_call_seconds": first, "peak_bytes": max(peak, 0),
            "flops": flops, "checksum": [float(np.sum(k)), float(np.linalg.norm(k))],
            "shape": list(k.shape)}


def _xla_flops(fn, x, params):
    """FLOPs of the compiled kernel program by XLA's own cost analysis (``None`` if the
    backend does not report them); older JAX returns a list with one dict per program."""
    try:
        cost = fn.lower(x, None, params).compile().cost_analysis()
    except Exception:  # noqa: BLE001 - a missing cost analysis only drops a column
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    flops = (cost or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


def matmul_peak(n: int = 2048, repeat: int = 5) -> float:
    """FLOP/s of a float32 (n x n) @ (n x n) matmul on the default device."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    jax.block_until_ready(f(a))
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(f(a))
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


# ----------------------------------------------------------------------------- driver

def suite(quick: bool) -> list[dict]:
    fcn = {"model": "fcn", "input": 3072, "width": 2048, "depth": 3, "out": 8, "n": 16}
    cases = [dict(fcn, name="fcn (Novak et al.)"),
             dict(fcn, width=512, name="fcn (Novak et al.) W=512")]
    sweep = [(256, 1), (1024, 8)] if quick else \
        [(256, 1), (256, 8), (256, 32), (1024, 1), (1024, 8), (1024, 32), (2048, 1), (2048, 8)]
    for w, o in sweep:
        cases.append({"model": "fcn", "input": 256, "width": w, "depth": 2, "out": o,
                      "n": 16, "name": f"fcn sweep W={w} O={o}"})
    cases.append({"model": "cnn", "channels": 32, "depth": 3, "side": 8 if quick else 16,
                  "out": 10, "n": 16, "name": "cnn (3 conv + GAP)"})
    return cases


def call_overhead(repeat: int = 200) -> dict:
    """Seconds per call of a small kernel (MLP 5-64-3, N = 8, float32) through the kernel
    function as is, and through ``jax.jit`` of it: what planning and checks cost a call."""
    import jax
    import ntk

    apply_fn, params, x = make_model({"model": "fcn", "input": 5, "width": 64, "depth": 1,
                                      "out": 3, "n": 8})
    fn = ntk.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0)
    jitted = jax.jit(fn)
    out = {}
    for name, f in (("kernel_fn", fn), ("jax.jit(kernel_fn)", jitted)):
        jax.block_until_ready(f(x, None, params))
        t0 = time.perf_counter()
        for _ in range(repeat):
            jax.block_until_ready(f(x, None, params))
        out[name] = (time.perf_counter() - t0) / repeat
    return out


def run_subprocess(python: str, spec: dict, lib: str, implementation: str, repeat: int,
                   timeout: int) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [python, "-m", "benchmarks.bench_empirical", "--one", json.dumps(spec), "--lib", lib,
           "--implementation", implementation, "--repeat", str(repeat)]
    try:
        res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout} s"}
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["?"]
        kind = "out of memory" if "RESOURCE_EXHAUSTED" in res.stderr or res.returncode == -9 \
            else tail[0][:160]
        return {"error": kind}
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(out_dir: str, quick: bool = False, repeat: int = 3, timeout: int = 600) -> dict:
    os.makedirs(out_dir, exist_ok=True)
    have_nt = os.path.exists(REFERENCE_PYTHON)
    peak = matmul_peak()
    rows = []
    for spec in suite(quick):
        row = {"name": spec.pop("name"), "spec": spec}
        row[f"default/{DEFAULT}"] = run_subprocess(sys.executable, spec, "ours", DEFAULT,
                                                   repeat, timeout)
        for impl in OURS:
            row[f"ours/{impl}"] = run_subprocess(sys.executable, spec, "ours", impl, repeat,
                                                 timeout)
            if have_nt:
                row[f"nt/{impl}"] = run_subprocess(REFERENCE_PYTHON, spec, "nt", impl, repeat,
                                                   timeout)
        rows.append(row)
        print(_row_line(row, peak), flush=True)
    report = {"matmul_flops_per_s": peak, "rows": rows, "quick": quick,
              "neural_tangents": have_nt, "call_overhead": call_overhead()}
    with open(os.path.join(out_dir, "empirical.json"), "w") as f:
        json.dump(report, f, indent=1)
    table = markdown(report)
    with open(os.path.join(out_dir, "empirical.md"), "w") as f:
        f.write(table)
    print(table)
    return report


def _best(row, lib):
    ok = {k: v for k, v in row.items() if k.startswith(lib + "/") and "seconds" in v}
    if not ok:
        return None, None
    k = min(ok, key=lambda k: ok[k]["seconds"])
    return k.split("/")[1], ok[k]


def _fmt_time(r):
    if r is None:
        return "-"
    if "error" in r:
        return r["error"]
    return f"{r['seconds'] * 1e3:.1f} ms / {r['peak_bytes'] / 2**20:.0f} MiB"


def _row_line(row, peak):
    return row["name"] + ": " + "; ".join(f"{k} {_fmt_time(v)}" for k, v in row.items()
                                          if "/" in k)


def markdown(report: dict) -> str:
    peak = report["matmul_flops_per_s"]
    lines = [f"Plain float32 matmul on this machine: {peak / 1e9:.1f} GFLOP/s. Time is the best "
             "of repeated calls after compilation; memory is the peak resident memory the "
             "call added. Ratio = neural-tangents' best time / our best time (> 1: we are "
             "faster).", "",
             "| model | ours: default call | ours: jacobian | ours: ntvp | ours: structured | "
             "nt: jacobian | nt: ntvp | nt: structured | best ours / best nt | speed-up | "
             "default call / best nt | our best GFLOP/s (XLA count; % of matmul) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        ours_name, ours = _best(row, "ours")
        nt_name, nt = _best(row, "nt")
        ratio = f"{nt['seconds'] / ours['seconds']:.1f}x" if ours and nt else "-"
        rate = "-"
        if ours and ours.get("flops"):
            r = ours["flops"] / ours["seconds"]
            rate = f"{r / 1e9:.1f} ({100 * r / peak:.0f}%)"
        default = row.get(f"default/{DEFAULT}")
        default_ratio = (f"{default['seconds'] / nt['seconds']:.2f}x"
                         if nt and default and "seconds" in default else "-")
        cells = [_fmt_time(default)] + [_fmt_time(row.get(f"ours/{i}")) for i in OURS] + \
                [_fmt_time(row.get(f"nt/{i}")) for i in OURS]
        lines.append(f"| {row['name']} | " + " | ".join(cells) +
                     f" | {ours_name} / {nt_name} | {ratio} | {default_ratio} | {rate} |")
    overhead = report.get("call_overhead")
    if overhead:
        lines += ["", "Per-call cost of a small kernel (MLP 5-64-3, N = 8): " + ", ".join(
            f"{k} {v * 1e3:.2f} ms" for k, v in overhead.items()) + "."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/bench")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--lib", default="ours", help=argparse.SUPPRESS)
    parser.add_argument("--implementation", default="structured", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(json.loads(args.one), args.lib, args.implementation,
                                     args.repeat)))
    else:
        main(args.out, quick=args.quick, repeat=args.repeat)
