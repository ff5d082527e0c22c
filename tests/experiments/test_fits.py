"""experiments.fits: rank correlation with censored event times, against hand-computed ranks."""
import numpy as np
import pytest

from experiments.fits import censored_rank_correlation


def test_censored_time_ranks_highest_and_undefined_are_dropped():
    # kept pairs (1, 5), (2, inf), (4, 7): time ranks 1, 3, 2 vs x ranks 1, 2, 3
    # Spearman = 1 - 6 sum d^2 / (n (n^2 - 1)) = 1 - 6 * 2 / 24 = 0.5
    rho = censored_rank_correlation([1, 2, 3, 4, 5], [5, np.inf, np.nan, 7, -np.inf])
    assert rho == pytest.approx(0.5)


def test_all_censored_or_too_few_points():
    # ties: time ranks (2.5, 2.5, 1) against (1, 2, 3) -> Pearson of ranks = -1.5 / sqrt(2 * 1.5)
    assert censored_rank_correlation([1, 2, 3], [np.inf, np.inf, 1.0]) == pytest.approx(-np.sqrt(3) / 2)
    assert np.isnan(censored_rank_correlation([1, 2, 3], [1.0, np.nan, 2.0]))


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="shapes"):
        censored_rank_correlation([1, 2, 3], [1, 2])
