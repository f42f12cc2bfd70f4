"""Device samples and quarantined input: batch insert-ignore, time series, latest values, counts.

Writes go straight through the driver (one multi-row ``INSERT .. ON CONFLICT DO NOTHING RETURNING`` per
chunk, on SQLite and PostgreSQL alike): the statement tells which rows were new, so duplicates are known
without a read before the write, and a batch of a thousand samples is a handful of statements. On SQLite
times are written in SQLAlchemy's DATETIME storage format (UTC), so SQLAlchemy reads them back unchanged.

Series come back in time order, optionally downsampled to ``max_points`` keeping each bucket's minimum and
maximum (a spike stays visible on a chart).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import numpy as np
from sqlalchemy import Connection, func, select

from medtwin.store.codec import Codec
from medtwin.store.live_tables import quarantine
from medtwin.store.schema import samples
from medtwin.vocab import CANONICAL_UNITS, Sample

__all__ = ["QuarantineRow", "SampleRepository", "Series", "downsample_indices", "sqlite_time"]

_SAMPLE_COLUMNS = ("patient_id", "metric", "time", "value", "unit", "original_value", "original_unit", "device",
                   "source", "idempotency_key", "received_at")
_QUARANTINE_COLUMNS = ("patient_id", "device", "metric", "time", "received_at", "source", "reason", "field",
                       "detail", "payload", "idempotency_key")
_CHUNK = 500  # rows per statement: 11 columns x 500 = 5,500 parameters (SQLite allows 32,766)


def sqlite_time(value: datetime) -> str:
    """SQLAlchemy's SQLite DATETIME storage format, in UTC."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(" ", "microseconds")


def _aware(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@lru_cache(maxsize=64)
def _insert_sql(table: str, columns: tuple[str, ...], rows: int, marker: str, returning: str | None) -> str:
    one = "(" + ", ".join([marker] * len(columns)) + ")"
    sql = (f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([one] * rows)} "
           f"ON CONFLICT (idempotency_key) DO NOTHING")
    return sql + (f" RETURNING {returning}" if returning else "")


@dataclass(frozen=True)
class Series:
    """A time series in columns: ``times`` (UTC, ascending) and ``values`` in ``unit``."""

    metric: str
    unit: str
    times: list[datetime]
    values: list[float]
    total: int  # points in the range before downsampling


@dataclass(frozen=True)
class QuarantineRow:
    pk: int
    patient_id: str | None
    device: str | None
    metric: str | None
    time: datetime | None
    received_at: datetime
    source: str
    reason: str
    field: str | None
    detail: str | None
    payload: bytes | None  # opened (plaintext)


