"""A second twin kind in three files (this test, windkessel.py, windkessel_params.csv): it gets simulate, fit,
assimilate and what-if, the API routes and the CLI commands from the framework, and its simulation is checked
against the Windkessel's analytic solution."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from medtwin.api.app import create_app
from medtwin.cli.main import app as cli_app
from medtwin.config import Settings
from medtwin.model.kinds import kinds
from medtwin.model.simulate import simulate
from medtwin.model.timeline import Timeline
from medtwin.record.sources import RawUnit
from medtwin.security import accounts
from medtwin.security.crypto import AesGcmCodec, KeyRing
from medtwin.store.database import Store
from medtwin.store.records import RecordRepository
from medtwin.synthetic import generate_bundles
from medtwin.twin.build import import_units


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("windkessel", Path(__file__).with_name("windkessel.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["windkessel"] = module
    spec.loader.exec_module(module)
    return module


wk = _load()
PASSWORD = "a long enough password"
TRUE = {"R": 1.25, "C": 1.1}  # the "patient" the observations come from (base: R 1.0, C 1.5)
SCENARIO: dict[str, Any] = {"t_eval": {"start": 0, "stop": 30, "step": 0.5},
                            "inputs": {"inflow": [[0, 90], [10, 0], [20, 60]]},
                            "doses": [{"route": "volume_bolus", "time": 25, "amount": 50}]}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    tmp = tmp_path_factory.mktemp("windkessel")
    ring = KeyRing.generate()
    store = Store(f"sqlite:///{tmp / 'wk.db'}", AesGcmCodec(ring))
    store.migrate()
    assert import_units(store, [RawUnit("p.json", "json", generate_bundles(n_patients=1)[0])], actor="test").ok
    with store.begin() as conn:
        accounts.create_user(conn, "admin", PASSWORD, "admin")
    with store.connect() as conn:
        patient = RecordRepository(conn, store.codec).patient_ids()[0]
    settings = Settings(data_dir=tmp, rate_limit_per_minute=100_000)
    with TestClient(create_app(settings, store=store, keyring=ring)) as client:
        token = client.post("/api/v1/auth/token", data={"grant_type": "password", "username": "admin",
                                                        "password": PASSWORD})
        assert token.status_code == 200, token.text
        client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        yield client, patient
    store.dispose()


def _observed(seed: int = 7) -> dict[str, Any]:
    """Noisy (SD 2 mmHg) pressures of the TRUE patient under SCENARIO, by the generic simulator."""
    model = wk.KIND.model
    params = wk.KIND.base().copy()
    for name, value in TRUE.items():
        params[0, model.parameter_index(name)] = value
    run = simulate(model, params, Timeline.from_dict(model, SCENARIO))
    noisy = run.output("arterial_pressure")[:, 0] + np.random.default_rng(seed).normal(0.0, 2.0, run.t.size)
    return {"scenario": SCENARIO, "output": "arterial_pressure", "t": run.t[1:].tolist(),
            "values": noisy[1:].tolist()}


# --- science: the generic simulator against the analytic solution ---------------------------------------------


def test_constant_inflow_and_diastolic_decay_match_the_analytic_solution() -> None:
    model = wk.KIND.model
    r, c = 1.2, 1.4
    params = np.array([[r, c, 70.0], [r, c, 120.0]])
    timeline = Timeline.from_dict(model, {"t_eval": {"start": 0, "stop": 12, "step": 0.1},
                                          "inputs": {"inflow": [[0, 80], [6, 0]]}})
    run = simulate(model, params, timeline)
    t = run.t
    p0 = params[:, 2]
    filling = 80 * r + (p0[None, :] - 80 * r) * np.exp(-t[:, None] / (r * c))  # C dP/dt = Q - P/R, Q constant
    at_6 = filling[t.searchsorted(6.0)]
    decay = at_6[None, :] * np.exp(-(t[:, None] - 6.0) / (r * c))  # diastole: exponential decay, tau = RC
    exact = np.where(t[:, None] < 6.0, filling, decay)
    assert np.max(np.abs(run.output("arterial_pressure") - exact)) < 1e-3
    assert run.method == "ode"


def test_a_volume_bolus_raises_pressure_by_volume_over_compliance() -> None:
    model = wk.KIND.model
    timeline = Timeline.from_dict(model, {"t_eval": [0.0, 2.0, 4.0], "doses": [
        {"route": "volume_bolus", "time": 2.0, "amount": 30.0}]})
    run = simulate(model, np.array([[1.0, 1.5, 100.0]]), timeline)
    before = 100.0 * np.exp(-2.0 / 1.5)
    assert run.output("arterial_pressure")[1, 0] == pytest.approx(before + 30.0 / 1.5, abs=1e-4)
    assert run.delivered[0, 0] == 30.0


# --- through the API ----------------------------------------------------------------------------------------


def test_kind_is_listed_with_units_and_panel(api: tuple[TestClient, str]) -> None:
    client, _ = api
    response = client.get("/api/v1/twin-kinds")
    assert response.status_code == 200, response.text
    listed = {k["name"]: k for k in response.json()}
    assert {"windkessel", "glucose"} <= set(listed)
    kind = listed["windkessel"]
    assert kind["model"]["outputs"] == [{"name": "arterial_pressure", "unit": "mmHg",
                                         "description": "arterial blood pressure"}]
    assert {p["name"]: p["unit"] for p in kind["model"]["parameters"]} == {
        "R": "mmHg*s/mL", "C": "mL/mmHg", "P0": "mmHg"}
    assert kind["panel"]["charts"][0]["unit"] == "mmHg"
    assert kind["personalisation"]["fitted"] == ["R", "C"]


def test_simulate_route_returns_the_analytic_curve(api: tuple[TestClient, str]) -> None:
    client, patient = api
    response = client.post(f"/api/v1/patients/{patient}/twins/windkessel/simulate", json={})
    assert response.status_code == 200, response.text
    body = response.json()
    t = np.array(body["t"])
    pressure = np.array(body["outputs"]["arterial_pressure"]["values"])
    assert body["outputs"]["arterial_pressure"]["unit"] == "mmHg" and body["time_unit"] == "s"
    assert np.max(np.abs(pressure - (90.0 + (80.0 - 90.0) * np.exp(-t / 1.5)))) < 1e-3  # base R=1, C=1.5, P0=80


def test_fit_recovers_the_patient(api: tuple[TestClient, str]) -> None:
    client, patient = api
    response = client.post(f"/api/v1/patients/{patient}/twins/windkessel/fit", json={"observations": _observed()})
    assert response.status_code == 200, response.text
    fit = response.json()
    for name, truth in TRUE.items():
        assert fit["fitted"][name] == pytest.approx(truth, rel=0.03)
        assert 0 < fit["fitted_sd"][name] < 0.05 * truth
        assert abs(fit["fitted"][name] - truth) < 4 * fit["fitted_sd"][name]
    assert fit["residual_sd"] == pytest.approx(2.0, rel=0.3)
    assert fit["converged"] is True


def test_assimilate_tracks_the_patient_and_resumes_from_json(api: tuple[TestClient, str]) -> None:
    client, patient = api
    observed = _observed()
    half = len(observed["t"]) // 2
    first = {**observed, "t": observed["t"][:half], "values": observed["values"][:half]}
    second = {**observed, "t": observed["t"][half:], "values": observed["values"][half:]}
    url = f"/api/v1/patients/{patient}/twins/windkessel/assimilate"
    one = client.post(url, json={"observations": first, "seed": 3})
    assert one.status_code == 200, one.text
    stored = json.loads(json.dumps(one.json()["filter"]))  # as a twin version would keep it
    two = client.post(url, json={"observations": second, "filter": stored})
    assert two.status_code == 200, two.text
    result = two.json()
    assert result["n_assimilated"] == len(observed["t"])
    for name, truth in TRUE.items():
        assert result["estimates"][name]["value"] == pytest.approx(truth, rel=0.1)
    again = client.post(url, json={"observations": second, "filter": stored}).json()
    assert again["estimates"] == result["estimates"]  # same stored generator state, same result
    whole = client.post(url, json={"observations": observed, "seed": 3}).json()
    assert whole["estimates"] == result["estimates"]  # stopping and resuming changes nothing


def test_compare_over_the_fitted_posterior(api: tuple[TestClient, str]) -> None:
    client, patient = api
    base = f"/api/v1/patients/{patient}/twins/windkessel"
    fit = client.post(f"{base}/fit", json={"observations": _observed()}).json()
    rest: dict[str, Any] = {"t_eval": {"start": 0, "stop": 10, "step": 0.5}, "inputs": {"inflow": [[0, 90]]}}
    bolus = {**rest, "doses": [{"route": "volume_bolus", "time": 5, "amount": 100}]}
    response = client.post(f"{base}/compare", json={"scenarios": {"rest": rest, "bolus": bolus}, "fit": fit,
                                                    "n_ensemble": 200, "seed": 1})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ensemble"].startswith("fitted posterior") and body["n_ensemble"] == 200
    bands = {b["scenario"]: b for b in body["bands"]}
    for band in bands.values():
        assert np.all(np.array(band["p5"]) <= np.array(band["median"]))
        assert np.all(np.array(band["median"]) <= np.array(band["p95"]))
    i = bands["rest"]["t"].index(5.0)
    jump = bands["bolus"]["median"][i] - bands["rest"]["median"][i]
    assert jump == pytest.approx(100.0 / fit["fitted"]["C"], rel=0.05)  # V / C at the bolus
    assert bands["bolus"]["median"][:i] == bands["rest"]["median"][:i]


def test_api_errors_are_problems_naming_the_field(api: tuple[TestClient, str]) -> None:
    client, patient = api
    missing = client.post(f"/api/v1/patients/{patient}/twins/no-such-kind/simulate", json={})
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")
    bad = client.post(f"/api/v1/patients/{patient}/twins/windkessel/simulate",
                      json={"scenario": {"t_eval": [0, 1], "inputs": {"flow": [[0, 1]]}}})
    assert bad.status_code == 422 and bad.json()["field"] == "inputs.flow"
    negative = client.post(f"/api/v1/patients/{patient}/twins/windkessel/simulate",
                           json={"parameters": {"C": -1}})
    assert negative.status_code == 422 and negative.json()["field"] == "parameters.C"
    nobody = client.post("/api/v1/patients/nobody/twins/windkessel/simulate", json={})
    assert nobody.status_code == 404


# --- through the CLI ----------------------------------------------------------------------------------------


def test_cli_commands(tmp_path: Path, api: tuple[TestClient, str]) -> None:
    runner = CliRunner()
    listed = runner.invoke(cli_app, ["twin", "kinds"])
    assert listed.exit_code == 0, listed.output
    assert "windkessel" in listed.output and "arterial_pressure [mmHg]" in listed.output

    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps(SCENARIO))
    out = tmp_path / "sim.json"
    sim = runner.invoke(cli_app, ["twin", "simulate", "windkessel", "--scenario", str(scenario), "--set", "R=1.25",
                                  "--set", "C=1.1", "--out", str(out)])
    assert sim.exit_code == 0, sim.output
    client, patient = api
    via_api = client.post(f"/api/v1/patients/{patient}/twins/windkessel/simulate",
                          json={"scenario": SCENARIO, "parameters": TRUE}).json()
    assert json.loads(out.read_text())["outputs"] == via_api["outputs"]  # one core behind both

    observations = tmp_path / "observations.json"
    observations.write_text(json.dumps(_observed()))
    fit_file = tmp_path / "fit.json"
    fit = runner.invoke(cli_app, ["twin", "fit", "windkessel", str(observations), "--out", str(fit_file)])
    assert fit.exit_code == 0, fit.output
    assert json.loads(fit_file.read_text())["fitted"]["R"] == pytest.approx(TRUE["R"], rel=0.03)
    assert "R = 1.2" in fit.output

    filt = tmp_path / "filter.json"
    assimilated = runner.invoke(cli_app, ["twin", "assimilate", "windkessel", str(observations), "--out", str(filt)])
    assert assimilated.exit_code == 0, assimilated.output
    assert json.loads(filt.read_text())["filter"]["n_assimilated"] == len(_observed()["t"])

    scenarios = tmp_path / "scenarios.json"
    scenarios.write_text(json.dumps({"rest": wk.KIND.example_scenario, "no-inflow": {
        "t_eval": {"start": 0, "stop": 20, "step": 0.25}}}))
    compared = runner.invoke(cli_app, ["twin", "compare", "windkessel", str(scenarios), "--fit", str(fit_file)])
    assert compared.exit_code == 0, compared.output
    assert "fitted posterior" in compared.output and "no-inflow" in compared.output

    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({**_observed(), "values": [1.0]}))
    failed = runner.invoke(cli_app, ["twin", "fit", "windkessel", str(broken)])
    assert failed.exit_code == 2
    assert "broken.json" in failed.output and "values" in failed.output


def test_registered_alongside_the_entry_point_kinds() -> None:
    found = kinds()
    assert found["windkessel"] is wk.KIND
    assert "glucose" in found and any(name.startswith("drug-") for name in found)
