"""The clinician's patient list: each visible twin's latest state and how urgently it needs a look.

One row per patient: who (from the latest ``record`` twin version), the latest CGM glucose with its trend,
the latest heart rate (both from ``samples``), the unresolved alerts (``alerts``) and a NEWS2 score when one
is known. Rows come back most urgent first, ordered by, in turn:

1. the NEWS2 clinical-risk band (high > medium > low-medium > low = none: a low score calls for no
   escalation; Royal College of Physicians, *National Early Warning Score (NEWS) 2*, 2017, chart 4),
2. predicted hypoglycaemia (an unresolved ``predicted-hypo`` alert),
3. the highest severity among open (unacknowledged) alerts, then among acknowledged ones,
4. the number of open alerts,
5. then by name.

The glucose trend is the least-squares slope of the CGM readings in the 15 minutes up to the latest one,
binned like the trend arrows of common CGM systems (Dexcom G6 user guide): steady within +-1 mg/dL/min,
slowly 1-2, moderately 2-3, fast above 3 mg/dL/min.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import Connection, select

from medtwin.alerts import service as alert_service
from medtwin.alerts.news2 import News2InputError
from medtwin.store.codec import Codec
from medtwin.store.database import Store
from medtwin.store.live_tables import alerts
from medtwin.store.records import RecordRepository
from medtwin.store.schema import samples
from medtwin.store.twins import TwinRepository
from medtwin.vocab import GLUCOSE, HEART_RATE
from medtwin.vocab.display import short_name
from medtwin.vocab.forecast import STEADY_MG_DL_PER_MIN, TREND_WINDOW_MIN, glucose_trend_mg_dl_per_min
from medtwin.vocab.news2 import news2_text

__all__ = ["AlertCounts", "GlucoseReading", "News2Brief", "OverviewPage", "PatientOverview", "Reading",
           "TREND_WINDOW", "STALE_AFTER", "device_news2", "glucose_trend", "patient_overview", "trend_category"]

Clock = Callable[[], datetime]
Trend = Literal["falling-fast", "falling", "falling-slowly", "steady", "rising-slowly", "rising", "rising-fast"]

TREND_WINDOW = timedelta(minutes=TREND_WINDOW_MIN)
#: A reading older than this (against the clock) is flagged stale: a sensor may have stopped sending.
STALE_AFTER = timedelta(minutes=15)
SEVERITY_RANK: dict[str, int] = {"low": 1, "medium": 2, "high": 3, "critical": 4}
#: A low NEWS2 (aggregate 0-4, no red score) needs no escalation: it ranks like no score at all.
NEWS2_BAND_RANK: dict[str, int] = {"low": 0, "low-medium": 2, "medium": 3, "high": 4}
UNRESOLVED = ("open", "acknowledged")
PREDICTED_HYPO_RULE = "predicted-hypo"


class Reading(BaseModel):
    value: float
    unit: str
    time: datetime
    stale: bool = Field(description=f"older than {int(STALE_AFTER.total_seconds() // 60)} min at the time of the "
                                    "request")


class GlucoseReading(Reading):
    trend_mg_dl_per_min: float | None = Field(description="slope of the last 15 min of readings; null with fewer "
                                                          "than two readings 4+ min apart")
    trend: Trend | None


class News2Brief(BaseModel):
    score: int
    band: str = Field(description="low | low-medium | medium | high")
    time: datetime | None = None
    complete: bool | None = Field(default=None, description="all seven parameters measured within the window; an "
                                                            "incomplete set's score is a lower bound")


class AlertCounts(BaseModel):
    open: int = Field(description="unresolved, not acknowledged")
    acknowledged: int
    by_severity: dict[str, int] = Field(description="unresolved alerts per severity")
    top_severity: str | None = Field(description="highest severity among unresolved alerts")
    top_message: str | None = Field(description="message of the most severe, most recent unresolved alert")


class PatientOverview(BaseModel):
    id: str
    name: str | None
    gender: str | None
    age_years: int | None
    twin_version: int | None
    problems: list[str] = Field(description="active problems (display names, up to 5)")
    n_problems: int
    n_medications: int
    glucose: GlucoseReading | None
    heart_rate: Reading | None
    news2: News2Brief | None
    predicted_hypo: bool
    alerts: AlertCounts
    urgency_rank: int = Field(description="1 = most urgent; the order of the list")
    reasons: list[str] = Field(description="why the row is where it is, most important first")


class OverviewPage(BaseModel):
    total: int
    limit: int
    offset: int
    generated_at: datetime
    items: list[PatientOverview]


def trend_category(rate_mg_dl_per_min: float) -> Trend:
    """The CGM trend arrow of a rate of change (mg/dL/min)."""
    magnitude = abs(rate_mg_dl_per_min)
    if magnitude <= STEADY_MG_DL_PER_MIN:
        return "steady"
    direction = "rising" if rate_mg_dl_per_min > 0 else "falling"
    if magnitude <= 2.0:
        return f"{direction}-slowly"  # type: ignore[return-value]
    if magnitude <= 3.0:
        return direction  # type: ignore[return-value]
    return f"{direction}-fast"  # type: ignore[return-value]


def glucose_trend(points: Sequence[tuple[datetime, float]]) -> float | None:
    """Least-squares slope (mg/dL/min) of the readings within :data:`TREND_WINDOW` of the newest one
    (``points`` newest first); None with fewer than two readings or a span under 4 minutes. The one
    definition is :func:`medtwin.vocab.forecast.glucose_trend_mg_dl_per_min` (the forecast and the alerts
    quote the same trend)."""
    if not points:
        return None
    newest = points[0][0]
    return glucose_trend_mg_dl_per_min([(t - newest).total_seconds() / 60.0 for t, _ in points],
                                       [v for _, v in points])


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _latest(connection: Connection, patient_id: str, metric: str, n: int) -> list[tuple[datetime, float, str]]:
    rows = connection.execute(
        select(samples.c.time, samples.c.value, samples.c.unit)
        .where(samples.c.patient_id == patient_id, samples.c.metric == metric)
        .order_by(samples.c.time.desc()).limit(n)
    ).all()
    return [(_aware(r.time), float(r.value), str(r.unit)) for r in rows]


def _alerts_by_patient(connection: Connection, patient_ids: Iterable[str]) -> dict[str, list[Any]]:
    ids = list(patient_ids)
    found: dict[str, list[Any]] = {}
    for start in range(0, len(ids), 500):  # bound the IN list
        rows = connection.execute(
            select(alerts.c.patient_id, alerts.c.rule, alerts.c.severity, alerts.c.status, alerts.c.message,
                   alerts.c.opened_at, alerts.c.condition_cleared_at)
            .where(alerts.c.status.in_(UNRESOLVED), alerts.c.patient_id.in_(ids[start:start + 500]))
        ).all()
        for row in rows:
            found.setdefault(str(row.patient_id), []).append(row)
    return found


def _alert_counts(rows: list[Any]) -> AlertCounts:
    by_severity: dict[str, int] = {}
    for row in rows:
        by_severity[row.severity] = by_severity.get(row.severity, 0) + 1
    top = max(rows, key=lambda r: (SEVERITY_RANK.get(r.severity, 0), r.status == "open", _aware(r.opened_at)),
              default=None)
    return AlertCounts(open=sum(r.status == "open" for r in rows), acknowledged=sum(r.status == "acknowledged"
                                                                                     for r in rows),
                       by_severity=by_severity, top_severity=None if top is None else top.severity,
                       top_message=None if top is None else top.message)


def _max_severity(rows: list[Any], status: str) -> int:
    return max((SEVERITY_RANK.get(r.severity, 0) for r in rows if r.status == status), default=0)


def _reading(points: list[tuple[datetime, float, str]], now: datetime) -> Reading | None:
    if not points:
        return None
    time, value, unit = points[0]
    return Reading(value=value, unit=unit, time=time, stale=now - time > STALE_AFTER)


def _glucose(points: list[tuple[datetime, float, str]], now: datetime) -> GlucoseReading | None:
    if not points:
        return None
    time, value, unit = points[0]
    rate = glucose_trend([(t, v) for t, v, _ in points])
    return GlucoseReading(value=value, unit=unit, time=time, stale=now - time > STALE_AFTER,
                          trend_mg_dl_per_min=None if rate is None else round(rate, 2),
                          trend=None if rate is None else trend_category(rate))


News2Source = Callable[[Connection, str], News2Brief | None]


def device_news2(codec: Codec) -> News2Source:
    """NEWS2 (RCP 2017) of the newest observation set of a patient's device vital signs on the patient's SpO2
    scale, as ``GET /patients/{id}/news2`` computes it (:func:`medtwin.alerts.service.latest_news2`); None
    without any NEWS2 parameter or with a value the chart cannot score."""

    def source(connection: Connection, patient_id: str) -> News2Brief | None:
        try:
            found = alert_service.latest_news2(connection, codec, patient_id)
        except News2InputError:
            return None
        if found is None:
            return None
        return News2Brief(score=int(found["aggregate"]), band=str(found["risk"]),
                          time=_aware(datetime.fromisoformat(found["at"])), complete=bool(found["complete"]))

    return source


def _patient_ids(records: RecordRepository, query: str | None, allowed: frozenset[str] | None) -> list[str]:
    if not query or not query.strip():
        return records.patient_ids(allowed=allowed)
    by_name = records.patient_ids(name=query, allowed=allowed)
    by_identifier = records.patient_ids(identifier=query.strip(), allowed=allowed)
    by_id = [query.strip()] if records.exists("Patient", query.strip()) and (
        allowed is None or query.strip() in allowed) else []
    seen: dict[str, None] = {}
    for pid in (*by_name, *by_identifier, *by_id):
        seen.setdefault(pid, None)
    return list(seen)


def patient_overview(
    store: Store,
    *,
    allowed: frozenset[str] | None,
    query: str | None = None,
    limit: int = 100,
    offset: int = 0,
    clock: Clock = lambda: datetime.now(UTC),
    news2: News2Source | None = None,
) -> OverviewPage:
    """The visible patients (``allowed``: None for all) matching ``query`` (name words, an identifier such
    as the MRN, or the id), most urgent first, paged."""
    now = clock()
    news2 = news2 or device_news2(store.codec)
    rows: list[tuple[tuple[Any, ...], PatientOverview]] = []
    with store.connect() as connection:
        records = RecordRepository(connection, store.codec)
        twins = TwinRepository(connection, store.codec)
        ids = _patient_ids(records, query, allowed)
        open_alerts = _alerts_by_patient(connection, ids)
        for patient_id in ids:
            latest = twins.latest(patient_id, "record")
            summary: dict[str, Any] = latest.payload if latest else {}
            alert_rows = open_alerts.get(patient_id, [])
            glucose = _glucose(_latest(connection, patient_id, GLUCOSE, 12), now)
            heart = _reading(_latest(connection, patient_id, HEART_RATE, 1), now)
            score = news2(connection, patient_id)
            # a serious alert whose condition cleared stays unresolved for a person: no longer a prediction
            predicted_hypo = any(r.rule == PREDICTED_HYPO_RULE and r.condition_cleared_at is None for r in alert_rows)
            counts = _alert_counts(alert_rows)
            reasons = []
            band_rank = NEWS2_BAND_RANK.get(score.band, 0) if score else 0
            if score and band_rank >= NEWS2_BAND_RANK["low-medium"]:
                reasons.append(news2_text(score.score, score.band))  # the one mapping: "NEWS2 7: high clinical risk"
            if predicted_hypo:
                reasons.append("predicted hypoglycaemia")
            if counts.top_severity:
                reasons.append(f"{counts.open + counts.acknowledged} unresolved alert(s), top {counts.top_severity}")
            name = summary.get("name")
            key = (-band_rank, -int(predicted_hypo), -_max_severity(alert_rows, "open"),
                   -_max_severity(alert_rows, "acknowledged"), -counts.open, (name or "~").lower(), patient_id)
            problems = [short_name(p.get("code"), p.get("display")) or "?" for p in summary.get("problems") or []]
            rows.append((key, PatientOverview(
                id=patient_id, name=name, gender=summary.get("gender"), age_years=summary.get("age_years"),
                twin_version=latest.version if latest else None, problems=problems[:5], n_problems=len(problems),
                n_medications=len(summary.get("medications") or []), glucose=glucose, heart_rate=heart,
                news2=score, predicted_hypo=predicted_hypo, alerts=counts, urgency_rank=0, reasons=reasons,
            )))
    rows.sort(key=lambda pair: pair[0])
    items = []
    for rank, (_, item) in enumerate(rows, start=1):
        item.urgency_rank = rank
        items.append(item)
    return OverviewPage(total=len(items), limit=limit, offset=offset, generated_at=now,
                        items=items[offset:offset + limit])
