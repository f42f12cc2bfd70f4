"""FHIR read side at ``/fhir``: capability statement, read, vread, instance and type history, search,
``Patient/$everything``. Every call is authorised for the resource type it names, and every resource against
the patient it is stored under; one outside the caller's reach answers exactly as a missing one (404)."""

from __future__ import annotations

from dataclasses import replace

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from medtwin.api.deps import audit_context
from medtwin.api.fhir_support import (
    MAX_COUNT,
    SearchPlan,
    capability_statement,
    date_conditions,
    fhir_response,
    history_entry,
    not_found,
    page_of,
    paged_bundle,
    refuse_unknown,
    search_entry,
    search_query,
    undated_outcome,
    with_meta,
)
from medtwin.api.routers.fhir import common
from medtwin.api.routers.fhir.common import Access, Token, fhir_base, query_params
from medtwin.api.services import services_of
from medtwin.record import fhir_search
from medtwin.record.fhir_spec import RESOURCE_TYPES
from medtwin.security.scopes import scope_allows
from medtwin.store.records import EverythingScope, RecordRepository, StoredVersion

router = APIRouter()


def _visible(access: Access, request: Request, version: StoredVersion | None, what: str) -> StoredVersion:
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
    return fhir_response(capability_statement(fhir_base(request), types, now=services_of(request.app).clock()))


@router.get("/{resource_type}/_history")
async def type_history(resource_type: str, request: Request, token: Token) -> Response:
    """Every version of every resource of the type the caller may see, newest first (each version is shown
    under the patient it was stored under then)."""
    def work() -> Response:
        access = common.access(request, token, resource_type)
        params = query_params(request)
        refuse_unknown(params, {"_count", "_offset", "_format"}, "history")
        page = page_of(params)
        with access.store.connect() as connection:
            total, found = RecordRepository(connection, access.store.codec).type_history(
                resource_type, visible=access.principal.patient_ids, count=page.count, offset=page.offset)
        entries = [history_entry(access.base, v, first=v.version == 1) for v in found]
        return fhir_response(paged_bundle("history", access.base, f"{resource_type}/_history", params, page,
                                          total, entries, now=access.clock()))
    return await run_in_threadpool(common.answer(work))


@router.get("/Patient/{resource_id}/$everything")
async def everything(resource_id: str, request: Request, token: Token) -> Response:
    """A patient's record and what it references (``search.mode`` include), paged with ``_count``; narrowed by
    the R4 parameters ``_type``, ``_since`` and the care dates ``start``/``end`` (``EverythingScope``). With a
    care range, resources without a care date are kept and the first page says how many (an ``outcome``
    entry): they cannot be shown to fall outside it."""
    def work() -> Response:
        access = common.access(request, token, "Patient", resource_id)
        params = query_params(request)
        refuse_unknown(params, {"_count", "_offset", "_format", "_type", "_since", "start", "end"}, "$everything")
        page = page_of(params, default=MAX_COUNT)  # a record in few pages: each page gathers it
        scope = _everything_scope(access, params)
        if not access.principal.can_see(resource_id):
            audit_context(request).denied = True
            raise not_found(f"Patient/{resource_id}")
        with access.store.connect() as connection:
            repo = RecordRepository(connection, access.store.codec)
            if not repo.exists("Patient", resource_id):
                raise not_found(f"Patient/{resource_id}")
            matched, included = repo.everything(resource_id, scope)
            undated = repo.count_undated(resource_id, scope) if scope.dated else 0
        audit_context(request).patient_id = resource_id
        # the export's order (the Patient first, then by type and id); another patient's resource that this
        # record references is left out unless the caller may see it. Only the page is serialised.
        shown = [(v, "match") for v in matched if access.reads(v)] + [(v, "include") for v in included
                                                                       if access.reads(v)]
        shown.sort(key=lambda item: (item[0].resource_type != "Patient", item[0].resource_type, item[0].id))
        entries = [search_entry(access.base, v, mode=mode) for v, mode in shown[page.offset:page.offset + page.count]]
        if undated and page.offset == 0:
            entries.insert(0, undated_outcome(undated))
        paged = paged_bundle("searchset", access.base, f"Patient/{resource_id}/$everything", params, page,
                             len(shown), entries, now=access.clock())
        return fhir_response(paged)
    return await run_in_threadpool(common.answer(work))


def _everything_scope(access: Access, params: dict[str, list[str]]) -> EverythingScope:
    """``_type`` (each a type the token may read: 403 otherwise; without it, the types the token may read),
    ``_since`` (an instant), ``start``/``end``."""
    types = common.type_list(access, params)
    if types is None:
        readable = frozenset(t for t in RESOURCE_TYPES if scope_allows(access.principal.scopes, t, "r"))
        types = None if readable == RESOURCE_TYPES else readable
    return EverythingScope(types=types, since=common.instant_param(params, "_since"),
                           start=date_conditions("start", [f"ge{v}" for v in params.get("start", [])[-1:]]),
                           end=date_conditions("end", [f"le{v}" for v in params.get("end", [])[-1:]]))


