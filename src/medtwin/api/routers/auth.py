"""OAuth2 token endpoint (password and refresh_token grants), revocation, and "who am I"."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from pydantic import BaseModel

from medtwin.api.deps import Principal, StoreDep, audit_context, guard, security_context
from medtwin.api.problems import ProblemError
from medtwin.security import login_throttle
from medtwin.security.accounts import User, authenticate, find_user
from medtwin.security.scopes import ScopeError, clamp_to_role, format_scopes, parse_scopes
from medtwin.security.tokens import TokenError, TokenPair
from medtwin.store.database import Store

router = APIRouter(prefix="/auth", tags=["auth"])
#: The OAuth2 grants the token endpoint takes (also what /.well-known/smart-configuration announces).
GRANT_TYPES = ("password", "refresh_token")


class TokenResponse(BaseModel):
    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str
    scope: str


class Me(BaseModel):
    subject: str
    role: str
    scope: str
    patient_ids: list[str] | None


def _grant_error(error: str, detail: str, status: int = 400) -> ProblemError:
    return ProblemError(status, "Bad request", detail, kind=error.replace("_", "-"), error=error)


def _response(pair: TokenPair) -> TokenResponse:
    return TokenResponse(access_token=pair.access_token, token_type=pair.token_type, expires_in=pair.expires_in,
                         refresh_token=pair.refresh_token, scope=pair.scope)


@router.post("/token", response_model=TokenResponse, summary="OAuth2 token endpoint (password, refresh_token)",
             responses={400: {"description": "invalid_grant / invalid_scope / unsupported_grant_type"}})
def token(
    request: Request,
    store: StoreDep,
    grant_type: Annotated[str, Form(pattern=f"^({'|'.join(GRANT_TYPES)})$")],
    username: Annotated[str | None, Form(max_length=150)] = None,
    password: Annotated[str | None, Form(max_length=1024)] = None,
    scope: Annotated[str | None, Form(max_length=2000)] = None,
    refresh_token: Annotated[str | None, Form(max_length=4096)] = None,
) -> TokenResponse:
    sec = security_context(request)
    ctx = audit_context(request)
    ctx.resource_type = "token"
    if grant_type == "refresh_token":
        ctx.action = "refresh"
        if not refresh_token:
            raise _grant_error("invalid_request", "refresh_token: required for grant_type=refresh_token")
        failure: TokenError | None = None
        with store.begin() as connection:  # commit even on failure: reuse detection revokes the family
            try:
                pair = sec.tokens.refresh(connection, refresh_token)
                claims = sec.tokens.verify_access(connection, pair.access_token)
            except TokenError as exc:
                failure = exc
        if failure is not None:
            ctx.denied = True
            raise _grant_error("invalid_grant", str(failure))
        ctx.actor, ctx.role = claims.user.username, claims.user.role
        return _response(pair)
    ctx.action = "login"
    if not username or password is None:
        raise _grant_error("invalid_request", "username and password: required for grant_type=password")
    ctx.actor = _login_actor(store, sec.keyring.index_key, username)
    try:
        requested = parse_scopes(scope) if scope else None
    except ScopeError as exc:
        raise _grant_error("invalid_scope", f"scope: {exc}") from exc
    try:
        user = _checked_login(store, sec.keyring.index_key, sec.clock(), username, password)
    except ProblemError:
        ctx.denied = True
        raise
    ctx.role = user.role
    granted = clamp_to_role(requested, user.role)
    if not granted:
        ctx.denied = True
        raise _grant_error("invalid_scope", f"scope: none of {scope!r} is allowed for role {user.role}")
    with store.begin() as connection:
        pair = sec.tokens.issue(connection, user, granted)
    return _response(pair)


def _login_actor(store: Store, index_key: bytes, username: str) -> str:
    """Who the audit record of a login names: the account, or for a name that is no account a blind index
    of it (what was typed may be anything, a patient's identifier included, and the audit log holds none)."""
    with store.connect() as connection:
        known = find_user(connection, username) is not None
    return username if known else "unknown-user:" + login_throttle.account_key(index_key, username)[:24]


def _checked_login(store: Store, index_key: bytes, now: datetime, username: str, password: str) -> User:
    """The user, after the per-account throttle (:mod:`medtwin.security.login_throttle`) let the attempt
    through and the password matched; the failure is committed before the problem is raised."""
    key = login_throttle.account_key(index_key, username)
    with store.begin() as connection:
        refusal = login_throttle.check(connection, key, now)
        user = None if refusal is not None else authenticate(connection, username, password)
        if refusal is None and user is None:
            login_throttle.record_failure(connection, key, now)
        elif user is not None:
            login_throttle.record_success(connection, key)
    if user is not None:
        return user
    if refusal is not None and refusal.locked:
        raise _grant_error("invalid_grant", refusal.message)
    if refusal is not None:
        raise ProblemError(429, "Too many requests", refusal.message, kind="login-throttled",
                         headers={"Retry-After": str(max(1, math.ceil(refusal.retry_after_s)))})
    raise _grant_error("invalid_grant", "username or password is wrong, or the account is disabled")


@router.post("/revoke", status_code=200,
             summary="Revoke a token (RFC 7009): a refresh token ends its session, access tokens included (logout)")
def revoke(request: Request, store: StoreDep, token: Annotated[str, Form(max_length=4096)]) -> dict[str, str]:
    sec = security_context(request)
    ctx = audit_context(request)
    ctx.action, ctx.resource_type = "logout", "token"
    with store.begin() as connection:
        try:
            sec.tokens.revoke(connection, token)
        except TokenError as exc:  # RFC 7009: an invalid token is not an error for the client
            ctx.detail["note"] = str(exc)
    return {"status": "revoked"}


@router.get("/me", response_model=Me, summary="The authenticated caller")
def me(principal: Annotated[Principal, Depends(guard("identity", "self"))]) -> Me:
    return Me(subject=principal.subject, role=principal.role, scope=format_scopes(principal.scopes),
              patient_ids=None if principal.patient_ids is None else sorted(principal.patient_ids))
