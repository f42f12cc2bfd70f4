"""Which FHIR search parameters each resource type answers here, and the parsing of the result parameters
(``_sort``, ``_include``, ``_revinclude``). One table (:func:`search_params`) feeds both the search (anything
else is refused, naming the parameter) and the CapabilityStatement, so the statement claims exactly what
works: a parameter is listed for a type only when the store can answer it for that type (``code``, ``date``
and ``status`` live in the index rows, which only types with code elements get; ``patient`` needs the Patient
compartment; ``category`` and ``identifier`` the element).

Pure: no store, no web framework.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from medtwin.record.compartment import in_patient_compartment, patient_compartment
from medtwin.record.fhir_spec import RESOURCE_TYPES
from medtwin.record.indexing import CODE_ELEMENTS, PATIENT_ELEMENTS, TIME_ELEMENTS
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
#: The FHIR name of the indexed code where it is not ``code`` (both names answer).
CODE_ALIASES = {"Encounter": "type", "DocumentReference": "type", "Device": "type", "Immunization": "vaccine-code"}
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
        params["code"] = "token"
        if resource_type in CODE_ALIASES:
            params[CODE_ALIASES[resource_type]] = "token"
        if any(element in fields for element in TIME_ELEMENTS):
            params["date"] = "date"
        if "status" in fields or "clinicalStatus" in fields:
            params["status"] = "token"
    if "category" in fields:
        params["category"] = "token"
    return params


def code_params(resource_type: str) -> tuple[str, ...]:
    """The parameters that search the indexed code of ``resource_type``."""
    alias = CODE_ALIASES.get(resource_type)
    return ("code",) if alias is None else ("code", alias)


def sort_keys(resource_type: str) -> tuple[str, ...]:
    return ("_lastUpdated", "_id") + (("date",) if "date" in search_params(resource_type) else ())


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
    """``_sort=-date,_id`` -> ((``date``, descending), (``_id``, ascending))."""
    keys = sort_keys(resource_type)
    out: list[tuple[str, bool]] = []
    for value in values:
        for item in value.split(","):
            name = item.lstrip("-")
            if name not in keys:
                raise SearchParamError("_sort", f"_sort: {name!r} is not a sort key of {resource_type} "
                                       f"(one of {', '.join(keys)}, '-' for descending)")
            out.append((name, item.startswith("-")))
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
