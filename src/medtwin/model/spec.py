"""Model declaration: states, parameters, inputs, dose routes and outputs as data, plus a pure vectorised RHS.

A model never calls a solver. Its right-hand side is ``rhs(t, y, p, u) -> dydt`` on arrays shaped
``(n, n_states)``; ``p`` is ``(n, n_parameters)`` in the declared parameter order and ``u`` is
``(n, n_inputs)``. See :mod:`medtwin.model` for the design.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

import numpy as np
from numpy.typing import NDArray

from medtwin.arrays import Array
from medtwin.model.errors import ModelInputError

if TYPE_CHECKING:
    from medtwin.model.timeline import Timeline

RightHandSide = Callable[[float, Array, Array, Array], Array]
ScalarRightHandSide = Callable[[float, Sequence[float], Sequence[float], Sequence[float]], list[float]]
InputStepJump = Callable[[float, Array, Array, Array, Array], Array]
Observe = Callable[[Array, Array], Array]
InitialState = Callable[[Array], Array]


@dataclass(frozen=True)
class QuantitySpec:
    """What every declared quantity has: its name, its unit and what it means (states, parameters, inputs
    and outputs extend it; field order, and so positional construction, is the same for all)."""

    name: str
    unit: str
    description: str = ""


@dataclass(frozen=True)
class StateSpec(QuantitySpec):
    """A state variable of the right-hand side."""


@dataclass(frozen=True)
class ParameterSpec(QuantitySpec):
    """A parameter: unit, meaning, source; ``default`` the typical value; the population distribution is
    log-normal around the row's value with SD ``prior_sd_log`` (0: fixed, never fitted); ``lower``/``upper``
    bound the documented range the model is valid over."""

    source: str = ""
    default: float = math.nan
    prior_sd_log: float = 0.0
    lower: float = 0.0
    upper: float = math.inf


@dataclass(frozen=True)
class InputSpec(QuantitySpec):
    """A piecewise-constant input (a rate: carbohydrate g/min, insulin U/min, inflow mL/s)."""

    upper: float = math.inf  # largest value of the documented range


@dataclass(frozen=True)
class OutputSpec(QuantitySpec):
    """An observable output of the model (what a measurement is compared with)."""


@dataclass(frozen=True)
class DoseRoute:
    """An instantaneous dose: ``state += scale(amount, p)`` at its time (plus the ``lag`` parameter, if named).

    ``unit`` is the unit of the amount (``U``, ``mg``); ``scale(amount (n,), p (n, P))`` converts it to the
    state's unit per patient (``None``: the amount as it is)."""

    name: str
    unit: str
    state: str
    description: str = ""
    scale: Callable[[Array, Array], Array] | None = None
    lag: str | None = None
    upper: float = math.inf


class _NamesOf:
    """A read-only attribute: the names of one declared tuple of specs, in declared order (``state_names =
    _NamesOf("states")``); one definition for the model's five name lists. Not annotated, so not a field."""

    def __init__(self, specs: str) -> None:
        self.specs = specs

    @overload
    def __get__(self, model: None, owner: type[Model]) -> _NamesOf: ...
    @overload
    def __get__(self, model: Model, owner: type[Model] | None = None) -> tuple[str, ...]: ...
    def __get__(self, model: Model | None, owner: type[Model] | None = None) -> tuple[str, ...] | _NamesOf:
        if model is None:
            return self
        specs: tuple[QuantitySpec | DoseRoute, ...] = getattr(model, self.specs)
        return tuple(spec.name for spec in specs)


