"""A held predicted-hypo alert is not left saying "CGM 55" beside a CGM reading 87: while the forecast sits
between 70 mg/dL and the clearing level (hysteresis), the held condition's text follows the newest forecast,
without lowering its severity, and it clears only at 70 + margin (the rule through the real engine and store)."""

from __future__ import annotations

from datetime import timedelta

from tests.alerts.test_engine import alerts, make_engine
from tests.alerts.test_predicted_hypo_anchor import T0, make

from medtwin.alerts.rule import RuleInput
from medtwin.alerts.rules.predicted_hypo import NAME, PredictedHypoRule
from medtwin.store.database import Store


def test_between_70_and_the_clearing_level_the_held_alert_says_the_newest_reading() -> None:
    rule = PredictedHypoRule()
    low = make([60, 55, 52, 50, 50, 50], reading=55, estimate=55, trend=-1.0)
    state = rule.new_state()
    (opened,) = rule.evaluate(RuleInput("p", forecasts=[low]), state)
    assert opened.candidate is not None and opened.candidate.message.startswith("CGM below 70 mg/dL: CGM 55 mg/dL")
    middle = make([86, 82, 78, 76, 75, 75], reading=87, estimate=87, trend=1.5).model_copy(
        update={"issued_at": T0 + timedelta(minutes=5)})
    (held,) = rule.evaluate(RuleInput("p", forecasts=[middle], held={NAME: "p:predicted-hypo"}), state)
    assert held.holds and held.candidate is not None
    assert opened.candidate.severity == held.candidate.severity == "high"  # kept from the rule's state
    assert held.candidate.message.startswith("Hypoglycaemia no longer predicted (clears when the forecast stays at "
                                             "or above 80 mg/dL): CGM 87 mg/dL, rising 1.5 mg/dL/min; forecast 75")
    assert held.candidate.details["cgm_mg_dl"] == 87 and held.candidate.details["lead_time_min"] is None
    assert rule.evaluate(RuleInput("p", forecasts=[middle]), rule.new_state()) == []  # not held: nothing to say


def test_through_the_engine_the_text_follows_and_the_severity_stays(sqlite_store: Store) -> None:
    engine = make_engine(sqlite_store)
    engine.on_forecast(make([52, 48, 45, 44, 44, 44], reading=50, estimate=50, trend=-1.0))  # below 54: high
    engine.flush()
    (alert,) = alerts(sqlite_store)
    assert alert.severity == "high" and "CGM 50 mg/dL" in alert.message
    engine.on_forecast(make([86, 82, 78, 76, 75, 75], reading=87, estimate=87, trend=1.5).model_copy(
        update={"issued_at": T0 + timedelta(minutes=5)}))
    engine.stop()  # writes the coalesced update
    (alert,) = alerts(sqlite_store)
    assert alert.severity == "high" and alert.status == "open" and alert.condition_cleared_at is None
    assert "CGM 87 mg/dL" in alert.message and "CGM 50" not in alert.message
    assert alert.occurrences == 1 and alert.details["cgm_mg_dl"] == 87  # the text followed; not a new prediction
