"""No option is silently ignored: every public callable of ``ntk``, ``ntk.stax``,
``ntk.predict``, ``ntk.approx``, ``ntk.solvers``, ``ntk.diagnostics`` and ``ntk.sklearn`` --
and the functions they return (stax ``init_fn`` / ``apply_fn`` / ``kernel_fn``, empirical,
Monte Carlo, approximate and predict functions) -- raises a ``TypeError`` naming a misspelled
keyword argument.

Functions that forward their keyword arguments to a user's function (the kernels returned by
``empirical_ntk_fn`` / ``empirical_kernel_fn`` / ``monte_carlo_kernel_fn`` and ``ntk.approx``
pass ``**apply_kwargs`` to ``apply_fn``, and so does ``empirical_ntk_vp_fn``;
``gradient_descent_mse_ensemble`` passes its
``**kwargs`` to ``kernel_fn``; ``ntk.batch``, ``linearize`` and ``taylor_expand`` return
functions that pass theirs to the wrapped function) hand it on instead: then the user's
function receives it (checked with a recording ``apply_fn``), and a stax ``apply_fn`` /
``kernel_fn`` on the receiving end refuses it. Exception classes (which take a message) are
not walked. The checks run before any computation, so the test compiles almost nothing.
"""
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk
import ntk.sklearn
from ntk import approx, diagnostics, predict, solvers, stax

TYPO = "trace_axis"  # for trace_axes
MODULES = [ntk, stax, predict, approx, solvers, diagnostics, ntk.sklearn]

# Callables whose signature has **kwargs: each forwards them (see the module docstring) and
# is checked by a test below.
FORWARDING = {"ntk.empirical_ntk_vp_fn", "predict.gradient_descent_mse_ensemble", "approx.projected_kernel_fn",
              "approx.projected_kernel", "solvers.cholesky_solve"}


def _public_callables():
    for module in MODULES:
        short = module.__name__.split(".")[-1]
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.ismodule(obj) or not callable(obj):
                continue
            if inspect.isclass(obj) and issubclass(obj, BaseException):
                continue
            yield f"{short}.{name}", obj


def _takes_var_keyword(fn):
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _raises_naming_typo(call):
    with pytest.raises(TypeError, match=TYPO):
        call()


PUBLIC = dict(_public_callables())


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_public_callable_refuses_unknown_keyword(name):
    fn = PUBLIC[name]
    if _takes_var_keyword(fn):
        assert name in FORWARDING, f"{name} takes **kwargs: add a forwarding test"
        return
    # An unexpected keyword is reported before missing positional arguments.
    _raises_naming_typo(lambda: fn(**{TYPO: 0}))


# -- stax: every layer's init_fn, apply_fn and kernel_fn -------------------------------------

LAYER_ARGS = {
    "Dense": (2,), "Conv": (2, (2,)), "ConvTranspose": (2, (2,)), "ConvLocal": (2, (2,)),
    "AvgPool": ((2,),), "SumPool": ((2,),), "Scale": (2.0,), "Index": ((slice(None),),),
    "Dropout": (0.5,), "GlobalSelfAttention": (2, 2, 2, 1), "ImageResize": ((2, 2), "linear"),
    "FanOut": (2,), "LeakyRelu": (0.1,), "ABRelu": (0.0, 1.0), "Monomial": (2,),
    "RectifiedMonomial": (1,), "ElementwiseNumerical": (jnp.tanh, 4), "Elementwise": (jnp.sin,),
    "Polynomial": ([0.0, 1.0],), "Hermite": (2,),
    "serial": (stax.Dense(1),), "parallel": (stax.Dense(1),), "repeat": (stax.Relu(), 2),
}
# Slice is neural-tangents' index builder (Index(Slice[1:, ::2])), not a layer; MaskedArray,
# unmask_fn and layer (a decorator) are not layers either.
LAYERS = sorted(n for n in stax.__all__ if n not in ("Kernel", "KernelFn", "GET_NAMES", "Slice",
                                                     "MaskedArray", "unmask_fn", "layer"))


@pytest.mark.parametrize("name", LAYERS)
def test_stax_layer_functions_refuse_unknown_keyword(name):
    init_fn, apply_fn, kernel_fn = getattr(stax, name)(*LAYER_ARGS.get(name, ()))
    _raises_naming_typo(lambda: init_fn(jax.random.PRNGKey(0), (1, 2), **{TYPO: 0}))
    # The keyword is checked before params or inputs are read.
    _raises_naming_typo(lambda: apply_fn(None, None, **{TYPO: 0}))
    _raises_naming_typo(lambda: kernel_fn(jnp.ones((1, 2)), None, "nngp", **{TYPO: 0}))


# -- functions returned by the public API ---------------------------------------------------

X = jnp.asarray(np.random.default_rng(0).normal(size=(3, 2)))
Y = jnp.asarray(np.random.default_rng(1).normal(size=(3, 1)))
NET = stax.serial(stax.Dense(3, b_std=0.1), stax.Relu(), stax.Dense(1))
PARAMS = NET[0](jax.random.PRNGKey(0), X.shape)[1]


class Recorder:
    """A user ``apply_fn(params, x, **kwargs)``; remembers the keywords it was given."""

    def __init__(self):
        self.seen = set()

    def __call__(self, params, x, **kwargs):
        self.seen.update(kwargs)
        return x @ params


