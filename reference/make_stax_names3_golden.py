"""Write ``tests/golden/stax_nt065_names3.npz``: neural-tangents 0.6.5's kernels and finite
layers for the third batch of layers added under its names (``Aggregate``, ``ConvTranspose``).

Run from the main environment; neural-tangents runs in ``.venv-ref`` through a subprocess
(this same module with ``--nt``):

    .venv/bin/python -m reference.make_stax_names3_golden [--out tests/golden/stax_nt065_names3.npz]

Two kinds of cases, each a dict with ``"kind"``:

* ``"kernel"``: ``{"layers", "x1", "x2", "get", "pattern"}`` as in
  :mod:`reference.make_stax_names_golden`, plus ``pattern``: ``null`` (no keyword) or the names
  of the two input arrays (or ``null`` entries) passed as ``kernel_fn(..., pattern=(p1, p2))``;
  stored as ``nt/{i}/{name}``.
* ``"apply"``: ``{"layers", "x", "params", "pattern"}``: one layer's ``apply_fn(params, x,
  pattern=...)`` with ``params`` the names of ``[W, b]`` (``b`` may be ``null``) or ``[]``;
  stored as ``nt/{i}/out``, with neural-tangents' ``init_fn`` output shape and parameter shapes
  for the same input shape as ``nt/{i}/init_shape``, ``nt/{i}/param_shape_{j}``.

``Aggregate``'s ``to_dense`` travels by name (``"identity"``, ``"transpose"``: the pattern is
given with tails and heads swapped) and ``aggregate_axis`` as an int or a list.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from reference import make_stax_names_golden as names1
from reference.make_stax_names_golden import L, serial

ROOT = names1.ROOT
GOLDEN = os.path.join(ROOT, "tests", "golden", "stax_nt065_names3.npz")
MODULE = "reference.make_stax_names3_golden"


def _swap_tails_heads(p):
    """``(N, *tails, *heads)`` -> ``(N, *heads, *tails)`` (any array library)."""
    k = (p.ndim - 1) // 2
    return p.transpose((0,) + tuple(range(1 + k, 1 + 2 * k)) + tuple(range(1, 1 + k)))


TO_DENSE = {"identity": lambda p: p, "transpose": _swap_tails_heads}


def build(stax, spec):
    """The ``(init_fn, apply_fn, kernel_fn)`` of a LAYER spec, from either library's stax."""
    name, arg = spec
    if name in ("serial", "parallel"):
        return getattr(stax, name)(*[build(stax, s) for s in arg])
    kwargs = dict(arg)
    if name == "Aggregate":
        if "to_dense" in kwargs:
            kwargs["to_dense"] = TO_DENSE[kwargs["to_dense"]]
        if isinstance(kwargs.get("aggregate_axis"), list):
            kwargs["aggregate_axis"] = tuple(kwargs["aggregate_axis"])
        return stax.Aggregate(**kwargs)
    return names1.build(stax, spec)


