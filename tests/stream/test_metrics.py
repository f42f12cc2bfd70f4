"""The metric registry: every canonical metric is described, conversions agree with UCUM, ranges hold."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from medtwin.record import ucum
from medtwin.stream import metrics
from medtwin.vocab import CANONICAL_UNITS


def test_every_canonical_metric_has_a_spec_with_a_sourced_range() -> None:
    reg = metrics.registry()
    assert set(reg) == set(CANONICAL_UNITS)
    for name, spec in reg.items():
        assert spec.unit == CANONICAL_UNITS[name]
        assert spec.min < spec.max and len(spec.range_source) > 20, name
        for unit in (spec.unit, *spec.units, *spec.aliases.values()):
            assert ucum.is_valid(unit), (name, unit)
            metrics.unit_factor(name, unit)  # every listed unit converts


@pytest.mark.parametrize(("code", "metric"), [
    ("8867-4", "heart_rate"), ("8480-6", "systolic_bp"), ("8462-4", "diastolic_bp"), ("2708-6", "spo2"),
    ("59408-5", "spo2"), ("9279-1", "respiratory_rate"), ("8310-5", "body_temperature"),
    ("99504-3", "glucose"), ("105272-9", "glucose"), ("2339-0", "glucose"), ("41653-7", "glucose"),
    ("55423-8", "steps"), ("41950-7", "steps"), ("93832-4", "sleep_stage")])
def test_loinc_codes_map_to_metrics(code: str, metric: str) -> None:
    assert metrics.by_loinc(code) == metric


def test_omh_schema_names() -> None:
    assert metrics.by_omh_schema("blood-pressure") == ("systolic_bp", "diastolic_bp")
    assert metrics.by_omh_schema("heart-rate") == ("heart_rate",)
    assert metrics.by_omh_schema("blood-glucose") == ("glucose",)


@pytest.mark.parametrize(("metric", "value", "unit", "expected"), [
    ("glucose", 5.5, "mmol/L", 99.0858),  # 5.5 * 180.156 / 10
    ("glucose", 100, "mg/dl", 100.0),
    ("body_temperature", 98.6, "[degF]", 37.0),
    ("body_temperature", 310.15, "K", 37.0),
    ("body_temperature", 37.5, "°C", 37.5),
    ("systolic_bp", 16, "kPa", 120.0102),
    ("heart_rate", 1.2, "/s", 72.0),
    ("heart_rate", 72, "bpm", 72.0),
    ("spo2", 0.97, "1", 97.0),
    ("insulin_basal", 24, "U/d", 1.0),
    ("steps", 1200, "{steps}", 1200.0),
])
def test_conversions(metric: str, value: float, unit: str, expected: float) -> None:
    assert metrics.normalise(metric, value, unit) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(("metric", "value", "unit", "reason", "field"), [
    ("heart_rate", 80, "mg/dL", "unit", "unit"),  # HR in mg/dL
    ("steps", 20, "%", "unit", "unit"),  # a count is not a percentage (both dimensionless in UCUM)
    ("insulin_bolus", 2, "mol", "unit", "unit"),  # U is umol/min in UCUM: only listed units for insulin
    ("glucose", 100, "mg/Dl", "unit", "unit"),  # not UCUM
    ("spo2", 130, "%", "out-of-range", "value"),
    ("heart_rate", -5, "/min", "out-of-range", "value"),
    ("glucose", 2.0, "mg/dL", "out-of-range", "value"),
    ("sleep_stage", 1.5, "{stage}", "bad-value", "value"),
    ("heart_rate", math.nan, "/min", "bad-value", "value"),
    ("mood", 1, "1", "unknown-metric", "metric"),
    ("heart_rate", 70, "", "unit", "unit"),
])
def test_rejections_name_reason_and_field(metric: str, value: float, unit: str, reason: str, field: str) -> None:
    with pytest.raises(metrics.MetricError) as caught:
        metrics.normalise(metric, value, unit)
    assert (caught.value.reason, caught.value.field) == (reason, field)


@given(st.floats(min_value=0.56, max_value=55.0))
def test_glucose_mmol_conversion_matches_ucum_with_the_molar_mass(mmol: float) -> None:
    expected = ucum.convert(mmol, "mmol/L", "mg/dL", molar_mass_g_per_mol=180.156)
    assert metrics.normalise("glucose", mmol, "mmol/L") == pytest.approx(expected, rel=1e-12)
    assert metrics.normalise("glucose", mmol, "mmol/L") == pytest.approx(mmol * 18.0156, rel=1e-12)


@given(st.floats(min_value=77.0, max_value=113.0))
def test_fahrenheit_conversion_matches_ucum(deg_f: float) -> None:
    assert metrics.normalise("body_temperature", deg_f, "[degF]") == pytest.approx((deg_f - 32) * 5 / 9, abs=1e-9)


@given(unit=st.sampled_from(["kPa", "cm[H2O]", "mm[Hg]", "mmHg"]), value=st.floats(min_value=0, max_value=1000))
def test_pressure_in_any_accepted_unit_is_in_range_exactly_when_its_mm_hg_value_is(unit: str, value: float) -> None:
    code = metrics.spec("systolic_bp").ucum_code(unit)
    mm_hg = ucum.convert(value, code, "mm[Hg]")
    if 30 <= mm_hg <= 300:
        assert metrics.normalise("systolic_bp", value, unit) == pytest.approx(mm_hg, rel=1e-12)
    else:
        with pytest.raises(metrics.MetricError):
            metrics.normalise("systolic_bp", value, unit)


@given(metric=st.sampled_from(sorted(CANONICAL_UNITS)), value=st.floats(allow_nan=True, allow_infinity=True))
def test_canonical_unit_is_identity_inside_the_range_and_refused_outside(metric: str, value: float) -> None:
    spec = metrics.spec(metric)
    whole = math.isfinite(value) and abs(value - round(value)) <= 1e-9  # float noise from a conversion is kept
    ok = math.isfinite(value) and spec.min <= value <= spec.max and (not spec.integer or whole)
    margin = 1e-6 * max(1.0, abs(spec.max))  # round-off at a bound is tolerated (see metrics.normalise)
    assume(not (math.isfinite(value) and spec.min - margin <= value <= spec.max + margin
                and not spec.min <= value <= spec.max))
    if ok:
        assert metrics.normalise(metric, value, spec.unit) == (round(value) if spec.integer else value)
    else:
        with pytest.raises(metrics.MetricError):
            metrics.normalise(metric, value, spec.unit)
