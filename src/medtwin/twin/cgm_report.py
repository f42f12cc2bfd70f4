"""The CGM report of a patient: consensus metrics and the ambulatory glucose profile (AGP) from their stored
CGM samples (``samples`` rows with metric ``"glucose"``, mg/dL).

* **Period**: the ``days`` (default 14) ending at the patient's latest glucose sample, end inclusive
  (``end - days < t <= end``). Without any sample there is no period and no metrics.
* **Data sufficiency** (Battelino et al. 2019, Diabetes Care 42(8):1593-1603): % time CGM active is the
  share of the period's sample slots (one per sample period, counted back from the latest reading) that
  hold a reading; at least 70 % of 14 days is needed for the metrics to describe the patient's glucose.
  The sample period is the median spacing of the readings, rounded to whole minutes (5 for most CGMs,
  15 for Libre-type sensors).
* **Metrics** are :func:`medtwin.physiology.metrics.glucose_metrics` over the readings of the period, except
  that episodes are counted on the slot grid: an empty slot breaks a run but does not end an episode (the
  one definition, :mod:`medtwin.vocab.episodes`, as the alerts apply it).
* **AGP**: 5/25/50/75/95th percentiles by time of day in 15-minute bins, in the time zone ``tz`` (IANA
  name, default ``UTC``: the record holds no patient time zone); the zone is stated in the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field
from sqlalchemy import Connection

from medtwin.physiology.errors import PhysiologyInputError
from medtwin.physiology.metrics import (
    AmbulatoryGlucoseProfile,
    GlucoseMetrics,
    ambulatory_glucose_profile,
    glucose_metrics,
)
from medtwin.store.database import Store
from medtwin.store.samples import SampleRepository
from medtwin.vocab import GLUCOSE
from medtwin.vocab.episodes import count_episodes
from medtwin.vocab.glucose import HYPER_L1, HYPER_L2, HYPO_L1, HYPO_L2

DEFAULT_DAYS = 14
MAX_DAYS = 90
MIN_ACTIVE_PERCENT = 70.0  # Battelino 2019: >= 70 % of data from 14 days
AGP_BIN_MIN = 15.0


class Target(BaseModel):
    """A consensus target (Battelino 2019, type 1 and type 2 diabetes, not pregnant or older/high-risk)."""

    metric: str
    comparison: str = Field(description="'>' or '<' or '<='")
    value: float
    label: str


TARGETS: tuple[Target, ...] = (
    Target(metric="time_in_range_70_180_percent", comparison=">", value=70, label="TIR 70-180 mg/dL > 70 %"),
    Target(metric="time_below_70_percent", comparison="<", value=4, label="TBR < 70 mg/dL < 4 %"),
    Target(metric="time_below_54_percent", comparison="<", value=1, label="TBR < 54 mg/dL < 1 %"),
    Target(metric="time_above_180_percent", comparison="<", value=25, label="TAR > 180 mg/dL < 25 %"),
    Target(metric="time_above_250_percent", comparison="<", value=5, label="TAR > 250 mg/dL < 5 %"),
    Target(metric="cv_percent", comparison="<=", value=36, label="CV <= 36 %"),
)


def target_met(target: Target, metrics: GlucoseMetrics) -> bool:
    value = float(getattr(metrics, target.metric))
    if target.comparison == ">":
        return value > target.value
    if target.comparison == "<":
        return value < target.value
    return value <= target.value


class CgmCoverage(BaseModel):
    start: datetime | None = Field(description="Period start (exclusive), UTC; null without data")
    end: datetime | None = Field(description="Period end (inclusive): the latest glucose sample, UTC")
    days: int
    sample_period_min: float | None = Field(description="Median spacing of the readings, whole minutes")
    n_readings: int
    percent_time_active: float = Field(description="% of the period's sample slots holding a reading")
    sufficient: bool = Field(description=f"percent_time_active >= {MIN_ACTIVE_PERCENT:g} (Battelino 2019)")


class CgmReport(BaseModel):
    """What a clinician reads from a patient's CGM over a period; all glucose in mg/dL."""

    patient_id: str
    unit: str = "mg/dL"
    time_zone: str = Field(description="Zone of the AGP's time of day (IANA name)")
    time_zone_source: str = Field(default="request", description="Where the zone came from: 'record' (the "
                                  "patient's), 'server' (the configured zone: the record states none) or 'request'")
    coverage: CgmCoverage
    metrics: GlucoseMetrics | None = None
    agp: AmbulatoryGlucoseProfile | None = Field(
        default=None, description="Percentiles by time of day; minute_of_day is the centre of each 15-min bin")
    targets: list[Target] = Field(default_factory=lambda: list(TARGETS))
    targets_met: dict[str, bool] = Field(default_factory=dict)


