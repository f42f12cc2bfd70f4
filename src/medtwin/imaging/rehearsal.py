"""Rehearsal of a planned trajectory: step from the entry to the target and say, at each step, what is near.

At each step (``step_mm`` apart, both ends included) the position in mm (the grid's frame), the depth from the
entry, the structure the tip is in (from a label map, if given), and every critical structure's distance in mm
(the same conservative distance maps the planner ranks with: :func:`medtwin.imaging.planning.distance_maps`),
nearest first, with whether it is within its safety margin (it never is on a path the planner proposed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from medtwin.imaging.planning import (
    DistanceMaps,
    PlanningError,
    check_positive_mm,
    path_samples,
    structure_distances,
)
from medtwin.imaging.volume import Frame, Triple, Volume, triple


@dataclass(frozen=True)
class Nearby:
    name: str
    distance_mm: float
    margin_mm: float

    @property
    def within_margin(self) -> bool:
        return self.distance_mm < self.margin_mm


@dataclass(frozen=True)
class Step:
    index: int
    depth_mm: float
    position_mm: Triple
    inside: str
    nearby: tuple[Nearby, ...]  # nearest first

    def as_dict(self) -> dict[str, object]:
        return {"index": self.index, "depth_mm": self.depth_mm, "position_mm": list(self.position_mm),
                "inside": self.inside,
                "nearby": [{"name": n.name, "distance_mm": n.distance_mm, "margin_mm": n.margin_mm,
                            "within_margin": n.within_margin} for n in self.nearby]}


@dataclass(frozen=True)
class Rehearsal:
    frame: Frame
    length_mm: float
    steps: tuple[Step, ...]


def _label_names(labels: Volume | None, points: NDArray[np.float64]) -> list[str]:
    if labels is None:
        return [""] * len(points)
    ijk = np.rint(labels.world_to_index(points)).astype(int)
    ijk = np.clip(ijk, 0, np.asarray(labels.shape) - 1)
    values = np.asarray(labels.data)[ijk[:, 0], ijk[:, 1], ijk[:, 2]]
    return [labels.labels.get(int(v), "" if int(v) == 0 else f"label {int(v)}") for v in values]


def rehearse(maps: DistanceMaps, entry_mm: object, target_mm: object, step_mm: float = 1.0,
             labels: Volume | None = None) -> Rehearsal:
    """The steps from ``entry_mm`` to ``target_mm`` (mm in the maps' frame)."""
    check_positive_mm("step_mm", step_mm)
    ends = []
    for name, value in (("entry_mm", entry_mm), ("target_mm", target_mm)):
        p = np.asarray(value, dtype=np.float64)
        if p.shape != (3,) or not np.all(np.isfinite(p)):
            raise PlanningError(name, "must be three finite numbers (x, y, z) in mm")
        if not bool(maps.grid.contains(p)):
            raise PlanningError(name, f"{p.round(2).tolist()} mm ({maps.grid.frame}) lies outside the image")
        ends.append(p)
    if labels is not None and labels.shape != maps.grid.shape:
        raise PlanningError("labels", f"shape {labels.shape} does not match the planning grid {maps.grid.shape}")
    entry, target = ends
    points = path_samples(entry, target, step_mm)
    distances = structure_distances(maps, points)
    depth = np.linalg.norm(points - entry, axis=1)
    inside = _label_names(labels, points)
    steps = []
    for k, p in enumerate(points):
        order = np.argsort(distances[k], kind="stable")
        nearby = tuple(Nearby(maps.names[s], float(distances[k, s]), maps.margins_mm[s]) for s in order)
        steps.append(Step(k, float(depth[k]), triple(p), inside[k], nearby))
    return Rehearsal(maps.grid.frame, float(np.linalg.norm(target - entry)), tuple(steps))
