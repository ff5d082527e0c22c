"""Write ``tests/golden/stax_nt065_names.npz``: neural-tangents 0.6.5 kernels of the layers added
under its names (``repeat``, ``Dropout``, ``SumPool``, ``GlobalSumPool``, ``Index``,
``FanInProd``, ``Polynomial``, ``Hermite``, ``Gabor``, ``ExpNormalized``).

Run from the main environment; neural-tangents runs in ``.venv-ref`` through a subprocess
(this same module with ``--nt``):

    .venv/bin/python -m reference.make_stax_names_golden [--out tests/golden/stax_nt065_names.npz]

A LAYER spec is ``[name, {kwargs}]`` with neural-tangents' names and arguments, where
``serial``/``parallel`` take a list of LAYERs, ``repeat`` takes ``{"layer": LAYER, "n": n}``
and ``Index``'s ``idx`` is a list of ints, ``"..."`` and ``[start, stop, step]`` slices.
:func:`build` turns a spec into a layer of either library (it only touches ``stax``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REF_PYTHON = os.path.join(ROOT, ".venv-ref", "bin", "python")
GOLDEN = os.path.join(ROOT, "tests", "golden", "stax_nt065_names.npz")


def _index(entries):
    out = []
    for e in entries:
        if e == "...":
            out.append(Ellipsis)
        elif isinstance(e, list):
            out.append(slice(*e))
        else:
            out.append(int(e))
    return tuple(out)


def build(stax, spec):
    """The ``(init_fn, apply_fn, kernel_fn)`` of a LAYER spec, from either library's stax."""
    name, arg = spec
    if name in ("serial", "parallel"):
        return getattr(stax, name)(*[build(stax, s) for s in arg])
    kwargs = dict(arg)
    if name == "repeat":
        return stax.repeat(build(stax, kwargs["layer"]), kwargs["n"])
    if name == "Index":
        kwargs["idx"] = _index(kwargs["idx"])
    for key in ("filter_shape", "strides", "window_shape"):
        if kwargs.get(key) is not None:
            kwargs[key] = tuple(kwargs[key])
    return getattr(stax, name)(**kwargs)


def L(name, **kwargs):
    return [name, kwargs]


def serial(*layers):
    return ["serial", list(layers)]


def parallel(*layers):
    return ["parallel", list(layers)]


def battery():
    """``[(case name, {"layers", "x1", "x2", "get"})]``."""
    conv = lambda c, f, **kw: L("Conv", out_chan=c, filter_shape=list(f), **kw)  # noqa: E731
    dense = lambda n, w=1.0, b=None: L("Dense", out_dim=n, W_std=w, b_std=b)  # noqa: E731
    relu_block = serial(dense(8, 1.4, 0.1), L("Relu"))
    conv_block = serial(conv(4, (3, 3), padding="SAME", W_std=1.3, b_std=0.1), L("Relu"),
                        conv(4, (3, 3), padding="SAME", W_std=1.2), L("Erf"))
    cases = {
        "repeat_mlp": (serial(dense(8, 1.3, 0.1), L("repeat", layer=relu_block, n=6),
                              dense(1)), "v"),
        "repeat_cnn": (serial(conv(4, (2, 2), padding="SAME"),
                              L("repeat", layer=conv_block, n=2), L("GlobalAvgPool"),
                              dense(1)), "i"),
        "dropout_mlp": (serial(dense(8, 1.2, 0.1), L("Relu"), L("Dropout", rate=0.7),
                               dense(8, 1.1), L("Erf"), dense(1)), "v"),
        "dropout_cnn": (serial(conv(4, (2, 2), padding="SAME", W_std=1.2), L("Relu"),
                               L("Dropout", rate=0.6), conv(3, (2, 2)), L("Relu"),
                               L("GlobalAvgPool"), dense(1)), "i"),
        "dropout_test": (serial(dense(8, 1.2, 0.1), L("Relu"),
                                L("Dropout", rate=0.5, mode="test"), dense(1)), "v"),
        "sumpool": (serial(conv(3, (2, 2), padding="SAME", b_std=0.2), L("Relu"),
                           L("SumPool", window_shape=[2, 2], strides=[2, 1], padding="SAME"),
                           conv(3, (2, 2)), L("Gelu"), L("GlobalSumPool"), dense(1)), "i"),
        "sumpool_valid": (serial(conv(3, (2, 1), W_std=1.1), L("Erf"),
                                 L("SumPool", window_shape=[2, 2]), L("Flatten"), dense(1)),
                          "i"),
        "index_spatial": (serial(conv(3, (2, 2), padding="SAME"), L("Relu"),
                                 L("Index", idx=[[None], [None, 3], 1, "..."]),
                                 conv(3, (2,)), L("Relu"), L("GlobalAvgPool"), dense(1)), "i"),
        "index_strided": (serial(conv(3, (2, 2)), L("Relu"),
                                 L("Index", idx=["...", [None, None, 2], [None]]),
                                 L("Flatten"), dense(1)), "i"),
        "index_batch": (serial(dense(8, 1.2, 0.1), L("Relu"),
                               L("Index", idx=[[None, None, 2]]), dense(1)), "v"),
        "fanin_prod": (serial(L("FanOut", num=3),
                              parallel(serial(dense(8, 1.2, 0.2), L("Erf")),
                                       serial(dense(8), L("Sin")), dense(8, 0.9, 0.3)),
                              L("FanInProd"), dense(1, 1.1)), "v"),
        "polynomial": (serial(dense(8, 1.1, 0.2), L("Polynomial", coef=[0.3, -1.0, 0.5, 0.2]),
                              dense(8, 0.8), L("Polynomial", coef=[0.0, 1.0, 0.4]), dense(1)),
                       "v"),
        "hermite_unit": (serial(dense(8), L("Hermite", degree=3), dense(8), L("Hermite", degree=2),
                                dense(1)), "u"),
        "gabor": (serial(dense(8, 1.3, 0.2), L("Gabor"), dense(8, 1.5), L("Gabor"), dense(1)),
                  "v"),
        "gabor_cnn": (serial(conv(3, (2, 2), padding="SAME", W_std=1.4), L("Gabor"),
                             L("GlobalAvgPool"), dense(1)), "i"),
        "exp_normalized_clip": (serial(dense(8, 1.2, 0.1), L("Relu"), dense(8),
                                       L("ExpNormalized", gamma=1.3, shift=-0.7, do_clip=True),
                                       dense(1)), "v"),
        "exp_normalized": (serial(dense(8, 1.2, 0.1), L("ExpNormalized"), dense(1)), "v"),
    }
    out = []
    for name, (layers, data) in cases.items():
        out.append((name, {"layers": layers, "x1": f"{data}1", "x2": None,
                           "get": ["nngp", "ntk", "cov1"]}))
        out.append((name + "_x2", {"layers": layers, "x1": f"{data}1", "x2": f"{data}2",
                                   "get": ["nngp", "ntk", "cov1", "cov2"]}))
    return out


