"""Who may write which FHIR resources, checked against what is stored as well as what is written.

A unit (a Bundle, a resource, an ndjson file) is written all or nothing. For a writer restricted to some
patients (a clinician's care team), everything stored outside that reach is *invisible*, exactly as if it
did not exist (OWASP API1; the read routes already answer 404 for it):

* :class:`ReachLimitedRecords` is what the preparer asks of the store: a Patient outside reach, or patient
  data stored for one, is not found by id, by identifier or by a conditional create, so a reference to it
  fails as "resolves to nothing", ``ifNoneExist`` does not match it, and an id the server derives (from a
  fullUrl or the content) that such a resource holds is derived again: the answers a missing one gets.
  Identifier criteria are counted among the matches within reach only (``record.prepare.one_match``: one is
  that one, several a 412), over REST and in Bundles alike;
* :func:`authorise_unit` checks each prepared resource against the stored version's patient as well as the
  new one (as HAPI FHIR's AuthorizationInterceptor does): an id the writer chose (``PUT Type/id``, or a
  resource's own id) that is not a resource they can reach is refused 404 whether it exists or not (such
  writers update, they do not create under ids of their choosing); moving a resource to another patient is
  refused for all but an admin; shared resources (types outside the FHIR Patient compartment) are written by
  an admin or an integration only; patient data whose patient resolves to nothing is refused, naming the field.

Pure policy: the store's answers come in as plain mappings (see ``RecordRepository.patients_of``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from medtwin.record.compartment import NoPatientError, in_patient_compartment, patient_element
from medtwin.record.errors import RecordError
from medtwin.record.prepare import ExistingRecords, IdentifierKey, IdentifierMatch, PreparedResource
from medtwin.security.scopes import Scope, scope_allows

__all__ = ["SHARED_WRITERS", "ReachLimitedRecords", "WriteForbiddenError", "WriteNotFoundError", "Writer",
           "authorise_unit"]

#: Roles that write shared resources (not in any patient's compartment).
SHARED_WRITERS = frozenset({"admin", "integration"})

Key = tuple[str, str]
PatientsOf = Callable[[Sequence[Key]], Mapping[Key, str | None]]


class WriteForbiddenError(RecordError):
    """The writer may never write this (role, scope or a move between patients): HTTP 403. Decided from the
    writer and what they can reach only, so it tells nothing about resources outside their reach."""

    kind = "forbidden"


class WriteNotFoundError(RecordError):
    """The resource to update is not one the writer can reach (missing or outside reach alike): HTTP 404."""

    kind = "not-found"


@dataclass(frozen=True)
class Writer:
    """Who writes: role, the patients they may write to (None: any), the token's scopes."""

    role: str
    patient_ids: frozenset[str] | None
    scopes: frozenset[Scope]

    def reaches(self, patient_id: str | None) -> bool:
        return self.patient_ids is None or (patient_id is not None and patient_id in self.patient_ids)


class ReachLimitedRecords:
    """The store as a restricted writer sees it: resources of patients outside reach do not exist.

    ``existing``: the real store (``ExistingRecords``, with the batch forms when it has them);
    ``patients_of``: for (type, id) keys, the stored ones with the patient each belongs to (a Patient: itself)."""

    def __init__(self, existing: ExistingRecords, writer: Writer, patients_of: PatientsOf) -> None:
        self.existing, self.writer, self.patients_of = existing, writer, patients_of

    def _visible(self, keys: Iterable[Key]) -> set[Key]:
        keys = list(dict.fromkeys(keys))
        shared = [k for k in keys if not in_patient_compartment(k[0])]
        owned = [k for k in keys if in_patient_compartment(k[0])]
        stored = self.patients_of(owned) if owned else {}
        batch = getattr(self.existing, "existing_keys", None)
        shared_stored = set(batch(shared)) if batch is not None and shared else {
            k for k in shared if self.existing.exists(*k)}
        return shared_stored | {k for k, patient in stored.items() if self.writer.reaches(patient)}

    def exists(self, resource_type: str, resource_id: str) -> bool:
        return (resource_type, resource_id) in self._visible([(resource_type, resource_id)])

    def hidden_keys(self, keys: Sequence[Key]) -> set[Key]:
        """The keys held by patient data the writer cannot see (a server-derived id steps around them)."""
        owned = [k for k in dict.fromkeys(keys) if in_patient_compartment(k[0])]
        stored = self.patients_of(owned) if owned else {}
        return {k for k, patient in stored.items() if not self.writer.reaches(patient)}

    def existing_keys(self, keys: Sequence[Key]) -> set[Key]:
        return self._visible(keys)

    def matches_by_identifier(self, resource_type: str, system: str | None, value: str) -> list[IdentifierMatch]:
        """The stored ``resource_type`` with the identifier that the writer can see (all of them are asked
        for: the first stored may be another patient's while one within reach exists)."""
        return self._reachable(resource_type, self.existing.matches_by_identifier(resource_type, system, value))

    def matches_by_identifiers(self, keys: Sequence[IdentifierKey]) -> dict[IdentifierKey, list[IdentifierMatch]]:
        batch = getattr(self.existing, "matches_by_identifiers", None)
        found: Mapping[IdentifierKey, Sequence[IdentifierMatch]] = batch(keys) if batch is not None else {
            key: self.existing.matches_by_identifier(*key) for key in keys}
        return {key: self._reachable(key[0], matches) for key, matches in found.items()}

    def _reachable(self, resource_type: str, matches: Sequence[IdentifierMatch]) -> list[IdentifierMatch]:
        if not in_patient_compartment(resource_type):  # shared resources are everyone's
            return list(matches)
        return [match for match in matches if self.writer.reaches(match[1])]


