"""Test-session configuration: math checks run in float64.

x64 is switched on for the test session here (never at package import); tests that check
float32 behaviour cast their inputs and parameters explicitly.
"""
import jax


def pytest_configure(config):
    jax.config.update("jax_enable_x64", True)
