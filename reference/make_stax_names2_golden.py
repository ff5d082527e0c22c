"""Write ``tests/golden/stax_nt065_names2.npz``: neural-tangents 0.6.5 kernels of the second
batch of layers added under its names (``GlobalSelfAttention``, ``DotGeneral``, ``ImageResize``,
``ConvLocal``).

Run from the main environment; neural-tangents runs in ``.venv-ref`` through a subprocess
(this same module with ``--nt``):

    .venv/bin/python -m reference.make_stax_names2_golden [--out tests/golden/stax_nt065_names2.npz]

Specs are those of :mod:`reference.make_stax_names_golden` (``[name, {kwargs}]``); here
``DotGeneral``'s ``lhs``/``rhs`` are nested lists and its ``dimension_numbers`` nested lists,
and ``ImageResize``'s ``shape`` a list (``-1`` keeps an axis).
"""
from __future__ import annotations

import os
import sys

import numpy as np

from reference import make_stax_names_golden as names1
from reference.make_stax_names_golden import L, serial

ROOT = names1.ROOT
REF_PYTHON = names1.REF_PYTHON
GOLDEN = os.path.join(ROOT, "tests", "golden", "stax_nt065_names2.npz")


def _tuples(x):
    return tuple(_tuples(e) for e in x) if isinstance(x, list) else x


def build(stax, spec):
    """The ``(init_fn, apply_fn, kernel_fn)`` of a LAYER spec, from either library's stax."""
    name, arg = spec
    if name in ("serial", "parallel"):
        return getattr(stax, name)(*[build(stax, s) for s in arg])
    kwargs = dict(arg)
    if name == "repeat":
        return stax.repeat(build(stax, kwargs["layer"]), kwargs["n"])
    if name == "DotGeneral":
        for key in ("lhs", "rhs"):
            if kwargs.get(key) is not None:
                kwargs[key] = np.asarray(kwargs[key], dtype=np.float64)
        if "dimension_numbers" in kwargs:
            kwargs["dimension_numbers"] = _tuples(kwargs["dimension_numbers"])
        return stax.DotGeneral(**kwargs)
    if name == "ImageResize":
        kwargs["shape"] = tuple(kwargs["shape"])
        return stax.ImageResize(**kwargs)
    return names1.build(stax, spec)


