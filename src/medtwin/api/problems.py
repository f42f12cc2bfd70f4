"""RFC 7807 problem details for every error the API returns."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from medtwin.pharmaco.errors import PharmacoInputError
from medtwin.physiology.errors import PhysiologyInputError
from medtwin.record.errors import RecordError
from medtwin.solve import SolverInputError

PROBLEM_JSON = "application/problem+json"


class ProblemError(Exception):
    """Raise from a handler to answer with a problem document."""

    def __init__(self, status: int, title: str, detail: str | None = None, *, kind: str = "error",
                 **extensions: Any) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail, self.kind, self.extensions = status, title, detail, kind, extensions


#: A refused record write: the write policy's refusals answer 403 or 404 (out of reach looks missing); any
#: other unit error is invalid input (422 with the caller's title).
RECORD_ERROR_STATUS: dict[str, tuple[int, str]] = {"forbidden": (403, "Forbidden"), "not-found": (404, "Not found")}


def record_status(error: RecordError, title: str = "Invalid FHIR input") -> tuple[int, str]:
    """(status, title) for a record unit's error."""
    return RECORD_ERROR_STATUS.get(error.kind, (422, title))


def record_problem(error: RecordError, title: str = "Invalid FHIR input") -> ProblemError:
    """The problem a refused or invalid record write answers with, naming the field."""
    status, title = record_status(error, title)
    return ProblemError(status, title, error.describe(), kind=error.kind, field=error.field)


def problem_response(status: int, title: str, detail: str | None = None, *, kind: str = "error",
                     instance: str | None = None, headers: dict[str, str] | None = None,
                     **extensions: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": f"urn:medtwin:problem:{kind}", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update({k: v for k, v in extensions.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


_TITLES = {400: "Bad request", 401: "Not authenticated", 403: "Forbidden", 404: "Not found",
           405: "Method not allowed", 409: "Conflict", 413: "Request too large", 415: "Unsupported media type",
           422: "Unprocessable content", 429: "Too many requests", 500: "Internal server error"}


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(exc.status, exc.title, exc.detail, kind=exc.kind, instance=request.url.path,
                                **exc.extensions)

    @app.exception_handler(RecordError)
    async def _record(request: Request, exc: RecordError) -> JSONResponse:
        return problem_response(422, "Invalid FHIR input", exc.describe(), kind=exc.kind, instance=request.url.path,
                                source=exc.source, entry=exc.entry, field=exc.field)

    async def _model_input(request: Request, exc: Exception) -> JSONResponse:
        field = getattr(exc, "field", None)
        message = getattr(exc, "message", None) or str(exc).removeprefix(f"{field}: ")
        return problem_response(422, "Invalid model input", f"{field}: {message}", kind="validation",
                                instance=request.url.path, field=field,
                                errors=[{"loc": [field], "msg": message, "type": "value_error"}])

    app.add_exception_handler(PhysiologyInputError, _model_input)
    app.add_exception_handler(SolverInputError, _model_input)

    @app.exception_handler(PharmacoInputError)
    async def _pharmaco(request: Request, exc: PharmacoInputError) -> JSONResponse:
        kind = re.sub(r"(?<!^)(?=[A-Z])", "-", type(exc).__name__.removesuffix("Error")).lower()
        return problem_response(422, "Invalid pharmacology input", str(exc), kind=kind, instance=request.url.path,
                                field=exc.field, errors=[{"loc": exc.field.split("."), "msg": exc.message,
                                                          "type": "value_error"}])

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg")), "type": str(e.get("type"))}
                  for e in exc.errors()]
        named = ", ".join(".".join(e["loc"]) for e in errors)
        return problem_response(422, "Invalid request", f"invalid field(s): {named}", kind="validation",
                                instance=request.url.path, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = _TITLES.get(exc.status_code, "Error")
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
        return problem_response(exc.status_code, title, detail, kind=title.lower().replace(" ", "-"),
                                instance=request.url.path, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(500, "Internal server error", "an unexpected error occurred; it has been logged",
                                kind="internal", instance=request.url.path)


# --- the problems in the OpenAPI document ----------------------------------------------------------
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "ProblemDetails",
    "type": "object",
    "description": "RFC 7807 problem details; extension members (field, errors, reason, ...) name what is wrong",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "description": "urn:medtwin:problem:<kind>"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string", "description": "The request path"},
        "errors": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
    },
    "additionalProperties": True,
}
_PROBLEM_REF = {"$ref": "#/components/schemas/ProblemDetails"}
_DESCRIPTIONS = {400: "Bad request", 401: "Not authenticated (no, expired, revoked or tampered token)",
                 403: "Forbidden: the role or the token's scopes do not allow this",
                 404: "Not found, or outside the caller's reach (the two look the same)",
                 409: "Conflict with the stored state", 413: "Request body too large",
                 415: "Unsupported media type", 422: "Invalid input (the problem names the field)",
                 429: "Too many requests; see Retry-After"}
_WRITES = ("post", "put", "patch", "delete")


def problem_statuses(method: str, operation: dict[str, Any]) -> set[int]:
    """The problem statuses an operation can answer, from what it declares: every one may be rate limited
    (429); a secured one 401/403 (and 409 for a write); one naming a patient or another path parameter 404;
    one with inputs 422; one with a body 400 (unparseable), 413 and 415."""
    params = operation.get("parameters") or []
    statuses = {429}
    if operation.get("security"):
        statuses |= {401, 403} | ({409} if method in _WRITES else set())
    if any(p.get("in") == "path" or p.get("name") in ("patient", "patient_id") for p in params):
        statuses.add(404)
    if params or "requestBody" in operation:
        statuses.add(422)
    if "requestBody" in operation:
        statuses |= {400, 413, 415}  # 400: a body that does not parse (JSON syntax)
    return statuses


def add_problem_responses(document: dict[str, Any]) -> dict[str, Any]:
    """Document the problem+json answers on every operation of an OpenAPI document (in place)."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components["ProblemDetails"] = PROBLEM_SCHEMA  # not "Problem": a problem-list entry has that name
    for name in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422 body, which medtwin never sends
        components.pop(name, None)
    for item in document.get("paths", {}).values():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            for status in problem_statuses(method, operation) | {int(s) for s in responses if str(s).isdigit()}:
                if status < 400:
                    continue
                entry = responses.setdefault(str(status), {"description": _DESCRIPTIONS.get(status, "Error")})
                entry["content"] = {PROBLEM_JSON: {"schema": _PROBLEM_REF}}
    return document


def document_problems(app: FastAPI) -> None:
    """Make ``app.openapi()`` list the problem responses of every route (applied once, in the app factory)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_problem_responses(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def require_media_type(request: Request, accepted: tuple[str, ...]) -> str:
    """The request's media type if it is one of ``accepted``, else 415 problem+json naming them."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in accepted:
        raise ProblemError(415, "Unsupported media type", f"send {', '.join(accepted)}, not {media or 'nothing'!r}",
                           kind="unsupported-media-type", field="content-type")
    return media
