"""Small statistics the studies' claims share."""
from __future__ import annotations

import numpy as np


def censored_rank_correlation(x, t, *, min_points: int = 3) -> float:
    """Spearman correlation of ``x`` with event times ``t`` where some events never happened.

    ``t = +inf`` (the event did not happen within the run: a right-censored time) ranks above
    every finite time; ``nan`` and ``-inf`` (undefined) entries are dropped. Returns ``nan``
    when fewer than ``min_points`` pairs remain.
    """
    from scipy.stats import spearmanr
    x, t = np.asarray(x, float), np.asarray(t, float)
    if x.shape != t.shape or x.ndim != 1:
        raise ValueError(f"x and t must be 1-D of one length, got shapes {x.shape} and {t.shape}")
    keep = np.isfinite(t) | (t == np.inf)
    if keep.sum() < min_points:
        return float("nan")
    finite = t[keep][np.isfinite(t[keep])]
    top = (finite.max() if finite.size else 0.0) + 1.0   # any value above every finite time
    return float(spearmanr(x[keep], np.where(np.isinf(t[keep]), top, t[keep]))[0])
