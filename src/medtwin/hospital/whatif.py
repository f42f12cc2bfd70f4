"""What-if scenarios as data: a roster change, beds moved between units, a surge (arrival multiplier, longer
stays). A scenario applied to a model gives a new validated model plus the multipliers the sampler uses; the
baseline is ``Scenario(name="baseline")``. Each scenario runs on the same random numbers as the baseline
(:mod:`.sampling`), so differences are compared pair by pair (:func:`medtwin.hospital.replicate.paired`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from medtwin.hospital.model import HospitalModel, HospitalModelError, parse_model


class Outage(BaseModel):
    """Beds (or a device's slots: a CT scanner modelled as a unit) out of use for a while."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    unit: str
    start_h: float = Field(ge=0, description="hours from the run's start")
    duration_h: float = Field(gt=0)
    beds: int = Field(ge=1)


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1)
    arrival_multiplier: float = Field(default=1.0, gt=0, le=10)
    los_multiplier: float = Field(default=1.0, gt=0, le=10)
    beds: dict[str, int] = Field(default_factory=dict, description="unit -> beds (reallocation, new wing)")
    staff_by_hour: dict[str, list[int]] = Field(default_factory=dict, description="role -> roster (24 or 168)")
    outages: list[Outage] = Field(default_factory=list, description="equipment downtime, closed bays")
    arrival_curve: list[float] = Field(default_factory=list, max_length=3650,
                                       description="arrival multiplier per day (an epidemic wave), times arrival_multiplier")
    esi_mix: list[float] | None = Field(default=None, min_length=5, max_length=5,
                                        description="ESI 1-5 case mix of the ED streams during the scenario")
    transfer_h: dict[str, dict[str, float]] = Field(default_factory=dict,
                                                    description="unit -> next unit -> hours (a new layout)")

    def outage_tuples(self, model: HospitalModel) -> list[tuple[int, float, float, int]]:
        index = model.unit_index()
        out = []
        for i, o in enumerate(self.outages):
            if o.unit not in index:
                raise HospitalModelError(f"scenario {self.name!r}.outages[{i}].unit", f"no unit {o.unit!r}")
            out.append((index[o.unit], o.start_h, o.start_h + o.duration_h, o.beds))
        return out

    def apply(self, model: HospitalModel) -> HospitalModel:
        """The model with this scenario's beds and rosters; errors name ``scenario.<field>``."""
        data = model.model_dump()
        units = {u["name"]: u for u in data["units"]}
        roles = {r["name"]: r for r in data["roles"]}
        for name, beds in self.beds.items():
            if name not in units:
                raise HospitalModelError(f"scenario {self.name!r}.beds.{name}", "no such unit")
            units[name]["beds"] = beds
        if any(not (0 < v <= 10) for v in self.arrival_curve):
            raise HospitalModelError(f"scenario {self.name!r}.arrival_curve", "each day's multiplier in (0, 10]")
        if self.esi_mix is not None:
            for stream in data["arrivals"]:
                if units[stream["entry"]]["kind"] == "ed":
                    stream["esi_mix"] = list(self.esi_mix)
        for name, moves in self.transfer_h.items():
            if name not in units:
                raise HospitalModelError(f"scenario {self.name!r}.transfer_h.{name}", "no such unit")
            units[name]["transfer_h"] = dict(moves)
        for name, roster in self.staff_by_hour.items():
            if name not in roles:
                raise HospitalModelError(f"scenario {self.name!r}.staff_by_hour.{name}", "no such role")
            roles[name]["staff_by_hour"] = roster
        try:
            return parse_model(data)
        except HospitalModelError as error:
            raise HospitalModelError(f"scenario {self.name!r}: {error.field}", error.message) from None


BASELINE = Scenario(name="baseline")


def moved_beds(model: HospitalModel, source: str, target: str, beds: int, name: str | None = None) -> Scenario:
    """Move ``beds`` beds from unit ``source`` to unit ``target``."""
    current = {u.name: u.beds for u in model.units}
    for field, unit in (("source", source), ("target", target)):
        if unit not in current:
            raise HospitalModelError(field, f"no unit {unit!r}")
    return Scenario(name=name or f"{beds} beds {source}->{target}",
                    beds={source: current[source] - beds, target: current[target] + beds})
