"""THE definition of a true hypoglycaemia event and of matching predicted-hypoglycaemia alerts to events, for
the benchmark and the tests alike (one source of truth).

**Event**: a level-1 hypoglycaemia episode of the glucose series, as :func:`medtwin.vocab.episodes.find_episodes`
defines it (international consensus 2023: >= 15 consecutive minutes below 70 mg/dL begin it, >= 15 back
at or above 70 end it); it *starts* at the first reading of the run that began it. On virtual patients the
series is the true interstitial glucose of the simulation: what the alert is for, not what a noisy sensor
shows.

**Matching**, for alerts with a horizon ``H`` (30 min: the rule's):

* an alert open from ``o`` to ``c`` is a true positive if an event starts within its horizon: within ``H``
  of its opening or while it is held (a held alert restates "below 70 within ``H``" at every forecast),
  ``o <= start <= max(o + H, c)``, or is already under way at ``o`` (a late alert is still not a false
  alarm); otherwise a false positive. Precision = true positives / alerts. So that holding an alert for
  hours cannot buy precision, the mean time an alert is held is reported beside it.
* an event is *detected* if an alert is open at its start (opened at or before it, not closed before
  it); its lead time is the minutes from that alert's opening to the start. Only events starting at least
  ``H`` after the first forecast and not after the last are counted (an alert could have been raised in
  time). Recall = detected / counted events; the median lead is over detected events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from numpy.typing import ArrayLike

from medtwin.vocab.episodes import find_episodes
from medtwin.vocab.glucose import GLUCOSE_LEVEL_BY_NAME

ALERT_HORIZON_MIN = 30.0
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def hypo_events(times_min: ArrayLike, glucose_mg_dl: ArrayLike) -> list[tuple[float, float]]:
    """(start, end) minutes of each level-1 hypoglycaemia episode (end: inf while still going)."""
    t = np.asarray(times_min, dtype=float)
    g = np.asarray(glucose_mg_dl, dtype=float)
    ok = np.isfinite(g)
    times = [_EPOCH + timedelta(minutes=float(m)) for m in t[ok]]
    found = find_episodes(GLUCOSE_LEVEL_BY_NAME["hypo-l1"], times, g[ok].tolist())
    return [((e.start - _EPOCH).total_seconds() / 60,
             np.inf if e.end is None else (e.end - _EPOCH).total_seconds() / 60) for e in found]


@dataclass
class AlertQuality:
    """Counts and rates, accumulated over patients with :meth:`add`."""

    alerts: int = 0
    true_alerts: int = 0
    events: int = 0
    detected: int = 0
    leads_min: tuple[float, ...] = ()
    held_min: float = 0.0  # total minutes alerts were held (closed alerts)

    @property
    def precision(self) -> float:
        return self.true_alerts / self.alerts if self.alerts else float("nan")

    @property
    def recall(self) -> float:
        return self.detected / self.events if self.events else float("nan")

    @property
    def median_lead_min(self) -> float:
        return float(np.median(self.leads_min)) if self.leads_min else float("nan")

    def add(self, runs: Sequence[tuple[float, float]], events: Sequence[tuple[float, float]], first_min: float,
            last_min: float, horizon_min: float = ALERT_HORIZON_MIN) -> None:
        """Fold in one patient: ``runs`` (opened, closed) minutes of its alerts (closed: inf if still open),
        ``events`` (start, end) of its true events, forecasts issued from ``first_min`` to ``last_min``."""
        for opened, closed in runs:
            self.alerts += 1
            self.held_min += min(closed, last_min) - opened
            self.true_alerts += any(opened <= start <= max(opened + horizon_min, closed) or start <= opened < end
                                    for start, end in events)
        leads = list(self.leads_min)
        for start, _end in events:
            if not first_min + horizon_min <= start <= last_min:
                continue
            self.events += 1
            open_at_start = [opened for opened, closed in runs if opened <= start <= closed]
            if open_at_start:
                self.detected += 1
                leads.append(start - open_at_start[0])
        self.leads_min = tuple(leads)

    def line(self) -> str:
        held = self.held_min / self.alerts if self.alerts else float("nan")
        return (f"{self.alerts:4d} alerts (held {held:5.1f} min on average), precision {self.precision:.3f}; "
                f"{self.events:3d} events, recall {self.recall:.3f}, median lead {self.median_lead_min:.1f} min")
