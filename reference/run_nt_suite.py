"""Run neural-tangents 0.6.5's own test suite against ``ntk`` through a names-only mapping.

The yardstick of "a neural-tangents user can switch": NT's ``tests/`` (and the ``examples/``
its example tests import) are copied into a temporary folder beside a fake ``neural_tangents``
package whose modules only re-export ``ntk``'s names (``neural_tangents.stax`` is
``ntk.stax``, ``nt.empirical_ntk_fn`` is ``ntk.empirical_ntk_fn``, ...). No assertion or
tolerance is changed. Nothing is fetched: give the path of a neural-tangents checkout
(``git clone https://github.com/google/neural-tangents && git checkout v0.6.5``)::

    .venv/bin/python -m reference.run_nt_suite /path/to/neural-tangents [--files stax/stax_test.py]
        [--cases 4] [-k EXPR] [--timeout 1200] [--keep DIR]

(``NTK_SOURCE=/path/to/other/checkout`` measures another version of ``ntk``, e.g. a
``git archive`` of an earlier commit.)

What the mapping adds besides names, all outside the code under test:

* JAX names NT's tests use that current JAX removed (``jax.tree_map``, ``config.read``) are
  aliased to their current spellings in a ``conftest.py``;
* the index helpers the tests use to compute *expected* shapes
  (``neural_tangents._src.utils.utils``) are NT's own file from the checkout, and
  ``_src.predict._is_on_cpu`` (a device query the tests check arrays with) is rewritten;
* NT's private engine (``_src.batching._serial``, ``_src.monte_carlo._sample_once_kernel_fn``,
  ``_src.utils.rules``, ...) is *not* mapped: tests of it count as "could not run".

Each test file runs in its own pytest process (NT's tests set global JAX flags at import) with
NT's own case sampling (``NT_NUM_GENERATED_CASES``, default 4 as in NT). A test case is
``passed``, ``failed`` (an assertion: numbers or shapes differ), ``error`` (it raised before
asserting: a missing name or argument, a refused option) or ``skipped``. The table prints
counts per file and the distinct causes of the non-passing cases, grouped.

Not part of the default test suite (it needs a neural-tangents checkout and minutes per file).
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import xml.etree.ElementTree as ElementTree

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The fake package: module path -> source. Only names; nothing here computes a kernel.
SHIM = {
    "neural_tangents/__init__.py": """
        from ntk import (batch, empirical_kernel_fn, empirical_nngp_fn, empirical_ntk_fn,
                         linearize, monte_carlo_kernel_fn, predict, stax, taylor_expand)
        from ntk import Implementation as NtkImplementation
        import ntk as _ntk
        for _name in ("empirical_ntk_vp_fn",):
            if hasattr(_ntk, _name):
                globals()[_name] = getattr(_ntk, _name)
        from neural_tangents import experimental
        """,
    "neural_tangents/stax.py": """
        from ntk.stax import *  # noqa: F401,F403
        import ntk.stax as _stax
        globals().update({k: getattr(_stax, k) for k in dir(_stax) if not k.startswith('_')})
        """,
    "neural_tangents/predict.py": """
        from ntk.predict import *  # noqa: F401,F403
        import ntk.predict as _predict
        globals().update({k: getattr(_predict, k) for k in dir(_predict)
                          if not k.startswith('_')})
        """,
    "neural_tangents/experimental/__init__.py": "",
    "neural_tangents/_src/__init__.py": "",
    "neural_tangents/_src/empirical.py": """
        from ntk.empirical import *  # noqa: F401,F403
        # NT's tests exercise its structured derivatives by default; so do we.
        _DEFAULT_TESTING_NTK_IMPLEMENTATION = 'structured'

        """,
    "neural_tangents/_src/batching.py": """
        from ntk.batching import *  # noqa: F401,F403
        from ntk.batching import batch
        """,
    "neural_tangents/_src/monte_carlo.py": """
        from ntk.monte_carlo import *  # noqa: F401,F403
        from ntk.monte_carlo import monte_carlo_kernel_fn
        """,
    "neural_tangents/_src/predict.py": """
        from ntk.predict import *  # noqa: F401,F403


        def _is_on_cpu(x):
          # Test helper: every array leaf lives on a CPU device.
          import jax
          def on_cpu(a):
            if hasattr(a, 'devices'):
              return all(d.platform == 'cpu' for d in a.devices())
            return True
          return all(on_cpu(a) for a in jax.tree_util.tree_leaves(x))
        """,
    "neural_tangents/_src/utils/__init__.py": "",
    # A test-only dependency of NT's suite (linear_test, rules_test), when not installed.
    "_fallback/more_itertools.py": """
        import itertools


        def powerset(iterable):
          s = list(iterable)
          return itertools.chain.from_iterable(
              itertools.combinations(s, r) for r in range(len(s) + 1))
        """,
}

CONFTEST = """
    import importlib.util
    import os
    import sys

    # NTK_SOURCE=/path/to/a/checkout measures that checkout's ntk instead of the installed one.
    if os.environ.get('NTK_SOURCE'):
      _init = os.path.join(os.environ['NTK_SOURCE'], 'ntk', '__init__.py')
      _spec = importlib.util.spec_from_file_location(
          'ntk', _init, submodule_search_locations=[os.path.dirname(_init)])
      sys.modules['ntk'] = _module = importlib.util.module_from_spec(_spec)
      _spec.loader.exec_module(_module)

    # JAX names NT 0.6.5's tests use that current JAX removed, aliased to today's spellings.
    import jax
    from jax import config as _config

    if not hasattr(jax, 'tree_map'):
      jax.tree_map = jax.tree_util.tree_map

    _read = type(_config).read

    def _read_compat(self, name):
      try:
        return _read(self, name)
      except AttributeError:
        return getattr(self, name)

    type(_config).read = _read_compat
    """

RESULT = collections.namedtuple("RESULT", "name outcome cause")


def build(nt_dir: str, work: str) -> None:
    """Copy NT's tests/examples into ``work`` and write the shim beside them."""
    for sub in ("tests", "examples"):
        src = os.path.join(nt_dir, sub)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(work, sub))
    for path, text in SHIM.items():
        full = os.path.join(work, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(textwrap.dedent(text).lstrip())
    utils_src = os.path.join(nt_dir, "neural_tangents", "_src", "utils", "utils.py")
    if os.path.exists(utils_src):  # NT's index helpers, used by the tests for expected shapes.
        shutil.copy(utils_src, os.path.join(work, "neural_tangents/_src/utils/utils.py"))
    with open(os.path.join(work, "conftest.py"), "w") as f:
        f.write(textwrap.dedent(CONFTEST).lstrip())


def _cause(text: str) -> str:
    """One line naming why a case did not pass: the exception and its message's head."""
    text = text or ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # pytest's junit message is "ExcType: message"; prefer the 'E   ' line of the traceback.
    e_lines = [ln[1:].strip() for ln in lines if ln.startswith("E ")] or lines
    head = e_lines[0] if e_lines else ""
    if re.fullmatch(r"\w*(AssertionError|Exception):?", head) and len(e_lines) > 1:
        head = head.rstrip(":") + ": " + e_lines[1]  # the assertion's first informative line
    head = re.sub(r"0x[0-9a-f]+", "0x..", head)
    head = re.sub(r"\s+", " ", head)
    return head[:160]


def parse_junit(path: str) -> list:
    results = []
    if not os.path.exists(path):
        return results
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome, cause = "passed", ""
        for child in case:
            if child.tag == "failure":
                is_assert = ("AssertionError" in (child.get("message") or "")
                             or re.search(r"^E\s+AssertionError", child.text or "", re.M))
                outcome = "failed" if is_assert else "error"
                cause = _cause(child.get("message") or child.text)
            elif child.tag == "error":
                outcome, cause = "error", _cause(child.get("message") or child.text)
            elif child.tag == "skipped":
                outcome, cause = "skipped", _cause(child.get("message"))
        results.append(RESULT(name, outcome, cause))
    return results


def run_file(work: str, rel: str, cases: int, expr: str | None, timeout: float,
             python: str) -> tuple[list, str]:
    junit = os.path.join(work, "junit_" + rel.replace("/", "_") + ".xml")
    cmd = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
           "-o", "addopts=", "--rootdir", work, f"--junitxml={junit}", os.path.join("tests", rel)]
    if "-n" in subprocess.run([python, "-m", "pytest", "--help"], capture_output=True,
                              text=True).stdout:
        cmd += ["-n", "0"]
    if expr:
        cmd += ["-k", expr]
    env = dict(os.environ, NT_NUM_GENERATED_CASES=str(cases), PYTHONPATH=os.pathsep.join(
                   [work] + [p for p in [os.environ.get("PYTHONPATH")] if p]
                   + [os.path.join(work, "_fallback")]),
               JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    try:
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True,
                              timeout=timeout)
        tail = (proc.stdout + proc.stderr)[-3000:]
    except subprocess.TimeoutExpired as e:
        tail = f"TIMEOUT after {timeout:.0f} s\n" + str(e.stdout or "")[-1000:]
    return parse_junit(junit), tail


