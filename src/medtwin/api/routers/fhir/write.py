"""FHIR write side at ``/fhir``: create (``POST Type``, conditional with ``If-None-Exist``), update
(``PUT Type/id``, ``If-Match`` version checks; conditional ``PUT Type?identifier=``), batch and transaction (``POST`` of a Bundle to the base) and
``$validate``. Every write goes through the import's path (``twin.build.import_unit``: the one validator,
the write policy checking what is stored as well as what is written, versioned storage, the twin refresh)
as a unit built by ``record.fhir_bundle``; refusals are OperationOutcomes naming the field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from medtwin.api.deps import audit_context
from medtwin.api.fhir_support import FHIR_JSON, FhirError, fhir_response, with_meta
from medtwin.api.routers.fhir import common
from medtwin.api.routers.fhir.common import Access, Token
from medtwin.record import fhir_bundle
from medtwin.record.errors import RecordError
from medtwin.record.exactjson import loads_or_error
from medtwin.record.fhir_bundle import EntryResult
from medtwin.record.fhirtime import format_datetime
from medtwin.record.prepare import parse_criteria, prepare
from medtwin.record.sources import RawUnit
from medtwin.security.write_policy import ReachLimitedRecords
from medtwin.store.records import RecordRepository
from medtwin.twin.build import UnitReport, import_unit

router = APIRouter()
_JSON_TYPES = (FHIR_JSON, "application/json")


def _refusal(error: RecordError, *, bundle: bool = False) -> Response:
    status, _ = fhir_bundle.status_of(error)
    index = error.entry - 1 if bundle and error.entry else None
    return fhir_response(fhir_bundle.operation_outcome(error, entry_index=index), status=status)


async def _body(request: Request) -> Any:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in _JSON_TYPES:
        raise FhirError(415, "not-supported", f"send {' or '.join(_JSON_TYPES)}, not {media or 'nothing'!r}",
                        expression="Content-Type")
    content = await request.body()
    if not content.strip():
        raise FhirError(400, "required", "empty request body", expression="body")
    return content


def _parsed(content: bytes) -> Any:
    return loads_or_error(content, source="request")


def _run(work: Callable[[], Response]) -> Callable[[], Response]:
    """FHIR errors and refused units as OperationOutcomes."""
    def run() -> Response:
        try:
            return common.answer(work)()
        except RecordError as error:
            return _refusal(error)
    return run


def _write(access: Access, request: Request, unit: dict[str, Any],
           expect: dict[tuple[str, str], int] | None = None) -> UnitReport:
    report = import_unit(access.store, RawUnit("request", "json", unit), actor=access.principal.subject,
                         writer=access.writer, expect=expect)
    if report.error is not None:
        audit_context(request).detail["refused"] = report.error.kind
        raise report.error
    return report


def _written(access: Access, request: Request, report: UnitReport) -> Response:
    """A create's or update's answer: the stored resource, with Location, ETag and Last-Modified (or only
    the headers with ``Prefer: return=minimal``)."""
    rtype, rid, outcome = report.entries[1]
    return _stored_answer(access, request, rtype, rid, outcome.status)


def _stored_answer(access: Access, request: Request, rtype: str, rid: str, status_text: str) -> Response:
    """:func:`_written` for the resource ``rtype/rid`` that the write came to (``status_text``: created,
    updated, unchanged or matched)."""
    with access.store.connect() as connection:
        version = RecordRepository(connection, access.store.codec).current(rtype, rid)
    assert version is not None  # just written (or matched) in this request
    audit = audit_context(request)
    audit.resource_id, audit.patient_id = rid, version.patient_id
    result = EntryResult(rtype, rid, status_text, version.version)
    resource = with_meta(version)
    headers = {"Location": f"{access.base}/{result.location}", "ETag": result.etag,
               "Last-Modified": resource["meta"]["lastUpdated"]}
    status = 201 if status_text == "created" else 200
    if "return=minimal" in request.headers.get("prefer", ""):
        return Response(status_code=status, headers=headers)
    return fhir_response(resource, status=status, headers=headers)


@router.post("/{resource_type}/$validate")
async def validate_type(resource_type: str, request: Request, token: Token) -> Response:
    """The resource checked as an import would check it (datatypes, required elements, references against
    what the caller can see), nothing stored: an OperationOutcome, 200 whether or not it is valid."""
    return await _validate(resource_type, None, request, token)


@router.post("/{resource_type}/{resource_id}/$validate")
async def validate_instance(resource_type: str, resource_id: str, request: Request, token: Token) -> Response:
    return await _validate(resource_type, resource_id, request, token)


async def _validate(resource_type: str, resource_id: str | None, request: Request, token: str | None) -> Response:
    content = await request.body()

    def work() -> Response:
        access = common.access(request, token, resource_type, resource_id)
        if not content.strip():
            raise FhirError(400, "required", "empty request body", expression="body")
        error: RecordError | None = None
        try:
            resource = fhir_bundle.resource_to_validate(_parsed(content), resource_type, resource_id)
            with access.store.connect() as connection:
                records = RecordRepository(connection, access.store.codec)
                writer = access.writer
                seen = records if writer.patient_ids is None else ReachLimitedRecords(records, writer,
                                                                                      records.patients_of)
                prepare(resource, source="request", existing=seen)
        except RecordError as found:
            error = found
        audit_context(request).detail["valid"] = error is None
        return fhir_response(fhir_bundle.validation_outcome(error))
    return await run_in_threadpool(common.answer(work))


@router.post("/{resource_type}")
async def create(resource_type: str, request: Request, token: Token) -> Response:
    """Create under a server-chosen id; ``If-None-Exist: identifier=system|value`` answers the match (200)
    instead when one exists within the caller's reach (several: 412)."""
    def work(content: bytes) -> Response:
        access = common.access(request, token, resource_type, action="write")
        if_none_exist = request.headers.get("if-none-exist")
        body = _parsed(content)
        if if_none_exist:  # several within reach: the import's 412, named by the header
            matches = _matcher(access)(resource_type, if_none_exist)
            fhir_bundle.refuse_several(resource_type, if_none_exist, matches, field="If-None-Exist")
        unit = fhir_bundle.create_unit(resource_type, body, if_none_exist=if_none_exist)
        return _written(access, request, _write(access, request, unit))
    return await _with_body(request, work)


