from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medtwin.record import ucum
from medtwin.record.units import LOINC_SYSTEM, Normalised, normalise, target_for, targets

L = LOINC_SYSTEM


def test_every_target_unit_is_valid_ucum_and_molar_masses_positive() -> None:
    table = targets()
    assert len(table) >= 40
    for target in table.values():
        assert ucum.is_valid(target.unit), target
        assert target.molar_mass_g_per_mol is None or target.molar_mass_g_per_mol > 0
        for unit in target.exclude_units:
            assert ucum.is_valid(unit)


@pytest.mark.parametrize(
    ("loinc", "unit"),
    [
        ("2339-0", "mg/dL"),
        ("2345-7", "mg/dL"),
        ("15074-8", "mg/dL"),
        ("41653-7", "mg/dL"),
        ("99504-3", "mg/dL"),
        ("105272-9", "mg/dL"),
        ("14749-6", "mg/dL"),
        ("29463-7", "kg"),
        ("8302-2", "cm"),
        ("8310-5", "Cel"),
        ("8480-6", "mm[Hg]"),
        ("8462-4", "mm[Hg]"),
        ("8867-4", "/min"),
        ("9279-1", "/min"),
        ("59408-5", "%"),
        ("2708-6", "%"),
        ("39156-5", "kg/m2"),
        ("2160-0", "mg/dL"),
        ("4548-4", "%"),
        ("6301-6", "{INR}"),
    ],
)
def test_required_targets(loinc: str, unit: str) -> None:
    target = target_for(L, loinc)
    assert target is not None and target.unit == unit


def test_targets_only_for_loinc() -> None:
    assert target_for("http://snomed.info/sct", "2339-0") is None
    assert target_for(None, "2339-0") is None
    assert target_for(L, None) is None
    assert target_for(L, "0000-0") is None


@pytest.mark.parametrize(
    ("loinc", "value", "unit", "expected", "target_unit"),
    [
        ("2339-0", 5.5, "mmol/L", 99.0858, "mg/dL"),
        ("15074-8", 10.0, "mmol/L", 180.156, "mg/dL"),
        ("99504-3", 7.0, "mmol/L", 126.1092, "mg/dL"),
        ("2345-7", 1.0, "g/L", 100.0, "mg/dL"),
        ("2160-0", 88.4, "umol/L", 0.99999, "mg/dL"),
        ("29463-7", 154.0, "[lb_av]", 69.8532, "kg"),
        ("8302-2", 70.0, "[in_i]", 177.8, "cm"),
        ("8310-5", 98.6, "[degF]", 37.0, "Cel"),
        ("8480-6", 16.0, "kPa", 120.0096, "mm[Hg]"),
        ("8867-4", 1.2, "/s", 72.0, "/min"),
        ("8867-4", 72.0, "{beats}/min", 72.0, "/min"),
        ("59408-5", 0.97, "1", 97.0, "%"),
        ("39156-5", 2.5, "g/cm2", 25.0, "kg/m2"),
    ],
)
def test_converts_to_target(loinc: str, value: float, unit: str, expected: float, target_unit: str) -> None:
    result = normalise(L, loinc, value, unit)
    assert result.valid_ucum and result.converted
    assert result.unit == target_unit
    assert result.value == pytest.approx(expected, rel=1e-4)
    assert (result.original_value, result.original_unit) == (value, unit)


def test_already_in_target_unit_is_not_marked_converted() -> None:
    assert normalise(L, "2339-0", 99.0, "mg/dL") == Normalised(99.0, "mg/dL", 99.0, "mg/dL", True, False)


@pytest.mark.parametrize("unit", ["mmHg", "MG/DL", "beats/min", "kg/m^2", "lbs", "", None])
def test_invalid_unit_is_never_converted(unit: str | None) -> None:
    result = normalise(L, "8480-6", 120.0, unit)
    assert result == Normalised(None, None, 120.0, unit, False, False)


