"""The realtime protocol servers: the live event stream over Server-Sent Events (``GET /events``) and over a
WebSocket (``/events/ws``), and the device samples WebSocket (``/patients/{patient_id}/stream``).

Routers declare these routes and call in here; this module holds the connection handling: authentication
(``Authorization: Bearer`` or a first message ``{"token": ...}`` within :data:`AUTH_TIMEOUT_S`), the
credential re-check every :data:`RECHECK_S` (expiry, revocation, care-team changes), keep-alive, the
backpressure of the event hub (a slow reader loses events and is told how many: ``lagged``), audit entries
for sockets (the audit middleware sees HTTP only) and close codes (1008 policy violation: not authorised
or no longer; 1001 the server is going away). Why apart from the routers: a protocol server is a state
machine with timers, not a route; kept here, each router stays a list of thin routes and the two sockets
share one handshake, one re-check and one audit writer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.websockets import WebSocket, WebSocketDisconnect

from medtwin.alerts.hub import EVENT_TYPES, Event, Subscription
from medtwin.api.deps import Principal, authenticate_token, device_name, ingest_problem, visible_patient
from medtwin.api.problems import ProblemError
from medtwin.api.services import Services, services_of
from medtwin.security import audit
from medtwin.security.policy import decide
from medtwin.stream.parse import PayloadError
from medtwin.stream.pipeline import (
    BatchTooLargeError,
    IngestPipeline,
    RateLimitedError,
    UnknownPatientError,
)

__all__ = ["AUTH_TIMEOUT_S", "KEEPALIVE_S", "RECHECK_S", "event_socket", "event_stream", "sample_socket"]

KEEPALIVE_S = 15.0  # an SSE comment when nothing else was sent
RECHECK_S = 60.0  # re-verify the credential this often (read at run time: tests shorten it)
AUTH_TIMEOUT_S = 10.0  # a socket without a header token must send one this soon
POLICY_VIOLATION = 1008
GOING_AWAY = 1001


# --- shared ----------------------------------------------------------------------------------------------

def bearer_token(headers: Mapping[str, str]) -> str | None:
    header = headers.get("authorization") or ""
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return None


def reauthorise(services: Services, token: str, action: str, resource: str) -> Principal | None:
    """The principal of ``token`` if it still authenticates and may ``action`` on ``resource``, else None."""
    try:
        principal = authenticate_token(services, token)
    except ProblemError:
        return None
    return principal if decide(principal, action, resource).allowed else None


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _json_object(message: Mapping[str, Any]) -> dict[str, Any]:
    """A received WebSocket message as a JSON object; ``{}`` when it is not one."""
    raw = message.get("text") if message.get("text") is not None else message.get("bytes")
    try:
        data = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


async def _hello(websocket: WebSocket) -> dict[str, Any] | None:
    """The first message (a JSON object, ``{}`` if it is none), None on disconnect; :class:`TimeoutError`
    after :data:`AUTH_TIMEOUT_S`."""
    with anyio.fail_after(AUTH_TIMEOUT_S):
        first = await websocket.receive()
    if first.get("type") == "websocket.disconnect":
        return None
    return _json_object(first)


def _token_of(hello: Mapping[str, Any]) -> str | None:
    token = hello.get("token")
    return token if isinstance(token, str) else None


@dataclass(frozen=True)
class SocketAudit:
    """Audit entries of one socket (the audit middleware records HTTP requests only)."""

    services: Services
    action: str
    resource_type: str
    route: str
    client: str | None
    resource_id: str | None = None

    def write(self, principal: Principal | None, status: int, detail: dict[str, Any], *, denied: bool = False,
              patient_id: str | None = None) -> None:
        entry = audit.AuditEntry(
            actor=principal.subject if principal else "anonymous", role=principal.role if principal else "none",
            action=self.action, resource_type=self.resource_type, resource_id=self.resource_id,
            patient_id=patient_id, outcome="success" if status < 400 else ("denied" if denied else "failure"),
            status=status, client=self.client, detail={"route": self.route, "method": "WEBSOCKET", **detail})
        with self.services.store.begin() as connection:
            audit.append(connection, entry, self.services.security.clock)  # the audit trail: wall clock

    async def log(self, principal: Principal | None, status: int, detail: dict[str, Any], *, denied: bool = False,
                  patient_id: str | None = None) -> None:
        await run_in_threadpool(lambda: self.write(principal, status, detail, denied=denied, patient_id=patient_id))


def _socket_audit(websocket: WebSocket, services: Services, action: str, resource_type: str,
                  resource_id: str | None = None) -> SocketAudit:
    from medtwin.api.security_middleware import route_template  # the route as declared: no identifier logged

    client = websocket.client.host if websocket.client else None
    return SocketAudit(services, action, resource_type, route_template(websocket.scope), client, resource_id)


async def _until_first_ends(*parts: Callable[[], Awaitable[None]]) -> None:
    """Run ``parts`` together; when one returns (or its socket is gone) cancel the others."""
    async with anyio.create_task_group() as group:
        async def run_and_cancel(part: Callable[[], Awaitable[None]]) -> None:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                await part()
            group.cancel_scope.cancel()

        for part in parts:
            group.start_soon(run_and_cancel, part)


# --- live events: one subscription to the hub, over SSE or a WebSocket -----------------------------------

class _Visibility:
    """A subscription's ``can_see``, replaceable when the credential is re-checked."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal

    def __call__(self, patient_id: str) -> bool:
        return self.principal.can_see(patient_id)


