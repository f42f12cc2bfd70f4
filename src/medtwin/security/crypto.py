"""Encryption at rest: a key ring, the AES-GCM codec the store seals every PHI blob with, key rotation.

Blob format (all sealed blobs)::

    b"MTE1" | len(key_id) (1 byte) | key_id (ASCII) | nonce (12 bytes) | AES-256-GCM ciphertext + tag

The header (magic and key id) is authenticated as associated data, so a blob cannot be relabelled to
another key. Identifier lookups use a keyed blind index, ``HMAC-SHA256(index_key, value)``, whose key
never rotates with the data keys: blind tokens stay valid and MRN lookups keep working after a rotation.

Audit keys seal the audit chain (``HMAC-SHA256``, see :mod:`medtwin.security.audit`); each record names the
key id it was sealed with, so a new audit key can be made active (``medtwin keys rotate-audit``) while the old
ones stay in the ring to verify older records. A key ring written before audit keys existed gets one derived
from its token key (id ``a-derived``), so existing installations keep a stable audit key without a rewrite.

Key ring file (JSON, mode 0600)::

    {"version": 1, "active": "k-...", "keys": {"k-...": "<base64 32 bytes>", ...},
     "index_key": "<b64>", "token_key": "<b64>", "pseudonym_key": "<b64>",
     "audit_active": "a-...", "audit_keys": {"a-...": "<b64>", ...}}
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, Table, select, update

from medtwin.config import Settings
from medtwin.store.database import Store

MAGIC = b"MTE1"
NONCE_BYTES = 12
KEY_BYTES = 32
KEYRING_FILE_NAME = "keyring.json"
DERIVED_AUDIT_KEY_ID = "a-derived"


class CryptoError(Exception):
    """A blob cannot be opened (unknown key, tampered, not sealed) or a key ring is invalid."""


class KeyRingMissingError(CryptoError):
    """No key ring is configured and the caller may not generate one."""


def versioned_json(text: str, what: str, version: int, error: Callable[[str], Exception]) -> dict[str, Any]:
    """``text`` as a JSON object whose field ``version`` is ``version`` (the key ring, an audit checkpoint);
    otherwise ``error(message)``, the message naming the document ``what``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{what} is not valid JSON: {exc.msg} (line {exc.lineno})") from exc
    if not isinstance(data, dict):
        raise error(f"{what} must be a JSON object")
    if data.get("version") != version:
        raise error(f"{what} field 'version' must be {version}")
    return data


