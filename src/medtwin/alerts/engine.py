"""The alert engine: alert rules (plug-ins) over the live streams, alerts in the store, events on the hub.

Wiring::

    engine = AlertEngine(store, clock=utcnow, hub=hub)  # rules: every registered one (alerts.registry)
    pipeline.add_listener(engine.on_samples)          # newly stored samples, after commit
    live_glucose.add_forecast_listener(engine.on_forecast)
    ...
    engine.stop()                                      # drains the queue, saves every patient's state

The engine names no rule. Each rule (:class:`medtwin.alerts.rule.AlertRule`) declares what it consumes
(sample metrics, forecasts, patient settings) and the alert kinds it raises; the engine routes the data,
keeps each patient's rule states and turns verdicts into alerts.

``on_samples`` / ``on_forecast`` / ``set_setting`` only enqueue (microseconds, safe on the ingest thread) on a
:class:`medtwin.worker.Worker`, which hands everything queued at once (up to ``max_batch`` samples) to one
pass. A pass groups it by patient and

1. runs each rule that has new data on that patient's state (``RuleInput``: the new samples of its metrics,
   new forecasts, changed settings, the conditions held);
2. turns the verdicts into alert changes in **one transaction**: a condition that *begins* opens an alert
   (or updates the unresolved one with the same key), one that *continues* updates it (``touch``: never a
   new alert, so a clinician's "resolved" sticks until the condition clears), one that *clears* resolves a
   low or medium alert as ``system`` but only marks an open high or critical one ``condition_cleared_at``
   (``cleared``: it waits for a person, :meth:`AlertRepository.clear`) as of the verdict's ``cleared_at``
   (the data time it ended) or else the pass's newest reading. A patient's verdicts are applied in order
   (a continuing condition's updates are coalesced, but an escalation is written at once, so a later, lower
   verdict of the pass never replaces it);
   one that holds with ``cleared_at`` began and ended within the pass: its alert opens and clears at once,
   leaving the condition held, if another, alone. Openings, system resolutions and clearings are audited
   (actor ``system``);
3. publishes ``alert`` events (opened, escalated, recurred, cleared, resolved at once; plain updates at most every
   ``update_event_interval_s`` per alert, so a long episode is not a stream of events);
4. saves changed state to ``twin_live_state``: each rule's state under kind ``alert-rule:<name>`` (when the
   rule says it is due, :meth:`AlertRule.save_due` if it has one) and the held conditions under
   ``alert-state``, at most every ``persist_interval_s`` per patient and at once when a held condition
   changed, by a second worker, after the events are out.

State is loaded lazily per patient, so a restarted engine resumes episodes, baselines and held conditions.
If the process dies between the alert commit and the state save, the restarted engine sees the condition as
new and ``open`` finds the unresolved alert: no duplicate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

import orjson
from sqlalchemy import Connection

from medtwin.alerts import registry
from medtwin.alerts.hub import EventHub
from medtwin.alerts.repository import SEVERITY_RANK, SYSTEM_ACTOR, Alert, AlertCandidate, AlertRepository
from medtwin.alerts.rule import AlertRule, RuleInput, Verdict
from medtwin.alerts.settings import load_settings, save_setting, state_rows, upsert_state
from medtwin.clock import as_utc
from medtwin.counters import Counters
from medtwin.security import audit
from medtwin.store.database import Store
from medtwin.vocab import GlucoseForecast, Sample
from medtwin.worker import Worker

log = logging.getLogger("medtwin.alerts")

STATE_KIND: Final = "alert-state"
RULE_KIND_PREFIX: Final = "alert-rule:"
#: every alert kind of the registered rules (what ``Alert.rule`` may be), as of import
RULES: Final = tuple(kind.name for kind in registry.alert_kinds())

__all__ = ["RULES", "STATE_KIND", "AlertConfig", "AlertEngine", "EngineCount", "PatientState", "Verdict",
           "publish_alert"]


@dataclass(frozen=True)
class AlertConfig:
    persist_interval_s: float = 5.0  # save a patient's changed state at most this often
    touch_interval_s: float = 2.0  # write a continuing condition's update at most this often per alert
    update_event_interval_s: float = 30.0  # publish a plain "updated" event at most this often per alert
    max_batch: int = 5_000  # samples per worker pass (bounds a pass's time, hence alert latency)
    max_saves_per_pass: int = 100  # patient states saved per pass (spreads simultaneous bucket closes)


@dataclass
class PatientState:
    patient_id: str
    rules: dict[str, Any]  # rule name -> its state
    settings: dict[str, Any] = field(default_factory=dict)
    active: dict[str, str] = field(default_factory=dict)  # alert kind -> dedupe key of the condition held
    data_time: datetime | None = None
    touched: set[str] = field(default_factory=set)  # rules evaluated since the last save
    dirty: bool = False
    urgent: bool = False  # save at the end of this pass
    saved_at: float = 0.0


#: What the engine counts (``engine.stats``): passes (``batches``), samples and forecasts taken in, alert changes
#: (``cleared``: serious alerts left open for a person when their condition cleared), events published,
#: errors (of a pass or of a state save), and the last and the slowest pass in seconds.
EngineCount = Literal["batches", "samples", "forecasts", "opened", "updated", "resolved", "cleared", "events",
                      "errors", "last_batch_seconds", "max_batch_seconds"]


@dataclass
class _Touch:
    """A continuing condition's updates, coalesced until written."""

    state: PatientState
    candidate: AlertCandidate
    occurrences: int
    escalates: bool


