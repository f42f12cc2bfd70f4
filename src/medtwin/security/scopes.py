"""SMART on FHIR v2 scopes: parser, matcher and the role ceiling.

Grammar accepted (v2, plus the v1 suffixes for compatibility)::

    scope      = context "/" resource "." permissions
    context    = "patient" | "user" | "system"
    resource   = FHIR resource type (letters, starts upper case) | "*"
    permissions= non-empty ordered subset of "cruds" (c create, r read, u update, d delete, s search)
               | "read" (= rs) | "write" (= cud) | "*" (= cruds)

plus the non-resource scopes ``openid fhirUser launch launch/patient offline_access online_access``.
Query-restricted scopes (``?category=...``) are rejected: medtwin cannot enforce them yet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PERMISSION_ORDER = "cruds"
CONTEXTS = ("patient", "user", "system")
_CONTEXT_RANK = {"patient": 0, "user": 1, "system": 2}
OTHER_SCOPES = frozenset({"openid", "fhirUser", "launch", "launch/patient", "offline_access", "online_access"})
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_RESOURCE = re.compile(r"^(\*|[A-Z][A-Za-z]{0,63})$")
ROLES = ("admin", "clinician", "patient", "researcher", "device", "integration", "operations")
#: What an integration (an interface engine loading the directory) writes: shared resources only, never
#: patient data, nothing read. ``Bundle.c`` is the import route itself.
INTEGRATION_TYPES = ("Organization", "Practitioner", "PractitionerRole", "Location", "HealthcareService",
                     "Endpoint", "Medication", "Substance", "Device")


class ScopeError(ValueError):
    """A scope string is malformed; the message names the offending scope."""


@dataclass(frozen=True, order=True)
class Scope:
    context: str
    resource_type: str
    permissions: str  # ordered subset of "cruds"

    def __str__(self) -> str:
        return f"{self.context}/{self.resource_type}.{self.permissions}"

    def covers(self, resource_type: str, interaction: str) -> bool:
        return self.resource_type in ("*", resource_type) and interaction in self.permissions


def parse_scope(text: str) -> Scope:
    """Parse one resource scope; raises :class:`ScopeError` naming it when malformed."""
    if "?" in text:
        raise ScopeError(f"scope {text!r}: query-restricted scopes are not supported")
    context, slash, rest = text.partition("/")
    if not slash or context not in CONTEXTS:
        raise ScopeError(f"scope {text!r}: context must be one of {', '.join(CONTEXTS)}")
    resource, dot, perms = rest.rpartition(".")
    if not dot or not _RESOURCE.match(resource):
        raise ScopeError(f"scope {text!r}: resource must be a FHIR resource type or '*'")
    perms = _V1.get(perms, perms)
    if not perms or any(p not in PERMISSION_ORDER for p in perms):
        raise ScopeError(f"scope {text!r}: permissions must be a subset of 'cruds' (or read/write/*)")
    positions = [PERMISSION_ORDER.index(p) for p in perms]
    if positions != sorted(set(positions)):
        raise ScopeError(f"scope {text!r}: permissions must appear once each, in the order c r u d s")
    return Scope(context, resource, perms)


def parse_scopes(text: str) -> frozenset[Scope]:
    """Parse a space-separated scope string, ignoring the non-resource scopes (openid, launch, ...)."""
    result: set[Scope] = set()
    for item in text.split():
        if item in OTHER_SCOPES:
            continue
        result.add(parse_scope(item))
    return frozenset(result)


def format_scopes(scopes: frozenset[Scope]) -> str:
    return " ".join(str(s) for s in sorted(scopes))


def scope_allows(scopes: frozenset[Scope], resource_type: str, interaction: str,
                 context: str | None = None) -> bool:
    """True if some scope grants ``interaction`` (one of c r u d s) on ``resource_type``. With
    ``context``, only scopes of that context or a wider one (patient < user < system) count."""
    if interaction not in PERMISSION_ORDER or len(interaction) != 1:
        raise ValueError(f"interaction: must be one of c, r, u, d, s, got {interaction!r}")
    need = _CONTEXT_RANK[context] if context is not None else 0
    return any(s.covers(resource_type, interaction) and _CONTEXT_RANK[s.context] >= need for s in scopes)


ROLE_CEILING: dict[str, frozenset[Scope]] = {
    "admin": frozenset({Scope("system", "*", "cruds")}),
    "clinician": frozenset({Scope("user", "*", "cruds")}),
    "patient": frozenset({Scope("patient", "*", "rs"), Scope("patient", "Consent", "crus")}),
    "researcher": frozenset({Scope("user", "*", "rs")}),
    "device": frozenset({Scope("patient", "Observation", "c")}),
    "integration": frozenset({Scope("system", "Bundle", "c")} | {Scope("system", t, "cu") for t in INTEGRATION_TYPES}),
    # the hospital's command centre: counts and flows of the hospital routes (scope type Location), no patient
    "operations": frozenset({Scope("user", "Location", "rs")}),
}


def clamp_to_role(requested: frozenset[Scope] | None, role: str) -> frozenset[Scope]:
    """The scopes a token for ``role`` gets: the requested ones reduced to what the role's ceiling allows
    (a permission survives only if a ceiling scope of the same or wider context covers it); ``None``
    requests the whole ceiling. Never exceeds the role."""
    if role not in ROLE_CEILING:
        raise ValueError(f"role: unknown role {role!r}; expected one of {', '.join(ROLES)}")
    ceiling = ROLE_CEILING[role]
    if requested is None:
        return ceiling
    granted: set[Scope] = set()
    for scope in requested:
        kept = ""
        for p in scope.permissions:
            for top in ceiling:
                if (
                    top.resource_type in ("*", scope.resource_type)
                    and p in top.permissions
                    and _CONTEXT_RANK[top.context] >= _CONTEXT_RANK[scope.context]
                ):
                    kept += p
                    break
        if kept:
            granted.add(Scope(scope.context, scope.resource_type, kept))
    return frozenset(granted)
