"""What-if for any declared model: run named scenarios over a posterior ensemble, report bands.

Every scenario runs the whole ensemble (parameter rows, e.g. :meth:`MapFit.posterior_samples`) in one
batched simulation; the band of an output is its 5th, 50th and 95th percentile over the members at every
output time, and the summary compares the scenarios on the median's mean, minimum and maximum.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from medtwin.arrays import Array
from medtwin.model.errors import ModelInputError
from medtwin.model.simulate import simulate
from medtwin.model.spec import Model
from medtwin.model.timeline import Timeline
from medtwin.solve import Solver

PERCENTILES = (5.0, 50.0, 95.0)


@dataclass(frozen=True)
class Band:
    scenario: str
    output: str
    unit: str
    t: Array
    p5: Array
    median: Array
    p95: Array

    def to_dict(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "output": self.output, "unit": self.unit, "t": self.t.tolist(),
                "p5": self.p5.tolist(), "median": self.median.tolist(), "p95": self.p95.tolist(),
                "median_mean": float(self.median.mean()), "median_min": float(self.median.min()),
                "median_max": float(self.median.max())}


def compare(model: Model, ensemble: Any, scenarios: Mapping[str, Timeline], output: str | None = None,
            solver: Solver | None = None) -> list[Band]:
    """One band per scenario (in the given order) of ``output`` (default: the model's first output)."""
    params = model.check_parameters(ensemble)
    if not scenarios:
        raise ModelInputError("scenarios", "give at least one scenario")
    name = output or model.output_names[0]
    unit = model.outputs[model.output_index(name)].unit
    bands = []
    for label, timeline in scenarios.items():
        values = simulate(model, params, timeline, solver).output(name)  # (m, n)
        low, mid, high = np.percentile(values, PERCENTILES, axis=1)
        bands.append(Band(label, name, unit, np.asarray(timeline.t_eval, dtype=float), low, mid, high))
    return bands
