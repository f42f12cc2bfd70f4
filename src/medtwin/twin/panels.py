"""The panels of a patient's page (issue #15 item 9) and the NEWS2 trend the vital-signs panel draws.

:func:`patient_panels` reads what the rules need (the twin summary's active problems and medications, the
device metrics with samples, the record's observation codes) and asks :func:`medtwin.model.panels.choose_panels`;
the API serves the answer (``GET /dashboard/patients/{id}/panels``) so the dashboard draws panels without
knowing any rule, and the report leaves out what the page leaves out. :func:`news2_trend` scores every
observation set of a window with the one NEWS2 chart (:mod:`medtwin.alerts.news2`). A panel's quantities
(``model.panels.QUANTITIES``) are served as one chart each (:mod:`medtwin.twin.panel_charts`: one unit, every
code, the original value of each point), with the series it calculates (``model.panels.DERIVED``: eGFR by
CKD-EPI 2021 where no eGFR is reported that day) labelled as calculated.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from pydantic import BaseModel, Field
from sqlalchemy import Connection

from medtwin.alerts import news2 as news2_chart
from medtwin.alerts import service as alert_service
from medtwin.model.panels import QUANTITIES, ChosenPanel, PatientFacts, choose_panels
from medtwin.store.database import Store
from medtwin.store.records import RecordRepository
from medtwin.store.samples import SampleRepository
from medtwin.store.twins import TwinRepository
from medtwin.twin.cgm_report import resolve_zone, zone
from medtwin.twin.panel_charts import QuantityChart, quantity_charts
from medtwin.twin.summary import PatientSummary

__all__ = ["News2Trend", "PanelView", "PanelsAnswer", "facts_of", "news2_trend", "patient_panels"]

INACTIVE = frozenset({"resolved", "inactive", "remission", "refuted", "entered-in-error", "stopped", "completed",
                      "cancelled"})


class PanelView(BaseModel):
    key: str
    title: str
    shown: bool = Field(description="False: chosen for this patient but without data (the page hides it)")
    reasons: list[str] = Field(description="why it was chosen: problem, medication or data")
    series: list[dict[str, Any]] = Field(description="{source: device|record, name, label, has_data}")
    target: list[float] | None = None
    target_label: str = ""
    doses: list[dict[str, Any]] = Field(default_factory=list, description="{medication, dosage, authored_on}")
    score: str | None = None
    events: list[str] = Field(default_factory=list)
    charts: list[QuantityChart] = Field(
        default_factory=list, description="one chart per quantity (model.panels.QUANTITIES), every code in one "
        "unit, reported and calculated series apart, readings a calculation cannot use listed with the reason "
        "(twin.panel_charts)")


class PanelsAnswer(BaseModel):
    patient_id: str
    panels: list[PanelView] = Field(description="in page order; shown ones first in that order")
    device_metrics: list[str] = Field(description="device metrics with samples")
    time_zone: str = Field(description="IANA zone of the patient's times of day (daily overlay, AGP)")
    time_zone_source: str = Field(description="'record' (the patient's) or 'server' (the configured zone: the "
                                  "record states none)")


def facts_of(summary: PatientSummary, device_metrics: set[str]) -> PatientFacts:
    """What the panel rules read from a summary and the device metrics with samples."""
    problems = [(p.code or "", p.display or "") for p in summary.problems if (p.status or "active") not in INACTIVE]
    medications = [(m.code or "", m.display or "") for m in summary.medications
                   if (m.status or "active") not in INACTIVE]
    present = set(device_metrics) | {m.code for m in [*summary.labs, *summary.vitals] if m.value is not None}
    return PatientFacts(problems, medications, frozenset(present))


def _charts(records: RecordRepository, patient_id: str, summary: PatientSummary, chosen: ChosenPanel,
            zone_name: str) -> list[QuantityChart]:
    """The panel's quantity charts, each with what it calculates (eGFR from creatinine) as a series of its own."""
    return quantity_charts(records, patient_id, QUANTITIES.get(chosen.panel.key, ()), chosen.derived,
                           tz=zone(zone_name), birth_date=summary.birth_date, sex=summary.gender)


def _view(chosen: ChosenPanel, summary: PatientSummary, charts: list[QuantityChart]) -> PanelView:
    p = chosen.panel
    doses = [{"medication": m.display or m.code, "dosage": m.dosage,
              "authored_on": m.authored_on.isoformat() if m.authored_on else None}
             for m in summary.medications if (m.status or "active") not in INACTIVE
             and any(word in (m.display or "").lower() for word in p.doses)]
    with_data = {s.name for s in chosen.with_data}
    return PanelView(key=p.key, title=p.title, shown=chosen.shown, reasons=list(chosen.reasons),
                     series=[{**vars(s), "has_data": s.name in with_data} for s in p.series],
                     target=list(p.target) if p.target else None, target_label=p.target_label, doses=doses,
                     score=p.score, events=list(p.events), charts=charts)


