"""Infinite-width self-attention on synthetic sentences (neural-tangents' IMDb example, small).

A network of a convolution over word embeddings, ReLU, one softmax self-attention layer
(``stax.GlobalSelfAttention``: its infinite-width limit, Hron et al. 2020), ReLU,
average pooling over positions and a readout classifies "sentences" by sentiment, with
infinite width: ``gradient_descent_mse_ensemble`` at ``t = None`` gives the NNGP posterior
mean and the NTK ensemble mean from the kernels alone.

The sentences are synthetic, so nothing is downloaded: words are drawn from a vocabulary
of random embeddings, some of them positive or negative; a sentence's label (``+-0.5``) is
the sign of its summed polarity. Sentences have different lengths (half to all of
``--length`` words), padded at the end with ``PAD``; ``mask_constant=PAD`` masks the padding
in every layer (the attention gives it no weight, the pooling averages over words only), as
neural-tangents' IMDb example does. ``ntk.stax`` has no positional embeddings inside
attention, so a fixed sinusoidal position code is concatenated to each word's embedding.

    python -m examples.attention [--quick] [--n-train N] [--length T] [--batch-size B]

References: Hron, Bahri, Sohl-Dickstein & Novak, 2020, "Infinite attention: NNGP and NTK
for deep attention networks", arXiv:2006.10540.
"""
from __future__ import annotations

import argparse
import functools
import time

import jax.numpy as jnp
import numpy as np

import ntk
from examples.infinite_fcn import scores
from ntk import predict, stax


#: the padding value of the sentences (masked: ``kernel_fn(..., mask_constant=PAD)``)
PAD = -1e6


def network(width: int = 64):
    """Kernels do not depend on ``width`` (nor on the channel counts of attention)."""
    return stax.serial(
        stax.Conv(width, (3,), padding="VALID"), stax.Relu(),
        stax.GlobalSelfAttention(n_chan_out=width, n_chan_key=width, n_chan_val=width,
                                 n_heads=1),
        stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1))


def kernel_fn(**kwargs):
    """The network's kernel function with the padding masked."""
    return functools.partial(network()[2], mask_constant=PAD, **kwargs)


def sentences(n: int, length: int, vocabulary: int, dim: int, seed: int):
    """``(x (n, length, dim + 2), y (n, 1))``: word embeddings with a position code, padded
    with ``PAD`` after each sentence's own length (``length // 2`` to ``length`` words), and
    labels ``+-0.5`` from the sign of the summed polarities of its words (ties broken by the
    first polar word)."""
    rng = np.random.default_rng(seed)
    vocab_rng = np.random.default_rng(1234)  # one vocabulary for every split
    embeddings = vocab_rng.normal(size=(vocabulary, dim))
    polarity = np.zeros(vocabulary)
    polar = vocab_rng.choice(vocabulary, size=max(2, vocabulary // 3), replace=False)
    polarity[polar] = np.where(np.arange(len(polar)) % 2 == 0, 1.0, -1.0)
    words = rng.integers(0, vocabulary, size=(n, length))
    lengths = rng.integers(max(1, length // 2), length + 1, size=n)
    present = np.arange(length)[None, :] < lengths[:, None]
    signs = np.where(present, polarity[words], 0.0)
    score = signs.sum(1)
    first = signs[np.arange(n), np.argmax(signs != 0, axis=1)]
    labels = np.where(score != 0, np.sign(score), first)
    positions = np.arange(length)[:, None] / length * np.pi
    code = np.concatenate([np.sin(positions), np.cos(positions)], axis=1)
    x = np.concatenate([embeddings[words], np.broadcast_to(code, (n, length, 2))], axis=2)
    x = np.where(present[:, :, None], x, PAD)
    dtype = np.dtype(jnp.result_type(float))
    return x.astype(dtype), (0.5 * labels[:, None]).astype(dtype)


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 sentences each way")
    parser.add_argument("--n-train", type=int, default=None, help="default 300 (quick 60)")
    parser.add_argument("--n-test", type=int, default=None, help="default 300 (quick 60)")
    parser.add_argument("--length", type=int, default=None, help="default 24 (quick 12)")
    parser.add_argument("--vocabulary", type=int, default=30)
    parser.add_argument("--dim", type=int, default=8, help="word embedding dimension")
    parser.add_argument("--batch-size", type=int, default=0,
                        help="compute kernels in blocks of this many rows (0: at once)")
    parser.add_argument("--diag-reg", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.n_train = args.n_train or (60 if args.quick else 300)
    args.n_test = args.n_test or (60 if args.quick else 300)
    args.length = args.length or (12 if args.quick else 24)
    return args


def main(argv=None) -> dict:
    args = parse(argv)
    x_train, y_train = sentences(args.n_train, args.length, args.vocabulary, args.dim,
                                 args.seed)
    x_test, y_test = sentences(args.n_test, args.length, args.vocabulary, args.dim,
                               args.seed + 1)
    kernels = kernel_fn()
    if args.batch_size:
        kernels = ntk.batch(kernels, batch_size=args.batch_size)
    start = time.perf_counter()
    predict_fn = predict.gradient_descent_mse_ensemble(kernels, x_train, y_train,
                                                       diag_reg=args.diag_reg)
    fx_nngp, fx_ntk = (np.asarray(f) for f in predict_fn(x_test=x_test, get=("nngp", "ntk")))
    seconds = time.perf_counter() - start
    print(f"{args.n_train} training and {args.n_test} test sentences of up to {args.length} "
          f"words (padding masked); "
          f"kernels and inference in {seconds:.2f} s")
    result = {"seconds": seconds, **scores(fx_nngp, fx_ntk, y_test, y_test)}
    result.update(x_train=x_train, y_train=y_train, x_test=x_test, fx_nngp=fx_nngp,
                  fx_ntk=fx_ntk, diag_reg=args.diag_reg)
    return result


if __name__ == "__main__":
    main()
