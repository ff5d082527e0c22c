"""A fuzz of the public API with bad and edge inputs, in float32 and float64.

Every case calls one public function with one bad or extreme argument and says what a correct
library must do: ``'error'`` (raise ValueError / TypeError naming the argument), ``'empty'``
(return an empty result of the right shape) or ``'finite'`` (return a finite result that agrees
with the same call in float64, or warn). Each outcome is one of

- ``ok``: what the case expects;
- ``unclear``: an exception that is not a ValueError / TypeError naming the argument;
- ``silent``: a NaN / inf result, a wrong result without a warning, or a bad input accepted.

Run ``python -m tests.fuzz.api_fuzz`` for the counts and the cases that are not ok (the README's
reliability section); ``tests/fuzz/test_api_fuzz.py`` runs the float32 cases in the suite
and every case under ``make test-all``.
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass
class Case:
    api: str
    what: str
    call: Callable[[], object]       # runs the call (in the case's dtype)
    names: tuple                     # argument names an error message must mention (any)
    expect: str                      # 'error' | 'empty' | 'finite'
    reference: Callable[[], object] | None = None   # the float64 result, for 'finite'
    shape: tuple | None = None       # the expected shape for 'empty'


# Cases are built at collection time, in every test process: their arrays come from NumPy
# (a device copy, no XLA compilation per shape and dtype as jax.random and jnp.zeros need).
def _normal(seed, shape, dtype, scale=1.0):
    return jnp.asarray(scale * np.random.default_rng(seed).normal(size=shape), dtype)


def _zeros(shape, dtype):
    return jnp.asarray(np.zeros(shape), dtype)


def _ones(shape, dtype):
    return jnp.asarray(np.ones(shape), dtype)


def _mlp(dtype, scale=1.0):
    params = [(_normal(10, (3, 8), dtype, scale / np.sqrt(3)), _zeros(8, dtype)),
              (_normal(11, (8, 2), dtype, 1 / np.sqrt(8)), _zeros(2, dtype))]

    def apply_fn(p, x):
        (w1, b1), (w2, b2) = p
        return jax.nn.relu(x @ w1 + b1) @ w2 + b2
    return apply_fn, params


def _x(dtype, n=4, d=3, seed=1):
    return _normal(seed, (n, d), dtype)


def _with(x, value, where=(0, 0)):
    return x.at[where].set(value)


def _spd(n, dtype, seed=2):
    a = np.random.default_rng(seed).normal(size=(n, n))
    return jnp.asarray(a @ a.T / n + np.eye(n), dtype)


def empirical_cases(dtype):
    import ntk
    f, params = _mlp(dtype)
    x, x2 = _x(dtype), _x(dtype, 2, seed=3)
    kfn = lambda **kw: ntk.empirical_ntk_fn(f, vmap_axes=0, **kw)
    yield Case("empirical_ntk_fn", "empty x1", lambda: kfn()(x[:0], x2, params), ("x1",),
               "empty", shape=(0, 2))
    yield Case("empirical_ntk_fn", "empty x2", lambda: kfn()(x, x2[:0], params), ("x2",),
               "empty", shape=(4, 0))
    for name, bad in (("1-D x1", x[0]), ("scalar x1", x[0, 0]), ("NaN in x1", _with(x, np.nan)),
                      ("inf in x1", _with(x, np.inf)), ("wrong feature size", _x(dtype, 4, 5)),
                      ("list x1", [[1.0, 2.0, 3.0]]), ("string x1", "abc")):
        yield Case("empirical_ntk_fn", name, lambda bad=bad: kfn()(bad, x2, params), ("x1",),
                   "error")
    nan_params = [(params[0][0].at[0, 0].set(np.nan), params[0][1]), params[1]]
    yield Case("empirical_ntk_fn", "NaN in params", lambda: kfn()(x, x2, nan_params),
               ("params",), "error")
    for opt, value in (("block_size", "a"), ("block_size", 0), ("block_size", -2),
                       ("block_size", 2.5), ("memory_budget", float("nan")),
                       ("memory_budget", -1), ("memory_budget", "1GB"),
                       ("implementation", "fast"), ("trace_axes", (5,)),
                       ("diagonal_axes", (7,)), ("vmap_axes", 3)):
        yield Case("empirical_ntk_fn", f"{opt}={value!r}",
                   lambda opt=opt, value=value: kfn(**{opt: value})(x, x2, params), (opt,),
                   "error")
    for scale in (1e6, 1e15):
        yield Case("empirical_ntk_fn", f"x * {scale:g}",
                   lambda scale=scale: kfn()(x * scale, x2, params), ("x1",), "finite",
                   reference=lambda scale=scale: empirical_reference(x * scale, x2, dtype))
    yield Case("empirical_ntk_fn", "scalar-output apply_fn",
               lambda: ntk.empirical_ntk_fn(lambda p, x: f(p, x).sum(), vmap_axes=0)(x, x2, params),
               ("apply_fn",), "error")


def empirical_reference(x1, x2, dtype):
    """The same call in float64: the case's parameters and inputs cast up."""
    import ntk
    f, params = _mlp(dtype)
    up = lambda a: jnp.asarray(a, jnp.float64)
    return ntk.empirical_ntk_fn(f, vmap_axes=0)(up(x1), up(x2), jax.tree.map(up, params))


