"""Turn one unit of FHIR input (a bundle, an ndjson file, a single resource) into resources ready to
store: validated, with server ids assigned, ``urn:uuid:`` and conditional references resolved.

Pure domain code: what is already stored is asked through an :class:`ExistingRecords` callback, so the same
logic runs against any store (or none).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote

import orjson

from medtwin.record import exactjson
from medtwin.record.errors import (
    InvalidFieldError,
    MissingFieldError,
    NotFhirError,
    PreconditionFailedError,
    RecordError,
    UnknownResourceTypeError,
    UnresolvedReferenceError,
    UnsupportedError,
)
from medtwin.record.fhir_spec import ID_PATTERN, REQUIRED_ELEMENTS, RESOURCE_TYPES, has_element
from medtwin.record.indexing import NOT_PATIENT_DATA, PATIENT_ELEMENTS
from medtwin.record.validate import check_resource

# Server ids for POSTed entries: uuid5 of their fullUrl in this namespace (stable across imports).
ID_NAMESPACE = uuid.UUID("5b0c7a64-8f0e-4c55-9a57-6d1b8f2e9c11")

BUNDLE_KINDS = frozenset({"transaction", "batch", "collection", "searchset", "document", "message", "history"})


IdentifierKey = tuple[str, str | None, str]  # (resource type, identifier system, identifier value)
IdentifierMatch = tuple[str, str | None, int]  # a stored resource with an identifier: (id, patient, version)


class ExistingRecords(Protocol):
    """What the preparer may ask of the store. A store may also offer the batch forms
    ``matches_by_identifiers(keys) -> {key: [match]}`` and ``existing_keys(keys) -> {(type, id)}`` (one
    query per unit instead of one per lookup); the preparer uses them when present. A store seen by a writer
    who may not see all of it answers with what the writer can see only (``ReachLimitedRecords``) and offers
    ``hidden_keys(keys) -> {(type, id)}``: ids taken by resources the writer cannot see, which an id the
    server derives (from a fullUrl or the content) then steps around, so that writer gets the answer a free
    id gets."""

    def matches_by_identifier(self, resource_type: str, system: str | None, value: str
                              ) -> Sequence[IdentifierMatch]: ...

    def exists(self, resource_type: str, resource_id: str) -> bool: ...


def one_match(resource_type: str, criteria: str, ids: Sequence[str], *, entry: int | None = None,
              field: str | None = None) -> str | None:
    """R4's rule for identifier criteria (conditional create, update and reference), over the matches the
    writer can see: none, None (a create; a reference resolves to nothing); one, its id; several, refused
    with 412 (R4: the criteria were not selective enough; never one of them picked silently)."""
    if len(ids) > 1:
        raise PreconditionFailedError(f"multiple matches: {len(ids)} {resource_type} resources match {criteria!r}: "
                                      "the criteria must select at most one", entry=entry, field=field)
    return ids[0] if ids else None


class NoExistingRecords:
    """An empty store."""

    def matches_by_identifier(self, resource_type: str, system: str | None, value: str) -> list[IdentifierMatch]:
        return []

    def exists(self, resource_type: str, resource_id: str) -> bool:
        return False


class _Prefetched:
    """The store's answers for a whole unit, asked in batches when the store can (same answers as asking
    one at a time: the store does not change while a unit is prepared)."""

    def __init__(self, existing: ExistingRecords) -> None:
        self.existing = existing
        self.identifiers: dict[IdentifierKey, list[str]] = {}
        self.keys: dict[tuple[str, str], bool] = {}
        self.hidden: set[tuple[str, str]] = set()
        self.checked: set[tuple[str, str]] = set()  # keys whose hidden-ness is known
        self.hidden_keys = getattr(existing, "hidden_keys", None)

    def prefetch_identifiers(self, keys: Iterable[IdentifierKey]) -> None:
        batch = getattr(self.existing, "matches_by_identifiers", None)
        missing = [k for k in dict.fromkeys(keys) if k not in self.identifiers]
        if batch is None or not missing:
            return
        found: dict[IdentifierKey, Sequence[IdentifierMatch]] = batch(missing)
        for key in missing:
            self.identifiers[key] = [match[0] for match in found.get(key, ())]

    def prefetch_keys(self, keys: Iterable[tuple[str, str]]) -> None:
        batch = getattr(self.existing, "existing_keys", None)
        missing = [k for k in dict.fromkeys(keys) if k not in self.keys]
        if batch is None or not missing:
            return
        found: set[tuple[str, str]] = batch(missing)
        for key in missing:
            self.keys[key] = key in found

    def prefetch_hidden(self, keys: Iterable[tuple[str, str]]) -> None:
        if self.hidden_keys is not None:
            asked = list(dict.fromkeys(keys))
            self.hidden.update(self.hidden_keys(asked))
            self.checked.update(asked)

    def free_id(self, resource_type: str, rid: str) -> str:
        """``rid``, or (when a resource the writer cannot see holds it) the next id derived from it."""
        while True:
            key = (resource_type, rid)
            if key not in self.checked:
                self.prefetch_hidden([key])
            if key not in self.hidden:
                return rid
            rid = uuid5(f"{rid}/taken")

    def match(self, resource_type: str, criteria: str, *, entry: int, field: str) -> str | None:
        """The one stored resource ``criteria`` (``identifier=system|value``) matches, by :func:`one_match`."""
        system, value = parse_criteria(resource_type, criteria, entry=entry, field=field)
        key = (resource_type, system, value)
        ids = self.identifiers.get(key)
        if ids is None:
            ids = self.identifiers[key] = [m[0] for m in self.existing.matches_by_identifier(*key)]
        return one_match(resource_type, criteria, ids, entry=entry, field=field)

    def exists(self, resource_type: str, resource_id: str) -> bool:
        known = self.keys.get((resource_type, resource_id))
        if known is not None:
            return known
        return self.existing.exists(resource_type, resource_id)


@dataclass(slots=True)
class PreparedResource:
    """A resource ready to store. ``raw`` is its final JSON (server id, references resolved), the bytes that
    are stored and hashed; ``source`` is the parsed input with the server id set but references as given,
    enough for indexing and summaries (codes, times, values), so the final JSON is not parsed again."""

    resource_type: str
    id: str
    source: dict[str, Any]
    raw: bytes
    entry: int
    patient_id: str | None = None
    identifiers: list[tuple[str | None, str]] = field(default_factory=list)
    name_tokens: list[str] = field(default_factory=list)
    #: What chose the id: ``url`` (PUT Type/id), ``id`` (the resource's own id, no request), ``fullUrl`` or
    #: ``content`` (derived by the server), ``criteria`` (a conditional update found it). Writers that may
    #: not create resources under ids of their choosing are refused ``url`` and ``id`` ids they cannot reach.
    named_by: str = "content"
    #: The id the resource had in the input when the server gave it another (a Synthea Patient's UUID):
    #: stored as a blind token, so the sender's id still finds the resource (``find_by_source_id``).
    source_id: str | None = None
    #: ``meta.lastUpdated`` as sent. ``meta.versionId`` and ``meta.lastUpdated`` are the server's to set (the
    #: store keeps version and time in their own columns and adds them on the way out): they are taken out
    #: of what is stored, so an export re-imported is unchanged; the time sent is kept here for the
    #: store's check that older content does not replace newer.
    sent_last_updated: str | None = None
    #: (system or None, code) of the resource's ``category`` codings (searched as ``category``).
    categories: list[tuple[str | None, str]] = field(default_factory=list)

    @property
    def content(self) -> dict[str, Any]:
        """The final resource as stored (parsed from ``raw``)."""
        parsed: dict[str, Any] = exactjson.loads(self.raw)
        return parsed


@dataclass(slots=True)
class PreparedUnit:
    source: str
    kind: str
    resources: list[PreparedResource]
    matched_existing: int = 0  # conditional creates that found an existing resource
    #: (entry, type, id) of those conditional creates: what each entry names, for a transaction-response.
    matched: list[tuple[int, str, str]] = field(default_factory=list)


def content_hash(raw: bytes) -> str:
    """Hash of a resource's stored JSON (same input, same bytes: re-imports compare equal)."""
    return hashlib.sha256(raw).hexdigest()


