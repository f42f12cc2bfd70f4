"""Health and version: public, no patient data."""

from __future__ import annotations

from fastapi import APIRouter

from medtwin import __version__
from medtwin.api.deps import StoreDep
from medtwin.api.schemas import Health

router = APIRouter(tags=["system"])


@router.get("/health", response_model=Health, summary="Liveness and schema revision")
def health(store: StoreDep) -> Health:
    return Health(status="ok", version=__version__, schema_revision=store.schema_revision())