def authorise_unit(writer: Writer | None, resources: Sequence[PreparedResource],
                   stored: Mapping[Key, str | None]) -> None:
    """Refuse the unit (raise) at its first resource the writer may not write. ``writer`` None: a trusted
    local import (CLI), checked only for patient data without a patient. ``stored``: the stored resources
    among ``resources`` with their stored patient (a Patient: itself)."""
    for resource in resources:
        _authorise(writer, resource, stored)


def _authorise(writer: Writer | None, r: PreparedResource, stored: Mapping[Key, str | None]) -> None:
    rtype, key = r.resource_type, (r.resource_type, r.id)
    if not in_patient_compartment(rtype):
        if writer is not None and writer.role not in SHARED_WRITERS:
            raise WriteForbiddenError(f"{rtype} is shared between patients (outside the FHIR Patient compartment): "
                                      "it is written by an admin or an integration only", entry=r.entry, field=rtype)
        _check_scope(writer, r, update=key in stored)
        return
    if r.patient_id is None:
        field = patient_element(rtype)
        raise NoPatientError(f"{rtype} is patient data but names no patient: {field} must reference a Patient "
                             "stored or in this unit", entry=r.entry, field=field)
    if writer is None:
        return
    if writer.role not in ("admin", "clinician"):  # an integration writes shared resources only
        raise WriteForbiddenError(f"role {writer.role} may not write patient data ({rtype})", entry=r.entry,
                                  field=rtype)
    visible = key in stored and writer.reaches(stored[key])
    if not visible:
        _refuse_invisible(writer, r, stored_elsewhere=key in stored)
    if not writer.reaches(r.patient_id):
        raise WriteForbiddenError("this unit writes to a patient you may not write to (not in your care team; "
                                  "patients are created by an admin)", entry=r.entry, field=patient_element(rtype))
    if visible and stored[key] != r.patient_id and writer.role != "admin":
        field = patient_element(rtype)
        raise WriteForbiddenError(f"{rtype}/{r.id} belongs to another patient: moving a resource between patients "
                                  f"({field}) is for an admin only", entry=r.entry, field=field)
    _check_scope(writer, r, update=visible)


def _refuse_invisible(writer: Writer, r: PreparedResource, *, stored_elsewhere: bool) -> None:
    """A resource the writer cannot reach: missing, or stored for a patient outside reach. Both get the same
    answer. Unreachable writers update what they reach and create under server-chosen ids only."""
    if writer.patient_ids is None:
        return
    if r.named_by in ("url", "id"):
        field = "Bundle.entry.request.url" if r.named_by == "url" else f"{r.resource_type}.id"
        raise WriteNotFoundError(f"{r.resource_type}/{r.id} not found: an id of your choosing can only update a "
                                 "resource you may write (POST without an id to create one)", entry=r.entry,
                                 field=field)
    if r.resource_type == "Patient":
        raise WriteForbiddenError("patients are created by an admin (a clinician writes for their care team)",
                                  entry=r.entry, field="Patient")
    if stored_elsewhere:  # the server derived the id of another patient's resource (same fullUrl or content)
        field = "Bundle.entry.fullUrl" if r.named_by == "fullUrl" else r.resource_type
        raise WriteNotFoundError(f"{r.resource_type}/{r.id} not found: the id derived from this entry is taken; "
                                 "send another fullUrl", entry=r.entry, field=field)


def _check_scope(writer: Writer | None, r: PreparedResource, *, update: bool) -> None:
    if writer is None:
        return
    interaction = "u" if update else "c"
    if not scope_allows(writer.scopes, r.resource_type, interaction):
        raise WriteForbiddenError(f"token scopes do not allow {'update' if update else 'create'} on "
                                  f"{r.resource_type}", entry=r.entry, field=r.resource_type)
