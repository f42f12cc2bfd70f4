"""eGFR from creatinine by CKD-EPI 2021 (race-free; Inker et al., NEJM 2021;385:1737-49): worked values computed
by hand from the published equation, the knee, units, "not callable" with the reason, and Hypothesis
properties (decreasing in creatinine and in age; female x 1.012 at the same Scr/kappa)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from medtwin.vocab.renal import (
    EGFR_LABEL,
    EGFR_UNIT,
    CreatinineReading,
    ckd_epi_2021,
    ckd_epi_2021_reference,
    creatinine_mg_dl,
    egfr_from_creatinine,
)

# Worked by hand from the equation, eGFR = 142 x min(Scr/k,1)^a x max(Scr/k,1)^-1.200 x 0.9938^age [x 1.012 F]:
#  F 50 y, Scr 1.0: Scr/k = 1/0.7 = 1.42857 > 1, so 142 x 1.42857^-1.2 (0.65183) x 0.9938^50 (0.73275) x 1.012
#                   = 68.63 (the NKF calculator shows 68)
#  M 50 y, Scr 1.0: 1/0.9 = 1.11111; 142 x 1.11111^-1.2 (0.88124) x 0.73275 = 91.69 (NKF: 92)
#  F 30 y, Scr 0.6: 0.6/0.7 = 0.85714 < 1, so 142 x 0.85714^-0.241 (1.03785) x 0.9938^30 (0.82979) x 1.012 = 123.76
#  M 70 y, Scr 2.5: 2.5/0.9 = 2.77778; 142 x 2.77778^-1.2 (0.29375) x 0.9938^70 (0.64644) = 26.96
WORKED = [(1.0, 50, True, 68.63), (1.0, 50, False, 91.69), (0.6, 30, True, 123.76), (2.5, 70, False, 26.96)]


@pytest.mark.parametrize(("scr", "age", "female", "expected"), WORKED)
def test_worked_values(scr: float, age: int, female: bool, expected: float) -> None:
    assert float(ckd_epi_2021(scr, age, female)) == pytest.approx(expected, abs=0.01)


def test_arrays_in_arrays_out() -> None:
    scr, age, female, expected = (np.array(column) for column in zip(*WORKED, strict=True))
    np.testing.assert_allclose(ckd_epi_2021(scr, age, female), expected, atol=0.01)


def test_at_the_knee_both_terms_are_one() -> None:
    assert float(ckd_epi_2021(0.7, 40, True)) == pytest.approx(142 * 0.9938 ** 40 * 1.012)
    assert float(ckd_epi_2021(0.9, 40, False)) == pytest.approx(142 * 0.9938 ** 40)


def test_creatinine_units() -> None:
    assert creatinine_mg_dl(88.4, "umol/L") == pytest.approx(1.0)
    assert creatinine_mg_dl(88.4, "\u00b5mol/L") == pytest.approx(1.0)
    assert creatinine_mg_dl(0.0884, "mmol/L") == pytest.approx(1.0)
    assert creatinine_mg_dl(12.0, "mg/L") == pytest.approx(1.2)
    with pytest.raises(ValueError, match="creatinine unit 'g'"):
        creatinine_mg_dl(1.0, "g")
    with pytest.raises(ValueError, match="creatinine_mg_dl"):
        ckd_epi_2021(0.0, 50, True)


def _reading(day: date, value: float, unit: str = "mg/dL", code: str = "2160-0") -> CreatinineReading:
    return CreatinineReading(time=datetime(day.year, day.month, day.day, 8, tzinfo=UTC), value=value, unit=unit,
                             code=code)


def test_a_patients_series_is_labelled_calculated_and_uses_the_age_at_each_reading() -> None:
    readings = [_reading(date(2024, 6, 1), 88.4, "umol/L", "14682-9"), _reading(date(2020, 1, 1), 1.0)]
    series = egfr_from_creatinine(readings, birth_date=date(1970, 3, 1), sex="female")
    assert series.label == EGFR_LABEL == "calculated (CKD-EPI 2021)" and series.unit == EGFR_UNIT == "mL/min/{1.73_m2}"
    assert "Inker" in series.source and "2021;385:1737" in ckd_epi_2021_reference()
    first, last = series.calls  # oldest first
    assert first.age_years == 49 and last.age_years == 54 and (last.creatinine, last.creatinine_code) == ("88.4 \u00b5mol/L", "14682-9")
    assert first.egfr_ml_min_1_73m2 == pytest.approx(142 * (1 / 0.7) ** -1.2 * 0.9938 ** 49 * 1.012)
    assert last.egfr_ml_min_1_73m2 == pytest.approx(142 * (1 / 0.7) ** -1.2 * 0.9938 ** 54 * 1.012)
    assert series.latest is last and last.not_callable is None


@pytest.mark.parametrize(("birth", "sex", "words"), [
    (None, "female", "age unknown"), (date(1970, 1, 1), None, "sex unknown"), (date(1970, 1, 1), "other", "sex 'other'"),
    (date(2010, 1, 1), "male", "aged 14 at the reading")])
def test_not_callable_says_why(birth: date | None, sex: str | None, words: str) -> None:
    series = egfr_from_creatinine([_reading(date(2024, 6, 1), 1.0)], birth_date=birth, sex=sex)
    (call,) = series.calls
    assert call.egfr_ml_min_1_73m2 is None and call.not_callable is not None and words in call.not_callable


def test_a_unit_it_cannot_read_is_not_callable_for_that_reading_only() -> None:
    readings = [_reading(date(2024, 1, 1), 1.0), _reading(date(2024, 2, 1), 1.0, "g/dL")]
    good, bad = egfr_from_creatinine(readings, birth_date=date(1960, 1, 1), sex="male").calls
    assert good.egfr_ml_min_1_73m2 is not None and bad.egfr_ml_min_1_73m2 is None
    assert bad.not_callable is not None and "'g/dL'" in bad.not_callable


def test_the_18th_birthday_is_the_line() -> None:
    before, on = egfr_from_creatinine([_reading(date(2024, 5, 31), 0.8), _reading(date(2024, 6, 1), 0.8)],
                                      birth_date=date(2006, 6, 1), sex="male").calls
    assert before.egfr_ml_min_1_73m2 is None and on.egfr_ml_min_1_73m2 is not None and on.age_years == 18


creatinine = st.floats(min_value=0.1, max_value=20.0, allow_nan=False)
ages = st.integers(min_value=18, max_value=110)


@given(a=creatinine, b=creatinine, age=ages, female=st.booleans())
def test_decreasing_in_creatinine(a: float, b: float, age: int, female: bool) -> None:
    lo, hi = sorted((a, b))
    assert float(ckd_epi_2021(hi, age, female)) <= float(ckd_epi_2021(lo, age, female))
    if hi > lo * 1.001:
        assert float(ckd_epi_2021(hi, age, female)) < float(ckd_epi_2021(lo, age, female))


@given(scr=creatinine, a=ages, b=ages, female=st.booleans())
def test_decreasing_in_age(scr: float, a: int, b: int, female: bool) -> None:
    young, old = sorted((a, b))
    ratio = float(ckd_epi_2021(scr, old, female)) / float(ckd_epi_2021(scr, young, female))
    assert ratio == pytest.approx(0.9938 ** (old - young))


@given(ratio=st.floats(min_value=0.2, max_value=10.0), age=ages)
def test_female_is_1012_times_male_at_the_same_scr_over_kappa_above_the_knee(ratio: float, age: int) -> None:
    if ratio >= 1.0:  # above the knee both sexes share the exponent -1.200
        female, male = float(ckd_epi_2021(0.7 * ratio, age, True)), float(ckd_epi_2021(0.9 * ratio, age, False))
        assert female / male == pytest.approx(1.012)
