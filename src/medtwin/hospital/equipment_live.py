"""The equipment twin, live: telemetry per asset (scanners, ventilators, infusion pumps), health and remaining
useful life from :func:`~medtwin.hospital.equipment.track_degradation`, and the downtime it predicts as
capacity outages of the hospital model.

Assets and kinds are data (``data/demo_equipment.toml``: one degradation signal per kind with its UCUM unit,
threshold, noise and repair time; the unit and beds a device takes down with it). Samples arrive as the
ingest's own sample payloads (HTTP, and MQTT through the ingest's subscriber: :mod:`.equipment_mqtt`); each
is converted to the kind's unit (UCUM), kept once per (asset, time) and handed to listeners as a
:class:`~medtwin.vocab.Sample` whose subject is ``equipment:<asset>`` (the alert engine's plug-in rule
``equipment-maintenance`` reads them). Status: ``unknown`` with fewer than :data:`MIN_SAMPLES` samples (not
callable), ``urgent`` when the signal is predicted to reach its threshold within :data:`URGENT_H`, ``plan``
within :data:`PLAN_H`, else ``ok``. Kept in memory (bounded per asset), not in the patient samples table;
with a :class:`SampleJournal` (the app's: ``medtwin.store.hospital_journal``) each accepted sample is
journalled before it is applied (an MQTT batch is acknowledged after that), and :meth:`EquipmentTwin.restore`
rebuilds the twin at startup through the same :meth:`EquipmentTwin._store` (listeners are not called
again: the alerts those samples raised are already stored).
"""

from __future__ import annotations

import math
import threading
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from medtwin.hospital.equipment import EquipmentInputError, track_degradation
from medtwin.record import ucum
from medtwin.vocab import Sample

MIN_SAMPLES = 3
URGENT_H = 48.0
PLAN_H = 14 * 24.0
KEEP = 5000  #: samples kept per asset (the filter needs the trend, not the whole life)
SUBJECT = "equipment:"


@dataclass(frozen=True)
class Kind:
    name: str
    signal: str
    signal_unit: str
    threshold: float
    noise_sd: float
    repair_h: float


@dataclass(frozen=True)
class Asset:
    id: str
    kind: Kind
    unit: str
    beds: int


def load_assets(path: Path | None = None) -> dict[str, Asset]:
    """Assets by id from an equipment file (default: the demo's); errors name the entry."""
    text = (path.read_text() if path else
            resources.files("medtwin.hospital").joinpath("data", "demo_equipment.toml").read_text())
    data = tomllib.loads(text)
    kinds = {}
    for name, row in data.get("kinds", {}).items():
        try:
            kinds[name] = Kind(name, str(row["signal"]), str(row["signal_unit"]), float(row["threshold"]),
                               float(row["noise_sd"]), float(row["repair_h"]))
        except KeyError as missing:
            raise EquipmentInputError(f"kinds.{name}.{missing.args[0]}", "required") from None
        if not ucum.is_valid(kinds[name].signal_unit):
            raise EquipmentInputError(f"kinds.{name}.signal_unit", f"not a UCUM unit: {kinds[name].signal_unit!r}")
    assets = {}
    for i, row in enumerate(data.get("assets", [])):
        if row.get("kind") not in kinds:
            raise EquipmentInputError(f"assets[{i}].kind", f"unknown kind {row.get('kind')!r}")
        assets[str(row["id"])] = Asset(str(row["id"]), kinds[row["kind"]], str(row.get("unit", "")),
                                       int(row.get("beds", 0)))
    return assets


@dataclass
class _Series:
    times: list[datetime] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


Listener = Callable[[list[Sample]], None]
Converted = tuple[datetime, float, float, str]  #: (time, value in the signal unit, original value, its unit)


class SampleJournal(Protocol):
    """Where accepted samples are kept (``medtwin.store.hospital_journal.HospitalJournal``)."""

    def record_samples(self, asset: str, rows: list[Converted], source: str) -> None: ...

    def samples(self, asset: str, keep: int) -> list[Converted]: ...

    def record_refusal(self, topic: str, field: str, reason: str, payload: bytes) -> None: ...

    def refusals(self) -> list[dict[str, str]]: ...


