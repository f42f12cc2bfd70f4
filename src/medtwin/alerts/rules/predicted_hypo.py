"""Predicted hypoglycaemia from the live glucose twin's forecast (:func:`medtwin.alerts.glucose.predict_hypo`:
the forecast mean below 70 mg/dL within the horizon; clears at 70 + margin, hysteresis).

**What it decides on**: the expected CGM path (the forecast mean of the *reading*; at horizon 0 the last
reading less the white noise the filter attributes to it), not the twin's sensor-corrected glucose path. Why: the alert is read beside the CGM trace
and acted on with a finger-stick or the CGM; a sensor offset the twin believes in is itself an estimate (a
wrong one would raise an alarm while every number on the screen reads normal, the #15 failure), and the
offset decays with the sensor error's ~40-min correlation time, so within the 30-min horizon both paths
converge anyway. ``benchmarks/bench_forecast.py`` scores both anchors against true hypoglycaemia.

**What it says**: the measured value and the forecast separately, in the one sentence of
:meth:`medtwin.vocab.GlucoseForecast.sentence` ("CGM 87 mg/dL, falling 2 mg/dL/min; forecast 62 (95 % 48-76)
in 30 min"; with a material sensor offset it adds "sensor reads ~X mg/dL above the twin's estimate").
``details`` hold the measured reading (``cgm_mg_dl``), its trend, and the forecast; ``glucose_now_mg_dl`` in
the details is the twin's estimate, labelled as such, never the alert's value. While the condition is held and
the forecast sits between 70 mg/dL and the clearing level (hysteresis), the alert's text and details follow the
newest forecast ("Hypoglycaemia no longer predicted (clears when ...): CGM 87 mg/dL, ...") at the held
severity (kept in the rule's state), not counted as an occurrence: never "CGM 55" beside a reading of 87.
"""

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
        return {}  # {"severity": of the held condition's last prediction}; the held condition is the engine's

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
            verdict = self._one(data.patient_id, forecast, held, state.get("severity"))
            if verdict is not None:
                out.append(verdict)
                held = verdict.holds
                if verdict.candidate is None:
                    state.pop("severity", None)
                else:
                    state["severity"] = verdict.candidate.severity
        return out

    def _one(self, patient_id: str, forecast: GlucoseForecast, held: bool, severity: str | None) -> Verdict | None:
        result = predict_hypo(forecast, horizon_min=self.horizon_min, clear_margin=self.clear_margin_mg_dl)
        if result.predicted and result.severity is not None and result.lead_time_min is not None:
            shown = self._shown_horizon(forecast, result.lead_time_min)
            reading = forecast.last_reading_mg_dl
            if result.lead_time_min == 0 and reading is not None and reading < HYPO_L1:
                message = f"CGM below {HYPO_L1:.0f} mg/dL: {forecast.sentence(shown)}"
            elif result.lead_time_min == 0:
                message = f"Hypoglycaemia predicted now: {forecast.sentence(shown)}"
            else:
                message = f"Hypoglycaemia predicted in {result.lead_time_min:.0f} min: {forecast.sentence(shown)}"
            candidate = AlertCandidate(patient_id, NAME, result.severity, f"{patient_id}:{NAME}", forecast.issued_at,
                                       message, score=result.lead_time_min,
                                       details=self._details(forecast, result.details(), shown))
            return Verdict(NAME, True, candidate)
        if result.cleared and held:
            return Verdict(NAME, False)
        if held:  # between 70 and 70 + margin: still held (hysteresis), but its text must not go stale
            shown = self._shown_horizon(forecast, 0)
            message = (f"Hypoglycaemia no longer predicted (clears when the forecast stays at or above "
                       f"{HYPO_L1 + self.clear_margin_mg_dl:.0f} mg/dL): {forecast.sentence(shown)}")
            kept = severity if severity in self.info.alerts[0].severities else self.info.alerts[0].severities[0]
            candidate = AlertCandidate(patient_id, NAME, kept, f"{patient_id}:{NAME}", forecast.issued_at, message,
                                       score=None, details=self._details(forecast, result.details(), shown))
            # the held prediction's severity (it never drops while held); not an occurrence of a prediction
            return Verdict(NAME, True, candidate, occurrences=0)
        return None

    @staticmethod
    def _details(forecast: GlucoseForecast, decision: dict[str, Any], shown: int) -> dict[str, Any]:
        mean, _lo80, _hi80, lo95, hi95 = forecast.at(shown)
        return {**decision, "twin_version": forecast.twin_version,
                "cgm_mg_dl": forecast.last_reading_mg_dl, "cgm_time": forecast.issued_at.isoformat(),
                "trend_mg_dl_per_min": forecast.trend_mg_dl_per_min,
                "sensor_offset_mg_dl": forecast.sensor_offset_mg_dl,
                "forecast": {"horizon_min": shown, "mean_mg_dl": mean, "lower95_mg_dl": lo95, "upper95_mg_dl": hi95},
                "anchor": "last CGM reading" if forecast.last_reading_mg_dl is not None else "twin estimate"}

    def _shown_horizon(self, forecast: GlucoseForecast, lead_min: float) -> int:
        """The forecast horizon the message quotes: the first at or after the crossing that is below 70 mg/dL
        (already below: the lowest within the horizon), else the last within the horizon."""
        within = [(h, m) for h, m in zip(forecast.horizons_min, forecast.mean_mg_dl, strict=True)
                  if 0 < h <= self.horizon_min] or [(forecast.horizons_min[0], forecast.mean_mg_dl[0])]
        if lead_min == 0:
            return min(within, key=lambda p: p[1])[0]
        return next((h for h, m in within if h >= lead_min and m < HYPO_L1), within[-1][0])