def downsample_indices(t: np.ndarray, v: np.ndarray, max_points: int) -> np.ndarray:
    """Indices (ascending) of at most ``max_points`` points: the min and max of each of ``max_points // 2``
    equal-time buckets over ``t`` (sorted). All indices when there are no more points than that."""
    n = len(t)
    if n <= max_points:
        return np.arange(n)
    buckets = max(1, max_points // 2)
    t0, t1 = float(t[0]), float(t[-1])
    span = t1 - t0
    if span <= 0:
        bucket = np.zeros(n, dtype=np.int64)
    else:
        bucket = np.minimum(((t - t0) / span * buckets).astype(np.int64), buckets - 1)
    order = np.lexsort((v, bucket))  # by bucket, then by value
    sorted_bucket = bucket[order]
    starts = np.flatnonzero(np.r_[True, sorted_bucket[1:] != sorted_bucket[:-1]])
    ends = np.r_[starts[1:], n] - 1
    keep = np.unique(np.concatenate([order[starts], order[ends]]))
    return keep


class SampleRepository:
    """Samples and quarantine rows on one connection (the caller owns the transaction)."""

    def __init__(self, connection: Connection, codec: Codec | None = None) -> None:
        self.connection = connection
        self.codec = codec
        self.is_sqlite = connection.dialect.name == "sqlite"
        self._marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"

    # ------------------------------------------------------------------------------------------ writes

    def _time_param(self, value: datetime | None) -> Any:
        if value is None:
            return None
        return sqlite_time(value) if self.is_sqlite else value

    def insert_ignore(self, rows: Sequence[Sample], received_at: datetime, *,
                      iso_times: Sequence[str] | None = None) -> set[str]:
        """Insert samples whose idempotency key is new; returns the keys actually inserted.

        ``iso_times`` (optional, for speed): each row's time as naive UTC ``isoformat(timespec=
        "microseconds")``, already computed by the caller."""
        inserted: set[str] = set()
        if not rows:
            return inserted
        received = self._time_param(received_at)
        sqlite = self.is_sqlite
        if sqlite:
            times: Sequence[Any] = ([f"{t[:10]} {t[11:]}" for t in iso_times] if iso_times is not None
                                    else [sqlite_time(s.time) for s in rows])
        else:
            times = [s.time for s in rows]
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start:start + _CHUNK]
            params: list[Any] = []
            extend = params.extend
            for s, t in zip(chunk, times[start:start + _CHUNK], strict=True):
                extend((s.patient_id, s.metric, t, s.value, s.unit,
                        s.original_value, s.original_unit, s.device, s.source, s.idempotency_key, received))
            sql = _insert_sql("samples", _SAMPLE_COLUMNS, len(chunk), self._marker, "idempotency_key")
            result = self.connection.exec_driver_sql(sql, tuple(params))
            inserted.update(r[0] for r in result.fetchall())
        return inserted

    def stored_values(self, keys: Sequence[str]) -> dict[str, float]:
        """The stored value (canonical unit) of each of ``keys`` that is stored: tells a resent sample from a
        different value under the same idempotency key."""
        found: dict[str, float] = {}
        for start in range(0, len(keys), _CHUNK):
            rows = self.connection.execute(select(samples.c.idempotency_key, samples.c.value)
                                           .where(samples.c.idempotency_key.in_(list(keys[start:start + _CHUNK]))))
            found.update((str(key), float(value)) for key, value in rows)
        return found

    def quarantine_ignore(self, rows: Sequence[dict[str, Any]]) -> int:
        """Quarantine rows (``payload`` as plaintext bytes, sealed here); a known idempotency key is skipped.
        Returns how many were new."""
        if not rows:
            return 0
        added = 0
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start:start + _CHUNK]
            params: list[Any] = []
            for row in chunk:
                payload = row.get("payload")
                if payload is not None and self.codec is not None:
                    payload = self.codec.seal(payload)
                params.extend((row.get("patient_id"), row.get("device"), row.get("metric"),
                               self._time_param(row.get("time")), self._time_param(row["received_at"]),
                               row["source"], row["reason"], row.get("field"), row.get("detail"), payload,
                               row.get("idempotency_key")))
            sql = _insert_sql("quarantine", _QUARANTINE_COLUMNS, len(chunk), self._marker, "pk")
            result = self.connection.exec_driver_sql(sql, tuple(params))
            added += len(result.fetchall())
        return added

    # ------------------------------------------------------------------------------------------ reads

    def _raw_series(self, patient_id: str, metric: str, start: datetime | None,
                    end: datetime | None) -> tuple[np.ndarray, np.ndarray]:
        """Times as datetime64[us] (UTC) and values, ascending in time."""
        m = self._marker
        sql = f"SELECT time, value FROM samples WHERE patient_id = {m} AND metric = {m}"
        params: list[Any] = [patient_id, metric]
        if start is not None:
            sql += f" AND time >= {m}"
            params.append(self._time_param(start))
        if end is not None:
            sql += f" AND time < {m}"
            params.append(self._time_param(end))
        sql += " ORDER BY time, pk"
        result = self.connection.exec_driver_sql(sql, tuple(params))
        rows = result.cursor.fetchall() if result.cursor is not None else []  # plain tuples: no Row objects
        result.close()
        if not rows:
            return np.empty(0, dtype="datetime64[us]"), np.empty(0)
        values = np.fromiter((r[1] for r in rows), dtype=float, count=len(rows))
        if self.is_sqlite:
            times = np.array([r[0] for r in rows], dtype="datetime64[us]")
        else:
            times = np.array([r[0].astimezone(UTC).replace(tzinfo=None) for r in rows], dtype="datetime64[us]")
        return times, values

    def _downsampled(self, patient_id: str, metric: str, start: datetime | None, end: datetime | None,
                     max_points: int | None) -> tuple[np.ndarray, np.ndarray, int]:
        times, values = self._raw_series(patient_id, metric, start, end)
        total = len(times)
        if max_points is not None and total > max_points:
            keep = downsample_indices(times.astype(np.int64), values, max_points)
            times, values = times[keep], values[keep]
        return times, values, total

    def series(self, patient_id: str, metric: str, *, start: datetime | None = None, end: datetime | None = None,
               max_points: int | None = None) -> Series:
        """Samples of one metric in ``[start, end)``, ascending in time, at most ``max_points`` (min/max per
        bucket kept)."""
        times, values, total = self._downsampled(patient_id, metric, start, end, max_points)
        as_dt = [t.replace(tzinfo=UTC) for t in times.astype(datetime)]
        return Series(metric, CANONICAL_UNITS.get(metric, ""), as_dt, values.tolist(), total)

    def series_columns(self, patient_id: str, metric: str, *, start: datetime | None = None,
                       end: datetime | None = None, max_points: int | None = None) -> dict[str, Any]:
        """The same series as JSON-ready columns: ``{metric, unit, total, times: [ISO UTC], values}``
        (vectorised: tens of thousands of points in milliseconds)."""
        times, values, total = self._downsampled(patient_id, metric, start, end, max_points)
        whole_seconds = bool(len(times)) and not np.any(times.astype(np.int64) % 1_000_000)
        iso = np.datetime_as_string(times, unit="s" if whole_seconds else "ms", timezone="UTC")
        return {"metric": metric, "unit": CANONICAL_UNITS.get(metric, ""), "total": total,
                "times": iso.tolist(), "values": values.tolist()}

    def latest(self, patient_id: str, metrics: Iterable[str] | None = None) -> dict[str, Sample]:
        """The newest sample (by time) of each metric the patient has."""
        out: dict[str, Sample] = {}
        for metric in metrics if metrics is not None else CANONICAL_UNITS:
            row = self.connection.execute(
                select(samples).where(samples.c.patient_id == patient_id, samples.c.metric == metric)
                .order_by(samples.c.time.desc(), samples.c.pk.desc()).limit(1)).first()
            if row is None:
                continue
            r = row._mapping
            out[metric] = Sample(r["patient_id"], r["metric"], _aware(r["time"]), r["value"], r["unit"],
                                 r["original_value"], r["original_unit"], r["device"], r["source"] or "",
                                 r["idempotency_key"])
        return out

    def count(self, patient_id: str | None = None, metric: str | None = None) -> int:
        query = select(func.count()).select_from(samples)
        if patient_id is not None:
            query = query.where(samples.c.patient_id == patient_id)
        if metric is not None:
            query = query.where(samples.c.metric == metric)
        return int(self.connection.execute(query).scalar_one())

    def quarantined(self, patient_id: str, *, limit: int = 100, offset: int = 0) -> tuple[int, list[QuarantineRow]]:
        """A patient's quarantined input, newest first: (total, page)."""
        total = int(self.connection.execute(select(func.count()).select_from(quarantine)
                                            .where(quarantine.c.patient_id == patient_id)).scalar_one())
        rows = self.connection.execute(
            select(quarantine).where(quarantine.c.patient_id == patient_id)
            .order_by(quarantine.c.received_at.desc(), quarantine.c.pk.desc()).limit(limit).offset(offset))
        page = []
        for row in rows:
            r = row._mapping
            payload = r["payload"]
            if payload is not None and self.codec is not None:
                payload = self.codec.open(payload)
            page.append(QuarantineRow(r["pk"], r["patient_id"], r["device"], r["metric"],
                                      _aware(r["time"]) if r["time"] is not None else None,
                                      _aware(r["received_at"]), r["source"], r["reason"], r["field"], r["detail"],
                                      bytes(payload) if payload is not None else None))
        return total, page
