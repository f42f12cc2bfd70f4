"""The live glucose twin over HTTP: samples posted to the ingest API reach the filter, the forecast and the
filter status are served, 404 problems before the first reading and for unknown patients."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from medtwin.physiology.synthetic import synthetic_log
from medtwin.physiology.uva_padova import virtual_patients
from medtwin.store.database import Store
from medtwin.store.twins import TwinRepository
from medtwin.synthetic import generate_bundles
from medtwin.twin.live import LiveGlucoseService

PROBLEM = "application/problem+json"
T0 = datetime(2024, 3, 1, 6, 0, tzinfo=UTC)
UNITS = {"glucose": "mg/dL", "carbs": "g", "insulin_bolus": "U", "insulin_basal": "U/h"}


@pytest.fixture
def patient(client: TestClient) -> str:
    bundle = generate_bundles(n_patients=1)[0]
    response = client.post("/api/v1/record", content=json.dumps(bundle).encode(),
                           headers={"content-type": "application/fhir+json"})
    assert response.status_code == 201, response.text
    return str(client.get("/api/v1/patients").json()["items"][0]["id"])


def _samples(hours: float) -> list[dict[str, Any]]:
    log, _truth = synthetic_log(virtual_patients(["adult#007"]), 1, np.random.default_rng(5))
    rows = [("insulin_basal", 0.0, log.basal_u_per_h)]
    rows += [("glucose", t, round(g)) for t, g in zip(log.cgm_t_min, log.cgm_mg_dl, strict=True) if t <= hours * 60]
    rows += [("carbs", m.time_min, m.carbs_g) for m in log.meals if m.time_min <= hours * 60]
    rows += [("insulin_bolus", b.time_min, b.units) for b in log.boluses if b.time_min <= hours * 60]
    return [{"metric": metric, "time": (T0 + timedelta(minutes=t)).isoformat(), "value": value,
             "unit": UNITS[metric], "id": f"{metric}-{t}"} for metric, t, value in sorted(rows, key=lambda r: r[1])]


def _wait_for(service: LiveGlucoseService, patient: str, issued_at: datetime, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = service.latest_forecast(patient)
        if found is not None and found.issued_at == issued_at:
            return
        time.sleep(0.05)
    raise AssertionError("the live twin did not fold the readings in")


def test_posted_samples_reach_the_live_twin_and_its_forecast(client: TestClient, patient: str,
                                                             api_store: Store) -> None:
    base = f"/api/v1/patients/{patient}"
    before = client.get(f"{base}/forecast")
    assert before.status_code == 404 and before.headers["content-type"] == PROBLEM
    assert before.json()["field"] == "patient_id"
    assert client.get(f"{base}/twin/live").status_code == 404

    samples = _samples(hours=10)
    readings = sum(1 for s in samples if s["metric"] == "glucose")
    response = client.post(f"{base}/samples", json=samples)
    assert response.status_code == 200 and response.json()["accepted"] == len(samples), response.text
    service = client.app.state.services.live_glucose  # type: ignore[attr-defined]
    _wait_for(service, patient, T0 + timedelta(hours=10))  # the worker thread folds them in

    forecast = client.get(f"{base}/forecast")
    assert forecast.status_code == 200, forecast.text
    body = forecast.json()
    assert body["patient_id"] == patient
    assert body["issued_at"].startswith((T0 + timedelta(hours=10)).isoformat()[:16])
    assert body["horizons_min"] == list(range(5, 65, 5))
    mean, lo80, hi80 = (np.array(body[k]) for k in ("mean_mg_dl", "lower80_mg_dl", "upper80_mg_dl"))
    lo95, hi95 = np.array(body["lower95_mg_dl"]), np.array(body["upper95_mg_dl"])
    assert np.all(lo95 < lo80) and np.all(lo80 < hi80) and np.all(hi80 < hi95)
    last = next(s["value"] for s in reversed(samples) if s["metric"] == "glucose")
    assert abs(body["glucose_now_mg_dl"] - last) < 40 and 40 < mean[5] < 400
    assert body["twin_version"] is None  # no fitted glucose twin: the cohort prior

    status = client.get(f"{base}/twin/live").json()
    assert status["samples_assimilated"] == readings and status["samples_skipped"] == 0
    assert status["data_time"] == body["issued_at"]
    lo, hi = status["insulin_sensitivity_ci95"]
    assert lo < status["insulin_sensitivity_ratio"] < hi
    assert status["started_from"]["kind"] == "cohort_prior"
    assert set(status["parameter_ratios"]) == {"Vmx", "kp3", "kp1", "kabs", "kmax", "kmin", "p2u"}
    with api_store.connect() as connection:
        versions = [v for v in TwinRepository(connection, api_store.codec).history(patient) if v.kind == "glucose-live"]
    assert [v.provenance["reason"] for v in versions] == ["start"]  # 10 h of data in one batch: one start version
    assert status["live_twin_version"] == versions[0].version

    # a late reading is stored by the pipeline but skipped by the filter
    late = [{"metric": "glucose", "time": (T0 + timedelta(minutes=7)).isoformat(), "value": 150, "unit": "mg/dL",
             "id": "late"}]
    assert client.post(f"{base}/samples", json=late).json()["accepted"] == 1
    deadline = time.monotonic() + 30
    while client.get(f"{base}/twin/live").json()["samples_skipped"] != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.get(f"{base}/twin/live").json()["samples_skipped"] == 1


def test_unknown_patient_is_a_404_problem(client: TestClient) -> None:
    for tail in ("forecast", "twin/live"):
        response = client.get(f"/api/v1/patients/no-such-patient/{tail}")
        assert response.status_code == 404 and response.headers["content-type"] == PROBLEM
        assert response.json()["field"] == "patient_id"
