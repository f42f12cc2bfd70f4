"""What the API (and the dashboard) asks of the alerts: lists, transitions with their events, NEWS2 now.

No web framework here: the router authorises and calls these; errors are :class:`AlertNotFound` (404),
:class:`~medtwin.alerts.repository.AlertTransitionError` (409) and
:class:`~medtwin.alerts.news2.News2InputError` (422).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, select

from medtwin.alerts import news2 as news2_rule
from medtwin.alerts.engine import publish_alert
from medtwin.alerts.hub import EventHub
from medtwin.alerts.repository import Alert, AlertRepository
from medtwin.alerts.rules.news2 import SPO2_SCALE
from medtwin.store.codec import Codec
from medtwin.store.database import Store
from medtwin.store.live_tables import twin_live_state
from medtwin.store.samples import SampleRepository

Clock = Callable[[], datetime]


class AlertNotFound(LookupError):
    """No such alert, or not one the caller may see (the same answer either way)."""


def list_alerts(store: Store, *, allowed: frozenset[str] | None, patient_id: str | None = None,
                statuses: tuple[str, ...], rule: str | None = None, limit: int = 100,
                offset: int = 0) -> tuple[int, list[Alert]]:
    with store.connect() as connection:
        return AlertRepository(connection, store.codec, lambda: datetime.now(UTC)).list(
            allowed=allowed, patient_id=patient_id, statuses=statuses, rule=rule, limit=limit, offset=offset)


def get_alert(store: Store, alert_id: str, can_see: Callable[[str], bool]) -> Alert:
    with store.connect() as connection:
        alert = AlertRepository(connection, store.codec, lambda: datetime.now(UTC)).get(alert_id)
    if alert is None or not can_see(alert.patient_id):
        raise AlertNotFound(alert_id)
    return alert


def transition(store: Store, alert_id: str, action: str, *, actor: str, can_see: Callable[[str], bool],
               clock: Clock, hub: EventHub | None) -> Alert:
    """``action``: acknowledge | resolve, by ``actor``; publishes the ``alert`` event after the commit. An
    acknowledged alert whose condition had cleared is closed by it (status ``resolved`` by ``actor``)."""
    with store.begin() as connection:
        repo = AlertRepository(connection, store.codec, clock)
        current = repo.get(alert_id)
        if current is None or not can_see(current.patient_id):
            raise AlertNotFound(alert_id)
        alert = repo.acknowledge(alert_id, actor) if action == "acknowledge" else repo.resolve(alert_id, actor)
    if hub is not None:  # acknowledging an alert whose condition has cleared closes it: "resolved"
        publish_alert(hub, "acknowledged" if alert.status == "acknowledged" else "resolved", alert)
    return alert


# --- NEWS2 now ----------------------------------------------------------------------------------------

def spo2_scale(connection: Connection, codec: Codec, patient_id: str) -> tuple[int, dict[str, Any] | None]:
    """The patient's SpO2 scale (1 unless a clinician chose 2) and who chose it when."""
    blob = connection.execute(select(twin_live_state.c.payload).where(
        twin_live_state.c.patient_id == patient_id, twin_live_state.c.kind == SPO2_SCALE.kind)).scalar()
    if blob is None:
        return 1, None
    payload = orjson.loads(codec.open(blob))
    return int(payload.get("spo2_scale", 1)), payload


def latest_news2(connection: Connection, codec: Codec, patient_id: str, *,
                 window: timedelta = news2_rule.DEFAULT_WINDOW) -> dict[str, Any] | None:
    """NEWS2 over the stored samples: the latest of each parameter within ``window`` of the newest one
    (:func:`medtwin.alerts.news2.observation_set`), on the patient's SpO2 scale. None: no vital signs."""
    latest = SampleRepository(connection, codec).latest(patient_id, sorted(news2_rule.NEWS2_METRICS))
    chosen = news2_rule.observation_set({k: (s.time, s.value) for k, s in latest.items()}, window=window)
    if chosen is None:
        return None
    scale, chosen_by = spo2_scale(connection, codec, patient_id)
    result = news2_rule.score(chosen.vitals, scale)
    return {**news2_rule.as_dict(result), "at": chosen.at.isoformat(), "window_min": window.total_seconds() / 60,
            "times": {k: v.isoformat() for k, v in chosen.times.items()},
            "spo2_scale_set_by": None if chosen_by is None else chosen_by.get("set_by"),
            "source": news2_rule.chart().source}


def news2_source(store: Store, window: timedelta = news2_rule.DEFAULT_WINDOW
                 ) -> Callable[[Connection, str], tuple[int, str, datetime] | None]:
    """For the dashboard overview: ``(connection, patient_id) -> (score, risk band, time)`` or None."""

    def source(connection: Connection, patient_id: str) -> tuple[int, str, datetime] | None:
        try:
            found = latest_news2(connection, store.codec, patient_id, window=window)
        except news2_rule.News2InputError:
            return None
        if found is None:
            return None
        return int(found["aggregate"]), str(found["risk"]), datetime.fromisoformat(found["at"])

    return source