def _returned_kernels(apply_fn):
    """The kernel functions built from ``apply_fn``, each as ``call(**kwargs)``."""
    w = jnp.ones((2, 1)) if isinstance(apply_fn, Recorder) else PARAMS
    init_fn = ((lambda key, shape: (shape[:-1] + (1,), jnp.ones((2, 1))))
               if isinstance(apply_fn, Recorder) else NET[0])
    fns = {impl: ntk.empirical_ntk_fn(apply_fn, implementation=impl, vmap_axes=0)
           for impl in ("jacobian", "ntvp", "structured")}
    calls = {f"empirical_ntk_fn[{impl}]": (lambda f: lambda **kw: f(X, None, w, **kw))(f)
             for impl, f in fns.items()}
    nngp_fn = ntk.empirical_nngp_fn(apply_fn, vmap_axes=0)
    kernel_fn = ntk.empirical_kernel_fn(apply_fn, vmap_axes=0)
    mc = ntk.monte_carlo_kernel_fn(init_fn, apply_fn, jax.random.PRNGKey(0), 2)
    calls["empirical_nngp_fn"] = lambda **kw: nngp_fn(X, None, w, **kw)
    calls["empirical_kernel_fn"] = lambda **kw: kernel_fn(X, None, "ntk", w, **kw)
    calls["monte_carlo_kernel_fn"] = lambda **kw: mc(X, None, "nngp", **kw)
    for name in ("pntk_fn", "trace_ntk_fn", "sign_kernel_fn", "adam_kernel_fn"):
        f = getattr(approx, name)(apply_fn)
        calls[f"approx.{name}"] = (lambda f: lambda **kw: f(X, None, w, **kw))(f)
    lpntk = approx.lpntk_fn(apply_fn)
    calls["approx.lpntk_fn"] = lambda **kw: lpntk(X, None, w, labels1=jnp.array([0, 0, 0]), **kw)
    projected = approx.projected_kernel_fn(apply_fn, 4)
    calls["approx.projected_kernel_fn"] = lambda **kw: projected(X, None, w,
                                                                 jax.random.PRNGKey(1), **kw)
    return calls


RETURNED = sorted(_returned_kernels(NET[1]))


@pytest.mark.parametrize("name", RETURNED)
def test_returned_kernel_functions_forward_to_stax_apply_fn_which_refuses(name):
    call = _returned_kernels(NET[1])[name]
    _raises_naming_typo(lambda: call(**{TYPO: 0}))


def test_returned_kernel_functions_forward_to_a_user_apply_fn():
    for name, call in _returned_kernels(recorder := Recorder()).items():
        recorder.seen.clear()
        call(my_option=1)
        assert recorder.seen == {"my_option"}, name


def test_predict_functions_refuse_unknown_keyword():
    k = NET[2](X, None, ("nngp", "ntk"))
    gp = predict.gp_inference(k, Y, diag_reg=1e-3)
    _raises_naming_typo(lambda: gp("nngp", **{TYPO: 0}))
    gd = predict.gradient_descent_mse(k.ntk, Y)
    _raises_naming_typo(lambda: gd(1.0, **{TYPO: 0}))
    momentum = predict.gradient_descent(lambda f, y: jnp.mean((f - y) ** 2), k.ntk, Y)
    _raises_naming_typo(lambda: momentum(1.0, jnp.zeros_like(Y), **{TYPO: 0}))


def test_ensemble_forwards_its_kwargs_to_kernel_fn():
    # gradient_descent_mse_ensemble(..., **kernel_fn_train_train_kwargs) and its
    # predict_fn(..., **kernel_fn_test_test_kwargs) pass them to kernel_fn: a stax one refuses.
    _raises_naming_typo(lambda: predict.gradient_descent_mse_ensemble(
        NET[2], X, Y, **{TYPO: 0})(t=1.0, get="ntk"))
    ensemble = predict.gradient_descent_mse_ensemble(NET[2], X, Y)
    _raises_naming_typo(lambda: ensemble(t=1.0, x_test=X, get="ntk", **{TYPO: 0}))


def test_other_forwarding_functions():
    _raises_naming_typo(lambda: approx.projected_kernel_fn(NET[1], 4, **{TYPO: 0}))
    _raises_naming_typo(lambda: approx.projected_kernel(NET[1], 4, **{TYPO: 0}))
    _raises_naming_typo(lambda: solvers.cholesky_solve(jnp.eye(2), jnp.ones(2), **{TYPO: 0}))
    # ntk.batch, linearize and taylor_expand return functions that call the wrapped one with
    # the keywords they were given.
    # empirical_ntk_vp_fn(apply_fn, x1, x2, params, **apply_kwargs) passes them to apply_fn.
    vp = ntk.empirical_ntk_vp_fn(NET[1], X, None, PARAMS, **{TYPO: 0})
    _raises_naming_typo(lambda: vp(jnp.ones((3, 1))))
    _raises_naming_typo(lambda: ntk.batch(NET[2], 1)(X, None, "nngp", **{TYPO: 0}))
    recorder = Recorder()
    f_lin = ntk.linearize(recorder, jnp.ones((2, 1)))
    f_lin(jnp.ones((2, 1)), X, my_option=1)
    f_tayl = ntk.taylor_expand(recorder, jnp.ones((2, 1)), 2)
    f_tayl(jnp.ones((2, 1)), X, my_option=2)
    assert recorder.seen == {"my_option"}
