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

:func:`evaluate` is the validation harness used by ``benchmarks/bench_forecast.py`` and the tests: virtual
patients simulated with random meals, their basal-bolus therapy and the published CGM error model
(:func:`.synthetic.synthetic_log`), streamed through filters started from the population patient of a
cohort that excludes the patient itself (leave-one-out), forecasts scored against the future CGM reading
and the true interstitial glucose.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtr

from medtwin.physiology.assimilation import (
    AUGMENTED,
    INSULIN_SENSITIVITY,
    FilterSettings,
    GlucoseFilter,
    add_input,
    assimilate,
    cohort_prior_draws,
    propagate_copies,
    start_filter,
)
from medtwin.physiology.calibrate import population_patient
from medtwin.physiology.errors import PhysiologyInputError
from medtwin.physiology.synthetic import synthetic_log
from medtwin.physiology.uva_padova import PARAMETER_NAMES, PatientParameters, virtual_patients

Array = NDArray[np.float64]
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


# --- evaluation -----------------------------------------------------------------------------------------


ALERT_HORIZONS_MIN: tuple[int, ...] = (5, 10, 15, 20, 25, 30)


@dataclass(frozen=True)
class ForecastPaths:
    """What an alert rule would have seen at each reading of an evaluation (NaN before the warm-up), for
    scoring alerts against what happened: ``(P, T)`` unless noted, glucose in mg/dL."""

    times_min: Array  # (T,)
    cgm_mg_dl: Array  # the readings
    truth_mg_dl: Array  # true interstitial glucose of the simulation
    glucose_now_mg_dl: Array  # the filter's estimate (sensor error removed)
    cgm_now_mg_dl: Array  # expected reading at horizon 0
    horizons_min: tuple[int, ...]
    mean_mg_dl: Array  # (P, T, K) expected reading at each horizon
    glucose_mean_mg_dl: Array  # (P, T, K) expected interstitial glucose (sensor error removed)
    lower95_mg_dl: Array  # (P, T, K)
    upper95_mg_dl: Array  # (P, T, K)


@dataclass(frozen=True)
class ForecastScores:
    """RMSEs (mg/dL) by method and horizon, against the future CGM reading and the true interstitial glucose;
    interval coverage against the future reading; filter timings."""

    patients: tuple[str, ...]
    days: int
    warmup_min: float
    n_forecasts: int
    rmse_cgm: dict[str, dict[int, float]]
    rmse_true: dict[str, dict[int, float]]
    coverage80: dict[int, float]
    coverage95: dict[int, float]
    update_ms_per_sample: float  # wall time of assimilate() per patient-sample in this run's batch
    forecast_ms: float  # wall time of one forecast() call (all patients)
    insulin_sensitivity_ratio: dict[str, float] = field(default_factory=dict)
    #: per patient: ``"{method}_{cgm|true}_{horizon}"`` -> RMSE (mg/dL)
    per_patient: dict[str, dict[str, float]] = field(default_factory=dict)
    paths: ForecastPaths | None = None  # the short-horizon forecasts, for alert scoring

    def ratio(self, method: str, horizon: int, against: str = "cgm") -> float:
        """RMSE of the twin over that of ``method`` (below 1: the twin is better)."""
        table = self.rmse_cgm if against == "cgm" else self.rmse_true
        return table["twin"][horizon] / table[method][horizon]