@router.put("/{resource_type}/{resource_id}")
async def update(resource_type: str, resource_id: str, request: Request, token: Token) -> Response:
    """Replace a resource (a new version; every earlier one stays readable). ``If-Match: W/"n"``: only if
    version n is the current one (412 otherwise). An update that takes it back to an earlier version's
    content is what a PUT asks for; an older ``meta.lastUpdated`` than stored is a conflict (409)."""
    def work(content: bytes) -> Response:
        access = common.access(request, token, resource_type, resource_id, action="write")
        unit = fhir_bundle.update_unit(resource_type, resource_id, _parsed(content))
        if_match = request.headers.get("if-match")
        expect = {(resource_type, resource_id): fhir_bundle.parse_etag(if_match)} if if_match else None
        return _written(access, request, _write(access, request, unit, expect))
    return await _with_body(request, work)


def _matcher(access: Access) -> fhir_bundle.Matcher:
    """The stored resources a conditional update's criteria match within the caller's reach (a shared type's
    are everyone's): (id, current version); none for criteria it cannot take (whoever parses them next names
    the field)."""
    def matches(resource_type: str, criteria: str) -> list[tuple[str, int]]:
        try:
            system, value = parse_criteria(resource_type, criteria, entry=0, field="url")
        except RecordError:
            return []
        with access.store.connect() as connection:
            records = RecordRepository(connection, access.store.codec)
            seen = ReachLimitedRecords(records, access.writer, records.patients_of)  # the import's view
            return [(rid, version) for rid, _, version in seen.matches_by_identifier(resource_type, system, value)]
    return matches


@router.put("/{resource_type}")
async def conditional_update(resource_type: str, request: Request, token: Token) -> Response:
    """``PUT Type?identifier=system|value`` (R4 conditional update): no match within the caller's reach, a
    create; one, an update of it; several, 412. A match outside reach is no match, as for every write."""
    def work(content: bytes) -> Response:
        access = common.access(request, token, resource_type, action="write")
        criteria = request.url.query
        if not criteria:
            raise FhirError(400, "required", f"PUT {resource_type} needs an id (PUT {resource_type}/<id>) or "
                            "search criteria (?identifier=system|value)", expression="url")
        matches = _matcher(access)(resource_type, criteria)
        unit, expect = fhir_bundle.conditional_update_unit(resource_type, _parsed(content), criteria, matches)
        return _written(access, request, _write(access, request, unit, expect or None))
    return await _with_body(request, work)


@router.api_route("/{resource_type}/{resource_id}", methods=["DELETE", "PATCH"])
async def not_supported(resource_type: str, resource_id: str, request: Request) -> Response:
    """Delete and patch are not built (the CapabilityStatement does not list them): an OperationOutcome."""
    return FhirError(405, "not-supported", f"{request.method} is not supported here (see /fhir/metadata): "
                     "a resource is replaced with PUT, and every version stays readable").response()


async def _with_body(request: Request, work: Callable[[bytes], Response]) -> Response:
    try:
        content = await _body(request)
    except FhirError as error:
        return error.response()
    return await run_in_threadpool(_run(lambda: work(content)))


async def base_bundle(request: Request, token: Token) -> Response:
    """``POST [base]`` with a batch or transaction Bundle: a transaction is one unit (all or nothing, its
    ``urn:uuid:`` references rewritten to the ids given); a batch is one unit per entry. Answered with a
    transaction-response / batch-response Bundle: status, location and etag per entry."""
    def work(content: bytes) -> Response:
        access = common.access(request, token, "Bundle", action="write")
        try:
            plan = fhir_bundle.plan_bundle(_parsed(content), _matcher(access))
        except RecordError as error:
            return _refusal(error, bundle=True)
        audit_context(request).detail["bundle"] = {"type": plan.kind, "entries": plan.size}
        answers: list[EntryResult | RecordError | None] = [None] * plan.size
        for index, refused in plan.refused.items():
            answers[index] = refused
        for unit, indices, expect in zip(plan.units, plan.unit_entries, plan.expect, strict=True):
            report = import_unit(access.store, RawUnit("request", "json", unit), actor=access.principal.subject,
                                 writer=access.writer, expect=expect or None)
            if report.error is not None and plan.kind == "transaction":
                return _refusal(report.error, bundle=True)
            for number, index in enumerate(indices, start=1):
                answers[index] = report.error if report.error is not None else _entry_result(report, number)
        done = [a for a in answers if a is not None]
        return fhir_response(fhir_bundle.response_bundle(plan.kind, done, base=access.base))
    return await _with_body(request, work)


def _entry_result(report: UnitReport, number: int) -> EntryResult:
    rtype, rid, outcome = report.entries[number]
    stored_now = report.stored_at if outcome.status in ("created", "updated") else None
    return EntryResult(rtype, rid, outcome.status, outcome.version,
                       None if stored_now is None else format_datetime(stored_now))