def approx_cases(dtype):
    from ntk import approx
    f, params = _mlp(dtype)
    x, x2 = _x(dtype), _x(dtype, 2, seed=3)
    makers = {"pntk_fn": approx.pntk_fn, "trace_ntk_fn": approx.trace_ntk_fn,
              "sign_kernel_fn": approx.sign_kernel_fn, "adam_kernel_fn": approx.adam_kernel_fn,
              "projected_kernel_fn": lambda f, **kw: (lambda a, b, p: approx.projected_kernel_fn(
                  f, 8, **kw)(a, b, p, jax.random.PRNGKey(0)))}
    for api, make in makers.items():
        yield Case(api, "empty x1", lambda make=make: make(f)(x[:0], x2, params), ("x1",),
                   "empty", shape=(0, 2))
        for name, bad in BAD_X:
            yield Case(api, name, lambda make=make, bad=bad: make(f)(bad(x), x2, params),
                       ("x1",), "error")
        for opt, value in (("batch_size", 2.5), ("batch_size", 0), ("memory_budget", -5),
                           ("memory_budget", float("nan"))):
            yield Case(api, f"{opt}={value!r}",
                       lambda make=make, opt=opt, value=value: make(f, **{opt: value})(
                           x, x2, params), (opt,), "error")
    labels = jnp.array([0, 1, 1, 0])
    lp = approx.lpntk_fn(f)
    for name, lab in (("label 5 of 2 outputs", jnp.array([0, 5, 1, 0])),
                      ("label -1", jnp.array([0, -1, 1, 0])),
                      ("float labels", jnp.array([0.0, 1.0, 1.0, 0.0])),
                      ("3 labels for 4 inputs", jnp.array([0, 1, 1]))):
        yield Case("lpntk_fn", name, lambda lab=lab: lp(x, None, params, labels1=lab),
                   ("labels1",), "error")
    yield Case("lpntk_fn", "NaN in x1",
               lambda: lp(_with(x, np.nan), None, params, labels1=labels), ("x1",), "error")
    feats = approx.projected_features_fn
    for name, make, names in (("dim=0", lambda: feats(f, 0), ("dim",)),
                              ("dim=-3", lambda: feats(f, -3), ("dim",)),
                              ("dim=2.5", lambda: feats(f, 2.5), ("dim",)),
                              ("sketch='bogus'", lambda: feats(f, 4, sketch="bogus"),
                               ("sketch",))):
        yield Case("projected_features_fn", name,
                   lambda make=make: make()(x, params, jax.random.PRNGKey(0)), names, "error")
    yield Case("projected_features_fn", "int key",
               lambda: feats(f, 4)(x, params, 3), ("key",), "error")
    yield Case("projected_features_fn", "NaN in x",
               lambda: feats(f, 4)(_with(x, np.nan), params, jax.random.PRNGKey(0)), ("x",),
               "error")


