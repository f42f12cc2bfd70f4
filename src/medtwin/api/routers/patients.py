"""Patients: list and search, twin summary, FHIR record bundle, observations, version history."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from medtwin.api.deps import ObservationReader, PatientExporter, PatientReader, Principal, StoreDep, guard
from medtwin.api.paging import Offset
from medtwin.api.problems import ProblemError
from medtwin.api.schemas import (
    ObservationPage,
    ObservationPublic,
    PatientPage,
    PatientPublic,
    TwinSummaryPublic,
    TwinVersionPublic,
)
from medtwin.record import exactjson
from medtwin.store.records import RecordRepository
from medtwin.store.twins import TwinRepository
from medtwin.twin.build import export_patient
from medtwin.twin.pharmacogenomics import pgx_summary

router = APIRouter(prefix="/patients", tags=["patients"])

PatientId = Annotated[str, Query(min_length=1, max_length=64)]




@router.get("", response_model=PatientPage, summary="List or search patients")
def list_patients(
    store: StoreDep,
    principal: Annotated[Principal, Depends(guard("read", "Patient"))],
    name: Annotated[str | None, Query(max_length=200, description="Name word(s), case-insensitive")] = None,
    identifier: Annotated[str | None, Query(max_length=200, description="An identifier value, e.g. the MRN")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
) -> PatientPage:
    with store.connect() as connection:
        records = RecordRepository(connection, store.codec)
        ids = records.patient_ids(name=name, identifier=identifier, allowed=principal.patient_ids)
        twins = TwinRepository(connection, store.codec)
        items = []
        for patient_id in ids[offset:offset + limit]:
            latest = twins.latest(patient_id, "record")
            summary: dict[str, Any] = latest.payload if latest else {}
            items.append(PatientPublic(
                id=patient_id, name=summary.get("name"), gender=summary.get("gender"),
                birth_date=summary.get("birth_date"), age_years=summary.get("age_years"),
                twin_version=latest.version if latest else None,
                active_problems=len(summary.get("problems") or []),
                active_medications=len(summary.get("medications") or []),
            ))
    return PatientPage(total=len(ids), limit=limit, offset=offset, items=items)


@router.get("/{patient_id}", response_model=TwinSummaryPublic, summary="A patient's twin summary")
def get_summary(call: PatientReader) -> TwinSummaryPublic:
    with call.store.connect() as connection:
        latest = TwinRepository(connection, call.store.codec).latest(call.patient_id, "record")
    if latest is None:
        raise call.not_found("no twin yet")
    return TwinSummaryPublic(patient_id=call.patient_id, version=latest.version, provenance=latest.provenance,
                             summary=latest.payload,  # type: ignore[arg-type]
                             pharmacogenomics=pgx_summary(call.store, call.patient_id))


@router.get("/{patient_id}/versions", response_model=list[TwinVersionPublic], summary="Twin version history")
def get_versions(call: PatientReader) -> list[TwinVersionPublic]:
    with call.store.connect() as connection:
        history = TwinRepository(connection, call.store.codec).history(call.patient_id)
    return [TwinVersionPublic(version=v.version, kind=v.kind, created_at=v.created_at, actor=v.actor,
                              provenance=v.provenance) for v in history]


@router.get(
    "/{patient_id}/record",
    summary="The patient's complete record as a FHIR R4 Bundle (like Patient/$everything)",
    responses={200: {"content": {"application/fhir+json": {}}, "description": "FHIR searchset Bundle"}},
)
def get_record(request: Request, call: PatientExporter) -> Response:
    bundle = export_patient(call.store, call.patient_id, base_url=str(request.base_url).rstrip("/") + "/fhir",
                            clock=call.clock)  # Bundle.timestamp on the server's clock (medtwin.clock)
    return Response(exactjson.dumps(bundle), media_type="application/fhir+json")  # decimals as stored


@router.get("/{patient_id}/observations", response_model=ObservationPage,
            summary="A patient's observations by code and time range, newest first, paged")
def get_observations(
    call: ObservationReader,
    code: Annotated[str | None, Query(max_length=128, description="e.g. LOINC 8867-4")] = None,
    system: Annotated[str | None, Query(max_length=255, description="e.g. http://loinc.org")] = None,
    start: Annotated[datetime | None, Query(description="inclusive, ISO 8601")] = None,
    end: Annotated[datetime | None, Query(description="exclusive, ISO 8601")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Offset = 0,
) -> ObservationPage:
    if start and end and end <= start:
        raise ProblemError(422, "Invalid request", "'end' must be after 'start'", kind="validation",
                           errors=[{"loc": ["query", "end"], "msg": "must be after start", "type": "value_error"}])
    with call.store.connect() as connection:
        total, rows = RecordRepository(connection, call.store.codec).observations(
            call.patient_id, code=code, system=system, start=start, end=end, limit=limit, offset=offset)
    next_offset = offset + limit if offset + limit < total else None
    return ObservationPage(total=total, limit=limit, offset=offset, next_offset=next_offset,
                           items=[ObservationPublic(**row) for row in rows])
