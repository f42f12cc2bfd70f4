"""The kidney panel calculates eGFR from creatinine (CKD-EPI 2021) for each creatinine reading without a same-day
reported eGFR (the patient's day): served as calculated, with the age at each reading, apart from the reported
eGFR; "not callable" with the reason when the record cannot support it. Creatinine under every code is one chart
in the newest reading's unit, each point keeping what was recorded."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medtwin.model.panels import DERIVED, QUANTITIES
from medtwin.record.sources import RawUnit
from medtwin.store.database import Store
from medtwin.store.records import RecordRepository
from medtwin.store.twins import TwinRepository
from medtwin.twin.build import import_units
from medtwin.twin.panel_charts import convert, quantity_charts
from medtwin.twin.panels import patient_panels
from medtwin.twin.report import build_report, render_html
from medtwin.twin.summary import PatientSummary
from medtwin.vocab.renal import ckd_epi_2021, creatinine_mg_dl

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
    assert "derived" not in kidney  # one source: the calculated series of the quantity's chart
    (egfr,) = [c for c in kidney["charts"] if c["key"] == "egfr"]
    reported, calculated = egfr["series"]
    assert reported["points"] == [] and egfr["unit"] == "mL/min/{1.73_m2}"
    assert calculated["label"] == "eGFR, calculated (CKD-EPI 2021)" and calculated["kind"] == "calculated"
    assert calculated["method"] == "CKD-EPI 2021" and "Inker" in calculated["source"]
    first, second = calculated["points"]
    # 63 in January 2024, 65 in June 2025
    assert first["basis"] == "from creatinine 1.3 mg/dL (LOINC 2160-0), age 63, female"
    assert second["basis"] == "from creatinine 115 \u00b5mol/L (LOINC 14682-9), age 65, female"
    assert first["value"] == pytest.approx(float(ckd_epi_2021(1.3, 63, True)))
    assert second["value"] == pytest.approx(float(ckd_epi_2021(115.0 / 88.4, 65, True)))
    assert (second["original_value"], second["original_unit"], second["code"]) == (115.0, "umol/L", "14682-9")
    assert 40 < second["value"] < 50  # Scr 1.30 mg/dL, 65 y, F: 45 (CKD stage G3a)


def test_not_callable_without_a_birth_date_and_never_when_egfr_is_reported(sqlite_store: Store) -> None:
    no_age = _patient("egfr-x", _observation("cr3", "egfr-x", "2160-0", "2024-01-10T08:00:00Z", 1.3, "mg/dL"),
                      gender="male")
    reported = _patient("egfr-r", _observation("cr4", "egfr-r", "2160-0", "2024-01-10T08:00:00Z", 1.3, "mg/dL"),
                        _observation("gfr4", "egfr-r", "98979-8", "2024-01-10T08:00:00Z", 58.0, "mL/min/{1.73_m2}"),
                        gender="male", birthDate="1960-05-01")
    assert import_units(sqlite_store, [no_age, reported], actor="test").ok
    (no_age_egfr,) = [c for c in _kidney(sqlite_store, "egfr-x")["charts"] if c["key"] == "egfr"]
    assert [p for s in no_age_egfr["series"] for p in s["points"]] == [] and no_age_egfr["latest"] is None
    (call,) = no_age_egfr["not_callable"]
    assert call["creatinine_code"] == "2160-0" and call["reason"].startswith("age unknown")
    (reported_egfr,) = [c for c in _kidney(sqlite_store, "egfr-r")["charts"] if c["key"] == "egfr"]
    assert [s["kind"] for s in reported_egfr["series"]] == ["reported"]  # the record's eGFR, not recalculated
    assert reported_egfr["latest"]["value"] == 58.0 and reported_egfr["not_callable"] == []


def test_the_report_titles_the_calculated_egfr_as_calculated(sqlite_store: Store) -> None:
    unit = _patient("egfr-rep", _observation("cr5", "egfr-rep", "2160-0", "2024-01-10T08:00:00Z", 1.3, "mg/dL"),
                    gender="female", birthDate="1960-05-01")
    assert import_units(sqlite_store, [unit], actor="test").ok
    report = build_report(sqlite_store, "egfr-rep", now=datetime(2026, 1, 1, tzinfo=UTC))
    assert report is not None
    (chart,) = [c for c in report.trends if c.key == "kidney-egfr"]
    assert chart.title == "eGFR" and chart.unit == "mL/min/1.73 m\u00b2"
    (series,) = chart.series
    assert series.label == "eGFR, calculated (CKD-EPI 2021)"
    assert series.mean == [pytest.approx(float(ckd_epi_2021(1.3, 63, True)))]
    (creatinine,) = [c for c in report.trends if c.key.startswith("kidney-") and c.key != "kidney-egfr"]
    assert creatinine.key == "kidney-creatinine" and creatinine.unit == "mg/dL"  # one chart, not one per code


def test_the_report_draws_creatinine_under_its_codes_as_one_chart_saying_what_was_recorded(sqlite_store: Store
                                                                                            ) -> None:
    unit = _patient("rep-cr", _observation("a", "rep-cr", "2160-0", "2024-01-10T08:00:00Z", 1.3, "mg/dL"),
                    _observation("b", "rep-cr", "14682-9", "2025-06-01T08:00:00Z", 115.0, "umol/L"),
                    gender="female", birthDate="1960-05-01")
    assert import_units(sqlite_store, [unit], actor="test").ok
    report = build_report(sqlite_store, "rep-cr", now=datetime(2026, 1, 1, tzinfo=UTC))
    assert report is not None
    (chart,) = [c for c in report.trends if c.key.startswith("kidney-") and c.title == "Creatinine"]
    assert chart.unit == "\u00b5mol/L" and chart.series[0].mean == pytest.approx([1.3 * 88.4, 115.0])
    assert chart.series[0].label == "Creatinine; recorded as LOINC 14682-9 in \u00b5mol/L, LOINC 2160-0 in mg/dL"
    assert "recorded as LOINC 14682-9 in \u00b5mol/L, LOINC 2160-0 in mg/dL" in render_html(report)
    assert "eGFR, calculated (CKD-EPI 2021)" in render_html(report)


def _charts(store: Store, pid: str, tz: str = "UTC") -> dict[str, Any]:
    """The kidney panel's quantity charts by key, as quantity_charts makes them in the zone ``tz``."""
    with store.connect() as connection:
        record = TwinRepository(connection, store.codec).latest(pid, "record")
        assert record is not None
        summary = PatientSummary.model_validate(record.payload)
        charts = quantity_charts(RecordRepository(connection, store.codec), pid, QUANTITIES["kidney"],
                                    DERIVED["kidney"], tz=ZoneInfo(tz), birth_date=summary.birth_date,
                                    sex=summary.gender)
    return {c.key: c.model_dump(mode="json") for c in charts}


