"""DPYD by PharmCAT's rule: the two lowest-function variant alleles found make the diplotype.

DPYD's named alleles are single variants (and HapB3, two positions). Haplotypes are not reconstructed:
every named variant allele present is counted with its copy number (HapB3 first, as many copies as both of
its positions carry; then single-position alleles take what remains). The two alleles with the lowest CPIC
activity value (padded with ``Reference``) form the diplotype and their activity values sum to the activity
score, which gives the CPIC phenotype. Non-reference alleles left over are unexplained: not callable.

With missing positions, every variant that could hide there (one or two copies, or two different ones) is
added in turn; the phenotype is reported only if all these candidates agree.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from itertools import combinations

from medtwin.pharmaco.pgx.definitions import GeneDefinition, NamedAllele
from medtwin.pharmaco.pgx.genotypes import UNRECOGNISED, Observed
from medtwin.pharmaco.pgx.phenotypes import allele_activity, phenotype_of
from medtwin.pharmaco.pgx.types import DiplotypeCandidate

REFERENCE = "Reference"
MAX_MISSING_PAIRS = 400


@dataclass
class DpydCall:
    found: list[str]  # named variant alleles present, with multiplicity
    unexplained: list[Observed]
    candidates: list[DiplotypeCandidate]


def _variant_alleles(gene: GeneDefinition) -> list[NamedAllele]:
    alleles = [a for a in gene.alleles if a.name != gene.reference]
    return sorted(alleles, key=lambda a: -a.score)  # multi-position alleles (HapB3) first


def _count_alleles(gene: GeneDefinition, observed: list[Observed]) -> tuple[list[str], list[Observed]]:
    remaining: dict[int, Counter[str]] = {}
    for j, obs in enumerate(observed):
        if obs.alleles is not None:
            remaining[j] = Counter(a for a in obs.alleles if a != obs.position.ref)
    found: list[str] = []
    for allele in _variant_alleles(gene):
        if not all(j in remaining for j in allele.defining):
            continue
        copies = min(remaining[j][seq] for j, seq in allele.defining.items())
        for j, seq in allele.defining.items():
            remaining[j][seq] -= copies
        found += [allele.name] * copies
    unexplained = [observed[j] for j, left in remaining.items() if sum(left.values()) > 0]
    return found, unexplained


def _value(name: str) -> float:
    """CPIC activity value; an allele without one counts as normal (1.0) when choosing the lowest."""
    v = allele_activity("DPYD", name)
    return 1.0 if v is None else v


def _diplotype(found: list[str]) -> DiplotypeCandidate:
    lowest = sorted(found, key=lambda n: (_value(n), n))[:2]
    while len(lowest) < 2:
        lowest.append(REFERENCE)
    a, b = sorted(lowest, key=lambda n: (n != REFERENCE, n))
    phenotype, score = phenotype_of("DPYD", a, b)
    return DiplotypeCandidate(diplotype=f"{a}/{b}", phenotype=phenotype, activity_score=score)


def call_dpyd(gene: GeneDefinition, observed: list[Observed]) -> DpydCall:
    if any(o.alleles and any(a.startswith(UNRECOGNISED) for a in o.alleles) for o in observed):
        bad = [o for o in observed if o.alleles and any(a.startswith(UNRECOGNISED) for a in o.alleles)]
        return DpydCall([], bad, [])
    found, unexplained = _count_alleles(gene, observed)
    if unexplained:
        return DpydCall(found, unexplained, [])
    missing = {j for j, o in enumerate(observed) if o.alleles is None}
    if not missing and (phased := _phased(gene, observed)) is not None:
        return phased
    if not missing:
        return DpydCall(found, [], [_diplotype(found)])
    seen: dict[str, DiplotypeCandidate] = {}
    for filled in _hypotheses(gene, observed, missing):
        hypothetical, left = _count_alleles(gene, filled)
        if not left:
            candidate = _diplotype(hypothetical)
            seen.setdefault(candidate.diplotype, candidate)
    return DpydCall(found, [], list(seen.values()))


def _phased(gene: GeneDefinition, observed: list[Observed]) -> DpydCall | None:
    """With every heterozygous variant in one phase set, PharmCAT takes the lowest-function allele of each
    haplotype; None when the data are not phased that way (then the unphased rule applies)."""
    hets = [o for o in observed if o.heterozygous]
    if not hets or any(o.phase_set is None for o in hets) or len({o.phase_set for o in hets}) > 1:
        return None
    lowest: list[str] = []
    found: list[str] = []
    for h in (0, 1):
        one = [o if o.alleles is None else Observed(o.position, (o.alleles[h], o.position.ref)) for o in observed]
        on_h, left = _count_alleles(gene, one)
        if left:
            return DpydCall(found + on_h, left, [])
        found += on_h
        lowest.append(min(on_h, key=lambda n: (_value(n), n)) if on_h else REFERENCE)
    a, b = sorted(lowest, key=lambda n: (n != REFERENCE, n))
    phenotype, score = phenotype_of("DPYD", a, b)
    return DpydCall(found, [], [DiplotypeCandidate(diplotype=f"{a}/{b}", phenotype=phenotype, activity_score=score)])


def _fill(observed: list[Observed], missing: set[int], carried: list[NamedAllele]) -> list[Observed] | None:
    """Observed genotypes with the missing positions set to carry ``carried`` (else reference)."""
    counts: dict[int, list[str]] = {j: [] for j in missing}
    for allele in carried:
        for j, seq in allele.defining.items():
            if j in counts:
                counts[j].append(seq)
    out = list(observed)
    for j, alts in counts.items():
        if len(alts) > 2:
            return None
        ref = observed[j].position.ref
        a, b = (alts + [ref, ref])[:2]
        out[j] = Observed(observed[j].position, (a, b), None, "hypothesis")
    return out


def _hypotheses(gene: GeneDefinition, observed: list[Observed], missing: set[int]) -> list[list[Observed]]:
    """Every way the missing positions could carry zero, one (1 or 2 copies) or two different named variants.

    Two copies of the lowest-valued hidden allele give the lowest possible score, so truncating the pairs of
    different hidden alleles never hides a lower phenotype.
    """
    hidden = [a for a in _variant_alleles(gene) if set(a.defining) & missing]
    options: list[list[NamedAllele]] = [[]] + [[h] for h in hidden] + [[h, h] for h in hidden]
    options += [list(p) for p in list(combinations(hidden, 2))[:MAX_MISSING_PAIRS]]
    filled = (_fill(observed, missing, option) for option in options)
    return [f for f in filled if f is not None]
