"""NEWS2 against the Royal College of Physicians' 2017 chart (Chart 1 bands, Chart 2 risk bands).

The expected scores below are read off the printed chart, independently of the data file: every band of
every parameter at both of its edges, both SpO2 scales on air and on oxygen, new confusion, the single red
score band and the aggregate bands. Property tests: sub-scores never decrease as a value moves away from
the normal band; the aggregate stays within 0..20; an incomplete set never scores above its completion.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medtwin import vocab as m
from medtwin.alerts import news2
from medtwin.alerts.news2 import News2InputError, VitalSigns, observation_set, parse_chart, score

NORMAL = VitalSigns(respiratory_rate=16, spo2=97, supplemental_oxygen=False, systolic_bp=120, heart_rate=70,
                    consciousness=0, temperature=37.0)


def sub(vitals: VitalSigns, parameter: str, scale: int = 1) -> int:
    result = score(vitals, scale)
    return next(s.score for s in result.sub_scores if s.parameter == parameter)


def with_(**changes: object) -> VitalSigns:
    return VitalSigns(**{**NORMAL.__dict__, **changes})  # type: ignore[arg-type]


# (parameter, value, expected score) - RCP 2017 Chart 1, both edges of every band.
CHART_1 = [
    # Respiration rate (per minute): <=8 3 | 9-11 1 | 12-20 0 | 21-24 2 | >=25 3
    ("respiratory_rate", 4, 3), ("respiratory_rate", 8, 3), ("respiratory_rate", 9, 1), ("respiratory_rate", 11, 1),
    ("respiratory_rate", 12, 0), ("respiratory_rate", 20, 0), ("respiratory_rate", 21, 2),
    ("respiratory_rate", 24, 2), ("respiratory_rate", 25, 3), ("respiratory_rate", 40, 3),
    # SpO2 Scale 1 (%): <=91 3 | 92-93 2 | 94-95 1 | >=96 0
    ("spo2", 85, 3), ("spo2", 91, 3), ("spo2", 92, 2), ("spo2", 93, 2), ("spo2", 94, 1), ("spo2", 95, 1),
    ("spo2", 96, 0), ("spo2", 100, 0),
    # Systolic BP (mmHg): <=90 3 | 91-100 2 | 101-110 1 | 111-219 0 | >=220 3
    ("systolic_bp", 70, 3), ("systolic_bp", 90, 3), ("systolic_bp", 91, 2), ("systolic_bp", 100, 2),
    ("systolic_bp", 101, 1), ("systolic_bp", 110, 1), ("systolic_bp", 111, 0), ("systolic_bp", 219, 0),
    ("systolic_bp", 220, 3), ("systolic_bp", 260, 3),
    # Pulse (per minute): <=40 3 | 41-50 1 | 51-90 0 | 91-110 1 | 111-130 2 | >=131 3
    ("heart_rate", 30, 3), ("heart_rate", 40, 3), ("heart_rate", 41, 1), ("heart_rate", 50, 1),
    ("heart_rate", 51, 0), ("heart_rate", 90, 0), ("heart_rate", 91, 1), ("heart_rate", 110, 1),
    ("heart_rate", 111, 2), ("heart_rate", 130, 2), ("heart_rate", 131, 3), ("heart_rate", 180, 3),
    # Temperature (degC): <=35.0 3 | 35.1-36.0 1 | 36.1-38.0 0 | 38.1-39.0 1 | >=39.1 2
    ("temperature", 34.0, 3), ("temperature", 35.0, 3), ("temperature", 35.1, 1), ("temperature", 36.0, 1),
    ("temperature", 36.1, 0), ("temperature", 38.0, 0), ("temperature", 38.1, 1), ("temperature", 39.0, 1),
    ("temperature", 39.1, 2), ("temperature", 41.0, 2),
    # Consciousness: Alert 0 | new Confusion, Voice, Pain, Unresponsive 3
    ("consciousness", 0, 0), ("consciousness", 1, 3), ("consciousness", 2, 3), ("consciousness", 3, 3),
    ("consciousness", 4, 3),
    # Air or oxygen: air 0 | oxygen 2
    ("supplemental_oxygen", False, 0), ("supplemental_oxygen", True, 2),
]


@pytest.mark.parametrize(("parameter", "value", "expected"), CHART_1)
def test_chart_1_band_edges(parameter: str, value: float, expected: int) -> None:
    assert sub(with_(**{parameter: value}), parameter) == expected


# SpO2 Scale 2 (%): <=83 3 | 84-85 2 | 86-87 1 | 88-92 0 and >=93 on air 0 | 93-94 on O2 1 | 95-96 on O2 2 |
# >=97 on O2 3
SCALE_2 = [
    (80, False, 3), (83, False, 3), (84, False, 2), (85, False, 2), (86, False, 1), (87, False, 1),
    (88, False, 0), (92, False, 0), (93, False, 0), (96, False, 0), (97, False, 0), (100, False, 0),
    (80, True, 3), (83, True, 3), (84, True, 2), (85, True, 2), (86, True, 1), (87, True, 1), (88, True, 0),
    (92, True, 0), (93, True, 1), (94, True, 1), (95, True, 2), (96, True, 2), (97, True, 3), (100, True, 3),
]


@pytest.mark.parametrize(("spo2", "oxygen", "expected"), SCALE_2)
def test_spo2_scale_2_on_air_and_oxygen(spo2: int, oxygen: bool, expected: int) -> None:
    vitals = with_(spo2=spo2, supplemental_oxygen=oxygen)
    assert sub(vitals, "spo2", scale=2) == expected
    assert sub(vitals, "supplemental_oxygen", scale=2) == (2 if oxygen else 0)


def test_scale_1_ignores_oxygen_for_the_saturation_score_but_oxygen_scores_2() -> None:
    on_oxygen = score(with_(spo2=98, supplemental_oxygen=True), 1)
    assert sub(with_(spo2=98, supplemental_oxygen=True), "spo2") == 0
    assert on_oxygen.aggregate == 2 and on_oxygen.risk == "low"
    # the same saturation on Scale 2 while on oxygen scores 3 (risk of hypercapnia): a red score
    scale2 = score(with_(spo2=98, supplemental_oxygen=True), 2)
    assert scale2.aggregate == 5 and scale2.red_score and scale2.risk == "medium"


def test_new_confusion_alone_is_a_red_score_low_medium() -> None:
    result = score(with_(consciousness=1))
    assert result.aggregate == 3 and result.red_score and result.risk == "low-medium"
    assert result.monitoring == "minimum 1-hourly"


@pytest.mark.parametrize(("vitals", "aggregate", "risk"), [
    (NORMAL, 0, "low"),
    (with_(heart_rate=95), 1, "low"),  # 1
    (with_(heart_rate=95, respiratory_rate=22, temperature=38.5), 4, "low"),  # 1 + 2 + 1
    (with_(respiratory_rate=8), 3, "low-medium"),  # single red score
    (with_(respiratory_rate=8, heart_rate=95), 4, "low-medium"),  # red score, aggregate 4
    (with_(heart_rate=115, respiratory_rate=22, temperature=38.5), 5, "medium"),  # 2 + 2 + 1
    (with_(respiratory_rate=8, heart_rate=115), 5, "medium"),  # red score but aggregate 5: medium
    (with_(heart_rate=115, respiratory_rate=22, temperature=39.5), 6, "medium"),  # 2 + 2 + 2
    (with_(heart_rate=115, respiratory_rate=22, temperature=39.5, spo2=95), 7, "high"),  # + 1
    (VitalSigns(respiratory_rate=30, spo2=85, supplemental_oxygen=True, systolic_bp=80, heart_rate=140,
                consciousness=4, temperature=34.0), 20, "high"),  # the maximum: 3+3+2+3+3+3+3
])
def test_chart_2_aggregate_and_risk_bands(vitals: VitalSigns, aggregate: int, risk: str) -> None:
    result = score(vitals)
    assert (result.aggregate, result.risk) == (aggregate, risk)
    assert result.complete


def test_responses_follow_chart_4() -> None:
    assert score(NORMAL).monitoring == "minimum 12-hourly"
    assert score(with_(heart_rate=95)).monitoring == "minimum 4-6-hourly"
    assert score(with_(heart_rate=115, respiratory_rate=22, temperature=38.5)).response.startswith("urgent")
    high = score(with_(heart_rate=115, respiratory_rate=22, temperature=39.5, spo2=95))
    assert high.monitoring == "continuous monitoring of vital signs" and high.response.startswith("emergency")


@pytest.mark.parametrize(("parameter", "value", "recorded", "expected"), [
    ("heart_rate", 90.4, "90", 0), ("heart_rate", 90.5, "91", 1),  # half-up to whole numbers
    ("temperature", 35.04, "35.0", 3), ("temperature", 35.05, "35.1", 1), ("temperature", 38.05, "38.1", 1),
    ("respiratory_rate", 20.5, "21", 2), ("spo2", 95.5, "96", 0),
])
def test_values_are_rounded_to_the_chart_resolution_first(parameter: str, value: float, recorded: str,
                                                          expected: int) -> None:
    s = next(s for s in score(with_(**{parameter: value})).sub_scores if s.parameter == parameter)
    assert (s.recorded, s.score) == (recorded, expected)


def test_incomplete_set_names_what_is_missing_and_scale_2_without_oxygen_status_is_air() -> None:
    result = score(VitalSigns(heart_rate=135, spo2=97), 2)
    assert result.missing == ("respiratory_rate", "supplemental_oxygen", "systolic_bp", "consciousness",
                              "temperature")
    assert not result.complete and result.aggregate == 3 and result.risk == "low-medium"


@pytest.mark.parametrize(("field", "vitals", "scale"), [
    ("spo2", VitalSigns(spo2=101), 1), ("heart_rate", VitalSigns(heart_rate=-1), 1),
    ("temperature", VitalSigns(temperature=float("nan")), 1), ("consciousness", VitalSigns(consciousness=5), 1),
    ("spo2_scale", VitalSigns(), 3),
])
def test_impossible_values_name_the_field(field: str, vitals: VitalSigns, scale: int) -> None:
    with pytest.raises(News2InputError) as info:
        score(vitals, scale)
    assert info.value.field == field


def test_data_file_cites_the_rcp_and_a_gap_between_bands_is_refused() -> None:
    c = news2.chart()
    assert "Royal College of Physicians" in c.source and "2017" in c.source
    broken = """source = "x"\nversion = "x"\n[parameters.p]\nlabel = "p"\nmetric = "p"\nunit = "1"
