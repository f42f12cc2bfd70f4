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

**The baseline** (issue 15): alerts while the least-squares line through the last 15 min of readings (or the
reading itself) is below 70 mg/dL within 30 min (:func:`line_runs`). :func:`rule_inputs` turns an
evaluation's paths into the forecasts a rule sees, :func:`score_alerts` scores them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from numpy.typing import ArrayLike

from medtwin.physiology.evaluation import ForecastPaths
from medtwin.physiology.forecast import linear_forecast
from medtwin.vocab import GlucoseForecast
from medtwin.vocab.episodes import find_episodes
from medtwin.vocab.forecast import TREND_WINDOW_MIN, glucose_trend_mg_dl_per_min
from medtwin.vocab.glucose import GLUCOSE_LEVEL_BY_NAME, HYPO_L1

ALERT_HORIZON_MIN = 30.0
NORMAL_MG_DL = 80.0  # a false alarm with true glucose above this throughout was no near miss
READS_HIGH_MG_DL = 15.0  # a sensor (or an estimate) this far above true glucose hides a fall
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
    #: what limits the figures (:meth:`add_limits`): false alarms whose true glucose stayed above
    #: :data:`NORMAL_MG_DL` over the alert's window; missed events before which the CGM, or the twin's glucose
    #: estimate, read above the true glucose by more than :data:`READS_HIGH_MG_DL` (mean of ``H`` minutes)
    false_normal: int = 0
    missed_cgm_high: int = 0
    missed_estimate_high: int = 0

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

    def add_limits(self, runs: Sequence[tuple[float, float]], events: Sequence[tuple[float, float]],
                   series: tuple[np.ndarray, ...], first_min: float, last_min: float,
                   horizon_min: float = ALERT_HORIZON_MIN) -> None:
        """Count one patient's limits (class doc); ``series``: times, true glucose, CGM, the twin's estimate."""
        t, truth, cgm, estimate = series
        for opened, closed in runs:
            if not any(opened <= start <= max(opened + horizon_min, closed) or start <= opened < end
                       for start, end in events):
                window = (t >= opened) & (t <= min(max(opened + horizon_min, closed), last_min))
                self.false_normal += bool(np.nanmin(truth[window]) > NORMAL_MG_DL)
        for start, _end in events:
            if first_min + horizon_min <= start <= last_min and not any(o <= start <= c for o, c in runs):
                before = (t >= start - horizon_min) & (t <= start)
                self.missed_cgm_high += bool(np.nanmean(cgm[before] - truth[before]) > READS_HIGH_MG_DL)
                self.missed_estimate_high += bool(np.nanmean(estimate[before] - truth[before]) > READS_HIGH_MG_DL)

    def limits_line(self) -> str:
        return (f"false alarms {self.alerts - self.true_alerts}, true glucose above {NORMAL_MG_DL:.0f} mg/dL "
                f"throughout {self.false_normal}; missed events {self.events - self.detected}, before them the "
                f"CGM read above the true glucose by > {READS_HIGH_MG_DL:.0f} mg/dL in {self.missed_cgm_high}, "
                f"the twin's glucose estimate in {self.missed_estimate_high} (means of the 30 min before)")

    def line(self) -> str:
        held = self.held_min / self.alerts if self.alerts else float("nan")
        return (f"{self.alerts:4d} alerts (held {held:5.1f} min on average), precision {self.precision:.3f}; "
                f"{self.events:3d} events, recall {self.recall:.3f}, median lead {self.median_lead_min:.1f} min")


