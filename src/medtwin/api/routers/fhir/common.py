"""What the ``/fhir`` route modules share: authentication and the policy decision for each call (the same
tokens, role/scope table and audit record as ``/api/v1``), the caller's reach, query parameters, and running
a handler's work in the thread pool with FHIR errors answered as OperationOutcomes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response

from medtwin.api.deps import audit_context, authenticate, oauth2_scheme
from medtwin.api.fhir_support import FhirError, check_type
from medtwin.api.problems import ProblemError
from medtwin.api.services import services_of
from medtwin.record.fhir_spec import RESOURCE_TYPES
from medtwin.record.fhirtime import FhirDateError, parse_datetime
from medtwin.security.policy import Principal, decide
from medtwin.security.scopes import scope_allows
from medtwin.security.write_policy import Writer
from medtwin.store.database import Store
from medtwin.store.records import StoredVersion

Token = Annotated[str | None, Depends(oauth2_scheme)]


@dataclass(frozen=True)
class Access:
    principal: Principal
    store: Store
    base: str
    #: the server's clock (``medtwin.clock``: simulated in an accelerated demo): Bundle.timestamp reads it
    clock: Callable[[], datetime]

    def sees(self, version: StoredVersion) -> bool:
        return version.patient_id is None or self.principal.can_see(version.patient_id)

    def reads(self, version: StoredVersion) -> bool:
        """A resource a call returns beside what it names (``_include``, ``$everything``): within reach, and of
        a type the token's scopes let the caller read (the route's decision covered only the type it names)."""
        return self.sees(version) and scope_allows(self.principal.scopes, version.resource_type, "r")

    @property
    def writer(self) -> Writer:
        p = self.principal
        return Writer(p.role, p.patient_ids, p.scopes)


def fhir_base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/fhir"


def access(request: Request, token: str | None, resource_type: str, resource_id: str | None = None, *,
           action: str = "read") -> Access:
    """Authenticate and authorise ``action`` on ``resource_type`` (the same decision as the /api/v1 guard,
    with the HTTP method of the request), and fill in the audit record."""
    if resource_type != "Bundle":
        check_type(resource_type)
    audit = audit_context(request)
    audit.action, audit.resource_type, audit.resource_id = action, resource_type, resource_id
    try:
        principal = authenticate(request, token)
    except ProblemError as error:
        audit.denied = True
        raise FhirError(401, "login", error.detail or "an access token is required") from None
    audit.actor, audit.role = principal.subject, principal.role
    decision = decide(principal, action, resource_type, request.method, None)
    if not decision.allowed:
        audit.denied = True
        audit.detail["reason"] = decision.reason
        raise FhirError(403, "forbidden", decision.reason)
    services = services_of(request.app)
    return Access(principal, services.store, fhir_base(request), services.clock)


def answer(work: Callable[[], Response]) -> Callable[[], Response]:
    def run() -> Response:
        try:
            return work()
        except FhirError as error:
            return error.response()
    return run


def query_params(request: Request) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        params.setdefault(key, []).append(value)
    return params


def instant_param(params: dict[str, list[str]], name: str) -> datetime | None:
    """The (last) value of an instant parameter (``_since``); 400 naming it when it is not one."""
    if name not in params:
        return None
    text = params[name][-1]
    try:
        return parse_datetime(text)
    except FhirDateError:
        raise FhirError(400, "invalid", f"{name} {text!r} is not a FHIR instant", expression=name) from None


def type_list(access: Access, params: dict[str, list[str]]) -> frozenset[str] | None:
    """``_type`` (comma-separated, repeatable): None when absent; 400 naming an unknown type, 403 one the
    token's scopes do not let the caller read."""
    if "_type" not in params:
        return None
    asked = frozenset(t for value in params["_type"] for t in value.split(",") if t)
    for rtype in sorted(asked):
        if rtype not in RESOURCE_TYPES:
            raise FhirError(400, "invalid", f"_type {rtype!r} is not a resource type", expression="_type")
        if not scope_allows(access.principal.scopes, rtype, "r"):
            raise FhirError(403, "forbidden", f"token scopes do not allow reading {rtype}", expression="_type")
    return asked
