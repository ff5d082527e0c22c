"""Power laws: fitted log-log slopes ``y ~ C x^slope``."""
from __future__ import annotations

import numpy as np

__all__ = ["loglog_slope"]


def loglog_slope(x, y, axis=-1):
    """Least-squares slope of ``log y`` against ``log x`` along ``axis``.

    ``x``: (K,) positive; ``y``: (..., K, ...) positive with ``K`` on ``axis``.
    Returns the slope with ``axis`` removed (NaN where a ``y`` is not positive and finite).
    """
    x = np.asarray(x, dtype=float)
    y = np.moveaxis(np.asarray(y, dtype=float), axis, -1)
    if x.ndim != 1 or y.shape[-1] != x.shape[0]:
        raise ValueError(f"x must be (K,) and y must have K={x.shape} along axis {axis}; "
                         f"got y.shape={y.shape}")
    if x.shape[0] < 2 or np.any(x <= 0):
        raise ValueError(f"x must hold at least two positive values, got {x}")
    lx = np.log(x) - np.log(x).mean()
    with np.errstate(divide="ignore", invalid="ignore"):
        ly = np.where((y > 0) & np.isfinite(y), np.log(np.where(y > 0, y, 1.0)), np.nan)
    ly = ly - ly.mean(axis=-1, keepdims=True)
    return (ly * lx).sum(axis=-1) / (lx * lx).sum()
