"""Importing FHIR data over HTTP: a Bundle, a single resource, or Bulk FHIR ndjson."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from medtwin.api.deps import Principal, StoreDep, guard
from medtwin.api.problems import ProblemError, problem_response, record_status
from medtwin.api.schemas import ImportResultPublic
from medtwin.record.sources import unit_from_bytes
from medtwin.security.write_policy import Writer
from medtwin.twin.build import import_units

router = APIRouter(prefix="/record", tags=["record"])

JSON_TYPES = ("application/fhir+json", "application/json")
NDJSON_TYPES = ("application/fhir+ndjson", "application/x-ndjson", "application/ndjson")


@router.post(
    "",
    response_model=ImportResultPublic,
    status_code=201,
    summary="Import a FHIR Bundle, a resource, or ndjson (all or nothing; idempotent)",
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/fhir+json": {"schema": {"type": "object"}},
        "application/json": {"schema": {"type": "object"}},
        "application/fhir+ndjson": {"schema": {"type": "string"}},
    }}},
    responses={200: {"description": "Nothing new: every resource was already stored"},
               403: {"description": "The caller may not write a resource of the unit (role, scope, a shared "
                                    "resource, a move between patients); nothing stored"},
               404: {"description": "An entry updates a resource the caller cannot reach (missing or outside "
                                    "their patients alike); nothing stored"},
               422: {"description": "Invalid FHIR input (problem+json naming entry and field)"}},
)
async def import_record(
    request: Request,
    store: StoreDep,
    principal: Annotated[Principal, Depends(guard("write", "Bundle"))],
) -> JSONResponse:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in JSON_TYPES + NDJSON_TYPES:
        raise ProblemError(415, "Unsupported media type",
                           f"send {', '.join(JSON_TYPES + NDJSON_TYPES)}, not {media or 'nothing'!r}",
                           kind="unsupported-media-type", field="content-type")
    body = await request.body()
    if not body.strip():
        raise ProblemError(422, "Invalid FHIR input", "empty request body", kind="empty", field="body")
    raw = unit_from_bytes(body, source="request", ndjson=media in NDJSON_TYPES)

    writer = Writer(principal.role, principal.patient_ids, principal.scopes)
    report = await run_in_threadpool(import_units, store, [raw], actor=principal.subject, writer=writer)
    unit = report.units[0]
    if unit.error is not None:
        err = unit.error
        status, title = record_status(err)
        return problem_response(status, title, err.describe(), kind=err.kind, instance=request.url.path,
                                source=err.source, entry=err.entry, field=err.field)
    status = 201 if unit.created or unit.updated else 200
    return JSONResponse(ImportResultPublic.model_validate(report.as_dict()).model_dump(mode="json"),
                        status_code=status)
