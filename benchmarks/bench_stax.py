"""Analytic kernel speed: ntk.stax against neural-tangents 0.6.5, in the same run.

Networks (NNGP and NTK together; each row says its dtype and whether ``x2`` is ``None``):

* a deep MLP: 10 x (Dense(512, W_std=1.4, b_std=0.05) + Relu) + Dense(1), N = 2000 inputs
  of dimension 64 (float64);
* a CNN with global average pooling: 3 x (Conv(64, 3x3, SAME) + Relu) + GlobalAvgPool +
  Dense(1), N = 24 images of 8 x 8 x 3 (the kernel keeps every pair of pixels: N^2 P^2),
  float32 and float64;
* the Myrtle family (Shankar et al. 2020, "Neural Kernels Without Tangents", arXiv:2003.02237;
  the form in neural-tangents' examples): 3x3 SAME Conv + Relu blocks (2/1/1, 2/2/2 or 3/3/3
  per stage for depth 5/7/10, W_std = sqrt(2), b_std = 0), a 2x2 average pool after each of
  the three stages and two more down to 1 x 1, Flatten, Dense(10); 32 x 32 x 3 images,
  float32 and float64, ``x2 = None`` and ``x1 != x2``.

Ours is timed here (compiled once, then the best of ``repeat`` calls with
``block_until_ready``); neural-tangents is timed the same way inside its own environment by
``reference/nt_stax.py`` (``jax.jit`` of its ``kernel_fn``; 64-bit types off for the float32
rows). Reported: seconds, nanoseconds per kernel entry (per pair of inputs), the ratio
nt / ours (> 1: we are faster) and the largest NTK difference relative to its maximum.

    .venv/bin/python -m benchmarks.bench_stax [--out results/bench] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _spec_mlp(depth=10, width=512):
    layers = []
    for _ in range(depth):
        layers += [["Dense", dict(out_dim=width, W_std=1.4, b_std=0.05)], ["Relu", {}]]
    layers.append(["Dense", dict(out_dim=1, W_std=1.4, b_std=0.05)])
    return ["serial", layers]


def _spec_cnn(depth=3, channels=64):
    layers = []
    for _ in range(depth):
        layers += [["Conv", dict(out_chan=channels, filter_shape=[3, 3], padding="SAME",
                                 W_std=1.4, b_std=0.05)], ["Relu", {}]]
    layers += [["GlobalAvgPool", {}], ["Dense", dict(out_dim=1, W_std=1.0)]]
    return ["serial", layers]


def _spec_myrtle(depth):
    """Myrtle-``depth`` CNN (Shankar et al. 2020) in the battery's spec language."""
    blocks = {5: (2, 1, 1), 7: (2, 2, 2), 10: (3, 3, 3)}[depth]
    conv = ["Conv", dict(out_chan=1, filter_shape=[3, 3], padding="SAME", W_std=2**0.5,
                         b_std=0.0)]
    pool = ["AvgPool", dict(window_shape=[2, 2], strides=[2, 2])]
    layers = []
    for count in blocks:
        layers += [conv, ["Relu", {}]] * count + [pool]
    layers += [pool, pool, ["Flatten", {}], ["Dense", dict(out_dim=10, W_std=2**0.5, b_std=0.0)]]
    return ["serial", layers]


def _build_ours(spec):
    from ntk import stax

    name, arg = spec
    if name in ("serial", "parallel"):
        return getattr(stax, name)(*[_build_ours(s) for s in arg])
    kwargs = dict(arg)
    for key in ("filter_shape", "strides", "window_shape"):
        if kwargs.get(key) is not None:
            kwargs[key] = tuple(kwargs[key])
    return getattr(stax, name)(**kwargs)


def _time_ours(spec, x1, x2, repeat):
    import jax

    _, _, kernel_fn = _build_ours(spec)
    t0 = time.perf_counter()
    out = jax.block_until_ready(kernel_fn(x1, x2, ("nngp", "ntk")))
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(kernel_fn(x1, x2, ("nngp", "ntk")))
        best = min(best, time.perf_counter() - t0)
    return best, first, out


