"""``GET /vocabulary``: medtwin's one vocabulary (:mod:`medtwin.vocab`) and the registered alert rules, read
only, for the dashboard and other clients, which read it instead of keeping copies.

Guard: ``identity`` on ``vocabulary``, i.e. any signed-in principal whatever its role or token scopes. The
document holds no patient data (metric names and units, thresholds, the episode definition, forecast
fields, the NEWS2 chart, rule labels), every role's screens need it, and it is not public: an anonymous
caller gets 401 as on every other route, so the deployment's rule set is not advertised.

Caching: a strong ``ETag`` (SHA-256 of the body) with ``Cache-Control: private, max-age=300``; a request
with a matching ``If-None-Match`` gets 304 and no body.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, Response

from medtwin.alerts.registry import create_rules, generation
from medtwin.api.deps import Principal, guard
from medtwin.model.panels import quantity_table
from medtwin.vocab import vocabulary

router = APIRouter(tags=["vocabulary"])
CACHE_CONTROL = "private, max-age=300"


def document() -> dict[str, Any]:
    """The vocabulary with the alert rules (each with the alert kinds it raises) and the quantities the patient
    page charts as one whatever code they were recorded under (model.panels.QUANTITIES)."""
    return {**vocabulary(), "quantities": quantity_table(),
            "alert_rules": [rule.info.as_json() for rule in create_rules()]}


_cached: tuple[int, bytes, str] | None = None


def _body() -> tuple[bytes, str]:
    """The serialised document and its ETag, rebuilt only when the registered rules change."""
    global _cached
    current = generation()
    if _cached is None or _cached[0] != current:
        body = orjson.dumps(document(), option=orjson.OPT_SORT_KEYS)
        _cached = (current, body, f'"{hashlib.sha256(body).hexdigest()[:32]}"')
    return _cached[1], _cached[2]


@router.get("/vocabulary", summary="Metrics, units, glucose thresholds, the episode definition, forecast fields, "
            "the NEWS2 chart and the alert rules (read only)",
            responses={200: {"content": {"application/json": {}}}, 304: {"description": "Not modified"}})
def get_vocabulary(request: Request,
                   principal: Annotated[Principal, Depends(guard("identity", "vocabulary"))]) -> Response:
    body, etag = _body()
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    match = request.headers.get("if-none-match", "")
    if etag in {tag.strip() for tag in match.split(",")} or match.strip() == "*":
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)
