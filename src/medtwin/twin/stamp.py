"""The stamp every public view of a stored twin version starts with: whose twin, which version, when, by whom.

One definition for the glucose twin (:mod:`medtwin.twin.glucose`) and the pharmacogenomic report
(:mod:`medtwin.twin.pharmacogenomics`), which both answer with these four fields first.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class TwinVersionStamp(BaseModel):
    """Whose twin, which version, when and by whom: the fields of a stored
    :class:`~medtwin.store.twins.TwinVersion` that every public view of one starts with."""

    patient_id: str
    version: int
    created_at: datetime
    actor: str
