"""Write ``tests/golden/stax_nt065.npz``: neural-tangents 0.6.5 kernels on a battery of networks.

Run from the main environment (it never imports neural-tangents; the kernels are computed by
``reference/nt_stax.py`` in ``.venv-ref`` through a subprocess):

    .venv/bin/python -m reference.make_stax_golden [--out tests/golden/stax_nt065.npz]

The golden file stores the battery itself (``spec``, JSON), the inputs and neural-tangents'
``nngp``/``ntk``/``cov1``/``cov2`` per case, so ``tests/ntk/stax/test_parity_nt.py`` rebuilds
every network with ``ntk.stax`` and compares without the reference environment.
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
GOLDEN = os.path.join(ROOT, "tests", "golden", "stax_nt065.npz")


def D(out_dim, W_std=1.0, b_std=None, parameterization="ntk"):
    return ["Dense", dict(out_dim=out_dim, W_std=W_std, b_std=b_std,
                          parameterization=parameterization)]


def C(out_chan, filter_shape, strides=None, padding="VALID", W_std=1.0, b_std=None,
      parameterization="ntk"):
    return ["Conv", dict(out_chan=out_chan, filter_shape=list(filter_shape),
                         strides=None if strides is None else list(strides), padding=padding,
                         W_std=W_std, b_std=b_std, parameterization=parameterization)]


def A(name, **kwargs):
    return [name, kwargs]


def serial(*layers):
    return ["serial", list(layers)]


def parallel(*layers):
    return ["parallel", list(layers)]


#: activations both libraries have, with non-default arguments where they take any
ACTIVATIONS = {
    "relu": A("Relu"),
    "leaky_relu": A("LeakyRelu", alpha=0.1),
    "abrelu": A("ABRelu", a=-0.4, b=1.3),
    "abs": A("Abs"),
    "erf": A("Erf", a=1.3, b=0.7, c=0.2),
    "sigmoid_like": A("Sigmoid_like"),
    "gelu": A("Gelu"),
    "sin": A("Sin", a=1.2, b=0.8, c=0.3),
    "cos": A("Cos", a=0.9, b=1.1, c=-0.2),
    "monomial2": A("Monomial", degree=2),
    "monomial3": A("Monomial", degree=3),
    "rect_monomial0": A("RectifiedMonomial", degree=0),
    "rect_monomial1": A("RectifiedMonomial", degree=1),
    "rect_monomial2": A("RectifiedMonomial", degree=2),
    "rect_monomial3": A("RectifiedMonomial", degree=3),
    "sign": A("Sign"),
    "exp": A("Exp", a=0.7, b=0.4),
    "gaussian": A("Gaussian", a=1.1, b=-0.6),
    "rbf": A("Rbf", gamma=0.3),
    "numerical_sin": A("ElementwiseNumerical", fn="sin", deg=40),
}


def battery():
    """``[(case name, spec dict)]``; inputs are named in ``inputs()``."""
    cases = []

    def add(name, layers, x1="v1", x2="v2", get=("nngp", "ntk", "cov1", "cov2")):
        cases.append((name, dict(layers=layers, x1=x1, x2=x2, get=list(get))))

    # every activation in a two-hidden-layer MLP, both parameterizations
    for act_name, act in ACTIVATIONS.items():
        if act_name.startswith("rect_monomial"):
            # neural-tangents 0.6.5 returns NaN for RectifiedMonomial on equal inputs
            # (theta = 0 in (pi - theta) / sin(theta)), which poisons cov1/cov2 and every later
            # layer; compare the one-hidden-layer nngp/ntk, whose entries have theta > 0.
            for param in ("ntk", "standard"):
                add(f"mlp1_{act_name}_{param}",
                    serial(D(64, 1.2, 0.3, param), act, D(3, 1.2, 0.3, param)),
                    get=("nngp", "ntk"))
            continue
        w = 1.2
        add(f"mlp_{act_name}_ntk",
            serial(D(64, w, 0.3), act, D(64, w, 0.3), act, D(3, w, 0.3)))
        add(f"mlp_{act_name}_standard",
            serial(D(48, w, 0.2, "standard"), act, D(32, w, 0.2, "standard"), act,
                   D(3, w, None, "standard")))
    # depths, W_std/b_std, x2 = None, zero-norm input
    for depth in (1, 4, 12):
        layers = []
        for _ in range(depth):
            layers += [D(128, 1.7, 0.05), A("Relu")]
        add(f"relu_depth{depth}", serial(*layers, D(1, 1.7, 0.05)))
    add("erf_depth8_nobias", serial(*([D(32, 2.0), A("Erf")] * 8), D(1, 2.0)))
    add("relu_x2_none", serial(D(16, 1.4, 0.1), A("Relu"), D(1, 1.4, 0.1)), x2=None,
        get=("nngp", "ntk", "cov1"))
    add("relu_zero_input", serial(D(16, 1.4), A("Relu"), D(16, 1.4), A("Relu"), D(1)),
        x1="v_zero")
    add("gelu_zero_input", serial(D(16, 1.4, 0.1), A("Gelu"), D(1)), x1="v_zero")
    # residual networks and concatenation
    block = serial(A("FanOut", num=2),
                   parallel(A("Identity"), serial(A("Relu"), D(64, 1.3, 0.1))),
                   A("FanInSum"))
    add("resnet_relu", serial(D(64, 1.0, 0.1), block, block, block, A("Relu"), D(1)))
    add("resnet_erf_standard",
        serial(D(32, 1.0, 0.1, "standard"),
               serial(A("FanOut", num=2),
                      parallel(A("Identity"), serial(A("Erf"), D(32, 0.8, 0.1, "standard"))),
                      A("FanInSum")),
               A("Erf"), D(2, 1.0, None, "standard")))
    add("concat", serial(A("FanOut", num=2),
                         parallel(D(24, 1.1, 0.1), serial(D(40, 1.3), A("Relu"), D(8, 0.9))),
                         A("FanInConcat"), D(32, 1.2, 0.2), A("Gelu"), D(1)))
    add("layernorm_mlp", serial(D(64, 1.5, 0.3), A("LayerNorm"), A("Relu"), D(64, 1.5, 0.3),
                                A("LayerNorm"), A("Erf"), D(1)))
    # convolutions: 1D and 2D, SAME / VALID, strides, pooling, flatten, layer norm
    add("cnn1d_flatten", serial(C(16, (3,), None, "SAME", 1.4, 0.1), A("Relu"),
                                C(16, (2,), (2,), "VALID", 1.4, 0.1), A("Erf"), A("Flatten"),
                                D(1, 1.1)), x1="s1", x2="s2")
    add("cnn1d_gap", serial(C(16, (3,), None, "VALID", 1.4, 0.1), A("Relu"),
                            C(16, (3,), (2,), "SAME", 1.4), A("Relu"), A("GlobalAvgPool"),
                            D(1, 1.1)), x1="s1", x2="s2")
    add("cnn2d_flatten", serial(C(8, (3, 3), None, "SAME", 1.3, 0.2), A("Relu"),
                                C(8, (2, 3), (2, 1), "VALID", 1.3, 0.2), A("Relu"),
                                A("Flatten"), D(2, 1.0, 0.1)), x1="i1", x2="i2")
    add("cnn2d_gap", serial(C(8, (3, 3), None, "SAME", 1.3, 0.2), A("Relu"),
                            C(8, (3, 3), (2, 2), "SAME", 1.3, 0.2), A("Gelu"),
                            A("GlobalAvgPool"), D(1, 1.0, 0.1)), x1="i1", x2="i2")
    add("cnn2d_avgpool", serial(C(8, (3, 3), None, "SAME", 1.3, 0.2), A("Relu"),
                                A("AvgPool", window_shape=[2, 2], strides=[2, 2]),
                                C(8, (2, 2), None, "VALID", 1.3), A("Erf"),
                                A("Flatten"), D(1)), x1="i1", x2="i2")
    add("cnn2d_avgpool_same_edges",
        serial(C(8, (3, 3), None, "VALID", 1.3, 0.2), A("Relu"),
               A("AvgPool", window_shape=[3, 3], strides=[1, 1], padding="SAME",
                 normalize_edges=True),
               A("GlobalAvgPool"), D(1)), x1="i1", x2="i2")
    add("cnn2d_standard", serial(C(6, (3, 3), None, "SAME", 1.3, 0.2, "standard"), A("Relu"),
                                 C(5, (3, 3), (2, 2), "VALID", 1.1, 0.1, "standard"),
                                 A("Relu"), A("GlobalAvgPool"), D(1, 1.0, 0.1, "standard")),
        x1="i1", x2="i2")
    add("cnn2d_layernorm", serial(C(8, (3, 3), None, "SAME", 1.3, 0.2), A("LayerNorm"),
                                  A("Relu"), C(8, (3, 3), None, "SAME", 1.3, 0.2),
                                  A("LayerNorm", axis=[1, 2, 3]), A("Erf"),
                                  A("GlobalAvgPool"), D(1)), x1="i1", x2="i2")
    add("cnn2d_resnet", serial(C(8, (3, 3), None, "SAME", 1.0, 0.1),
                               A("FanOut", num=2),
                               parallel(A("Identity"),
                                        serial(A("Relu"), C(8, (3, 3), None, "SAME", 1.2))),
                               A("FanInSum"), A("Relu"), A("Flatten"), D(1)),
        x1="i1", x2="i2")
    add("cnn2d_x2_none", serial(C(8, (2, 2), None, "VALID", 1.3, 0.2), A("Sin"),
                                A("GlobalAvgPool"), D(1)), x1="i1", x2=None,
        get=("nngp", "ntk", "cov1"))
    return cases


def inputs(seed: int = 0) -> dict:
    rng = np.random.RandomState(seed)
    v1 = rng.randn(5, 7)
    v_zero = v1.copy()
    v_zero[2] = 0.0
    return {
        "v1": v1,
        "v2": rng.randn(4, 7),
        "v_zero": v_zero,
        "s1": rng.randn(3, 8, 3),
        "s2": rng.randn(2, 8, 3),
        "i1": rng.randn(3, 6, 5, 2),
        "i2": rng.randn(2, 6, 5, 2),
    }


def run_reference(cases: list, arrays: dict, timeout: int = 1800) -> dict:
    """Run ``reference/nt_stax.py`` in ``.venv-ref`` on ``cases`` (list of spec dicts)."""
    if not os.path.exists(REF_PYTHON):
        raise FileNotFoundError(f"reference environment missing: {REF_PYTHON} (run "
                                f"`make reference`)")
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
        np.savez(src, spec=np.asarray(json.dumps(cases)), **arrays)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
        proc = subprocess.run([REF_PYTHON, "-m", "reference.nt_stax", src, dst], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"reference run failed:\n{proc.stderr[-4000:]}")
        with np.load(dst) as out:
            return {k: np.asarray(out[k]) for k in out.files}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=GOLDEN)
    args = parser.parse_args(argv)
    named = battery()
    arrays = inputs()
    result = run_reference([spec for _, spec in named], arrays)
    payload = {"spec": np.asarray(json.dumps([spec for _, spec in named])),
               "names": np.asarray(json.dumps([name for name, _ in named]))}
    payload.update({f"input/{k}": v for k, v in arrays.items()})
    payload.update({f"nt/{k}": v for k, v in result.items()})
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    np.savez_compressed(args.out, **payload)
    size = os.path.getsize(args.out)
    print(f"wrote {args.out}: {len(named)} cases, {size / 1024:.1f} KiB")


if __name__ == "__main__":
    sys.exit(main())
