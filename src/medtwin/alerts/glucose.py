"""Glucose rule science: consensus glucose episodes over a live stream, and predicted hypoglycaemia from the
live twin's forecast. The alert rules that use them are :mod:`medtwin.alerts.rules.glucose_episodes` and
:mod:`medtwin.alerts.rules.predicted_hypo`.

Thresholds and THE episode definition are the vocabulary's (:mod:`medtwin.vocab.glucose`,
:mod:`medtwin.vocab.episodes`: international consensus 2023, an episode begins after >= 15 consecutive
minutes beyond the threshold and ends after >= 15 consecutive minutes back within it), the same that the CGM
report counts with. Each level is tracked on its own, so a level 2 hypoglycaemia is also a level 1 one.
Streaming details, decided here:

* gaps: readings further apart than ``max_gap`` (15 min) are not consecutive; a gap restarts the run that
  would begin or end an episode but does not end an episode by itself (missing data is not recovery);
* out-of-order arrival: readings are kept in time order for ``reorder_window`` (60 min) behind the newest
  one and the state is recomputed over them from a checkpoint, so a late reading changes the result as if
  it had arrived in order; a reading older than that window is ignored (and counted);
* a repeated timestamp replaces the earlier value (a corrected reading).

**Predicted hypoglycaemia** (:func:`predict_hypo`) uses the forecast **mean**: an alert when the mean
trajectory of the expected CGM reading (from horizon 0, ``start_mg_dl``: the last reading less the white
noise the filter attributes to it; never the sensor-corrected glucose estimate, which no sensor showed) falls
below 70 mg/dL within 30 minutes, with the lead
time to the crossing (linear interpolation between horizons) and the predicted value. The mean, not the
lower 80 % bound, because the bound of a wide forecast sits below 70 for much of a normal night at
100-120 mg/dL (constant false alarms); the lower bounds at the crossing are reported in the details so a
reader can see how certain the prediction is. Severity is ``high`` when the mean falls below 54 mg/dL
within the horizon, ``medium`` otherwise. The alert clears once the forecast mean stays at or above
70 + ``clear_margin`` (10) mg/dL over the horizon (hysteresis against forecasts that hover at 70).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from medtwin.vocab import GlucoseForecast
from medtwin.vocab.episodes import DEFAULT_MAX_GAP, DEFAULT_PERIOD, EpisodeState, find_episodes, step
from medtwin.vocab.glucose import GLUCOSE_LEVELS, HYPO_L1, HYPO_L2

DEFAULT_REORDER_WINDOW: Final = timedelta(minutes=60)
LEVELS: Final = GLUCOSE_LEVELS


@dataclass
class EpisodeTracker:
    """All four consensus levels for one patient's glucose stream, robust to gaps and late readings.

    ``committed`` holds each level's state after the readings older than the reorder window; ``pending``
    the newer readings in time order. :meth:`add` inserts readings and recomputes the current states.
    """

    period: timedelta = DEFAULT_PERIOD
    max_gap: timedelta = DEFAULT_MAX_GAP
    reorder_window: timedelta = DEFAULT_REORDER_WINDOW
    committed: dict[str, EpisodeState] = field(default_factory=lambda: {lv.name: EpisodeState() for lv in LEVELS})
    pending: list[tuple[datetime, float]] = field(default_factory=list)
    dropped_late: int = 0
    _current: dict[str, EpisodeState] | None = field(default=None, repr=False)

    @property
    def newest(self) -> datetime | None:
        if self.pending:
            return self.pending[-1][0]
        times = [s.last_time for s in self.committed.values() if s.last_time is not None]
        return max(times) if times else None

    def _horizon(self) -> datetime | None:
        times = [s.last_time for s in self.committed.values() if s.last_time is not None]
        return max(times) if times else None

    def add(self, readings: list[tuple[datetime, float]]) -> dict[str, EpisodeState]:
        """Insert readings (any order); returns the current state of each level (rule -> state)."""
        horizon = self._horizon()
        changed = False
        for time, value in readings:
            if horizon is not None and time <= horizon:
                self.dropped_late += 1  # behind the checkpoint: already folded in
                continue
            i = bisect.bisect_left(self.pending, (time,))
            if i < len(self.pending) and self.pending[i][0] == time:
                self.pending[i] = (time, value)  # a corrected reading replaces the earlier one
            else:
                self.pending.insert(i, (time, value))
            changed = True
        if changed or self._current is None:
            self._commit()
            self._current = self._fold()
        return self._current

    def _commit(self) -> None:
        """Fold readings older than the reorder window into the checkpoint."""
        if not self.pending:
            return
        cutoff = self.pending[-1][0] - self.reorder_window
        n = bisect.bisect_left(self.pending, (cutoff,))
        if n == 0:
            return
        for time, value in self.pending[:n]:
            for level in LEVELS:
                self.committed[level.name] = step(level, self.committed[level.name], time, value,
                                                  period=self.period, max_gap=self.max_gap)
        del self.pending[:n]

    def _fold(self) -> dict[str, EpisodeState]:
        states = {}
        for level in LEVELS:
            state = self.committed[level.name]
            for time, value in self.pending:
                state = step(level, state, time, value, period=self.period, max_gap=self.max_gap)
            states[level.name] = state
        return states

    def current(self) -> dict[str, EpisodeState]:
        if self._current is None:
            self._current = self._fold()
        return self._current

    def to_json(self) -> dict[str, Any]:
        return {"committed": {k: v.to_json() for k, v in self.committed.items()},
                "pending": [[t.isoformat(), v] for t, v in self.pending], "dropped_late": self.dropped_late}

    @classmethod
    def from_json(cls, raw: dict[str, Any], **options: Any) -> EpisodeTracker:
        tracker = cls(**options)
        for rule, state in raw.get("committed", {}).items():
            if rule in tracker.committed:
                tracker.committed[rule] = EpisodeState.from_json(state)
        tracker.pending = [(datetime.fromisoformat(t), float(v)) for t, v in raw.get("pending", [])]
        tracker.dropped_late = int(raw.get("dropped_late", 0))
        return tracker


def episodes(times: list[datetime], values: list[float], *, period: timedelta = DEFAULT_PERIOD,
             max_gap: timedelta = DEFAULT_MAX_GAP) -> dict[str, list[tuple[datetime, datetime | None, float]]]:
    """Every episode of every level in a whole series (any order): level -> [(start, end or None, extreme)].
    ``end`` is the first reading of the back-within run that ended it; None: still going."""
    return {level.name: [(e.start, e.end, e.extreme_mg_dl) for e in find_episodes(
        level, times, values, period=period, max_gap=max_gap)] for level in LEVELS}


@dataclass(frozen=True)
class PredictedHypo:
    """The forecast's verdict on hypoglycaemia within the horizon."""

    predicted: bool  # the mean falls below the threshold within the horizon
    cleared: bool  # the mean stays at or above threshold + clear margin over the horizon
    lead_time_min: float | None  # minutes from issued_at to the predicted crossing (0: already below)
    predicted_mg_dl: float | None  # the mean at the crossing horizon (first horizon below threshold)
    minimum_mg_dl: float  # lowest mean within the horizon
    minimum_at_min: float
    lower80_mg_dl: float | None  # at the crossing horizon
    lower95_mg_dl: float | None
    severity: str | None
    issued_at: datetime
    glucose_now_mg_dl: float

    def details(self) -> dict[str, Any]:
        return {"lead_time_min": self.lead_time_min, "predicted_mg_dl": self.predicted_mg_dl,
                "minimum_mg_dl": self.minimum_mg_dl, "minimum_at_min": self.minimum_at_min,
                "lower80_mg_dl": self.lower80_mg_dl, "lower95_mg_dl": self.lower95_mg_dl,
                "glucose_now_mg_dl": self.glucose_now_mg_dl, "issued_at": self.issued_at.isoformat(),
                "basis": "forecast mean"}


