"""PGx: VCF reading, star-allele calling, CPIC phenotype tables, recommendations, IWPC."""

from __future__ import annotations

import itertools
import math

import pytest
from pydantic import ValidationError

from medtwin.pharmaco.errors import PharmacoInputError, VcfError
from medtwin.pharmaco.iwpc import IwpcInput, Race, coefficients, iwpc_weekly_dose
from medtwin.pharmaco.pgx import build_vcf, call_pgx, phenotype_from_diplotype, vkorc1_genotype
from medtwin.pharmaco.pgx.definitions import definition

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
    "*1/*9": "Likely Intermediate Metabolizer",
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
    "*1x2/*1": (3.0, "Ultrarapid Metabolizer"),
    "*1x2/*4": (2.0, "Normal Metabolizer"),
}
# CPIC CYP2C9 (Theken 2020) and DPYD (Amstutz 2018) activity scores
ACTIVITY_EXPECTED = {
    ("CYP2C9", "*1/*1"): (2.0, "Normal Metabolizer"),
    ("CYP2C9", "*1/*3"): (1.0, "Intermediate Metabolizer"),
    ("CYP2C9", "*2/*3"): (0.5, "Poor Metabolizer"),
    ("DPYD", "Reference/c.1905+1G>A (*2A)"): (1.0, "Intermediate Metabolizer"),
    ("DPYD", "c.1905+1G>A (*2A)/c.2846A>T"): (0.5, "Poor Metabolizer"),
    ("DPYD", "Reference/c.2846A>T"): (1.5, "Intermediate Metabolizer"),
}


@pytest.mark.parametrize(("diplotype", "expected"), sorted(CYP2C19_EXPECTED.items()))
def test_cyp2c19_cpic_table(diplotype: str, expected: str) -> None:
    assert phenotype_from_diplotype("CYP2C19", diplotype)[0] == expected


@pytest.mark.parametrize(("diplotype", "expected"), sorted(CYP2D6_EXPECTED.items()))
def test_cyp2d6_cpic_activity_scores(diplotype: str, expected: tuple[float, str]) -> None:
    phenotype, score = phenotype_from_diplotype("CYP2D6", diplotype)
    assert score == pytest.approx(expected[0])
    assert phenotype == expected[1]


@pytest.mark.parametrize(("key", "expected"), sorted(ACTIVITY_EXPECTED.items()))
def test_cyp2c9_and_dpyd_activity_scores(key: tuple[str, str], expected: tuple[float, str]) -> None:
    phenotype, score = phenotype_from_diplotype(*key)
    assert (score, phenotype) == (pytest.approx(expected[0]), expected[1])


def test_cyp2d6_allele_without_cpic_value_is_indeterminate() -> None:
    assert phenotype_from_diplotype("CYP2D6", "*1/*146") == ("Indeterminate", None)


def test_cyp2d6_copy_number_gives_candidates_but_no_confident_phenotype() -> None:
    vcf = build_vcf({"CYP2D6": "*1/*1"})
    dup = call_pgx(vcf, cyp2d6_copy_number=3).genes["CYP2D6"]
    assert [(c.diplotype, c.activity_score, c.phenotype) for c in dup.candidates] == [
        ("*1x2/*1", 3.0, "Ultrarapid Metabolizer")]
    assert dup.phenotype == "unknown" and not dup.phenotype_confident
    single = call_pgx(build_vcf({"CYP2D6": "*4/*4"}), cyp2d6_copy_number=1).genes["CYP2D6"]
    assert [c.diplotype for c in single.candidates] == ["*4/*5"]
    assert single.candidates[0].phenotype == "Poor Metabolizer" and single.phenotype == "unknown"
    contradiction = call_pgx(build_vcf({"CYP2D6": "*1/*4"}, phased=True), cyp2d6_copy_number=1).genes["CYP2D6"]
    assert contradiction.status == "not_callable" and "contradicts" in contradiction.warnings[0]


