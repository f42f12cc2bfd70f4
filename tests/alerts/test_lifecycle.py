"""Serious alerts are never closed by the system alone (issue 15 item 3): when a high or critical alert's
condition clears it stays open, marked ``condition_cleared_at``, until a person acknowledges it; low and
medium alerts are still resolved by ``system``. On SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medtwin import vocab as m
from medtwin.alerts import registry, service
from medtwin.alerts.engine import AlertConfig, AlertEngine
from medtwin.alerts.repository import (
    SEVERITIES,
    SEVERITY_RANK,
    SYSTEM_ACTOR,
    UNRESOLVED,
    AlertCandidate,
    AlertRepository,
    AlertTransitionError,
    needs_person,
)
from medtwin.record.sources import RawUnit
from medtwin.security import audit
from medtwin.store.database import Store
from medtwin.store.records import RecordRepository
from medtwin.synthetic import generate_bundles
from medtwin.twin.build import import_units
from medtwin.twin.overview import patient_overview
from medtwin.vocab import Sample

T0 = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)
NOW = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def repo(store: Store) -> Iterator[AlertRepository]:
    with store.begin() as connection:
        yield AlertRepository(connection, store.codec, Clock())


def cand(severity: str, minutes: float = 0, key: str = "p1:hypo-l2:1", rule: str = "hypo-l2") -> AlertCandidate:
    return AlertCandidate("p1", rule, severity, key, T0 + timedelta(minutes=minutes), f"glucose {severity}",
                          began_at=T0)


# --- the one definition ------------------------------------------------------------------------------

def test_needs_person_is_high_and_above_and_every_rule_severity_is_defined() -> None:
    assert [s for s in SEVERITIES if needs_person(s)] == ["high", "critical"]
    needing = [SEVERITY_RANK[s] for s in SEVERITIES if needs_person(s)]
    assert needing and min(needing) > max(SEVERITY_RANK[s] for s in SEVERITIES if not needs_person(s))
    kinds = {k.name: k.severities for k in registry.alert_kinds()}
    assert all(s in SEVERITY_RANK for sev in kinds.values() for s in sev)
    assert any(needs_person(s) for s in kinds["hypo-l2"])  # the level 2 hypoglycaemia


# --- repository ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("severity", ["high", "critical"])
def test_a_serious_alert_whose_condition_clears_stays_open_until_a_person_acknowledges(
        repo: AlertRepository, severity: str) -> None:
    alert, _ = repo.open(cand(severity))
    cleared = repo.clear(alert.dedupe_key, at=T0 + timedelta(minutes=20))
    assert cleared is not None
    got, how = cleared
    assert (how, got.id, got.status, got.resolved_at, got.resolved_by) == ("cleared", alert.id, "open", None, None)
    assert got.condition_cleared_at == T0 + timedelta(minutes=20)
    assert got.to_json()["condition_cleared_at"] == "2025-03-01T02:20:00Z" and got.to_json()["needs_person"] is True
    assert [a.id for a in repo.list()[1]] == [alert.id]  # the default (unresolved) list still shows it
    assert [a.id for a in repo.list(statuses=("open",))[1]] == [alert.id]  # and the header's open count
    assert repo.clear(alert.dedupe_key, at=T0 + timedelta(minutes=40)) is None  # cleared once: the time stays
    assert repo.get(alert.id).condition_cleared_at == T0 + timedelta(minutes=20)  # type: ignore[union-attr]
    closed = repo.acknowledge(alert.id, "dr-a")  # the person who saw it closes it
    assert (closed.status, closed.acknowledged_by, closed.resolved_by) == ("resolved", "dr-a", "dr-a")
    assert closed.resolved_at == closed.acknowledged_at and closed.condition_cleared_at == T0 + timedelta(minutes=20)
    assert repo.list() == (0, []) and repo.list(statuses=("resolved",))[0] == 1
    with pytest.raises(AlertTransitionError):
        repo.acknowledge(alert.id, "dr-b")


@pytest.mark.parametrize("severity", ["low", "medium"])
def test_a_low_or_medium_alert_is_still_resolved_by_the_system(repo: AlertRepository, severity: str) -> None:
    alert, _ = repo.open(cand(severity))
    cleared = repo.clear(alert.dedupe_key)
    assert cleared is not None
    assert (cleared[1], cleared[0].status, cleared[0].resolved_by) == ("resolved", "resolved", SYSTEM_ACTOR)
    assert cleared[0].to_json()["needs_person"] is False and repo.list() == (0, [])


def test_an_acknowledged_serious_alert_is_resolved_when_it_clears_keeping_who_saw_it(
        repo: AlertRepository) -> None:
    alert, _ = repo.open(cand("critical"))
    repo.acknowledge(alert.id, "dr-a")  # the condition still holds: acknowledged, not closed
    assert repo.get(alert.id).status == "acknowledged"  # type: ignore[union-attr]
    cleared = repo.clear(alert.dedupe_key)
    assert cleared is not None
    assert (cleared[1], cleared[0].status, cleared[0].acknowledged_by, cleared[0].resolved_by) == (
        "resolved", "resolved", "dr-a", SYSTEM_ACTOR)


def test_a_cleared_serious_condition_that_recurs_is_the_same_alert_again_held(repo: AlertRepository) -> None:
    alert, _ = repo.open(cand("high"))
    repo.clear(alert.dedupe_key)
    again, how = repo.open(cand("high", minutes=30))  # dedupe: still unresolved, so one alert
    assert (again.id, how, again.condition_cleared_at, again.occurrences) == (alert.id, "recurred", None, 2)
    acked = repo.acknowledge(alert.id, "dr-a")  # the condition holds again: acknowledging does not close it
    assert (acked.status, acked.resolved_by) == ("acknowledged", None)
    escalated = repo.touch(cand("critical", minutes=35))
    assert escalated is not None and (escalated[1], escalated[0].status) == ("escalated", "open")


def test_a_user_may_resolve_a_cleared_alert_and_the_filters_show_it(repo: AlertRepository) -> None:
    serious, _ = repo.open(cand("critical"))
    minor, _ = repo.open(cand("low", key="p1:hyper-l1:1", rule="hyper-l1"))
    repo.clear(serious.dedupe_key)
    repo.clear(minor.dedupe_key)
    assert [a.id for a in repo.list(statuses=UNRESOLVED)[1]] == [serious.id]
    assert [a.id for a in repo.list(statuses=("resolved",))[1]] == [minor.id]
    done = repo.resolve(serious.id, "dr-a")
    assert (done.status, done.resolved_by) == ("resolved", "dr-a")
    assert {a.id for a in repo.list(statuses=("resolved",))[1]} == {serious.id, minor.id}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(severities=st.lists(st.sampled_from(SEVERITIES), min_size=1, max_size=4),
       ops=st.lists(st.sampled_from(["touch", "clear", "open", "acknowledge", "resolve"]), max_size=12))
def test_no_serious_alert_is_ever_closed_without_a_person(sqlite_store: Store, severities: list[str],
                                                          ops: list[str]) -> None:
    """Whatever the engine and users do in whatever order, a resolved alert whose severity needs a person
    names a person as resolver or acknowledger; an unresolved cleared alert is open."""
    key = f"p1:hypo-l1:{uuid.uuid4().hex}"
    with sqlite_store.begin() as connection:
        repo = AlertRepository(connection, sqlite_store.codec, Clock())
        alert, _ = repo.open(cand(severities[0], key=key))
        for i, op in enumerate(ops):
            severity = severities[i % len(severities)]
            if op in ("touch", "open"):
                getattr(repo, op)(cand(severity, minutes=i, key=key))
            elif op == "clear":
                repo.clear(key)
            else:
                with contextlib.suppress(AlertTransitionError):
                    getattr(repo, op)(alert.id, f"dr-{i}")
        for found in repo.list(statuses=("open", "acknowledged", "resolved"), limit=100)[1]:
            if found.dedupe_key != key:
                continue
            if found.status == "resolved" and needs_person(found.severity):
                assert found.resolved_by != SYSTEM_ACTOR or found.acknowledged_by is not None
            if found.status != "resolved" and found.condition_cleared_at is not None:
                assert found.status == "open" and needs_person(found.severity)


# --- the demo's shape through the engine and the service ---------------------------------------------

def cgm(minutes: float, value: float) -> Sample:
    t = T0 + timedelta(minutes=minutes)
    return Sample("p1", m.GLUCOSE, t, value, "mg/dL", value, "mg/dL", "dev", "test", f"p1|{t.isoformat()}")


def test_cgm_39_for_a_few_minutes_then_recovery_stays_on_the_worklist_until_acknowledged(
        sqlite_store: Store) -> None:
    events: list[tuple[str, str, str]] = []

    class Hub:
        def publish(self, type: str, patient_id: str, data: dict[str, object]) -> None:
            alert = data["alert"]
            assert isinstance(alert, dict)
            events.append((str(data["action"]), str(alert["rule"]), str(alert["status"])))

    engine = AlertEngine(sqlite_store, clock=lambda: NOW, hub=Hub(), config=AlertConfig())  # type: ignore[arg-type]
    engine.on_samples([cgm(5 * i, 39.0) for i in range(4)])  # 15 min at 39 mg/dL: a level 2 episode
    engine.on_samples([cgm(20 + 5 * i, 110.0) for i in range(4)])  # recovery: 15 min above 70
    engine.stop()
    assert engine.stats["cleared"] == 2 and engine.stats["resolved"] == 0
    total, shown = service.list_alerts(sqlite_store, allowed=None, statuses=UNRESOLVED)  # the default worklist
    assert total == 2 and [(a.rule, a.severity, a.status) for a in shown] == [("hypo-l2", "critical", "open"),
                                                                              ("hypo-l1", "high", "open")]
    l2 = shown[0]
    # the episode ended with the first reading back in range (20 min), not the one that completed 15 min (35)
    assert l2.condition_cleared_at == T0 + timedelta(minutes=20) and l2.resolved_by is None
    assert ("cleared", "hypo-l2", "open") in events and not any(e[0] == "resolved" for e in events)
    closed = service.transition(sqlite_store, l2.id, "acknowledge", actor="dr-a", can_see=lambda _: True,
                                clock=lambda: NOW, hub=Hub())  # type: ignore[arg-type]
    assert (closed.status, closed.resolved_by, closed.acknowledged_by) == ("resolved", "dr-a", "dr-a")
    assert events[-1] == ("resolved", "hypo-l2", "resolved")
    assert [a.rule for a in service.list_alerts(sqlite_store, allowed=None, statuses=UNRESOLVED)[1]] == ["hypo-l1"]
    with sqlite_store.connect() as connection:
        flags = [orjson_detail(r.detail) for r in audit.records(connection) if r.resource_id == l2.id]
    assert flags == ["opened", "cleared"]  # the system's part; the person's closing is audited by the API


def orjson_detail(detail: str | None) -> str:
    return str(orjson.loads(detail or "{}").get("transition"))


def test_the_patient_list_keeps_counting_a_cleared_serious_alert_but_drops_its_prediction_badge(
        sqlite_store: Store) -> None:
    assert import_units(sqlite_store, [RawUnit("p.json", "json", b) for b in generate_bundles(n_patients=1)],
                        actor="test").ok
    with sqlite_store.connect() as connection:
        (pid,) = RecordRepository(connection, sqlite_store.codec).patient_ids()
    with sqlite_store.begin() as connection:
        repo = AlertRepository(connection, sqlite_store.codec, Clock())
        repo.open(AlertCandidate(pid, "predicted-hypo", "high", f"{pid}:predicted-hypo", T0, "forecast 50 mg/dL"))

    def row() -> tuple[bool, int, str | None]:
        (item,) = patient_overview(sqlite_store, allowed=None, clock=lambda: NOW).items
        return item.predicted_hypo, item.alerts.open, item.alerts.top_severity

    assert row() == (True, 1, "high")
    with sqlite_store.begin() as connection:
        AlertRepository(connection, sqlite_store.codec, Clock()).clear(f"{pid}:predicted-hypo")
    assert row() == (False, 1, "high")  # still on the list for a person; no longer a current prediction


@pytest.mark.parametrize("passes", [1, 8], ids=["one-pass", "one-reading-per-pass"])
def test_a_level_2_episode_that_begins_and_ends_within_one_pass_still_opens_an_alert(
        sqlite_store: Store, passes: int) -> None:
    """All the readings of an episode, start to end, in one engine pass (a batched upload, or readings the
    worker groups): the alerts open and, serious, stay open marked cleared at the episode's end, exactly as
    when the readings arrive one by one."""
    events: list[tuple[str, str]] = []

    class Hub:
        def publish(self, type: str, patient_id: str, data: dict[str, Any]) -> None:
            events.append((str(data["action"]), str(data["alert"]["rule"])))

    engine = AlertEngine(sqlite_store, clock=lambda: NOW, hub=Hub())  # type: ignore[arg-type]
    readings = [cgm(5 * i, 39.0) for i in range(4)] + [cgm(20 + 5 * i, 110.0) for i in range(4)]
    for chunk in (readings,) if passes == 1 else ([r] for r in readings):
        engine.on_samples(list(chunk))
        assert engine.flush()
    engine.stop()
    _, found = service.list_alerts(sqlite_store, allowed=None, statuses=UNRESOLVED)
    assert [(a.rule, a.severity, a.status, a.opened_at, a.last_seen_at, a.condition_cleared_at, a.occurrences)
            for a in found] == [
        ("hypo-l2", "critical", "open", T0, T0 + timedelta(minutes=15), T0 + timedelta(minutes=20), 4),
        ("hypo-l1", "high", "open", T0, T0 + timedelta(minutes=15), T0 + timedelta(minutes=20), 4)]
    assert sorted(events) == [("cleared", "hypo-l1"), ("cleared", "hypo-l2"), ("opened", "hypo-l1"),
                              ("opened", "hypo-l2")]
    assert events.index(("opened", "hypo-l2")) < events.index(("cleared", "hypo-l2"))
    with sqlite_store.connect() as connection:
        flags = [orjson_detail(r.detail) for r in audit.records(connection) if r.resource_id == found[0].id]
    assert flags == ["opened", "cleared"]


def test_a_low_severity_episode_within_one_pass_is_opened_and_resolved_by_the_system_both_audited(
        sqlite_store: Store) -> None:
    engine = AlertEngine(sqlite_store, clock=lambda: NOW)
    engine.on_samples([cgm(5 * i, 200.0) for i in range(4)] + [cgm(20 + 5 * i, 150.0) for i in range(3)])
    engine.stop()
    total, found = service.list_alerts(sqlite_store, allowed=None, statuses=("open", "acknowledged", "resolved"))
    assert total == 1
    (alert,) = found
    assert (alert.rule, alert.severity, alert.status, alert.resolved_by, alert.opened_at) == (
        "hyper-l1", "low", "resolved", SYSTEM_ACTOR, T0)
    with sqlite_store.connect() as connection:
        flags = [orjson_detail(r.detail) for r in audit.records(connection) if r.resource_id == alert.id]
    assert flags == ["opened", "resolved"]


def test_a_recurrence_racing_an_acknowledgement_leaves_the_alert_acknowledged_not_closed(store: Store) -> None:
    """Compare-and-set: the engine's update (the condition is back) holds the row; a clinician's acknowledgement
    of the cleared alert waits for it and then sees the condition held again, so it does not close the alert."""
    with store.begin() as connection:
        repo = AlertRepository(connection, store.codec, Clock())
        alert, _ = repo.open(cand("critical"))
        repo.clear(alert.dedupe_key)
    result: dict[str, Any] = {}
    engine_has_row = threading.Event()

    def clinician() -> None:
        engine_has_row.wait(60)
        with store.begin() as connection:
            result["ack"] = AlertRepository(connection, store.codec, Clock()).acknowledge(alert.id, "dr-a")

    thread = threading.Thread(target=clinician)
    thread.start()
    with store.begin() as connection:
        touched = AlertRepository(connection, store.codec, Clock()).touch(cand("critical", minutes=30))
        assert touched is not None and touched[1] == "recurred"
        engine_has_row.set()
        time.sleep(0.5)  # the acknowledgement is now waiting for this transaction
        assert "ack" not in result
    thread.join(30)
    acked = result["ack"]
    assert (acked.status, acked.acknowledged_by, acked.resolved_by, acked.condition_cleared_at) == (
        "acknowledged", "dr-a", None, None)