def predict_hypo(forecast: GlucoseForecast, *, threshold: float = HYPO_L1, horizon_min: float = 30.0,
                 severe_threshold: float = HYPO_L2, clear_margin: float = 10.0) -> PredictedHypo:
    """Does the forecast mean cross below ``threshold`` within ``horizon_min`` minutes? (module docstring)"""
    points: list[tuple[float, float, float | None, float | None]] = [
        (0.0, forecast.start_mg_dl, None, None)]  # expected CGM reading now, never the glucose estimate
    for i, h in enumerate(forecast.horizons_min):
        if 0 < h <= horizon_min:
            points.append((float(h), forecast.mean_mg_dl[i], forecast.lower80_mg_dl[i], forecast.lower95_mg_dl[i]))
    lead: float | None = None
    at_value: float | None = None
    low80: float | None = None
    low95: float | None = None
    for (t0, g0, _a, _b), (t1, g1, l80, l95) in zip(points, points[1:], strict=False):
        if lead is None and g0 >= threshold > g1:
            lead = t0 + (t1 - t0) * (g0 - threshold) / (g0 - g1)
            at_value, low80, low95 = g1, l80, l95
    if points[0][1] < threshold:
        lead, at_value = 0.0, points[0][1]
        if len(points) > 1:
            low80, low95 = points[1][2], points[1][3]
    minimum_at, minimum = min(((t, g) for t, g, _a, _b in points), key=lambda p: p[1])
    predicted = lead is not None
    severity = None
    if predicted:
        severity = "high" if minimum < severe_threshold else "medium"
    return PredictedHypo(predicted=predicted, cleared=minimum >= threshold + clear_margin,
                         lead_time_min=None if lead is None else round(lead, 1), predicted_mg_dl=at_value,
                         minimum_mg_dl=minimum, minimum_at_min=minimum_at, lower80_mg_dl=low80,
                         lower95_mg_dl=low95, severity=severity, issued_at=forecast.issued_at,
                         glucose_now_mg_dl=forecast.glucose_now_mg_dl)
