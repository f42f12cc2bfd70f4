"""Security middleware and the one call that installs all of it: ``install_security(app, ...)``.

* :class:`AuditMiddleware` - writes the audit record of every guarded request (and every login) with the
  final status and the client address *before* the response starts; if the audit write fails the client
  gets a 500 instead of the data (fail closed).
* :class:`RateLimit` - per client address, a sliding one-minute window for all requests and a tighter one
  for the token endpoint (OWASP API4); 429 problem+json with ``Retry-After``.
* :class:`SecurityHeaders` - nosniff, frame denial, no referrer, a same-origin CSP, ``no-store`` on the
  API, HSTS over HTTPS.
* CORS stays closed unless ``Settings.cors_origins`` lists origins.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import anyio
import orjson
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medtwin.api.deps import AUDIT_SCOPE_KEY, TOKEN_URL, AuditContext, SecurityContext
from medtwin.config import Settings
from medtwin.security import audit
from medtwin.security.accounts import utcnow
from medtwin.security.crypto import KeyRing
from medtwin.security.tokens import TokenService
from medtwin.store.database import Store

log = logging.getLogger("medtwin.security")


def _problem(status: int, title: str, detail: str, headers: list[tuple[bytes, bytes]] | None = None
             ) -> tuple[Message, Message]:
    body = orjson.dumps({"type": f"urn:medtwin:problem:{title.lower().replace(' ', '-')}", "title": title,
                         "status": status, "detail": detail})
    start: Message = {"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode()),
        *(headers or [])]}
    return start, {"type": "http.response.body", "body": body}


def route_template(scope: Scope) -> str:
    """The path of the request as its route declares it (``/api/v1/patients/{patient_id}``), never the path
    as sent: a path parameter may hold an identifier, and the audit log holds none. Without a matched
    route, the path with every path parameter's value replaced by its name."""
    path = str(scope.get("path", ""))
    params = {k: str(v) for k, v in (scope.get("path_params") or {}).items()}
    template = getattr(scope.get("route"), "path", None)
    if isinstance(template, str):  # the route's own path, under whatever prefix it was mounted
        rendered = template
        for name, value in params.items():
            rendered = rendered.replace("{" + name + "}", value)
        if path.endswith(rendered):
            return path[: len(path) - len(rendered)] + template
    by_value = {value: "{" + name + "}" for name, value in params.items() if value}
    return "/".join(by_value.get(segment, segment) for segment in path.split("/"))


class AuditMiddleware:
    def __init__(self, app: ASGIApp, store: Store, clock: Callable[[], datetime]) -> None:
        self.app, self.store, self.clock = app, store, clock

    def _write(self, ctx: AuditContext, status: int) -> None:
        outcome = "success" if status < 400 else ("denied" if ctx.denied else "failure")
        entry = audit.AuditEntry(
            actor=ctx.actor, role=ctx.role, action=ctx.action or "unknown",
            resource_type=ctx.resource_type or "unknown", resource_id=ctx.resource_id,
            patient_id=ctx.patient_id, outcome=outcome, status=status, client=ctx.client,
            detail=ctx.detail or None)
        with self.store.begin() as connection:
            audit.append(connection, entry, self.clock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        ctx = AuditContext(client=client[0] if client else None)
        ctx.detail["method"] = scope.get("method")
        scope[AUDIT_SCOPE_KEY] = ctx
        swallow = False

        async def audited_send(message: Message) -> None:
            nonlocal swallow
            if swallow:
                return
            if message["type"] == "http.response.start" and ctx.action is not None:
                ctx.detail["route"] = route_template(scope)
                try:
                    await anyio.to_thread.run_sync(self._write, ctx, int(message["status"]))
                except Exception:
                    log.exception("audit write failed; answering 500 instead of the response")
                    swallow = True
                    start, body = _problem(500, "Internal server error", "the access could not be audited")
                    await send(start)
                    await send(body)
                    return
            await send(message)

        await self.app(scope, receive, audited_send)


class RateLimit:
    """Sliding-window limits per client address (in memory, per app instance)."""

    def __init__(self, app: ASGIApp, per_minute: int, login_per_minute: int,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.app, self.per_minute, self.login_per_minute, self.monotonic = app, per_minute, login_per_minute, monotonic
        self._hits: dict[tuple[str, str], deque[float]] = {}

    def _allow(self, key: tuple[str, str], limit: int, now: float) -> float | None:
        window = self._hits.get(key)
        if window is None:
            if len(self._hits) > 50_000:  # bound the memory: forget idle clients
                self._hits = {k: v for k, v in self._hits.items() if v and now - v[-1] < 60}
            window = self._hits[key] = deque()
        while window and now - window[0] >= 60:
            window.popleft()
        if len(window) >= limit:
            return 60 - (now - window[0])
        window.append(now)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = client[0] if client else "unknown"
        now = self.monotonic()
        wait = self._allow((address, "all"), self.per_minute, now)
        if wait is None and scope.get("path") == TOKEN_URL:
            wait = self._allow((address, "login"), self.login_per_minute, now)
        if wait is not None:
            retry = str(max(1, int(wait + 0.999))).encode()
            start, body = _problem(429, "Too many requests", "rate limit exceeded; retry later",
                                   [(b"retry-after", retry)])
            await send(start)
            await send(body)
            return
        await self.app(scope, receive, send)


class SecurityHeaders:
    CSP = b"default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; base-uri 'none'"

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        https = scope.get("scheme") == "https"

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = list(message.get("headers") or [])
                names = {h[0].lower() for h in headers}
                extra = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                         (b"referrer-policy", b"no-referrer"), (b"cross-origin-opener-policy", b"same-origin"),
                         (b"permissions-policy", b"camera=(), microphone=(), geolocation=()")]
                if path not in ("/docs", "/redoc"):  # the API docs page loads its own scripts
                    extra.append((b"content-security-policy", self.CSP))
                if path.startswith("/api/"):
                    extra.append((b"cache-control", b"no-store"))
                if https:
                    extra.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
                headers.extend(h for h in extra if h[0] not in names)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def install_security(app: FastAPI, settings: Settings, store: Store, keyring: KeyRing,
                     clock: Callable[[], datetime] = utcnow) -> SecurityContext:
    """Authentication context, the auth router and the middleware stack (outermost first: security
    headers, rate limit, CORS if configured, audit). Call once, at the end of ``create_app``; the context
    it returns goes into the app's services (``Services.security``)."""
    from medtwin.api.routers import auth

    tokens = TokenService(keyring.token_key, clock, access_ttl=timedelta(minutes=settings.access_token_minutes),
                          refresh_ttl=timedelta(hours=settings.refresh_token_hours))
    context = SecurityContext(keyring=keyring, tokens=tokens, clock=clock, settings=settings)
    audit.bind(store.engine, keyring)  # this database's audit chain is sealed with this ring's audit key
    app.include_router(auth.router, prefix="/api/v1")
    app.add_middleware(AuditMiddleware, store=store, clock=clock)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_credentials=False,
                           allow_methods=["GET", "POST", "PUT", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(RateLimit, per_minute=settings.rate_limit_per_minute,
                       login_per_minute=settings.login_attempts_per_minute)
    app.add_middleware(SecurityHeaders)
    return context
