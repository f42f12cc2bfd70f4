"""Turn one unit of FHIR input (a bundle, an ndjson file, a single resource) into resources ready to
store: validated, with server ids assigned, ``urn:uuid:`` and conditional references resolved.

Pure domain code: what is already stored is asked through an :class:`ExistingRecords` callback, so the same
logic runs against any store (or none).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote

import orjson

from medtwin.record.errors import (
    InvalidFieldError,
    MissingFieldError,
    NotFhirError,
    RecordError,
    UnknownResourceTypeError,
    UnresolvedReferenceError,
    UnsupportedError,
)
from medtwin.record.fhir_spec import ID_PATTERN, REQUIRED_ELEMENTS, RESOURCE_TYPES, has_element
from medtwin.record.indexing import NOT_PATIENT_DATA, PATIENT_ELEMENTS

# Server ids for POSTed entries: uuid5 of their fullUrl in this namespace (stable across imports).
ID_NAMESPACE = uuid.UUID("5b0c7a64-8f0e-4c55-9a57-6d1b8f2e9c11")

BUNDLE_KINDS = frozenset({"transaction", "batch", "collection", "searchset", "document", "message", "history"})


class ExistingRecords(Protocol):
    """What the preparer may ask of the store."""

    def find_by_identifier(self, resource_type: str, system: str | None, value: str) -> str | None: ...

    def exists(self, resource_type: str, resource_id: str) -> bool: ...


class NoExistingRecords:
    """An empty store."""

    def find_by_identifier(self, resource_type: str, system: str | None, value: str) -> str | None:
        return None

    def exists(self, resource_type: str, resource_id: str) -> bool:
        return False


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

    @property
    def content(self) -> dict[str, Any]:
        """The final resource as stored (parsed from ``raw``)."""
        parsed: dict[str, Any] = orjson.loads(self.raw)
        return parsed


@dataclass(slots=True)
class PreparedUnit:
    source: str
    kind: str
    resources: list[PreparedResource]
    matched_existing: int = 0  # conditional creates that found an existing resource


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


def _parse_criteria(resource_type: str, criteria: str, *, entry: int, field: str) -> tuple[str | None, str]:
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


def _prepare(data: Any, *, source: str, existing: ExistingRecords, kind: str | None) -> PreparedUnit:
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
        if request is not None and not isinstance(request, dict):
            raise InvalidFieldError("entry.request must be an object", entry=number, field="Bundle.entry.request")
        entries.append(_Entry(number, full_url, request, resource, rtype))

    # Identifiers present in this unit, for conditional references to resources created in it.
    local_identifiers: dict[tuple[str, str | None, str], str] = {}
    ref_map: dict[str, str] = {}
    assigned: list[tuple[_Entry, str, bool]] = []  # (entry, id, write?)
    seen_ids: dict[tuple[str, str], int] = {}
    matched = 0
    for e in entries:
        method = (e.request or {}).get("method")
        url = (e.request or {}).get("url")
        write = True
        if method in (None, "POST"):
            criteria = (e.request or {}).get("ifNoneExist")
            if method == "POST" and isinstance(criteria, str):
                system, value = _parse_criteria(e.resource_type, criteria, entry=e.number,
                                                field="Bundle.entry.request.ifNoneExist")
                found = local_identifiers.get((e.resource_type, system, value)) or existing.find_by_identifier(
                    e.resource_type, system, value)
                if found:
                    rid, write = found, False
                    matched += 1
                else:
                    rid = _new_id(e)
            elif method == "POST":
                rid = _new_id(e)
            else:
                rid = e.resource.get("id") or _new_id(e)
        elif method == "PUT":
            if not isinstance(url, str) or not url:
                raise MissingFieldError("PUT entry without request.url", entry=e.number,
                                        field="Bundle.entry.request.url")
            if "?" in url:
                system, value = _parse_criteria(e.resource_type, url, entry=e.number, field="Bundle.entry.request.url")
                rid = existing.find_by_identifier(e.resource_type, system, value) or _new_id(e)
            else:
                parts = url.strip("/").split("/")
                if len(parts) != 2 or parts[0] != e.resource_type or not ID_PATTERN.match(parts[1]):
                    raise InvalidFieldError(f"PUT url {url!r} does not name {e.resource_type}/<id>",
                                            entry=e.number, field="Bundle.entry.request.url")
                rid = parts[1]
        else:
            raise UnsupportedError(f"request.method {method!r} is not supported by import", entry=e.number,
                                   field="Bundle.entry.request.method")
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
        for system, value in _identifiers(e.resource):
            local_identifiers.setdefault((e.resource_type, system, value), rid)
        assigned.append((e, rid, write))

    local_keys = {f"{e.resource_type}/{rid}" for e, rid, _ in assigned}
    resolver = _ReferenceResolver(ref_map, local_keys, local_identifiers, existing)
    prepared: list[PreparedResource] = []
    for e, rid, write in assigned:
        if not write:
            continue
        given = dict(e.resource)
        given["id"] = rid
        raw, resolved = resolver.rewrite(given, entry=e.number, path=e.resource_type)
        prepared.append(
            PreparedResource(
                resource_type=e.resource_type,
                id=rid,
                source=given,
                raw=raw,
                entry=e.number,
                patient_id=_patient_id(given, resolved, resolver),
                identifiers=_identifiers(given),
                name_tokens=_name_tokens(given),
            )
        )
    return PreparedUnit(source=source, kind=unit_kind, resources=prepared, matched_existing=matched)


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
        basis = f"{e.resource_type}:{orjson.dumps(e.resource, option=orjson.OPT_SORT_KEYS).decode()}"
    return str(uuid.uuid5(ID_NAMESPACE, basis))


_REFERENCE = re.compile(rb'"reference":"((?:[^"\\\\]|\\\\.)*)"')


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
        local_identifiers: dict[tuple[str, str | None, str], str],
        existing: ExistingRecords,
    ) -> None:
        self.ref_map = ref_map
        self.local_keys = local_keys
        self.local_identifiers = local_identifiers
        self.existing = existing
        self._cache: dict[str, str] = {}
        self._bytes_cache: dict[bytes, tuple[str, bytes]] = {}

    def rewrite(self, resource: dict[str, Any], *, entry: int, path: str) -> tuple[bytes, list[str]]:
        """The JSON of ``resource`` with every ``reference`` resolved, and the resolved references in order.
        Works on the serialised JSON (fast); when a reference cannot be resolved, walks the tree once more
        to name the field."""
        raw = orjson.dumps(resource)
        if b'"reference":' not in raw:
            return raw, []
        resolved_in_order: list[str] = []

        def substitute(match: re.Match[bytes]) -> bytes:
            literal = match.group(1)
            done = self._bytes_cache.get(literal)
            if done is not None:
                resolved_in_order.append(done[0])
                return done[1]
            reference = orjson.loads(b'"' + literal + b'"') if b"\\" in literal else literal.decode()
            try:
                resolved = self.resolve(reference, entry=entry, path=path)
            except RecordError:
                raise _Unresolved(reference) from None
            replacement = b'"reference":' + orjson.dumps(resolved)
            self._bytes_cache[literal] = (resolved, replacement)
            resolved_in_order.append(resolved)
            return replacement

        try:
            rewritten = _REFERENCE.sub(substitute, raw)
        except _Unresolved as missing:
            field = _path_of_reference(resource, missing.reference, path) or f"{path}.reference"
            self._cache.pop(missing.reference, None)
            self.resolve(missing.reference, entry=entry, path=field)  # raises, naming the field
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
            system, value = _parse_criteria(rtype, reference, entry=entry, field=path)
            found = self.local_identifiers.get((rtype, system, value)) or self.existing.find_by_identifier(
                rtype, system, value)
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
