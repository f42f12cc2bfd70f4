"""Dose amounts with units: parse text such as ``"500 mg"`` and convert to milligrams."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import AfterValidator, ValidationInfo

from medtwin.pharmaco.errors import DoseError

#: mass units accepted for a dose and their factor to milligrams
MASS_UNITS_TO_MG: dict[str, float] = {
    "g": 1000.0,
    "mg": 1.0,
    "ug": 1e-3,
    "mcg": 1e-3,
    "µg": 1e-3,
    "μg": 1e-3,
    "ng": 1e-6,
}

_AMOUNT = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*([^\s\d].*?)?\s*$")


def to_milligrams(value: float, unit: str, field: str = "dose") -> float:
    """Convert ``value`` in ``unit`` (a mass unit) to mg; raises :class:`DoseError` naming ``field``."""
    key = unit.strip()
    if key not in MASS_UNITS_TO_MG:
        key_lower = key.lower()
        if key_lower not in MASS_UNITS_TO_MG:
            raise DoseError(
                field, f"unit {unit!r} is not a mass unit; use one of {', '.join(sorted(MASS_UNITS_TO_MG))}"
            )
        key = key_lower
    if not math.isfinite(value):
        raise DoseError(field, f"amount must be finite, got {value!r}")
    if value < 0:
        raise DoseError(field, f"amount must not be negative, got {value!r} {unit}")
    return float(value) * MASS_UNITS_TO_MG[key]


def parse_amount_mg(text: str | float | int, field: str = "dose") -> float:
    """Parse ``"500 mg"``, ``"1.5 g"``, ``"250mcg"`` into milligrams.

    A bare number has no unit and is rejected: a dose without a unit is ambiguous.
    """
    if isinstance(text, bool) or not isinstance(text, str):
        raise DoseError(field, f"dose {text!r} has no unit; write it like '500 mg'")
    match = _AMOUNT.match(text)
    if match is None:
        raise DoseError(field, f"cannot read dose {text!r}; write it like '500 mg'")
    number, unit = match.group(1), match.group(2)
    if not unit:
        raise DoseError(field, f"dose {text!r} has no unit; write it like '500 mg'")
    return to_milligrams(float(number), unit, field)


def _has_mass_unit(value: str, info: ValidationInfo) -> str:
    """A dose text must carry a mass unit (``"500 mg"``); the error names the field it stands in."""
    parse_amount_mg(value, field=info.field_name or "dose")
    return value


#: a pydantic field type: dose text with a mass unit, checked by :func:`parse_amount_mg` when a model is made
MassText = Annotated[str, AfterValidator(_has_mass_unit)]
