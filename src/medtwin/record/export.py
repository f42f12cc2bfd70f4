"""FHIR R4 Bundles out: a patient's complete record, like ``Patient/$everything``."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

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
