"""The one-page patient twin report for the clinician: who the patient is, what they have and take, their
latest vitals and labs, CGM metrics with the AGP, recent device trends, the live glucose forecast, open
alerts with the latest NEWS2, and which twin version (with provenance) it was drawn from.

:func:`build_report` collects a :class:`PatientReport` from the store (one read, no writes);
:func:`render_html` turns it into a self-contained HTML page (inline CSS and SVG charts, no scripts, no
external resources) and :func:`render_pdf` into one A4 page (matplotlib, DejaVu Sans embedded).
All times are UTC except the AGP's time of day, which is in the zone the CGM report names.

Optional parts degrade to "none": a patient without samples has no CGM section or device trends (vital
trends then come from the record's observations), without a live glucose filter there is no forecast, and
without alert rows no alerts or NEWS2.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import io
import re
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from pydantic import BaseModel, Field
from sqlalchemy import Connection, func, select

from medtwin import __version__
from medtwin.alerts import news2
from medtwin.alerts import service as alert_service
from medtwin.alerts.repository import STATUSES, AlertRepository
from medtwin.clock import as_utc
from medtwin.physiology.metrics import AmbulatoryGlucoseProfile
from medtwin.store.codec import Codec
from medtwin.store.database import Store
from medtwin.store.records import RecordRepository
from medtwin.store.schema import twin_versions
from medtwin.store.twins import TwinRepository
from medtwin.twin import live
from medtwin.twin.cgm_report import (
    DEFAULT_DAYS,
    TARGETS,
    CgmReport,
    Readings,
    cgm_report,
    latest_time,
    load_readings,
)
from medtwin.twin.glucose import SIMULATION_KIND as GLUCOSE_RUN_KIND
from medtwin.twin.panels import PanelsAnswer, PanelView, patient_panels
from medtwin.twin.pharmacogenomics import SIMULATION_KIND as DRUG_RUN_KIND
from medtwin.twin.pharmacogenomics import PgxSummary, pgx_summary
from medtwin.twin.summary import AllergyItem, Measurement, MedicationItem, PatientSummary, Problem, age_years
from medtwin.vocab import DIASTOLIC_BP, GLUCOSE, HEART_RATE, SPO2, SYSTOLIC_BP, GlucoseForecast
from medtwin.vocab import metrics as vocab_metrics
from medtwin.vocab.display import display_unit, display_value, short_name
from medtwin.vocab.glucose import HYPER_L1, HYPER_L2, HYPO_L1, HYPO_L2
from medtwin.vocab.metrics import BODY_TEMPERATURE, RESPIRATORY_RATE
from medtwin.vocab.news2 import news2_bands, news2_text

DEFAULT_TREND_DAYS = 7
TREND_BUCKETS = 336  # 7 days -> 30-minute buckets
LEVEL_TICKS = tuple(round(v) for v in (HYPO_L2, HYPO_L1, HYPER_L1, HYPER_L2))  # glucose axes: the thresholds
MR_TYPE = "MR"


# --- the report's data ----------------------------------------------------------------------------------


class Identity(BaseModel):
    patient_id: str
    name: str | None
    mrn: str | None
    gender: str | None
    birth_date: date | None
    age_years: int | None
    deceased: bool = False


class TrendSeries(BaseModel):
    """One metric over a window: bucket means with min-max (device samples) or single observations (record)."""

    metric: str
    label: str
    source: Literal["device", "record"]
    n_samples: int
    start: datetime
    end: datetime
    t: list[float] = Field(description="UTC epoch seconds (bucket centres)")
    mean: list[float]
    low: list[float]
    high: list[float]


class TrendChart(BaseModel):
    key: str
    title: str
    unit: str
    series: list[TrendSeries] = Field(default_factory=list)
    band: tuple[float, float] | None = Field(default=None, description="Reference band drawn behind the data")


class AlertItem(BaseModel):
    rule: str
    severity: str
    status: str
    opened_at: datetime
    last_seen_at: datetime
    score: float | None
    message: str


class News2View(BaseModel):
    """The latest NEWS2: scored now from the newest device vital signs, else the latest NEWS2 alert's score."""

    score: float | None
    at: datetime
    risk: str | None = Field(default=None, description="low | low-medium | medium | high (RCP 2017 Chart 2)")
    source: Literal["device vitals", "alert"]
    missing: list[str] = Field(default_factory=list, description="Parameters without a value in the hour before")
    spo2_scale: int | None = Field(default=None, description="SpO2 scale the score used (1, or 2 for hypercapnia)")
    alert_status: str | None = None


class TwinInfo(BaseModel):
    n_versions: int
    latest_version: int | None = None
    latest_kind: str | None = None
    latest_created_at: datetime | None = None
    latest_actor: str | None = None
    latest_provenance: dict[str, str] = Field(default_factory=dict)
    record_version: int | None = None
    record_created_at: datetime | None = None
    record_provenance: dict[str, str] = Field(default_factory=dict)


class PatientReport(BaseModel):
    identity: Identity
    problems: list[Problem]
    medications: list[MedicationItem]
    allergies: list[AllergyItem]
    pgx: PgxSummary | None
    vitals: list[Measurement]
    labs: list[Measurement]
    cgm: CgmReport
    trends: list[TrendChart]
    forecast: GlucoseForecast | None
    alerts: list[AlertItem]
    open_alerts_total: int
    news2: News2View | None
    twin: TwinInfo
    trend_days: int
    generated_at: datetime
    medtwin_version: str = __version__


# --- collecting it --------------------------------------------------------------------------------------


def _mrn(patient: dict[str, Any] | None) -> str | None:
    if not patient:
        return None
    for ident in patient.get("identifier") or []:
        if not isinstance(ident, dict) or not ident.get("value"):
            continue
        codings = (ident.get("type") or {}).get("coding") or [] if isinstance(ident.get("type"), dict) else []
        if any(isinstance(c, dict) and c.get("code") == MR_TYPE for c in codings):
            return str(ident["value"])
    return None


