"""A broken drug file is left out alone: the library and the ``drugs`` twin-kind entry point load every other
drug file, and say which file was left out, at which entry, and why (log, ``medtwin drug list``/``check``).
Every SHIPPED drug file must load: leaving a file out can never hide a shipped error."""

from __future__ import annotations

import logging
import re
import tempfile
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.pharmaco.drug_support import NAMES, SHIPPED, WARFARIN, drug_folder, sub
from typer.testing import CliRunner

from medtwin.cli.drug import app
from medtwin.model.kinds import GROUP, kinds
from medtwin.pharmaco.drug_files import DrugFileError
from medtwin.pharmaco.errors import UnknownDrugError
from medtwin.pharmaco.library import LeftOut, drug_files, load_drug, load_library
from medtwin.pharmaco.pk_twin_kind import checked_drug_kinds, drug_kinds

SHIPPED_LIBRARY = load_library()


# (what is broken, the warfarin file, the entry named, words of the reason)
BROKEN = [
    ("bad TOML", WARFARIN.replace("[pk]", "[pk", 1), "toml", "not valid TOML"),
    ("missing PK parameter", sub(r"^CL = .*\n", ""), "parameters.CL", "missing PK parameter"),
    ("missing INR parameter", sub(r"^MTT2 = .*\n", ""), "parameters.MTT2", "missing INR-model parameter"),
    ("PK unit error", sub(r'(V1 = \{ value = 13.8, unit = )"L"', r'\1"mL"'), "parameters.V1.unit",
     "'mL', but V1 is in 'L'"),
    ("INR-model unit error", sub(r'(EC50 = \{ value = 4.61, unit = )"mg/L"', r'\1"ug/L"'), "parameters.EC50.unit",
     "'ug/L', but EC50 is in 'mg/L'"),
    ("dose without a unit", sub(r'^default_dose = "5 mg"', 'default_dose = "5"'), "drug.default_dose", "no unit"),
    ("missing citation of a parameter", sub(r'(EC50 = .*source = )"Hamberg 2007 Table 2"', r'\1""'),
     "parameters.EC50.source", "missing citation"),
    ("missing citation of the targets", sub(r'^source = "Target INR.*\n', ""), "targets.source", "missing citation"),
    ("missing section", sub(r"^\[residual\]\n", "[residual_error]\n"), "residual", "missing section"),
    ("value not a number", sub(r"(Q2 = \{ value = )0.131", r'\1"fast"'), "parameters.Q2.value", "not a finite"),
    ("residual without its SD", sub(r"^additive_sd = .*\n", ""), "residual.additive_sd", "missing entry"),
    ("covariate effect without its form", sub(r'^form = "categorical_factor"\n', ""), "covariates[0].form",
     "missing entry"),
    ("target range upside down", sub(r"^target_high = 3.0", "target_high = 1.5"), "targets.target_high",
     "must be above target_low"),
    ("BSV on no parameter", sub(r'^names = \["CL"', 'names = ["CLx"'), "bsv.names", "'CLx' is not a parameter"),
]


@pytest.mark.parametrize(("text", "entry", "reason"), [case[1:] for case in BROKEN], ids=[c[0] for c in BROKEN])
def test_a_broken_file_is_left_out_alone_with_its_entry_and_reason(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str, entry: str, reason: str) -> None:
    folder = drug_folder(tmp_path, {"warfarin": text})
    with caplog.at_level(logging.ERROR, logger="medtwin.pharmaco"):
        built, left_out = checked_drug_kinds(folder)
    assert sorted(k.name for k in built) == [f"drug-{n}" for n in NAMES if n != "warfarin"]
    assert len(left_out) == 1
    assert (left_out[0].file, left_out[0].field) == ("warfarin.toml", entry)
    assert reason in left_out[0].reason
    assert f"drug file left out: warfarin.toml: {entry}: " in caplog.text
    # the entry point's own function gives the same kinds; asking for the broken drug names the file and entry
    assert [k.name for k in drug_kinds(folder)] == [k.name for k in built]
    with pytest.raises(DrugFileError) as caught:
        load_drug("Warfarin", folder)
    assert caught.value.field == f"warfarin.toml: {entry}"


def test_the_registry_entry_point_is_the_function_that_leaves_files_out() -> None:
    assert entry_points(group=GROUP)["drugs"].load() is drug_kinds


def test_every_shipped_drug_file_loads_and_is_a_registered_kind() -> None:
    """Fails when a shipped drug file is broken (it would otherwise only be left out)."""
    library = load_library()
    assert [str(e) for e in library.left_out] == []
    assert sorted(library.drugs) == NAMES == sorted(drug_files()) and len(NAMES) >= 6
    built, left_out = checked_drug_kinds()
    assert [str(e) for e in left_out] == []
    assert {f"drug-{n}" for n in NAMES} <= set(kinds())
    assert sorted(k.name for k in built) == [f"drug-{n}" for n in NAMES]


def test_a_kind_from_another_folder_reads_its_numbers_from_that_file(tmp_path: Path) -> None:
    text = SHIPPED.joinpath("theophylline.toml").read_text(encoding="utf-8")
    folder = drug_folder(tmp_path, {"theophylline": sub(r"(CL = \{ value = )2.76", r"\g<1>3.5", text)})
    (kind,) = [k for k in drug_kinds(folder) if k.name == "drug-theophylline"]
    shipped = kinds()["drug-theophylline"]
    column = kind.model.parameter_index("CL")
    assert kind.base()[0, column] == 3.5 and shipped.base()[0, column] == 2.76
    assert load_drug("theophylline", folder).location == str(folder / "theophylline.toml")


