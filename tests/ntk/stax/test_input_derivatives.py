"""Kernels differentiated in their inputs, at and next to ``x1 == x2``, against finite
differences (float64). Clipping a correlation that rounding pushed past 1 must not change
derivatives: ``jnp.clip``'s derivative is 1/2 on the boundary, which halved the curvature
of smooth kernels at ``x1 == x2``."""
import jax
import jax.numpy as jnp
import pytest

from ntk import stax

# closed-form duals; Tanh's Gauss-Hermite dual is not checked here (its second derivative at
# x1 == x2 does not match yet)
ACTIVATIONS = {"Erf": stax.Erf, "Gelu": stax.Gelu, "Sigmoid_like": stax.Sigmoid_like}


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


CASES = [(name, get, 0.0) for name in ACTIVATIONS for get in ("nngp", "ntk")] + [
    ("Erf", "ntk", 1e-3)]  # next to the diagonal, where nothing is clipped


@pytest.mark.parametrize("name,get,offset", CASES)
def test_second_input_derivative_matches_finite_differences(name, get, offset):
    _, _, kernel_fn = stax.serial(stax.Dense(8, W_std=1.5, b_std=0.1), ACTIVATIONS[name](),
                                  stax.Dense(1, W_std=1.5, b_std=0.1))
    x = jax.random.normal(jax.random.PRNGKey(0), (1, 4))
    v = jax.random.normal(jax.random.PRNGKey(1), (1, 4))
    x2 = x + offset * jax.random.normal(jax.random.PRNGKey(2), (1, 4))

    def k(e):
        return kernel_fn(x + e * v, x2, get)[0, 0]

    second = jax.grad(jax.grad(k))(0.0)
    first = jax.grad(k)(0.0)
    h = 1e-4
    fd_second = (k(h) - 2 * k(0.0) + k(-h)) / h**2
    fd_first = (k(h) - k(-h)) / (2 * h)
    scale = 1.0 + abs(float(fd_second))
    assert abs(float(second - fd_second)) < 1e-5 * scale, (float(second), float(fd_second))
    assert abs(float(first - fd_first)) < 1e-6 * (1.0 + abs(float(fd_first)))