def _bucketed(series: Readings, start: datetime, end: datetime, *, metric: str, label: str,
              buckets: int = TREND_BUCKETS) -> TrendSeries:
    start_s, end_s = start.timestamp(), end.timestamp()
    width = max((end_s - start_s) / buckets, 1.0)
    index = np.clip(((series.t - start_s) // width).astype(np.int64), 0, buckets - 1)
    present, first = np.unique(index, return_index=True)  # series.t is sorted, so index is too
    counts = np.diff(np.append(first, index.size))
    means = np.add.reduceat(series.values, first) / counts
    return TrendSeries(
        metric=metric, label=label, source="device", n_samples=len(series), start=start, end=end,
        t=(start_s + (present + 0.5) * width).round(1).tolist(), mean=means.round(2).tolist(),
        low=np.minimum.reduceat(series.values, first).tolist(), high=np.maximum.reduceat(series.values, first).tolist())


def _device_trend(conn: Connection, patient_id: str, metric: str, label: str, days: int) -> TrendSeries | None:
    end = latest_time(conn, patient_id, metric)
    if end is None:
        return None
    start = end - timedelta(days=days)
    series = load_readings(conn, patient_id, metric, start, end)
    return _bucketed(series, start, end, metric=metric, label=label) if len(series) else None


def _record_trend(records: RecordRepository, patient_id: str, codes: Sequence[str], metric: str, label: str,
                  limit: int = 24) -> TrendSeries | None:
    """The latest observations of a vital sign from the record, when no device sends it."""
    points: list[tuple[datetime, float]] = []
    for code in codes:
        _, rows = records.observations(patient_id, code=code, limit=limit)
        points += [(r["effective"], float(r["value"])) for r in rows
                   if r["effective"] is not None and r["value"] is not None]
    if not points:
        return None
    points = sorted(points)[-limit:]
    t = [p[0].timestamp() for p in points]
    v = [p[1] for p in points]
    return TrendSeries(metric=metric, label=label, source="record", n_samples=len(points), start=points[0][0],
                       end=points[-1][0], t=t, mean=v, low=v, high=v)


#: trend charts of vital signs: key, title, (metric, series label), reference band; units and LOINC codes are
#: the vocabulary's
_VITALS: tuple[tuple[str, str, tuple[tuple[str, str], ...], tuple[float, float] | None], ...] = (
    ("respiratory_rate", "Respiration rate", ((RESPIRATORY_RATE, "respiration rate"),), None),
    ("spo2", "SpO\u2082", ((SPO2, "SpO\u2082"),), (94.0, 100.0)),
    ("blood_pressure", "Blood pressure", ((SYSTOLIC_BP, "systolic"), (DIASTOLIC_BP, "diastolic")), None),
    ("heart_rate", "Heart rate", ((HEART_RATE, "heart rate"),), None),
    ("body_temperature", "Body temperature", ((BODY_TEMPERATURE, "temperature"),), None),
)


def _vital_charts(conn: Connection, records: RecordRepository, patient_id: str, days: int) -> list[TrendChart]:
    table = vocab_metrics()
    charts = []
    for key, title, metrics, band in _VITALS:
        chart = TrendChart(key=key, title=title, unit=table[metrics[0][0]].display_unit, band=band)
        found = [s for s in (_device_trend(conn, patient_id, m, lab, days) for m, lab in metrics) if s]
        if not found:
            found = [s for s in (_record_trend(records, patient_id, table[m].loinc, m, lab) for m, lab in metrics)
                     if s]
        chart.series = found
        charts.append(chart)
    return charts


def _quantity_charts(panel: PanelView, limit: int = 24) -> list[TrendChart]:
    """A panel's quantity charts (``twin.panel_charts``: every code in one unit, the reported and the calculated
    series apart, a calculated one titled by its label, which says "calculated (CKD-EPI 2021)"): as on the page."""
    charts = []
    for c in panel.charts:
        series = []
        for s in c.series:
            points = s.points[-limit:]
            if points:
                v = [p.value for p in points]
                label = s.label if s.kind == "calculated" else "reported" if len(c.series) > 1 else c.label
                recorded = sorted({f"LOINC {p.code} in {display_unit(p.original_unit)}" for p in points})
                if s.kind == "reported" and len(recorded) > 1:  # merged codes/units: say what was recorded
                    label += f"; recorded as {', '.join(recorded)}"
                series.append(TrendSeries(metric=f"{c.key}-{s.name}", label=label, source="record", n_samples=len(v),
                                          start=points[0].time, end=points[-1].time,
                                          t=[p.time.timestamp() for p in points], mean=v, low=v, high=v))
        if series:
            charts.append(TrendChart(key=f"{panel.key}-{c.key}", title=c.label, unit=display_unit(c.unit),
                                     series=series))
    return charts


def _trends(conn: Connection, records: RecordRepository, patient_id: str, days: int,
            panels: PanelsAnswer) -> list[TrendChart]:
    """The trend charts with data, in the order of the patient page's panels (CGM first for diabetes, the vital
    signs of the NEWS2 flowsheet, then the record panels' series: INR with its target range, eGFR,
    creatinine): what the page shows, never an empty chart (#15 item 9)."""
    table = vocab_metrics()
    by_panel: dict[str, list[TrendChart]] = {}
    glucose = _device_trend(conn, patient_id, GLUCOSE, "glucose", days)
    if glucose is not None:
        by_panel["cgm"] = [TrendChart(key="glucose", title="CGM glucose", unit=table[GLUCOSE].display_unit,
                                      band=(HYPO_L1, HYPER_L1), series=[glucose])]
    by_panel["vitals"] = [c for c in _vital_charts(conn, records, patient_id, days) if c.series]
    for panel in panels.panels:
        if not panel.shown or panel.key in by_panel:
            continue
        if panel.charts:  # one chart per quantity, not one per code (kidney: eGFR, creatinine)
            by_panel[panel.key] = _quantity_charts(panel)
            continue
        charts = []
        for k, s in enumerate(x for x in panel.series if x["source"] == "record" and x["has_data"]):
            found = _record_trend(records, patient_id, (s["name"],), s["name"], s["label"])
            if found is None:
                continue
            _, rows = records.observations(patient_id, code=s["name"], limit=1)
            unit = display_unit(rows[0].get("unit")) if rows else ""
            band = tuple(panel.target) if panel.target and k == 0 else None
            charts.append(TrendChart(key=f"{panel.key}-{s['name']}", title=s["label"], unit=unit, series=[found],
                                     band=band))  # type: ignore[arg-type]
        by_panel[panel.key] = charts
    order = ["cgm", "vitals", *(p.key for p in panels.panels if p.shown)]  # the page's order, record vitals too
    keys = [*dict.fromkeys([*order, *by_panel])]
    return [c for key in keys for c in by_panel.get(key, [])]


def _forecast(conn: Connection, codec: Codec, patient_id: str) -> GlucoseForecast | None:
    """The live glucose twin's last saved forecast (:func:`medtwin.twin.live.latest_forecast`), or None."""
    try:
        found = live.latest_forecast(conn, codec, patient_id)
    except (KeyError, TypeError, ValueError):  # a state this version cannot read: no forecast, still a report
        return None
    return found


def _alerts(conn: Connection, codec: Codec, patient_id: str, now: datetime, limit: int = 8
            ) -> tuple[list[AlertItem], int, News2View | None]:
    """Unresolved alerts, most urgent first (the alert list's own order), and the latest NEWS2: scored from
    the newest device vital signs on the patient's SpO2 scale as ``GET /patients/{id}/news2`` and the
    dashboard do (:func:`medtwin.alerts.service.latest_news2`), else the score of the latest NEWS2 alert."""
    repository = AlertRepository(conn, codec, lambda: now)
    total, rows = repository.list(patient_id=patient_id, limit=limit)
    items = [AlertItem(rule=a.rule, severity=a.severity, status=a.status, opened_at=as_utc(a.opened_at),
                       last_seen_at=as_utc(a.last_seen_at), score=a.score, message=a.message) for a in rows]
    try:
        scored = alert_service.latest_news2(conn, codec, patient_id)
    except news2.News2InputError:  # a stored value outside the chart: no score rather than no report
        scored = None
    if scored is not None:
        return items, total, News2View(score=scored["aggregate"], at=as_utc(datetime.fromisoformat(scored["at"])),
                                       risk=scored["risk"], source="device vitals", missing=list(scored["missing"]),
                                       spo2_scale=scored.get("spo2_scale"))
    _, latest = repository.list(patient_id=patient_id, statuses=STATUSES, rule="news2", limit=1)
    if not latest:
        return items, total, None
    alert = latest[0]
    risk = alert.details.get("risk")
    return items, total, News2View(score=alert.score, at=as_utc(alert.last_seen_at), source="alert",
                                   alert_status=alert.status, risk=risk if isinstance(risk, str) else None)


def _flat(provenance: dict[str, Any], limit: int = 8) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in provenance.items():
        if len(out) >= limit:
            break
        if isinstance(value, str | int | float | bool) and value != "":
            out[str(key)] = str(value)
            if isinstance(value, str) and re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+(Z|[+-]\d\d:\d\d)?", value):
                with contextlib.suppress(ValueError):
                    out[str(key)] = fmt_time(datetime.fromisoformat(value))
    return out


def _twin_info(conn: Connection, codec: Codec, patient_id: str, record: Any) -> TwinInfo:
    twins = TwinRepository(conn, codec)
    n = int(conn.execute(select(func.count()).select_from(twin_versions)
                         .where(twin_versions.c.patient_id == patient_id)).scalar_one())
    latest = twins.latest(patient_id)
    info = TwinInfo(n_versions=n)
    if latest is not None:
        info.latest_version, info.latest_kind = latest.version, latest.kind
        info.latest_created_at, info.latest_actor = latest.created_at, latest.actor
        info.latest_provenance = _flat(latest.provenance)
    if record is not None:
        info.record_version, info.record_created_at = record.version, record.created_at
        info.record_provenance = _flat(record.provenance)
    return info


def build_report(store: Store, patient_id: str, *, now: datetime, days: int = DEFAULT_DAYS,
                 trend_days: int = DEFAULT_TREND_DAYS, tz: str = "UTC") -> PatientReport | None:
    """Everything the report shows for a stored patient (their stored id); None if there is no such patient."""
    panels = patient_panels(store, patient_id)
    with store.connect() as conn:
        records = RecordRepository(conn, store.codec)
        patient = records.get("Patient", patient_id)
        record = TwinRepository(conn, store.codec).latest(patient_id, "record")
        if patient is None and record is None:
            return None
        summary = (PatientSummary.model_validate(record.payload) if record is not None
                   else PatientSummary(patient_id=patient_id, name=None, gender=None, birth_date=None, age_years=None))
        cgm = cgm_report(store, patient_id, days=days, tz=tz, connection=conn)
        trends = _trends(conn, records, patient_id, trend_days, panels)
        forecast = _forecast(conn, store.codec, patient_id)
        alert_items, alert_total, news2_view = _alerts(conn, store.codec, patient_id, now)
        twin = _twin_info(conn, store.codec, patient_id, record)
    pgx = pgx_summary(store, patient_id)
    identity = Identity(patient_id=patient_id, name=summary.name, mrn=_mrn(patient), gender=summary.gender,
                        birth_date=summary.birth_date, deceased=summary.deceased,
                        age_years=age_years(summary.birth_date, now.date()) if not summary.deceased else summary.age_years)
    labs = sorted(summary.labs, key=lambda m: m.time or datetime.min.replace(tzinfo=UTC), reverse=True)
    return PatientReport(
        identity=identity, problems=summary.problems, medications=summary.medications, allergies=summary.allergies,
        pgx=pgx, vitals=summary.vitals, labs=labs, cgm=cgm, trends=trends, forecast=forecast, alerts=alert_items,
        open_alerts_total=alert_total, news2=news2_view, twin=twin, trend_days=trend_days, generated_at=now)


# --- text shared by both renderings ---------------------------------------------------------------------


def fmt_measurement(m: Measurement) -> str:
    """The value with its display unit (vocab.display: "37 °C", "2.9" for INR; the UCUM code stays in the
    data), rounded by the vocabulary's one rule as the page rounds it (``display_value``: 174.5 cm -> 175)."""
    value = m.text or "" if m.value is None else f"{display_value(m.value)} {display_unit(m.unit)}".strip()
    return value


def fmt_name(m: Measurement | Problem) -> str:
    """The short display name (vocab.display: "INR", "Atrial fibrillation"), else the record's display text."""
    return short_name(m.code, m.display)


def fmt_codes(m: Measurement) -> str:
    """The full name and codes, for a tooltip: "INR in Platelet poor plasma ... · LOINC 6301-6 · UCUM {INR}"."""
    return " · ".join(x for x in (m.display, f"LOINC {m.code}" if m.code else None,
                                  f"UCUM {m.unit}" if m.unit else None) if x)


def fmt_day(value: datetime | date | None) -> str:
    return "" if value is None else f"{value:%Y-%m-%d}"


def fmt_time(value: datetime | None) -> str:
    return "" if value is None else f"{as_utc(value):%Y-%m-%d %H:%M} UTC"


def identity_line(identity: Identity) -> str:
    parts = [f"MRN {identity.mrn}" if identity.mrn else "no MRN", identity.gender or "sex unknown"]
    if identity.age_years is not None:
        parts.append(f"{identity.age_years} y")
    if identity.birth_date:
        parts.append(f"born {identity.birth_date:%Y-%m-%d}")
    if identity.deceased:
        parts.append("deceased")
    parts.append(f"id {identity.patient_id}")
    return " \u00b7 ".join(parts)


def cgm_lines(cgm: CgmReport) -> list[tuple[str, str, bool | None]]:
    """(label, value, target met or None) rows of the CGM metrics."""
    m = cgm.metrics
    if m is None:
        return []
    met = cgm.targets_met
    return [
        ("Mean glucose", f"{m.mean_mg_dl:.0f} mg/dL", None),
        ("GMI", f"{m.gmi_percent:.1f} %", None),
        ("CV", f"{m.cv_percent:.1f} %", met.get("cv_percent")),
        ("TIR 70\u2013180", f"{m.time_in_range_70_180_percent:.1f} %", met.get("time_in_range_70_180_percent")),
        ("TBR <70 / <54", f"{m.time_below_70_percent:.1f} % / {m.time_below_54_percent:.1f} %",
         met.get("time_below_70_percent", True) and met.get("time_below_54_percent", True)),
        ("TAR >180 / >250", f"{m.time_above_180_percent:.1f} % / {m.time_above_250_percent:.1f} %",
         met.get("time_above_180_percent", True) and met.get("time_above_250_percent", True)),
        ("Hypo episodes <70 / <54", f"{m.hypo_episodes_below_70} / {m.hypo_episodes_below_54}", None),
        ("LBGI / HBGI", f"{m.lbgi:.1f} / {m.hbgi:.1f}", None),
    ]


def coverage_line(cgm: CgmReport) -> str:
    c = cgm.coverage
    if c.end is None:
        return "no CGM data"
    verdict = "sufficient" if c.sufficient else "INSUFFICIENT (<70 %)"
    return (f"{c.days} d to {c.end:%Y-%m-%d %H:%M} UTC \u00b7 {c.n_readings} readings every "
            f"{c.sample_period_min:g} min \u00b7 CGM active {c.percent_time_active:.1f} % ({verdict})")


def forecast_lines(forecast: GlucoseForecast | None) -> list[str]:
    if forecast is None:
        return []
    if forecast.last_reading_mg_dl is not None:  # the measured value, never the estimate as a reading (#15.1)
        out = [f"{forecast.summary} (at {fmt_time(forecast.issued_at)})"]
    else:
        out = [f"twin estimate {forecast.glucose_now_mg_dl:.0f} mg/dL (sensor error removed) at "
               f"{fmt_time(forecast.issued_at)}"]
    wanted = [h for h in (15, 30, 60) if h in forecast.horizons_min] or forecast.horizons_min[-3:]
    for h in wanted:
        i = forecast.horizons_min.index(h)
        out.append(f"+{h} min: {forecast.mean_mg_dl[i]:.0f} mg/dL (80 % {forecast.lower80_mg_dl[i]:.0f}\u2013"
                   f"{forecast.upper80_mg_dl[i]:.0f})")
    if forecast.insulin_sensitivity_ratio is not None:  # a whole sentence with or without a fitted twin
        basis = (f"the fitted glucose twin (version {forecast.twin_version})" if forecast.twin_version is not None
                 else "the cohort prior (no fitted glucose twin yet)")
        out.append(f"insulin sensitivity \u00d7{forecast.insulin_sensitivity_ratio:.2f} of {basis}")
    return out


def news2_lines(view: News2View | None) -> list[str]:
    if view is None:
        return ["no NEWS2 (no device vital signs or NEWS2 alert)"]
    if view.score is not None and view.risk in news2_bands():
        headline = news2_text(int(view.score), view.risk)  # the one mapping: "NEWS2 5: medium clinical risk"
    else:
        headline = "NEWS2 " + ("?" if view.score is None else f"{view.score:.0f}")
    out = [f"{headline} at {fmt_time(view.at)}",
           f"from {view.source}" + (f" ({view.alert_status})" if view.alert_status else "")
           + (f", SpO\u2082 scale {view.spo2_scale}" if view.spo2_scale else "")]
    if view.missing:
        out.append("not measured within 1 h: " + ", ".join(view.missing) + " (score is a lower bound)")
    return out


def alert_line(alert: AlertItem) -> str:
    return f"{as_utc(alert.opened_at):%d %b %H:%M} [{alert.severity}, {alert.status}] {alert.message}"


#: twin versions that are answers to a what-if, not the twin (its record summary and fitted models)
RUN_KINDS = frozenset({GLUCOSE_RUN_KIND, DRUG_RUN_KIND})


def twin_lines(twin: TwinInfo) -> list[str]:
    """The twin's version as the patient page shows it ("twin vN": the record summary's version), then the
    newest version of any kind, named as a what-if run when it is one (#15 item 7)."""
    if twin.record_version is None and twin.latest_version is None:
        return ["no twin version yet: the record has not been imported"]
    out = [f"twin version {twin.record_version} (record summary, {fmt_time(twin.record_created_at)})"
           if twin.record_version is not None else "no record summary yet"]
    if twin.latest_version is not None and twin.latest_version != twin.record_version:
        what = "latest what-if run" if twin.latest_kind in RUN_KINDS else "latest model update"
        out.append(f"{what}: version {twin.latest_version} ({twin.latest_kind}), {fmt_time(twin.latest_created_at)}"
                   f" by {twin.latest_actor}")
    out.append(f"{twin.n_versions} version{'' if twin.n_versions == 1 else 's'} in all")
    prov = twin.record_provenance or twin.latest_provenance
    out += [f"{k}: {v}" for k, v in prov.items() if k in ("import_id", "imported_at", "source", "algorithm",
                                                             "model", "parameter_set")]
    return out


def report_filename(patient_id: str, generated_at: datetime, suffix: str) -> str:
    """A download name without the patient's name: the stored id when it is a UUID, else a digest of it."""
    if re.fullmatch(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", patient_id):
        key = patient_id.lower()
    else:
        key = "p" + hashlib.sha256(patient_id.encode()).hexdigest()[:16]
    return f"twin-report-{key}-{as_utc(generated_at):%Y%m%dT%H%MZ}.{suffix}"


# --- HTML (inline SVG) ----------------------------------------------------------------------------------

COLORS = {"band": "#d8f0d8", "outer": "#9dc3e6", "inner": "#2e75b6", "line": "#1f4e79", "second": "#c55a11",
          "grid": "#dddddd", "text": "#333333"}
_TICK_STEPS = (3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400, 30 * 86400, 91 * 86400, 182 * 86400,
               365 * 86400, 5 * 365 * 86400)


def _time_ticks(start: float, end: float, most: int = 8) -> list[tuple[float, str]]:
    span = max(end - start, 1.0)
    step = next((s for s in _TICK_STEPS if span / s <= most), _TICK_STEPS[-1])
    first = (start // step + 1) * step
    fmt = ("%d %b %H:%M" if span <= 6 * 3600 else "%H:%M") if step < 86400 else \
        "%d %b" if step < 30 * 86400 else "%b %Y" if step < 365 * 86400 else "%Y"
    return [(t, datetime.fromtimestamp(t, UTC).strftime(fmt)) for t in np.arange(first, end, step)]


def _value_ticks(low: float, high: float, most: int = 5) -> list[float]:
    span = max(high - low, 1e-9)
    step = next(s for s in (1, 2, 5, 10, 20, 25, 50, 100, 200, 500, 1000, 1e9) if span / s <= most)
    return [float(v) for v in np.arange(np.ceil(low / step) * step, high + 1e-9, step)]


def _y_range(chart: TrendChart) -> tuple[float, float]:
    if chart.key == "glucose":
        return 40.0, 400.0
    values = [v for s in chart.series for v in s.low + s.high]
    if chart.band:
        values += list(chart.band)
    if not values:
        return 0.0, 1.0
    low, high = min(values), max(values)
    pad = max((high - low) * 0.1, 2.0)
    top = high + pad
    if chart.key == "spo2":
        top = min(top, 100.5)
    return low - pad, top


class _Frame:
    """Maps data to SVG pixels inside margins, and draws axes."""

    def __init__(self, width: int, height: int, x: tuple[float, float], y: tuple[float, float]) -> None:
        self.w, self.h, self.x, self.y = width, height, x, y
        self.left, self.right, self.top, self.bottom = 34, 6, 6, 16

    def px(self, x: Any) -> Any:
        return self.left + (np.asarray(x, dtype=float) - self.x[0]) / ((self.x[1] - self.x[0]) or 1.0) * (
            self.w - self.left - self.right)

    def py(self, y: Any) -> Any:
        y = np.clip(np.asarray(y, dtype=float), self.y[0], self.y[1])
        return self.h - self.bottom - (y - self.y[0]) / ((self.y[1] - self.y[0]) or 1.0) * (
            self.h - self.top - self.bottom)

    def axes(self, xticks: list[tuple[float, str]], yticks: list[float]) -> list[str]:
        out = []
        for v in yticks:
            yy = float(self.py(v))
            out.append(f'<line x1="{self.left}" x2="{self.w - self.right}" y1="{yy:.1f}" y2="{yy:.1f}" '
                       f'class="grid"/><text x="{self.left - 3}" y="{yy + 3:.1f}" class="yt">{v:g}</text>')
        for v, label in xticks:
            xx = float(self.px(v))
            out.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{self.top}" y2="{self.h - self.bottom}" '
                       f'class="grid"/><text x="{xx:.1f}" y="{self.h - 4}" class="xt">{html.escape(label)}</text>')
        out.append(f'<rect x="{self.left}" y="{self.top}" width="{self.w - self.left - self.right}" '
                   f'height="{self.h - self.top - self.bottom}" class="frame"/>')
        return out

    def band(self, low: float, high: float, fill: str) -> str:
        y1, y0 = float(self.py(high)), float(self.py(low))
        return (f'<rect x="{self.left}" y="{y1:.1f}" width="{self.w - self.left - self.right}" '
                f'height="{y0 - y1:.1f}" fill="{fill}"/>')

    def polygon(self, x: Sequence[float], low: Sequence[float], high: Sequence[float], fill: str,
                opacity: float = 1.0) -> str:
        xs, lo, hi = self.px(x), self.py(low), self.py(high)
        pts = [f"{a:.1f},{b:.1f}" for a, b in zip(xs, hi, strict=True)]
        pts += [f"{a:.1f},{b:.1f}" for a, b in zip(xs[::-1], lo[::-1], strict=True)]
        return f'<polygon points="{" ".join(pts)}" fill="{fill}" fill-opacity="{opacity}" stroke="none"/>'

    def line(self, x: Sequence[float], y: Sequence[float], color: str, width: float = 1.2) -> str:
        pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(self.px(x), self.py(y), strict=True))
        return f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="{width}"/>'

    def dots(self, x: Sequence[float], y: Sequence[float], color: str) -> str:
        return "".join(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2" fill="{color}"/>'
                       for a, b in zip(self.px(x), self.py(y), strict=True))


def _runs(t: Sequence[float], gap: float) -> list[slice]:
    """Index ranges of ``t`` without a jump longer than ``gap`` (lines are broken at data gaps)."""
    arr = np.asarray(t, dtype=float)
    if arr.size == 0:
        return []
    cuts = np.nonzero(np.diff(arr) > gap)[0] + 1
    edges = [0, *cuts.tolist(), arr.size]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _svg(width: int, height: int, label: str, parts: list[str]) -> Markup:
    return Markup(f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
                  f'aria-label="{html.escape(label)}">{"".join(parts)}</svg>')


def svg_agp(agp: AmbulatoryGlucoseProfile | None, width: int = 520, height: int = 190) -> Markup:
    frame = _Frame(width, height, (0.0, 24.0), (0.0, 350.0))
    parts = [frame.band(HYPO_L1, HYPER_L1, COLORS["band"])]
    parts += frame.axes([(h, f"{h:02d}:00") for h in range(0, 24, 3)], [*LEVEL_TICKS, 350])
    if agp is not None and agp.minute_of_day:
        h = [m / 60.0 for m in agp.minute_of_day]
        parts.append(frame.polygon(h, agp.p5, agp.p95, COLORS["outer"], 0.6))
        parts.append(frame.polygon(h, agp.p25, agp.p75, COLORS["inner"], 0.6))
        parts.append(frame.line(h, agp.p50, COLORS["line"], 1.6))
    return _svg(width, height, "ambulatory glucose profile", parts)


def svg_trend(chart: TrendChart, width: int = 340, height: int = 130) -> Markup:
    series = chart.series
    if not series:
        return Markup('<p class="none">no data</p>')
    start = min(s.t[0] for s in series if s.t)
    end = max(s.t[-1] for s in series if s.t)
    if end - start < 3600:
        start, end = start - 1800, end + 1800
    pad = (end - start) * 0.02
    frame = _Frame(width, height, (start - pad, end + pad), _y_range(chart))
    parts = [frame.band(*chart.band, COLORS["band"])] if chart.band else []
    parts += frame.axes(_time_ticks(start, end, 6), _value_ticks(*frame.y))
    for k, s in enumerate(series):
        color = COLORS["line"] if k == 0 else COLORS["second"]
        if s.source == "device":
            gap = 3 * (s.end - s.start).total_seconds() / TREND_BUCKETS
            for run in _runs(s.t, gap):
                if run.stop - run.start > 1:
                    parts.append(frame.polygon(s.t[run], s.low[run], s.high[run], color, 0.2))
                    parts.append(frame.line(s.t[run], s.mean[run], color))
                else:
                    parts.append(frame.dots(s.t[run], s.mean[run], color))
        else:
            parts.append(frame.line(s.t, s.mean, color, 0.8))
            parts.append(frame.dots(s.t, s.mean, color))
    return _svg(width, height, chart.title, parts)


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("medtwin.twin", "templates"), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(day=fmt_day, time=fmt_time, measurement=fmt_measurement, name=fmt_name, codes=fmt_codes)
    env.globals.update(svg_agp=svg_agp, svg_trend=svg_trend, identity_line=identity_line, cgm_lines=cgm_lines,
                       coverage_line=coverage_line, forecast_lines=forecast_lines, news2_lines=news2_lines,
                       alert_line=alert_line, twin_lines=twin_lines, targets=TARGETS)
    return env


_ENV: Environment | None = None


def render_html(report: PatientReport) -> str:
    """The report as one self-contained HTML document (inline CSS and SVG; no scripts, links or images)."""
    global _ENV
    if _ENV is None:
        _ENV = _environment()
    return _ENV.get_template("report.html").render(r=report)


# --- PDF (one A4 page, matplotlib) ----------------------------------------------------------------------

_PDF_LOCK = threading.Lock()  # matplotlib's font cache is not thread-safe; requests render one at a time
A4_INCHES = (8.27, 11.69)
LINE = 0.0112  # figure-fraction height of one 7-pt text line on A4


@lru_cache(maxsize=2)
def _font(bold: bool) -> Any:
    from matplotlib import font_manager, ft2font

    font = ft2font.FT2Font(font_manager.findfont(font_manager.FontProperties(
        family="DejaVu Sans", weight="bold" if bold else "normal")))
    font.set_size(1, 72)  # advances in points per point of font size
    return font


@lru_cache(maxsize=8192)
def _advance(char: str, bold: bool) -> float:
    from matplotlib import ft2font

    load_flags = getattr(ft2font, "LoadFlags", None)  # matplotlib >= 3.10; before: module constants
    flags = load_flags.NO_HINTING if load_flags is not None else getattr(ft2font, "LOAD_NO_HINTING")  # noqa: B009
    glyph = _font(bold).load_char(ord(char), flags=flags)
    return float(glyph.linearHoriAdvance) / 65536.0


def fit(text: str | None, width: float, fontsize: float = 7.0, bold: bool = False) -> str:
    """``text`` on one line, cut with an ellipsis to ``width`` (a fraction of the A4 page's width), measured
    with DejaVu Sans' own advance widths."""
    text = " ".join((text or "").split())
    room = width * A4_INCHES[0] * 72.0 / fontsize
    used = 0.0
    for i, char in enumerate(text):
        used += _advance(char, bold)
        if used > room:
            ellipsis = _advance("\u2026", bold)
            while i > 0 and used - _advance(text[i], bold) + ellipsis > room:
                used -= _advance(text[i], bold)
                i -= 1
            return text[:i].rstrip() + "\u2026"
    return text


def measure(text: str, fontsize: float = 7.0, bold: bool = False) -> float:
    """Width of ``text`` as a fraction of the A4 page's width."""
    return sum(_advance(c, bold) for c in text) * fontsize / (A4_INCHES[0] * 72.0)


def wrap(text: str | None, width: float, fontsize: float = 7.0, bold: bool = False) -> list[str]:
    """``text`` broken at spaces into lines no wider than ``width`` (a fraction of the A4 page's width),
    measured with DejaVu Sans' advance widths; a word wider than a line is broken inside. Nothing is cut:
    every character of ``text`` is on one of the lines (#15 item 7: no "..." in a message or a name)."""
    words = " ".join((text or "").split()).split(" ")
    lines: list[str] = []
    line = ""
    for word in words:
        candidate = f"{line} {word}" if line else word
        if measure(candidate, fontsize, bold) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        while measure(word, fontsize, bold) > width and len(word) > 1:  # a very long word: break it
            cut = len(word) - 1
            while cut > 1 and measure(word[:cut], fontsize, bold) > width:
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        line = word
    lines.append(line)
    return lines


class _Column:
    """Writes wrapped lines of text down a column of the page (``width``: fraction of the page), down to its
    floor. Without a figure it only measures (how far down the column would reach)."""

    INDENT = 0.012  # continuation lines of a wrapped row

    def __init__(self, fig: Any, x: float, y: float, floor: float, width: float) -> None:
        self.fig, self.x, self.y, self.floor, self.width = fig, x, y, floor, width

    def _text(self, x: float, text: str, **style: Any) -> None:
        if self.fig is not None:
            self.fig.text(x, self.y, text, va="top", **style)

    def heading(self, text: str) -> None:
        if self.y - LINE < self.floor:
            return
        self.y -= 0.004
        self._text(self.x, fit(text, self.width, 8, bold=True), fontsize=8, fontweight="bold", color=COLORS["line"])
        self.y -= LINE * 1.15

    def _wrapped(self, row: str) -> list[str]:
        text = " ".join(row.split())
        room = self.width * 0.96  # 4 % for hinted renderings (whole-pixel advances) of the same text
        first = wrap(text, room)[0]  # a prefix of the text: the rest wraps, indented
        rest = text[len(first):].strip()
        return [first, *wrap(rest, room - self.INDENT)] if rest else [first]

    def lines(self, rows: Sequence[str], most: int, empty: str = "none recorded") -> None:
        """Up to ``most`` rows, each wrapped whole; rows that do not fit are counted ("... and 3 more"), never cut."""
        rows = list(rows) or [empty]
        wrapped = [self._wrapped(row) for row in rows]
        shown = 0
        for k, parts in enumerate(wrapped[:most]):
            left = len(wrapped) - k - 1
            need = len(parts) + (1 if left else 0)  # room for the count line if more would follow
            if self.y - need * LINE < self.floor:
                break
            for j, part in enumerate(parts):
                self._text(self.x + (self.INDENT if j else 0.0), part, fontsize=7, color=COLORS["text"])
                self.y -= LINE
            shown += 1
        if shown < len(rows) and self.y - LINE >= self.floor:
            self._text(self.x, f"\u2026 and {len(rows) - shown} more", fontsize=7, color="#777777", style="italic")
            self.y -= LINE
        self.y -= LINE * 0.4


def _style(ax: Any, title: str) -> None:
    ax.set_title(title, fontsize=7.5, loc="left", pad=2, color=COLORS["line"], fontweight="bold")
    ax.tick_params(labelsize=6, length=2, pad=1)
    ax.grid(True, color=COLORS["grid"], linewidth=0.4)
    for spine in ax.spines.values():
        spine.set_linewidth(0.5)
        spine.set_color("#999999")


def _pdf_trend(ax: Any, chart: TrendChart) -> None:
    from matplotlib import dates as mdates

    title = f"{chart.title} [{chart.unit}]" if chart.unit else chart.title
    if chart.series:
        title += f" \u00b7 {'device' if chart.series[0].source == 'device' else 'record'}"
    _style(ax, title)
    if not chart.series:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", fontsize=7, color="#777777")
        ax.set_xticks([])
        ax.set_yticks([])
        return
    if chart.band:
        ax.axhspan(*chart.band, color=COLORS["band"], lw=0)
    for k, s in enumerate(chart.series):
        color = COLORS["line"] if k == 0 else COLORS["second"]
        x = np.asarray(s.t) / 86400.0  # matplotlib date numbers: days since 1970-01-01
        if s.source == "device":
            gap = 3 * (s.end - s.start).total_seconds() / TREND_BUCKETS / 86400.0
            for run in _runs(x.tolist(), gap):
                label = s.label if run.start == 0 else None
                if run.stop - run.start > 1:
                    ax.fill_between(x[run], s.low[run], s.high[run], color=color, alpha=0.2, lw=0)
                    ax.plot(x[run], s.mean[run], color=color, lw=0.8, label=label)
                else:
                    ax.plot(x[run], s.mean[run], ".", color=color, ms=3, label=label)
        else:
            ax.plot(x, s.mean, "o-", color=color, lw=0.6, ms=2, label=s.label)
    ax.set_ylim(*_y_range(chart))
    first = min(s.t[0] for s in chart.series) / 86400.0
    last = max(s.t[-1] for s in chart.series) / 86400.0
    if last - first < 1.0:  # a few readings: show the day around them
        middle = (first + last) / 2
        ax.set_xlim(middle - 0.5, middle + 0.5)
    span_days = max(last - first, 1.0)
    locator = mdates.AutoDateLocator(minticks=3, maxticks=5 if span_days < 2 else 7, tz=UTC)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b %H:%M", tz=UTC) if span_days < 2
                                 else mdates.DateFormatter("%d %b", tz=UTC) if span_days <= 60
                                 else mdates.ConciseDateFormatter(locator, tz=UTC, show_offset=False))
    if len(chart.series) > 1:
        ax.legend(fontsize=5.5, loc="best", frameon=False, ncol=2, handlelength=1.2)


def _pdf_agp(ax: Any, agp: AmbulatoryGlucoseProfile | None, time_zone: str) -> None:
    _style(ax, f"Ambulatory glucose profile [mg/dL] \u00b7 time of day ({time_zone})")
    ax.axhspan(HYPO_L1, HYPER_L1, color=COLORS["band"], lw=0)
    if agp is not None and agp.minute_of_day:
        h = np.asarray(agp.minute_of_day) / 60.0
        ax.fill_between(h, agp.p5, agp.p95, color=COLORS["outer"], alpha=0.6, lw=0, label="5\u201395 %")
        ax.fill_between(h, agp.p25, agp.p75, color=COLORS["inner"], alpha=0.6, lw=0, label="25\u201375 %")
        ax.plot(h, agp.p50, color=COLORS["line"], lw=1.2, label="median")
        ax.legend(fontsize=5.5, loc="upper right", frameon=False, ncol=3)
    else:
        ax.text(12, 175, "no CGM data", ha="center", va="center", fontsize=7, color="#777777")
    ax.set_xlim(0, 24)
    ax.set_ylim(0, 350)
    ax.set_xticks(range(0, 25, 3), [f"{h:02d}:00" for h in range(0, 25, 3)])
    ax.set_yticks([*LEVEL_TICKS, 350])


def _pdf_ranges(ax: Any, cgm: CgmReport) -> None:
    """The consensus stacked bar of time in ranges."""
    ax.set_axis_off()
    m = cgm.metrics
    if m is None:
        return
    parts = [(m.time_below_54_percent, "#8b0000", "<54"),
             (m.time_below_70_percent - m.time_below_54_percent, "#e06666", "54\u201369"),
             (m.time_in_range_70_180_percent, "#6aa84f", "70\u2013180"),
             (m.time_above_180_percent - m.time_above_250_percent, "#f1c232", "181\u2013250"),
             (m.time_above_250_percent, "#e69138", ">250")]
    bottom = 0.0
    for value, color, label in parts:
        ax.bar(0, value, bottom=bottom, color=color, width=0.6)
        if value >= 3:
            ax.text(0.4, bottom + value / 2, f"{label}: {value:.0f} %", fontsize=5.5, va="center")
        bottom += value
    ax.set_xlim(-0.4, 2.2)
    ax.set_ylim(0, 100)


def render_pdf(report: PatientReport) -> bytes:
    """The report as a one-page A4 PDF."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    # Type 3 fonts (matplotlib's default, with a ToUnicode map, so the text stays searchable): embedding
    # Type 42 subsets of DejaVu with fontTools took 0.6 s of a 0.9 s page.
    with _PDF_LOCK, matplotlib.rc_context({"pdf.fonttype": 3, "font.family": "DejaVu Sans",
                                           "axes.unicode_minus": False}):
        fig = Figure(figsize=A4_INCHES)
        _pdf_page(fig, report)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="pdf", metadata={
            "Title": "medtwin patient twin report", "Creator": f"medtwin {report.medtwin_version}",
            "Subject": "one-page patient twin report"})
    return buffer.getvalue()


def _record_columns(fig: Any, r: PatientReport, top: float, floor: float) -> float:
    """Problems, allergies | medications, PGx | vital signs, labs: three columns of wrapped rows; returns the
    lowest y reached (without a figure: how low they would reach)."""
    left = _Column(fig, 0.04, top, floor, 0.30)
    left.heading(f"Active problems ({len(r.problems)})")
    left.lines([f"{short_name(p.code, p.display)}  {fmt_day(p.onset)}".rstrip() for p in r.problems], 40)
    left.heading(f"Allergies ({len(r.allergies)})")
    left.lines([f"{a.display or a.code}{f' ({a.criticality})' if a.criticality else ''}" for a in r.allergies], 12,
               "no known allergies recorded")
    mid = _Column(fig, 0.355, top, floor, 0.30)
    mid.heading(f"Medications ({len(r.medications)})")
    mid.lines([f"{m.display or m.code}" for m in r.medications], 40)
    mid.heading("Pharmacogenomics")
    mid.lines([f"{g.gene} {g.diplotype}: {g.phenotype}" for g in (r.pgx.genes if r.pgx else [])], 13,
              "no PGx result")
    right = _Column(fig, 0.67, top, floor, 0.29)
    right.heading("Latest vital signs in the record")  # device readings: the trends and NEWS2
    right.lines([f"{fmt_name(v)}: {fmt_measurement(v)}  {fmt_day(v.time)}" for v in r.vitals], 20)
    right.heading("Latest labs")
    right.lines([f"{fmt_name(v)}: {fmt_measurement(v)}  {fmt_day(v.time)}" for v in r.labs], 30)
    return min(left.y, mid.y, right.y)


def _closing_columns(fig: Any, r: PatientReport, top: float, floor: float) -> float:
    """Open alerts and NEWS2 | the glucose forecast (with a live twin) | the twin's version and provenance."""
    a = _Column(fig, 0.04, top, floor, 0.36)
    a.heading(f"Open alerts ({r.open_alerts_total})")
    a.lines([alert_line(x) for x in r.alerts], 8, "no open alerts")
    a.heading("NEWS2")
    a.lines(news2_lines(r.news2), 4)
    lows = [a.y]
    x, width = 0.42, 0.54  # the twin's column takes the forecast's room when there is no forecast
    if r.forecast is not None:
        width = 0.245
        b = _Column(fig, x, top, floor, width)
        b.heading("Glucose forecast (live twin)")
        b.lines(forecast_lines(r.forecast), 8)
        lows.append(b.y)
        x, width = 0.68, 0.28
    c = _Column(fig, x, top, floor, width)
    c.heading("Twin version and provenance")
    c.lines(twin_lines(r.twin), 10)
    return min(*lows, c.y)


CGM_HEIGHT = 0.2
FOOTER = 0.03
TREND_ROW = (0.145, 0.098)  # (most, least) height of one row of two trend charts


def _layout(r: PatientReport) -> tuple[float, float, float, int]:
    """Heights of the record, the closing section and one trend row, and how many trend rows fit: the page
    is filled from the top (no empty third), the record and the closing text are never cut."""
    top = 0.934
    record = top - _record_columns(None, r, top, -10.0)
    closing = 0.15 - _closing_columns(None, r, 0.15, -10.0)
    cgm = CGM_HEIGHT if r.cgm.metrics is not None else 0.0
    record = min(record, top - cgm - closing - FOOTER - 0.05)  # a very long record: the rest is counted
    rows = (len(r.trends) + 1) // 2
    room = top - record - cgm - closing - FOOTER - 0.025
    row = TREND_ROW[0]
    while rows and rows * row > room:
        if row > TREND_ROW[1]:
            row = max(TREND_ROW[1], room / rows)
        else:
            rows -= 1
    return record, closing, row, rows


def _pdf_page(fig: Any, r: PatientReport) -> None:
    ident = r.identity
    fig.text(0.04, 0.975, fit(ident.name or "(no name recorded)", 0.68, 14, bold=True), fontsize=14, fontweight="bold",
             va="top", color=COLORS["line"])
    fig.text(0.96, 0.975, "Patient twin report", fontsize=9, ha="right", va="top", color=COLORS["line"])
    fig.text(0.96, 0.962, f"generated {fmt_time(r.generated_at)}", fontsize=6.5, ha="right", va="top",
             color="#555555")
    for k, line in enumerate(wrap(identity_line(ident), 0.92, 7.5)[:2]):
        fig.text(0.04, 0.952 - k * LINE, line, fontsize=7.5, va="top", color=COLORS["text"])
    fig.add_artist(_hline(0.938))
    record, closing, row, rows = _layout(r)
    y = _record_columns(fig, r, 0.934, 0.934 - record - 0.001) - 0.004
    fig.add_artist(_hline(y))
    if r.cgm.metrics is not None:  # no empty AGP for a patient without CGM (#15 item 9)
        _pdf_cgm(fig, r, y - 0.005)
        y -= CGM_HEIGHT
    if rows:
        fig.text(0.04, y - 0.004, f"Recent trends (last {r.trend_days} days of each stream; record observations when "
                                  "no device sends one)", fontsize=8, fontweight="bold", va="top", color=COLORS["line"])
        y -= 0.022
        for k, chart in enumerate(r.trends[: 2 * rows]):
            x = 0.07 if k % 2 == 0 else 0.57
            y0 = y - (k // 2 + 1) * row + 0.02
            _pdf_trend(fig.add_axes((x, y0, 0.39, row - 0.04)), chart)
        y -= rows * row
        left_out = len(r.trends) - 2 * rows
        if left_out > 0:
            fig.text(0.04, y + 0.004, f"{left_out} more trend chart{'s' if left_out > 1 else ''} in the HTML report",
                     fontsize=6, va="bottom", color="#777777", style="italic")
    fig.add_artist(_hline(y - 0.002))
    _closing_columns(fig, r, y - 0.006, FOOTER)
    fig.text(0.04, 0.016, f"Generated {fmt_time(r.generated_at)} by medtwin {r.medtwin_version}. Times in UTC. "
                          "A model-based summary for clinical review; it does not replace clinical judgement.",
             fontsize=5.5, va="bottom", color="#777777")


def _pdf_cgm(fig: Any, r: PatientReport, top: float) -> None:
    """CGM: metrics, the time-in-ranges bar and the AGP, in the band of CGM_HEIGHT below ``top``."""
    fig.text(0.04, top, "CGM (consensus metrics, Battelino 2019)", fontsize=8, fontweight="bold", va="top",
             color=COLORS["line"])
    fig.text(0.04, top - 0.014, fit(coverage_line(r.cgm), 0.92, 6.5), fontsize=6.5, va="top",
             color="#aa0000" if r.cgm.coverage.end is not None and not r.cgm.coverage.sufficient else "#555555")
    y = top - 0.032
    for label, value, ok in cgm_lines(r.cgm):
        fig.text(0.04, y, label, fontsize=7, va="top", color=COLORS["text"])
        fig.text(0.275, y, value, fontsize=7, va="top", ha="right", fontweight="bold",
                 color="#aa0000" if ok is False else COLORS["text"])
        y -= LINE * 1.05
    y -= 0.003
    for text in ("Targets (Battelino 2019): TIR >70 %, CV \u226436 %,", "TBR <4 % (<54 mg/dL: <1 %),",
                 "TAR <25 % (>250 mg/dL: <5 %)"):
        fig.text(0.04, y, text, fontsize=5.5, va="top", color="#777777")
        y -= LINE * 0.75
    _pdf_ranges(fig.add_axes((0.29, top - 0.175, 0.11, 0.14)), r.cgm)
    _pdf_agp(fig.add_axes((0.43, top - 0.185, 0.53, 0.145)), r.cgm.agp, r.cgm.time_zone)


def _hline(y: float) -> Any:
    from matplotlib.lines import Line2D

    return Line2D([0.04, 0.96], [y, y], linewidth=0.5, color="#999999")


Renderer = Callable[[PatientReport], bytes]
FORMATS: dict[str, tuple[str, Renderer]] = {
    "pdf": ("application/pdf", render_pdf),
    "html": ("text/html; charset=utf-8", lambda report: render_html(report).encode("utf-8")),
}