@dataclass(frozen=True)
class Readings:
    """Samples of one metric: times as UTC epoch seconds (ascending), values in the metric's canonical unit."""

    t: NDArray[np.float64]
    values: NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.t.shape[0])


def latest_time(connection: Connection, patient_id: str, metric: str) -> datetime | None:
    """Time of the patient's newest sample of ``metric``."""
    found = SampleRepository(connection).latest(patient_id, [metric]).get(metric)
    return None if found is None else found.time.astimezone(UTC)


def load_readings(connection: Connection, patient_id: str, metric: str, start: datetime, end: datetime) -> Readings:
    """Samples with ``start < time <= end``, in time order."""
    series = SampleRepository(connection).series(patient_id, metric, start=start + timedelta(microseconds=1),
                                                 end=end + timedelta(microseconds=1))
    t = np.fromiter((x.timestamp() for x in series.times), dtype=float, count=len(series.times))
    return Readings(t, np.asarray(series.values, dtype=float))


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones()) | {"UTC"}


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``, or a :class:`PhysiologyInputError` naming the field ``tz``. Only names of
    the zone database are accepted (never a path: ``ZoneInfo`` alone would open ``America`` as a file)."""
    if name not in _zone_names():
        raise PhysiologyInputError("tz", f"unknown time zone {name[:64]!r}; give an IANA name such as "
                                         "Europe/Berlin or UTC")
    return ZoneInfo(name)


#: FHIR core extension "timezone" (IANA code); on Patient or on one of its addresses
TIMEZONE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/timezone"


def record_zone(patient: dict[str, Any] | None) -> str | None:
    """The patient's IANA time zone as the record states it (the ``timezone`` extension on the Patient or on
    an address), or None: FHIR R4 has no Patient time zone element, most records say nothing."""
    if not patient:
        return None
    holders = [patient, *[a for a in patient.get("address") or [] if isinstance(a, dict)]]
    for holder in holders:
        for ext in holder.get("extension") or []:
            if isinstance(ext, dict) and ext.get("url") == TIMEZONE_EXTENSION and ext.get("valueCode") in _zone_names():
                return str(ext["valueCode"])
    return None


def resolve_zone(store: Store, patient_id: str, requested: str | None, default: str) -> tuple[str, str]:
    """(zone, source) of a patient's times of day: the one asked for, else the record's, else ``default``
    (the server's configured zone). Raises :class:`PhysiologyInputError` (field ``tz``) for an unknown name."""
    if requested:
        return zone(requested).key, "request"
    from medtwin.store.records import RecordRepository

    with store.connect() as connection:
        found = record_zone(RecordRepository(connection, store.codec).get("Patient", patient_id))
    if found:
        return found, "record"
    return zone(default).key, "server"


def minute_of_day(t_epoch_s: NDArray[np.float64], tz: ZoneInfo) -> NDArray[np.float64]:
    """Local minute of day of UTC epoch seconds in ``tz`` (daylight saving handled per reading)."""
    if tz.key == "UTC" or t_epoch_s.size == 0:
        return np.mod(t_epoch_s, 86400.0) / 60.0
    offsets = np.fromiter(
        ((datetime.fromtimestamp(s, UTC).astimezone(tz).utcoffset() or timedelta()).total_seconds()
         for s in t_epoch_s), dtype=float, count=t_epoch_s.size)
    return np.mod(t_epoch_s + offsets, 86400.0) / 60.0


def sample_period_min(t_epoch_s: NDArray[np.float64]) -> float:
    """The median spacing of readings in whole minutes (at least 1); 5 with fewer than two readings."""
    steps = np.diff(np.unique(t_epoch_s))
    if steps.size == 0:
        return 5.0
    return float(max(1.0, np.round(np.median(steps) / 60.0)))


def slot_grid(t_epoch_s: NDArray[np.float64], values: NDArray[np.float64], end_s: float, period_min: float,
              days: int) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Readings placed in the period's slots, oldest first: slot ``k`` back from the latest reading holds
    the readings within half a period of ``end - k * period`` (their mean). Returns (values, filled)."""
    n_slots = int(round(days * 1440.0 / period_min))
    back = np.rint((end_s - t_epoch_s) / (period_min * 60.0)).astype(np.int64)
    keep = (back >= 0) & (back < n_slots)
    index = n_slots - 1 - back[keep]
    sums = np.bincount(index, weights=values[keep], minlength=n_slots)
    counts = np.bincount(index, minlength=n_slots)
    filled = counts > 0
    grid = np.where(filled, sums / np.maximum(counts, 1), np.nan)
    return grid, filled


def compute_cgm_report(patient_id: str, series: Readings, *, end: datetime | None, days: int = DEFAULT_DAYS,
                       tz: ZoneInfo | None = None) -> CgmReport:
    """The report from the readings of the period (``series``, already restricted to it) ending at ``end``."""
    tz = tz or ZoneInfo("UTC")
    if end is None or len(series) == 0:
        return CgmReport(patient_id=patient_id, time_zone=tz.key, coverage=CgmCoverage(
            start=None, end=None, days=days, sample_period_min=None, n_readings=0, percent_time_active=0.0,
            sufficient=False))
    period = sample_period_min(series.t)
    grid, filled = slot_grid(series.t, series.values, end.timestamp(), period, days)
    active = 100.0 * float(filled.mean())
    metrics = glucose_metrics(series.values, period)[0]
    counts = {name: int(count_episodes(grid < threshold if below else grid > threshold, period,
                                       present=filled)[0]) for name, threshold, below in (
        ("hypo_episodes_below_70", HYPO_L1, True), ("hypo_episodes_below_54", HYPO_L2, True),
        ("hyper_episodes_above_180", HYPER_L1, False), ("hyper_episodes_above_250", HYPER_L2, False))}
    metrics = metrics.model_copy(update=counts)
    agp = ambulatory_glucose_profile(minute_of_day(series.t, tz), series.values, bin_min=AGP_BIN_MIN)
    coverage = CgmCoverage(start=end - timedelta(days=days), end=end, days=days, sample_period_min=period,
                           n_readings=len(series), percent_time_active=round(active, 2),
                           sufficient=active >= MIN_ACTIVE_PERCENT)
    return CgmReport(patient_id=patient_id, time_zone=tz.key, coverage=coverage, metrics=metrics, agp=agp,
                     targets_met={t.metric: target_met(t, metrics) for t in TARGETS})


def cgm_report(store: Store, patient_id: str, *, days: int = DEFAULT_DAYS, tz: str | ZoneInfo = "UTC",
               connection: Connection | None = None) -> CgmReport:
    """The CGM report of a stored patient over the ``days`` ending at their latest glucose sample."""
    if not 1 <= days <= MAX_DAYS:
        raise PhysiologyInputError("days", f"must be between 1 and {MAX_DAYS}")
    zone_info = tz if isinstance(tz, ZoneInfo) else zone(tz)

    def run(conn: Connection) -> CgmReport:
        end = latest_time(conn, patient_id, GLUCOSE)
        series = Readings(np.empty(0), np.empty(0)) if end is None else load_readings(
            conn, patient_id, GLUCOSE, end - timedelta(days=days), end)
        return compute_cgm_report(patient_id, series, end=end, days=days, tz=zone_info)

    if connection is not None:
        return run(connection)
    with store.connect() as conn:
        return run(conn)
