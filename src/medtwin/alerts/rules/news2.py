"""NEWS2 (RCP 2017) over the latest vital signs within the window (:mod:`medtwin.alerts.news2`): an alert
while the clinical risk is low-medium or above, cleared by a complete set below the trigger (as of that
set's time). Every observation set of a pass is scored, in time order, so a batch is scored as if its sets
had come one by one.

The alert's severity and message come from the one band mapping (:func:`medtwin.vocab.news2.news2_band`:
low-medium -> medium, medium -> high, high -> critical) and follow the score up and down
(``severity_follows``: the peak still decides who may close it); its details keep the score history of the
condition, ``history = [[time, score, band], ...]`` (one entry per change of score, the last
:data:`HISTORY_MAX`), so a clinician sees how it escalated and de-escalated."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from medtwin.alerts import news2 as chart
from medtwin.alerts.repository import AlertCandidate
from medtwin.alerts.rule import AlertKind, RuleInfo, RuleInput, Verdict
from medtwin.alerts.settings import Setting, declare
from medtwin.vocab.news2 import news2_bands, news2_text

log = logging.getLogger("medtwin.alerts")
NAME: Final = "news2"
SCALE: Final = "spo2_scale"  # the per-patient setting (1, or 2 for hypercapnic respiratory failure)
SPO2_SCALE: Final = declare(Setting(SCALE, "news2-scale", (1, 2), 1, "NEWS2 SpO2 scale: 2 only for confirmed "
                                    "hypercapnic respiratory failure, chosen by a clinician (RCP 2017)"))
#: scores kept in an alert's history (the newest)
HISTORY_MAX: Final = 100


def _severity(band: str) -> str:
    """The alert severity of a band that raises one (vocab.news2, the one mapping)."""
    severity = news2_bands()[band].alert_severity
    if severity is None:
        raise ValueError(f"NEWS2 band {band!r} raises no alert")
    return severity


def _sets(data: RuleInput) -> dict[datetime, dict[str, float]]:
    """The pass's NEWS2 values grouped into observation sets by time."""
    sets: dict[datetime, dict[str, float]] = {}
    for s in data.samples:
        if s.metric in chart.NEWS2_METRICS:
            sets.setdefault(s.time, {})[s.metric] = s.value
    return sets


@dataclass
class News2State:
    vitals: dict[str, tuple[datetime, float]] = field(default_factory=dict)
    latest: dict[str, Any] | None = None  # the latest NEWS2 (chart.as_dict + at + times)
    history: list[list[Any]] = field(default_factory=list)  # [time, score, band] while an alert is held
    scores: dict[str, int] | None = None  # sub-scores of the last full NEWS2 (not saved)
    expires: datetime | None = None  # when a parameter of that set leaves the window (not saved)


