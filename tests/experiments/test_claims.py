"""Claims as data: bounds decide and render themselves; the registry is read from the modules."""
import math
import subprocess
import sys

import pytest

from experiments import claims as C


@pytest.mark.parametrize("bound, inside, outside, text", [
    (C.within(-1.2, -0.8), [-1.2, -1.0, -0.8], [-1.21, -0.79], "in [-1.2, -0.8]"),
    (C.greater(0), [1e-9, 3.0], [0.0, -1.0], "> 0"),
    (C.less(0.05), [0.0499, -1.0], [0.05, 1.0], "< 0.05"),
    (C.at_least(2), [2.0, 5.0], [1.999], ">= 2"),
    (C.at_most(0.03), [0.03, 0.0], [0.0301], "<= 0.03"),
    (C.close_to(1.0, 0.1), [0.95, 1.05, 1.0], [0.89, 1.2], "1 +- 0.1"),
])
def test_bounds_decide_and_render(bound, inside, outside, text):
    assert bound.text == text
    assert all(bound.holds(x) for x in inside)
    assert not any(bound.holds(x) for x in outside)
    for nan in (math.nan, "nan"):       # NaN (as stored in JSON too) never holds
        assert not bound.holds(nan)


def test_each_and_is_true():
    b = C.each(C.at_most(0.03))
    assert b.text == "each <= 0.03"
    assert b.holds([0.01, 0.03]) and not b.holds([0.01, 0.04]) and not b.holds([])
    assert C.is_true().holds(True) and not C.is_true().holds(False)
    assert not C.is_true().holds("yes")


def test_reported_claims_are_shown_but_do_not_decide():
    specs = (C.claim("a", "t", "a", C.less(1)),
             C.claim("b", "paper's claim, not reproduced", "b", C.greater(0), reported=True))
    out = C.check(specs, {"a": 0.5, "b": -1.0})
    assert out[1]["reported"] and not out[1]["holds"]
    assert C.all_hold(out) and [C.verdict(c) for c in out] == ["yes", "no (reported)"]
    assert not C.all_hold(out[1:])      # reported claims alone decide nothing
    assert not C.all_hold(C.check(specs, {"a": 2.0, "b": 1.0}))


def test_claim_evaluates_a_key_or_a_function_and_records_its_bound():
    specs = (C.claim("slope", "s ~ -1", "slope", C.within(-1.2, -0.8)),
             C.claim("gap", lambda m: f"gap at {m['n']}", lambda m: m["a"] - m["b"], C.less(0.1)))
    out = C.check(specs, {"slope": -1.3, "a": 1.0, "b": 0.95, "n": 7})
    assert [c["holds"] for c in out] == [False, True]
    assert out[1]["text"] == "gap at 7" and out[1]["measured"] == pytest.approx(0.05)
    assert out[0]["expected"] == "in [-1.2, -0.8]"
    assert out[0]["bound"] == {"kind": "within", "args": [-1.2, -0.8]}


@pytest.mark.parametrize("call, error, words", [
    (lambda: C.within(1, 0), ValueError, ["lo"]),
    (lambda: C.less(float("nan")), TypeError, ["less"]),
    (lambda: C.greater("0"), TypeError, ["greater"]),
    (lambda: C.close_to(0, -1), ValueError, ["tol"]),
    (lambda: C.each(C.each(C.less(1))), TypeError, ["each"]),
    (lambda: C.claim("x", "t", "k", 0.5), TypeError, ["bound"]),
    (lambda: C.check([C.claim("x", "t", "k", C.less(1))], {}), KeyError, ["'k'"]),
    (lambda: C.check([C.claim("x", "t", "k", C.less(1))] * 2, {"k": 0}), ValueError,
     ["duplicate"]),
])
def test_bad_claims_name_the_problem(call, error, words):
    with pytest.raises(error) as err:
        call()
    for w in words:
        assert w in str(err.value)


def test_registry_lists_without_importing_jax_and_matches_the_modules():
    code = ("import sys; from ntk_lab.cli import main; main(['list']); "
            "print('IMPORTED', sorted(m for m in ('jax', 'matplotlib', 'experiments.lazy_scale')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "IMPORTED []"
    from experiments import registry
    info = registry.studies()["lazy_scale"]
    module = registry.load_study("lazy_scale")
    assert (info["summary"], info["paper"], info["citation"]) == (
        module.SUMMARY, module.PAPER, module.CITATION)
