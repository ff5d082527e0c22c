"""Presets against the papers' tables, entry by entry, and the abc-symmetry between forms."""
import fractions

import pytest
import sympy

import limits
from limits import parametrization as P

n, d, o = sympy.symbols("n d o", positive=True)
fan_in, fan_out = sympy.symbols("fan_in fan_out", positive=True)
# fan-in / fan-out of each role in an MLP of width n, input dim d, output dim o
FANS = {"input": (d, n), "bias": (1, n), "hidden": (n, n), "output": (n, o)}


def _width_exponent(expr, role):
    """Exponent of n in a table entry written in fan_in / fan_out."""
    fi, fo = FANS[role]
    e = sympy.sympify(expr, locals={"fan_in": fan_in, "fan_out": fan_out})
    e = e.subs({fan_in: fi, fan_out: fo})
    e = e.subs({d: 7, o: 3})  # finite dimensions are constants
    return sympy.simplify(sympy.log(e / e.subs(n, 1)) / sympy.log(n))


def _preset_exponent(p, role, quantity):
    return sympy.simplify(sympy.log(p.symbolic(role)[quantity]) / sympy.log(P.width_symbol))


# ---- Tensor Programs IV, Table 1: (a_l, b_l, c) for l = 1, 2..L, L+1 ----------------------
TP4_TABLE1 = {
    "SP": (P.SP_LR_INV_WIDTH, {"a": (0, 0, 0), "b": (0, "1/2", "1/2"), "c": 1}),
    "NTP": (P.NTP, {"a": (0, "1/2", "1/2"), "b": (0, 0, 0), "c": 0}),
    "MFP": (P.MFP, {"a": (0, None, 1), "b": (0, None, 0), "c": -1}),
    "muP": (P.mup("sgd", "tp4"), {"a": ("-1/2", 0, "1/2"), "b": ("1/2", "1/2", "1/2"), "c": 0}),
}
TP4_CASES = [(name, field, i) for name in TP4_TABLE1 for field in ("a", "b", "c")
             for i, role in enumerate(("input", "hidden", "output"))]


@pytest.mark.parametrize("name,field,index", TP4_CASES)
def test_tp4_table1_entry(name, field, index):
    preset, table = TP4_TABLE1[name]
    role = ("input", "hidden", "output")[index]
    if table["a"][index] is None:  # MFP: a single hidden layer, no hidden-to-hidden role
        assert preset.hidden is None
        return
    entry = table[field] if field == "c" else table[field][index]
    assert getattr(preset.role(role), field) == sympy.Rational(entry)


# ---- Tensor Programs V, Tables 3, 8, 9 (muP; SP in brackets where the table gives it) --
# quantity -> role -> entry in fan_in / fan_out
TP5 = {
    3: {
        "init_var": {"input": "1/fan_in", "bias": "1/fan_in", "output": "1/fan_in**2",
                     "hidden": "1/fan_in"},
        "multiplier": {"input": "1", "bias": "1", "output": "1", "hidden": "1"},
        "sgd": {"input": "fan_out", "bias": "fan_out", "output": "1/fan_in", "hidden": "1"},
        "adam": {"input": "1", "bias": "1", "output": "1/fan_in", "hidden": "1/fan_in"},
    },
    8: {
        "init_var": {"input": "1/fan_in", "bias": "1/fan_in", "output": "1",
                     "hidden": "1/fan_in"},
        "multiplier": {"input": "1", "bias": "1", "output": "1/fan_in", "hidden": "1"},
        "sgd": {"input": "fan_out", "bias": "fan_out", "output": "fan_in", "hidden": "1"},
        "adam": {"input": "1", "bias": "1", "output": "1", "hidden": "1/fan_in"},
    },
    9: {
        "init_var": {"input": "1/fan_out", "bias": "1/fan_out", "output": "1/fan_in",
                     "hidden": "1/fan_in"},
        "multiplier": {"input": "sqrt(fan_out)", "bias": "sqrt(fan_out)",
                       "output": "1/sqrt(fan_in)", "hidden": "1"},
        "sgd": {"input": "1", "bias": "1", "output": "1", "hidden": "1"},
        "adam": {"input": "1/sqrt(fan_out)", "bias": "1/sqrt(fan_out)",
                 "output": "1/sqrt(fan_in)", "hidden": "1/fan_in"},
    },
}
# the SP column (brackets) of Tables 3 / 8
TP5_SP = {
    "init_var": {"input": "1/fan_in", "bias": "1/fan_in", "output": "1/fan_in",
                 "hidden": "1/fan_in"},
    "multiplier": {"input": "1", "bias": "1", "output": "1", "hidden": "1"},
    "sgd": {"input": "1", "bias": "1", "output": "1", "hidden": "1"},
    "adam": {"input": "1", "bias": "1", "output": "1", "hidden": "1"},
}
TP5_CASES = [(t, q, r) for t in TP5 for q in TP5[t] for r in TP5[t][q]]


