"""JWT access and refresh tokens (HS256, PyJWT): issue, verify, rotate refresh tokens, revoke.

* Access tokens live ``access_ttl`` (minutes); claims ``sub`` (user id), ``role``, ``scope``, ``gen`` (the
  user's token generation: bumping it revokes everything issued before), ``sid`` (the session: the family of
  the refresh token issued with it), ``jti``, ``iat``, ``exp``, ``iss``, ``typ="access"``; revoking one access
  token stores its ``jti``, logging out (revoking a refresh token) stores ``sid:<family>``, and every access
  token is checked against both, so a logout takes effect at once, not when the access token expires.
* The revocation check is cached per service for :data:`REVOCATION_CACHE_S` (a token seen as not revoked is
  not looked up again within that time); a revocation made through this service is applied to the cache at
  once, so it is never stale within the process; a revocation by another process is seen within the TTL.
* Refresh tokens are single use: each use marks the stored ``jti`` used and issues a new pair in the same
  family; presenting a used refresh token again (theft) revokes the whole family.
"""

from __future__ import annotations

import secrets
import threading
import time
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
REVOCATION_CACHE_S = 2.0
_CACHE_MAX = 10_000
SESSION_PREFIX = "sid:"


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
        self._revoked_here: set[str] = set()  # jti and sid:family revoked through this service
        self._clean_until: dict[str, float] = {}  # jti -> monotonic time until which "not revoked" holds
        self._lock = threading.Lock()

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
        family = family or secrets.token_hex(16)
        access = self._encode({
            "iss": ISSUER, "sub": user.id, "role": user.role, "scope": scope, "gen": user.token_generation,
            "sid": family, "jti": secrets.token_hex(16), "iat": int(now.timestamp()),
            "exp": int(access_exp.timestamp()), "typ": "access"})
        refresh_jti = secrets.token_hex(16)
        refresh_exp = now + self.refresh_ttl
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

    def _is_revoked(self, conn: Connection, jti: str, sid: str | None) -> bool:
        marks = [jti] if sid is None else [jti, SESSION_PREFIX + sid]
        now = time.monotonic()
        with self._lock:
            if any(m in self._revoked_here for m in marks):
                return True
            if self._clean_until.get(jti, 0.0) > now:
                return False
        revoked = conn.execute(select(revoked_tokens.c.jti).where(revoked_tokens.c.jti.in_(marks))).first()
        if revoked is None:
            with self._lock:
                if len(self._clean_until) > _CACHE_MAX:
                    self._clean_until = {k: t for k, t in self._clean_until.items() if t > now}
                self._clean_until[jti] = now + REVOCATION_CACHE_S
        return revoked is not None

    def _mark_revoked(self, mark: str) -> None:
        with self._lock:
            self._revoked_here.add(mark)
            if len(self._revoked_here) > _CACHE_MAX:  # the database still holds them all
                self._revoked_here = {mark}
                self._clean_until.clear()

    def verify_access(self, conn: Connection, token: str) -> AccessClaims:
        claims = self._decode(token, "access")
        sid = claims.get("sid")
        if self._is_revoked(conn, str(claims["jti"]), sid if isinstance(sid, str) else None):
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

    def _store_revocation(self, conn: Connection, mark: str, user_id: str, expires_at: datetime) -> None:
        self._mark_revoked(mark)
        if conn.execute(select(revoked_tokens.c.jti).where(revoked_tokens.c.jti == mark)).first() is None:
            conn.execute(insert(revoked_tokens).values(jti=mark, user_id=user_id, expires_at=expires_at,
                                                       revoked_at=self._clock()))

    def revoke_access(self, conn: Connection, claims: AccessClaims) -> None:
        self._store_revocation(conn, claims.jti, claims.user.id, claims.expires_at)

    def revoke_refresh(self, conn: Connection, token: str) -> None:
        """Revoke a refresh token's family and every access token issued in that session (logout)."""
        claims = self._decode(token, "refresh")
        row = conn.execute(select(refresh_tokens.c.family).where(refresh_tokens.c.jti == claims["jti"])).first()
        if row is None:
            raise TokenError("refresh token is unknown")
        now = self._clock()
        conn.execute(update(refresh_tokens).where(refresh_tokens.c.family == row[0],
                                                  refresh_tokens.c.revoked_at.is_(None))
                     .values(revoked_at=now))
        self._store_revocation(conn, SESSION_PREFIX + str(row[0]), str(claims["sub"]), now + self.access_ttl)

    def revoke(self, conn: Connection, token: str) -> None:
        """RFC 7009: revoke whichever kind of token this is (a refresh token ends its whole session)."""
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise TokenError("token is malformed or its signature is invalid") from exc
        if unverified.get("typ") != "access":
            self.revoke_refresh(conn, token)
            return
        claims = self._decode(token, "access")
        self._store_revocation(conn, str(claims["jti"]), str(claims["sub"]),
                               datetime.fromtimestamp(claims["exp"], UTC))
