"""The empirical NTK of a CNN by each implementation, and their agreement.

The empirical NTK of any ``apply_fn(params, x)``,

    Theta(x1, x2) = sum_p  d f(x1) / d p  (d f(x2) / d p)^T,

is computed three ways by ``ntk.empirical_ntk_fn`` (Novak et al. 2022): contracting the
Jacobians (``'jacobian'``), NTK-vector products (``'ntvp'``, no Jacobian stored), and
structured derivatives (``'structured'``, the Jacobian's structure read from the jaxpr of
each layer); ``'auto'`` picks one from their estimated cost. With ``trace_axes=()`` the
kernel keeps the output axes, ``(N2, N1, O, O)``. The example builds a three-layer CNN,
computes the test-train kernel with every implementation and prints their largest
differences (rounding: about ``1e-7`` relative in float32, ``1e-15`` in float64).

    python -m examples.empirical_ntk [--quick] [--channels C] [--size S]

References: Novak, Sohl-Dickstein & Schoenholz, 2022, "Fast Finite Width Neural Tangent
Kernel", arXiv:2206.08720.
"""
from __future__ import annotations

import argparse
import itertools
import time

import jax
import numpy as np

import ntk
from ntk import stax

IMPLEMENTATIONS = ("jacobian", "ntvp", "structured", "auto")


def network(channels: int, outputs: int = 10):
    return stax.serial(stax.Conv(channels, (3, 3)), stax.Relu(),
                       stax.Conv(channels, (3, 3)), stax.Relu(),
                       stax.Conv(channels, (3, 3)), stax.Flatten(), stax.Dense(outputs))


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8x8 images, 8 channels")
    parser.add_argument("--channels", type=int, default=None, help="default 32 (quick 8)")
    parser.add_argument("--size", type=int, default=None,
                        help="images are size x size x 3; default 16 (quick 8)")
    parser.add_argument("--n1", type=int, default=2, help="inputs x1")
    parser.add_argument("--n2", type=int, default=3, help="inputs x2")
    parser.add_argument("--outputs", type=int, default=10)
    parser.add_argument("--implementations", default=",".join(IMPLEMENTATIONS),
                        help="comma-separated, from " + ", ".join(IMPLEMENTATIONS))
    args = parser.parse_args(argv)
    args.implementations = args.implementations.split(",")
    args.channels = args.channels or (8 if args.quick else 32)
    args.size = args.size or (8 if args.quick else 16)
    return args


def main(argv=None) -> dict:
    args = parse(argv)
    key1, key2, key3 = jax.random.split(jax.random.PRNGKey(1), 3)
    x1 = jax.random.normal(key1, (args.n1, args.size, args.size, 3))
    x2 = jax.random.normal(key2, (args.n2, args.size, args.size, 3))
    init_fn, apply_fn, _ = network(args.channels, args.outputs)
    _, params = init_fn(key3, x1.shape)

    kernels, seconds = {}, {}
    for implementation in args.implementations:
        kernel_fn = ntk.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0,
                                         implementation=implementation)
        start = time.perf_counter()
        kernels[implementation] = np.asarray(kernel_fn(x2, x1, params))
        seconds[implementation] = time.perf_counter() - start
    first = kernels[args.implementations[0]]
    shape, scale = first.shape, float(np.max(np.abs(first)))
    print(f"test-train NTK of shape {shape} (N2, N1, O, O), largest entry {scale:.3g}")
    for name, s in seconds.items():
        print(f"  {name:10s} {s:.2f} s (with compilation)")
    worst = 0.0
    for a, b in itertools.combinations(args.implementations, 2):
        diff = float(np.max(np.abs(kernels[a] - kernels[b])))
        worst = max(worst, diff)
        print(f"  {a} vs {b}: largest difference {diff:.2e} ({diff / scale:.1e} relative)")
    print(f"largest relative difference between implementations: {worst / scale:.1e}")
    return {"kernels": kernels, "seconds": seconds, "max_relative_difference": worst / scale,
            "x1": x1, "x2": x2, "params": params, "apply_fn": apply_fn}


if __name__ == "__main__":
    main()
