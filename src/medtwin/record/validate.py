"""Datatype validation of FHIR R4 resources on import (issue 16 item 4).

Every element of a resource is checked against its definition (``data/fhir_elements.json``, generated from
fhir.resources' R4B models by ``fhir_elements_gen``): unknown elements are refused; primitives must have
their FHIR JSON form (``date``/``dateTime``/``instant`` formats and real calendar dates, decimals and
integers as JSON numbers, booleans, strings, codes without stray whitespace); repeating elements must be
arrays and single ones not; codes of the required bindings medtwin meets (``REQUIRED_CODES``) must be in their
value set. The first problem raises :class:`InvalidFieldError` naming the field path
(``Observation.component[1].valueQuantity.value``).
"""

from __future__ import annotations

import json
import re
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

from medtwin.record.errors import InvalidFieldError

_DATA = Path(__file__).parent / "data" / "fhir_elements.json"

_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_ZONE = r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
_CLOCK = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
# The regular expressions of the FHIR R4 datatypes (hl7.org/fhir/R4/datatypes.html)
DATE = re.compile(rf"^{_YEAR}(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?$")
DATE_TIME = re.compile(rf"^{_YEAR}(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T{_CLOCK}{_ZONE})?)?)?$")
INSTANT = re.compile(rf"^{_YEAR}-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T{_CLOCK}{_ZONE}$")
TIME = re.compile(rf"^{_CLOCK}$")
CODE = re.compile(r"^[^\s]+( [^\s]+)*$")
ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

# Required bindings (hl7.org/fhir/R4, each element's binding: "required") of the elements medtwin meets.
REQUIRED_CODES: dict[str, frozenset[str]] = {key: frozenset(codes.split()) for key, codes in {
    "Observation.status": "registered preliminary final amended corrected cancelled entered-in-error unknown",
    "DiagnosticReport.status": "registered partial preliminary final amended corrected appended cancelled "
                               "entered-in-error unknown",
    "Encounter.status": "planned arrived triaged in-progress onleave finished cancelled entered-in-error unknown",
    "Procedure.status": "preparation in-progress not-done on-hold stopped completed entered-in-error unknown",
    "MedicationRequest.status": "active on-hold cancelled completed entered-in-error stopped draft unknown",
    "MedicationRequest.intent": "proposal plan order original-order reflex-order filler-order instance-order "
                                "option",
    "Immunization.status": "completed entered-in-error not-done",
    "Claim.status": "active cancelled draft entered-in-error",
    "Claim.use": "claim preauthorization predetermination",
    "ExplanationOfBenefit.status": "active cancelled draft entered-in-error",
    "ExplanationOfBenefit.use": "claim preauthorization predetermination",
    "ExplanationOfBenefit.outcome": "queued complete error partial",
    "CarePlan.status": "draft active on-hold revoked completed entered-in-error unknown",
    "CarePlan.intent": "proposal plan order option",
    "CareTeam.status": "proposed active suspended inactive entered-in-error",
    "Patient.gender": "male female other unknown",
    "Practitioner.gender": "male female other unknown",
    "Quantity.comparator": "< <= >= >",
    "DocumentReference.status": "current superseded entered-in-error",
    "ImagingStudy.status": "registered available cancelled entered-in-error unknown",
    "Coverage.status": "active cancelled draft entered-in-error",
    "Goal.lifecycleStatus": "proposed planned accepted active on-hold completed cancelled entered-in-error "
                            "rejected",
    "AllergyIntolerance.type": "allergy intolerance",
    "AllergyIntolerance.category": "food medication environment biologic",
    "AllergyIntolerance.criticality": "low high unable-to-assess",
    "Narrative.status": "generated extensions additional empty",
    "Bundle.type": "document message transaction transaction-response batch batch-response history searchset "
                   "collection",
    "BundleEntryRequest.method": "GET HEAD POST PUT DELETE PATCH",
}.items()}

