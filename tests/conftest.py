"""Shared fixtures: stores on SQLite and PostgreSQL, the shared Synthea data, the synthetic patients."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from medtwin.store.database import Store

REPO = Path(__file__).resolve().parents[1]
SHARED_SYNTHEA = REPO.parent / "shared" / "data" / "synthea-r4"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Hypothesis: no 200 ms per-example deadline and no "too slow to generate" health check (both fail at random on a
# loaded 2-core machine: timing, not the property); in CI the examples are derived from each test (derandomize),
# so a CI run is repeatable: a property that fails there fails every time. Locally they stay random.
hypothesis_settings.register_profile("medtwin", deadline=None, suppress_health_check=[HealthCheck.too_slow],
                                     derandomize=IN_CI)
hypothesis_settings.load_profile("medtwin")


def postgres_url() -> str | None:
    return os.environ.get("MEDTWIN_TEST_POSTGRES_URL")


def require_service(name: str, available: bool) -> None:
    """Skip on a developer machine without the service; fail in CI, where it must be there."""
    if not available:
        if IN_CI:
            pytest.fail(f"{name} is required in CI (CI=true) but is not available")
        pytest.skip(f"{name} not available (scripts/test.sh starts it)")


@pytest.fixture(scope="session")
def synthea_dir() -> Path:
    if not SHARED_SYNTHEA.is_dir():
        require_service("the shared Synthea data (../shared/data/synthea-r4)", False)
    return SHARED_SYNTHEA


def _fresh_postgres_url(base: str) -> Iterator[str]:
    url = make_url(base)
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'medtwin.db'}"
        return
    base = postgres_url()
    require_service("PostgreSQL (MEDTWIN_TEST_POSTGRES_URL)", base is not None)
    assert base is not None
    yield from _fresh_postgres_url(base)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A migrated, empty store on each backend."""
    instance = Store(database_url)
    instance.migrate()
    yield instance
    instance.dispose()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    instance = Store(f"sqlite:///{tmp_path / 'medtwin.db'}")
    instance.migrate()
    yield instance
    instance.dispose()
