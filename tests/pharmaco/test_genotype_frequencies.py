"""The warfarin genotype-unknown model's population allele frequencies: per gene they sum to 1, they are the
cited 1000 Genomes European minor allele frequencies (Shendre 2018, Table 1), and the source names them."""

from __future__ import annotations

import numpy as np
import pytest

from medtwin.pharmaco.library import load_drug

#: Shendre A, Dillon C, Limdi NA. Pharmacogenomics 2018;19(17):1357-1371 (PMC6562764), Table 1, European column:
#: minor allele frequencies in % from the 1000 Genomes Project.
CITED_MAF_PERCENT = {"CYP2C9": {"*2": 12.4, "*3": 7.3}, "VKORC1": {"A": 38.8}}
REFERENCE_ALLELE = {"CYP2C9": "*1", "VKORC1": "G"}


@pytest.mark.parametrize("gene", ["CYP2C9", "VKORC1"])
def test_frequencies_sum_to_one_and_are_the_cited_values(gene: str) -> None:
    table = load_drug("warfarin").population_genotypes[gene]
    assert sum(table.alleles.values()) == pytest.approx(1.0, abs=1e-12)
    cited = CITED_MAF_PERCENT[gene]
    for allele, percent in cited.items():
        assert table.alleles[allele] == pytest.approx(percent / 100, abs=5e-4)  # within the table's rounding
        assert f"{percent} %" in table.source  # the figure is written out beside its source
    assert table.alleles[REFERENCE_ALLELE[gene]] == pytest.approx(1 - sum(cited.values()) / 100, abs=1e-9)
    assert set(table.alleles) == {REFERENCE_ALLELE[gene], *cited}
    assert "Shendre" in table.source and "PMC6562764" in table.source and "Table 1" in table.source
    assert "Shendre 2018" in table.citation


def test_hardy_weinberg_diplotype_frequencies_of_the_cited_alleles() -> None:
    drug = load_drug("warfarin")
    keys, freqs = drug.population_genotypes["CYP2C9"].diplotypes()
    got = dict(zip(keys, freqs, strict=True))
    assert got["*1/*1"] == pytest.approx(0.803**2) and got["*1/*3"] == pytest.approx(2 * 0.803 * 0.073)
    assert got["*2/*3"] == pytest.approx(2 * 0.124 * 0.073) and float(np.sum(freqs)) == pytest.approx(1.0)
    keys, freqs = drug.population_genotypes["VKORC1"].diplotypes()
    assert dict(zip(keys, freqs, strict=True)) == pytest.approx({"G/G": 0.612**2, "G/A": 2 * 0.612 * 0.388,
                                                                 "A/A": 0.388**2})
