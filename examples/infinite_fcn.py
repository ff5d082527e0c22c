"""Inference with an infinitely wide fully connected network.

A ReLU network of infinite width is a Gaussian process at initialization (its NNGP kernel
``K``) and, trained by gradient flow on MSE, a linear model in its NTK ``Theta`` (Lee et
al. 2019). ``ntk.predict.gradient_descent_mse_ensemble`` at ``t = None`` gives, for test
inputs ``x``,

    NNGP:  K(x, X) (K(X, X) + lambda I)^{-1} Y       (the Bayesian posterior mean)
    NTK:   Theta(x, X) (Theta(X, X) + lambda I)^{-1} Y (the mean of infinitely many
                                                        networks trained to convergence)

with no network ever trained. Here on the digits (one-hot targets centred at zero),
with the kernel computed in row blocks when ``--batch-size`` is given.

    python -m examples.infinite_fcn [--quick] [--n-train N] [--n-test N] [--batch-size B]

References: Lee, Xiao, Schoenholz, Bahri, Novak, Sohl-Dickstein & Pennington, 2019, "Wide
Neural Networks of Any Depth Evolve as Linear Models Under Gradient Descent",
arXiv:1902.06720.
"""
from __future__ import annotations

import argparse
import time

import jax.numpy as jnp
import numpy as np

import ntk
import tasks
from ntk import predict, stax


def network(width: int = 512):
    """``(init_fn, apply_fn, kernel_fn)`` of a one-hidden-layer ReLU network; its kernels
    do not depend on ``width``."""
    return stax.serial(stax.Dense(width, W_std=1.5, b_std=0.05), stax.Relu(),
                       stax.Dense(tasks.NUM_CLASSES, W_std=1.5, b_std=0.05))


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 training, 100 test digits")
    parser.add_argument("--n-train", type=int, default=None, help="default 1000 (quick 100)")
    parser.add_argument("--n-test", type=int, default=None, help="default 500 (quick 100)")
    parser.add_argument("--batch-size", type=int, default=0,
                        help="compute kernels in blocks of this many rows (0: at once)")
    parser.add_argument("--diag-reg", type=float, default=1e-3,
                        help="ridge, relative to the mean diagonal of the train kernel")
    parser.add_argument("--seed", type=int, default=0, help="the train / test split")
    args = parser.parse_args(argv)
    args.n_train = args.n_train or (100 if args.quick else 1000)
    args.n_test = args.n_test or (100 if args.quick else 500)
    return args


def data(n_train: int, n_test: int, seed: int = 0):
    """Digits ``(N, 64)`` with centred one-hot targets, in the float precision JAX runs in.

    :func:`tasks.load` scales inputs to mean squared norm 1; times ``sqrt(64)`` here, the
    entries have mean square 1, so that ``Dense`` layers in the NTK parametrization
    (``W_std / sqrt(fan_in)``) see pre-activations of variance ``W_std^2``.
    """
    dtype = np.dtype(jnp.result_type(float)).type
    split = tasks.load("digits", n_train, n_test, seed=seed, dtype=dtype)
    scale = dtype(np.sqrt(split.x_train.shape[1]))
    return (split.x_train * scale, tasks.one_hot(split.labels_train, centered=True, dtype=dtype),
            split.x_test * scale, split.labels_test)


def main(argv=None) -> dict:
    args = parse(argv)
    x_train, y_train, x_test, labels_test = data(args.n_train, args.n_test, args.seed)
    kernel_fn = network()[2]
    if args.batch_size:
        kernel_fn = ntk.batch(kernel_fn, batch_size=args.batch_size)

    start = time.perf_counter()
    predict_fn = predict.gradient_descent_mse_ensemble(kernel_fn, x_train, y_train,
                                                       diag_reg=args.diag_reg)
    fx_nngp, fx_ntk = predict_fn(x_test=x_test)  # t = None: trained to convergence
    fx_nngp, fx_ntk = np.asarray(fx_nngp), np.asarray(fx_ntk)
    seconds = time.perf_counter() - start

    y_test = tasks.one_hot(labels_test, centered=True, dtype=y_train.dtype.type)
    result = {"n_train": args.n_train, "n_test": args.n_test, "seconds": seconds}
    print(f"{args.n_train} training and {args.n_test} test digits; kernels and inference "
          f"in {seconds:.2f} s")
    result.update(scores(fx_nngp, fx_ntk, labels_test, y_test))
    result.update(x_train=x_train, y_train=y_train, x_test=x_test, fx_nngp=fx_nngp,
                  fx_ntk=fx_ntk, diag_reg=args.diag_reg)
    return result


def scores(fx_nngp, fx_ntk, labels, y) -> dict:
    """Print and return test accuracy and MSE loss ``(1/2) mean (f - y)^2`` of the NNGP and
    NTK predictions ``fx_*`` against integer ``labels`` and targets ``y``."""
    out = {}
    for name, fx in (("NNGP", fx_nngp), ("NTK", fx_ntk)):
        acc = predict.accuracy(fx, labels)
        loss = float(0.5 * np.mean((fx - y) ** 2))
        print(f"{name:5s} test accuracy {acc:.3f}  test loss {loss:.4f}")
        out[f"accuracy_{name.lower()}"], out[f"loss_{name.lower()}"] = acc, loss
    return out


if __name__ == "__main__":
    main()
