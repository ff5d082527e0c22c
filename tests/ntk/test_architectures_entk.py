"""Empirical NTK of the reference architectures against an explicit Jacobian contraction.

For every architecture in ``architectures`` (tiny sizes, float64) ``ntk.empirical_ntk_fn``
must equal ``Theta = J(x1) J(x2)^T`` contracted by hand (einsum) from the flattened
``jax.jacrev`` Jacobians ``J: (N, *out, P)``, with neural-tangents' axis semantics: a traced
axis is averaged, a diagonal axis keeps matching entries, every free output axis contributes
a pair of axes after ``(N1, N2)``.

Each kernel compiles anew, so the (architecture, implementation, axes) grid is covered by a
Latin square rather than in full: every architecture meets every explicit implementation,
every implementation meets every axes mode (on some architecture), and ``'auto'`` (which
dispatches to one of the three) runs every mode on the Myrtle CNN and the sequence modes on
GPT.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import architectures
import ntk

IMPLEMENTATIONS = ("jacobian", "ntvp", "structured", "auto")
IMAGE_MODELS = ("resnet18", "wide_resnet", "myrtle", "vit_tiny")

# mode -> (trace_axes, diagonal_axes, contraction of J1 (n, o, p) with J2 (m, o, p))
VECTOR_MODES = {
    "full": ((), (), lambda a, b: np.einsum("nop,mqp->nmoq", a, b)),
    "trace": ((-1,), (), lambda a, b: np.einsum("nop,mop->nm", a, b) / a.shape[1]),
    "diagonal": ((), (-1,), lambda a, b: np.einsum("nop,mop->nmo", a, b)),
}
# GPT logits (N, T, V): J1 (n, t, v, p), J2 (m, s, u, p)
SEQUENCE_MODES = {
    "full": ((), (), lambda a, b: np.einsum("ntvp,msup->nmtsvu", a, b)),
    "trace": ((-1,), (), lambda a, b: np.einsum("ntvp,msvp->nmts", a, b) / a.shape[2]),
    "diagonal": ((), (-1,), lambda a, b: np.einsum("ntvp,msvp->nmtsv", a, b)),
    "trace_vocab_diagonal_time": (
        (-1,), (1,), lambda a, b: np.einsum("ntvp,mtvp->nmt", a, b) / a.shape[2]),
    "diagonal_time": ((), (1,), lambda a, b: np.einsum("ntvp,mtup->nmtvu", a, b)),
}


def _latin_square():
    cases = []
    explicit = IMPLEMENTATIONS[:3]
    modes = list(VECTOR_MODES)
    for m, name in enumerate(IMAGE_MODELS):
        for i, impl in enumerate(explicit):
            cases.append((name, impl, modes[(m + i) % len(modes)]))
    # 'auto' dispatches to one of the three: every mode once, on the cheapest model
    cases += [("myrtle", "auto", mode) for mode in modes if ("myrtle", "auto", mode)
              not in cases]
    # GPT: the sequence-specific modes with every implementation (the trace over the vocabulary
    # with T free runs below without vmap_axes)
    for i, impl in enumerate(IMPLEMENTATIONS):
        cases.append(("gpt", impl, ("trace_vocab_diagonal_time", "diagonal_time")[i % 2]))
    return cases


CASES = _latin_square()

# The Jacobian and NTK-vector-product implementations on the large models cost most of this
# file (10-12 s each): `make test-all` runs those; the default suite checks the Jacobian one on
# Myrtle in every mode, and the NTK-vector products on Myrtle, ViT and GPT.
HEAVY = {("resnet18", "jacobian", "full"), ("vit_tiny", "jacobian", "full"),
         ("gpt", "jacobian", "trace_vocab_diagonal_time"), ("wide_resnet", "jacobian", "trace"),
         ("resnet18", "ntvp", "trace"), ("wide_resnet", "ntvp", "diagonal")}
DEFAULT_CASES = [pytest.param(*c, marks=pytest.mark.slow) if c in HEAVY else c for c in CASES]
DEFAULT_CASES += [("myrtle", "jacobian", m) for m in VECTOR_MODES
                  if ("myrtle", "jacobian", m) not in CASES]


NO_VMAP_CASES = [("myrtle", "jacobian", "trace"), ("gpt", "structured", "full"),
                 ("gpt", "ntvp", "trace")]


def test_the_grid_covers_every_pair():
    pairs = {(impl, mode) for _, impl, mode in CASES}
    assert pairs >= {(i, m) for i in IMPLEMENTATIONS for m in VECTOR_MODES}
    assert {m for name, _, m in CASES + NO_VMAP_CASES if name == "gpt"} >= {
        "trace", "trace_vocab_diagonal_time", "diagonal_time"}
    assert {(n, i) for n, i, _ in CASES} >= {(n, i) for n in IMAGE_MODELS + ("gpt",)
                                            for i in IMPLEMENTATIONS[:3]}


def _model(name):
    k1, k2 = jax.random.split(jax.random.PRNGKey(1))
    if name == "gpt":
        module = architectures.gpt(vocab_size=11, context=5, dim=8, depth=1, heads=2)
        x1 = jax.random.randint(k1, (3, 5), 0, 11)
        x2 = jax.random.randint(k2, (2, 5), 0, 11)
    else:
        module = {
            "resnet18": lambda: architectures.resnet18(num_classes=3, width=2),
            "wide_resnet": lambda: architectures.wide_resnet(10, 1, num_classes=3),
            "myrtle": lambda: architectures.myrtle(5, width=4, num_classes=3),
            "vit_tiny": lambda: architectures.vit_tiny(num_classes=3, image_size=8,
                                                       patch_size=4, dim=8, depth=1, heads=2,
                                                       mlp_dim=16),
        }[name]()
        x1 = jax.random.normal(k1, (3, 8, 8, 3), jnp.float64)
        x2 = jax.random.normal(k2, (2, 8, 8, 3), jnp.float64)
    # BatchNorm in inference mode with its initial running statistics (calibration would
    # only add a compilation; the statistics enter as constants either way)
    apply_fn, params = architectures.init(module, jax.random.PRNGKey(0), x1,
                                          calibration_steps=0)
    params = jax.tree_util.tree_map(lambda p: p.astype(jnp.float64), params)
    return apply_fn, params, x1, x2


_CACHE = {}


def _setup(name):
    """Model, inputs and reference Jacobians of x1 (N1 = 3) and x2 (N2 = 2), taken from one
    Jacobian of the concatenated batch (examples are independent in every model here)."""
    if name not in _CACHE:
        apply_fn, params, x1, x2 = _model(name)
        x = jnp.concatenate([x1, x2])
        out_ndim = jax.eval_shape(apply_fn, params, x).ndim
        jac = jax.jit(jax.jacrev(apply_fn))(params, x)
        leaves = [j.reshape(j.shape[:out_ndim] + (-1,)) for j in jax.tree_util.tree_leaves(jac)]
        j = np.asarray(jnp.concatenate(leaves, axis=-1))
        _CACHE[name] = (apply_fn, params, x1, x2, j[:3], j[3:])
    return _CACHE[name]


def _check(name, implementation, mode, vmap_axes):
    apply_fn, params, x1, x2, j1, j2 = _setup(name)
    trace_axes, diagonal_axes, contract = (SEQUENCE_MODES if name == "gpt"
                                           else VECTOR_MODES)[mode]
    kernel_fn = ntk.empirical_ntk_fn(apply_fn, trace_axes=trace_axes,
                                     diagonal_axes=diagonal_axes, vmap_axes=vmap_axes,
                                     implementation=implementation)
    expected = contract(j1, j2)
    actual = np.asarray(kernel_fn(x1, x2, params))
    assert actual.shape == expected.shape
    err = np.max(np.abs(actual - expected)) / np.max(np.abs(expected))
    assert err < 1e-10, err


@pytest.mark.parametrize("name,implementation,mode", DEFAULT_CASES)
def test_entk_matches_jacobian_contraction(name, implementation, mode):
    _check(name, implementation, mode, vmap_axes=0)


@pytest.mark.parametrize("name,implementation,mode", NO_VMAP_CASES)
def test_entk_without_vmap_axes(name, implementation, mode):
    _check(name, implementation, mode, vmap_axes=None)
