"""FHIR Bulk Data Access v2 ``$export`` at system (``/fhir/$export``), Patient (``/fhir/Patient/$export``) and
Group (``/fhir/Group/{id}/$export``) level: ``_type``, ``_since``, ``_outputFormat`` ndjson; asynchronous
(``Prefer: respond-async``: 202 with ``Content-Location``), status polling (202 with ``X-Progress``, 200 with
the manifest), one ndjson file per type, download, ``DELETE`` to cancel. The same tokens, role/scope policy
and audit as the other routes; a caller gets the patients in their reach only, and only their own jobs and
files (others' look missing). Jobs and files: ``store.bulk_export``."""

from __future__ import annotations

import threading

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse

from medtwin.api.deps import audit_context
from medtwin.api.fhir_support import FhirError, not_found, refuse_unknown
from medtwin.api.routers.fhir import common
from medtwin.api.routers.fhir.common import Access, Token, query_params
from medtwin.api.services import services_of
from medtwin.record.compartment import in_patient_compartment
from medtwin.security.scopes import scope_allows
from medtwin.store.bulk_export import BulkExports, ExportFile, ExportRequest, ordered_types
from medtwin.store.records import RecordRepository

router = APIRouter()
NDJSON = "application/fhir+ndjson"
OUTPUT_FORMATS = (NDJSON, "application/ndjson", "ndjson")
_PARAMS = frozenset({"_type", "_since", "_outputFormat"})
_lock = threading.Lock()


def _exports(request: Request) -> BulkExports:
    state = request.app.state
    with _lock:
        exports = getattr(state, "bulk_exports", None)
        if exports is None:
            services = services_of(request.app)
            exports = BulkExports(services.store, services.settings.data_dir / "bulk-export",
                                  services.security.clock)
            state.bulk_exports = exports
    return exports


@router.get("/$export")
async def export_system(request: Request, token: Token) -> Response:
    """Everything in the caller's reach: their patients' data and the shared resources."""
    return await run_in_threadpool(common.answer(lambda: _kick_off(request, token, "system")))


@router.get("/Patient/$export")
async def export_patients(request: Request, token: Token) -> Response:
    """The Patient-compartment data of every patient in the caller's reach."""
    return await run_in_threadpool(common.answer(lambda: _kick_off(request, token, "patient")))


@router.get("/Group/{group_id}/$export")
async def export_group(group_id: str, request: Request, token: Token) -> Response:
    """The Patient-compartment data of the group's members (``Group.member.entity``) in the caller's reach."""
    return await run_in_threadpool(common.answer(lambda: _kick_off(request, token, "group", group_id)))


def _kick_off(request: Request, token: str | None, level: str, group_id: str | None = None) -> Response:
    access = common.access(request, token, "Group" if level == "group" else "Patient", group_id, action="export")
    params = query_params(request)
    refuse_unknown(params, _PARAMS, "$export")
    if "respond-async" not in request.headers.get("prefer", ""):
        raise FhirError(400, "invalid", "$export runs asynchronously: send Prefer: respond-async",
                        expression="Prefer")
    output = params.get("_outputFormat", [NDJSON])[-1]
    if output not in OUTPUT_FORMATS:
        raise FhirError(400, "not-supported", f"_outputFormat {output!r}: only {NDJSON}", expression="_outputFormat")
    since = common.instant_param(params, "_since")
    with access.store.connect() as connection:
        records = RecordRepository(connection, access.store.codec)
        stored = set(records.count_by_type())
        patients = access.principal.patient_ids if group_id is None else _members(request, access, records, group_id)
    types = _types(access, params, stored, compartment_only=level != "system")
    job = _exports(request).start(ExportRequest(
        owner=access.principal.subject, request_url=str(request.url), types=ordered_types(types),
        patients=patients, unowned=level == "system", since=since))
    audit = audit_context(request)
    audit.detail.update({"level": level, "types": sorted(types), "job": job.id})
    return Response(status_code=202, headers={"Content-Location": f"{access.base}/$export-status/{job.id}"})


def _types(access: Access, params: dict[str, list[str]], stored: set[str], *, compartment_only: bool) -> set[str]:
    """The types to export: ``_type`` (each must be readable under the token's scopes), else every stored
    type the scopes let the caller read; a Patient or Group export only Patient-compartment types."""
    def fits(rtype: str) -> bool:
        return not compartment_only or rtype == "Patient" or in_patient_compartment(rtype)

    readable = {t for t in stored if fits(t) and scope_allows(access.principal.scopes, t, "r")}
    asked = common.type_list(access, params)
    if asked is None:
        return readable
    for rtype in sorted(asked):
        if not fits(rtype):
            raise FhirError(400, "invalid", f"_type {rtype!r} is not a resource type this export can hold",
                            expression="_type")
    return set(asked & stored)


def _members(request: Request, access: Access, records: RecordRepository, group_id: str) -> frozenset[str]:
    group = records.current("Group", group_id)
    if group is None or not access.sees(group):
        if group is not None:
            audit_context(request).denied = True
        raise not_found(f"Group/{group_id}")
    members = set()
    for member in group.resource().get("member") or []:
        reference = (member.get("entity") or {}).get("reference") if isinstance(member, dict) else None
        if isinstance(reference, str) and reference.startswith("Patient/"):
            members.add(reference.split("/", 1)[1])
    reach = access.principal.patient_ids
    return frozenset(members if reach is None else members & reach)


def _no_job(request: Request, job_id: str, what: str | None = None) -> FhirError:
    """404 for a job (or file) that is not the caller's: missing and another's alike; the audit record says
    which (another's is a denied attempt)."""
    if _exports(request).exists(job_id):
        audit_context(request).denied = True
    return not_found(what or f"export job {job_id}")


@router.get("/$export-status/{job_id}")
async def export_status(job_id: str, request: Request, token: Token) -> Response:
    def work() -> Response:
        access = common.access(request, token, "Patient", job_id, action="export")
        job = _exports(request).job(job_id, access.principal.subject)
        if job is None:
            raise _no_job(request, job_id)
        if job.status == "in-progress":
            return Response(status_code=202, headers={"X-Progress": job.progress, "Retry-After": "1"})
        if job.status == "failed":
            raise FhirError(500, "exception", f"the export failed: {job.error}")

        def url(exported: ExportFile) -> str:
            return f"{access.base}/$export-file/{job.id}/{exported.name}"
        return JSONResponse(job.manifest(url))
    return await run_in_threadpool(common.answer(work))


@router.delete("/$export-status/{job_id}")
async def export_cancel(job_id: str, request: Request, token: Token) -> Response:
    def work() -> Response:
        access = common.access(request, token, "Patient", job_id, action="export")
        if not _exports(request).cancel(job_id, access.principal.subject):
            raise _no_job(request, job_id)
        return Response(status_code=202)
    return await run_in_threadpool(common.answer(work))


@router.get("/$export-file/{job_id}/{name}")
async def export_file(job_id: str, name: str, request: Request, token: Token) -> Response:
    def work() -> Response:
        access = common.access(request, token, "Patient", job_id, action="export")
        exports = _exports(request)
        job = exports.job(job_id, access.principal.subject)
        chunks = None if job is None else exports.file(job, name)
        if chunks is None:
            raise _no_job(request, job_id, f"export file {job_id}/{name}")
        return StreamingResponse(chunks, media_type=NDJSON)
    return await run_in_threadpool(common.answer(work))

