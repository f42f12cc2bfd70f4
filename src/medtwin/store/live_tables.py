"""Tables of the live twin: quarantined samples, alerts and the online filter's state.

Declared on the shared ``metadata``; created by the Alembic revision ``0003_live`` (``alerts.condition_cleared_at``: ``0005``). Accepted samples go to
``samples`` (``medtwin.store.schema``).
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Float, Index, Integer, LargeBinary, String, Table, Text

from medtwin.store.metadata import BIG_ID, metadata

quarantine = Table(
    "quarantine",
    metadata,
    Column("pk", BIG_ID, primary_key=True, autoincrement=True),
    Column("patient_id", String(64), doc="Patient the sample claimed, if any"),
    Column("device", String(128)),
    Column("metric", String(64)),
    Column("time", DateTime(timezone=True), doc="Sample time, if it could be read"),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("source", String(64), nullable=False, doc="http | websocket | mqtt | fleet | ..."),
    Column("reason", String(64), nullable=False, doc="machine-readable: out-of-range | unit | malformed | ..."),
    Column("field", String(255), doc="Which field of the payload was wrong"),
    Column("detail", Text, doc="Human-readable reason, never PHI"),
    Column("payload", LargeBinary, info={"sealed": True}, doc="The sample as received (sealed)"),
    Column("idempotency_key", String(255), doc="Set when known: a retried bad sample is quarantined once"),
)
Index("ix_quarantine_patient_received", quarantine.c.patient_id, quarantine.c.received_at)
Index("ix_quarantine_idempotency_key", quarantine.c.idempotency_key, unique=True)

alerts = Table(
    "alerts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("patient_id", String(64), nullable=False),
    Column("rule", String(64), nullable=False, doc="predicted-hypo | hypo-l1 | hypo-l2 | hyper-l1 | hyper-l2 | "
                                                    "news2 | hr-deviation | ..."),
    Column("severity", String(16), nullable=False, doc="low | medium | high | critical"),
    Column("status", String(16), nullable=False, doc="open | acknowledged | resolved"),
    Column("dedupe_key", String(255), nullable=False, doc="At most one unresolved alert per key"),
    Column("opened_at", DateTime(timezone=True), nullable=False, doc="Data time the condition began"),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False, doc="Data time the condition last held"),
    Column("occurrences", Integer, nullable=False, default=1, doc="Evaluations folded into this alert"),
    Column("score", Float, doc="Rule's number: NEWS2 score, predicted glucose mg/dL, lead time min, ..."),
    Column("acknowledged_at", DateTime(timezone=True)),
    Column("acknowledged_by", String(150)),
    Column("resolved_at", DateTime(timezone=True)),
    Column("resolved_by", String(150), doc="A user, or 'system' when a low/medium alert's condition cleared"),
    Column("condition_cleared_at", DateTime(timezone=True),
           doc="Data time an unresolved serious alert's condition cleared; it stays until a person acknowledges "
               "it (revision 0005)"),
    Column("message", Text, nullable=False, doc="One line for a clinician, never free-text PHI"),
    Column("details", LargeBinary, info={"sealed": True}, doc="JSON: the rule's inputs and outputs (sealed)"),
)
Index("ix_alerts_patient_status", alerts.c.patient_id, alerts.c.status)
Index("ix_alerts_dedupe_status", alerts.c.dedupe_key, alerts.c.status)

twin_live_state = Table(
    "twin_live_state",
    metadata,
    Column("patient_id", String(64), primary_key=True),
    Column("kind", String(32), primary_key=True, doc="glucose-filter | hr-baseline | ..."),
    Column("twin_version", Integer, doc="The twin version this state was started from / last saved as"),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("data_time", DateTime(timezone=True), doc="Time of the last sample folded in"),
    Column("payload", LargeBinary, nullable=False, info={"sealed": True}, doc="JSON state (sealed)"),
)