def _identifiers(resource: dict[str, Any]) -> list[tuple[str | None, str]]:
    out: list[tuple[str | None, str]] = []
    for ident in resource.get("identifier") or []:
        if isinstance(ident, dict) and isinstance(ident.get("value"), str):
            system = ident.get("system")
            out.append((system if isinstance(system, str) else None, ident["value"]))
    return out


def categories_of(resource: dict[str, Any]) -> list[tuple[str | None, str]]:
    """(system or None, code) of the resource's ``category`` codings."""
    category = resource.get("category")
    if category is None:
        return []
    out: list[tuple[str | None, str]] = []
    for concept in category if isinstance(category, list) else [category]:
        for coding in (concept.get("coding") or []) if isinstance(concept, dict) else []:
            if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                system = coding.get("system")
                out.append((system if isinstance(system, str) else None, coding["code"]))
    return out


def _name_tokens(resource: dict[str, Any]) -> list[str]:
    if resource.get("resourceType") not in ("Patient", "Practitioner", "RelatedPerson", "Person"):
        return []
    tokens: set[str] = set()
    for name in resource.get("name") or []:
        if not isinstance(name, dict):
            continue
        parts = [name.get("family")] + list(name.get("given") or [])
        for part in parts:
            if isinstance(part, str):
                tokens.update(t.lower() for t in part.replace(",", " ").split() if t)
    return sorted(tokens)


