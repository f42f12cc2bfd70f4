"""Device samples over HTTP and WebSocket: thin entrances to :class:`medtwin.stream.pipeline.IngestPipeline`
(``Services.ingest``) and to :class:`medtwin.store.samples.SampleRepository`; the WebSocket's protocol lives
in :mod:`medtwin.api.realtime`.

* ``POST /patients/{patient_id}/samples``: a JSON array of samples, a FHIR Bundle/Observation or Open
  mHealth data points; answers the :class:`IngestReport`. A device key posts for its own patient only and
  its key name is the device.
* ``GET /patients/{patient_id}/samples?metric=``: one series as columns ``{metric, unit, total, times,
  values}`` (ISO UTC times), optionally downsampled to ``max_points`` (min and max per bucket).
* ``GET /patients/{patient_id}/samples/latest`` and ``GET /patients/{patient_id}/quarantine``.
* WebSocket ``/patients/{patient_id}/stream`` (:func:`medtwin.api.realtime.sample_socket`): authenticate with ``Authorization:
  Bearer`` or a first message ``{"token": ...}``; then each message ``{"seq": n, "samples": <any supported
  payload>}`` is answered ``{"seq", "accepted", "duplicates", "quarantined"}`` after the commit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from medtwin.api import realtime
from medtwin.api.deps import (
    Principal,
    ServicesDep,
    device_name,
    guard,
    ingest_errors,
    ingest_problem,
    visible_patient,
)
from medtwin.api.paging import Offset
from medtwin.api.problems import ProblemError, require_media_type
from medtwin.store.samples import SampleRepository
from medtwin.stream import metrics
from medtwin.stream.parse import FieldError, parse_time
from medtwin.stream.pipeline import IngestReport

router = APIRouter(prefix="/patients/{patient_id}", tags=["samples"])

JSON = "application/json"
MAX_POINTS = 200_000


class QuarantinedItemPublic(BaseModel):
    index: int | None = Field(description="Position of the item in the payload; null: the payload as a whole")
    field: str = Field(description="JSON path of the wrong part, e.g. [3].value")
    reason: str = Field(description="unknown-metric | unit | out-of-range | bad-value | bad-time | naive-time | "
                                    "malformed | missing | unsupported | status | future-time | patient-mismatch")
    detail: str


class IngestReportPublic(BaseModel):
    patient_id: str
    source: str = Field(description="http | websocket | mqtt: the entrance the samples came through")
    format: str = Field(description="samples | fhir | omh")
    received: int = Field(description="Items read from the payload")
    accepted: int = Field(description="Newly stored samples")
    duplicates: int = Field(description="Samples already stored (or repeated in the payload)")
    quarantined: list[QuarantinedItemPublic]


class SeriesPublic(BaseModel):
    metric: str
    unit: str = Field(description="Canonical UCUM unit of the values")
    total: int = Field(description="Samples in the range before downsampling")
    times: list[str] = Field(description="ISO 8601 UTC times, ascending")
    values: list[float]


class LatestSamplePublic(BaseModel):
    time: datetime
    value: float
    unit: str
    original_value: float | None
    original_unit: str | None
    device: str | None
    source: str


class LatestPublic(BaseModel):
    patient_id: str
    latest: dict[str, LatestSamplePublic] = Field(description="metric -> newest sample")


class QuarantineRowPublic(BaseModel):
    id: int
    received_at: datetime
    source: str
    device: str | None
    metric: str | None
    time: datetime | None
    reason: str
    field: str | None
    detail: str | None
    payload: Any = Field(default=None, description="The item as received (JSON when it parses, else text)")


class QuarantinePage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[QuarantineRowPublic]


_SAMPLE_SCHEMA = {
    "type": "object",
    "required": ["metric", "time", "value", "unit"],
    "properties": {
        "metric": {"type": "string", "enum": sorted(metrics.registry())},
        "time": {"type": "string", "format": "date-time", "description": "ISO 8601 with a timezone"},
        "value": {"type": "number"},
        "unit": {"type": "string", "description": "UCUM unit (or a common spelling: bpm, mmHg, mg/dl)"},
        "device": {"type": "string"},
        "id": {"type": "string", "description": "Client id of the sample (idempotency)"},
    },
}
_BODY = {
    "requestBody": {
        "required": True,
        "content": {ct: {"schema": {"oneOf": [
            {"type": "array", "items": _SAMPLE_SCHEMA, "description": "JSON samples"},
            {"type": "object", "description": "One sample, a FHIR Bundle/Observation or an Open mHealth data point",
             "additionalProperties": True},
        ]}} for ct in (JSON, "application/fhir+json")},
    },
}


def _json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)


problem_for = ingest_problem  # the name the ingest error mapping had here


def _resolved(patient_id: str, services: ServicesDep,
              principal: Annotated[Principal, Depends(guard("read", "samples"))]) -> str:
    """The stored id of a patient the caller may read the samples of (the guard checked the scope); by id or
    MRN only (:func:`medtwin.api.deps.resolve_path_patient`)."""
    stored = visible_patient(services.store, principal, patient_id)
    with ingest_errors():
        return services.ingest.resolve_patient(stored)


SamplesOf = Annotated[str, Depends(_resolved)]


@router.post("/samples", response_model=IngestReportPublic, openapi_extra=_BODY,
             summary="Ingest device samples (JSON samples, FHIR Observations, Open mHealth data points)",
             responses={413: {"description": "More samples than the device may send per minute"},
                        422: {"description": "The body is not JSON or not a known shape"},
                        429: {"description": "Device over its rate; nothing stored; see Retry-After"}})
async def post_samples(patient_id: str, request: Request, services: ServicesDep,
                       principal: Annotated[Principal, Depends(guard("write", "samples"))]) -> Response:
    require_media_type(request, (JSON, "application/fhir+json"))  # not text/plain (the documented bodies)
    body = await request.body()

    def work() -> IngestReport:
        device = device_name(services.store, principal)
        stored = visible_patient(services.store, principal, patient_id)  # by id or MRN only
        return services.ingest.ingest(body, patient_id=stored, device=device,
                                      source="http" if principal.kind == "device" else "manual",
                                      rate_key=principal.subject)

    with ingest_errors():
        report = await run_in_threadpool(work)
    return _json_response(report.to_dict())


def _time_param(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value, name)
    except FieldError as bad:
        raise ProblemError(422, "Invalid request", f"{name}: {bad.detail}", kind="validation", field=name,
                           errors=[{"loc": ["query", name], "msg": bad.detail, "type": bad.reason}]) from None


@router.get("/samples", response_model=SeriesPublic, summary="One metric's series, in time order, as columns")
def get_series(
    resolved: SamplesOf,
    services: ServicesDep,
    metric: Annotated[str, Query(description="Canonical metric name, e.g. glucose, heart_rate",
                                 json_schema_extra={"enum": sorted(metrics.registry())})],
    start: Annotated[str | None, Query(description="From (inclusive), ISO 8601 with timezone")] = None,
    end: Annotated[str | None, Query(description="To (exclusive), ISO 8601 with timezone")] = None,
    max_points: Annotated[int | None, Query(ge=2, le=MAX_POINTS, description="Downsample: keep the min and max "
                                            "of max_points/2 equal-time buckets")] = None,
) -> Response:
    if metric not in metrics.registry():
        raise ProblemError(422, "Invalid request", f"metric: unknown metric {metric[:64]!r}", kind="validation",
                           field="metric", errors=[{"loc": ["query", "metric"], "msg": "unknown metric",
                                                    "type": "unknown-metric"}])
    lo, hi = _time_param(start, "start"), _time_param(end, "end")
    with services.store.connect() as connection:
        columns = SampleRepository(connection).series_columns(resolved, metric, start=lo, end=hi,
                                                              max_points=max_points)
    return _json_response(columns)


@router.get("/samples/latest", response_model=LatestPublic, summary="The newest sample of each metric")
def get_latest(resolved: SamplesOf, services: ServicesDep) -> Response:
    with services.store.connect() as connection:
        latest = SampleRepository(connection).latest(resolved)
    return _json_response({"patient_id": resolved, "latest": {
        m: {"time": s.time.isoformat().replace("+00:00", "Z"), "value": s.value, "unit": s.unit,
            "original_value": s.original_value, "original_unit": s.original_unit, "device": s.device,
            "source": s.source} for m, s in latest.items()}})


def _payload_json(payload: bytes | None) -> Any:
    if payload is None:
        return None
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload[:4096].decode("utf-8", "replace")


@router.get("/quarantine", response_model=QuarantinePage, summary="Samples that were not accepted, and why")
def get_quarantine(resolved: SamplesOf, services: ServicesDep, limit: Annotated[int, Query(ge=1, le=500)] = 50,
                   offset: Offset = 0) -> Response:
    store = services.store
    with store.connect() as connection:
        total, rows = SampleRepository(connection, store.codec).quarantined(resolved, limit=limit, offset=offset)
    return _json_response({"total": total, "limit": limit, "offset": offset, "items": [
        {"id": r.pk, "received_at": r.received_at.isoformat(), "source": r.source, "device": r.device,
         "metric": r.metric, "time": r.time.isoformat() if r.time else None, "reason": r.reason,
         "field": r.field, "detail": r.detail, "payload": _payload_json(r.payload)} for r in rows]})


# WebSocket: a connected device or gateway streams batches over one socket (the protocol: realtime.py).
router.add_websocket_route(router.prefix + "/stream", realtime.sample_socket, name="samples-stream")