_STRINGS = frozenset({"string", "uri", "url", "canonical", "oid", "uuid", "markdown", "base64Binary", "xhtml"})
_INTEGERS = {"integer": None, "integer64": None, "positiveInt": 1, "unsignedInt": 0}


@lru_cache(maxsize=1)
def elements() -> dict[str, dict[str, tuple[str, bool]]]:
    """``{type: {element: (type, repeats)}}`` of every FHIR type."""
    raw: dict[str, dict[str, list[Any]]] = json.loads(_DATA.read_text())
    return {name: {key: (str(spec[0]), bool(spec[1])) for key, spec in fields.items()}
            for name, fields in raw.items()}


def _fail(path: str, message: str) -> InvalidFieldError:
    return InvalidFieldError(message, field=path)


def _calendar(text: str, path: str) -> None:
    """A full date part (YYYY-MM-DD) must be a real day (2023-02-30 matches the pattern but is not)."""
    if len(text) >= 10:
        try:
            date(int(text[:4]), int(text[5:7]), int(text[8:10]))
        except ValueError:
            raise _fail(path, f"{text!r} is not a calendar date") from None


def _primitive(kind: str, value: Any, path: str) -> None:
    if kind in _STRINGS or kind in ("code", "id", "date", "dateTime", "instant", "time"):
        if not isinstance(value, str):
            raise _fail(path, f"expected a {kind} (a JSON string), got {json.dumps(value)[:40]}")
        if kind == "code" and not CODE.match(value):
            raise _fail(path, f"{value!r} is not a code (no leading, trailing or double whitespace)")
        elif kind == "id" and not ID.match(value):
            raise _fail(path, f"{value!r} is not an id ([A-Za-z0-9-.]{{1,64}})")
        elif kind in ("date", "dateTime", "instant"):
            pattern = DATE if kind == "date" else DATE_TIME if kind == "dateTime" else INSTANT
            if not pattern.match(value):
                raise _fail(path, f"{value!r} is not a FHIR {kind}")
            _calendar(value, path)
        elif kind == "time" and not TIME.match(value):
            raise _fail(path, f"{value!r} is not a FHIR time (hh:mm:ss)")
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise _fail(path, f"expected true or false, got {json.dumps(value)[:40]}")
    elif kind == "decimal":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(path, f"expected a decimal (a JSON number), got {json.dumps(value)[:40]}")
    elif kind in _INTEGERS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(path, f"expected an {kind} (a JSON integer), got {json.dumps(value)[:40]}")
        low = _INTEGERS[kind]
        if (low is not None and value < low) or not -2**31 <= value < 2**31:
            raise _fail(path, f"{value} is not a {kind} (32-bit, at least {low or -2**31})")


def validate_datatypes(resource: dict[str, Any]) -> None:
    """Check a resource (and its contained resources) against the FHIR definitions; see the module doc."""
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str):
        raise _fail("resourceType", "no resourceType")
    _complex(rtype, resource, rtype, top=True)


def _complex(type_name: str, node: Any, path: str, *, top: bool = False) -> None:
    if not isinstance(node, dict):
        raise _fail(path, f"expected a JSON object ({type_name}), got {json.dumps(node)[:40]}")
    if type_name == "Resource":
        rtype = node.get("resourceType")
        if not isinstance(rtype, str) or rtype not in elements():
            raise _fail(f"{path}.resourceType", f"unknown resourceType {rtype!r}")
        type_name, top = rtype, True
    known = elements()[type_name]
    for key, value in node.items():
        if key == "resourceType" and top:
            continue
        spec = known.get(key)
        if spec is None:
            if key.startswith("_") and key[1:] in known:
                continue  # a primitive's id/extensions
            raise _fail(f"{path}.{key}", f"unknown element '{key}' of {type_name}")
        _element(type_name, key, spec, value, f"{path}.{key}")