def stax_cases(dtype):
    from ntk import stax
    _, _, kernel_fn = stax.serial(stax.Dense(16), stax.Relu(), stax.Dense(1))
    x, x2 = _x(dtype), _x(dtype, 2, seed=3)
    yield Case("stax kernel_fn", "empty x1", lambda: kernel_fn(x[:0], x2, "ntk"), ("x1",),
               "empty", shape=(0, 2))
    for name, bad in (("1-D x1", x[0]), ("NaN in x1", _with(x, np.nan)),
                      ("wrong feature size", _x(dtype, 4, 5)), ("string x1", "abc")):
        yield Case("stax kernel_fn", name, lambda bad=bad: kernel_fn(bad, x2, "ntk"), ("x1",),
                   "error")
    yield Case("stax kernel_fn", "get='ntkk'", lambda: kernel_fn(x, x2, "ntkk"), ("get",),
               "error")
    for scale in (1e10, 1e18, 1e30):
        if dtype == jnp.float32 or scale < 1e30:
            yield Case("stax kernel_fn", f"x * {scale:g}",
                       lambda scale=scale: kernel_fn(x * scale, x2, "ntk"), ("x1",), "finite",
                       reference=lambda scale=scale: kernel_fn(
                           jnp.asarray(x, jnp.float64) * scale, jnp.asarray(x2, jnp.float64),
                           "ntk"))
    for ctor, kw, names in ((stax.Dense, dict(out_dim=0), ("out_dim",)),
                            (stax.Dense, dict(out_dim=4, W_std=-1.0), ("W_std",)),
                            (stax.Dense, dict(out_dim=4, W_std=float("nan")), ("W_std",)),
                            (stax.Dense, dict(out_dim=2.5), ("out_dim",))):
        yield Case("stax layers", f"{ctor.__name__}({kw})", lambda ctor=ctor, kw=kw: ctor(**kw),
                   names, "error")


def predict_cases(dtype):
    from ntk import predict, solvers
    k = _spd(5, dtype)
    y = _ones((5, 2), dtype)
    for name, kk, names in (("non-square kernel", k[:, :4], ("k_train_train",)),
                            ("NaN in kernel", _with(k, np.nan), ("k_train_train",)),
                            ("float16 kernel", k.astype(jnp.float16), ("k_train_train",))):
        yield Case("gp_inference", name, lambda kk=kk: predict.gp_inference(kk, y)(
            "nngp", k[:2], k[:2, :2]), names, "error")
    yield Case("gp_inference", "y of 4 rows for 5", lambda: predict.gp_inference(k, y[:4]),
               ("y_train",), "error")
    yield Case("gp_inference", "diag_reg=-1", lambda: predict.gp_inference(k, y, diag_reg=-1.0),
               ("diag_reg",), "error")
    yield Case("gp_inference", "diag_reg=nan",
               lambda: predict.gp_inference(k, y, diag_reg=float("nan")), ("diag_reg",), "error")
    for lr in (-1.0, float("nan"), 0.0, "x"):
        yield Case("gradient_descent_mse", f"learning_rate={lr!r}",
                   lambda lr=lr: predict.gradient_descent_mse(k, y, learning_rate=lr),
                   ("learning_rate",), "error")
    yield Case("max_learning_rate", "negative definite kernel",
               lambda: predict.max_learning_rate(-k), ("ntk_train_train",), "error")
    yield Case("max_learning_rate", "NaN in kernel",
               lambda: predict.max_learning_rate(_with(k, np.nan)), ("ntk_train_train",),
               "error")
    b = _ones(5, dtype)
    for opt, value in (("tol", float("nan")), ("tol", -1.0), ("maxiter", -5), ("maxiter", 2.5),
                       ("diag_reg", -1.0)):
        yield Case("conjugate_gradient", f"{opt}={value!r}",
                   lambda opt=opt, value=value: solvers.conjugate_gradient(k, b, **{opt: value}),
                   (opt,), "error")
    yield Case("conjugate_gradient", "b of 4 for 5x5",
               lambda: solvers.conjugate_gradient(k, b[:4]), ("b",), "error")


