"""Which FHIR search parameters each resource type answers here, and the parsing of the result parameters
(``_sort``, ``_include``, ``_revinclude``). One table (:func:`search_params`) feeds both the search (anything
else is refused, naming the parameter) and the CapabilityStatement, so the statement claims exactly what
works: a parameter is listed for a type only when the store can answer it for that type, under its FHIR R4
name (the indexed code, time and status live in the index rows, which only types with code elements get, and
are searched by the names of :data:`CODE_PARAMS`, :data:`DATE_PARAMS` and :func:`status_param`; ``patient``
needs the Patient compartment; ``category`` and ``identifier`` the element).

Pure: no store, no web framework.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from medtwin.record.compartment import in_patient_compartment, patient_compartment
from medtwin.record.fhir_spec import RESOURCE_TYPES
from medtwin.record.indexing import CODE_ELEMENTS, PATIENT_ELEMENTS, SEARCH_TIME
from medtwin.record.validate import elements

#: Parameters that shape the result rather than filter it.
RESULT_PARAMS = frozenset({"_count", "_offset", "_format", "_sort", "_include", "_revinclude"})
#: ``_include`` parameters: the reference elements each follows (those present in the type are offered).
INCLUDE_ELEMENTS: dict[str, tuple[str, ...]] = {
    "patient": PATIENT_ELEMENTS, "subject": ("subject",), "encounter": ("encounter",),
    "performer": ("performer",), "requester": ("requester",), "medication": ("medicationReference",),
    "organization": ("managingOrganization", "organization"), "general-practitioner": ("generalPractitioner",),
    "service-provider": ("serviceProvider",), "practitioner": ("practitioner",), "location": ("location",),
}
# Names from the FHIR R4 search parameter registry (hl7.org/fhir/R4/searchparameter-registry.html).
#: The R4 parameter that searches the indexed code (``indexing.CODE_ELEMENTS``) where it is not ``code``;
#: None where R4 has no parameter on that element (Claim.type, EOB.type, SupplyDelivery.suppliedItem; a
#: CarePlan's indexed category is searched as ``category``): the rows then serve only date and status.
CODE_PARAMS: dict[str, str | None] = {
    "Encounter": "type", "DocumentReference": "type", "Device": "type", "Immunization": "vaccine-code",
    "ImagingStudy": "modality", "CarePlan": None, "Claim": None, "ExplanationOfBenefit": None,
    "SupplyDelivery": None,
}
#: The R4 parameter that searches the indexed time (``indexing.SEARCH_TIME``: that parameter's elements).
DATE_PARAMS: dict[str, str] = {
    "Observation": "date", "DiagnosticReport": "date", "Procedure": "date", "AllergyIntolerance": "date",
    "Immunization": "date", "Encounter": "date", "CarePlan": "date", "DocumentReference": "date",
    "MedicationAdministration": "effective-time", "MedicationStatement": "effective", "Condition": "onset-date",
    "MedicationRequest": "authoredon", "ImagingStudy": "started", "Claim": "created",
    "ExplanationOfBenefit": "created",
}
#: Types with an R4 ``category`` search parameter (others with a category element, MedicationAdministration or
#: MedicationDispense, have none: a client would not expect it there).
CATEGORY_TYPES = frozenset({
    "AdverseEvent", "AllergyIntolerance", "CarePlan", "CareTeam", "Communication", "CommunicationRequest",
    "Composition", "Condition", "Consent", "DiagnosticReport", "DocumentReference", "Flag", "Goal",
    "MedicationRequest", "MedicationStatement", "Observation", "Procedure", "ResearchStudy", "ServiceRequest",
    "Substance", "SupplyRequest",
})
#: Types whose indexed status is ``clinicalStatus`` (``indexing.status_of``), searched as ``clinical-status``.
CLINICAL_STATUS = frozenset({"Condition", "AllergyIntolerance"})
#: How many resources ``_include``/``_revinclude`` add to one page at most (a page says when it cut).
MAX_INCLUDED = 1000


class SearchParamError(ValueError):
    """A search parameter this server does not answer, or a bad value; names the parameter."""

    def __init__(self, param: str, message: str, *, supported: bool = True) -> None:
        super().__init__(message)
        self.param, self.supported = param, supported


@cache
def search_params(resource_type: str) -> dict[str, str]:
    """The filter parameters ``resource_type`` answers, with their FHIR search type."""
    fields = elements().get(resource_type, {})
    params = {"_id": "token", "_lastUpdated": "date"}
    if "identifier" in fields:
        params["identifier"] = "token"
    if resource_type != "Patient" and in_patient_compartment(resource_type):
        params["patient"] = "reference"
        if patient_compartment().get(resource_type) == "subject":
            params["subject"] = "reference"
    if resource_type in CODE_ELEMENTS:
        params.update(dict.fromkeys(code_params(resource_type), "token"))
        date = date_param(resource_type)
        if date is not None:
            params[date] = "date"
        status = status_param(resource_type)
        if status is not None:
            params[status] = "token"
    if "category" in fields and resource_type in CATEGORY_TYPES:
        params["category"] = "token"
    return params


def code_params(resource_type: str) -> tuple[str, ...]:
    """The parameter (none or one) that searches the indexed code of ``resource_type``."""
    if resource_type not in CODE_ELEMENTS:
        return ()
    name = CODE_PARAMS.get(resource_type, "code")
    return () if name is None else (name,)


def date_param(resource_type: str) -> str | None:
    """The parameter that searches the indexed time of ``resource_type`` (None: it has none here)."""
    name = DATE_PARAMS.get(resource_type)
    return name if name is not None and resource_type in SEARCH_TIME and resource_type in CODE_ELEMENTS else None


def status_param(resource_type: str) -> str | None:
    """The parameter that searches the indexed status of ``resource_type`` (None: it has none here)."""
    if resource_type not in CODE_ELEMENTS:
        return None
    if resource_type in CLINICAL_STATUS:
        return "clinical-status"
    return "status" if "status" in elements().get(resource_type, {}) else None


def sort_keys(resource_type: str) -> tuple[str, ...]:
    date = date_param(resource_type)
    return ("_lastUpdated", "_id") + (() if date is None else (date,))


@cache
def include_params(resource_type: str) -> tuple[str, ...]:
    """``Type:param`` values ``_include`` takes on ``resource_type``."""
    fields = elements().get(resource_type, {})
    return tuple(name for name, path in INCLUDE_ELEMENTS.items() if any(e in fields for e in path))


@cache
def revinclude_params() -> tuple[str, ...]:
    """``Type:patient`` (and ``Type:subject``) for every Patient-compartment type: a Patient search's
    ``_revinclude`` (the link the store indexes: each resource's patient)."""
    out: list[str] = []
    for rtype in sorted(RESOURCE_TYPES):
        params = search_params(rtype)
        out.extend(f"{rtype}:{name}" for name in ("patient", "subject") if name in params)
    return tuple(out)


def check_params(resource_type: str, names: Iterable[str]) -> None:
    """Refuse (raise) the first parameter ``resource_type`` does not answer."""
    allowed = set(search_params(resource_type)) | RESULT_PARAMS
    unknown = sorted(set(names) - allowed)
    if unknown:
        raise SearchParamError(unknown[0], f"search parameter(s) not supported on {resource_type}: "
                               f"{', '.join(unknown)} (see /fhir/metadata)", supported=False)


def parse_sort(resource_type: str, values: list[str]) -> tuple[tuple[str, bool], ...]:
    """``_sort=-date,_id`` -> ((``date``, descending), (``_id``, ascending)); the type's date parameter
    (``created``, ``started`` ...) is the store's ``date`` key."""
    keys = sort_keys(resource_type)
    out: list[tuple[str, bool]] = []
    for value in values:
        for item in value.split(","):
            name = item.lstrip("-")
            if name not in keys:
                raise SearchParamError("_sort", f"_sort: {name!r} is not a sort key of {resource_type} "
                                       f"(one of {', '.join(keys)}, '-' for descending)")
            out.append(("date" if name == date_param(resource_type) else name, item.startswith("-")))
    return tuple(out)


@dataclass(frozen=True)
class Include:
    """``_include=Source:param`` (follow the references of ``elements``) or ``_revinclude=Source:param``
    (resources of ``source_type`` whose patient is a matched Patient)."""

    source_type: str
    param: str
    elements: tuple[str, ...]


def parse_includes(resource_type: str, values: list[str]) -> tuple[Include, ...]:
    out = []
    for value in values:
        source, _, param = value.partition(":")
        if source != resource_type or param not in include_params(resource_type):
            raise SearchParamError("_include", f"_include={value!r}: {resource_type} includes "
                                   f"{', '.join(f'{resource_type}:{p}' for p in include_params(resource_type))}")
        out.append(Include(source, param, INCLUDE_ELEMENTS[param]))
    return tuple(out)


def parse_revincludes(resource_type: str, values: list[str]) -> tuple[Include, ...]:
    out = []
    for value in values:
        if resource_type != "Patient" or value not in revinclude_params():
            raise SearchParamError("_revinclude", f"_revinclude={value!r}: only a Patient search takes "
                                   "_revinclude, as Type:patient of a Patient-compartment type")
        source, _, param = value.partition(":")
        out.append(Include(source, param, ()))
    return tuple(out)


def included_keys(resources: Iterable[dict[str, Any]], includes: tuple[Include, ...]) -> list[tuple[str, str]]:
    """The (type, id) of what ``_include`` follows from ``resources`` (relative references only), in order."""
    found: dict[tuple[str, str], None] = {}
    for resource in resources:
        for include in includes:
            for element in include.elements:
                holder = resource.get(element)
                for item in holder if isinstance(holder, list) else [holder]:
                    # the element holds the reference itself, or a backbone element holds it under ``actor``
                    # (Procedure.performer) or its own name (Encounter.location.location)
                    node = item.get("actor") or item.get(element) if isinstance(item, dict) and \
                        "reference" not in item else item
                    reference = node.get("reference") if isinstance(node, dict) else None
                    if isinstance(reference, str) and reference.count("/") == 1 and ":" not in reference:
                        rtype, rid = reference.split("/")
                        found.setdefault((rtype, rid), None)
    return list(found)
