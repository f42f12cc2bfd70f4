"""Fixtures for the security tests: a migrated store on SQLite and on PostgreSQL, a key ring, a clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from medtwin.security import audit
from medtwin.security.crypto import AesGcmCodec, KeyRing
from medtwin.store.database import Store


@pytest.fixture
def keyring() -> KeyRing:
    return KeyRing.generate()


@pytest.fixture
def codec(keyring: KeyRing) -> AesGcmCodec:
    return AesGcmCodec(keyring)


class FakeClock:
    """A settable clock (a real datetime source the tests move forward explicitly)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(database_url: str, codec: AesGcmCodec) -> Iterator[Store]:
    """A migrated store sealing with AES-GCM, on SQLite and PostgreSQL (``database_url`` from tests/conftest);
    its audit chain is keyed with the key ring's audit key."""
    instance = Store(database_url, codec)
    instance.migrate()
    audit.bind(instance.engine, codec.keyring)
    yield instance
    instance.dispose()


@pytest.fixture
def sqlite_store(tmp_path: Path, codec: AesGcmCodec) -> Iterator[Store]:
    instance = Store(f"sqlite:///{tmp_path / 'medtwin.db'}", codec)
    instance.migrate()
    audit.bind(instance.engine, codec.keyring)
    yield instance
    instance.dispose()
