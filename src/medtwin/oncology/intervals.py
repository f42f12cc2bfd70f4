"""Prediction intervals calibrated on the population's forecast errors.

A forecast error is measured relative to the lesion's size, ``e = (observed - predicted) / scale`` with
``scale`` the largest training volume, separately for each forecast horizon (1st, 2nd held-out reading).
The interval for a new forecast is ``predicted + scale * [q(lo), q(hi)]`` with ``q`` the empirical
quantiles of ``e`` from *other* lesions. :func:`cross_fitted_coverage` checks this honestly: lesions are
split in two folds, each fold's intervals come from the other fold's errors, so no held-out point
calibrates its own interval. Volumes cannot be negative: the lower bound is clipped at 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


@dataclass(frozen=True)
class ErrorQuantiles:
    """Relative error quantiles per horizon: ``lower`` and ``upper`` (H,), for central ``level``."""

    level: float
    lower: Array
    upper: Array
    n_lesions: int

    def interval(self, predicted: Array, scale: Array) -> tuple[Array, Array]:
        """(lo, hi) of ``predicted`` (L, H) for lesions of size ``scale`` (L,)."""
        s = np.asarray(scale, dtype=float)[:, None]
        horizons = predicted.shape[1]
        lower = self.lower[np.minimum(np.arange(horizons), len(self.lower) - 1)]
        upper = self.upper[np.minimum(np.arange(horizons), len(self.upper) - 1)]
        return np.maximum(predicted + s * lower, 0.0), predicted + s * upper


def relative_errors(predicted: Array, observed: Array, scale: Array) -> Array:
    return np.asarray((observed - predicted) / np.asarray(scale, dtype=float)[:, None], dtype=float)


def calibrate(errors: Array, level: float = 0.8) -> ErrorQuantiles:
    """Quantiles of relative errors (L, H) for a central ``level`` interval."""
    if not 0.0 < level < 1.0:
        raise ValueError("level must be in (0, 1)")
    tail = (1.0 - level) / 2.0
    return ErrorQuantiles(level, np.quantile(errors, tail, axis=0), np.quantile(errors, 1.0 - tail, axis=0),
                          errors.shape[0])


def cross_fitted_coverage(predicted: Array, observed: Array, scale: Array, level: float = 0.8) -> float:
    """Share of held-out points inside intervals calibrated on the other fold (even/odd lesion index)."""
    errors = relative_errors(predicted, observed, scale)
    folds = np.arange(len(scale)) % 2
    inside = np.zeros(predicted.shape, dtype=bool)
    for fold in (0, 1):
        quantiles = calibrate(errors[folds != fold], level)
        lo, hi = quantiles.interval(predicted[folds == fold], scale[folds == fold])
        held = observed[folds == fold]
        inside[folds == fold] = (held >= lo) & (held <= hi)
    return float(inside.mean())