def battery():
    """``[(case name, spec)]``."""
    dense = lambda n, w=1.0, b=None: L("Dense", out_dim=n, W_std=w, b_std=b)  # noqa: E731
    conv = lambda c, f, **kw: L("Conv", out_chan=c, filter_shape=list(f), **kw)  # noqa: E731

    def convt(c, f, **kw):
        return L("ConvTranspose", out_chan=c, filter_shape=list(f), **kw)

    gnn = serial(dense(8, 1.3, 0.1), L("Relu"), L("Aggregate"), dense(8, 1.1), L("Erf"),
                 L("Aggregate"), L("GlobalAvgPool"), dense(1))
    kernel_cases = {
        # (layers, data prefix, pattern prefix or None)
        "aggregate_raw": (L("Aggregate"), "g", "A"),
        "aggregate_binary": (L("Aggregate"), "g", "B"),
        "aggregate_to_dense": (L("Aggregate", to_dense="transpose"), "g", "At"),
        "aggregate_channel_axis_1": (L("Aggregate", aggregate_axis=2, channel_axis=1), "gc",
                                     "A"),
        "aggregate_batch_axis_1": (L("Aggregate", batch_axis=1), "gb", "A"),
        "aggregate_sparse": (L("Aggregate", implementation="SPARSE"), "g", "E"),
        "aggregate_gnn": (gnn, "g", "A"),
        "aggregate_gnn_sparse": (serial(dense(8, 1.2), L("Relu"),
                                        L("Aggregate", implementation="SPARSE"),
                                        dense(8, 1.4, 0.2), L("Relu"), L("Flatten"), dense(1)),
                                 "g", "E"),
        "aggregate_2d_all": (serial(dense(4, 1.2, 0.1), L("Relu"), L("Aggregate"),
                                    L("GlobalAvgPool"), dense(1)), "h", "C"),
        "aggregate_2d_one_axis": (serial(dense(4, 1.2), L("Erf"),
                                         L("Aggregate", aggregate_axis=2), dense(4), L("Relu"),
                                         L("Flatten"), dense(1)), "h", "D"),
        "aggregate_2d_sparse": (serial(dense(4, 1.1, 0.2), L("Relu"),
                                       L("Aggregate", aggregate_axis=[1, 2],
                                         implementation="SPARSE"),
                                       L("GlobalAvgPool"), dense(1)), "h", "F"),
        "aggregate_after_conv": (serial(conv(4, (2, 2), padding="SAME", W_std=1.3), L("Relu"),
                                        L("Aggregate", aggregate_axis=1), L("GlobalAvgPool"),
                                        dense(1)), "s", "S"),
        # neural-tangents needs pattern=(None, None) spelled out here (no pattern: TypeError)
        "aggregate_identity_pattern": (gnn, "g", "none"),
        "convt_1d_valid": (serial(convt(4, (3,), strides=[2], W_std=1.3, b_std=0.1),
                                  L("Relu"), convt(4, (2,)), L("Erf"), L("GlobalAvgPool"),
                                  dense(1)), "t", None),
        "convt_1d_same": (serial(convt(4, (3,), strides=[2], padding="SAME", W_std=1.2),
                                 L("Relu"), L("Flatten"), dense(1)), "t", None),
        "convt_1d_circular": (serial(convt(4, (4,), strides=[2], padding="CIRCULAR",
                                           b_std=0.2), L("Relu"), L("GlobalAvgPool"),
                                     dense(1)), "t", None),
        "convt_1d_circular_flatten": (serial(convt(4, (3,), padding="CIRCULAR", W_std=1.4),
                                             L("Erf"), L("Flatten"), dense(1)), "t", None),
        "convt_2d_valid": (serial(convt(3, (2, 3), strides=[2, 1], W_std=1.3, b_std=0.1),
                                  L("Relu"), L("GlobalAvgPool"), dense(1)), "i", None),
        "convt_2d_same": (serial(dense(3, 1.1), L("Relu"),
                                 convt(3, (3, 2), strides=[1, 2], padding="SAME"), L("Relu"),
                                 L("Flatten"), dense(1)), "i", None),
        "convt_2d_circular": (serial(convt(3, (3, 3), strides=[2, 2], padding="CIRCULAR",
                                           W_std=1.2), L("Relu"), L("GlobalAvgPool"),
                                     dense(1)), "i", None),
        "convt_2d_standard": (serial(convt(3, (2, 2), strides=[2, 1], padding="SAME",
                                           parameterization="standard", b_std=0.3),
                                     L("Relu"), L("GlobalAvgPool"),
                                     L("Dense", out_dim=1, parameterization="standard")),
                              "i", None),
        "convt_after_conv": (serial(conv(3, (2, 2), W_std=1.2), L("Relu"),
                                    convt(3, (2, 2), strides=[2, 2]), L("Relu"),
                                    L("GlobalAvgPool"), dense(1)), "i", None),
    }
    def patterns(prefix, second):
        if prefix is None:
            return None
        if prefix == "none":
            return [None, None]
        return [f"{prefix}1", f"{prefix}{second}"]

    out = []
    for name, (layers, data, pattern) in kernel_cases.items():
        # on the raw inputs neural-tangents' NTK is the scalar 0 (ntk.stax: zeros)
        ntk = [] if layers[0] == "Aggregate" else ["ntk"]
        out.append((name, {"kind": "kernel", "layers": layers, "x1": f"{data}1", "x2": None,
                           "get": ["nngp"] + ntk + ["cov1"], "pattern": patterns(pattern, 1)}))
        out.append((name + "_x2", {"kind": "kernel", "layers": layers, "x1": f"{data}1",
                                   "x2": f"{data}2", "get": ["nngp"] + ntk + ["cov1", "cov2"],
                                   "pattern": patterns(pattern, 2)}))

    apply_cases = {
        "apply_aggregate": (L("Aggregate"), "g1", [], "A1"),
        "apply_aggregate_channel_axis_1": (L("Aggregate", aggregate_axis=2, channel_axis=1),
                                           "gc1", [], "A1"),
        "apply_aggregate_batch_axis_1": (L("Aggregate", batch_axis=1), "gb1", [], "A1"),
        "apply_aggregate_to_dense": (L("Aggregate", to_dense="transpose"), "g1", [], "At1"),
        "apply_aggregate_2d_one_axis": (L("Aggregate", aggregate_axis=2), "h1", [], "D1"),
        "apply_aggregate_sparse": (L("Aggregate", implementation="SPARSE"), "g1", [], "E1"),
        "apply_aggregate_sparse_2d": (L("Aggregate", implementation="SPARSE"), "h1", [], "F1"),
        "apply_convt_1d_valid": (convt(4, (3,), strides=[2], W_std=1.3, b_std=0.1), "t1",
                                 ["Wt", "bt"], None),
        "apply_convt_1d_same": (convt(4, (3,), strides=[2], padding="SAME"), "t1",
                                ["Wt", None], None),
        "apply_convt_1d_circular": (convt(4, (4,), strides=[2], padding="CIRCULAR",
                                          b_std=0.2), "t1", ["Wt4", "bt"], None),
        "apply_convt_1d_circular_s1": (convt(4, (3,), padding="CIRCULAR"), "t1", ["Wt", None],
                                       None),
        "apply_convt_2d_valid": (convt(3, (2, 3), strides=[2, 1], W_std=1.3, b_std=0.1), "i1",
                                 ["Wi", "bi"], None),
        "apply_convt_2d_same": (convt(3, (2, 3), strides=[1, 2], padding="SAME"), "i1",
                                ["Wi", None], None),
        "apply_convt_2d_circular": (convt(3, (2, 3), strides=[2, 2], padding="CIRCULAR",
                                          b_std=0.5), "i1", ["Wi", "bi"], None),
        "apply_convt_2d_standard": (convt(3, (2, 3), strides=[2, 1], padding="SAME",
                                          parameterization="standard", b_std=0.3), "i1",
                                    ["Wi", "bi"], None),
    }
    for name, (layers, x, params, pattern) in apply_cases.items():
        out.append((name, {"kind": "apply", "layers": layers, "x": x, "params": params,
                           "pattern": pattern}))
    return out