def validate_resource(resource: Any, *, entry: int | None = None) -> str:
    """Structural checks; returns the resource type."""
    if not isinstance(resource, dict):
        raise NotFhirError("expected a JSON object (a FHIR resource)", entry=entry)
    rtype = resource.get("resourceType")
    if rtype is None:
        raise NotFhirError("no 'resourceType': this is not a FHIR resource", entry=entry, field="resourceType")
    if not isinstance(rtype, str) or rtype not in RESOURCE_TYPES:
        raise UnknownResourceTypeError(f"unknown resourceType {rtype!r} (not in FHIR R4)", entry=entry,
                                       field="resourceType")
    rid = resource.get("id")
    if rid is not None and (not isinstance(rid, str) or not ID_PATTERN.match(rid)):
        raise InvalidFieldError(f"invalid id {rid!r}", entry=entry, field=f"{rtype}.id")
    for element in REQUIRED_ELEMENTS.get(rtype, ()):
        if not has_element(resource, element):
            raise MissingFieldError(f"required element '{element}' is missing", entry=entry,
                                    field=f"{rtype}.{element}")
    return rtype


def parse_criteria(resource_type: str, criteria: str, *, entry: int, field: str) -> tuple[str | None, str]:
    """``identifier=system|value`` -> (system, value); other search criteria are not supported."""
    query = criteria.split("?", 1)[-1]
    params = [p for p in query.split("&") if p]
    if len(params) != 1 or not params[0].startswith("identifier="):
        raise UnsupportedError(
            f"conditional criteria {criteria!r} not supported (only identifier=system|value)",
            entry=entry, field=field,
        )
    token = unquote(params[0][len("identifier="):])
    if "|" in token:
        system, value = token.split("|", 1)
        return (system or None), value
    return None, token


@dataclass(slots=True)
class _Entry:
    number: int
    full_url: str | None
    request: dict[str, Any] | None
    resource: dict[str, Any]
    resource_type: str


def _entries_of_bundle(bundle: dict[str, Any]) -> tuple[str, list[tuple[int, str | None, Any, Any]]]:
    kind = bundle.get("type")
    if kind not in BUNDLE_KINDS:
        raise InvalidFieldError(f"unknown Bundle.type {kind!r}", field="Bundle.type")
    raw = bundle.get("entry") or []
    if not isinstance(raw, list):
        raise InvalidFieldError("Bundle.entry must be an array", field="Bundle.entry")
    out: list[tuple[int, str | None, Any, Any]] = []
    for number, item in enumerate(raw, start=1):
        if not isinstance(item, dict):
            raise NotFhirError("bundle entry is not an object", entry=number)
        if "resource" not in item:
            raise MissingFieldError("entry has no resource", entry=number, field="Bundle.entry.resource")
        full_url = item.get("fullUrl")
        out.append((number, full_url if isinstance(full_url, str) else None, item.get("request"), item["resource"]))
    return str(kind), out


def prepare(
    data: Any,
    *,
    source: str,
    existing: ExistingRecords | None = None,
    kind: str | None = None,
) -> PreparedUnit:
    """Prepare one unit: a Bundle, a single resource, or (``kind='ndjson'``) a list of resources.

    Raises :class:`RecordError` naming the source, entry and field of the first problem; nothing of the
    unit is returned then (all or nothing).
    """
    existing = existing or NoExistingRecords()
    try:
        return _prepare(data, source=source, existing=existing, kind=kind)
    except RecordError as error:
        raise error.located(source=source) from None