def test_creatinine_under_three_codes_is_one_chart_in_the_newest_readings_unit(sqlite_store: Store) -> None:
    unit = _patient("cr-one", _observation("a", "cr-one", "2160-0", "2024-01-10T08:00:00Z", 1.3, "mg/dL"),
                    _observation("b", "cr-one", "38483-4", "2024-09-15T08:00:00Z", 1.5, "mg/dL"),
                    _observation("c", "cr-one", "14682-9", "2025-06-01T08:00:00Z", 115.0, "umol/L"),
                    _observation("d", "cr-one", "2160-0", "2025-07-01T08:00:00Z", 9.0, "mg/mmol"),  # not a concentration
                    gender="female", birthDate="1960-05-01")
    assert import_units(sqlite_store, [unit], actor="test").ok
    (kidney,) = [p for p in patient_panels(sqlite_store, "cr-one").panels if p.key == "kidney"]
    assert [c.key for c in kidney.charts] == ["egfr", "creatinine"]
    chart = kidney.charts[1].model_dump(mode="json")
    assert chart["unit"] == "umol/L" and chart["unit_basis"] == "newest reading"  # the newest it can draw
    assert chart["axis"] == [0.0, 0.0] and chart["reference"] == []  # from 0, whichever the unit
    (reported,) = chart["series"]
    assert [p["code"] for p in reported["points"]] == ["2160-0", "38483-4", "14682-9"]
    assert [p["value"] for p in reported["points"]] == pytest.approx([1.3 * 88.4, 1.5 * 88.4, 115.0])
    assert [(p["original_value"], p["original_unit"]) for p in reported["points"]] == [
        (1.3, "mg/dL"), (1.5, "mg/dL"), (115.0, "umol/L")]
    assert chart["latest"]["code"] == "14682-9" and chart["latest"]["value"] == 115.0
    assert chart["calculated_by"] == [] and kidney.charts[0].calculated_by == ["eGFR, calculated (CKD-EPI 2021)"]
    (skipped,) = chart["not_drawn"]
    assert skipped["unit"] == "mg/mmol" and "not a unit of Creatinine" in skipped["reason"]


