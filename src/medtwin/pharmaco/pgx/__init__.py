"""Pharmacogenomics: a VCF -> the genotype at every PharmCAT defining position of 13 CPIC genes -> named-allele
diplotypes (with honest uncertainty) -> CPIC phenotypes and activity scores -> drug recommendations.

Definitions and tables are data files in ``pharmaco/data/pgx`` with their versions and sources (README there).
A defining position absent from the VCF (or no-call) is never assumed reference; a non-reference genotype no
named allele explains makes the gene "not callable"; CYP2D6 needs an outside call for a confident phenotype.
"""

from __future__ import annotations

from pathlib import Path

from medtwin.pharmaco.errors import PharmacoInputError, VcfError
from medtwin.pharmaco.pgx.caller import call_gene, from_outside_call
from medtwin.pharmaco.pgx.definitions import (
    GENES,
    GeneDefinition,
    definition_version,
    gene_definitions,
)
from medtwin.pharmaco.pgx.genotypes import ABSENT, Observed, observe
from medtwin.pharmaco.pgx.outside import OutsideCall, parse_outside_calls, read_outside_calls
from medtwin.pharmaco.pgx.phenotypes import phenotype_of
from medtwin.pharmaco.pgx.testdata import build_vcf
from medtwin.pharmaco.pgx.types import (
    INDETERMINATE,
    UNKNOWN,
    DiplotypeCandidate,
    DrugRecommendation,
    GeneResult,
    PgxReport,
    Status,
    VariantCall,
)
from medtwin.pharmaco.recommendations import recommend as cpic_recommend
from medtwin.pharmaco.vcf import read_vcf

__all__ = ["GENES", "INDETERMINATE", "UNKNOWN", "DiplotypeCandidate", "DrugRecommendation", "GeneResult",
           "PgxReport", "Status", "VariantCall", "build_vcf", "call_pgx", "phenotype_from_diplotype",
           "vkorc1_genotype"]


def phenotype_from_diplotype(gene: str, diplotype: str) -> tuple[str, float | None]:
    """CPIC phenotype (and activity score where CPIC uses one) of a diplotype such as ``'*1/*4'``."""
    parts = diplotype.split("/")
    if len(parts) != 2:
        raise PharmacoInputError(gene, f"diplotype {diplotype!r} must look like '*1/*2'")
    return phenotype_of(gene, parts[0].strip(), parts[1].strip())


def vkorc1_genotype(result: GeneResult) -> str | None:
    """'G/G', 'G/A' or 'A/A' (rs9923231, -1639 in gene orientation) from a VKORC1 result; None if not called."""
    if result.status not in ("called", "outside_call") or result.diplotype == UNKNOWN:
        return None
    if result.diplotype.startswith("rs9923231 ") and " " not in result.diplotype[10:]:  # reports stored before 14
        return result.diplotype.split()[-1]
    variants = result.diplotype.count("variant")
    return {0: "G/G", 1: "G/A", 2: "A/A"}.get(variants)


def _variant_call(gene: str, obs: Observed) -> VariantCall:
    p = obs.position
    if obs.alleles is None:
        genotype, dosage = UNKNOWN, None
    else:
        genotype = ("|" if obs.phase_set else "/").join(obs.alleles)
        dosage = sum(a != p.ref for a in obs.alleles)
    return VariantCall(gene=gene, rsid=p.rsid or p.hgvs, chrom=p.chrom, position=p.position, ref=p.ref,
                       alt=",".join(p.alts), genotype=genotype, alt_dosage=dosage, phased=obs.phase_set is not None,
                       phase_set=obs.phase_set)


def _regions(definitions: dict[str, GeneDefinition]) -> list[tuple[str, int, int]]:
    return [(d.chrom, p.position, p.last) for d in definitions.values() for p in (*d.positions, *d.extra_positions)]


def _outside(outside_calls: str | Path | dict[str, OutsideCall] | None) -> dict[str, OutsideCall]:
    if outside_calls is None:
        return {}
    if isinstance(outside_calls, Path):
        return read_outside_calls(outside_calls)
    if isinstance(outside_calls, str):
        return parse_outside_calls(outside_calls)
    return outside_calls


def _check_reference(observed: dict[str, list[Observed]], label: str) -> None:
    """Many REF alleles that disagree with GRCh38 mean the wrong assembly, not a few odd positions."""
    read = [o for obs in observed.values() for o in obs if o.reason != ABSENT]
    wrong = [o for o in read if o.reason.startswith("REF")]
    if len(wrong) >= 3 and len(wrong) >= 0.2 * len(read):
        raise VcfError(f"{label} line {wrong[0].line}",
                       f"REF disagrees with GRCh38 at {len(wrong)} of {len(read)} pharmacogene positions read "
                       f"(first: {wrong[0].position.label}); is the VCF on another assembly?")


def call_pgx(vcf: str | Path, sample: str | None = None, cyp2d6_copy_number: int | None = None,
             outside_calls: str | Path | dict[str, OutsideCall] | None = None, name: str | None = None) -> PgxReport:
    """Call all 13 genes from a GRCh38 VCF (text, or a path to a plain or gzip file)."""
    if cyp2d6_copy_number is not None and not 0 <= cyp2d6_copy_number <= 6:
        raise PharmacoInputError("cyp2d6_copy_number", f"must be between 0 and 6, got {cyp2d6_copy_number}")
    outside = _outside(outside_calls)
    definitions = gene_definitions()
    label = name or (str(vcf) if isinstance(vcf, Path) else "VCF")
    parsed = read_vcf(vcf, sample=sample, regions=_regions(definitions), name=label)
    genes: dict[str, GeneResult] = {}
    calls: list[VariantCall] = []
    observed_by_gene = {gene: observe(definitions[gene], parsed.overlapping) for gene in GENES}
    _check_reference(observed_by_gene, label)
    for gene in GENES:
        d = definitions[gene]
        observed = observed_by_gene[gene]
        calls += [_variant_call(gene, o) for o in (*observed, *observe(d, parsed.overlapping, extra=True))]
        result = call_gene(d, observed, cyp2d6_copy_number if gene == "CYP2D6" else None)
        genes[gene] = from_outside_call(d, outside[gene], result) if gene in outside else result
    return PgxReport(sample=parsed.sample, assembly=parsed.assembly, genes=genes, variants=calls,
                     recommendations=[DrugRecommendation.model_validate(r, from_attributes=True)  # CPIC tables: B's module
                                      for r in cpic_recommend(genes)], definition_version=definition_version())