resolution = 1\nbands = [{ max = 8, score = 3 }, { min = 10, score = 0 }]
[risk]\nmedium_aggregate = 5\nhigh_aggregate = 7\nred_score = 3\n[response.low]\nx = "y"\n"""
    with pytest.raises(ValueError, match="not contiguous"):
        parse_chart(broken)


# --- properties -----------------------------------------------------------------------------------------

NORMAL_BAND = {"respiratory_rate": (12, 20), "spo2": (96, 100), "systolic_bp": (111, 219),
               "heart_rate": (51, 90), "temperature": (36.1, 38.0)}
RANGES = {"respiratory_rate": (0, 120), "spo2": (0, 100), "systolic_bp": (0, 400), "heart_rate": (0, 400),
          "temperature": (20, 46)}


def _distance(parameter: str, value: float, band: tuple[float, float]) -> float:
    low, high = band
    return max(low - value, 0.0, value - high)


@settings(max_examples=200, deadline=None)
@given(parameter=st.sampled_from(sorted(NORMAL_BAND)), data=st.data())
def test_score_never_decreases_as_a_value_moves_away_from_normal(parameter: str, data: st.DataObject) -> None:
    lo, hi = RANGES[parameter]
    a = data.draw(st.floats(lo, hi, allow_nan=False))
    b = data.draw(st.floats(lo, hi, allow_nan=False))
    band = NORMAL_BAND[parameter]
    same_side = (a <= band[0] and b <= band[0]) or (a >= band[1] and b >= band[1])
    if not same_side:
        return
    near, far = sorted((a, b), key=lambda v: _distance(parameter, v, band))
    assert sub(with_(**{parameter: far}), parameter) >= sub(with_(**{parameter: near}), parameter)


@settings(max_examples=150, deadline=None)
@given(a=st.integers(0, 100), b=st.integers(0, 100))
def test_scale_2_on_oxygen_is_monotone_away_from_the_88_92_target(a: int, b: int) -> None:
    def dist(v: int) -> int:
        return max(88 - v, 0, v - 92)

    if not ((a <= 88 and b <= 88) or (a >= 92 and b >= 92)):
        return
    near, far = sorted((a, b), key=dist)
    assert sub(with_(spo2=far, supplemental_oxygen=True), "spo2", 2) >= sub(
        with_(spo2=near, supplemental_oxygen=True), "spo2", 2)
    # on air never above on oxygen
    assert sub(with_(spo2=a, supplemental_oxygen=False), "spo2", 2) <= sub(
        with_(spo2=a, supplemental_oxygen=True), "spo2", 2)


vital_values = st.fixed_dictionaries({
    "respiratory_rate": st.floats(0, 120, allow_nan=False), "spo2": st.floats(0, 100, allow_nan=False),
    "supplemental_oxygen": st.booleans(), "systolic_bp": st.floats(0, 400, allow_nan=False),
    "heart_rate": st.floats(0, 400, allow_nan=False), "consciousness": st.integers(0, 4),
    "temperature": st.floats(20, 46, allow_nan=False),
})


@settings(max_examples=200, deadline=None)
@given(values=vital_values, scale=st.sampled_from([1, 2]), drop=st.sets(st.sampled_from(news2.PARAMETERS)))
def test_aggregate_bounds_risk_consistency_and_incomplete_is_a_lower_bound(
        values: dict[str, object], scale: int, drop: set[str]) -> None:
    full = score(VitalSigns(**values), scale)  # type: ignore[arg-type]
    assert 0 <= full.aggregate <= 20 and full.aggregate == sum(s.score for s in full.sub_scores)
    assert all(0 <= s.score <= 3 for s in full.sub_scores) and full.complete
    expected = ("high" if full.aggregate >= 7 else "medium" if full.aggregate >= 5
                else "low-medium" if full.red_score else "low")
    assert full.risk == expected
    partial = score(VitalSigns(**{k: v for k, v in values.items() if k not in drop}), scale)  # type: ignore[arg-type]
    assert partial.aggregate <= full.aggregate and set(partial.missing) == drop
    assert not partial.triggered or full.triggered


# --- the observation set --------------------------------------------------------------------------------

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def test_observation_set_takes_the_latest_of_each_parameter_within_the_window() -> None:
    latest = {
        m.HEART_RATE: (T0, 120.0),
        m.RESPIRATORY_RATE: (T0 - timedelta(minutes=59), 22.0),
        m.SPO2: (T0 - timedelta(minutes=61), 90.0),  # too old: missing
        m.GLUCOSE: (T0, 50.0),  # not a NEWS2 parameter
        m.SUPPLEMENTAL_OXYGEN: (T0 - timedelta(minutes=5), 1.0),
    }
    chosen = observation_set(latest)
    assert chosen is not None and chosen.at == T0
    assert chosen.vitals == VitalSigns(respiratory_rate=22.0, heart_rate=120.0, supplemental_oxygen=True)
    assert set(chosen.times) == {"heart_rate", "respiratory_rate", "supplemental_oxygen"}
    result = score(chosen.vitals)
    assert result.aggregate == 2 + 2 + 2 and "spo2" in result.missing
    later = observation_set(latest, at=T0 - timedelta(minutes=30))  # the heart rate is in its future
    assert later is not None and later.vitals.heart_rate is None and later.vitals.respiratory_rate == 22.0
    assert observation_set({m.GLUCOSE: (T0, 50.0)}) is None
