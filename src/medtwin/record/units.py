"""Unit normalisation for observations: each LOINC code is stored in one target UCUM unit.

Rules (``normalise``):

* the unit is not valid UCUM (or missing), or the value is not finite: keep the original, never convert
  (``value`` and ``unit`` of the result are None; ``valid_ucum`` says whether the unit parsed);
* valid, the code has a target unit (``data/loinc_targets.csv``) and the units are commensurable (or
  related by the code's molar mass): convert, ``converted=True`` when the unit changed;
* otherwise keep the value in its own valid unit.

Units whose annotations differ (``{score}`` vs ``%``, ``1`` vs ``{INR}``, eGFR ``mL/min`` vs
``mL/min/{1.73_m2}``: a target annotation the unit lacks) are not converted: the annotation names what is counted or how it was normalised.
``pH`` is grammatical UCUM for picohenry, not the pH ``[pH]``: it is flagged as not valid (``MISREAD_UNITS``). Units listed in a code's ``exclude_units`` are never
converted (HbA1c mmol/mol is not a unit factor away from %).
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from types import MappingProxyType

from medtwin.record import ucum
from medtwin.vocab.systems import LOINC

__all__ = ["LOINC_SYSTEM", "MISREAD_UNITS", "Normalised", "Target", "normalise", "target_for", "targets"]

LOINC_SYSTEM = LOINC
#: Codes that are valid UCUM by its grammar but mean something else than what clinical data means by them:
#: treated as not valid (kept, flagged, never converted), with the code that was meant.
MISREAD_UNITS: Mapping[str, str] = MappingProxyType({"pH": "[pH]"})  # pH parses as picohenry
_ANNOTATION = re.compile(r"\{[^{}]*\}")


@dataclass(frozen=True)
class Target:
    """The storage unit for one LOINC code and, for analytes, its molar mass."""

    loinc: str
    name: str
    unit: str
    molar_mass_g_per_mol: float | None
    exclude_units: frozenset[str]


@dataclass(frozen=True)
class Normalised:
    value: float | None
    unit: str | None
    original_value: float
    original_unit: str | None
    valid_ucum: bool
    converted: bool


@lru_cache(maxsize=1)
def targets() -> Mapping[str, Target]:
    """LOINC code -> target, from ``record/data/loinc_targets.csv``."""
    text = resources.files("medtwin.record").joinpath("data", "loinc_targets.csv").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    out: dict[str, Target] = {}
    for row in csv.DictReader(lines):
        mm = row["molar_mass_g_per_mol"].strip()
        excluded = frozenset(u for u in row["exclude_units"].split(";") if u)
        out[row["loinc"]] = Target(
            row["loinc"], row["name"], row["target_unit"], float(mm) if mm else None, excluded
        )
    return MappingProxyType(out)


def target_for(code_system: str | None, code: str | None) -> Target | None:
    """The target for a (system, code) pair, or None (only LOINC codes have targets)."""
    if code_system != LOINC_SYSTEM or code is None:
        return None
    return targets().get(code)


def _annotations(code: str) -> frozenset[str]:
    return frozenset(_ANNOTATION.findall(code))


def normalise(code_system: str | None, code: str | None, value: float, unit: str | None) -> Normalised:
    """Normalise one numeric value with its UCUM unit code (see the module docstring for the rules)."""
    if unit is None or unit in MISREAD_UNITS or not ucum.is_valid(unit) or not math.isfinite(value):
        valid = unit is not None and unit not in MISREAD_UNITS and ucum.is_valid(unit)
        return Normalised(None, None, value, unit, valid, False)
    keep = Normalised(value, unit, value, unit, True, False)
    target = target_for(code_system, code)
    if target is None or unit == target.unit:
        return keep
    if unit in target.exclude_units:
        return keep
    src, dst = ucum.parse(unit), ucum.parse(target.unit)
    if src.is_dimensionless and dst.is_dimensionless and _annotations(unit) != _annotations(target.unit):
        return keep
    if not _annotations(target.unit) <= _annotations(unit):
        # the target's annotation names how it was normalised (eGFR mL/min/{1.73_m2} is per 1.73 m2 of body
        # surface): mL/min is not that, and no unit factor makes it so
        return keep
    try:
        converted = ucum.convert(value, unit, target.unit, molar_mass_g_per_mol=target.molar_mass_g_per_mol)
    except ucum.IncommensurableUnitsError:
        return keep
    return Normalised(converted, target.unit, value, unit, True, True)