STAR_GENES = {
    "CYP2C9": ["*1", "*2", "*3"],
    "CYP2C19": ["*1", "*2", "*3", "*17", "*38"],
    "CYP2D6": ["*1", "*2", "*4", "*10", "*17", "*41"],
    "SLCO1B1": ["*1", "*5", "*15"],
    "CYP3A5": ["*1", "*3", "*6", "*7"],
    "TPMT": ["*1", "*2", "*3A"],
}


@pytest.mark.parametrize("gene", sorted(STAR_GENES))
def test_phased_vcf_from_known_diplotypes_is_called_back(gene: str) -> None:
    for a, b in itertools.combinations_with_replacement(STAR_GENES[gene], 2):
        diplotype = f"{a}/{b}"
        result = call_pgx(build_vcf({gene: diplotype}, phased=True)).genes[gene]
        assert result.status == "called" and result.diplotype == diplotype, (diplotype, result)
        if gene != "CYP2D6":
            assert result.phenotype == phenotype_from_diplotype(gene, diplotype)[0]
            assert result.phenotype_confident


def test_unphased_cyp2c19_star4_star17_lists_both_readings_and_their_common_phenotype() -> None:
    result = call_pgx(build_vcf({"CYP2C19": "*4/*17"}, phased=True)).genes["CYP2C19"]
    assert result.diplotype == "*4/*17" and result.alternatives == [] and result.status == "called"
    unphased = call_pgx(build_vcf({"CYP2C19": "*4/*17"})).genes["CYP2C19"]
    assert unphased.status == "ambiguous" and unphased.diplotype == "unknown"
    assert {c.diplotype for c in unphased.candidates} == {"*1/*4", "*4/*17"}
    assert unphased.phenotype == "Intermediate Metabolizer"  # both readings agree
    assert unphased.phenotype_confident and unphased.phenotype_inferred


def test_unphased_tpmt_star1_star3a_is_not_confidently_named() -> None:
    """*1/*3A and *3B/*3C give the same unphased genotypes: IM or PM cannot be told apart."""
    result = call_pgx(build_vcf({"TPMT": "*1/*3A"})).genes["TPMT"]
    assert result.status == "ambiguous" and not result.phenotype_confident
    assert {c.diplotype: c.phenotype for c in result.candidates} == {
        "*1/*3A": "Intermediate Metabolizer", "*3B/*3C": "Poor Metabolizer"}
    assert "PharmCAT's score" in result.notes[0] and "*1/*3A" in result.notes[0]


def test_missing_position_is_not_assumed_reference() -> None:
    cyp2d6 = definition("CYP2D6")
    star4 = next(p.position for p in cyp2d6.positions if p.rsid == "rs3892097")
    report = call_pgx(build_vcf({"CYP2D6": "*1/*1"}, omit={star4}))
    assert report.genes["CYP2D6"].status == "ambiguous" and report.genes["CYP2D6"].diplotype == "unknown"
    assert report.genes["CYP2D6"].phenotype == "unknown"
    assert any("rs3892097" in m for m in report.genes["CYP2D6"].missing_positions)
    assert report.genes["CYP2C19"].status == "called" and report.genes["CYP2C19"].diplotype == "*38/*38"
    slco1b1 = next(p.position for p in definition("SLCO1B1").positions if p.rsid == "rs4149056")
    no_call = build_vcf({}).replace(f"{slco1b1}\trs4149056\tT\tC\t.\tPASS\t.\tGT\t0/0",
                                    f"{slco1b1}\trs4149056\tT\tC\t.\tPASS\t.\tGT\t./.")
    result = call_pgx(no_call).genes["SLCO1B1"]
    assert result.status == "ambiguous" and result.phenotype == "unknown" and not result.phenotype_confident
    assert {c.phenotype for c in result.candidates} >= {"Normal Function", "Decreased Function"}


