"""`medtwin drug pgx FILE [--sample S] [--outside-calls TSV] [--json]`."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from typer.testing import CliRunner

from medtwin.cli import app
from medtwin.pharmaco.pgx import build_vcf
from medtwin.pharmaco.pgx.definitions import definition

runner = CliRunner()


def _novel_cyp2c9(tmp_path: Path) -> Path:
    """CYP2C9 *1/*1 but a base no allele has at the *3 position: not callable."""
    star3 = next(p for p in definition("CYP2C9").positions if p.rsid == "rs1057910")
    text = build_vcf({"CYP2D6": "*1/*4"}, sample="S1").replace(
        f"{star3.position}\trs1057910\tA\tC\t.\tPASS\t.\tGT\t0/0", f"{star3.position}\trs1057910\tA\tC,G\t.\tPASS\t.\tGT\t0/2")
    path = tmp_path / "s1.vcf.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(text)
    return path


def test_json_has_pharmcat_style_fields_per_gene(tmp_path: Path) -> None:
    result = runner.invoke(app, ["drug", "pgx", str(_novel_cyp2c9(tmp_path)), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    cyp2c9 = report["genes"]["CYP2C9"]
    assert cyp2c9["status"] == "not_callable" and cyp2c9["phenotype_confident"] is False
    assert any("rs1057910" in p for p in cyp2c9["unexplained_positions"])
    cyp2d6 = report["genes"]["CYP2D6"]
    assert cyp2d6["source_diplotypes"] == ["*1/*4"] and cyp2d6["phenotype"] == "unknown"
    assert cyp2d6["candidates"][0]["activity_score"] == 1.0 and cyp2d6["warnings"]
    assert len(report["genes"]) == 13 and report["definition_version"].startswith("PharmCAT definitions")


def test_table_says_not_callable_and_why(tmp_path: Path) -> None:
    result = runner.invoke(app, ["drug", "pgx", str(_novel_cyp2c9(tmp_path))], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "CYP2C9" in line and "not callable" in line)
    assert "rs1057910" in row


def test_outside_calls_option(tmp_path: Path) -> None:
    vcf = tmp_path / "s.vcf"
    vcf.write_text(build_vcf({"CYP2D6": "*1/*4"}))
    tsv = tmp_path / "outside.tsv"
    tsv.write_text("CYP2D6\t*1/*4\n")
    result = runner.invoke(app, ["drug", "pgx", str(vcf), "--outside-calls", str(tsv), "--json"])
    assert result.exit_code == 0, result.output
    cyp2d6 = json.loads(result.output)["genes"]["CYP2D6"]
    assert (cyp2d6["status"], cyp2d6["phenotype"], cyp2d6["phenotype_confident"]) == (
        "outside_call", "Intermediate Metabolizer", True)
    tsv.write_text("CYP2D6\t*1/*4\nNOPE\t*1/*1\n")
    bad = runner.invoke(app, ["drug", "pgx", str(vcf), "--outside-calls", str(tsv)], env={"COLUMNS": "250"})
    assert bad.exit_code != 0 and "outside.tsv line 2" in bad.output


def test_errors_exit_nonzero_naming_file_and_line(tmp_path: Path) -> None:
    vcf = tmp_path / "broken.vcf"
    lines = build_vcf({}, sample="S1").splitlines()
    lines[10] = lines[10].replace("GT\t0/0", "GT\t0/9")
    vcf.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["drug", "pgx", str(vcf)], env={"COLUMNS": "250"})
    assert result.exit_code != 0 and "broken.vcf line 11" in result.output
    vcf.write_text(build_vcf({}, sample="S1"))
    result = runner.invoke(app, ["drug", "pgx", str(vcf), "--sample", "S2"], env={"COLUMNS": "250"})
    assert result.exit_code != 0 and "'S2' is not in the VCF" in result.output and "broken.vcf line 4" in result.output
    vcf.write_text(build_vcf({}, assembly="hg19"))
    result = runner.invoke(app, ["drug", "pgx", str(vcf)], env={"COLUMNS": "250"})
    assert result.exit_code != 0 and "broken.vcf line 2" in result.output and "GRCh38" in result.output
    missing = runner.invoke(app, ["drug", "pgx", str(tmp_path / "nope.vcf")])
    assert missing.exit_code != 0 and "nope.vcf" in missing.output
