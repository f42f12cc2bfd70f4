"""VCF records -> the genotype at each defining position, in the definition's own VCF representation.

A record's alleles are compared with the definition's alleles as haplotype sequences over the reference
window both cover (the union of the two REF alleles), which is the same as comparing them after trimming and
left-aligning within that window: ``CAT>C`` at 100 equals ``ATA>A`` at 101 over ``CATA``. An allele that
matches none of the definition's alleles is kept as ``?<sequence>`` so the caller can name it as unexplained.
"""

from __future__ import annotations

from dataclasses import dataclass

from medtwin.pharmaco.pgx.definitions import GeneDefinition, Position
from medtwin.pharmaco.vcf import VcfRecord

UNRECOGNISED = "?"
ABSENT = "absent from the VCF"


@dataclass(frozen=True)
class Observed:
    position: Position
    alleles: tuple[str, str] | None  # definition alleles (or '?seq'); None = missing / no-call
    phase_set: str | None = None  # None: unphased
    reason: str = ""  # why missing, or where the genotype came from
    line: int = 0  # VCF line read (0: none)

    @property
    def heterozygous(self) -> bool:
        return self.alleles is not None and self.alleles[0] != self.alleles[1]

    @property
    def non_reference(self) -> bool:
        return self.alleles is not None and any(a != self.position.ref for a in self.alleles)


def _local_reference(start: int, pieces: list[tuple[int, str]]) -> str | None:
    """Merge REF strings (start, seq) into one window; None if they disagree or leave a gap."""
    end = max(p + len(s) for p, s in pieces)
    local: list[str | None] = [None] * (end - start)
    for p, s in pieces:
        for i, base in enumerate(s):
            here = local[p - start + i]
            if here is not None and here != base:
                return None
            local[p - start + i] = base
    if any(b is None for b in local):
        return None
    return "".join(b for b in local if b is not None)


def haplotype(window: str, start: int, position: int, ref: str, alt: str) -> str:
    """The window's sequence after replacing ``ref`` at ``position`` by ``alt``."""
    offset = position - start
    return window[:offset] + alt + window[offset + len(ref):]


def match_allele(position: Position, record: VcfRecord, sequence: str) -> str | None:
    """The definition allele equal to the record's ``sequence``; '?seq' if none; None if the REFs disagree."""
    start = min(position.position, record.position)
    window = _local_reference(start, [(position.position, position.ref), (record.position, record.ref)])
    if window is None:
        return None
    target = haplotype(window, start, record.position, record.ref, sequence)
    for allele in position.alleles:
        if haplotype(window, start, position.position, position.ref, allele) == target:
            return allele
    return UNRECOGNISED + sequence


def _from_record(position: Position, record: VcfRecord) -> Observed:
    if record.is_reference_block:
        return Observed(position, (position.ref, position.ref), None, f"gVCF reference block at line {record.line}")
    if len(record.alleles) != 2:
        return Observed(position, None, reason=f"haploid GT at line {record.line}")
    if any(a is None for a in record.alleles):
        return Observed(position, None, reason=f"no-call GT at line {record.line}")
    seqs = record.allele_sequences()
    matched = [match_allele(position, record, s) if s is not None else None for s in seqs]
    if any(m is None for m in matched):
        return Observed(position, None, reason=f"REF {record.ref} at line {record.line} disagrees with the "
                                               f"definition's REF {position.ref}", line=record.line)
    a, b = (str(m) for m in matched)
    return Observed(position, (a, b), record.phase_set if record.phased else None, f"line {record.line}")


def _recognised(position: Position, record: VcfRecord) -> bool:
    return all(
        s is None or not str(match_allele(position, record, s) or UNRECOGNISED).startswith(UNRECOGNISED)
        for s in record.allele_sequences()
    )


def _covers(record: VcfRecord, position: Position) -> bool:
    return record.position <= position.last and position.position <= record.last


def observe(gene: GeneDefinition, records: list[VcfRecord], extra: bool = False) -> list[Observed]:
    """One :class:`Observed` per defining position of ``gene``, in definition order (or per extra position)."""
    positions = gene.extra_positions if extra else gene.positions
    if not positions:
        return []
    starts = {p.position for p in positions}
    first, last = min(p.position for p in positions), max(p.last for p in positions)
    here = [r for r in records if r.chrom == gene.chrom and r.position <= last and r.last >= first - 1]
    out = []
    for position in positions:
        exact = [r for r in here if r.position == position.position and not r.is_reference_block]
        if not exact:  # another spelling of the same variant, not sitting on another defining position
            exact = [r for r in here if r.position not in starts and not r.is_reference_block and _covers(r, position)]
        if exact:
            chosen = next((r for r in exact if any(a for a in r.alleles) and _recognised(position, r)), exact[0])
            out.append(_from_record(position, chosen))
            continue
        block = next((r for r in here if r.is_reference_block and r.position <= position.position
                      and position.last <= (r.end or 0)), None)
        if block is not None:
            out.append(_from_record(position, block))
        else:
            out.append(Observed(position, None, reason=ABSENT))
    return out
