"""Security administration over HTTP: research consent, the de-identified research export, and the audit
trail (chain verification and FHIR AuditEvent export). The same services as ``medtwin consent``,
``medtwin research export`` and ``medtwin audit``; every request is audited by the middleware."""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from medtwin.api.deps import (
    Principal,
    SettingsDep,
    StoreDep,
    audit_context,
    guard,
    security_context,
    visible_patient,
)
from medtwin.api.problems import ProblemError
from medtwin.security import audit, consent
from medtwin.security.accounts import utcnow
from medtwin.security.consent import ConsentError
from medtwin.security.deid import Deidentifier, DeidError, export_research
from medtwin.store.database import Store
from medtwin.store.records import RecordRepository

router = APIRouter(tags=["security"])

FHIR_JSON = "application/fhir+json"
ZIP = "application/zip"


class FhirJSONResponse(JSONResponse):
    media_type = FHIR_JSON


# --- models ------------------------------------------------------------------------------------------
class ConsentDecisionPublic(BaseModel):
    decision: Literal["permit", "deny"]
    recorded_at: datetime
    recorded_by: str


class ConsentPublic(BaseModel):
    patient_id: str
    purpose: Literal["research"]
    decision: Literal["permit", "deny"] | None = Field(
        description="The newest decision; null: never asked (treated as no consent)")
    history: list[ConsentDecisionPublic] = Field(description="Every decision, oldest first")


class ConsentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["permit", "deny"] = Field(description="permit: opt in to research use; deny: withdraw")
    purpose: Literal["research"] = "research"


class ResearchExportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    date_mode: Literal["year", "shift"] | None = Field(
        default=None, description="year: Safe Harbor (year only); shift: per-patient secret offset. "
        "Default: the server's MEDTWIN_DEID_DATE_MODE")


class AuditVerificationPublic(BaseModel):
    ok: bool
    count: int = Field(description="Records in the chain")
    head_seq: int
    head_hash: str = Field(description="Keep checkpoints (`medtwin audit checkpoint`) to detect truncation")
    first_bad_seq: int | None
    problem: Literal["modified", "deleted", "inserted", "reordered", "unverifiable"] | None
    message: str
    unkeyed: int = Field(0, description="Records from before the chain was keyed (plain SHA-256)")


class BundleLink(BaseModel):
    relation: str
    url: str


class BundleEntry(BaseModel):
    fullUrl: str
    resource: dict[str, Any] = Field(description="A FHIR R4 AuditEvent")


class AuditEventBundle(BaseModel):
    resourceType: Literal["Bundle"] = "Bundle"
    type: Literal["searchset"] = "searchset"
    total: int = Field(description="Events in this page")
    link: list[BundleLink]
    entry: list[BundleEntry]


# --- helpers -----------------------------------------------------------------------------------------
def _existing_patient(store: Store, principal: Principal, raw: str) -> str:
    """The stored id of ``raw`` (id or MRN), or 404 when it does not exist or is out of the caller's reach."""
    return visible_patient(store, principal, raw)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)  # SQLite drops the zone (UTC)


def _consent_view(store: Store, patient_id: str) -> ConsentPublic:
    with store.connect() as connection:
        rows = consent.history(connection, patient_id)
    return ConsentPublic(
        patient_id=patient_id, purpose="research", decision=rows[-1].decision if rows else None,  # type: ignore[arg-type]
        history=[ConsentDecisionPublic(decision=r.decision, recorded_at=_aware(r.recorded_at),  # type: ignore[arg-type]
                                       recorded_by=r.recorded_by) for r in rows])


# --- consent -----------------------------------------------------------------------------------------
@router.get("/patients/{patient_id}/consent", response_model=ConsentPublic,
            summary="A patient's research consent: the current decision and its history")
def get_consent(
    patient_id: str,
    store: StoreDep,
    principal: Annotated[Principal, Depends(guard("consent", "Consent"))],
) -> ConsentPublic:
    return _consent_view(store, _existing_patient(store, principal, patient_id))


@router.put("/patients/{patient_id}/consent", response_model=ConsentPublic,
            summary="Record a research consent decision (a patient may grant or withdraw their own)")
def put_consent(
    patient_id: str,
    request: Request,
    store: StoreDep,
    principal: Annotated[Principal, Depends(guard("consent", "Consent"))],
    update: Annotated[ConsentUpdate, Body()],
) -> ConsentPublic:
    resolved = _existing_patient(store, principal, patient_id)
    clock = security_context(request).clock
    try:
        with store.begin() as connection:
            consent.record_consent(connection, resolved, update.decision, principal.subject, clock,
                                   purpose=update.purpose)
    except ConsentError as exc:  # pragma: no cover - the request model already restricts the values
        raise ProblemError(422, "Invalid request", str(exc), kind="validation", field=str(exc).split(":")[0]) from exc
    audit_context(request).detail["decision"] = update.decision
    return _consent_view(store, resolved)


