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
