"""Request dependencies shared by every router: the store, settings and the access guard.

Every route declares what it does with ``guard(action, resource)``: the guard authenticates the caller
(a JWT access token, or a device key ``mtk_...``, as ``Authorization: Bearer``), checks role, token scopes
and patient scope (:func:`medtwin.security.policy.decide`), records the decision for the audit middleware
and returns the :class:`Principal` the handler passes on to the services (list queries filter with
``principal.patient_ids``). A patient outside the caller's reach is answered 404, like a missing one.

A route without a guard is a bug; ``tests/api/test_authorization.py`` fails on it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import select

from medtwin.api.problems import ProblemError
from medtwin.api.services import Services, services_of
from medtwin.config import Settings
from medtwin.security.accounts import API_KEY_PREFIX, verify_api_key
from medtwin.security.crypto import KeyRing
from medtwin.security.policy import Principal, decide, principal_for_device, principal_for_user
from medtwin.security.tokens import TokenError, TokenService
from medtwin.store.database import Store
from medtwin.store.security_tables import api_keys
from medtwin.stream.parse import PayloadError
from medtwin.stream.pipeline import BatchTooLargeError, RateLimitedError, UnknownPatientError

__all__ = ["GUARD_MARKER", "AUDIT_SCOPE_KEY", "AuditContext", "Principal", "SecurityContext", "ServicesDep",
           "StoreDep", "SettingsDep", "guard", "get_services", "get_store", "get_settings", "client_address"]

GUARD_MARKER = "__medtwin_guard__"
AUDIT_SCOPE_KEY = "medtwin.audit"
TOKEN_URL = "/api/v1/auth/token"

oauth2_scheme = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False,
                                     description="JWT access token from the token endpoint, or a device key")


@dataclass(frozen=True)
class SecurityContext:
    """What the security glue needs, built once per app by ``install_security``."""

    keyring: KeyRing
    tokens: TokenService
    clock: Callable[[], datetime]
    settings: Settings


@dataclass
class AuditContext:
    """Filled in during a request (by the guard or the token endpoint); written by the audit middleware."""

    client: str | None = None
    action: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    patient_id: str | None = None
    actor: str = "anonymous"
    role: str = "none"
    denied: bool = False
    detail: dict[str, Any] = field(default_factory=dict)


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


def audit_context(request: Request) -> AuditContext:
    ctx = request.scope.get(AUDIT_SCOPE_KEY)
    if not isinstance(ctx, AuditContext):  # the app was built without the audit middleware
        ctx = AuditContext(client=client_address(request))
        request.scope[AUDIT_SCOPE_KEY] = ctx
    return ctx


def security_context(request: Request) -> SecurityContext:
    return services_of(request.app).security


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(401, "Not authenticated", detail, kind="not-authenticated",
                        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def resolve_path_patient(store: Store, raw: str) -> str | None:
    """The stored id of the patient a path names by id or by medical record number, else None.

    Only a record number is accepted (:func:`medtwin.record.identifiers.names_the_patient`): an SSN, driver's
    licence or passport number in a URL would be written by every proxy and access log on the way, so those
    are found through the search API (``GET /patients?identifier=``, where the value stays in the query) and
    never resolve in a path. The store's :meth:`RecordRepository.resolve_patient` holds the rule, so the
    ingest pipeline (HTTP, WebSocket, MQTT topics) and the CLI follow it too."""
    from medtwin.store.records import resolve_patient

    return resolve_patient(store, raw)


def _resolve_patient(store: Store, raw: str) -> str:
    """The stored id (:func:`resolve_path_patient`), else a blind index of ``raw``: never the raw value, which
    may be an identifier, since what the guard decides on is written to the audit log."""
    return resolve_path_patient(store, raw) or _blind_reference(store, raw)


def _blind_reference(store: Store, raw: str) -> str:
    return "blind:" + store.codec.blind(f"path-patient|{raw}")[:40]


def authenticate(request: Request, token: str | None) -> Principal:
    """The caller, or 401."""
    return authenticate_token(services_of(request.app), token)


def authenticate_token(services: Services, token: str | None) -> Principal:
    """The caller holding ``token`` (a JWT access token or a device key), or 401. Also what the event
    streams and sockets call to re-check a credential (:mod:`medtwin.api.realtime`)."""
    sec, store = services.security, services.store
    if not token:
        raise ProblemError(401, "Not authenticated", "an access token is required (Authorization: Bearer)",
                           kind="not-authenticated", headers={"WWW-Authenticate": "Bearer"})
    with store.begin() as connection:
        if token.startswith(API_KEY_PREFIX):
            key = verify_api_key(connection, token, sec.keyring.index_key)
            if key is None:
                raise _unauthorized("device key is unknown or revoked")
            return principal_for_device(key.id, key.name, key.patient_id)
        try:
            claims = sec.tokens.verify_access(connection, token)
        except TokenError as exc:
            raise _unauthorized(str(exc)) from exc
        return principal_for_user(connection, claims.user, claims.scopes)


def guard(action: str, resource: str) -> Callable[..., Principal]:
    """Declare and enforce the policy of a route: ``action`` in read/write/export/simulate/admin/research/
    consent/identity, ``resource`` a FHIR type or a route family (``samples``, ``audit``, ...). A path
    parameter named ``patient_id`` (an id or an MRN) is checked against the caller's patient scope."""

    def dependency(request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]) -> Principal:
        audit = audit_context(request)
        audit.action, audit.resource_type = action, resource
        raw_patient = request.path_params.get("patient_id")
        audit.resource_id = request.path_params.get("resource_id") or request.path_params.get("id")
        try:
            principal = authenticate(request, token)
        except ProblemError:
            audit.denied = True
            raise
        audit.actor, audit.role = principal.subject, principal.role
        patient_id = None
        if isinstance(raw_patient, str) and raw_patient:  # resolved before anything is logged
            patient_id = _resolve_patient(services_of(request.app).store, raw_patient)
        audit.patient_id = patient_id
        decision = decide(principal, action, resource, request.method, patient_id)
        if not decision.allowed:
            audit.denied = True
            audit.detail["reason"] = decision.reason
            if decision.status == 404:
                raise ProblemError(404, "Not found", f"no patient {raw_patient!r}", kind="not-found",
                                   field="patient_id")
            raise ProblemError(decision.status, "Forbidden", decision.reason, kind="forbidden")
        request.state.principal = principal
        return principal

    setattr(dependency, GUARD_MARKER, (action, resource))
    return dependency


