"""PGx: VCF reading, star-allele calling, CPIC phenotype tables, recommendations, IWPC."""

from __future__ import annotations

import itertools
import math

import pytest
from pydantic import ValidationError

from medtwin.pharmaco.errors import VcfError
from medtwin.pharmaco.iwpc import IwpcInput, Race, coefficients, iwpc_weekly_dose
from medtwin.pharmaco.pgx import build_vcf, call_pgx, phenotype_from_diplotype, variants

# CPIC CYP2C19 diplotype -> phenotype examples (Lee 2022, Table 1)
CYP2C19_EXPECTED = {
    "*17/*17": "Ultrarapid Metabolizer",
    "*1/*17": "Rapid Metabolizer",
    "*1/*1": "Normal Metabolizer",
    "*1/*2": "Intermediate Metabolizer",
    "*1/*3": "Intermediate Metabolizer",
    "*2/*17": "Intermediate Metabolizer",
    "*3/*17": "Intermediate Metabolizer",
    "*2/*2": "Poor Metabolizer",
    "*2/*3": "Poor Metabolizer",
    "*3/*3": "Poor Metabolizer",
    "*1/*4": "Intermediate Metabolizer",
    "*4/*4": "Poor Metabolizer",
}
# CPIC CYP2D6 (Caudle 2020 activity-score consensus): AS and phenotype
CYP2D6_EXPECTED = {
    "*1/*1": (2.0, "Normal Metabolizer"),
    "*1/*2": (2.0, "Normal Metabolizer"),
    "*1/*10": (1.25, "Normal Metabolizer"),
    "*1/*41": (1.5, "Normal Metabolizer"),
    "*1/*4": (1.0, "Intermediate Metabolizer"),
    "*10/*10": (0.5, "Intermediate Metabolizer"),
    "*4/*10": (0.25, "Intermediate Metabolizer"),
    "*4/*41": (0.5, "Intermediate Metabolizer"),
    "*17/*41": (1.0, "Intermediate Metabolizer"),
    "*4/*4": (0.0, "Poor Metabolizer"),
    "*5/*5": (0.0, "Poor Metabolizer"),
}


@pytest.mark.parametrize(("diplotype", "expected"), sorted(CYP2C19_EXPECTED.items()))
def test_cyp2c19_cpic_table(diplotype: str, expected: str) -> None:
    assert phenotype_from_diplotype("CYP2C19", diplotype)[0] == expected


@pytest.mark.parametrize(("diplotype", "expected"), sorted(CYP2D6_EXPECTED.items()))
def test_cyp2d6_cpic_activity_scores(diplotype: str, expected: tuple[float, str]) -> None:
    phenotype, score = phenotype_from_diplotype("CYP2D6", diplotype)
    assert score == pytest.approx(expected[0])
    assert phenotype == expected[1]


def test_cyp2d6_copy_number_duplication_and_deletion() -> None:
    vcf = build_vcf({"CYP2D6": "*1/*1"})
    assert call_pgx(vcf, cyp2d6_copy_number=3).genes["CYP2D6"].phenotype == "Ultrarapid Metabolizer"
    assert call_pgx(vcf, cyp2d6_copy_number=3).genes["CYP2D6"].activity_score == 3.0
    single = call_pgx(build_vcf({"CYP2D6": "*4/*4"}), cyp2d6_copy_number=1).genes["CYP2D6"]
    assert single.diplotype == "*4/*5" and single.phenotype == "Poor Metabolizer"


STAR_GENES = {
    "CYP2C9": ["*1", "*2", "*3"],
    "CYP2C19": ["*1", "*2", "*3", "*17"],
    "CYP2D6": ["*1", "*2", "*4", "*10", "*17", "*41"],
    "SLCO1B1": ["*1", "*5"],
}


@pytest.mark.parametrize("phased", [True, False])
@pytest.mark.parametrize("gene", sorted(STAR_GENES))
def test_vcf_from_known_diplotypes_is_called_back(gene: str, phased: bool) -> None:
    for a, b in itertools.combinations_with_replacement(STAR_GENES[gene], 2):
        diplotype = f"{a}/{b}"
        result = call_pgx(build_vcf({gene: diplotype}, phased=phased)).genes[gene]
        assert result.diplotype == diplotype, (diplotype, result)
        assert result.phenotype == phenotype_from_diplotype(gene, diplotype)[0]


def test_phased_cyp2c19_star4_and_star17_are_resolved() -> None:
    result = call_pgx(build_vcf({"CYP2C19": "*4/*17"}, phased=True)).genes["CYP2C19"]
    assert result.diplotype == "*4/*17" and result.alternatives == []
    unphased = call_pgx(build_vcf({"CYP2C19": "*4/*17"})).genes["CYP2C19"]
    assert set([unphased.diplotype, *unphased.alternatives]) == {"*1/*4", "*4/*17"}
    assert unphased.phenotype == "Intermediate Metabolizer"  # both readings agree


