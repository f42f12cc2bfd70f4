"""The API as documented and as sent (issue 13, defect 10): every operation lists its problem answers with
``application/problem+json``, ingest refuses ``text/plain`` with 415, and ``medtwin serve`` sends no server
banner."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from medtwin.api.app import create_app
from medtwin.config import Settings
from medtwin.security import accounts
from medtwin.security.crypto import AesGcmCodec, KeyRing
from medtwin.store.database import Store

PROBLEM = "application/problem+json"
PW = "correct horse battery staple"


@pytest.fixture(scope="module")
def app_and_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Store]]:
    tmp = tmp_path_factory.mktemp("spec")
    ring = KeyRing.generate()
    store = Store(f"sqlite:///{tmp / 'spec.db'}", AesGcmCodec(ring))
    store.migrate()
    with store.begin() as conn:
        accounts.create_user(conn, "admin", PW, "admin")
    yield create_app(Settings(data_dir=tmp), store=store, keyring=ring), store
    store.dispose()


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, p, op) for p, item in document["paths"].items() for m, op in item.items()
            if m in ("get", "put", "post", "delete", "patch")]


def test_every_operation_documents_its_problems(app_and_store: tuple[Any, Store]) -> None:
    document = app_and_store[0].openapi()
    assert document["components"]["schemas"]["ProblemDetails"]["required"] == ["type", "title", "status"]
    assert "HTTPValidationError" not in document["components"]["schemas"]
    ops = _operations(document)
    assert len(ops) >= 30
    counts = {s: 0 for s in ("401", "403", "404", "409", "422", "429")}
    for method, path, op in ops:
        responses = op["responses"]
        expected = {"429"}
        if op.get("security"):
            expected |= {"401", "403"}
        if "{" in path:
            expected.add("404")
        if op.get("parameters") or op.get("requestBody"):
            expected.add("422")
        assert expected <= set(responses), (method, path, expected - set(responses))
        for status, response in responses.items():
            if int(status) >= 400:
                assert response["content"] == {PROBLEM: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}, (
                    method, path, status)
                counts[status] = counts.get(status, 0) + 1
    secured = sum(1 for _m, _p, op in ops if op.get("security"))
    assert secured >= len(ops) - 3 and counts["401"] == counts["403"] == secured  # all but health, token, revoke
    assert counts["409"] >= 5 and counts["429"] == len(ops)
    alerts = document["paths"]["/api/v1/alerts/{alert_id}/acknowledge"]["post"]["responses"]
    assert "409" in alerts  # the documented conflict of a transition


def test_ingest_refuses_text_plain_with_415(app_and_store: tuple[Any, Store]) -> None:
    app, _store = app_and_store
    with TestClient(app) as client:
        token = client.post("/api/v1/auth/token", data={"grant_type": "password", "username": "admin",
                                                         "password": PW}).json()["access_token"]
        h = {"Authorization": f"Bearer {token}", "Content-Type": "text/plain"}
        body = b'[{"metric": "heart_rate", "value": 70, "unit": "/min", "time": "2026-01-01T00:00:00Z"}]'
        for path in ("/api/v1/patients/p1/samples", "/api/v1/record"):
            r = client.post(path, content=body, headers=h)
            assert r.status_code == 415, (path, r.text)
            assert r.headers["content-type"] == PROBLEM and r.json()["field"] == "content-type"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_medtwin_serve_sends_no_server_banner(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "MEDTWIN_DEMO": "1", "MEDTWIN_DATA_DIR": str(tmp_path), "MEDTWIN_LOG_LEVEL": "warning"}
    medtwin = Path(sys.executable).with_name("medtwin")
    log = tmp_path / "serve.log"  # a file, not a pipe nobody reads while it runs (a full pipe blocks the server)
    with log.open("wb") as out:
        proc = subprocess.Popen([str(medtwin), "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
                                stdout=subprocess.DEVNULL, stderr=out)
    try:
        deadline, response = time.monotonic() + 120, None  # the demo's setup takes ~15 s on a loaded machine
        while time.monotonic() < deadline and response is None:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2)
            except httpx.TransportError:
                assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
                time.sleep(0.2)
        assert response is not None and response.status_code == 200
        assert "server" not in response.headers, response.headers.get("server")
        assert response.headers["x-content-type-options"] == "nosniff"
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_problem_schema_does_not_replace_a_model_of_the_same_family(app_and_store: tuple[Any, Store]) -> None:
    schemas = app_and_store[0].openapi()["components"]["schemas"]
    assert "ProblemDetails" in schemas and schemas["ProblemDetails"]["properties"]["status"]["type"] == "integer"
    assert schemas.get("Problem") != schemas["ProblemDetails"]  # the summary's problem-list entry keeps its own