def get_services(request: Request) -> Services:
    """The app's services (``app.state.services``, built by ``create_app``)."""
    return services_of(request.app)


def get_store(request: Request) -> Store:
    return services_of(request.app).store


def get_settings(request: Request) -> Settings:
    return services_of(request.app).settings


ServicesDep = Annotated[Services, Depends(get_services)]
StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


@dataclass(frozen=True)
class RoutePolicy:
    method: str
    path: str
    policy: tuple[str, str] | None  # (action, resource) of the route's guard; None: no guard


def _guards(dependant: Any) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    marker = getattr(getattr(dependant, "call", None), GUARD_MARKER, None)
    if marker is not None:
        found.append(marker)
    for sub in getattr(dependant, "dependencies", []) or []:
        found.extend(_guards(sub))
    return found


def route_policies(app: Any) -> list[RoutePolicy]:
    """Every API route of ``app`` with the policy its guard declares (walks included routers)."""
    from fastapi.routing import APIRoute

    def walk(routes: Any) -> Any:
        for route in routes:
            contexts = getattr(route, "effective_route_contexts", None)
            if contexts is not None:
                yield from contexts()
            else:
                yield route

    result = []
    for route in walk(app.routes):
        dependant = getattr(route, "dependant", None)
        if dependant is None and not isinstance(route, APIRoute):
            continue
        guards = _guards(dependant)
        for method in sorted(route.methods or ()):
            result.append(RoutePolicy(method, route.path, guards[0] if guards else None))
    return result


def visible_patient(store: Store, principal: Principal, patient_id: str, field: str = "patient_id") -> str:
    """The stored id of ``patient_id`` (an id or an MRN: :func:`resolve_path_patient`) if the caller may see
    it; 404 otherwise (never 403: whether a patient exists is itself health information). ``field`` names
    the input in the problem."""
    resolved = resolve_path_patient(store, patient_id)
    if resolved is None or not principal.can_see(resolved):
        raise ProblemError(404, "Not found", f"no patient {patient_id!r}", kind="not-found", field=field)
    return resolved


