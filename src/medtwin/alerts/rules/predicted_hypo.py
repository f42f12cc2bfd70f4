"""Predicted hypoglycaemia from the live glucose twin's forecast (:func:`medtwin.alerts.glucose.predict_hypo`:
the forecast mean below 70 mg/dL within the horizon; clears at 70 + margin, hysteresis)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medtwin.alerts.glucose import predict_hypo
from medtwin.alerts.repository import AlertCandidate
from medtwin.alerts.rule import AlertKind, RuleInfo, RuleInput, Verdict
from medtwin.vocab import GlucoseForecast
from medtwin.vocab.glucose import HYPO_L1, THRESHOLDS_SOURCE

NAME = "predicted-hypo"


@dataclass
class PredictedHypoRule:
    horizon_min: float = 30.0
    clear_margin_mg_dl: float = 10.0

    info = RuleInfo(
        name=NAME, label="Predicted hypoglycaemia",
        description="The live glucose twin's forecast mean falls below 70 mg/dL within 30 minutes; clears when "
                    "it stays at or above 80 mg/dL over the horizon.",
        alerts=(AlertKind(NAME, "Predicted hypoglycaemia",
                          f"Forecast mean below {HYPO_L1:.0f} mg/dL within the horizon; high when below 54 mg/dL.",
                          ("medium", "high")),),
        forecasts=("glucose",), source=THRESHOLDS_SOURCE)

    def new_state(self) -> dict[str, Any]:
        return {}  # stateless: the held condition is the engine's

    def state_to_json(self, state: dict[str, Any]) -> dict[str, Any]:
        return dict(state)

    def state_from_json(self, raw: dict[str, Any]) -> dict[str, Any]:
        return dict(raw)

    def summary(self, state: dict[str, Any]) -> dict[str, Any] | None:
        return None

    def evaluate(self, data: RuleInput, state: dict[str, Any]) -> list[Verdict]:
        held = NAME in data.held
        out: list[Verdict] = []
        for forecast in sorted(data.forecasts, key=lambda f: f.issued_at):  # each one: no escalation is lost
            verdict = self._one(data.patient_id, forecast, held)
            if verdict is not None:
                out.append(verdict)
                held = verdict.holds
        return out

    def _one(self, patient_id: str, forecast: GlucoseForecast, held: bool) -> Verdict | None:
        result = predict_hypo(forecast, horizon_min=self.horizon_min, clear_margin=self.clear_margin_mg_dl)
        if result.predicted and result.severity is not None and result.lead_time_min is not None:
            if result.lead_time_min == 0:
                message = (f"Glucose {result.glucose_now_mg_dl:.0f} mg/dL is below 70 mg/dL; forecast lowest "
                           f"{result.minimum_mg_dl:.0f} mg/dL within {self.horizon_min:.0f} min")
            else:
                message = (f"Hypoglycaemia predicted in {result.lead_time_min:.0f} min: forecast "
                           f"{result.predicted_mg_dl:.0f} mg/dL (now {result.glucose_now_mg_dl:.0f} mg/dL)")
            candidate = AlertCandidate(patient_id, NAME, result.severity, f"{patient_id}:{NAME}",
                                       forecast.issued_at, message, score=result.lead_time_min,
                                       details={**result.details(), "twin_version": forecast.twin_version})
            return Verdict(NAME, True, candidate)
        if result.cleared and held:
            return Verdict(NAME, False)
        return None
