"""The alert lifecycle on SQLite and PostgreSQL: dedupe, escalation, hysteresis, transitions, ordering."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from medtwin.alerts.repository import AlertCandidate, AlertRepository, AlertTransitionError
from medtwin.store.database import Store

T0 = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def repo(store: Store) -> Iterator[AlertRepository]:
    with store.begin() as connection:
        yield AlertRepository(connection, store.codec, Clock())


def low(minutes: float, value: float = 60.0, severity: str = "high", patient: str = "p1",
        key: str = "p1:hypo-l1:1") -> AlertCandidate:
    return AlertCandidate(patient_id=patient, rule="hypo-l1", severity=severity, dedupe_key=key,
                          time=T0 + timedelta(minutes=minutes), message=f"glucose {value:.0f} mg/dL",
                          score=value, details={"value": value}, began_at=T0)


def test_repeats_update_one_alert_instead_of_adding_rows(repo: AlertRepository) -> None:
    first, how = repo.open(low(0))
    assert how == "opened" and first.status == "open" and first.occurrences == 1 and first.opened_at == T0
    for i in range(1, 100):
        touched = repo.touch(low(i * 5, value=60 - i * 0.1))
        assert touched is not None and touched[1] == "updated"
    total, items = repo.list()
    assert total == 1
    alert = items[0]
    assert alert.id == first.id and alert.occurrences == 100
    assert alert.last_seen_at == T0 + timedelta(minutes=495) and alert.score == pytest.approx(50.1)
    assert alert.details == {"value": pytest.approx(50.1)} and alert.opened_at == T0
    # open() again while unresolved: also an update, not a second alert
    again, how = repo.open(low(500))
    assert (again.id, how, again.occurrences) == (first.id, "updated", 101)


def test_severity_escalates_never_drops_and_escalation_reopens_an_acknowledged_alert(
        repo: AlertRepository) -> None:
    alert, _ = repo.open(low(0, severity="medium"))
    repo.acknowledge(alert.id, "dr-a")
    touched = repo.touch(low(5, severity="low"))
    assert touched is not None and touched[0].severity == "medium" and touched[0].status == "acknowledged"
    escalated = repo.touch(low(10, severity="critical"))
    assert escalated is not None and escalated[1] == "escalated"
    assert (escalated[0].severity, escalated[0].status, escalated[0].acknowledged_by) == ("critical", "open", "dr-a")


def test_lifecycle_and_invalid_transitions(repo: AlertRepository) -> None:
    alert, _ = repo.open(low(0))
    acked = repo.acknowledge(alert.id, "dr-a")
    assert acked.status == "acknowledged" and acked.acknowledged_by == "dr-a" and acked.acknowledged_at
    with pytest.raises(AlertTransitionError) as info:
        repo.acknowledge(alert.id, "dr-b")
    assert info.value.status == "acknowledged"
    resolved = repo.resolve(alert.id, "dr-b")
    assert (resolved.status, resolved.resolved_by, resolved.acknowledged_by) == ("resolved", "dr-b", "dr-a")
    for action in (repo.resolve, repo.acknowledge):
        with pytest.raises(AlertTransitionError):
            action(alert.id, "dr-c")
    with pytest.raises(LookupError):
        repo.resolve("no-such-alert", "dr-a")


def test_hysteresis_a_user_resolved_alert_stays_resolved_until_the_condition_clears(
        repo: AlertRepository) -> None:
    alert, _ = repo.open(low(0))
    repo.resolve(alert.id, "dr-a")
    assert repo.touch(low(5)) is None  # still low: no new alert
    assert repo.clear("p1:hypo-l1:1") is None  # nothing unresolved to clear
    reopened, how = repo.open(low(60, severity="medium"))  # the condition began again
    assert how == "opened" and reopened.id != alert.id
    cleared = repo.clear("p1:hypo-l1:1")  # medium: the system may resolve it (a high one waits for a person)
    assert cleared is not None and (cleared[1], cleared[0].status, cleared[0].resolved_by) == (
        "resolved", "resolved", "system")
    assert repo.list(statuses=("resolved",))[0] == 2


def test_list_is_most_urgent_first_and_filtered(repo: AlertRepository) -> None:
    def cand(patient: str, rule: str, severity: str, minutes: float) -> AlertCandidate:
        return AlertCandidate(patient, rule, severity, f"{patient}:{rule}", T0 + timedelta(minutes=minutes), rule)

    ids = {}
    for patient, rule, severity, minutes in [("p1", "hyper-l1", "low", 50), ("p1", "hypo-l2", "critical", 10),
                                             ("p2", "news2", "high", 20), ("p2", "hr-deviation", "medium", 40),
                                             ("p3", "news2", "critical", 30), ("p2", "hyper-l2", "medium", 45)]:
        ids[(patient, rule)] = repo.open(cand(patient, rule, severity, minutes))[0].id
    repo.acknowledge(ids[("p3", "news2")], "dr")
    _, items = repo.list()
    assert [(a.patient_id, a.rule) for a in items] == [
        ("p1", "hypo-l2"), ("p2", "news2"), ("p2", "hyper-l2"), ("p2", "hr-deviation"), ("p1", "hyper-l1"),
        ("p3", "news2")]  # open by severity then most recent; acknowledged after
    total, mine = repo.list(allowed=frozenset({"p2"}), limit=2)
    assert total == 3 and [a.rule for a in mine] == ["news2", "hyper-l2"]
    assert repo.list(allowed=frozenset(), patient_id="p1") == (0, [])
    assert [a.rule for a in repo.list(rule="news2")[1]] == ["news2", "news2"]
    assert repo.list(patient_id="p3", statuses=("open",)) == (0, [])
    assert repo.unresolved_keys(["p1", "p3"]) == {"p1:hyper-l1", "p1:hypo-l2", "p3:news2"}


def test_details_are_sealed_in_the_store(store: Store) -> None:
    class Rot13:
        def seal(self, b: bytes) -> bytes:
            return bytes(x ^ 0x5A for x in b)

        def open(self, b: bytes) -> bytes:
            return bytes(x ^ 0x5A for x in b)

        def blind(self, v: str) -> str:
            return v

    from sqlalchemy import select

    from medtwin.store.live_tables import alerts

    with store.begin() as connection:
        repo = AlertRepository(connection, Rot13(), Clock())
        alert, _ = repo.open(low(0, value=42))
        raw = connection.execute(select(alerts.c.details).where(alerts.c.id == alert.id)).scalar_one()
        assert b"42" not in bytes(raw) and repo.get(alert.id).details == {"value": 42.0}  # type: ignore[union-attr]
