"""IngestPipeline on SQLite and PostgreSQL: exactly-once storage, duplicates, out-of-order, unit
normalisation with the original kept, quarantine (reason, field, sealed, idempotent), unknown patients,
per-device rate limit (nothing stored, retry stores), listeners (only new samples, failures isolated)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from sqlalchemy import func, select

from medtwin.record.sources import RawUnit
from medtwin.security.crypto import AesGcmCodec, KeyRing
from medtwin.store.database import Store
from medtwin.store.live_tables import quarantine
from medtwin.store.samples import SampleRepository
from medtwin.stream.parse import PayloadError, Reading, parse_samples
from medtwin.stream.pipeline import (
    MAX_QUARANTINED_PAYLOAD,
    BatchTooLargeError,
    IngestPipeline,
    RateLimitedError,
    UnknownPatientError,
    idempotency_key,
)
from medtwin.stream.ratelimit import TokenBucketLimiter
from medtwin.twin.build import import_units
from medtwin.vocab import Sample

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
NOW = datetime(2024, 5, 2, tzinfo=UTC)


def _iso(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def hr(minute: float, value: float = 70, **extra: object) -> dict[str, object]:
    return {"metric": "heart_rate", "time": _iso(minute), "value": value, "unit": "/min", **extra}


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def live_store(database_url: str) -> Iterator[Store]:
    """A migrated store (AES-GCM codec) with two patients, p1 and p2."""
    instance = Store(database_url, AesGcmCodec(KeyRing.generate()))
    instance.migrate()
    units = [RawUnit(f"{pid}.json", "json", {"resourceType": "Patient", "id": pid}) for pid in ("p1", "p2")]
    assert import_units(instance, units, actor="test").ok
    yield instance
    instance.dispose()


def _pipeline(store: Store, **kwargs: object) -> IngestPipeline:
    return IngestPipeline(store, clock=lambda: NOW, **kwargs)  # type: ignore[arg-type]


def _count(store: Store, patient: str = "p1") -> int:
    with store.connect() as conn:
        return SampleRepository(conn).count(patient)


def _quarantine_rows(store: Store) -> list[dict[str, object]]:
    with store.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(quarantine).order_by(quarantine.c.pk))]


def test_exactly_once_out_of_order_and_units(live_store: Store) -> None:
    pipeline = _pipeline(live_store)
    batch = [hr(10, 72), hr(0, 60), hr(5, 66),
             {"metric": "glucose", "time": _iso(3), "value": 5.5, "unit": "mmol/L"},
             {"metric": "body_temperature", "time": _iso(4), "value": 98.6, "unit": "[degF]"}]
    first = pipeline.ingest(orjson.dumps(batch), patient_id="p1", device="watch", source="http")
    assert (first.accepted, first.duplicates, first.quarantined, first.received) == (5, 0, [], 5)
    second = pipeline.ingest(orjson.dumps(batch), patient_id="p1", device="watch", source="http")
    assert (second.accepted, second.duplicates) == (0, 5)
    assert _count(live_store) == 5
    with live_store.connect() as conn:
        repo = SampleRepository(conn)
        series = repo.series("p1", "heart_rate")
        glucose = repo.latest("p1")["glucose"]
        temperature = repo.latest("p1")["body_temperature"]
    assert series.values == [60.0, 66.0, 72.0]  # placed in time, not arrival order
    assert glucose.value == pytest.approx(99.0858) and glucose.unit == "mg/dL"
    assert (glucose.original_value, glucose.original_unit) == (5.5, "mmol/L")
    assert temperature.value == pytest.approx(37.0) and temperature.original_unit == "[degF]"
    assert glucose.device == "watch" and glucose.source == "http"


def test_client_ids_key_samples_and_a_resent_id_is_a_duplicate(live_store: Store) -> None:
    pipeline = _pipeline(live_store)
    report = pipeline.ingest([hr(0, id="a"), hr(0, id="b"), hr(1, id="a")], patient_id="p1", device="cgm",
                             source="http")
    assert (report.accepted, report.duplicates) == (2, 1)  # "a" repeated within the call
    assert {s.idempotency_key for s in report.stored} == {"p1|cgm|id:a", "p1|cgm|id:b"}
    assert idempotency_key("p1", None, "heart_rate", T0) == "p1|-|heart_rate|2024-05-01T08:00:00.000000Z"


def test_same_device_name_for_two_patients_never_collides(live_store: Store) -> None:
    pipeline = _pipeline(live_store)
    assert pipeline.ingest([hr(0, id="1")], patient_id="p1", device="cgm", source="http").accepted == 1
    assert pipeline.ingest([hr(0, id="1")], patient_id="p2", device="cgm", source="http").accepted == 1
    assert _count(live_store, "p1") == 1 and _count(live_store, "p2") == 1


def test_bad_samples_are_quarantined_with_reason_and_field_and_the_rest_stored(live_store: Store) -> None:
    pipeline = _pipeline(live_store)
    batch = [hr(0, 70),
             {"metric": "spo2", "time": _iso(1), "value": 130, "unit": "%"},
             hr(2, -5),
             {"metric": "heart_rate", "time": _iso(3), "value": 80, "unit": "mg/dL"},
             {"metric": "mood", "time": _iso(4), "value": 3, "unit": "1"},
             {"metric": "heart_rate", "time": "2024-05-01T08:05:00", "value": 80, "unit": "/min"},
             {"metric": "heart_rate", "time": "2024-05-09T08:05:00Z", "value": 80, "unit": "/min"},
             "not an object",
             hr(9, 90)]
    report = pipeline.ingest(orjson.dumps(batch), patient_id="p1", device="watch", source="http")
    assert report.accepted == 2 and report.received == 9
    got = {(q.index, q.field, q.reason) for q in report.quarantined}
    assert got == {(1, "[1].value", "out-of-range"), (2, "[2].value", "out-of-range"), (3, "[3].unit", "unit"),
                   (4, "[4].metric", "unknown-metric"), (5, "[5].time", "naive-time"),
                   (6, "[6].time", "future-time"), (7, "[7]", "malformed")}
    rows = _quarantine_rows(live_store)
    assert len(rows) == 7
    spo2 = next(r for r in rows if r["field"] == "[1].value")
    assert spo2["reason"] == "out-of-range" and spo2["metric"] == "spo2" and spo2["device"] == "watch"
    assert isinstance(spo2["payload"], bytes) and b"130" not in spo2["payload"]  # sealed at rest
    assert orjson.loads(live_store.codec.open(spo2["payload"]))["value"] == 130  # type: ignore[arg-type]
    # a retried bad sample is quarantined once; the good ones are duplicates
    again = pipeline.ingest(orjson.dumps(batch), patient_id="p1", device="watch", source="http")
    assert again.accepted == 0 and again.duplicates == 2 and len(again.quarantined) == 7
    assert len(_quarantine_rows(live_store)) == 7


def test_unreadable_payload_raises_naming_the_field_and_is_quarantined_once(live_store: Store) -> None:
    pipeline = _pipeline(live_store)
    for _ in range(2):
        with pytest.raises(PayloadError) as caught:
            pipeline.ingest(b"{not json", patient_id="p1", device="watch", source="mqtt")
        assert caught.value.field == "$" and caught.value.reason == "malformed"
    with pytest.raises(PayloadError, match="unrecognised object"):
        pipeline.ingest({"hello": 1}, patient_id="p1", device="watch", source="mqtt")
    rows = _quarantine_rows(live_store)
    assert [r["reason"] for r in rows] == ["malformed", "malformed"]
    assert live_store.codec.open(rows[0]["payload"]) == b"{not json"  # type: ignore[arg-type]
    assert _count(live_store) == 0


def test_unknown_patient_stores_nothing(live_store: Store) -> None:
    pipeline = _pipeline(live_store)
    with pytest.raises(UnknownPatientError):
        pipeline.ingest([hr(0)], patient_id="nobody", device="watch", source="http")
    assert _count(live_store, "nobody") == 0 and _quarantine_rows(live_store) == []


def test_rate_limit_refuses_whole_call_and_a_retry_after_refill_stores_it(live_store: Store) -> None:
    clock = FakeMonotonic()
    pipeline = _pipeline(live_store, rate_limiter=TokenBucketLimiter(60, monotonic=clock))  # 1 per second
    assert pipeline.ingest([hr(i) for i in range(50)], patient_id="p1", device="a", source="http").accepted == 50
    burst = [hr(100 + i) for i in range(20)]
    with pytest.raises(RateLimitedError) as caught:
        pipeline.ingest(burst, patient_id="p1", device="a", source="http")
    assert caught.value.retry_after == pytest.approx(10.0)  # 10 tokens left, 20 needed, 1 per second
    assert _count(live_store) == 50  # nothing of the refused call
    # another device has its own bucket, and so has another caller (rate_key) of the same device name
    assert pipeline.ingest([hr(200)], patient_id="p1", device="b", source="http").accepted == 1
    assert pipeline.ingest([hr(201)], patient_id="p1", device="a", source="http", rate_key="user:x").accepted == 1
    clock.now += 10.0
    assert pipeline.ingest(burst, patient_id="p1", device="a", source="http").accepted == 20
    assert _count(live_store) == 72
    with pytest.raises(BatchTooLargeError):
        pipeline.ingest([hr(300 + i) for i in range(61)], patient_id="p1", device="a", source="http")


def test_listeners_get_only_new_samples_in_time_order_and_failures_are_isolated(
        live_store: Store, caplog: pytest.LogCaptureFixture) -> None:
    pipeline = _pipeline(live_store)
    seen: list[list[Sample]] = []

    def broken(samples: list[Sample]) -> None:
        raise RuntimeError("listener bug")

    pipeline.add_listener(broken)
    pipeline.add_listener(seen.append)
    with caplog.at_level(logging.ERROR, logger="medtwin.stream"):
        report = pipeline.ingest([hr(5, 75), hr(1, 61)], patient_id="p1", device="w", source="http")
    assert report.accepted == 2
    assert [s.value for s in seen[0]] == [61.0, 75.0]
    assert "listener" in caplog.text and "listener bug" in caplog.text
    pipeline.ingest([hr(5, 75), hr(7, 77)], patient_id="p1", device="w", source="http")
    assert [s.value for s in seen[1]] == [77.0]  # the duplicate is not passed on
    pipeline.ingest([hr(5, 75)], patient_id="p1", device="w", source="http")
    assert len(seen) == 2  # nothing new: no call
    pipeline.remove_listener(seen.append)
    pipeline.ingest([hr(8)], patient_id="p1", device="w", source="http")
    assert len(seen) == 2


def test_ingest_samples_takes_readings_and_samples(live_store: Store) -> None:
    pipeline = _pipeline(live_store)
    readings = [Reading("glucose", T0, 6.0, "mmol/L", client_id="r1"),
                Reading("glucose", T0 + timedelta(minutes=5), 800.0, "mmol/L"),
                Reading("heart_rate", datetime(2024, 5, 1, 9, 0), 70.0, "/min")]  # naive
    report = pipeline.ingest_samples(readings, patient_id="p1", device="fleet-1", source="fleet")
    assert report.accepted == 1
    assert {(q.field, q.reason) for q in report.quarantined} == {("[1].value", "out-of-range"),
                                                                 ("[2].time", "naive-time")}
    sample = Sample("p1", "heart_rate", T0, 70.0, "/min", 70.0, "bpm", "x", "fleet", "ignored")
    again = pipeline.ingest_samples([sample, sample], patient_id="p1", device="fleet-1", source="fleet")
    assert (again.accepted, again.duplicates) == (1, 1)
    assert again.stored[0].idempotency_key == "p1|fleet-1|heart_rate|2024-05-01T08:00:00.000000Z"
    assert again.stored[0].original_unit == "bpm"


def test_resolves_patient_by_mrn_like_identifier(live_store: Store) -> None:
    pipeline = _pipeline(live_store)
    with live_store.connect() as conn:
        count = conn.execute(select(func.count()).select_from(quarantine)).scalar_one()
    assert count == 0
    assert pipeline.resolve_patient("p1") == "p1"
    with pytest.raises(UnknownPatientError):
        pipeline.resolve_patient("p3")


def test_a_huge_unreadable_payload_keeps_its_head_and_digest(live_store: Store) -> None:
    pipeline = _pipeline(live_store)
    body = b"x" * (MAX_QUARANTINED_PAYLOAD + 10)
    with pytest.raises(PayloadError):
        pipeline.ingest(body, patient_id="p1", device="w", source="mqtt")
    (row,) = _quarantine_rows(live_store)
    kept = live_store.codec.open(row["payload"])  # type: ignore[arg-type]
    assert len(kept) == MAX_QUARANTINED_PAYLOAD
    assert f"of {len(body)} bytes kept" in str(row["detail"]) and hashlib.sha256(body).hexdigest() in str(row["detail"])


def test_prepare_writes_nothing_and_write_stores_several_calls_in_the_callers_transaction(live_store: Store) -> None:
    pipeline = _pipeline(live_store)
    seen: list[list[Sample]] = []
    pipeline.add_listener(seen.append)
    first = pipeline.prepare(parse_samples([hr(0), hr(5), hr(0)]), patient_id="p1", device="watch", source="t")
    second = pipeline.prepare(parse_samples([hr(10), {"metric": "heart_rate"}]), patient_id="p2", device="watch",
                              source="t")
    assert _count(live_store, "p1") == 0 and _quarantine_rows(live_store) == []  # prepared, nothing written
    assert [q.reason for q in second.report.quarantined] == ["missing"] and first.repeated == 1
    with pytest.raises(RuntimeError), live_store.begin() as connection:  # the caller's transaction rolls back
        pipeline.write(connection, [first, second])
        raise RuntimeError("after the write, before the commit")
    assert _count(live_store, "p1") == 0 and _quarantine_rows(live_store) == []
    with live_store.begin() as connection:
        pipeline.write(connection, [first, second])
    assert (first.report.accepted, first.report.duplicates) == (2, 1)
    assert (second.report.accepted, second.report.duplicates) == (1, 0)
    assert [s.time for s in first.report.stored] == [T0, T0 + timedelta(minutes=5)]
    assert _count(live_store, "p1") == 2 and _count(live_store, "p2") == 1 and len(_quarantine_rows(live_store)) == 1
    assert seen == []  # listeners are the caller's to tell, after its commit


def test_write_counts_a_key_once_across_the_calls_of_a_batch(live_store: Store) -> None:
    pipeline = _pipeline(live_store)
    calls = [pipeline.prepare(parse_samples([hr(0), hr(1)]), patient_id="p1", device="watch", source="t"),
             pipeline.prepare(parse_samples([hr(1), hr(2)]), patient_id="p1", device="watch", source="t")]
    with live_store.begin() as connection:
        pipeline.write(connection, calls)
    assert [(c.report.accepted, c.report.duplicates) for c in calls] == [(2, 0), (1, 1)]
    assert sum(len(c.report.stored) for c in calls) == _count(live_store) == 3


def test_a_different_value_for_a_key_claimed_earlier_in_the_same_batch_is_quarantined(live_store: Store) -> None:
    pipeline = _pipeline(live_store)
    calls = [pipeline.prepare(parse_samples([hr(0, 70)]), patient_id="p1", device="watch", source="t"),
             pipeline.prepare(parse_samples([hr(0, 71), hr(1)]), patient_id="p1", device="watch", source="t"),
             pipeline.prepare(parse_samples([hr(0, 70)]), patient_id="p1", device="watch", source="t")]
    with live_store.begin() as connection:
        pipeline.write(connection, calls)
    assert [(c.report.accepted, c.report.duplicates) for c in calls] == [(1, 0), (1, 0), (0, 1)]
    assert [q.reason for q in calls[1].report.quarantined] == ["conflict"]
    assert [r["reason"] for r in _quarantine_rows(live_store)] == ["conflict"]
