"""Pharmacogenomics: genotypes at defining positions -> star-allele diplotypes -> activity scores ->
CPIC phenotypes -> drug recommendations. Tables are data files in ``pharmaco/data/pgx`` with versions.

A defining position absent from the VCF (or with a no-call GT) makes that gene's call ``unknown``;
it is never assumed to be reference.
"""

from __future__ import annotations

import csv
import io
import itertools
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from medtwin.pharmaco.errors import GenotypeError, PharmacoInputError
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
from medtwin.pharmaco.vcf import read_vcf

__all__ = ["INDETERMINATE", "UNKNOWN", "DiplotypeCandidate", "DrugRecommendation", "GeneResult", "PgxReport",
           "Status", "VariantCall"]

GENES = ("CYP2C9", "CYP2C19", "CYP2D6", "VKORC1", "SLCO1B1")


def _data(name: str) -> str:
    return resources.files("medtwin.pharmaco").joinpath(f"data/pgx/{name}").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Variant:
    gene: str
    rsid: str
    chrom: str
    position: int
    ref: str
    alt: str
    gene_change: str
    source: str


@dataclass(frozen=True)
class AlleleDefinition:
    gene: str
    allele: str
    suballele: str
    rsids: frozenset[str]
    function: str
    activity_value: float | None


@cache
def variants() -> tuple[Variant, ...]:
    rows = csv.DictReader(io.StringIO(_data("variants.csv")))
    return tuple(
        Variant(r["gene"], r["rsid"], r["chrom"], int(r["position_grch38"]), r["ref_grch38"], r["alt_grch38"],
                r["gene_change"], r["source"])
        for r in rows
    )


@cache
def allele_definitions() -> tuple[AlleleDefinition, ...]:
    rows = csv.DictReader(io.StringIO(_data("alleles.csv")))
    return tuple(
        AlleleDefinition(
            r["gene"], r["allele"], r["suballele"], frozenset(x for x in r["defining_rsids"].split(";") if x),
            r["function"], float(r["activity_value"]) if r["activity_value"] else None,
        )
        for r in rows
    )


@cache
def phenotype_tables() -> dict[str, Any]:
    return tomllib.loads(_data("cpic_phenotypes.toml"))


@cache
def recommendation_table() -> tuple[dict[str, str], ...]:
    return tuple(csv.DictReader(io.StringIO(_data("cpic_recommendations.csv"))))


def _definitions(gene: str) -> list[AlleleDefinition]:
    return [d for d in allele_definitions() if d.gene == gene and not (gene == "CYP2D6" and d.allele == "*5")]


def allele_info(gene: str, allele: str) -> AlleleDefinition:
    for d in allele_definitions():
        if d.gene == gene and d.allele == allele:
            return d
    raise GenotypeError(gene, f"unknown allele {allele!r}")


def _activity_phenotype(gene: str, score: float) -> str:
    for low, high, name in phenotype_tables()[gene]["thresholds"]:
        if low - 1e-9 <= score <= high + 1e-9:
            return str(name)
    return INDETERMINATE


def phenotype_from_diplotype(gene: str, diplotype: str, copy_number: int | None = None) -> tuple[str, float | None]:
    """CPIC phenotype (and activity score where CPIC uses one) of a diplotype such as ``'*1/*4'``.

    ``copy_number`` (CYP2D6 only): total gene copies; 1 = one deletion (*5), 3+ = duplication of the
    first allele named if heterozygous ambiguity cannot be resolved (see :func:`cyp2d6_scores`).
    """
    parts = diplotype.split("/")
    if len(parts) != 2:
        raise GenotypeError(gene, f"diplotype {diplotype!r} must look like '*1/*2'")
    a, b = (allele_info(gene, p.strip()) for p in parts)
    table = phenotype_tables()[gene]
    if table["method"] == "activity_score":
        if a.activity_value is None or b.activity_value is None:
            raise GenotypeError(gene, f"no activity value for {diplotype}")
        score = a.activity_value + b.activity_value
        return _activity_phenotype(gene, score), score
    pair = {a.function, b.function}
    for f1, f2, name in table["rules"]:
        if {f1, f2} == pair:
            return str(name), None
    return INDETERMINATE, None


def cyp2d6_scores(allele1: str, allele2: str, copy_number: int) -> list[tuple[str, float]]:
    """Possible (diplotype label, activity score) given the total CYP2D6 copy number."""
    v1, v2 = allele_info("CYP2D6", allele1).activity_value, allele_info("CYP2D6", allele2).activity_value
    assert v1 is not None and v2 is not None
    if copy_number == 2:
        return [(f"{allele1}/{allele2}", v1 + v2)]
    if copy_number == 1:
        if allele1 != allele2:
            raise GenotypeError("cyp2d6_copy_number", f"1 copy but heterozygous SNV genotype {allele1}/{allele2}")
        return [(f"{allele1}/*5", v1)]
    if copy_number == 0:
        return [("*5/*5", 0.0)]
    extra = copy_number - 2
    options = [(f"{allele1}x{extra + 1}/{allele2}", v1 * (extra + 1) + v2)]
    if allele2 != allele1:
        options.append((f"{allele1}/{allele2}x{extra + 1}", v1 + v2 * (extra + 1)))
    return options


