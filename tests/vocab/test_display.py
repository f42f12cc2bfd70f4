"""Issue 15 item 8: one mapping from codes to what people read (UCUM -> display unit, LOINC -> short name)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medtwin.vocab import metrics, vocabulary
from medtwin.vocab.display import display_unit, short_name, unit_names


@pytest.mark.parametrize(("ucum", "shown"), [("Cel", "°C"), ("mm[Hg]", "mmHg"), ("{INR}", ""), ("kg/m2", "kg/m²"),
                                             ("mg/dL", "mg/dL"), ("{cells}/uL", "cells/uL"), ("", ""), (None, "")])
def test_display_units(ucum: str | None, shown: str) -> None:
    assert display_unit(ucum) == shown


@pytest.mark.parametrize(("code", "display", "shown"), [
    ("6301-6", "INR in Platelet poor plasma by Coagulation assay", "INR"),
    ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "HbA1c"),
    ("99999-9", "Something [Mass/volume] in Blood", "Something [Mass/volume] in Blood"),  # unknown: as recorded
    ("49436004", "Atrial fibrillation (disorder)", "Atrial fibrillation"),  # SNOMED CT semantic tag dropped
    ("1", "Body mass index 30+ - obesity (finding)", "Body mass index 30+ - obesity"),
    ("2", "Aspirin (81 mg)", "Aspirin (81 mg)"),  # parentheses that are not a semantic tag stay
    (None, None, "")])
def test_short_names(code: str | None, display: str | None, shown: str) -> None:
    assert short_name(code, display) == shown


@given(st.text(alphabet=st.sampled_from("abcdgLmol/*.{}[]_0123456789"), max_size=20))
def test_no_ucum_marker_survives_display(ucum: str) -> None:
    assert not re.search(r"[{}\[\]]", display_unit(ucum))


def test_metric_display_units_agree_with_the_one_mapping_and_it_is_served() -> None:
    for info in metrics().values():
        assert display_unit(info.unit) == info.display_unit, info.name
    served = vocabulary()["display"]
    units, names = unit_names()
    assert served["units"] == dict(units) and served["names"] == dict(names)  # type: ignore[index]
    assert served["units"]["Cel"] == "°C" and served["names"]["6301-6"] == "INR"  # type: ignore[index]
