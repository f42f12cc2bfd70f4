"""SMART on FHIR discovery: ``/.well-known/smart-configuration`` (and the same under the FHIR base, where SMART
clients look) describes the OAuth endpoints and scopes that exist, read from the auth router and
``security.scopes`` (one source of truth): the token endpoint with its grants, revocation, the scopes the
roles can be granted (SMART v2 grammar, v1 suffixes accepted). No authorization endpoint exists (no EHR or
standalone launch), so none is announced and the launch capabilities are absent."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from medtwin.api.routers import auth
from medtwin.security.scopes import ROLE_CEILING, format_scopes

router = APIRouter(include_in_schema=False)


def smart_configuration(base: str, token_path: str, revoke_path: str) -> dict[str, Any]:
    """The discovery document for a server at ``base`` (scheme://host)."""
    scopes = sorted({str(s) for ceiling in ROLE_CEILING.values() for s in ceiling})
    return {
        "token_endpoint": f"{base}{token_path}",
        "revocation_endpoint": f"{base}{revoke_path}",
        "grant_types_supported": list(auth.GRANT_TYPES),
        "token_endpoint_auth_methods_supported": ["none"],  # the token endpoint takes no client credentials
        "scopes_supported": scopes,
        "response_types_supported": [],  # no authorization endpoint
        "code_challenge_methods_supported": [],
        "capabilities": ["permission-v2", "permission-v1"],
        "description": {role: format_scopes(ceiling) for role, ceiling in sorted(ROLE_CEILING.items())},
    }


async def _configuration(request: Request) -> JSONResponse:
    base = str(request.base_url).rstrip("/")
    document = smart_configuration(base, request.app.url_path_for(auth.token.__name__),
                                   request.app.url_path_for(auth.revoke.__name__))
    return JSONResponse(document, headers={"Cache-Control": "public, max-age=3600"})


router.add_api_route("/.well-known/smart-configuration", _configuration, methods=["GET"])
router.add_api_route("/fhir/.well-known/smart-configuration", _configuration, methods=["GET"])
