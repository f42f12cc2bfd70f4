"""The live glucose twin: CGM, meal and insulin samples from the ingest pipeline folded into each patient's
ensemble filter (:mod:`medtwin.physiology.assimilation`) as they arrive, with a forecast after each batch.

How it runs:

* :meth:`LiveGlucoseService.on_samples` is an ingest-pipeline listener: it only queues the samples that
  matter here (glucose, carbohydrate, insulin bolus, basal rate) and wakes the worker
  (:class:`medtwin.worker.Worker`), which waits ``batch_delay_s`` to gather more and then calls
  :meth:`~LiveGlucoseService.process_pending`. That call
  takes every queued patient at once: per patient the samples in time order, the k-th CGM reading of every
  patient in one batched ensemble step (the inputs before it added first), then one batched forecast for all
  patients that got a reading, saved and handed to the forecast listeners (alerts, event hub) after commit.
  The forecast handed on is the one *shown*: each patient's :class:`~medtwin.physiology.online_skill.ForecastSkill`
  scores the earlier forecasts against the readings that answer them and shows, per horizon, persistence
  (the last reading) until the patient's own past errors give evidence that a blend with the twin beats it,
  then that blend shrunk by the evidence (the documented fall-back), with intervals calibrated online
  (adaptive conformal); it is saved with the filter. The forecast carries the weight used per horizon
  (``GlucoseForecast.twin_share``), so its sentence says when it is the last reading held.
  Tests call ``process_pending()`` themselves (``start_worker=False``).
* **Starting a filter** at a patient's first reading: from the patient's latest fitted glucose twin
  (twin version kind ``glucose``, :func:`medtwin.twin.glucose.latest_twin_version`) with its posterior SDs
  on ``Vmx``, ``kp3`` and ``kabs``; else from the cohort prior: the population patient of the 30 published
  virtual patients (:func:`~medtwin.physiology.calibrate.population_patient`) at the body weight of the
  record (default 70 kg) and the known basal rate (else the cohort's typical basal per kg), each member
  taking one cohort patient's values of the estimated parameters.
* **Persistence**: after each processed batch, the filter (ensemble, parameter multipliers, sensor error,
  its random generator, last data time, inputs not yet delivered), the latest forecast and a status summary
  go to ``twin_live_state`` (kind ``glucose-filter``, sealed by the store's codec). A new service on the same
  store resumes exactly where the last one stopped. A twin version of kind ``glucose-live`` is written when
  a filter starts and after every ``version_every_min`` of data time (provenance: algorithm, the glucose
  twin version it started from, readings assimilated, data span).
* **Late samples**: a CGM reading not newer than the filter's time cannot be folded in (the ensemble does
  not go back): it is counted as skipped; it is stored all the same by the pipeline. A meal, bolus or basal
  change up to an hour late is applied at the filter's time (its amount matters more than its minutes),
  an older one is skipped. Inputs that arrive before a patient's first reading are dropped (the filter
  starts at rest), except the basal rate, which it starts with. A gap of over 12 h restarts the states.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
from pydantic import BaseModel, Field
from sqlalchemy import Connection, insert, select, update

from medtwin.physiology.assimilation import (
    AUGMENTED,
    COHORT_SD_LOG,
    FilterSettings,
    GlucoseFilter,
    add_input,
    assimilate,
    cohort_prior_draws,
    start_filter,
)
from medtwin.physiology.calibrate import FITTED, FittedTwin, GlucoseLog, population_patient
from medtwin.physiology.errors import PhysiologyInputError
from medtwin.physiology.forecast import DEFAULT_HORIZONS_MIN, EnsembleForecast, forecast
from medtwin.physiology.online_skill import ForecastSkill
from medtwin.physiology.uva_padova import PatientParameters, virtual_patients
from medtwin.store.codec import Codec
from medtwin.store.database import Store
from medtwin.store.live_tables import twin_live_state
from medtwin.store.twins import TwinRepository
from medtwin.twin.glucose import GLUCOSE_KIND, latest_twin_version
from medtwin.vocab import CARBS, GLUCOSE, INSULIN_BASAL, INSULIN_BOLUS, GlucoseForecast, Sample
from medtwin.vocab.forecast import TREND_WINDOW_MIN, glucose_trend_mg_dl_per_min
from medtwin.worker import Worker

log = logging.getLogger("medtwin.live")

Clock = Callable[[], datetime]
ForecastListener = Callable[[GlucoseForecast], None]
STATE_KIND = "glucose-filter"
LIVE_KIND = "glucose-live"
ACTOR = "live-glucose-twin"
ALGORITHM = (
    "ensemble adjustment Kalman filter (Anderson 2001) over UVA/Padova 2008 states, CGM sensor error (OU), "
    "glucose disturbance (OU) and log multipliers on Vmx, kp3, kp1, kabs, kmax, kmin, p2u (random walks); "
    "batched RK4 propagation with known meals, boluses and basal"
)
DEFAULT_BODY_WEIGHT_KG = 70.0
_INPUTS = {CARBS: "carbs", INSULIN_BOLUS: "bolus", INSULIN_BASAL: "basal"}
_METRICS = frozenset((GLUCOSE, *_INPUTS))
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_minutes(when: datetime) -> float:
    """Minutes since 1970-01-01 UTC (the filters' time axis)."""
    if when.tzinfo is None:
        raise PhysiologyInputError("time", "sample times must be timezone-aware")
    return (when - _EPOCH).total_seconds() / 60.0


def from_minutes(minutes: float) -> datetime:
    return _EPOCH + timedelta(minutes=minutes)


# --- stored views ---------------------------------------------------------------------------------------


class StartedFrom(BaseModel):
    kind: str = Field(description="glucose_twin (a fitted twin version) or cohort_prior")
    glucose_twin_version: int | None = None
    body_weight_kg: float
    basal_u_per_h: float


class LiveTwinStatus(BaseModel):
    """What the live glucose twin currently believes about a patient."""

    patient_id: str
    started_at: datetime = Field(description="data time of the first reading")
    data_time: datetime = Field(description="data time of the last reading folded in")
    samples_assimilated: int
    samples_skipped: int = Field(description="readings not newer than the filter, or inputs over an hour late")
    restarts: int = Field(description="times the states restarted after a gap of over 12 h")
    last_reading_mg_dl: float | None
    glucose_now_mg_dl: float = Field(description="filtered interstitial glucose (sensor error removed)")
    insulin_sensitivity_ratio: float = Field(
        description="geometric mean of the Vmx and kp3 multipliers: 1 = as the twin started")
    insulin_sensitivity_sd_log: float = Field(description="SD over the ensemble of its natural log")
    insulin_sensitivity_ci95: tuple[float, float]
    parameter_ratios: dict[str, float] = Field(description="estimated multiplier of each tracked parameter")
    n_members: int
    pending_inputs: int = Field(description="meals being eaten or announced ahead, boluses and basal changes")
    started_from: StartedFrom
    live_twin_version: int | None = Field(description="latest glucose-live twin version")
    algorithm: str = ALGORITHM


def load_state(connection: Connection, codec: Codec, patient_id: str) -> dict[str, Any] | None:
    """The saved payload of a patient's glucose filter (filter, forecast, status, versions), or None."""
    row = connection.execute(select(twin_live_state.c.payload).where(
        twin_live_state.c.patient_id == patient_id, twin_live_state.c.kind == STATE_KIND)).first()
    if row is None:
        return None
    data = orjson.loads(codec.open(row[0]))
    return data if isinstance(data, dict) else None


def latest_forecast(connection: Connection, codec: Codec, patient_id: str) -> GlucoseForecast | None:
    """The last saved forecast of a patient (for readers without the running service, e.g. reports)."""
    state = load_state(connection, codec, patient_id)
    found = None if state is None else state.get("forecast")
    return None if not found else GlucoseForecast.from_json(found)


def latest_status(connection: Connection, codec: Codec, patient_id: str) -> LiveTwinStatus | None:
    state = load_state(connection, codec, patient_id)
    found = None if state is None else state.get("status")
    return None if not found else LiveTwinStatus.model_validate(found)


def _save_state(connection: Connection, codec: Codec, patient_id: str, payload: dict[str, Any], *,
                data_time: datetime, twin_version: int | None, now: datetime) -> None:
    values = {"twin_version": twin_version, "updated_at": now, "data_time": data_time,
              "payload": codec.seal(orjson.dumps(payload))}
    done = connection.execute(update(twin_live_state).where(
        twin_live_state.c.patient_id == patient_id, twin_live_state.c.kind == STATE_KIND).values(**values))
    if done.rowcount == 0:
        connection.execute(insert(twin_live_state).values(patient_id=patient_id, kind=STATE_KIND, **values))


# --- the service ----------------------------------------------------------------------------------------


class _Live:
    """A patient's filter and what the service keeps beside it."""

    def __init__(self, filt: GlucoseFilter, started: StartedFrom, live_version: int | None,
                 last_version_min: float, forecast: GlucoseForecast | None,
                 recent: list[tuple[float, float]] | None = None, skill: ForecastSkill | None = None) -> None:
        self.filter = filt
        self.skill = skill  # what the forecasts shown have learnt from this patient's later readings
        self.started = started
        self.live_version = live_version
        self.last_version_min = last_version_min
        self.forecast = forecast
        self.recent: list[tuple[float, float]] = recent or []  # (minute, mg/dL) readings folded in, newest last

    def remember(self, minute: float, value: float) -> None:
        """Keep a reading the filter folded in, and those of the trend window before it."""
        if self.recent and minute <= self.recent[-1][0]:
            return
        self.recent = [r for r in self.recent if r[0] >= minute - TREND_WINDOW_MIN] + [(minute, value)]

    def trend(self) -> float | None:
        return glucose_trend_mg_dl_per_min([t for t, _ in self.recent], [v for _, v in self.recent])


class LiveGlucoseService:
    """Online assimilation of CGM into each patient's glucose twin, with forecasts (see the module doc)."""

    def __init__(self, store: Store, *, clock: Clock, rng: np.random.Generator,
                 settings: FilterSettings | None = None, cohort: PatientParameters | None = None,
                 horizons_min: tuple[int, ...] = DEFAULT_HORIZONS_MIN, version_every_min: float = 360.0,
                 batch_delay_s: float = 0.05, start_worker: bool = True) -> None:
        self.store = store
        self.clock = clock
        self.rng = rng
        self.settings = settings or FilterSettings()
        self.cohort = virtual_patients() if cohort is None else cohort
        self.horizons_min = horizons_min
        self.version_every_min = version_every_min
        self.batch_delay_s = batch_delay_s
        self._queue: dict[str, list[Sample]] = {}
        self._queue_lock = threading.Lock()
        self._process_lock = threading.Lock()
        self._live: dict[str, _Live] = {}
        self._waiting_inputs: dict[str, list[Sample]] = {}  # inputs before a patient's first reading
        self._listeners: list[ForecastListener] = []
        self._closing = False
        self.batches = 0
        self.last_batch_seconds = 0.0
        self._start_worker = start_worker  # the worker thread starts with the first queued sample
        self._worker: Worker[None] = Worker("live-glucose", self._wake_up, gather_s=batch_delay_s, logger=log)

    # --- public API -------------------------------------------------------------------------------------

    def on_samples(self, samples: list[Sample]) -> None:
        """Pipeline listener: queue the glucose, meal and insulin samples and wake the worker (returns at once)."""
        wanted = [s for s in samples if s.metric in _METRICS]
        if not wanted:
            return
        with self._queue_lock:
            for sample in wanted:
                self._queue.setdefault(sample.patient_id, []).append(sample)
            wake = self._start_worker and not self._closing
        if wake:
            self._worker.put(None)  # wake-ups coalesce: one pass takes everything queued

    def add_forecast_listener(self, fn: ForecastListener) -> None:
        """``fn(forecast)`` is called (on the worker thread, after the batch is saved) for every new forecast."""
        self._listeners = [*self._listeners, fn]

    def latest_forecast(self, patient_id: str) -> GlucoseForecast | None:
        live = self._live.get(patient_id)
        if live is not None and live.forecast is not None:
            return live.forecast
        with self.store.connect() as connection:
            return latest_forecast(connection, self.store.codec, patient_id)

    def status(self, patient_id: str) -> LiveTwinStatus | None:
        live = self._live.get(patient_id)
        if live is not None:
            return self._status(live)
        with self.store.connect() as connection:
            return latest_status(connection, self.store.codec, patient_id)

    def pending(self) -> int:
        with self._queue_lock:
            return sum(len(v) for v in self._queue.values())

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop the worker after it has processed what is queued."""
        with self._queue_lock:
            self._closing = True
        if not self._worker.stop(timeout_s):
            return
        self.process_pending()

    # --- worker -----------------------------------------------------------------------------------------

    def _wake_up(self, _wakes: list[None], _flushing: bool) -> None:
        self.process_pending()  # an exception is logged by the worker, which goes on

    def process_pending(self) -> int:
        """Process everything queued (synchronously); returns the number of readings folded in."""
        with self._process_lock:
            with self._queue_lock:
                queued, self._queue = self._queue, {}
            if not queued:
                return 0
            started = time.perf_counter()
            count = self._process(queued)
            self.batches += 1
            self.last_batch_seconds = time.perf_counter() - started
            return count

    # --- one batch --------------------------------------------------------------------------------------

    def _process(self, queued: dict[str, list[Sample]]) -> int:
        settings = self.settings
        rounds: dict[str, list[tuple[list[Sample], Sample]]] = {}
        trailing: dict[str, list[Sample]] = {}
        touched: set[str] = set()
        new: set[str] = set()
        for patient_id, items in queued.items():
            items = sorted(items, key=lambda s: (s.time, s.metric == GLUCOSE))  # inputs before a same-time reading
            live = self._get(patient_id)
            if live is None:
                items = self._waiting_inputs.pop(patient_id, []) + items
                items.sort(key=lambda s: (s.time, s.metric == GLUCOSE))
                first = next((i for i, s in enumerate(items) if s.metric == GLUCOSE and _valid(s.value)), None)
                if first is None:
                    self._waiting_inputs[patient_id] = items[-500:]
                    continue
                live = self._start(patient_id, items[first], items[:first])
                live.remember(to_minutes(items[first].time), items[first].value)
                self._live[patient_id] = live
                new.add(patient_id)
                items = items[first + 1:]
            touched.add(patient_id)
            inputs: list[Sample] = []
            steps: list[tuple[list[Sample], Sample]] = []
            for sample in items:
                if sample.metric == GLUCOSE:
                    if _valid(sample.value):
                        steps.append((inputs, sample))
                        inputs = []
                    else:
                        live.filter.n_skipped += 1
                else:
                    inputs.append(sample)
            rounds[patient_id] = steps
            trailing[patient_id] = inputs
        assimilated = self._assimilate(rounds)
        for pid, inputs in trailing.items():
            for sample in inputs:
                add_input(self._live[pid].filter, _INPUTS[sample.metric], to_minutes(sample.time), sample.value,
                          settings)
        fresh = sorted(pid for pid in touched if pid in new or rounds.get(pid))
        forecasts = self._forecast(fresh) if fresh else []
        self._save(touched, new)
        for item in forecasts:
            for fn in self._listeners:
                try:
                    fn(item)
                except Exception:  # a listener never breaks the twin
                    log.exception("forecast listener %r failed", fn)
        return assimilated + len(new)

    def _assimilate(self, rounds: dict[str, list[tuple[list[Sample], Sample]]]) -> int:
        """The k-th reading of every patient in one batched step (its inputs added first); the readings folded
        in are remembered for the measured trend. Returns how many were folded in."""
        settings = self.settings
        assimilated = 0
        depth = max((len(v) for v in rounds.values()), default=0)
        for k in range(depth):
            batch = [(pid, steps[k]) for pid, steps in rounds.items() if k < len(steps)]
            filters = []
            for pid, (inputs, _reading) in batch:
                filt = self._live[pid].filter
                for sample in inputs:
                    add_input(filt, _INPUTS[sample.metric], to_minutes(sample.time), sample.value, settings)
                filters.append(filt)
            times = np.array([to_minutes(reading.time) for _pid, (_inputs, reading) in batch])
            values = np.array([reading.value for _pid, (_inputs, reading) in batch])
            before = [f.n_assimilated for f in filters]
            innovations = assimilate(filters, times, values, settings)
            assimilated += int(np.sum(~np.isnan(innovations)))
            for (pid, _step), filt, count, minute, value in zip(batch, filters, before, times, values, strict=True):
                if filt.n_assimilated > count:  # folded in (a late reading is skipped)
                    self._live[pid].remember(float(minute), float(value))
                    self._skill(self._live[pid]).observe(float(minute), float(value))
        return assimilated

    def _forecast(self, patient_ids: list[str]) -> list[GlucoseForecast]:
        lives = [self._live[pid] for pid in patient_ids]
        result: EnsembleForecast = forecast([live.filter for live in lives], self.settings, self.horizons_min)
        out = []
        for i, live in enumerate(lives):
            trend = live.trend()
            shown = self._skill(live).show(live.filter.time_min, live.filter.last_reading_mg_dl,
                                           result.mean_mg_dl[i], result.lower80_mg_dl[i], result.upper80_mg_dl[i],
                                           result.lower95_mg_dl[i], result.upper95_mg_dl[i])
            item = GlucoseForecast(
                patient_id=live.filter.patient_id,
                issued_at=from_minutes(float(result.issued_min[i])),
                glucose_now_mg_dl=round(float(result.glucose_now_mg_dl[i]), 2),
                horizons_min=result.horizons_min,
                mean_mg_dl=_rounded(shown.mean_mg_dl),
                lower80_mg_dl=_rounded(shown.lower80_mg_dl),
                upper80_mg_dl=_rounded(shown.upper80_mg_dl),
                lower95_mg_dl=_rounded(shown.lower95_mg_dl),
                upper95_mg_dl=_rounded(shown.upper95_mg_dl),
                insulin_sensitivity_ratio=round(float(result.insulin_sensitivity_ratio[i]), 4),
                twin_version=live.started.glucose_twin_version,
                last_reading_mg_dl=None if math.isnan(live.filter.last_reading_mg_dl) else live.filter.last_reading_mg_dl,
                trend_mg_dl_per_min=None if trend is None else round(trend, 3),
                cgm_now_mg_dl=round(float(result.cgm_now_mg_dl[i]), 2),
                sensor_offset_mg_dl=round(float(result.sensor_offset_mg_dl[i]), 2),
                twin_share=tuple(round(float(w), 4) for w in shown.weight),  # the weight that built mean_mg_dl
            )
            live.forecast = item
            out.append(item)
        return out

    # --- filters: start, load, save ---------------------------------------------------------------------

    def _get(self, patient_id: str) -> _Live | None:
        live = self._live.get(patient_id)
        if live is not None:
            return live
        with self.store.connect() as connection:
            state = load_state(connection, self.store.codec, patient_id)
        if state is None:
            return None
        try:
            filt = GlucoseFilter.from_dict(state["filter"])
            if filt.n_members != self.settings.n_members:
                raise PhysiologyInputError("n_members", "the saved filter has another ensemble size")
            found = state.get("forecast")
            recent = [(float(t), float(v)) for t, v in state.get("recent_readings", [])]
            skill = ForecastSkill.from_dict(state["skill"]) if state.get("skill") else None
            live = _Live(filt, StartedFrom.model_validate(state["started_from"]), state.get("live_version"),
                         float(state["last_version_min"]), GlucoseForecast.from_json(found) if found else None,
                         recent, skill)
        except (PhysiologyInputError, KeyError, TypeError, ValueError):
            log.warning("saved glucose filter of a patient could not be resumed; starting a new one")
            return None
        self._live[patient_id] = live
        return live

    def _start(self, patient_id: str, reading: Sample, before: list[Sample]) -> _Live:
        settings = self.settings
        basal = next((s.value for s in reversed(before) if s.metric == INSULIN_BASAL), None)
        stored = latest_twin_version(self.store, patient_id)
        now_min = to_minutes(reading.time)
        if stored is not None:
            twin = FittedTwin.model_validate(stored.payload["twin"])
            reference = twin.parameters()
            twin_basal = float(reference.basal_rate_u_per_min()[0] * 60.0)
            basal_u_per_h = twin_basal if basal is None else float(basal)
            sd = list(COHORT_SD_LOG)
            for name in ("Vmx", "kp3", "kabs"):
                if name in FITTED:
                    sd[AUGMENTED.index(name)] = float(twin.fitted_sd_log.get(name, sd[AUGMENTED.index(name)]))
            for name in ("kp1", "kmax", "kmin", "p2u"):  # not fitted: half the cohort spread around the twin
                sd[AUGMENTED.index(name)] *= 0.5
            filt = start_filter(patient_id, reference, time_min=now_min, glucose_mg_dl=reading.value,
                                basal_u_per_h=basal_u_per_h, settings=settings, rng=self.rng, prior_sd_log=sd,
                                source={"kind": GLUCOSE_KIND, "version": stored.version})
            started = StartedFrom(kind="glucose_twin", glucose_twin_version=stored.version,
                                  body_weight_kg=float(reference.get("BW")[0]), basal_u_per_h=basal_u_per_h)
        else:
            weight = self._body_weight(patient_id)
            cohort = self.cohort
            typical = float(np.exp(np.mean(np.log(cohort.basal_rate_u_per_min() * 60.0 / cohort.get("BW")))))
            basal_u_per_h = typical * weight if basal is None else float(basal)
            reference = population_patient(weight, max(basal_u_per_h, 0.05), cohort)
            draws = cohort_prior_draws(reference, cohort, settings.n_members, self.rng)
            filt = start_filter(patient_id, reference, time_min=now_min, glucose_mg_dl=reading.value,
                                basal_u_per_h=basal_u_per_h, settings=settings, rng=self.rng, prior_theta=draws,
                                source={"kind": "cohort_prior"})
            started = StartedFrom(kind="cohort_prior", body_weight_kg=weight, basal_u_per_h=basal_u_per_h)
        return _Live(filt, started, None, now_min, None)

    def _skill(self, live: _Live) -> ForecastSkill:
        """The patient's online forecast corrections (:mod:`medtwin.physiology.online_skill`): the blend with
        persistence and the calibrated intervals shown; a new one when none is saved or its horizons differ."""
        if live.skill is None or live.skill.horizons_min != tuple(self.horizons_min):
            live.skill = ForecastSkill(tuple(self.horizons_min))
        return live.skill

    def _body_weight(self, patient_id: str) -> float:
        """The record's latest body weight in kg, else :data:`DEFAULT_BODY_WEIGHT_KG`."""
        try:
            from medtwin.twin.build import patient_summary

            found = patient_summary(self.store, patient_id)
            weight = None if found is None else found[0].weight
            if weight is not None and weight.value is not None:
                factor = {"kg": 1.0, "g": 0.001, "[lb_av]": 0.45359237, "lb": 0.45359237}.get(weight.unit or "kg")
                if factor is not None and 10.0 <= weight.value * factor <= 300.0:
                    return float(weight.value * factor)
        except Exception:  # the record is optional here
            log.debug("no usable body weight in the record", exc_info=True)
        return DEFAULT_BODY_WEIGHT_KG

    def _status(self, live: _Live) -> LiveTwinStatus:
        filt = live.filter
        ratio, sd = filt.insulin_sensitivity()
        glucose = filt.glucose_mg_dl()
        return LiveTwinStatus(
            patient_id=filt.patient_id,
            started_at=from_minutes(filt.started_min),
            data_time=from_minutes(filt.time_min),
            samples_assimilated=filt.n_assimilated,
            samples_skipped=filt.n_skipped,
            restarts=filt.n_restarts,
            last_reading_mg_dl=None if math.isnan(filt.last_reading_mg_dl) else filt.last_reading_mg_dl,
            glucose_now_mg_dl=round(float(glucose.mean()), 2),
            insulin_sensitivity_ratio=round(ratio, 4),
            insulin_sensitivity_sd_log=round(sd, 4),
            insulin_sensitivity_ci95=(round(ratio * math.exp(-1.96 * sd), 4), round(ratio * math.exp(1.96 * sd), 4)),
            parameter_ratios={name: round(filt.multiplier(name)[0], 4) for name in AUGMENTED},
            n_members=filt.n_members,
            pending_inputs=len(filt.meals) + len(filt.boluses) + len(filt.basal_changes),
            started_from=live.started,
            live_twin_version=live.live_version,
        )

    def _save(self, touched: set[str], new: set[str]) -> None:
        now = self.clock()
        with self.store.begin() as connection:
            repository = TwinRepository(connection, self.store.codec)
            for pid in sorted(touched):
                live = self._live[pid]
                filt = live.filter
                reason = "start" if pid in new else (
                    "periodic" if filt.time_min - live.last_version_min >= self.version_every_min else None)
                if reason is not None:
                    live.live_version = repository.add_version(
                        pid, LIVE_KIND, self._status(live).model_dump(mode="json", exclude={"live_twin_version"}),
                        self._provenance(live, reason, now), actor=ACTOR, now=now)
                    live.last_version_min = filt.time_min
                payload = {
                    "filter": filt.to_dict(),
                    "started_from": live.started.model_dump(mode="json"),
                    "live_version": live.live_version,
                    "last_version_min": live.last_version_min,
                    "forecast": None if live.forecast is None else live.forecast.to_json(),
                    "recent_readings": [list(r) for r in live.recent],
                    "skill": None if live.skill is None else live.skill.to_dict(),
                    "status": self._status(live).model_dump(mode="json"),
                }
                _save_state(connection, self.store.codec, pid, payload, data_time=from_minutes(filt.time_min),
                            twin_version=live.live_version, now=now)

    def _provenance(self, live: _Live, reason: str, now: datetime) -> dict[str, Any]:
        filt = live.filter
        s = self.settings
        return {
            "algorithm": ALGORITHM,
            "model": "UvaPadova2008",
            "reason": reason,
            "started_from": live.started.model_dump(mode="json", exclude_none=True),
            "samples_assimilated": filt.n_assimilated,
            "samples_skipped": filt.n_skipped,
            "data_span": {"start": from_minutes(filt.started_min).isoformat(),
                          "end": from_minutes(filt.time_min).isoformat(),
                          "hours": round((filt.time_min - filt.started_min) / 60.0, 3)},
            "settings": {"n_members": s.n_members, "step_min": s.step_min, "white_sd_mg_dl": s.white_sd_mg_dl,
                         "sensor_sd_mg_dl": round(s.sensor_sd_mg_dl, 3), "sensor_tau_min": round(s.sensor_tau_min, 3),
                         "drift_sd_log_per_sqrt_h": list(s.drift_sd_log_per_sqrt_h)},
            "by": ACTOR,
            "at": now.isoformat(),
        }


def samples_from_log(patient_id: str, log_: GlucoseLog, start: datetime, *, source: str = "fleet",
                     device: str = "synthetic") -> list[Sample]:
    """A glucose log (:class:`~medtwin.physiology.calibrate.GlucoseLog`, minutes from ``start``) as the
    samples a CGM and a pump would send: readings, meals, boluses and the basal rate, in time order."""
    rows: list[tuple[float, str, float]] = [(0.0, INSULIN_BASAL, log_.basal_u_per_h)]
    rows += [(t, GLUCOSE, g) for t, g in zip(log_.cgm_t_min, log_.cgm_mg_dl, strict=True)]
    rows += [(m.time_min, CARBS, m.carbs_g) for m in log_.meals]
    rows += [(b.time_min, INSULIN_BOLUS, b.units) for b in log_.boluses]
    rows.sort(key=lambda r: (r[0], r[1] == GLUCOSE))
    units = {GLUCOSE: "mg/dL", CARBS: "g", INSULIN_BOLUS: "U", INSULIN_BASAL: "U/h"}
    out = []
    for minute, metric, value in rows:
        when = start + timedelta(minutes=minute)
        out.append(Sample(patient_id=patient_id, metric=metric, time=when, value=float(value), unit=units[metric],
                          original_value=float(value), original_unit=units[metric], device=device, source=source,
                          idempotency_key=f"{patient_id}:{metric}:{when.isoformat()}"))
    return out


def _valid(value: float) -> bool:
    return math.isfinite(value) and 10.0 <= value <= 1000.0


def _rounded(values: np.ndarray) -> tuple[float, ...]:
    return tuple(round(float(v), 2) for v in values)