def table(per_file: dict) -> str:
    rows = [f"{'file':<36} {'passed':>6} {'failed':>6} {'error':>6} {'skipped':>7} {'total':>6}"]
    tot = collections.Counter()
    for rel, results in per_file.items():
        c = collections.Counter(r.outcome for r in results)
        tot.update(c)
        n = sum(c.values())
        rows.append(f"{rel:<36} {c['passed']:>6} {c['failed']:>6} {c['error']:>6} "
                    f"{c['skipped']:>7} {n:>6}" + ("" if n else "   (collected nothing)"))
    rows.append(f"{'total':<36} {tot['passed']:>6} {tot['failed']:>6} {tot['error']:>6} "
                f"{tot['skipped']:>7} {sum(tot.values()):>6}")
    causes = collections.Counter()
    for rel, results in per_file.items():
        for r in results:
            if r.outcome in ("failed", "error"):
                test = re.sub(r"\d+$", "", r.name.split("::")[-1])
                causes[(r.outcome, rel, test, r.cause)] += 1
    rows.append("\nnot passing, grouped by cause (count, outcome, file::test, cause):")
    for (outcome, rel, test, cause), n in sorted(causes.items(),
                                                  key=lambda kv: (kv[0][1], kv[0][2], -kv[1])):
        rows.append(f"  {n:>4}  {outcome:<6} {rel}::{test}  {cause}")
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("nt_dir", help="a neural-tangents checkout (with tests/ and examples/)")
    parser.add_argument("--files", nargs="*", default=None,
                        help="test files relative to tests/ (default: every *_test.py)")
    parser.add_argument("--cases", type=int, default=4,
                        help="NT_NUM_GENERATED_CASES: parametrizations sampled per test")
    parser.add_argument("-k", dest="expr", default=None, help="pytest -k expression")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per file")
    parser.add_argument("--keep", default=None, help="build the shim here and keep it")
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args(argv)

    nt_dir = os.path.abspath(args.nt_dir)
    if not os.path.isdir(os.path.join(nt_dir, "tests")):
        parser.error(f"nt_dir={nt_dir!r} has no tests/ folder; expected a neural-tangents "
                     "checkout")
    files = args.files
    if files is None:
        files = sorted(os.path.relpath(os.path.join(d, f), os.path.join(nt_dir, "tests"))
                       for d, _, fs in os.walk(os.path.join(nt_dir, "tests"))
                       for f in fs if f.endswith("_test.py"))
    work = args.keep or tempfile.mkdtemp(prefix="ntsuite_")
    if args.keep and os.path.exists(work):
        shutil.rmtree(work)
    os.makedirs(work, exist_ok=True)
    build(nt_dir, work)
    per_file = {}
    for rel in files:
        results, tail = run_file(work, rel, args.cases, args.expr, args.timeout, args.python)
        if not results:
            results = [RESULT(rel, "error", _cause(tail.strip().splitlines()[-1]
                                                   if tail.strip() else "no output"))]
        per_file[rel] = results
        c = collections.Counter(r.outcome for r in results)
        print(f"{rel}: {dict(c)}", flush=True)
    print(table(per_file))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