def evaluate(patients: PatientParameters, days: int, rng: np.random.Generator,
             settings: FilterSettings | None = None, *, cohort: PatientParameters | None = None,
             warmup_min: float = 1440.0, forecast_every: int = 1, horizons_min: Sequence[int] = (30, 60),
             window_min: float = 20.0) -> ForecastScores:
    """Simulate ``patients`` for ``days`` (random meals, basal-bolus, noisy 5-min CGM), stream them through
    one filter each (all patients in one batch per reading), forecast every ``forecast_every``-th reading after
    ``warmup_min``, and score against what happened. Each filter starts from the population patient of
    ``cohort`` (default: the 30 shipped virtual patients) without the patient itself."""
    settings = settings or FilterSettings()
    cohort = virtual_patients() if cohort is None else cohort
    horizons = tuple(int(h) for h in horizons_min)
    logs, truths = [], []
    for i in range(patients.n):
        log, truth = synthetic_log(patients.take([i]), days, rng)
        logs.append(log)
        truths.append(truth)
    t = np.asarray(logs[0].cgm_t_min)
    if any(np.asarray(log.cgm_t_min).shape != t.shape for log in logs):
        raise PhysiologyInputError("patients", "logs must share one CGM grid")
    cgm = np.stack([np.asarray(log.cgm_mg_dl) for log in logs])  # (P, T)
    truth = np.stack(truths)
    filters = []
    for i, log in enumerate(logs):
        others = cohort.take([j for j, name in enumerate(cohort.names) if name != patients.names[i]])
        reference = population_patient(log.body_weight_kg, log.basal_u_per_h, others)
        draws = cohort_prior_draws(reference, others, settings.n_members, rng)
        filters.append(start_filter(patients.names[i], reference, time_min=float(t[0]),
                                    glucose_mg_dl=float(cgm[i, 0]), basal_u_per_h=log.basal_u_per_h,
                                    settings=settings, rng=rng, prior_theta=draws, source={"kind": "population"}))
    events = [sorted([(m.time_min, "carbs", m.carbs_g) for m in log.meals]
                     + [(b.time_min, "bolus", b.units) for b in log.boluses]) for log in logs]
    cursor = [0] * len(logs)
    period = float(t[1] - t[0])
    steps = {h: int(round(h / period)) for h in horizons}
    predicted = {h: np.full(cgm.shape, np.nan) for h in horizons}
    predicted_true = {h: np.full(cgm.shape, np.nan) for h in horizons}
    bands = {h: np.full((4, *cgm.shape), np.nan) for h in horizons}
    every = tuple(sorted(set(horizons) | set(ALERT_HORIZONS_MIN)))
    short = [every.index(h) for h in ALERT_HORIZONS_MIN]
    now_est, now_cgm = np.full(cgm.shape, np.nan), np.full(cgm.shape, np.nan)
    short_paths = np.full((4, *cgm.shape, len(short)), np.nan)
    update_s = forecast_s = 0.0
    n_forecast_calls = 0
    for j in range(1, t.size):
        for i, f in enumerate(filters):
            items = events[i]
            while cursor[i] < len(items) and items[cursor[i]][0] <= t[j]:
                when, kind, value = items[cursor[i]]
                add_input(f, kind, when, value, settings)
                cursor[i] += 1
        start = time.perf_counter()
        assimilate(filters, np.full(len(filters), t[j]), cgm[:, j], settings)
        update_s += time.perf_counter() - start
        if t[j] >= warmup_min and j % forecast_every == 0 and j + max(steps.values()) < t.size:
            start = time.perf_counter()
            result = forecast(filters, settings, every)
            forecast_s += time.perf_counter() - start
            n_forecast_calls += 1
            now_est[:, j], now_cgm[:, j] = result.glucose_now_mg_dl, result.cgm_now_mg_dl
            short_paths[:, :, j] = (result.mean_mg_dl[:, short], result.lower95_mg_dl[:, short],
                                    result.upper95_mg_dl[:, short], result.glucose_mean_mg_dl[:, short])
            for hz in horizons:
                k = every.index(hz)
                predicted[hz][:, j] = result.mean_mg_dl[:, k]
                predicted_true[hz][:, j] = result.glucose_mean_mg_dl[:, k]
                bands[hz][:, :, j] = (result.lower95_mg_dl[:, k], result.lower80_mg_dl[:, k],
                                      result.upper80_mg_dl[:, k], result.upper95_mg_dl[:, k])
    rmse_cgm: dict[str, dict[int, float]] = {"twin": {}, "persistence": {}, "linear": {}}
    rmse_true: dict[str, dict[int, float]] = {"twin": {}, "persistence": {}, "linear": {}}
    coverage80: dict[int, float] = {}
    coverage95: dict[int, float] = {}
    n_scored = 0
    per_patient: dict[str, dict[str, float]] = {name: {} for name in patients.names}
    for hz in horizons:
        k = steps[hz]
        mask = ~np.isnan(predicted[hz])  # (P, T): forecasts issued at column j for column j + k
        issued = np.flatnonzero(mask.any(axis=0))
        future_cgm = cgm[:, issued + k]
        future_true = truth[:, issued + k]
        persistence = cgm[:, issued]
        linear = np.stack([linear_forecast(t, cgm[i], hz, window_min)[issued] for i in range(len(logs))])
        twin = predicted[hz][:, issued]
        for against, table, future, ours in (("cgm", rmse_cgm, future_cgm, twin),
                                             ("true", rmse_true, future_true, predicted_true[hz][:, issued])):
            for method, values in (("twin", ours), ("persistence", persistence), ("linear", linear)):
                squared = (values - future) ** 2
                table[method][hz] = float(np.sqrt(np.mean(squared)))
                for i, name in enumerate(patients.names):
                    per_patient[name][f"{method}_{against}_{hz}"] = float(np.sqrt(np.mean(squared[i])))
        lo95, lo80, hi80, hi95 = (bands[hz][b][:, issued] for b in range(4))
        coverage80[hz] = float(np.mean((future_cgm >= lo80) & (future_cgm <= hi80)))
        coverage95[hz] = float(np.mean((future_cgm >= lo95) & (future_cgm <= hi95)))
        n_scored = int(twin.size)
    return ForecastScores(
        patients=patients.names, days=days, warmup_min=warmup_min, n_forecasts=n_scored,
        rmse_cgm=rmse_cgm, rmse_true=rmse_true, coverage80=coverage80, coverage95=coverage95,
        update_ms_per_sample=1000 * update_s / ((t.size - 1) * len(filters)),
        forecast_ms=1000 * forecast_s / max(n_forecast_calls, 1),
        insulin_sensitivity_ratio={f.patient_id: f.insulin_sensitivity()[0] for f in filters},
        per_patient=per_patient,
        paths=ForecastPaths(times_min=t, cgm_mg_dl=cgm, truth_mg_dl=truth, glucose_now_mg_dl=now_est,
                            cgm_now_mg_dl=now_cgm, horizons_min=ALERT_HORIZONS_MIN, mean_mg_dl=short_paths[0],
                            lower95_mg_dl=short_paths[1], upper95_mg_dl=short_paths[2],
                            glucose_mean_mg_dl=short_paths[3]),
    )
