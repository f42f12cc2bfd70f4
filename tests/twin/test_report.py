"""The CGM report and the one-page patient twin report, on synthetic patients with CGM and vital-sign samples
stored through the samples repository, on SQLite and PostgreSQL: metrics equal an independent computation,
sufficiency and episodes respect gaps, the AGP follows the time zone, the PDF is one valid page, the HTML is
self-contained and escaped, optional sections degrade to "none"."""

from __future__ import annotations

import re
import uuid
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pytest
from sqlalchemy import insert

from medtwin.alerts.glucose import episodes
from medtwin.physiology.metrics import glucose_metrics
from medtwin.record.sources import RawUnit
from medtwin.store.database import Store
from medtwin.store.live_tables import alerts, twin_live_state
from medtwin.store.records import RecordRepository
from medtwin.store.samples import SampleRepository
from medtwin.synthetic import generate_bundles
from medtwin.twin import live
from medtwin.twin import report as R
from medtwin.twin.build import import_units
from medtwin.twin.cgm_report import cgm_report, zone
from medtwin.vocab import CANONICAL_UNITS, GlucoseForecast, Sample

END = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)  # the latest CGM reading
NOW = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)


def glucose_at(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A daily cycle in UTC (low at night, high in the afternoon) with noise; mg/dL."""
    minute = np.mod(t / 60.0, 1440.0)
    return np.clip(135 + 65 * np.sin(2 * np.pi * (minute - 360) / 1440) + rng.normal(0, 18, t.size), 40, 400)


def cgm_times(days: int, step_min: float = 5.0, end: datetime = END) -> np.ndarray:
    n = int(days * 1440 / step_min)
    return end.timestamp() - step_min * 60.0 * np.arange(n)[::-1]


def store_samples(store: Store, patient_id: str, metric: str, t: np.ndarray, values: np.ndarray) -> None:
    unit = CANONICAL_UNITS[metric]
    rows = [Sample(patient_id, metric, datetime.fromtimestamp(float(a), UTC), float(v), unit, float(v), unit,
                   "test-device", "http", f"{patient_id}:{metric}:{a:.0f}:{uuid.uuid4().hex[:6]}")
            for a, v in zip(t, values, strict=True)]
    with store.begin() as connection:
        SampleRepository(connection).insert_ignore(rows, received_at=NOW)


def import_patients(store: Store, n: int = 1) -> list[str]:
    units = [RawUnit(f"p{i}.json", "json", b) for i, b in enumerate(generate_bundles(n_patients=n))]
    assert import_units(store, units, actor="test").ok
    with store.connect() as connection:
        records = RecordRepository(connection, store.codec)
        # generate_bundles cycles archetypes: index 0 is the type 1 diabetes patient
        ids = [records.resolve_patient(_mrn(b)) for b in generate_bundles(n_patients=n)]
    assert all(ids)
    return [str(i) for i in ids]


def _mrn(bundle: dict[str, Any]) -> str:
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    return next(i["value"] for i in patient["identifier"] if i["type"]["coding"][0]["code"] == "MR")


@pytest.fixture
def patient(store: Store) -> Iterator[tuple[Store, str, np.ndarray, np.ndarray]]:
    """A type 1 diabetes patient with 30 days of 5-minute CGM."""
    (patient_id,) = import_patients(store)
    t = cgm_times(30)
    g = glucose_at(t, np.random.default_rng(7))
    store_samples(store, patient_id, "glucose", t, g)
    yield store, patient_id, t, g


def independent_agp(t: np.ndarray, g: np.ndarray, offset_min: float = 0.0) -> dict[int, list[float]]:
    """5/25/50/75/95th percentiles per 15-minute bin of local time (fixed offset), by plain loops."""
    groups: dict[int, list[float]] = {}
    for ts, value in zip(t, g, strict=True):
        local = datetime.fromtimestamp(float(ts), UTC) + timedelta(minutes=offset_min)
        groups.setdefault((local.hour * 60 + local.minute) // 15, []).append(float(value))
    return {b: [float(np.percentile(v, q)) for q in (5, 25, 50, 75, 95)] for b, v in groups.items()}


# --- CGM report ----------------------------------------------------------------------------------------


def test_cgm_metrics_equal_an_independent_computation(patient: tuple[Store, str, np.ndarray, np.ndarray]) -> None:
    store, patient_id, t, g = patient
    report = cgm_report(store, patient_id, days=14)
    window = t > END.timestamp() - 14 * 86400  # the 14 days ending at the latest reading, end inclusive
    assert report.coverage.end == END and report.coverage.start == END - timedelta(days=14)
    assert report.coverage.n_readings == int(window.sum()) == 14 * 288
    assert report.coverage.sample_period_min == 5 and report.coverage.percent_time_active == 100.0
    assert report.coverage.sufficient
    expected = glucose_metrics(g[window], 5.0)[0]
    assert report.metrics is not None
    for name, value in expected.model_dump().items():
        assert getattr(report.metrics, name) == pytest.approx(value, rel=1e-9), name
    # by hand, too: TIR and mean
    assert report.metrics.time_in_range_70_180_percent == pytest.approx(
        100 * np.mean((g[window] >= 70) & (g[window] <= 180)))
    assert report.metrics.mean_mg_dl == pytest.approx(float(np.mean(g[window])))
    assert report.targets_met["time_in_range_70_180_percent"] == (report.metrics.time_in_range_70_180_percent > 70)
    agp = report.agp
    assert agp is not None and report.time_zone == "UTC" and len(agp.minute_of_day) == 96
    by_bin = independent_agp(t[window], g[window])
    for i, minute in enumerate(agp.minute_of_day):
        b = int(minute // 15)
        assert [agp.p5[i], agp.p25[i], agp.p50[i], agp.p75[i], agp.p95[i]] == pytest.approx(by_bin[b])
    # a longer period covers more readings
    assert cgm_report(store, patient_id, days=30).coverage.n_readings == 30 * 288


def test_agp_in_a_local_time_zone(patient: tuple[Store, str, np.ndarray, np.ndarray]) -> None:
    store, patient_id, t, g = patient
    report = cgm_report(store, patient_id, days=14, tz="Europe/Berlin")  # CET in December/January: UTC+1
    assert report.time_zone == "Europe/Berlin" and report.agp is not None
    window = t > END.timestamp() - 14 * 86400
    by_bin = independent_agp(t[window], g[window], offset_min=60)
    for i, minute in enumerate(report.agp.minute_of_day):
        assert report.agp.p50[i] == pytest.approx(by_bin[int(minute // 15)][2])
    utc = cgm_report(store, patient_id, days=14).agp
    assert utc is not None and report.agp.p50[4] == pytest.approx(utc.p50[0])  # 01:00 Berlin is 00:00 UTC
    with pytest.raises(ValueError, match="tz"):
        zone("America")  # a folder of the zone database, not a zone


@pytest.mark.parametrize(("gap_days", "sufficient"), [(4, True), (5, False)])
def test_sufficiency_counts_the_slots_with_a_reading(store: Store, gap_days: int, sufficient: bool) -> None:
    (patient_id,) = import_patients(store)
    t = cgm_times(14)
    keep = (t <= END.timestamp() - 8 * 86400) | (t > END.timestamp() - (8 - gap_days) * 86400)
    t = t[keep]
    store_samples(store, patient_id, "glucose", t, glucose_at(t, np.random.default_rng(1)))
    report = cgm_report(store, patient_id)
    assert report.coverage.percent_time_active == pytest.approx(100 * (14 - gap_days) / 14, abs=0.01)
    assert report.coverage.sufficient is sufficient and report.metrics is not None


def test_a_gap_does_not_end_an_episode_but_15_minutes_back_within_does(store: Store) -> None:
    """The one definition (vocab.episodes, as the alerts apply it): missing readings are not recovery."""
    (patient_id,) = import_patients(store)
    t = cgm_times(1)
    g = np.full(t.size, 120.0)
    g[100:110] = 60.0  # 50 minutes below 70 ...
    g[122:132] = 60.0  # ... an hour without readings, then 50 more minutes below 70: the same episode
    g[140:150] = 60.0  # after 40 minutes back within range: a second episode
    keep = np.ones(t.size, dtype=bool)
    keep[110:122] = False
    store_samples(store, patient_id, "glucose", t[keep], g[keep])
    report = cgm_report(store, patient_id, days=1)
    assert report.metrics is not None
    assert report.metrics.hypo_episodes_below_70 == 2
    assert glucose_metrics(g[keep], 5.0)[0].hypo_episodes_below_70 == 2  # the gap-blind count agrees here
    assert report.metrics.n_readings == int(keep.sum())
    times = [datetime.fromtimestamp(float(x), UTC) for x in t[keep]]
    assert len(episodes(times, [float(v) for v in g[keep]])["hypo-l1"]) == 2  # the alerts count the same


def test_jittered_readings_fill_their_own_slots(store: Store) -> None:
    (patient_id,) = import_patients(store)
    t = cgm_times(2) + np.random.default_rng(3).uniform(-40, 40, 576)
    t[-1] = END.timestamp()
    store_samples(store, patient_id, "glucose", t, np.full(t.size, 100.0))
    report = cgm_report(store, patient_id, days=2)
    assert report.coverage.sample_period_min == 5 and report.coverage.percent_time_active == 100.0


def test_no_cgm_data(store: Store) -> None:
    (patient_id,) = import_patients(store)
    report = cgm_report(store, patient_id)
    assert report.metrics is None and report.agp is None and report.coverage.n_readings == 0
    assert not report.coverage.sufficient


# --- the patient twin report ---------------------------------------------------------------------------


def page_count(pdf: bytes) -> int:
    """Pages by the PDF's own objects: /Type /Page objects, checked against the page tree's /Count."""
    pages = len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf))
    counts = [int(c) for c in re.findall(rb"/Type\s*/Pages\b[^>]*?/Count\s+(\d+)", pdf)] + \
             [int(c) for c in re.findall(rb"/Count\s+(\d+)[^>]*?/Type\s*/Pages\b", pdf)]
    assert counts == [pages], (counts, pages)
    return pages


def assert_valid_pdf(pdf: bytes) -> None:
    """Header, trailer, a cross-reference table whose every offset points at its object, and every stream
    exactly /Length bytes long, followed by ``endstream``, inflating when compressed."""
    assert pdf.startswith(b"%PDF-1.") and pdf.rstrip().endswith(b"%%EOF")
    startxref = int(re.findall(rb"startxref\s+(\d+)", pdf)[-1])
    assert pdf[startxref:startxref + 4] == b"xref"
    header = re.match(rb"xref\s+(\d+)\s+(\d+)\s+", pdf[startxref:])
    assert header is not None
    first, count = int(header.group(1)), int(header.group(2))
    table = pdf[startxref + header.end():startxref + header.end() + 20 * count]
    entries = re.findall(rb"(\d{10}) (\d{5}) ([nf])", table)
    assert len(entries) == count
    offsets = {n: int(o) for n, (o, _g, kind) in enumerate(entries, start=first) if kind == b"n"}
    for number, offset in offsets.items():
        assert re.match(rb"%d 0 obj" % number, pdf[offset:offset + 20]), number
    streams = 0
    for offset in offsets.values():
        body = pdf[offset:pdf.index(b"endobj", offset)]
        if b"stream" not in body:
            continue
        head, _, _ = body.partition(b"stream")
        length_ref = re.search(rb"/Length (\d+)( 0 R)?", head)
        assert length_ref is not None
        length = int(length_ref.group(1))
        if length_ref.group(2):  # an indirect length: the number in that object
            found = re.match(rb"\d+ 0 obj\s*(\d+)", pdf[offsets[length]:])
            assert found is not None
            length = int(found.group(1))
        start = offset + len(head) + len(b"stream")
        start += 2 if pdf[start:start + 2] == b"\r\n" else 1
        data = pdf[start:start + length]
        assert pdf[start + length:start + length + 12].strip().startswith(b"endstream")
        if b"/FlateDecode" in head:
            zlib.decompress(data)
        streams += 1
    assert streams > 0


def add_vitals(store: Store, patient_id: str, days: int = 8) -> None:
    """Per-minute heart rate for ``days``, and one full NEWS2 observation set at the end."""
    t = END.timestamp() - 60.0 * np.arange(days * 1440)[::-1]
    hr = 72 + 8 * np.sin(2 * np.pi * t / 86400) + np.random.default_rng(5).normal(0, 2, t.size)
    store_samples(store, patient_id, "heart_rate", t, hr)
    at = np.array([END.timestamp() + 60])
    # RCP 2017 chart by hand: RR 25 -> 3, SpO2 95 (scale 1) -> 1, air -> 0, SBP 105 -> 1, pulse 120 -> 2,
    # alert -> 0, temperature 38.5 -> 1: aggregate 8, high risk
    for metric, value in (("respiratory_rate", 25), ("spo2", 95), ("supplemental_oxygen", 0),
                          ("systolic_bp", 105), ("diastolic_bp", 70), ("heart_rate", 120),
                          ("consciousness", 0), ("body_temperature", 38.5)):
        store_samples(store, patient_id, metric, at, np.array([float(value)]))


def add_alerts(store: Store, patient_id: str) -> None:
    with store.begin() as connection:
        for rule, severity, status, message in (("hypo-l2", "critical", "open", "Glucose below 54 mg/dL"),
                                                ("hyper-l1", "medium", "acknowledged", "Glucose above 250 mg/dL"),
                                                ("hr-deviation", "high", "resolved", "Heart rate above baseline")):
            connection.execute(insert(alerts).values(
                id=str(uuid.uuid4()), patient_id=patient_id, rule=rule, severity=severity, status=status,
                dedupe_key=f"{patient_id}:{rule}", opened_at=END, updated_at=END, last_seen_at=END, occurrences=1,
                score=None, message=message, details=store.codec.seal(b"{}")))


def test_report_collects_every_section(patient: tuple[Store, str, np.ndarray, np.ndarray]) -> None:
    store, patient_id, t, g = patient
    add_vitals(store, patient_id)
    add_alerts(store, patient_id)
    forecast = GlucoseForecast(
        patient_id=patient_id, issued_at=END, glucose_now_mg_dl=101.0, horizons_min=(15, 30, 60),
        mean_mg_dl=(95.0, 88.0, 76.0), lower80_mg_dl=(90.0, 80.0, 62.0), upper80_mg_dl=(100.0, 96.0, 90.0),
        lower95_mg_dl=(86.0, 74.0, 55.0), upper95_mg_dl=(104.0, 102.0, 97.0), insulin_sensitivity_ratio=0.85,
        twin_version=3)
    with store.begin() as connection:  # as the live glucose service saves its state
        connection.execute(insert(twin_live_state).values(
            patient_id=patient_id, kind=live.STATE_KIND, twin_version=3, updated_at=END, data_time=END,
            payload=store.codec.seal(orjson.dumps({"forecast": forecast.to_json()}))))
    report = R.build_report(store, patient_id, now=NOW)
    assert report is not None
    bundle = generate_bundles(n_patients=1)[0]
    name = next(e["resource"]["name"][0] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    assert report.identity.name == f"{name['given'][0]} {name['family']}"
    assert report.identity.mrn == _mrn(bundle) and report.identity.gender == "female"
    assert report.identity.age_years == 29  # born 1996-05-01, on 2026-01-02
    assert [p.display for p in report.problems] == ["Diabetes mellitus type 1 (disorder)"]  # as recorded; shown without the tag
    assert len(report.medications) == 2 and any("glargine" in (m.display or "") for m in report.medications)
    assert report.cgm == cgm_report(store, patient_id)
    trends = {c.key: c for c in report.trends}
    glucose = trends["glucose"].series[0]
    assert glucose.source == "device" and glucose.n_samples == 7 * 288
    # bucket means of the last 7 days of CGM, recomputed
    window = t > END.timestamp() - 7 * 86400
    width = 7 * 86400 / R.TREND_BUCKETS
    index = np.minimum(((t[window] - (END.timestamp() - 7 * 86400)) // width).astype(int), R.TREND_BUCKETS - 1)
    means = [float(np.mean(g[window][index == b])) for b in np.unique(index)]
    assert glucose.mean == pytest.approx(means, abs=0.006)
    heart = trends["heart_rate"].series[0]
    # (END + 1 min - 7 d, END + 1 min]: 10079 per-minute samples and the NEWS2 set's pulse of 120
    assert heart.source == "device" and heart.n_samples == 7 * 1440 and max(heart.high) == 120
    assert trends["blood_pressure"].series[0].source == "device"  # the systolic sample
    assert {s.source for s in trends["spo2"].series} == {"device"}
    assert report.news2 is not None and report.news2.score == 8 and report.news2.risk == "high"
    assert report.news2.source == "device vitals" and report.news2.missing == []
    assert report.open_alerts_total == 2
    assert [a.rule for a in report.alerts] == ["hypo-l2", "hyper-l1"]  # open before acknowledged, no resolved
    assert report.forecast is not None and report.forecast.mean_mg_dl == (95.0, 88.0, 76.0)
    assert R.forecast_lines(report.forecast)[1:] == ["+15 min: 95 mg/dL (80 % 90\u2013100)",
                                                     "+30 min: 88 mg/dL (80 % 80\u201396)",
                                                     "+60 min: 76 mg/dL (80 % 62\u201390)",
                                                     "insulin sensitivity \u00d70.85 of the fitted glucose twin "
                                                     "(version 3)"]
    assert report.twin.latest_version == 1 and report.twin.latest_kind == "record"
    # the page's order: CGM first (type 1 diabetes), then the vital signs the NEWS2 set has, no empty chart
    assert list(trends) == ["glucose", "respiratory_rate", "spo2", "blood_pressure", "heart_rate", "body_temperature"]
    assert report.twin.record_provenance["source"] == "p0.json"
    assert report.generated_at == NOW and report.medtwin_version


def test_pdf_is_one_valid_page_and_html_is_self_contained(
        patient: tuple[Store, str, np.ndarray, np.ndarray]) -> None:
    store, patient_id, _t, _g = patient
    add_vitals(store, patient_id)
    report = R.build_report(store, patient_id, now=NOW)
    assert report is not None and report.cgm.metrics is not None
    pdf = R.render_pdf(report)  # its speed is measured by benchmarks, not asserted here
    assert_valid_pdf(pdf)
    assert page_count(pdf) == 1
    assert re.search(rb"/MediaBox\s*\[\s*0 0 595\.\d+ 841\.\d+\s*\]", pdf)  # A4 in points
    assert report.identity.name and report.identity.name.encode() not in pdf  # not in the metadata either
    document = R.render_html(report)
    for forbidden in ("<script", "<link", "<img", "<iframe", "src=", "href=", "url(", "@import", "http://",
                      "https://", "//cdn"):
        assert forbidden not in document.lower(), forbidden
    assert report.identity.name in document and f"MRN {report.identity.mrn}" in document
    m = report.cgm.metrics
    assert f"{m.mean_mg_dl:.0f} mg/dL" in document and f"{m.time_in_range_70_180_percent:.1f} %" in document
    assert f"{m.gmi_percent:.1f} %" in document and "CGM active 100.0 % (sufficient)" in document
    assert document.count("<svg") == 1 + len(report.trends) == 7  # AGP + the six trends with data
    assert "NEWS2 8: high clinical risk" in document  # the one mapping (vocab.news2)


def test_html_escapes_record_text(patient: tuple[Store, str, np.ndarray, np.ndarray]) -> None:
    store, patient_id, _t, _g = patient
    report = R.build_report(store, patient_id, now=NOW)
    assert report is not None
    report.identity.name = '<script>alert("x")</script>'
    report.problems[0].display = "<img src=x onerror=alert(1)>"
    document = R.render_html(report)
    assert "<script" not in document and "<img" not in document
    assert "&lt;script&gt;" in document and "&lt;img src=x" in document


def test_without_samples_the_report_degrades(store: Store) -> None:
    (patient_id,) = import_patients(store)
    report = R.build_report(store, patient_id, now=NOW)
    assert report is not None
    assert report.cgm.metrics is None and report.forecast is None and report.news2 is None
    assert report.alerts == [] and report.open_alerts_total == 0
    trends = {c.key: c for c in report.trends}
    assert "glucose" not in trends and all(c.series for c in report.trends)  # no empty chart (#15 item 9)
    heart = trends["heart_rate"].series[0]
    assert heart.source == "record" and heart.n_samples == 8  # the synthetic record's 8 pulse observations
    assert {s.label for s in trends["blood_pressure"].series} == {"systolic", "diastolic"}
    document = R.render_html(report)
    # no CGM section, no empty AGP and no glucose forecast box for a patient without CGM
    assert "Ambulatory glucose profile" not in document and "Glucose forecast" not in document
    assert page_count(R.render_pdf(report)) == 1


def test_long_lists_stay_on_one_page(patient: tuple[Store, str, np.ndarray, np.ndarray]) -> None:
    from matplotlib.figure import Figure

    store, patient_id, _t, _g = patient
    report = R.build_report(store, patient_id, now=NOW)
    assert report is not None
    report.problems = [report.problems[0].model_copy(update={"display": f"Problem number {i} " + "x" * 80})
                       for i in range(40)]
    figure = Figure(figsize=R.A4_INCHES)
    R._pdf_page(figure, report)
    texts = [t.get_text() for t in figure.texts]
    shown = sum(t.startswith("Problem number") for t in texts)
    # every problem shown is whole (wrapped over lines, never cut with an ellipsis); the rest are counted
    assert 5 <= shown < 40 and f"\u2026 and {40 - shown} more" in texts
    assert not any(t.endswith("\u2026") for t in texts)
    for i in range(shown):
        start = texts.index(f"Problem number {i}")
        after = "".join(texts[start + 1:start + 4])  # the 80 x (one long word, broken) and the onset date
        assert after.startswith("x" * 80) and after.endswith(f"{report.problems[0].onset:%Y-%m-%d}")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(figure).get_renderer()
    width = figure.get_figwidth() * figure.dpi
    left_aligned = [t for t in figure.texts if t.get_horizontalalignment() == "left"]
    cgm_top = next(t.get_position()[1] for t in figure.texts if t.get_text().startswith("CGM (consensus"))
    for x in (0.04, 0.355, 0.67):  # the record's three columns: every line ends before the next column
        column = [t for t in left_aligned if x <= t.get_position()[0] <= x + 0.02 and cgm_top < t.get_position()[1] < 0.935]
        wide = [t.get_text() for t in column if t.get_window_extent(renderer).x1 > (x + 0.305) * width]
        assert column and not wide, (x, wide)
    assert all(t.get_window_extent(renderer).x0 >= 0 and t.get_window_extent(renderer).x1 <= 0.97 * width
               and 0.0 <= t.get_position()[1] <= 1.0 for t in figure.texts)
    assert page_count(R.render_pdf(report)) == 1


def test_unknown_patient_has_no_report(store: Store) -> None:
    assert R.build_report(store, "no-such-patient", now=NOW) is None


def test_download_name_never_holds_the_name() -> None:
    uuid_id = "4A6DCB25-8E32-5748-89DB-443DDE93F110"
    assert R.report_filename(uuid_id, NOW, "pdf") == \
        "twin-report-4a6dcb25-8e32-5748-89db-443dde93f110-20260102T1200Z.pdf"
    named = R.report_filename("fenna-quillfeather", NOW, "html")
    assert "fenna" not in named and re.fullmatch(r"twin-report-p[0-9a-f]{16}-20260102T1200Z\.html", named)
