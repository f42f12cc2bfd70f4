"""The kidney panel calculates eGFR from creatinine (CKD-EPI 2021) where the record reports creatinine and no
eGFR: served as calculated, with the age at each reading; "not callable" with the reason when the record cannot
support it; never when the record reports eGFR itself."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from medtwin.record.sources import RawUnit
from medtwin.store.database import Store
from medtwin.twin.build import import_units
from medtwin.twin.panels import patient_panels
from medtwin.twin.report import build_report, render_html
from medtwin.vocab.renal import ckd_epi_2021

LOINC = "http://loinc.org"
CKD_STAGE_3 = "433144002"


def _observation(oid: str, patient: str, code: str, when: str, value: float, unit: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "laboratory"}]}],
            "code": {"coding": [{"system": LOINC, "code": code}]}, "subject": {"reference": f"Patient/{patient}"},
            "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}}


def _patient(pid: str, *extra: dict[str, Any], **fields: Any) -> RawUnit:
    patient = {"resourceType": "Patient", "id": pid, **fields}
    condition = {"resourceType": "Condition", "id": f"{pid}-ckd", "subject": {"reference": f"Patient/{pid}"},
                 "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                                "code": "active"}]},
                 "code": {"coding": [{"system": "http://snomed.info/sct", "code": CKD_STAGE_3,
                                      "display": "Chronic kidney disease stage 3 (disorder)"}]}}
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": r} for r in (patient, condition, *extra)]}
    return RawUnit(f"{pid}.json", "json", bundle)


def _kidney(store: Store, pid: str) -> dict[str, Any]:
    answer = patient_panels(store, pid)
    (kidney,) = [p for p in answer.panels if p.key == "kidney"]
    assert kidney.shown
    return kidney.model_dump(mode="json")


def test_egfr_is_calculated_from_creatinine_in_either_unit_with_the_age_at_each_reading(sqlite_store: Store) -> None:
    unit = _patient("egfr-f", _observation("cr1", "egfr-f", "2160-0", "2024-01-10T08:00:00Z", 1.3, "mg/dL"),
                    _observation("cr2", "egfr-f", "14682-9", "2025-06-01T08:00:00Z", 115.0, "umol/L"),
                    gender="female", birthDate="1960-05-01")
    assert import_units(sqlite_store, [unit], actor="test").ok
    kidney = _kidney(sqlite_store, "egfr-f")
    assert {s["name"] for s in kidney["series"] if s["has_data"]} == {"2160-0", "14682-9"}
    (derived,) = kidney["derived"]
    assert derived["label"] == "eGFR, calculated (CKD-EPI 2021)" and derived["unit"] == "mL/min/{1.73_m2}"
    assert derived["method"] == "CKD-EPI 2021" and "Inker" in derived["source"]
    first, second = derived["calls"]
    assert (first["age_years"], second["age_years"]) == (63, 65)  # 63 in January 2024, 65 in June 2025
    assert first["egfr_ml_min_1_73m2"] == pytest.approx(float(ckd_epi_2021(1.3, 63, True)))
    assert second["egfr_ml_min_1_73m2"] == pytest.approx(float(ckd_epi_2021(115.0 / 88.4, 65, True)))
    assert (second["creatinine"], second["creatinine_code"]) == ("115 \u00b5mol/L", "14682-9")
    assert 40 < second["egfr_ml_min_1_73m2"] < 50  # Scr 1.30 mg/dL, 65 y, F: 45 (CKD stage G3a)


def test_not_callable_without_a_birth_date_and_never_when_egfr_is_reported(sqlite_store: Store) -> None:
    no_age = _patient("egfr-x", _observation("cr3", "egfr-x", "2160-0", "2024-01-10T08:00:00Z", 1.3, "mg/dL"),
                      gender="male")
    reported = _patient("egfr-r", _observation("cr4", "egfr-r", "2160-0", "2024-01-10T08:00:00Z", 1.3, "mg/dL"),
                        _observation("gfr4", "egfr-r", "98979-8", "2024-01-10T08:00:00Z", 58.0, "mL/min/{1.73_m2}"),
                        gender="male", birthDate="1960-05-01")
    assert import_units(sqlite_store, [no_age, reported], actor="test").ok
    (derived,) = _kidney(sqlite_store, "egfr-x")["derived"]
    (call,) = derived["calls"]
    assert call["egfr_ml_min_1_73m2"] is None and call["not_callable"].startswith("age unknown")
    assert _kidney(sqlite_store, "egfr-r")["derived"] == []  # the record's eGFR is shown, not recalculated


def test_the_report_titles_the_calculated_egfr_as_calculated(sqlite_store: Store) -> None:
    unit = _patient("egfr-rep", _observation("cr5", "egfr-rep", "2160-0", "2024-01-10T08:00:00Z", 1.3, "mg/dL"),
                    gender="female", birthDate="1960-05-01")
    assert import_units(sqlite_store, [unit], actor="test").ok
    report = build_report(sqlite_store, "egfr-rep", now=datetime(2026, 1, 1, tzinfo=UTC))
    assert report is not None
    (chart,) = [c for c in report.trends if c.key == "kidney-egfr-ckd-epi-2021"]
    assert chart.title == "eGFR, calculated (CKD-EPI 2021)" and chart.unit == "mL/min/1.73 m\u00b2"
    assert chart.series[0].mean == [pytest.approx(float(ckd_epi_2021(1.3, 63, True)))]
    assert "eGFR, calculated (CKD-EPI 2021)" in render_html(report)
