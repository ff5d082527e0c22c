"""One short GPU benchmark: the library's main kernels at realistic sizes, in one process.

Run on a machine with an NVIDIA GPU (a few minutes in all, compilation included)::

    make bench-gpu     # = .venv/bin/python -m benchmarks --gpu --out results/bench

or ``python -m benchmarks --gpu --out DIR`` from the repository root with any Python whose
jax sees the GPU. It writes ``bench_gpu.json`` and ``bench_gpu.md`` to ``DIR`` (default
``results/bench``).

**CUDA jax.** The project's ``.venv`` holds the CPU jax. With internet access, add the CUDA
plugin for the same jax version first (JAX 0.10's extras are ``cuda12`` and ``cuda13``; the
CUDA version ``nvidia-smi`` reports for the driver must be at least the plugin's)::

    V=$(.venv/bin/python -c 'import jax; print(jax.__version__)')
    .venv/bin/pip install "jax[cuda12]==$V"
    .venv/bin/python -c "import jax; print(jax.default_backend())"   # gpu

Without internet (or without the ``.venv`` on that machine), use whatever Python there has a
CUDA jax: every case needs only ``jax``, ``numpy`` and ``flax`` (for the ResNet-18), with
``ntk`` and ``architectures`` imported from the repository root, e.g.
``python3 -m benchmarks --gpu --out DIR`` or ``make bench-gpu PY=python3``; the report
records the jax version and the interpreter. When ``jax.default_backend()`` is not
``'gpu'`` the benchmark says so (on stdout and in the report) and exits 0; ``--allow-cpu``
runs the same cases at tiny sizes instead (a smoke test of this script, not a measurement).

Cases (float32; every kernel wrapped in one ``jax.jit`` as a user would call it in a loop):

1. **FCN eNTK** of Novak, Sohl-Dickstein & Schoenholz 2022 (the ``fcn`` model of
   :mod:`benchmarks.bench_empirical`: 3072 -> 3 x [2048 + ReLU] -> 8), ``N = 128``, full kernel
   ``(N, N, 8, 8)`` (``trace_axes=()``) by ``ntk.empirical_ntk_fn`` with ``implementation``
   ``'auto'``, ``'structured'``, ``'jacobian'``, ``'ntvp'``, each with the default
   ``vmap_axes`` (``'auto'``) and with ``vmap_axes=0``;
2. **CIFAR ResNet-18** (``architectures.resnet18()``, 11.2 M parameters, ``N = 256`` inputs
   32x32x3): ``ntk.approx.pntk_fn`` ``(N, N)``; ``ntk.approx.projected_features_fn(apply_fn,
   1024, sketch=...)`` ``(N, 1024)`` for ``'rademacher'`` and ``'srht'``; the trace eNTK
   ``ntk.empirical_ntk_fn(apply_fn)`` ``(N, N)`` at ``N = 64``;
3. **Myrtle-5 analytic kernels** (``architectures.myrtle_stax(5)`` ``kernel_fn``) on ``N = 64``
   images 32x32x3, NNGP and NTK separately.

Each case: compile seconds (``jit(...).lower(...).compile()``, tracing and the library's
planning included; eNTK plans are made by an eager ``kernel_fn.plan`` call first, which
the jitted call reuses, and the report names the implementation ``'auto'`` picked), then
one warm-up call and the median of 3 timed calls; FLOPs from XLA's
``cost_analysis()`` of the compiled program (``bench_empirical._xla_flops``) give GFLOP/s, and
their fraction of the *measured* float32 matmul peak of the same device (an 8192^2 matmul at
the default precision, TF32 on recent NVIDIA GPUs, and at ``'highest'``, true float32; the
kernels themselves run at the default precision). Cases run one after another in the order
of :func:`cases` (one case of each family first); an error (out of memory, say) is recorded
and the rest run; once ``time_limit`` seconds (210 by default) have passed, the remaining
cases are recorded as skipped.

    python -m benchmarks.bench_gpu --out results/bench [--allow-cpu] [--time-limit 210]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time

from benchmarks.bench_empirical import _xla_flops, make_model, matmul_peak

FCN_IMPLEMENTATIONS = ("auto", "structured", "jacobian", "ntvp")
SKETCHES = ("rademacher", "srht")
TIME_LIMIT_S = 210.0  # leaves room for the case running when it passes


def sizes(tiny: bool) -> dict:
    """Problem sizes: the GPU ones, or tiny ones with the same structure (``--allow-cpu``)."""
    if tiny:
        return {"fcn": {"input": 24, "width": 32, "depth": 3, "out": 8, "n": 4},
                "resnet": {"n": 4, "n_trace": 2, "side": 4, "width": 2, "dim": 16},
                "myrtle": {"n": 3, "side": 4}, "matmul": 128}
    return {"fcn": {"input": 3072, "width": 2048, "depth": 3, "out": 8, "n": 128},
            "resnet": {"n": 256, "n_trace": 64, "side": 32, "width": 64, "dim": 1024},
            "myrtle": {"n": 64, "side": 32}, "matmul": 8192}


# ---------------------------------------------------------------------------------- cases
# Each builder returns (fn, x, params, info) with fn(x, None, params) -> kernel or features
# (the calling convention of bench_empirical._xla_flops) and info a dict for the report.

def _plan(kernel_fn, x, params) -> dict:
    """Make the eNTK plan eagerly and report its choices. The plan is cached per input
    shapes, so the jitted call reuses it; this also keeps ``vmap_axes='auto'``'s probe of
    batch independence out of the traced call, where it cannot run."""
    t0 = time.perf_counter()
    info = kernel_fn.plan(x, None, params)
    return {"plan_seconds": time.perf_counter() - t0,
            "plan": {k: info[k] for k in ("implementation", "batch_detection", "block_size",
                                          "memory_budget") if k in info}}


def _fcn_case(size, implementation, vmap_axes):
    def build():
        import ntk

        apply_fn, params, x = make_model(dict(size, model="fcn"))
        kwargs = {} if vmap_axes == "default" else {"vmap_axes": vmap_axes}
        kernel_fn = ntk.empirical_ntk_fn(apply_fn, trace_axes=(), implementation=implementation,
                                         **kwargs)
        return (lambda x1, x2, p: kernel_fn(x1, x2, p)), x, params, _plan(kernel_fn, x, params)
    vmap = "default vmap_axes" if vmap_axes == "default" else f"vmap_axes={vmap_axes}"
    return {"case": f"FCN eNTK, full, {implementation}, {vmap}", "family": "fcn",
            "n": size["n"], "build": build}


_RESNETS: dict = {}  # (width, side, n) -> (apply_fn, params, x), shared by the ResNet cases


def _resnet(size, n):
    """The ResNet-18 and its inputs, made once per run; a case with fewer inputs takes the
    first ``n``."""
    key = (size["width"], size["side"], size["n"])
    if key not in _RESNETS:
        _RESNETS.clear()
        _RESNETS[key] = _make_resnet(size, max(size["n"], size["n_trace"]))
    apply_fn, params, x = _RESNETS[key]
    return apply_fn, params, x[:n]


def _make_resnet(size, n):
    import jax
    import jax.numpy as jnp

    import architectures

    side = size["side"]
    x = jax.random.normal(jax.random.PRNGKey(1), (n, side, side, 3), jnp.float32)
    apply_fn, params = architectures.init(architectures.resnet18(width=size["width"]),
                                          jax.random.PRNGKey(0), x[:1])
    return apply_fn, params, x


def _resnet_cases(size):
    def pntk():
        from ntk import approx

        apply_fn, params, x = _resnet(size, size["n"])
        kernel_fn = approx.pntk_fn(apply_fn)
        return (lambda x1, x2, p: kernel_fn(x1, x2, p)), x, params, {}

    def projected(sketch):
        def build():
            import jax

            from ntk import approx

            apply_fn, params, x = _resnet(size, size["n"])
            features_fn = approx.projected_features_fn(apply_fn, size["dim"], sketch=sketch)
            return ((lambda x1, x2, p: features_fn(x1, p[0], p[1])), x,
                    (params, jax.random.PRNGKey(2)), {})
        return build

    def trace_entk():
        import ntk

        apply_fn, params, x = _resnet(size, size["n_trace"])
        kernel_fn = ntk.empirical_ntk_fn(apply_fn)
        return (lambda x1, x2, p: kernel_fn(x1, x2, p)), x, params, _plan(kernel_fn, x, params)

    cases = [{"case": "ResNet-18 pNTK (approx.pntk_fn)", "build": pntk, "n": size["n"]}]
    cases += [{"case": f"ResNet-18 projected features, k={size['dim']}, {s}",
               "build": projected(s), "n": size["n"]} for s in SKETCHES]
    cases.append({"case": "ResNet-18 trace eNTK (empirical_ntk_fn)", "build": trace_entk,
                  "n": size["n_trace"]})
    for c in cases:
        c["family"] = "resnet18"
    return cases


def _myrtle_case(size, get):
    def build():
        import jax
        import jax.numpy as jnp

        import architectures

        _, _, kernel_fn = architectures.myrtle_stax(5)
        side = size["side"]
        x = jax.random.normal(jax.random.PRNGKey(3), (size["n"], side, side, 3), jnp.float32)
        return (lambda x1, x2, p: kernel_fn(x1, x2, get)), x, None, {}
    return {"case": f"Myrtle-5 analytic {get.upper()}", "family": "myrtle", "n": size["n"],
            "build": build}


def cases(tiny: bool = False) -> list[dict]:
    """Every case in running order: one of each family first (so that a time-guarded run
    still covers all three), then the remaining FCN implementations."""
    s = sizes(tiny)
    fcn = [_fcn_case(s["fcn"], impl, vmap) for impl in FCN_IMPLEMENTATIONS
           for vmap in ("default", 0)]
    resnet = _resnet_cases(s["resnet"])
    myrtle = [_myrtle_case(s["myrtle"], get) for get in ("nngp", "ntk")]
    return fcn[:1] + resnet[:1] + myrtle[:1] + fcn[1:2] + resnet[1:] + myrtle[1:] + fcn[2:]


# ------------------------------------------------------------------------------ measuring

def _checksum(out) -> list:
    import jax
    import numpy as np

    leaves = [np.asarray(a, np.float64) for a in jax.tree_util.tree_leaves(out)]
    return [float(sum(a.sum() for a in leaves)),
            float(np.sqrt(sum((a ** 2).sum() for a in leaves)))]


def measure(fn, x, params, repeat: int = 3) -> dict:
    """Compile seconds, median seconds of ``repeat`` calls after a warm-up, XLA's FLOPs."""
    import jax

    jitted = jax.jit(fn)
    t0 = time.perf_counter()
    flops = _xla_flops(jitted, x, params)  # lowers and compiles; the calls below reuse it
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = jax.block_until_ready(jitted(x, None, params))
    first_s = time.perf_counter() - t0
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(jitted(x, None, params))
        times.append(time.perf_counter() - t0)
    seconds = statistics.median(times)
    shape = [list(a.shape) for a in jax.tree_util.tree_leaves(out)]
    return {"seconds": seconds, "times": times, "compile_seconds": compile_s,
            "first_call_seconds": first_s, "flops": flops,
            "gflops_per_s": flops / seconds / 1e9 if flops else None,
            "shape": shape[0] if len(shape) == 1 else shape, "checksum": _checksum(out)}


