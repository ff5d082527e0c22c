"""TP IV's classification: r, the regimes of the presets with their reasons, sympy forms."""
import pytest
import sympy

from limits import parametrization as P
from limits import regimes as R

half = sympy.Rational(1, 2)


@pytest.mark.parametrize("preset,depth,regime,r", [
    (P.SP_LR_INV_WIDTH, 3, "kernel", half),
    (P.NTP, 3, "kernel", half),
    (P.MFP, 1, "feature_learning", 0),
    (P.mup("sgd", "tp4"), 3, "feature_learning", 0),
    (P.MUP, 3, "feature_learning", 0),
    (P.mup("sgd", 3), 2, "feature_learning", 0),
    (P.mup("adam", 3), 2, "feature_learning", 0),
    (P.MUP_ADAM, 4, "feature_learning", 0),
    (P.mup("adam", 9), 2, "feature_learning", 0),
    (P.SP, 3, "unstable", -1),
    (P.SP_ADAM, 3, "unstable", -1),
])
def test_tp4_regimes(preset, depth, regime, r):
    verdict = R.classify(preset, depth)
    assert verdict.name == regime
    assert verdict.r == r
    assert verdict.reasons
    assert preset.name in verdict.explain()


def test_r_formula_by_hand():
    # r = min(a_{L+1}+b_{L+1}, 2a_{L+1}+c) + c - 1 + min_l [2 a_l + 1(l=1)]  (TP IV Def 3.2)
    a, b, c = sympy.symbols("a b c")
    for preset in (P.SP_LR_INV_WIDTH, P.NTP, P.mup("sgd", "tp4"), P.SP):
        i, h, o = preset.input, preset.hidden, preset.output
        cc = i.c
        assert i.c == h.c == o.c
        expect = (min(o.a + o.b, 2 * o.a + cc) + cc - 1 + min(2 * i.a + 1, 2 * h.a))
        assert R.feature_learning_exponent(preset, 3) == expect
    # depth 1: only the input layer enters the min (MFP)
    assert R.feature_learning_exponent(P.MFP, 1) == 0


def test_sp_unstable_reason_names_the_blow_up():
    verdict = R.classify(P.SP, 2)
    text = verdict.explain()
    assert "r = -1 < 0" in text and "blow up" in text
    assert not verdict.stable


def test_unstable_at_init_reason():
    bad = P.Parametrization("too small hidden", "sgd", input=(0, 0, 0), hidden=(0, 1, 0),
                            output=(0, half, 1))
    verdict = R.classify(bad, 3)
    assert verdict.name == "unstable"
    assert any("vanish" in x and "hidden" in x for x in verdict.reasons)
    big_out = P.Parametrization("big out", "sgd", input=(0, 0, 0), hidden=(0, half, 0),
                                output=(0, 0, 1))
    assert any("f blows up" in x for x in R.classify(big_out, 2).reasons)


def test_trivial_regime():
    # readout too small: a+b = 3/2 and the readout's update vanishes -> f never moves
    lazy = P.Parametrization("lazy", "sgd", input=(0, 0, 0), hidden=(0, half, 0),
                             output=(0, sympy.Rational(3, 2), 2))
    verdict = R.classify(lazy, 2)
    assert verdict.name == "trivial" and "does not move" in verdict.explain()


def test_symmetry_leaves_regime_and_exponents_unchanged():
    for p in (P.NTP, P.MUP, P.MUP_ADAM, P.SP):
        q = p.shift(input=sympy.Rational(1, 3), hidden=-2, output=half)
        assert R.update_exponents(p, 3) == R.update_exponents(q, 3)
        assert R.classify(q, 3).name == R.classify(p, 3).name


def test_symbolic_learning_rate_exponent():
    # SP with lr n^-c: r = min(1/2, c) + c - 1; feature learning never, kernel iff c = 1
    c = sympy.Symbol("c", real=True)
    sp_c = P.standard(c)
    r = R.feature_learning_exponent(sp_c, 3)
    for value, expect in [(0, -1), (1, half), (2, sympy.Rational(3, 2)), (half, 0)]:
        assert r.subs(c, value) == expect
    conds = R.regime_conditions(sp_c, 3)
    # stability and nontriviality single out c = 1
    stable = sympy.And(conds["r >= 0"], conds["u >= 0"], conds["a_out + b_out + r >= 1"])
    sols = [v for v in (0, half, 1, sympy.Rational(3, 2), 2)
            if bool(stable.subs(c, v)) and bool(conds["nontrivial"].subs(c, v))]
    assert sols == [1]
    with pytest.raises(ValueError, match="free symbols"):
        R.classify(sp_c, 3)


def test_bad_input():
    with pytest.raises(TypeError, match="parametrization"):
        R.classify("muP", 2)
    with pytest.raises(ValueError, match="depth"):
        R.classify(P.MFP, 2)
    with pytest.raises(ValueError, match="depth"):
        R.update_exponents(P.MUP, -1)