def battery():
    """``[(case name, {"layers", "x1", "x2", "get"})]``."""
    dense = lambda n, w=1.0, b=None: L("Dense", out_dim=n, W_std=w, b_std=b)  # noqa: E731
    conv = lambda c, f, **kw: L("Conv", out_chan=c, filter_shape=list(f), **kw)  # noqa: E731

    def attention(**kw):
        return L("GlobalSelfAttention", n_chan_out=8, n_chan_key=8, n_chan_val=8, n_heads=2,
                 **kw)

    cases = {
        "attention_softmax": (serial(dense(8, 1.2, 0.1), L("Relu"),
                                     attention(W_key_std=1.3, W_query_std=0.8, W_out_std=0.9,
                                               W_value_std=1.1, b_std=0.2),
                                     L("Relu"), L("GlobalAvgPool"), dense(1)), "s"),
        "attention_softmax_2d": (serial(conv(4, (2, 2), padding="SAME", W_std=1.3),
                                        L("Erf"), attention(W_key_std=2.0),
                                        L("Relu"), L("Flatten"), dense(1)), "i"),
        "attention_identity": (serial(dense(8, 1.1), L("Relu"),
                                      attention(attention_mechanism="IDENTITY", b_std=0.1),
                                      dense(1)), "s"),
        "attention_relu": (serial(dense(8, 1.1, 0.2), L("Erf"),
                                  attention(attention_mechanism="RELU", W_key_std=1.5),
                                  L("GlobalAvgPool"), dense(1)), "s"),
        "attention_abs_raw": (serial(attention(attention_mechanism="ABS"),
                                     L("GlobalAvgPool"), dense(1)), "s"),
        "attention_sqrt_identity": (serial(dense(8, 1.2, 0.1), L("Relu"),
                                           attention(linear_scaling=False,
                                                     attention_mechanism="IDENTITY",
                                                     W_key_std=0.7, b_std=0.3),
                                           L("GlobalAvgPool"), dense(1)), "s"),
        "dot_general_scalar": (serial(conv(4, (2, 2), padding="SAME", W_std=1.2), L("Relu"),
                                      L("DotGeneral", rhs=2.0), L("GlobalAvgPool"), dense(1)),
                               "i"),
        "dot_general_contract": (serial(conv(4, (2, 2), padding="SAME", b_std=0.1), L("Erf"),
                                        L("DotGeneral", rhs=[1.0, -1.0, 0.5, 2.0],
                                          dimension_numbers=[[[1], [0]], [[], []]]),
                                        L("GlobalAvgPool"), dense(1)), "i"),
        "dot_general_lhs": (serial(conv(4, (2, 2), padding="SAME"), L("Relu"),
                                   L("DotGeneral", lhs=[0.5, -1.0, 1.5],
                                     dimension_numbers=[[[0], [2]], [[], []]]),
                                   L("Flatten"), dense(1)), "i"),
        # neural-tangents 0.6.5's ImageResize resizes the wrong axes of a kernel whose spatial
        # axes it stores reversed (after an odd number of Conv layers): it disagrees there with
        # its own apply_fn (K' = A K A^T), so these cases resize after Dense or two Convs
        "resize_linear_up": (serial(dense(3, 1.3, 0.1), L("Relu"),
                                    L("ImageResize", shape=[-1, 6, 5, -1], method="linear"),
                                    conv(3, (2, 2)), L("Relu"), L("GlobalAvgPool"), dense(1)),
                             "i"),
        "resize_linear_down": (serial(conv(3, (2, 2), padding="SAME"), L("Erf"),
                                      conv(3, (2, 2), padding="SAME", W_std=1.2),
                                      L("ImageResize", shape=[-1, 2, 3, -1], method="linear"),
                                      L("Relu"), L("Flatten"), dense(1)), "i"),
        "resize_nearest": (serial(dense(3, 1.1, 0.2), L("Relu"),
                                  L("ImageResize", shape=[-1, 7, 2, -1], method="nearest"),
                                  L("GlobalAvgPool"), dense(1)), "i"),
        "conv_local": (serial(L("ConvLocal", out_chan=4, filter_shape=[2, 2], padding="SAME",
                                W_std=1.3, b_std=0.2), L("Relu"),
                              L("ConvLocal", out_chan=4, filter_shape=[2, 1], strides=[2, 1]),
                              L("Erf"), L("Flatten"), dense(1)), "i"),
        # (a symmetric filter after a Conv: neural-tangents 0.6.5 does not reverse an unshared
        # filter for the reversed kernel layout a Conv leaves, and differs from ntk.stax there)
        "conv_local_pool": (serial(conv(4, (2, 2), padding="SAME"), L("Relu"),
                                   L("ConvLocal", out_chan=4, filter_shape=[3, 3], W_std=1.2),
                                   L("Relu"), L("GlobalAvgPool"), dense(1)), "i"),
        "conv_local_standard": (serial(L("ConvLocal", out_chan=4, filter_shape=[2, 2],
                                         parameterization="standard", b_std=0.1), L("Relu"),
                                       L("Flatten"), dense(1)), "i"),
    }
    out = []
    for name, (layers, data) in cases.items():
        out.append((name, {"layers": layers, "x1": f"{data}1", "x2": None,
                           "get": ["nngp", "ntk", "cov1"]}))
        out.append((name + "_x2", {"layers": layers, "x1": f"{data}1", "x2": f"{data}2",
                                   "get": ["nngp", "ntk", "cov1", "cov2"]}))
    return out


def inputs():
    rng = np.random.RandomState(17)
    return {
        "s1": rng.randn(3, 5, 3), "s2": rng.randn(2, 5, 3),           # sequences (N, T, C)
        "i1": rng.randn(3, 4, 3, 2), "i2": rng.randn(2, 4, 3, 2),     # images (N, H, W, C)
    }


def run_reference(cases: list, arrays: dict, timeout: int = 900) -> dict:
    """neural-tangents' kernels of ``cases`` (``{i}/{name}``), computed in ``.venv-ref``."""
    return names1.run_reference(cases, arrays, timeout, module="reference.make_stax_names2_golden")


def main(argv=None):
    return names1.main(argv, golden=GOLDEN, battery_fn=battery, inputs_fn=inputs, build_fn=build,
                       module="reference.make_stax_names2_golden", doc=__doc__)


if __name__ == "__main__":
    sys.exit(main())
