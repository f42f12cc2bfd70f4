"""Who may do what: role x action x resource rules, SMART scopes, and patient (object-level) scope.

Every guarded route declares ``(action, resource)``. :func:`decide` answers with an HTTP-shaped status:

* 401 - nobody authenticated (handled by the caller before :func:`decide`);
* 403 - the role may never do this action here, or the token's scopes do not cover it;
* 404 - the role may do it, but not for *this* patient (OWASP API1: the caller cannot tell an existing
  patient outside their care team from one that does not exist);
* 200 - allowed; list routes still filter with :meth:`Principal.can_see`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection

from medtwin.security.accounts import User, care_team_patients
from medtwin.security.scopes import ROLE_CEILING, Scope, scope_allows

ACTIONS = ("read", "write", "export", "simulate", "admin", "research", "consent", "identity")

ROLE_ACTIONS: dict[str, frozenset[str]] = {
    "admin": frozenset(ACTIONS),
    "clinician": frozenset({"read", "write", "export", "simulate", "consent", "identity"}),
    "patient": frozenset({"read", "export", "simulate", "consent", "identity"}),
    "researcher": frozenset({"research", "identity"}),
    "device": frozenset({"write", "identity"}),
    "integration": frozenset({"write", "identity"}),  # shared resources only (scopes, write_policy)
    "operations": frozenset({"simulate", "identity"}),  # hospital counts and flows only (no patient: scopes)
}
#: What a device credential may write (nothing else, and only for its own patient).
DEVICE_RESOURCES = frozenset({"samples"})  # device streams only: not VCFs, not model fits
#: Route resources that are not FHIR resource types, mapped to the type their scopes name.
RESOURCE_SCOPE_TYPE = {"samples": "Observation", "patients": "Patient", "hospital": "Location"}
#: Actions checked against scopes, and the SMART interaction per HTTP method.
_WRITE_INTERACTION = {"POST": "c", "PUT": "u", "PATCH": "u", "DELETE": "d"}


@dataclass(frozen=True)
class Principal:
    """Who is calling, and what they may reach."""

    subject: str
    role: str
    scopes: frozenset[Scope] = field(default_factory=frozenset)
    patient_ids: frozenset[str] | None = None  # None: unrestricted
    user_id: str | None = None
    kind: str = "user"  # user | device | local

    def can_see(self, patient_id: str) -> bool:
        return self.patient_ids is None or patient_id in self.patient_ids


@dataclass(frozen=True)
class Decision:
    status: int
    reason: str

    @property
    def allowed(self) -> bool:
        return self.status < 400


def principal_for_user(conn: Connection, user: User, scopes: frozenset[Scope]) -> Principal:
    patient_ids: frozenset[str] | None
    if user.role == "clinician":
        patient_ids = care_team_patients(conn, user.id)
    elif user.role == "patient":
        patient_ids = frozenset({user.patient_id}) if user.patient_id else frozenset()
    elif user.role in ("researcher", "integration", "operations"):
        patient_ids = frozenset()  # never any identified patient
    else:
        patient_ids = None
    return Principal(subject=user.username, role=user.role, scopes=scopes, patient_ids=patient_ids,
                     user_id=user.id, kind="user")


def principal_for_device(key_id: str, name: str, patient_id: str) -> Principal:
    return Principal(subject=f"device:{key_id}", role="device", scopes=ROLE_CEILING["device"],
                     patient_ids=frozenset({patient_id}), user_id=None, kind="device")


def interaction_for(action: str, method: str) -> str:
    if action == "write":
        return _WRITE_INTERACTION.get(method.upper(), "c")
    if action == "consent" and method.upper() in _WRITE_INTERACTION:  # recording a decision needs Consent.u
        return _WRITE_INTERACTION[method.upper()]
    return "r"


def decide(principal: Principal, action: str, resource: str, method: str = "GET",
           patient_id: str | None = None) -> Decision:
    if action not in ACTIONS:
        return Decision(403, f"undeclared action {action!r}")
    if action not in ROLE_ACTIONS.get(principal.role, frozenset()):
        return Decision(403, f"role {principal.role} may not {action} {resource}")
    if principal.role == "device" and action == "write" and resource not in DEVICE_RESOURCES:
        return Decision(403, f"a device may only write {', '.join(sorted(DEVICE_RESOURCES))}")
    if action not in ("admin", "research", "identity"):
        scope_type = RESOURCE_SCOPE_TYPE.get(resource, resource)
        if not scope_allows(principal.scopes, scope_type, interaction_for(action, method)):
            return Decision(403, f"token scopes do not allow {action} on {resource}")
    if patient_id is not None and not principal.can_see(patient_id):
        return Decision(404, "patient not found")
    return Decision(200, "allowed")
