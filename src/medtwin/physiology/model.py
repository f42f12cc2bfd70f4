"""Model declaration: states, parameters, inputs and outputs as data, plus a pure vectorised RHS.

A model never calls a solver. Its right-hand side is ``rhs(t, y, p, u) -> dydt`` on arrays shaped
``(n_patients, n_states)``; ``p`` is ``(n_patients, n_parameters)`` in the declared parameter order and
``u`` is ``(n_patients, n_inputs)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


@dataclass(frozen=True)
class StateSpec:
    name: str
    unit: str
    description: str = ""


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    unit: str
    description: str = ""
    source: str = ""


@dataclass(frozen=True)
class InputSpec:
    name: str
    unit: str
    description: str = ""


@dataclass(frozen=True)
class OutputSpec:
    name: str
    unit: str
    description: str = ""


@dataclass(frozen=True)
class Model:
    """A mechanistic model as data: its declarations and its pure right-hand side."""

    name: str
    states: tuple[StateSpec, ...]
    parameters: tuple[ParameterSpec, ...]
    inputs: tuple[InputSpec, ...]
    outputs: tuple[OutputSpec, ...]
    rhs: Callable[[float, Array, Array, Array], Array]
    reference: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.states)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    def state_index(self, name: str) -> int:
        return self.state_names.index(name)

    def parameter_index(self, name: str) -> int:
        return self.parameter_names.index(name)
