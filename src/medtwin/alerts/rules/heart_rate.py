"""Heart-rate deviation from the patient's own baseline (:mod:`medtwin.alerts.heart_rate`: median and MAD
of 5-minute medians over 72 h; alert at |z| >= 4 and >= 20 /min, clears at |z| < 3 or < 15 /min)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from medtwin.alerts.heart_rate import HrBaseline, HrRule
from medtwin.alerts.repository import AlertCandidate
from medtwin.alerts.rule import AlertKind, RuleInfo, RuleInput, Verdict
from medtwin.vocab import HEART_RATE

NAME: Final = "hr-deviation"


@dataclass
class HeartRateDeviationRule:
    rule: HrRule = field(default_factory=HrRule)

    info = RuleInfo(
        name=NAME, label="Heart rate deviation",
        description="Heart rate far from the patient's own 72-hour baseline (robust z-score); silent until the "
                    "baseline holds 12 hours of data.",
        alerts=(AlertKind(NAME, "Heart rate deviation", "Current heart rate |z| >= 4 and >= 20 /min from the "
                          "personal baseline median; high when |z| >= 6.", ("medium", "high")),),
        metrics=(HEART_RATE,), legacy_kinds=("hr-baseline",), source="engineering thresholds for a personal deviation signal (not a clinical "
                                      "standard; absolute limits are NEWS2's)")

    def new_state(self) -> HrBaseline:
        return HrBaseline(rule=self.rule)

    def state_to_json(self, state: HrBaseline) -> dict[str, Any]:
        state.changed = False  # serialised: saved
        return state.to_json()

    def save_due(self, state: HrBaseline) -> bool:
        """Only when a 5-minute bucket closed: the recent readings are not worth a write each."""
        return state.changed

    def state_from_json(self, raw: dict[str, Any]) -> HrBaseline:
        return HrBaseline.from_json(raw, self.rule)

    def legacy_state(self, payloads: dict[str, dict[str, Any]]) -> HrBaseline | None:
        """Before rules were plug-ins the baseline was saved under its own kind ``hr-baseline``."""
        raw = payloads.get("hr-baseline")
        return None if raw is None else self.state_from_json(raw)

    def summary(self, state: HrBaseline) -> dict[str, Any] | None:
        result = state.evaluate()
        return None if result is None else result.details()

    def evaluate(self, data: RuleInput, state: HrBaseline) -> list[Verdict]:
        samples = [s for s in data.samples if s.metric == HEART_RATE]
        if not samples:
            return []
        for s in samples:
            state.add(s.time, s.value)
        result = state.evaluate()
        if result is None:
            return []
        pid = data.patient_id
        if result.alert and result.severity is not None:
            message = (f"Heart rate {result.current:.0f}/min, {result.delta:+.0f}/min from the patient's "
                       f"baseline {result.baseline_median:.0f}/min (z {result.z:+.1f})")
            candidate = AlertCandidate(pid, NAME, result.severity, f"{pid}:{NAME}", result.at, message,
                                       score=round(result.z, 2), details=result.details())
            return [Verdict(NAME, True, candidate, len(samples))]
        if result.clear and NAME in data.held:
            return [Verdict(NAME, False)]
        return []