def test_missing_position_makes_the_gene_unknown_not_reference() -> None:
    everything = {v.rsid for v in variants()}
    vcf = build_vcf({"CYP2D6": "*1/*1"}, include=everything - {"rs3892097"})
    report = call_pgx(vcf)
    assert report.genes["CYP2D6"].diplotype == "unknown"
    assert report.genes["CYP2D6"].phenotype == "unknown"
    assert any("rs3892097" in m for m in report.genes["CYP2D6"].missing_positions)
    assert report.genes["CYP2C19"].diplotype == "*1/*1"
    no_call = build_vcf({}).replace("rs4149056\tT\tC\t.\tPASS\t.\tGT\t0/0", "rs4149056\tT\tC\t.\tPASS\t.\tGT\t./.")
    assert call_pgx(no_call).genes["SLCO1B1"].phenotype == "unknown"


def test_vkorc1_and_slco1b1_and_recommendations() -> None:
    report = call_pgx(build_vcf({"VKORC1": "A/A", "SLCO1B1": "*5/*5", "CYP2C19": "*2/*2", "CYP2D6": "*1/*2"},
                                sample="NA12878"))
    assert report.sample == "NA12878" and report.assembly == "GRCh38"
    assert report.genes["VKORC1"].diplotype.endswith("A/A")
    recs = {r.drug: r for r in report.recommendations}
    assert recs["simvastatin"].phenotype == "Poor Function" and "alternative statin" in recs["simvastatin"].recommendation
    assert recs["clopidogrel"].phenotype == "Poor Metabolizer" and "Avoid clopidogrel" in recs["clopidogrel"].recommendation
    assert recs["codeine"].phenotype == "Normal Metabolizer" and "label-recommended" in recs["codeine"].recommendation


def test_grch37_vcf_is_rejected() -> None:
    with pytest.raises(VcfError, match="GRCh37"):
        call_pgx(build_vcf({}, assembly="GRCh37"))
    hg19 = build_vcf({}).replace("##reference=GRCh38", "##contig=<ID=chr22,length=51304566,assembly=hg19>")
    with pytest.raises(VcfError) as info:
        call_pgx(hg19)
    assert info.value.field == "contig"


def test_malformed_line_names_the_line() -> None:
    lines = build_vcf({}).splitlines()
    lines[6] = lines[6].replace("\t", " ", 2)
    with pytest.raises(VcfError, match="line 7"):
        call_pgx("\n".join(lines))
    bad_pos = build_vcf({}).replace("94942290", "9494229x")
    with pytest.raises(VcfError, match="POS"):
        call_pgx(bad_pos)


def test_sample_selection_errors() -> None:
    vcf = build_vcf({}, sample="alice")
    with pytest.raises(VcfError, match="'bob' is not in the VCF"):
        call_pgx(vcf, sample="bob")
    two = vcf.replace("\talice", "\talice\tcarol").replace("GT\t0/0", "GT\t0/0\t0/1")
    with pytest.raises(VcfError, match="2 samples"):
        call_pgx(two)
    assert call_pgx(two, sample="carol").genes["CYP2C9"].diplotype == "*2/*3"


def test_iwpc_reference_patient() -> None:
    dose = iwpc_weekly_dose(IwpcInput(age_years=60, height_cm=170, weight_kg=70, vkorc1="G/A", cyp2c9="*1/*1"))
    assert dose.weekly_dose_mg == pytest.approx(30.7, abs=0.05)


@pytest.mark.parametrize(
    ("field", "value", "term"),
    [("vkorc1", "A/G", "vkorc1_ag"), ("vkorc1", "A/A", "vkorc1_aa"), ("vkorc1", "unknown", "vkorc1_unknown"),
     ("cyp2c9", "*1/*2", "cyp2c9_12"), ("cyp2c9", "*3/*1", "cyp2c9_13"), ("cyp2c9", "*2/*2", "cyp2c9_22"),
     ("cyp2c9", "*2/*3", "cyp2c9_23"), ("cyp2c9", "*3/*3", "cyp2c9_33"), ("cyp2c9", "unknown", "cyp2c9_unknown"),
     ("race", Race.ASIAN, "race_asian"), ("race", Race.BLACK, "race_black"),
     ("race", Race.MIXED_OR_MISSING, "race_missing_or_mixed"), ("enzyme_inducer", True, "enzyme_inducer"),
     ("amiodarone", True, "amiodarone")],
)
def test_iwpc_every_term(field: str, value: object, term: str) -> None:
    base = dict(age_years=60, height_cm=170, weight_kg=70, vkorc1="G/G", cyp2c9="*1/*1")
    reference = iwpc_weekly_dose(IwpcInput(**base))  # type: ignore[arg-type]
    changed = iwpc_weekly_dose(IwpcInput(**{**base, field: value}))  # type: ignore[arg-type]
    expected_root = reference.sqrt_weekly_dose + coefficients()[term]
    assert changed.sqrt_weekly_dose == pytest.approx(expected_root, abs=1e-12)
    assert changed.weekly_dose_mg == pytest.approx(expected_root**2, rel=1e-12)
    assert not math.isclose(changed.weekly_dose_mg, reference.weekly_dose_mg)


def test_iwpc_bad_input_names_the_field() -> None:
    with pytest.raises(ValidationError, match="cyp2c9"):
        IwpcInput(age_years=60, height_cm=170, weight_kg=70, vkorc1="G/G", cyp2c9="*1/*9")
    with pytest.raises(ValidationError, match="weight_kg"):
        IwpcInput(age_years=60, height_cm=170, weight_kg=700, vkorc1="G/G", cyp2c9="*1/*1")
