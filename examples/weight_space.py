"""A network against its linearization, both trained by SGD with momentum on cross-entropy.

``ntk.linearize(f, params_0)`` is the first-order Taylor expansion of a network in its
parameters,

    f_lin(params, x) = f(params_0, x) + J(params_0, x) (params - params_0),

a linear model (in the parameters) that any optimizer trains; for a wide network trained
from ``params_0`` it stays close to the network (Lee et al. 2019), for any loss. Here erf
networks of each width in ``--widths`` and their linearizations are trained side by side on
the digits, with minibatches, heavy-ball momentum (``optax.sgd(momentum=0.9)``) and
softmax cross-entropy; the example prints both losses per epoch, the accuracies, and the
root-mean-square distance between the two models' logits, which shrinks as the width
grows.

    python -m examples.weight_space [--quick] [--widths 64,1024] [--epochs E]

References: Lee, Xiao, Schoenholz, Bahri, Novak, Sohl-Dickstein & Pennington, 2019, "Wide
Neural Networks of Any Depth Evolve as Linear Models Under Gradient Descent",
arXiv:1902.06720.
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax

import ntk
import tasks
from examples.function_space import network
from examples.infinite_fcn import data
from ntk import predict


def cross_entropy(logits, labels):
    return -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * labels, axis=-1))


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256 digits, 3 epochs")
    parser.add_argument("--n-train", type=int, default=None, help="default 1200 (quick 256)")
    parser.add_argument("--n-test", type=int, default=None, help="default 500 (quick 128)")
    parser.add_argument("--widths", default=None, help="comma-separated; default 128,2048 "
                                                       "(quick 64,1024)")
    parser.add_argument("--epochs", type=int, default=None, help="default 10 (quick 3)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 64 (quick 32)")
    parser.add_argument("--learning-rate", type=float, default=0.5)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.n_train = args.n_train or (256 if args.quick else 1200)
    args.n_test = args.n_test or (128 if args.quick else 500)
    args.widths = [int(w) for w in (args.widths or ("64,1024" if args.quick else
                                                     "128,2048")).split(",")]
    args.epochs = args.epochs or (3 if args.quick else 10)
    args.batch_size = args.batch_size or (32 if args.quick else 64)
    return args


def train_both(f, f_lin, params, x, y, args):
    """Trains ``f`` and ``f_lin`` from ``params`` on the same minibatches; returns their final
    parameters and, per epoch, both training losses."""
    optimizer = optax.sgd(args.learning_rate, momentum=args.momentum)
    x, y = jnp.asarray(x), jnp.asarray(y)
    n_batches = len(x) // args.batch_size

    def epoch(carry, order):
        def step(carry, batch):
            (p, s), (q, r) = carry
            xb, yb = x[batch], y[batch]
            g, h = (jax.grad(lambda w: cross_entropy(model(w, xb), yb))(w)
                    for model, w in ((f, p), (f_lin, q)))
            u, s = optimizer.update(g, s, p)
            v, r = optimizer.update(h, r, q)
            return ((optax.apply_updates(p, u), s), (optax.apply_updates(q, v), r)), None

        batches = order[:n_batches * args.batch_size].reshape(n_batches, args.batch_size)
        carry, _ = jax.lax.scan(step, carry, batches)
        (p, _), (q, _) = carry
        return carry, jnp.stack([cross_entropy(f(p, x), y), cross_entropy(f_lin(q, x), y)])

    keys = jax.random.split(jax.random.PRNGKey(args.seed + 1), args.epochs)
    orders = jax.vmap(lambda k: jax.random.permutation(k, len(x)))(keys)
    state = (params, optimizer.init(params))
    ((p, _), (q, _)), losses = jax.jit(lambda c: jax.lax.scan(epoch, c, orders))(
        (state, state))
    return p, q, np.asarray(losses)


def main(argv=None) -> dict:
    args = parse(argv)
    x_train, centred, x_test, labels_test = data(args.n_train, args.n_test, args.seed)
    y_train = tasks.one_hot(np.argmax(centred, axis=1), dtype=x_train.dtype.type)
    print(f"{args.n_train} training and {args.n_test} test digits, {args.epochs} epochs of "
          f"minibatches of {args.batch_size}, learning rate {args.learning_rate}, momentum "
          f"{args.momentum}")
    rows = []
    for width in args.widths:
        init_fn, f, _ = network(width)
        # one compiled program for the whole initialization
        _, params = jax.jit(init_fn, static_argnums=1)(jax.random.PRNGKey(args.seed),
                                                        x_train.shape)
        f_lin = ntk.linearize(f, params)
        p, q, losses = train_both(f, f_lin, params, x_train, y_train, args)
        print(f"width {width}\nepoch   loss   linearized loss")
        for i, (a, b) in enumerate(losses):
            print(f"{i + 1:5d}   {a:.4f}   {b:.4f}")
        both = jax.jit(lambda x: (f(p, x), f_lin(q, x), f(params, x)))
        net_test, lin_test, init_test = both(x_test)
        net_train, lin_train, _ = both(x_train)
        row = {"width": width, "losses": losses.tolist(),
               "rmse_train": float(jnp.sqrt(jnp.mean((net_train - lin_train) ** 2))),
               "rmse_test": float(jnp.sqrt(jnp.mean((net_test - lin_test) ** 2))),
               "moved_test": float(jnp.sqrt(jnp.mean((net_test - init_test) ** 2))),
               "accuracy_net_test": predict.accuracy(net_test, labels_test),
               "accuracy_lin_test": predict.accuracy(lin_test, labels_test)}
        rows.append(row)
        print(f"test accuracy {row['accuracy_net_test']:.3f} (linearized "
              f"{row['accuracy_lin_test']:.3f}); RMSE of the logits, network against "
              f"linearized: train {row['rmse_train']:.3e}, test {row['rmse_test']:.3e} "
              f"(the logits moved by {row['moved_test']:.3f})")
    return {"rows": rows}


if __name__ == "__main__":
    main()
