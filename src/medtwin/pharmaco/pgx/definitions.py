"""PharmCAT allele definitions as shipped in ``pharmaco/data/pgx/pharmcat_definitions.json``.

Each gene has its defining GRCh38 positions (VCF representation: REF and ALTs, indels with their anchor
base) and its named alleles. A named allele lists the allele it carries at some positions; at every other
position it carries the reference (PharmCAT's definitions are sparse). IUPAC ambiguity codes are expanded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from medtwin.pharmaco.errors import GenotypeError
from medtwin.pharmaco.pgx_data import data_text

GENES = ("ABCG2", "CYP2B6", "CYP2C19", "CYP2C9", "CYP2D6", "CYP3A5", "CYP4F2", "DPYD", "NUDT15", "SLCO1B1",
         "TPMT", "UGT1A1", "VKORC1")
IUPAC = {"A": "A", "C": "C", "G": "G", "T": "T", "R": "AG", "Y": "CT", "S": "CG", "W": "AT", "K": "GT",
         "M": "AC", "B": "CGT", "D": "AGT", "H": "ACT", "V": "ACG", "N": "ACGT"}


@dataclass(frozen=True)
class Position:
    index: int
    chrom: str  # without 'chr'
    position: int
    rsid: str | None
    ref: str
    alts: tuple[str, ...]
    hgvs: str

    @property
    def alleles(self) -> tuple[str, ...]:
        return (self.ref, *self.alts)

    @property
    def last(self) -> int:
        return self.position + len(self.ref) - 1

    @property
    def label(self) -> str:
        return f"{self.rsid or self.hgvs} (chr{self.chrom}:{self.position})"


@dataclass(frozen=True)
class NamedAllele:
    name: str
    defining: dict[int, str]  # position index -> allele as written (may be an IUPAC code)

    def allowed(self, position: Position) -> frozenset[str]:
        """The VCF alleles this named allele accepts at ``position`` (reference where it is not defining)."""
        code = self.defining.get(position.index)
        if code is None:
            return frozenset({position.ref})
        if len(code) == 1 and code in IUPAC:
            return frozenset(IUPAC[code])
        return frozenset({code})

    @property
    def score(self) -> int:
        """PharmCAT's specificity score: the number of positions the definition names."""
        return len(self.defining)


@dataclass(frozen=True)
class GeneDefinition:
    gene: str
    chrom: str
    version: str
    genome_build: str
    reference: str
    positions: tuple[Position, ...]
    alleles: tuple[NamedAllele, ...]
    ignored_positions: frozenset[int]
    required_positions: frozenset[int]
    ignored_alleles: frozenset[str]
    priorities: tuple[tuple[frozenset[str], str], ...]  # unphased diplotype priorities: (set of options, pick)
    extra_positions: tuple[Position, ...] = ()  # read and reported, not used for the call (CYP2C9 rs12777823)

    def allele(self, name: str) -> NamedAllele:
        for a in self.alleles:
            if a.name == name:
                return a
        raise GenotypeError(self.gene, f"unknown allele {name!r}")

    @property
    def first(self) -> int:
        return min(p.position for p in self.positions)

    @property
    def last(self) -> int:
        return max(p.last for p in self.positions)


def _gene(gene: str, raw: dict[str, Any]) -> GeneDefinition:
    chrom = str(raw["chromosome"]).removeprefix("chr")
    exemptions = raw.get("exemptions", {})
    ignored = frozenset(int(p) for p in exemptions.get("ignoredPositions", []))
    positions = tuple(
        Position(i, chrom, int(p[0]), p[1], str(p[2]), tuple(p[3]), str(p[4])) for i, p in enumerate(raw["positions"])
    )
    ignored_alleles = frozenset(exemptions.get("ignoredAlleles", []))
    alleles = tuple(NamedAllele(name, {int(i): a for i, a in defs.items()})
                    for name, defs in raw["alleles"] if name not in ignored_alleles)
    priorities = tuple((frozenset(p["list"]), str(p["pick"])) for p in exemptions.get("unphasedDiplotypePriorities", []))
    extra = tuple(Position(-1, chrom, int(p[0]), p[1], str(p[2]), tuple(p[3]), f"g.{p[0]}")
                  for p in exemptions.get("extraPositions", []))
    return GeneDefinition(gene, chrom, str(raw["version"]), str(raw["genome_build"]), str(raw["reference"]),
                          positions, alleles, ignored, frozenset(int(p) for p in exemptions.get("requiredPositions", [])),
                          ignored_alleles, priorities, extra)


@cache
def source() -> dict[str, str]:
    return dict(json.loads(data_text("pharmcat_definitions.json"))["source"])


@cache
def gene_definitions() -> dict[str, GeneDefinition]:
    raw = json.loads(data_text("pharmcat_definitions.json"))
    return {gene: _gene(gene, entry) for gene, entry in raw["genes"].items()}


def definition(gene: str) -> GeneDefinition:
    try:
        return gene_definitions()[gene]
    except KeyError:
        raise GenotypeError("gene", f"{gene!r} is not a supported pharmacogene ({', '.join(GENES)})") from None


def definition_version() -> str:
    versions = sorted({d.version for d in gene_definitions().values()})
    return f"PharmCAT definitions {', '.join(versions)} (commit {source()['commit'][:12]})"