class EquipmentTwin:
    """Telemetry and status of every asset (thread-safe: HTTP and MQTT threads feed it)."""

    def __init__(self, assets: dict[str, Asset], clock: Callable[[], datetime],
                 journal: SampleJournal | None = None) -> None:
        self.assets, self.clock, self.journal = assets, clock, journal
        self._series = {a: _Series() for a in assets}
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self.quarantine: list[dict[str, str]] = []

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def ingest(self, asset_id: str, readings: list[tuple[str, datetime, float, str]], source: str) -> int:
        """(metric, time, value, unit) readings of one asset; returns how many were new. A reading of another
        signal, a unit that is not the signal's or a non-finite value is refused naming the field."""
        asset = self.assets.get(asset_id)
        if asset is None:
            raise EquipmentInputError("asset", f"unknown asset {asset_id!r}")
        kind = asset.kind
        converted = []
        for i, (metric, t, value, unit) in enumerate(readings):
            if metric != kind.signal:
                raise EquipmentInputError(f"[{i}].metric", f"{asset_id} reports {kind.signal}, not {metric!r}")
            if not math.isfinite(value):
                raise EquipmentInputError(f"[{i}].value", "a finite number")
            try:
                v = value if unit == kind.signal_unit else ucum.convert(value, unit, kind.signal_unit)
            except (ucum.UcumError, ucum.IncommensurableUnitsError):
                raise EquipmentInputError(f"[{i}].unit", f"{unit!r} is not a unit of {kind.signal} "
                                          f"({kind.signal_unit})") from None
            converted.append((t, float(v), value, unit))
        if self.journal is not None:  # kept before applied: a failure here raises and applies nothing
            self.journal.record_samples(asset.id, converted, source)
        new = self._store(asset, converted, source)
        for listener in self._listeners:
            listener(new)
        return len(new)

    def refuse(self, topic: str, error: EquipmentInputError, payload: bytes) -> None:
        """Quarantine a message that cannot be applied (journalled first: a failure raises, nothing kept)."""
        if self.journal is not None:
            self.journal.record_refusal(topic, error.field, str(error), payload)
        self.quarantine.append({"topic": topic, "field": error.field, "reason": str(error)})

    def restore(self) -> int:
        """Every asset's newest :data:`KEEP` journalled samples back in, and the quarantine (at startup); how
        many samples."""
        if self.journal is None:
            return 0
        self.quarantine.extend(self.journal.refusals())
        count = 0
        for asset in self.assets.values():
            # (asset, time) is unique in the journal: one call over all of them gives the series and count
            count += len(self._store(asset, self.journal.samples(asset.id, KEEP), "journal"))
        return count

    def _store(self, asset: Asset, rows: list[Converted], source: str) -> list[Sample]:
        new = []
        with self._lock:
            series = self._series[asset.id]
            seen = set(series.times)
            for t, v, original, unit in sorted(rows, key=lambda r: r[0]):
                if t in seen:
                    continue
                seen.add(t)
                series.times.append(t)
                series.values.append(v)
                new.append(Sample(SUBJECT + asset.id, asset.kind.signal, t, v, asset.kind.signal_unit, original,
                                  unit, asset.id, source, f"{asset.id}|{t.isoformat()}"))
            order = np.argsort(np.asarray([x.timestamp() for x in series.times]), kind="stable")
            series.times = [series.times[i] for i in order][-KEEP:]
            series.values = [series.values[i] for i in order][-KEEP:]
        return new

    def status(self) -> dict[str, Any]:
        """Every asset's health, remaining useful life and status, and the predicted downtime."""
        rows = [self._status(a) for a in self.assets.values()]
        return {"as_of": self.clock().isoformat(), "devices": rows,
                "method": "local-linear-trend Kalman filter on each device's degradation signal; remaining life = "
                          f"hours until the trend reaches the kind's threshold; urgent < {URGENT_H:g} h, plan < "
                          f"{PLAN_H / 24:g} days; fewer than {MIN_SAMPLES} samples: not callable",
                "outages": self.predicted_outages(rows)}

    def _status(self, asset: Asset) -> dict[str, Any]:
        with self._lock:
            series = self._series[asset.id]
            times, values = list(series.times), list(series.values)
        base = {"device": asset.id, "kind": asset.kind.name, "metric": asset.kind.signal, "samples": len(times),
                "unit": asset.unit, "beds": asset.beds, "threshold": asset.kind.threshold,
                "signal_unit": asset.kind.signal_unit}
        if len(times) < MIN_SAMPLES:
            return base | {"health": None, "rul_h": None, "status": "unknown",
                           "reason": f"{len(times)} samples: too few to call"}
        t0 = times[0]
        hours = np.asarray([(t - t0).total_seconds() / 3600 for t in times])
        state = track_degradation(hours, np.asarray(values), asset.kind.threshold, asset.kind.noise_sd)
        rul = None if math.isinf(state.rul_h) else round(state.rul_h, 1)
        status = "ok" if rul is None or rul > PLAN_H else ("plan" if rul > URGENT_H else "urgent")
        return base | {"health": round(state.health, 3), "rul_h": rul, "status": status,
                       "last": times[-1].isoformat(), "level": round(state.level, 4)}

    def predicted_outages(self, rows: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """Downtime as what-if outages (hours from now): an urgent device is taken out for its repair time at
        its predicted failure; a device that takes no beds is left out."""
        rows = rows if rows is not None else [self._status(a) for a in self.assets.values()]
        out = []
        for row in rows:
            asset = self.assets[row["device"]]
            if row["status"] == "urgent" and asset.beds > 0 and asset.unit:
                out.append({"unit": asset.unit, "start_h": float(row["rul_h"] or 0.0),
                            "duration_h": asset.kind.repair_h, "beds": asset.beds})
        return out
