"""``medtwin report PATIENT -o FILE``: PDF or HTML by suffix, audited; unknown patient or suffix exits
non-zero naming the problem."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from medtwin.cli import app
from medtwin.config import Settings
from medtwin.store.database import Store
from medtwin.store.samples import SampleRepository
from medtwin.store.security_tables import audit_log
from medtwin.synthetic import write_bundles
from medtwin.vocab import Sample

runner = CliRunner()
END = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    key_file = tmp_path / "keyring.json"
    result = runner.invoke(app, ["keys", "init", "--out", str(key_file)])
    assert result.exit_code == 0, result.output
    return {"MEDTWIN_DATA_DIR": str(tmp_path / "data"), "MEDTWIN_KEY_FILE": str(key_file), "COLUMNS": "200"}


@pytest.fixture
def patient(env: dict[str, str], tmp_path: Path) -> tuple[str, str, np.ndarray]:
    """(patient id, MRN, CGM values) of a synthetic patient imported through the CLI, with 14 days of CGM."""
    (path,) = write_bundles(tmp_path / "bundles", n_patients=1)
    assert runner.invoke(app, ["import", str(path)], env=env).exit_code == 0
    shown = runner.invoke(app, ["patients"], env=env)
    bundle = json.loads(path.read_text())
    resource = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    mrn = resource["identifier"][0]["value"]
    patient_id = re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", shown.output)
    assert patient_id, shown.output
    store = Store(Settings(data_dir=Path(env["MEDTWIN_DATA_DIR"])).resolved_database_url())
    t = END.timestamp() - 300.0 * np.arange(14 * 288)[::-1]
    g = 150 + 50 * np.sin(2 * np.pi * t / 86400) + np.random.default_rng(2).normal(0, 10, t.size)
    with store.begin() as connection:
        SampleRepository(connection).insert_ignore([
            Sample(patient_id.group(0), "glucose", datetime.fromtimestamp(float(a), UTC), float(v), "mg/dL", float(v),
                   "mg/dL", "cgm", "http", uuid.uuid4().hex) for a, v in zip(t, g, strict=True)], received_at=END)
    store.dispose()
    return patient_id.group(0), mrn, g


def _audit(env: dict[str, str]) -> list[tuple[str, str, str | None, str]]:
    store = Store(Settings(data_dir=Path(env["MEDTWIN_DATA_DIR"])).resolved_database_url())
    with store.connect() as connection:
        rows = connection.execute(select(audit_log.c.action, audit_log.c.resource_type, audit_log.c.patient_id,
                                         audit_log.c.outcome).order_by(audit_log.c.seq)).all()
    store.dispose()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_pdf_and_html_by_suffix(env: dict[str, str], patient: tuple[str, str, np.ndarray], tmp_path: Path) -> None:
    patient_id, mrn, g = patient
    pdf = tmp_path / "out" / "report.PDF"
    result = runner.invoke(app, ["report", mrn, "-o", str(pdf)], env=env)
    assert result.exit_code == 0, result.output
    assert "CGM: 4032 readings, 100 % active" in " ".join(result.output.split())
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-1.") and len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", data)) == 1
    html_file = tmp_path / "report.html"
    result = runner.invoke(app, ["report", patient_id, "-o", str(html_file), "--tz", "Europe/Berlin"], env=env)
    assert result.exit_code == 0, result.output
    document = html_file.read_text(encoding="utf-8")
    assert f"MRN {mrn}" in document and f"{np.mean(g):.0f} mg/dL" in document and "(Europe/Berlin)" in document
    assert "<script" not in document and "http" not in document
    exports = [row for row in _audit(env) if row[0] == "export"]
    assert exports == [("export", "Patient", patient_id, "success")] * 2


def test_unknown_patient_and_suffix_exit_nonzero(env: dict[str, str], patient: tuple[str, str, np.ndarray],
                                                 tmp_path: Path) -> None:
    patient_id, _mrn, _g = patient
    result = runner.invoke(app, ["report", "nobody-here", "-o", str(tmp_path / "r.pdf")], env=env)
    assert result.exit_code == 1 and "no patient 'nobody-here'" in result.output
    assert not (tmp_path / "r.pdf").exists()
    assert _audit(env)[-1] == ("export", "Patient", None, "failure")
    result = runner.invoke(app, ["report", patient_id, "-o", str(tmp_path / "r.docx")], env=env)
    assert result.exit_code == 2 and "r.docx" in result.output and ".pdf or .html" in result.output
    result = runner.invoke(app, ["report", patient_id, "-o", str(tmp_path / "r.pdf"), "--tz", "Moon/Base"], env=env)
    assert result.exit_code == 2 and "--tz" in result.output and "Moon/Base" in result.output