def _b64d(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise CryptoError(f"key ring field '{name}' must be a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise CryptoError(f"key ring field '{name}' is not valid base64") from exc
    if len(raw) != KEY_BYTES:
        raise CryptoError(f"key ring field '{name}' must decode to {KEY_BYTES} bytes, got {len(raw)}")
    return raw


def _b64e(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def new_key_id(now: datetime | None = None, prefix: str = "k") -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d")
    return f"{prefix}{stamp}-{secrets.token_hex(3)}"


def _check_key_ids(keys: dict[str, bytes], name: str) -> None:
    for kid, key in keys.items():
        if not kid or len(kid.encode("ascii", "replace")) > 64 or not kid.isascii():
            raise CryptoError(f"key ring field '{name}': invalid key id {kid!r}")
        if len(key) != KEY_BYTES:
            raise CryptoError(f"key ring field '{name}.{kid}' must be {KEY_BYTES} bytes")


@dataclass(frozen=True)
class KeyRing:
    """Data keys by id (one active for sealing), the stable index, token and pseudonym keys, and the audit
    keys by id (one active for sealing new audit records; none given: one derived from the token key)."""

    active: str
    keys: dict[str, bytes]
    index_key: bytes
    token_key: bytes
    pseudonym_key: bytes
    retired: frozenset[str] = field(default_factory=frozenset)
    audit_keys: dict[str, bytes] = field(default_factory=dict)
    audit_active: str = ""

    def __post_init__(self) -> None:
        if self.active not in self.keys:
            raise CryptoError(f"key ring field 'active': key id {self.active!r} is not in 'keys'")
        _check_key_ids(self.keys, "keys")
        if not self.audit_keys:  # a ring from before audit keys: a stable key derived from the token key
            derived = hmac.new(self.token_key, b"medtwin audit chain key v1", hashlib.sha256).digest()
            object.__setattr__(self, "audit_keys", {DERIVED_AUDIT_KEY_ID: derived})
            object.__setattr__(self, "audit_active", self.audit_active or DERIVED_AUDIT_KEY_ID)
        _check_key_ids(self.audit_keys, "audit_keys")
        if self.audit_active not in self.audit_keys:
            raise CryptoError(f"key ring field 'audit_active': key id {self.audit_active!r} is not in 'audit_keys'")

    @classmethod
    def generate(cls) -> KeyRing:
        kid, audit_kid = new_key_id(), new_key_id(prefix="a")
        return cls(
            active=kid,
            keys={kid: AESGCM.generate_key(bit_length=256)},
            index_key=secrets.token_bytes(KEY_BYTES),
            token_key=secrets.token_bytes(KEY_BYTES),
            pseudonym_key=secrets.token_bytes(KEY_BYTES),
            audit_keys={audit_kid: secrets.token_bytes(KEY_BYTES)},
            audit_active=audit_kid,
        )

    def with_new_active_key(self) -> KeyRing:
        """A copy with a fresh data key made active; older keys stay for opening existing blobs."""
        kid = new_key_id()
        while kid in self.keys:
            kid = new_key_id()
        keys = dict(self.keys)
        keys[kid] = AESGCM.generate_key(bit_length=256)
        return replace(self, active=kid, keys=keys)

    def with_new_audit_key(self) -> KeyRing:
        """A copy with a fresh audit key made active; the old ones stay to verify the records they sealed."""
        kid = new_key_id(prefix="a")
        while kid in self.audit_keys:
            kid = new_key_id(prefix="a")
        return replace(self, audit_keys={**self.audit_keys, kid: secrets.token_bytes(KEY_BYTES)}, audit_active=kid)

    def without_keys(self, key_ids: Iterable[str]) -> KeyRing:
        drop = set(key_ids)
        if self.active in drop:
            raise CryptoError("cannot retire the active key")
        keys = {k: v for k, v in self.keys.items() if k not in drop}
        return replace(self, keys=keys)

    # --- serialisation -------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(
            {
                "version": 1,
                "active": self.active,
                "keys": {k: _b64e(v) for k, v in sorted(self.keys.items())},
                "index_key": _b64e(self.index_key),
                "token_key": _b64e(self.token_key),
                "pseudonym_key": _b64e(self.pseudonym_key),
                "audit_active": self.audit_active,
                "audit_keys": {k: _b64e(v) for k, v in sorted(self.audit_keys.items())},
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> KeyRing:
        data = versioned_json(text, "key ring", 1, CryptoError)
        keys = data.get("keys")
        if not isinstance(keys, dict) or not keys:
            raise CryptoError("key ring field 'keys' must be a non-empty object")
        active = data.get("active")
        if not isinstance(active, str):
            raise CryptoError("key ring field 'active' must be a key id string")
        audit_keys = data.get("audit_keys", {})
        audit_active = data.get("audit_active", "")
        if not isinstance(audit_keys, dict) or not isinstance(audit_active, str):
            raise CryptoError("key ring fields 'audit_keys' and 'audit_active' must be an object and a key id")
        return cls(
            active=active,
            keys={str(k): _b64d(v, f"keys.{k}") for k, v in keys.items()},
            index_key=_b64d(data.get("index_key"), "index_key"),
            token_key=_b64d(data.get("token_key"), "token_key"),
            pseudonym_key=_b64d(data.get("pseudonym_key"), "pseudonym_key"),
            audit_keys={str(k): _b64d(v, f"audit_keys.{k}") for k, v in audit_keys.items()},
            audit_active=audit_active,
        )

    @classmethod
    def load(cls, path: Path) -> KeyRing:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise KeyRingMissingError(f"cannot read key file {path}: {exc.strerror}") from exc
        return cls.from_json(text)

    def save(self, path: Path) -> None:
        """Write atomically with mode 0600 (a crash leaves the old file intact)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp-{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(self.to_json())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def keyring_path(settings: Settings) -> Path:
    """Where the key ring file is (the configured one, or ``data_dir/keyring.json`` in demo mode)."""
    return settings.key_file if settings.key_file is not None else settings.data_dir / KEYRING_FILE_NAME


def load_keyring(settings: Settings) -> KeyRing:
    """The key ring from ``MEDTWIN_KEYRING`` or ``MEDTWIN_KEY_FILE``; in demo mode one is generated into
    the data folder. Anything else refuses, with the settings to use named. Its audit keys become the
    process's default for sealing the audit chain."""
    from medtwin.security import audit

    ring = _load_keyring(settings)
    audit.use_by_default(ring)
    return ring


def _load_keyring(settings: Settings) -> KeyRing:
    if settings.keyring is not None:
        return KeyRing.from_json(settings.keyring.get_secret_value())
    if settings.key_file is not None:
        return KeyRing.load(settings.key_file)
    demo_path = settings.data_dir / KEYRING_FILE_NAME
    if settings.demo:
        if demo_path.exists():
            return KeyRing.load(demo_path)
        ring = KeyRing.generate()
        ring.save(demo_path)
        return ring
    raise KeyRingMissingError(
        "no encryption key configured: set MEDTWIN_KEY_FILE to a key ring file (create one with "
        "`medtwin keys init --out PATH`) or MEDTWIN_KEYRING to its JSON; only demo mode (MEDTWIN_DEMO=1) "
        "generates a key by itself"
    )


class AesGcmCodec:
    """The store codec: AES-256-GCM with key ids, HMAC-SHA256 blind index."""

    def __init__(self, keyring: KeyRing) -> None:
        self.keyring = keyring
        self._aead = {kid: AESGCM(key) for kid, key in keyring.keys.items()}
        self._active_header = self._header(keyring.active)

    @staticmethod
    def _header(kid: str) -> bytes:
        raw = kid.encode("ascii")
        return MAGIC + bytes([len(raw)]) + raw

    def seal(self, plaintext: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        header = self._active_header
        return header + nonce + self._aead[self.keyring.active].encrypt(nonce, plaintext, header)

    def key_id_of(self, blob: bytes) -> str:
        blob = bytes(blob)
        if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 1:
            raise CryptoError("blob is not sealed by medtwin (missing header)")
        n = blob[len(MAGIC)]
        kid_end = len(MAGIC) + 1 + n
        if len(blob) < kid_end + NONCE_BYTES + 16:
            raise CryptoError("sealed blob is truncated")
        return blob[len(MAGIC) + 1 : kid_end].decode("ascii", "replace")

    def open(self, blob: bytes) -> bytes:
        blob = bytes(blob)
        kid = self.key_id_of(blob)
        aead = self._aead.get(kid)
        if aead is None:
            raise CryptoError(f"blob sealed with key {kid!r}, which is not in the key ring")
        header_len = len(MAGIC) + 1 + len(kid.encode("ascii"))
        header = blob[:header_len]
        nonce = blob[header_len : header_len + NONCE_BYTES]
        try:
            return aead.decrypt(nonce, blob[header_len + NONCE_BYTES :], header)
        except InvalidTag as exc:
            raise CryptoError(f"blob sealed with key {kid!r} failed authentication (tampered)") from exc

    def blind(self, value: str) -> str:
        return hmac.new(self.keyring.index_key, value.encode("utf-8"), hashlib.sha256).hexdigest()


def sealed_columns(tables: Iterable[Table]) -> list[tuple[Table, str, str]]:
    """(table, primary key column, sealed column) of every column marked ``info={"sealed": True}`` (the
    tables declare it with ``store.metadata.sealed``: the one list of what the codec seals)."""
    found: list[tuple[Table, str, str]] = []
    for table in tables:
        pk = list(table.primary_key.columns)
        if len(pk) != 1:
            continue
        for column in table.columns:
            if column.info.get("sealed"):
                found.append((table, pk[0].name, column.name))
    return found


@dataclass(frozen=True)
class RotationReport:
    new_key_id: str
    blobs_rewritten: dict[str, int]
    at: datetime


def reencrypt_all(connection: Connection, old: AesGcmCodec, new: AesGcmCodec,
                  tables: Iterable[Table], batch: int = 500) -> dict[str, int]:
    """Open every sealed blob with ``old`` and seal it again with ``new``'s active key, inside the caller's
    transaction (so a failure rewrites nothing). Returns the count per ``table.column``."""
    counts: dict[str, int] = {}
    for table, pk_name, col_name in sealed_columns(tables):
        pk_col, col = table.c[pk_name], table.c[col_name]
        done = 0
        last: Any = None
        while True:
            query = select(pk_col, col).order_by(pk_col).limit(batch)
            if last is not None:
                query = query.where(pk_col > last)
            rows = connection.execute(query).all()
            if not rows:
                break
            for key, blob in rows:
                if blob is None:
                    continue
                fresh = new.seal(old.open(blob))
                connection.execute(update(table).where(pk_col == key).values({col_name: fresh}))
                done += 1
            last = rows[-1][0]
        counts[f"{table.name}.{col_name}"] = done
    return counts


def key_ids_in_use(connection: Connection, codec: AesGcmCodec, tables: Iterable[Table]) -> dict[str, int]:
    """How many sealed blobs each key id seals (to know when an old key may be retired)."""
    counts: dict[str, int] = {}
    for table, _pk, col_name in sealed_columns(tables):
        for (blob,) in connection.execute(select(table.c[col_name])):
            if blob is not None:
                kid = codec.key_id_of(blob)
                counts[kid] = counts.get(kid, 0) + 1
    return counts


def rotate_keys(store: Store, key_file: Path, retire_old: bool = True) -> RotationReport:
    """Add a fresh active data key to the key file, then re-encrypt every sealed blob with it in one
    transaction. The key file is written first (old keys kept), so a failed re-encryption leaves every
    blob readable; old keys are dropped from the file only after the data no longer uses them."""
    from medtwin.store.schema import metadata

    ring = KeyRing.load(key_file)
    new_ring = ring.with_new_active_key()
    new_ring.save(key_file)
    codec = AesGcmCodec(new_ring)
    tables = list(metadata.tables.values())
    with store.begin() as connection:
        counts = reencrypt_all(connection, codec, codec, tables)
    if retire_old:
        with store.connect() as connection:
            in_use = key_ids_in_use(connection, codec, tables)
        unused = [kid for kid in new_ring.keys if kid != new_ring.active and kid not in in_use]
        if unused:
            new_ring.without_keys(unused).save(key_file)
    return RotationReport(new_key_id=new_ring.active, blobs_rewritten=counts, at=datetime.now(UTC))
