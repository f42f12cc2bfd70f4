"""Tables of ``medtwin.security``: users, tokens, device keys, care teams, consent and the audit chain.

Declared on the shared ``metadata``; created by the Alembic revisions ``0002_security`` and ``0004_keyed_audit``.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from medtwin.store.metadata import BIG_ID, keyed_table, metadata, patient_column, utc_time

users = Table(
    "users",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("username", String(150), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False, doc="Argon2id hash"),
    Column("role", String(20), nullable=False, doc="admin | clinician | patient | researcher"),
    patient_column(doc="For role 'patient': the one twin this user may see"),
    Column("active", Boolean, nullable=False, default=True),
    Column("token_generation", Integer, nullable=False, default=0,
           doc="Bumped to revoke every token issued before"),
    utc_time("created_at", nullable=False),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("family", String(64), nullable=False, index=True, doc="All rotations of one login share it"),
    utc_time("issued_at", nullable=False),
    utc_time("expires_at", nullable=False),
    utc_time("used_at", doc="Set when rotated; a second use revokes the family"),
    utc_time("revoked_at"),
)

revoked_tokens = Table(
    "revoked_tokens",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("user_id", String(36), nullable=False),
    utc_time("expires_at", nullable=False),
    utc_time("revoked_at", nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True, doc="Public key id, part of the presented key"),
    Column("name", String(200), nullable=False),
    patient_column(nullable=False, doc="The one patient this device writes for"),
    Column("secret_hash", String(64), nullable=False, doc="HMAC-SHA256 of the secret part"),
    utc_time("created_at", nullable=False),
    Column("created_by", String(150), nullable=False),
    utc_time("revoked_at"),
)

care_team = Table(
    "care_team",
    metadata,
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    patient_column(primary_key=True),
    utc_time("added_at", nullable=False),
)
Index("ix_care_team_patient", care_team.c.patient_id)

consents = keyed_table(
    "consents",
    patient_column(nullable=False),
    Column("purpose", String(32), nullable=False, doc="research"),
    Column("decision", String(8), nullable=False, doc="permit | deny"),
    utc_time("recorded_at", nullable=False),
    Column("recorded_by", String(150), nullable=False),
)
Index("ix_consents_patient_purpose", consents.c.patient_id, consents.c.purpose, consents.c.pk)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BIG_ID, primary_key=True, autoincrement=False),
    Column("at", String(40), nullable=False, doc="ISO 8601 UTC, exactly as hashed"),
    Column("actor", String(200), nullable=False),
    Column("role", String(20), nullable=False),
    Column("action", String(20), nullable=False),
    Column("resource_type", String(64), nullable=False),
    Column("resource_id", String(200)),
    patient_column(),
    Column("outcome", String(16), nullable=False, doc="success | denied | failure"),
    Column("status", Integer),
    Column("client", String(64)),
    Column("detail", Text, doc="Canonical JSON, never PHI"),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, doc="HMAC-SHA256 with audit key key_id (SHA-256 when NULL)"),
    Column("key_id", String(64), doc="Audit key id in the key ring; NULL: record from before 0004 (unkeyed)"),
)
Index("ix_audit_log_patient", audit_log.c.patient_id)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("seq", BIG_ID, nullable=False),
    Column("hash", String(64), nullable=False),
)

login_throttle = Table(
    "login_throttle",
    metadata,
    Column("account", String(64), primary_key=True, doc="Blind index of the user name (known or not)"),
    Column("failures", Integer, nullable=False, doc="Consecutive failed logins"),
    utc_time("last_failure_at", nullable=False),
    utc_time("blocked_until", doc="No attempt is checked before this time"),
    Column("locked", Boolean, nullable=False, doc="Hard lockout: only an administrator unlocks"),
)
