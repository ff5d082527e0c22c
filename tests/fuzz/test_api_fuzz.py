"""Every case of the public-API fuzz (``tests/fuzz/api_fuzz.py``) ends in a clear error naming
the argument, or a finite result that agrees with float64 (or warns). float32 cases run by
default; their float64 twins under ``make test-all``."""
import pytest

from tests.fuzz import api_fuzz

CASES = list(api_fuzz.cases())


def test_the_fuzz_is_large():
    assert len(CASES) >= 500
    assert len({c.api for c in CASES}) >= 15


def _groups():
    for api in sorted({c.api for c in CASES}):
        yield pytest.param(api, "float32", id=f"{api}-float32")
        yield pytest.param(api, "float64", id=f"{api}-float64", marks=pytest.mark.slow)


@pytest.mark.parametrize("group, dtype", list(_groups()))
def test_fuzz(group, dtype):
    bad = []
    for case in (c for c in CASES if c.api == group and c.what.endswith(f"[{dtype}]")):
        outcome, detail = api_fuzz.run_case(case)
        if outcome != "ok":
            bad.append(f"{outcome}: {case.what} -> {detail}")
    assert not bad, "\n".join(bad)
