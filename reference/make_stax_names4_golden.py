"""Write ``tests/golden/stax_nt065_names4.npz``: neural-tangents 0.6.5's kernels and finite
layers on masked inputs (``mask_constant``), ``LayerNorm`` over the batch axis and
``FanInConcat`` along spatial and batch axes.

Run from the main environment; neural-tangents runs in ``.venv-ref`` through a subprocess
(this same module with ``--nt``):

    .venv/bin/python -m reference.make_stax_names4_golden [--out tests/golden/stax_nt065_names4.npz]

Cases, each a dict with ``"kind"``:

* ``"kernel"``: ``{"layers", "x1", "x2", "get", "mask_constant"}``: ``kernel_fn(x1, x2, get,
  mask_constant=...)`` (``null``: no keyword; ``"nan"``: NaN); stored as ``nt/{i}/{name}``.
* ``"apply"``: ``{"layers", "x", "params", "mask_constant"}``: one layer's ``apply_fn(params,
  x, mask_constant=...)``, a ``MaskedArray``; stored as ``nt/{i}/out`` (values) and
  ``nt/{i}/mask`` (the mask broadcast to the values' shape).

Inputs are masked as neural-tangents' tests mask them: the constant written over a random
subset of slices, then sorted along axis 1 (padding at the end of each sequence / row).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from reference import make_stax_names3_golden as names3
from reference import make_stax_names_golden as names1
from reference.make_stax_names_golden import L, parallel, serial

ROOT = names1.ROOT
GOLDEN = os.path.join(ROOT, "tests", "golden", "stax_nt065_names4.npz")
MODULE = "reference.make_stax_names4_golden"
C = 10.0


def build(stax, spec):
    name, arg = spec
    if name == "FanOut":
        return stax.FanOut(arg["num"])
    if name in ("serial", "parallel"):
        return getattr(stax, name)(*[build(stax, s) for s in arg])
    return names3.build(stax, spec)


def battery():
    """``[(case name, spec)]``."""
    dense = lambda n, w=1.0, b=None: L("Dense", out_dim=n, W_std=w, b_std=b)  # noqa: E731
    conv = lambda c, f, **kw: L("Conv", out_chan=c, filter_shape=list(f), **kw)  # noqa: E731

    def branches(axis, conv_net=True):
        """Two independent Gaussian branches joined by ``FanInConcat(axis)``."""
        if conv_net:
            first, second = conv(3, (2, 2), padding="SAME"), conv(3, (2, 2), padding="SAME",
                                                                 W_std=1.4)
        else:
            first, second = dense(3), dense(3, 1.4)
        return serial(first, L("FanOut", num=2), parallel(first, serial(L("Relu"), second)),
                      L("FanInConcat", axis=axis))

    def attention(linear_scaling, mechanism, **kw):
        return L("GlobalSelfAttention", n_chan_out=4, n_chan_key=4, n_chan_val=4, n_heads=2,
                 linear_scaling=linear_scaling, attention_mechanism=mechanism, **kw)

    kernel_cases = {
        # (layers, data prefix, mask_constant)
        "mlp_flatten": (serial(L("Flatten"), dense(8, 1.2, 0.1), L("Relu"), dense(1, 1.1, 0.1)),
                        "a", C),
        "conv_pools": (serial(conv(4, (2, 2), padding="SAME", W_std=1.3, b_std=0.1),
                              L("Erf"), L("AvgPool", window_shape=[2, 2]),
                              conv(4, (2, 2)), L("Relu"), L("GlobalAvgPool"), dense(1)),
                       "a", C),
        "conv_strided_valid": (serial(conv(4, (3, 2), strides=[2, 1], b_std=0.2), L("Relu"),
                                      L("AvgPool", window_shape=[1, 2], padding="SAME"),
                                      dense(3, 1.1), L("Sin"), L("Flatten"), dense(1)), "a", C),
        "layernorm_spatial": (serial(dense(4, 1.2, 0.1), L("LayerNorm", axis=[1, 2, 3]),
                                     L("Relu"), L("GlobalAvgPool"), dense(1)), "a", C),
        "layernorm_batch": (serial(dense(4, 1.2, 0.1), L("LayerNorm", axis=[0, 3]),
                                   L("Relu"), L("Flatten"), dense(1)), "a", C),
        "layernorm_batch_unmasked": (serial(dense(4, 1.2, 0.1), L("LayerNorm", axis=[0, 3]),
                                            L("Erf"), L("Flatten"), dense(1)), "a", None),
        "layernorm_batch_spatial": (serial(dense(4, 1.1), L("LayerNorm", axis=[0, 1, 2, 3]),
                                           L("Relu"), L("GlobalAvgPool"), dense(1)), "a", C),
        "convt_sumpools": (serial(L("ConvTranspose", out_chan=4, filter_shape=[3, 2],
                                    strides=[2, 1], padding="SAME"), L("Relu"),
                                  L("SumPool", window_shape=[2, 2], padding="SAME"),
                                  dense(3), L("GlobalSumPool")), "a", C),
        "concat_channels": (serial(dense(4), L("FanOut", num=2),
                                   parallel(conv(3, (2, 2), padding="SAME"), dense(2)),
                                   L("FanInConcat"), dense(2), L("Erf"), L("Flatten")),
                            "a", C),
        "fanin_sum_dotgeneral": (serial(L("Flatten"), L("FanOut", num=2),
                                        parallel(serial(dense(4, 1.1, 0.1), L("Abs"),
                                                        L("DotGeneral", lhs=-0.2), dense(4, 1.5)),
                                                 serial(L("DotGeneral", rhs=0.5),
                                                        dense(4, 1.2), L("Erf"),
                                                        dense(4, 1.3, 0.2))),
                                        L("FanInSum"), dense(1)), "a", C),
        "conv_local_resize": (serial(L("ConvLocal", out_chan=3, filter_shape=[2, 2],
                                       padding="SAME"), L("Relu"),
                                     L("ImageResize", shape=[-1, 3, 4, -1], method="linear"),
                                     dense(3), L("Relu"), L("Flatten"), dense(1)), "a", C),
        "nan_constant": (serial(conv(4, (2, 2), padding="SAME"), L("Relu"),
                                L("GlobalAvgPool"), dense(1)), "n", "nan"),
        "channel_masks_flatten": (serial(L("Flatten"), dense(4, 1.3), L("Gelu"), dense(1)),
                                  "e", C),
        "concat_spatial_1": (serial(branches(1), L("Relu"), L("GlobalAvgPool"), dense(1)),
                             "u", None),
        "concat_spatial_-2": (serial(branches(-2), L("Erf"), L("Flatten"), dense(1)), "u", None),
        "concat_spatial_2_conv": (serial(branches(2), L("Relu"), conv(2, (2, 2)), L("Relu"),
                                         L("GlobalAvgPool"), dense(1)), "u", None),
        "concat_batch": (serial(branches(0, False), L("Relu"), dense(1)), "v", None),
        "concat_axis_1_of_2d": (serial(branches(1, False), dense(2), L("Relu"), dense(1)),
                                "v", None),
        "concat_spatial_masked": (serial(branches(1), L("Relu"), L("GlobalAvgPool"), dense(1)),
                                  "a", C),
        "attention_softmax_masked": (serial(dense(4), attention(True, "SOFTMAX", b_std=0.1),
                                            L("Relu"), L("GlobalAvgPool"), dense(1)), "s", C),
        "attention_identity_masked": (serial(dense(4), attention(True, "IDENTITY"), L("Erf"),
                                             L("Flatten"), dense(1)), "s", C),
        "attention_sqrt_masked": (serial(dense(4), attention(False, "IDENTITY"), L("Relu"),
                                         L("GlobalAvgPool"), dense(1)), "s", C),
    }
    out = []
    for name, (layers, data, constant) in kernel_cases.items():
        out.append((name, {"kind": "kernel", "layers": layers, "x1": f"{data}1", "x2": None,
                           "get": ["nngp", "ntk", "cov1"], "mask_constant": constant}))
        out.append((name + "_x2", {"kind": "kernel", "layers": layers, "x1": f"{data}1",
                                   "x2": f"{data}2", "get": ["nngp", "ntk", "cov1", "cov2"],
                                   "mask_constant": constant}))
    apply_cases = {
        "apply_global_avg_pool": (L("GlobalAvgPool"), "m1", [], C),
        "apply_global_sum_pool": (L("GlobalSumPool"), "m1", [], C),
        "apply_layernorm": (L("LayerNorm", axis=[1, 2, 3]), "a1", [], C),
        "apply_layernorm_batch": (L("LayerNorm", axis=[0, 3]), "a1", [], None),
        "apply_flatten": (L("Flatten"), "e1", [], C),
        "apply_dense": (dense(3, 1.2, 0.5), "a1", ["W", "b"], C),
        "apply_conv": (conv(3, (3, 2), strides=[2, 1], padding="SAME"), "a1", ["Wc", None], C),
        "apply_avg_pool": (L("AvgPool", window_shape=[3, 2], strides=[2, 1]), "m1", [], C),
        "apply_convt": (L("ConvTranspose", out_chan=3, filter_shape=[2, 2], strides=[2, 1]),
                        "a1", ["Wt", None], C),
        "apply_resize": (L("ImageResize", shape=[-1, 3, 9, -1], method="linear"), "m1", [], C),
        "apply_erf_nan": (L("Erf"), "n1", [], "nan"),
    }
    for name, (layers, x, params, constant) in apply_cases.items():
        out.append((name, {"kind": "apply", "layers": layers, "x": x, "params": params,
                           "mask_constant": constant}))
    return out


def _mask(rng, x, axes, p=0.5):
    """neural-tangents' test masking: ``C`` over the slices picked (size 1 along ``axes``),
    then sorted along axis 1."""
    shape = [1 if i in axes else s for i, s in enumerate(x.shape)]
    x = np.where(rng.rand(*shape) < p, C, x)
    return np.sort(x, axis=1)


def inputs():
    rng = np.random.RandomState(31)
    a1 = _mask(rng, rng.randn(4, 6, 5, 3), (1, 3))       # whole positions masked
    a2 = _mask(rng, rng.randn(2, 6, 5, 3), (1, 3))
    e1 = _mask(rng, rng.randn(3, 4, 3, 2), ())           # single entries masked
    e2 = _mask(rng, rng.randn(2, 4, 3, 2), ())
    m1 = _mask(rng, rng.randn(2, 6, 5, 1), (3,))         # one channel: a position mask
    u1, u2 = rng.randn(3, 4, 3, 2), rng.randn(2, 4, 3, 2)
    v1, v2 = rng.randn(3, 5), rng.randn(2, 5)
    s1, s2 = rng.randn(3, 5, 3), rng.randn(2, 5, 3)     # sentences, padded at the end
    for s, lengths in ((s1, (5, 3, 1)), (s2, (2, 4))):
        for i, n in enumerate(lengths):
            s[i, n:] = C
    n1 = np.where(a1 == C, np.nan, a1)
    n2 = np.where(a2 == C, np.nan, a2)
    return {"s1": s1, "s2": s2, "u1": u1, "u2": u2, "v1": v1, "v2": v2, "a1": a1, "a2": a2, "e1": e1, "e2": e2, "m1": m1, "n1": n1, "n2": n2,
            "W": rng.randn(3, 3), "b": rng.randn(3), "Wc": rng.randn(3, 2, 3, 3),
            "Wt": rng.randn(2, 2, 3, 3)}


def _constant(c):
    return None if c is None else (float("nan") if c == "nan" else float(c))


def nt_main(src, dst):
    """Inside ``.venv-ref``: neural-tangents' kernels and finite layers of every case."""
    import warnings
    warnings.filterwarnings("ignore")
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from neural_tangents import stax

    data = np.load(src)
    arr = lambda name: None if name is None else np.asarray(data[name])  # noqa: E731
    out = {}
    for i, case in enumerate(json.loads(str(data["spec"]))):
        init_fn, apply_fn, kernel_fn = build(stax, case["layers"])
        kwargs = {} if case["mask_constant"] is None else {
            "mask_constant": _constant(case["mask_constant"])}
        if case["kind"] == "kernel":
            get = tuple(case["get"])
            for name, value in zip(get, kernel_fn(arr(case["x1"]), arr(case["x2"]), get=get,
                                                  **kwargs)):
                if value is not None:
                    out[f"{i}/{name}"] = np.asarray(value)
            continue
        x = arr(case["x"])
        params = tuple(arr(p) for p in case["params"])
        if params and params[-1] is None:
            params = params[:-1] + (None,)
        if len(params) == 2 and params[1] is not None:  # neural-tangents' bias shape
            params = (params[0], params[1].reshape((1,) * (x.ndim - 1) + (-1,)))
        res = apply_fn(params, x, **kwargs)
        value, mask = (res.masked_value, res.mask) if hasattr(res, "mask") else (res, None)
        out[f"{i}/out"] = np.asarray(value)
        out[f"{i}/mask"] = (np.zeros(np.shape(value), bool) if mask is None else
                            np.asarray(jnp.broadcast_to(mask, np.shape(value))))
    np.savez(dst, **out)


def run_reference(cases: list, arrays: dict, timeout: int = 900) -> dict:
    """neural-tangents' results of ``cases`` (``{i}/{name}``), computed in ``.venv-ref``."""
    return names1.run_reference(cases, arrays, timeout, module=MODULE)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=GOLDEN)
    parser.add_argument("--nt", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.nt:
        return nt_main(*args.nt)
    named = battery()
    arrays = inputs()
    result = run_reference([spec for _, spec in named], arrays)
    payload = {"spec": np.asarray(json.dumps([spec for _, spec in named])),
               "names": np.asarray(json.dumps([name for name, _ in named]))}
    payload.update({f"input/{k}": v for k, v in arrays.items()})
    payload.update({f"nt/{k}": v for k, v in result.items()})
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    np.savez_compressed(args.out, **payload)
    print(f"wrote {args.out}: {len(named)} cases, {os.path.getsize(args.out) / 1024:.1f} KiB")


if __name__ == "__main__":
    sys.exit(main())
