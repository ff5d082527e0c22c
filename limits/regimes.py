"""Which infinite-width limit does an abc-parametrization have?  (TP IV's dynamical dichotomy.)

For an MLP with ``L`` hidden layers (weights ``W^1 .. W^{L+1}``) trained by SGD, Yang & Hu
(Tensor Programs IV, Thm 3.3 and Def. 3.2) define, with per-layer learning rates ``c_l``,

    m   = min(a_{L+1} + b_{L+1}, 2 a_{L+1} + c_{L+1})        (size n^-m of df/dx^L)
    r_l = m + c_l - 1 + 2 a_l + 1(l = 1)                      (layer l's update of its
                                                               own preactivation: n^-r_l)
    r   = min_{l=1..L} r_l                                    (feature-learning exponent)
    u   = 2 a_{L+1} + c_{L+1} - 1                             (readout update of f: n^-u)

(TP IV writes one ``c``; per-layer rates reduce to it by the abc-symmetry, which leaves ``r_l``
and ``u`` invariant).  The parametrization is

* *stable* iff ``a_1 + b_1 = 0``, ``a_l + b_l = 1/2`` (``2 <= l <= L``),
  ``a_{L+1} + b_{L+1} >= 1/2``, ``r >= 0``, ``u >= 0`` and ``a_{L+1} + b_{L+1} + r >= 1``;
* *nontrivial* iff ``a_{L+1} + b_{L+1} + r = 1`` or ``u = 0``;
* stable and nontrivial: *feature learning* iff ``r = 0``, *kernel regime* iff ``r > 0``
  (the dichotomy: a nontrivial stable limit cannot do both; it fails for linear ``phi``).

For Adam (sign-like updates; Yang & Littwin, TP IVb) the gradient's size drops out: the
update of the effective weight is ``n^-(a_l + c_l)`` per entry, so

    r_l = a_l + c_l - 1 + 1(l = 1),        u = a_{L+1} + c_{L+1} - 1,

with the same stability / nontriviality conditions.  Biases are input-like layers (input 1),
so they enter ``r`` like ``l = 1``.

Everything is computed with sympy: exact rationals, and expressions when an exponent is a
symbol (``regime_conditions`` then gives the inequalities to solve).
"""
from __future__ import annotations

import dataclasses

import sympy

from limits.parametrization import Parametrization

__all__ = [
    "Regime",
    "REGIMES",
    "update_exponents",
    "feature_learning_exponent",
    "regime_conditions",
    "classify",
]

REGIMES = ("unstable", "trivial", "kernel", "feature_learning")
_H = sympy.Rational(1, 2)


def _check(p, depth):
    if not isinstance(p, Parametrization):
        raise TypeError(f"parametrization must be a Parametrization, got {type(p).__name__}")
    return p.check_depth(depth)


def update_exponents(parametrization: Parametrization, depth: int = 2) -> dict:
    """Per-layer update exponents of TP IV: ``{'layer_1': r_1, ..., 'layer_L': r_L,
    'bias': r_bias, 'output': u}`` (sympy).  Layer ``l``'s one-step change of its own
    preactivation ``Delta W^l x^{l-1}`` has coordinates ``Theta(n^-r_l)``; the readout's
    change of the output ``Delta W^{L+1} x^L`` is ``Theta(n^-u)``.

    ``depth`` is the number of hidden layers ``L`` (weights ``W^1 .. W^{L+1}``).
    For SGD the backward signal reaching ``x^L`` is ``n^-m``,
    ``m = min(a_{L+1} + b_{L+1}, 2 a_{L+1} + c_{L+1})`` (from the second step on; at the first
    step the readout has not moved and it is ``n^-(a_{L+1} + b_{L+1})``).
    """
    p = parametrization
    depth = _check(p, depth)
    out = p.role("output")
    if p.optimizer == "sgd":
        m = sympy.Min(out.a + out.b, 2 * out.a + out.c)

        def r_of(e, first):
            return m + e.c - 1 + 2 * e.a + (1 if first else 0)

        u = 2 * out.a + out.c - 1
    else:
        def r_of(e, first):
            return e.a + e.c - 1 + (1 if first else 0)

        u = out.a + out.c - 1
    exps = {"layer_1": r_of(p.role("input"), True)}
    for l in range(2, depth + 1):
        exps[f"layer_{l}"] = r_of(p.role("hidden"), False)
    exps["bias"] = r_of(p.role("bias"), True)
    exps["output"] = u
    return exps


