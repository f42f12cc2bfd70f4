"""What the ``/fhir`` routes share: FHIR errors (OperationOutcome), search parameters, Bundles, and the
CapabilityStatement that says exactly what the routes do. No route here: ``api/routers/fhir.py`` declares
them. Resource JSON is written from the stored text (``record.exactjson``), so decimals keep their digits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi.responses import Response

from medtwin import __version__
from medtwin.record import exactjson, fhir_search
from medtwin.record.export import stamped
from medtwin.record.fhir_spec import FHIR_VERSION, RESOURCE_TYPES
from medtwin.record.fhirtime import FhirDateError, format_datetime, parse_datetime
from medtwin.store.records import SearchQuery, StoredVersion

FHIR_JSON = "application/fhir+json"
MAX_COUNT = 500
DEFAULT_COUNT = 50
_PREFIXES = ("ge", "gt", "le", "lt", "eq")


class FhirError(Exception):
    """A FHIR error answer: an OperationOutcome with ``status``."""

    def __init__(self, status: int, code: str, diagnostics: str, *, expression: str | None = None) -> None:
        super().__init__(diagnostics)
        self.status, self.code, self.diagnostics, self.expression = status, code, diagnostics, expression

    def response(self) -> Response:
        issue: dict[str, Any] = {"severity": "error", "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            issue["expression"] = [self.expression]
        return fhir_response({"resourceType": "OperationOutcome", "issue": [issue]}, status=self.status)


def not_found(what: str) -> FhirError:
    """404: the same answer for a resource that is missing and one outside the caller's reach."""
    return FhirError(404, "not-found", f"{what} is not known")


def fhir_response(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(exactjson.dumps(body), status_code=status, media_type=FHIR_JSON, headers=headers)


def with_meta(version: StoredVersion) -> dict[str, Any]:
    """The stored resource with the server's ``meta.versionId`` and ``meta.lastUpdated``."""
    resource = version.resource()
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version.version)
    meta["lastUpdated"] = format_datetime(version.last_updated)
    resource["meta"] = meta
    return resource


def check_type(resource_type: str) -> None:
    if resource_type not in RESOURCE_TYPES:
        raise FhirError(404, "not-supported", f"unknown resource type {resource_type!r}")


# --- search parameters -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Page:
    count: int
    offset: int


def _int_param(params: dict[str, list[str]], name: str, default: int, low: int, high: int) -> int:
    values = params.get(name)
    if not values:
        return default
    try:
        number = int(values[-1])
    except ValueError:
        raise FhirError(400, "invalid", f"{name} must be an integer", expression=name) from None
    if not low <= number <= high:
        raise FhirError(400, "invalid", f"{name} must be between {low} and {high}", expression=name)
    return number


def refuse_unknown(params: dict[str, list[str]], allowed: set[str] | frozenset[str], what: str) -> None:
    """400 naming the first parameter of ``params`` outside ``allowed`` (``what``: the interaction)."""
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise FhirError(400, "not-supported", f"{what} parameter(s) not supported: {', '.join(unknown)}",
                        expression=unknown[0])


def page_of(params: dict[str, list[str]], *, default: int = DEFAULT_COUNT) -> Page:
    return Page(_int_param(params, "_count", default, 0, MAX_COUNT),
                _int_param(params, "_offset", 0, 0, 10_000_000))


def _precision_end(text: str, start: datetime) -> datetime:
    """The first instant after the period a partial date names (2024 -> 2025-01-01)."""
    if len(text) == 4:
        return start.replace(year=start.year + 1)
    if len(text) == 7:
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    if len(text) == 10:
        return datetime.fromordinal(start.toordinal() + 1).replace(tzinfo=UTC)
    return start


def date_conditions(name: str, values: list[str]) -> tuple[tuple[str, datetime], ...]:
    """``date=ge2024-01-01`` ... as (op, instant) comparisons: a partial date is the period it names. On a
    resource's time (a period: start to end) they read as R4 says (``store.records.period_compare``): ``ge``/
    ``gt`` on its end, ``le``/``lt`` on its start (the ranges intersect), ``eq`` as ``in-ge`` and ``in-le``/
    ``in-lt`` (its time within the value's period); on an instant (``_lastUpdated``) all are plain."""
    out: list[tuple[str, datetime]] = []
    for value in values:
        prefix, text = (value[:2], value[2:]) if value[:2] in _PREFIXES else ("eq", value)
        try:
            start = parse_datetime(text)
        except FhirDateError:
            raise FhirError(400, "invalid", f"{name}: {value!r} is not a FHIR date (prefixes: "
                            f"{', '.join(_PREFIXES)})", expression=name) from None
        end = _precision_end(text, start)
        exact = end == start
        if prefix == "eq":
            out.extend([("in-ge", start), ("in-le" if exact else "in-lt", end)])
        elif prefix == "ge":
            out.append(("ge", start))
        elif prefix == "gt":
            out.append(("gt" if exact else "ge", end))
        elif prefix == "le":
            out.append(("le" if exact else "lt", end))
        else:
            out.append(("lt", start))
    return tuple(out)


