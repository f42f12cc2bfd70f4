"""The tumour twin through the CLI, the API (posted and record measurements, stored twin version) and the
twin-kind registry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from medtwin.api.app import create_app
from medtwin.cli.main import app as cli_app
from medtwin.config import Settings
from medtwin.model.kinds import kinds
from medtwin.oncology.growth import volume
from medtwin.record.sources import RawUnit
from medtwin.security import accounts
from medtwin.security.crypto import AesGcmCodec, KeyRing
from medtwin.store.database import Store
from medtwin.store.records import RecordRepository
from medtwin.store.twins import TwinRepository
from medtwin.synthetic import generate_bundles
from medtwin.twin.build import import_units

PASSWORD = "a long enough password"
DAYS = [0.0, 42.0, 84.0, 126.0, 168.0, 210.0]
TRUE = np.array([[4000.0, 1500.0, 0.02]])  # gompertz, shrinking towards K on therapy


def _diameters() -> list[float]:
    v = volume("gompertz", TRUE, np.asarray(DAYS)[None, :])[0]
    return [round(float((x / 0.52) ** (1 / 3)), 3) for x in v]


def _measurements() -> list[dict[str, Any]]:
    return [{"lesion": "liver", "time_day": d, "size": s, "unit": "mm"} for d, s in zip(DAYS, _diameters(),
                                                                                        strict=True)]


def _csv(tmp: Path, rows: list[dict[str, Any]]) -> Path:
    path = tmp / "m.csv"
    path.write_text("lesion,time_day,size,unit\n" + "".join(
        f"{r['lesion']},{r['time_day']},{r['size']},{r['unit']}\n" for r in rows), encoding="utf-8")
    return path


def test_kind_is_registered_by_entry_point() -> None:
    kind = kinds()["tumour"]
    assert kind.model.time_unit == "d" and kind.personalisation.observed_output == "volume"


def test_cli_fit_forecast_compare(tmp_path: Path) -> None:
    runner = CliRunner()
    path = _csv(tmp_path, _measurements())
    fitted = runner.invoke(cli_app, ["tumour", "fit", str(path), "--model", "gompertz", "--json"])
    assert fitted.exit_code == 0, fitted.output
    lesion = json.loads(fitted.output)["lesions"][0]
    params = lesion["laws"]["gompertz"]["parameters"]
    assert params["K"]["value"] == pytest.approx(1500.0, rel=0.02) and params["K"]["unit"] == "mm3"
    ahead = runner.invoke(cli_app, ["tumour", "forecast", str(path), "--model", "gompertz", "--horizon", "42"])
    assert ahead.exit_code == 0, ahead.output
    expected = volume("gompertz", TRUE, np.array([[252.0]]))[0, 0]
    row = ahead.output.splitlines()[1].split()
    assert float(row[3]) == pytest.approx(expected, rel=0.02)
    scenarios = tmp_path / "s.json"
    scenarios.write_text(json.dumps({"radiotherapy": [{"name": "60/30", "total_gy": 60, "fractions": 30,
                                                       "overall_days": 39}]}))
    compared = runner.invoke(cli_app, ["tumour", "compare", str(path), str(scenarios), "--json"])
    assert compared.exit_code == 0, compared.output
    rt = json.loads(compared.output)["lesions"][0]["scenarios"][1]
    assert rt["bed_gy"] == pytest.approx(72.0) and rt["recist"] == "not callable"


def test_cli_errors_name_file_and_row(tmp_path: Path) -> None:
    rows = _measurements()
    rows[3]["time_day"] = 10.0  # out of order
    path = _csv(tmp_path, rows)
    result = CliRunner().invoke(cli_app, ["tumour", "fit", str(path)])
    assert result.exit_code == 2
    assert str(path) in result.output and "row 5: time" in result.output  # line 5 of the file (header = 1)
    missing = CliRunner().invoke(cli_app, ["tumour", "fit", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 2 and "nope.csv" in missing.output


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str, Store]]:
    tmp = tmp_path_factory.mktemp("tumour")
    ring = KeyRing.generate()
    store = Store(f"sqlite:///{tmp / 't.db'}", AesGcmCodec(ring))
    store.migrate()
    assert import_units(store, [RawUnit("p.json", "json", generate_bundles(n_patients=1)[0])], actor="test").ok
    with store.begin() as conn:
        accounts.create_user(conn, "admin", PASSWORD, "admin")
    with store.connect() as conn:
        patient = RecordRepository(conn, store.codec).patient_ids()[0]
    with TestClient(create_app(Settings(data_dir=tmp, rate_limit_per_minute=100_000), store=store,
                               keyring=ring)) as client:
        token = client.post("/api/v1/auth/token", data={"grant_type": "password", "username": "admin",
                                                        "password": PASSWORD})
        client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        yield client, patient, store
    store.dispose()


def test_api_fit_is_stored_as_a_twin_version(api: tuple[TestClient, str, Store]) -> None:
    client, patient, store = api
    response = client.post(f"/api/v1/patients/{patient}/tumour/fit",
                           json={"measurements": _measurements(), "model": "gompertz"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["source"] == "posted"
    with store.connect() as conn:
        latest = TwinRepository(conn, store.codec).latest(patient, "tumour")
    assert latest is not None and latest.version == body["twin_version"]


def test_api_without_measurements_or_record_sizes_is_404(api: tuple[TestClient, str, Store]) -> None:
    client, patient, _ = api
    response = client.post(f"/api/v1/patients/{patient}/tumour/forecast", json={})
    assert response.status_code == 404
    assert "21889-1" in response.json()["detail"]


def test_api_bad_measurements_are_422_naming_the_row(api: tuple[TestClient, str, Store]) -> None:
    client, patient, _ = api
    rows = _measurements()
    rows[2]["size"] = -1.0
    response = client.post(f"/api/v1/patients/{patient}/tumour/compare", json={"measurements": rows})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["field"] == "lesion liver, row 3: size"


def test_api_unknown_patient_is_404(api: tuple[TestClient, str, Store]) -> None:
    client, _, _ = api
    response = client.post("/api/v1/patients/nobody/tumour/fit", json={"measurements": _measurements()})
    assert response.status_code == 404


def test_api_compare_regimens(api: tuple[TestClient, str, Store]) -> None:
    client, patient, _ = api
    body = {"measurements": _measurements(), "model": "gompertz", "assessment_day": 42,
            "current": {"name": "q3w", "log_kill_per_day": 0.05, "cycle_days": 21, "days_on": 3},
            "regimens": [{"name": "stop", "log_kill_per_day": 0.0},
                         {"name": "dose-dense q2w", "log_kill_per_day": 0.05, "cycle_days": 14, "days_on": 3}]}
    response = client.post(f"/api/v1/patients/{patient}/tumour/compare", json=body)
    assert response.status_code == 200, response.text
    by_name = {s["name"]: s for s in response.json()["lesions"][0]["scenarios"]}
    base = by_name["continue"]["volume_mm3"]
    # 42 days: q3w gives 2 cycles x 3 days exposure, q2w 3 x 3; stopping removes the current 6 days of kill
    assert by_name["stop"]["volume_mm3"] == pytest.approx(base * np.exp(0.05 * 6), rel=1e-9)
    assert by_name["dose-dense q2w"]["volume_mm3"] == pytest.approx(base * np.exp(-0.05 * 3), rel=1e-9)
    assert by_name["continue"]["recist"] in {"PR", "SD"}


def test_api_reads_tumour_sizes_from_the_record(api: tuple[TestClient, str, Store]) -> None:
    client, patient, store = api
    entries = [{"resource": {
        "resourceType": "Observation", "id": f"tumour-size-{i}", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "21889-1", "display": "Size Tumor"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": f"2026-{1 + i * 2:02d}-01T09:00:00Z",
        "valueQuantity": {"value": size, "unit": "mm", "system": "http://unitsofmeasure.org", "code": "mm"}},
        "request": {"method": "PUT", "url": f"Observation/tumour-size-{i}"}}
        for i, size in enumerate([30.0, 27.0, 25.0, 24.0])]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    result = import_units(store, [RawUnit("sizes.json", "json", bundle)], actor="test")
    assert result.ok, result
    response = client.post(f"/api/v1/patients/{patient}/tumour/forecast", json={"model": "exponential",
                                                                                "horizon_days": [42]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["source"] == "record"
    point = body["lesions"][0]["points"][0]
    assert point["volume_mm3"] < 0.52 * 24.0 ** 3  # shrinking lesion keeps shrinking
    assert point["lower_mm3"] < point["volume_mm3"] < point["upper_mm3"]


def test_generic_twin_routes_serve_the_tumour_kind(api: tuple[TestClient, str, Store]) -> None:
    from medtwin.model.simulate import simulate
    from medtwin.model.timeline import Timeline

    client, patient, _ = api
    listed = {k["name"]: k for k in client.get("/api/v1/twin-kinds").json()}
    assert listed["tumour"]["model"]["time_unit"] == "d"
    kind = kinds()["tumour"]
    scenario = {"t_eval": {"start": 0, "stop": 168, "step": 21}, "inputs": {"chemotherapy": [[0, 1], [84, 0]]}}
    truth = np.array([[6000.0, 20000.0, 0.012, 1.6]])  # shrinks on chemotherapy, regrows after
    run = simulate(kind.model, truth, Timeline.from_dict(kind.model, scenario))
    volumes = run.output("volume")[:, 0]
    assert volumes[4] < 0.5 * volumes[0] and volumes[-1] > volumes[0]  # day 84 nadir, then regrowth
    observations = {"scenario": scenario, "output": "volume", "t": run.t[1:].tolist(),
                    "values": run.output("volume")[1:, 0].tolist()}
    response = client.post(f"/api/v1/patients/{patient}/twins/tumour/fit", json={"observations": observations})
    assert response.status_code == 200, response.text
    prediction = np.asarray(response.json()["prediction"]).ravel()
    np.testing.assert_allclose(prediction, observations["values"], rtol=0.05)  # MAP follows the data (noise 15 %)
    cli = CliRunner().invoke(cli_app, ["twin", "simulate", "tumour"])
    assert cli.exit_code == 0 and "volume [mm3]" in cli.output
