"""Every case of the public-API fuzz (``tests/fuzz/api_fuzz.py``, float32 and float64) ends in
a clear error naming the argument, or a finite result that agrees with float64 (or warns)."""
import pytest

from tests.fuzz import api_fuzz

CASES = list(api_fuzz.cases())


def test_the_fuzz_is_large():
    assert len(CASES) >= 500
    assert len({c.api for c in CASES}) >= 15


@pytest.mark.parametrize("group", sorted({c.api for c in CASES}))
def test_fuzz(group):
    bad = []
    for case in (c for c in CASES if c.api == group):
        outcome, detail = api_fuzz.run_case(case)
        if outcome != "ok":
            bad.append(f"{outcome}: {case.what} -> {detail}")
    assert not bad, "\n".join(bad)