def _error(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".replace("\n", " ")
    if "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower():
        return "out of memory: " + text[:200]
    return text[:300]


def _environment(tiny: bool) -> dict:
    import jax

    device = jax.devices()[0]
    env = {"backend": jax.default_backend(), "device": device.device_kind,
           "device_count": jax.device_count(), "jax": jax.__version__,
           "python": platform.python_version(), "executable": sys.executable,
           "tiny_sizes": tiny,
           "matmul_precision": str(getattr(jax.config, "jax_default_matmul_precision", None))}
    try:
        import jaxlib
        env["jaxlib"] = jaxlib.__version__
    except Exception:  # noqa: BLE001 - the version is informational
        pass
    try:
        stats = device.memory_stats() or {}
        if stats.get("bytes_limit"):
            env["memory_bytes_limit"] = int(stats["bytes_limit"])
    except Exception:  # noqa: BLE001 - CPU devices may not report memory
        pass
    return env


def _peaks(n: int) -> dict:
    import jax

    peaks = {}
    for name, precision in (("default", None), ("highest", "highest")):
        try:
            if precision is None:
                peaks[name] = matmul_peak(n)
            else:
                with jax.default_matmul_precision(precision):
                    peaks[name] = matmul_peak(n)
        except Exception as err:  # noqa: BLE001 - a missing peak only drops a column
            peaks[name] = None
            peaks[name + "_error"] = _error(err)
    return peaks


def run(allow_cpu: bool = False, time_limit: float = TIME_LIMIT_S, repeat: int = 3) -> dict:
    """The whole benchmark as a JSON-ready dict (no files written)."""
    import jax

    start = time.perf_counter()
    backend = jax.default_backend()
    tiny = backend != "gpu"
    report = {"environment": _environment(tiny), "time_limit_s": time_limit, "rows": []}
    if backend != "gpu" and not allow_cpu:
        report["note"] = (f"no GPU: jax.default_backend() is {backend!r} (jax "
                          f"{jax.__version__}); nothing was measured. Install CUDA jax (see "
                          f"the docstring of benchmarks/bench_gpu.py) or pass --allow-cpu for "
                          f"a tiny smoke run.")
        return report
    if tiny:
        report["note"] = (f"--allow-cpu on backend {backend!r}: tiny sizes, a smoke test of "
                          f"the benchmark, not a measurement.")
    s = sizes(tiny)
    report["matmul_n"] = s["matmul"]
    report["matmul_peak_flops_per_s"] = _peaks(s["matmul"])
    peaks = report["matmul_peak_flops_per_s"]
    for case in cases(tiny):
        row = {"case": case["case"], "family": case["family"], "n": case["n"]}
        elapsed = time.perf_counter() - start
        if elapsed > time_limit:
            row["error"] = f"skipped: time guard ({elapsed:.0f} s > {time_limit:.0f} s)"
        else:
            try:
                fn, x, params, info = case["build"]()
                row.update(info)
                row.update(measure(fn, x, params, repeat))
                row["compile_seconds"] += row.get("plan_seconds", 0.0)
                del fn, x, params
            except Exception as err:  # noqa: BLE001 - one failure must not stop the rest
                row["error"] = _error(err)
            gc.collect()
        for name in ("default", "highest"):
            if row.get("gflops_per_s") and peaks.get(name):
                row[f"fraction_of_{name}_peak"] = row["gflops_per_s"] * 1e9 / peaks[name]
        report["rows"].append(row)
        print(_line(row), flush=True)
    _RESNETS.clear()
    report["total_seconds"] = time.perf_counter() - start
    return report


# -------------------------------------------------------------------------------- report

def _num(v, fmt):
    return "-" if v is None else format(v, fmt)


def _line(row) -> str:
    if "error" in row:
        return f"{row['case']} (N={row['n']}): {row['error']}"
    return (f"{row['case']} (N={row['n']}): {row['seconds']:.4f} s, compile "
            f"{row['compile_seconds']:.1f} s, {_num(row.get('gflops_per_s'), '.1f')} GFLOP/s")


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [f"# GPU benchmark on {env['device']} ({env['backend']}, jax {env['jax']})", ""]
    if report.get("note"):
        lines += [f"**Note:** {report['note']}", ""]
    peaks = report.get("matmul_peak_flops_per_s")
    if peaks is not None:
        n = report.get("matmul_n")
        lines += [f"Measured float32 matmul peak ({n}x{n} @ {n}x{n}, best of 5): "
                  f"{_num(peaks.get('default') and peaks['default'] / 1e9, '.0f')} GFLOP/s at "
                  f"the default precision, "
                  f"{_num(peaks.get('highest') and peaks['highest'] / 1e9, '.0f')} GFLOP/s at "
                  f"'highest'. Seconds: median of 3 calls after a warm-up; compile: "
                  f"lowering and XLA compilation of the jitted kernel; GFLOP/s from XLA's cost "
                  f"analysis; peak fraction against the default / 'highest' matmul.", ""]
    if report["rows"]:
        lines += ["| case | N | seconds | compile seconds | GFLOP/s | fraction of matmul peak "
                  "(default / highest) | device |",
                  "|---|---|---|---|---|---|---|"]
        for row in report["rows"]:
            if "error" in row:
                lines.append(f"| {row['case']} | {row['n']} | {row['error'][:120]} | - | - | - | "
                             f"{env['device']} |")
                continue
            frac = (f"{_num(row.get('fraction_of_default_peak'), '.2f')} / "
                    f"{_num(row.get('fraction_of_highest_peak'), '.2f')}")
            name = row["case"]
            if "plan" in row and "auto" in name:
                name += f" (picks {row['plan'].get('implementation')})"
            lines.append(f"| {name} | {row['n']} | {row['seconds']:.4f} | "
                         f"{row['compile_seconds']:.1f} | "
                         f"{_num(row.get('gflops_per_s'), '.1f')} | {frac} | {env['device']} |")
    if "total_seconds" in report:
        lines += ["", f"Total wall time {report['total_seconds']:.0f} s "
                      f"(time guard {report['time_limit_s']:.0f} s)."]
    return "\n".join(lines) + "\n"


def main(out_dir: str, allow_cpu: bool = False, time_limit: float = TIME_LIMIT_S) -> dict:
    """Run the benchmark and write ``bench_gpu.json`` and ``bench_gpu.md`` to ``out_dir``."""
    report = run(allow_cpu=allow_cpu, time_limit=time_limit)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "bench_gpu.json"), "w") as f:
        json.dump(report, f, indent=1, default=str)
    table = markdown(report)
    with open(os.path.join(out_dir, "bench_gpu.md"), "w") as f:
        f.write(table)
    print(table)
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/bench")
    parser.add_argument("--allow-cpu", action="store_true",
                        help="without a GPU, run the cases at tiny sizes")
    parser.add_argument("--time-limit", type=float, default=TIME_LIMIT_S,
                        help="seconds after which the remaining cases are skipped")
    args = parser.parse_args()
    main(args.out, allow_cpu=args.allow_cpu, time_limit=args.time_limit)
    sys.exit(0)