def test_an_unknown_drug_names_the_drug_files() -> None:
    with pytest.raises(UnknownDrugError, match="unknown drug 'aspirin'; available: clopidogrel, "):
        load_drug("aspirin")


def test_left_out_reads_file_entry_reason() -> None:
    assert str(LeftOut("x.toml", "parameters.CL.unit", "'mL', but CL is in 'L/h'")) == \
        "x.toml: parameters.CL.unit: 'mL', but CL is in 'L/h'"


# ---- every citation and every declared unit of every shipped file is checked ----------------------------------

def _lines(pattern: str) -> list[tuple[str, int]]:
    return [(name, i) for name in NAMES
            for i, line in enumerate(SHIPPED.joinpath(f"{name}.toml").read_text(encoding="utf-8").splitlines())
            if re.match(pattern, line)]


SOURCE_LINES = _lines(r'^source = "')
PARAMETER_LINES = _lines(r'^\w+ = \{ value = .*unit = "')


@pytest.mark.parametrize(("name", "line"), SOURCE_LINES)
def test_every_citation_of_a_shipped_file_is_required(tmp_path: Path, name: str, line: int) -> None:
    lines = SHIPPED.joinpath(f"{name}.toml").read_text(encoding="utf-8").splitlines()
    del lines[line]
    library = load_library(drug_folder(tmp_path, {name: "\n".join(lines)}))
    assert sorted(library.drugs) == [n for n in NAMES if n != name]
    (left,) = library.left_out
    assert left.file == f"{name}.toml" and left.field.endswith("source"), left


@pytest.mark.parametrize(("name", "line"), PARAMETER_LINES)
def test_every_parameter_unit_of_a_shipped_file_is_checked(tmp_path: Path, name: str, line: int) -> None:
    lines = SHIPPED.joinpath(f"{name}.toml").read_text(encoding="utf-8").splitlines()
    parameter = lines[line].split(" = ", 1)[0]
    lines[line] = re.sub(r'unit = "[^"]*"', 'unit = "furlong"', lines[line])
    (left,) = load_library(drug_folder(tmp_path, {name: "\n".join(lines)})).left_out
    assert (left.file, left.field) == (f"{name}.toml", f"parameters.{parameter}.unit")
    assert left.reason.startswith("'furlong', but ")


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(NAMES), at=st.floats(0, 1, exclude_max=True), cut=st.booleans())
def test_any_one_line_lost_leaves_at_most_that_file_out(name: str, at: float, cut: bool) -> None:
    """One line of one file deleted (or cut in half): the library never fails as a whole; every other drug loads
    as shipped; the file either still loads (the line was optional) or is left out naming that file."""
    lines = SHIPPED.joinpath(f"{name}.toml").read_text(encoding="utf-8").splitlines()
    i = int(at * len(lines))
    if cut:
        lines[i] = lines[i][: len(lines[i]) // 2]
    else:
        del lines[i]
    with tempfile.TemporaryDirectory() as folder:
        library = load_library(drug_folder(Path(folder), {name: "\n".join(lines)}))
    assert {n: d.parameters for n, d in library.drugs.items() if n != name} == \
        {n: d.parameters for n, d in SHIPPED_LIBRARY.drugs.items() if n != name}
    assert name in library.drugs or [e.file for e in library.left_out] == [f"{name}.toml"]
    assert not (name in library.drugs and library.left_out)


def test_the_shipped_files_have_citations_and_units_to_check() -> None:
    assert len(SOURCE_LINES) >= 30 and len(PARAMETER_LINES) >= 30


# ---- the operator's view: medtwin drug list / check ---------------------------------------------------------

def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})  # the table unwrapped
    return result.exit_code, result.output


def test_drug_check_names_the_left_out_file_and_exits_1(tmp_path: Path) -> None:
    folder = drug_folder(tmp_path, {"warfarin": BROKEN[3][1]})  # V1 in mL
    code, output = _cli("check", "--folder", str(folder))
    assert code == 1
    assert "left out: warfarin.toml: parameters.V1.unit: 'mL', but V1 is in 'L'" in output
    assert output.count("ok: ") == len(NAMES) - 1 and "ok: theophylline.toml (" in output
    code, output = _cli("list", "--folder", str(folder))
    assert code == 0
    assert "theophylline" in output and "Hamberg2007" not in output
    assert "left out: warfarin.toml: parameters.V1.unit: 'mL', but V1 is in 'L'" in output


def test_drug_check_of_a_folder_that_is_not_there_is_a_usage_error(tmp_path: Path) -> None:
    code, output = _cli("check", "--folder", str(tmp_path / "nowhere"))
    words = " ".join(output.replace("\u2502", " ").split())  # the usage error's box may wrap a long path
    assert code == 2 and "'--folder'" in words and "does not exist" in words


def test_drug_check_of_the_shipped_library_passes() -> None:
    code, output = _cli("check")
    assert code == 0, output
    assert sorted(re.findall(r"^ok: (\w+)\.toml", output, flags=re.MULTILINE)) == NAMES
    assert "left out" not in output


def test_the_base_row_is_a_copy() -> None:
    kind = kinds()["drug-vancomycin"]
    kind.base()[0, 0] = -1.0
    assert np.all(kind.base() > 0)
