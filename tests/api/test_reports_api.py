"""Report routes: the CGM report JSON (metrics equal an independent computation), the PDF and HTML downloads
(one page, self-contained, a safe download name), audited as exports, 404 for a patient outside the caller's
reach, problem+json naming the field for bad input."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from medtwin.physiology.metrics import glucose_metrics
from medtwin.record.sources import RawUnit
from medtwin.security import accounts
from medtwin.store.database import Store
from medtwin.store.records import RecordRepository
from medtwin.store.samples import SampleRepository
from medtwin.store.security_tables import audit_log
from medtwin.synthetic import generate_bundles
from medtwin.twin.build import import_units
from medtwin.vocab import Sample

END = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
PW = "a long enough password"


def _mrn(bundle: dict[str, Any]) -> str:
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    return str(next(i["value"] for i in patient["identifier"] if i["type"]["coding"][0]["code"] == "MR"))


@pytest.fixture
def world(api_store: Store) -> dict[str, Any]:
    """Two synthetic patients; the first with 14 days of 5-minute CGM (values kept for the checks)."""
    bundles = generate_bundles(n_patients=2)
    assert import_units(api_store, [RawUnit(f"p{i}.json", "json", b) for i, b in enumerate(bundles)]).ok
    with api_store.connect() as connection:
        records = RecordRepository(connection, api_store.codec)
        own, other = (records.resolve_patient(_mrn(b)) for b in bundles)
    t = END.timestamp() - 300.0 * np.arange(14 * 288)[::-1]
    g = 140 + 60 * np.sin(2 * np.pi * t / 86400) + np.random.default_rng(11).normal(0, 15, t.size)
    rows = [Sample(str(own), "glucose", datetime.fromtimestamp(float(a), UTC), float(v), "mg/dL", float(v), "mg/dL",
                   "cgm", "http", f"k{uuid.uuid4().hex}") for a, v in zip(t, g, strict=True)]
    with api_store.begin() as connection:
        SampleRepository(connection).insert_ignore(rows, received_at=END)
    patient = next(e["resource"] for e in bundles[0]["entry"] if e["resource"]["resourceType"] == "Patient")
    name = f"{patient['name'][0]['given'][0]} {patient['name'][0]['family']}"
    return {"own": own, "other": other, "t": t, "g": g, "mrn": _mrn(bundles[0]), "name": name}


def _clinician(client: TestClient, api_store: Store, patient_id: str) -> dict[str, str]:
    with api_store.begin() as connection:
        accounts.create_user(connection, "dr-report", PW, "clinician")
        accounts.add_to_care_team(connection, "dr-report", patient_id)
    token = client.post("/api/v1/auth/token", data={"grant_type": "password", "username": "dr-report",
                                                     "password": PW}).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def _last_audit(api_store: Store) -> dict[str, Any]:
    with api_store.connect() as connection:
        row = connection.execute(select(audit_log).order_by(audit_log.c.seq.desc()).limit(1)).mappings().first()
    assert row is not None
    return dict(row)


def test_cgm_report_json(client: TestClient, world: dict[str, Any]) -> None:
    response = client.get(f"/api/v1/patients/{world['own']}/cgm-report", params={"days": 7})
    assert response.status_code == 200, response.text
    body = response.json()
    window = world["t"] > END.timestamp() - 7 * 86400
    expected = glucose_metrics(world["g"][window], 5.0)[0]
    for name, value in expected.model_dump().items():
        assert body["metrics"][name] == pytest.approx(value, rel=1e-9), name
    assert body["coverage"]["n_readings"] == 7 * 288 and body["coverage"]["percent_time_active"] == 100.0
    assert body["coverage"]["sufficient"] is True and body["time_zone"] == "UTC" and body["unit"] == "mg/dL"
    assert datetime.fromisoformat(body["coverage"]["end"]) == END
    agp = body["agp"]
    assert len(agp["minute_of_day"]) == 96 and all(len(agp[k]) == 96 for k in ("p5", "p25", "p50", "p75", "p95"))
    first_bin = world["g"][window][np.mod(world["t"][window], 86400) < 900]
    assert agp["p50"][0] == pytest.approx(float(np.median(first_bin)))
    assert [t["metric"] for t in body["targets"]][0] == "time_in_range_70_180_percent"
    # by MRN, and a patient without CGM data
    assert client.get(f"/api/v1/patients/{world['mrn']}/cgm-report").json()["coverage"]["n_readings"] == 14 * 288
    empty = client.get(f"/api/v1/patients/{world['other']}/cgm-report").json()
    assert empty["metrics"] is None and empty["coverage"]["n_readings"] == 0


@pytest.mark.parametrize(("params", "field"), [({"days": 0}, "days"), ({"days": 91}, "days"),
                                               ({"tz": "Mars/Olympus"}, "tz"), ({"tz": "America"}, "tz")])
def test_bad_input_names_the_field(client: TestClient, world: dict[str, Any], params: dict[str, Any],
                                   field: str) -> None:
    for path in ("cgm-report", "report.pdf"):
        response = client.get(f"/api/v1/patients/{world['own']}/{path}", params=params)
        assert response.status_code == 422 and response.headers["content-type"] == "application/problem+json"
        assert [e["loc"][-1] for e in response.json()["errors"]] == [field]


def test_pdf_download_is_one_page_with_a_safe_name_and_audited(client: TestClient, api_store: Store,
                                                                world: dict[str, Any]) -> None:
    response = client.get(f"/api/v1/patients/{world['own']}/report.pdf")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    disposition = response.headers["content-disposition"]
    match = re.fullmatch(r'attachment; filename="(twin-report-[0-9a-f-]{36}-\d{8}T\d{4}Z\.pdf)"', disposition)
    assert match and world["own"] in match.group(1)
    assert not any(part.lower() in disposition.lower() for part in world["name"].split())
    pdf = response.content
    assert pdf.startswith(b"%PDF-1.") and len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf)) == 1
    assert re.search(rb"/Count\s+1\b", pdf)
    entry = _last_audit(api_store)
    assert (entry["action"], entry["resource_type"], entry["patient_id"], entry["outcome"], entry["status"]) == \
        ("export", "Patient", world["own"], "success", 200)
    assert json.loads(entry["detail"])["format"] == "pdf"


def test_html_download_is_self_contained(client: TestClient, api_store: Store, world: dict[str, Any]) -> None:
    metrics = client.get(f"/api/v1/patients/{world['own']}/cgm-report").json()["metrics"]
    response = client.get(f"/api/v1/patients/{world['own']}/report.html", params={"tz": "Europe/Berlin"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-disposition"].startswith('attachment; filename="twin-report-')
    document = response.text
    assert world["name"] in document and f"MRN {world['mrn']}" in document
    assert f"{metrics['time_in_range_70_180_percent']:.1f} %" in document
    assert "time of day (Europe/Berlin)" in document
    for forbidden in ("<script", "<link", "src=", "href=", "url(", "http://", "https://"):
        assert forbidden not in document.lower()
    entry = _last_audit(api_store)
    assert entry["action"] == "export" and json.loads(entry["detail"])["format"] == "html"


def test_invisible_patient_is_not_found(client: TestClient, api_store: Store, world: dict[str, Any]) -> None:
    headers = _clinician(client, api_store, world["own"])
    assert client.get(f"/api/v1/patients/{world['own']}/report.html", headers=headers).status_code == 200
    for path in ("cgm-report", "report.pdf", "report.html"):
        for patient in (world["other"], "no-such-patient"):
            response = client.get(f"/api/v1/patients/{patient}/{path}", headers=headers)
            assert response.status_code == 404, (path, patient)
            assert response.headers["content-type"] == "application/problem+json"
            assert b"%PDF" not in response.content and world["name"] not in response.text
    entry = _last_audit(api_store)
    assert entry["action"] == "export" and entry["outcome"] == "denied"