def _variant_calls(vcf_text: str, sample: str | None) -> tuple[str, str, list[VariantCall], dict[str, tuple[int, ...] | None]]:
    wanted = {(v.chrom, v.position) for v in variants()}
    parsed = read_vcf(vcf_text, sample=sample, positions=wanted)
    calls: list[VariantCall] = []
    haplotypes: dict[str, tuple[int, ...] | None] = {}
    for v in variants():
        rec = parsed.records.get((v.chrom, v.position))
        genotype, dosage, phased, haps = UNKNOWN, None, False, None
        if rec is not None and rec.ref == v.ref and all(a is not None for a in rec.alleles):
            seqs = rec.allele_sequences()
            if len(seqs) == 1:  # haploid call on an autosome: treat as unusable
                seqs = ()
            if seqs:
                genotype = "/".join(str(s) for s in seqs) if not rec.phased else "|".join(str(s) for s in seqs)
                haps = tuple(1 if s == v.alt else 0 for s in seqs)
                dosage = sum(haps)
                phased = rec.phased
        calls.append(VariantCall(gene=v.gene, rsid=v.rsid, chrom=v.chrom, position=v.position, ref=v.ref, alt=v.alt,
                                 genotype=genotype, alt_dosage=dosage, phased=phased))
        haplotypes[v.rsid] = haps if phased else None
    return parsed.sample, parsed.assembly, calls, haplotypes


def _call_star_gene(gene: str, calls: list[VariantCall], haplotypes: dict[str, tuple[int, ...] | None],
                    copy_number: int | None) -> GeneResult:
    version = str(phenotype_tables()[gene]["version"])
    gene_calls = [c for c in calls if c.gene == gene]
    missing = [f"{c.rsid} (chr{c.chrom}:{c.position})" for c in gene_calls if c.alt_dosage is None]
    if missing:
        return GeneResult(gene=gene, diplotype=UNKNOWN, phenotype=UNKNOWN, missing_positions=missing,
                          notes=["defining positions missing or no-call in the VCF; not assumed reference"],
                          table_version=version)
    dosage = {c.rsid: int(c.alt_dosage or 0) for c in gene_calls}
    definitions = _definitions(gene)
    notes: list[str] = []
    candidates: list[tuple[str, str]] = []
    if all(haplotypes.get(c.rsid) is not None for c in gene_calls):
        found = []
        for h in (0, 1):
            carried = frozenset(c.rsid for c in gene_calls if (haplotypes[c.rsid] or (0, 0))[h] == 1)
            match = [d for d in definitions if d.rsids == carried]
            found.append(match[0].allele if match else None)
        if None not in found:
            a1, a2 = sorted(found, key=_allele_sort_key)  # type: ignore[arg-type]
            candidates = [(str(a1), str(a2))]
        else:
            notes.append("phased haplotype matches no defined allele")
    else:
        best = -1
        for d1, d2 in itertools.combinations_with_replacement(definitions, 2):
            if all((r in d1.rsids) + (r in d2.rsids) == dosage[r] for r in dosage):
                score = len(d1.rsids) + len(d2.rsids)
                pair = tuple(sorted((d1.allele, d2.allele), key=_allele_sort_key))
                if score > best:
                    best, candidates = score, [pair]  # type: ignore[list-item]
                elif score == best and pair not in candidates:
                    candidates.append(pair)  # type: ignore[arg-type]
        if len(candidates) > 1:
            notes.append("unphased genotypes are consistent with several diplotypes")
    if not candidates:
        return GeneResult(gene=gene, diplotype=UNKNOWN, phenotype=INDETERMINATE, notes=notes or
                          ["genotype pattern matches no pair of defined alleles"], table_version=version)
    options: list[tuple[str, str, float | None]] = []
    for a1, a2 in candidates:
        if gene == "CYP2D6":
            for label, cn_score in cyp2d6_scores(a1, a2, 2 if copy_number is None else copy_number):
                options.append((label, _activity_phenotype(gene, cn_score), cn_score))
        else:
            phen, table_score = phenotype_from_diplotype(gene, f"{a1}/{a2}")
            options.append((f"{a1}/{a2}", phen, table_score))
    if gene == "CYP2D6" and copy_number is None:
        notes.append("copy number not given: assumed 2 copies (no deletion or duplication)")
    phenotypes = {o[1] for o in options}
    scores = {o[2] for o in options}
    return GeneResult(
        gene=gene, diplotype=options[0][0], alternatives=[o[0] for o in options[1:]],
        activity_score=options[0][2] if len(scores) == 1 else None,
        phenotype=options[0][1] if len(phenotypes) == 1 else INDETERMINATE, notes=notes, table_version=version,
    )


def _allele_sort_key(allele: str) -> tuple[int, str]:
    digits = "".join(ch for ch in allele if ch.isdigit())
    return (int(digits) if digits else 0, allele)


