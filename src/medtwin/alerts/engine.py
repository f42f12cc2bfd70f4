"""The alert engine: rules over the live streams, alerts in the store, events on the hub.

Wiring::

    engine = AlertEngine(store, clock=utcnow, hub=hub)
    pipeline.add_listener(engine.on_samples)          # newly stored samples, after commit
    live_glucose.add_forecast_listener(engine.on_forecast)
    ...
    engine.stop()                                      # drains the queue, saves every patient's state

``on_samples`` / ``on_forecast`` only enqueue (microseconds, safe on the ingest thread). One worker thread
takes everything queued at once (up to ``max_batch`` samples), groups it by patient and

1. runs the rules on each patient's in-memory state: the four consensus glucose episode levels
   (:mod:`.glucose`), predicted hypoglycaemia from the latest forecast, NEWS2 over the latest vital signs
   within the window (:mod:`.news2`), heart-rate deviation from the personal baseline (:mod:`.heart_rate`);
2. turns each rule's verdict into alert changes in **one transaction**: a condition that *begins* opens an
   alert (or updates the unresolved one with the same key), one that *continues* updates it (``touch``:
   never a new alert, so a clinician's "resolved" sticks until the condition clears), one that *clears*
   resolves it as ``system``. Openings and system resolutions are audited (actor ``system``);
3. publishes ``alert`` events (opened, escalated, resolved at once; plain updates at most every
   ``update_event_interval_s`` per alert, so a long episode is not a stream of events);
4. saves changed patient state to ``twin_live_state`` (kinds ``alert-state``: episode trackers, latest
   vitals, last NEWS2, which conditions are held; ``hr-baseline``), at most every ``persist_interval_s``
   per patient and at once when a held condition changed, in its own transaction after the events are out.

State is loaded lazily per patient from ``twin_live_state``, so a restarted engine resumes episodes,
baselines and held conditions. If the process dies between the alert commit and the state save, the
restarted engine sees the condition as new and ``open`` finds the unresolved alert: no duplicate.

A verdict is one of: *holds* (with the alert candidate), *clears*, or nothing (no change: e.g. NEWS2 on an
incomplete set below the trigger, a forecast in the hysteresis band, a heart-rate baseline not armed).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson
from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from medtwin.alerts import news2 as news2_rule
from medtwin.alerts.glucose import (
    DEFAULT_MAX_GAP,
    DEFAULT_PERIOD,
    DEFAULT_REORDER_WINDOW,
    LEVELS,
    EpisodeTracker,
    predict_hypo,
)
from medtwin.alerts.heart_rate import HrBaseline, HrRule
from medtwin.alerts.hub import EventHub
from medtwin.alerts.repository import SEVERITY_RANK, SYSTEM_ACTOR, Alert, AlertCandidate, AlertRepository
from medtwin.security import audit
from medtwin.store.database import Store
from medtwin.store.live_tables import twin_live_state
from medtwin.vocab import GLUCOSE, HEART_RATE, GlucoseForecast, Sample

log = logging.getLogger("medtwin.alerts")

STATE_KIND: Final = "alert-state"
HR_KIND: Final = "hr-baseline"
SCALE_KIND: Final = "news2-scale"
#: NEWS2 clinical risk -> alert severity (a "low" NEWS2 raises no alert).
NEWS2_SEVERITY: Final = {"low-medium": "medium", "medium": "high", "high": "critical"}
PREDICTED_HYPO: Final = "predicted-hypo"
NEWS2: Final = "news2"
HR_DEVIATION: Final = "hr-deviation"
RULES: Final = (PREDICTED_HYPO, *(lv.rule for lv in LEVELS), NEWS2, HR_DEVIATION)


@dataclass(frozen=True)
class AlertConfig:
    predicted_horizon_min: float = 30.0
    predicted_clear_margin_mg_dl: float = 10.0
    news2_window: timedelta = news2_rule.DEFAULT_WINDOW
    hr: HrRule = field(default_factory=HrRule)
    glucose_period: timedelta = DEFAULT_PERIOD
    glucose_max_gap: timedelta = DEFAULT_MAX_GAP
    glucose_reorder_window: timedelta = DEFAULT_REORDER_WINDOW
    persist_interval_s: float = 5.0  # save a patient's changed state at most this often
    touch_interval_s: float = 2.0  # write a continuing condition's update at most this often per alert
    update_event_interval_s: float = 30.0  # publish a plain "updated" event at most this often per alert
    max_batch: int = 5_000  # samples per worker pass (bounds a pass's time, hence alert latency)
    max_saves_per_pass: int = 100  # patient states saved per pass (spreads simultaneous bucket closes)


@dataclass
class PatientState:
    patient_id: str
    episodes: EpisodeTracker
    hr: HrBaseline
    vitals: dict[str, tuple[datetime, float]] = field(default_factory=dict)
    spo2_scale: int = 1
    active: dict[str, str] = field(default_factory=dict)  # rule -> dedupe key of the condition held
    news2: dict[str, Any] | None = None  # the latest NEWS2 (news2.as_dict + at + times)
    data_time: datetime | None = None
    dirty: bool = False
    urgent: bool = False  # save at the end of this pass
    saved_at: float = 0.0
    news2_scores: dict[str, int] | None = None  # sub-scores of the last full NEWS2 (not saved)
    news2_expires: datetime | None = None  # when a parameter of that set leaves the window

    def payload(self) -> dict[str, Any]:
        return {"episodes": self.episodes.to_json(),
                "vitals": {k: [t.isoformat(), v] for k, (t, v) in self.vitals.items()},
                "active": self.active, "news2": self.news2}


@dataclass(frozen=True)
class Verdict:
    rule: str
    holds: bool
    candidate: AlertCandidate | None = None
    occurrences: int = 1


@dataclass
class EngineStats:
    batches: int = 0
    samples: int = 0
    forecasts: int = 0
    opened: int = 0
    updated: int = 0
    resolved: int = 0
    events: int = 0
    errors: int = 0
    last_batch_seconds: float = 0.0
    max_batch_seconds: float = 0.0
    batch_seconds: list[float] = field(default_factory=list)  # the last 1000 passes


@dataclass
class _Touch:
    """A continuing condition's updates, coalesced until written."""

    state: PatientState
    candidate: AlertCandidate
    occurrences: int
    escalates: bool