def _reference_id(name: str, value: str) -> str:
    """``Patient/123`` or ``123`` -> ``123``."""
    if value.startswith("Patient/"):
        value = value[len("Patient/"):]
    if not value or "/" in value:
        raise FhirError(400, "invalid", f"{name} must name a Patient (Patient/id)", expression=name)
    return value


def _tokens(values: list[str]) -> list[tuple[str | None, str]]:
    """Token parameters (``system|code``, ``code``, comma-separated: any of them) as (system or None, code)."""
    out: list[tuple[str | None, str]] = []
    for value in values:
        for token in value.split(","):
            system, _, code = token.rpartition("|") if "|" in token else ("", "", token)
            out.append((system or None, code))
    return out


@dataclass(frozen=True)
class SearchPlan:
    """A search as the store runs it, the patient it names (checked against the caller's reach), and what
    ``_include``/``_revinclude`` add to the page."""

    query: SearchQuery
    patient: str | None
    includes: tuple[fhir_search.Include, ...]
    revincludes: tuple[fhir_search.Include, ...]


def _dates(resource_type: str, params: dict[str, list[str]]) -> tuple[tuple[str, datetime], ...]:
    name = fhir_search.date_param(resource_type)
    return () if name is None else date_conditions(name, params.get(name, []))


def search_query(resource_type: str, params: dict[str, list[str]], page: Page) -> SearchPlan:
    """The store query of a search (parameters per ``record.fhir_search.search_params``)."""
    try:
        fhir_search.check_params(resource_type, params)
        sort = fhir_search.parse_sort(resource_type, params.get("_sort", []))
        includes = fhir_search.parse_includes(resource_type, params.get("_include", []))
        revincludes = fhir_search.parse_revincludes(resource_type, params.get("_revinclude", []))
    except fhir_search.SearchParamError as error:
        raise FhirError(400, "invalid" if error.supported else "not-supported", str(error),
                        expression=error.param) from None
    patients = {_reference_id(n, v) for n in ("patient", "subject") for v in params.get(n, [])}
    if len(patients) > 1:
        raise FhirError(400, "invalid", "patient/subject name more than one patient", expression="patient")
    codes = _tokens([v for name in fhir_search.code_params(resource_type) for v in params.get(name, [])])
    ids = frozenset(i for v in params.get("_id", []) for i in v.split(",")) if "_id" in params else None
    patient = next(iter(patients), None)
    query = SearchQuery(ids=ids, patient=patient, codes=tuple(codes),
                        dates=_dates(resource_type, params),
                        last_updated=date_conditions("_lastUpdated", params.get("_lastUpdated", [])),
                        statuses=tuple(s for v in params.get(fhir_search.status_param(resource_type) or "", [])
                                       for s in v.split(",")),
                        identifiers=tuple(_tokens(params.get("identifier", []))),
                        categories=tuple(_tokens(params.get("category", []))), sort=sort,
                        count=page.count, offset=page.offset)
    return SearchPlan(query, patient, includes, revincludes)


# --- bundles ---------------------------------------------------------------------------------------------

def _link(base: str, path: str, params: dict[str, list[str]], offset: int | None = None) -> str:
    pairs = [(k, v) for k, values in params.items() if k != "_offset" for v in values]
    if offset:
        pairs.append(("_offset", str(offset)))
    query = urlencode(pairs)
    return f"{base}/{path}" + (f"?{query}" if query else "")


def paged_bundle(kind: str, base: str, path: str, params: dict[str, list[str]], page: Page, total: int,
                 entries: list[dict[str, Any]], *, now: datetime) -> dict[str, Any]:
    """A searchset or history Bundle: total, self/next/previous links (same query, ``_offset`` moved);
    ``timestamp`` is ``now``, the server's clock (``medtwin.clock``), not the wall clock."""
    links = [{"relation": "self", "url": _link(base, path, params, page.offset)}]
    if page.count and page.offset + page.count < total:
        links.append({"relation": "next", "url": _link(base, path, params, page.offset + page.count)})
    if page.offset > 0:
        links.append({"relation": "previous", "url": _link(base, path, params, max(page.offset - page.count, 0))})
    return {"resourceType": "Bundle", "type": kind, "timestamp": format_datetime(now),
            "total": total, "link": links, "entry": entries}


