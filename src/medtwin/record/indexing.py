"""What of a resource is indexed for queries: its patient, codes, effective time, status and values."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple

from medtwin.record.fhirtime import FhirDateError, parse_datetime
from medtwin.record.units import MISREAD_UNITS, normalise
from medtwin.vocab.systems import UCUM

# CodeableConcept elements that say what a resource is about, by resource type.
CODE_ELEMENTS: dict[str, tuple[str, ...]] = {
    "Observation": ("code",),
    "Condition": ("code",),
    "Procedure": ("code",),
    "DiagnosticReport": ("code",),
    "AllergyIntolerance": ("code",),
    "Medication": ("code",),
    "MedicationRequest": ("medicationCodeableConcept",),
    "MedicationAdministration": ("medicationCodeableConcept",),
    "MedicationStatement": ("medicationCodeableConcept",),
    "MedicationDispense": ("medicationCodeableConcept",),
    "Immunization": ("vaccineCode",),
    "Encounter": ("type",),
    "CarePlan": ("category",),
    "DocumentReference": ("type",),
    "Device": ("type",),
    "SupplyDelivery": ("suppliedItem.itemCodeableConcept",),
    "ImagingStudy": ("series.modality",),  # a Coding per series: R4 searches it as ``modality``
    "Claim": ("type",),
    "ExplanationOfBenefit": ("type",),
}

# Where a resource's clinically relevant time is, in order of preference: the time of a reading (an
# Observation: effective[x], else ``issued``), what the twin's summary and the charts place it at.
TIME_ELEMENTS: tuple[str, ...] = (
    "effectiveDateTime", "effectivePeriod", "effectiveInstant", "occurrenceDateTime", "onsetDateTime",
    "performedDateTime", "performedPeriod", "period", "authoredOn", "recordedDate", "started", "issued",
    "created", "recorded", "date", "billablePeriod", "birthDate",
)

#: The elements whose time is indexed for a type that has an R4 date search parameter (the parameter's own
#: elements, so a search on it never matches on another time of the resource; see
#: ``record.fhir_search.DATE_PARAMS`` for its name). Other types index the first of TIME_ELEMENTS present.
SEARCH_TIME: dict[str, tuple[str, ...]] = {
    "Observation": ("effectiveDateTime", "effectivePeriod", "effectiveInstant"),
    "DiagnosticReport": ("effectiveDateTime", "effectivePeriod"),
    "MedicationAdministration": ("effectiveDateTime", "effectivePeriod"),
    "MedicationStatement": ("effectiveDateTime", "effectivePeriod"),
    "Condition": ("onsetDateTime", "onsetPeriod"),
    "Procedure": ("performedDateTime", "performedPeriod"),
    "AllergyIntolerance": ("recordedDate",),
    "MedicationRequest": ("authoredOn",),
    "Immunization": ("occurrenceDateTime",),
    "Encounter": ("period",),
    "CarePlan": ("period",),
    "DocumentReference": ("date",),
    "ImagingStudy": ("started",),
    "Claim": ("created",),
    "ExplanationOfBenefit": ("created",),
}

PATIENT_ELEMENTS: tuple[str, ...] = ("subject", "patient", "beneficiary")

# Types outside the Patient compartment: never scanned for a patient reference.
NOT_PATIENT_DATA = frozenset({"Organization", "Location", "Practitioner", "PractitionerRole", "Medication",
                              "HealthcareService", "Endpoint", "Substance", "ValueSet", "CodeSystem"})


class IndexRow(NamedTuple):
    """One row of ``resource_index`` (without the resource's key, patient and type), in column order. A
    named tuple: tens of thousands are made per import, and the store writes them as tuples."""

    element: str
    system: str | None
    code: str | None
    display: str | None
    effective_start: datetime | None
    effective_end: datetime | None
    status: str | None
    value_num: float | None = None
    value_unit: str | None = None
    value_code: str | None = None
    value_norm: float | None = None
    unit_norm: str | None = None
    unit_valid: bool | None = None
    value_text: str | None = None
    #: The time of the reading (:func:`reading_time`), which charts and /api/v1 series filter and sort on;
    #: beside ``effective_start`` (the R4 date parameter's own elements), which a FHIR ``date`` search uses.
    chart_at: datetime | None = None


def _get_path(resource: dict[str, Any], path: str) -> Any:
    """The value at a dotted path; through a list, the list of the values in its items (``series.modality``)."""
    node: Any = resource
    for part in path.split("."):
        if isinstance(node, list):
            node = [item.get(part) for item in node if isinstance(item, dict) and item.get(part) is not None]
        elif isinstance(node, dict):
            node = node.get(part)
        else:
            return None
    return node


@lru_cache(maxsize=1 << 16)
def _instant(text: str) -> datetime | None:
    """``parse_datetime`` or None, cached: a record repeats its times (an encounter's observations share it)."""
    try:
        return parse_datetime(text)
    except FhirDateError:
        return None


#: The indexed end of a Period without one (ongoing: FHIR reads a missing end so), so a care-date range after
#: its start overlaps it; a dateTime's end stays None (an instant).
OPEN_END = datetime(9999, 12, 31, tzinfo=UTC)


def _time(value: Any, open_end: datetime | None = None) -> tuple[datetime | None, datetime | None]:
    """(start, end) of a dateTime or Period (a Period with a start and no end: ``open_end``); (None, None)
    when any part is not a valid FHIR dateTime."""
    if isinstance(value, str):
        return _instant(value), None
    if isinstance(value, dict):
        start = end = None
        given = value.get("start")
        if isinstance(given, str):
            start = _instant(given)
            if start is None:
                return None, None
        given = value.get("end")
        if isinstance(given, str):
            end = _instant(given)
            if end is None:
                return None, None
        elif start is not None:
            end = open_end
        return start, end
    return None, None


def effective_time(resource: dict[str, Any], candidates: tuple[str, ...] = TIME_ELEMENTS, *,
                   open_end: datetime | None = None) -> tuple[datetime | None, datetime | None]:
    """(start, end) of the first of ``candidates`` the resource has with a valid time (an ongoing Period's
    end: ``open_end``)."""
    for element in candidates:
        if element in resource:
            start, end = _time(resource[element], open_end)
            if start is not None or end is not None:
                return start, end
    return None, None


def reading_time(resource: dict[str, Any]) -> datetime | None:
    """When a reading (any resource) happened, as charts and summaries place it: the start of the first of
    :data:`TIME_ELEMENTS` present. An Observation with ``issued`` but no effective[x] is placed at ``issued``
    (the only time the record gives; R4's ``date`` search parameter is effective[x] only, so it is not found
    by that search: see :data:`SEARCH_TIME`)."""
    return effective_time(resource)[0]


def status_of(resource: dict[str, Any]) -> str | None:
    clinical = resource.get("clinicalStatus")
    if isinstance(clinical, dict):
        for coding in clinical.get("coding") or []:
            if isinstance(coding, dict) and coding.get("code"):
                return str(coding["code"])
    status = resource.get("status")
    return status if isinstance(status, str) else None


def patient_reference(resource: dict[str, Any]) -> str | None:
    """The id of the Patient this resource belongs to (after references are resolved)."""
    if resource.get("resourceType") == "Patient":
        rid = resource.get("id")
        return rid if isinstance(rid, str) else None
    for element in PATIENT_ELEMENTS:
        ref = resource.get(element)
        if isinstance(ref, dict):
            target = ref.get("reference")
            if isinstance(target, str) and target.startswith("Patient/"):
                return target[len("Patient/"):]
    if resource.get("resourceType") in NOT_PATIENT_DATA:
        return None
    return _first_patient_reference(resource)


def _first_patient_reference(node: Any) -> str | None:
    if isinstance(node, dict):
        target = node.get("reference")
        if isinstance(target, str) and target.startswith("Patient/"):
            return target[len("Patient/"):]
        for value in node.values():
            if isinstance(value, dict | list):
                found = _first_patient_reference(value)
                if found:
                    return found
    elif isinstance(node, list):
        for value in node:
            found = _first_patient_reference(value)
            if found:
                return found
    return None


def _codings(concept: Any) -> list[dict[str, Any]]:
    """The codings of a CodeableConcept, a Coding (itself), or a list of either."""
    concepts = concept if isinstance(concept, list) else [concept]
    out: list[dict[str, Any]] = []
    for item in concepts:
        if isinstance(item, dict):
            if "coding" not in item and "code" in item:
                out.append(item)
            else:
                out.extend(c for c in item.get("coding") or [] if isinstance(c, dict))
    return out


def _value_fields(holder: dict[str, Any], system: str | None, code: str | None) -> dict[str, Any]:
    quantity = holder.get("valueQuantity")
    if isinstance(quantity, dict) and isinstance(quantity.get("value"), int | float):
        ucum = quantity.get("code") if quantity.get("system") in (None, UCUM) else None
        unit_given = ucum or quantity.get("unit")
        result = normalise(system, code, float(quantity["value"]), unit_given)
        return {
            "value_num": float(quantity["value"]),
            "value_unit": quantity.get("unit"),
            "value_code": quantity.get("code"),
            "value_norm": result.value,
            "unit_norm": result.unit,
            "unit_valid": result.valid_ucum,
        }
    concept = holder.get("valueCodeableConcept")
    if isinstance(concept, dict):
        codings = _codings(concept)
        text = codings[0].get("code") if codings else concept.get("text")
        return {"value_text": text}
    for key in ("valueString", "valueBoolean", "valueInteger", "valueDateTime"):
        if key in holder:
            value = holder[key]
            if key == "valueInteger" and isinstance(value, int):
                return {"value_num": float(value), "value_text": str(value)}
            return {"value_text": str(value)}
    return {}


def index_rows(resource: dict[str, Any]) -> list[IndexRow]:
    """One row per coding of the resource's code elements; Observation components get their own rows. A
    type with code elements whose resource has no coding gets one ``resource`` row (no code) carrying its
    time and status, so a date or status search still finds it."""
    rtype = resource.get("resourceType", "")
    start, end = effective_time(resource, SEARCH_TIME.get(rtype, TIME_ELEMENTS), open_end=OPEN_END)
    status = status_of(resource)
    at = reading_time(resource)
    rows: list[IndexRow] = []
    for path in CODE_ELEMENTS.get(rtype, ()):
        for coding in _codings(_get_path(resource, path)):
            system, code = coding.get("system"), coding.get("code")
            values = _value_fields(resource, system, code) if rtype == "Observation" else {}
            rows.append(IndexRow("code", system, code, coding.get("display"), start, end, status, **values,
                                 chart_at=at))
    if rtype == "Observation":
        for component in resource.get("component") or []:
            if not isinstance(component, dict):
                continue
            for coding in _codings(component.get("code")):
                system, code = coding.get("system"), coding.get("code")
                values = _value_fields(component, system, code)
                rows.append(IndexRow("component", system, code, coding.get("display"), start, end, status,
                                     **values, chart_at=at))
    if not rows and rtype in CODE_ELEMENTS:
        rows.append(IndexRow("resource", None, None, None, start, end, status, chart_at=at))
    return rows


def unit_warnings(rows: list[IndexRow]) -> list[str]:
    """Human-readable notes for values whose unit is not valid UCUM (kept, flagged, not converted)."""
    out = []
    for row in rows:
        if row.unit_valid is False:
            unit = row.value_code or row.value_unit
            meant = MISREAD_UNITS.get(unit or "")
            hint = f" for this (UCUM reads it as another unit; meant: {meant})" if meant else ""
            out.append(f"{row.code}: unit {unit!r} is not valid UCUM{hint}; value kept as given")
    return out
