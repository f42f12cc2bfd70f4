"""`medtwin twin kinds`: besides the kinds, what did not become one is said on stderr (a plug-in that failed to
load, a drug file left out with its entry and reason), not only in the log; the exit code stays 0."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.pharmaco.drug_support import drug_folder, sub
from typer.testing import CliRunner

from medtwin.cli.twins import app, kind_problems
from medtwin.model.kinds import load_errors


def test_left_out_drug_files_are_listed_with_file_entry_and_reason(tmp_path: Path) -> None:
    folder = drug_folder(tmp_path, {"warfarin": sub(r"^CL = .*\n", ""), "theophylline": "[drug\n"})
    left = [line for line in kind_problems(folder) if line.startswith("left out: ")]
    assert len(left) == 2
    assert left[0].startswith("left out: theophylline.toml: toml: not valid TOML")
    assert left[1].startswith("left out: warfarin.toml: parameters.CL: missing PK parameter")


def test_nothing_is_left_out_of_the_shipped_files_or_the_plug_ins() -> None:
    assert kind_problems() == [f"plug-in {name} failed to load: {error}" for name, error in load_errors().items()]
    assert load_errors() == {}  # every shipped plug-in loads


@pytest.mark.slow  # loads every twin-kind plug-in (~5 s)
@pytest.mark.parametrize("args", [["kinds"], ["kinds", "--json"]])
def test_kinds_command_lists_the_kinds_and_what_was_left_out_on_stderr(args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0
    assert "drug-warfarin" in result.stdout and "left out" not in result.stdout
    assert result.stderr.splitlines() == kind_problems()
