"""JWT access and refresh tokens (HS256, PyJWT): issue, verify, rotate refresh tokens, revoke.

* Access tokens live ``access_ttl`` (minutes); claims ``sub`` (user id), ``role``, ``scope``, ``gen`` (the
  user's token generation: bumping it revokes everything issued before), ``jti``, ``iat``, ``exp``,
  ``iss``, ``typ="access"``; revoking one access token stores its ``jti``.
* Refresh tokens are single use: each use marks the stored ``jti`` used and issues a new pair in the same
  family; presenting a used refresh token again (theft) revokes the whole family.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from sqlalchemy import Connection, insert, select, update

from medtwin.security.accounts import Clock, User, get_user, utcnow
from medtwin.security.scopes import Scope, ScopeError, format_scopes, parse_scopes
from medtwin.store.security_tables import refresh_tokens, revoked_tokens

ALGORITHM = "HS256"
ISSUER = "medtwin"


class TokenError(Exception):
    """The token is invalid, expired or revoked (message safe to return to the client)."""


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    scope: str
    token_type: str = "bearer"


@dataclass(frozen=True)
class AccessClaims:
    user: User
    scopes: frozenset[Scope]
    jti: str
    expires_at: datetime


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class TokenService:
    def __init__(self, key: bytes, clock: Clock = utcnow, access_ttl: timedelta = timedelta(minutes=15),
                 refresh_ttl: timedelta = timedelta(hours=12)) -> None:
        if len(key) < 32:
            raise ValueError("key: token signing key must be at least 32 bytes")
        self._key = key
        self._clock = clock
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl

    def _encode(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def _decode(self, token: str, typ: str) -> dict[str, Any]:
        now = self._clock()
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self._key, algorithms=[ALGORITHM], issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "jti", "typ"], "verify_exp": False,
                         "verify_iat": False})
        except jwt.PyJWTError as exc:
            raise TokenError("token is malformed or its signature is invalid") from exc
        if claims.get("typ") != typ:
            raise TokenError(f"not an {typ} token")
        if not isinstance(claims["exp"], int | float) or now.timestamp() >= claims["exp"]:
            raise TokenError("token has expired")
        return claims

    def issue(self, conn: Connection, user: User, scopes: frozenset[Scope], family: str | None = None) -> TokenPair:
        now = self._clock()
        scope = format_scopes(scopes)
        access_exp = now + self.access_ttl
        access = self._encode({
            "iss": ISSUER, "sub": user.id, "role": user.role, "scope": scope, "gen": user.token_generation,
            "jti": secrets.token_hex(16), "iat": int(now.timestamp()), "exp": int(access_exp.timestamp()),
            "typ": "access"})
        refresh_jti = secrets.token_hex(16)
        refresh_exp = now + self.refresh_ttl
        family = family or secrets.token_hex(16)
        conn.execute(insert(refresh_tokens).values(
            jti=refresh_jti, user_id=user.id, family=family, issued_at=now, expires_at=refresh_exp))
        refresh = self._encode({
            "iss": ISSUER, "sub": user.id, "scope": scope, "gen": user.token_generation, "jti": refresh_jti,
            "iat": int(now.timestamp()), "exp": int(refresh_exp.timestamp()), "typ": "refresh"})
        return TokenPair(access, refresh, int(self.access_ttl.total_seconds()), scope)

    def _current_user(self, conn: Connection, claims: dict[str, Any]) -> User:
        user = get_user(conn, str(claims["sub"]))
        if user is None or not user.active:
            raise TokenError("token's user is unknown or disabled")
        if claims.get("gen") != user.token_generation:
            raise TokenError("token has been revoked")
        return user

    def verify_access(self, conn: Connection, token: str) -> AccessClaims:
        claims = self._decode(token, "access")
        revoked = conn.execute(select(revoked_tokens.c.jti).where(revoked_tokens.c.jti == claims["jti"])).first()
        if revoked is not None:
            raise TokenError("token has been revoked")
        user = self._current_user(conn, claims)
        if claims.get("role") != user.role:
            raise TokenError("token was issued for another role")
        try:
            scopes = parse_scopes(str(claims.get("scope", "")))
        except ScopeError as exc:
            raise TokenError("token scope is malformed") from exc
        return AccessClaims(user, scopes, str(claims["jti"]),
                            datetime.fromtimestamp(claims["exp"], UTC))

    def refresh(self, conn: Connection, token: str) -> TokenPair:
        """Rotate: the presented refresh token is used up and a new pair issued (same scopes, same family).
        A second presentation of a used token revokes every token of its family."""
        claims = self._decode(token, "refresh")
        row = conn.execute(select(refresh_tokens).where(refresh_tokens.c.jti == claims["jti"])).first()
        if row is None:
            raise TokenError("refresh token is unknown")
        m = row._mapping
        now = self._clock()
        if m["revoked_at"] is not None:
            raise TokenError("refresh token has been revoked")
        if m["used_at"] is not None:
            conn.execute(update(refresh_tokens).where(refresh_tokens.c.family == m["family"],
                                                      refresh_tokens.c.revoked_at.is_(None))
                         .values(revoked_at=now))
            raise TokenError("refresh token was already used; its whole family is now revoked")
        if now >= _aware(m["expires_at"]):
            raise TokenError("refresh token has expired")
        user = self._current_user(conn, claims)
        updated = conn.execute(update(refresh_tokens).where(refresh_tokens.c.jti == claims["jti"],
                                                            refresh_tokens.c.used_at.is_(None))
                               .values(used_at=now))
        if updated.rowcount != 1:  # lost a race with a concurrent use of the same token
            raise TokenError("refresh token was already used")
        return self.issue(conn, user, parse_scopes(str(claims.get("scope", ""))), family=m["family"])

    def revoke_access(self, conn: Connection, claims: AccessClaims) -> None:
        conn.execute(insert(revoked_tokens).values(jti=claims.jti, user_id=claims.user.id,
                                                   expires_at=claims.expires_at, revoked_at=self._clock()))

    def revoke_refresh(self, conn: Connection, token: str) -> None:
        """Revoke a refresh token's family (logout)."""
        claims = self._decode(token, "refresh")
        row = conn.execute(select(refresh_tokens.c.family).where(refresh_tokens.c.jti == claims["jti"])).first()
        if row is None:
            raise TokenError("refresh token is unknown")
        conn.execute(update(refresh_tokens).where(refresh_tokens.c.family == row[0],
                                                  refresh_tokens.c.revoked_at.is_(None))
                     .values(revoked_at=self._clock()))
