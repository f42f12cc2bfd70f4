"""Dosing: regimens, irregular dose histories and their array form (a dose schedule).

Times are in hours (``_h``), amounts are text with a mass unit (``"500 mg"``) or milligrams (``_mg``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from medtwin.arrays import Array
from medtwin.pharmaco.errors import DoseError
from medtwin.pharmaco.units import MassText, parse_amount_mg


class Route(StrEnum):
    """How a dose enters the body."""

    IV_BOLUS = "iv_bolus"
    IV_INFUSION = "iv_infusion"
    ORAL = "oral"


def _check_route_duration(route: Route, duration_h: float, field: str) -> None:
    if route is Route.IV_INFUSION and not duration_h > 0:
        raise DoseError(field, "an iv_infusion needs infusion_duration_h > 0")
    if route is not Route.IV_INFUSION and duration_h != 0:
        raise DoseError(field, f"infusion_duration_h must be 0 for route {route.value}")


class DoseEvent(BaseModel):
    """One administration: when, how much (text with a mass unit), route, infusion duration."""

    model_config = ConfigDict(frozen=True)

    time_h: float = Field(ge=0, description="Time of administration [h] from the start of the scenario.")
    amount: MassText = Field(description="Dose with a mass unit, e.g. '500 mg'.")
    route: Route = Route.ORAL
    infusion_duration_h: float = Field(default=0.0, ge=0, description="Infusion duration [h].")

    @model_validator(mode="after")
    def _duration_matches_route(self) -> DoseEvent:
        _check_route_duration(self.route, self.infusion_duration_h, "infusion_duration_h")
        return self

    @property
    def amount_mg(self) -> float:
        return parse_amount_mg(self.amount, field="amount")


class Regimen(BaseModel):
    """A repeated regimen: ``n_doses`` of ``dose`` every ``interval_h`` from ``start_h``."""

    model_config = ConfigDict(frozen=True)

    dose: MassText = Field(description="Dose with a mass unit, e.g. '1 g' or '5 mg'.")
    route: Route = Route.ORAL
    interval_h: float = Field(description="Dosing interval [h], > 0.")
    n_doses: int = Field(default=1, ge=1, le=100_000)
    infusion_duration_h: float = Field(default=0.0, ge=0, description="Infusion duration [h].")
    start_h: float = Field(default=0.0, ge=0, description="Time of the first dose [h].")

    @field_validator("interval_h")
    @classmethod
    def _positive_interval(cls, value: float) -> float:
        if not value > 0:
            raise DoseError("interval_h", f"dosing interval must be > 0 h, got {value}")
        return value

    @model_validator(mode="after")
    def _infusion_fits_interval(self) -> Regimen:
        _check_route_duration(self.route, self.infusion_duration_h, "infusion_duration_h")
        if self.infusion_duration_h > self.interval_h:
            raise DoseError(
                "infusion_duration_h",
                f"infusion of {self.infusion_duration_h} h is longer than the dosing interval "
                f"of {self.interval_h} h",
            )
        return self

    @property
    def dose_mg(self) -> float:
        return parse_amount_mg(self.dose, field="dose")

    @property
    def end_h(self) -> float:
        """Time of the last dose plus one interval [h]."""
        return self.start_h + self.n_doses * self.interval_h

    def events(self) -> list[DoseEvent]:
        return [
            DoseEvent(
                time_h=self.start_h + i * self.interval_h,
                amount=self.dose,
                route=self.route,
                infusion_duration_h=self.infusion_duration_h,
            )
            for i in range(self.n_doses)
        ]

    def schedule(self) -> DoseSchedule:
        n = self.n_doses
        return DoseSchedule(
            time_h=self.start_h + self.interval_h * np.arange(n, dtype=float),
            amount_mg=np.full(n, self.dose_mg),
            route=tuple([self.route] * n),
            duration_h=np.full(n, self.infusion_duration_h),
        )


@dataclass(frozen=True)
class DoseSchedule:
    """Array form of a dose history, shared by a batch of patients.

    ``time_h`` (m,) sorted; ``amount_mg`` (m,) or (n, m) for per-patient amounts (e.g. mg/kg dosing);
    ``route`` one per event; ``duration_h`` (m,) infusion durations (0 for bolus/oral).
    """

    time_h: Array
    amount_mg: Array
    route: tuple[Route, ...]
    duration_h: Array

    def __post_init__(self) -> None:
        m = self.time_h.shape[0]
        if self.time_h.ndim != 1:
            raise DoseError("time_h", "must be a 1-D array of dose times")
        if self.amount_mg.shape[-1] != m or len(self.route) != m or self.duration_h.shape != (m,):
            raise DoseError("schedule", "time_h, amount_mg, route and duration_h must have one entry per dose")
        if m and np.any(np.diff(self.time_h) < 0):
            raise DoseError("time_h", "dose times must be sorted")
        if np.any(~np.isfinite(self.amount_mg)) or np.any(self.amount_mg < 0):
            raise DoseError("amount_mg", "amounts must be finite and >= 0")

    @property
    def n_events(self) -> int:
        return int(self.time_h.shape[0])

    def scaled(self, factor: float) -> DoseSchedule:
        return DoseSchedule(self.time_h, self.amount_mg * factor, self.route, self.duration_h)

    @staticmethod
    def from_events(events: Sequence[DoseEvent]) -> DoseSchedule:
        ordered = sorted(events, key=lambda e: e.time_h)
        return DoseSchedule(
            time_h=np.array([e.time_h for e in ordered], dtype=float),
            amount_mg=np.array([e.amount_mg for e in ordered], dtype=float),
            route=tuple(e.route for e in ordered),
            duration_h=np.array([e.infusion_duration_h for e in ordered], dtype=float),
        )

    @staticmethod
    def concat(schedules: Sequence[DoseSchedule]) -> DoseSchedule:
        time = np.concatenate([s.time_h for s in schedules])
        order = np.argsort(time, kind="stable")
        amounts = [np.atleast_1d(s.amount_mg) for s in schedules]
        if any(a.ndim == 2 for a in amounts):
            n = max(a.shape[0] for a in amounts if a.ndim == 2)
            amounts = [np.broadcast_to(a, (n, a.shape[-1])) for a in amounts]
        amount = np.concatenate(amounts, axis=-1)[..., order]
        routes = tuple(r for s in schedules for r in s.route)
        return DoseSchedule(
            time_h=time[order],
            amount_mg=amount,
            route=tuple(routes[i] for i in order),
            duration_h=np.concatenate([s.duration_h for s in schedules])[order],
        )
