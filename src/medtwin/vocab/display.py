"""What people read for a code (``vocab/data/display.toml``, with its sources): UCUM unit -> display unit
(``Cel`` -> ``°C``, ``mm[Hg]`` -> ``mmHg``, ``{INR}`` -> nothing: the name says INR) and LOINC code ->
short display name (``6301-6`` -> ``INR``, not "INR in Platelet poor plasma by Coagulation assay").

Codes stay in the store, in exports and in tooltips; the dashboard (via ``GET /api/v1/vocabulary``:
``display``) and the reports show these. A unit not in the table is shown with UCUM's annotation braces and
bracket markers removed (:func:`display_unit`); a code not in the table keeps the record's display text.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from types import MappingProxyType
from typing import Any, Final

__all__ = ["DISPLAY_FILE", "VALUE_ROUNDING", "display_table", "display_unit", "display_value", "short_name",
           "unit_names"]

DISPLAY_FILE: Final = "display.toml"
#: what the fallback removes from a UCUM code: annotation braces and bracket markers (their content stays)
_MARKERS: Final = re.compile(r"[{}\[\]]")


@lru_cache(maxsize=1)
def _raw() -> dict[str, Any]:
    text = resources.files("medtwin.vocab").joinpath("data", DISPLAY_FILE).read_text(encoding="utf-8")
    raw: dict[str, Any] = tomllib.loads(text)
    for key in ("source", "units", "names", "semantic_tags"):
        if key not in raw:
            raise RuntimeError(f"{DISPLAY_FILE} lacks {key!r}")
    return raw


@lru_cache(maxsize=1)
def unit_names() -> tuple[Mapping[str, str], Mapping[str, str]]:
    """(UCUM -> display unit, LOINC -> short name)."""
    raw = _raw()
    return (MappingProxyType({str(k): str(v) for k, v in raw["units"].items()}),
            MappingProxyType({str(k): str(v) for k, v in raw["names"].items()}))


def display_unit(ucum: str | None) -> str:
    """The unit as people read it: the table's, else the code without UCUM's braces and brackets."""
    if not ucum:
        return ""
    units, _names = unit_names()
    found = units.get(ucum)
    return found if found is not None else _MARKERS.sub("", ucum).strip()


def short_name(code: str | None, display: str | None = None) -> str:
    """The short display name of a LOINC code, else the record's ``display`` without a SNOMED CT semantic tag
    ("Atrial fibrillation (disorder)" -> "Atrial fibrillation"), else the code."""
    _units, names = unit_names()
    if code and code in names:
        return names[code]
    if display:
        head, tag = _semantic_tag(display)
        return head if tag else display
    return code or ""


def _semantic_tag(display: str) -> tuple[str, str | None]:
    """(display without its trailing SNOMED CT semantic tag, the tag) or (display, None)."""
    text = display.rstrip()
    if text.endswith(")") and " (" in text:
        head, _, tag = text[:-1].rpartition(" (")
        if head and tag in _raw()["semantic_tags"]:
            return head, tag
    return display, None


#: The one rounding rule of a measured value on a page or a report (issue #15 item 7: "175 cm" on the page
#: and "174 cm" in the report): one decimal below 10, none from 10 on, a tie rounded away from zero on the
#: value's exact binary form. That is what JavaScript's ``toFixed`` does, so the dashboard (``vocab.js``
#: ``valueText``, reading this table) and Python (:func:`display_value`) print the same digits.
_SMALL_BELOW: Final = 10.0
_SMALL_DIGITS: Final = 1
_DIGITS: Final = 0
VALUE_ROUNDING: Final[dict[str, float | int | str]] = {
    "small_below": _SMALL_BELOW, "small_digits": _SMALL_DIGITS, "digits": _DIGITS, "tie": "away from zero (toFixed)"}


def display_value(value: float) -> str:
    """A measured value as every page and report prints it (:data:`VALUE_ROUNDING`): 174.5 -> "175",
    2.25 -> "2.3", 2.349 -> "2.3"."""
    from decimal import ROUND_HALF_UP, Decimal

    digits = _SMALL_DIGITS if abs(value) < _SMALL_BELOW else _DIGITS
    text = str(Decimal(value).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))
    return "0" if text in ("-0", "-0.0") and digits == 0 else text


def display_table() -> dict[str, Any]:
    """The tables as JSON (the vocabulary endpoint's ``display``): ``units``, ``names``, ``source`` and the
    fallback rule (``fallback_strip``: the characters removed from a UCUM code not in ``units``; ``semantic_tags``: the SNOMED CT
    semantic tags a display text is shown without)."""
    units, names = unit_names()
    return {"source": _raw()["source"], "units": dict(units), "names": dict(names), "fallback_strip": "{}[]",
            "semantic_tags": list(_raw()["semantic_tags"]), "value_rounding": dict(VALUE_ROUNDING)}
