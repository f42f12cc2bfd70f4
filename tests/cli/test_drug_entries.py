"""`medtwin drug compare --regimen` and `individualise --level`: a bad repeated value names the option, its index
and the text (too few/many parts, or a number that does not read), and the command exits 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medtwin.cli.drug import app


def _run(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(app, args)
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.parametrize(("regimen", "expected"), [
    ("300 mg", "regimen[1]: '300 mg' must be 'DOSE,INTERVAL_H[,N_DOSES[,INFUSION_H]]'"),
    ("300 mg,twelve", "regimen[1]: cannot read numbers in '300 mg,twelve'"),
    ("300 mg,12,4.5", "regimen[1]: cannot read numbers in '300 mg,12,4.5'"),
])
def test_bad_regimen_names_option_index_and_text(regimen: str, expected: str) -> None:
    code, output = _run(["compare", "theophylline", "--regimen", "300 mg,12,4", "--regimen", regimen,
                         "--samples", "10"])
    assert code == 2
    assert expected in output


@pytest.mark.parametrize(("level", "expected"), [
    ("2,10", "level[0]: '2,10' must be 'TIME_H,VALUE,UNIT'"),
    ("2,10,mg/L,x", "level[0]: '2,10,mg/L,x' must be 'TIME_H,VALUE,UNIT'"),
    ("2,ten,mg/L", "level[0]: cannot read numbers in '2,ten,mg/L'"),
    ("-1,10,mg/L", "level[0]: cannot read numbers in '-1,10,mg/L'"),  # the Level model refuses a negative time
])
def test_bad_level_names_option_index_and_text(tmp_path: Path, level: str, expected: str) -> None:
    history = tmp_path / "history.json"
    history.write_text(json.dumps([{"time_h": 0, "amount": "1 g", "route": "iv_infusion",
                                    "infusion_duration_h": 1}]))
    code, output = _run(["individualise", "vancomycin", "--history", str(history), "--level", level])
    assert code == 2
    assert expected in output