def app_clock(app: Any) -> Callable[[], datetime]:
    """The app's clock (the security context's)."""
    return services_of(app).clock


# --- the parameter bundles routes share -------------------------------------------------------------------

@dataclass(frozen=True)
class Caller:
    """Who calls (the guard's principal) and the app's services: what most routes need."""

    principal: Principal
    services: Services
    store: Store  # services.store, the one most routes use

    @property
    def actor(self) -> str:
        return self.principal.subject

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.services.clock


@dataclass(frozen=True)
class PatientCall(Caller):
    """A call about one patient the caller may see: ``patient_id`` is the stored id, ``requested`` the path's
    (an id or an MRN, for messages)."""

    patient_id: str
    requested: str

    def not_found(self, what: str) -> ProblemError:
        """404 for a visible patient without ``what`` (e.g. ``"no vital signs"``)."""
        return ProblemError(404, "Not found", f"patient {self.requested!r} has {what}", kind="not-found",
                            field="patient_id")


def caller(action: str, resource: str) -> Callable[..., Caller]:
    """Dependency: :func:`guard` (``action`` on ``resource``) and the services, as one :class:`Caller`.
    (``Depends`` as a default, not in ``Annotated``: annotations are strings here and a closure variable in
    one would not resolve.)"""

    def dependency(request: Request, principal: Principal = Depends(guard(action, resource))) -> Caller:
        services = services_of(request.app)
        return Caller(principal, services, services.store)

    return dependency


def patient_call(action: str, resource: str) -> Callable[..., PatientCall]:
    """Dependency for routes under ``/{patient_id}``: the guard, then the patient (id or MRN) resolved, 404
    when missing or out of the caller's reach (:func:`visible_patient`), as one :class:`PatientCall`."""

    def dependency(patient_id: str, request: Request,
                   principal: Principal = Depends(guard(action, resource))) -> PatientCall:
        services = services_of(request.app)
        resolved = visible_patient(services.store, principal, patient_id)
        return PatientCall(principal, services, services.store, resolved, patient_id)

    return dependency


#: The common bundles, one per policy (``guard`` action and resource): a route takes one parameter.
PatientReader = Annotated[PatientCall, Depends(patient_call("read", "Patient"))]
PatientExporter = Annotated[PatientCall, Depends(patient_call("export", "Patient"))]
ObservationReader = Annotated[PatientCall, Depends(patient_call("read", "Observation"))]
ObservationWriter = Annotated[PatientCall, Depends(patient_call("write", "Observation"))]
ObservationSimulator = Annotated[PatientCall, Depends(patient_call("simulate", "Observation"))]
MedicationSimulator = Annotated[PatientCall, Depends(patient_call("simulate", "MedicationRequest"))]


#: The device of a person's own sample entries: ``manual:<user id>``.
MANUAL_DEVICE_PREFIX = "manual:"


def device_name(store: Store, principal: Principal) -> str:
    """What samples are stored under: a device key's device (its name); a person's entries are manual entries
    ``manual:<user id>``, never under a device named in the payload (a person cannot speak for a device)."""
    if principal.kind != "device":
        return f"{MANUAL_DEVICE_PREFIX}{principal.user_id or principal.subject}"
    key_id = principal.subject.removeprefix("device:")
    with store.connect() as connection:
        name = connection.execute(select(api_keys.c.name).where(api_keys.c.id == key_id)).scalar()
    return str(name) if name else principal.subject


@contextmanager
def ingest_errors() -> Iterator[None]:
    """Ingest errors (unknown patient, rate limit, batch too large, bad payload) as their HTTP problems."""
    try:
        yield
    except (UnknownPatientError, RateLimitedError, BatchTooLargeError, PayloadError) as exc:
        raise ingest_problem(exc) from None


def ingest_problem(exc: Exception) -> ProblemError:
    """The HTTP problem for an ingest error of :mod:`medtwin.stream.pipeline` (HTTP and WebSocket replies);
    any other exception is raised again."""
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
