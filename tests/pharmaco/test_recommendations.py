"""CPIC recommendation tables: every table loads with its source and version; only a callable gene with a
confident phenotype gives a recommendation; anything else says "not callable because ..."."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medtwin.pharmaco.errors import PharmacoInputError
from medtwin.pharmaco.pgx import DiplotypeCandidate, GeneResult
from medtwin.pharmaco.recommendations import (
    callability,
    guidelines,
    parse_guideline,
    recommend,
    recommended_drugs,
)

CORE_GENES = {"CYP2C9", "CYP2C19", "CYP2D6", "SLCO1B1", "VKORC1", "CYP3A5", "DPYD", "TPMT", "NUDT15", "UGT1A1",
              "CYP2B6", "CYP4F2", "ABCG2"}
CORE_DRUGS = {"tacrolimus", "fluorouracil", "capecitabine", "azathioprine", "mercaptopurine", "thioguanine",
              "atazanavir", "efavirenz", "warfarin", "rosuvastatin", "clopidogrel", "simvastatin", "codeine", "tramadol",
              "ondansetron", "voriconazole", "citalopram", "escitalopram", "phenytoin"}


def called(gene: str, phenotype: str, diplotype: str = "*1/*2", score: float | None = None) -> GeneResult:
    return GeneResult(gene=gene, status="called", diplotype=diplotype, phenotype=phenotype, activity_score=score,
                      phenotype_confident=True)


def test_every_table_loads_with_citation_version_and_url() -> None:
    tables = guidelines()
    assert len(tables) >= 13
    for g in tables:
        assert re.search(r"Clin Pharmacol Ther (19|20)\d\d;\d+\(\d+\):\d+-\d+", g.citation), g.key
        assert g.journal in g.citation and str(g.year) in g.citation
        assert g.version and g.url.startswith("https://cpicpgx.org/")
        assert g.rules and all(r.classification in {"Strong", "Moderate", "Optional"} for r in g.rules)
    assert {gene for g in tables for gene in g.genes} == CORE_GENES
    assert set(recommended_drugs()) >= CORE_DRUGS


def test_bad_table_names_file_and_entry() -> None:
    with pytest.raises(PharmacoInputError) as info:
        parse_guideline("broken", '[guideline]\nname="x"\ncitation="y"\njournal="j"\nyear=2020\nversion="v"\nurl="u"\n'
                                  'drugs=["a"]\ngenes=["G"]\n[[rule]]\ndrug="a"\ngene="G"\nphenotypes=["P"]\n'
                                  'recommendation="r"\nclassification="Strong"\n')
    assert info.value.field == "cpic_recommendations_broken.toml: rule.implication"
    with pytest.raises(PharmacoInputError, match="not listed"):
        parse_guideline("stray", '[guideline]\nname="x"\ncitation="y"\njournal="j"\nyear=2020\nversion="v"\nurl="u"\n'
                                 'drugs=["a"]\ngenes=["G"]\n[[rule]]\ndrug="b"\ngene="G"\nphenotypes=["P"]\n'
                                 'implication="i"\nrecommendation="r"\nclassification="Strong"\n')


@pytest.mark.parametrize(("drug", "gene", "phenotype", "score", "expected", "classification"), [
    ("clopidogrel", "CYP2C19", "Poor Metabolizer", None, "Avoid clopidogrel", "Strong"),
    ("clopidogrel", "CYP2C19", "Normal Metabolizer", None, "75 mg", "Strong"),
    ("tacrolimus", "CYP3A5", "Normal Metabolizer", None, "1.5 to 2 times", "Strong"),
    ("tacrolimus", "CYP3A5", "Poor Metabolizer", None, "usual dose", "Strong"),
    ("fluorouracil", "DPYD", "Intermediate Metabolizer", 1.0, "half the usual dose", "Strong"),
    ("capecitabine", "DPYD", "Intermediate Metabolizer", 1.5, "half the usual dose", "Moderate"),
    ("fluorouracil", "DPYD", "Poor Metabolizer", 0.0, "Avoid", "Strong"),
    ("efavirenz", "CYP2B6", "Poor Metabolizer", None, "400 or 200 mg", "Moderate"),
    ("atazanavir", "UGT1A1", "Poor Metabolizer", None, "another antiretroviral", "Strong"),
    ("phenytoin", "CYP2C9", "Intermediate Metabolizer", 1.0, "25 %", "Moderate"),
    ("codeine", "CYP2D6", "Ultrarapid Metabolizer", None, "Do not use codeine", "Strong"),
    ("voriconazole", "CYP2C19", "Poor Metabolizer", None, "does not depend on CYP2C19", "Moderate"),
])
def test_callable_phenotype_gives_the_tables_row(drug: str, gene: str, phenotype: str, score: float | None,
                                                 expected: str, classification: str) -> None:
    answer = next(r for r in recommend({gene: called(gene, phenotype, score=score)}, [drug]) if r.gene == gene)
    assert answer.outcome == "recommendation"
    assert expected in answer.recommendation
    assert answer.classification == classification
    assert "Clin Pharmacol Ther" in answer.source


def test_thiopurines_answer_for_tpmt_and_nudt15_separately() -> None:
    answers = recommend({"TPMT": called("TPMT", "Intermediate Metabolizer"),
                         "NUDT15": called("NUDT15", "Poor Metabolizer", "*3/*3")}, ["mercaptopurine"])
    by_gene = {a.gene: a for a in answers}
    assert "30 to 80 %" in by_gene["TPMT"].recommendation
    assert "drastically reduced" in by_gene["NUDT15"].recommendation


def test_warfarin_cyp4f2_star3_carrier_gets_the_increase() -> None:
    def cyp4f2(diplotype: str, status: str = "called") -> str:
        result = GeneResult(gene="CYP4F2", status=status, diplotype=diplotype, phenotype="n/a")  # type: ignore[arg-type]
        return {a.gene: a for a in recommend({"CYP4F2": result}, ["warfarin"])}["CYP4F2"].recommendation

    # CYP4F2 has no CPIC phenotype table: the rule is on the carried allele, a called diplotype is enough
    assert "5 to 10 %" in cyp4f2("*1/*3")
    assert "No CYP4F2-based change" in cyp4f2("*1/*1")
    assert "not callable because" in cyp4f2("unknown", "ambiguous")


@pytest.mark.parametrize("result", [
    GeneResult(gene="CYP2C19", status="ambiguous", diplotype="unknown", phenotype="Poor Metabolizer",
               phenotype_inferred=True, candidates=[DiplotypeCandidate(diplotype="*2/*2", phenotype="Poor Metabolizer"),
                                                    DiplotypeCandidate(diplotype="*2/*3", phenotype="Poor Metabolizer")]),
    GeneResult(gene="CYP2C19", status="not_callable", diplotype="unknown", phenotype="unknown",
               unexplained_positions=["chr10:94781859 G/A"]),
    GeneResult(gene="CYP2C19", status="no_data", diplotype="unknown", phenotype="unknown",
               missing_positions=["rs4244285 (chr10:94781859)"]),
    GeneResult(gene="CYP2C19", status="called", diplotype="*1/*2", phenotype="Intermediate Metabolizer",
               phenotype_confident=False),
    GeneResult(gene="CYP2C19", status="called", diplotype="*1/*2", phenotype="Indeterminate", phenotype_confident=True),
])
def test_not_callable_gives_no_recommendation_and_says_why(result: GeneResult) -> None:
    (answer,) = recommend({"CYP2C19": result}, ["clopidogrel"])
    assert answer.outcome == "not_callable"
    assert answer.recommendation.startswith("No genotype-guided recommendation: CYP2C19 not callable because ")
    assert "prasugrel" not in answer.recommendation and answer.classification == "No recommendation"


def test_reasons_name_what_is_wrong() -> None:
    ambiguous = GeneResult(gene="CYP2D6", status="ambiguous", diplotype="unknown", phenotype="Poor Metabolizer",
                           phenotype_inferred=True,
                           candidates=[DiplotypeCandidate(diplotype="*3/*4", phenotype="Poor Metabolizer"),
                                       DiplotypeCandidate(diplotype="*4/*6", phenotype="Poor Metabolizer")])
    verdict = callability(ambiguous)
    assert not verdict.callable and verdict.inferred
    assert "*3/*4, *4/*6" in verdict.reason and "inferred (all candidates agree)" in verdict.reason
    unexplained = GeneResult(gene="CYP2C9", status="not_callable", diplotype="unknown", phenotype="unknown",
                             unexplained_positions=["chr10:94942290 T/A"], warnings=["allele not in definitions"])
    assert "chr10:94942290" in callability(unexplained).reason
    assert "allele not in definitions" in callability(unexplained).reason
    assert callability(None, "ABCG2").reason == "ABCG2 not callable because it was not genotyped in this report"
    outside = GeneResult(gene="CYP2D6", status="outside_call", diplotype="*1/*1", phenotype="Normal Metabolizer",
                         phenotype_confident=True)
    assert callability(outside).callable


def test_unknown_drug_is_an_error_naming_the_field() -> None:
    with pytest.raises(PharmacoInputError) as info:
        recommend({}, ["aspirin"])
    assert info.value.field == "drug"


@settings(max_examples=60, deadline=None)
@given(status=st.sampled_from(["called", "ambiguous", "not_callable", "outside_call", "no_data"]),
       confident=st.booleans(),
       phenotype=st.sampled_from(["Poor Metabolizer", "Normal Metabolizer", "unknown", "Indeterminate"]))
def test_recommendation_only_for_callable_confident_phenotypes(status: str, confident: bool, phenotype: str) -> None:
    result = GeneResult(gene="CYP2C19", status=status, diplotype="*2/*2", phenotype=phenotype,  # type: ignore[arg-type]
                        phenotype_confident=confident)
    (answer,) = recommend({"CYP2C19": result}, ["clopidogrel"])
    acts = status in ("called", "outside_call") and confident and phenotype not in ("unknown", "Indeterminate")
    assert (answer.outcome == "recommendation") is acts
