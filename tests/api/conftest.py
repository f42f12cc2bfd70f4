from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from medtwin.api.app import create_app
from medtwin.config import Settings
from medtwin.store.database import Store


@pytest.fixture
def api_store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'api.db'}")
    store.migrate()
    yield store
    store.dispose()


@pytest.fixture
def client(api_store: Store, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path, max_upload_bytes=5 * 1024 * 1024)
    with TestClient(create_app(settings, store=api_store)) as test_client:
        yield test_client
