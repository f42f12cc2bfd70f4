"""Issue 15 item 2: one NEWS2 severity mapping (RCP 2017 Chart 2 bands), and an alert that escalates and
de-escalates with the score and keeps its score history; its peak still decides who may close it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.alerts.test_engine import NORMAL, T0, alerts, make_engine, vitals

from medtwin.alerts.news2 import VitalSigns, score
from medtwin.alerts.repository import needs_person
from medtwin.alerts.rules.news2 import News2Rule
from medtwin.store.database import Store
from medtwin.vocab import vocabulary
from medtwin.vocab.news2 import news2_band, news2_bands, news2_text


@pytest.mark.parametrize(("aggregate", "red", "band", "severity"), [
    (0, False, "low", None), (4, False, "low", None), (3, True, "low-medium", "medium"),
    (4, True, "low-medium", "medium"), (5, False, "medium", "high"), (6, True, "medium", "high"),
    (7, False, "high", "critical"), (20, True, "high", "critical")])
def test_rcp_2017_chart_2_bands_and_their_alert_severity(aggregate: int, red: bool, band: str,
                                                         severity: str | None) -> None:
    found = news2_band(aggregate, red)
    assert (found.name, found.alert_severity) == (band, severity)
    assert news2_text(aggregate, band) == f"NEWS2 {aggregate}: {band} clinical risk"


def test_the_mapping_is_served_once_and_the_rule_declares_its_severities_from_it() -> None:
    served = vocabulary()["news2"]["risk_bands"]  # type: ignore[index]
    assert [(b["name"], b["alert_severity"]) for b in served] == [
        ("high", "critical"), ("medium", "high"), ("low-medium", "medium"), ("low", None)]
    assert News2Rule.info.alerts[0].severities == ("medium", "high", "critical")
    with pytest.raises(ValueError, match="aggregate"):
        news2_band(-1, False)


@given(st.integers(0, 20), st.booleans())
def test_band_is_monotone_in_the_aggregate(aggregate: int, red: bool) -> None:
    order = list(reversed(news2_bands()))  # low .. high
    here, above = news2_band(aggregate, red), news2_band(aggregate + 1, red)
    assert order.index(above.name) >= order.index(here.name)


def test_the_score_and_the_band_come_from_one_function() -> None:
    result = score(VitalSigns(respiratory_rate=8, spo2=97, supplemental_oxygen=False, systolic_bp=120,
                              heart_rate=70, consciousness=0, temperature=37.0))
    assert (result.aggregate, result.risk) == (3, news2_band(3, True).name) == (3, "low-medium")


def test_alert_escalates_and_de_escalates_with_its_history_and_keeps_its_peak(sqlite_store: Store) -> None:
    engine = make_engine(sqlite_store)
    engine.on_samples(vitals(0, **{**NORMAL, "hr": 115, "temp": 39.5, "rr": 22}))  # 6: medium
    engine.flush()
    engine.on_samples(vitals(5, **{**NORMAL, "hr": 135, "temp": 39.5, "rr": 22}))  # 3+2+2 = 7: high
    engine.flush()
    (alert,) = alerts(sqlite_store)
    assert (alert.severity, alert.score, alert.message) == ("critical", 7.0, "NEWS2 7: high clinical risk")
    engine.on_samples(vitals(10, **{**NORMAL, "hr": 115, "temp": 39.5}))  # 2+2 = 4, no red score: complete, low
    engine.flush()
    (alert,) = alerts(sqlite_store)
    assert alert.condition_cleared_at == T0 + timedelta(minutes=10) and alert.status == "open"
    engine.on_samples(vitals(15, **{**NORMAL, "hr": 115, "temp": 39.5, "rr": 22}))  # 6: medium again
    engine.stop()
    (alert,) = alerts(sqlite_store)
    # a complete low set at 10 min cleared the condition: the critical alert stayed open for a person, and the
    # score at 15 min is the condition recurring; the history is of this condition only
    assert alert.condition_cleared_at is None and alert.status == "open"
    assert alert.severity == "high" and alert.message == "NEWS2 6: medium clinical risk"
    assert alert.details["peak_severity"] == "critical" and alert.needs_person
    assert [(h[1], h[2]) for h in alert.details["history"]] == [(6, "medium")]


def test_de_escalation_without_clearing(sqlite_store: Store) -> None:
    engine = make_engine(sqlite_store)
    steps = [(0, {"hr": 135, "temp": 39.5, "rr": 22}, 7), (5, {"hr": 115, "temp": 39.5, "rr": 22}, 6),
             (10, {"rr": 8}, 3)]
    for minute, changed, _expected in steps:
        engine.on_samples(vitals(minute, **{**NORMAL, **changed}))
        engine.flush()
    engine.stop()
    (alert,) = alerts(sqlite_store)
    assert [(h[1], h[2]) for h in alert.details["history"]] == [(7, "high"), (6, "medium"), (3, "low-medium")]
    assert alert.details["history"][0][0] == T0.isoformat()
    assert alert.details["history"][-1][0] == (T0 + timedelta(minutes=10)).isoformat()
    # de-escalated to the low-medium band's severity, the peak kept: the system will not close it alone
    assert (alert.severity, alert.score, alert.details["risk"]) == ("medium", 3.0, "low-medium")
    assert not needs_person(alert.severity) and alert.details["peak_severity"] == "critical"
    assert alert.needs_person and alert.to_json()["needs_person"] is True