def feature_learning_exponent(parametrization: Parametrization, depth: int = 2):
    """``r = min_l r_l`` over the hidden layers and biases (TP IV Def. 3.2): after training,
    the features ``x^L`` move by ``Theta(n^-r)``.  Returns a sympy expression."""
    exps = update_exponents(parametrization, depth)
    return sympy.Min(*[v for k, v in exps.items() if k != "output"])


def regime_conditions(parametrization: Parametrization, depth: int = 2) -> dict:
    """TP IV's conditions as sympy relations, keyed by a readable name.

    Keys: ``'init: a_1 + b_1 = 0'``, ``'init: a_l + b_l = 1/2'`` (depth >= 2),
    ``'init: a_bias + b_bias = 0'``, ``'init: a_out + b_out >= 1/2'``, ``'r >= 0'``,
    ``'u >= 0'``, ``'a_out + b_out + r >= 1'`` (stability), ``'nontrivial'``,
    ``'feature learning: r = 0'``.  With numeric exponents each value is a sympy boolean;
    with symbols, a relation you can hand to ``sympy.solve`` / ``reduce_inequalities``.
    """
    p = parametrization
    depth = _check(p, depth)
    r = feature_learning_exponent(p, depth)
    u = update_exponents(p, depth)["output"]
    i, o, bias = p.role("input"), p.role("output"), p.role("bias")
    cond = {"init: a_1 + b_1 = 0": sympy.Eq(i.a + i.b, 0)}
    if depth >= 2:
        h = p.role("hidden")
        cond["init: a_l + b_l = 1/2"] = sympy.Eq(h.a + h.b, _H)
    cond["init: a_bias + b_bias = 0"] = sympy.Eq(bias.a + bias.b, 0)
    cond["init: a_out + b_out >= 1/2"] = sympy.Ge(o.a + o.b, _H)
    cond["r >= 0"] = sympy.Ge(r, 0)
    cond["u >= 0"] = sympy.Ge(u, 0)
    cond["a_out + b_out + r >= 1"] = sympy.Ge(o.a + o.b + r, 1)
    cond["nontrivial"] = sympy.Or(sympy.Eq(o.a + o.b + r, 1), sympy.Eq(u, 0))
    cond["feature learning: r = 0"] = sympy.Eq(r, 0)
    return cond


@dataclasses.dataclass(frozen=True)
class Regime:
    """The verdict of :func:`classify`.

    ``name`` is one of ``'unstable'``, ``'trivial'``, ``'kernel'``, ``'feature_learning'``;
    ``r`` the feature-learning exponent, ``exponents`` the per-layer ``r_l`` and ``u``
    (:func:`update_exponents`), ``reasons`` why (one line per deciding condition).
    """

    name: str
    r: object
    exponents: dict
    reasons: tuple
    parametrization_name: str = ""

    @property
    def stable(self):
        return self.name != "unstable"

    @property
    def feature_learning(self):
        return self.name == "feature_learning"

    def explain(self) -> str:
        head = f"{self.parametrization_name}: {self.name} (r = {self.r})"
        return "\n".join([head] + [f"  - {x}" for x in self.reasons])

    def __str__(self):
        return self.explain()


def _size(expr):
    """'n^x' for an exponent of growth."""
    return f"n^{sympy.nsimplify(expr)}"