def _criteria_keys(entries: list[_Entry]) -> list[IdentifierKey]:
    """The identifier lookups of the unit's conditional creates and updates (unparseable ones are left for
    the main pass, which names them)."""
    keys: list[IdentifierKey] = []
    for e in entries:
        if e.request is None:
            continue
        method = e.request.get("method")
        criteria = e.request.get("ifNoneExist") if method == "POST" else e.request.get("url") if method == "PUT" \
            else None
        if not isinstance(criteria, str) or (method == "PUT" and "?" not in criteria):
            continue
        try:
            system, value = parse_criteria(e.resource_type, criteria, entry=e.number, field="")
        except RecordError:
            continue
        keys.append((e.resource_type, system, value))
    return keys


def _read_entries(data: Any, kind: str | None) -> tuple[str, list[_Entry]]:
    """The unit's kind and its entries, each a validated resource."""
    raw_entries: list[tuple[int, str | None, Any, Any]]
    if kind == "ndjson":
        raw_entries = [(n, None, None, r) for n, r in enumerate(data, start=1)]
        unit_kind = "ndjson"
    else:
        if not isinstance(data, dict):
            raise NotFhirError("expected a JSON object (a FHIR resource or Bundle)")
        validate_resource(data)
        if data["resourceType"] == "Bundle" and data.get("type") != "document":
            unit_kind, raw_entries = _entries_of_bundle(data)
        else:
            unit_kind, raw_entries = "resource", [(1, None, None, data)]

    entries: list[_Entry] = []
    for number, full_url, request, resource in raw_entries:
        rtype = validate_resource(resource, entry=number)
        try:
            check_resource(resource)
        except RecordError as error:
            raise error.located(entry=number) from None
        if request is not None and not isinstance(request, dict):
            raise InvalidFieldError("entry.request must be an object", entry=number, field="Bundle.entry.request")
        entries.append(_Entry(number, full_url, request, resource, rtype))
    return unit_kind, entries


def _prepare(data: Any, *, source: str, existing: ExistingRecords, kind: str | None) -> PreparedUnit:
    unit_kind, entries = _read_entries(data, kind)

    # Conditional creates/updates ask the store: all of the unit's criteria in one batch.
    store = _Prefetched(existing)
    store.prefetch_identifiers(_criteria_keys(entries))
    if store.hidden_keys is not None:
        store.prefetch_hidden((e.resource_type, _new_id(e)) for e in entries)

    # Identifiers present in this unit, for conditional references to resources created in it.
    local_identifiers: dict[IdentifierKey, str] = {}
    ref_map: dict[str, str] = {}
    assigned: list[_Assigned] = []
    seen_ids: dict[tuple[str, str], int] = {}
    matched: list[tuple[int, str, str]] = []
    for e in entries:
        rid, write, named_by = _assign_id(e, store, local_identifiers)
        if not write:
            matched.append((e.number, e.resource_type, rid))
        key = (e.resource_type, rid)
        if write and key in seen_ids:
            raise InvalidFieldError(f"{e.resource_type}/{rid} appears twice in this unit (entry {seen_ids[key]})",
                                    entry=e.number, field=f"{e.resource_type}.id")
        seen_ids[key] = e.number
        if e.full_url:
            ref_map[e.full_url] = f"{e.resource_type}/{rid}"
        old_id = e.resource.get("id")
        if isinstance(old_id, str) and old_id != rid:
            ref_map.setdefault(f"{e.resource_type}/{old_id}", f"{e.resource_type}/{rid}")
        identifiers = _identifiers(e.resource)
        for system, value in identifiers:
            local_identifiers.setdefault((e.resource_type, system, value), rid)
        assigned.append(_Assigned(e, rid, write, identifiers, named_by))

    local_keys = {f"{a.entry.resource_type}/{a.id}" for a in assigned}
    resolver = _ReferenceResolver(ref_map, local_keys, local_identifiers, store)

    # Serialise each resource with its server id; the references that may need the store (conditional, or
    # relative to a resource outside the unit) are then asked in one batch, and the JSON is cut at every
    # reference to rewrite them.
    staged: list[tuple[_Assigned, dict[str, Any], bytes, str | None]] = []
    literals: set[bytes] = set()
    for a in assigned:
        if not a.write:
            continue
        given = dict(a.entry.resource)
        given["id"] = a.id
        sent = _take_server_meta(given)
        raw = exactjson.dumps(given)
        if _REFERENCE_KEY in raw:
            literals.update(_STORE_REFERENCE.findall(raw))
        staged.append((a, given, raw, sent))
    resolver.prefetch(literals)

    prepared: list[PreparedResource] = []
    for a, given, raw, sent in staged:
        e = a.entry
        pieces = raw.split(_REFERENCE_KEY) if _REFERENCE_KEY in raw else None
        raw, resolved = resolver.rewrite(given, raw, pieces, entry=e.number, path=e.resource_type)
        prepared.append(
            PreparedResource(
                resource_type=e.resource_type,
                id=a.id,
                source=given,
                raw=raw,
                entry=e.number,
                patient_id=_patient_id(given, resolved, resolver),
                identifiers=a.identifiers,
                name_tokens=_name_tokens(given),
                named_by=a.named_by,
                source_id=_source_id(e.resource, a.id),
                sent_last_updated=sent,
                categories=categories_of(given),
            )
        )
    return PreparedUnit(source=source, kind=unit_kind, resources=prepared, matched_existing=len(matched),
                        matched=matched)


