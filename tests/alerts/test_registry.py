"""Alert rules as plug-ins: a rule registered at run time (it lives only in this test) is created by the
registry, run by the engine, which names no rule, and listed by the vocabulary endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from medtwin.alerts import registry
from medtwin.alerts.engine import AlertEngine
from medtwin.alerts.repository import AlertCandidate, AlertRepository
from medtwin.alerts.rule import AlertKind, RuleInfo, RuleInput, Verdict
from medtwin.api.routers.vocabulary import document
from medtwin.store.database import Store
from medtwin.vocab import SPO2, Sample

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class LowSpo2Rule:
    """Test-only: SpO2 below 88 % on two consecutive readings."""

    threshold: float = 88.0
    info = RuleInfo(name="test-low-spo2", label="Low SpO2 (test)",
                    description="Two consecutive SpO2 readings below 88 %.",
                    alerts=(AlertKind("test-low-spo2", "Low SpO2", "SpO2 < 88 % twice in a row.", ("high",)),),
                    metrics=(SPO2,), source="test")

    def new_state(self) -> dict[str, Any]:
        return {"below": 0}

    def state_to_json(self, state: dict[str, Any]) -> dict[str, Any]:
        return dict(state)

    def state_from_json(self, raw: dict[str, Any]) -> dict[str, Any]:
        return {"below": int(raw.get("below", 0))}

    def summary(self, state: dict[str, Any]) -> dict[str, Any] | None:
        return dict(state)

    def evaluate(self, data: RuleInput, state: dict[str, Any]) -> list[Verdict]:
        out: list[Verdict] = []
        for s in sorted(data.samples, key=lambda s: s.time):
            state["below"] = state["below"] + 1 if s.value < self.threshold else 0
            key = f"{data.patient_id}:test-low-spo2"
            if state["below"] >= 2:
                out.append(Verdict("test-low-spo2", True, AlertCandidate(
                    data.patient_id, "test-low-spo2", "high", key, s.time, f"SpO2 {s.value:.0f} %", score=s.value)))
            elif "test-low-spo2" in data.held or out:
                out.append(Verdict("test-low-spo2", False))
        return out


@pytest.fixture
def registered() -> Iterator[None]:
    registry.register("test-low-spo2", LowSpo2Rule)
    yield
    registry.unregister("test-low-spo2")


def spo2(minute: int, value: float) -> Sample:
    t = T0 + timedelta(minutes=minute)
    return Sample("p1", SPO2, t, value, "%", value, "%", "dev", "test", f"s{minute}")


def test_a_registered_rule_runs_in_the_engine_and_is_listed(registered: None, sqlite_store: Store) -> None:
    assert "test-low-spo2" in registry.rule_names()
    assert any(k.name == "test-low-spo2" for k in registry.alert_kinds())
    engine = AlertEngine(sqlite_store, clock=lambda: T0)
    assert "test-low-spo2" in [r.info.name for r in engine.rules]
    engine.on_samples([spo2(0, 86.0), spo2(1, 85.0)])
    engine.flush()
    assert engine.summary("p1", "test-low-spo2") == {"below": 2}
    engine.on_samples([spo2(2, 95.0)])
    engine.stop()
    with sqlite_store.connect() as connection:
        found = AlertRepository(connection, sqlite_store.codec, lambda: T0).list(
            statuses=("open", "acknowledged", "resolved"), limit=10)[1]
    assert [a.rule for a in found if a.rule == "news2"] == ["news2"]  # SpO2 85 % is a NEWS2 red score too
    (alert,) = [a for a in found if a.rule != "news2"]
    # a high alert is not resolved by the system when its condition clears (issue 15 item 3): it stays open,
    # marked condition cleared at the data time of the reading that cleared it, until a person acknowledges it
    assert (alert.rule, alert.status, alert.resolved_by) == ("test-low-spo2", "open", None)
    assert alert.condition_cleared_at == T0 + timedelta(minutes=2)
    listed = {r["name"]: r for r in document()["alert_rules"]}
    assert listed["test-low-spo2"]["alerts"][0]["label"] == "Low SpO2"


def test_a_rule_with_incomplete_metadata_is_refused() -> None:
    @dataclass
    class Nameless(LowSpo2Rule):
        info = RuleInfo(name="test-nameless", label="", description="x", alerts=(), metrics=(SPO2,))

    registry.register("test-nameless", Nameless)
    try:
        with pytest.raises(ValueError, match="label is empty"):
            registry.create_rules()
    finally:
        registry.unregister("test-nameless")
    assert "test-nameless" not in registry.rule_names()