def classify(parametrization: Parametrization, depth: int = 2) -> Regime:
    """Classify an abc-parametrization of a depth-``depth`` MLP into unstable / trivial /
    kernel regime / feature learning, with the reasons (TP IV Thm 3.3, Cor. 3.9).

    Raises ``ValueError`` if an exponent is still symbolic (use :func:`regime_conditions`).
    """
    p = parametrization
    depth = _check(p, depth)
    if p.free_symbols:
        raise ValueError(f"parametrization {p.name!r} has free symbols "
                         f"{sorted(map(str, p.free_symbols))}; substitute values with "
                         "p.subs({...}) or ask regime_conditions(p) for the inequalities")
    exps = update_exponents(p, depth)
    r = sympy.nsimplify(feature_learning_exponent(p, depth))
    u = exps["output"]
    i, o, bias = p.role("input"), p.role("output"), p.role("bias")
    reasons = []

    def init_reason(label, value, target):
        # coordinates of the layer's output scale like n^(target - value)
        if value > target:
            return (f"{label}: a + b = {value} > {target}, so its preactivations vanish "
                    f"like {_size(target - value)} at initialization")
        return (f"{label}: a + b = {value} < {target}, so its preactivations blow up "
                f"like {_size(target - value)} at initialization")

    if i.a + i.b != 0:
        reasons.append(init_reason("input layer", i.a + i.b, 0))
    if depth >= 2:
        h = p.role("hidden")
        if h.a + h.b != _H:
            reasons.append(init_reason("hidden layers", h.a + h.b, _H))
    if bias.a + bias.b != 0:
        reasons.append(init_reason("biases", bias.a + bias.b, 0))
    if o.a + o.b < _H:
        reasons.append(f"output layer: a + b = {o.a + o.b} < 1/2, so f blows up like "
                       f"{_size(_H - (o.a + o.b))} at initialization")
    if reasons:
        return Regime("unstable", r, exps, tuple(reasons), p.name)
    if r < 0:
        worst = [k for k, v in exps.items() if k != "output" and v == r]
        reasons.append(f"r = {r} < 0: after one step the features move like {_size(-r)} "
                       f"(from {', '.join(worst)}), they blow up")
    if u < 0:
        reasons.append(f"u = {u} < 0: the readout's update moves f like {_size(-u)}, "
                       "the output blows up")
    if o.a + o.b + r < 1 and r >= 0:
        reasons.append(f"a_out + b_out + r = {o.a + o.b + r} < 1: the feature change seen "
                       f"through the initial readout moves f like {_size(1 - (o.a + o.b + r))}")
    if reasons:
        return Regime("unstable", r, exps, tuple(reasons), p.name)
    hidden_note = "hidden a + b = 1/2, " if depth >= 2 else ""
    reasons.append(f"stable: a_1 + b_1 = 0, {hidden_note}a_out + b_out = {o.a + o.b} "
                   f">= 1/2, r = {r} >= 0, u = {u} >= 0, a_out + b_out + r = "
                   f"{o.a + o.b + r} >= 1")
    if not (o.a + o.b + r == 1 or u == 0):
        reasons.append(f"trivial: a_out + b_out + r = {o.a + o.b + r} > 1 and u = {u} > 0, "
                       "so f does not move in the limit")
        return Regime("trivial", r, exps, tuple(reasons), p.name)
    how = []
    if u == 0:
        how.append("the readout's update moves f by Theta(1) (u = 0)")
    if o.a + o.b + r == 1:
        how.append("the feature change moves f by Theta(1) (a_out + b_out + r = 1)")
    reasons.append("nontrivial: " + " and ".join(how))
    if r == 0:
        reasons.append("feature learning: r = 0, the last-layer features move by Theta(1), "
                       "so no fixed kernel describes training")
        return Regime("feature_learning", r, exps, tuple(reasons), p.name)
    kernel = ("the function evolves by its (fixed) NTK" if p.optimizer == "sgd"
              else "the features are frozen and f follows a fixed-feature (kernel-like) "
                   "Adam dynamics")
    reasons.append(f"kernel regime: r = {r} > 0, features move only like {_size(-r)}; "
                   f"{kernel}")
    return Regime("kernel", r, exps, tuple(reasons), p.name)