@dataclass(slots=True)
class _Assigned:
    entry: _Entry
    id: str
    write: bool  # False: a conditional create that matched a stored resource
    identifiers: list[tuple[str | None, str]]
    named_by: str


def _assign_id(e: _Entry, store: _Prefetched, local_identifiers: dict[IdentifierKey, str]) -> tuple[str, bool, str]:
    """The server id of an entry, whether it is written, and what named the id (see
    :attr:`PreparedResource.named_by`)."""
    method = (e.request or {}).get("method")
    url = (e.request or {}).get("url")
    if method in (None, "POST"):
        criteria = (e.request or {}).get("ifNoneExist")
        if method == "POST" and isinstance(criteria, str):
            field = "Bundle.entry.request.ifNoneExist"
            system, value = parse_criteria(e.resource_type, criteria, entry=e.number, field=field)
            found = local_identifiers.get((e.resource_type, system, value)) or store.match(
                e.resource_type, criteria, entry=e.number, field=field)
            return (found, False, "criteria") if found else (_derived_id(e, store), True, _new_id_basis(e))
        if method is None and isinstance(e.resource.get("id"), str):
            return e.resource["id"], True, "id"
        return _derived_id(e, store), True, _new_id_basis(e)
    if method == "PUT":
        if not isinstance(url, str) or not url:
            raise MissingFieldError("PUT entry without request.url", entry=e.number, field="Bundle.entry.request.url")
        if "?" in url:
            found = store.match(e.resource_type, url, entry=e.number, field="Bundle.entry.request.url")
            return (found, True, "criteria") if found else (_derived_id(e, store), True, _new_id_basis(e))
        parts = url.strip("/").split("/")
        if len(parts) != 2 or parts[0] != e.resource_type or not ID_PATTERN.match(parts[1]):
            raise InvalidFieldError(f"PUT url {url!r} does not name {e.resource_type}/<id>",
                                    entry=e.number, field="Bundle.entry.request.url")
        return parts[1], True, "url"
    raise UnsupportedError(f"request.method {method!r} is not supported by import", entry=e.number,
                           field="Bundle.entry.request.method")


def _take_server_meta(resource: dict[str, Any]) -> str | None:
    """Remove ``meta.versionId``/``meta.lastUpdated`` from ``resource`` (a shallow copy: the input's ``meta``
    is copied, not changed); returns the ``lastUpdated`` sent."""
    meta = resource.get("meta")
    if not isinstance(meta, dict) or ("versionId" not in meta and "lastUpdated" not in meta):
        return None
    kept = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
    if kept:
        resource["meta"] = kept
    else:
        del resource["meta"]
    sent = meta.get("lastUpdated")
    return sent if isinstance(sent, str) else None


def _source_id(resource: dict[str, Any], rid: str) -> str | None:
    given = resource.get("id")
    return given if isinstance(given, str) and given != rid else None


def _derived_id(e: _Entry, store: _Prefetched) -> str:
    rid = _new_id(e)
    return rid if store.hidden_keys is None else store.free_id(e.resource_type, rid)


def _new_id_basis(e: _Entry) -> str:
    return "fullUrl" if e.full_url else "content"


