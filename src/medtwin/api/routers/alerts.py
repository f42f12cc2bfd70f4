"""Alerts, NEWS2 and the live event stream. Thin: authorise, call :mod:`medtwin.alerts.service`, stream
:class:`medtwin.alerts.hub.EventHub` events.

* ``GET /alerts`` (the caller's visible patients, most urgent first), ``GET /alerts/{alert_id}``,
  ``GET /patients/{patient_id}/alerts``; ``POST /alerts/{alert_id}/acknowledge`` and ``.../resolve``
  (write; 404 for an alert of a patient the caller cannot see; 409 for a transition its status does not
  allow). Alerts are FHIR ``Flag``-like, so their scope type is ``Flag``.
* ``GET /patients/{patient_id}/news2``: NEWS2 over the stored vital signs with every sub-score;
  ``PUT /patients/{patient_id}/news2/spo2-scale``: the clinician's Scale 1/2 choice.
* ``GET /events``: Server-Sent Events (``text/event-stream``): ``alert``, ``samples``, ``forecast``
  events for the patients the caller may see (optionally one ``patient``, some ``types``). Authenticated
  with ``Authorization: Bearer`` (read it with ``fetch()`` streaming: EventSource cannot send headers).
  The stream is bounded (``timeout`` seconds, ``max_events``); it re-checks the credential every 60 s
  (expiry, revocation, care-team changes) and ends with an ``error`` event when it no longer holds.
  ``: keepalive`` comments every 15 s; ``lagged`` events say how many events a slow reader lost. A
  reconnecting reader sends ``Last-Event-ID``: the hub replays the retained events after it (the last
  5,000 alert events, 20,000 others), or starts with ``lagged`` when some may be gone (re-read the REST
  state then).
* WebSocket ``/events/ws``: the same events as JSON text frames; authenticate with ``Authorization:
  Bearer`` or a first message ``{"token": "...", "patient": optional, "types": optional,
  "last_event_id": optional}`` within 10 s.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Annotated, Any, Literal

import anyio
import orjson
from fastapi import APIRouter, Depends, Header, Path, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from medtwin.alerts import service
from medtwin.alerts.engine import RULES, AlertEngine, save_spo2_scale
from medtwin.alerts.hub import EVENT_TYPES, EventHub, Subscription
from medtwin.alerts.news2 import News2InputError
from medtwin.alerts.repository import STATUSES, UNRESOLVED, Alert, AlertTransitionError
from medtwin.api.deps import (
    Principal,
    SecurityContext,
    StoreDep,
    app_clock,
    audit_context,
    authenticate,
    guard,
    visible_patient,
)
from medtwin.api.problems import ProblemError
from medtwin.security import accounts, audit
from medtwin.security.policy import decide
from medtwin.store.database import Store

router = APIRouter(tags=["alerts"])

StatusFilter = Literal["unresolved", "open", "acknowledged", "resolved", "all"]
RuleName = Literal[RULES]  # type: ignore[valid-type]
EventType = Literal["alert", "samples", "forecast"]
AlertId = Annotated[str, Path(min_length=1, max_length=64)]
KEEPALIVE_S = 15.0
RECHECK_S = 60.0
WS_AUTH_TIMEOUT_S = 10.0
WS_POLICY_VIOLATION = 1008
assert set(EVENT_TYPES) == {"alert", "samples", "forecast"}


#: One Server-Sent Events message of GET /events (the schema of each event in the stream).
SSE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["alert", "samples", "forecast", "lagged", "end", "error"]},
        "data": {"type": "string", "description": "JSON. alert/samples/forecast: {id, type, patient_id, "
                                                  "published_at, data}; lagged: {dropped}; end: {reason, events}; "
                                                  "error: {status, detail}"},
        "id": {"type": "string", "description": "the hub's event id (increasing)"},
        "retry": {"type": "integer"},
    },
}


class AlertPublic(BaseModel):
    id: str
    patient_id: str
    rule: str = Field(description="predicted-hypo | hypo-l1 | hypo-l2 | hyper-l1 | hyper-l2 | news2 | hr-deviation")
    severity: str = Field(description="low | medium | high | critical")
    status: str = Field(description="open | acknowledged | resolved")
    dedupe_key: str
    opened_at: datetime = Field(description="data time the condition began")
    updated_at: datetime
    last_seen_at: datetime = Field(description="data time the condition last held")
    occurrences: int = Field(description="readings / evaluations that showed the condition")
    score: float | None = Field(description="the rule's number: lead time (min) for predicted-hypo, the extreme "
                                            "glucose (mg/dL) for episodes, the NEWS2 aggregate, the z of a "
                                            "heart-rate deviation")
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None = Field(description="a user, or 'system' when the condition cleared")
    message: str
    details: dict[str, Any]

    @classmethod
    def of(cls, alert: Alert) -> AlertPublic:
        return cls.model_validate(alert.to_json())


class AlertPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[AlertPublic]


class SubScorePublic(BaseModel):
    parameter: str
    label: str
    value: float
    recorded: str = Field(description="the value as the chart records it (rounded half-up)")
    band: str
    score: int


class News2Public(BaseModel):
    patient_id: str
    aggregate: int = Field(ge=0, le=20)
    risk: str = Field(description="low | low-medium | medium | high (RCP NEWS2 chart 2)")
    red_score: bool = Field(description="a score of 3 in a single parameter")
    complete: bool = Field(description="all seven parameters within the window")
    missing: list[str]
    spo2_scale: int
    spo2_scale_set_by: str | None
    monitoring: str
    response: str
    at: datetime = Field(description="evaluation time: the newest vital sign's time")
    window_min: float
    times: dict[str, datetime] = Field(description="when each parameter used was measured")
    sub_scores: list[SubScorePublic]
    source: str


class Spo2ScaleBody(BaseModel):
    scale: Literal[1, 2] = Field(description="1, or 2 for confirmed hypercapnic respiratory failure (target "
                                             "88-92 %), a clinical decision")


class Spo2ScalePublic(BaseModel):
    patient_id: str
    spo2_scale: int


# --- helpers ----------------------------------------------------------------------------------------------



def hub_of(app: Any) -> EventHub | None:
    hub = getattr(app.state, "hub", None)
    return hub if isinstance(hub, EventHub) else None


def engine_of(app: Any) -> AlertEngine | None:
    engine = getattr(app.state, "alerts", None)
    return engine if isinstance(engine, AlertEngine) else None




def _statuses(status: StatusFilter) -> tuple[str, ...]:
    if status == "unresolved":
        return UNRESOLVED
    if status == "all":
        return STATUSES
    return (status,)


def _page(total: int, limit: int, offset: int, items: list[Alert]) -> AlertPage:
    return AlertPage(total=total, limit=limit, offset=offset, items=[AlertPublic.of(a) for a in items])


Status = Annotated[StatusFilter, Query(description="unresolved (open + acknowledged, the default), open, "
                                                   "acknowledged, resolved or all")]
Rule = Annotated[RuleName | None, Query(description="only this rule")]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]


# --- alerts -----------------------------------------------------------------------------------------------

@router.get("/alerts", response_model=AlertPage, summary="Alerts of the caller's patients, most urgent first")
def list_alerts(
    store: StoreDep,
    principal: Annotated[Principal, Depends(guard("read", "Flag"))],
    status: Status = "unresolved",
    patient: Annotated[str | None, Query(min_length=1, max_length=64, description="a patient id or MRN")] = None,
    rule: Rule = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> AlertPage:
    patient_id = visible_patient(store, principal, patient, "patient") if patient is not None else None
    total, items = service.list_alerts(store, allowed=principal.patient_ids, patient_id=patient_id,
                                       statuses=_statuses(status), rule=rule, limit=limit, offset=offset)
    return _page(total, limit, offset, items)


@router.get("/patients/{patient_id}/alerts", response_model=AlertPage, summary="A patient's alerts")
def patient_alerts(
    patient_id: str,
    store: StoreDep,
    principal: Annotated[Principal, Depends(guard("read", "Flag"))],
    status: Status = "unresolved",
    rule: Rule = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> AlertPage:
    resolved = visible_patient(store, principal, patient_id)
    total, items = service.list_alerts(store, allowed=principal.patient_ids, patient_id=resolved,
                                       statuses=_statuses(status), rule=rule, limit=limit, offset=offset)
    return _page(total, limit, offset, items)


def _not_found(alert_id: str) -> ProblemError:
    return ProblemError(404, "Not found", f"no alert {alert_id!r}", kind="not-found", field="alert_id")


@router.get("/alerts/{alert_id}", response_model=AlertPublic, summary="One alert")
def get_alert(
    alert_id: AlertId,
    store: StoreDep,
    principal: Annotated[Principal, Depends(guard("read", "Flag"))],
) -> AlertPublic:
    try:
        return AlertPublic.of(service.get_alert(store, alert_id, principal.can_see))
    except service.AlertNotFound:
        raise _not_found(alert_id) from None


def _transition(request: Request, store: Store, principal: Principal, alert_id: str, action: str) -> AlertPublic:
    ctx = audit_context(request)
    ctx.resource_id = alert_id
    try:
        alert = service.transition(store, alert_id, action, actor=principal.subject, can_see=principal.can_see,
                                   clock=app_clock(request.app), hub=hub_of(request.app))
    except service.AlertNotFound:
        raise _not_found(alert_id) from None
    except AlertTransitionError as exc:
        ctx.detail["transition"] = f"{exc.status} -> {action} refused"
        raise ProblemError(409, "Conflict", str(exc), kind="invalid-transition", field="alert_id",
                           status_now=exc.status) from None
    ctx.patient_id = alert.patient_id
    ctx.detail["transition"] = alert.status
    return AlertPublic.of(alert)


@router.post("/alerts/{alert_id}/acknowledge", response_model=AlertPublic,
             summary="Acknowledge an open alert (409 unless it is open)")
def acknowledge(
    alert_id: AlertId,
    request: Request,
    store: StoreDep,
    principal: Annotated[Principal, Depends(guard("write", "Flag"))],
) -> AlertPublic:
    return _transition(request, store, principal, alert_id, "acknowledge")


@router.post("/alerts/{alert_id}/resolve", response_model=AlertPublic,
             summary="Resolve an open or acknowledged alert (409 when already resolved)")
def resolve(
    alert_id: AlertId,
    request: Request,
    store: StoreDep,
    principal: Annotated[Principal, Depends(guard("write", "Flag"))],
) -> AlertPublic:
    return _transition(request, store, principal, alert_id, "resolve")


# --- NEWS2 ------------------------------------------------------------------------------------------------

@router.get("/patients/{patient_id}/news2", response_model=News2Public,
            summary="NEWS2 (RCP 2017) over the latest vital signs, with every parameter's sub-score")
def get_news2(
    patient_id: str,
    store: StoreDep,
    principal: Annotated[Principal, Depends(guard("read", "Observation"))],
) -> News2Public:
    resolved = visible_patient(store, principal, patient_id)
    try:
        with store.connect() as connection:
            found = service.latest_news2(connection, store.codec, resolved)
    except News2InputError as exc:
        raise ProblemError(422, "Invalid vital sign", str(exc), kind="validation", field=exc.field) from None
    if found is None:
        raise ProblemError(404, "Not found", f"patient {patient_id!r} has no vital signs", kind="not-found",
                           field="patient_id")
    return News2Public.model_validate({"patient_id": resolved, **found})


@router.put("/patients/{patient_id}/news2/spo2-scale", response_model=Spo2ScalePublic,
            summary="Choose the patient's SpO2 scale (2: hypercapnic respiratory failure)")
def set_spo2_scale(
    patient_id: str,
    body: Spo2ScaleBody,
    request: Request,
    store: StoreDep,
    principal: Annotated[Principal, Depends(guard("write", "Observation"))],
) -> Spo2ScalePublic:
    resolved = visible_patient(store, principal, patient_id)
    engine = engine_of(request.app)
    if engine is not None:  # stores it and re-scores the live NEWS2
        engine.set_spo2_scale(resolved, body.scale, actor=principal.subject)
    else:
        save_spo2_scale(store, resolved, body.scale, actor=principal.subject, clock=app_clock(request.app))
    audit_context(request).detail["spo2_scale"] = body.scale
    return Spo2ScalePublic(patient_id=resolved, spo2_scale=body.scale)


# --- event streams ----------------------------------------------------------------------------------------

def _reauthenticate(app: Any, token: str) -> Principal | None:
    class _Carrier:  # authenticate() reads only .app
        def __init__(self, app: Any) -> None:
            self.app = app

    try:
        return authenticate(_Carrier(app), token)  # type: ignore[arg-type]
    except ProblemError:
        return None


def _sse(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (kind.encode(), orjson.dumps(data))


class _Visibility:
    """A subscription's ``can_see``, replaceable when the credential is re-checked."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal

    def __call__(self, patient_id: str) -> bool:
        return self.principal.can_see(patient_id)


