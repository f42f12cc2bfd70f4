"""The twin summary against values read by hand from a Synthea bundle (Alvin56 Jerde200)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from medtwin.record.sources import read_units
from medtwin.store.database import Store
from medtwin.store.twins import TwinRepository
from medtwin.twin.build import import_units, patient_summary

ALVIN = "Alvin56_Jerde200_53917de0-aa0c-0700-105a-4f7f893c62f6.json"


@pytest.fixture
def alvin_store(sqlite_store: Store, synthea_dir: Path) -> Store:
    support = [synthea_dir / "hospitalInformation.json", synthea_dir / "practitionerInformation.json"]
    report = import_units(sqlite_store, read_units([*support, synthea_dir / ALVIN]))
    assert report.ok
    return sqlite_store


def test_summary_matches_the_bundle(alvin_store: Store) -> None:
    from medtwin.store.records import RecordRepository

    with alvin_store.connect() as connection:
        # looked up by the MRN the bundle carries
        patient_id = RecordRepository(connection, alvin_store.codec).resolve_patient(
            "53917de0-aa0c-0700-105a-4f7f893c62f6")
    assert patient_id is not None
    found = patient_summary(alvin_store, patient_id)
    assert found is not None
    summary, version, provenance = found
    assert version == 1 and provenance["source"].endswith(ALVIN)
    assert summary.name == "Alvin56 Jerde200"
    assert summary.gender == "male"
    assert summary.birth_date == date(1963, 9, 27)
    # latest height/weight/BMI: 2025-01-03T14:25:45+05:30
    when = datetime(2025, 1, 3, 8, 55, 45, tzinfo=UTC)
    assert summary.height is not None and (summary.height.value, summary.height.unit, summary.height.time) == (
        186.0, "cm", when)
    assert summary.weight is not None and (summary.weight.value, summary.weight.time) == (102.6, when)
    assert summary.bmi is not None and summary.bmi.value == 29.66
    assert sorted(m.code for m in summary.medications) == sorted(
        ["243670", "259255", "308136", "310798", "314076", "849574", "855812", "866412"])
    assert len(summary.problems) == 11
    hypertension = next(p for p in summary.problems if p.code == "59621000")
    assert hypertension.onset is not None and hypertension.onset.date() == date(2011, 10, 21)
    assert len(summary.encounters) == 36 and len(summary.immunizations) == 13
    assert summary.encounters[0].start is not None and summary.encounters[0].start >= summary.encounters[-1].start  # type: ignore[operator]
    hba1c = next(lab for lab in summary.labs if lab.code == "4548-4")
    assert (hba1c.value, hba1c.unit) == (5.6, "%")


def test_each_import_that_changes_the_record_is_a_new_version(alvin_store: Store, synthea_dir: Path) -> None:
    import_units(alvin_store, read_units([synthea_dir / ALVIN]))  # unchanged: no new version
    with alvin_store.connect() as connection:
        from medtwin.store.records import RecordRepository

        pid = RecordRepository(connection, alvin_store.codec).patient_ids()[0]
        history = TwinRepository(connection, alvin_store.codec).history(pid)
    assert [v.version for v in history] == [1]
    assert history[0].provenance["created"] == 748