def _device_metrics(connection: Connection, store: Store, patient_id: str) -> set[str]:
    return set(SampleRepository(connection, store.codec).latest(patient_id))


def patient_panels(store: Store, patient_id: str, *, default_zone: str = "UTC") -> PanelsAnswer:
    """The panels of the patient's page, chosen from the latest summary and the stored data; with the zone of
    the patient's times of day (the record's, else ``default_zone``)."""
    zone_name, source = resolve_zone(store, patient_id, None, default_zone)
    with store.connect() as connection:
        record = TwinRepository(connection, store.codec).latest(patient_id, "record")
        summary = (PatientSummary.model_validate(record.payload) if record is not None
                   else PatientSummary(patient_id=patient_id, name=None, gender=None, birth_date=None, age_years=None))
        metrics = _device_metrics(connection, store, patient_id)
        chosen = choose_panels(facts_of(summary, metrics))
        records = RecordRepository(connection, store.codec)
        views = [_view(c, summary, _charts(records, patient_id, summary, c, zone_name)) for c in chosen]
    views.sort(key=lambda v: not v.shown)  # stable: the page order among shown ones, hidden ones after
    return PanelsAnswer(patient_id=patient_id, panels=views, device_metrics=sorted(metrics), time_zone=zone_name,
                        time_zone_source=source)


class News2Trend(BaseModel):
    times: list[datetime] = Field(description="time of each scored observation set (UTC)")
    scores: list[int]
    risks: list[str] = Field(description="RCP 2017 band of each score (vocab news2.risk_bands)")
    complete: list[bool] = Field(description="False: a parameter was missing (the score is a lower bound)")


def _series(repo: SampleRepository, patient_id: str, start: datetime, end: datetime
            ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for metric in sorted(news2_chart.NEWS2_METRICS):
        found = repo.series(patient_id, metric, start=start - news2_chart.DEFAULT_WINDOW, end=end + timedelta(seconds=1))
        if found.times:
            out[metric] = (np.asarray([t.timestamp() for t in found.times]), np.asarray(found.values, dtype=float))
    return out


def news2_trend(store: Store, patient_id: str, *, hours: float = 24.0, most: int = 288) -> News2Trend:
    """NEWS2 of each observation set in the ``hours`` before the newest vital sign (at most ``most`` sets,
    evenly thinned), each scored from the latest value of every parameter within the chart's window before
    it, on the patient's SpO2 scale: the trend drawn under the flowsheet."""
    trend = News2Trend(times=[], scores=[], risks=[], complete=[])
    with store.connect() as connection:
        repo = SampleRepository(connection, store.codec)
        latest = repo.latest(patient_id, sorted(news2_chart.NEWS2_METRICS))
        if not latest:
            return trend
        end = max(s.time for s in latest.values())
        columns = _series(repo, patient_id, end - timedelta(hours=hours), end)
        scale, _ = alert_service.spo2_scale(connection, store.codec, patient_id)
    start_s = (end - timedelta(hours=hours)).timestamp()
    stamps = np.unique(np.concatenate([t for t, _v in columns.values()]))
    stamps = stamps[stamps >= start_s]
    if len(stamps) > most:
        stamps = stamps[np.linspace(0, len(stamps) - 1, most).round().astype(int)]
    for stamp in stamps:
        _score_at(trend, columns, float(stamp), scale)
    return trend


def _score_at(trend: News2Trend, columns: dict[str, tuple[np.ndarray, np.ndarray]], stamp: float, scale: int) -> None:
    at = datetime.fromtimestamp(stamp, tz=UTC)
    latest = {}
    for metric, (t, v) in columns.items():
        i = int(np.searchsorted(t, stamp, side="right")) - 1
        if i >= 0:
            latest[metric] = (datetime.fromtimestamp(float(t[i]), tz=UTC), float(v[i]))
    chosen = news2_chart.observation_set(latest, at=at)
    if chosen is None:
        return
    try:
        result = news2_chart.score(chosen.vitals, scale)
    except news2_chart.News2InputError:  # a value outside the chart: no score for this set
        return
    trend.times.append(at)
    trend.scores.append(int(result.aggregate))
    trend.risks.append(str(result.risk))
    trend.complete.append(bool(result.complete))