def data_and_limits_cases(dtype):
    import tasks
    import limits
    for name, lab in (("label 12 of 10", [0, 12, 3]), ("label -1", [0, -1, 3]),
                      ("float labels", [0.0, 1.0]), ("2-D labels", [[0, 1]])):
        yield Case("tasks.one_hot", name, lambda lab=lab: tasks.one_hot(np.asarray(lab)),
                   ("labels",), "error")
    for name, kw, names in (("c=2", dict(c=2.0), ("c",)), ("c=nan", dict(c=float("nan")), ("c",)),
                            ("qstar=-1", dict(c=0.5, qstar=-1.0), ("qstar",))):
        args = dict(c=0.5, qstar=1.0, sigma_w2=1.5, sigma_b2=0.05)
        args.update(kw)
        yield Case("limits.correlation_map", name,
                   lambda args=args: limits.correlation_map(**args), names, "error")


BAD_X = (("1-D x1", lambda x: x[0]), ("scalar x1", lambda x: x[0, 0]),
         ("NaN in x1", lambda x: _with(x, np.nan)), ("inf in x1", lambda x: _with(x, -np.inf)),
         ("wrong feature size", lambda x: jnp.concatenate([x, x], 1)),
         ("string x1", lambda x: "x"), ("None x1", lambda x: None),
         ("complex x1", lambda x: x.astype(jnp.complex64)))
MODES = {"full": ((), ()), "trace": ((-1,), ()), "diagonal": ((), (-1,))}


def empirical_modes_cases(dtype):
    """Every axes mode and implementation: bad x1, and empty batches."""
    import ntk
    f, params = _mlp(dtype)
    x, x2 = _x(dtype), _x(dtype, 2, seed=3)
    for impl in ("jacobian", "ntvp", "structured"):
        for mode, (trace, diag) in MODES.items():
            make = lambda impl=impl, trace=trace, diag=diag: ntk.empirical_ntk_fn(
                f, trace, diag, vmap_axes=0, implementation=impl)
            api = f"empirical_ntk_fn[{impl}]"
            for name, bad in BAD_X:
                yield Case(api, f"{mode}: {name}",
                           lambda make=make, bad=bad: make()(bad(x), x2, params), ("x1",),
                           "error")
            yield Case(api, f"{mode}: empty x1", lambda make=make: make()(x[:0], x2, params),
                       ("x1",), "empty", shape=(0, 2))
            yield Case(api, f"{mode}: empty x1, x2=None",
                       lambda make=make: make()(x[:0], None, params), ("x1",), "empty",
                       shape=(0, 0))
            yield Case(api, f"{mode}: NaN in x2",
                       lambda make=make: make()(x, _with(x2, np.nan), params), ("x2",), "error")


def nngp_and_kernel_fn_cases(dtype):
    import ntk
    f, params = _mlp(dtype)
    x, x2 = _x(dtype), _x(dtype, 2, seed=3)
    nngp = ntk.empirical_nngp_fn(f)
    for name, bad in BAD_X:
        yield Case("empirical_nngp_fn", name, lambda bad=bad: nngp(bad(x), x2, params), ("x1",),
                   "error")
    yield Case("empirical_nngp_fn", "empty x1", lambda: nngp(x[:0], x2, params), ("x1",),
               "empty", shape=(0, 2))
    kfn = ntk.empirical_kernel_fn(f, vmap_axes=0)
    for get in ("ntkk", 3, ("ntk", "bogus")):
        yield Case("empirical_kernel_fn", f"get={get!r}",
                   lambda get=get: kfn(x, x2, get, params), ("get",), "error")
    for name, bad in BAD_X[:4]:
        yield Case("empirical_kernel_fn", name, lambda bad=bad: kfn(bad(x), x2, "ntk", params),
                   ("x1",), "error")


