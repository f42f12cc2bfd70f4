"""FHIR R4 Bundles out: a patient's complete record, like ``Patient/$everything``."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import orjson

from medtwin.record.fhirtime import format_datetime
from medtwin.record.prepare import uuid5


def references_of(node: Any) -> set[str]:
    """Every relative ``Type/id`` reference inside a resource."""
    found: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("reference")
            if isinstance(ref, str) and not ref.startswith(("#", "http://", "https://", "urn:")) and "?" not in ref:
                parts = ref.split("/")
                if len(parts) >= 2:
                    found.add(f"{parts[0]}/{parts[1]}")
            stack.extend(v for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, dict | list))
    return found


# A "reference" string in compact JSON (as the store writes resources), escapes allowed.
_REFERENCE = re.compile(rb'"reference":"((?:[^"\\]|\\.)*)"')


def references_in_raw(raw: bytes) -> set[str]:
    """:func:`references_of` read from a resource's stored JSON (compact, as ``exactjson.dumps`` writes it)
    without parsing it: the same set, about ten times faster (``Patient/$everything`` follows every
    reference of ~700 resources)."""
    found: set[str] = set()
    for match in _REFERENCE.findall(raw):
        ref = match.decode("utf-8") if b"\\" not in match else orjson.loads(b'"' + match + b'"')
        if not ref.startswith(("#", "http://", "https://", "urn:")) and "?" not in ref:
            parts = ref.split("/")
            if len(parts) >= 2:
                found.add(f"{parts[0]}/{parts[1]}")
    return found


def stamped(raw: bytes, version: int, last_updated: datetime) -> bytes:
    """``exactjson.dumps(with_version(loads(raw), ...))`` without the slow exact parse: the server's meta
    spliced into the stored bytes (appended as a last ``meta``, or at the end of the resource's own
    ``meta``), the same bytes :func:`with_version` gives. Where the splice point is not certain (the meta's
    text occurs twice, or has numbers a float would change) it takes the exact route."""
    stamp = b'"versionId":"%d","lastUpdated":"%s"' % (version, format_datetime(last_updated).encode())
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:  # an integer beyond 64 bits: orjson cannot read it
        parsed = None
    meta = parsed.get("meta") if isinstance(parsed, dict) else None
    if isinstance(parsed, dict) and "meta" not in parsed and raw.endswith(b"}"):
        return raw[:-1] + b',"meta":{' + stamp + b"}}"
    if isinstance(meta, dict):
        text = b'"meta":' + orjson.dumps(meta)
        if raw.count(text) == 1:
            cut = raw.index(text) + len(text) - 1
            return raw[:cut] + (b"," if meta else b"") + stamp + raw[cut:]
    from medtwin.record import exactjson  # the exact route: rare

    return exactjson.dumps(with_version(exactjson.loads(raw), version, last_updated))


def with_version(resource: dict[str, Any], version: int, last_updated: datetime) -> dict[str, Any]:
    """``resource`` with the store's ``meta.versionId`` and ``meta.lastUpdated`` (other meta kept)."""
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = format_datetime(last_updated)
    return {**resource, "meta": meta}


def full_url(base_url: str | None, resource: dict[str, Any]) -> str:
    """An entry's fullUrl: ``base/Type/id`` on a server, else a ``urn:uuid:`` derived from ``Type/id`` (an
    export written to a file has no server address; ``urn:medtwin/...`` was not a valid URN)."""
    key = f"{resource['resourceType']}/{resource['id']}"
    if base_url:
        return f"{base_url.rstrip('/')}/{key}"
    return f"urn:uuid:{uuid5(key)}"


def searchset_bundle(resources: Iterable[dict[str, Any]], *, base_url: str | None, now: datetime,
                     included: frozenset[str] = frozenset(), self_link: str | None = None) -> dict[str, Any]:
    """A searchset Bundle of ``resources`` (Patient first), fullUrls under ``base_url`` (see :func:`full_url`).
    Resources whose ``Type/id`` is in ``included`` were not asked for but are referenced by those that were:
    ``search.mode`` ``include``; the others ``match`` (``total`` counts only those)."""
    ordered = sorted(resources, key=lambda r: (r.get("resourceType") != "Patient", str(r.get("resourceType")),
                                               str(r.get("id"))))
    modes = ["include" if f"{r['resourceType']}/{r['id']}" in included else "match" for r in ordered]
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "timestamp": format_datetime(now),
        "total": modes.count("match"),
    }
    if self_link:
        bundle["link"] = [{"relation": "self", "url": self_link}]
    bundle["entry"] = [{"fullUrl": full_url(base_url, r), "resource": r, "search": {"mode": mode}}
                       for r, mode in zip(ordered, modes, strict=True)]
    return bundle