def test_creatinine_in_mg_dl_when_no_reading_has_a_unit_it_can_convert(sqlite_store: Store) -> None:
    unit = _patient("cr-none", _observation("a", "cr-none", "2160-0", "2024-01-10T08:00:00Z", 1.3, "mg/mmol"),
                    gender="female", birthDate="1960-05-01")
    assert import_units(sqlite_store, [unit], actor="test").ok
    chart = _charts(sqlite_store, "cr-none")["creatinine"]
    assert (chart["unit"], chart["unit_basis"], chart["latest"]) == ("mg/dL", "default", None)


def test_egfr_reported_and_calculated_apart_calculated_only_without_a_same_day_report(sqlite_store: Store) -> None:
    pid = "gfr-mix"
    unit = _patient(pid, _observation("a", pid, "2160-0", "2024-01-10T08:00:00Z", 1.3, "mg/dL"),
                    _observation("b", pid, "98979-8", "2024-01-10T11:00:00Z", 47.0, "mL/min/{1.73_m2}"),
                    _observation("c", pid, "38483-4", "2024-09-15T08:00:00Z", 1.5, "mg/dL"),
                    _observation("d", pid, "62238-1", "2025-02-01T08:00:00Z", 40.0, "mL/min/{1.73_m2}"),
                    _observation("e", pid, "14682-9", "2025-06-01T08:00:00Z", 115.0, "umol/L"),
                    gender="female", birthDate="1960-05-01")
    assert import_units(sqlite_store, [unit], actor="test").ok
    chart = _charts(sqlite_store, pid)["egfr"]
    reported, calculated = chart["series"]
    assert (reported["kind"], calculated["kind"]) == ("reported", "calculated")
    assert calculated["label"] == "eGFR, calculated (CKD-EPI 2021)" and calculated["method"] == "CKD-EPI 2021"
    assert [(p["code"], p["value"]) for p in reported["points"]] == [("98979-8", 47.0), ("62238-1", 40.0)]
    # 10 Jan 2024 has a reported eGFR: its creatinine is not recalculated; the other two are
    assert [p["time"][:10] for p in calculated["points"]] == ["2024-09-15", "2025-06-01"]
    assert [p["value"] for p in calculated["points"]] == pytest.approx(
        [float(ckd_epi_2021(1.5, 64, True)), float(ckd_epi_2021(115.0 / 88.4, 65, True))])
    assert calculated["points"][1]["basis"] == "from creatinine 115 \u00b5mol/L (LOINC 14682-9), age 65, female"
    assert chart["latest"]["kind"] == "calculated" and chart["latest"]["time"].startswith("2025-06-01")
    assert chart["category"]["label"] == "KDIGO G3a"  # 45.6 mL/min/1.73 m2
    assert chart["axis"] == [0.0, 100.0]
    assert [r["label"] for r in chart["reference"]] == ["G1", "G2", "G3a", "G3b", "G4", "G5"]


def test_same_day_is_the_patients_day(sqlite_store: Store) -> None:
    """Creatinine at 23:30 UTC and an eGFR at 00:30 UTC the next day: two days in UTC (calculated), one day in
    New York (18:30 and 19:30: the reported eGFR stands, nothing calculated)."""
    pid = "gfr-day"
    unit = _patient(pid, _observation("a", pid, "2160-0", "2024-01-10T23:30:00Z", 1.3, "mg/dL"),
                    _observation("b", pid, "98979-8", "2024-01-11T00:30:00Z", 47.0, "mL/min/{1.73_m2}"),
                    gender="female", birthDate="1960-05-01")
    assert import_units(sqlite_store, [unit], actor="test").ok
    utc = _charts(sqlite_store, pid, "UTC")["egfr"]
    assert [s["kind"] for s in utc["series"]] == ["reported", "calculated"] and utc["latest"]["kind"] == "reported"
    (only,) = _charts(sqlite_store, pid, "America/New_York")["egfr"]["series"]
    assert only["kind"] == "reported" and [p["value"] for p in only["points"]] == [47.0]


