"""Rehearsal along a planned path: distances at each step against the exact phantom surfaces."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medtwin.imaging import phantoms as ph
from medtwin.imaging.planning import Critical, PlanningError, distance_maps
from medtwin.imaging.rehearsal import rehearse

GRID = ph.grid((41, 21, 41), (1.0, 1.0, 1.0))
VESSEL = ph.Tube(np.array([[14.0, -5.0, 25.0], [14.0, 25.0, 25.0]]), 2.0)
VENTRICLE = ph.Sphere([28.0, 10.0, 12.0], 4.0)


@pytest.fixture(scope="module")
def setup():  # type: ignore[no-untyped-def]
    labels = ph.label_volume([(VESSEL, 1), (VENTRICLE, 2), (ph.Sphere([20.0, 10.0, 6.0], 2.5), 3)], GRID,
                             names={1: "vessel", 2: "ventricle", 3: "amygdala"})
    data = np.asarray(labels.data)
    maps = distance_maps(GRID, [Critical("vessel", data == 1, 2.0), Critical("ventricle", data == 2, 3.0)])
    return maps, labels


def test_each_step_lists_the_structures_nearest_first_within_a_voxel_of_the_truth(setup) -> None:  # type: ignore[no-untyped-def]
    maps, labels = setup
    r = rehearse(maps, [20.0, 10.0, 38.0], [20.0, 10.0, 6.0], step_mm=1.0, labels=labels)
    assert r.length_mm == pytest.approx(32.0) and len(r.steps) == 33 and r.frame == "RAS"
    assert r.steps[0].depth_mm == 0.0 and r.steps[-1].depth_mm == pytest.approx(32.0)
    assert r.steps[-1].inside == "amygdala" and r.steps[0].inside == ""
    for step in r.steps:
        p = np.asarray(step.position_mm)
        truth = {"vessel": max(float(VESSEL.sdf(p[None])[0]), 0.0),
                 "ventricle": max(float(VENTRICLE.sdf(p[None])[0]), 0.0)}
        assert [n.name for n in step.nearby] == sorted(truth, key=truth.__getitem__) or \
            abs(truth["vessel"] - truth["ventricle"]) < math.sqrt(3)
        for n in step.nearby:
            assert truth[n.name] - math.sqrt(3) <= n.distance_mm <= truth[n.name] + 1e-6  # conservative
    # at the vessel's depth (z = 25) the path passes 6 mm from its axis: 4 mm from its wall
    at = next(s for s in r.steps if s.position_mm[2] == 25.0)
    vessel = next(n for n in at.nearby if n.name == "vessel")
    assert 4.0 - math.sqrt(3) <= vessel.distance_mm <= 4.0 and not vessel.within_margin


def test_a_path_through_a_structure_is_shown_within_its_margin(setup) -> None:  # type: ignore[no-untyped-def]
    maps, _ = setup
    r = rehearse(maps, [14.0, 10.0, 38.0], [14.0, 10.0, 10.0], step_mm=0.5)
    hits = [s for s in r.steps if any(n.name == "vessel" and n.within_margin for n in s.nearby)]
    assert hits and all(abs(s.position_mm[2] - 25.0) <= 2.0 + 2.0 + math.sqrt(3) for s in hits)
    assert min(n.distance_mm for s in hits for n in s.nearby if n.name == "vessel") == 0.0


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"entry_mm": [20.0, 10.0, 99.0]}, "entry_mm"), ({"target_mm": [1.0, 2.0]}, "target_mm"),
    ({"step_mm": 0.0}, "step_mm")])
def test_bad_rehearsal_input_names_the_field(setup, kwargs: dict[str, object], field: str) -> None:  # type: ignore[no-untyped-def]
    maps, _ = setup
    args: dict[str, object] = {"entry_mm": [20.0, 10.0, 38.0], "target_mm": [20.0, 10.0, 6.0], **kwargs}
    with pytest.raises(PlanningError) as info:
        rehearse(maps, **args)  # type: ignore[arg-type]
    assert info.value.field == field