def inputs():
    rng = np.random.RandomState(23)

    def edges(n, n_edges, k, vertices):
        """Integer edge lists with some padding (negative head) entries."""
        e = np.stack([rng.randint(0, v, size=(n, n_edges, 2)) for v in vertices], axis=2)
        e[:, -1, :, 1] = -1  # the last edge of every graph is padding
        return e if k > 1 else e[:, :, 0, :]

    g1, g2 = rng.randn(3, 5, 3), rng.randn(2, 5, 3)        # 5 vertices, 3 features
    h1, h2 = rng.randn(3, 3, 2, 2), rng.randn(2, 3, 2, 2)  # 3 x 2 vertices, 2 features
    a1, a2 = rng.randn(3, 5, 5), rng.randn(2, 5, 5)
    return {
        "g1": g1, "g2": g2,
        "gc1": np.moveaxis(g1, -1, 1), "gc2": np.moveaxis(g2, -1, 1),  # (N, C, V)
        "gb1": np.moveaxis(g1, 0, 1), "gb2": np.moveaxis(g2, 0, 1),    # (V, N, C)
        "A1": a1, "A2": a2,
        "At1": np.swapaxes(a1, 1, 2), "At2": np.swapaxes(a2, 1, 2),
        "B1": (rng.rand(3, 5, 5) < 0.4).astype(np.float64),
        "B2": (rng.rand(2, 5, 5) < 0.4).astype(np.float64),
        "E1": edges(3, 7, 1, (5,)), "E2": edges(2, 7, 1, (5,)),
        "h1": h1, "h2": h2,
        "C1": rng.randn(3, 3, 2, 3, 2), "C2": rng.randn(2, 3, 2, 3, 2),
        "D1": rng.randn(3, 2, 2), "D2": rng.randn(2, 2, 2),
        "F1": edges(3, 6, 2, (3, 2)), "F2": edges(2, 6, 2, (3, 2)),
        "s1": rng.randn(3, 4, 3, 2), "s2": rng.randn(2, 4, 3, 2),
        "S1": (rng.rand(3, 4, 4) < 0.5).astype(np.float64),
        "S2": (rng.rand(2, 4, 4) < 0.5).astype(np.float64),
        "t1": rng.randn(3, 5, 2), "t2": rng.randn(2, 5, 2),        # sequences (N, T, C)
        "i1": rng.randn(3, 3, 4, 2), "i2": rng.randn(2, 3, 4, 2),  # images (N, H, W, C)
        "Wt": rng.randn(3, 2, 4), "Wt4": rng.randn(4, 2, 4), "bt": rng.randn(4),
        "Wi": rng.randn(2, 3, 2, 3), "bi": rng.randn(3),
    }


def nt_main(src, dst):
    """Inside ``.venv-ref``: neural-tangents' kernels and finite layers of every case."""
    import warnings
    warnings.filterwarnings("ignore")
    import jax
    jax.config.update("jax_enable_x64", True)
    from neural_tangents import stax

    data = np.load(src)
    arr = lambda name: None if name is None else np.asarray(data[name])  # noqa: E731
    out = {}
    for i, case in enumerate(json.loads(str(data["spec"]))):
        init_fn, apply_fn, kernel_fn = build(stax, case["layers"])
        if case["kind"] == "kernel":
            kwargs = {} if case["pattern"] is None else {
                "pattern": tuple(arr(p) for p in case["pattern"])}
            get = tuple(case["get"])
            for name, value in zip(get, kernel_fn(arr(case["x1"]), arr(case["x2"]), get=get,
                                                  **kwargs)):
                if value is not None:
                    out[f"{i}/{name}"] = np.asarray(value)
            continue
        x = arr(case["x"])
        params = tuple(arr(p) for p in case["params"])
        kwargs = {} if case["pattern"] is None else {"pattern": arr(case["pattern"])}
        out[f"{i}/out"] = np.asarray(apply_fn(params, x, **kwargs))
        shape, init_params = init_fn(jax.random.PRNGKey(0), x.shape)
        out[f"{i}/init_shape"] = np.asarray(shape)
        for j, p in enumerate(init_params):
            out[f"{i}/param_shape_{j}"] = np.asarray(() if p is None else p.shape, dtype=int)
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