def test_valid_without_target_keeps_own_unit() -> None:
    assert normalise(L, "0000-0", 3.0, "mg") == Normalised(3.0, "mg", 3.0, "mg", True, False)
    assert normalise(None, None, 3.0, "mg") == Normalised(3.0, "mg", 3.0, "mg", True, False)


def test_incommensurable_keeps_own_unit() -> None:
    # body weight reported in cm: valid but wrong kind, left as is
    assert normalise(L, "29463-7", 70.0, "cm") == Normalised(70.0, "cm", 70.0, "cm", True, False)
    # substance concentration for an analyte without molar mass
    assert normalise(L, "718-7", 8.0, "mmol/L") == Normalised(8.0, "mmol/L", 8.0, "mmol/L", True, False)


def test_hba1c_ifcc_is_not_rescaled_to_percent() -> None:
    result = normalise(L, "4548-4", 53.0, "mmol/mol")
    assert result == Normalised(53.0, "mmol/mol", 53.0, "mmol/mol", True, False)
    assert normalise(L, "4548-4", 0.07, "1").value == pytest.approx(7.0)


def test_annotated_dimensionless_units_are_not_rescaled() -> None:
    assert normalise(L, "4548-4", 7.0, "{score}").unit == "{score}"
    inr = normalise(L, "6301-6", 2.4, "1")
    assert (inr.value, inr.unit, inr.converted) == (2.4, "1", False)


def test_non_finite_value_is_not_normalised() -> None:
    result = normalise(L, "2339-0", math.nan, "mmol/L")
    assert result.value is None and result.valid_ucum and not result.converted


@given(st.floats(min_value=0.1, max_value=60.0, allow_nan=False))
def test_glucose_round_trip_through_normalise(mmol: float) -> None:
    mgdl = normalise(L, "2339-0", mmol, "mmol/L")
    assert mgdl.value is not None
    assert mgdl.value == pytest.approx(mmol * 18.0156, rel=1e-9)
    back = ucum.convert(mgdl.value, "mg/dL", "mmol/L", molar_mass_g_per_mol=180.156)
    assert back == pytest.approx(mmol, rel=1e-9)


@given(st.floats(min_value=-50.0, max_value=120.0, allow_nan=False))
def test_temperature_fahrenheit_law(fahrenheit: float) -> None:
    result = normalise(L, "8310-5", fahrenheit, "[degF]")
    assert result.value == pytest.approx((fahrenheit - 32.0) * 5.0 / 9.0, abs=1e-9)


def test_egfr_in_ml_per_min_is_not_claimed_per_body_surface() -> None:
    """Issue 16 defect 5: mL/min is not mL/min/{1.73_m2}; the value stays in its own unit."""
    from medtwin.record.units import normalise as _normalise

    got = _normalise("http://loinc.org", "33914-3", 55.0, "mL/min")
    assert got.unit == "mL/min" and got.value == 55.0 and not got.converted
    already = _normalise("http://loinc.org", "33914-3", 55.0, "mL/min/{1.73_m2}")
    assert already.unit == "mL/min/{1.73_m2}" and already.value == 55.0


def test_ph_is_not_picohenry() -> None:
    from medtwin.record.indexing import index_rows, unit_warnings
    from medtwin.record.units import normalise as _normalise

    assert not _normalise("http://loinc.org", "2744-1", 7.4, "pH").valid_ucum
    proper = _normalise("http://loinc.org", "2744-1", 7.4, "[pH]")
    assert proper.valid_ucum and proper.value == 7.4 and proper.unit == "[pH]"
    rows = index_rows({"resourceType": "Observation", "status": "final",
                       "code": {"coding": [{"system": "http://loinc.org", "code": "2744-1"}]},
                       "valueQuantity": {"value": 7.4, "unit": "pH", "system": "http://unitsofmeasure.org",
                                         "code": "pH"}})
    warnings = unit_warnings(rows)
    assert len(warnings) == 1 and "[pH]" in warnings[0] and "not valid UCUM" in warnings[0]
