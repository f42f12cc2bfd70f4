"""Maintenance alerts for hospital equipment (a plug-in rule, entry point ``equipment-maintenance``).

Reads the degradation signal of each asset (subject ``equipment:<asset>``, from the equipment twin:
:mod:`medtwin.hospital.equipment_live`) and tracks it with the same local-linear-trend filter the twin uses
(:func:`medtwin.hospital.equipment.track_degradation`): an alert opens when the signal is predicted to reach
its threshold within the plan horizon (medium) or within 48 h (high), and clears when the prediction moves
beyond the plan horizon (after service the signal falls back). Thresholds are the equipment file's (the
demo's are hand-set engineering values, not a manufacturer's). Fewer than three samples: no verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import numpy as np

from medtwin.alerts.repository import AlertCandidate
from medtwin.alerts.rule import AlertKind, RuleInfo, RuleInput, Verdict
from medtwin.hospital.equipment import track_degradation
from medtwin.hospital.equipment_live import KEEP, MIN_SAMPLES, PLAN_H, SUBJECT, URGENT_H, Asset, load_assets

NAME: Final = "equipment-maintenance"


@dataclass
class SignalState:
    times: list[float] = field(default_factory=list)  # POSIX seconds
    values: list[float] = field(default_factory=list)
    last: dict[str, Any] | None = None  # health and remaining life at the last evaluation


@dataclass
class EquipmentMaintenanceRule:
    assets: dict[str, Asset] = field(default_factory=load_assets)

    def __post_init__(self) -> None:
        signals = tuple(sorted({a.kind.signal for a in self.assets.values()}))
        self.info = RuleInfo(
            name=NAME, label="Equipment maintenance",
            description="A device's degradation signal is predicted to reach its service threshold soon "
                        f"(within {PLAN_H / 24:g} days: medium; within {URGENT_H:g} h: high).",
            alerts=(AlertKind(NAME, "Equipment maintenance due", "Predicted time to the service threshold of a "
                              "scanner, ventilator or infusion pump from its telemetry trend.", ("medium", "high")),),
            metrics=signals, source="the equipment file's thresholds (demo: hand-set, not a manufacturer's limit)")

    def new_state(self) -> SignalState:
        return SignalState()

    def state_to_json(self, state: SignalState) -> dict[str, Any]:
        return {"times": state.times, "values": state.values}

    def state_from_json(self, raw: dict[str, Any]) -> SignalState:
        return SignalState(list(raw.get("times", [])), list(raw.get("values", [])))

    def summary(self, state: SignalState) -> dict[str, Any] | None:
        return state.last

    def evaluate(self, data: RuleInput, state: SignalState) -> list[Verdict]:
        asset = self.assets.get(data.patient_id.removeprefix(SUBJECT)) if data.patient_id.startswith(SUBJECT) else None
        samples = [s for s in data.samples if asset is not None and s.metric == asset.kind.signal]
        if asset is None or not samples:
            return []
        for s in samples:
            state.times.append(s.time.timestamp())
            state.values.append(s.value)
        order = np.argsort(state.times, kind="stable")[-KEEP:]
        t = np.asarray(state.times)[order]
        keep = np.concatenate([[True], np.diff(t) > 0])
        state.times, state.values = t[keep].tolist(), np.asarray(state.values)[order][keep].tolist()
        if len(state.times) < MIN_SAMPLES:
            return []
        hours = (np.asarray(state.times) - state.times[0]) / 3600
        result = track_degradation(hours, np.asarray(state.values), asset.kind.threshold, asset.kind.noise_sd)
        state.last = {"health": round(result.health, 3), "rul_h": None if np.isinf(result.rul_h) else
                      round(result.rul_h, 1)}
        if result.rul_h > PLAN_H:
            return [Verdict(NAME, False)] if NAME in data.held else []
        severity = "high" if result.rul_h <= URGENT_H else "medium"
        at = datetime.fromtimestamp(state.times[-1], samples[-1].time.tzinfo)
        message = (f"{asset.kind.name.replace('_', ' ')} {asset.id}: {asset.kind.signal} {result.level:.3g} "
                   f"{asset.kind.signal_unit} of {asset.kind.threshold:g}, threshold in about {result.rul_h:.0f} h")
        candidate = AlertCandidate(data.patient_id, NAME, severity, f"{data.patient_id}:{NAME}", at, message,
                                   score=round(result.rul_h, 1),
                                   details={"health": round(result.health, 3), "rul_h": round(result.rul_h, 1),
                                            "unit": asset.unit, "beds": asset.beds})
        return [Verdict(NAME, True, candidate, len(samples))]
