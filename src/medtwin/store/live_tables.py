"""Tables of the live twin: quarantined samples, alerts and the online filter's state.

Declared on the shared ``metadata``; created by the Alembic revision ``0003_live`` (``alerts.condition_cleared_at``: ``0005``). Accepted samples go to
``samples`` (``medtwin.store.schema``).
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, String, Table, Text

from medtwin.store.metadata import keyed_table, metadata, patient_column, sealed, utc_time

quarantine = keyed_table(
    "quarantine",
    patient_column(doc="Patient the sample claimed, if any"),
    Column("device", String(128)),
    Column("metric", String(64)),
    utc_time("time", doc="Sample time, if it could be read"),
    utc_time("received_at", nullable=False),
    Column("source", String(64), nullable=False, doc="http | websocket | mqtt | fleet | ..."),
    Column("reason", String(64), nullable=False, doc="machine-readable: out-of-range | unit | malformed | ..."),
    Column("field", String(255), doc="Which field of the payload was wrong"),
    Column("detail", Text, doc="Human-readable reason, never PHI"),
    sealed("payload", doc="The sample as received (sealed)"),
    Column("idempotency_key", String(255), doc="Set when known: a retried bad sample is quarantined once"),
)
Index("ix_quarantine_patient_received", quarantine.c.patient_id, quarantine.c.received_at)
Index("ix_quarantine_idempotency_key", quarantine.c.idempotency_key, unique=True)

alerts = Table(
    "alerts",
    metadata,
    Column("id", String(36), primary_key=True),
    patient_column(nullable=False),
    Column("rule", String(64), nullable=False, doc="predicted-hypo | hypo-l1 | hypo-l2 | hyper-l1 | hyper-l2 | "
                                                    "news2 | hr-deviation | ..."),
    Column("severity", String(16), nullable=False, doc="low | medium | high | critical"),
    Column("status", String(16), nullable=False, doc="open | acknowledged | resolved"),
    Column("dedupe_key", String(255), nullable=False, doc="At most one unresolved alert per key"),
    utc_time("opened_at", nullable=False, doc="Data time the condition began"),
    utc_time("updated_at", nullable=False),
    utc_time("last_seen_at", nullable=False, doc="Data time the condition last held"),
    Column("occurrences", Integer, nullable=False, default=1, doc="Evaluations folded into this alert"),
    Column("score", Float, doc="Rule's number: NEWS2 score, predicted glucose mg/dL, lead time min, ..."),
    utc_time("acknowledged_at"),
    Column("acknowledged_by", String(150)),
    utc_time("resolved_at"),
    Column("resolved_by", String(150), doc="A user, or 'system' when a low/medium alert's condition cleared"),
    utc_time("condition_cleared_at",
           doc="Data time an unresolved serious alert's condition cleared; it stays until a person acknowledges "
               "it (revision 0005)"),
    Column("message", Text, nullable=False, doc="One line for a clinician, never free-text PHI"),
    sealed("details", doc="JSON: the rule's inputs and outputs (sealed)"),
)
Index("ix_alerts_patient_status", alerts.c.patient_id, alerts.c.status)
Index("ix_alerts_dedupe_status", alerts.c.dedupe_key, alerts.c.status)

twin_live_state = Table(
    "twin_live_state",
    metadata,
    patient_column(primary_key=True),
    Column("kind", String(32), primary_key=True, doc="glucose-filter | hr-baseline | ..."),
    Column("twin_version", Integer, doc="The twin version this state was started from / last saved as"),
    utc_time("updated_at", nullable=False),
    utc_time("data_time", doc="Time of the last sample folded in"),
    sealed("payload", nullable=False, doc="JSON state (sealed)"),
)
