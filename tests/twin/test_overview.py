"""The dashboard's patient list: latest state per twin and the urgency order, on a real store."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from sqlalchemy import insert

from medtwin.record.sources import RawUnit
from medtwin.store.database import Store
from medtwin.store.live_tables import alerts
from medtwin.store.records import RecordRepository
from medtwin.store.schema import samples
from medtwin.synthetic import generate_bundles
from medtwin.twin.build import import_units
from medtwin.twin.overview import News2Brief, glucose_trend, patient_overview, trend_category

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def add_samples(store: Store, patient_id: str, metric: str, unit: str, points: list[tuple[datetime, float]]) -> None:
    with store.begin() as connection:
        connection.execute(insert(samples), [
            {"patient_id": patient_id, "metric": metric, "time": t, "value": v, "unit": unit, "original_value": v,
             "original_unit": unit, "device": "test", "source": "http", "received_at": t,
             "idempotency_key": f"{patient_id}:{metric}:{t.isoformat()}"} for t, v in points])


def add_alert(store: Store, patient_id: str, rule: str, severity: str, status: str = "open",
              message: str = "test alert") -> str:
    alert_id = str(uuid.uuid4())
    with store.begin() as connection:
        connection.execute(insert(alerts).values(
            id=alert_id, patient_id=patient_id, rule=rule, severity=severity, status=status,
            dedupe_key=f"{patient_id}:{rule}:{alert_id}", opened_at=NOW, updated_at=NOW, last_seen_at=NOW,
            occurrences=1, message=message, details=store.codec.seal(b"{}")))
    return alert_id


@pytest.fixture
def world(sqlite_store: Store) -> tuple[Store, list[str], dict[str, str]]:
    units = [RawUnit(f"p{i}.json", "json", orjson.loads(orjson.dumps(b)))
             for i, b in enumerate(generate_bundles(n_patients=5))]
    assert import_units(sqlite_store, units, actor="test").ok
    with sqlite_store.connect() as connection:
        ids = RecordRepository(connection, sqlite_store.codec).patient_ids()
    names = {}
    page = patient_overview(sqlite_store, allowed=None, clock=lambda: NOW)
    for item in page.items:
        names[item.id] = item.name or ""
    return sqlite_store, ids, names


def test_trend_slope_and_arrows() -> None:
    t0 = NOW
    falling = [(t0 - timedelta(minutes=5 * i), 100.0 + 12.5 * i) for i in range(4)]  # newest first: -2.5/min
    assert glucose_trend(falling) == pytest.approx(-2.5)
    assert trend_category(-2.5) == "falling"
    assert trend_category(0.4) == "steady"
    assert trend_category(1.5) == "rising-slowly"
    assert trend_category(3.2) == "rising-fast"
    assert glucose_trend(falling[:1]) is None
    # readings outside the 15-minute window do not count
    old = [(t0, 100.0), (t0 - timedelta(minutes=40), 300.0)]
    assert glucose_trend(old) is None


def test_latest_state_and_urgency_order(world: tuple[Store, list[str], dict[str, str]]) -> None:
    store, ids, _ = world
    quiet, hypo, critical, busy, _other = ids
    add_samples(store, hypo, "glucose", "mg/dL", [(NOW - timedelta(minutes=5 * i), 80.0 + 12.5 * i) for i in range(4)])
    add_samples(store, hypo, "heart_rate", "/min", [(NOW - timedelta(minutes=1), 71.0), (NOW, 88.0)])
    add_alert(store, hypo, "predicted-hypo", "high")
    add_alert(store, critical, "hypo-l2", "critical")
    add_alert(store, busy, "hyper-l1", "medium")
    add_alert(store, busy, "hr-deviation", "low")
    add_alert(store, busy, "hyper-l2", "high", status="acknowledged")
    add_alert(store, quiet, "hypo-l1", "high", status="resolved")

    page = patient_overview(store, allowed=None, clock=lambda: NOW + timedelta(minutes=2))
    order = [item.id for item in page.items]
    assert order[:3] == [hypo, critical, busy]
    by_id = {item.id: item for item in page.items}
    first = by_id[hypo]
    assert first.urgency_rank == 1 and first.predicted_hypo and "predicted hypoglycaemia" in first.reasons
    assert first.glucose is not None and first.glucose.value == 80.0 and first.glucose.trend == "falling"
    assert first.glucose.trend_mg_dl_per_min == pytest.approx(-2.5)
    assert first.glucose.stale is False
    assert first.heart_rate is not None and first.heart_rate.value == 88.0
    assert by_id[busy].alerts.open == 2 and by_id[busy].alerts.acknowledged == 1
    assert by_id[busy].alerts.by_severity == {"medium": 1, "low": 1, "high": 1}
    assert by_id[busy].alerts.top_severity == "high"
    assert by_id[quiet].alerts.top_severity is None  # resolved alerts do not count
    assert by_id[quiet].glucose is None

    later = patient_overview(store, allowed=None, clock=lambda: NOW + timedelta(hours=1))
    assert next(i for i in later.items if i.id == hypo).glucose.stale is True  # type: ignore[union-attr]


def test_news2_band_outranks_alerts(world: tuple[Store, list[str], dict[str, str]]) -> None:
    store, ids, _ = world
    add_alert(store, ids[0], "hypo-l2", "critical")
    scores = {ids[3]: News2Brief(score=7, band="high", time=NOW)}
    page = patient_overview(store, allowed=None, clock=lambda: NOW, news2=lambda _c, pid: scores.get(pid))
    assert [i.id for i in page.items[:2]] == [ids[3], ids[0]]
    assert page.items[0].reasons[0] == "NEWS2 7: high clinical risk"  # the one band mapping (vocab.news2)


def test_scope_search_and_paging(world: tuple[Store, list[str], dict[str, str]]) -> None:
    store, ids, names = world
    page = patient_overview(store, allowed=frozenset(ids[:2]), clock=lambda: NOW)
    assert {i.id for i in page.items} == set(ids[:2]) and page.total == 2
    family = names[ids[1]].split()[-1]
    found = patient_overview(store, allowed=None, query=family, clock=lambda: NOW)
    assert ids[1] in {i.id for i in found.items}
    assert all(family in (i.name or "") for i in found.items)
    hidden = patient_overview(store, allowed=frozenset(ids[:1]) | frozenset(ids[2:]), query=family, clock=lambda: NOW)
    assert ids[1] not in {i.id for i in hidden.items}
    assert patient_overview(store, allowed=frozenset(ids[:1]), query=ids[1], clock=lambda: NOW).items == []
    assert [i.id for i in patient_overview(store, allowed=None, query=ids[2], clock=lambda: NOW).items] == [ids[2]]
    paged = patient_overview(store, allowed=None, limit=2, offset=2, clock=lambda: NOW)
    assert paged.total == 5 and len(paged.items) == 2 and [i.urgency_rank for i in paged.items] == [3, 4]


def test_news2_from_device_vitals(world: tuple[Store, list[str], dict[str, str]]) -> None:
    store, ids, _ = world
    at = NOW - timedelta(minutes=3)
    for metric, unit, value in (("heart_rate", "/min", 135.0), ("respiratory_rate", "/min", 26.0),
                                ("spo2", "%", 90.0), ("systolic_bp", "mm[Hg]", 95.0)):
        add_samples(store, ids[4], metric, unit, [(at, value)])
    add_alert(store, ids[0], "hypo-l2", "critical")
    page = patient_overview(store, allowed=None, clock=lambda: NOW)
    top = page.items[0]
    # RCP 2017 chart 1: pulse 131+ 3, respiration 25+ 3, SpO2 (scale 1) <= 91 3, systolic 91-100 2
    assert top.id == ids[4] and top.news2 is not None
    assert (top.news2.score, top.news2.band, top.news2.complete) == (11, "high", False)
    assert top.heart_rate is not None and top.heart_rate.value == 135.0
    assert page.items[1].id == ids[0] and page.items[1].news2 is None


def test_low_news2_does_not_outrank_an_alert(world: tuple[Store, list[str], dict[str, str]]) -> None:
    store, ids, _ = world
    for metric, unit, value in (("heart_rate", "/min", 72.0), ("spo2", "%", 97.0), ("systolic_bp", "mm[Hg]", 120.0)):
        add_samples(store, ids[0], metric, unit, [(NOW - timedelta(minutes=1), value)])
    add_alert(store, ids[3], "hyper-l1", "low")
    page = patient_overview(store, allowed=None, clock=lambda: NOW)
    by_id = {i.id: i for i in page.items}
    assert by_id[ids[0]].news2 is not None and (by_id[ids[0]].news2.score, by_id[ids[0]].news2.band) == (0, "low")
    assert page.items[0].id == ids[3] and by_id[ids[0]].reasons == []