def stamped_resource(version: StoredVersion) -> orjson.Fragment:
    """:func:`with_meta` as ready JSON bytes (``record.export.stamped``: the stored text is not parsed)."""
    return orjson.Fragment(stamped(version.raw, version.version, version.last_updated))


def undated_outcome(count: int) -> dict[str, Any]:
    """A searchset's ``outcome`` entry: ``count`` resources kept under a care-date range have no care date."""
    return {"resource": {"resourceType": "OperationOutcome", "issue": [{
        "severity": "information", "code": "informational", "expression": ["start", "end"],
        "diagnostics": f"{count} resource(s) have no care date to compare with start/end and are included: "
                       "nothing shows them outside the range"}]}, "search": {"mode": "outcome"}}


def search_entry(base: str, version: StoredVersion, *, mode: str = "match") -> dict[str, Any]:
    return {"fullUrl": f"{base}/{version.resource_type}/{version.id}", "resource": stamped_resource(version),
            "search": {"mode": mode}}


def history_entry(base: str, version: StoredVersion, *, first: bool) -> dict[str, Any]:
    return {"fullUrl": f"{base}/{version.resource_type}/{version.id}", "resource": stamped_resource(version),
            "request": {"method": "POST" if first else "PUT",
                        "url": version.resource_type if first else f"{version.resource_type}/{version.id}"},
            "response": {"status": "201 Created" if first else "200 OK",
                         "etag": f'W/"{version.version}"',
                         "lastModified": format_datetime(version.last_updated)}}


# --- capability ------------------------------------------------------------------------------------------

_BULK = "http://hl7.org/fhir/uv/bulkdata"
#: The type-level interactions of every resource type (``api/routers/fhir``); delete and patch are not built.
INTERACTIONS = ("read", "vread", "update", "create", "history-instance", "history-type", "search-type")


def capability_statement(base: str, resource_types: list[str], *, now: datetime) -> dict[str, Any]:
    """What /fhir does, exactly: read, vread, create, update, instance and type history and search with the
    parameters below on ``resource_types``, batch and transaction at the base, $validate and
    Patient/$everything; JSON only."""
    described = []
    for rtype in resource_types:
        params = fhir_search.search_params(rtype)
        described.append({
            "type": rtype, "versioning": "versioned-update", "readHistory": True, "updateCreate": True,
            "conditionalCreate": True, "conditionalUpdate": True, "conditionalDelete": "not-supported",
            "interaction": [{"code": c} for c in INTERACTIONS],
            "operation": [{"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}],
            "searchParam": [{"name": n, "type": t} for n, t in params.items()],
            "searchInclude": [f"{rtype}:{p}" for p in fhir_search.include_params(rtype)],
            "searchRevInclude": list(fhir_search.revinclude_params()) if rtype == "Patient" else [],
        })
    return {
        "resourceType": "CapabilityStatement", "status": "active", "date": format_datetime(now),
        "kind": "instance", "fhirVersion": FHIR_VERSION, "format": ["json"],
        "instantiates": [f"{_BULK}/CapabilityStatement/bulk-data"],
        "software": {"name": "medtwin", "version": __version__},
        "implementation": {"description": "medtwin FHIR R4 API", "url": base},
        "rest": [{
            "mode": "server",
            "interaction": [{"code": "transaction"}, {"code": "batch"}],
            "operation": [{"name": "everything",
                           "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"},
                          {"name": "export", "definition": f"{_BULK}/OperationDefinition/export"},
                          {"name": "patient-export", "definition": f"{_BULK}/OperationDefinition/patient-export"},
                          {"name": "group-export", "definition": f"{_BULK}/OperationDefinition/group-export"}],
            "documentation": "Patient/[id]/$everything pages with _count and takes _type, _since and the care "
                             "dates start/end (undated resources are kept and counted in an outcome entry); "
                             "conditional update: PUT Type?identifier=system|value. Search: the parameters listed per "
                             "type (token: system|code or code, comma for any; date: prefixes eq ge gt le lt, "
                             "on that parameter's elements; reference: Patient/id), _sort (_lastUpdated, _id, "
                             "the type's date parameter; "
                             "'-' descending), _include/_revinclude as listed, _count (at most 500) with "
                             "next/previous links. Same bearer tokens, patient scope and audit as /api/v1.",
            "security": {"cors": False, "description": "OAuth2 bearer tokens from /api/v1/auth/token; SMART "
                                                      "discovery at /.well-known/smart-configuration",
                         "service": [{"coding": [{
                             "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                             "code": "SMART-on-FHIR"}]}]},
            "resource": described,
        }],
    }