@dataclass(frozen=True)
class Model:
    """A mechanistic model as data: its declarations and its pure right-hand side (see module docstring)."""

    name: str
    states: tuple[StateSpec, ...]
    parameters: tuple[ParameterSpec, ...]
    inputs: tuple[InputSpec, ...]
    outputs: tuple[OutputSpec, ...]
    rhs: RightHandSide
    reference: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    doses: tuple[DoseRoute, ...] = ()
    time_unit: str = "min"
    observe: Observe | None = None  # (states (..., n, k), params (n, P)) -> outputs (..., n, n_outputs)
    initial_state: InitialState | None = None  # params (n, P) -> y0 (n, k); default zeros
    drifting: tuple[str, ...] = ()
    on_input_step: InputStepJump | None = None
    input_stops: Callable[[Array], NDArray[np.bool_]] | None = None  # input values (n, K, I) -> bool (K,) steps to stop at
    analytic: Callable[[Model, Array, Timeline], Array] | None = None  # -> states (m, n, k)
    rhs_scalar: ScalarRightHandSide | None = None
    parameter_file: str = ""  # "package:relative/path.csv" or a file path; see medtwin.model.parameters
    nonnegative: tuple[str, ...] = ()  # states clipped at 0 in filters
    derive: Callable[[Array], Array] | None = None  # params (n, P) -> params with derived ones recomputed

    state_names = _NamesOf("states")
    parameter_names = _NamesOf("parameters")
    input_names = _NamesOf("inputs")
    output_names = _NamesOf("outputs")
    dose_names = _NamesOf("doses")

    def state_index(self, name: str) -> int:
        return _index(self.state_names, name, "state")

    def parameter_index(self, name: str) -> int:
        return _index(self.parameter_names, name, "parameter")

    def output_index(self, name: str) -> int:
        return _index(self.output_names, name, "output")

    def dose_route(self, name: str) -> DoseRoute:
        return self.doses[_index(self.dose_names, name, "dose route")]

    def defaults(self) -> Array:
        """(1, P) the declared default of every parameter."""
        values = np.array([[p.default for p in self.parameters]], dtype=float)
        missing = [p.name for p in self.parameters if not math.isfinite(p.default)]
        if missing:
            raise ModelInputError(missing[0], f"{self.name} declares no default; load a parameter file")
        return values

    def check_parameters(self, params: Any) -> Array:
        """``params`` as a finite (n, P) array in declared order; errors name the parameter."""
        values = np.asarray(params, dtype=float)
        if values.ndim == 1:
            values = values[None, :]
        if values.ndim != 2 or values.shape[1] != len(self.parameters):
            raise ModelInputError("params", f"expected shape (n, {len(self.parameters)}) for {self.name}, "
                                            f"got {values.shape}")
        for j, spec in enumerate(self.parameters):
            column = values[:, j]
            if not np.all(np.isfinite(column)):
                raise ModelInputError(spec.name, "must be finite")
        return values

    def consistent(self, params: Array) -> Array:
        """Parameter rows with the model's derived parameters recomputed from the others (e.g. the basal
        steady state after a fit moved the basal glucose); the rows as they are without ``derive``."""
        return params if self.derive is None else np.asarray(self.derive(params), dtype=float)

    def start(self, params: Array) -> Array:
        """(n, k) initial states for parameter rows ``params``."""
        if self.initial_state is None:
            return np.zeros((params.shape[0], len(self.states)))
        return np.asarray(self.initial_state(params), dtype=float)

    def outputs_of(self, states: Array, params: Array) -> Array:
        """Outputs (..., n, n_outputs) of states (..., n, k); default: the states named like the outputs."""
        if self.observe is not None:
            return np.asarray(self.observe(states, params), dtype=float)
        index = [self.state_index(o.name) for o in self.outputs]
        return np.asarray(states[..., index], dtype=float)

    def describe(self) -> dict[str, Any]:
        """JSON-ready declaration (units everywhere): what ``GET /twin-kinds`` and the CLI show."""
        def unit_list(items: Sequence[QuantitySpec]) -> list[dict[str, str]]:
            return [{"name": x.name, "unit": x.unit, "description": x.description} for x in items]

        return {
            "name": self.name,
            "reference": self.reference,
            "time_unit": self.time_unit,
            "states": unit_list(self.states),
            "parameters": [{"name": p.name, "unit": p.unit, "description": p.description,
                            "default": None if not math.isfinite(p.default) else p.default,
                            "prior_sd_log": p.prior_sd_log, "source": p.source} for p in self.parameters],
            "inputs": unit_list(self.inputs),
            "doses": [{"name": d.name, "unit": d.unit, "state": d.state, "description": d.description}
                      for d in self.doses],
            "outputs": unit_list(self.outputs),
            "drifting": list(self.drifting),
            "analytic": self.analytic is not None,
        }


def _index(names: tuple[str, ...], name: str, what: str) -> int:
    try:
        return names.index(name)
    except ValueError:
        raise ModelInputError(name, f"unknown {what}; known: {', '.join(names)}") from None
