"""The app's live hospital: one model, its census fed by ADT (MLLP, HTTP, FHIR Encounter), and what the
command centre reads (counts per unit with time in place, the ED queue, flows, a 48 h forecast from now).

Thread-safe: the MLLP thread and the HTTP worker threads feed one :class:`LiveHospital` under a lock. Every
accepted change bumps :attr:`LiveHospital.version`, so a reader polls cheaply ("anything new since N?") and
the forecast is recomputed only when the census or the hour changed. Outputs are counts and durations:
patients are known only by a keyed hash inside the tracker and no output carries it.

Durable when given a journal (the app's: ``medtwin.store.hospital_journal.HospitalJournal``): every ADT
decision is journalled before it is applied and answered, every accepted equipment sample before it is
applied, and :meth:`LiveHospital.restore` (called at startup, before the MLLP listener opens) rebuilds the
census and the equipment twin by replaying them through the same handling a live message gets.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

import numpy as np

from medtwin.hospital.adt import CensusTracker, Journal, Journalled, Outcome, Pseudonymise
from medtwin.hospital.equipment_live import Asset, EquipmentTwin, SampleJournal, load_assets
from medtwin.hospital.model import HOURS_PER_WEEK, HospitalModel

#: Time-in-department bands of the ED queue (hours; the last is open) and the 4 h standard
ED_BANDS_H = (0.0, 1.0, 2.0, 4.0, 12.0)
ED_STANDARD_H = 4.0
QUARANTINE_SHOWN = 20
log = logging.getLogger("medtwin.hospital.live")


class LiveJournal(Journal, SampleJournal, Protocol):
    """The live hospital's journal: ADT decisions and equipment samples, read back in replay order."""

    def accepted(self) -> Iterator[Journalled]: ...

    def quarantined(self) -> Iterator[Journalled]: ...


class Background(Protocol):
    """Something the app starts with the hospital and stops at shutdown (MLLP listener, demo ADT feed)."""

    def stop(self) -> None: ...


def hour_of_week(t: datetime) -> int:
    """Monday 00:00 = 0 (the model's convention)."""
    return t.weekday() * 24 + t.hour


def _band_names() -> list[str]:
    edges = ED_BANDS_H
    return [f"{a:g}-{b:g} h" for a, b in zip(edges[:-1], edges[1:], strict=True)] + [f">= {edges[-1]:g} h"]


