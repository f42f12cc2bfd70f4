"""SampleRepository on SQLite and PostgreSQL: insert-ignore, series in time order, downsampling that keeps
spikes, latest per metric, counts, quarantine rows sealed and idempotent."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medtwin.security.crypto import AesGcmCodec, KeyRing
from medtwin.store.database import Store
from medtwin.store.live_tables import quarantine
from medtwin.store.samples import SampleRepository, downsample_indices
from medtwin.vocab import Sample

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def _sample(metric: str, minute: float, value: float, *, patient: str = "p1", key: str | None = None) -> Sample:
    time = T0 + timedelta(minutes=minute)
    unit = {"glucose": "mg/dL", "heart_rate": "/min"}[metric]
    return Sample(patient, metric, time, value, unit, value, unit, "dev", "test",
                  key or f"{patient}|dev|{metric}|{time.isoformat()}")


def test_insert_ignore_reports_only_new_keys_and_series_is_time_ordered(store: Store) -> None:
    rows = [_sample("glucose", m, 100 + m) for m in (30, 0, 10, 20)]  # out of order
    with store.begin() as conn:
        first = SampleRepository(conn).insert_ignore(rows, T0)
    assert first == {r.idempotency_key for r in rows}
    with store.begin() as conn:
        again = SampleRepository(conn).insert_ignore([*rows[:2], _sample("glucose", 40, 140)], T0)
    assert again == {_sample("glucose", 40, 140).idempotency_key}
    with store.connect() as conn:
        repo = SampleRepository(conn)
        series = repo.series("p1", "glucose")
        assert [t.minute for t in series.times] == [0, 10, 20, 30, 40]
        assert series.values == [100.0, 110.0, 120.0, 130.0, 140.0]
        assert series.times[0].tzinfo is not None and series.unit == "mg/dL"
        assert repo.count("p1") == 5 and repo.count("p1", "heart_rate") == 0 and repo.count("p2") == 0
        window = repo.series("p1", "glucose", start=T0 + timedelta(minutes=10), end=T0 + timedelta(minutes=30))
        assert window.values == [110.0, 120.0]  # start inclusive, end exclusive
        columns = repo.series_columns("p1", "glucose")
        assert columns["times"][:2] == ["2024-03-01T00:00:00Z", "2024-03-01T00:10:00Z"]
        assert columns["values"][-1] == 140.0 and columns["total"] == 5


def test_large_batch_is_chunked_and_duplicates_within_a_batch_are_stored_once(store: Store) -> None:
    rows = [_sample("heart_rate", i / 60, 60 + i % 40) for i in range(1_234)]
    rows.append(rows[5])
    with store.begin() as conn:
        inserted = SampleRepository(conn).insert_ignore(rows, T0)
    assert len(inserted) == 1_234
    with store.connect() as conn:
        assert SampleRepository(conn).count("p1", "heart_rate") == 1_234


def test_downsampling_keeps_min_and_max_of_each_bucket(store: Store) -> None:
    rows = [_sample("heart_rate", i, 70.0) for i in range(2_000)]
    rows[1_234] = _sample("heart_rate", 1_234, 190.0)  # a spike
    rows[777] = _sample("heart_rate", 777, 31.0)  # a dip
    with store.begin() as conn:
        SampleRepository(conn).insert_ignore(rows, T0)
    with store.connect() as conn:
        series = SampleRepository(conn).series("p1", "heart_rate", max_points=100)
    assert len(series.values) <= 100 and series.total == 2_000
    assert max(series.values) == 190.0 and min(series.values) == 31.0
    assert series.times == sorted(series.times)
    spike_time = T0 + timedelta(minutes=1_234)
    assert spike_time in series.times


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=400), max_points=st.integers(2, 120))
def test_downsample_indices_properties(values: list[float], max_points: int) -> None:
    t = np.arange(len(values), dtype=np.int64) * 300
    v = np.asarray(values)
    keep = downsample_indices(t, v, max_points)
    assert len(keep) <= max(max_points, 1) or len(values) <= max_points
    assert list(keep) == sorted(set(keep.tolist()))  # ascending, unique
    assert v[keep].max() == v.max() and v[keep].min() == v.min()
    if len(values) <= max_points:
        assert len(keep) == len(values)


def test_latest_per_metric(store: Store) -> None:
    rows = [_sample("glucose", 50, 180), _sample("glucose", 10, 90), _sample("heart_rate", 5, 64),
            _sample("glucose", 40, 170, patient="p2")]
    with store.begin() as conn:
        SampleRepository(conn).insert_ignore(rows, T0)
    with store.connect() as conn:
        latest = SampleRepository(conn).latest("p1")
    assert set(latest) == {"glucose", "heart_rate"}
    assert latest["glucose"].value == 180 and latest["glucose"].time == T0 + timedelta(minutes=50)
    assert latest["heart_rate"].value == 64


@pytest.fixture
def sealed_store(database_url: str) -> Iterator[Store]:
    instance = Store(database_url, AesGcmCodec(KeyRing.generate()))
    instance.migrate()
    yield instance
    instance.dispose()


def test_quarantine_is_sealed_and_idempotent(sealed_store: Store) -> None:
    row = {"patient_id": "p1", "device": "dev", "metric": "spo2", "time": T0, "received_at": T0,
           "source": "test", "reason": "out-of-range", "field": "[0].value", "detail": "130 %",
           "payload": b'{"metric":"spo2","value":130}', "idempotency_key": "q|p1|dev|abc"}
    with sealed_store.begin() as conn:
        assert SampleRepository(conn, sealed_store.codec).quarantine_ignore([row, {**row, "idempotency_key": None}]) == 2
    with sealed_store.begin() as conn:
        assert SampleRepository(conn, sealed_store.codec).quarantine_ignore([row]) == 0
    with sealed_store.connect() as conn:
        raw = conn.execute(quarantine.select()).fetchall()
        total, page = SampleRepository(conn, sealed_store.codec).quarantined("p1")
    assert len(raw) == 2 and all(b"130" not in bytes(r._mapping["payload"]) for r in raw)  # sealed at rest
    assert total == 2 and page[0].payload == b'{"metric":"spo2","value":130}'
    assert page[0].reason == "out-of-range" and page[0].field == "[0].value" and page[0].time == T0
