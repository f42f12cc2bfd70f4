"""The validation harness of the live glucose twin on virtual patients (``benchmarks/bench_forecast.py`` and
the tests use it).

Virtual patients are simulated with random meals, their basal-bolus therapy and the published CGM error
model (:func:`.synthetic.synthetic_log`), streamed through filters started from the population patient of a
cohort that excludes the patient itself (leave-one-out) by :func:`.streaming.stream`, which also applies
the online corrections (:mod:`.online_skill`: fall-back to persistence, calibrated intervals) learnt from
the first forecasts on. Forecasts issued after ``warmup_min`` are scored against the future CGM reading and
the true interstitial glucose (:func:`.streaming.score`).

``tell`` says which inputs the twin is told of: ``("carbs", "bolus")`` (the default: meals announced,
boluses recorded), ``("bolus",)`` (unannounced meals) or ``()`` (no records at all), for the real-life
conditions of issue 17.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from medtwin.arrays import Array
from medtwin.physiology.assimilation import FilterSettings, GlucoseFilter, cohort_prior_draws, start_filter
from medtwin.physiology.calibrate import population_patient
from medtwin.physiology.errors import PhysiologyInputError
from medtwin.physiology.forecast import ALERT_HORIZONS_MIN
from medtwin.physiology.meal_detect import MealDetectSettings
from medtwin.physiology.online_skill import SkillSettings
from medtwin.physiology.streaming import (
    METHODS,
    Issued,
    PersonScores,
    Series,
    pooled,
    pooled_coverage,
    score,
    stream,
)
from medtwin.physiology.synthetic import synthetic_log
from medtwin.physiology.uva_padova import PatientParameters, virtual_patients


@dataclass(frozen=True)
class ForecastPaths:
    """What an alert rule would have seen at each reading of an evaluation (NaN where no forecast was
    issued), for scoring alerts against what happened: ``(P, T)`` unless noted, glucose in mg/dL."""

    times_min: Array  # (T,)
    cgm_mg_dl: Array  # the readings
    truth_mg_dl: Array  # true interstitial glucose of the simulation
    glucose_now_mg_dl: Array  # the filter's estimate (sensor error removed)
    cgm_now_mg_dl: Array  # expected reading at horizon 0
    horizons_min: tuple[int, ...]
    mean_mg_dl: Array  # (P, T, K) forecast as shown (twin or its fall-back) at each horizon
    lower80_mg_dl: Array  # (P, T, K) intervals as shown (calibrated online)
    upper80_mg_dl: Array
    lower95_mg_dl: Array
    upper95_mg_dl: Array
    glucose_mean_mg_dl: Array  # (P, T, K) the twin's expected interstitial glucose (sensor error removed)
    twin_mean_mg_dl: Array  # (P, T, K) the twin's expected reading, before any correction
    twin_bands_mg_dl: Array  # (4, P, T, K) the twin's own lo80, hi80, lo95, hi95


@dataclass(frozen=True)
class ForecastScores:
    """RMSEs (mg/dL) by method (:data:`.streaming.METHODS`) and horizon, against the future CGM reading and
    the true interstitial glucose; coverage of the intervals shown (and of the twin's own) against the future
    reading; filter timings; per-person scores."""

    patients: tuple[str, ...]
    days: int
    warmup_min: float
    n_forecasts: int
    rmse_cgm: dict[str, dict[int, float]]
    rmse_true: dict[str, dict[int, float]]
    coverage80: dict[int, float]
    coverage95: dict[int, float]
    coverage80_twin: dict[int, float]
    coverage95_twin: dict[int, float]
    update_ms_per_sample: float  # wall time of the streaming per patient-sample (updates and forecasts)
    people: tuple[PersonScores, ...] = ()
    insulin_sensitivity_ratio: dict[str, float] = field(default_factory=dict)
    #: per patient: ``"{method}_{cgm|true}_{horizon}"`` -> RMSE (mg/dL)
    per_patient: dict[str, dict[str, float]] = field(default_factory=dict)
    paths: ForecastPaths | None = None

    def ratio(self, method: str, horizon: int, against: str = "cgm", of: str = "twin") -> float:
        """RMSE of ``of`` (the twin alone, or "shown") over that of ``method`` (below 1: ``of`` is better)."""
        table = self.rmse_cgm if against == "cgm" else self.rmse_true
        return table[of][horizon] / table[method][horizon]


def virtual_series(patients: PatientParameters, days: int, rng: np.random.Generator,
                   tell: Sequence[str] = ("carbs", "bolus")) -> tuple[list[Series], list[float], list[float]]:
    """Simulated series of ``patients`` (one per patient, drawn in order from ``rng``), with the inputs in
    ``tell``; also each log's body weight and basal rate."""
    series, weights, basals = [], [], []
    for i in range(patients.n):
        log, truth = synthetic_log(patients.take([i]), days, rng)
        events = ([(m.time_min, "carbs", m.carbs_g) for m in log.meals] if "carbs" in tell else []) + \
                 ([(b.time_min, "bolus", b.units) for b in log.boluses] if "bolus" in tell else [])
        series.append(Series(patients.names[i], np.asarray(log.cgm_t_min, dtype=float),
                             np.asarray(log.cgm_mg_dl, dtype=float), sorted(events), np.asarray(truth)))
        weights.append(log.body_weight_kg)
        basals.append(log.basal_u_per_h)
    return series, weights, basals


def population_filters(series: Sequence[Series], weights: Sequence[float], basals: Sequence[float],
                       settings: FilterSettings, rng: np.random.Generator,
                       cohort: PatientParameters | None = None) -> list[GlucoseFilter]:
    """One filter per series at its first reading, started from the population patient of ``cohort``
    (default: the 30 shipped virtual patients) without the person of that name (leave-one-out)."""
    cohort = virtual_patients() if cohort is None else cohort
    filters = []
    for s, weight, basal in zip(series, weights, basals, strict=True):
        others = cohort.take([j for j, name in enumerate(cohort.names) if name != s.name])
        reference = population_patient(weight, basal, others)
        draws = cohort_prior_draws(reference, others, settings.n_members, rng)
        filters.append(start_filter(s.name, reference, time_min=float(s.times_min[0]),
                                    glucose_mg_dl=float(s.cgm_mg_dl[0]), basal_u_per_h=basal, settings=settings,
                                    rng=rng, prior_theta=draws, source={"kind": "population"}))
    return filters


def evaluate(patients: PatientParameters, days: int, rng: np.random.Generator,
             settings: FilterSettings | None = None, *, cohort: PatientParameters | None = None,
             warmup_min: float = 1440.0, forecast_every: int = 1, horizons_min: Sequence[int] = (30, 60),
             window_min: float = 20.0, skill: SkillSettings | None = None,
             tell: Sequence[str] = ("carbs", "bolus")) -> ForecastScores:
    """Simulate ``patients`` for ``days``, stream them through one filter each (module doc), forecast every
    ``forecast_every``-th reading from the first hour on, and score the forecasts issued after
    ``warmup_min`` against what happened."""
    settings = settings or FilterSettings()
    skill = skill or SkillSettings()
    horizons = tuple(int(h) for h in horizons_min)
    series, weights, basals = virtual_series(patients, days, rng, tell)
    if len({s.times_min.size for s in series}) != 1:
        raise PhysiologyInputError("patients", "logs must share one CGM grid")
    filters = population_filters(series, weights, basals, settings, rng, cohort)
    every = tuple(sorted(set(horizons) | set(ALERT_HORIZONS_MIN)))
    start = time.perf_counter()
    issued, _skills = stream(filters, series, settings, every, skill=skill, every=forecast_every)
    elapsed = time.perf_counter() - start
    people = tuple(score(s, iss, horizons, every, from_min=warmup_min, tolerance_min=skill.tolerance_min,
                         window_min=window_min) for s, iss in zip(series, issued, strict=True))
    tables = {against: {m: {h: pooled(people, against, m, h) for h in horizons} for m in METHODS}
              for against in ("cgm", "true")}
    per_patient = {p.name: {f"{m}_{a}_{h}": p.rmse[a][m][h] for a in ("cgm", "true") for m in METHODS
                            for h in horizons} for p in people}
    return ForecastScores(
        patients=patients.names, days=days, warmup_min=warmup_min,
        n_forecasts=sum(p.n_scored[horizons[0]] for p in people),
        rmse_cgm=tables["cgm"], rmse_true=tables["true"],
        coverage80={h: pooled_coverage(people, "80", h) for h in horizons},
        coverage95={h: pooled_coverage(people, "95", h) for h in horizons},
        coverage80_twin={h: pooled_coverage(people, "80_twin", h) for h in horizons},
        coverage95_twin={h: pooled_coverage(people, "95_twin", h) for h in horizons},
        update_ms_per_sample=1000 * elapsed / sum(s.times_min.size for s in series),
        people=people, insulin_sensitivity_ratio={f.patient_id: f.insulin_sensitivity()[0] for f in filters},
        per_patient=per_patient, paths=alert_paths(series, issued, every),
    )


def alert_paths(series: Sequence[Series], issued: Sequence[Issued], horizons: Sequence[int]) -> ForecastPaths:
    """The short-horizon forecasts (:data:`ALERT_HORIZONS_MIN`) on the series' common grid."""
    t = series[0].times_min
    p, n, cols = len(series), t.size, [list(horizons).index(h) for h in ALERT_HORIZONS_MIN]
    k = len(cols)
    shown = np.full((5, p, n, k), np.nan)
    twin = np.full((2, p, n, k), np.nan)
    bands = np.full((4, p, n, k), np.nan)
    now = np.full((2, p, n), np.nan)
    for i, iss in enumerate(issued):
        shown[:, i, iss.index] = iss.shown_mg_dl[:, :, cols]
        twin[0, i, iss.index] = iss.twin_mean_mg_dl[:, cols]
        twin[1, i, iss.index] = iss.twin_glucose_mg_dl[:, cols]
        bands[:, i, iss.index] = iss.raw_bands_mg_dl[:, :, cols]
        now[:, i, iss.index] = iss.now_mg_dl
    truth = np.stack([s.truth_mg_dl if s.truth_mg_dl is not None else np.full(n, np.nan) for s in series])
    return ForecastPaths(times_min=t, cgm_mg_dl=np.stack([s.cgm_mg_dl for s in series]), truth_mg_dl=truth,
                         glucose_now_mg_dl=now[0], cgm_now_mg_dl=now[1], horizons_min=ALERT_HORIZONS_MIN,
                         mean_mg_dl=shown[0], lower80_mg_dl=shown[1], upper80_mg_dl=shown[2],
                         lower95_mg_dl=shown[3], upper95_mg_dl=shown[4], glucose_mean_mg_dl=twin[1],
                         twin_mean_mg_dl=twin[0], twin_bands_mg_dl=bands)


@dataclass(frozen=True)
class TraceScores:
    """Scores of real traces (no inputs, no truth): per person and pooled, against the future reading."""

    people: tuple[PersonScores, ...]
    horizons_min: tuple[int, ...]
    rmse: dict[str, dict[int, float]]  # method -> horizon -> pooled RMSE (mg/dL)
    coverage80: dict[int, float]
    coverage95: dict[int, float]
    coverage80_twin: dict[int, float]
    coverage95_twin: dict[int, float]


#: A person with no records: a population patient of this weight whose steady state is at this basal rate.
UNKNOWN_BODY_WEIGHT_KG = 70.0
UNKNOWN_BASAL_U_PER_H = 1.0


def evaluate_traces(series: Sequence[Series], settings: FilterSettings, rng: np.random.Generator, *,
                    skill: SkillSettings | None = None, warmup_min: float = 1440.0,
                    horizons_min: Sequence[int] = (30, 60), every: int = 1,
                    meals: MealDetectSettings | None = None) -> TraceScores:
    """Stream CGM traces without meal or insulin records (the person's therapy unknown: a population patient,
    :data:`UNKNOWN_BODY_WEIGHT_KG`, :data:`UNKNOWN_BASAL_U_PER_H`) and score each person's forecasts issued
    after their first ``warmup_min`` minutes against their later readings; with ``meals``, meals detected
    from the readings are told to the twin (:mod:`.meal_detect`)."""
    skill = skill or SkillSettings()
    horizons = tuple(int(h) for h in horizons_min)
    n = len(series)
    filters = population_filters(series, [UNKNOWN_BODY_WEIGHT_KG] * n, [UNKNOWN_BASAL_U_PER_H] * n, settings, rng)
    issued, _skills = stream(filters, series, settings, horizons, skill=skill, every=every, meals=meals)
    people = tuple(score(s, iss, horizons, horizons, from_min=float(s.times_min[0]) + warmup_min,
                         tolerance_min=skill.tolerance_min) for s, iss in zip(series, issued, strict=True))
    return TraceScores(
        people=people, horizons_min=horizons,
        rmse={m: {h: pooled(people, "cgm", m, h) for h in horizons} for m in METHODS},
        coverage80={h: pooled_coverage(people, "80", h) for h in horizons},
        coverage95={h: pooled_coverage(people, "95", h) for h in horizons},
        coverage80_twin={h: pooled_coverage(people, "80_twin", h) for h in horizons},
        coverage95_twin={h: pooled_coverage(people, "95_twin", h) for h in horizons})
