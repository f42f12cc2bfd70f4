"""A small HTTP client for sample ingest (standard library only): keep-alive connection, orjson bodies.

Used by the throughput measurement and benchmarks, and usable by a gateway::

    with SampleClient("http://127.0.0.1:8000", token="mtk_...") as client:
        report = client.post_samples(patient_id, make_batch("heart_rate", start, n=1000, step_s=1))
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

__all__ = ["IngestHTTPError", "SampleClient", "make_batch"]


class IngestHTTPError(RuntimeError):
    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        super().__init__(f"HTTP {status}: {body[:300]!r}")
        self.status, self.body, self.headers = status, body, headers


def make_batch(metric: str, start: datetime, n: int, *, step_s: float = 1.0, unit: str | None = None,
               value: float = 70.0, spread: float = 10.0, id_prefix: str | None = None) -> list[dict[str, Any]]:
    """``n`` synthetic samples of ``metric`` every ``step_s`` seconds from ``start`` (values cycle over
    ``value .. value + spread``); with ``id_prefix`` each carries a client id."""
    from medtwin.vocab import CANONICAL_UNITS

    unit = unit or CANONICAL_UNITS[metric]
    base = start.astimezone(UTC)
    out = []
    for i in range(n):
        item: dict[str, Any] = {"metric": metric, "time": (base + timedelta(seconds=i * step_s)).isoformat(),
                                "value": value + (i % 10) * spread / 10, "unit": unit}
        if id_prefix is not None:
            item["id"] = f"{id_prefix}{i}"
        out.append(item)
    return out


class SampleClient:
    """POSTs sample batches to ``/api/v1/patients/{id}/samples`` over one keep-alive connection."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 60.0) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.https = parts.scheme == "https"
        self.prefix = parts.path.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def __enter__(self) -> SampleClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            self._conn = cls(self.host, self.port, timeout=self.timeout)
        return self._conn

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes, dict[str, str]]:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (0, 1):
            conn = self._connection()
            try:
                conn.request(method, self.prefix + path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                return response.status, data, {k.lower(): v for k, v in response.getheaders()}
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()  # the server closed the idle connection: reconnect once
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def post_samples(self, patient_id: str, samples: Iterable[dict[str, Any]] | bytes, *,
                     retry_429: bool = True) -> dict[str, Any]:
        """POST one batch; returns the ingest report. A 429 is retried after its Retry-After when
        ``retry_429``; other errors raise :class:`IngestHTTPError`."""
        body = samples if isinstance(samples, bytes) else orjson.dumps(list(samples))
        path = f"/api/v1/patients/{quote(patient_id, safe='')}/samples"
        while True:
            status, data, headers = self.request("POST", path, body)
            if status == 429 and retry_429:
                time.sleep(float(headers.get("retry-after", "1")))
                continue
            if status != 200:
                raise IngestHTTPError(status, data, headers)
            result: dict[str, Any] = orjson.loads(data)
            return result
