"""Decimals keep their text on every way out, not only /fhir: the /api/v1 record route and `medtwin export`
(issue 16 defect 2): 840.20 stays 840.20, 0.00 stays 0.00, and digits beyond a float's are kept."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from medtwin.cli import app
from medtwin.record import exactjson
from medtwin.record.sources import unit_from_bytes
from medtwin.store.database import Store
from medtwin.twin.build import import_units

LITERALS = ("840.20", "0.00", "12345678901234567890.123", "1.50e3")


def _bundle() -> bytes:
    observations = [
        b'{"resource":{"resourceType":"Observation","id":"d' + str(n).encode() + b'","status":"final","code":'
        b'{"text":"amount"},"subject":{"reference":"Patient/dp"},"valueQuantity":{"value":' + text.encode()
        + b',"unit":"USD"}}}' for n, text in enumerate(LITERALS)]
    return (b'{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"dp",'
            b'"identifier":[{"system":"urn:mrn","value":"DP-1"}]}},' + b",".join(observations) + b"]}")


def test_api_v1_record_route_keeps_decimal_text(client: TestClient, api_store: Store) -> None:
    assert import_units(api_store, [unit_from_bytes(_bundle(), source="d.json")]).ok
    answer = client.get("/api/v1/patients/dp/record")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/fhir+json")
    for text in LITERALS:
        assert f'"value":{text}'.encode() in answer.content, text


def test_cli_export_keeps_decimal_text(tmp_path: Path) -> None:
    runner = CliRunner()
    key_file = tmp_path / "keyring.json"
    assert runner.invoke(app, ["keys", "init", "--out", str(key_file)]).exit_code == 0
    env = {"MEDTWIN_DATA_DIR": str(tmp_path / "data"), "MEDTWIN_KEY_FILE": str(key_file), "COLUMNS": "200"}
    source = tmp_path / "d.json"
    source.write_bytes(_bundle())
    assert runner.invoke(app, ["import", str(source)], env=env).exit_code == 0
    out = tmp_path / "out.json"
    result = runner.invoke(app, ["export", "DP-1", "-o", str(out)], env=env)
    assert result.exit_code == 0, result.output
    written = out.read_bytes()
    for text in LITERALS:
        assert f'"value": {text}'.encode() in written, text
    values = [e["resource"]["valueQuantity"]["value"] for e in exactjson.loads(written)["entry"]
              if e["resource"]["resourceType"] == "Observation"]
    assert sorted(v.text for v in values if isinstance(v, exactjson.DecimalText)) == sorted(LITERALS)
