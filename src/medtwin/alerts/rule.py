"""The alert-rule plug-in interface: what a rule declares and what the engine hands it.

A rule (:class:`AlertRule`) is an object with

* ``info``: :class:`RuleInfo`, its name and what it consumes (sample metrics, forecasts, patient settings),
  and the alert kinds it raises (:class:`AlertKind`: name, label, description, severities), which the
  dashboard shows through ``GET /api/v1/vocabulary``;
* ``new_state()``, ``state_to_json(state)``, ``state_from_json(raw)``: its per-patient state, saved by the
  engine in ``twin_live_state`` and restored after a restart;
* ``evaluate(data, state) -> [Verdict]``: fold new data (:class:`RuleInput`) into the state (mutating it)
  and say, per alert kind, whether a condition *holds* (with the alert candidate) or *clears*; no verdict is
  no change. An empty input gives no verdict;
* ``summary(state)``: what the rule last computed, for display (e.g. the latest NEWS2), or None;
* optionally ``save_due(state)`` (is the state worth a write now?) and ``legacy_state(payloads)`` (the state
  from rows an earlier version saved, ``info.legacy_kinds``).

The engine (:mod:`medtwin.alerts.engine`) knows no rule: it routes data by ``info``, keeps the states and
turns verdicts into alert changes. Rules are found by :mod:`medtwin.alerts.registry`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from medtwin.alerts.repository import SEVERITIES, AlertCandidate
from medtwin.vocab import GlucoseForecast, Sample

__all__ = ["AlertKind", "AlertRule", "RuleInfo", "RuleInput", "Verdict"]


@dataclass(frozen=True)
class _Shown:
    """What the dashboard shows of a rule and of each alert kind it raises."""

    name: str
    label: str  # short, for a badge or a list
    description: str  # one or two sentences, with the source of the threshold

    def _shown_json(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "description": self.description}


@dataclass(frozen=True)
class AlertKind(_Shown):
    """An alert a rule raises (``Alert.rule`` is its ``name``)."""

    severities: tuple[str, ...]  # the severities it may have, least severe first

    def as_json(self) -> dict[str, Any]:
        return {**self._shown_json(), "severities": list(self.severities)}


@dataclass(frozen=True)
class RuleInfo(_Shown):
    """A rule's declaration: its name (the kind its state is saved under), what it shows, raises and reads."""

    alerts: tuple[AlertKind, ...]
    metrics: tuple[str, ...] = ()  # sample metrics it reads (vocabulary names)
    forecasts: tuple[str, ...] = ()  # forecasts it reads ("glucose": :class:`~medtwin.vocab.GlucoseForecast`)
    settings: tuple[str, ...] = ()  # per-patient settings it reads (e.g. "spo2_scale")
    source: str = ""  # where its thresholds come from
    #: ``twin_live_state`` kinds an earlier version saved this rule's state under; with them the rule has
    #: ``legacy_state({kind: payload}) -> state | None`` and the engine converts on first load
    legacy_kinds: tuple[str, ...] = ()

    def check(self) -> None:
        """Raise ValueError naming the first incomplete field."""
        if not 0 < len(self.name) <= 21 or not self.name.replace("-", "").isalnum():
            raise ValueError(f"rule {self.name!r}: name must be 1-21 letters, digits or '-' (a state kind)")
        for name in ("name", "label", "description"):
            if not getattr(self, name).strip():
                raise ValueError(f"rule {self.name!r}: {name} is empty")
        if not self.alerts:
            raise ValueError(f"rule {self.name!r}: alerts is empty")
        if not (self.metrics or self.forecasts or self.settings):
            raise ValueError(f"rule {self.name!r}: consumes nothing (metrics, forecasts, settings)")
        for kind in self.alerts:
            if not kind.name or not kind.label.strip() or not kind.description.strip():
                raise ValueError(f"rule {self.name!r}: alert {kind.name!r} lacks a name, label or description")
            if not kind.severities or any(s not in SEVERITIES for s in kind.severities):
                raise ValueError(f"rule {self.name!r}: alert {kind.name!r} severities must be among {SEVERITIES}")

    def as_json(self) -> dict[str, Any]:
        return {**self._shown_json(), "alerts": [k.as_json() for k in self.alerts], "metrics": list(self.metrics),
                "forecasts": list(self.forecasts), "settings": list(self.settings), "source": self.source}


@dataclass(frozen=True)
class RuleInput:
    """New data of one patient for one rule, in one engine pass."""

    patient_id: str
    samples: Sequence[Sample] = ()  # new samples of the rule's metrics: by metric, each in arrival order
    forecasts: Sequence[GlucoseForecast] = ()  # new forecasts, in issue order
    settings: Mapping[str, Any] = field(default_factory=dict)  # the patient's current settings
    changed_settings: frozenset[str] = frozenset()  # settings changed since the last pass
    held: Mapping[str, str] = field(default_factory=dict)  # alert name -> dedupe key of the condition held

    @property
    def empty(self) -> bool:
        return not self.samples and not self.forecasts and not self.changed_settings


@dataclass(frozen=True)
class Verdict:
    """A condition holds (with its candidate) or clears (as of ``cleared_at``, default the pass's newest
    reading). One that holds with ``cleared_at`` held and ended within the pass: the engine opens (or updates)
    its alert and clears it at once, and leaves another held condition of the kind held. The engine applies
    one pass's verdicts in order."""

    rule: str  # the alert kind's name
    holds: bool
    candidate: AlertCandidate | None = None
    occurrences: int = 1
    cleared_at: datetime | None = None  # data time the condition ended


@runtime_checkable
class AlertRule(Protocol):
    info: RuleInfo

    def new_state(self) -> Any: ...

    def evaluate(self, data: RuleInput, state: Any) -> list[Verdict]: ...

    def state_to_json(self, state: Any) -> dict[str, Any]: ...

    def state_from_json(self, raw: dict[str, Any]) -> Any: ...

    def summary(self, state: Any) -> dict[str, Any] | None: ...
