"""`medtwin twin kinds`: besides the kinds, what did not become one is said on stderr (a plug-in that failed to
load, a drug file left out with its entry and reason), not only in the log; the exit code stays 0."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medtwin.cli.twins import app, kind_problems
from medtwin.model.kinds import load_errors

SHIPPED = resources.files("medtwin.pharmaco").joinpath("data/drugs")
NAMES = sorted(p.name.removesuffix(".toml") for p in SHIPPED.iterdir() if p.name.endswith(".toml"))


def _folder(folder: Path, broken: dict[str, str]) -> Path:
    """Every shipped drug file, with each of ``broken`` (name -> text) instead of the shipped one."""
    for name in NAMES:
        text = broken.get(name, SHIPPED.joinpath(f"{name}.toml").read_text(encoding="utf-8"))
        (folder / f"{name}.toml").write_text(text, encoding="utf-8")
    return folder


def test_left_out_drug_files_are_listed_with_file_entry_and_reason(tmp_path: Path) -> None:
    warfarin = SHIPPED.joinpath("warfarin.toml").read_text(encoding="utf-8")
    no_cl, count = re.subn(r"^CL = .*\n", "", warfarin, count=1, flags=re.MULTILINE)
    assert count == 1
    folder = _folder(tmp_path, {"warfarin": no_cl, "theophylline": "[drug\n"})
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
