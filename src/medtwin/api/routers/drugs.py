"""Drugs on the twin: the drug library, regimen comparison, dose individualisation and pharmacogenomics.

Thin: authorise, resolve the patient, call :mod:`medtwin.twin.pharmacogenomics`, return its model.
Simulations are CPU-bound and run in the thread pool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from medtwin.api.deps import (
    MedicationSimulator,
    ObservationReader,
    PatientCall,
    Principal,
    StoreDep,
    guard,
    visible_patient,
)
from medtwin.api.problems import ProblemError
from medtwin.api.services import services_of
from medtwin.twin.pharmacogenomics import (
    DrugInfo,
    StoredPgx,
    TwinCompareRequest,
    TwinDoseSuggestion,
    TwinDrugComparison,
    TwinIndividualiseRequest,
    drug_library,
    latest_pgx,
    run_comparison,
    run_individualisation,
    store_pgx,
)

VCF_TYPES = ("text/plain", "text/x-vcf", "text/vcf")
T = TypeVar("T")

library = APIRouter(prefix="/drugs", tags=["drugs"])
on_twin = APIRouter(prefix="/twins/{patient_id}/drugs", tags=["drugs"])


@library.get("", response_model=list[DrugInfo], summary="The drug library (published population models)")
def list_drugs(principal: Annotated[Principal, Depends(guard("read", "Medication"))]) -> list[DrugInfo]:
    return drug_library()


async def _in_pool(run: Callable[..., T], call: PatientCall, body: Any) -> T:
    """``run(store, patient, body, actor=..., clock=...)`` in the thread pool (simulations are CPU-bound)."""
    return await run_in_threadpool(run, call.store, call.patient_id, body, actor=call.actor,
                                   clock=call.clock)  # the server's one clock (medtwin.clock)


@on_twin.post("/compare", response_model=TwinDrugComparison,
              summary="Compare regimens on the patient's twin (stored as a drug-simulation twin version)",
              responses={422: {"description": "Invalid input (problem+json naming the field)"}})
async def compare(body: TwinCompareRequest, call: MedicationSimulator) -> TwinDrugComparison:
    return await _in_pool(run_comparison, call, body)


@on_twin.post("/individualise", response_model=TwinDoseSuggestion,
              summary="Suggest a dose from measured levels (MAP), stored as a drug-simulation twin version",
              responses={422: {"description": "Invalid input (problem+json naming the field)"}})
async def individualise(body: TwinIndividualiseRequest, call: MedicationSimulator) -> TwinDoseSuggestion:
    return await _in_pool(run_individualisation, call, body)


@on_twin.post(
    "/pgx", response_model=StoredPgx, status_code=201,
    summary="Call pharmacogenes from a GRCh38 VCF and store the report as a pgx twin version",
    openapi_extra={"requestBody": {"required": True, "content": {
        media: {"schema": {"type": "string"}} for media in VCF_TYPES}}},
    responses={415: {"description": "Not a VCF media type"},
               422: {"description": "Unusable VCF (problem+json naming the field)"}},
)
async def upload_pgx(
    patient_id: str,
    request: Request,
    store: StoreDep,
    principal: Annotated[Principal, Depends(guard("write", "Observation"))],
    sample: Annotated[str | None, Query(max_length=200, description="Sample column if the VCF has several")] = None,
    cyp2d6_copy_number: Annotated[int | None, Query(ge=0, le=6, description="CYP2D6 total copy number")] = None,
) -> StoredPgx:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in VCF_TYPES:
        raise ProblemError(415, "Unsupported media type", f"send the VCF as {', '.join(VCF_TYPES)}, not "
                           f"{media or 'nothing'!r}", kind="unsupported-media-type", field="content-type")
    resolved = visible_patient(store, principal, patient_id)
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProblemError(422, "Invalid VCF", "the VCF is not UTF-8 text", kind="vcf", field="body") from exc
    if not text.strip():
        raise ProblemError(422, "Invalid VCF", "empty request body", kind="empty", field="body")
    return await run_in_threadpool(store_pgx, store, resolved, text, actor=principal.subject,
                                   now=services_of(request.app).clock(),
                                   sample=sample, cyp2d6_copy_number=cyp2d6_copy_number)


@on_twin.get("/pgx", response_model=StoredPgx, summary="The patient's latest pharmacogenomic report",
             responses={404: {"description": "No patient, or no PGx report stored yet"}})
def get_pgx(call: ObservationReader) -> StoredPgx:
    stored = latest_pgx(call.store, call.patient_id)
    if stored is None:
        raise ProblemError(404, "Not found", f"patient {call.requested!r} has no pharmacogenomic report yet",
                           kind="not-found", field="pgx")
    return stored


router = APIRouter()
router.include_router(library)
router.include_router(on_twin)
