"""FHIR R4 REST (read side) at ``/fhir``: capability statement, read, vread, instance and type history,
search. Same bearer tokens, per-patient reach and audit as ``/api/v1``: every call is authorised for the
resource type it names, and every resource against the patient it is stored under; one outside the
caller's reach answers exactly as a missing one (404). Errors are OperationOutcomes
(``api.fhir_support``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from medtwin.api.deps import audit_context, authenticate, oauth2_scheme
from medtwin.api.fhir_support import (
    FhirError,
    capability_statement,
    check_type,
    fhir_response,
    history_entry,
    not_found,
    page_of,
    paged_bundle,
    search_entry,
    search_query,
    with_meta,
)
from medtwin.api.problems import ProblemError
from medtwin.api.services import services_of
from medtwin.security.policy import Principal, decide
from medtwin.store.database import Store
from medtwin.store.records import RecordRepository, StoredVersion
from medtwin.twin.build import export_patient

# Not in the OpenAPI document: a FHIR server describes itself by its CapabilityStatement (/fhir/metadata),
# and its answers are FHIR resources, not the problem+json the OpenAPI document promises for /api/v1.
router = APIRouter(prefix="/fhir", tags=["fhir"], include_in_schema=False)

Token = Annotated[str | None, Depends(oauth2_scheme)]


@dataclass(frozen=True)
class _Access:
    principal: Principal
    store: Store
    base: str

    def sees(self, version: StoredVersion) -> bool:
        return version.patient_id is None or self.principal.can_see(version.patient_id)


def _access(request: Request, token: str | None, resource_type: str, resource_id: str | None = None) -> _Access:
    """Authenticate and authorise a read of ``resource_type`` (the same decision as the /api/v1 guard), and
    fill in the audit record."""
    check_type(resource_type)
    audit = audit_context(request)
    audit.action, audit.resource_type, audit.resource_id = "read", resource_type, resource_id
    try:
        principal = authenticate(request, token)
    except ProblemError as error:
        audit.denied = True
        raise FhirError(401, "login", error.detail or "an access token is required") from None
    audit.actor, audit.role = principal.subject, principal.role
    decision = decide(principal, "read", resource_type, "GET", None)
    if not decision.allowed:
        audit.denied = True
        audit.detail["reason"] = decision.reason
        raise FhirError(403, "forbidden", decision.reason)
    base = str(request.base_url).rstrip("/") + "/fhir"
    return _Access(principal, services_of(request.app).store, base)


def _answer(work: Callable[[], Response]) -> Callable[[], Response]:
    def run() -> Response:
        try:
            return work()
        except FhirError as error:
            return error.response()
    return run


def _visible(access: _Access, request: Request, version: StoredVersion | None, what: str) -> StoredVersion:
    if version is None or not access.sees(version):
        if version is not None:
            audit_context(request).denied = True
        raise not_found(what)
    audit_context(request).patient_id = version.patient_id
    return version


@router.get("/metadata")
async def metadata(request: Request) -> Response:
    """The CapabilityStatement (public, as FHIR servers publish it): the resource types stored here."""
    store = services_of(request.app).store

    def stored_types() -> list[str]:
        with store.connect() as connection:
            return sorted(set(RecordRepository(connection, store.codec).count_by_type()) | {"Patient", "Observation"})

    types = await run_in_threadpool(stored_types)
    return fhir_response(capability_statement(str(request.base_url).rstrip("/") + "/fhir", types))


@router.get("/{resource_type}/_history")
async def type_history(resource_type: str, request: Request, token: Token) -> Response:
    """Every version of every resource of the type the caller may see, newest first (each version is shown
    under the patient it was stored under then)."""
    def work() -> Response:
        access = _access(request, token, resource_type)
        params = _params(request)
        unknown = sorted(set(params) - {"_count", "_offset", "_format"})
        if unknown:
            raise FhirError(400, "not-supported", f"history parameter(s) not supported: {', '.join(unknown)}",
                            expression=unknown[0])
        page = page_of(params)
        with access.store.connect() as connection:
            total, found = RecordRepository(connection, access.store.codec).type_history(
                resource_type, visible=access.principal.patient_ids, count=page.count, offset=page.offset)
        entries = [history_entry(access.base, v, first=v.version == 1) for v in found]
        return fhir_response(paged_bundle("history", access.base, f"{resource_type}/_history", params, page,
                                          total, entries))
    return await run_in_threadpool(_answer(work))


@router.get("/Patient/{resource_id}/$everything")
async def everything(resource_id: str, request: Request, token: Token) -> Response:
    """A patient's record and what it references (``search.mode`` include), paged with ``_count``."""
    def work() -> Response:
        access = _access(request, token, "Patient", resource_id)
        params = _params(request)
        unknown = sorted(set(params) - {"_count", "_offset", "_format"})
        if unknown:
            raise FhirError(400, "not-supported", f"$everything parameter(s) not supported: {', '.join(unknown)}",
                            expression=unknown[0])
        page = page_of(params)
        if not access.principal.can_see(resource_id):
            audit_context(request).denied = True
            raise not_found(f"Patient/{resource_id}")
        bundle = export_patient(access.store, resource_id, base_url=access.base)
        if bundle is None:
            raise not_found(f"Patient/{resource_id}")
        audit_context(request).patient_id = resource_id
        entries = bundle["entry"]
        paged = paged_bundle("searchset", access.base, f"Patient/{resource_id}/$everything", params, page,
                             len(entries), entries[page.offset:page.offset + page.count])
        return fhir_response(paged)
    return await run_in_threadpool(_answer(work))