def _patient_id(source: dict[str, Any], resolved: list[str], resolver: _ReferenceResolver) -> str | None:
    """The Patient a resource belongs to: its subject/patient/beneficiary, else the first Patient reference."""
    rtype = source.get("resourceType")
    if rtype == "Patient":
        rid = source.get("id")
        return rid if isinstance(rid, str) else None
    for element in PATIENT_ELEMENTS:
        holder = source.get(element)
        if isinstance(holder, dict) and isinstance(holder.get("reference"), str):
            target = resolver.resolve(holder["reference"], entry=0, path=element)
            if target.startswith("Patient/"):
                return target[len("Patient/"):]
    if rtype in NOT_PATIENT_DATA:
        return None
    return next((r[len("Patient/"):] for r in resolved if r.startswith("Patient/")), None)


def _new_id(e: _Entry) -> str:
    if e.full_url:
        basis = e.full_url
    elif isinstance((e.request or {}).get("ifNoneExist"), str):
        basis = f"{e.resource_type}?{e.request['ifNoneExist']}"  # type: ignore[index]
    else:
        basis = f"{e.resource_type}:{exactjson.dumps(e.resource, sort_keys=True).decode()}"
    return uuid5(basis)


_NAMESPACE_BYTES = ID_NAMESPACE.bytes


