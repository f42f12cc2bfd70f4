"""CLI start-up: importing the CLI (and ``medtwin --help``) loads no command's module; each lazily registered
command is the real one, with the help the root group shows for it."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from medtwin.cli import app
from medtwin.cli.main import COMMANDS, LazyCommand, load_command

HEAVY = ("fastapi", "uvicorn", "sqlalchemy", "scipy", "matplotlib", "numpy", "pydantic", "medtwin.api",
         "medtwin.store", "medtwin.pharmaco", "medtwin.physiology")


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    return set(out.split())


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_importing_the_cli_imports_no_heavy_dependency() -> None:
    assert _heavy(_loaded_after("import medtwin.cli")) == []


def test_root_help_builds_no_command_module() -> None:
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom medtwin.cli import app\n"
            "result = CliRunner().invoke(app, ['--help'])\nassert result.exit_code == 0, result.output\n")
    loaded = _loaded_after(code)
    assert _heavy(loaded) == []
    assert not {m for m in loaded if m.startswith("medtwin.cli.") and m != "medtwin.cli.main"}


def test_root_help_lists_every_command_with_its_help() -> None:
    result = CliRunner().invoke(app, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    for name in COMMANDS:
        assert re.search(rf"\b{name}\b", result.output), name


@pytest.mark.parametrize("name", list(COMMANDS))
def test_placeholder_help_is_the_real_commands_help(name: str) -> None:
    real = load_command(name)
    assert not isinstance(real, LazyCommand)
    first = re.sub(r"\s+", " ", (real.help or "").split("\n\n")[0]).strip()
    assert first == COMMANDS[name][2]


def test_a_lazy_command_runs_and_its_own_help_is_the_real_one() -> None:
    result = CliRunner().invoke(app, ["drug", "warfarin-dose", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "IWPC" in result.output and "--race" in result.output
    bad = CliRunner().invoke(app, ["drug", "pgx", "no-such-file.vcf"])
    assert bad.exit_code != 0 and "no-such-file.vcf" in bad.output