def _refresh(sub: Subscription, visibility: _Visibility, principal: Principal, follow_care_team: bool) -> None:
    """A re-checked credential: new visibility, and (without a patient filter) the new care team."""
    if follow_care_team and principal.patient_ids != visibility.principal.patient_ids:
        sub.hub.set_patients(sub, principal.patient_ids)
    visibility.principal = principal


async def _sse_stream(app: Any, sub: Subscription, visibility: _Visibility, token: str | None, timeout: float,
                      max_events: int | None, follow_care_team: bool) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    next_check = loop.time() + RECHECK_S
    sent = 0
    try:
        yield b"retry: 3000\n: connected\n\n"
        while True:
            now = loop.time()
            if now >= deadline:
                yield _sse("end", {"reason": "timeout", "events": sent})
                return
            if token is not None and now >= next_check:
                principal = await run_in_threadpool(_reauthenticate, app, token)
                if principal is None or not decide(principal, "read", "Observation").allowed:
                    yield _sse("error", {"status": 401, "detail": "the credential is no longer valid"})
                    return
                _refresh(sub, visibility, principal, follow_care_team)
                next_check = now + RECHECK_S
            event = await sub.get(min(deadline - now, next_check - now, KEEPALIVE_S))
            if event is None:
                if sub.closed:
                    yield _sse("end", {"reason": "closed", "events": sent})
                    return
                if loop.time() < deadline:
                    yield b": keepalive\n\n"
                continue
            if not sub.wants(event):  # queued before a re-check narrowed what the caller may see
                continue
            gap = sub.take_gap()
            if gap:
                yield _sse("lagged", {"dropped": gap})
            yield event.sse()
            sent += 1
            if max_events is not None and sent >= max_events:
                return
    finally:
        sub.close()


