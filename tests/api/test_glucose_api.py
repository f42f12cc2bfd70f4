"""The glucose twin over HTTP: simulate, compare, fit, read; results stored as twin versions; errors as
RFC 7807 problem+json naming the field. A real app, a real store, the real model and solver."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from medtwin.physiology.calibrate import FITTED, FittedTwin
from medtwin.physiology.scenario import Scenario
from medtwin.physiology.service import simulate_scenario
from medtwin.physiology.synthetic import synthetic_log
from medtwin.physiology.uva_padova import virtual_patients
from medtwin.store.database import Store
from medtwin.store.twins import TwinRepository
from medtwin.synthetic import generate_bundles

PROBLEM = "application/problem+json"
MEALS = [{"time_min": 420, "carbs_g": 50}, {"time_min": 720, "carbs_g": 70}, {"time_min": 1140, "carbs_g": 80}]
SCENARIO: dict[str, Any] = {"horizon_min": 1440, "meals": MEALS}


@pytest.fixture
def patient(client: TestClient) -> str:
    bundle = generate_bundles(n_patients=1)[0]
    response = client.post("/api/v1/record", content=json.dumps(bundle).encode(),
                           headers={"content-type": "application/fhir+json"})
    assert response.status_code == 201, response.text
    items = client.get("/api/v1/patients").json()["items"]
    assert len(items) == 1
    return str(items[0]["id"])


def url(patient_id: str, tail: str = "") -> str:
    return f"/api/v1/twins/{patient_id}/glucose{tail}"


def test_simulate_virtual_patient_matches_the_domain_service(client: TestClient, patient: str,
                                                             api_store: Store) -> None:
    response = client.post(url(patient, "/simulate"),
                           json={"scenario": SCENARIO, "virtual_patient": "adult#001", "seed": 7})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["t_min"][0] == 0.0 and body["t_min"][-1] == 1440.0 and len(body["t_min"]) == 1441
    source = body["source"]
    assert (source["kind"], source["virtual_patient"], source["glucose_twin_version"]) == (
        "virtual_patient", "adult#001", None)
    assert source["live_twin_version"] is None and "no glucose twin yet" in source["description"]
    direct = simulate_scenario(virtual_patients(["adult#001"]), Scenario.model_validate(SCENARIO),
                               rng=np.random.default_rng(7))
    ours = body["patients"][0]
    assert ours["name"] == "adult#001"
    assert ours["metrics"] == direct.patients[0].metrics.model_dump()
    np.testing.assert_allclose(ours["glucose_mg_dl"], direct.patients[0].glucose_mg_dl, atol=1e-9)
    assert 60 < ours["metrics"]["mean_mg_dl"] < 250  # a meal day, not a flat line
    assert max(ours["glucose_mg_dl"]) - min(ours["glucose_mg_dl"]) > 30

    with api_store.connect() as connection:
        stored = TwinRepository(connection, api_store.codec).latest(patient, "glucose-simulation")
    assert stored is not None and stored.version == body["result_version"]
    assert stored.provenance["scenario_hash"] == body["scenario_hash"]
    assert stored.provenance["model"] == "UvaPadova2008"
    assert stored.provenance["parameter_source"] == {"kind": "virtual_patient", "virtual_patient": "adult#001"}
    assert {"name": "Dopri5", "rtol": 1e-6, "atol": 1e-6}.items() <= stored.provenance["solver"].items()
    assert stored.actor == "admin"
    assert stored.payload["result"]["patients"][0]["metrics"] == ours["metrics"]

    # the seed drives the sensor noise: same seed, same CGM; another seed, another CGM, same physiology
    again = client.post(url(patient, "/simulate"),
                        json={"scenario": SCENARIO, "virtual_patient": "adult#001", "seed": 7}).json()
    other = client.post(url(patient, "/simulate"),
                        json={"scenario": SCENARIO, "virtual_patient": "adult#001", "seed": 8}).json()
    assert again["patients"][0]["cgm_mg_dl"] == ours["cgm_mg_dl"]
    assert other["patients"][0]["cgm_mg_dl"] != ours["cgm_mg_dl"]
    assert again["result_version"] == body["result_version"] + 1


def test_compare_basal_rates_orders_glucose_and_bands(client: TestClient, patient: str) -> None:
    response = client.post(url(patient, "/compare"), json={
        "scenario": SCENARIO, "virtual_patient": "adult#001", "n_ensemble": 12, "seed": 3,
        "regimens": [{"name": "current"}, {"name": "low basal", "basal_scale": 0.6}],
    })
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["n_ensemble"] == 12 and body["source"]["kind"] == "virtual_patient"
    current, low = body["outcomes"]
    assert [current["regimen"]["name"], low["regimen"]["name"]] == ["current", "low basal"]
    assert low["metrics_median"]["mean_mg_dl"] > current["metrics_median"]["mean_mg_dl"] + 5
    for outcome in (current, low):
        p5, median, p95 = (np.asarray(outcome[k]) for k in
                           ("glucose_p5_mg_dl", "glucose_median_mg_dl", "glucose_p95_mg_dl"))
        assert p5.shape == median.shape == p95.shape == (289,)
        assert np.all(p5 <= median) and np.all(median <= p95)
        assert np.max(p95 - p5) > 1.0  # an ensemble, not one member repeated
        assert outcome["time_in_range_p5_percent"] <= outcome["time_in_range_p95_percent"]


def test_fit_stores_a_twin_that_later_runs_use(client: TestClient, patient: str, api_store: Store) -> None:
    assert client.get(url(patient)).status_code == 404  # nothing fitted yet
    log, _truth = synthetic_log(virtual_patients(["adult#003"]), 3, np.random.default_rng(3))
    response = client.post(url(patient, "/fit"), params={"max_iterations": 3}, json=log.model_dump(mode="json"))
    assert response.status_code == 201, response.text
    fitted = response.json()
    assert set(fitted["params_"]) == set(FITTED) and set(fitted["param_sd_"]) == set(FITTED)
    assert all(fitted["param_sd_"][k] > 0 for k in FITTED)
    assert 100 < fitted["params_"]["Gb"] < 250
    span = fitted["provenance"]["data_span"]
    assert span["n_readings"] == len(log.cgm_mg_dl) and 2.9 < span["days"] <= 3.0
    assert fitted["provenance"]["parameter_set"] == "uva_padova_2008"
    assert fitted["provenance"]["by"] == "admin" and "least_squares" in fitted["provenance"]["algorithm"]

    read = client.get(url(patient)).json()
    assert read["version"] == fitted["version"] and read["params_"] == fitted["params_"]

    simulated = client.post(url(patient, "/simulate"), json={"scenario": SCENARIO, "virtual_patient": "adult#001"})
    assert simulated.status_code == 200, simulated.text
    body = simulated.json()
    assert (body["source"]["kind"], body["source"]["virtual_patient"], body["source"]["glucose_twin_version"]) == (
        "glucose_twin", None, fitted["version"])
    assert f"fitted glucose twin v{fitted['version']}" in body["source"]["description"]
    basis = client.get(url(patient, "/basis")).json()
    assert basis["kind"] == "glucose_twin" and basis["source"]["glucose_twin_version"] == fitted["version"]
    with api_store.connect() as connection:
        repository = TwinRepository(connection, api_store.codec)
        stored = repository.latest(patient, "glucose-simulation")
        twin_version = repository.latest(patient, "glucose")
    assert stored is not None and twin_version is not None
    assert stored.provenance["parameter_source"] == {"kind": "glucose_twin",
                                                     "glucose_twin_version": fitted["version"]}
    twin = FittedTwin.model_validate(twin_version.payload["twin"])
    direct = simulate_scenario(twin.parameters(), Scenario.model_validate(SCENARIO), rng=np.random.default_rng(0))
    assert body["patients"][0]["metrics"] == direct.patients[0].metrics.model_dump()

    # use_twin=false falls back to the named virtual patient
    virtual = client.post(url(patient, "/simulate"),
                          json={"scenario": SCENARIO, "virtual_patient": "adult#001", "use_twin": False}).json()
    assert virtual["source"]["kind"] == "virtual_patient" and virtual["patients"][0]["name"] == "adult#001"
    assert "instead of the patient's own twin" in virtual["source"]["description"]

    compared = client.post(url(patient, "/compare"), json={
        "scenario": SCENARIO, "n_ensemble": 6, "regimens": [{"name": "current"}]}).json()
    assert compared["source"]["glucose_twin_version"] == fitted["version"]


def _meal(time_min: float, carbs_g: float) -> dict[str, float]:
    return {"time_min": time_min, "carbs_g": carbs_g}


@pytest.mark.parametrize(
    ("body", "loc", "text"),
    [
        ({"scenario": {"meals": [_meal(60, -5)]}, "virtual_patient": "adult#001"},
         ["body", "scenario", "meals", "0", "carbs_g"], "positive"),
        ({"scenario": {"horizon_min": 91 * 1440}, "virtual_patient": "adult#001"},
         ["body", "scenario", "horizon_min"], "90 days"),
        ({"scenario": {"meals": [_meal(-30, 40)]}, "virtual_patient": "adult#001"},
         ["body", "scenario", "meals", "0", "time_min"], "in the past"),
        ({"scenario": {"meals": [_meal(600, 40), _meal(300, 40)]}, "virtual_patient": "adult#001"},
         ["body", "scenario", "meals"], "meals[1].time_min"),
        ({"scenario": {}, "virtual_patient": "adult#001", "seed": -1}, ["body", "seed"], "greater"),
    ],
)
def test_bad_scenario_is_422_naming_the_field(client: TestClient, patient: str, body: dict[str, Any],
                                              loc: list[str], text: str) -> None:
    response = client.post(url(patient, "/simulate"), json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    error = response.json()["errors"][0]
    assert error["loc"] == loc and text in error["msg"]


@pytest.mark.parametrize(
    ("tail", "body", "field"),
    [
        ("/simulate", {"scenario": SCENARIO, "virtual_patient": "adult#999"}, "virtual_patient"),
        ("/simulate", {"scenario": SCENARIO}, "virtual_patient"),  # no twin, no virtual patient
        ("/compare", {"scenario": SCENARIO, "virtual_patient": "nobody", "regimens": [{}]}, "virtual_patient"),
    ],
)
def test_unknown_virtual_patient_is_422_naming_the_field(client: TestClient, patient: str, tail: str,
                                                         body: dict[str, Any], field: str) -> None:
    response = client.post(url(patient, tail), json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["field"] == field


def test_work_is_bounded_before_any_simulation(client: TestClient, patient: str, api_store: Store) -> None:
    response = client.post(url(patient, "/compare"), json={
        "scenario": {"horizon_min": 30 * 1440}, "virtual_patient": "adult#001", "n_ensemble": 500,
        "regimens": [{"name": "a"}, {"name": "b"}]})
    assert response.status_code == 422 and response.json()["errors"][0]["loc"] == ["body", "n_ensemble"]
    log = {"body_weight_kg": 70, "basal_u_per_h": 1.0, "cgm_t_min": [0, 60 * 1440], "cgm_mg_dl": [120, 121]}
    response = client.post(url(patient, "/fit"), params={"max_iterations": 30}, json=log)
    assert response.status_code == 422 and response.json()["field"] == "max_iterations"
    response = client.post(url(patient, "/fit"), json=dict(log, cgm_t_min=[0, 91 * 1440]))
    assert response.status_code == 422 and "90 days" in response.json()["errors"][0]["msg"]
    with api_store.connect() as connection:  # nothing was simulated or stored
        assert [v.kind for v in TwinRepository(connection, api_store.codec).history(patient)] == ["record"]


def test_bad_logs_are_422_naming_the_field(client: TestClient, patient: str) -> None:
    short = {"body_weight_kg": 70, "basal_u_per_h": 1.0, "cgm_t_min": [0, 5, 10], "cgm_mg_dl": [120, 121, 122]}
    response = client.post(url(patient, "/fit"), json=short)
    assert response.status_code == 422 and response.json()["field"] == "cgm_t_min"
    assert "3 days" in response.json()["detail"]
    backwards = dict(short, cgm_t_min=[0, 10, 5])
    response = client.post(url(patient, "/fit"), json=backwards)
    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM
    assert "cgm_t_min" in response.json()["errors"][0]["msg"]
    negative = dict(short, meals=[_meal(5, -10)])
    response = client.post(url(patient, "/fit"), json=negative)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "meals", "0", "carbs_g"]
    assert client.get(url(patient)).status_code == 404  # nothing was stored


def test_unknown_patient_is_404_on_every_route(client: TestClient, patient: str) -> None:
    for method, tail, body in (
        ("POST", "/simulate", {"scenario": SCENARIO, "virtual_patient": "adult#001"}),
        ("POST", "/compare", {"scenario": SCENARIO, "virtual_patient": "adult#001", "regimens": [{}]}),
        ("POST", "/fit", {"body_weight_kg": 70, "basal_u_per_h": 1, "cgm_t_min": [0, 5], "cgm_mg_dl": [99, 98]}),
        ("GET", "", None),
    ):
        response = client.request(method, url("no-such-patient", tail), json=body)
        assert response.status_code == 404, (tail, response.text)
        assert response.headers["content-type"] == PROBLEM and response.json()["field"] == "patient_id"