def rule_inputs(paths: ForecastPaths, i: int, how: str) -> list[tuple[float, GlucoseForecast]]:
    """Patient ``i``'s forecasts as the rule sees them: ``how`` is shown (what the live twin shows: the blend
    with its calibrated intervals), twin (the twin alone, its own intervals) or linear (the baseline's line
    through the last 15 min, as a forecast with the same horizons and no spread: alerts when it crosses 70)."""
    t, cgm = paths.times_min, paths.cgm_mg_dl[i]
    h = np.asarray(paths.horizons_min, dtype=float)
    lines = np.stack([linear_forecast(t, cgm, float(m), TREND_WINDOW_MIN) for m in h], axis=1)  # (T, K)
    out = []
    for j in np.flatnonzero(~np.isnan(paths.glucose_now_mg_dl[i])).tolist():
        if how == "linear":
            mean = lo80 = hi80 = lo95 = hi95 = lines[j]
        elif how == "twin":
            mean = paths.twin_mean_mg_dl[i, j]
            lo80, hi80, lo95, hi95 = paths.twin_bands_mg_dl[:, i, j]
        else:
            mean, lo80, hi80 = paths.mean_mg_dl[i, j], paths.lower80_mg_dl[i, j], paths.upper80_mg_dl[i, j]
            lo95, hi95 = paths.lower95_mg_dl[i, j], paths.upper95_mg_dl[i, j]
        recent = slice(max(j - 3, 0), j + 1)  # 5-min readings: the trend window holds at most four
        trend = glucose_trend_mg_dl_per_min(t[recent].tolist(), cgm[recent].tolist())
        out.append((float(t[j]), GlucoseForecast(
            patient_id=str(i), issued_at=_EPOCH + timedelta(minutes=float(t[j])),
            glucose_now_mg_dl=float(paths.glucose_now_mg_dl[i, j]), horizons_min=paths.horizons_min,
            mean_mg_dl=tuple(mean.tolist()), lower80_mg_dl=tuple(lo80.tolist()), upper80_mg_dl=tuple(hi80.tolist()),
            lower95_mg_dl=tuple(lo95.tolist()), upper95_mg_dl=tuple(hi95.tolist()), insulin_sensitivity_ratio=1.0,
            last_reading_mg_dl=float(cgm[j]), trend_mg_dl_per_min=trend,
            cgm_now_mg_dl=float(cgm[j]) if how == "linear" else float(paths.cgm_now_mg_dl[i, j]),
            sensor_offset_mg_dl=None if how == "linear" else float(  # as the live twin: expected reading - glucose
                paths.cgm_now_mg_dl[i, j] - paths.glucose_now_mg_dl[i, j]))))
    return out


def line_runs(items: list[tuple[float, GlucoseForecast]]) -> list[tuple[float, float]]:
    """The baseline's alerts: open while the line through the last 15 min of readings (or the reading itself)
    is below 70 mg/dL within 30 min, closed as soon as it is not."""
    runs: list[tuple[float, float]] = []
    opened: float | None = None
    for minute, f in items:
        crossing = (f.last_reading_mg_dl or 0.0) < HYPO_L1 or any(
            m < HYPO_L1 for h, m in zip(f.horizons_min, f.mean_mg_dl, strict=True) if h <= ALERT_HORIZON_MIN)
        if crossing and opened is None:
            opened = minute
        elif not crossing and opened is not None:
            runs.append((opened, minute))
            opened = None
    return runs if opened is None else [*runs, (opened, float("inf"))]


Runs = Callable[[list[tuple[float, GlucoseForecast]]], list[tuple[float, float]]]


def score_alerts(paths: ForecastPaths, how: str, runs_of: Runs, from_min: float,
                 inputs: Sequence[list[tuple[float, GlucoseForecast]]] | None = None) -> AlertQuality:
    """Alert quality of ``how``'s forecasts (:func:`rule_inputs`) issued from ``from_min`` on, each patient's
    alerts given by ``runs_of`` (the rule replayed as the engine runs it, or :func:`line_runs` for the
    baseline), matched to the true level-1 events by the definition of this module. ``inputs``: the
    patients' forecasts from :func:`patient_inputs` (to score many rules on the same forecasts)."""
    quality = AlertQuality()
    for i, items in enumerate(patient_inputs(paths, how, from_min) if inputs is None else inputs):
        if items:
            runs, events = runs_of(items), hypo_events(paths.times_min, paths.truth_mg_dl[i])
            quality.add(runs, events, items[0][0], items[-1][0])
            quality.add_limits(runs, events, (paths.times_min, paths.truth_mg_dl[i], paths.cgm_mg_dl[i],
                                              paths.glucose_now_mg_dl[i]), items[0][0], items[-1][0])
    return quality


def patient_inputs(paths: ForecastPaths, how: str, from_min: float) -> list[list[tuple[float, GlucoseForecast]]]:
    """Each patient's (minute, forecast) as the rule sees them (:func:`rule_inputs`), issued from ``from_min`` on."""
    return [[(m, f) for m, f in rule_inputs(paths, i, how) if m >= from_min] for i in range(paths.cgm_mg_dl.shape[0])]