@dataclass
class _Reader:
    """One reader of the hub: its subscription and who it is now (re-checked every :data:`RECHECK_S`)."""

    sub: Subscription
    visibility: _Visibility
    token: str | None
    follow_care_team: bool  # no patient filter: the subscription follows the caller's care team
    sent: int = 0

    @classmethod
    def subscribe(cls, services: Services, principal: Principal, token: str | None, patient: str | None,
                  types: list[str] | None, last_event_id: Any) -> _Reader:
        visibility = _Visibility(principal)
        patients = principal.patient_ids if patient is None else frozenset({patient})
        sub = services.hub.subscribe(can_see=visibility, patients=patients, types=types,
                                     after_id=event_id(last_event_id))
        return cls(sub, visibility, token, follow_care_team=patient is None)

    def refresh(self, principal: Principal) -> None:
        """A re-checked credential: new visibility, and (without a patient filter) the new care team."""
        if self.follow_care_team and principal.patient_ids != self.visibility.principal.patient_ids:
            self.sub.hub.set_patients(self.sub, principal.patient_ids)
        self.visibility.principal = principal

    async def recheck(self, services: Services) -> bool:
        """Re-verify the credential; False when it no longer holds."""
        if self.token is None:
            return True
        principal = await run_in_threadpool(reauthorise, services, self.token, "read", "Observation")
        if principal is None:
            return False
        self.refresh(principal)
        return True

    def gap_before(self, event: Event) -> int | None:
        """None: skip ``event`` (queued before a re-check narrowed what the caller may see); else how many
        events the hub dropped before it (0: none)."""
        if not self.sub.wants(event):
            return None
        return self.sub.take_gap()


def event_id(raw: Any) -> int | None:
    """A Last-Event-ID (header or WebSocket field); anything but a plain non-negative integer is ignored."""
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return raw
    if isinstance(raw, str) and raw.isdigit() and len(raw) <= 18:
        return int(raw)
    return None