def cases(quick: bool = False):
    """``[(label, spec, x1 name, x2 name or None, dtype, shape1, shape2)]``."""
    n_mlp = 500 if quick else 2000
    n_cnn = 8 if quick else 24
    n_myrtle = 2 if quick else 8
    n_deep = 2 if quick else 4
    out = [("deep MLP (10 x Dense(512)+Relu), d=64", _spec_mlp(), "float64",
            (n_mlp, 64), None)]
    for dtype in ("float32", "float64"):
        out.append(("CNN (3 x Conv(64, 3x3, SAME)+Relu) + GlobalAvgPool, 8x8x3", _spec_cnn(),
                    dtype, (n_cnn, 8, 8, 3), None))
    for dtype in ("float32", "float64"):
        out.append(("Myrtle-5, 32x32x3", _spec_myrtle(5), dtype, (n_myrtle, 32, 32, 3), None))
        out.append(("Myrtle-5, 32x32x3", _spec_myrtle(5), dtype, (n_myrtle, 32, 32, 3),
                    (n_myrtle // 2, 32, 32, 3)))
        for depth in (7, 10):
            out.append((f"Myrtle-{depth}, 32x32x3", _spec_myrtle(depth), dtype,
                        (n_deep, 32, 32, 3), None))
    return out


def main(out_dir: str = "results/bench", repeat: int = 2, quick: bool = False) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    sys.path.insert(0, ROOT)
    from reference.make_stax_golden import REF_PYTHON, run_reference

    rng = np.random.RandomState(0)
    benches, arrays = [], {}
    for i, (label, spec, dtype, shape1, shape2) in enumerate(cases(quick)):
        arrays[f"x{i}a"] = rng.randn(*shape1).astype(dtype)
        if shape2 is not None:
            arrays[f"x{i}b"] = rng.randn(*shape2).astype(dtype)
        benches.append((label, spec, f"x{i}a", None if shape2 is None else f"x{i}b", dtype))
    rows = []
    nt_out = None
    if os.path.exists(REF_PYTHON):
        specs = [dict(layers=spec, x1=k1, x2=k2, get=["nngp", "ntk"], repeat=repeat,
                      x64=dtype == "float64") for _, spec, k1, k2, dtype in benches]
        try:
            nt_out = run_reference(specs, arrays, timeout=7200)
        except Exception as err:  # noqa: BLE001 - report, do not crash the benchmark
            print(f"neural-tangents run failed: {err}", file=sys.stderr)
    for i, (label, spec, k1, k2, dtype) in enumerate(benches):
        x1 = arrays[k1]
        x2 = None if k2 is None else arrays[k2]
        ours, first, out = _time_ours(spec, x1, x2, repeat)
        n2 = x1.shape[0] if x2 is None else x2.shape[0]
        entries = x1.shape[0] * n2
        row = dict(network=label, n1=int(x1.shape[0]), n2=int(n2), x2_is_none=x2 is None,
                   dtype=str(out.ntk.dtype), ours_s=ours, ours_first_call_s=first,
                   ours_ns_per_entry=ours / entries * 1e9)
        if nt_out is not None and f"{i}/seconds" in nt_out:
            nt = float(nt_out[f"{i}/seconds"])
            ref = nt_out[f"{i}/ntk"]
            ntk = np.asarray(out.ntk, np.float64)
            row.update(nt_s=nt, nt_dtype=str(nt_out[f"{i}/dtype"]),
                       nt_ns_per_entry=nt / entries * 1e9, speedup_vs_nt=nt / ours,
                       max_rel_diff_vs_nt=float(np.max(np.abs(ntk - ref)) / np.max(np.abs(ref))))
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = dict(rows=rows, environment=dict(
        python=platform.python_version(), jax=jax.__version__,
        device=str(jax.devices()[0]), cpu_count=os.cpu_count(), repeat=repeat))
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "bench_stax.json"), "w") as f:
        json.dump(result, f, indent=2)
    lines = ["| network | dtype | N1 x N2 | ours (s) | ns/entry | neural-tangents (s) | ns/entry "
             "| nt / ours | NTK rel. diff |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pairs = f"{r['n1']} x {'same' if r['x2_is_none'] else r['n2']}"
        nt = (f"{r['nt_s']:.3f} | {r['nt_ns_per_entry']:.0f} | {r['speedup_vs_nt']:.2f}x | "
              f"{r['max_rel_diff_vs_nt']:.1e}" if "nt_s" in r else "n/a | n/a | n/a | n/a")
        lines.append(f"| {r['network']} | {r['dtype']} | {pairs} | {r['ours_s']:.3f} | "
                     f"{r['ours_ns_per_entry']:.0f} | {nt} |")
    table = "\n".join(lines)
    with open(os.path.join(out_dir, "bench_stax.md"), "w") as f:
        f.write("# Analytic kernels: ntk.stax vs neural-tangents 0.6.5\n\n" + table + "\n")
    print(table)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/bench")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    main(args.out, args.repeat, args.quick)