@router.get("/{resource_type}/{resource_id}")
async def read(resource_type: str, resource_id: str, request: Request, token: Token) -> Response:
    def work() -> Response:
        access = _access(request, token, resource_type, resource_id)
        with access.store.connect() as connection:
            current = RecordRepository(connection, access.store.codec).current(resource_type, resource_id)
        version = _visible(access, request, current, f"{resource_type}/{resource_id}")
        return fhir_response(with_meta(version), headers={"ETag": f'W/"{version.version}"'})
    return await run_in_threadpool(_answer(work))


@router.get("/{resource_type}/{resource_id}/_history/{version_id}")
async def vread(resource_type: str, resource_id: str, version_id: str, request: Request, token: Token) -> Response:
    def work() -> Response:
        access = _access(request, token, resource_type, resource_id)
        with access.store.connect() as connection:
            history = RecordRepository(connection, access.store.codec).history(resource_type, resource_id)
        what = f"{resource_type}/{resource_id}/_history/{version_id}"
        if history:  # reach is decided on the current version: an older one does not widen it
            _visible(access, request, history[0], what)
        found = next((v for v in history if str(v.version) == version_id), None)
        version = _visible(access, request, found, what)
        return fhir_response(with_meta(version), headers={"ETag": f'W/"{version.version}"'})
    return await run_in_threadpool(_answer(work))


@router.get("/{resource_type}/{resource_id}/_history")
async def instance_history(resource_type: str, resource_id: str, request: Request, token: Token) -> Response:
    def work() -> Response:
        access = _access(request, token, resource_type, resource_id)
        params = _params(request)
        page = page_of(params)
        with access.store.connect() as connection:
            history = RecordRepository(connection, access.store.codec).history(resource_type, resource_id)
        _visible(access, request, history[0] if history else None, f"{resource_type}/{resource_id}")
        oldest = history[-1].version if history else 0
        shown = history[page.offset:page.offset + page.count]
        entries = [history_entry(access.base, v, first=v.version == oldest) for v in shown]
        return fhir_response(paged_bundle("history", access.base, f"{resource_type}/{resource_id}/_history",
                                          params, page, len(history), entries))
    return await run_in_threadpool(_answer(work))


@router.get("/{resource_type}")
async def search(resource_type: str, request: Request, token: Token) -> Response:
    def work() -> Response:
        access = _access(request, token, resource_type)
        params = _params(request)
        page = page_of(params)
        query, patient = search_query(resource_type, params, page)
        with access.store.connect() as connection:
            repo = RecordRepository(connection, access.store.codec)
            if patient is not None:
                resolved = repo.resolve_patient(patient) if not repo.exists("Patient", patient) else patient
                query = replace(query, patient=resolved or patient)
            if access.principal.patient_ids is not None:
                query = replace(query, visible=access.principal.patient_ids)
            total, found = repo.search(resource_type, query)
        audit_context(request).detail["results"] = total
        entries = [search_entry(access.base, v) for v in found]
        return fhir_response(paged_bundle("searchset", access.base, resource_type, params, page, total, entries))
    return await run_in_threadpool(_answer(work))


def _params(request: Request) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        params.setdefault(key, []).append(value)
    return params
