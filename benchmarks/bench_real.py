"""Kernels of real networks: the CIFAR ResNet-18 and a GPT decoder, against the plain JAX a
user would write and against PyTorch + TRAK.

Every case runs in a fresh subprocess, so its peak resident memory (``VmHWM`` minus the
resident size just before the first kernel call; helpers from :mod:`benchmarks.bench_approx`)
is its own. Times are medians of repeats after a warm-up call; the warm-up call (tracing,
compilation and one run) is reported separately as ``first_call_s``. float32 throughout;
CIFAR-shaped random inputs ``(N, 32, 32, 3)``; ``architectures.resnet18()`` (11,173,962
parameters, BatchNorm in inference mode, 10 logits).

Cases:

1. **Trace eNTK** ``(N, N)`` (``ntk.empirical_ntk_fn(apply_fn, vmap_axes=0)``, default
   ``trace_axes`` — the mean over logits — and default memory budget) against plain JAX: for
   each logit ``o``, per-example gradients ``J_o = vmap(grad(f_o))`` flattened over the
   parameters and ``K += J_o J_o^T / O``. Both kernels are saved and compared (maximum
   relative difference, must be below 1e-4).
2. **pNTK** ``(N, N)`` (``ntk.approx.pntk_fn``) against plain JAX per-example gradients of
   ``sum_i f_i / sqrt O`` and their Gram matrix ``J J^T``. Plain JAX holds ``J`` (``N P``
   floats) at once; where that exceeds half the machine's memory it is not run and the
   bytes it would need are recorded.
3. **Projected features** ``(N, k)`` (``ntk.approx.projected_features_fn``, ``output='sum'``)
   with the dense Rademacher / Gaussian sketches TRAK uses and our cheaper ``'sparse'`` and
   ``'srht'``, against TRAK's ``BasicProjector`` on ``torch.func`` per-example gradients of
   the same network (``benchmarks/peer/torch_trak.py`` in ``.venv-peer``; ``make peer``),
   same ``N``, ``k``, sketch kind and thread count: ratio ours / theirs. Plain JAX with a
   stored ``P x k`` sketch is not run (``P k`` floats; the bytes are recorded).
4. **Full eNTK of a GPT decoder** (vocab 64, context 16, dim 64, depth 2; ``trace_axes=()``,
   ``(N, N, T V, T V)``) by every implementation, against plain JAX ``jacrev`` Jacobians
   contracted by ``einsum``.

``main(out_dir, quick=False)`` writes ``bench_real.json`` and ``bench_real.md``.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time

from benchmarks.bench_approx import _peak_mb, _rss_mb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER_PYTHON = os.path.join(ROOT, ".venv-peer", "bin", "python")
PEER_SCRIPT = os.path.join(ROOT, "benchmarks", "peer", "torch_trak.py")
NUM_CLASSES = 10
GPT_SMALL = {"vocab_size": 64, "context": 16, "dim": 64, "depth": 2, "heads": 4}
IMPLEMENTATIONS = ("jacobian", "ntvp", "structured", "auto")


# ---------------------------------------------------------------------------------------------
# Worker side (one case per process)
# ---------------------------------------------------------------------------------------------


def _resnet(n, width=64):
    import jax
    import jax.numpy as jnp

    import architectures

    x = jax.random.normal(jax.random.PRNGKey(1), (n, 32, 32, 3), jnp.float32)
    apply_fn, params = architectures.init(architectures.resnet18(NUM_CLASSES, width=width),
                                          jax.random.PRNGKey(0), x[:1])
    return apply_fn, params, x


def _gpt(n):
    import jax
    import jax.numpy as jnp

    import architectures

    cfg = GPT_SMALL
    x = jax.random.randint(jax.random.PRNGKey(1), (n, cfg["context"]), 0, cfg["vocab_size"],
                           jnp.int32)
    apply_fn, params = architectures.init(architectures.gpt(**cfg), jax.random.PRNGKey(0),
                                          x[:1])
    return apply_fn, params, x


def _flat_grads(grads, n):
    import jax
    import jax.numpy as jnp

    return jnp.concatenate([g.reshape(n, -1) for g in jax.tree_util.tree_leaves(grads)], 1)


def _plain_trace(apply_fn, params, x):
    """What a user writes: per-logit per-example gradients, ``K = sum_o J_o J_o^T / O``."""
    import jax
    import jax.numpy as jnp

    n = x.shape[0]

    @jax.jit
    def one_logit(p, xs, o):
        def f(prm, xi):
            return apply_fn(prm, xi[None])[0, o]
        j = _flat_grads(jax.vmap(jax.grad(f), (None, 0))(p, xs), n)
        return j @ j.T

    def call():
        k = jnp.zeros((n, n), jnp.float32)
        for o in range(NUM_CLASSES):
            k = k + one_logit(params, x, o)
        return k / NUM_CLASSES
    return call


def _plain_pntk(apply_fn, params, x):
    import jax
    import jax.numpy as jnp

    n = x.shape[0]

    @jax.jit
    def gram(p, xs):
        def g(prm, xi):
            return jnp.sum(apply_fn(prm, xi[None])[0]) / jnp.sqrt(NUM_CLASSES)
        j = _flat_grads(jax.vmap(jax.grad(g), (None, 0))(p, xs), n)
        return j @ j.T
    return lambda: gram(params, x)


def _plain_full(apply_fn, params, x):
    import jax
    import jax.numpy as jnp

    n = x.shape[0]

    @jax.jit
    def kernel(p, xs):
        jac = jax.jacrev(lambda prm: apply_fn(prm, xs).reshape(n, -1))(p)
        leaves = [j.reshape(n, j.shape[1], -1) for j in jax.tree_util.tree_leaves(jac)]
        return sum(jnp.einsum("aip,bjp->abij", j, j) for j in leaves)
    return lambda: kernel(params, x)


def _worker(spec: dict) -> dict:
    import jax
    import numpy as np

    import ntk
    from ntk import approx

    case, impl, n = spec["case"], spec["impl"], spec["n"]
    if case == "gpt_full":
        apply_fn, params, x = _gpt(n)
    else:
        apply_fn, params, x = _resnet(n, spec.get("width", 64))
    n_params = int(sum(v.size for v in jax.tree_util.tree_leaves(params)))
    if case == "trace_entk":
        if impl == "plain":
            call = _plain_trace(apply_fn, params, x)
        else:
            fn = ntk.empirical_ntk_fn(apply_fn, vmap_axes=0)
            call = lambda: fn(x, None, params)  # noqa: E731
    elif case == "pntk":
        if impl == "plain":
            call = _plain_pntk(apply_fn, params, x)
        else:
            fn = approx.pntk_fn(apply_fn)
            call = lambda: fn(x, None, params)  # noqa: E731
    elif case == "projected":
        feats = approx.projected_features_fn(apply_fn, spec["k"], sketch=impl)
        key = jax.random.PRNGKey(2)
        call = lambda: feats(x, params, key)  # noqa: E731
    elif case == "gpt_full":
        if impl == "plain":
            call = _plain_full(apply_fn, params, x)
        else:
            fn = ntk.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0,
                                      implementation=impl)
            call = lambda: fn(x, None, params)  # noqa: E731
    else:
        raise ValueError(f"unknown case {case!r}")
    base = _rss_mb()
    t = time.perf_counter()
    out = jax.block_until_ready(call())
    first = time.perf_counter() - t
    peak = _peak_mb() - base
    times = []
    for _ in range(spec.get("repeats", 2)):
        t = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - t)
    if spec.get("save"):
        np.save(spec["save"], np.asarray(out))
    return {**spec, "time_s": float(np.median(times)), "first_call_s": first,
            "peak_extra_mb": round(peak, 1), "output_shape": list(out.shape),
            "n_params": n_params, "finite": bool(np.isfinite(np.asarray(out)).all())}


# ---------------------------------------------------------------------------------------------
# Driver side
# ---------------------------------------------------------------------------------------------


def _last_json(proc, spec):
    if proc.returncode != 0:
        lines = (proc.stderr or "").strip().splitlines()
        why = lines[-1] if lines else f"exit {proc.returncode}"
        if proc.returncode < 0:
            why = f"killed by signal {-proc.returncode} (out of memory?)"
        return {**spec, "error": why}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _run(spec: dict, timeout: float) -> dict:
    try:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_real", "--worker",
                               json.dumps(spec)], capture_output=True, text=True,
                              timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"timed out after {timeout:.0f} s"}
    return _last_json(proc, spec)


def _run_peer(spec: dict, timeout: float) -> dict:
    if not os.path.exists(PEER_PYTHON):
        return {**spec, "error": "skipped: no .venv-peer (run `make peer`)"}
    try:
        proc = subprocess.run([PEER_PYTHON, PEER_SCRIPT, json.dumps(spec)], capture_output=True,
                              text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"timed out after {timeout:.0f} s"}
    return _last_json(proc, spec)


def _resnet_params(width):
    import jax
    import jax.numpy as jnp

    import architectures

    shapes = jax.eval_shape(lambda: architectures.init(
        architectures.resnet18(NUM_CLASSES, width=width), jax.random.PRNGKey(0),
        jnp.zeros((1, 32, 32, 3)), calibration_steps=0)[1])
    return int(sum(v.size for v in jax.tree_util.tree_leaves(shapes)))


def _physical_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _show(r):
    if "error" in r:
        return f"error: {r['error']}"
    return (f"{r['time_s']:.3f} s (first call {r['first_call_s']:.1f} s) "
            f"peak+{r['peak_extra_mb']} MB")


def plan(quick: bool) -> dict:
    """The cases of one run: lists of worker / peer specs per section."""
    if quick:
        return {"width": 16, "trace_n": [8], "pntk_n": [8], "projected": [(8, 1024)],
                "peer_n": [8], "peer_types": ("rademacher",), "gpt_n": 2,
                "sketches": ("rademacher", "sparse", "srht"), "repeats": 1}
    return {"width": 64, "trace_n": [16, 32, 256], "pntk_n": [32, 256, 2000],
            "projected": [(32, 1024), (256, 1024), (2000, 1024), (32, 10240)],
            "peer_n": [32, 256], "peer_types": ("rademacher", "normal"), "gpt_n": 4,
            "sketches": ("rademacher", "gaussian", "sparse", "srht"), "repeats": 2}


def main(out_dir: str, quick: bool = False, timeout: float = 7200) -> dict:
    import numpy as np

    os.makedirs(out_dir, exist_ok=True)
    cfg = plan(quick)
    threads = os.cpu_count()
    width = cfg["width"]
    n_params = 11_173_962 if width == 64 else _resnet_params(width)
    half_memory = _physical_bytes() / 2
    rep = cfg["repeats"]
    results = {"trace_entk": [], "pntk": [], "projected": [], "peer": [], "gpt_full": [],
               "ratios": []}

    with tempfile.TemporaryDirectory() as tmp:
        for n in cfg["trace_n"]:
            rows = {}
            plain_bytes = n * n_params * 4
            for impl in ("ntk", "plain"):
                if impl == "plain" and plain_bytes > half_memory:
                    r = {"case": "trace_entk", "impl": impl, "n": n,
                         "error": f"not run: J needs {plain_bytes / 2**30:.1f} GiB"}
                else:
                    r = _run({"case": "trace_entk", "impl": impl, "n": n, "repeats": rep, "width": width,
                              "save": os.path.join(tmp, f"trace_{impl}_{n}.npy")}, timeout)
                rows[impl] = r
                results["trace_entk"].append(r)
                print(f"  trace eNTK N={n:5d} {impl:6s} {_show(r)}", flush=True)
            ratio = {"case": "trace_entk", "n": n}
            if all("time_s" in r for r in rows.values()):
                a = np.load(os.path.join(tmp, f"trace_ntk_{n}.npy"))
                b = np.load(os.path.join(tmp, f"trace_plain_{n}.npy"))
                ratio["max_rel_diff"] = float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
                ratio["agree_1e-4"] = ratio["max_rel_diff"] < 1e-4
                ratio["time_ours_over_plain"] = rows["ntk"]["time_s"] / rows["plain"]["time_s"]
                ratio["peak_ours_over_plain"] = (rows["ntk"]["peak_extra_mb"] /
                                                 max(rows["plain"]["peak_extra_mb"], 1e-9))
            results["ratios"].append(ratio)

        for n in cfg["pntk_n"]:
            rows = {}
            plain_bytes = n * n_params * 4
            for impl in ("ntk", "plain"):
                if impl == "plain" and plain_bytes > half_memory:
                    r = {"case": "pntk", "impl": impl, "n": n,
                         "error": f"not run: J needs {plain_bytes / 2**30:.1f} GiB"}
                else:
                    r = _run({"case": "pntk", "impl": impl, "n": n, "width": width,
                              "repeats": 1 if n > 256 else rep,
                              "save": os.path.join(tmp, f"pntk_{impl}_{n}.npy")}, timeout)
                rows[impl] = r
                results["pntk"].append(r)
                print(f"  pNTK N={n:5d} {impl:6s} {_show(r)}", flush=True)
            ratio = {"case": "pntk", "n": n}
            if all("time_s" in r for r in rows.values()):
                a = np.load(os.path.join(tmp, f"pntk_ntk_{n}.npy"))
                b = np.load(os.path.join(tmp, f"pntk_plain_{n}.npy"))
                ratio["max_rel_diff"] = float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
                ratio["time_ours_over_plain"] = rows["ntk"]["time_s"] / rows["plain"]["time_s"]
                ratio["peak_ours_over_plain"] = (rows["ntk"]["peak_extra_mb"] /
                                                 max(rows["plain"]["peak_extra_mb"], 1e-9))
            results["ratios"].append(ratio)

    for n, k in cfg["projected"]:
        sketches = cfg["sketches"] if k <= 1024 else ("rademacher", "sparse")
        for sketch in sketches:
            r = _run({"case": "projected", "impl": sketch, "n": n, "k": k, "width": width,
                      "repeats": 1 if n > 256 else rep,
                      "stored_sketch_gib": round(n_params * k * 4 / 2**30, 1)}, timeout)
            results["projected"].append(r)
            print(f"  projected N={n:5d} k={k:5d} {sketch:10s} {_show(r)}", flush=True)

    for n in cfg["peer_n"]:
        for proj_type in cfg["peer_types"]:
            r = _run_peer({"n": n, "k": 1024, "proj_type": proj_type, "threads": threads,
                           "repeats": rep, "width": width}, timeout)
            results["peer"].append(r)
            print(f"  torch+TRAK N={n:5d} k=1024 {proj_type:10s} "
                  + (f"error: {r['error']}" if "error" in r else
                     f"{r['time_s']:.3f} s (grads {r['grad_time_s']:.3f} s) "
                     f"peak+{r['peak_extra_mb']} MB"), flush=True)
            ours_kind = "gaussian" if proj_type == "normal" else "rademacher"
            ours = next((o for o in results["projected"] if o["n"] == n and o["k"] == 1024
                         and o["impl"] == ours_kind and "time_s" in o), None)
            if ours is None:
                ours = _run({"case": "projected", "impl": ours_kind, "n": n, "k": 1024,
                             "repeats": rep, "width": width}, timeout)
                results["projected"].append(ours)
            cheapest = min((o for o in results["projected"] if o["n"] == n and o["k"] == 1024
                            and "time_s" in o), key=lambda o: o["time_s"], default=None)
            ratio = {"case": "projected_vs_trak", "n": n, "k": 1024, "sketch": proj_type}
            if ours is not None and "time_s" in ours and "time_s" in r:
                ratio["time_ours_over_trak"] = ours["time_s"] / r["time_s"]
                ratio["peak_ours_over_trak"] = ours["peak_extra_mb"] / max(r["peak_extra_mb"],
                                                                           1e-9)
                if cheapest is not None:
                    ratio["cheapest_ours"] = cheapest["impl"]
                    ratio["time_cheapest_ours_over_trak"] = cheapest["time_s"] / r["time_s"]
            results["ratios"].append(ratio)

    gpt_rows = {}
    for impl in IMPLEMENTATIONS + ("plain",):
        r = _run({"case": "gpt_full", "impl": impl, "n": cfg["gpt_n"], "repeats": rep},
                 timeout)
        gpt_rows[impl] = r
        results["gpt_full"].append(r)
        print(f"  GPT full eNTK N={cfg['gpt_n']} {impl:10s} {_show(r)}", flush=True)
    if "time_s" in gpt_rows["plain"]:
        for impl in IMPLEMENTATIONS:
            if "time_s" in gpt_rows[impl]:
                results["ratios"].append({
                    "case": "gpt_full", "impl": impl, "n": cfg["gpt_n"],
                    "time_ours_over_plain": gpt_rows[impl]["time_s"] / gpt_rows["plain"]["time_s"],
                    "peak_ours_over_plain": gpt_rows[impl]["peak_extra_mb"] /
                    max(gpt_rows["plain"]["peak_extra_mb"], 1e-9)})

    results["environment"] = {**_environment(quick), "resnet18_width": width,
                              "resnet18_params": n_params}
    with open(os.path.join(out_dir, "bench_real.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(out_dir, "bench_real.md"), "w") as f:
        f.write(_markdown(results))
    return results


def _environment(quick):
    import jax

    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    return {"quick": quick, "cpus": os.cpu_count(), "jax": jax.__version__,
            "machine": platform.processor() or platform.machine(),
            "memory_gib": round(_physical_bytes() / 2**30, 1),
            "load_average_at_end": round(load, 2)}


def _fmt(v, spec=".3f"):
    return format(v, spec) if isinstance(v, (int, float)) else "n/a"


def _markdown(results) -> str:
    env = results.get("environment", {})
    lines = [f"# Real networks: CIFAR ResNet-18 (width {env.get('resnet18_width', 64)}, "
             f"{env.get('resnet18_params', 11_173_962):,} parameters) and a GPT decoder", "",
             f"CPU, {env.get('cpus', '?')} cores, float32, jax {env.get('jax', '?')}"
             f"{' (quick mode)' if env.get('quick') else ''}. Times: median after a warm-up "
             "call; first call = tracing + compilation + one run; peak = extra resident "
             "memory of the case's own process.", ""]

    def table(title, rows, extra=()):
        out = [f"## {title}", "", "| N | implementation | " + "".join(f"{e} | " for e in extra)
               + "time (s) | first call (s) | peak extra (MB) |",
               "|---|---|" + "---|" * len(extra) + "---|---|---|"]
        for r in rows:
            cells = "".join(f"{r.get(e, '')} | " for e in extra)
            if "error" in r:
                out.append(f"| {r['n']} | {r['impl']} | {cells}{r['error']} | | |")
            else:
                out.append(f"| {r['n']} | {r['impl']} | {cells}{_fmt(r['time_s'])} | "
                           f"{_fmt(r['first_call_s'], '.1f')} | {r['peak_extra_mb']} |")
        return out + [""]

    lines += table("Trace eNTK (mean over the 10 logits), ResNet-18", results["trace_entk"])
    lines += table("pNTK (sum of logits), ResNet-18", results["pntk"])
    lines += table("Projected features (output='sum'), ResNet-18", results["projected"],
                   ("k", "stored_sketch_gib"))
    lines += ["## PyTorch + TRAK BasicProjector (torch.func per-example gradients), ResNet-18",
              "", "| N | k | sketch | time (s) | of which gradients (s) | first call (s) | "
              "peak extra (MB) | torch / traker |", "|---|---|---|---|---|---|---|---|"]
    for r in results["peer"]:
        if "error" in r:
            lines.append(f"| {r['n']} | {r['k']} | {r['proj_type']} | {r['error']} | | | | |")
        else:
            lines.append(f"| {r['n']} | {r['k']} | {r['proj_type']} | {_fmt(r['time_s'])} | "
                         f"{_fmt(r['grad_time_s'])} | {_fmt(r['warmup_s'], '.1f')} | "
                         f"{r['peak_extra_mb']} | {r['torch']} / {r['traker']} |")
    lines += [""]
    lines += table(f"Full eNTK (trace_axes=()) of a GPT decoder {GPT_SMALL}", results["gpt_full"])
    lines += ["## Ratios (ours / baseline; below 1 is better for us)", "",
              "| case | N | detail | time ratio | peak ratio | max relative difference |",
              "|---|---|---|---|---|---|"]
    for r in results["ratios"]:
        time_ratio = r.get("time_ours_over_plain", r.get("time_ours_over_trak"))
        peak_ratio = r.get("peak_ours_over_plain", r.get("peak_ours_over_trak"))
        detail = r.get("impl", r.get("sketch", ""))
        if "time_cheapest_ours_over_trak" in r:
            detail += (f" (cheapest ours, {r['cheapest_ours']}: "
                       f"{r['time_cheapest_ours_over_trak']:.2f}x)")
        base = "vs TRAK" if r["case"] == "projected_vs_trak" else "vs plain JAX"
        lines.append(f"| {r['case']} {base} | {r['n']} | {detail} | {_fmt(time_ratio, '.2f')} "
                     f"| {_fmt(peak_ratio, '.2f')} | {_fmt(r.get('max_rel_diff'), '.1e')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        print(json.dumps(_worker(json.loads(sys.argv[2]))))
    else:
        res = main(sys.argv[1] if len(sys.argv) > 1 else "results/bench",
                   quick="--quick" in sys.argv)
        print(_markdown(res))
