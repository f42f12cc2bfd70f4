"""Stereo-EEG style planning on a phantom head: ranked safe trajectories, two electrodes kept apart, the rehearsal
of the best path, and the plan exported as CSV, Slicer markups (LPS) and a FHIR Procedure."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from medtwin.imaging import phantoms as ph
from medtwin.imaging.plan_export import to_csv, to_fhir_procedure, to_slicer_markups
from medtwin.imaging.plan_labels import plan_on_labels
from medtwin.imaging.planning import Electrode, Limits, entries_from_mask, plan_electrodes
from medtwin.imaging.rehearsal import rehearse


def head() -> ph.Volume:
    g = ph.grid((72, 84, 68), (1.0, 1.0, 1.0), origin_mm=(-36.0, -42.0, -34.0))
    return ph.label_volume([
        (ph.Ellipsoid([0, 0, 0], [32, 38, 30]), 1),
        (ph.Tube(np.array([[0.0, 40.0, 22.0], [0.0, 0.0, 30.0], [0.0, -40.0, 22.0]]), 2.5, bend_radius_mm=40), 2),
        (ph.Tube(np.array([[-34.0, -10.0, 4.0], [-14.0, 0.0, 22.0], [-4.0, 10.0, 28.0]]), 1.2, bend_radius_mm=15), 2),
        (ph.Tube(np.array([[-27.0, -40.0, -8.0], [-27.0, 40.0, -8.0]]), 1.5), 2),  # a vessel on the lateral route
        (ph.Ellipsoid([8.0, 0.0, 6.0], [5.0, 14.0, 6.0]), 3),
        (ph.Ellipsoid([-18.0, -6.0, -12.0], [4.0, 9.0, 4.0]), 4),
    ], g, names={1: "head", 2: "vessel", 3: "ventricle", 4: "hippocampus"})


def main() -> None:
    labels = head()
    limits = Limits(max_length_mm=90.0, max_angle_deg=35.0)
    result = plan_on_labels(labels, margins_mm={"vessel": 2.0, "ventricle": 3.0}, target_label="hippocampus",
                            limits=limits, max_entries=500, max_targets=60, top=5)
    plan = result.plan
    print(f"{result.entries} entries x {result.targets} targets = {plan.evaluated} paths; removed {plan.rejected}")
    for t in plan.candidates:
        print(f"  #{t.rank}: risk {t.risk:.3f}, nearest {t.nearest_structure} {t.min_distance_mm:.1f} mm, "
              f"length {t.length_mm:.1f} mm, angle {t.angle_deg:.1f} deg")
    best = plan.candidates[0]
    steps = rehearse(result.maps, best.entry_mm, best.target_mm, step_mm=5.0, labels=labels).steps
    for s in steps:
        print(f"  depth {s.depth_mm:5.1f} mm in {s.inside or '-':12} nearest {s.nearby[0].name} "
              f"{s.nearby[0].distance_mm:.1f} mm")
    data = np.asarray(labels.data)
    entries = entries_from_mask(labels, data > 0, max_points=500)
    pair = plan_electrodes(result.maps, entries, [Electrode("H1", [-18.0, -10.0, -12.0]),
                                                  Electrode("H2", [-18.0, 0.0, -12.0])], limits)
    print("two electrodes: " + "; ".join(f"{e.electrode} risk {e.risk:.3f}" for e in pair))
    out = Path(tempfile.mkdtemp(prefix="medtwin-plan-"))
    (out / "plan.csv").write_text(to_csv(pair, "LPS"), encoding="utf-8")
    (out / "plan.mrk.json").write_text(json.dumps(to_slicer_markups(pair, "LPS"), indent=1), encoding="utf-8")
    procedure = to_fhir_procedure(pair, "example-patient", "left hippocampus", frame="LPS")
    print(f"exported to {out}: plan.csv, plan.mrk.json; FHIR {procedure['resourceType']} ({procedure['status']})")


if __name__ == "__main__":
    main()
