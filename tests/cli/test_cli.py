"""The CLI as a user runs it: import, patients, show, export; failures exit non-zero naming file/entry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medtwin.cli import app

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    key_file = tmp_path / "keyring.json"
    result = runner.invoke(app, ["keys", "init", "--out", str(key_file)])
    assert result.exit_code == 0, result.output
    return {"MEDTWIN_DATA_DIR": str(tmp_path / "data"), "MEDTWIN_KEY_FILE": str(key_file), "COLUMNS": "200"}


def test_no_key_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["patients"], env={"MEDTWIN_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 2 and "MEDTWIN_KEY_FILE" in result.output


def test_import_show_export(env: dict[str, str], synthea_dir: Path, tmp_path: Path) -> None:
    files = [synthea_dir / "hospitalInformation.json", synthea_dir / "practitionerInformation.json",
             synthea_dir / "Breana975_Harvey63_47e5d1f6-a017-1481-f0a2-49ef0edb3b72.json"]
    result = runner.invoke(app, ["import", *map(str, files)], env=env)
    assert result.exit_code == 0, result.output
    expected = sum(len(json.loads(f.read_text())["entry"]) for f in files[2:])
    assert "Imported resources by type" in result.output and "failed files: 0" in result.output
    result = runner.invoke(app, ["patients"], env=env)
    assert result.exit_code == 0 and "Breana975" in result.output
    result = runner.invoke(app, ["show", "47e5d1f6-a017-1481-f0a2-49ef0edb3b72", "--json"], env=env)
    assert result.exit_code == 0
    shown = json.loads(result.output)
    assert shown["summary"]["name"].startswith("Breana975")
    out = tmp_path / "export.json"
    patient_id = shown["summary"]["patient_id"]
    result = runner.invoke(app, ["export", patient_id, "-o", str(out)], env=env)
    assert result.exit_code == 0
    exported = json.loads(out.read_text())
    assert exported["resourceType"] == "Bundle"
    assert sum(1 for e in exported["entry"] if e["resource"].get("id") and
               e["resource"]["resourceType"] not in ("Practitioner", "PractitionerRole", "Organization", "Location")
               ) == expected


def test_bad_file_exits_nonzero_naming_file_and_entry(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:a", "request": {"method": "POST", "url": "Patient"},
         "resource": {"resourceType": "Patient"}},
        {"fullUrl": "urn:uuid:b", "request": {"method": "POST", "url": "Observation"},
         "resource": {"resourceType": "Observation", "status": "final", "subject": {"reference": "urn:uuid:a"}}}]}))
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"resourceType": "Patient", "id": "ok1"}))
    result = runner.invoke(app, ["import", str(bad), str(good)], env=env)
    assert result.exit_code == 1
    assert "bad.json" in result.output and "entry 2" in result.output and "Observation.code" in result.output
    listing = runner.invoke(app, ["patients"], env=env)
    assert "ok1" in listing.output  # the good file was imported; nothing of the bad one
    assert runner.invoke(app, ["show", "nobody"], env=env).exit_code == 1


def test_missing_path(env: dict[str, str]) -> None:
    result = runner.invoke(app, ["import", "/no/such/file.json"], env=env)
    assert result.exit_code == 2 and "no such file" in result.output


def test_bracketed_ucum_units_print_as_recorded(env: dict[str, str], tmp_path: Path) -> None:
    """UCUM writes customary units in brackets ([lb_av], [in_i]); the console must print them, not read them as
    markup and drop them (a weight shown without its unit is a wrong statement)."""
    def observation(oid: str, loinc: str, value: float, code: str) -> dict[str, object]:
        return {"fullUrl": f"urn:uuid:{oid}", "resource": {
            "resourceType": "Observation", "id": oid, "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
            "subject": {"reference": "urn:uuid:u1"}, "effectiveDateTime": "2024-03-05T10:00:00Z",
            "valueQuantity": {"value": value, "system": "http://unitsofmeasure.org", "code": code}}}

    bundle = tmp_path / "units.json"
    bundle.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:u1", "resource": {"resourceType": "Patient", "id": "u1", "gender": "female"}},
        observation("w1", "29463-7", 150.0, "[lb_av]"),
        observation("h1", "8867-4", 80.0, "[beats_x]")]}))
    result = runner.invoke(app, ["import", str(bundle)], env=env)
    assert result.exit_code == 0, result.output
    assert "unit '[beats_x]' is not valid UCUM" in result.output
    shown = runner.invoke(app, ["show", "u1"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "weight 150 [lb_av] (2024-03-05)" in shown.output
