"""Alerts, NEWS2 and the live event stream. Thin: authorise, call :mod:`medtwin.alerts.service`; the event
streams' protocol (SSE and WebSocket) lives in :mod:`medtwin.api.realtime`, the engine and hub wiring in
:mod:`medtwin.api.wiring`.

* ``GET /alerts`` (the caller's visible patients, most urgent first; ``status``: unresolved by default,
  which keeps every serious alert whose condition cleared until a person acknowledges it, or resolved,
  ...), ``GET /alerts/{alert_id}``, ``GET /patients/{patient_id}/alerts``; ``POST
  /alerts/{alert_id}/acknowledge`` (closes an alert whose condition has cleared: ``resolved`` by the
  caller) and ``.../resolve`` (write; 404 for an alert of a patient the caller cannot see; 409 for a
  transition its status does not allow). Alerts are FHIR ``Flag``-like, so their scope type is ``Flag``.
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

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from medtwin.alerts import service
from medtwin.alerts.engine import RULES
from medtwin.alerts.hub import EVENT_TYPES
from medtwin.alerts.news2 import News2InputError
from medtwin.alerts.repository import STATUSES, UNRESOLVED, Alert, AlertTransitionError
from medtwin.api import realtime
from medtwin.api.deps import (
    Caller,
    ObservationReader,
    ObservationWriter,
    PatientCall,
    Principal,
    ServicesDep,
    audit_context,
    caller,
    guard,
    patient_call,
    visible_patient,
)
from medtwin.api.paging import Offset
from medtwin.api.problems import ProblemError

router = APIRouter(tags=["alerts"])

StatusFilter = Literal["unresolved", "open", "acknowledged", "resolved", "all"]
RuleName = Literal[RULES]  # type: ignore[valid-type]
EventType = Literal["alert", "samples", "forecast"]
AlertId = Annotated[str, Path(min_length=1, max_length=64)]
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
    resolved_by: str | None = Field(description="a user, or 'system' when a low or medium alert's condition "
                                                "cleared (or a serious one a person had acknowledged)")
    message: str
    details: dict[str, Any]
    condition_cleared_at: datetime | None = Field(
        default=None, description="data time the condition stopped holding while the alert was open: a serious "
                                  "alert stays open ('condition cleared') until a person acknowledges it")
    needs_person: bool = Field(default=False, description="high or critical: closed only by a person, never by "
                                                          "the system alone")

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

def _statuses(status: StatusFilter) -> tuple[str, ...]:
    if status == "unresolved":
        return UNRESOLVED
    if status == "all":
        return STATUSES
    return (status,)


Status = Annotated[StatusFilter, Query(description="unresolved (open + acknowledged, the default), open, "
                                                   "acknowledged, resolved or all")]
Rule = Annotated[RuleName | None, Query(description="only this rule")]
Limit = Annotated[int, Query(ge=1, le=500)]
FlagReader = Annotated[Caller, Depends(caller("read", "Flag"))]
FlagWriter = Annotated[Caller, Depends(caller("write", "Flag"))]


@dataclass(frozen=True)
class AlertFilter:
    """The query of an alert list: which statuses and rule, which page."""

    status: StatusFilter
    rule: str | None
    limit: int
    offset: int

    def page(self, caller: Caller, patient_id: str | None) -> AlertPage:
        total, items = service.list_alerts(caller.store, allowed=caller.principal.patient_ids, patient_id=patient_id,
                                           statuses=_statuses(self.status), rule=self.rule, limit=self.limit,
                                           offset=self.offset)
        return AlertPage(total=total, limit=self.limit, offset=self.offset, items=[AlertPublic.of(a) for a in items])


def _alert_filter(status: Status = "unresolved", rule: Rule = None, limit: Limit = 100,
                  offset: Offset = 0) -> AlertFilter:
    return AlertFilter(status, rule, limit, offset)


Filter = Annotated[AlertFilter, Depends(_alert_filter)]


# --- alerts -----------------------------------------------------------------------------------------------

@router.get("/alerts", response_model=AlertPage, summary="Alerts of the caller's patients, most urgent first")
def list_alerts(
    call: FlagReader,
    query: Filter,
    patient: Annotated[str | None, Query(min_length=1, max_length=64, description="a patient id or MRN")] = None,
) -> AlertPage:
    patient_id = visible_patient(call.store, call.principal, patient, "patient") if patient is not None else None
    return query.page(call, patient_id)


@router.get("/patients/{patient_id}/alerts", response_model=AlertPage, summary="A patient's alerts")
def patient_alerts(call: Annotated[PatientCall, Depends(patient_call("read", "Flag"))], query: Filter) -> AlertPage:
    return query.page(call, call.patient_id)


def _not_found(alert_id: str) -> ProblemError:
    return ProblemError(404, "Not found", f"no alert {alert_id!r}", kind="not-found", field="alert_id")


@router.get("/alerts/{alert_id}", response_model=AlertPublic, summary="One alert")
def get_alert(alert_id: AlertId, call: FlagReader) -> AlertPublic:
    try:
        return AlertPublic.of(service.get_alert(call.store, alert_id, call.principal.can_see))
    except service.AlertNotFound:
        raise _not_found(alert_id) from None


def _transition(request: Request, call: Caller, alert_id: str, action: str) -> AlertPublic:
    ctx = audit_context(request)
    ctx.resource_id = alert_id
    try:
        alert = service.transition(call.store, alert_id, action, actor=call.actor, can_see=call.principal.can_see,
                                   clock=call.clock, hub=call.services.hub)
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
             summary="Acknowledge an open alert (409 unless it is open); one whose condition has cleared is "
                     "thereby resolved by the caller")
def acknowledge(alert_id: AlertId, request: Request, call: FlagWriter) -> AlertPublic:
    return _transition(request, call, alert_id, "acknowledge")


@router.post("/alerts/{alert_id}/resolve", response_model=AlertPublic,
             summary="Resolve an open or acknowledged alert (409 when already resolved)")
def resolve(alert_id: AlertId, request: Request, call: FlagWriter) -> AlertPublic:
    return _transition(request, call, alert_id, "resolve")


# --- NEWS2 ------------------------------------------------------------------------------------------------

@router.get("/patients/{patient_id}/news2", response_model=News2Public,
            summary="NEWS2 (RCP 2017) over the latest vital signs, with every parameter's sub-score")
def get_news2(call: ObservationReader) -> News2Public:
    try:
        with call.store.connect() as connection:
            found = service.latest_news2(connection, call.store.codec, call.patient_id)
    except News2InputError as exc:
        raise ProblemError(422, "Invalid vital sign", str(exc), kind="validation", field=exc.field) from None
    if found is None:
        raise ProblemError(404, "Not found", f"patient {call.requested!r} has no vital signs", kind="not-found",
                           field="patient_id")
    return News2Public.model_validate({"patient_id": call.patient_id, **found})


@router.put("/patients/{patient_id}/news2/spo2-scale", response_model=Spo2ScalePublic,
            summary="Choose the patient's SpO2 scale (2: hypercapnic respiratory failure)")
def set_spo2_scale(body: Spo2ScaleBody, request: Request, call: ObservationWriter) -> Spo2ScalePublic:
    call.services.alerts.set_setting(call.patient_id, "spo2_scale", body.scale, actor=call.actor)  # re-scores NEWS2
    audit_context(request).detail["spo2_scale"] = body.scale
    return Spo2ScalePublic(patient_id=call.patient_id, spo2_scale=body.scale)


# --- event streams (the protocol: medtwin.api.realtime) ---------------------------------------------

@router.get("/events", summary="Live events (Server-Sent Events): alerts, samples, forecasts",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}},
                             "description": "an event stream; each message has an event name, data (JSON) and, "
                                            "for hub events, an id"}})
async def events(
    request: Request,
    services: ServicesDep,
    principal: Annotated[Principal, Depends(guard("read", "Observation"))],
    patient: Annotated[str | None, Query(min_length=1, max_length=64, description="only this patient")] = None,
    types: Annotated[list[EventType] | None, Query(description="only these event types (repeat)")] = None,
    timeout: Annotated[float, Query(ge=0, le=3600, description="end the stream after this many seconds")] = 900,
    max_events: Annotated[int | None, Query(ge=1, le=1_000_000, description="end after this many events")] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=32,
                                                 description="a reconnecting reader's last event id: replay "
                                                             "what followed it")] = None,
) -> StreamingResponse:
    return await realtime.event_stream(request, services, principal, patient=patient,
                                       types=None if types is None else list(types), timeout=timeout,
                                       max_events=max_events, last_event_id=last_event_id)


router.add_websocket_route("/events/ws", realtime.event_socket, name="events-ws")
