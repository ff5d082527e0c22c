"""Claims as data: a measured value, a comparison and its bounds.

A study lists its claims once, apart from its run config::

    CLAIMS = (
        claim("weight_change_1_over_alpha", "relative weight change ~ alpha^s",
              "weight_change_slope", within(-1.2, -0.8)),
        claim("lazy_limit", "largest alpha: network = linearised model (relative L2 distance)",
              lambda m: m["net_vs_linearized_rel_dist"][-1], less(0.05)),
    )

``measure`` is a metrics key or a function of the metrics dict; the bound is a
:class:`Bound` (``within``, ``greater``, ``less``, ``at_least``, ``at_most``, ``close_to``,
``is_true``, ``each``) that both decides and renders itself, so a threshold is written once.
A paper's claim that does not hold at our scale stays in ``CLAIMS`` with ``reported=True``:
it is measured, checked and shown like the others (tables, report), but does not decide
whether a run's claims hold; the README lists every such claim with its number.

Thresholds are not part of the run config: changing one re-checks stored metrics
(:func:`check` on ``results.json``) without recomputing them, and the run id (a hash of the
config) stays the same.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence, Union

from experiments.records import jsonable


def _fmt(x: float) -> str:
    return f"{x:.4g}"


# comparison -> (test, how it reads); float() also parses JSON's "nan" / "inf" strings
_COMPARISONS = {
    "within": (lambda x, lo, hi: lo <= x <= hi, lambda lo, hi: f"in [{_fmt(lo)}, {_fmt(hi)}]"),
    "greater": (lambda x, t: x > t, lambda t: f"> {_fmt(t)}"),
    "less": (lambda x, t: x < t, lambda t: f"< {_fmt(t)}"),
    "at_least": (lambda x, t: x >= t, lambda t: f">= {_fmt(t)}"),
    "at_most": (lambda x, t: x <= t, lambda t: f"<= {_fmt(t)}"),
    "close_to": (lambda x, c, tol: abs(x - c) <= tol, lambda c, tol: f"{_fmt(c)} +- {_fmt(tol)}"),
}


@dataclasses.dataclass(frozen=True)
class Bound:
    """A comparison ``kind`` with its numbers; ``holds(x)`` decides, ``text`` renders it.

    NaN never satisfies a bound.
    """
    kind: str
    args: tuple = ()
    inner: "Bound | None" = None

    def holds(self, value: Any) -> bool:
        if self.kind == "each":
            values = list(value) if isinstance(value, (list, tuple)) else [value]
            return bool(values) and all(self.inner.holds(v) for v in values)
        if self.kind == "is_true":
            return value is True or (type(value) in (int, float) and value == 1)
        x = float(value)
        return not math.isnan(x) and _COMPARISONS[self.kind][0](x, *self.args)

    @property
    def text(self) -> str:
        if self.kind == "each":
            return f"each {self.inner.text}"
        if self.kind == "is_true":
            return "true"
        return _COMPARISONS[self.kind][1](*self.args)

    def to_dict(self) -> dict:
        out = {"kind": self.kind, "args": list(self.args)}
        if self.inner is not None:
            out["inner"] = self.inner.to_dict()
        return out


def _checked(name: str, *xs: float) -> tuple:
    for x in xs:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or math.isnan(x):
            raise TypeError(f"{name}: bounds must be numbers, got {x!r}")
    return tuple(float(x) for x in xs)


def within(lo: float, hi: float) -> Bound:
    """``lo <= x <= hi``."""
    lo, hi = _checked("within", lo, hi)
    if lo > hi:
        raise ValueError(f"within: lo={lo} > hi={hi}")
    return Bound("within", (lo, hi))


def greater(x: float) -> Bound:
    """``measured > x``."""
    return Bound("greater", _checked("greater", x))


def less(x: float) -> Bound:
    """``measured < x``."""
    return Bound("less", _checked("less", x))


def at_least(x: float) -> Bound:
    """``measured >= x``."""
    return Bound("at_least", _checked("at_least", x))


def at_most(x: float) -> Bound:
    """``measured <= x``."""
    return Bound("at_most", _checked("at_most", x))


def close_to(target: float, tol: float) -> Bound:
    """``|measured - target| <= tol``."""
    target, tol = _checked("close_to", target, tol)
    if tol < 0:
        raise ValueError(f"close_to: tol={tol} must be >= 0")
    return Bound("close_to", (target, tol))


def is_true() -> Bound:
    """The measured value is the boolean ``True`` (or 1)."""
    return Bound("is_true")


def each(bound: Bound) -> Bound:
    """Every entry of a measured list satisfies ``bound`` (an empty list does not)."""
    if not isinstance(bound, Bound) or bound.kind == "each":
        raise TypeError(f"each: expected a scalar Bound, got {bound!r}")
    return Bound("each", (), bound)


Measure = Union[str, Callable[[dict], Any]]


@dataclasses.dataclass(frozen=True)
class ClaimSpec:
    """What a study claims: ``measure(metrics)`` compared with ``bound``."""
    id: str
    text: Union[str, Callable[[dict], str]]
    measure: Measure
    bound: Bound
    reported: bool = False

    def evaluate(self, metrics: dict) -> dict:
        """``{id, text, expected, measured, holds, bound, reported}`` for one results' metrics."""
        if isinstance(self.measure, str):
            if self.measure not in metrics:
                raise KeyError(f"claim {self.id!r}: metrics have no {self.measure!r}")
            value = metrics[self.measure]
        else:
            value = self.measure(metrics)
        value = jsonable(value)
        text = self.text(metrics) if callable(self.text) else self.text
        return {"id": self.id, "text": text, "expected": self.bound.text, "measured": value,
                "holds": bool(self.bound.holds(value)), "bound": self.bound.to_dict(),
                "reported": self.reported}


def claim(id: str, text, measure: Measure, bound: Bound, *, reported: bool = False) -> ClaimSpec:
    """One claim: ``id`` (stable, snake_case), ``text`` (what is claimed, str or a function
    of the metrics), ``measure`` (a metrics key or a function of the metrics) and ``bound``.
    ``reported=True``: the paper's claim, checked and shown, known not to hold at our scale
    (it does not decide :func:`all_hold`)."""
    if not isinstance(id, str) or not id:
        raise TypeError(f"claim: id must be a non-empty str, got {id!r}")
    if not isinstance(bound, Bound):
        raise TypeError(f"claim {id!r}: bound must be a Bound (within, less, ...), got {bound!r}")
    if not (isinstance(measure, str) or callable(measure)):
        raise TypeError(f"claim {id!r}: measure must be a metrics key or a function")
    return ClaimSpec(id, text, measure, bound, bool(reported))


def check(specs: Sequence[ClaimSpec], metrics: dict) -> list[dict]:
    """Evaluate every claim on ``metrics`` (ids must be unique)."""
    ids = [s.id for s in specs]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"claims: duplicate ids {dupes}")
    return [s.evaluate(metrics) for s in specs]


def all_hold(checked: Sequence[dict]) -> bool:
    """Whether every claim that is not only reported holds (and there is at least one)."""
    decisive = [c for c in checked if not c.get("reported")]
    return bool(decisive) and all(c["holds"] for c in decisive)


def verdict(c: dict) -> str:
    """``yes`` / ``NO`` for a claim, ``yes (reported)`` / ``no (reported)`` for a reported one."""
    if c.get("reported"):
        return "yes (reported)" if c["holds"] else "no (reported)"
    return "yes" if c["holds"] else "NO"
