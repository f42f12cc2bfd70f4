"""Consent to research use: opt-in, recorded with time and author, the newest decision wins.

A patient's data reach the research export and cohort queries only if their newest research consent
decision is ``permit``; no record means no consent. Every decision is kept (history), never updated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, insert, select

from medtwin.store.security_tables import consents

PURPOSES = ("research",)
DECISIONS = ("permit", "deny")


class ConsentError(ValueError):
    """Bad consent input; names the field."""


@dataclass(frozen=True)
class ConsentRecord:
    patient_id: str
    purpose: str
    decision: str
    recorded_at: datetime
    recorded_by: str


def record_consent(conn: Connection, patient_id: str, decision: str, recorded_by: str,
                   clock: Callable[[], datetime], purpose: str = "research") -> ConsentRecord:
    if not patient_id or len(patient_id) > 64:
        raise ConsentError("patient_id: required, at most 64 characters")
    if purpose not in PURPOSES:
        raise ConsentError(f"purpose: must be one of {', '.join(PURPOSES)}")
    if decision not in DECISIONS:
        raise ConsentError(f"decision: must be one of {', '.join(DECISIONS)}")
    at = clock()
    conn.execute(insert(consents).values(patient_id=patient_id, purpose=purpose, decision=decision,
                                         recorded_at=at, recorded_by=recorded_by[:150]))
    return ConsentRecord(patient_id, purpose, decision, at, recorded_by)


def history(conn: Connection, patient_id: str, purpose: str = "research") -> list[ConsentRecord]:
    rows = conn.execute(select(consents).where(consents.c.patient_id == patient_id,
                                               consents.c.purpose == purpose).order_by(consents.c.pk))
    return [ConsentRecord(r.patient_id, r.purpose, r.decision, r.recorded_at, r.recorded_by) for r in rows]


def current_decision(conn: Connection, patient_id: str, purpose: str = "research") -> str | None:
    rows = history(conn, patient_id, purpose)
    return rows[-1].decision if rows else None


def consenting_patients(conn: Connection, patient_ids: Iterable[str] | None = None,
                        purpose: str = "research") -> frozenset[str]:
    """Patients whose newest decision for ``purpose`` is permit (optionally among ``patient_ids``)."""
    newest = (select(consents.c.patient_id, func.max(consents.c.pk).label("pk"))
              .where(consents.c.purpose == purpose).group_by(consents.c.patient_id).subquery())
    query = select(consents.c.patient_id).join(newest, consents.c.pk == newest.c.pk).where(
        consents.c.decision == "permit")
    found = frozenset(r[0] for r in conn.execute(query))
    return found if patient_ids is None else found & frozenset(patient_ids)
