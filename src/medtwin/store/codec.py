"""How blobs that may hold PHI are written to the store.

Every resource body and twin payload passes through a :class:`Codec`. The store code is the same
whether the codec is the plain one (development, demo without a key) or the AES-GCM one supplied by
``medtwin.security``; lookups by identifier go through :meth:`Codec.blind`, a deterministic hash.
"""

from __future__ import annotations

import hashlib
from typing import Protocol, runtime_checkable


@runtime_checkable
class Codec(Protocol):
    """Seals and opens stored blobs; blinds identifier values for equality lookups."""

    def seal(self, plaintext: bytes) -> bytes: ...

    def open(self, blob: bytes) -> bytes: ...

    def blind(self, value: str) -> str: ...


class PlainCodec:
    """Stores bytes unchanged; blinds with unkeyed SHA-256 (no secrecy: for development)."""

    def seal(self, plaintext: bytes) -> bytes:
        return plaintext

    def open(self, blob: bytes) -> bytes:
        return bytes(blob)

    def blind(self, value: str) -> str:
        return hashlib.sha256(value.encode("utf-8")).hexdigest()