def monte_carlo_cases(dtype):
    import ntk
    from ntk import stax
    init_fn, apply_fn, _ = stax.serial(stax.Dense(8), stax.Relu(), stax.Dense(1))
    x, x2 = _x(dtype), _x(dtype, 2, seed=3)
    key = jax.random.PRNGKey(0)
    for n in (0, -1, 2.5, "4", (4, 2)):
        yield Case("monte_carlo_kernel_fn", f"n_samples={n!r}",
                   lambda n=n: ntk.monte_carlo_kernel_fn(init_fn, apply_fn, key, n)(
                       x, x2, "nngp"), ("n_samples",), "error")
    yield Case("monte_carlo_kernel_fn", "int key",
               lambda: ntk.monte_carlo_kernel_fn(init_fn, apply_fn, 3, 2)(x, x2, "nngp"),
               ("key",), "error")
    yield Case("monte_carlo_kernel_fn", "memory_budget=nan",
               lambda: ntk.monte_carlo_kernel_fn(init_fn, apply_fn, key, 2,
                                                 memory_budget=float("nan")),
               ("memory_budget",), "error")
    mc = ntk.monte_carlo_kernel_fn(init_fn, apply_fn, key, 2)
    for name, bad in BAD_X[:4]:
        yield Case("monte_carlo_kernel_fn", name, lambda bad=bad: mc(bad(x), x2, "nngp"),
                   ("x1",), "error")


def batch_and_linearize_cases(dtype):
    import ntk
    from ntk import stax
    _, _, kernel_fn = stax.serial(stax.Dense(8), stax.Relu(), stax.Dense(1))
    x = _x(dtype)
    for bs in (-1, 2.5, "2"):
        yield Case("ntk.batch", f"batch_size={bs!r}",
                   lambda bs=bs: ntk.batch(kernel_fn, batch_size=bs)(x, None, "ntk"),
                   ("batch_size",), "error")
    yield Case("ntk.batch", "batch_size that does not divide N",
               lambda: ntk.batch(kernel_fn, batch_size=3)(x, None, "ntk"), ("batch_size",),
               "error")
    f, params = _mlp(dtype)
    for name, p in (("params of another shape", [(_ones((4, 8), dtype), _zeros(8, dtype)),
                                                 params[1]]),):
        yield Case("linearize", name, lambda p=p: ntk.linearize(f, params)(p, x), ("params",),
                   "error")


def more_predict_cases(dtype):
    from ntk import predict, stax
    _, _, kernel_fn = stax.serial(stax.Dense(8), stax.Relu(), stax.Dense(1))
    x, y = _x(dtype, 5), _ones((5, 1), dtype)
    for lr in (-1.0, float("nan"), "x"):
        yield Case("gradient_descent_mse_ensemble", f"learning_rate={lr!r}",
                   lambda lr=lr: predict.gradient_descent_mse_ensemble(
                       kernel_fn, x, y, learning_rate=lr)(t=1.0, x_test=x[:2], get="ntk"),
                   ("learning_rate",), "error")
    yield Case("gradient_descent_mse_ensemble", "y of 4 rows for 5",
               lambda: predict.gradient_descent_mse_ensemble(kernel_fn, x, y[:4])(
                   t=1.0, x_test=x[:2], get="ntk"), ("y_train",), "error")
    yield Case("gradient_descent_mse_ensemble", "NaN in x_train",
               lambda: predict.gradient_descent_mse_ensemble(kernel_fn, _with(x, np.nan), y)(
                   t=1.0, x_test=x[:2], get="ntk"), ("x1", "x_train"), "error")
    k = _spd(5, dtype)
    for t in (-1.0, float("nan"), "soon"):
        yield Case("gradient_descent_mse", f"t={t!r}",
                   lambda t=t: predict.gradient_descent_mse(k, y)(t, None), ("t",), "error")
    yield Case("gp_inference", "get='bogus'",
               lambda: predict.gp_inference(k, y)("bogus", k[:2], k[:2, :2]), ("get",),
               "error")
    yield Case("max_learning_rate", "momentum=1.5",
               lambda: predict.max_learning_rate(k, momentum=1.5), ("momentum",), "error")