CREATININE = QUANTITIES["kidney"][1]


@given(st.floats(min_value=0.01, max_value=3000, allow_nan=False),
       st.sampled_from(["mg/dL", "mg/L", "umol/L", "mmol/L", "\u00b5mol/L"]),
       st.sampled_from(["mg/dL", "mg/L", "umol/L", "mmol/L"]))
def test_creatinine_converts_by_the_domains_factor_and_back(value: float, unit: str, to: str) -> None:
    shown = convert(CREATININE, value, unit, to)
    assert shown is not None and convert(CREATININE, shown, to, unit) == pytest.approx(value, rel=1e-12)
    # the same concentration in mg/dL whichever unit it is drawn in (vocab.renal: 88.4 umol/L per mg/dL)
    assert creatinine_mg_dl(shown, to) == pytest.approx(creatinine_mg_dl(value, unit), rel=1e-12)


def test_creatinine_conversion_is_88_4_umol_per_mg_and_unknown_units_are_none() -> None:
    assert convert(CREATININE, 1.0, "mg/dL", "umol/L") == pytest.approx(88.4)
    assert convert(CREATININE, 1.0, "mg/mmol", "mg/dL") is None and convert(CREATININE, 1.0, None, "mg/dL") is None
    egfr = QUANTITIES["kidney"][0]  # no conversion: only a unit that reads as mL/min/1.73 m2
    assert convert(egfr, 40.0, "mL/min/{1.73_m2}", "mL/min/{1.73_m2}") == 40.0
    assert convert(egfr, 40.0, "mL/min", "mL/min/{1.73_m2}") is None


def test_potassium_is_one_chart_over_its_codes_mmol_and_meq_alike(sqlite_store: Store) -> None:
    unit = _patient("k-two", _observation("a", "k-two", "6298-4", "2024-09-15T08:00:00Z", 4.8, "mEq/L"),
                    _observation("b", "k-two", "2823-3", "2025-06-01T08:00:00Z", 5.2, "mmol/L"),
                    _observation("c", "k-two", "2823-3", "2025-07-01T08:00:00Z", 31.0, "mg/dL"),
                    gender="male", birthDate="1950-01-01")
    assert import_units(sqlite_store, [unit], actor="test").ok
    (kidney,) = [p for p in patient_panels(sqlite_store, "k-two").panels if p.key == "kidney"]
    assert kidney.shown and [c.key for c in kidney.charts] == ["potassium"]  # no eGFR, no creatinine: no chart
    chart = kidney.charts[0]
    assert chart.unit == "mmol/L" and [(p.value, p.code) for p in chart.series[0].points] == [
        (4.8, "6298-4"), (5.2, "2823-3")]
    assert chart.latest is not None and chart.latest.value == 5.2 and chart.axis == [3.0, 6.0]
    assert chart.category is None and [r["value"] for r in chart.reference] == [5.5, 3.5]  # lines, no category
    assert [r["unit"] for r in chart.not_drawn] == ["mg/dL"]  # a mass unit: not converted by a guessed factor


def test_the_vocabulary_serves_the_quantities_the_panels_chart_as_one() -> None:
    """The Record tab groups its latest labs by these (one row for creatinine under its three codes)."""
    from medtwin.api.routers.vocabulary import document

    served = {(q["panel"], q["key"]): q for q in document()["quantities"]}
    assert served[("kidney", "creatinine")] == {"panel": "kidney", "key": "creatinine", "label": "Creatinine",
                                                "codes": ["2160-0", "38483-4", "14682-9"], "unit": "mg/dL"}
    assert list(served) == [(panel, q.key) for panel, quantities in QUANTITIES.items() for q in quantities]
    codes = [c for q in served.values() for c in q["codes"]]
    assert len(codes) == len(set(codes))  # a code belongs to one quantity: one row on the page