@dataclass
class News2Rule:
    window: timedelta = chart.DEFAULT_WINDOW

    info = RuleInfo(
        name=NAME, label="NEWS2",
        description="National Early Warning Score 2 over the latest vital signs within 60 minutes; an alert from "
                    "low-medium clinical risk (a 3 in one parameter) upwards.",
        alerts=(AlertKind(NAME, "NEWS2", "NEWS2 clinical risk " + ", ".join(
            f"{b.name} ({b.alert_severity} alert)" for b in reversed(news2_bands().values()) if b.alert_severity)
            + ", RCP 2017 Chart 2; the severity follows the score up and down.",
            tuple(b.alert_severity for b in reversed(news2_bands().values()) if b.alert_severity)),),
        metrics=tuple(sorted(chart.NEWS2_METRICS)), settings=(SCALE,),
        source="Royal College of Physicians. National Early Warning Score (NEWS) 2. London: RCP, 2017",
        legacy_kinds=("alert-state",))

    def new_state(self) -> News2State:
        return News2State()

    def state_to_json(self, state: News2State) -> dict[str, Any]:
        return {"vitals": {k: [t.isoformat(), v] for k, (t, v) in state.vitals.items()}, "latest": state.latest,
                "history": state.history}

    def state_from_json(self, raw: dict[str, Any]) -> News2State:
        return News2State(vitals={k: (datetime.fromisoformat(t), float(v)) for k, (t, v) in raw.get("vitals", {}).items()},
                          latest=raw.get("latest"), history=list(raw.get("history", [])))

    def legacy_state(self, payloads: dict[str, dict[str, Any]]) -> News2State | None:
        """Before rules were plug-ins the vitals and the latest NEWS2 were saved under ``alert-state``."""
        raw = payloads.get("alert-state", {})
        if "vitals" not in raw:
            return None
        return self.state_from_json({"vitals": raw["vitals"], "latest": raw.get("news2")})

    def summary(self, state: News2State) -> dict[str, Any] | None:
        return state.latest

    def evaluate(self, data: RuleInput, state: News2State) -> list[Verdict]:
        """Every observation set of the pass is scored, in time order (a 7 followed by a 2 in one batch still
        opens the alert, then clears it): one verdict per set whose score can have changed."""
        scale = int(data.settings.get(SCALE, 1))
        held = NAME in data.held
        verdicts: list[Verdict] = []
        for when, values in sorted(_sets(data).items()):
            updated = self._fold(state, when, values)
            if not updated or (SCALE not in data.changed_settings and self._same(state, updated, when, scale)):
                continue  # nothing newer, or every changed parameter is in the band it was: the same verdict
            held = self._verdicts(data, state, scale, held, verdicts)
        if SCALE in data.changed_settings and not verdicts:
            self._verdicts(data, state, scale, held, verdicts)
        return verdicts

    @staticmethod
    def _fold(state: News2State, when: datetime, values: dict[str, float]) -> dict[str, float]:
        """The set's values newer than those held (a late value is not folded in)."""
        updated: dict[str, float] = {}
        for metric, value in values.items():
            current = state.vitals.get(metric)
            if current is None or when >= current[0]:
                state.vitals[metric] = (when, value)
                updated[metric] = value
        return updated

    def _verdicts(self, data: RuleInput, state: News2State, scale: int, held: bool, out: list[Verdict]) -> bool:
        """Score the latest set into ``out``; whether the condition is held after it."""
        found = self._score(data, state, scale, held)
        out += found
        return held if not found else found[-1].holds

    def _score(self, data: RuleInput, state: News2State, scale: int, held: bool) -> list[Verdict]:
        chosen = chart.observation_set(state.vitals, window=self.window)
        if chosen is None:
            return []
        try:
            result = chart.score(chosen.vitals, scale)
        except chart.News2InputError:
            log.warning("NEWS2 not scored for a patient: %s", "value outside the chart's range")
            return []
        state.latest = {**chart.as_dict(result), "at": chosen.at.isoformat(),
                        "times": {k: v.isoformat() for k, v in chosen.times.items()}}
        state.scores = {sub.parameter: sub.score for sub in result.sub_scores}
        state.expires = min(chosen.times.values()) + self.window if chosen.times else None
        pid = data.patient_id
        if result.triggered:
            self._remember(state, held, chosen.at, result.aggregate, result.risk)
            incomplete = f" (incomplete set: {', '.join(result.missing_labels)} missing)" if result.missing else ""
            message = news2_text(result.aggregate, result.risk) + incomplete
            candidate = AlertCandidate(pid, NAME, _severity(result.risk), f"{pid}:{NAME}", chosen.at, message,
                                       score=float(result.aggregate),
                                       details={**state.latest, "history": list(state.history)},
                                       severity_follows=True)
            return [Verdict(NAME, True, candidate)]
        if result.complete and held:
            state.history = []
            return [Verdict(NAME, False, cleared_at=chosen.at)]
        return []

    @staticmethod
    def _remember(state: News2State, held: bool, at: datetime, aggregate: int, band: str) -> None:
        """Add the score to the held condition's history (a new condition starts a new one)."""
        if not held:
            state.history = []
        if not state.history or state.history[-1][1:] != [aggregate, band]:
            state.history.append([at.isoformat(), aggregate, band])
            del state.history[:-HISTORY_MAX]

    @staticmethod
    def _same(state: News2State, updated: dict[str, float], newest: datetime, scale: int) -> bool:
        """True when NEWS2 cannot have changed: no parameter left the window, and each updated one is a
        parameter of the last set whose value falls in the band it scored (SpO2 on Scale 1 only; any
        change of oxygen or of Scale 2 saturation is scored in full)."""
        scores, expires = state.scores, state.expires
        if scores is None or expires is None or newest >= expires:
            return False
        parameters = chart.chart().parameters
        for metric, value in updated.items():
            parameter = chart.PARAMETER_OF[metric]
            if parameter not in scores or parameter == "supplemental_oxygen":
                return False
            if parameter == "spo2" and scale != 1:
                return False
            key = "spo2_scale1" if parameter == "spo2" else parameter
            if parameters[key].band(value).score != scores[parameter]:
                return False
        return True