_STOP: Final = object()
_SYNC: Final = ("sync",)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class AlertEngine:
    """Rules + alert lifecycle + events for every streaming patient (see the module docstring)."""

    def __init__(self, store: Store, *, clock: Callable[[], datetime], hub: EventHub | None = None,
                 config: AlertConfig | None = None, audit_transitions: bool = True) -> None:
        self.store, self.clock, self.hub = store, clock, hub
        self.config = config or AlertConfig()
        self.audit_transitions = audit_transitions
        self.stats = EngineStats()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._states: dict[str, PatientState] = {}
        self._thread: threading.Thread | None = None
        self._lifecycle = threading.Lock()
        self._progress = threading.Condition()
        self._enqueued = 0
        self._done = 0
        self._last_update_event: dict[str, float] = {}
        self._saves: queue.Queue[list[dict[str, Any]] | None] = queue.Queue()  # rows for the saver thread
        self._saver: threading.Thread | None = None
        self._pending: dict[str, _Touch] = {}  # dedupe key -> coalesced update
        self._touched_at: dict[str, float] = {}  # dedupe key -> when last written (monotonic)
        self._severity: dict[str, str] = {}  # dedupe key -> severity last written

    # ------------------------------------------------------------------------------------ inputs

    def on_samples(self, samples: list[Sample]) -> None:
        """Pipeline listener: enqueue newly stored samples (returns at once)."""
        if samples:
            self._put(("samples", samples))

    def on_forecast(self, forecast: GlucoseForecast) -> None:
        """Forecast listener of the live glucose twin: enqueue."""
        self._put(("forecast", forecast))

    def set_spo2_scale(self, patient_id: str, scale: int, *, actor: str) -> None:
        """Record the clinician's SpO2 scale choice for a patient (1, or 2 for hypercapnic respiratory
        failure) and re-score NEWS2 with it."""
        save_spo2_scale(self.store, patient_id, scale, actor=actor, clock=self.clock)
        self._put(("scale", patient_id, scale))

    def _put(self, item: Any) -> None:
        with self._progress:
            self._enqueued += 1
        self._queue.put(item)
        if self._thread is None:
            self.start()

    # ------------------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        with self._lifecycle:
            if self._saver is None or not self._saver.is_alive():
                self._saver = threading.Thread(target=self._save_rows, name="medtwin-alerts-save", daemon=True)
                self._saver.start()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="medtwin-alerts", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Process what is queued, save every patient's state, end the worker."""
        with self._lifecycle:
            thread = self._thread
            if thread is None:
                return
            self._queue.put(_STOP)
            thread.join(timeout)
            self._thread = None
            saver = self._saver
            if saver is not None:
                self._saves.put(None)
                saver.join(timeout)
                self._saver = None

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything enqueued so far has been processed and written (coalesced updates and
        patient state included)."""
        self._put(_SYNC)
        deadline = time.monotonic() + timeout
        with self._progress:
            target = self._enqueued
            while self._done < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._progress.wait(remaining)
        return True

    def _run(self) -> None:
        idle = max(0.05, min(self.config.touch_interval_s, self.config.persist_interval_s))
        while True:
            try:
                item = self._queue.get(timeout=idle)
            except queue.Empty:  # nothing new: write what has come due
                try:
                    self._housekeeping()
                except Exception:
                    self.stats.errors += 1
                    log.exception("alert engine housekeeping failed; continuing")
                continue
            batch = [item]
            size = self._size(item)
            while size < self.config.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                batch.append(item)
                size += self._size(item)
            stop = any(i is _STOP for i in batch)
            sync = stop or any(i is _SYNC for i in batch)
            work = [i for i in batch if i is not _STOP and i is not _SYNC]
            try:
                self._process(work, sync=sync)
            except Exception:
                self.stats.errors += 1
                log.exception("alert engine pass failed (%d items); continuing", len(work))
            with self._progress:
                self._done += len([i for i in batch if i is not _STOP])
                self._progress.notify_all()
            if stop:
                return

    def _housekeeping(self) -> None:
        if self._pending:
            self._publish(self._apply([]))
        self._save()

    @staticmethod
    def _size(item: Any) -> int:
        return len(item[1]) if isinstance(item, tuple) and item[0] == "samples" else 1

    # ------------------------------------------------------------------------------------ one pass

    def _process(self, work: list[Any], sync: bool = False) -> None:
        started = time.perf_counter()
        samples: dict[str, list[Sample]] = {}
        forecasts: dict[str, list[GlucoseForecast]] = {}
        scales: dict[str, int] = {}
        for item in work:
            if item[0] == "samples":
                for s in item[1]:
                    samples.setdefault(s.patient_id, []).append(s)
                self.stats.samples += len(item[1])
            elif item[0] == "forecast":
                f: GlucoseForecast = item[1]
                forecasts.setdefault(f.patient_id, []).append(f)
                self.stats.forecasts += 1
            elif item[0] == "scale":
                scales[item[1]] = item[2]
        patients = [*samples, *(p for p in forecasts if p not in samples),
                    *(p for p in scales if p not in samples and p not in forecasts)]
        self._load([p for p in patients if p not in self._states])
        verdicts: list[tuple[PatientState, Verdict]] = []
        for pid in patients:
            state = self._states[pid]
            rescore = pid in scales
            if rescore:
                state.spo2_scale = scales[pid]
            mine = samples.get(pid, [])
            for verdict in self._evaluate(state, mine, forecasts.get(pid, []), rescore):
                verdicts.append((state, verdict))
        changes = self._apply(verdicts, sync=sync) if verdicts or self._pending else []
        self._publish(changes)
        self._save(force=sync)
        elapsed = time.perf_counter() - started
        self.stats.batches += 1
        self.stats.last_batch_seconds = elapsed
        self.stats.max_batch_seconds = max(self.stats.max_batch_seconds, elapsed)
        self.stats.batch_seconds.append(elapsed)
        if len(self.stats.batch_seconds) > 1000:
            del self.stats.batch_seconds[:500]

    def _evaluate(self, state: PatientState, samples: list[Sample], forecasts: list[GlucoseForecast],
                  rescore: bool) -> list[Verdict]:
        glucose = [s for s in samples if s.metric == GLUCOSE]
        vitals = [s for s in samples if s.metric in news2_rule.NEWS2_METRICS]
        heart = [s for s in samples if s.metric == HEART_RATE]
        out: list[Verdict] = []
        if samples:
            newest = max(s.time for s in samples)
            if state.data_time is None or newest > state.data_time:
                state.data_time = newest
        if glucose:
            out += self._glucose(state, glucose)
        for forecast in sorted(forecasts, key=lambda f: f.issued_at):  # each one: an escalation is not lost
            out += self._predicted(state, forecast)
        if vitals or rescore:
            out += self._news2(state, vitals, rescore)
        if heart:
            out += self._heart_rate(state, heart)
        return out

    # ------------------------------------------------------------------------------------ rules

    def _glucose(self, state: PatientState, samples: list[Sample]) -> list[Verdict]:
        pid = state.patient_id
        earlier = list(state.episodes.pending)  # before this pass commits any of them
        current = state.episodes.add([(s.time, s.value) for s in samples])
        state.dirty = True
        out: list[Verdict] = []
        for level in LEVELS:
            episode = current[level.rule]
            held = state.active.get(level.rule)
            if not episode.in_episode or episode.episode_start is None or episode.last_time is None:
                if held is not None:
                    out.append(Verdict(level.rule, False))
                continue
            start = episode.episode_start
            key = f"{pid}:{level.rule}:{start.isoformat()}"
            if held != key:  # onset: every reading of the episode so far (this pass's and the pending ones)
                seen = dict(earlier) | {s.time: s.value for s in samples}
                count = sum(1 for t, v in seen.items() if t >= start and level.beyond(v))
            else:
                count = sum(1 for s in samples if s.time >= start and level.beyond(s.value))
                if count == 0:
                    continue  # readings back in range during recovery: nothing to add
            minutes = (episode.last_time - start + self.config.glucose_period).total_seconds() / 60
            extreme = episode.extreme if episode.extreme is not None else episode.last_value or 0.0
            word = "lowest" if level.below else "highest"
            message = (f"{level.label[0].upper()}{level.label[1:]} for {minutes:.0f} min; {word} "
                       f"{extreme:.0f} mg/dL, latest {episode.last_value:.0f} mg/dL")
            details = {"threshold_mg_dl": level.threshold, "episode_start": start.isoformat(),
                       "latest_time": episode.last_time.isoformat(), "latest_mg_dl": episode.last_value,
                       "extreme_mg_dl": extreme, "duration_min": round(minutes, 1),
                       "definition": "consensus episode: >= 15 consecutive min beyond the threshold "
                                     "(Battelino 2019; Danne 2017)"}
            candidate = AlertCandidate(pid, level.rule, level.severity, key, episode.last_time, message,
                                       score=extreme, details=details, began_at=start)
            out.append(Verdict(level.rule, True, candidate, max(count, 1)))
        return out

    def _predicted(self, state: PatientState, forecast: GlucoseForecast) -> list[Verdict]:
        cfg = self.config
        result = predict_hypo(forecast, horizon_min=cfg.predicted_horizon_min,
                              clear_margin=cfg.predicted_clear_margin_mg_dl)
        if result.predicted and result.severity is not None and result.lead_time_min is not None:
            if result.lead_time_min == 0:
                message = (f"Glucose {result.glucose_now_mg_dl:.0f} mg/dL is below 70 mg/dL; forecast lowest "
                           f"{result.minimum_mg_dl:.0f} mg/dL within {cfg.predicted_horizon_min:.0f} min")
            else:
                message = (f"Hypoglycaemia predicted in {result.lead_time_min:.0f} min: forecast "
                           f"{result.predicted_mg_dl:.0f} mg/dL (now {result.glucose_now_mg_dl:.0f} mg/dL)")
            candidate = AlertCandidate(state.patient_id, PREDICTED_HYPO, result.severity,
                                       f"{state.patient_id}:{PREDICTED_HYPO}", forecast.issued_at, message,
                                       score=result.lead_time_min,
                                       details={**result.details(), "twin_version": forecast.twin_version})
            return [Verdict(PREDICTED_HYPO, True, candidate)]
        if result.cleared and PREDICTED_HYPO in state.active:
            return [Verdict(PREDICTED_HYPO, False)]
        return []

    def _news2(self, state: PatientState, samples: list[Sample], rescore: bool) -> list[Verdict]:
        updated: dict[str, float] = {}
        newest: datetime | None = None
        for s in samples:
            current = state.vitals.get(s.metric)
            if current is None or s.time >= current[0]:
                state.vitals[s.metric] = (s.time, s.value)
                updated[s.metric] = s.value
                newest = s.time if newest is None or s.time > newest else newest
        if not updated and not rescore:
            return []
        if not rescore and newest is not None and self._same_news2(state, updated, newest):
            return []  # every changed parameter is in the band it was: the same score, the same verdict
        chosen = news2_rule.observation_set(state.vitals, window=self.config.news2_window)
        if chosen is None:
            return []
        try:
            result = news2_rule.score(chosen.vitals, state.spo2_scale)
        except news2_rule.News2InputError:
            log.warning("NEWS2 not scored for a patient: %s", "value outside the chart's range")
            return []
        summary = {**news2_rule.as_dict(result), "at": chosen.at.isoformat(),
                   "times": {k: v.isoformat() for k, v in chosen.times.items()}}
        state.news2, state.dirty = summary, True
        state.news2_scores = {sub.parameter: sub.score for sub in result.sub_scores}
        state.news2_expires = min(chosen.times.values()) + self.config.news2_window if chosen.times else None
        if result.triggered:
            incomplete = f" (incomplete set: {', '.join(result.missing)} missing)" if result.missing else ""
            message = f"NEWS2 {result.aggregate}: {result.risk} clinical risk{incomplete}"
            candidate = AlertCandidate(state.patient_id, NEWS2, NEWS2_SEVERITY[result.risk],
                                       f"{state.patient_id}:{NEWS2}", chosen.at, message,
                                       score=float(result.aggregate), details=summary)
            return [Verdict(NEWS2, True, candidate)]
        if result.complete and NEWS2 in state.active:
            return [Verdict(NEWS2, False)]
        return []

    def _same_news2(self, state: PatientState, updated: dict[str, float], newest: datetime) -> bool:
        """True when NEWS2 cannot have changed: no parameter left the window, and each updated one is a
        parameter of the last set whose value falls in the band it scored (SpO2 on Scale 1 only; any
        change of oxygen or of Scale 2 saturation is scored in full)."""
        scores, expires = state.news2_scores, state.news2_expires
        if scores is None or expires is None or newest >= expires:
            return False
        chart = news2_rule.chart()
        for metric, value in updated.items():
            parameter = news2_rule.PARAMETER_OF[metric]
            if parameter not in scores or parameter == "supplemental_oxygen":
                return False
            if parameter == "spo2":
                if state.spo2_scale != 1:
                    return False
                key = "spo2_scale1"
            else:
                key = parameter
            if chart.parameters[key].band(value).score != scores[parameter]:
                return False
        return True

    def _heart_rate(self, state: PatientState, samples: list[Sample]) -> list[Verdict]:
        for s in samples:
            state.hr.add(s.time, s.value)
        state.dirty = True
        result = state.hr.evaluate()
        if result is None:
            return []
        if result.alert and result.severity is not None:
            message = (f"Heart rate {result.current:.0f}/min, {result.delta:+.0f}/min from the patient's "
                       f"baseline {result.baseline_median:.0f}/min (z {result.z:+.1f})")
            candidate = AlertCandidate(state.patient_id, HR_DEVIATION, result.severity,
                                       f"{state.patient_id}:{HR_DEVIATION}", result.at, message,
                                       score=round(result.z, 2), details=result.details())
            return [Verdict(HR_DEVIATION, True, candidate, len(samples))]
        if result.clear and HR_DEVIATION in state.active:
            return [Verdict(HR_DEVIATION, False)]
        return []

    # ------------------------------------------------------------------------------------ alerts

    def _apply(self, verdicts: list[tuple[PatientState, Verdict]], sync: bool = False) -> list[tuple[str, Alert]]:
        """Verdicts -> alert changes, in one transaction. A continuing condition is coalesced (occurrences
        summed, the latest candidate kept) and written at most every ``touch_interval_s`` per alert, at
        once when it escalates, before the alert is cleared or replaced, and on ``sync``."""
        changes: list[tuple[str, Alert]] = []
        now = time.monotonic()
        with self.store.begin() as connection:
            repo = AlertRepository(connection, self.store.codec, self.clock)
            for state, verdict in verdicts:
                held = state.active.get(verdict.rule)
                if verdict.holds and verdict.candidate is not None:
                    key = verdict.candidate.dedupe_key
                    if held == key:
                        self._coalesce(key, state, verdict)
                        continue
                    if held is not None:
                        self._write_touch(repo, held, changes, now)
                        self._clear(repo, held, changes)
                    self._pending.pop(key, None)
                    alert, how = repo.open(verdict.candidate, verdict.occurrences)
                    changes.append((how, alert))
                    self._severity[key], self._touched_at[key] = alert.severity, now
                    state.active[verdict.rule] = key
                    state.dirty = state.urgent = True
                elif held is not None:
                    self._write_touch(repo, held, changes, now)
                    self._clear(repo, held, changes)
                    self._severity.pop(held, None)
                    self._touched_at.pop(held, None)
                    del state.active[verdict.rule]
                    state.dirty = state.urgent = True
            interval = self.config.touch_interval_s
            for key, touch in list(self._pending.items()):
                if sync or touch.escalates or now - self._touched_at.get(key, 0.0) >= interval:
                    self._write_touch(repo, key, changes, now)
            if self.audit_transitions:
                for how, alert in changes:
                    if how == "opened" or (how == "resolved" and alert.resolved_by == SYSTEM_ACTOR):
                        self._audit(connection, how, alert)
        for how, _alert in changes:
            if how == "opened":
                self.stats.opened += 1
            elif how == "resolved":
                self.stats.resolved += 1
            else:
                self.stats.updated += 1
        return changes

    def _coalesce(self, key: str, state: PatientState, verdict: Verdict) -> None:
        assert verdict.candidate is not None
        written = SEVERITY_RANK.get(self._severity.get(key, ""), 0)
        escalates = SEVERITY_RANK[verdict.candidate.severity] > written
        pending = self._pending.get(key)
        if pending is None:
            self._pending[key] = _Touch(state, verdict.candidate, verdict.occurrences, escalates)
        else:
            pending.candidate = verdict.candidate
            pending.occurrences += verdict.occurrences
            pending.escalates = pending.escalates or escalates

    def _write_touch(self, repo: AlertRepository, key: str, changes: list[tuple[str, Alert]], now: float) -> None:
        pending = self._pending.pop(key, None)
        if pending is None:
            return
        touched = repo.touch(pending.candidate, pending.occurrences)
        self._touched_at[key] = now
        if touched is not None:
            alert, how = touched
            self._severity[key] = alert.severity
            changes.append((how, alert))

    @staticmethod
    def _clear(repo: AlertRepository, key: str, changes: list[tuple[str, Alert]]) -> None:
        cleared = repo.clear(key)
        if cleared is not None:
            changes.append(("resolved", cleared))

    def _audit(self, connection: Connection, how: str, alert: Alert) -> None:
        audit.append(connection, audit.AuditEntry(
            actor=SYSTEM_ACTOR, role=SYSTEM_ACTOR, action="write", resource_type="Flag", resource_id=alert.id,
            patient_id=alert.patient_id, outcome="success", status=None, client=None,
            detail={"transition": how, "rule": alert.rule, "severity": alert.severity}), self.clock)

    def _publish(self, changes: list[tuple[str, Alert]]) -> None:
        if self.hub is None:
            return
        now = time.monotonic()
        interval = self.config.update_event_interval_s
        for how, alert in changes:
            if how == "updated":
                last = self._last_update_event.get(alert.id)
                if last is not None and now - last < interval:
                    continue
            self._last_update_event[alert.id] = now
            if how == "resolved":
                self._last_update_event.pop(alert.id, None)
            publish_alert(self.hub, how, alert)
            self.stats.events += 1
        if len(self._last_update_event) > 100_000:
            self._last_update_event.clear()

    # ------------------------------------------------------------------------------------ state

    def _new_state(self, patient_id: str) -> PatientState:
        cfg = self.config
        return PatientState(patient_id, EpisodeTracker(period=cfg.glucose_period, max_gap=cfg.glucose_max_gap,
                                                       reorder_window=cfg.glucose_reorder_window),
                            HrBaseline(rule=cfg.hr))

    def _load(self, patient_ids: list[str]) -> None:
        if not patient_ids:
            return
        for pid in patient_ids:
            self._states[pid] = self._new_state(pid)
        cfg = self.config
        codec = self.store.codec
        with self.store.connect() as connection:
            for start in range(0, len(patient_ids), 500):
                chunk = patient_ids[start:start + 500]
                rows = connection.execute(select(twin_live_state.c.patient_id, twin_live_state.c.kind,
                                                 twin_live_state.c.payload).where(
                    twin_live_state.c.patient_id.in_(chunk),
                    twin_live_state.c.kind.in_((STATE_KIND, HR_KIND, SCALE_KIND)))).all()
                for pid, kind, blob in rows:
                    state = self._states[pid]
                    try:
                        payload = orjson.loads(codec.open(blob))
                        if kind == STATE_KIND:
                            state.episodes = EpisodeTracker.from_json(
                                payload.get("episodes", {}), period=cfg.glucose_period,
                                max_gap=cfg.glucose_max_gap, reorder_window=cfg.glucose_reorder_window)
                            state.vitals = {k: (datetime.fromisoformat(t), float(v))
                                            for k, (t, v) in payload.get("vitals", {}).items()}
                            state.active = dict(payload.get("active", {}))
                            state.news2 = payload.get("news2")
                        elif kind == HR_KIND:
                            state.hr = HrBaseline.from_json(payload, cfg.hr)
                        else:
                            state.spo2_scale = int(payload.get("spo2_scale", 1))
                    except Exception:
                        log.exception("unreadable %s state for a patient; starting it afresh", kind)
        now = time.monotonic()
        interval = self.config.persist_interval_s
        for i, pid in enumerate(patient_ids):  # staggered: patients loaded together do not all come due at once
            self._states[pid].saved_at = now - interval * ((i * 0.618034) % 1.0)

    def _save(self, force: bool = False) -> None:
        """Save changed patient state: urgent ones (a held condition changed) and those not saved for
        ``persist_interval_s``, at most ``max_saves_per_pass`` per call unless ``force``."""
        now_mono = time.monotonic()
        interval = self.config.persist_interval_s
        due = [s for s in self._states.values()
               if s.dirty and (force or s.urgent or now_mono - s.saved_at >= interval)]
        if not due:
            return
        if not force and len(due) > self.config.max_saves_per_pass:
            due.sort(key=lambda s: (not s.urgent, s.saved_at))
            due = due[:self.config.max_saves_per_pass]
        now = _utc(self.clock())
        seal = self.store.codec.seal
        rows: list[dict[str, Any]] = []
        for state in due:
            rows.append({"patient_id": state.patient_id, "kind": STATE_KIND, "twin_version": None, "updated_at": now,
                         "data_time": state.data_time, "payload": seal(orjson.dumps(state.payload()))})
            if state.hr.changed or force:
                rows.append({"patient_id": state.patient_id, "kind": HR_KIND, "twin_version": None,
                             "updated_at": now, "data_time": state.data_time,
                             "payload": seal(orjson.dumps(state.hr.to_json()))})
        for state in due:
            state.dirty = state.urgent = False
            state.hr.changed = False
            state.saved_at = now_mono
        self._saves.put(rows)  # written by the saver thread: a pass never waits for the database here
        if force:
            self._saves.join()

    def _save_rows(self) -> None:
        while True:
            rows = self._saves.get()
            try:
                if rows is None:
                    return
                with self.store.begin() as connection:
                    for start in range(0, len(rows), 500):
                        self._upsert(connection, rows[start:start + 500])
            except Exception:
                self.stats.errors += 1
                log.exception("saving %d alert-state rows failed", len(rows or []))
            finally:
                self._saves.task_done()

    @staticmethod
    def _upsert(connection: Connection, rows: list[dict[str, Any]]) -> None:
        dialect = connection.dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = insert(twin_live_state)
        stmt = stmt.on_conflict_do_update(
            index_elements=[twin_live_state.c.patient_id, twin_live_state.c.kind],
            set_={"updated_at": stmt.excluded.updated_at, "data_time": stmt.excluded.data_time,
                  "payload": stmt.excluded.payload})
        connection.execute(stmt, rows)

    # ------------------------------------------------------------------------------------ reading

    def latest_news2(self, patient_id: str) -> dict[str, Any] | None:
        """The engine's latest NEWS2 for a patient, if it has scored one since it (re)started."""
        state = self._states.get(patient_id)
        return None if state is None else state.news2

    def held(self, patient_id: str) -> dict[str, str]:
        state = self._states.get(patient_id)
        return {} if state is None else dict(state.active)


def save_spo2_scale(store: Store, patient_id: str, scale: int, *, actor: str, clock: Callable[[], datetime]) -> None:
    """Store a patient's SpO2 scale choice (``twin_live_state`` kind ``news2-scale``)."""
    if scale not in (1, 2):
        raise news2_rule.News2InputError("spo2_scale", f"must be 1 or 2, got {scale!r}")
    now = _utc(clock())
    payload = {"spo2_scale": scale, "set_by": actor, "set_at": now.isoformat()}
    with store.begin() as connection:
        AlertEngine._upsert(connection, [{"patient_id": patient_id, "kind": SCALE_KIND, "twin_version": None,
                                          "updated_at": now, "data_time": None,
                                          "payload": store.codec.seal(orjson.dumps(payload))}])


def publish_alert(hub: EventHub, action: str, alert: Alert) -> None:
    """An ``alert`` event: ``{"action": opened|updated|escalated|acknowledged|resolved, "alert": {...}}``."""
    hub.publish("alert", alert.patient_id, {"action": action, "alert": alert.to_json()})

