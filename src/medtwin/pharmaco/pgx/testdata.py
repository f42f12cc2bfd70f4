"""Write a VCF at every defining position from named-allele diplotypes (for demos, examples and tests).

``build_vcf({'CYP2D6': '*1/*4', 'VKORC1': 'G/A'})``: genes not given are homozygous for their reference
allele; IUPAC codes are written as the reference base when allowed, else the first base they allow.
"""

from __future__ import annotations

from medtwin.pharmaco.errors import GenotypeError
from medtwin.pharmaco.pgx.definitions import GeneDefinition, Position, gene_definitions

_VKORC1 = {"G": "rs9923231 reference (C)", "A": "rs9923231 variant (T)"}
_ORDER = {str(i): i for i in range(1, 23)} | {"X": 23, "Y": 24}


def _haplotypes(gene: GeneDefinition, diplotype: str) -> tuple[str, str]:
    if gene.gene == "VKORC1" and diplotype.replace(" ", "") in ("G/G", "G/A", "A/G", "A/A"):
        a, b = diplotype.replace(" ", "").split("/")
        return _VKORC1[a], _VKORC1[b]
    parts = [p.strip() for p in diplotype.split("/")]
    if len(parts) != 2:
        raise GenotypeError(gene.gene, f"diplotype {diplotype!r} must look like '*1/*4'")
    return parts[0], parts[1]


def _base(gene: GeneDefinition, name: str, position: Position) -> int:
    allowed = gene.allele(name).allowed(position)
    for k, seq in enumerate(position.alleles):
        if seq in allowed:
            return k
    raise GenotypeError(gene.gene, f"{name} allows no VCF allele at {position.label}")


def build_vcf(genotypes: dict[str, str], sample: str = "SAMPLE", phased: bool = False,
              include: set[str] | None = None, assembly: str = "GRCh38", omit: set[int] | None = None) -> str:
    """VCF text; ``include`` (rsids) keeps only those positions, ``omit`` (positions) leaves some out."""
    definitions = gene_definitions()
    unknown = set(genotypes) - set(definitions)
    if unknown:
        raise GenotypeError("gene", f"unknown gene(s) {sorted(unknown)}")
    rows: list[tuple[int, int, str]] = []
    sep = "|" if phased else "/"
    for gene in definitions.values():
        h0, h1 = _haplotypes(gene, genotypes.get(gene.gene, f"{gene.reference}/{gene.reference}"))
        for p in gene.positions:
            if (include is not None and p.rsid not in include) or (omit and p.position in omit):
                continue
            a, b = _base(gene, h0, p), _base(gene, h1, p)
            gt = f"{a}{sep}{b}" if phased else f"{min(a, b)}{sep}{max(a, b)}"
            line = f"chr{p.chrom}\t{p.position}\t{p.rsid or '.'}\t{p.ref}\t{','.join(p.alts)}\t.\tPASS\t.\tGT\t{gt}"
            rows.append((_ORDER.get(p.chrom, 99), p.position, line))
    header = ["##fileformat=VCFv4.2", f"##reference={assembly}",
              '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
              f"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t{sample}"]
    return "\n".join(header + [r[2] for r in sorted(rows)]) + "\n"
