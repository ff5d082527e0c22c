"""Kernels of an activation from its NNGP map alone, or from its function alone.

An elementwise activation ``phi`` maps the input covariance ``(q11, q12, q22)`` of a layer
to the NNGP ``T(q11, q12, q22) = E[phi(u) phi(v)]`` and the NTK factor
``Tdot = E[phi'(u) phi'(v)] = d T / d q12`` (Price's theorem; Han et al. 2022). So

- ``stax.Elementwise(nngp_fn=T)`` needs only ``T``: the NTK follows by autodiff, even for a
  kernel with no known activation, such as the normalized exponential
  ``T = sqrt(q11 q22) exp(q12 / sqrt(q11 q22) - 1)``, whose hand-derived form is
  ``stax.ExpNormalized()``;
- ``stax.ElementwiseNumerical(phi, deg)`` needs only ``phi``: ``T`` and ``Tdot`` by
  ``deg x deg`` Gauss-Hermite quadrature, here for GELU against its closed form
  ``stax.Gelu()``; the error falls quickly with ``deg`` for a smooth ``phi``.

The example prints the largest differences between each pair of kernels.

    python -m examples.elementwise [--quick] [--degrees 5,10,25]

References: Han, Zandieh, Lee, Novak, Xiao & Karbasi, 2022, "Fast Neural Kernel Embeddings
for General Activations", arXiv:2209.04121.
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from ntk import stax


def normalized_exponential(q12, q11, q22):
    """NNGP map of the normalized exponential kernel (no known activation)."""
    norm = jnp.sqrt(q11 * q22)
    return norm * jnp.exp(q12 / norm - 1.0)


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 and 20 inputs")
    parser.add_argument("--n1", type=int, default=None, help="default 50 (quick 10)")
    parser.add_argument("--n2", type=int, default=None, help="default 100 (quick 20)")
    parser.add_argument("--dim", type=int, default=3, help="input dimension")
    parser.add_argument("--degrees", default="5,10,25",
                        help="Gauss-Hermite degrees for the numerical GELU kernel")
    args = parser.parse_args(argv)
    args.n1 = args.n1 or (10 if args.quick else 50)
    args.n2 = args.n2 or (20 if args.quick else 100)
    args.degrees = [int(d) for d in args.degrees.split(",")]
    return args


def relative(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))


def main(argv=None) -> dict:
    args = parse(argv)
    key1, key2 = jax.random.split(jax.random.PRNGKey(1))
    x1 = jax.random.normal(key1, (args.n1, args.dim))
    x2 = jax.random.normal(key2, (args.n2, args.dim))

    auto = stax.serial(stax.Dense(1), stax.Elementwise(nngp_fn=normalized_exponential))[2]
    manual = stax.serial(stax.Dense(1), stax.ExpNormalized())[2]
    k_auto, k_manual = auto(x1, x2, ("nngp", "ntk")), manual(x1, x2, ("nngp", "ntk"))
    exp_error = {g: relative(getattr(k_auto, g), getattr(k_manual, g)) for g in ("nngp", "ntk")}
    print("normalized exponential, NTK by autodiff of the NNGP map vs hand-derived: "
          f"relative difference NNGP {exp_error['nngp']:.1e}, NTK {exp_error['ntk']:.1e}")

    closed = stax.serial(stax.Dense(1), stax.Gelu(), stax.Dense(1))[2](x1, x2)
    gelu_error = {}
    for deg in args.degrees:
        numerical = stax.serial(stax.Dense(1), stax.ElementwiseNumerical(jax.nn.gelu, deg=deg),
                                stax.Dense(1))[2](x1, x2)
        gelu_error[deg] = {g: relative(getattr(numerical, g), getattr(closed, g))
                           for g in ("nngp", "ntk")}
        print(f"GELU by Gauss-Hermite quadrature of degree {deg:3d} vs closed form: relative "
              f"difference NNGP {gelu_error[deg]['nngp']:.1e}, NTK {gelu_error[deg]['ntk']:.1e}")
    return {"exp_normalized": exp_error, "gelu": gelu_error}


if __name__ == "__main__":
    main()
