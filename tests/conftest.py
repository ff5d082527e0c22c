"""Test-session configuration.

- Math checks run in float64: x64 is switched on for the test session here (never at package
  import); tests that check float32 behaviour cast their inputs and parameters explicitly.
- The suite compiles hundreds of small XLA programs; compiling them with the CPU backend's
  cheapest optimisation level cuts the suite's time by about a third and changes no result
  beyond rounding. Set NTK_LAB_TEST_XLA_OPT=1 to test with the default level.
- NTK_LAB_TEST_RANK_PROMOTION=raise runs the session under
  ``jax_numpy_rank_promotion='raise'`` (neural-tangents' test setting and a common user one),
  e.g. ``NTK_LAB_TEST_RANK_PROMOTION=raise pytest tests/ntk/stax tests/ntk/test_empirical.py``;
  the library makes every broadcast explicit, so its tests pass either way.
"""
import os

if not os.environ.get("NTK_LAB_TEST_XLA_OPT"):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_backend_optimization_level=0").strip()

import jax  # noqa: E402  (the XLA flags must be set before the backend starts)

# One XLA compilation cache for the session, shared by the pytest-xdist workers: many tests
# compile the same small programs (the same models under new closures), and a program is
# looked up by its HLO, compile options and JAX version, so a hit is the program XLA would
# compile. A fresh folder per session (made by the controller, inherited by the workers,
# removed at the end); NTK_LAB_TEST_XLA_CACHE=off turns it off.
if os.environ.get("NTK_LAB_TEST_XLA_CACHE") is None and "PYTEST_XDIST_WORKER" not in os.environ:
    import tempfile
    os.environ["NTK_LAB_TEST_XLA_CACHE"] = tempfile.mkdtemp(prefix="ntk-lab-xla-cache-")
    _OWN_CACHE = os.environ["NTK_LAB_TEST_XLA_CACHE"]
else:
    _OWN_CACHE = None
if os.environ.get("NTK_LAB_TEST_XLA_CACHE", "off") != "off":
    _CACHE_SETTINGS = {"jax_compilation_cache_dir": os.environ["NTK_LAB_TEST_XLA_CACHE"],
                       "jax_persistent_cache_min_compile_time_secs": 0.0,
                       "jax_persistent_cache_min_entry_size_bytes": 0}
    for _name, _value in _CACHE_SETTINGS.items():
        jax.config.update(_name, _value)
        os.environ[_name.upper()] = str(_value)   # subprocesses started by tests share it


def pytest_configure(config):
    jax.config.update("jax_enable_x64", True)
    rank_promotion = os.environ.get("NTK_LAB_TEST_RANK_PROMOTION")
    if rank_promotion:
        jax.config.update("jax_numpy_rank_promotion", rank_promotion)


def pytest_unconfigure(config):
    if _OWN_CACHE:
        import shutil
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


# Tests that take tens of seconds, run first: each xdist worker starts on its share of them,
# and the cheap tests that follow fill in, so the last worker to finish is not left running
# one long study while the other idles (about a minute of wall time on two workers).
_FIRST = ("tests/papers/test_verify.py::test_verify_quick", "tests/ntk/test_empirical.py",
          "tests/ntk/test_streaming.py", "tests/ntk/test_architectures_entk.py")


def pytest_collection_modifyitems(config, items):
    rank = lambda item: next((i for i, p in enumerate(_FIRST) if item.nodeid.startswith(p)),
                             len(_FIRST))
    items.sort(key=rank)     # stable: the order within each group is kept