def test_vkorc1_slco1b1_and_recommendations() -> None:
    report = call_pgx(build_vcf({"VKORC1": "A/A", "SLCO1B1": "*5/*5", "CYP2C19": "*2/*2", "CYP2D6": "*1/*2"},
                                sample="NA12878", phased=True))
    assert report.sample == "NA12878" and report.assembly == "GRCh38"
    assert vkorc1_genotype(report.genes["VKORC1"]) == "A/A" and report.genes["VKORC1"].phenotype == "-1639 AA"
    recs = {r.drug: r for r in report.recommendations}
    assert recs["simvastatin"].phenotype == "Poor Function" and "alternative statin" in recs["simvastatin"].recommendation
    assert recs["clopidogrel"].phenotype == "Poor Metabolizer" and "Avoid clopidogrel" in recs["clopidogrel"].recommendation
    assert recs["codeine"].phenotype == "unknown" and recs["codeine"].classification == "No recommendation"


def test_outside_call_gives_cyp2d6_a_confident_phenotype() -> None:
    vcf = build_vcf({"CYP2D6": "*1/*4"})
    report = call_pgx(vcf, outside_calls="# from a CYP2D6 caller\nCYP2D6\t*1x2/*4\n")
    cyp2d6 = report.genes["CYP2D6"]
    assert cyp2d6.status == "outside_call" and cyp2d6.diplotype == "*1x2/*4"
    assert (cyp2d6.activity_score, cyp2d6.phenotype, cyp2d6.phenotype_confident) == (2.0, "Normal Metabolizer", True)
    assert any("*1/*4" in n for n in cyp2d6.notes)
    by_phenotype = call_pgx(vcf, outside_calls="CYP2D6\t\tPoor Metabolizer\n").genes["CYP2D6"]
    assert by_phenotype.phenotype == "Poor Metabolizer" and by_phenotype.diplotype == "unknown"
    by_score = call_pgx(vcf, outside_calls="CYP2D6\t\t\t0.5\n").genes["CYP2D6"]
    assert by_score.phenotype == "Intermediate Metabolizer" and by_score.activity_score == 0.5


def test_bad_outside_call_names_the_line() -> None:
    with pytest.raises(PharmacoInputError, match="line 2.*CYP9Z9"):
        call_pgx(build_vcf({}), outside_calls="CYP2D6\t*1/*1\nCYP9Z9\t*1/*1\n")
    with pytest.raises(PharmacoInputError, match="line 2.*second call"):
        call_pgx(build_vcf({}), outside_calls="CYP2D6\t*1/*1\nCYP2D6\t*1/*4\n")


def test_grch37_vcf_is_rejected() -> None:
    with pytest.raises(VcfError, match="GRCh37"):
        call_pgx(build_vcf({}, assembly="GRCh37"))
    hg19 = build_vcf({}).replace("##reference=GRCh38", "##contig=<ID=chr22,length=51304566,assembly=hg19>")
    with pytest.raises(VcfError) as info:
        call_pgx(hg19)
    assert "line 2" in info.value.field


def test_malformed_line_names_the_line() -> None:
    lines = build_vcf({}).splitlines()
    lines[6] = lines[6].replace("\t", " ", 4)
    with pytest.raises(VcfError, match="line 7"):
        call_pgx("\n".join(lines))
    first = definition("ABCG2").positions[0].position
    bad_pos = build_vcf({}).replace(f"\t{first}\t", "\t8901234x\t")
    with pytest.raises(VcfError, match="POS"):
        call_pgx(bad_pos)


