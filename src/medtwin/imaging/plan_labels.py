"""Planning on a label map: the structures named by their labels (what the CLI and the API are given).

The head is every labelled voxel (label > 0) unless ``head_labels`` says which; entries lie on its outer surface,
restricted to ``entry_label``'s voxels when given (a scalp or cortex label). The target is a label (its voxels,
evenly thinned to ``max_targets`` points) or one point in mm. Each critical structure is a label with its
safety margin in mm. Labels are given by value or by name (the label map's ``labels`` table).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from medtwin.imaging.planning import (
    Critical,
    DistanceMaps,
    Electrode,
    Entries,
    Limits,
    Plan,
    PlanningError,
    Trajectory,
    distance_maps,
    entries_from_mask,
    plan_electrodes,
    plan_trajectories,
    planning_reach_mm,
    targets_from_label,
)
from medtwin.imaging.volume import Volume


@dataclass(frozen=True)
class LabelPlan:
    plan: Plan
    maps: DistanceMaps
    target_structure: str
    targets: int
    entries: int


def label_value(labels: Volume, key: int | str, field_name: str) -> int:
    """A label's value from its value or its name; PlanningError naming ``field_name`` when absent."""
    data = np.asarray(labels.data)
    if isinstance(key, str) and not key.lstrip("-").isdigit():
        by_name = {name.lower(): value for value, name in labels.labels.items()}
        if key.lower() not in by_name:
            raise PlanningError(field_name, f"no label named {key!r} (known: {sorted(labels.labels.values())})")
        value = int(by_name[key.lower()])
    else:
        value = int(key)
    if value <= 0 or not np.any(data == value):
        raise PlanningError(field_name, f"label {value} has no voxel in the label map")
    return value


def label_name(labels: Volume, value: int) -> str:
    return labels.labels.get(value, f"label {value}")


def check_label_map(labels: Volume) -> None:
    data = np.asarray(labels.data)
    if not np.issubdtype(data.dtype, np.integer) and not (np.all(np.isfinite(data)) and np.all(data == np.rint(data))):
        raise PlanningError("labels", f"is not a label map (voxels of {data.dtype} with fractional values)")


def criticals_from_labels(labels: Volume, margins_mm: Mapping[int | str, float]) -> list[Critical]:
    """One :class:`Critical` per labelled structure with its margin."""
    if not margins_mm:
        raise PlanningError("criticals", "name at least one critical structure (label and margin in mm)")
    data = np.asarray(labels.data)
    out = []
    for key, margin in margins_mm.items():
        value = label_value(labels, key, f"criticals.{key}")
        out.append(Critical(label_name(labels, value), data == value, float(margin)))
    return out


def banded_maps(labels: Volume, criticals: Sequence[Critical], entries: Entries, targets_mm: object,
                limits: Limits | None) -> DistanceMaps:
    """Distance maps banded at the reach these entries and targets need (:func:`planning_reach_mm`): the plan is
    the one exact maps give, and a rehearsal on them reads exact values (see :class:`DistanceMaps`)."""
    return distance_maps(labels, criticals, reach_mm=planning_reach_mm(labels, criticals, entries, targets_mm, limits))


def plan_on_labels(labels: Volume, *, margins_mm: Mapping[int | str, float], target_label: int | str | None = None,
                   target_mm: Sequence[float] | None = None, entry_label: int | str | None = None,
                   head_labels: Sequence[int | str] | None = None, limits: Limits | None = None,
                   max_entries: int = 500, max_targets: int = 150, top: int = 10, rank_by: str = "risk",
                   maps: DistanceMaps | None = None) -> LabelPlan:
    """Ranked admissible trajectories on ``labels``; see the module docstring (``maps`` reuses distance maps)."""
    check_label_map(labels)
    data = np.asarray(labels.data)
    if (target_label is None) == (target_mm is None):
        raise PlanningError("target", "give exactly one of target_label and target_mm")
    if target_label is not None:
        value = label_value(labels, target_label, "target_label")
        targets: NDArray[np.float64] = targets_from_label(labels, value, max_points=max_targets)
        structure = label_name(labels, value)
    else:
        targets = np.asarray(target_mm, dtype=np.float64)
        structure = "target point"
    criticals = criticals_from_labels(labels, margins_mm)
    head = data > 0 if head_labels is None else np.isin(
        data, [label_value(labels, h, "head_labels") for h in head_labels])
    entry_mask = None if entry_label is None else data == label_value(labels, entry_label, "entry_label")
    entries = entries_from_mask(labels, head, entry_mask, max_points=max_entries)
    maps = maps or banded_maps(labels, criticals, entries, targets, limits)
    plan = plan_trajectories(maps, entries, targets, limits, top=top, rank_by=rank_by)
    return LabelPlan(plan, maps, structure, int(np.atleast_2d(targets).shape[0]), len(entries.points_mm))


