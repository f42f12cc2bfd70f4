"""Heart-rate deviation from the patient's own baseline (robust statistics, persisted state).

Baseline: the median and the MAD (median absolute deviation) of the patient's **5-minute heart-rate
medians over the last 72 hours** of data time. Five-minute medians keep the state small (at most 864
numbers per patient, persisted as ``twin_live_state`` kind ``hr-baseline``) and spread the baseline over
day and night; median and MAD are robust, so hours of tachycardia barely move the baseline (it takes more
than half of the history to shift the median). The baseline is *armed* once it holds at least 12 hours of
buckets (144); before that the rule is silent.

Current value: the median of the readings in the last 5 minutes of data time (at least 3 readings; a single
artefact cannot trigger).

Deviation, with the MAD scaled to a standard deviation for normal data (1.4826 MAD) and floored at
2 /min so a very steady baseline does not turn noise into alarms::

    z = (current - baseline median) / max(1.4826 MAD, 2)

Thresholds (defaults of :class:`HrRule`): alert when ``|z| >= 4`` **and** ``|current - median| >= 20 /min``;
severity ``high`` when ``|z| >= 6``, ``medium`` otherwise; the alert clears when ``|z| < 3`` or the
difference is below 15 /min (hysteresis, so a value hovering at the threshold does not open and close
alerts). These are engineering thresholds for a *personal* deviation signal, not a clinical standard;
absolute heart-rate limits are NEWS2's job (pulse is one of its parameters).
"""

from __future__ import annotations

import bisect
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

MAD_TO_SD: Final = 1.4826
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class HrRule:
    bucket: timedelta = timedelta(minutes=5)
    history: timedelta = timedelta(hours=72)
    min_buckets: int = 144  # 12 h of 5-minute buckets
    recent: timedelta = timedelta(minutes=5)
    min_recent: int = 3
    z_alert: float = 4.0
    z_severe: float = 6.0
    z_clear: float = 3.0
    min_delta: float = 20.0  # /min
    clear_delta: float = 15.0
    mad_floor: float = 2.0  # /min, after scaling


def robust_baseline(values: list[float]) -> tuple[float, float]:
    """(median, MAD) of ``values``."""
    median = statistics.median(values)
    return median, statistics.median(abs(v - median) for v in values)


@dataclass(frozen=True)
class HrDeviation:
    current: float  # median of the recent readings
    n_recent: int
    baseline_median: float
    baseline_mad: float
    n_buckets: int
    z: float
    delta: float
    alert: bool
    clear: bool
    severity: str | None
    at: datetime

    def details(self) -> dict[str, Any]:
        return {"current_per_min": round(self.current, 1), "baseline_median_per_min": round(self.baseline_median, 1),
                "baseline_mad_per_min": round(self.baseline_mad, 2), "z": round(self.z, 2),
                "delta_per_min": round(self.delta, 1), "n_recent": self.n_recent, "n_buckets": self.n_buckets,
                "at": self.at.isoformat()}


def deviation(current: float, n_recent: int, median: float, mad: float, n_buckets: int, at: datetime,
              rule: HrRule) -> HrDeviation:
    scale = max(MAD_TO_SD * mad, rule.mad_floor)
    delta = current - median
    z = delta / scale
    alert = abs(z) >= rule.z_alert and abs(delta) >= rule.min_delta
    clear = abs(z) < rule.z_clear or abs(delta) < rule.clear_delta
    severity = ("high" if abs(z) >= rule.z_severe else "medium") if alert else None
    return HrDeviation(current, n_recent, median, mad, n_buckets, z, delta, alert, clear, severity, at)


@dataclass
class HrBaseline:
    """One patient's heart-rate history: closed 5-minute bucket medians, the open bucket, recent readings."""

    rule: HrRule = field(default_factory=HrRule)
    buckets: list[tuple[int, float]] = field(default_factory=list)  # (bucket index, median), ascending
    open_index: int | None = None
    open_values: list[float] = field(default_factory=list)
    recent: list[tuple[datetime, float]] = field(default_factory=list)  # time order
    ignored_late: int = 0
    _cache: tuple[float, float] | None = field(default=None, repr=False)
    changed: bool = field(default=False, repr=False)  # a bucket closed since the last save

    def _index(self, time: datetime) -> int:
        return int((time - EPOCH) // self.rule.bucket)

    def add(self, time: datetime, value: float) -> None:
        index = self._index(time)
        if self.open_index is None or index == self.open_index:
            self.open_index = index
            self.open_values.append(value)
        elif index > self.open_index:
            self._close()
            self.open_index, self.open_values = index, [value]
        else:
            self.ignored_late += 1  # its bucket is closed; the baseline does not go back
        i = bisect.bisect_right(self.recent, (time, float("inf")))
        self.recent.insert(i, (time, value))
        newest = self.recent[-1][0]
        cut = bisect.bisect_left(self.recent, (newest - self.rule.recent, float("inf")))
        del self.recent[:cut]

    def _close(self) -> None:
        if self.open_index is None or not self.open_values:
            return
        self.buckets.append((self.open_index, statistics.median(self.open_values)))
        oldest = self.open_index - int(self.rule.history / self.rule.bucket)
        while self.buckets and self.buckets[0][0] <= oldest:
            self.buckets.pop(0)
        self._cache = None
        self.changed = True

    def baseline(self) -> tuple[float, float] | None:
        """(median, MAD) of the closed bucket medians, or None before the baseline is armed."""
        if len(self.buckets) < self.rule.min_buckets:
            return None
        if self._cache is None:
            self._cache = robust_baseline([v for _i, v in self.buckets])
        return self._cache

    def evaluate(self) -> HrDeviation | None:
        """The current deviation, or None (baseline not armed, or too few recent readings)."""
        base = self.baseline()
        if base is None or len(self.recent) < self.rule.min_recent:
            return None
        current = statistics.median(v for _t, v in self.recent)
        return deviation(current, len(self.recent), base[0], base[1], len(self.buckets), self.recent[-1][0],
                         self.rule)

    def to_json(self) -> dict[str, Any]:
        return {"buckets": [[i, round(v, 2)] for i, v in self.buckets], "open_index": self.open_index,
                "open_values": self.open_values, "recent": [[t.isoformat(), v] for t, v in self.recent],
                "ignored_late": self.ignored_late, "bucket_min": self.rule.bucket.total_seconds() / 60}

    @classmethod
    def from_json(cls, raw: dict[str, Any], rule: HrRule | None = None) -> HrBaseline:
        state = cls(rule=rule or HrRule())
        if raw.get("bucket_min") not in (None, state.rule.bucket.total_seconds() / 60):
            return state  # bucket size changed: start over rather than mix resolutions
        state.buckets = [(int(i), float(v)) for i, v in raw.get("buckets", [])]
        state.open_index = raw.get("open_index")
        state.open_values = [float(v) for v in raw.get("open_values", [])]
        state.recent = [(datetime.fromisoformat(t), float(v)) for t, v in raw.get("recent", [])]
        state.ignored_late = int(raw.get("ignored_late", 0))
        return state