def _sse(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (kind.encode(), orjson.dumps(data))


@dataclass
class _SseStream:
    services: Services
    reader: _Reader
    timeout: float
    max_events: int | None
    deadline: float = 0.0
    next_check: float = 0.0

    async def step(self, loop: asyncio.AbstractEventLoop) -> tuple[list[bytes], bool]:
        """The next chunks of the stream and whether it ends after them."""
        now = loop.time()
        if now >= self.deadline:
            return [_sse("end", {"reason": "timeout", "events": self.reader.sent})], True
        if now >= self.next_check:
            if not await self.reader.recheck(self.services):
                return [_sse("error", {"status": 401, "detail": "the credential is no longer valid"})], True
            self.next_check = now + RECHECK_S
        event = await self.reader.sub.get(min(self.deadline - now, self.next_check - now, KEEPALIVE_S))
        if event is None:
            if self.reader.sub.closed:
                return [_sse("end", {"reason": "closed", "events": self.reader.sent})], True
            return ([b": keepalive\n\n"] if loop.time() < self.deadline else []), False
        gap = self.reader.gap_before(event)
        if gap is None:
            return [], False
        chunks = [_sse("lagged", {"dropped": gap})] if gap else []
        chunks.append(event.sse())
        self.reader.sent += 1
        return chunks, self.max_events is not None and self.reader.sent >= self.max_events

    async def body(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        self.deadline, self.next_check = loop.time() + self.timeout, loop.time() + RECHECK_S
        try:
            yield b"retry: 3000\n: connected\n\n"
            done = False
            while not done:
                chunks, done = await self.step(loop)
                for chunk in chunks:
                    yield chunk
        finally:
            self.reader.sub.close()


async def event_stream(request: Request, services: Services, principal: Principal, *, patient: str | None,
                       types: list[str] | None, timeout: float, max_events: int | None,
                       last_event_id: str | None) -> StreamingResponse:
    """``GET /events`` for an authorised ``principal``: the hub's events as Server-Sent Events (see
    :mod:`medtwin.api.routers.alerts` for the format). ``patient`` (an id or MRN) must be visible (404)."""
    if patient is not None:
        patient = await run_in_threadpool(visible_patient, services.store, principal, patient, "patient")
    reader = _Reader.subscribe(services, principal, bearer_token(request.headers), patient, types, last_event_id)
    stream = _SseStream(services, reader, timeout, max_events)
    return StreamingResponse(stream.body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _event_options(raw: Mapping[str, Any]) -> tuple[str | None, list[str] | None]:
    patient, types = raw.get("patient"), raw.get("types")
    if patient is not None and (not isinstance(patient, str) or not 0 < len(patient) <= 64):
        raise ProblemError(422, "Invalid request", "patient: a patient id or MRN", field="patient")
    if types is not None and (not isinstance(types, list) or any(t not in EVENT_TYPES for t in types)):
        raise ProblemError(422, "Invalid request", f"types: a list of {', '.join(EVENT_TYPES)}", field="types")
    return patient, types


def _authorise_events(services: Services, token: str, patient: str | None) -> tuple[Principal, str | None]:
    try:
        principal = authenticate_token(services, token)
    except ProblemError:
        raise ProblemError(401, "Not authenticated", "the token is invalid, expired or revoked") from None
    decision = decide(principal, "read", "Observation")
    if not decision.allowed:
        raise ProblemError(decision.status, "Forbidden", decision.reason)
    if patient is not None:
        patient = visible_patient(services.store, principal, patient, "patient")
    return principal, patient


@dataclass
class _EventHello:
    token: str
    principal: Principal
    patient: str | None
    types: list[str] | None
    last_event_id: Any


async def _open_events(websocket: WebSocket, services: Services) -> _EventHello | None:
    """Authenticate an events socket: the header token with query options, or the first message's."""
    token = bearer_token(websocket.headers)
    params = websocket.query_params
    options: dict[str, Any] = {"patient": params.get("patient"), "types": params.getlist("types") or None,
                               "last_event_id": params.get("last_event_id")}
    if token is None:
        hello = await _hello(websocket)
        if hello is None:
            return None
        token = _token_of(hello)
        options = {name: hello.get(name) for name in options}
    if token is None:
        raise ProblemError(401, "Not authenticated", "send {\"token\": ...} first or an Authorization header",
                           field="token")
    patient, types = _event_options(options)
    principal, patient = await run_in_threadpool(_authorise_events, services, token, patient)
    return _EventHello(token, principal, patient, types, options["last_event_id"])


async def _event_pump(websocket: WebSocket, services: Services, reader: _Reader) -> None:
    """Hub events to the socket; every :data:`RECHECK_S` the credential again (closing with 1008)."""
    loop = asyncio.get_running_loop()
    next_check = loop.time() + RECHECK_S
    while True:
        event = await reader.sub.get(max(0.0, min(KEEPALIVE_S, next_check - loop.time())))
        if loop.time() >= next_check:
            if not await reader.recheck(services):
                await websocket.send_text('{"error":{"status":401,"detail":"the credential is no longer valid"}}')
                await websocket.close(POLICY_VIOLATION, "credential no longer valid")
                return
            next_check = loop.time() + RECHECK_S
        if event is None:
            if reader.sub.closed:
                await websocket.close(GOING_AWAY, "server going away")
                return
            continue
        gap = reader.gap_before(event)
        if gap:
            await websocket.send_text(f'{{"type":"lagged","dropped":{gap}}}')
        if gap is not None:
            await websocket.send_text(event.json.decode())
            reader.sent += 1


async def _event_reply(services: Services, reader: _Reader, data: Mapping[str, Any]) -> str | None:
    """The answer to a client message: ``ping`` -> ``pong``; a new ``token`` is checked and taken silently
    (None: no answer)."""
    if data.get("type") == "ping":
        return '{"type":"pong"}'
    token = _token_of(data)
    if token is None:
        return '{"error":{"status":422,"detail":"send {\\"type\\": \\"ping\\"} or {\\"token\\": ...}","field":"$"}}'
    principal = await run_in_threadpool(reauthorise, services, token, "read", "Observation")
    if principal is None:
        return '{"error":{"status":401,"detail":"invalid token","field":"token"}}'
    reader.token = token
    reader.refresh(principal)
    return None


async def _event_listen(websocket: WebSocket, services: Services, reader: _Reader) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        reply = await _event_reply(services, reader, _json_object(message))
        if reply is not None:
            await websocket.send_text(reply)


async def event_socket(websocket: WebSocket) -> None:
    """``/events/ws``: the event stream over a WebSocket. Frames from the server: ``{"ready": true, ...}``,
    then each event ``{"id", "type", "patient_id", "published_at", "data"}``, ``{"type": "lagged",
    "dropped": n}``, ``{"type": "pong"}`` and ``{"error": {status, detail, field}}``. From the client:
    ``{"token": "...", "patient", "types", "last_event_id"}`` (first, unless an ``Authorization`` header
    was sent; later to refresh the token) and ``{"type": "ping"}``."""
    services = services_of(websocket.app)
    log = _socket_audit(websocket, services, "read", "Observation", "events")
    await websocket.accept()
    try:
        hello = await _open_events(websocket, services)
    except TimeoutError:
        await websocket.close(POLICY_VIOLATION, "no token within 10 s")
        return
    except ProblemError as exc:
        await log.log(None, exc.status, {"reason": exc.detail}, denied=exc.status < 500)
        await websocket.send_text(_dumps({"error": {"status": exc.status, "detail": exc.detail,
                                                    "field": exc.extensions.get("field")}}))
        await websocket.close(POLICY_VIOLATION, "not authorised")
        return
    except WebSocketDisconnect:
        return
    if hello is None:
        return
    await log.log(hello.principal, 101, {"event": "connect", "patient": hello.patient})
    reader = _Reader.subscribe(services, hello.principal, hello.token, hello.patient, hello.types,
                               hello.last_event_id)
    try:
        await websocket.send_text(_dumps({"ready": True, "patient": hello.patient, "types": hello.types}))
        await _until_first_ends(lambda: _event_pump(websocket, services, reader),
                                lambda: _event_listen(websocket, services, reader))
    finally:
        reader.sub.close()
        await log.log(hello.principal, 200, {"event": "close", "sent": reader.sent})


# --- device samples over a WebSocket ---------------------------------------------------------------------

def _sample_error(seq: Any, status: int, reason: str | None, detail: str | None, field: str | None = None,
                  **extra: Any) -> dict[str, Any]:
    return {"seq": seq, "error": {"status": status, "reason": reason, "detail": detail, "field": field, **extra}}


def _authorise_samples(services: Services, token: str, raw_patient: str) -> tuple[Principal, str, str | None]:
    """(principal, stored patient id, device) of a samples socket, or :class:`ProblemError` (401/403/404)."""
    from medtwin.api.deps import _resolve_patient  # the guard's own step: an MRN of a patient in reach

    principal = authenticate_token(services, token)
    patient = _resolve_patient(services.store, raw_patient)  # id or MRN only, for every role
    decision = decide(principal, "write", "samples", "POST", patient)
    if not decision.allowed:
        raise ProblemError(decision.status, "Forbidden",
                           "patient not found" if decision.status == 404 else decision.reason)
    try:
        patient = services.ingest.resolve_patient(patient)
    except UnknownPatientError:
        raise ProblemError(404, "Not found", "patient not found") from None
    return principal, patient, device_name(services.store, principal)


@dataclass
class _SampleSession:
    services: Services
    token: str
    raw_patient: str
    principal: Principal
    patient: str
    device: str | None
    totals: dict[str, int] = field(default_factory=lambda: {"messages": 0, "accepted": 0, "duplicates": 0,
                                                            "quarantined": 0})

    def count(self, reply: Mapping[str, Any]) -> None:
        self.totals["messages"] += 1
        if "error" not in reply:
            self.totals["accepted"] += reply["accepted"]
            self.totals["duplicates"] += reply["duplicates"]
            self.totals["quarantined"] += len(reply["quarantined"])

    async def recheck(self) -> ProblemError | None:
        try:
            await run_in_threadpool(_authorise_samples, self.services, self.token, self.raw_patient)
        except ProblemError as exc:
            return exc
        return None


async def _open_samples(websocket: WebSocket, services: Services, raw_patient: str) -> _SampleSession | None:
    token = bearer_token(websocket.headers)
    if token is None:
        hello = await _hello(websocket)
        if hello is None:
            return None
        token = _token_of(hello)
    if token is None:
        await websocket.send_text(_dumps(_sample_error(None, 401, "not-authenticated", "send {\"token\": ...} "
                                                       "first or an Authorization: Bearer header", "token")))
        await websocket.close(POLICY_VIOLATION, "not authenticated")
        return None
    principal, patient, device = await run_in_threadpool(_authorise_samples, services, token, raw_patient)
    return _SampleSession(services, token, raw_patient, principal, patient, device)


def _batch_of(data: bytes | str) -> tuple[Any, Any] | dict[str, Any]:
    """(seq, payload) of a message ``{"seq": n, "samples": payload}``, or the error reply."""
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return _sample_error(None, 422, "malformed", f"the message is not JSON ({exc})", "$")
    if not isinstance(message, dict):
        return _sample_error(None, 422, "malformed", "a message is an object {\"seq\": n, \"samples\": ...}", "$")
    seq = message.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int | str) or (isinstance(seq, str) and len(seq) > 64):
        return _sample_error(None, 422, "missing" if seq is None else "malformed",
                             "seq (an integer or a short string) is required", "seq")
    if "samples" not in message:
        return _sample_error(seq, 422, "missing", "samples (any payload POST .../samples takes) is required",
                             "samples")
    if not isinstance(message["samples"], list | dict):
        return _sample_error(seq, 422, "malformed", "samples must be a JSON array or object (not a string)",
                             "samples")
    return seq, message["samples"]


def sample_batch(pipeline: IngestPipeline, data: bytes | str, patient: str, device: str | None,
                 rate_key: str) -> dict[str, Any]:
    """One WebSocket message -> its reply (never raises for bad input)."""
    batch = _batch_of(data)
    if isinstance(batch, dict):
        return batch
    seq, payload = batch
    try:
        report = pipeline.ingest(payload, patient_id=patient, device=device, source="websocket", rate_key=rate_key)
    except (UnknownPatientError, RateLimitedError, BatchTooLargeError, PayloadError) as exc:
        problem = ingest_problem(exc)
        field_: str | None
        detail: str | None
        if isinstance(exc, PayloadError):
            field_, detail = (f"samples.{exc.field}" if exc.field != "$" else "samples"), exc.detail
        else:
            field_, detail = problem.extensions.get("field"), problem.detail
        extra = {"retry_after": problem.extensions.get("retry_after")} if isinstance(exc, RateLimitedError) else {}
        return _sample_error(seq, problem.status, problem.kind, detail, field_, **extra)
    return {"seq": seq, "accepted": report.accepted, "duplicates": report.duplicates,
            "quarantined": [q.to_dict() for q in report.quarantined]}


async def _sample_loop(websocket: WebSocket, session: _SampleSession, max_bytes: int) -> None:
    """Batches in, one reply each after its commit; the credential re-checked every :data:`RECHECK_S`."""
    checked = anyio.current_time()
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("bytes") if message.get("bytes") is not None else message.get("text")
        if data is None:
            continue
        if len(data) > max_bytes:
            await websocket.send_text(_dumps(_sample_error(None, 413, "too-large",
                                                           f"a message may hold {max_bytes} bytes")))
            continue
        if anyio.current_time() - checked > RECHECK_S:
            refused = await session.recheck()
            if refused is not None:
                await websocket.send_text(_dumps(_sample_error(None, refused.status, "not-authenticated",
                                                               refused.detail or refused.title)))
                await websocket.close(POLICY_VIOLATION, "credential no longer valid")
                return
            checked = anyio.current_time()
        reply = await run_in_threadpool(sample_batch, session.services.ingest, data, session.patient,
                                        session.device, session.principal.subject)
        session.count(reply)
        await websocket.send_text(_dumps(reply))


async def sample_socket(websocket: WebSocket) -> None:
    """``/patients/{patient_id}/stream``: authenticate (``Authorization: Bearer`` header, or a first message
    ``{"token": "..."}`` within 10 s, for browsers), then send batches ``{"seq": n, "samples": payload}``
    where ``payload`` is any format ``POST .../samples`` takes. Each batch is answered after its commit
    with ``{"seq", "accepted", "duplicates", "quarantined": [{index, field, reason, detail}]}``; a bad
    message gets ``{"seq", "error": {status, reason, detail, field}}`` and the socket stays open
    (429: ``retry_after`` seconds). Authentication failures close the socket with code 1008."""
    services = services_of(websocket.app)
    raw_patient = str(websocket.path_params.get("patient_id", ""))
    log = _socket_audit(websocket, services, "write", "samples")
    await websocket.accept()
    try:
        session = await _open_samples(websocket, services, raw_patient)
    except TimeoutError:
        await websocket.close(POLICY_VIOLATION, "no token within 10 s")
        return
    except ProblemError as exc:
        detail = exc.detail or exc.title
        await log.log(None, exc.status, {"reason": detail}, denied=True)  # raw_patient may be an identifier
        await websocket.send_text(_dumps(_sample_error(None, exc.status, "not-authenticated" if exc.status == 401
                                                       else "forbidden", detail)))
        await websocket.close(POLICY_VIOLATION, "not authorised")
        return
    except WebSocketDisconnect:
        return
    if session is None:
        return
    await log.log(session.principal, 101, {"event": "connect"}, patient_id=session.patient)
    await websocket.send_text(_dumps({"ready": True, "patient_id": session.patient, "device": session.device}))
    try:
        await _sample_loop(websocket, session, services.settings.max_upload_bytes)
    except WebSocketDisconnect:
        pass
    finally:
        await log.log(session.principal, 200, {"event": "close", **session.totals}, patient_id=session.patient)
