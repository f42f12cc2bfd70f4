"""``medtwin hospital`` and ``/api/v1/hospital/*``: thin over the service, errors name the field, outputs
carry counts and times only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.api.conftest import ADMIN_PASSWORD as PASSWORD
from tests.api.conftest import api_store, keyring  # noqa: F401 - the API's store fixtures, shared
from tests.hospital.shapes import network
from typer.testing import CliRunner

from medtwin.api.app import create_app
from medtwin.cli.hospital import app as hospital_app
from medtwin.config import Settings
from medtwin.security import accounts
from medtwin.security.crypto import KeyRing
from medtwin.store.database import Store

runner = CliRunner()


def test_cli_simulate_json(tmp_path: Path) -> None:
    path = tmp_path / "net.json"
    path.write_text(json.dumps(network()))
    result = runner.invoke(hospital_app, ["simulate", "--model", str(path), "--replications", "3", "--weeks", "2",
                                          "--warmup-weeks", "0.5", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["replications"] == 3 and 0 < out["metrics"]["occupancy.treatment"]["mean"] < 4


def test_cli_bad_inputs_exit_non_zero_naming_file_and_entry(tmp_path: Path) -> None:
    scenarios = tmp_path / "s.toml"
    scenarios.write_text('[[scenarios]]\nname = "wing"\nbeds = { new_wing = 4 }\n')
    result = runner.invoke(hospital_app, ["compare", str(scenarios), "--replications", "2", "--weeks", "1",
                                          "--warmup-weeks", "0"])
    assert result.exit_code == 2 and "beds.new_wing" in result.output
    model = tmp_path / "m.json"
    bad = network()
    bad["units"][0]["los"]["mean_h"] = 0
    model.write_text(json.dumps(bad))
    result = runner.invoke(hospital_app, ["simulate", "--model", str(model)])
    assert result.exit_code == 2 and "m.json" in result.output and "units[0].los.mean_h" in result.output


def test_cli_forecast_from_a_census_file(tmp_path: Path) -> None:
    census = tmp_path / "census.json"
    census.write_text(json.dumps({"start_hour_of_week": 9, "patients": [
        {"unit": "ward", "esi": 3, "in_bed": True, "elapsed_h": 50.0}] * 150}))
    result = runner.invoke(hospital_app, ["forecast", "--census", str(census), "--horizon-h", "24",
                                          "--replications", "20", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["census"]["ward"] == 150 and out["occupancy"]["mean"]["ward"][0] == 150
    assert out["occupancy"]["high"]["ward"][24] < 150 + 60


@pytest.fixture
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    """The API's own store fixtures (tests/api/conftest.py), plus a researcher; tokens per test."""
    store: Store = request.getfixturevalue("api_store")
    ring: KeyRing = request.getfixturevalue("keyring")
    with store.begin() as connection:
        accounts.create_user(connection, "scholar", PASSWORD, "researcher")
    settings = Settings(data_dir=tmp_path, rate_limit_per_minute=100_000)
    with TestClient(create_app(settings, store=store, keyring=ring)) as test_client:
        yield test_client


def _sign_in(client: TestClient, user: str) -> dict[str, str]:
    token = client.post("/api/v1/auth/token", data={"grant_type": "password", "username": user, "password": PASSWORD})
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def test_api_routes_are_guarded_and_name_bad_fields(client: TestClient) -> None:
    body = {"model": network(), "replications": 3, "weeks": 2, "warmup_weeks": 0.5}
    assert client.post("/api/v1/hospital/simulate", json=body).status_code == 401
    assert client.post("/api/v1/hospital/simulate", json=body, headers=_sign_in(client, "scholar")).status_code == 403
    admin = _sign_in(client, "admin")
    ok = client.post("/api/v1/hospital/simulate", json=body, headers=admin)
    assert ok.status_code == 200, ok.text
    assert ok.json()["metrics"]["wait_h.triage"]["mean"] >= 0
    bad = network()
    bad["roles"] = [{"name": "nurse", "staff_by_hour": [-2] * 24}]
    problem = client.post("/api/v1/hospital/simulate", json=body | {"model": bad}, headers=admin)
    assert problem.status_code == 422 and problem.headers["content-type"].startswith("application/problem+json")
    assert problem.json()["field"] == "roles[0].staff_by_hour"
    census = {"patients": [{"unit": "attic", "elapsed_h": 1}]}
    problem = client.post("/api/v1/hospital/forecast", json={"census": census}, headers=admin)
    assert problem.status_code == 422 and problem.json()["field"] == "patients[0].unit"


def test_api_compare_pairs_against_the_baseline(client: TestClient) -> None:
    admin = _sign_in(client, "admin")
    body = {"model": network(), "replications": 4, "weeks": 3, "warmup_weeks": 1,
            "scenarios": [{"name": "ward+2", "beds": {"ward": 6}}]}
    out = client.post("/api/v1/hospital/compare", json=body, headers=admin)
    assert out.status_code == 200, out.text
    diff = out.json()["scenarios"]["ward+2"]["difference"]["wait_h.ward"]
    assert diff["high"] < 0  # two more ward beds: shorter ward waits, replication by replication


def test_api_bounds_the_work_of_one_request(client: TestClient) -> None:
    admin = _sign_in(client, "admin")
    big = client.post("/api/v1/hospital/simulate", json={"replications": 100, "weeks": 52}, headers=admin)
    assert big.status_code == 422 and big.json()["field"] == "replications" and "5200" in big.json()["detail"]
    big = client.post("/api/v1/hospital/forecast", json={"replications": 1000, "horizon_h": 48}, headers=admin)
    assert big.status_code == 422 and "48000" in big.json()["detail"]