@dataclass
class _Pass:
    """One pass's input, grouped by patient."""

    samples: dict[str, list[Sample]] = field(default_factory=dict)
    forecasts: dict[str, list[GlucoseForecast]] = field(default_factory=dict)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)

    def patients(self) -> list[str]:
        return list(dict.fromkeys([*self.samples, *self.forecasts, *self.settings]))


def _weight(item: tuple[Any, ...]) -> int:
    return len(item[1]) if item[0] == "samples" else 1


class AlertEngine:
    """Rules + alert lifecycle + events for every streaming patient (see the module docstring)."""

    def __init__(self, store: Store, *, clock: Callable[[], datetime], hub: EventHub | None = None,
                 config: AlertConfig | None = None, rules: Sequence[AlertRule] | None = None,
                 audit_transitions: bool = True) -> None:
        self.store, self.clock, self.hub = store, clock, hub
        self.config = config or AlertConfig()
        self.rules: tuple[AlertRule, ...] = tuple(registry.create_rules() if rules is None else rules)
        self.audit_transitions = audit_transitions
        self.stats: Counters[EngineCount] = Counters(EngineCount)
        self._by_metric: dict[str, list[AlertRule]] = {}
        for rule in self.rules:
            for metric in rule.info.metrics:
                self._by_metric.setdefault(metric, []).append(rule)
        self._forecast_rules = [r for r in self.rules if r.info.forecasts]
        self._setting_rules = {key: [r for r in self.rules if key in r.info.settings]
                               for r0 in self.rules for key in r0.info.settings}
        self._states: dict[str, PatientState] = {}
        self._last_update_event: dict[str, float] = {}
        self._pending: dict[str, _Touch] = {}  # dedupe key -> coalesced update
        self._touched_at: dict[str, float] = {}  # dedupe key -> when last written (monotonic)
        self._severity: dict[str, str] = {}  # dedupe key -> severity last written
        idle = max(0.05, min(self.config.touch_interval_s, self.config.persist_interval_s))
        self._worker: Worker[tuple[Any, ...]] = Worker(
            "medtwin-alerts", self._handle, max_batch=self.config.max_batch, weight=_weight,
            idle=self._housekeeping, idle_interval_s=idle, logger=log)
        self._saver: Worker[list[dict[str, Any]]] = Worker("medtwin-alerts-save", self._save_rows, logger=log)

    # ------------------------------------------------------------------------------------ inputs

    def on_samples(self, samples: list[Sample]) -> None:
        """Pipeline listener: enqueue newly stored samples (returns at once)."""
        if samples:
            self._worker.put(("samples", samples))

    def on_forecast(self, forecast: GlucoseForecast) -> None:
        """Forecast listener of the live glucose twin: enqueue."""
        self._worker.put(("forecast", forecast))

    def set_setting(self, patient_id: str, key: str, value: Any, *, actor: str) -> None:
        """Store a patient's setting for the rules that read it (e.g. ``spo2_scale``: 1, or 2 for hypercapnic
        respiratory failure) and re-evaluate them; :class:`~medtwin.alerts.settings.SettingError` if invalid."""
        save_setting(self.store, patient_id, key, value, actor=actor, clock=self.clock)
        self._worker.put(("setting", patient_id, key, value))

    # ------------------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._worker.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Process what is queued, save every patient's state, end the workers."""
        self._worker.stop(timeout)
        self._saver.stop(timeout)

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait until everything enqueued so far has been processed and written (coalesced updates and
        patient state included)."""
        return self._worker.flush(timeout)

    def _handle(self, work: list[tuple[Any, ...]], flushing: bool) -> None:
        try:
            self._process(work, sync=flushing)
        except Exception:
            self.stats.inc("errors")
            raise

    def _housekeeping(self) -> None:
        if self._pending:
            self._publish(self._apply([]))
        self._save()

    # ------------------------------------------------------------------------------------ one pass

    def _group(self, work: list[tuple[Any, ...]]) -> _Pass:
        grouped = _Pass()
        for item in work:
            if item[0] == "samples":
                for s in item[1]:
                    grouped.samples.setdefault(s.patient_id, []).append(s)
                self.stats.inc("samples", len(item[1]))
            elif item[0] == "forecast":
                f: GlucoseForecast = item[1]
                grouped.forecasts.setdefault(f.patient_id, []).append(f)
                self.stats.inc("forecasts")
            elif item[0] == "setting":
                grouped.settings.setdefault(item[1], {})[item[2]] = item[3]
        return grouped

    def _process(self, work: list[tuple[Any, ...]], sync: bool = False) -> None:
        started = time.perf_counter()
        grouped = self._group(work)
        patients = grouped.patients()
        self._load([p for p in patients if p not in self._states])
        verdicts: list[tuple[PatientState, Verdict]] = []
        for pid in patients:
            state = self._states[pid]
            changed = grouped.settings.get(pid, {})
            state.settings.update(changed)
            for verdict in self._evaluate(state, grouped.samples.get(pid, []), grouped.forecasts.get(pid, []),
                                          frozenset(changed)):
                verdicts.append((state, verdict))
        changes = self._apply(verdicts, sync=sync) if verdicts or self._pending else []
        self._publish(changes)
        self._save(force=sync)
        elapsed = time.perf_counter() - started
        self.stats.inc("batches")
        self.stats.set("last_batch_seconds", elapsed)
        self.stats.peak("max_batch_seconds", elapsed)

    def _evaluate(self, state: PatientState, samples: list[Sample], forecasts: list[GlucoseForecast],
                  changed: frozenset[str]) -> list[Verdict]:
        if samples:
            newest = max(s.time for s in samples)
            if state.data_time is None or newest > state.data_time:
                state.data_time = newest
        by_metric: dict[str, list[Sample]] = {}
        for s in samples:
            found = by_metric.get(s.metric)
            if found is None:
                by_metric[s.metric] = [s]
            else:
                found.append(s)
        routed: dict[str, tuple[AlertRule, list[Sample]]] = {}
        for metric, items in by_metric.items():
            for rule in self._by_metric.get(metric, ()):
                if rule.info.name in routed:
                    routed[rule.info.name][1].extend(items)
                else:
                    routed[rule.info.name] = (rule, list(items))
        if forecasts:
            for rule in self._forecast_rules:
                routed.setdefault(rule.info.name, (rule, []))
        for key in changed:
            for rule in self._setting_rules.get(key, ()):
                routed.setdefault(rule.info.name, (rule, []))
        out: list[Verdict] = []
        for name, (rule, mine) in routed.items():
            data = RuleInput(state.patient_id, mine, forecasts if rule.info.forecasts else (), state.settings,
                             changed & frozenset(rule.info.settings), state.active)
            out += rule.evaluate(data, state.rules[name])
            state.touched.add(name)
            state.dirty = True
        return out

    # ------------------------------------------------------------------------------------ alerts

    def _apply(self, verdicts: list[tuple[PatientState, Verdict]], sync: bool = False) -> list[tuple[str, Alert]]:
        """Verdicts -> alert changes, in one transaction. A continuing condition is coalesced (occurrences
        summed, the latest candidate kept) and written at most every ``touch_interval_s`` per alert, at
        once when it escalates (before a later verdict of the pass replaces the candidate: an escalation is
        never lost), before the alert is cleared or replaced, and on ``sync``."""
        changes: list[tuple[str, Alert]] = []
        now = time.monotonic()
        with self.store.begin() as connection:
            repo = AlertRepository(connection, self.store.codec, self.clock)
            for state, verdict in verdicts:
                self._verdict(repo, state, verdict, changes, now)
            interval = self.config.touch_interval_s
            for key, touch in list(self._pending.items()):
                if sync or touch.escalates or now - self._touched_at.get(key, 0.0) >= interval:
                    self._write_touch(repo, key, changes, now)
            if self.audit_transitions:
                for how, alert in changes:
                    if how in ("opened", "cleared") or (how == "resolved" and alert.resolved_by == SYSTEM_ACTOR):
                        self._audit(connection, how, alert)
        self._count(changes)
        return changes

    def _verdict(self, repo: AlertRepository, state: PatientState, verdict: Verdict,
                 changes: list[tuple[str, Alert]], now: float) -> None:
        """One verdict: a condition that holds opens (or, held, updates) its alert; one that clears closes the
        held one as of ``cleared_at``; one that holds with ``cleared_at`` began and ended within the pass: its
        alert is opened (or updated) and cleared at once, and another condition held meanwhile stays held."""
        held = state.active.get(verdict.rule)
        if not verdict.holds or verdict.candidate is None:
            if held is not None:
                self._write_touch(repo, held, changes, now)
                self._clear(repo, held, changes, verdict.cleared_at or state.data_time)
                self._release(state, verdict.rule, held)
            return
        key = verdict.candidate.dedupe_key
        if held == key:
            if self._coalesce(key, state, verdict):  # written at once: a later, lower verdict cannot undo it
                self._write_touch(repo, key, changes, now)
            if verdict.cleared_at is not None:
                self._write_touch(repo, key, changes, now)
                self._clear(repo, key, changes, verdict.cleared_at)
                self._release(state, verdict.rule, key)
            return
        self._pending.pop(key, None)
        if verdict.cleared_at is not None:
            alert, how = repo.open(verdict.candidate, verdict.occurrences)
            changes.append((how, alert))
            self._clear(repo, key, changes, verdict.cleared_at)
            return
        if held is not None:
            self._write_touch(repo, held, changes, now)
            self._clear(repo, held, changes, state.data_time)
        alert, how = repo.open(verdict.candidate, verdict.occurrences)
        changes.append((how, alert))
        self._severity[key], self._touched_at[key] = alert.severity, now
        state.active[verdict.rule] = key
        state.dirty = state.urgent = True

    def _release(self, state: PatientState, rule: str, key: str) -> None:
        self._severity.pop(key, None)
        self._touched_at.pop(key, None)
        del state.active[rule]
        state.dirty = state.urgent = True

    def _count(self, changes: list[tuple[str, Alert]]) -> None:
        for how, _alert in changes:
            if how == "opened":
                self.stats.inc("opened")
            elif how == "resolved":
                self.stats.inc("resolved")
            elif how == "cleared":
                self.stats.inc("cleared")
            else:
                self.stats.inc("updated")

    def _coalesce(self, key: str, state: PatientState, verdict: Verdict) -> bool:
        """Fold a continuing condition's verdict into its pending update; True when it escalates above the
        severity written (the caller writes it at once, so the repository's "severity only rises" and peak
        rules see every escalation in order, however many verdicts a pass holds)."""
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
        return escalates

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
    def _clear(repo: AlertRepository, key: str, changes: list[tuple[str, Alert]], at: datetime | None) -> None:
        cleared = repo.clear(key, at)
        if cleared is not None:
            changes.append((cleared[1], cleared[0]))

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
            self.stats.inc("events")
        if len(self._last_update_event) > 100_000:
            self._last_update_event.clear()

    # ------------------------------------------------------------------------------------ state

    def _new_state(self, patient_id: str) -> PatientState:
        return PatientState(patient_id, {rule.info.name: rule.new_state() for rule in self.rules})

    def _load(self, patient_ids: list[str]) -> None:
        if not patient_ids:
            return
        for pid in patient_ids:
            self._states[pid] = self._new_state(pid)
        kinds = {STATE_KIND, *(RULE_KIND_PREFIX + r.info.name for r in self.rules),
                 *(k for r in self.rules for k in r.info.legacy_kinds)}
        found: dict[str, dict[str, bytes]] = {}
        codec = self.store.codec
        with self.store.connect() as connection:
            for pid, settings in load_settings(connection, codec, patient_ids).items():
                self._states[pid].settings.update(settings)
            for pid, kind, blob in state_rows(connection, patient_ids, kinds):
                found.setdefault(pid, {})[kind] = blob
        for pid, blobs in found.items():
            self._restore(self._states[pid], blobs)
        now = time.monotonic()
        interval = self.config.persist_interval_s
        for i, pid in enumerate(patient_ids):  # staggered: patients loaded together do not all come due at once
            self._states[pid].saved_at = now - interval * ((i * 0.618034) % 1.0)

    def _open(self, blobs: dict[str, bytes], kind: str) -> Any:
        try:
            return orjson.loads(self.store.codec.open(blobs[kind]))
        except Exception:
            log.exception("unreadable %s state for a patient; starting it afresh", kind)
            return None

    def _restore(self, state: PatientState, blobs: dict[str, bytes]) -> None:
        """A patient's saved state: the held conditions, and each rule's state from its own row or, for a
        state saved by an earlier version, from the rule's ``legacy_state`` over its ``legacy_kinds``."""
        held = self._open(blobs, STATE_KIND) if STATE_KIND in blobs else None
        if isinstance(held, dict):
            state.active = {str(k): str(v) for k, v in dict(held.get("active", {})).items()}
            if held.get("data_time"):
                state.data_time = datetime.fromisoformat(held["data_time"])
        for rule in self.rules:
            name, kind = rule.info.name, RULE_KIND_PREFIX + rule.info.name
            legacy = getattr(rule, "legacy_state", None)
            try:
                if kind in blobs:
                    payload = self._open(blobs, kind)
                    if isinstance(payload, dict):
                        state.rules[name] = rule.state_from_json(payload)
                elif legacy is not None and any(k in blobs for k in rule.info.legacy_kinds):
                    old = {k: self._open(blobs, k) for k in rule.info.legacy_kinds if k in blobs}
                    restored = legacy({k: v for k, v in old.items() if isinstance(v, dict)})
                    if restored is not None:
                        state.rules[name] = restored
                        state.touched.add(name)  # saved in its own row from now on
                        state.dirty = True
            except Exception:
                log.exception("unreadable %s state for a patient; starting it afresh", name)

    def _rows(self, state: PatientState, now: datetime, force: bool) -> list[dict[str, Any]]:
        seal = self.store.codec.seal
        rows: list[dict[str, Any]] = []

        def row(kind: str, payload: dict[str, Any]) -> None:
            rows.append({"patient_id": state.patient_id, "kind": kind, "twin_version": None, "updated_at": now,
                         "data_time": state.data_time, "payload": seal(orjson.dumps(payload))})

        if state.urgent or force or not state.saved_at:
            row(STATE_KIND, {"active": state.active,
                             "data_time": None if state.data_time is None else state.data_time.isoformat()})
        for rule in self.rules:
            name = rule.info.name
            if name not in state.touched:
                continue
            due = getattr(rule, "save_due", None)
            if force or due is None or due(state.rules[name]):
                row(RULE_KIND_PREFIX + name, rule.state_to_json(state.rules[name]))
                state.touched.discard(name)
        return rows

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
        now = as_utc(self.clock())
        rows: list[dict[str, Any]] = []
        for state in due:
            rows += self._rows(state, now, force)
            state.dirty, state.urgent = bool(state.touched), False
            state.saved_at = now_mono
        if rows:
            self._saver.put(rows)  # written by the saver thread: a pass never waits for the database here
        if force:
            self._saver.flush(timeout=30.0)

    def _save_rows(self, batches: list[list[dict[str, Any]]], flushing: bool) -> None:
        rows = [r for batch in batches for r in batch]
        if not rows:
            return
        try:
            with self.store.begin() as connection:
                for start in range(0, len(rows), 500):
                    upsert_state(connection, rows[start:start + 500])
        except Exception:
            self.stats.inc("errors")
            log.exception("saving %d alert-state rows failed", len(rows))

    # ------------------------------------------------------------------------------------ reading

    def summary(self, patient_id: str, rule: str) -> dict[str, Any] | None:
        """What a rule last computed for a patient since the engine (re)started (e.g. the latest NEWS2)."""
        state = self._states.get(patient_id)
        found = next((r for r in self.rules if r.info.name == rule), None)
        if state is None or found is None:
            return None
        return found.summary(state.rules[rule])

    def held(self, patient_id: str) -> dict[str, str]:
        state = self._states.get(patient_id)
        return {} if state is None else dict(state.active)


def publish_alert(hub: EventHub, action: str, alert: Alert) -> None:
    """An ``alert`` event: ``{"action": opened|updated|escalated|recurred|cleared|acknowledged|resolved,
    "alert": {...}}`` (``cleared``: a serious alert's condition cleared; it stays open for a person)."""
    hub.publish("alert", alert.patient_id, {"action": action, "alert": alert.to_json()})