def inputs():
    rng = np.random.RandomState(13)
    u1, u2 = rng.randn(4, 5), rng.randn(3, 5)
    return {
        "v1": rng.randn(4, 3), "v2": rng.randn(3, 3),
        "i1": rng.randn(3, 5, 4, 2), "i2": rng.randn(2, 5, 4, 2),
        # unit norm per channel: Dense(W_std=1) without bias gives unit variances
        "u1": u1 / np.sqrt(np.mean(u1 ** 2, -1, keepdims=True)),
        "u2": u2 / np.sqrt(np.mean(u2 ** 2, -1, keepdims=True)),
    }


def run_reference(cases: list, arrays: dict, timeout: int = 900,
                  module: str = "reference.make_stax_names_golden") -> dict:
    """neural-tangents' kernels of ``cases`` (``{i}/{name}``), computed in ``.venv-ref`` by
    ``module``'s ``--nt`` entry (its ``build`` turns specs into layers)."""
    if not os.path.exists(REF_PYTHON):
        raise FileNotFoundError(f"reference environment missing: {REF_PYTHON} (run "
                                f"`make reference`)")
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
        np.savez(src, spec=np.asarray(json.dumps(cases)), **arrays)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
        proc = subprocess.run([REF_PYTHON, "-m", module, "--nt", src, dst], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"reference run failed:\n{proc.stderr[-4000:]}")
        with np.load(dst) as out:
            return {k: np.asarray(out[k]) for k in out.files}


def nt_main(src, dst, build_fn=None):
    """Inside ``.venv-ref``: neural-tangents' kernels of every case of ``src``."""
    import warnings
    warnings.filterwarnings("ignore")
    import jax
    jax.config.update("jax_enable_x64", True)
    from neural_tangents import stax

    build_fn = build_fn or build
    data = np.load(src)
    out = {}
    for i, case in enumerate(json.loads(str(data["spec"]))):
        _, _, kernel_fn = build_fn(stax, case["layers"])
        x1 = np.asarray(data[case["x1"]])
        x2 = None if case.get("x2") is None else np.asarray(data[case["x2"]])
        get = tuple(case["get"])
        for name, value in zip(get, kernel_fn(x1, x2, get=get)):
            if value is not None:
                out[f"{i}/{name}"] = np.asarray(value)
    np.savez(dst, **out)


def main(argv=None, *, golden=GOLDEN, battery_fn=None, inputs_fn=None, build_fn=None,
         module="reference.make_stax_names_golden", doc=__doc__):
    """Write the golden file of a battery (defaults: this module's)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--out", default=golden)
    parser.add_argument("--nt", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.nt:
        return nt_main(*args.nt, build_fn=build_fn)
    named = (battery_fn or battery)()
    arrays = (inputs_fn or inputs)()
    result = run_reference([spec for _, spec in named], arrays, module=module)
    payload = {"spec": np.asarray(json.dumps([spec for _, spec in named])),
               "names": np.asarray(json.dumps([name for name, _ in named]))}
    payload.update({f"input/{k}": v for k, v in arrays.items()})
    payload.update({f"nt/{k}": v for k, v in result.items()})
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    np.savez_compressed(args.out, **payload)
    print(f"wrote {args.out}: {len(named)} cases, {os.path.getsize(args.out) / 1024:.1f} KiB")


if __name__ == "__main__":
    sys.exit(main())
