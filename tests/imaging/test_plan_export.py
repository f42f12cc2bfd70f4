"""Plan exports: CSV, Slicer markups JSON and a FHIR Procedure; the frame stated and converted correctly."""

from __future__ import annotations

import csv
import io
import json

import pytest
from fhir.resources.R4B.procedure import Procedure
from hypothesis import given
from hypothesis import strategies as st

from medtwin.imaging.plan_export import (
    TRAJECTORY_EXTENSION,
    point_in,
    to_csv,
    to_fhir_procedure,
    to_slicer_markups,
)
from medtwin.imaging.planning import PlanningError, Trajectory


def trajectory(entry: tuple[float, float, float] = (10.0, -20.0, 50.0), target: tuple[float, float, float] = (
        12.0, -5.0, 8.0), frame: str = "RAS", electrode: str = "LA") -> Trajectory:
    length = sum((a - b) ** 2 for a, b in zip(entry, target, strict=True)) ** 0.5
    return Trajectory(entry, target, frame, length, 12.5, 0.1234, 1.5, 3.5, "vessel", 1, electrode)  # type: ignore[arg-type]


def test_csv_states_the_frame_and_flips_x_y_between_ras_and_lps() -> None:
    t = trajectory()
    rows = list(csv.DictReader(io.StringIO(to_csv([t], frame="LPS"))))
    assert [r["point"] for r in rows] == ["entry", "target"] and {r["frame"] for r in rows} == {"LPS"}
    assert [float(rows[0][k]) for k in ("x_mm", "y_mm", "z_mm")] == [-10.0, 20.0, 50.0]
    same = list(csv.DictReader(io.StringIO(to_csv([t], frame="RAS"))))
    assert [float(same[1][k]) for k in ("x_mm", "y_mm", "z_mm")] == [12.0, -5.0, 8.0]
    assert float(same[0]["risk"]) == pytest.approx(0.1234) and same[0]["electrode"] == "LA"


@given(st.tuples(*[st.floats(-300, 300, allow_nan=False)] * 3), st.sampled_from(["LPS", "RAS"]),
       st.sampled_from(["LPS", "RAS"]))
def test_frame_conversion_round_trips(p: tuple[float, float, float], source: str, out: str) -> None:
    t = trajectory(entry=p, frame=source)
    there = point_in(t, "entry", out)  # type: ignore[arg-type]
    back = point_in(trajectory(entry=tuple(there), frame=out), "entry", source)  # type: ignore[arg-type]
    assert back == pytest.approx(list(p))
    assert there[2] == p[2] and (there[0] == p[0]) == (source == out or p[0] == 0.0)


def test_slicer_markups_line_per_trajectory_with_the_coordinate_system_of_its_positions() -> None:
    doc = to_slicer_markups([trajectory(), trajectory(electrode="RH")], frame="LPS")
    doc = json.loads(json.dumps(doc))
    assert doc["@schema"].endswith("markups-schema-v1.0.3.json#") and len(doc["markups"]) == 2
    line = doc["markups"][0]
    assert line["type"] == "Line" and line["coordinateSystem"] == "LPS" and line["coordinateUnits"] == "mm"
    assert [p["label"] for p in line["controlPoints"]] == ["entry", "target"]
    assert line["controlPoints"][0]["position"] == [-10.0, 20.0, 50.0]  # RAS (10, -20, 50) in LPS
    assert all(p["positionStatus"] == "defined" for p in line["controlPoints"])
    assert doc["markups"][1]["name"] == "RH"
    ras = to_slicer_markups([trajectory()], frame="RAS")["markups"][0]
    assert ras["coordinateSystem"] == "RAS" and ras["controlPoints"][1]["position"] == [12.0, -5.0, 8.0]


def test_fhir_procedure_is_valid_r4_in_preparation_with_the_points() -> None:
    resource = to_fhir_procedure([trajectory()], "pat-1", "left amygdala", frame="LPS", imaging_study_id="st-9")
    Procedure.model_validate(resource)  # R4B structure (Procedure unchanged from R4)
    assert resource["status"] == "preparation" and resource["subject"]["reference"] == "Patient/pat-1"
    assert resource["bodySite"][0]["text"] == "left amygdala"
    ext = next(e for e in resource["extension"] if e["url"] == TRAJECTORY_EXTENSION)
    parts = {e["url"]: e for e in ext["extension"]}
    assert parts["frame"]["valueCode"] == "LPS"
    assert parts["entry"]["valueString"] == "-10.000 20.000 50.000"
    assert parts["riskScore"]["valueDecimal"] == pytest.approx(0.1234)
    assert any(e.get("valueReference", {}).get("reference") == "ImagingStudy/st-9" for e in resource["extension"])


def test_bad_export_input_names_the_field() -> None:
    with pytest.raises(PlanningError) as info:
        to_csv([], "RAS")
    assert info.value.field == "trajectories"
    with pytest.raises(PlanningError) as info:
        to_slicer_markups([trajectory()], frame="XYZ")
    assert info.value.field == "frame"
    with pytest.raises(PlanningError) as info:
        to_fhir_procedure([trajectory()], "", "amygdala")
    assert info.value.field == "patient_id"
