"""A simulated device fleet: physiology models -> device readings -> the real ingest path, in accelerated time.

Three parts, usable apart:

* :class:`FleetSimulator` (headless, no I/O): advances every member by one tick of ``TICK_MIN`` simulated
  minutes and returns the readings as :class:`DeviceBatch` es (JSON-ready samples, one batch per device).
  The physiology of all members is stepped as arrays: one batched UVA/Padova solve per tick for every
  member with type 1 diabetes (CGM = model glucose + the Breton & Kovatchev sensor error, pump basal and
  meal boluses from the basal-bolus controller, randomised meals, rescue carbohydrate below 60 mg/dL),
  and the vital-sign model below for everybody.
* :class:`AcceleratedClock`: simulated time runs ``speed`` times faster than the wall clock, but never more
  than ``headroom`` past the real-time line from its start (after that it runs at 1x). Started ``lead``
  behind the present with ``headroom = lead`` no sample is ever in the future (``medtwin fleet``'s
  default); the demo starts at the present and runs up to 23 h ahead (the ingest pipeline accepts samples
  up to a day ahead of its clock), so wall-clock views show its readings as fresh.
* :class:`FleetRunner`: backfills history as fast as the server takes it, then streams tick by tick on the
  accelerated clock through a :class:`Transport` (:class:`HttpTransport`: ``POST
  /api/v1/patients/{id}/samples`` with the device's own ``mtk_`` key, retries with backoff, ``Retry-After``
  honoured), several devices in parallel.

Vital-sign model (per member, all arrays; ``h`` is the local hour):

* baseline from the member's archetype (``synthetic/data/archetypes.toml`` ``vitals``; treated hypertension
  lowered by its ``treated_bp_drop``), jittered per member;
* circadian cosines: heart rate +-5 /min peaking 16:00, systolic +-7 and diastolic +-5 mm[Hg] peaking 15:00
  (a ~10 % nocturnal dip), respiratory rate +-1 /min, temperature +-0.3 Cel peaking 17:00 (Refinetti &
  Menaker 1992, Physiol Behav 51:613); SpO2 1 % lower asleep;
* activity bouts while awake (07:00-22:00; 0.25 bouts/h, 20-60 min, intensity 0.4-1): heart rate +35,
  systolic +15, diastolic +4, respiratory rate +6 per unit intensity, steps ~110/min x intensity;
* AR(1) noise per vital (correlation 0.8 per 5 min; SD 3 /min heart rate, 9 /min in atrial fibrillation,
  5/3 mm[Hg], 1 /min, 0.6 %, 0.1 Cel);
* a scripted deterioration (:class:`DemoScript`, sepsis-like) ramps in over ``ramp_min`` (default an hour)
  to respiratory rate +12, heart rate +40, SpO2 -7, temperature +2.3, systolic -25 mm[Hg], holds, then
  recovers: NEWS2 goes from 0-2 to >= 7 (Royal College of Physicians 2017 scoring).

The scripted hypoglycaemia: the chosen type 1 member boluses for a ``hypo_bolus_for_g`` meal and then
skips it (the pump logs the bolus, no carbohydrate), with no other meal from an hour before until three
hours after; with adult#004 (the default for the first type 1 member: 63 kg like the archetype) glucose
falls below 70 mg/dL after about 1 h 45 min and the rule-of-15 rescue carbohydrate brings it back.

Timestamps are simulated time (UTC, on the 5-minute grid); local time for meals and circadian rhythm is
UTC + ``FleetConfig.local_offset_min``. Randomness only through the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import quote

import numpy as np

from medtwin import vocab as m
from medtwin.arrays import Array
from medtwin.clock import as_utc
from medtwin.counters import Counters
from medtwin.physiology.devices import BasalBolusController, CGMSensor, InsulinPump
from medtwin.physiology.simulate import Event, simulate_inputs
from medtwin.physiology.uva_padova import PatientParameters, virtual_patients
from medtwin.solve import Dopri5, Solver
from medtwin.synthetic import archetype_entries

if TYPE_CHECKING:  # pragma: no cover
    import httpx

    from medtwin.store.database import Store

log = logging.getLogger("medtwin.fleet")

TICK_MIN = 5  # simulated minutes per tick (the CGM period)
SAMPLES_PATH = "/api/v1/patients/{patient_id}/samples"
TYPE1 = "type1_diabetes"

# devices and what they send
CGM, PUMP, WEARABLE, BP_CUFF = "cgm", "pump", "wearable", "bp-cuff"
DEVICE_METRICS: Mapping[str, tuple[str, ...]] = {
    CGM: (m.GLUCOSE,),
    PUMP: (m.INSULIN_BASAL, m.INSULIN_BOLUS, m.CARBS),
    WEARABLE: (m.HEART_RATE, m.SPO2, m.RESPIRATORY_RATE, m.STEPS, m.BODY_TEMPERATURE),
    BP_CUFF: (m.SYSTOLIC_BP, m.DIASTOLIC_BP),
}


def devices_for(archetype: str) -> tuple[str, ...]:
    """The devices a member of this archetype wears: a CGM and a pump with type 1 diabetes, else vitals."""
    return (CGM, PUMP, WEARABLE, BP_CUFF) if archetype == TYPE1 else (WEARABLE, BP_CUFF)


# ---------------------------------------------------------------------------------------------- members
@dataclass(frozen=True)
class FleetMember:
    """One simulated patient: the record it writes to, its archetype and a device key per device.

    ``keys`` maps device name -> ``mtk_...`` secret (empty when headless). ``virtual_patient`` names the
    UVA/Padova parameter set driving a type 1 member (default: the adults in turn from adult#004)."""

    patient_id: str
    archetype: str
    keys: Mapping[str, str] = field(default_factory=dict)
    virtual_patient: str | None = None


@dataclass(frozen=True)
class DeviceBatch:
    """What one device uploads for one patient at once: samples as JSON objects
    ``{"metric", "time", "value", "unit", "id"}`` (time ISO 8601 UTC, value in the metric's canonical unit)."""

    patient_id: str
    device: str
    samples: list[dict[str, Any]]


@dataclass(frozen=True)
class DemoScript:
    """Scripted events at offsets (minutes) from ``start`` (simulated time); ``None`` member = no event."""

    start: datetime
    hypo_member: int | None = None
    hypo_after_min: int = 20
    hypo_bolus_for_g: float = 80.0  # the meal bolus taken, for a meal then skipped
    deterioration_member: int | None = None
    deterioration_after_min: int = 60
    ramp_min: int = 60
    hold_min: int = 180
    recover_min: int = 120


@dataclass(frozen=True)
class FleetConfig:
    vitals_every_min: int = 5  # heart rate, SpO2, respiratory rate, steps
    temperature_every_min: int = 15
    bp_every_min: int = 15
    basal_report_every_min: int = 60
    local_offset_min: int = 0  # local time = UTC + offset (meal times, circadian rhythm)
    eating_rate_g_per_min: float = 5.0
    rescue_below_mg_dl: float = 60.0  # rule of 15: eat 15 g when the CGM reads below this
    rescue_carbs_g: float = 15.0
    rescue_every_min: int = 20
    activity_bouts_per_hour: float = 0.25
    # loose on purpose: at most 0.05 mg/dL from a 1e-8 reference over a day (the CGM reports whole mg/dL and
    # errs by ~10), 4x faster than 1e-8 and 1.7x faster than 1e-5 on a batch of 200 patients
    solver: Solver = field(default_factory=lambda: Dopri5(rtol=1e-3, atol=1e-3))
    # members per batched solve: the solver's steps are shared by a batch (error control over all of it), so
    # very large batches take smaller steps; per member 83 us/tick at 100, 38-45 at 500-2000, 95 at 5000
    solve_batch: int = 1000


# meal plan of random_meal_scenario (physiology/scenario.py): (minute of day, mean g, sd g, probability)
_MEAL_PLAN = np.array([[7 * 60, 45.0, 10.0, 1.0], [12 * 60 + 30, 70.0, 10.0, 1.0], [16 * 60, 15.0, 5.0, 0.5],
                       [19 * 60, 80.0, 10.0, 1.0]])
_ADULTS = tuple(f"adult#{i:03d}" for i in range(1, 11))

# vital signs: column order of the arrays below
_VITALS = (m.HEART_RATE, m.SYSTOLIC_BP, m.DIASTOLIC_BP, m.RESPIRATORY_RATE, m.SPO2, m.BODY_TEMPERATURE)
_HR, _SBP, _DBP, _RR, _SPO2, _TEMP = range(6)
_CIRCADIAN_AMPLITUDE = np.array([5.0, 7.0, 5.0, 1.0, 0.0, 0.3])
_CIRCADIAN_PEAK_H = np.array([16.0, 15.0, 15.0, 16.0, 0.0, 17.0])
_ACTIVITY_EFFECT = np.array([35.0, 15.0, 4.0, 6.0, 0.0, 0.2])
_NOISE_SD = np.array([3.0, 5.0, 3.0, 1.0, 0.6, 0.1])
_JITTER_SD = np.array([4.0, 5.0, 3.0, 1.0, 0.5, 0.15])
_DETERIORATION = np.array([40.0, -25.0, -12.0, 12.0, -7.0, 2.3])
_AR = 0.8


@lru_cache(maxsize=1)
def archetype_vitals() -> dict[str, tuple[Array, float]]:
    """archetype -> (baseline vitals in ``_VITALS`` order, heart rate noise SD), from archetypes.toml."""
    out: dict[str, tuple[Array, float]] = {}
    for a in archetype_entries():
        v = a["vitals"]
        drop = a.get("treated_bp_drop", {})
        base = np.array([v["heart_rate"], v["systolic"] - drop.get("systolic", 0),
                         v["diastolic"] - drop.get("diastolic", 0), v["respiratory_rate"], v["spo2"],
                         v["temperature"]], dtype=float)
        out[a["key"]] = (base, float(a.get("heart_rate_sd", _NOISE_SD[_HR])))
    return out


def _ramp(minute: Array | float, onset: float, ramp: float, hold: float, recover: float) -> Array:
    """0 before ``onset``, rising linearly to 1 over ``ramp``, 1 for ``hold``, back to 0 over ``recover``."""
    x = np.asarray(minute, dtype=float) - onset
    up = np.clip(x / ramp, 0.0, 1.0)
    down = np.clip(1.0 - (x - ramp - hold) / recover, 0.0, 1.0)
    return np.asarray(np.minimum(up, down), dtype=float)


def floor_tick(moment: datetime) -> datetime:
    """``moment`` in UTC, down to the 5-minute grid the fleet's samples are on."""
    moment = moment.astimezone(UTC)
    return moment.replace(minute=moment.minute - moment.minute % TICK_MIN, second=0, microsecond=0)


class FleetSimulator:
    """Every member's physiology as arrays, advanced one tick (``TICK_MIN`` simulated minutes) at a time."""

    def __init__(self, members: Sequence[FleetMember], start: datetime, rng: np.random.Generator,
                 config: FleetConfig | None = None, script: DemoScript | None = None) -> None:
        if not members:
            raise ValueError("members: at least one")
        self.members = tuple(members)
        self.config = config or FleetConfig()
        self.script = script
        self.rng = rng
        self.origin = floor_tick(start)
        self.minute = 0  # simulated minutes since origin; the next tick covers [minute, minute + TICK_MIN)
        self._origin_local_min = (self.origin.hour * 60 + self.origin.minute + self.config.local_offset_min) % 1440
        self._epoch = int(self.origin.timestamp())
        self._stamps: dict[int, str] = {}
        n = len(self.members)
        # --- vital signs
        table = archetype_vitals()
        unknown = sorted({mb.archetype for mb in self.members} - set(table))
        if unknown:
            raise ValueError(f"archetype: unknown {unknown}; known {sorted(table)}")
        self.vitals_base = np.stack([table[mb.archetype][0] for mb in self.members]) + \
            rng.standard_normal((n, 6)) * _JITTER_SD
        self.noise_sd = np.tile(_NOISE_SD, (n, 1))
        self.noise_sd[:, _HR] = [table[mb.archetype][1] for mb in self.members]
        self.vitals_noise = rng.standard_normal((n, 6)) * self.noise_sd
        self.active_left_min = np.zeros(n)
        self.intensity = np.zeros(n)
        self.deterioration = np.zeros(n)
        # --- glucose (type 1 members only), one batch
        self.type1 = np.array([i for i, mb in enumerate(self.members) if mb.archetype == TYPE1], dtype=int)
        self.params: PatientParameters | None = None
        if self.type1.size:
            cohort = virtual_patients(None)
            index = {name: i for i, name in enumerate(cohort.names)}
            names = [self.members[i].virtual_patient or _ADULTS[(k + 3) % len(_ADULTS)]
                     for k, i in enumerate(self.type1)]
            n1 = len(names)
            self.params = cohort.take([index[name] for name in names])
            self.state = self.params.initial_state.copy()
            size = max(1, self.config.solve_batch)
            self._solve_batches = [(slice(a, a + size), self.params.take(list(range(a, min(a + size, n1)))))
                                   for a in range(0, n1, size)]
            self.pump = InsulinPump()
            self.basal_u_per_h = self.pump.basal(self.params.basal_rate_u_per_min() * 60.0)
            self.controller = BasalBolusController(self.params.carb_ratio_g_per_unit,
                                                   self.params.correction_factor_mg_dl_per_unit)
            self.sensor = CGMSensor()
            self.to_eat = np.zeros(self.type1.size)
            self.last_cgm = self.params.subcutaneous_glucose(self.state)
            self.last_rescue = np.full(self.type1.size, -10**9)
            self._noise_day = -1
            self._noise = np.zeros((0, self.type1.size))
            self._meal_days: dict[int, tuple[Array, Array]] = {}
            self._eating_prev = np.zeros(self.type1.size, dtype=bool)
        self.last_glucose = np.zeros(self.type1.size)  # true subcutaneous glucose at the last CGM reading
        self.last_noise = np.zeros(self.type1.size)
        self._script_minutes = self._script_offsets()

    # ------------------------------------------------------------------ time
    @property
    def time(self) -> datetime:
        """Simulated time at which the next tick starts (everything before it has been emitted)."""
        return self.origin + timedelta(minutes=self.minute)

    def time_of(self, minute: int) -> datetime:
        return self.origin + timedelta(minutes=minute)

    def _iso(self, minute: int) -> str:
        stamp = self._stamps.get(minute)
        if stamp is None:
            if len(self._stamps) > 64:
                self._stamps.clear()
            stamp = self._stamps[minute] = datetime.fromtimestamp(self._epoch + 60 * minute, UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ")
        return stamp

    def _script_offsets(self) -> dict[str, float]:
        s = self.script
        if s is None:
            return {}
        base = (s.start - self.origin).total_seconds() / 60.0
        return {"hypo": base + s.hypo_after_min, "deterioration": base + s.deterioration_after_min}

    # ------------------------------------------------------------------ one tick
    def step(self) -> list[DeviceBatch]:
        """Emit every reading in ``[time, time + TICK_MIN)`` and advance the physiology to its end."""
        minute = self.minute
        out: dict[tuple[int, str], list[dict[str, Any]]] = {}
        if self.type1.size:
            self._step_glucose(minute, out)
        self._step_vitals(minute, out)
        self.minute += TICK_MIN
        return [DeviceBatch(self.members[i].patient_id, device, samples)
                for (i, device), samples in sorted(out.items()) if samples]

    def _add(self, out: dict[tuple[int, str], list[dict[str, Any]]], member: int, device: str, metric: str,
             minute: int, value: float | int) -> None:
        stamp = self._iso(minute)
        out.setdefault((member, device), []).append({
            "metric": metric, "time": stamp, "value": value, "unit": m.CANONICAL_UNITS[metric],
            "id": f"{metric}/{stamp}"})

    def _local_minute(self, minute: int) -> int:
        return (self._origin_local_min + minute) % 1440

    def _local_day(self, minute: int) -> int:
        return (self._origin_local_min + minute) // 1440

    def _meals_of_day(self, day: int) -> tuple[Array, Array]:
        """(minute since origin, grams) of each type 1 member's meals that local day, shape (n1, 4); 0 g = none.
        Times ~ N(plan, 30 min) within 90 min, grams ~ N(mean, sd) in [5, 150] (as random_meal_scenario)."""
        if day not in self._meal_days:
            n1 = self.type1.size
            offset = day * 1440 - self._origin_local_min
            jitter = np.clip(np.round(self.rng.normal(0.0, 30.0, (n1, 4))), -90, 90)
            minutes = offset + _MEAL_PLAN[:, 0] + jitter
            grams = np.clip(np.round(self.rng.normal(_MEAL_PLAN[:, 1], _MEAL_PLAN[:, 2], (n1, 4))), 5, 150)
            grams = np.where(self.rng.random((n1, 4)) < _MEAL_PLAN[:, 3], grams, 0.0)
            self._meal_days[day] = (minutes, grams)
            for old in [d for d in self._meal_days if d < day - 1]:
                del self._meal_days[old]
        return self._meal_days[day]

    def _sensor_noise(self, minute: int) -> Array:
        """CGM error (mg/dL) at ``minute`` for every type 1 member: CGMSensor's model, drawn a day at a time."""
        day, within = divmod(minute, 1440)
        if day != self._noise_day:
            times = np.arange(0.0, 1440.0 + 1e-9, float(self.sensor.sample_period_min))
            self._noise = self.sensor.noise_at(times, self.type1.size, self.rng)
            self._noise_day = day
        return np.asarray(self._noise[within // int(self.sensor.sample_period_min)], dtype=float)

    def _step_glucose(self, minute: int, out: dict[tuple[int, str], list[dict[str, Any]]]) -> None:
        assert self.params is not None
        cfg = self.config
        n1 = self.type1.size
        # CGM reading at the start of the tick
        glucose = self.params.subcutaneous_glucose(self.state)
        noise = self._sensor_noise(minute)
        reading = np.round(self.sensor.read(glucose, noise))
        self.last_glucose, self.last_noise, self.last_cgm = glucose, noise, reading
        for k, i in enumerate(self.type1):
            self._add(out, int(i), CGM, m.GLUCOSE, minute, int(reading[k]))
        if minute % cfg.basal_report_every_min == 0 or minute == 0:
            for k, i in enumerate(self.type1):
                self._add(out, int(i), PUMP, m.INSULIN_BASAL, minute, float(self.basal_u_per_h[k]))
        # meals announced in this tick (planned, scripted, rescue) and their boluses, per minute
        announced = np.zeros((n1, TICK_MIN))
        bolus = np.zeros((n1, TICK_MIN))
        day = self._local_day(minute)
        hypo_at = self._script_minutes.get("hypo")
        hypo_k = None
        if self.script is not None and self.script.hypo_member is not None:
            hits = np.flatnonzero(self.type1 == self.script.hypo_member)
            hypo_k = int(hits[0]) if hits.size else None
        for d in (day, day + 1) if self._local_minute(minute) + TICK_MIN > 1440 else (day,):
            when, grams = self._meals_of_day(d)
            offset = when - minute
            inside = (offset >= 0) & (offset < TICK_MIN) & (grams > 0)
            if hypo_k is not None and hypo_at is not None:
                quiet = (when >= hypo_at - 60) & (when <= hypo_at + 180)
                inside[hypo_k] &= ~quiet[hypo_k]
            rows, cols = np.nonzero(inside)
            announced[rows, offset[rows, cols].astype(int)] += grams[rows, cols]
        # meal boluses from the controller on the current reading
        for col in np.flatnonzero(np.any(announced > 0, axis=0)):
            units = self.pump.bolus(self.controller.bolus(announced[:, col], reading))
            bolus[:, col] = np.where(announced[:, col] > 0, units, 0.0)
        # rescue carbohydrate, no bolus (rule of 15)
        rescue = (reading < cfg.rescue_below_mg_dl) & (minute - self.last_rescue >= cfg.rescue_every_min)
        announced[rescue, 0] += cfg.rescue_carbs_g
        self.last_rescue = np.where(rescue, minute, self.last_rescue)
        if hypo_k is not None and hypo_at is not None and self.script is not None:
            at = int(hypo_at) - minute
            if 0 <= at < TICK_MIN:
                cr = self.params.carb_ratio_g_per_unit[hypo_k]
                bolus[hypo_k, at] += float(self.pump.bolus(np.array([self.script.hypo_bolus_for_g / cr]))[0])
        for k, j in zip(*np.nonzero(announced), strict=True):
            self._add(out, int(self.type1[k]), PUMP, m.CARBS, minute + int(j), float(announced[k, j]))
        for k, j in zip(*np.nonzero(bolus), strict=True):
            self._add(out, int(self.type1[k]), PUMP, m.INSULIN_BOLUS, minute + int(j), round(float(bolus[k, j]), 2))
        # eating at a fixed rate from a per-member queue; one extra leading minute carries "still eating"
        eaten = np.zeros((n1, TICK_MIN + 1))
        eaten[:, 0] = np.where(self._eating_prev, 1.0, 0.0)
        queue = self.to_eat
        for j in range(TICK_MIN):
            queue = queue + announced[:, j]
            eaten[:, j + 1] = np.minimum(queue, cfg.eating_rate_g_per_min)
            queue = queue - eaten[:, j + 1]
        self.to_eat = queue
        self._eating_prev = eaten[:, -1] > 0
        insulin = np.repeat((self.basal_u_per_h / 60.0)[:, None], TICK_MIN + 1, axis=1)
        for part, params in self._solve_batches:  # one batched solve per (large) batch of members
            events = [Event(time_min=float(j + 1), bolus_units=_fixed(bolus[part, j]))
                      for j in range(TICK_MIN) if np.any(bolus[part, j] > 0)]
            trajectory = simulate_inputs(params, eaten[part], insulin[part], np.array([1.0, TICK_MIN + 1.0]),
                                         events=events, initial_state=self.state[part], solver=cfg.solver,
                                         float_path=False)
            self.state[part] = trajectory.states[-1]

    def _step_vitals(self, minute: int, out: dict[tuple[int, str], list[dict[str, Any]]]) -> None:
        cfg = self.config
        n = len(self.members)
        rng = self.rng
        local = self._local_minute(minute)
        hour = local / 60.0
        awake = 7 * 60 <= local < 22 * 60
        # activity bouts
        starting = (self.active_left_min <= 0) & awake & \
            (rng.random(n) < cfg.activity_bouts_per_hour * TICK_MIN / 60.0)
        self.active_left_min = np.where(starting, rng.uniform(20.0, 60.0, n), self.active_left_min)
        self.intensity = np.where(starting, rng.uniform(0.4, 1.0, n), self.intensity)
        active = self.active_left_min > 0
        level = np.where(active, self.intensity, 0.0)
        # AR(1) noise
        self.vitals_noise = _AR * self.vitals_noise + math.sqrt(1 - _AR**2) * self.noise_sd * rng.standard_normal((n, 6))
        circadian = _CIRCADIAN_AMPLITUDE * np.cos(2 * np.pi * (hour - _CIRCADIAN_PEAK_H) / 24.0)
        values = self.vitals_base + circadian + level[:, None] * _ACTIVITY_EFFECT + self.vitals_noise
        if not awake:
            values[:, _SPO2] -= 1.0
        det = self._script_minutes.get("deterioration")
        if det is not None and self.script is not None and self.script.deterioration_member is not None:
            s = self.script
            r = float(_ramp(minute, det, s.ramp_min, s.hold_min, s.recover_min))
            self.deterioration[:] = 0.0
            self.deterioration[s.deterioration_member] = r
            values += self.deterioration[:, None] * _DETERIORATION
        values[:, _SPO2] = np.minimum(values[:, _SPO2], 100.0)
        self.last_vitals = values
        steps = np.where(active, rng.poisson(110.0 * TICK_MIN * np.maximum(level, 1e-9)),
                         rng.poisson(8.0 * TICK_MIN, n) if awake else 0)
        self.active_left_min = np.maximum(self.active_left_min - TICK_MIN, 0.0)
        wall = local % cfg.vitals_every_min == 0
        temp = local % cfg.temperature_every_min == 0
        bp = local % cfg.bp_every_min == 0
        rounded = np.round(values).astype(int)
        for i in range(n):  # formatting only; the model above is array arithmetic
            if wall:
                self._add(out, i, WEARABLE, m.HEART_RATE, minute, int(rounded[i, _HR]))
                self._add(out, i, WEARABLE, m.SPO2, minute, int(rounded[i, _SPO2]))
                self._add(out, i, WEARABLE, m.RESPIRATORY_RATE, minute, int(rounded[i, _RR]))
                self._add(out, i, WEARABLE, m.STEPS, minute, int(steps[i]))
            if temp:
                self._add(out, i, WEARABLE, m.BODY_TEMPERATURE, minute, round(float(values[i, _TEMP]), 1))
            if bp:
                self._add(out, i, BP_CUFF, m.SYSTOLIC_BP, minute, int(rounded[i, _SBP]))
                self._add(out, i, BP_CUFF, m.DIASTOLIC_BP, minute, int(rounded[i, _DBP]))


def _fixed(units: Array) -> Callable[[float, Array], Array]:
    frozen = units.copy()

    def action(t: float, glucose: Array) -> Array:
        return frozen

    return action


# ---------------------------------------------------------------------------------------------- time
@dataclass(frozen=True)
class AcceleratedClock:
    """Simulated time ``speed`` x faster than the wall clock, at most ``headroom`` ahead of real time.

    At wall (monotonic) time ``wall_start`` the simulated time is ``sim_start``. Elapsed simulated time
    after ``x`` wall seconds is ``min(speed x, headroom + x)``: accelerated until it is ``headroom`` ahead
    of the real-time line from ``sim_start`` (after ``headroom / (speed - 1)``), then real time. With
    ``sim_start`` ``lead`` behind the present and ``headroom = lead`` it never passes the present."""

    sim_start: datetime
    wall_start: float
    speed: float
    headroom: timedelta

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise ValueError("speed: must be positive")
        if self.headroom < timedelta(0):
            raise ValueError("headroom: must not be negative")

    def sim_at(self, wall: float) -> datetime:
        x = max(wall - self.wall_start, 0.0)
        return self.sim_start + timedelta(seconds=min(self.speed * x, self.headroom.total_seconds() + x))

    def wall_at(self, sim: datetime) -> float:
        """The wall (monotonic) time at which simulated time reaches ``sim``."""
        e = (sim - self.sim_start).total_seconds()
        return self.wall_start + max(e / self.speed, e - self.headroom.total_seconds())

    @property
    def catch_up_s(self) -> float:
        """Wall seconds of acceleration, until the headroom is used up (inf at speed <= 1)."""
        return math.inf if self.speed <= 1 else self.headroom.total_seconds() / (self.speed - 1)


# ---------------------------------------------------------------------------------------------- transport
class SendError(RuntimeError):
    """A batch the server refused for good (or after every retry); ``status`` is the last HTTP status."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Transport(Protocol):
    def send(self, batch: DeviceBatch, key: str | None) -> int:
        """Deliver one batch with the device key; returns how many samples the server acknowledged."""
        ...


class HttpTransport:
    """``POST /api/v1/patients/{id}/samples`` (a JSON array) with ``Authorization: Bearer <device key>``.

    Retries connection errors, 429 (after ``Retry-After``, capped) and 5xx with exponential backoff;
    other 4xx are permanent (:class:`SendError`). Works on any ``httpx.Client`` (e.g. FastAPI's TestClient)."""

    def __init__(self, client: httpx.Client, retries: int = 4, backoff_s: float = 0.25, max_wait_s: float = 10.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.client, self.retries, self.backoff_s, self.max_wait_s, self.sleep = client, retries, backoff_s, max_wait_s, sleep
        self.retried = 0
        self.quarantine_reasons: set[str] = set()
        self._lock = threading.Lock()

    def send(self, batch: DeviceBatch, key: str | None) -> int:
        import httpx

        url = SAMPLES_PATH.format(patient_id=quote(batch.patient_id, safe=""))
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        status: int | None = None
        detail = ""
        for attempt in range(self.retries + 1):
            wait = self.backoff_s * 2**attempt
            try:
                response = self.client.post(url, json=batch.samples, headers=headers)
            except httpx.TransportError as exc:
                detail, status = f"{type(exc).__name__}: {exc}", None
            else:
                status = response.status_code
                if status < 300:
                    return self._acknowledged(response, batch)
                detail = response.text[:300]
                if status == 429:
                    wait = _retry_after(response.headers.get("retry-after"), wait)
                elif status < 500:
                    raise SendError(f"{batch.device} -> {url}: HTTP {status}: {detail}", status)
            if attempt < self.retries:
                with self._lock:
                    self.retried += 1
                self.sleep(min(wait, self.max_wait_s))
        raise SendError(f"{batch.device} -> {url}: gave up after {self.retries + 1} attempts: "
                        f"{status or ''} {detail}", status)

    def _acknowledged(self, response: Any, batch: DeviceBatch) -> int:
        """The count the server reports (``accepted`` + ``duplicates``), else everything sent; a quarantined
        sample is logged (once per reason: e.g. ``future-time`` if the server accepts less ahead)."""
        try:
            body = response.json()
        except ValueError:
            return len(batch.samples)
        if not isinstance(body, dict):
            return len(batch.samples)
        for item in body.get("quarantined") or ():
            reason = str(item.get("reason")) if isinstance(item, dict) else "?"
            with self._lock:
                if reason in self.quarantine_reasons:
                    continue
                self.quarantine_reasons.add(reason)
            log.warning("fleet: the server quarantined a %s sample (%s): %s", batch.device, reason,
                        item.get("detail") if isinstance(item, dict) else item)
        numbers = [body.get(k) for k in ("accepted", "duplicates")]
        counted = [n for n in numbers if isinstance(n, int)]
        return sum(counted) if counted else len(batch.samples)


def _retry_after(header: str | None, default: float) -> float:
    try:
        return max(float(header), 0.0) if header is not None else default
    except ValueError:
        return default


# ---------------------------------------------------------------------------------------------- runner
#: What the runner counts (``runner.stats``): ticks simulated, samples sent and acknowledged, requests made and
#: failed (the last failure: ``runner.last_error``), seconds spent in the physiology and delivering, and how far
#: behind the accelerated clock a tick was sent, at worst.
FleetCount = Literal["ticks", "samples", "acknowledged", "requests", "failed_requests", "simulate_s", "send_s",
                     "max_lag_s"]


class FleetRunner:
    """Drive a :class:`FleetSimulator` through a :class:`Transport`: backfill, then stream on the clock."""

    def __init__(self, simulator: FleetSimulator, transport: Transport, *, workers: int = 4,
                 max_batch: int = 1000, upload_every: int = 1, monotonic: Callable[[], float] = time.monotonic
                 ) -> None:
        self.sim = simulator
        self.transport = transport
        self.workers = max(1, workers)
        self.max_batch = max_batch
        self.upload_every = max(1, upload_every)  # live: each device uploads every this many ticks
        self.monotonic = monotonic
        self.stats: Counters[FleetCount] = Counters(FleetCount)
        self.last_error: str | None = None  # the last upload that failed
        self._keys = {mb.patient_id: dict(mb.keys) for mb in simulator.members}
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="fleet") if self.workers > 1 else None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _deliver(self, batches: Iterable[DeviceBatch]) -> None:
        """Upload batches: devices in parallel, but a device's requests (<= ``max_batch`` samples each) in time
        order, and pumps (the twin's inputs: meals, insulin) before the sensors reading their effect, so a
        live twin that folds readings in as they come never sees a reading before the inputs preceding it."""
        started = time.perf_counter()
        jobs = [b for b in batches if b.samples]
        phases = [[b for b in jobs if b.device == PUMP], [b for b in jobs if b.device != PUMP]]
        results: list[tuple[int, int, list[str]]] = []
        for phase in phases:
            if self._pool is not None and len(phase) > 1:
                results += list(self._pool.map(self._send_device, phase))
            else:
                results += [self._send_device(b) for b in phase]
        self.stats.inc("send_s", time.perf_counter() - started)
        self.stats.inc("samples", sum(len(b.samples) for b in jobs))
        errors = [e for _a, _r, errs in results for e in errs]
        self.stats.inc("acknowledged", sum(a for a, _r, _e in results))
        self.stats.inc("requests", sum(r for _a, r, _e in results))
        self.stats.inc("failed_requests", len(errors))
        if errors:
            self.last_error = errors[-1]
            log.warning("fleet: %d uploads failed, e.g. %s", len(errors), errors[0])

    def _send_device(self, batch: DeviceBatch) -> tuple[int, int, list[str]]:
        """One device's samples in order, in requests of at most ``max_batch`` (halved on 413):
        (acknowledged, requests, errors)."""
        key = self._keys.get(batch.patient_id, {}).get(batch.device)
        acknowledged, requests, errors = 0, 0, []
        queue = [batch.samples[i:i + self.max_batch] for i in range(0, len(batch.samples), self.max_batch)]
        while queue:
            chunk = queue.pop(0)
            requests += 1
            try:
                acknowledged += self.transport.send(DeviceBatch(batch.patient_id, batch.device, chunk), key)
            except SendError as exc:
                if exc.status == 413 and len(chunk) > 1:  # more than the device may send at once
                    half = len(chunk) // 2
                    self.max_batch = max(1, min(self.max_batch, half))
                    queue[:0] = [chunk[:half], chunk[half:]]
                    requests -= 1
                    continue
                errors.append(str(exc))
        return acknowledged, requests, errors

    def _tick(self) -> list[DeviceBatch]:
        started = time.perf_counter()
        batches = self.sim.step()
        self.stats.inc("simulate_s", time.perf_counter() - started)
        self.stats.inc("ticks")
        return batches

    def backfill(self, until: datetime, stop: threading.Event | None = None) -> None:
        """Simulate up to ``until`` as fast as possible, uploading in large batches (per device)."""
        pending: dict[tuple[str, str], list[dict[str, Any]]] = {}
        size = 0
        while self.sim.time < until and not (stop is not None and stop.is_set()):
            for batch in self._tick():
                pending.setdefault((batch.patient_id, batch.device), []).extend(batch.samples)
                size += len(batch.samples)
            if size >= self.max_batch * max(len(pending), 1) // 2 or self.sim.time >= until:
                self._deliver(DeviceBatch(p, d, s) for (p, d), s in pending.items())
                pending, size = {}, 0
        if pending:
            self._deliver(DeviceBatch(p, d, s) for (p, d), s in pending.items())

    def run(self, clock: AcceleratedClock, stop: threading.Event, duration_s: float | None = None
            ) -> Counters[FleetCount]:
        """Stream tick by tick: a tick is sent once the accelerated clock has passed its end, so every sample
        is in the (simulated) past; with ``upload_every`` > 1 devices upload that many ticks together.
        Returns when ``stop`` is set or after ``duration_s`` wall seconds."""
        end = None if duration_s is None else self.monotonic() + duration_s
        pending: dict[tuple[str, str], list[dict[str, Any]]] = {}
        while not stop.is_set():
            due = clock.wall_at(self.sim.time + timedelta(minutes=TICK_MIN))
            if end is not None and due > end:
                wait = end - self.monotonic()
                if wait > 0:
                    stop.wait(wait)
                break
            wait = due - self.monotonic()
            if wait > 0 and stop.wait(wait):
                break
            for batch in self._tick():
                pending.setdefault((batch.patient_id, batch.device), []).extend(batch.samples)
            if self.stats["ticks"] % self.upload_every == 0:
                self._deliver(DeviceBatch(p, d, s) for (p, d), s in pending.items())
                pending = {}
                self.stats.peak("max_lag_s", self.monotonic() - due)
        if pending:  # what was simulated is sent, also on stop
            self._deliver(DeviceBatch(p, d, s) for (p, d), s in pending.items())
        return self.stats


# ---------------------------------------------------------------------------------------------- provisioning
def issue_device_keys(store: Store, index_key: bytes, members: Sequence[tuple[str, str]], *, actor: str,
                      prefix: str = "fleet", virtual: Mapping[str, str] | None = None) -> list[FleetMember]:
    """Create a device key per device of each ``(patient_id, archetype)``, named ``"<prefix>-<device>"``
    (the name is the device the samples are stored under); the patient's earlier keys of those names are
    revoked first (a secret is shown once, so a new run needs new keys). Returns the members with keys."""
    from medtwin.security import accounts

    names = {f"{prefix}-{device}" for device in DEVICE_METRICS}
    wanted = {pid for pid, _ in members}
    out: list[FleetMember] = []
    with store.begin() as connection:
        for key in accounts.list_api_keys(connection):
            if not key.revoked and key.name in names and key.patient_id in wanted:
                accounts.revoke_api_key(connection, key.id)
        for patient_id, archetype in members:
            keys = {}
            for device in devices_for(archetype):
                _, secret = accounts.create_api_key(connection, f"{prefix}-{device}", patient_id, actor, index_key)
                keys[device] = secret
            out.append(FleetMember(patient_id, archetype, keys, (virtual or {}).get(patient_id)))
    return out


FLEET_MRN_SYSTEM = "urn:medtwin:fleet"


def provision_patients(store: Store, n: int, archetypes: Sequence[str], *, actor: str, seed: int = 0
                       ) -> list[tuple[str, str]]:
    """``n`` minimal synthetic patients for load tests (a Patient resource each: MRN ``FLEET-<seed>-<i>``,
    gender, birth date; no clinical history), the ``i``-th of archetype ``archetypes[i % len]``; imported as
    one transaction bundle with stable ids, so running again reuses them. Returns ``(patient_id, archetype)``."""
    import uuid

    from medtwin.record.sources import RawUnit
    from medtwin.store.records import RecordRepository
    from medtwin.twin.build import import_units

    if n < 1 or not archetypes:
        raise ValueError("n and archetypes: at least one")
    table = archetype_vitals()
    unknown = sorted(set(archetypes) - set(table))
    if unknown:
        raise ValueError(f"archetype: unknown {unknown}; known {sorted(table)}")
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, "urn:medtwin:fleet")
    mrns = [f"FLEET-{seed}-{i:06d}" for i in range(n)]
    entries = [{"fullUrl": f"urn:uuid:{uuid.uuid5(namespace, mrn)}", "request": {"method": "POST", "url": "Patient"},
                "resource": {"resourceType": "Patient",
                             "identifier": [{"system": FLEET_MRN_SYSTEM, "value": mrn}],
                             "name": [{"family": "Fleet", "given": [f"Simulated {i + 1}"]}],
                             "gender": ("female", "male")[i % 2], "birthDate": f"{1950 + i % 50}-01-01"}}
               for i, mrn in enumerate(mrns)]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    report = import_units(store, [RawUnit(f"fleet-{seed}-{n}.json", "json", bundle)], actor=actor)
    if not report.ok:
        raise RuntimeError(f"fleet patients did not import: {report.errors[0].error}")
    with store.begin() as connection:
        records = RecordRepository(connection, store.codec)
        found = records.find_by_identifiers([("Patient", FLEET_MRN_SYSTEM, mrn) for mrn in mrns])
        ids = [found.get(("Patient", FLEET_MRN_SYSTEM, mrn)) for mrn in mrns]
    if any(i is None for i in ids):
        raise RuntimeError("fleet patients: an imported patient was not found by its MRN")
    return [(str(pid), archetypes[i % len(archetypes)]) for i, pid in enumerate(ids)]


def latest_sample_time(store: Store, patient_ids: Sequence[str]) -> datetime | None:
    """The newest stored sample time of these patients (a restarted demo continues after it)."""
    from sqlalchemy import func, select

    from medtwin.store.schema import samples

    if not patient_ids:
        return None
    with store.begin() as connection:
        value = connection.execute(select(func.max(samples.c.time)).where(
            samples.c.patient_id.in_(list(patient_ids)))).scalar()
    if value is None:
        return None
    return as_utc(value)
