from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from medtwin.api.app import create_app
from medtwin.config import Settings
from medtwin.security import accounts
from medtwin.security.crypto import AesGcmCodec, KeyRing
from medtwin.store.database import Store

ADMIN_PASSWORD = "correct horse battery staple"


@pytest.fixture
def keyring() -> KeyRing:
    return KeyRing.generate()


@pytest.fixture
def api_store(tmp_path: Path, keyring: KeyRing) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'api.db'}", AesGcmCodec(keyring))
    store.migrate()
    with store.begin() as connection:
        accounts.create_user(connection, "admin", ADMIN_PASSWORD, "admin")
    yield store
    store.dispose()


@pytest.fixture
def client(api_store: Store, keyring: KeyRing, tmp_path: Path) -> Iterator[TestClient]:
    """A client signed in as an admin (OAuth2 password flow through the real token endpoint)."""
    settings = Settings(data_dir=tmp_path, max_upload_bytes=5 * 1024 * 1024, rate_limit_per_minute=100_000)
    with TestClient(create_app(settings, store=api_store, keyring=keyring)) as test_client:
        token = test_client.post("/api/v1/auth/token", data={"grant_type": "password", "username": "admin",
                                                              "password": ADMIN_PASSWORD})
        assert token.status_code == 200, token.text
        test_client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        yield test_client