@router.get("/{resource_type}/{resource_id}")
async def read(resource_type: str, resource_id: str, request: Request, token: Token) -> Response:
    def work() -> Response:
        access = common.access(request, token, resource_type, resource_id)
        with access.store.connect() as connection:
            current = RecordRepository(connection, access.store.codec).current(resource_type, resource_id)
        version = _visible(access, request, current, f"{resource_type}/{resource_id}")
        return fhir_response(with_meta(version), headers={"ETag": f'W/"{version.version}"'})
    return await run_in_threadpool(common.answer(work))


@router.get("/{resource_type}/{resource_id}/_history/{version_id}")
async def vread(resource_type: str, resource_id: str, version_id: str, request: Request, token: Token) -> Response:
    def work() -> Response:
        access = common.access(request, token, resource_type, resource_id)
        with access.store.connect() as connection:
            history = RecordRepository(connection, access.store.codec).history(resource_type, resource_id)
        what = f"{resource_type}/{resource_id}/_history/{version_id}"
        if history:  # reach is decided on the current version: an older one does not widen it
            _visible(access, request, history[0], what)
        found = next((v for v in history if str(v.version) == version_id), None)
        version = _visible(access, request, found, what)
        return fhir_response(with_meta(version), headers={"ETag": f'W/"{version.version}"'})
    return await run_in_threadpool(common.answer(work))


@router.get("/{resource_type}/{resource_id}/_history")
async def instance_history(resource_type: str, resource_id: str, request: Request, token: Token) -> Response:
    def work() -> Response:
        access = common.access(request, token, resource_type, resource_id)
        params = query_params(request)
        page = page_of(params)
        with access.store.connect() as connection:
            history = RecordRepository(connection, access.store.codec).history(resource_type, resource_id)
        _visible(access, request, history[0] if history else None, f"{resource_type}/{resource_id}")
        oldest = history[-1].version if history else 0
        shown = history[page.offset:page.offset + page.count]
        entries = [history_entry(access.base, v, first=v.version == oldest) for v in shown]
        return fhir_response(paged_bundle("history", access.base, f"{resource_type}/{resource_id}/_history",
                                          params, page, len(history), entries, now=access.clock()))
    return await run_in_threadpool(common.answer(work))


def _included(access: Access, repo: RecordRepository, found: list[StoredVersion],
              plan: SearchPlan) -> list[StoredVersion]:
    """What ``_include``/``_revinclude`` add to a page: the resources it references and (a Patient page) the
    resources of its patients, within the caller's reach, each once and not already a match."""
    if not plan.includes and not plan.revincludes:
        return []
    seen = {(v.resource_type, v.id) for v in found}
    keys = [k for k in fhir_search.included_keys((v.resource() for v in found), plan.includes) if k not in seen]
    out = [v for v in repo.versions_of(keys[:fhir_search.MAX_INCLUDED]) if access.reads(v)]
    patients = [v.id for v in found if v.resource_type == "Patient" and access.sees(v)]
    for include in plan.revincludes:
        if patients and scope_allows(access.principal.scopes, include.source_type, "r"):
            out += [v for v in repo.of_patients(include.source_type, patients, limit=fhir_search.MAX_INCLUDED)
                    if (v.resource_type, v.id) not in seen]
    unique = {(v.resource_type, v.id): v for v in out}
    return list(unique.values())[:fhir_search.MAX_INCLUDED]


@router.get("/{resource_type}")
async def search(resource_type: str, request: Request, token: Token) -> Response:
    def work() -> Response:
        access = common.access(request, token, resource_type)
        params = query_params(request)
        page = page_of(params)
        plan = search_query(resource_type, params, page)
        query = plan.query
        with access.store.connect() as connection:
            repo = RecordRepository(connection, access.store.codec)
            if plan.patient is not None:
                resolved = repo.resolve_patient(plan.patient) if not repo.exists("Patient", plan.patient) \
                    else plan.patient
                query = replace(query, patient=resolved or plan.patient)
            if access.principal.patient_ids is not None:
                query = replace(query, visible=access.principal.patient_ids)
            total, found = repo.search(resource_type, query)
            included = _included(access, repo, found, plan)
        audit_context(request).detail["results"] = total
        entries = [search_entry(access.base, v) for v in found]
        entries += [search_entry(access.base, v, mode="include") for v in included]
        if len(included) >= fhir_search.MAX_INCLUDED:
            entries.append({"resource": {"resourceType": "OperationOutcome", "issue": [{
                "severity": "warning", "code": "too-costly", "diagnostics": f"_include/_revinclude stopped at "
                f"{fhir_search.MAX_INCLUDED} resources: page with a smaller _count for the rest"}]},
                "search": {"mode": "outcome"}})
        return fhir_response(paged_bundle("searchset", access.base, resource_type, params, page, total, entries,
                                          now=access.clock()))
    return await run_in_threadpool(common.answer(work))