def more_data_and_limits_cases(dtype):
    import tasks
    import limits
    for name, kw, names in (("unknown data set", dict(name="cifar", n_train=10), ("name",)),
                            ("n_train=0", dict(name="digits", n_train=0), ("n_train",)),
                            ("n_train=2.5", dict(name="digits", n_train=2.5), ("n_train",)),
                            ("too many", dict(name="digits", n_train=2000), ("n_train",)),
                            ("seed=-1", dict(name="digits", n_train=10, seed=-1), ("seed",))):
        yield Case("tasks.load", name, lambda kw=kw: tasks.load(**kw), names, "error")
    for name, kw in (("sigma_w2=-1", dict(sigma_w2=-1.0, sigma_b2=0.0)),
                     ("sigma_b2=nan", dict(sigma_w2=1.0, sigma_b2=float("nan")))):
        yield Case("limits.q_star", name, lambda kw=kw: limits.q_star(**kw),
                   tuple(kw), "error")


GROUPS = (empirical_cases, empirical_modes_cases, nngp_and_kernel_fn_cases, approx_cases,
          stax_cases, monte_carlo_cases, batch_and_linearize_cases, predict_cases,
          more_predict_cases, data_and_limits_cases, more_data_and_limits_cases)


def cases():
    for dtype in (jnp.float32, jnp.float64):
        for group in GROUPS:
            for case in group(dtype):
                case.what = f"{case.what} [{jnp.dtype(dtype).name}]"
                yield case


def _leaves(out):
    if isinstance(out, (float, int)):
        return [np.asarray(out)]
    return [np.asarray(a) for a in jax.tree.leaves(out) if hasattr(a, "dtype")
            or isinstance(a, (float, int))]


def run_case(case: Case) -> tuple[str, str]:
    """``(outcome, detail)`` with outcome ``'ok' | 'unclear' | 'silent'``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = case.call()
            if case.expect == "finite" or case.expect == "empty":
                jax.block_until_ready(out)
        except (ValueError, TypeError) as err:
            msg = str(err)
            if case.expect == "error" and any(n in msg for n in case.names):
                return "ok", f"{type(err).__name__}: {msg[:120]}"
            return "unclear", f"{type(err).__name__}: {msg[:200]}"
        except Exception as err:  # noqa: BLE001 - classified, not hidden
            return "unclear", f"{type(err).__name__}: {str(err)[:200]}"
    warned = [str(w.message)[:120] for w in caught]
    if case.expect == "error":
        return "silent", f"accepted; returned {type(out).__name__}"
    leaves = _leaves(out)
    if case.expect == "empty":
        shape = tuple(np.shape(leaves[0])) if leaves else None
        ok = shape is not None and shape[:len(case.shape)] == case.shape
        return ("ok" if ok else "silent"), f"shape {shape}, expected {case.shape}"
    if not all(np.all(np.isfinite(a)) for a in leaves if np.issubdtype(a.dtype, np.inexact)):
        return ("ok" if warned else "silent"), "non-finite result" + (
            f" with a warning: {warned[0]}" if warned else "")
    if case.reference is not None:
        ref = _leaves(case.reference())
        err = max(float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) + 1e-300))
                  for a, b in zip(leaves, ref))
        if err > 1e-3:
            return ("ok" if warned else "silent"), f"relative error {err:.2g} vs float64" + (
                f" with a warning: {warned[0]}" if warned else "")
    return "ok", "finite"


def report(results) -> str:
    lines = []
    counts = {}
    for case, (outcome, _) in results:
        counts[outcome] = counts.get(outcome, 0) + 1
    lines.append(f"{len(results)} cases: " + ", ".join(f"{k} {v}" for k, v in
                                                        sorted(counts.items())))
    for case, (outcome, detail) in results:
        if outcome != "ok":
            lines.append(f"  {outcome:8s} {case.api}: {case.what} -> {detail}")
    return "\n".join(lines)


def main() -> int:
    jax.config.update("jax_enable_x64", True)
    results = [(c, run_case(c)) for c in cases()]
    print(report(results))
    return 0 if all(o == "ok" for _, (o, _) in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
