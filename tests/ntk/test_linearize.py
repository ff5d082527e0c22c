"""linearize / taylor_expand against exact polynomials and finite differences."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk import linearize, taylor_expand


def _tree_close(a, b, **tol):
    jax.tree_util.tree_map(lambda u, v: np.testing.assert_allclose(u, v, **tol), a, b)


@pytest.fixture(scope="module")
def mlp():
    """A tanh MLP with pytree params and a dict output."""
    rng = np.random.default_rng(0)
    params = {"hidden": (jnp.asarray(rng.normal(size=(3, 8))), jnp.asarray(rng.normal(size=8))),
              "out": jnp.asarray(rng.normal(size=(8, 2)))}

    def f(p, x, scale=1.0):
        w, b = p["hidden"]
        h = jnp.tanh(x @ w / jnp.sqrt(3.0) + b)
        return {"logits": scale * h @ p["out"] / jnp.sqrt(8.0), "hidden": h}

    direction = jax.tree_util.tree_map(lambda a: jnp.asarray(rng.normal(size=a.shape)), params)
    x = jnp.asarray(rng.normal(size=(5, 3)))
    return f, params, direction, x


def _shift(params, direction, eps):
    return jax.tree_util.tree_map(lambda a, d: a + eps * d, params, direction)


def test_linearize_is_exact_for_a_model_linear_in_its_parameters():
    rng = np.random.default_rng(1)
    feats = jnp.asarray(rng.normal(size=(6, 4)))
    f = lambda p, x: jnp.tanh(x) @ p["w"] + p["b"]  # noqa: E731
    p0 = {"w": jnp.asarray(rng.normal(size=(4, 3))), "b": jnp.zeros(3)}
    p1 = {"w": jnp.asarray(rng.normal(size=(4, 3))), "b": jnp.ones(3)}
    np.testing.assert_allclose(linearize(f, p0)(p1, feats), f(p1, feats), rtol=1e-13)


def test_linearize_matches_central_differences(mlp):
    """f_lin(p0 + e d) - f(p0) = e J d, and (f(p0 + e d) - f(p0 - e d)) / 2 = e J d + O(e^3):
    their gap falls as e^3 (factor ~8 per halving) and is far below the O(e^2) gap between
    the model and its linearization."""
    f, params, direction, x = mlp
    f_lin = linearize(f, params)

    @jax.jit
    def probe(eps):
        plus, minus = f(_shift(params, direction, eps), x), f(_shift(params, direction, -eps), x)
        lin = f_lin(_shift(params, direction, eps), x)
        f0 = f(params, x)
        gap = jax.tree_util.tree_map(lambda l, p, m, z: jnp.max(jnp.abs(l - z - (p - m) / 2)),
                                     lin, plus, minus, f0)
        curvature = jax.tree_util.tree_map(lambda l, p: jnp.max(jnp.abs(l - p)), lin, plus)
        return (jnp.max(jnp.stack(jax.tree_util.tree_leaves(gap))),
                jnp.max(jnp.stack(jax.tree_util.tree_leaves(curvature))))

    (gap_1, curv_1), (gap_2, curv_2) = probe(4e-3), probe(2e-3)
    assert 6.0 < gap_1 / gap_2 < 10.0, (gap_1, gap_2)
    assert 3.0 < curv_1 / curv_2 < 5.0, (curv_1, curv_2)
    assert gap_2 < 1e-2 * curv_2

    # at the expansion point it is the model (kwargs reach f); its gradient in the
    # parameters is the model's gradient at p0 wherever it is taken (it is linear)
    @jax.jit
    def at_point_and_gradients(p):
        out = f_lin(params, x, scale=2.0), f(params, x, scale=2.0)
        grads = (jax.grad(lambda q: jnp.sum(f_lin(q, x)["logits"]))(p),
                 jax.grad(lambda q: jnp.sum(f(q, x)["logits"]))(params))
        return out, grads

    (lin_out, out), (g_lin, g) = at_point_and_gradients(_shift(params, direction, 0.3))
    _tree_close(lin_out, out, rtol=1e-14)
    _tree_close(g_lin, g, rtol=1e-12)


def test_taylor_expand_reproduces_polynomials_exactly():
    """A cubic in the parameters: degree 3 (and more) is exact; degree 2 misses exactly the
    cubic term D^3 f[d]^3 / 6; degree 1 is linearize; degree 0 the constant f(p0)."""
    rng = np.random.default_rng(2)
    a = jnp.asarray(rng.normal(size=(4, 3)))

    def quadratic(p, x):
        return (x @ p["u"]) ** 2 + p["c"] * x.sum(-1)

    def cubic(p, x):
        return quadratic(p, x) * (1.0 + x @ p["u"]) + p["c"] ** 3

    p0 = {"u": jnp.asarray(rng.normal(size=3)), "c": jnp.asarray(0.3)}
    p1 = {"u": jnp.asarray(rng.normal(size=3)), "c": jnp.asarray(-1.2)}

    @jax.jit  # one compilation; eager nested jvps would dispatch op by op
    def expansions(p):
        return ({k: taylor_expand(cubic, p0, k)(p, a) for k in range(5)},
                taylor_expand(quadratic, p0, 2)(p, a), linearize(cubic, p0)(p, a))

    tayl, quad_2, lin = expansions(p1)
    np.testing.assert_allclose(quad_2, quadratic(p1, a), rtol=1e-12)
    for degree in (3, 4):
        np.testing.assert_allclose(tayl[degree], cubic(p1, a), rtol=1e-12)
    # the cubic term by hand: with d = p1 - p0, u(s) = u0 + s du, c(s) = c0 + s dc,
    # f(s) = (x.u(s))^2 (1 + x.u(s)) + c(s) x.1 (1 + x.u(s)) + c(s)^3; its s^3 coefficient:
    du, dc = p1["u"] - p0["u"], p1["c"] - p0["c"]
    cubic_term = (a @ du) ** 3 + dc ** 3
    np.testing.assert_allclose(tayl[2], cubic(p1, a) - cubic_term, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tayl[1], lin, rtol=1e-13)
    np.testing.assert_allclose(tayl[0], cubic(p0, a), rtol=1e-15)


def test_linearize_and_taylor_expand_errors(mlp):
    f, params, _, x = mlp
    with pytest.raises(ValueError, match="structure"):
        linearize(f, params)([params["out"]], x)
    wrong = dict(params, out=jnp.zeros((8, 3)))
    with pytest.raises(ValueError, match=r"shape \(8, 3\).*\(8, 2\)"):
        linearize(f, params)(wrong, x)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="degree"):
            taylor_expand(f, params, bad)
    with pytest.raises(TypeError, match="floating"):
        linearize(f, {"w": jnp.arange(3)})
    with pytest.raises(TypeError, match="callable"):
        taylor_expand("f", params, 1)
