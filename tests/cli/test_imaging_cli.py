"""``medtwin imaging import``: a DICOM folder and a NIfTI into a patient's twin; bad input exits 2 naming the file
and the attribute, and stores nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.imaging.dicom_factory import Series, ramp
from typer.testing import CliRunner

from medtwin.cli import app
from medtwin.imaging.dicom import read_dicom
from medtwin.imaging.nifti import write_nifti
from medtwin.security.crypto import AesGcmCodec, KeyRing
from medtwin.store.database import Store
from medtwin.store.images import ImageRepository
from medtwin.store.records import RecordRepository

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    key_file = tmp_path / "keyring.json"
    assert runner.invoke(app, ["keys", "init", "--out", str(key_file)]).exit_code == 0
    env = {"MEDTWIN_DATA_DIR": str(tmp_path / "data"), "MEDTWIN_KEY_FILE": str(key_file), "COLUMNS": "200"}
    patient = tmp_path / "patient.json"
    patient.write_text(json.dumps({"resourceType": "Patient", "id": "p-cli", "identifier": [
        {"system": "urn:medtwin:mrn", "value": "MRN-7"}]}))
    assert runner.invoke(app, ["import", str(patient)], env=env).exit_code == 0
    return env


def test_import_dicom_folder_then_the_same_as_nifti(env: dict[str, str], tmp_path: Path) -> None:
    series = Series(ramp())
    folder = series.write(tmp_path / "ct")
    result = runner.invoke(app, ["imaging", "import", "p-cli", str(folder), "--json"], env=env)
    assert result.exit_code == 0, result.output
    first = json.loads(result.output)
    assert first["created"] and first["shape"] == [12, 10, 8] and first["frame"] == "LPS"
    again = runner.invoke(app, ["imaging", "import", "MRN-7", str(folder)], env=env)  # by record number
    assert again.exit_code == 0 and "already stored" in again.output and first["volume_id"] in again.output
    nii = tmp_path / "ct.nii.gz"
    nii.write_bytes(write_nifti(read_dicom(series.files())))
    result = runner.invoke(app, ["imaging", "import", "p-cli", str(nii), "--json"], env=env)
    assert result.exit_code == 0, result.output
    as_nifti = json.loads(result.output)
    assert as_nifti["frame"] == "RAS" and as_nifti["volume_id"] != first["volume_id"] and as_nifti["modality"] == "OT"


def test_bad_input_exits_2_naming_file_and_field(env: dict[str, str], tmp_path: Path) -> None:
    folder = Series(ramp()).write(tmp_path / "dup")
    (folder / "slice099.dcm").write_bytes((folder / "slice003.dcm").read_bytes())
    result = runner.invoke(app, ["imaging", "import", "p-cli", str(folder)], env=env)
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "slice099.dcm" in text and "ImagePositionPatient" in text and "duplicate" in text
    missing = runner.invoke(app, ["imaging", "import", "p-cli", str(tmp_path / "nope.nii")], env=env)
    assert missing.exit_code == 2 and "nope.nii" in missing.output
    nobody = runner.invoke(app, ["imaging", "import", "no-such-patient", str(folder)], env=env)
    assert nobody.exit_code == 2 and "no-such-patient" in nobody.output
    store = Store(f"sqlite:///{Path(env['MEDTWIN_DATA_DIR']) / 'medtwin.db'}",
                  AesGcmCodec(KeyRing.load(Path(env["MEDTWIN_KEY_FILE"]))))
    with store.connect() as connection:  # nothing of the refused series was stored
        assert ImageRepository(connection, store.codec).volumes("p-cli") == []
        assert RecordRepository(connection, store.codec).count_by_type("p-cli").get("ImagingStudy", 0) == 0
    store.dispose()
