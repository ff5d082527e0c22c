"""A trained network against the closed-form dynamics of its empirical NTK.

Gradient descent on ``L = |f(X) - Y|^2 / (2 |Y|)`` moves a wide network's outputs like its
linearization, whose outputs follow, with the empirical NTK ``Theta`` at initialization and
``s = eta t / |Y|`` after ``t`` steps of size ``eta`` (Lee et al. 2019, eqs. 9-10),

    f(X, t) = Y + exp(-s Theta_XX) (f(X, 0) - Y)
    f(x, t) = f(x, 0) - Theta_xX Theta_XX^{-1} (I - exp(-s Theta_XX)) (f(X, 0) - Y)

(``ntk.predict.gradient_descent_mse``). The example trains erf networks of each width in
``--widths`` by full-batch gradient descent on the digits and prints how far the trained
network's outputs are from that prediction: the distance shrinks as the width grows (Lee
et al. bound it by ``O(width^{-1/2})`` in the NTK parametrization); the kernel, traced over
the ten outputs (``Theta (x) I``), is exact only in that limit too.

    python -m examples.function_space [--quick] [--widths 64,512] [--steps T]

References: Lee, Xiao, Schoenholz, Bahri, Novak, Sohl-Dickstein & Pennington, 2019, "Wide
Neural Networks of Any Depth Evolve as Linear Models Under Gradient Descent",
arXiv:1902.06720.
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

import ntk
import tasks
from examples.infinite_fcn import data
from ntk import predict, stax


def network(width: int):
    return stax.serial(stax.Dense(width, W_std=1.0, b_std=0.05), stax.Erf(),
                       stax.Dense(tasks.NUM_CLASSES, W_std=1.0, b_std=0.05))


def mse(fx, y):
    return 0.5 * jnp.mean((fx - y) ** 2)


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 digits each way, 300 steps")
    parser.add_argument("--n-train", type=int, default=None, help="default 128 (quick 64)")
    parser.add_argument("--n-test", type=int, default=None, help="default 128 (quick 64)")
    parser.add_argument("--widths", default=None, help="comma-separated; default 128,512,2048"
                                                       " (quick 64,512)")
    parser.add_argument("--steps", type=int, default=None, help="default 1000 (quick 300)")
    parser.add_argument("--learning-rate", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=0,
                        help="compute the empirical NTK in blocks of this many rows")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.n_train = args.n_train or (64 if args.quick else 128)
    args.n_test = args.n_test or (64 if args.quick else 128)
    args.widths = [int(w) for w in (args.widths or ("64,512" if args.quick else
                                                     "128,512,2048")).split(",")]
    args.steps = args.steps or (300 if args.quick else 1000)
    return args


def train(apply_fn, params, x, y, learning_rate: float, steps: int):
    """``steps`` of full-batch gradient descent on :func:`mse`."""
    grad = jax.grad(lambda p: mse(apply_fn(p, x), y))

    @jax.jit
    def run(params):
        def step(p, _):
            return jax.tree_util.tree_map(lambda w, g: w - learning_rate * g, p, grad(p)), None
        return jax.lax.scan(step, params, None, length=steps)[0]

    return run(params)


def main(argv=None) -> dict:
    args = parse(argv)
    x_train, y_train, x_test, labels_test = data(args.n_train, args.n_test, args.seed)
    y_test = tasks.one_hot(labels_test, centered=True, dtype=y_train.dtype.type)
    print(f"{args.n_train} training and {args.n_test} test digits, {args.steps} steps of "
          f"size {args.learning_rate}")
    print("width   network (train / test)      linearized (train / test)    RMSE (train / "
          "test)")
    rows = []
    for width in args.widths:
        init_fn, apply_fn, _ = network(width)
        # one compiled program for the whole initialization
        _, params = jax.jit(init_fn, static_argnums=1)(jax.random.PRNGKey(args.seed),
                                                        x_train.shape)
        kernel_fn = ntk.empirical_ntk_fn(apply_fn, vmap_axes=0)  # traced over the outputs
        if args.batch_size:
            kernel_fn = ntk.batch(kernel_fn, batch_size=args.batch_size)
        k_train_train = kernel_fn(x_train, None, params)
        k_test_train = kernel_fn(x_test, x_train, params)
        predictor = predict.gradient_descent_mse(k_train_train, y_train,
                                                 learning_rate=args.learning_rate)
        outputs = jax.jit(apply_fn)
        f0_train, f0_test = outputs(params, x_train), outputs(params, x_test)
        lin_train, lin_test = predictor(args.steps, f0_train, f0_test, k_test_train)

        trained = train(apply_fn, params, x_train, y_train, args.learning_rate, args.steps)
        net_train, net_test = outputs(trained, x_train), outputs(trained, x_test)
        row = {"width": width,
               "rmse_train": float(jnp.sqrt(jnp.mean((net_train - lin_train) ** 2))),
               "rmse_test": float(jnp.sqrt(jnp.mean((net_test - lin_test) ** 2))),
               "moved_test": float(jnp.sqrt(jnp.mean((net_test - f0_test) ** 2)))}
        for tag, fx, y, labels in (("net_train", net_train, y_train, None),
                                   ("net_test", net_test, y_test, labels_test),
                                   ("lin_train", lin_train, y_train, None),
                                   ("lin_test", lin_test, y_test, labels_test)):
            row[f"loss_{tag}"] = float(mse(fx, y))
            if labels is not None:
                row[f"accuracy_{tag}"] = predict.accuracy(fx, labels)
        rows.append(row)
        print(f"{width:5d}   loss {row['loss_net_train']:.4f} / {row['loss_net_test']:.4f}  "
              f"   loss {row['loss_lin_train']:.4f} / {row['loss_lin_test']:.4f}      "
              f"{row['rmse_train']:.2e} / {row['rmse_test']:.2e}")
    print("test accuracy, network / linearized: " + ", ".join(
        f"width {r['width']}: {r['accuracy_net_test']:.3f} / {r['accuracy_lin_test']:.3f}"
        for r in rows))
    return {"rows": rows, "steps": args.steps, "learning_rate": args.learning_rate}


if __name__ == "__main__":
    main()