def parse_margins(specs: Sequence[str], field_name: str = "critical") -> dict[int | str, float]:
    """``["vessel:2", "4:3.5"]`` -> ``{"vessel": 2.0, 4: 3.5}`` (label name or value, margin in mm)."""
    out: dict[int | str, float] = {}
    for i, spec in enumerate(specs):
        label, sep, margin = spec.rpartition(":")
        try:
            value = float(margin)
        except ValueError:
            value = float("nan")
        if not sep or not label or not (value >= 0):
            raise PlanningError(f"{field_name}[{i}]", f"{spec!r} must be LABEL:MARGIN_MM (e.g. vessel:2)")
        out[int(label) if label.lstrip("-").isdigit() else label] = value
    return out


def scene_meshes(labels: Volume, roles: Mapping[int | str, str], max_faces: int = 3000,
                 head_faces: int = 1500) -> list[dict[str, object]]:
    """Surface meshes (mm, the label map's frame) of the structures a plan names, for a 3D view: one per
    ``{label: role}`` plus the head's outer surface, decimated (I2's :mod:`medtwin.imaging.mesh`); flat lists."""
    from medtwin.imaging.mesh import MeshError, SurfaceMesh, decimate, mesh_mask

    def flat(name: str, role: str, mask: NDArray[np.bool_], faces: int) -> dict[str, object]:
        mesh: SurfaceMesh = mesh_mask(labels, mask)
        with contextlib.suppress(MeshError):  # a view needs no watertight decimation: else keep the full surface
            mesh = decimate(mesh, faces)
        return {"name": name, "role": role, "vertices_mm": np.round(mesh.vertices_mm, 2).ravel().tolist(),
                "faces": mesh.faces.ravel().tolist()}

    data = np.asarray(labels.data)
    out = [flat("head", "head", data > 0, head_faces)]
    for key, role in roles.items():
        value = label_value(labels, key, f"{role}.{key}")
        out.append(flat(label_name(labels, value), role, data == value, max_faces))
    return out


@dataclass(frozen=True)
class ElectrodeTarget:
    """One electrode of an implantation: its name and a target label or point (mm)."""

    name: str
    target_label: int | str | None = None
    target_mm: Sequence[float] | None = None


def plan_implantation(labels: Volume, electrodes: Sequence[ElectrodeTarget], *,
                      margins_mm: Mapping[int | str, float], entry_label: int | str | None = None,
                      limits: Limits | None = None, max_entries: int = 500, max_targets: int = 50,
                      maps: DistanceMaps | None = None) -> tuple[tuple[Trajectory, ...], DistanceMaps]:
    """Several electrodes on ``labels`` at once: one admissible trajectory each, every pair at least
    ``limits.min_separation_mm`` apart (:func:`medtwin.imaging.planning.plan_electrodes`)."""
    check_label_map(labels)
    if not electrodes:
        raise PlanningError("electrodes", "name at least one electrode")
    wanted = []
    for e in electrodes:
        if (e.target_label is None) == (e.target_mm is None):
            raise PlanningError(f"electrodes.{e.name}.target", "give exactly one of target_label and target_mm")
        if e.target_label is not None:
            value = label_value(labels, e.target_label, f"electrodes.{e.name}.target_label")
            wanted.append(Electrode(e.name, targets_from_label(labels, value, max_points=max_targets)))
        else:
            wanted.append(Electrode(e.name, e.target_mm))
    criticals = criticals_from_labels(labels, margins_mm)
    data = np.asarray(labels.data)
    entry_mask = None if entry_label is None else data == label_value(labels, entry_label, "entry_label")
    entries = entries_from_mask(labels, data > 0, entry_mask, max_points=max_entries)
    if maps is None:
        try:
            every_target = np.concatenate([np.atleast_2d(np.asarray(e.targets_mm, dtype=np.float64)) for e in wanted])
            maps = banded_maps(labels, criticals, entries, every_target, limits)
        except (TypeError, ValueError, PlanningError):  # plan_electrodes names the electrode and field
            maps = distance_maps(labels, criticals)
    return plan_electrodes(maps, entries, wanted, limits, per_electrode=200), maps