class LiveHospital:
    """The live census of ``model``; ``clock`` is the app's."""

    def __init__(self, model: HospitalModel, pseudonymise: Pseudonymise | None, clock: Callable[[], datetime],
                 assets: dict[str, Asset] | None = None, journal: LiveJournal | None = None) -> None:
        self.model = model
        self.clock = clock
        self.journal = journal
        self.equipment = EquipmentTwin(load_assets() if assets is None else assets, clock, journal)
        self.tracker = CensusTracker([u.name for u in model.units], pseudonymise, journal)
        self.version = 0
        self._lock = threading.Lock()
        self._capacity = model.capacity_by_hour()
        self._forecast: tuple[tuple[int, int, int, int], dict[str, Any]] | None = None

    def restore(self) -> dict[str, Any]:
        """Rebuild the census and the equipment twin from the journal (at startup, before anything feeds
        it): what was replayed, what the census refuses now (normally nothing) and how long it took."""
        if self.journal is None:
            return {"journal": None}
        started = time.perf_counter()
        with self._lock:
            problems = self.tracker.restore(self.journal.accepted(), self.journal.quarantined())
            samples = self.equipment.restore()
            self.version = sum(o.accepted and not o.duplicate for o in self.tracker.handled)
        for outcome in problems:
            log.warning("journalled ADT %s not re-applied: %s: %s", outcome.control_id, outcome.field, outcome.reason)
        result = {"messages": len(self.tracker.handled), "accepted": self.version, "not_reapplied": len(problems),
                  "quarantined": len(self.tracker.quarantine), "equipment_samples": samples,
                  "seconds": round(time.perf_counter() - started, 3)}
        log.info("live hospital restored from its journal: %s", result)
        return result

    # --- feeding ---------------------------------------------------------------------------------------
    def handle(self, text: str) -> Outcome:
        """One HL7 v2 ADT message (what the MLLP listener calls)."""
        with self._lock:
            outcome = self.tracker.handle(text)
            self._bump(outcome)
        return outcome

    def handle_encounter(self, resource: dict[str, object]) -> Outcome:
        with self._lock:
            outcome = self.tracker.handle_encounter(resource)
            self._bump(outcome)
        return outcome

    def _bump(self, outcome: Outcome) -> None:
        if outcome.accepted and not outcome.duplicate:
            self.version += 1

    # --- reading ---------------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Census per unit (patients, beds usable now, time in place), the ED queue, flows over 24 h and the
        feed's health. No patient key, name or identifier."""
        now = self.clock()
        with self._lock:
            stays = self.tracker.stays()
            flows = self.tracker.moves_since(now - timedelta(hours=24))
            handled = list(self.tracker.handled)
            quarantine = [{"control_id": q["control_id"], "field": q["field"]}
                          for q in self.tracker.quarantine[-QUARANTINE_SHOWN:]]
            version = self.version
        how = hour_of_week(now)
        hours: dict[str, list[float]] = {u.name: [] for u in self.model.units}
        since: dict[str, list[datetime]] = {u.name: [] for u in self.model.units}
        for unit, start in stays:
            hours[unit].append(max((now - start).total_seconds() / 3600, 0.0))
            since[unit].append(start)
        units = [self._unit_row(i, hours[u.name], since[u.name], how) for i, u in enumerate(self.model.units)]
        return {"model": self.model.name, "as_of": now.isoformat(), "version": version, "start_hour_of_week": how,
                "units": units, "total_patients": len(stays), "ed": self._ed(units, hours),
                "flows_24h": {"admitted": flows["A01"] + flows["A04"], "transferred": flows["A02"],
                              "discharged": flows["A03"], "corrected": flows["A08"],
                              "cancelled": flows["A11"] + flows["A12"] + flows["A13"]},
                "messages": {"handled": len(handled), "accepted": sum(o.accepted and not o.duplicate for o in handled),
                             "duplicates": sum(o.duplicate for o in handled),
                             "refused": sum(not o.accepted for o in handled)},
                "quarantine": quarantine}

    def _unit_row(self, i: int, hours: list[float], since: list[datetime], how: int) -> dict[str, Any]:
        unit = self.model.units[i]
        h = np.sort(np.asarray(hours))[::-1]
        return {"unit": unit.name, "kind": unit.kind, "beds": unit.beds,
                "capacity_now": int(self._capacity[i, how % HOURS_PER_WEEK]), "patients": int(h.size),
                "longest_h": round(float(h[0]), 2) if h.size else None,
                "median_h": round(float(np.median(h)), 2) if h.size else None,
                "since": sorted(t.isoformat() for t in since),
                "hours_in_unit": [round(float(x), 2) for x in h]}

    def _ed(self, units: list[dict[str, Any]], hours: Mapping[str, list[float]]) -> dict[str, Any]:
        """The ED queue. ADT says where a patient is, not whether they are in a bed or waiting: the queue is
        read as the patients in the ED beyond its usable capacity now, and time in department by band."""
        ed = [row for row in units if row["kind"] == "ed"]
        in_ed = np.asarray([x for row in ed for x in hours[row["unit"]]])
        edges = np.asarray([*ED_BANDS_H, np.inf])
        counts = np.histogram(in_ed, bins=edges)[0] if in_ed.size else np.zeros(len(ED_BANDS_H), dtype=int)
        return {"units": [row["unit"] for row in ed], "in_department": int(in_ed.size),
                "capacity_now": sum(row["capacity_now"] for row in ed),
                "waiting_beyond_capacity": sum(max(row["patients"] - row["capacity_now"], 0) for row in ed),
                "time_in_department": dict(zip(_band_names(), (int(c) for c in counts), strict=True)),
                "over_4h": int(np.sum(in_ed >= ED_STANDARD_H)),
                "longest_h": round(float(in_ed.max()), 2) if in_ed.size else None}

    def forecast(self, horizon_h: float = 48.0, reps: int = 100, seed: int = 0) -> dict[str, Any]:
        """Occupancy and ED waits ahead from the live census (the model's own parameters), cached until the
        census changes or the hour turns."""
        from medtwin.hospital.service import forecast_from

        now = self.clock()
        with self._lock:
            census = self.tracker.census(now)
            key = (self.version, int(now.timestamp() // 3600), int(horizon_h), reps)
            cached = self._forecast
        if cached is not None and cached[0] == key:
            return cached[1]
        result = forecast_from(self.model, census, hour_of_week(now), horizon_h, reps, seed)
        result = result | {"as_of": now.isoformat(), "version": key[0]}
        with self._lock:
            self._forecast = (key, result)
        return result
