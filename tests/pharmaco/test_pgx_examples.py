"""The examples at the top of issue 14, each its own test: VCFs built from the full definitions (every
defining position present, reference unless varied) that the old 14-position caller answered wrongly."""

from __future__ import annotations

import pytest

from medtwin.pharmaco.pgx import GeneResult, build_vcf, call_pgx


def _call(gene: str, diplotype: str, phased: bool = False) -> GeneResult:
    return call_pgx(build_vcf({gene: diplotype}, phased=phased)).genes[gene]


def _cyp2d6(diplotype: str) -> GeneResult:
    result = _call("CYP2D6", diplotype)
    assert result.status == "called" and result.diplotype == diplotype
    assert result.phenotype == "unknown" and not result.phenotype_confident  # no outside call
    return result


def test_cyp2d6_star1_star3_is_not_called_star1_star1() -> None:
    result = _cyp2d6("*1/*3")  # *3 is a 1-bp deletion (2549delA)
    assert [(c.activity_score, c.phenotype) for c in result.candidates] == [(1.0, "Intermediate Metabolizer")]


def test_cyp2d6_star1_star6_is_not_called_star1_star1() -> None:
    result = _cyp2d6("*1/*6")  # *6 is a 1-bp deletion (1707delT)
    assert [(c.activity_score, c.phenotype) for c in result.candidates] == [(1.0, "Intermediate Metabolizer")]


def test_cyp2d6_star3_star4_is_a_poor_metabolizer_not_star1_star4() -> None:
    result = _cyp2d6("*3/*4")
    assert [(c.activity_score, c.phenotype) for c in result.candidates] == [(0.0, "Poor Metabolizer")]
    with_outside = call_pgx(build_vcf({"CYP2D6": "*3/*4"}), outside_calls="CYP2D6\t*3/*4\n").genes["CYP2D6"]
    assert with_outside.phenotype == "Poor Metabolizer" and with_outside.phenotype_confident


@pytest.mark.parametrize("allele", ["*5", "*8", "*11"])
def test_cyp2c9_decreased_function_alleles_are_intermediate(allele: str) -> None:
    result = _call("CYP2C9", f"*1/{allele}")
    assert result.status == "called" and result.diplotype == f"*1/{allele}"
    assert (result.activity_score, result.phenotype, result.phenotype_confident) == (
        1.5, "Intermediate Metabolizer", True)


def test_cyp2c9_star1_star5() -> None:
    assert _call("CYP2C9", "*1/*5").diplotype == "*1/*5"


def test_cyp2c9_star1_star8() -> None:
    assert _call("CYP2C9", "*1/*8").diplotype == "*1/*8"


def test_cyp2c9_star1_star11() -> None:
    assert _call("CYP2C9", "*1/*11").diplotype == "*1/*11"


def test_cyp2c19_star1_star35_is_intermediate() -> None:
    result = _call("CYP2C19", "*1/*35")
    assert (result.status, result.diplotype, result.phenotype) == ("called", "*1/*35", "Intermediate Metabolizer")


def test_cyp2c19_star38_is_not_named_star1() -> None:
    """*38 is the reference-genome haplotype; *1 carries rs3758581 G."""
    assert _call("CYP2C19", "*38/*38").diplotype == "*38/*38"
    result = _call("CYP2C19", "*1/*38")
    assert (result.status, result.diplotype, result.phenotype) == ("called", "*1/*38", "Normal Metabolizer")


def test_slco1b1_star1_star15_is_not_named_star1_star5() -> None:
    unphased = _call("SLCO1B1", "*1/*15")
    assert unphased.diplotype != "*1/*5" and "*1/*5" not in [c.diplotype for c in unphased.candidates]
    assert {c.diplotype for c in unphased.candidates} == {"*1/*15", "*5/*37"}  # same genotypes unphased
    assert unphased.phenotype == "Decreased Function" and unphased.phenotype_inferred
    phased = _call("SLCO1B1", "*1/*15", phased=True)
    assert (phased.status, phased.diplotype, phased.phenotype) == ("called", "*1/*15", "Decreased Function")


def test_slco1b1_star5_star15_is_not_named_star5_star5() -> None:
    result = _call("SLCO1B1", "*5/*15")
    assert (result.status, result.diplotype, result.phenotype) == ("called", "*5/*15", "Poor Function")


def test_slco1b1_star1_star37_is_not_named_star1_star1() -> None:
    result = _call("SLCO1B1", "*1/*37")  # rs2306283 is read
    assert (result.status, result.diplotype) == ("called", "*1/*37")


def test_cyp2d6_without_copy_number_has_no_confident_phenotype() -> None:
    result = _call("CYP2D6", "*1/*4")
    assert result.diplotype == "*1/*4" and result.phenotype == "unknown" and result.activity_score is None
    assert not result.phenotype_confident
    assert any("copy number" in w and "outside call" in w for w in result.warnings)
