"""Users, device API keys and care teams (the data behind authentication and object-level checks)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from medtwin.security.passwords import hash_password, verify_password
from medtwin.store.security_tables import api_keys, care_team, users

Clock = Callable[[], datetime]
USER_ROLES = ("admin", "clinician", "patient", "researcher", "integration", "operations")
_USERNAME = re.compile(r"^[A-Za-z0-9._@-]{3,150}$")
API_KEY_PREFIX = "mtk_"


class AccountError(ValueError):
    """Bad input for an account operation; the message names the field."""


class NotFoundError(LookupError):
    """The named user or key does not exist."""


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class User:
    id: str
    username: str
    role: str
    patient_id: str | None
    active: bool
    token_generation: int


def _row_to_user(row: object) -> User:
    m = row._mapping  # type: ignore[attr-defined]
    return User(m["id"], m["username"], m["role"], m["patient_id"], bool(m["active"]), int(m["token_generation"]))


def _check_role(role: str, patient_id: str | None) -> None:
    if role not in USER_ROLES:
        raise AccountError(f"role: must be one of {', '.join(USER_ROLES)}, got {role!r}")
    if role == "patient" and not patient_id:
        raise AccountError("patient_id: required for role 'patient'")
    if role != "patient" and patient_id:
        raise AccountError("patient_id: only users with role 'patient' are bound to a patient")


def create_user(conn: Connection, username: str, password: str, role: str,
                patient_id: str | None = None, clock: Clock = utcnow) -> User:
    if not _USERNAME.match(username):
        raise AccountError("username: 3-150 characters of letters, digits and . _ @ -")
    _check_role(role, patient_id)
    password_hash = hash_password(password, user_inputs=[username, role])
    user_id = str(uuid.uuid4())
    try:
        with conn.begin_nested():
            conn.execute(insert(users).values(
                id=user_id, username=username, password_hash=password_hash, role=role,
                patient_id=patient_id, active=True, token_generation=0, created_at=clock()))
    except IntegrityError as exc:
        raise AccountError(f"username: {username!r} already exists") from exc
    return User(user_id, username, role, patient_id, True, 0)


def get_user(conn: Connection, user_id: str) -> User | None:
    row = conn.execute(select(users).where(users.c.id == user_id)).first()
    return None if row is None else _row_to_user(row)


def find_user(conn: Connection, username: str) -> User | None:
    row = conn.execute(select(users).where(users.c.username == username)).first()
    return None if row is None else _row_to_user(row)


def require_user(conn: Connection, username: str) -> User:
    user = find_user(conn, username)
    if user is None:
        raise NotFoundError(f"username: no user {username!r}")
    return user


def list_users(conn: Connection) -> list[User]:
    return [_row_to_user(r) for r in conn.execute(select(users).order_by(users.c.username))]


def authenticate(conn: Connection, username: str, password: str) -> User | None:
    """The active user with this password, or None (same work whether or not the user exists)."""
    row = conn.execute(select(users).where(users.c.username == username)).first()
    stored = None if row is None else row._mapping["password_hash"]
    if not verify_password(stored, password) or row is None:
        return None
    user = _row_to_user(row)
    return user if user.active else None


def set_password(conn: Connection, username: str, password: str) -> None:
    user = require_user(conn, username)
    conn.execute(update(users).where(users.c.id == user.id).values(
        password_hash=hash_password(password, user_inputs=[username, user.role]), token_generation=users.c.token_generation + 1))


def set_role(conn: Connection, username: str, role: str, patient_id: str | None = None) -> User:
    """Change the role (revokes the user's tokens: they were issued for the old role)."""
    user = require_user(conn, username)
    _check_role(role, patient_id)
    conn.execute(update(users).where(users.c.id == user.id).values(
        role=role, patient_id=patient_id, token_generation=users.c.token_generation + 1))
    if role != "clinician":
        conn.execute(delete(care_team).where(care_team.c.user_id == user.id))
    return require_user(conn, username)


def set_active(conn: Connection, username: str, active: bool) -> None:
    user = require_user(conn, username)
    conn.execute(update(users).where(users.c.id == user.id).values(
        active=active, token_generation=users.c.token_generation + 1))


def revoke_all_tokens(conn: Connection, username: str) -> None:
    """Invalidate every access and refresh token issued to the user so far."""
    user = require_user(conn, username)
    conn.execute(update(users).where(users.c.id == user.id).values(
        token_generation=users.c.token_generation + 1))


# --- care teams --------------------------------------------------------------------------------
def add_to_care_team(conn: Connection, username: str, patient_id: str, clock: Clock = utcnow) -> None:
    user = require_user(conn, username)
    if user.role != "clinician":
        raise AccountError(f"username: {username!r} is a {user.role}, only clinicians join care teams")
    exists = conn.execute(select(care_team.c.user_id).where(
        care_team.c.user_id == user.id, care_team.c.patient_id == patient_id)).first()
    if exists is None:
        conn.execute(insert(care_team).values(user_id=user.id, patient_id=patient_id, added_at=clock()))


def remove_from_care_team(conn: Connection, username: str, patient_id: str) -> bool:
    user = require_user(conn, username)
    result = conn.execute(delete(care_team).where(
        care_team.c.user_id == user.id, care_team.c.patient_id == patient_id))
    return bool(result.rowcount)


def care_team_patients(conn: Connection, user_id: str) -> frozenset[str]:
    rows = conn.execute(select(care_team.c.patient_id).where(care_team.c.user_id == user_id))
    return frozenset(r[0] for r in rows)


# --- device API keys ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    patient_id: str
    revoked: bool


def _key_digest(index_key: bytes, secret: str) -> str:
    return hmac.new(index_key, secret.encode("utf-8"), hashlib.sha256).hexdigest()


def create_api_key(conn: Connection, name: str, patient_id: str, created_by: str, index_key: bytes,
                   clock: Clock = utcnow) -> tuple[ApiKey, str]:
    """A device credential bound to one patient; returns the key and the secret to hand over (shown once;
    only its keyed hash is stored)."""
    if not name.strip() or len(name) > 200:
        raise AccountError("name: 1-200 characters")
    if not patient_id.strip():
        raise AccountError("patient_id: required")
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    conn.execute(insert(api_keys).values(
        id=key_id, name=name, patient_id=patient_id, secret_hash=_key_digest(index_key, secret),
        created_at=clock(), created_by=created_by))
    return ApiKey(key_id, name, patient_id, False), f"{API_KEY_PREFIX}{key_id}_{secret}"


def verify_api_key(conn: Connection, presented: str, index_key: bytes) -> ApiKey | None:
    if not presented.startswith(API_KEY_PREFIX):
        return None
    key_id, sep, secret = presented[len(API_KEY_PREFIX):].partition("_")
    if not sep:
        return None
    row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
    digest = _key_digest(index_key, secret)
    if row is None or not hmac.compare_digest(row._mapping["secret_hash"], digest):
        return None
    if row._mapping["revoked_at"] is not None:
        return None
    return ApiKey(key_id, row._mapping["name"], row._mapping["patient_id"], False)


def revoke_api_key(conn: Connection, key_id: str, clock: Clock = utcnow) -> None:
    result = conn.execute(update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                          .values(revoked_at=clock()))
    if not result.rowcount:
        raise NotFoundError(f"key_id: no active device key {key_id!r}")


def list_api_keys(conn: Connection) -> list[ApiKey]:
    rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at))
    return [ApiKey(r.id, r.name, r.patient_id, r.revoked_at is not None) for r in rows]