@pytest.mark.parametrize("table,quantity,role", TP5_CASES)
def test_tp5_tables_entry(table, quantity, role):
    entry = TP5[table][quantity][role]
    optimizer = quantity if quantity in ("sgd", "adam") else "sgd"
    preset = P.mup(optimizer, table)
    key = "lr" if quantity in ("sgd", "adam") else quantity
    assert _preset_exponent(preset, role, key) == _width_exponent(entry, role)
    if quantity not in ("sgd", "adam"):  # init and multipliers do not depend on optimizer
        assert _preset_exponent(P.mup("adam", table), role, key) == _width_exponent(entry, role)


@pytest.mark.parametrize("quantity,role", [(q, r) for q in TP5_SP for r in TP5_SP[q]])
def test_tp5_sp_column_entry(quantity, role):
    preset = P.SP_ADAM if quantity == "adam" else P.SP
    key = "lr" if quantity in ("sgd", "adam") else quantity
    assert _preset_exponent(preset, role, key) == _width_exponent(TP5_SP[quantity][role], role)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_tp5_tables_are_one_parametrization(optimizer):
    forms = [P.mup(optimizer, t) for t in (3, 8, 9)] + ([P.mup("sgd", "tp4")]
                                                      if optimizer == "sgd" else [])
    for x in forms:
        for y in forms:
            assert x.equivalent(y)
            thetas = x.shifts_to(y)
            shifted = x.shift(name=y.name, **thetas)
            for role in limits.ROLES:
                assert shifted.role(role) == y.role(role)


def test_symmetry_is_optimizer_specific():
    sgd3, adam3 = P.mup("sgd", 3), P.mup("adam", 3)
    # SGD: c -> c - 2 theta; Adam: c -> c - theta (TP V Tables 3 -> 8, output theta = 1)
    assert sgd3.shift(output=1).output == P.RoleExponents(1, 0, -1)
    assert adam3.shift(output=1).output == P.RoleExponents(1, 0, 0)
    assert not P.MUP.equivalent(P.MUP_ADAM)
    assert not P.MUP.equivalent(P.NTP)
    assert not P.SP.equivalent(P.SP_LR_INV_WIDTH)
    with pytest.raises(ValueError, match="not related"):
        P.MUP.shifts_to(P.SP)


def test_concrete_numbers_reduce_to_sp_at_base_width():
    for p in (P.MUP, P.MUP_ADAM, P.mup("sgd", 3), P.mup("adam", 9), P.NTP):
        for role in limits.ROLES:
            assert p.multiplier(role, 64, base_width=64) == 1.0
            assert p.lr_scale(role, 64, base_width=64) == 1.0
            assert p.init_std(role, 64, 64, fan_in_base=64, sigma=1.3) == 1.3 / 8.0
    # SP gives sigma / sqrt(fan_in) at any width
    assert P.SP.init_std("hidden", 256, base_width=64, fan_in_base=64) == pytest.approx(1 / 16)
    assert P.MUP.multiplier("output", 256, base_width=64) == 0.25
    assert P.MUP.lr_scale("input", 256, base_width=64) == 4.0


def test_exponent_inputs():
    assert P.RoleExponents(0.5, "1/2", fractions.Fraction(1, 2)).as_tuple() == (
        sympy.Rational(1, 2),) * 3
    c = sympy.Symbol("c")
    q = P.standard(c)
    assert q.free_symbols == {c}
    assert q.subs({c: 1}).role("hidden").c == 1


@pytest.mark.parametrize("call,exc,match", [
    (lambda: P.mup("rmsprop"), ValueError, "optimizer"),
    (lambda: P.mup("sgd", 5), ValueError, "table"),
    (lambda: P.mup("adam", "tp4"), ValueError, "table"),
    (lambda: P.MUP.role("embedding"), ValueError, "role"),
    (lambda: P.MFP.role("hidden"), ValueError, "hidden"),
    (lambda: P.MFP.check_depth(3), ValueError, "depth"),
    (lambda: P.MUP.check_depth(0), ValueError, "depth"),
    (lambda: P.MUP.check_depth(2.0), TypeError, "depth"),
    (lambda: P.MUP.multiplier("hidden", -3), ValueError, "width"),
    (lambda: P.MUP.init_std("hidden", 8, base_width=0), ValueError, "base_width"),
    (lambda: P.RoleExponents("x", 0, 0), ValueError, "a"),
    (lambda: P.RoleExponents(0, [1], 0), TypeError, "b"),
    (lambda: P.Parametrization("x", "sgd", input=(0, 0, 0), output=(0, 0))
     , TypeError, "output"),
    (lambda: P.MUP.shift(readout=1), ValueError, "role"),
])
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
