"""Write ``tests/golden/predict_nt065.npz``: neural-tangents 0.6.5's ``predict`` outputs
(``gradient_descent_mse``, ``gp_inference``, ``gradient_descent_mse_ensemble``) on fixed
kernels, for every ``trace_axes`` layout and return form its users meet.

Run from the main environment; neural-tangents runs in ``.venv-ref`` through a subprocess
(this same module with ``--nt``):

    .venv/bin/python -m reference.make_predict_golden [--out tests/golden/predict_nt065.npz]

Each case is a JSON dict with ``"kind"`` (``"gd_mse"``, ``"gp"``, ``"ensemble"``) and the
names of its input arrays; :func:`call` makes the calls with a given ``predict`` module, so
the same lines run against neural-tangents here and against ``ntk.predict`` in the test
(``tests/ntk/test_predict_nt.py``). Results are stored flat as ``nt/{i}/{path}`` with the
nesting of the returned value (``Gaussians`` / ``Gaussian`` namedtuples, tuples, arrays)
as ``nt/{i}/structure``, so return conventions are compared too.

Kernels come from random features ``F (n, d1, d2, m)`` of outputs ``(n, d1, d2)``:
``K = F F^T / m`` over all output axes, averaged along the diagonal of the traced axes
(``Theta (x) I`` there), which is positive semi-definite in every layout. Tracing the batch
axis pairs test point ``i`` with training point ``i`` (neural-tangents' semantics).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "tests", "golden", "predict_nt065.npz")
MODULE = "reference.make_predict_golden"
N_TRAIN, N_TEST, NNGP_FEATURES = 4, 3, 5


def feature_kernel(f1, f2, trace_axes) -> np.ndarray:
    """``(1 / m) sum_m F1 F2^T`` in neural-tangents' layout: one pair of axes per output
    axis of ``F[..., 0]`` not in ``trace_axes`` (the mean along the diagonal of those)."""
    letters = "abcdefgh"
    n_axes = f1.ndim - 1
    left, right, out, scale = "", "", "", f1.shape[-1]
    for a in range(n_axes):
        if a in trace_axes:
            left, right = left + letters[a], right + letters[a]
            scale *= f1.shape[a]
        else:
            left, right = left + letters[a], right + letters[a].upper()
            out += letters[a] + letters[a].upper()
    return np.einsum(f"{left}z,{right}z->{out}", f1, f2) / scale


def feature_kernel_fn(trace_axes):
    """A ``kernel_fn(x1, x2, get)`` of feature inputs ``x (n, d1, d2, m)``: NNGP from the
    first features, NTK from all (so ``Theta - K`` is PSD), neural-tangents' ``get`` rules
    (a name: one array; a tuple: a namedtuple)."""
    trace_axes = tuple(trace_axes)

    def kernel_fn(x1, x2=None, get=None, **unused):
        x2 = x1 if x2 is None else x2
        ks = {"nngp": feature_kernel(x1[..., :NNGP_FEATURES], x2[..., :NNGP_FEATURES],
                                     trace_axes),
              "ntk": feature_kernel(x1, x2, trace_axes)}
        if isinstance(get, str):
            return ks[get.lower()]
        get = ("nngp", "ntk") if get is None else tuple(g.lower() for g in get)
        return collections.namedtuple("Kernel", get)(*(ks[g] for g in get))

    return kernel_fn


def canonical(trace_axes, ndim):
    return tuple(sorted({a % ndim for a in trace_axes}))


def inputs() -> dict:
    rng = np.random.RandomState(65)
    arrays = {
        "F2": rng.randn(N_TRAIN + N_TRAIN, 3, 12) / 2,   # features for (N, 3) outputs
        "F3": rng.randn(N_TRAIN + N_TRAIN, 3, 2, 12) / 2,  # features for (N, 3, 2) outputs
        "y2": rng.randn(N_TRAIN, 3), "y3": rng.randn(N_TRAIN, 3, 2),
        "f2_train": 0.3 * rng.randn(N_TRAIN, 3), "f3_train": 0.3 * rng.randn(N_TRAIN, 3, 2),
        "f2_test": 0.3 * rng.randn(N_TEST, 3), "f3_test": 0.3 * rng.randn(N_TEST, 3, 2),
        "f3_test_batch": 0.3 * rng.randn(N_TRAIN, 3, 2),
        "t_grid": np.array([[0.0, 0.5], [3.0, 40.0]]), "t_two": np.array([1.5, 20.0]),
    }
    # train / test feature splits; the batch-traced layouts pair N_TRAIN test points
    for k in ("F2", "F3"):
        arrays[f"{k}_train"] = arrays[k][:N_TRAIN]
        arrays[f"{k}_test"] = arrays[k][N_TRAIN:N_TRAIN + N_TEST]
        arrays[f"{k}_test_batch"] = arrays[k][N_TRAIN:]
    return arrays


def kernels(arrays: dict, feats: str, trace_axes, test: str = "test") -> dict:
    """``{nngp,ntk}_{dd,td,tt}`` of feature set ``feats`` in the layout of ``trace_axes``."""
    kernel_fn = feature_kernel_fn(canonical(trace_axes, arrays[feats].ndim - 1))
    tr, te = arrays[f"{feats}_train"], arrays[f"{feats}_{test}"]
    out = {}
    for suffix, (a, b) in (("dd", (tr, tr)), ("td", (te, tr)), ("tt", (te, te))):
        k = kernel_fn(a, b)
        out[f"nngp_{suffix}"], out[f"ntk_{suffix}"] = k.nngp, k.ntk
    return out


def battery(arrays: dict):
    """``[(case name, spec)]`` and the kernel arrays they name (added to ``arrays``)."""
    cases = []

    def with_kernels(tag, feats, trace_axes, test="test"):
        for name, value in kernels(arrays, feats, trace_axes, test).items():
            arrays[f"{tag}/{name}"] = value
        return tag

    layouts = {  # tag: (features, trace_axes, test split)
        "y2_last": ("F2", [-1], "test"), "y2_full": ("F2", [], "test"),
        "y3_last": ("F3", [-1], "test"), "y3_out": ("F3", [1, 2], "test"),
        "y3_full": ("F3", [], "test"), "y3_mid": ("F3", [1], "test"),
        "y3_batch": ("F3", [0], "test_batch"), "y3_batch_last": ("F3", [0, -1], "test_batch"),
    }
    for tag, (feats, axes, test) in layouts.items():
        with_kernels(tag, feats, axes, test)

    def gd(name, tag, y, t, f0_train, f0_test, test_kernel=True, lr=0.7, diag_reg=1e-3,
           absolute=False):
        cases.append((name, {"kind": "gd_mse", "k": tag, "trace_axes": layouts[tag][1],
                             "y": y, "t": t, "f0_train": f0_train, "f0_test": f0_test,
                             "test_kernel": test_kernel, "lr": lr, "diag_reg": diag_reg,
                             "absolute": absolute}))

    gd("gd_traced_grid", "y2_last", "y2", "t_grid", "f2_train", "f2_test")
    gd("gd_full_scalar", "y2_full", "y2", 3.0, "f2_train", "f2_test", diag_reg=0.0)
    gd("gd_3d_last", "y3_last", "y3", "t_two", "f3_train", "f3_test")
    gd("gd_3d_outputs_inf", "y3_out", "y3", None, "f3_train", "f3_test", diag_reg=1e-2,
       absolute=True)
    gd("gd_3d_mid", "y3_mid", "y3", "t_two", "f3_train", "f3_test", lr=2.0)
    gd("gd_3d_batch", "y3_batch", "y3", "t_two", "f3_train", "f3_test_batch")
    gd("gd_3d_batch_last_inf", "y3_batch_last", "y3", None, "f3_train", "f3_test_batch")
    gd("gd_test_only", "y2_last", "y2", 2.0, None, "f2_test")
    gd("gd_train_only_full", "y3_full", "y3", "t_two", "f3_train", None, test_kernel=False)

    def gp(name, tag, y, get, test, test_test, array=None, diag_reg=1e-2, absolute=False):
        cases.append((name, {"kind": "gp", "k": tag, "trace_axes": layouts[tag][1], "y": y,
                             "get": get, "test": test, "test_test": test_test, "array": array,
                             "diag_reg": diag_reg, "absolute": absolute}))

    gp("gp_default_get", "y2_last", "y2", None, True, True)
    gp("gp_three_gets", "y2_last", "y2", ["ntk", "ntkgp", "nngp"], True, True)
    gp("gp_mean_only", "y2_last", "y2", "ntk", True, False)
    gp("gp_mean_only_tuple", "y2_last", "y2", ["nngp", "ntk"], True, False)
    gp("gp_train_set_cov", "y2_last", "y2", None, False, "true")
    gp("gp_train_set_mean", "y2_last", "y2", ["nngp"], False, False)
    gp("gp_array_nngp", "y2_last", "y2", "nngp", True, True, array="nngp")
    gp("gp_array_ntkgp", "y2_last", "y2", ["ntkgp"], True, True, array="ntk")
    gp("gp_array_ntk_mean", "y2_last", "y2", "NTK", True, False, array="ntk")
    gp("gp_full", "y3_full", "y3", None, True, True, diag_reg=1e-3)
    gp("gp_3d_last", "y3_last", "y3", ["nngp", "ntk"], True, True, diag_reg=0.1,
       absolute=True)
    gp("gp_3d_batch", "y3_batch", "y3", ("ntk", "nngp"), True, True)

    def ens(name, feats, trace_axes, y, t, test, get, compute_cov, lr=0.7, diag_reg=1e-3):
        cases.append((name, {"kind": "ensemble", "x": feats, "trace_axes": trace_axes, "y": y,
                             "t": t, "test": test, "get": get, "compute_cov": compute_cov,
                             "lr": lr, "diag_reg": diag_reg}))

    ens("ens_traced", "F2", [-1], "y2", "t_two", "test", None, True)
    ens("ens_full_inf", "F2", [], "y2", None, "test", ["ntk"], True)
    ens("ens_3d_train", "F3", [1], "y3", 2.0, None, "nngp", True)
    ens("ens_3d_batch", "F3", [0, 2], "y3", "t_two", "test_batch", None, True)
    ens("ens_means", "F2", [-1], "y2", None, "test", ["ntk", "nngp"], False, diag_reg=1e-2)
    return cases


def call(predict, case: dict, arr):
    """The calls of ``case`` with the ``predict`` module of either library; ``arr(name)``
    gives an input array (``None`` for ``None``)."""
    axes = tuple(case["trace_axes"])
    if case["kind"] == "gd_mse":
        k = case["k"]
        fn = predict.gradient_descent_mse(arr(f"{k}/ntk_dd"), arr(case["y"]), case["lr"],
                                          case["diag_reg"], case["absolute"], axes)
        t = case["t"] if not isinstance(case["t"], str) else arr(case["t"])
        if not case["test_kernel"]:
            return fn(t, arr(case["f0_train"]))
        return fn(t, arr(case["f0_train"]), arr(case["f0_test"]), arr(f"{k}/ntk_td"))
    if case["kind"] == "gp":
        k = case["k"]
        Kernel = collections.namedtuple("Kernel", "nngp ntk")

        def kernel(suffix):
            if case["array"] is not None:
                return arr(f"{k}/{case['array']}_{suffix}")
            return Kernel(arr(f"{k}/nngp_{suffix}"), arr(f"{k}/ntk_{suffix}"))

        fn = predict.gp_inference(kernel("dd"), arr(case["y"]), case["diag_reg"],
                                  case["absolute"], axes)
        get = tuple(case["get"]) if isinstance(case["get"], list) else case["get"]
        test_test = case["test_test"]
        k_tt = True if test_test == "true" else kernel("tt") if test_test else None
        return fn(get, kernel("td") if case["test"] else None, k_tt)
    if case["kind"] == "ensemble":
        kernel_fn = feature_kernel_fn(canonical(axes, arr(case["x"]).ndim - 1))
        fn = predict.gradient_descent_mse_ensemble(
            kernel_fn, arr(f"{case['x']}_train"), arr(case["y"]), case["lr"], case["diag_reg"],
            False, axes)
        t = case["t"] if not isinstance(case["t"], str) else arr(case["t"])
        get = tuple(case["get"]) if isinstance(case["get"], list) else case["get"]
        x_test = None if case["test"] is None else arr(f"{case['x']}_{case['test']}")
        return fn(t, x_test, get, case["compute_cov"])
    raise ValueError(case["kind"])


def flatten(out, prefix: str = ""):
    """``(structure, {path: array})`` of a returned value: namedtuples by type and field
    names, tuples by position, arrays as ``array``."""
    if out is None:
        return "None", {}
    if isinstance(out, tuple):
        fields = getattr(out, "_fields", None)
        keys = fields if fields is not None else [str(i) for i in range(len(out))]
        parts, arrays = [], {}
        for key, value in zip(keys, tuple.__iter__(out)):
            structure, sub = flatten(value, f"{prefix}/{key}")
            parts.append(f"{key}={structure}")
            arrays.update(sub)
        name = type(out).__name__ if fields is not None else "tuple"
        return f"{name}({', '.join(parts)})", arrays
    return "array", {prefix or "/": np.asarray(out)}


def nt_main(src, dst):
    """Inside ``.venv-ref``: neural-tangents' outputs of every case."""
    import warnings
    warnings.filterwarnings("ignore")
    import jax
    jax.config.update("jax_enable_x64", True)
    from neural_tangents import predict

    data = np.load(src)
    arr = lambda name: None if name is None else np.asarray(data[name])  # noqa: E731
    out = {}
    for i, case in enumerate(json.loads(str(data["spec"]))):
        structure, arrays = flatten(call(predict, case, arr))
        out[f"{i}/structure"] = np.asarray(structure)
        out.update({f"{i}{path}": value for path, value in arrays.items()})
    np.savez(dst, **out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=GOLDEN)
    parser.add_argument("--nt", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.nt:
        return nt_main(*args.nt)
    from reference import make_stax_names_golden as names1
    arrays = inputs()
    named = battery(arrays)
    result = names1.run_reference([spec for _, spec in named], arrays, module=MODULE)
    payload = {"spec": np.asarray(json.dumps([spec for _, spec in named])),
               "names": np.asarray(json.dumps([name for name, _ in named]))}
    payload.update({f"input/{k}": v for k, v in arrays.items()})
    payload.update({f"nt/{k}": v for k, v in result.items()})
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    np.savez_compressed(args.out, **payload)
    print(f"wrote {args.out}: {len(named)} cases, {os.path.getsize(args.out) / 1024:.1f} KiB")


if __name__ == "__main__":
    sys.exit(main())
