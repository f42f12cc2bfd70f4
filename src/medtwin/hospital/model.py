"""The hospital model as data: a pydantic-validated TOML/JSON document.

Units have beds (and an optional staffed ratio: capacity(t) = min(beds, floor(staff(t) x patients_per_staff))),
a length-of-stay distribution in hours, routing probabilities to other units or ``exit`` and an optional queue
limit (0 = a loss system: a patient who finds every bed taken is turned away). Roles have a roster of staff
by hour of day (24 values) or hour of week (168 values, hour 0 = Monday 00:00). Arrival streams enter at one
unit with a rate per hour of day or of week (a non-homogeneous Poisson process, piecewise constant per hour)
and an ESI 1-5 mix. ESI 1 (resuscitation) pre-empts the lowest-priority patient in service in a unit marked
``preemptive`` (pre-emptive resume).

Bad input raises :class:`HospitalModelError` naming the field (``units[2].routing``, ``roles[0].staff_by_hour[3]``).
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from medtwin.errors import InputError

EXIT = "exit"
HOURS_PER_WEEK = 168
ESI_LEVELS = 5


class HospitalModelError(InputError):
    """A hospital model that cannot be simulated; ``field`` names the entry."""


class LengthOfStay(BaseModel):
    """Length of stay in hours: ``exponential`` (mean only), ``lognormal`` or ``gamma`` (mean and cv)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    dist: Literal["exponential", "lognormal", "gamma"]
    mean_h: float = Field(gt=0)
    cv: float = Field(default=1.0, gt=0)


class Unit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, pattern=r"^[a-z][a-z0-9_]*$")
    kind: Literal["ed", "ward", "icu", "theatre", "lounge", "other"] = "other"
    beds: int = Field(ge=1)
    los: LengthOfStay
    routing: dict[str, float] = Field(default_factory=lambda: {EXIT: 1.0})
    queue_capacity: int | None = Field(default=None, ge=0)
    staff_role: str | None = None
    patients_per_staff: float | None = Field(default=None, gt=0)
    preemptive: bool = False
    transfer_h: dict[str, float] = Field(default_factory=dict,
                                         description="hours to move a patient to each next unit (layout; 0 if absent)")


class Role(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1)
    staff_by_hour: list[int] = Field(description="staff on duty per hour of day (24) or of week (168)")

    @field_validator("staff_by_hour")
    @classmethod
    def _length_and_sign(cls, value: list[int]) -> list[int]:
        if len(value) not in (24, HOURS_PER_WEEK):
            raise ValueError(f"needs 24 (per hour of day) or 168 (per hour of week) values, got {len(value)}")
        for i, v in enumerate(value):
            if v < 0:
                raise ValueError(f"staff_by_hour[{i}] = {v}: staff cannot be negative")
        return value

    def week(self) -> np.ndarray:
        return np.resize(np.asarray(self.staff_by_hour, dtype=np.int64), HOURS_PER_WEEK)


class ArrivalStream(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1)
    entry: str
    rate_per_hour: list[float] = Field(description="arrivals per hour, per hour of day (24) or of week (168)")
    esi_mix: list[float] = Field(default_factory=lambda: [0.0, 0.0, 1.0, 0.0, 0.0], min_length=5, max_length=5)

    @field_validator("rate_per_hour")
    @classmethod
    def _rates(cls, value: list[float]) -> list[float]:
        if len(value) not in (1, 24, HOURS_PER_WEEK):
            raise ValueError(f"needs 1, 24 or 168 values, got {len(value)}")
        for i, v in enumerate(value):
            if not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"rate_per_hour[{i}] = {v}: a rate is finite and >= 0")
        return value

    @field_validator("esi_mix")
    @classmethod
    def _mix(cls, value: list[float]) -> list[float]:
        if any(v < 0 for v in value) or abs(sum(value) - 1.0) > 1e-6:
            raise ValueError(f"ESI 1-5 probabilities must be >= 0 and sum to 1 (sum {sum(value):.6g})")
        return value

    def week(self) -> np.ndarray:
        return np.resize(np.asarray(self.rate_per_hour, dtype=float), HOURS_PER_WEEK)


class HospitalModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    source: str = Field(description="where the numbers come from")
    units: list[Unit] = Field(min_length=1)
    roles: list[Role] = Field(default_factory=list)
    arrivals: list[ArrivalStream] = Field(min_length=1)

    def unit_index(self) -> dict[str, int]:
        return {u.name: i for i, u in enumerate(self.units)}

    def capacity_by_hour(self) -> np.ndarray:
        """(units, 168) beds usable per hour of week: beds, or fewer when the unit's staff are short."""
        roles = {r.name: r.week() for r in self.roles}
        cap = np.empty((len(self.units), HOURS_PER_WEEK), dtype=np.int64)
        for i, u in enumerate(self.units):
            cap[i] = u.beds
            if u.staff_role is not None:
                staffed = np.floor(roles[u.staff_role] * float(u.patients_per_staff or 1.0) + 1e-9)
                cap[i] = np.minimum(u.beds, staffed.astype(np.int64))
        return cap

    def transfer_matrix(self) -> np.ndarray:
        """(units, units) hours in transit from unit i to unit j (a layout's walking distances)."""
        index = self.unit_index()
        m = np.zeros((len(self.units), len(self.units)))
        for i, u in enumerate(self.units):
            for target, hours in u.transfer_h.items():
                m[i, index[target]] = hours
        return m

    def routing_matrix(self) -> np.ndarray:
        """(units, units + 1) probabilities; the last column is ``exit``."""
        index = self.unit_index()
        m = np.zeros((len(self.units), len(self.units) + 1))
        for i, u in enumerate(self.units):
            for target, p in u.routing.items():
                m[i, len(self.units) if target == EXIT else index[target]] = p
        return m


def _check_units(model: HospitalModel) -> None:
    index = model.unit_index()
    roles = {r.name for r in model.roles}
    if len(index) != len(model.units):
        raise HospitalModelError("units", "unit names must be unique")
    for i, u in enumerate(model.units):
        where = f"units[{i}] {u.name!r}"
        for target, p in u.routing.items():
            if target != EXIT and target not in index:
                raise HospitalModelError(f"{where}.routing", f"routes to unknown unit {target!r}")
            if not (0.0 <= p <= 1.0):
                raise HospitalModelError(f"{where}.routing", f"probability to {target!r} is {p}, not in [0, 1]")
        total = sum(u.routing.values())
        if abs(total - 1.0) > 1e-6:
            raise HospitalModelError(f"{where}.routing", f"probabilities sum to {total:.6g}, not 1")
        for target, hours in u.transfer_h.items():
            if target not in u.routing or target == EXIT:
                raise HospitalModelError(f"{where}.transfer_h", f"{target!r} is not a unit this one routes to")
            if not (0.0 <= hours < 24.0):
                raise HospitalModelError(f"{where}.transfer_h", f"{hours} h to {target!r}: 0 <= hours < 24")
        if u.staff_role is not None and u.staff_role not in roles:
            raise HospitalModelError(f"{where}.staff_role", f"no role {u.staff_role!r} in roles")
        if (u.staff_role is None) != (u.patients_per_staff is None):
            raise HospitalModelError(f"{where}.patients_per_staff", "staff_role and patients_per_staff go together")


def _check_reachable(model: HospitalModel) -> None:
    index = model.unit_index()
    for j, stream in enumerate(model.arrivals):
        if stream.entry not in index:
            raise HospitalModelError(f"arrivals[{j}].entry", f"unknown unit {stream.entry!r}")
    reached: set[str] = set()
    todo = [s.entry for s in model.arrivals]
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        todo.extend(t for t, p in model.units[index[name]].routing.items() if t != EXIT and p > 0)
    for i, u in enumerate(model.units):
        if u.name not in reached:
            raise HospitalModelError(f"units[{i}] {u.name!r}", "unreachable: no arrival stream or routing leads to it")
    # every unit must be able to reach exit, or patients would circulate forever
    leads_out = {u.name for u in model.units if u.routing.get(EXIT, 0.0) > 0}
    changed = True
    while changed:
        changed = False
        for u in model.units:
            if u.name not in leads_out and any(t in leads_out for t, p in u.routing.items() if p > 0):
                leads_out.add(u.name)
                changed = True
    for i, u in enumerate(model.units):
        if u.name not in leads_out:
            raise HospitalModelError(f"units[{i}] {u.name!r}.routing", "no path from this unit to exit")


def _field_of(error: ValidationError) -> tuple[str, str]:
    first = error.errors()[0]
    parts: list[str] = []
    for part in first["loc"]:
        if isinstance(part, int) and parts:
            parts[-1] += f"[{part}]"
        else:
            parts.append(str(part))
    return ".".join(parts) or "model", first["msg"]


def parse_model(data: Mapping[str, Any]) -> HospitalModel:
    """Validate a model document; :class:`HospitalModelError` names the first bad field."""
    try:
        model = HospitalModel.model_validate(dict(data))
    except ValidationError as error:
        raise HospitalModelError(*_field_of(error)) from None
    _check_units(model)
    _check_reachable(model)
    return model


def load_model(path: str | Path) -> HospitalModel:
    """Read a model from a ``.toml`` or ``.json`` file; errors name the file and the field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as error:
        raise HospitalModelError(str(path), f"cannot read: {error}") from None
    try:
        return parse_model(data)
    except HospitalModelError as error:
        raise HospitalModelError(f"{path}: {error.field}", error.message) from None


DEMO_MODEL = Path(__file__).with_name("data") / "demo_hospital.toml"


def demo_model() -> HospitalModel:
    return load_model(DEMO_MODEL)
