"""Run neural-tangents 0.6.5's analytic kernels on a battery of architectures.

Runs *inside the reference environment* (``.venv-ref``: JAX 0.4.25 + neural-tangents), never in
the main one. Arrays travel through ``.npz`` files:

    .venv-ref/bin/python -m reference.nt_stax in.npz out.npz

``in.npz`` holds ``spec`` (a JSON string) and the input arrays it names. ``spec`` is a list of
cases ``{"layers": LAYER, "x1": NAME, "x2": NAME or null, "get": [names], "repeat": int}``
where ``LAYER`` is ``["serial", [LAYER, ...]]``, ``["parallel", [LAYER, ...]]`` or
``[layer_name, {kwargs}]`` with neural-tangents' own layer names and arguments.
``out.npz`` holds ``{i}/{name}`` for each case ``i`` and requested kernel, and, when
``repeat > 0``, ``{i}/seconds``: the best wall time of ``repeat`` calls after a warm-up call
(compilation excluded; ``block_until_ready`` included). A case may set ``"x64": false`` to run
with 64-bit types disabled (float32 inputs then stay float32 throughout, as in a default JAX
session); ``{i}/dtype`` records the dtype of the first returned kernel.
"""
import json
import sys
import time
import warnings


def build(stax, spec):
    """The (init_fn, apply_fn, kernel_fn) triple of a LAYER spec."""
    name, arg = spec
    if name in ("serial", "parallel"):
        return getattr(stax, name)(*[build(stax, s) for s in arg])
    kwargs = dict(arg)
    if name == "ElementwiseNumerical":  # functions travel by their jax.numpy name
        import jax.numpy as jnp
        kwargs["fn"] = getattr(jnp, kwargs["fn"])
    for key in ("filter_shape", "strides", "window_shape"):
        if kwargs.get(key) is not None:
            kwargs[key] = tuple(kwargs[key])
    return getattr(stax, name)(**kwargs)


def main(argv):
    in_path, out_path = argv[1], argv[2]
    warnings.filterwarnings("ignore")
    import jax
    import jax.experimental
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    from neural_tangents import stax

    data = np.load(in_path)
    cases = json.loads(str(data["spec"]))
    out = {}
    for i, case in enumerate(cases):
        with (jax.experimental.enable_x64() if case.get("x64", True)
              else jax.experimental.disable_x64()):
            out.update(run_case(jax, stax, np, data, i, case))
    np.savez(out_path, **out)


def run_case(jax, stax, np, data, i, case):
    """``{i}/{name}`` kernels (and ``{i}/seconds``, ``{i}/dtype`` when timed) of one case."""
    _, _, kernel_fn = build(stax, case["layers"])
    x1 = np.asarray(data[case["x1"]])
    x2 = None if case.get("x2") is None else np.asarray(data[case["x2"]])
    get = tuple(case.get("get", ("nngp", "ntk")))
    if case.get("jit", True):
        fn = jax.jit(kernel_fn, static_argnames=("get",))
    else:
        fn = kernel_fn
    result = fn(x1, x2, get=get)
    out = {}
    for name, value in zip(get, result):
        if value is not None:
            out[f"{i}/{name}"] = np.asarray(value)
    repeat = int(case.get("repeat", 0))
    if repeat:
        out[f"{i}/dtype"] = np.asarray(str(next(v for v in result if v is not None).dtype))
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(x1, x2, get=get))
            best = min(best, time.perf_counter() - t0)
        out[f"{i}/seconds"] = np.asarray(best)
    return out


if __name__ == "__main__":
    main(sys.argv)