# --- research export ---------------------------------------------------------------------------------
@router.post(
    "/research/export",
    summary="De-identified (Safe Harbor) FHIR ndjson of the consenting patients, as a zip",
    response_class=FileResponse,
    responses={200: {"content": {ZIP: {"schema": {"type": "string", "format": "binary"}}},
                     "description": "A zip with one <ResourceType>.ndjson per type; headers X-Medtwin-Patients "
                                    "and X-Medtwin-Excluded give the counts"}},
)
def research_export(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    principal: Annotated[Principal, Depends(guard("research", "cohort"))],
    options: Annotated[ResearchExportRequest | None, Body()] = None,
) -> FileResponse:
    sec = security_context(request)
    date_mode = (options.date_mode if options else None) or settings.deid_date_mode
    work = Path(tempfile.mkdtemp(prefix="medtwin-research-"))
    try:
        deid = Deidentifier(sec.keyring.pseudonym_key, date_mode)
        with store.connect() as connection:
            report = export_research(connection, store.codec, deid, work / "export")
        archive = work / "research-export.zip"
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(report.directory.glob("*.ndjson")):
                zf.write(path, arcname=path.name)
            zf.writestr("manifest.json", _manifest(report.patients, report.excluded_without_consent,
                                                   report.resources, date_mode))
    except DeidError as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise ProblemError(422, "Invalid request", str(exc), kind="validation", field=str(exc).split(":")[0]) from exc
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    audit_context(request).detail.update({"patients": report.patients,
                                          "excluded": report.excluded_without_consent})
    return FileResponse(archive, media_type=ZIP, filename="research-export.zip",
                        headers={"X-Medtwin-Patients": str(report.patients),
                                 "X-Medtwin-Excluded": str(report.excluded_without_consent)},
                        background=BackgroundTask(shutil.rmtree, work, ignore_errors=True))


def _manifest(patients: int, excluded: int, counts: dict[str, int], date_mode: str) -> str:
    buffer = io.StringIO()
    json.dump({"patients": patients, "excluded_without_consent": excluded, "resources": counts,
               "date_mode": date_mode, "method": "HIPAA Safe Harbor, 45 CFR 164.514(b)(2)",
               "created": utcnow().isoformat()}, buffer, indent=2, sort_keys=True)
    return buffer.getvalue()


# --- audit -------------------------------------------------------------------------------------------
@router.get("/audit/verify", response_model=AuditVerificationPublic,
            summary="Verify the audit hash chain (names the first bad record and the kind of tampering)")
def audit_verify(
    store: StoreDep,
    principal: Annotated[Principal, Depends(guard("admin", "audit"))],
) -> AuditVerificationPublic:
    with store.connect() as connection:
        result = audit.verify(connection)
    return AuditVerificationPublic(ok=result.ok, count=result.count, head_seq=result.head_seq,
                                   head_hash=result.head_hash, first_bad_seq=result.first_bad_seq,
                                   problem=result.problem, message=result.message,  # type: ignore[arg-type]
                                   unkeyed=result.unkeyed)


@router.get("/audit/events", response_model=AuditEventBundle, response_class=FhirJSONResponse,
            summary="Audit records as a FHIR AuditEvent searchset Bundle, oldest first, paged by since_seq")
def audit_events(
    request: Request,
    store: StoreDep,
    principal: Annotated[Principal, Depends(guard("admin", "audit"))],
    patient_id: Annotated[str | None, Query(min_length=1, max_length=64,
                                            description="Only this patient's records (id or MRN)")] = None,
    since_seq: Annotated[int, Query(ge=0, le=2**62, description="Only records after this sequence number")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditEventBundle:
    with store.connect() as connection:
        wanted = None
        if patient_id is not None:
            wanted = RecordRepository(connection, store.codec).resolve_patient(patient_id) or ""  # none: no records
        rows = list(audit.records(connection, patient_id=wanted, since_seq=since_seq, limit=limit))
    audit_context(request).detail["records"] = len(rows)
    links = [BundleLink(relation="self", url=str(request.url))]
    if len(rows) == limit:
        links.append(BundleLink(relation="next", url=str(request.url.include_query_params(since_seq=rows[-1].seq))))
    entries = []
    for rec in rows:
        event = audit.to_audit_event(rec)
        entries.append(BundleEntry(fullUrl=f"urn:uuid:{event['id']}", resource=event))
    return AuditEventBundle(total=len(entries), link=links, entry=entries)
