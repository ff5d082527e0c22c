"""Levi, Beck & Bar-Sinai linear estimator: exact dynamics and the grokking-time limit."""
import json

import numpy as np
import pytest

from experiments import linear_grokking as lg
from experiments.records import jsonable
from experiments.runner import check_claims, run_study


def test_exact_losses_equal_explicit_gradient_descent():
    rng = np.random.default_rng(0)
    d, n, eta = 15, 40, 0.07
    X = rng.standard_normal((n, d))
    T, S = rng.standard_normal(d), np.zeros(d)
    ev, V = np.linalg.eigh(X.T @ X / n)
    c = V.T @ (S - T)
    for t in range(60):
        D = S - T
        if t in (0, 1, 17, 59):
            tr, ge = lg.exact_losses(ev, c, eta, t)
            assert tr == pytest.approx(np.mean((X @ D) ** 2), rel=1e-10)
            assert ge == pytest.approx(D @ D, rel=1e-10)
        S = S - eta * (2 / n) * X.T @ (X @ D)      # grad of (1/N) sum (D . x)^2


def test_first_crossing_is_the_first_integer_below():
    f = lambda t: 0.9 ** t
    t = lg.first_crossing(f, 1e-3)
    assert f(t) < 1e-3 <= f(t - 1)
    assert lg.first_crossing(lambda t: 1.0, 0.5, t_max=1000) == np.inf


def test_two_mode_lag_tends_to_formula_as_epsilon_vanishes():
    """One mode at s_- = (1 - sqrt(lambda))^2 and a fast one: the measured lag approaches
    log(1/s_-) / (4 eta s_-) (gradient-flow form of the formula) as epsilon -> 0."""
    lam, eta = 0.3, 1e-3                     # tiny eta: GD ~ gradient flow
    s = (1 - np.sqrt(lam)) ** 2
    ev, c = np.array([s, 2.0]), np.array([0.6, 0.8])
    target = lg.grokking_time_formula(lam, eta)
    assert target == pytest.approx(np.log(1 / s) / (4 * eta * s))
    errs = []
    for eps in (1e-3, 1e-6, 1e-9):
        tr = lg.first_crossing(lambda t: lg.exact_losses(ev, c, eta, t)[0], eps)
        ge = lg.first_crossing(lambda t: lg.exact_losses(ev, c, eta, t)[1], eps)
        errs.append(abs((ge - tr) / target - 1))
    assert errs[-1] < 0.01 and errs[0] >= errs[-1]


def test_quick_study_claims(tmp_path):
    res = run_study("linear_grokking", overrides=["dim=60", "n_repeats=2"], out=tmp_path,
                    progress=False)
    m = res["metrics"]
    assert all(t > 0 for t in m["grokking_time_measured"])
    assert np.all(np.diff(m["grokking_time_measured"]) > 0)
    np.testing.assert_allclose(m["plateau_measured"], m["plateau_formula"], atol=0.1)
    plain = json.loads(json.dumps(jsonable(res)))
    figs = lg.figures(plain)
    assert set(figs) == {"grokking_time"} and res["figures"] == ["grokking_time.png"]
    assert type(figs["grokking_time"]).__name__ == "Figure"
    assert check_claims(lg, plain) == res["claims"]
    held = {c["id"]: c["holds"] for c in res["claims"]}
    assert held["groks"] and held["time_grows_with_lambda"]
