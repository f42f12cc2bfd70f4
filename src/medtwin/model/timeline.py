"""A generic scenario: output times, a piecewise-constant input schedule and doses, for any model.

Inputs are held from each step time to the next (right-continuous); doses are instantaneous jumps declared
by the model's dose routes. An amount may be a number, one value per patient, or a function of the state
at the dose time (a bolus calculator): ``amount(t, y (n, k), p (n, P)) -> (n,)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medtwin.arrays import Array
from medtwin.model.errors import ModelInputError
from medtwin.model.spec import Model

Amount = float | Array | Callable[[float, Array, Array], Array]
MAX_OUTPUT_TIMES = 200_000


@dataclass(frozen=True)
class Dose:
    route: str
    time: float
    amount: Amount


@dataclass(frozen=True)
class Timeline:
    """``t_eval`` (m,) output times; ``input_times`` (K,) step starts; ``input_values`` (1 or n, K, I)."""

    t_eval: Array
    input_times: Array = field(default_factory=lambda: np.zeros(1))
    input_values: Array | None = None
    doses: tuple[Dose, ...] = ()

    def values_for(self, model: Model, n: int) -> Array:
        """(n, K, I) input values (zeros when the timeline gives none)."""
        k, i = self.input_times.shape[0], len(model.inputs)
        if self.input_values is None:
            return np.zeros((n, k, i))
        values = np.asarray(self.input_values, dtype=float)
        if values.ndim != 3 or values.shape[1:] != (k, i) or values.shape[0] not in (1, n):
            raise ModelInputError("inputs", f"expected values shaped (1 or {n}, {k}, {i}), got {values.shape}")
        return np.broadcast_to(values, (n, k, i))

    @classmethod
    def from_dict(cls, model: Model, data: Mapping[str, Any]) -> Timeline:
        """Read ``{"t_eval": [...] | {"start", "stop", "step"}, "inputs": {name: [[t, value], ...]},
        "doses": [{"route", "time", "amount"}]}``; units are the model's declared ones. Errors name the field."""
        if not isinstance(data, Mapping):
            raise ModelInputError("scenario", "must be a mapping")
        unknown = set(data) - {"t_eval", "inputs", "doses"}
        if unknown:
            raise ModelInputError(sorted(unknown)[0], "unknown scenario field (t_eval, inputs, doses)")
        t_eval = _output_times(data.get("t_eval"))
        times, values = _inputs(model, data.get("inputs") or {}, t_eval)
        raw_doses = data.get("doses") or []
        if not isinstance(raw_doses, Sequence) or isinstance(raw_doses, str):
            raise ModelInputError("doses", "must be a list of {route, time, amount}")
        doses = tuple(_dose(model, i, d, t_eval) for i, d in enumerate(raw_doses))
        return cls(t_eval=t_eval, input_times=times, input_values=values, doses=doses)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ModelInputError(where, f"must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ModelInputError(where, "must be finite")
    return number


def _output_times(raw: Any) -> Array:
    if raw is None:
        raise ModelInputError("t_eval", "give the output times (a list, or start/stop/step)")
    if isinstance(raw, Mapping):
        start = _number(raw.get("start", 0.0), "t_eval.start")
        stop = _number(raw.get("stop"), "t_eval.stop")
        step = _number(raw.get("step"), "t_eval.step")
        if step <= 0 or stop <= start:
            raise ModelInputError("t_eval", "needs step > 0 and stop > start")
        count = (stop - start) / step + 1e-9 + 1
        if not count <= MAX_OUTPUT_TIMES:
            raise ModelInputError("t_eval", f"more than {MAX_OUTPUT_TIMES} output times")
        return start + step * np.arange(int(math.floor(count)), dtype=float)
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise ModelInputError("t_eval", "must be a non-empty list of times")
    if len(raw) > MAX_OUTPUT_TIMES:
        raise ModelInputError("t_eval", f"more than {MAX_OUTPUT_TIMES} output times")
    times = np.array([_number(v, f"t_eval[{i}]") for i, v in enumerate(raw)])
    if times.size > 1 and not np.all(np.diff(times) > 0):
        raise ModelInputError("t_eval", "times must be strictly increasing")
    return times


def _inputs(model: Model, raw: Any, t_eval: Array) -> tuple[Array, Array | None]:
    if not isinstance(raw, Mapping):
        raise ModelInputError("inputs", "must map input names to [[time, value], ...]")
    if not raw:
        return np.array([t_eval[0]]), None
    steps: dict[str, list[tuple[float, float]]] = {}
    for name, changes in raw.items():
        if name not in model.input_names:
            raise ModelInputError(f"inputs.{name}", f"unknown input; {model.name} has {', '.join(model.input_names)}")
        spec = model.inputs[model.input_names.index(name)]
        if not isinstance(changes, Sequence) or isinstance(changes, str):
            raise ModelInputError(f"inputs.{name}", "must be a list of [time, value] pairs")
        pairs: list[tuple[float, float]] = []
        for j, pair in enumerate(changes):
            where = f"inputs.{name}[{j}]"
            if not isinstance(pair, Sequence) or isinstance(pair, str) or len(pair) != 2:
                raise ModelInputError(where, "must be a [time, value] pair")
            t, v = _number(pair[0], where + ".time"), _number(pair[1], where + ".value")
            if v < 0 or v > spec.upper:
                raise ModelInputError(where + ".value", f"{v} {spec.unit} is outside [0, {spec.upper:g}] {spec.unit}")
            if pairs and t <= pairs[-1][0]:
                raise ModelInputError(where + ".time", "times must be strictly increasing")
            pairs.append((t, v))
        steps[name] = pairs
    grid = np.unique(np.concatenate([[t_eval[0]], [t for pairs in steps.values() for t, _ in pairs]]))
    values = np.zeros((1, grid.size, len(model.inputs)))
    for name, pairs in steps.items():
        column = model.input_names.index(name)
        for t, v in pairs:
            values[0, grid >= t, column] = v
    return grid, values


def _dose(model: Model, i: int, raw: Any, t_eval: Array) -> Dose:
    where = f"doses[{i}]"
    if not isinstance(raw, Mapping):
        raise ModelInputError(where, "must be {route, time, amount}")
    route = raw.get("route")
    if not isinstance(route, str) or route not in model.dose_names:
        raise ModelInputError(where + ".route", f"unknown dose route {route!r}; {model.name} has "
                                                f"{', '.join(model.dose_names) or 'none'}")
    spec = model.dose_route(route)
    time = _number(raw.get("time"), where + ".time")
    amount = _number(raw.get("amount"), where + ".amount")
    if amount < 0 or amount > spec.upper:
        raise ModelInputError(where + ".amount", f"{amount} {spec.unit} is outside [0, {spec.upper:g}] {spec.unit}")
    if time < t_eval[0] or time > t_eval[-1]:
        raise ModelInputError(where + ".time", "outside the output time range")
    return Dose(route=route, time=time, amount=amount)
