"""Planned trajectories out of the twin: CSV, 3D Slicer markups JSON, and a FHIR R4 Procedure.

Every export states its coordinate frame, and converts when asked for the other one (``RAS = diag(-1, -1, 1)
LPS``, :data:`medtwin.imaging.volume.LPS_TO_RAS`): the commonest planning error between tools is a point read in
the wrong frame (Slicer #4445, #5097).

* CSV: one row per point (entry, target) with ``x_mm, y_mm, z_mm`` and the frame on every row.
* Slicer markups (``.mrk.json``, schema v1.0.3): one ``Line`` markup per trajectory, ``coordinateSystem`` set
  to the frame the positions are in, ``coordinateUnits`` "mm", control points "entry" then "target".
* FHIR: a ``Procedure`` with ``status: preparation`` (the procedure is being prepared, not started; FHIR R4's
  event status for exactly that), ``bodySite`` the target structure, and the entry/target points in an
  extension per electrode (see docs/imaging.md for why Procedure rather than ServiceRequest or CarePlan).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from medtwin.imaging.planning import PlanningError, Trajectory
from medtwin.imaging.volume import FRAMES, LPS_TO_RAS, Frame
from medtwin.vocab.systems import UCUM

SLICER_SCHEMA = ("https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/"
                 "Schema/markups-schema-v1.0.3.json#")
#: Our extension for one planned trajectory (entry and target points in mm with their frame).
TRAJECTORY_EXTENSION = "urn:medtwin:fhir:StructureDefinition:planned-trajectory"
#: The images the plan was made on (an ImagingStudy reference).
IMAGE_EXTENSION = "urn:medtwin:fhir:StructureDefinition:planned-on-imaging-study"
CSV_COLUMNS = ("electrode", "rank", "point", "x_mm", "y_mm", "z_mm", "frame", "length_mm", "angle_deg", "risk",
               "min_distance_mm", "nearest_structure")


def _frame(frame: str) -> Frame:
    if frame not in FRAMES:
        raise PlanningError("frame", f"must be one of {FRAMES}, got {frame!r}")
    return frame  # type: ignore[return-value]


def point_in(t: Trajectory, which: str, frame: Frame) -> list[float]:
    """``t``'s entry or target in mm in ``frame`` (LPS <-> RAS flips x and y)."""
    p = np.asarray(t.entry_mm if which == "entry" else t.target_mm, dtype=np.float64)
    if frame != t.frame:
        p = LPS_TO_RAS[:3, :3] @ p
    return [float(v) for v in p]


def _check(trajectories: Sequence[Trajectory]) -> None:
    if not trajectories:
        raise PlanningError("trajectories", "nothing to export: no trajectory given")


def _name(t: Trajectory) -> str:
    return t.electrode or f"trajectory-{t.rank}"


def to_csv(trajectories: Sequence[Trajectory], frame: str = "RAS") -> str:
    """CSV text: a header, then an entry row and a target row per trajectory, coordinates in ``frame``."""
    _check(trajectories)
    f = _frame(frame)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for t in trajectories:
        for which in ("entry", "target"):
            x, y, z = point_in(t, which, f)
            writer.writerow([_name(t), t.rank, which, f"{x:.3f}", f"{y:.3f}", f"{z:.3f}", f, f"{t.length_mm:.3f}",
                             f"{t.angle_deg:.2f}", f"{t.risk:.4f}", f"{t.min_distance_mm:.3f}", t.nearest_structure])
    return out.getvalue()


def _control_point(index: int, label: str, position: list[float]) -> dict[str, Any]:
    return {"id": str(index), "label": label, "description": "", "associatedNodeID": "", "position": position,
            "orientation": [-1.0, -0.0, -0.0, -0.0, -1.0, -0.0, 0.0, 0.0, 1.0], "selected": True, "locked": True,
            "visibility": True, "positionStatus": "defined"}


def to_slicer_markups(trajectories: Sequence[Trajectory], frame: str = "LPS") -> dict[str, Any]:
    """A Slicer markups document: one locked ``Line`` per trajectory (entry -> target) in ``frame``."""
    _check(trajectories)
    f = _frame(frame)
    markups = []
    for t in trajectories:
        markups.append({
            "type": "Line", "name": _name(t), "coordinateSystem": f, "coordinateUnits": "mm", "locked": True,
            "fixedNumberOfControlPoints": True, "labelFormat": "%N-%d",
            "controlPoints": [_control_point(1, "entry", point_in(t, "entry", f)),
                              _control_point(2, "target", point_in(t, "target", f))],
            "measurements": [{"name": "length", "enabled": True, "value": t.length_mm, "units": "mm",
                              "printFormat": "%-#4.4g%s"}],
        })
    return {"@schema": SLICER_SCHEMA, "markups": markups}


def _decimal(value: float, places: int = 3) -> float:
    return float(round(value, places))


def _extension(t: Trajectory, frame: Frame) -> dict[str, Any]:
    def point(which: str) -> dict[str, Any]:
        x, y, z = point_in(t, which, frame)
        return {"url": which, "valueString": f"{x:.3f} {y:.3f} {z:.3f}"}

    return {"url": TRAJECTORY_EXTENSION, "extension": [
        {"url": "electrode", "valueString": _name(t)},
        {"url": "frame", "valueCode": frame},
        point("entry"), point("target"),
        {"url": "length", "valueQuantity": {"value": _decimal(t.length_mm), "unit": "mm",
                                            "system": UCUM, "code": "mm"}},
        {"url": "riskScore", "valueDecimal": _decimal(t.risk, 4)},
        {"url": "minDistance", "valueQuantity": {"value": _decimal(t.min_distance_mm), "unit": "mm",
                                                 "system": UCUM, "code": "mm"}},
    ]}


def to_fhir_procedure(trajectories: Sequence[Trajectory], patient_id: str, target_structure: str,
                      frame: str = "LPS", imaging_study_id: str | None = None) -> dict[str, Any]:
    """A FHIR R4 ``Procedure`` in preparation for these trajectories (no ``id``: the store assigns it)."""
    _check(trajectories)
    if not patient_id:
        raise PlanningError("patient_id", "is required: a plan belongs to a patient")
    f = _frame(frame)
    resource: dict[str, Any] = {
        "resourceType": "Procedure",
        "status": "preparation",
        "category": {"text": "Stereotactic planning"},
        "code": {"text": "Planned stereotactic trajectories (depth electrodes / needle)"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "bodySite": [{"text": target_structure or "target"}],
        "extension": [_extension(t, f) for t in trajectories],
        "note": [{"text": "; ".join(
            f"{_name(t)}: length {t.length_mm:.1f} mm, risk {t.risk:.3f}, nearest {t.nearest_structure} "
            f"{t.min_distance_mm:.1f} mm" for t in trajectories) + f". Coordinates in mm, frame {f}."}],
    }
    if imaging_study_id:  # R4 Procedure has no element pointing at an ImagingStudy: an extension does
        resource["extension"].append({"url": IMAGE_EXTENSION, "valueReference": {
            "reference": f"ImagingStudy/{imaging_study_id}"}})
    return resource
