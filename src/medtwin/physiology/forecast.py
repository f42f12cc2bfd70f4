"""Glucose forecasts from the assimilating twin, their prediction intervals, baselines and an evaluation.

A forecast propagates the filter's ensemble (:mod:`.assimilation`) forward with the inputs it already
knows (meals being eaten or announced ahead, boluses given, the basal rate and announced changes); no
future meal is assumed. The **mean** is the expected CGM reading (interstitial glucose plus the decaying
sensor error the filter has estimated); ``glucose_mean_mg_dl`` is the expected interstitial glucose alone.
So the forecast starts where the data are: at horizon 0 it is ``cgm_now_mg_dl``, the ensemble mean of
glucose plus sensor error, which after the analysis equals the last reading up to the white noise the
filter attributes to it; ``sensor_offset_mg_dl`` (the mean sensor error) is what separates the reading from
``glucose_now_mg_dl`` and decays with the error's correlation time.
**Prediction intervals** are for the future CGM reading: each member contributes a normal component with
the sensor error's conditional variance at that horizon (the error is an OU process) and an unmodelled SD
growing in proportion to the horizon (``forecast_noise_mg_dl_per_min``: a trend error, tuned on the training
patients for coverage); the interval ends are quantiles of that equal-weight mixture, found by bisection
(deterministic, no sampling).

Baselines, from the readings alone: persistence (the last reading) and linear extrapolation of the
least-squares line through the readings of the last ``window_min`` minutes.

The validation harness (virtual patients, real traces, online corrections) is :mod:`.evaluation` over
:mod:`.streaming`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from medtwin.arrays import Array
from medtwin.physiology.assimilation import (
    AUGMENTED,
    INSULIN_SENSITIVITY,
    FilterSettings,
    GlucoseFilter,
    propagate_copies,
)
from medtwin.physiology.errors import PhysiologyInputError
from medtwin.physiology.uva_padova import PARAMETER_NAMES

DEFAULT_HORIZONS_MIN: tuple[int, ...] = tuple(range(5, 65, 5))
_VG = PARAMETER_NAMES.index("Vg")
_GS = 12
_SI = [AUGMENTED.index(p) for p in INSULIN_SENSITIVITY]


@dataclass(frozen=True)
class EnsembleForecast:
    """Forecasts of ``P`` patients at ``H`` horizons (minutes after each filter's time); glucose in mg/dL."""

    patient_ids: tuple[str, ...]
    issued_min: Array  # (P,) data time of the last reading folded in
    horizons_min: tuple[int, ...]
    glucose_now_mg_dl: Array  # (P,) filtered interstitial glucose at issued_min
    cgm_now_mg_dl: Array  # (P,) expected CGM reading at issued_min (horizon 0: glucose + sensor error)
    sensor_offset_mg_dl: Array  # (P,) mean estimated sensor error at issued_min (reading minus glucose)
    glucose_mean_mg_dl: Array  # (P, H) expected interstitial glucose
    mean_mg_dl: Array  # (P, H) expected CGM reading
    lower80_mg_dl: Array
    upper80_mg_dl: Array
    lower95_mg_dl: Array
    upper95_mg_dl: Array
    insulin_sensitivity_ratio: Array  # (P,) exp(mean log multiplier): 1 = as the twin started
    insulin_sensitivity_sd_log: Array  # (P,)


def mixture_quantiles(means: Array, sds: Array, probabilities: Sequence[float], iterations: int = 48) -> Array:
    """Quantiles of equal-weight normal mixtures: ``means``, ``sds`` shaped (..., M) -> (len(p), ...).

    Bisection on the mixture CDF (monotone), bracketed by the components' extreme 8-sigma points; 48 halvings
    of a bracket of at most a few hundred mg/dL leave an error far below 1e-9 mg/dL."""
    p = np.asarray(probabilities, dtype=float)
    if np.any((p <= 0) | (p >= 1)):
        raise PhysiologyInputError("probabilities", "must lie strictly between 0 and 1")
    lo = np.min(means - 8 * sds, axis=-1)
    hi = np.max(means + 8 * sds, axis=-1)
    lo = np.broadcast_to(lo, (p.size, *lo.shape)).copy()
    hi = np.broadcast_to(hi, (p.size, *hi.shape)).copy()
    target = p.reshape((-1,) + (1,) * (lo.ndim - 1))
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        cdf = ndtr((mid[..., None] - means) / sds).mean(axis=-1)
        below = cdf < target
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return np.asarray(0.5 * (lo + hi), dtype=float)


def forecast(filters: Sequence[GlucoseFilter], settings: FilterSettings,
             horizons_min: Sequence[int] = DEFAULT_HORIZONS_MIN) -> EnsembleForecast:
    """Forecast every filter's CGM at ``horizons_min`` in one batched propagation of the ensembles."""
    horizons = tuple(int(h) for h in horizons_min)
    if not horizons or any(h <= 0 or h > 240 for h in horizons) or list(horizons) != sorted(set(horizons)):
        raise PhysiologyInputError("horizons_min", "must be increasing whole minutes within 1-240")
    if not filters:
        raise PhysiologyInputError("filters", "nothing to forecast")
    h = np.asarray(horizons, dtype=float)
    states = propagate_copies(filters, h, settings)  # (H, P, M, 14)
    vg = np.array([f.reference[_VG] for f in filters])
    glucose = np.moveaxis(states[..., _GS], 0, 1) / vg[:, None, None]  # (P, H, M)
    error = np.stack([f.sensor_error for f in filters])  # (P, M)
    decay = np.exp(-h / settings.sensor_tau_min)  # (H,)
    mu = settings.sensor_mean_mg_dl
    reading = glucose + mu + decay[None, :, None] * (error[:, None, :] - mu)
    variance = (settings.sensor_sd_mg_dl**2 * (1 - decay**2)
                + (settings.forecast_noise_mg_dl_per_min * h) ** 2)
    sds = np.broadcast_to(np.sqrt(variance)[None, :, None], reading.shape)
    q = mixture_quantiles(reading, sds, (0.025, 0.1, 0.9, 0.975))
    now = np.stack([f.states[:, _GS] / f.reference[_VG] for f in filters]).mean(axis=1)
    offset = error.mean(axis=1)
    log_si = np.stack([f.theta[:, _SI].mean(axis=1) for f in filters])
    return EnsembleForecast(
        patient_ids=tuple(f.patient_id for f in filters),
        issued_min=np.array([f.time_min for f in filters]),
        horizons_min=horizons,
        glucose_now_mg_dl=now,
        cgm_now_mg_dl=now + offset,
        sensor_offset_mg_dl=offset,
        glucose_mean_mg_dl=glucose.mean(axis=2),
        mean_mg_dl=reading.mean(axis=2),
        lower95_mg_dl=q[0], lower80_mg_dl=q[1], upper80_mg_dl=q[2], upper95_mg_dl=q[3],
        insulin_sensitivity_ratio=np.exp(log_si.mean(axis=1)),
        insulin_sensitivity_sd_log=log_si.std(axis=1, ddof=1),
    )


# --- baselines ------------------------------------------------------------------------------------------


def persistence_forecast(readings: Array) -> Array:
    """The last reading, whatever the horizon: (n,) -> (n,)."""
    return np.asarray(readings, dtype=float).copy()


def linear_forecast(times_min: Array, readings: Array, horizon_min: float, window_min: float = 20.0) -> Array:
    """Least-squares line through the readings in ``(t_i - window_min, t_i]``, evaluated at ``t_i + horizon``
    (persistence where the window holds fewer than two readings). Any spacing; (n,) -> (n,)."""
    t = np.asarray(times_min, dtype=float)
    y = np.asarray(readings, dtype=float)
    if t.shape != y.shape or t.ndim != 1:
        raise PhysiologyInputError("readings", "needs one reading per time")
    if np.any(np.diff(t) <= 0):
        raise PhysiologyInputError("times_min", "must be strictly increasing")
    start = np.searchsorted(t, t - window_min, side="right")  # first index inside the window
    ct = np.concatenate([[0.0], np.cumsum(t)])
    cy = np.concatenate([[0.0], np.cumsum(y)])
    ctt = np.concatenate([[0.0], np.cumsum(t * t)])
    cty = np.concatenate([[0.0], np.cumsum(t * y)])
    idx = np.arange(t.size) + 1
    n = idx - start
    st, sy, stt, sty = (c[idx] - c[start] for c in (ct, cy, ctt, cty))
    denominator = n * stt - st * st
    ok = (n >= 2) & (denominator > 1e-9)
    slope = np.where(ok, (n * sty - st * sy) / np.where(ok, denominator, 1.0), 0.0)
    intercept = np.where(ok, (sy - slope * st) / np.maximum(n, 1), y)
    return np.where(ok, intercept + slope * (t + horizon_min), y)


#: The horizons an alert rule looks at: the predicted-hypoglycaemia rule's 30 min and the 15 min of an episode
#: starting there (every 5 min).
ALERT_HORIZONS_MIN: tuple[int, ...] = tuple(range(5, 50, 5))