def uuid5(name: str) -> str:
    """``str(uuid.uuid5(ID_NAMESPACE, name))`` without building UUID objects (one per imported resource)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode("utf-8"), usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# A JSON string after "reference": characters other than quote and backslash, or a backslash escape.
_REFERENCE = re.compile(rb'"reference":"((?:[^"\\]|\\.)*)"')
_REFERENCE_KEY = b'"reference":"'
# References that may need the store (neither urn: nor contained nor absolute), without escapes.
_STORE_REFERENCE = re.compile(rb'"reference":"((?!urn:|#|https?:)[^"\\]*)"')


class _Unresolved(Exception):
    def __init__(self, reference: str) -> None:
        super().__init__(reference)
        self.reference = reference


def _path_of_reference(node: Any, reference: str, path: str) -> str | None:
    """The FHIRPath-like location of the first ``reference`` equal to ``reference``."""
    if isinstance(node, dict):
        if node.get("reference") == reference:
            return f"{path}.reference"
        for key, value in node.items():
            if isinstance(value, dict | list):
                found = _path_of_reference(value, reference, f"{path}.{key}")
                if found:
                    return found
    elif isinstance(node, list):
        for value in node:
            found = _path_of_reference(value, reference, path)
            if found:
                return found
    return None


class _ReferenceResolver:
    def __init__(
        self,
        ref_map: dict[str, str],
        local_keys: set[str],
        local_identifiers: dict[IdentifierKey, str],
        existing: _Prefetched,
    ) -> None:
        self.ref_map = ref_map
        self.local_keys = local_keys
        self.local_identifiers = local_identifiers
        self.existing = existing
        self._cache: dict[str, str] = {}
        # JSON string content of a reference as serialised -> (resolved, bytes that replace '"reference":"<it>')
        self._bytes_cache: dict[bytes, tuple[str, bytes]] = {}

    def prefetch(self, literals: Iterable[bytes]) -> None:
        """Ask the store, in two batches, about every reference of the unit that is neither a ``urn:`` nor
        a local one: conditional references (by identifier) and ``Type/id`` of resources stored before."""
        identifiers: list[IdentifierKey] = []
        keys: list[tuple[str, str]] = []
        for literal in literals:
            if b"\\" in literal or literal.startswith((b"urn:", b"#", b"http:", b"https:")):
                continue
            reference = literal.decode("utf-8", "replace")
            if reference in self.ref_map:
                continue
            if "?" in reference:
                rtype = reference.split("?", 1)[0]
                try:
                    system, value = parse_criteria(rtype, reference, entry=0, field="")
                except RecordError:
                    continue
                if rtype in RESOURCE_TYPES and (rtype, system, value) not in self.local_identifiers:
                    identifiers.append((rtype, system, value))
                continue
            parts = reference.split("/")
            if len(parts) >= 2 and parts[0] in RESOURCE_TYPES and f"{parts[0]}/{parts[1]}" not in self.local_keys:
                keys.append((parts[0], parts[1]))
        self.existing.prefetch_identifiers(identifiers)
        self.existing.prefetch_keys(keys)

    def rewrite(self, resource: dict[str, Any], raw: bytes, pieces: list[bytes] | None, *, entry: int,
                path: str) -> tuple[bytes, list[str]]:
        """The JSON ``raw`` of ``resource`` with every ``reference`` resolved, and the resolved references in
        order. ``pieces`` is ``raw`` split at ``"reference":"`` (None: no reference). Works on the serialised
        JSON (fast); when a reference cannot be resolved, walks the tree once more to name the field."""
        if pieces is None:
            return raw, []
        out = [pieces[0]]
        resolved_in_order: list[str] = []
        cache = self._bytes_cache
        for number in range(1, len(pieces)):
            piece = pieces[number]
            end = piece.find(b'"')
            literal = piece[:end]
            done = cache.get(literal)
            if done is None:
                if end < 0 or b"\\" in literal:  # an escape in the reference: the general (regex) path
                    return self._rewrite_escaped(resource, raw, entry=entry, path=path)
                resolved = self._resolve_or_name(resource, literal.decode(), entry=entry, path=path)
                done = (resolved, _REFERENCE_KEY + orjson.dumps(resolved)[1:-1])
                cache[literal] = done
            resolved_in_order.append(done[0])
            out.append(done[1])
            out.append(piece[end:])
        return b"".join(out), resolved_in_order

    def _resolve_or_name(self, resource: dict[str, Any], reference: str, *, entry: int, path: str) -> str:
        try:
            return self.resolve(reference, entry=entry, path=path)
        except RecordError:
            field = _path_of_reference(resource, reference, path) or f"{path}.reference"
            self._cache.pop(reference, None)
            return self.resolve(reference, entry=entry, path=field)  # raises, naming the field

    def _rewrite_escaped(self, resource: dict[str, Any], raw: bytes, *, entry: int,
                         path: str) -> tuple[bytes, list[str]]:
        resolved_in_order: list[str] = []

        def substitute(match: re.Match[bytes]) -> bytes:
            literal = match.group(1)
            reference = orjson.loads(b'"' + literal + b'"') if b"\\" in literal else literal.decode()
            try:
                resolved = self.resolve(reference, entry=entry, path=path)
            except RecordError:
                raise _Unresolved(reference) from None
            resolved_in_order.append(resolved)
            return b'"reference":' + orjson.dumps(resolved)

        try:
            rewritten = _REFERENCE.sub(substitute, raw)
        except _Unresolved as missing:
            self._resolve_or_name(resource, missing.reference, entry=entry, path=path)
            raise
        return rewritten, resolved_in_order

    def resolve(self, reference: str, *, entry: int, path: str) -> str:
        cached = self._cache.get(reference)
        if cached is not None:
            return cached
        resolved = self._resolve(reference, entry=entry, path=path)
        self._cache[reference] = resolved
        return resolved

    def _resolve(self, reference: str, *, entry: int, path: str) -> str:
        if reference.startswith("#"):
            return reference
        if reference in self.ref_map:
            return self.ref_map[reference]
        if reference.startswith(("urn:uuid:", "urn:oid:")):
            raise UnresolvedReferenceError(f"reference {reference!r} matches no entry of this bundle",
                                           entry=entry, field=path)
        if "?" in reference:
            rtype = reference.split("?", 1)[0]
            if rtype not in RESOURCE_TYPES:
                raise UnresolvedReferenceError(f"conditional reference {reference!r}: unknown type", entry=entry,
                                               field=path)
            system, value = parse_criteria(rtype, reference, entry=entry, field=path)
            found = self.local_identifiers.get((rtype, system, value)) or self.existing.match(
                rtype, reference, entry=entry, field=path)
            if not found:
                raise UnresolvedReferenceError(
                    f"conditional reference {reference!r} matches no stored {rtype} (import it first)",
                    entry=entry, field=path)
            return f"{rtype}/{found}"
        if reference.startswith(("http://", "https://")):
            return reference  # an external server's resource: kept as given
        parts = reference.split("/")
        if len(parts) >= 2 and parts[0] in RESOURCE_TYPES:
            key = f"{parts[0]}/{parts[1]}"
            if key in self.local_keys or self.existing.exists(parts[0], parts[1]):
                return reference
            raise UnresolvedReferenceError(f"reference {reference!r} resolves to nothing (not in this unit or the "
                                           "store)", entry=entry, field=path)
        raise UnresolvedReferenceError(f"reference {reference!r} is not a FHIR reference", entry=entry, field=path)


def iter_resources(units: Iterable[PreparedUnit]) -> Iterable[PreparedResource]:
    for unit in units:
        yield from unit.resources