def _element(owner: str, key: str, spec: tuple[str, bool], value: Any, path: str) -> None:
    kind, repeats = spec
    if repeats:
        if not isinstance(value, list):
            raise _fail(path, f"'{key}' repeats: expected a JSON array")
        items = value
    elif isinstance(value, list):
        raise _fail(path, f"'{key}' does not repeat: expected a single value, not an array")
    else:
        items = [value]
    codes = REQUIRED_CODES.get(f"{owner}.{key}")
    primitive = kind[0].islower()
    for number, item in enumerate(items):
        where = f"{path}[{number}]" if repeats else path
        if primitive:
            if item is None and repeats:
                continue  # a null in a repeating primitive pairs with its _element extension
            _primitive(kind, item, where)
            if codes is not None and item not in codes:
                raise _fail(where, f"{item!r} is not in the required value set of {owner}.{key} "
                                   f"({', '.join(sorted(codes))})")
        else:
            _complex(kind, item, where)


# --- the fast pass: the same rules without building paths; a resource it refuses is walked again by
# ``_complex`` to name the field (Synthea's 7,771 resources: about a third of the time of the naming walk).
_Spec = tuple[str, bool, bool, frozenset[str] | None]  # type, repeats, primitive, required codes


@lru_cache(maxsize=1)
def _specs() -> dict[str, dict[str, _Spec]]:
    return {name: {key: (kind, repeats, kind[0].islower(), REQUIRED_CODES.get(f"{name}.{key}"))
                   for key, (kind, repeats) in fields.items()}
            for name, fields in elements().items()}


_SIMPLE = _STRINGS | {"code", "id"}
_TIMES = {"date": DATE, "dateTime": DATE_TIME, "instant": INSTANT}


def _fast_primitive(kind: str, value: Any) -> bool:
    if type(value) is str:
        if kind in _SIMPLE and kind != "code" and kind != "id":
            return True
        pattern = _TIMES.get(kind)
        if pattern is not None:
            return pattern.match(value) is not None and (len(value) < 10 or _is_day(value))
        return kind == "code" and CODE.match(value) is not None or kind == "id" and ID.match(value) is not None \
            or kind == "time" and TIME.match(value) is not None
    try:
        _primitive(kind, value, "")
    except InvalidFieldError:
        return False
    return True


def _is_day(text: str) -> bool:
    try:
        date(int(text[:4]), int(text[5:7]), int(text[8:10]))
    except ValueError:
        return False
    return True


def _fast_items(kind: str, primitive: bool, codes: frozenset[str] | None, items: list[Any],
                specs: dict[str, dict[str, _Spec]]) -> bool:
    for item in items:
        if primitive:
            if item is not None and not (_fast_primitive(kind, item) and (codes is None or item in codes)):
                return False
        elif not _fast(kind, item, specs):
            return False
    return True


def _fast(type_name: str, node: Any, specs: dict[str, dict[str, _Spec]]) -> bool:
    if type(node) is not dict:
        return False
    if type_name == "Resource":
        type_name = node.get("resourceType")  # type: ignore[assignment]
        if type_name not in specs:
            return False
    known = specs[type_name]
    for key, value in node.items():
        spec = known.get(key)
        if spec is None:
            if key == "resourceType" or key.startswith("_") and key[1:] in known:
                continue
            return False
        kind, repeats, primitive, codes = spec
        if repeats:
            if type(value) is not list or not _fast_items(kind, primitive, codes, value, specs):
                return False
        elif primitive:
            if not _fast_primitive(kind, value) or codes is not None and value not in codes:
                return False
        elif not _fast(kind, value, specs):
            return False
    return True


def check_resource(resource: dict[str, Any]) -> None:
    """:func:`validate_datatypes`, fast when the resource is valid (the usual case)."""
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or rtype not in _specs() or not _fast(rtype, resource, _specs()):
        validate_datatypes(resource)
