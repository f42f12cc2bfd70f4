"""Device samples over HTTP and WebSocket: thin entrances to :class:`medtwin.stream.pipeline.IngestPipeline`
(``app.state.ingest``) and to :class:`medtwin.store.samples.SampleRepository`.

* ``POST /patients/{patient_id}/samples``: a JSON array of samples, a FHIR Bundle/Observation or Open
  mHealth data points; answers the :class:`IngestReport`. A device key posts for its own patient only and
  its key name is the device.
* ``GET /patients/{patient_id}/samples?metric=``: one series as columns ``{metric, unit, total, times,
  values}`` (ISO UTC times), optionally downsampled to ``max_points`` (min and max per bucket).
* ``GET /patients/{patient_id}/samples/latest`` and ``GET /patients/{patient_id}/quarantine``.
* WebSocket ``/patients/{patient_id}/stream`` (:func:`stream`): authenticate with ``Authorization:
  Bearer`` or a first message ``{"token": ...}``; then each message ``{"seq": n, "samples": <any supported
  payload>}`` is answered ``{"seq", "accepted", "duplicates", "quarantined"}`` after the commit.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any

import anyio
import orjson
from fastapi import APIRouter, Depends, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from medtwin.api.deps import Principal, SecurityContext, StoreDep, guard
from medtwin.api.problems import ProblemError
from medtwin.security import accounts, audit
from medtwin.security.policy import decide
from medtwin.store.database import Store
from medtwin.store.samples import SampleRepository
from medtwin.store.security_tables import api_keys
from medtwin.stream import metrics
from medtwin.stream.parse import FieldError, PayloadError, parse_time
from medtwin.stream.pipeline import (
    BatchTooLargeError,
    IngestPipeline,
    IngestReport,
    RateLimitedError,
    UnknownPatientError,
)

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
    source: str
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


def pipeline_of(request_app: Any) -> IngestPipeline:
    pipeline = getattr(request_app.state, "ingest", None)
    if not isinstance(pipeline, IngestPipeline):
        raise ProblemError(503, "Service unavailable", "sample ingest is not configured", kind="unavailable")
    return pipeline


def device_name(store: Store, principal: Principal) -> str | None:
    """The device a device key stands for (its name), or None for users."""
    if principal.kind != "device":
        return None
    key_id = principal.subject.removeprefix("device:")
    with store.connect() as connection:
        name = connection.execute(select(api_keys.c.name).where(api_keys.c.id == key_id)).scalar()
    return str(name) if name else principal.subject


def _json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)


def problem_for(exc: Exception) -> ProblemError:
    """The HTTP problem for an ingest error (also used for WebSocket error replies)."""
    if isinstance(exc, UnknownPatientError):
        return ProblemError(404, "Not found", f"no patient {exc.patient_id!r}", kind="not-found", field="patient_id")
    if isinstance(exc, RateLimitedError):
        retry = max(1, math.ceil(exc.retry_after))
        return ProblemError(429, "Too many requests", f"{exc}; nothing of this request was stored",
                            kind="rate-limited", retry_after=retry, headers={"Retry-After": str(retry)})
    if isinstance(exc, BatchTooLargeError):
        return ProblemError(413, "Request too large", f"{exc}; split the batch", kind="batch-too-large",
                            field="body", limit=exc.limit)
    if isinstance(exc, PayloadError):
        return ProblemError(422, "Invalid samples", f"{exc.field}: {exc.detail}", kind=exc.reason, field=exc.field,
                            errors=[{"loc": ["body", exc.field], "msg": exc.detail, "type": exc.reason}])
    raise exc


@router.post("/samples", response_model=IngestReportPublic, openapi_extra=_BODY,
             summary="Ingest device samples (JSON samples, FHIR Observations, Open mHealth data points)",
             responses={413: {"description": "More samples than the device may send per minute"},
                        422: {"description": "The body is not JSON or not a known shape"},
                        429: {"description": "Device over its rate; nothing stored; see Retry-After"}})
async def post_samples(
    patient_id: str,
    request: Request,
    store: StoreDep,
    principal: Annotated[Principal, Depends(guard("write", "samples"))],
) -> Response:
    pipeline = pipeline_of(request.app)
    body = await request.body()

    def work() -> IngestReport:
        device = device_name(store, principal)
        return pipeline.ingest(body, patient_id=patient_id, device=device, source="http",
                               rate_key=principal.subject)

    try:
        report = await run_in_threadpool(work)
    except (UnknownPatientError, RateLimitedError, BatchTooLargeError, PayloadError) as exc:
        raise problem_for(exc) from None
    return _json_response(report.to_dict())


def _time_param(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value, name)
    except FieldError as bad:
        raise ProblemError(422, "Invalid request", f"{name}: {bad.detail}", kind="validation", field=name,
                           errors=[{"loc": ["query", name], "msg": bad.detail, "type": bad.reason}]) from None


def _resolve(request: Request, patient_id: str) -> str:
    try:
        return pipeline_of(request.app).resolve_patient(patient_id)
    except UnknownPatientError as exc:
        raise problem_for(exc) from None


@router.get("/samples", response_model=SeriesPublic, summary="One metric's series, in time order, as columns")
def get_series(
    patient_id: str,
    request: Request,
    store: StoreDep,
    principal: Annotated[Principal, Depends(guard("read", "samples"))],
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
    resolved = _resolve(request, patient_id)
    with store.connect() as connection:
        columns = SampleRepository(connection).series_columns(resolved, metric, start=lo, end=hi,
                                                              max_points=max_points)
    return _json_response(columns)


@router.get("/samples/latest", response_model=LatestPublic, summary="The newest sample of each metric")
def get_latest(
    patient_id: str,
    request: Request,
    store: StoreDep,
    principal: Annotated[Principal, Depends(guard("read", "samples"))],
) -> Response:
    resolved = _resolve(request, patient_id)
    with store.connect() as connection:
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
def get_quarantine(
    patient_id: str,
    request: Request,
    store: StoreDep,
    principal: Annotated[Principal, Depends(guard("read", "samples"))],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    resolved = _resolve(request, patient_id)
    with store.connect() as connection:
        total, rows = SampleRepository(connection, store.codec).quarantined(resolved, limit=limit, offset=offset)
    return _json_response({"total": total, "limit": limit, "offset": offset, "items": [
        {"id": r.pk, "received_at": r.received_at.isoformat(), "source": r.source, "device": r.device,
         "metric": r.metric, "time": r.time.isoformat() if r.time else None, "reason": r.reason,
         "field": r.field, "detail": r.detail, "payload": _payload_json(r.payload)} for r in rows]})


# ------------------------------------------------------------------------------------------------------
# WebSocket: a connected device or gateway streams batches over one socket.

WS_AUTH_TIMEOUT_S = 10.0
WS_RECHECK_S = 60.0  # re-verify the credential this often (expiry, revocation)
WS_POLICY_VIOLATION = 1008
WS_TOO_BIG = 1009


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _ws_error(seq: Any, status: int, reason: str, detail: str, field: str | None = None,
              **extra: Any) -> str:
    error: dict[str, Any] = {"status": status, "reason": reason, "detail": detail, "field": field, **extra}
    return _dumps({"seq": seq, "error": error})


class _WsAuthError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def _ws_authorise(websocket: WebSocket, token: str, raw_patient: str) -> tuple[Principal, str, str | None]:
    """(principal, stored patient id, device) for a socket, or :class:`_WsAuthError` (401/403/404)."""
    from medtwin.api.deps import _resolve_patient, authenticate  # the guard's own steps

    try:
        principal = authenticate(websocket, token)  # type: ignore[arg-type]  # uses only .app.state
    except ProblemError as exc:
        raise _WsAuthError(exc.status, exc.detail or exc.title) from None
    store: Store = websocket.app.state.store
    patient = _resolve_patient(store, raw_patient) if principal.patient_ids is not None else raw_patient
    decision = decide(principal, "write", "samples", "POST", patient)
    if not decision.allowed:
        raise _WsAuthError(decision.status, "patient not found" if decision.status == 404 else decision.reason)
    try:
        patient = pipeline_of(websocket.app).resolve_patient(patient)
    except UnknownPatientError:
        raise _WsAuthError(404, "patient not found") from None
    return principal, patient, device_name(store, principal)


def _ws_audit(websocket: WebSocket, principal: Principal | None, patient: str | None, status: int,
              denied: bool, detail: dict[str, Any]) -> None:
    security = getattr(websocket.app.state, "security", None)
    clock = security.clock if isinstance(security, SecurityContext) else accounts.utcnow
    client = websocket.client.host if websocket.client else None
    entry = audit.AuditEntry(
        actor=principal.subject if principal else "anonymous", role=principal.role if principal else "none",
        action="write", resource_type="samples", patient_id=patient,
        outcome="success" if status < 400 else ("denied" if denied else "failure"), status=status, client=client,
        detail={"route": websocket.url.path, "method": "WEBSOCKET", **detail})
    store: Store = websocket.app.state.store
    with store.begin() as connection:
        audit.append(connection, entry, clock)


def _bearer(websocket: WebSocket) -> str | None:
    header = websocket.headers.get("authorization")
    if header and header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return None


async def stream(websocket: WebSocket) -> None:
    """``/patients/{patient_id}/stream``: authenticate (``Authorization: Bearer`` header, or a first message
    ``{"token": "..."}`` within 10 s, for browsers), then send batches ``{"seq": n, "samples": payload}``
    where ``payload`` is any format ``POST .../samples`` takes. Each batch is answered after its commit
    with ``{"seq", "accepted", "duplicates", "quarantined": [{index, field, reason, detail}]}``; a bad
    message gets ``{"seq", "error": {status, reason, detail, field}}`` and the socket stays open
    (429: ``retry_after`` seconds). Authentication failures close the socket with code 1008."""
    raw_patient = websocket.path_params.get("patient_id", "")
    settings: Any = websocket.app.state.settings
    max_bytes = int(getattr(settings, "max_upload_bytes", 50 * 1024 * 1024))
    await websocket.accept()
    token = _bearer(websocket)
    try:
        if token is None:
            with anyio.fail_after(WS_AUTH_TIMEOUT_S):
                first = await websocket.receive()
            text = first.get("text") if first.get("text") is not None else first.get("bytes")
            if first.get("type") == "websocket.disconnect":
                return
            try:
                hello = orjson.loads(text or b"")
            except orjson.JSONDecodeError:
                hello = None
            token = hello.get("token") if isinstance(hello, dict) and isinstance(hello.get("token"), str) else None
            if token is None:
                await websocket.send_text(_ws_error(None, 401, "not-authenticated", "send {\"token\": ...} first "
                                                     "or an Authorization: Bearer header", "token"))
                await websocket.close(WS_POLICY_VIOLATION, "not authenticated")
                return
        principal, patient, device = await run_in_threadpool(_ws_authorise, websocket, token, raw_patient)
    except TimeoutError:
        await websocket.close(WS_POLICY_VIOLATION, "no token within 10 s")
        return
    except _WsAuthError as exc:
        await run_in_threadpool(_ws_audit, websocket, None, raw_patient, exc.status, True, {"reason": exc.detail})
        await websocket.send_text(_ws_error(None, exc.status, "not-authenticated" if exc.status == 401
                                             else "forbidden", exc.detail))
        await websocket.close(WS_POLICY_VIOLATION, "not authorised")
        return
    except WebSocketDisconnect:
        return
    await run_in_threadpool(_ws_audit, websocket, principal, patient, 101, False, {"event": "connect"})
    await websocket.send_text(_dumps({"ready": True, "patient_id": patient, "device": device}))
    pipeline = pipeline_of(websocket.app)
    checked = anyio.current_time()
    totals = {"messages": 0, "accepted": 0, "duplicates": 0, "quarantined": 0}
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("bytes") if message.get("bytes") is not None else message.get("text")
            if data is None:
                continue
            if len(data) > max_bytes:
                await websocket.send_text(_ws_error(None, 413, "too-large", f"a message may hold {max_bytes} bytes"))
                continue
            if anyio.current_time() - checked > WS_RECHECK_S:
                try:
                    await run_in_threadpool(_ws_authorise, websocket, token, raw_patient)
                except _WsAuthError as exc:
                    await websocket.send_text(_ws_error(None, exc.status, "not-authenticated", exc.detail))
                    await websocket.close(WS_POLICY_VIOLATION, "credential no longer valid")
                    break
                checked = anyio.current_time()
            reply = await run_in_threadpool(_ws_batch, pipeline, data, patient, device, principal.subject)
            totals["messages"] += 1
            if "error" not in reply:
                totals["accepted"] += reply["accepted"]
                totals["duplicates"] += reply["duplicates"]
                totals["quarantined"] += len(reply["quarantined"])
            await websocket.send_text(_dumps(reply))
    except WebSocketDisconnect:
        pass
    finally:
        await run_in_threadpool(_ws_audit, websocket, principal, patient, 200, False, {"event": "close", **totals})


def _ws_batch(pipeline: IngestPipeline, data: bytes | str, patient: str, device: str | None,
              rate_key: str) -> dict[str, Any]:
    """One WebSocket message -> its reply (never raises for bad input)."""
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return {"seq": None, "error": {"status": 422, "reason": "malformed", "field": "$",
                                       "detail": f"the message is not JSON ({exc})"}}
    if not isinstance(message, dict):
        return {"seq": None, "error": {"status": 422, "reason": "malformed", "field": "$",
                                       "detail": "a message is an object {\"seq\": n, \"samples\": ...}"}}
    seq = message.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int | str) or (isinstance(seq, str) and len(seq) > 64):
        return {"seq": None, "error": {"status": 422, "reason": "missing" if seq is None else "malformed",
                                       "field": "seq", "detail": "seq (an integer or a short string) is required"}}
    if "samples" not in message:
        return {"seq": seq, "error": {"status": 422, "reason": "missing", "field": "samples",
                                      "detail": "samples (any payload POST .../samples takes) is required"}}
    payload = message["samples"]
    if not isinstance(payload, list | dict):
        return {"seq": seq, "error": {"status": 422, "reason": "malformed", "field": "samples",
                                      "detail": "samples must be a JSON array or object (not a string)"}}
    try:
        report = pipeline.ingest(payload, patient_id=patient, device=device, source="websocket", rate_key=rate_key)
    except (UnknownPatientError, RateLimitedError, BatchTooLargeError, PayloadError) as exc:
        problem = problem_for(exc)
        field = problem.extensions.get("field")
        if isinstance(exc, PayloadError):
            field = f"samples.{exc.field}" if exc.field != "$" else "samples"
        detail = exc.detail if isinstance(exc, PayloadError) else problem.detail
        error = {"status": problem.status, "reason": problem.kind, "field": field, "detail": detail}
        if isinstance(exc, RateLimitedError):
            error["retry_after"] = problem.extensions.get("retry_after")
        return {"seq": seq, "error": error}
    return {"seq": seq, "accepted": report.accepted, "duplicates": report.duplicates,
            "quarantined": [q.to_dict() for q in report.quarantined]}


router.add_websocket_route(router.prefix + "/stream", stream, name="samples-stream")
