"""Fixtures for the security tests: a migrated store on SQLite and on PostgreSQL, a key ring, a clock."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from medtwin.security.crypto import AesGcmCodec, KeyRing
from medtwin.store.database import Store


def postgres_url() -> str | None:
    url = os.environ.get("MEDTWIN_TEST_POSTGRES_URL")
    if not url and os.environ.get("CI", "").lower() == "true":
        pytest.fail("CI=true but MEDTWIN_TEST_POSTGRES_URL is not set: PostgreSQL tests must run in CI")
    return url


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


def make_store(kind: str, tmp_path: Path, codec: AesGcmCodec) -> Iterator[Store]:
    if kind == "sqlite":
        store = Store(f"sqlite:///{tmp_path / 'medtwin.db'}", codec)
        store.migrate()
        yield store
        store.dispose()
        return
    base = postgres_url()
    if not base:
        pytest.skip("MEDTWIN_TEST_POSTGRES_URL not set")
    name = f"mtsec_{secrets.token_hex(6)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    store = Store(url, codec)
    try:
        store.migrate()
        yield store
    finally:
        store.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path, codec: AesGcmCodec) -> Iterator[Store]:
    yield from make_store(request.param, tmp_path, codec)


@pytest.fixture
def sqlite_store(tmp_path: Path, codec: AesGcmCodec) -> Iterator[Store]:
    yield from make_store("sqlite", tmp_path, codec)
