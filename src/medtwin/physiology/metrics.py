"""CGM metrics of the international consensus (Battelino et al. 2019, Diabetes Care 42(8):1593-1603).

Thresholds and episodes are the vocabulary's (:mod:`medtwin.vocab.glucose`, :mod:`medtwin.vocab.episodes`:
the 2023 consensus episode, which the alerts use too).

All functions are vectorised over patients: glucose arrays are (m readings, n patients).
LBGI/HBGI after Kovatchev et al. 1997 (Diabetes Care 20(11):1655-8, symmetrisation
f(G) = 1.509 (ln(G)^1.084 - 5.381), risk 10 f^2), averaged over all readings.
GMI (%) = 3.31 + 0.02392 mean glucose (Bergenstal et al. 2018, Diabetes Care 41(11):2275-80).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel

from medtwin.arrays import Array
from medtwin.physiology.errors import PhysiologyInputError
from medtwin.vocab.episodes import count_episodes
from medtwin.vocab.glucose import HYPER_L1, HYPER_L2, HYPO_L1, HYPO_L2

__all__ = ["AmbulatoryGlucoseProfile", "GlucoseMetrics", "ambulatory_glucose_profile", "count_episodes",
           "glucose_metrics", "risk_indices"]



class GlucoseMetrics(BaseModel):
    mean_mg_dl: float
    sd_mg_dl: float
    cv_percent: float
    gmi_percent: float
    time_in_range_70_180_percent: float
    time_below_70_percent: float
    time_below_54_percent: float
    time_above_180_percent: float
    time_above_250_percent: float
    hypo_episodes_below_70: int
    hypo_episodes_below_54: int
    hyper_episodes_above_180: int
    hyper_episodes_above_250: int
    lbgi: float
    hbgi: float
    n_readings: int


class AmbulatoryGlucoseProfile(BaseModel):
    minute_of_day: list[float]
    p5: list[float]
    p25: list[float]
    p50: list[float]
    p75: list[float]
    p95: list[float]


def _as_2d(glucose: Array) -> Array:
    g = np.asarray(glucose, dtype=float)
    if g.ndim == 1:
        g = g[:, None]
    if g.ndim != 2 or g.shape[0] == 0:
        raise PhysiologyInputError("glucose_mg_dl", "must be a non-empty (readings, patients) array")
    if not np.all(np.isfinite(g)) or np.any(g <= 0):
        raise PhysiologyInputError("glucose_mg_dl", "must be finite and positive")
    return g


def risk_indices(glucose_mg_dl: Array) -> tuple[Array, Array]:
    """(LBGI, HBGI) per patient, averaged over all readings."""
    g = _as_2d(glucose_mg_dl)
    f = 1.509 * (np.log(g) ** 1.084 - 5.381)
    risk = 10.0 * f**2
    return np.mean(np.where(f < 0, risk, 0.0), axis=0), np.mean(np.where(f > 0, risk, 0.0), axis=0)


def glucose_metrics(glucose_mg_dl: Array, sample_period_min: float) -> list[GlucoseMetrics]:
    """Consensus metrics for each patient (column) of ``glucose_mg_dl`` sampled every ``sample_period_min``."""
    if not sample_period_min > 0:
        raise PhysiologyInputError("sample_period_min", "must be positive")
    g = _as_2d(glucose_mg_dl)
    mean = g.mean(axis=0)
    sd = g.std(axis=0, ddof=1) if g.shape[0] > 1 else np.zeros(g.shape[1])
    lbgi, hbgi = risk_indices(g)

    def pct(mask: NDArray[Any]) -> Array:
        return np.asarray(100.0 * np.mean(mask, axis=0), dtype=float)

    columns: dict[str, NDArray[Any]] = {
        "mean_mg_dl": mean,
        "sd_mg_dl": sd,
        "cv_percent": 100.0 * sd / mean,
        "gmi_percent": 3.31 + 0.02392 * mean,
        "time_in_range_70_180_percent": pct((g >= HYPO_L1) & (g <= HYPER_L1)),
        "time_below_70_percent": pct(g < HYPO_L1),
        "time_below_54_percent": pct(g < HYPO_L2),
        "time_above_180_percent": pct(g > HYPER_L1),
        "time_above_250_percent": pct(g > HYPER_L2),
        "hypo_episodes_below_70": count_episodes(g < HYPO_L1, sample_period_min),
        "hypo_episodes_below_54": count_episodes(g < HYPO_L2, sample_period_min),
        "hyper_episodes_above_180": count_episodes(g > HYPER_L1, sample_period_min),
        "hyper_episodes_above_250": count_episodes(g > HYPER_L2, sample_period_min),
        "lbgi": lbgi,
        "hbgi": hbgi,
    }
    return [
        GlucoseMetrics.model_validate(
            {k: (int(v[i]) if "episodes" in k else float(v[i])) for k, v in columns.items()}
            | {"n_readings": g.shape[0]}
        )
        for i in range(g.shape[1])
    ]


def ambulatory_glucose_profile(
    t_min: Array, glucose_mg_dl: Array, bin_min: float = 15.0
) -> AmbulatoryGlucoseProfile:
    """AGP: 5/25/50/75/95th percentiles of glucose by time of day (bins of ``bin_min``), pooling days."""
    t = np.asarray(t_min, dtype=float)
    g = np.asarray(glucose_mg_dl, dtype=float).ravel()
    if t.shape != g.shape:
        raise PhysiologyInputError("t_min", "must match glucose_mg_dl in length")
    bins = np.floor(np.mod(t, 1440.0) / bin_min).astype(int)
    centres, rows = [], []
    for b in np.unique(bins):  # loop over time-of-day bins (<= 96), not patients
        centres.append(float((b + 0.5) * bin_min))
        rows.append(np.percentile(g[bins == b], [5, 25, 50, 75, 95]))
    q = np.asarray(rows)
    return AmbulatoryGlucoseProfile(
        minute_of_day=centres,
        p5=q[:, 0].tolist(),
        p25=q[:, 1].tolist(),
        p50=q[:, 2].tolist(),
        p75=q[:, 3].tolist(),
        p95=q[:, 4].tolist(),
    )