def test_sample_selection_errors() -> None:
    vcf = build_vcf({}, sample="alice")
    with pytest.raises(VcfError, match="'bob' is not in the VCF"):
        call_pgx(vcf, sample="bob")
    two = vcf.replace("\talice", "\talice\tcarol").replace("GT\t0/0", "GT\t0/0\t0/0")
    star3 = build_vcf({"CYP2C9": "*3/*3"}, sample="x").splitlines()
    two_lines = two.splitlines()
    for i, line in enumerate(star3):
        if line.startswith("chr10\t94981296"):
            two_lines[i] = two_lines[i][: two_lines[i].rindex("\t")] + "\t" + line.split("\t")[-1]
    with pytest.raises(VcfError, match="2 samples"):
        call_pgx("\n".join(two_lines))
    assert call_pgx("\n".join(two_lines), sample="carol").genes["CYP2C9"].diplotype == "*3/*3"
    assert call_pgx("\n".join(two_lines), sample="alice").genes["CYP2C9"].diplotype == "*1/*1"


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


def test_dpyd_two_lowest_function_rule_and_phase() -> None:
    """Unphased: the two lowest-function variants (PharmCAT); phased in cis: the lowest on each haplotype."""
    dpyd = definition("DPYD")
    star2a = dpyd.allele("c.1905+1G>A (*2A)")
    c2846 = dpyd.allele("c.2846A>T")
    (i, a1), (j, a2) = next(iter(star2a.defining.items())), next(iter(c2846.defining.items()))
    p1, p2 = dpyd.positions[i], dpyd.positions[j]
    base = build_vcf({})

    def with_gts(gt1: str, gt2: str) -> str:
        text = base
        for p, gt in ((p1, gt1), (p2, gt2)):
            old = f"{p.position}\t{p.rsid}\t{p.ref}\t{','.join(p.alts)}\t.\tPASS\t.\tGT\t0/0"
            assert old in text
            text = text.replace(old, old.replace("GT\t0/0", f"GT:PS\t{gt}:7" if "|" in gt else f"GT\t{gt}"))
        return text

    unphased = call_pgx(with_gts("0/1", "0/1")).genes["DPYD"]
    assert (unphased.diplotype, unphased.activity_score, unphased.phenotype) == (
        "c.1905+1G>A (*2A)/c.2846A>T", 0.5, "Poor Metabolizer")
    trans = call_pgx(with_gts("1|0", "0|1")).genes["DPYD"]
    assert (trans.diplotype, trans.activity_score) == ("c.1905+1G>A (*2A)/c.2846A>T", 0.5)
    cis = call_pgx(with_gts("1|0", "1|0")).genes["DPYD"]
    assert (cis.diplotype, cis.activity_score, cis.phenotype) == (
        "Reference/c.1905+1G>A (*2A)", 1.0, "Intermediate Metabolizer")
    assert (a1, a2) == (p1.alts[0], p2.alts[0])


def test_extra_position_rs12777823_is_read_and_reported_not_used() -> None:
    """PharmCAT's exemptions list rs12777823 (CPIC warfarin, African ancestry) as an extra CYP2C9 position."""
    vcf = build_vcf({"CYP2C9": "*1/*1"}) + "chr10\t94645745\trs12777823\tG\tA\t.\tPASS\t.\tGT\t0/1\n"
    report = call_pgx(vcf)
    extra = next(v for v in report.variants if v.rsid == "rs12777823")
    assert (extra.gene, extra.genotype, extra.alt_dosage) == ("CYP2C9", "G/A", 1)
    assert report.genes["CYP2C9"].status == "called" and report.genes["CYP2C9"].diplotype == "*1/*1"


def test_a_report_stored_before_the_full_definitions_is_never_confident() -> None:
    from medtwin.pharmaco.pgx import GeneResult

    old = GeneResult.model_validate({"gene": "CYP2C9", "diplotype": "*1/*1", "phenotype": "Normal Metabolizer",
                                     "alternatives": [], "missing_positions": [], "notes": [], "table_version": "x"})
    assert old.status == "called" and not old.phenotype_confident and "call the VCF again" in old.warnings[0]
    fresh = call_pgx(build_vcf({})).genes["CYP2C9"]
    assert GeneResult.model_validate(fresh.model_dump()) == fresh