@router.get("/events", summary="Live events (Server-Sent Events): alerts, samples, forecasts",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}},
                             "description": "an event stream; each message has an event name, data (JSON) and, "
                                            "for hub events, an id"}})
async def events(
    request: Request,
    store: StoreDep,
    principal: Annotated[Principal, Depends(guard("read", "Observation"))],
    patient: Annotated[str | None, Query(min_length=1, max_length=64, description="only this patient")] = None,
    types: Annotated[list[EventType] | None, Query(description="only these event types (repeat)")] = None,
    timeout: Annotated[float, Query(ge=0, le=3600, description="end the stream after this many seconds")] = 900,
    max_events: Annotated[int | None, Query(ge=1, le=1_000_000, description="end after this many events")] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=32,
                                                 description="a reconnecting reader's last event id: replay "
                                                             "what followed it")] = None,
) -> StreamingResponse:
    hub = hub_of(request.app)
    if hub is None:
        raise ProblemError(503, "Service unavailable", "live events are not configured", kind="unavailable")
    patients = principal.patient_ids  # the care team (None: every patient), indexed in the hub
    if patient is not None:
        patients = frozenset({await run_in_threadpool(visible_patient, store, principal, patient, "patient")})
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else None
    visibility = _Visibility(principal)
    sub = hub.subscribe(can_see=visibility, patients=patients, types=types,
                        after_id=_event_id(last_event_id))
    return StreamingResponse(_sse_stream(request.app, sub, visibility, token, timeout, max_events,
                                         follow_care_team=patient is None),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _event_id(raw: Any) -> int | None:
    """A Last-Event-ID (header or WebSocket field); anything but a plain non-negative integer is ignored."""
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return raw
    if isinstance(raw, str) and raw.isdigit() and len(raw) <= 18:
        return int(raw)
    return None


def _ws_audit(app: Any, principal: Principal | None, client: str | None, status: int, detail: dict[str, Any],
              denied: bool = False) -> None:
    security = getattr(app.state, "security", None)
    clock = security.clock if isinstance(security, SecurityContext) else accounts.utcnow
    store: Store = app.state.store
    entry = audit.AuditEntry(
        actor=principal.subject if principal else "anonymous", role=principal.role if principal else "none",
        action="read", resource_type="Observation", resource_id="events",
        outcome="success" if status < 400 else ("denied" if denied else "failure"), status=status, client=client,
        detail={"route": "/api/v1/events/ws", "method": "WEBSOCKET", **detail})
    with store.begin() as connection:
        audit.append(connection, entry, clock)


def _ws_authorise(app: Any, token: str, patient: str | None) -> tuple[Principal, str | None]:
    principal = _reauthenticate(app, token)
    if principal is None:
        raise ProblemError(401, "Not authenticated", "the token is invalid, expired or revoked")
    decision = decide(principal, "read", "Observation")
    if not decision.allowed:
        raise ProblemError(decision.status, "Forbidden", decision.reason)
    if patient is not None:
        patient = visible_patient(app.state.store, principal, patient, "patient")
    return principal, patient


def _options(raw: Any) -> tuple[str | None, list[str] | None]:
    patient = raw.get("patient") if isinstance(raw, dict) else None
    types = raw.get("types") if isinstance(raw, dict) else None
    if patient is not None and (not isinstance(patient, str) or not 0 < len(patient) <= 64):
        raise ProblemError(422, "Invalid request", "patient: a patient id or MRN", field="patient")
    if types is not None and (not isinstance(types, list) or any(t not in EVENT_TYPES for t in types)):
        raise ProblemError(422, "Invalid request", f"types: a list of {', '.join(EVENT_TYPES)}", field="types")
    return patient, types


async def events_ws(websocket: WebSocket) -> None:
    """``/events/ws``: the event stream over a WebSocket (see the module docstring). Frames from the server:
    ``{"ready": true, ...}``, then each event ``{"id", "type", "patient_id", "published_at", "data"}``,
    ``{"type": "lagged", "dropped": n}``, ``{"type": "pong"}`` and ``{"error": {status, detail, field}}``.
    From the client: ``{"token": "..."}`` (first, or later to refresh), ``{"type": "ping"}``."""
    app = websocket.app
    hub = hub_of(app)
    client = websocket.client.host if websocket.client else None
    await websocket.accept()
    header = websocket.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else None
    query = {"patient": websocket.query_params.get("patient"),
             "types": websocket.query_params.getlist("types") or None,
             "last_event_id": websocket.query_params.get("last_event_id")}
    try:
        if token is None:
            with anyio.fail_after(WS_AUTH_TIMEOUT_S):
                first = await websocket.receive()
            if first.get("type") == "websocket.disconnect":
                return
            try:
                hello = orjson.loads(first.get("text") or first.get("bytes") or b"")
            except orjson.JSONDecodeError:
                hello = None
            token = hello.get("token") if isinstance(hello, dict) and isinstance(hello.get("token"), str) else None
            if isinstance(hello, dict):
                query = {"patient": hello.get("patient"), "types": hello.get("types"),
                         "last_event_id": hello.get("last_event_id")}
        if token is None:
            raise ProblemError(401, "Not authenticated", "send {\"token\": ...} first or an Authorization header",
                               field="token")
        if hub is None:
            raise ProblemError(503, "Service unavailable", "live events are not configured")
        patient, types = _options(query)
        principal, patient = await run_in_threadpool(_ws_authorise, app, token, patient)
    except TimeoutError:
        await websocket.close(WS_POLICY_VIOLATION, "no token within 10 s")
        return
    except ProblemError as exc:
        await run_in_threadpool(_ws_audit, app, None, client, exc.status, {"reason": exc.detail}, exc.status < 500)
        await websocket.send_text(orjson.dumps({"error": {"status": exc.status, "detail": exc.detail,
                                                          "field": exc.extensions.get("field")}}).decode())
        await websocket.close(WS_POLICY_VIOLATION, "not authorised")
        return
    except WebSocketDisconnect:
        return
    await run_in_threadpool(_ws_audit, app, principal, client, 101, {"event": "connect", "patient": patient})
    visibility = _Visibility(principal)
    sub = hub.subscribe(can_see=visibility, patients=principal.patient_ids if patient is None else [patient],
                        types=types, after_id=_event_id(query.get("last_event_id")))
    state: dict[str, Any] = {"token": token, "sent": 0}
    await websocket.send_text(orjson.dumps({"ready": True, "patient": patient, "types": types}).decode())

    async def pump() -> None:
        loop = asyncio.get_running_loop()
        next_check = loop.time() + RECHECK_S
        while True:
            event = await sub.get(max(0.0, min(KEEPALIVE_S, next_check - loop.time())))
            if loop.time() >= next_check:
                again = await run_in_threadpool(_reauthenticate, app, str(state["token"]))
                if again is None:
                    await websocket.send_text('{"error":{"status":401,"detail":"the credential is no longer valid"}}')
                    await websocket.close(WS_POLICY_VIOLATION, "credential no longer valid")
                    return
                _refresh(sub, visibility, again, patient is None)
                next_check = loop.time() + RECHECK_S
            if event is None:
                if sub.closed:
                    await websocket.close(1001, "server going away")
                    return
                continue
            if not sub.wants(event):  # queued before a re-check narrowed what the caller may see
                continue
            gap = sub.take_gap()
            if gap:
                await websocket.send_text(f'{{"type":"lagged","dropped":{gap}}}')
            await websocket.send_text(event.json.decode())
            state["sent"] = int(state["sent"]) + 1

    async def listen() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            try:
                data = orjson.loads(message.get("text") or message.get("bytes") or b"")
            except orjson.JSONDecodeError:
                data = None
            if isinstance(data, dict) and data.get("type") == "ping":
                await websocket.send_text('{"type":"pong"}')
            elif isinstance(data, dict) and isinstance(data.get("token"), str):
                again = await run_in_threadpool(_reauthenticate, app, data["token"])
                if again is None:
                    await websocket.send_text('{"error":{"status":401,"detail":"invalid token","field":"token"}}')
                else:
                    state["token"] = data["token"]
                    _refresh(sub, visibility, again, patient is None)
            else:
                await websocket.send_text('{"error":{"status":422,"detail":"send {\\"type\\": \\"ping\\"} or '
                                          '{\\"token\\": ...}","field":"$"}}')

    try:
        async with anyio.create_task_group() as group:
            async def run_and_cancel(fn: Callable[[], Any]) -> None:
                with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                    await fn()
                group.cancel_scope.cancel()

            group.start_soon(run_and_cancel, pump)
            group.start_soon(run_and_cancel, listen)
    finally:
        sub.close()
        await run_in_threadpool(_ws_audit, app, principal, client, 200, {"event": "close", "sent": state["sent"]})


router.add_websocket_route("/events/ws", events_ws, name="events-ws")


# --- wiring -----------------------------------------------------------------------------------------------

def install(app: Any, store: Store) -> None:
    """Create the hub and the engine on ``app.state`` (``hub``, ``alerts``) and connect them to the sample
    pipeline (``app.state.ingest``) and the live glucose twin (``app.state.live_glucose``) when present.
    Idempotent: call it from ``create_app`` and again at startup (for services added later)."""
    if hub_of(app) is None:
        app.state.hub = EventHub()
    if engine_of(app) is None:
        app.state.alerts = AlertEngine(store, clock=lambda: app_clock(app)(), hub=app.state.hub)
    wired: set[str] = getattr(app.state, "alerts_wired", set())
    app.state.alerts_wired = wired
    from medtwin.alerts.hub import forecast_publisher, samples_publisher

    ingest = getattr(app.state, "ingest", None)
    if ingest is not None and hasattr(ingest, "add_listener") and "ingest" not in wired:
        ingest.add_listener(app.state.alerts.on_samples)
        ingest.add_listener(samples_publisher(app.state.hub))
        wired.add("ingest")
    live = getattr(app.state, "live_glucose", None)
    if live is not None and hasattr(live, "add_forecast_listener") and "live_glucose" not in wired:
        live.add_forecast_listener(app.state.alerts.on_forecast)
        live.add_forecast_listener(forecast_publisher(app.state.hub))
        wired.add("live_glucose")


def shutdown(app: Any) -> None:
    """Stop the engine (drain and save state) and end every event stream."""
    engine = engine_of(app)
    if engine is not None:
        engine.stop()
    hub = hub_of(app)
    if hub is not None:
        hub.close()
