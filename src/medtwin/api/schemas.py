"""Request and response models of the HTTP API (``XCreate`` / ``XPublic``)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, Field

from medtwin.twin.pharmacogenomics import PgxSummary
from medtwin.twin.summary import PatientSummary


class PatientPublic(BaseModel):
    id: str
    name: str | None
    gender: str | None
    birth_date: date | None
    age_years: int | None
    twin_version: int | None
    active_problems: int
    active_medications: int


class PatientPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[PatientPublic]


class TwinVersionPublic(BaseModel):
    version: int
    kind: str
    created_at: datetime
    actor: str
    provenance: dict[str, Any]


class TwinSummaryPublic(BaseModel):
    patient_id: str
    version: int
    provenance: dict[str, Any]
    summary: PatientSummary
    pharmacogenomics: PgxSummary | None = Field(default=None, description="Latest PGx phenotypes, if any")


class ObservationPublic(BaseModel):
    resource_id: str
    element: str
    system: str | None
    code: str | None
    display: str | None
    effective: datetime | None
    status: str | None
    value: float | None
    unit: str | None
    value_normalised: float | None
    unit_normalised: str | None
    unit_valid: bool | None
    value_text: str | None


class ObservationPage(BaseModel):
    total: int
    limit: int
    offset: int
    next_offset: int | None = Field(description="Offset of the next page, or null on the last page")
    items: list[ObservationPublic]


class ImportErrorPublic(BaseModel):
    kind: str
    message: str
    source: str | None
    entry: int | None
    field: str | None


class ImportUnitPublic(BaseModel):
    source: str
    kind: str
    import_id: str | None
    created: int
    updated: int
    unchanged: int
    by_type: dict[str, int]
    patients: list[str]
    warnings: list[str]
    error: ImportErrorPublic | None


class ImportResultPublic(BaseModel):
    ok: bool
    totals: dict[str, int]
    by_type: dict[str, int]
    units: list[ImportUnitPublic]


class Health(BaseModel):
    status: str
    version: str
    schema_revision: str | None
