"""Analytic kernel speed: ntk.stax against neural-tangents 0.6.5, in the same run.

Two networks (float64, NNGP and NTK together, ``x2 = None``):

* a deep MLP: 10 x (Dense(512, W_std=1.4, b_std=0.05) + Relu) + Dense(1), N = 2000 inputs
  of dimension 64;
* a CNN with global average pooling: 3 x (Conv(64, 3x3, SAME) + Relu) + GlobalAvgPool +
  Dense(1), N = 32 images of 8 x 8 x 3 (the kernel keeps every pair of pixels: N^2 P^2).

Ours is timed here (jit-compiled once, then the best of ``repeat`` calls with
``block_until_ready``); neural-tangents is timed the same way inside its own environment by
``reference/nt_stax.py`` (``jax.jit`` of its ``kernel_fn``). Reported: seconds, nanoseconds
per kernel entry (per pair of inputs) and the ratio nt / ours (> 1: we are faster).

    .venv/bin/python -m benchmarks.bench_stax [--out results/bench]
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


def _time_ours(spec, x, repeat):
    import jax

    _, _, kernel_fn = _build_ours(spec)
    t0 = time.perf_counter()
    jax.block_until_ready(kernel_fn(x, None, ("nngp", "ntk")))
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(kernel_fn(x, None, ("nngp", "ntk")))
        best = min(best, time.perf_counter() - t0)
    return best, first


def main(out_dir: str = "results/bench", repeat: int = 3, quick: bool = False) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    sys.path.insert(0, ROOT)
    from reference.make_stax_golden import REF_PYTHON, run_reference

    rng = np.random.RandomState(0)
    n_mlp = 500 if quick else 2000
    n_cnn = 8 if quick else 32
    benches = [
        ("deep MLP (10 x Dense(512)+Relu), N=%d, d=64" % n_mlp, _spec_mlp(), "x_mlp",
         rng.randn(n_mlp, 64)),
        ("CNN (3 x Conv(64, 3x3, SAME)+Relu) + GlobalAvgPool, N=%d, 8x8x3" % n_cnn,
         _spec_cnn(), "x_cnn", rng.randn(n_cnn, 8, 8, 3)),
    ]
    rows = []
    nt_out = None
    if os.path.exists(REF_PYTHON):
        cases = [dict(layers=spec, x1=key, x2=None, get=["nngp", "ntk"], repeat=repeat)
                 for _, spec, key, _ in benches]
        arrays = {key: x for _, _, key, x in benches}
        try:
            nt_out = run_reference(cases, arrays)
        except Exception as err:  # noqa: BLE001 - report, do not crash the benchmark
            print(f"neural-tangents run failed: {err}", file=sys.stderr)
    for i, (label, spec, _, x) in enumerate(benches):
        ours, first = _time_ours(spec, x, repeat)
        entries = x.shape[0] ** 2
        row = dict(network=label, n=int(x.shape[0]), ours_s=ours, ours_first_call_s=first,
                   ours_ns_per_entry=ours / entries * 1e9)
        if nt_out is not None and f"{i}/seconds" in nt_out:
            nt = float(nt_out[f"{i}/seconds"])
            _, _, kernel_fn = _build_ours(spec)
            ntk = np.asarray(kernel_fn(x, None, "ntk"))
            ref = nt_out[f"{i}/ntk"]
            row.update(nt_s=nt, nt_ns_per_entry=nt / entries * 1e9, speedup_vs_nt=nt / ours,
                       max_rel_diff_vs_nt=float(np.max(np.abs(ntk - ref)) / np.max(np.abs(ref))))
        rows.append(row)
    result = dict(rows=rows, environment=dict(
        python=platform.python_version(), jax=jax.__version__,
        device=str(jax.devices()[0]), cpu_count=os.cpu_count(), dtype="float64",
        repeat=repeat))
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "bench_stax.json"), "w") as f:
        json.dump(result, f, indent=2)
    lines = ["| network | N | ours (s) | ns/entry | neural-tangents (s) | ns/entry | nt / ours |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        nt = (f"{r['nt_s']:.3f} | {r['nt_ns_per_entry']:.0f} | {r['speedup_vs_nt']:.2f}x"
              if "nt_s" in r else "n/a | n/a | n/a")
        lines.append(f"| {r['network']} | {r['n']} | {r['ours_s']:.3f} | "
                     f"{r['ours_ns_per_entry']:.0f} | {nt} |")
    table = "\n".join(lines)
    with open(os.path.join(out_dir, "bench_stax.md"), "w") as f:
        f.write("# Analytic kernels: ntk.stax vs neural-tangents 0.6.5\n\n" + table + "\n")
    print(table)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/bench")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    main(args.out, args.repeat, args.quick)
