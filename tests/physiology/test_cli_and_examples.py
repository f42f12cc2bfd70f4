"""The `medtwin glucose` CLI and the glucose examples, run for real."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medtwin.cli.glucose import app

runner = CliRunner()
SCENARIO = "horizon_min: 1440\nmeals:\n  - {at: '07:00', carbs_g: 50}\n  - {at: '12:00', carbs_g: 70}\n  - {at: '19:00', carbs_g: 80}\n"


def test_simulate_writes_csv_metrics_and_offline_plots(tmp_path: Path) -> None:
    scenario = tmp_path / "day.yaml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["simulate", str(scenario), "--patient", "adult#001,child#002", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    lines = (out / "glucose.csv").read_text().splitlines()
    assert len(lines) == 1442 and "adult#001 glucose [mg/dL]" in lines[0]
    first = [float(x) for x in lines[1].split(",")]
    assert first[1] == pytest.approx(138.56, abs=0.01)  # adult#001 published basal glucose Gb
    payload = json.loads((out / "result.json").read_text())
    assert 0 < payload["patients"][0]["metrics"]["time_in_range_70_180_percent"] <= 100
    html = (out / "adult_001_trajectory.html").read_text()
    assert "<svg" in html and "http" not in html.replace("http://www.w3.org/2000/svg", "")
    assert (out / "adult_001_agp.png").read_bytes()[:4] == b"\x89PNG"
    assert "TIR" in result.output


@pytest.mark.parametrize(
    ("scenario", "args", "field"),
    [
        ("meals:\n  - {time_min: 60, carbs_g: -5}\n", ["--patient", "adult#001"], "meals[0].carbs_g"),
        ("horizon_min: 200000\n", ["--patient", "adult#001"], "horizon_min"),
        (SCENARIO, ["--patient", "adult#099"], "patient"),
    ],
)
def test_simulate_bad_input_exits_nonzero_and_writes_nothing(
    tmp_path: Path, scenario: str, args: list[str], field: str
) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(scenario)
    out = tmp_path / "out"
    result = runner.invoke(app, ["simulate", str(file), *args, "--out", str(out)])
    assert result.exit_code == 2
    assert field in result.output
    assert not out.exists()


def test_compare_and_fit_errors(tmp_path: Path) -> None:
    scenario = tmp_path / "day.yaml"
    scenario.write_text(SCENARIO)
    result = runner.invoke(
        app,
        [
            "compare",
            str(scenario),
            "--patient",
            "adult#003",
            "--basal-scale",
            "1.2",
            "--out",
            str(tmp_path / "cmp.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    outcomes = json.loads((tmp_path / "cmp.json").read_text())["outcomes"]
    assert [o["regimen"]["name"] for o in outcomes] == ["current", "basal x1.2"]
    # more basal insulin lowers mean glucose
    assert outcomes[1]["metrics_median"]["mean_mg_dl"] < outcomes[0]["metrics_median"]["mean_mg_dl"]
    log = tmp_path / "log.json"
    log.write_text(
        json.dumps({"body_weight_kg": 70, "basal_u_per_h": 1, "cgm_t_min": [0, 5], "cgm_mg_dl": [100, 900]})
    )
    bad = runner.invoke(app, ["fit", str(log)])
    assert bad.exit_code == 2 and "cgm_mg_dl" in bad.output


@pytest.mark.slow
def test_examples_run(capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(__file__).resolve().parents[2] / "examples"
    for script in sorted(root.glob("glucose_*.py")):
        sys.argv = [str(script)]
        runpy.run_path(str(script), run_name="__main__")
    assert "TIR" in capsys.readouterr().out
