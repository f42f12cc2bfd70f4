"""FHIR R4 Bundles out: a patient's complete record, like ``Patient/$everything``."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from medtwin.record.fhirtime import format_datetime


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


def searchset_bundle(resources: Iterable[dict[str, Any]], *, base_url: str, now: datetime) -> dict[str, Any]:
    """A searchset Bundle of ``resources`` (Patient first), fullUrls under ``base_url``."""
    ordered = sorted(resources, key=lambda r: (r.get("resourceType") != "Patient", str(r.get("resourceType")),
                                               str(r.get("id"))))
    base = base_url.rstrip("/")
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "timestamp": format_datetime(now),
        "total": len(ordered),
        "entry": [
            {"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}}
            for r in ordered
        ],
    }
