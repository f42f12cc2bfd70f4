"""Dose-unit parsing: property-based round trips and rejections."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medtwin.pharmaco.errors import DoseError
from medtwin.pharmaco.units import MASS_UNITS_TO_MG, parse_amount_mg, to_milligrams

amounts = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(amounts, st.sampled_from(sorted(MASS_UNITS_TO_MG)))
def test_parse_round_trip(value: float, unit: str) -> None:
    text = f"{value!r} {unit}"
    assert math.isclose(parse_amount_mg(text), value * MASS_UNITS_TO_MG[unit], rel_tol=1e-12, abs_tol=0)


@given(amounts)
def test_gram_is_thousand_mg(value: float) -> None:
    assert math.isclose(to_milligrams(value, "g"), 1000 * to_milligrams(value, "mg"), rel_tol=1e-12, abs_tol=1e-300)
    assert math.isclose(parse_amount_mg(f"{value!r}mcg"), value / 1000, rel_tol=1e-12, abs_tol=1e-300)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_bare_numbers_are_rejected(value: float) -> None:
    with pytest.raises(DoseError, match="no unit"):
        parse_amount_mg(str(value))


@given(st.text(alphabet="abcdefhijklnopqrstvwxyzL/", min_size=1, max_size=6))
def test_non_mass_units_are_rejected(unit: str) -> None:
    if unit.strip().lower() in MASS_UNITS_TO_MG:
        return
    with pytest.raises(DoseError) as info:
        parse_amount_mg(f"5 {unit}", field="loading_dose")
    assert info.value.field == "loading_dose"


def test_negative_and_non_string() -> None:
    with pytest.raises(DoseError, match="negative"):
        parse_amount_mg("-5 mg")
    with pytest.raises(DoseError, match="no unit"):
        parse_amount_mg(500)