def _vkorc1(calls: list[VariantCall]) -> GeneResult:
    c = next(c for c in calls if c.gene == "VKORC1")
    if c.alt_dosage is None:
        return GeneResult(gene="VKORC1", diplotype=UNKNOWN, phenotype=UNKNOWN,
                          missing_positions=[f"{c.rsid} (chr{c.chrom}:{c.position})"])
    genotype = {0: "G/G", 1: "G/A", 2: "A/A"}[c.alt_dosage]
    phenotype = {0: "Normal warfarin sensitivity", 1: "Increased warfarin sensitivity",
                 2: "Highly increased warfarin sensitivity"}[c.alt_dosage]
    return GeneResult(gene="VKORC1", diplotype=f"rs9923231 {genotype}", phenotype=phenotype,
                      notes=["-1639G>A in gene orientation (plus strand C>T)"],
                      table_version="CPIC warfarin guideline (Johnson JA et al. Clin Pharmacol Ther 2017;102:397-404)")


def vkorc1_genotype(result: GeneResult) -> str | None:
    """'G/G', 'G/A' or 'A/A' from a VKORC1 result (None if unknown)."""
    return None if result.diplotype == UNKNOWN else result.diplotype.split()[-1]


def recommend(genes: dict[str, GeneResult], drugs: tuple[str, ...] = ("clopidogrel", "codeine", "simvastatin")) -> list[DrugRecommendation]:
    out = []
    for drug in drugs:
        rows = [r for r in recommendation_table() if r["drug"] == drug]
        if not rows:
            raise PharmacoInputError("drug", f"no CPIC recommendation table for {drug!r}")
        gene = rows[0]["gene"]
        phen = genes[gene].phenotype
        row = next((r for r in rows if r["phenotype"] == phen), None)
        if row is None:
            out.append(DrugRecommendation(drug=drug, gene=gene, phenotype=phen, classification="No recommendation",
                                          recommendation=f"No genotype-guided recommendation: {gene} phenotype is {phen}.",
                                          source=rows[0]["source"]))
        else:
            out.append(DrugRecommendation(drug=drug, gene=gene, phenotype=phen, recommendation=row["recommendation"],
                                          classification=row["classification"], source=row["source"]))
    return out


def call_pgx(vcf_text: str, sample: str | None = None, cyp2d6_copy_number: int | None = None) -> PgxReport:
    """Read a GRCh38 VCF and return genotypes, diplotypes, phenotypes and CPIC recommendations."""
    if cyp2d6_copy_number is not None and not 0 <= cyp2d6_copy_number <= 6:
        raise PharmacoInputError("cyp2d6_copy_number", f"must be between 0 and 6, got {cyp2d6_copy_number}")
    chosen, assembly, calls, haplotypes = _variant_calls(vcf_text, sample)
    genes: dict[str, GeneResult] = {}
    for gene in ("CYP2C9", "CYP2C19", "CYP2D6", "SLCO1B1"):
        genes[gene] = _call_star_gene(gene, calls, haplotypes, cyp2d6_copy_number if gene == "CYP2D6" else None)
    genes["VKORC1"] = _vkorc1(calls)
    return PgxReport(sample=chosen, assembly=assembly, genes=genes, variants=calls, recommendations=recommend(genes))


def build_vcf(genotypes: dict[str, str], sample: str = "SAMPLE", phased: bool = False, include: set[str] | None = None,
              assembly: str = "GRCh38") -> str:
    """Write a VCF at the defining positions from star-allele diplotypes per gene (``{'CYP2D6': '*1/*4'}``).

    Used for demos and tests; positions of genes not in ``genotypes`` are written homozygous reference,
    rsids not in ``include`` (if given) are left out.
    """
    alt_by_hap: dict[str, list[int]] = {v.rsid: [0, 0] for v in variants()}
    for gene, diplotype in genotypes.items():
        if gene == "VKORC1":
            n_alt = {"G/G": 0, "G/A": 1, "A/G": 1, "A/A": 2}[diplotype]
            alt_by_hap["rs9923231"] = [1 if n_alt >= 1 else 0, 1 if n_alt == 2 else 0]
            continue
        for h, allele in enumerate(diplotype.split("/")):
            definition = next(d for d in allele_definitions() if d.gene == gene and d.allele == allele.strip())
            for rsid in definition.rsids:
                alt_by_hap[rsid][h] = 1
    sep = "|" if phased else "/"
    lines = ["##fileformat=VCFv4.2", f"##reference={assembly}",
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             f"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t{sample}"]
    for v in sorted(variants(), key=lambda x: (int(x.chrom), x.position)):
        if include is not None and v.rsid not in include:
            continue
        hap = alt_by_hap[v.rsid]
        gt = f"{hap[0]}{sep}{hap[1]}" if phased else f"{min(hap)}{sep}{max(hap)}"
        lines.append(f"chr{v.chrom}\t{v.position}\t{v.rsid}\t{v.ref}\t{v.alt}\t.\tPASS\t.\tGT\t{gt}")
    return "\n".join(lines) + "\n"
