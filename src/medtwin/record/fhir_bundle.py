"""FHIR REST writes as import units, and their answers: a create, an update or a batch entry becomes a one-entry
``transaction`` Bundle the preparer already understands (``record.prepare``: ids, ``urn:uuid:`` and
conditional references, ``ifNoneExist``), so the REST API and the import share one validator and one write
path; a transaction is one unit as sent (all or nothing). What each entry came to is answered as a
transaction-response or batch-response entry (status, location, etag, lastModified) or an OperationOutcome
naming the field.

Pure: no store, no web framework. The HTTP status of each refusal lives here too (``STATUS_OF_KIND``), one
table for the REST routes and the Bundle entries.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from medtwin.record.errors import (
    InvalidFieldError,
    MissingFieldError,
    NotFhirError,
    RecordError,
    UnsupportedError,
)
from medtwin.record.fhir_spec import ID_PATTERN, RESOURCE_TYPES
from medtwin.record.prepare import one_match, parse_criteria

#: HTTP status (and reason) of each kind of refused unit; any other kind is invalid content (400).
STATUS_OF_KIND: dict[str, tuple[int, str]] = {
    "forbidden": (403, "Forbidden"), "not-found": (404, "Not Found"), "conflict": (409, "Conflict"),
    "precondition-failed": (412, "Precondition Failed"), "unresolved-reference": (400, "Bad Request"),
}
#: The OperationOutcome ``issue.code`` of each kind (FHIR IssueType).
ISSUE_OF_KIND = {"forbidden": "forbidden", "not-found": "not-found", "conflict": "conflict",
                 "precondition-failed": "conflict", "unsupported": "not-supported", "missing-field": "required",
                 "malformed-json": "structure", "not-fhir": "structure", "unknown-resource-type": "not-supported"}
_INVALID = (400, "Bad Request")
_WRITE_METHODS = ("POST", "PUT")
_ETAG = re.compile(r'^(?:W/)?"?(\d{1,18})"?$')


def status_of(error: RecordError) -> tuple[int, str]:
    return STATUS_OF_KIND.get(error.kind, _INVALID)


def operation_outcome(error: RecordError, *, entry_index: int | None = None) -> dict[str, Any]:
    """An OperationOutcome for a refused unit: the message, ``expression`` the field it names, ``location``
    the Bundle entry (0-based, as FHIRPath counts) when the unit was a Bundle."""
    issue: dict[str, Any] = {"severity": "error", "code": ISSUE_OF_KIND.get(error.kind, "invalid"),
                             "diagnostics": error.message}
    if error.field:
        issue["expression"] = [error.field]
    if entry_index is not None:
        issue["location"] = [f"Bundle.entry[{entry_index}]"]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def parse_etag(text: str, *, field_name: str = "If-Match") -> int:
    """``W/"3"`` (or ``"3"``, ``3``) -> 3; anything else is refused naming the header."""
    found = _ETAG.match(text.strip())
    if found is None:
        raise InvalidFieldError(f'{text!r} is not a version tag (W/"<version>")', field=field_name)
    return int(found.group(1))


def _resource_of(body: Any, resource_type: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise NotFhirError("expected a JSON object (a FHIR resource)")
    if resource_type not in RESOURCE_TYPES:
        raise InvalidFieldError(f"unknown resource type {resource_type!r}", field="resourceType")
    if body.get("resourceType") != resource_type:
        raise InvalidFieldError(f"resourceType {body.get('resourceType')!r} is not the {resource_type} the URL "
                                "names", field="resourceType")
    return dict(body)


def create_unit(resource_type: str, body: Any, *, if_none_exist: str | None = None) -> dict[str, Any]:
    """``POST [base]/Type``: a new resource under an id the server chooses (any id sent is ignored, as FHIR
    says); ``If-None-Exist`` (``identifier=system|value``) makes it conditional."""
    resource = _resource_of(body, resource_type)
    resource.pop("id", None)
    request: dict[str, Any] = {"method": "POST", "url": resource_type}
    if if_none_exist:
        request["ifNoneExist"] = if_none_exist
    return _transaction([{"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": resource, "request": request}])


def update_unit(resource_type: str, resource_id: str, body: Any) -> dict[str, Any]:
    """``PUT [base]/Type/id``: the resource's id must be the URL's (FHIR: 400 otherwise)."""
    resource = _resource_of(body, resource_type)
    if not ID_PATTERN.match(resource_id):
        raise InvalidFieldError(f"invalid id {resource_id!r}", field=f"{resource_type}.id")
    given = resource.setdefault("id", resource_id)
    if given != resource_id:
        raise InvalidFieldError(f"the resource's id {given!r} is not the id of the URL ({resource_id!r})",
                                field=f"{resource_type}.id")
    return _transaction([{"resource": resource, "request": {"method": "PUT", "url": f"{resource_type}/{resource_id}"}}])


def conditional_update_unit(resource_type: str, body: Any, criteria: str,
                            matches: list[tuple[str, int]]) -> tuple[dict[str, Any], dict[tuple[str, str], int]]:
    """``PUT [base]/Type?identifier=system|value``: the unit and its expected versions, given the (id, current
    version) of the stored resources that match ``criteria`` within the caller's reach (R4 conditional update:
    none, a create under a server id; one, an update of it, expected at the version found, so a change in
    between is a 412; several, refused with 412).

    Why a server id when there is no match, even with an id in the body: R4 (http.html#cond-update) says the
    server "performs a create interaction", and a create ignores an id sent (http.html#create). It is also the
    one answer that tells a restricted writer nothing (an id of their choosing may be held by a resource
    outside their reach) and the one a Bundle entry gets: no match leaves the entry as ``PUT
    Type?identifier=`` for the preparer, which gives it the id it derives, as here."""
    parse_criteria(resource_type, criteria, entry=0, field="url")  # only identifier=system|value
    refuse_several(resource_type, criteria, matches, field="url")
    given = body.get("id") if isinstance(body, dict) else None
    if not matches:
        entry = {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": _resource_of(body, resource_type),
                 "request": {"method": "PUT", "url": f"{resource_type}?{criteria}"}}
        return _transaction([entry]), {}
    found, version = matches[0]
    if given is not None and given != found:
        raise InvalidFieldError(f"the resource's id {given!r} is not the id of the one {criteria!r} matches "
                                f"({found!r})", field=f"{resource_type}.id")
    return update_unit(resource_type, found, body), {(resource_type, found): version}


def refuse_several(resource_type: str, criteria: str, matches: list[tuple[str, int]], *, field: str) -> None:
    """R4 conditional create and update: criteria matching several resources (within reach) are refused (412),
    by the preparer's rule (:func:`medtwin.record.prepare.one_match`)."""
    one_match(resource_type, criteria, [rid for rid, _ in matches], field=field)


def _transaction(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


@dataclass
class BundlePlan:
    """A batch or transaction Bundle sorted out: ``units`` the Bundles to import (a transaction: itself, one
    unit; a batch: one per entry), ``unit_entries`` the request entries each covers (0-based), ``expect``
    the versions each unit's updates expect (``ifMatch``), ``refused`` entries answered without importing
    (a batch's malformed entries, by 0-based index)."""

    kind: str
    size: int
    units: list[dict[str, Any]] = field(default_factory=list)
    unit_entries: list[list[int]] = field(default_factory=list)
    expect: list[dict[tuple[str, str], int]] = field(default_factory=list)
    refused: dict[int, RecordError] = field(default_factory=dict)


#: (type, criteria) -> (id, current version) of the stored resources matching, within the caller's reach.
Matcher = Callable[[str, str], list[tuple[str, int]]]


def plan_bundle(bundle: Any, matcher: Matcher | None = None) -> BundlePlan:
    """Sort out a ``POST [base]`` Bundle (``batch`` or ``transaction``). A transaction with a bad entry is
    refused whole (raised); a batch answers that entry and goes on with the others. ``matcher``: resolves
    each conditional update (``PUT Type?identifier=``) as :func:`conditional_update_unit` does."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise InvalidFieldError("POST to the base takes a Bundle", field="resourceType")
    kind = bundle.get("type")
    if kind not in ("batch", "transaction"):
        raise InvalidFieldError(f"Bundle.type {kind!r}: the base takes a batch or a transaction", field="Bundle.type")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise InvalidFieldError("Bundle.entry must be an array", field="Bundle.entry")
    plan = BundlePlan(kind=kind, size=len(entries))
    checked: list[tuple[int, dict[str, Any], dict[tuple[str, str], int]]] = []
    for index, entry in enumerate(entries):
        try:
            expect = _check_entry(entry, index)
            if matcher is not None:
                entry, expect = _resolve_conditional(entry, index, expect, matcher)
            checked.append((index, entry, expect))
        except RecordError as error:
            if kind == "transaction":
                raise
            plan.refused[index] = error
    if kind == "transaction":
        plan.units = [{**bundle, "entry": [e for _, e, _ in checked]}]
        plan.unit_entries = [[i for i, _, _ in checked]]
        plan.expect = [{k: v for _, _, expect in checked for k, v in expect.items()}]
    else:
        for index, entry, expect in checked:
            plan.units.append(_transaction([entry]))
            plan.unit_entries.append([index])
            plan.expect.append(expect)
    return plan


def _check_entry(entry: Any, index: int) -> dict[tuple[str, str], int]:
    """A write entry's shape; returns the version its ``ifMatch`` expects, keyed by (type, id)."""
    number = index + 1
    if not isinstance(entry, dict):
        raise NotFhirError("bundle entry is not an object", entry=number)
    request = entry.get("request")
    if not isinstance(request, dict):
        raise MissingFieldError("a batch/transaction entry needs a request", entry=number, field="Bundle.entry.request")
    method = request.get("method")
    if method not in _WRITE_METHODS:
        raise UnsupportedError(f"request.method {method!r}: entries here create (POST) or update (PUT)",
                               entry=number, field="Bundle.entry.request.method")
    if_match = request.get("ifMatch")
    if if_match is None:
        return {}
    url = request.get("url")
    parts = url.strip("/").split("/") if isinstance(url, str) else []
    if method != "PUT" or len(parts) != 2:
        raise UnsupportedError("ifMatch is supported on a PUT to Type/id", entry=number,
                               field="Bundle.entry.request.ifMatch")
    if not isinstance(if_match, str):
        raise InvalidFieldError("ifMatch must be a string", entry=number, field="Bundle.entry.request.ifMatch")
    try:
        version = parse_etag(if_match, field_name="Bundle.entry.request.ifMatch")
    except RecordError as error:
        raise error.located(entry=number) from None
    return {(parts[0], parts[1]): version}


def _resolve_conditional(entry: dict[str, Any], index: int, expect: dict[tuple[str, str], int],
                         matcher: Matcher) -> tuple[dict[str, Any], dict[tuple[str, str], int]]:
    """A conditional update entry with its one match made an update of ``Type/id`` (expected at the version
    found); several matches refuse it (412); none leave it to the preparer (a create). Conditional creates
    (``ifNoneExist``) and references are the preparer's (the same rule, :func:`~medtwin.record.prepare.one_match`)."""
    request, resource = entry["request"], entry.get("resource")
    url = request.get("url")
    if request.get("method") != "PUT" or not isinstance(url, str) or "?" not in url or not isinstance(resource, dict):
        return entry, expect
    rtype = url.split("?", 1)[0].strip("/")
    try:
        unit, found = conditional_update_unit(rtype, resource, url.split("?", 1)[1], matcher(rtype, url))
    except RecordError as error:
        raise error.located(entry=index + 1) from None
    if not found:
        return entry, expect
    resolved = unit["entry"][0]
    return {**entry, "resource": resolved["resource"], "request": {**request, "url": resolved["request"]["url"]}}, \
        {**found, **expect}


@dataclass(frozen=True)
class EntryResult:
    """What one request entry came to: the stored resource's type, id and version and whether it was
    ``created``, ``updated``, ``unchanged`` or ``matched`` (a conditional create that found one)."""

    resource_type: str
    id: str
    status: str
    version: int
    last_modified: str | None = None

    @property
    def http_status(self) -> str:
        return "201 Created" if self.status == "created" else "200 OK"

    @property
    def location(self) -> str:
        return f"{self.resource_type}/{self.id}/_history/{self.version}"

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'

    def response(self) -> dict[str, Any]:
        answer = {"status": self.http_status, "location": self.location, "etag": self.etag}
        if self.last_modified:
            answer["lastModified"] = self.last_modified
        return answer


def response_bundle(kind: str, answers: list[EntryResult | RecordError], *, base: str) -> dict[str, Any]:
    """The ``transaction-response`` / ``batch-response`` Bundle: one entry per request entry, in order
    (``base``: the server's FHIR base, for each fullUrl)."""
    entries: list[dict[str, Any]] = []
    for index, answer in enumerate(answers):
        if isinstance(answer, EntryResult):
            entries.append({"fullUrl": f"{base}/{answer.resource_type}/{answer.id}", "response": answer.response()})
        else:
            status, reason = status_of(answer)
            entries.append({"response": {"status": f"{status} {reason}",
                                         "outcome": operation_outcome(answer, entry_index=index)}})
    return {"resourceType": "Bundle", "type": f"{kind}-response", "entry": entries}


def resource_to_validate(body: Any, resource_type: str, resource_id: str | None = None) -> dict[str, Any]:
    """The resource a ``$validate`` call names: the body, or the ``resource`` parameter of a Parameters body;
    of the URL's type, and (instance level) with the URL's id."""
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        given = next((p.get("resource") for p in body.get("parameter") or []
                      if isinstance(p, dict) and p.get("name") == "resource"), None)
        if given is None:
            raise MissingFieldError("Parameters without a 'resource' parameter", field="Parameters.parameter")
        body = given
    resource = _resource_of(body, resource_type)
    if resource_id is not None and resource.get("id", resource_id) != resource_id:
        raise InvalidFieldError(f"the resource's id {resource.get('id')!r} is not the id of the URL ({resource_id!r})",
                                field=f"{resource_type}.id")
    return resource


def validation_outcome(error: RecordError | None) -> dict[str, Any]:
    """``$validate``'s answer: the first problem naming its field, or one information issue saying none."""
    if error is not None:
        return operation_outcome(error)
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "information", "code": "informational",
                                                           "diagnostics": "no problems found"}]}
