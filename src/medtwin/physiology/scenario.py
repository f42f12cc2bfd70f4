"""Scenarios: validated timelines of meals, boluses and therapy settings over a horizon."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from medtwin.physiology.errors import PhysiologyInputError, validate_input

MINUTES_PER_DAY = 1440
MAX_HORIZON_MIN = 90 * MINUTES_PER_DAY
MAX_MEAL_CARBS_G = 300.0  # above any single meal; larger values are treated as a unit error
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")


class Meal(BaseModel):
    """A meal announced at ``time_min`` (minutes from scenario start); ``at: "07:30"`` + ``day`` also accepted."""

    model_config = ConfigDict(extra="forbid")
    time_min: float = Field(description="minutes from the scenario start")
    carbs_g: float = Field(description="carbohydrate, grams")

    @model_validator(mode="before")
    @classmethod
    def _clock_time(cls, data: Any) -> Any:
        if isinstance(data, dict) and "at" in data:
            data = dict(data)
            at = str(data.pop("at"))
            day = data.pop("day", 0)
            match = _CLOCK.match(at)
            if match is None or int(match.group(1)) > 23 or int(match.group(2)) > 59:
                raise ValueError(f"'at' must be a clock time HH:MM, got {at!r}")
            data["time_min"] = int(day) * MINUTES_PER_DAY + int(match.group(1)) * 60 + int(match.group(2))
        return data

    @field_validator("time_min")
    @classmethod
    def _not_in_past(cls, value: float) -> float:
        if not np.isfinite(value):
            raise ValueError("must be finite")
        if value < 0:
            raise ValueError(f"meal in the past ({value} min before the scenario start)")
        return value

    @field_validator("carbs_g")
    @classmethod
    def _plausible_carbs(cls, value: float) -> float:
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"carbohydrate amount must be positive, got {value}")
        if value > MAX_MEAL_CARBS_G:
            raise ValueError(f"{value} g is not a plausible meal (max {MAX_MEAL_CARBS_G:g} g)")
        return value


class Bolus(BaseModel):
    """A manual insulin bolus."""

    model_config = ConfigDict(extra="forbid")
    time_min: float = Field(ge=0)
    units: float = Field(gt=0, le=50, description="insulin, U")


class Regimen(BaseModel):
    """Therapy settings of the basal-bolus controller, relative to the patient's own."""

    model_config = ConfigDict(extra="forbid")
    name: str = "current"
    basal_scale: float = Field(default=1.0, gt=0, le=5, description="multiplier on the basal rate")
    carb_ratio_scale: float = Field(default=1.0, gt=0, le=5, description="multiplier on the carb ratio (g/U)")
    bolus_offset_min: float = Field(default=0.0, ge=-60, le=120, description="bolus time minus meal time")
    meal_boluses: bool = True
    target_mg_dl: float = Field(default=140.0, ge=70, le=250)
    correction_threshold_mg_dl: float = Field(default=150.0, ge=70, le=400)


class SensorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sample_period_min: float = Field(default=5.0, gt=0, le=60)
    noise: bool = True
    min_mg_dl: float = Field(default=39.0, ge=0)
    max_mg_dl: float = Field(default=400.0, le=600)


class Scenario(BaseModel):
    """A timeline over ``horizon_min`` (at most 90 days)."""

    model_config = ConfigDict(extra="forbid")
    horizon_min: float = Field(default=MINUTES_PER_DAY, description="minutes")
    meals: list[Meal] = Field(default_factory=list)
    boluses: list[Bolus] = Field(default_factory=list)
    regimen: Regimen = Field(default_factory=Regimen)
    sensor: SensorSettings = Field(default_factory=SensorSettings)
    eating_rate_g_per_min: float = Field(default=5.0, gt=0, le=100)
    seed: int = Field(default=0, ge=0, description="seed of the sensor noise generator")

    @field_validator("horizon_min")
    @classmethod
    def _horizon(cls, value: float) -> float:
        if not np.isfinite(value) or value <= 0:
            raise ValueError("must be positive")
        if value > MAX_HORIZON_MIN:
            raise ValueError(f"horizon over 90 days ({value / MINUTES_PER_DAY:.1f} days)")
        if value != int(value):
            raise ValueError("must be a whole number of minutes")
        return value

    @field_validator("meals", "boluses")
    @classmethod
    def _timeline(cls, events: list[Any], info: ValidationInfo) -> list[Any]:
        """Strictly increasing times within the horizon (a field validator, so errors carry its location)."""
        label = info.field_name
        times = [e.time_min for e in events]
        for i in range(1, len(times)):
            if times[i] <= times[i - 1]:
                raise PhysiologyInputError(
                    f"{label}[{i}].time_min", "times must be strictly increasing (non-monotonic)"
                )
        horizon = info.data.get("horizon_min")
        if horizon is not None:
            for i, t in enumerate(times):
                if t >= horizon:
                    raise PhysiologyInputError(
                        f"{label}[{i}].time_min", f"{t} min is beyond the horizon {horizon} min"
                    )
        return events

    @property
    def minutes(self) -> int:
        return int(self.horizon_min)


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "scenario"


def parse_scenario(data: dict[str, Any] | Scenario) -> Scenario:
    """Validate a scenario mapping; errors are :class:`PhysiologyInputError` naming the field."""
    if isinstance(data, Scenario):
        return data
    if not isinstance(data, dict):
        raise PhysiologyInputError("scenario", "must be a mapping")
    return validate_input(Scenario, data, _location)


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario from YAML or JSON."""
    file = Path(path)
    if not file.is_file():
        raise PhysiologyInputError("scenario", f"no such file: {file}")
    text = file.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if file.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise PhysiologyInputError("scenario", f"cannot parse {file.name}: {exc}") from None
    return parse_scenario(data or {})


def random_meal_scenario(days: int, rng: np.random.Generator, **settings: Any) -> Scenario:
    """Randomised meals (breakfast, lunch, dinner, optional snack) for ``days`` days.

    Times ~ Normal(07:00, 30 min), (12:30, 30 min), (19:00, 30 min), snack 16:00 with probability 0.5;
    amounts ~ Normal(45, 10), (70, 10), (80, 10), (15, 5) g clipped to [5, 150] g, in the spirit of
    simglucose's RandomScenario. Deterministic given the generator.
    """
    if days < 1 or days > 90:
        raise PhysiologyInputError("days", "must be between 1 and 90")
    plan = [
        (7 * 60, 45.0, 10.0, 1.0),
        (12 * 60 + 30, 70.0, 10.0, 1.0),
        (16 * 60, 15.0, 5.0, 0.5),
        (19 * 60, 80.0, 10.0, 1.0),
    ]
    meals: list[Meal] = []
    for day in range(days):
        for mean_time, mean_g, sd_g, probability in plan:
            if rng.random() >= probability:
                continue
            minute = day * MINUTES_PER_DAY + int(
                np.clip(round(rng.normal(mean_time, 30.0)), mean_time - 90, mean_time + 90)
            )
            meals.append(
                Meal(time_min=minute, carbs_g=float(np.clip(round(rng.normal(mean_g, sd_g)), 5, 150)))
            )
    return Scenario(horizon_min=days * MINUTES_PER_DAY, meals=meals, **settings)
