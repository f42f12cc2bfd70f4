"""Per-gene calls with honest uncertainty, from observed genotypes or an outside call.

- ``called``: exactly one diplotype fits and every defining position was read;
- ``ambiguous``: several diplotypes fit, or positions are missing: all candidates are listed with their
  phenotypes, and a phenotype is given only when every candidate has the same one (``phenotype_inferred``);
- ``not_callable``: a non-reference genotype that no pair of named alleles explains (named in
  ``unexplained_positions``), or a required position missing;
- ``outside_call``: taken from an outside-call file (CYP2D6 copy number and hybrids);
- ``no_data``: none of the gene's positions is in the VCF.

CYP2D6 without an outside call keeps its SNV/indel diplotype candidates but never a confident phenotype:
deletions (*5), duplications and CYP2D6/2D7 hybrids are invisible to a VCF of small variants.
"""

from __future__ import annotations

from medtwin.pharmaco.pgx.definitions import GeneDefinition
from medtwin.pharmaco.pgx.dpyd import call_dpyd
from medtwin.pharmaco.pgx.genotypes import ABSENT, Observed
from medtwin.pharmaco.pgx.matcher import MatchResult, allele_sort_key, match
from medtwin.pharmaco.pgx.outside import OutsideCall
from medtwin.pharmaco.pgx.phenotypes import (
    NO_PHENOTYPE,
    confident_term,
    phenotype_of,
    phenotype_of_score,
    table,
)
from medtwin.pharmaco.pgx.types import INDETERMINATE, UNKNOWN, DiplotypeCandidate, GeneResult, Status

CYP2D6_WARNING = ("CYP2D6 copy number and hybrid alleles (*5 deletion, duplications, *13/*36/*68 hybrids) cannot be "
                  "seen in a VCF of small variants: no confident phenotype without an outside call "
                  "(--outside-calls, PharmCAT format)")


def _result(gene: GeneDefinition, status: Status, **fields: object) -> GeneResult:
    base: dict[str, object] = {
        "gene": gene.gene, "status": status, "diplotype": UNKNOWN, "phenotype": UNKNOWN,
        "table_version": table(gene.gene).version, "definition_version": gene.version,
    }
    base.update(fields)
    return GeneResult.model_validate(base)


def _label(obs: Observed) -> str:
    return obs.position.label


def _candidates(gene: str, pairs: list[tuple[str, str]], copy_number: int | None) -> list[DiplotypeCandidate]:
    out: list[DiplotypeCandidate] = []
    for a, b in pairs:
        if gene == "CYP2D6" and copy_number is not None and copy_number != 2:
            out += _cyp2d6_copies(a, b, copy_number)
            continue
        phenotype, score = phenotype_of(gene, a, b)
        out.append(DiplotypeCandidate(diplotype=f"{a}/{b}", phenotype=phenotype, activity_score=score))
    return out


def _cyp2d6_copies(a: str, b: str, copy_number: int) -> list[DiplotypeCandidate]:
    """Diplotypes of CYP2D6 SNV alleles a, b given the total gene copy number (deletion *5, duplications)."""
    if copy_number == 0:
        options = ["*5/*5"]
    elif copy_number == 1:
        options = [f"{a}/*5"] if a == b else []
    else:
        extra = copy_number - 1
        options = [f"{a}x{extra}/{b}"] if a == b else [f"{a}x{extra}/{b}", f"{a}/{b}x{extra}"]
    out = []
    for option in options:
        x, y = option.split("/")
        phenotype, score = phenotype_of("CYP2D6", x, y)
        out.append(DiplotypeCandidate(diplotype=option, phenotype=phenotype, activity_score=score))
    return out


def _agreement(candidates: list[DiplotypeCandidate]) -> tuple[str, float | None]:
    phenotypes = {c.phenotype for c in candidates}
    scores = {c.activity_score for c in candidates}
    phenotype = phenotypes.pop() if len(phenotypes) == 1 else INDETERMINATE
    return phenotype, (scores.pop() if len(scores) == 1 else None)


def _pharmcat_score(gene: GeneDefinition, pair: tuple[str, str]) -> int:
    """PharmCAT's diplotype score: defining positions of both alleles (the reference allele: all of them)."""
    return sum(len(gene.positions) if name == gene.reference else gene.allele(name).score for name in pair)


def _priority(gene: GeneDefinition, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    names = {f"{a}/{b}" for a, b in pairs}
    for options, pick in gene.priorities:
        if names == options:
            return [p for p in pairs if f"{p[0]}/{p[1]}" == pick]
    return pairs


def _from_candidates(gene: GeneDefinition, candidates: list[DiplotypeCandidate], missing: list[Observed],
                     notes: list[str]) -> GeneResult:
    warnings: list[str] = []
    status: Status = "called" if len(candidates) == 1 and not missing else "ambiguous"
    phenotype, score = _agreement(candidates)
    confident = confident_term(phenotype)
    inferred = status == "ambiguous" and confident
    if missing:
        warnings.append(f"{len(missing)} defining position(s) missing or no-call; not assumed reference")
        warnings += [f"{_label(o)}: {o.reason}" for o in missing if o.reason != ABSENT][:5]
    if inferred:
        warnings.append(f"phenotype inferred: all {len(candidates)} candidate diplotype(s) give {phenotype}")
    if status == "ambiguous" and not confident and len({c.phenotype for c in candidates}) > 1:
        phenotype = UNKNOWN if missing else INDETERMINATE
    if phenotype == NO_PHENOTYPE:
        notes.append(f"CPIC defines no phenotype for {gene.gene}; use the diplotype")
    return _result(
        gene, status, diplotype=candidates[0].diplotype if status == "called" else UNKNOWN,
        alternatives=[c.diplotype for c in candidates] if status == "ambiguous" else [],
        source_diplotypes=[c.diplotype for c in candidates], candidates=candidates,
        activity_score=score if confident else None, phenotype=phenotype,
        phenotype_confident=confident, phenotype_inferred=inferred,
        missing_positions=[_label(o) for o in missing], warnings=warnings, notes=notes)


def _not_callable(gene: GeneDefinition, unexplained: list[Observed], missing: list[Observed],
                  partial: list[str]) -> GeneResult:
    named = ", ".join(_label(o) for o in unexplained)
    warnings = [f"not callable: non-reference genotype at {named} is explained by no pair of "
                f"{gene.gene} named alleles"]
    warnings += [f"partial match (not a call): {p}" for p in partial]
    return _result(gene, "not_callable", phenotype=INDETERMINATE, unexplained_positions=[_label(o) for o in unexplained],
                   missing_positions=[_label(o) for o in missing], warnings=warnings)


def _cyp2d6_without_outside(result: GeneResult, copy_number: int | None) -> GeneResult:
    notes = list(result.notes)
    if copy_number is not None:
        notes.append(f"copy number {copy_number} given: candidates include it, but hybrids are not excluded")
    return result.model_copy(update={
        "phenotype": UNKNOWN, "phenotype_confident": False, "phenotype_inferred": False, "activity_score": None,
        "warnings": [*result.warnings, CYP2D6_WARNING], "notes": notes})


def call_gene(gene: GeneDefinition, observed: list[Observed], copy_number: int | None = None) -> GeneResult:
    """The call of one gene from its observed genotypes (one per defining position, in order)."""
    missing = [o for o in observed if o.alleles is None and o.position.position not in gene.ignored_positions]
    if len(missing) == len(observed):
        return _result(gene, "no_data", missing_positions=[_label(o) for o in missing],
                       warnings=[f"none of the {len(observed)} {gene.gene} defining positions is in the VCF"]
                       + [f"{_label(o)}: {o.reason}" for o in missing if o.reason != ABSENT][:5])
    required = [o for o in missing if o.position.position in gene.required_positions]
    if required:
        return _result(gene, "not_callable", missing_positions=[_label(o) for o in missing],
                       warnings=[f"required position(s) missing: {', '.join(_label(o) for o in required)}"])
    if gene.gene == "DPYD":
        return _dpyd(gene, observed, missing)
    found: MatchResult = match(gene, observed)
    if not found.diplotypes:
        return _not_callable(gene, found.unexplained, missing, found.partial)
    pairs = sorted(_priority(gene, found.diplotypes), key=lambda p: -_pharmcat_score(gene, p))
    notes = []
    if len(pairs) > 1:
        notes.append(f"PharmCAT's score (most defining positions) would report {pairs[0][0]}/{pairs[0][1]}; "
                     "the data cannot exclude the other candidates")
    candidates = _candidates(gene.gene, pairs, copy_number)
    if not candidates:
        return _result(gene, "not_callable", phenotype=INDETERMINATE, missing_positions=[_label(o) for o in missing],
                       warnings=[f"copy number {copy_number} contradicts the SNV diplotype(s) "
                                 f"{', '.join(f'{a}/{b}' for a, b in pairs)} (one copy cannot be heterozygous)"])
    result = _from_candidates(gene, candidates, missing, notes)
    if gene.gene == "CYP2D6":
        return _cyp2d6_without_outside(result, copy_number)
    return result


def _dpyd(gene: GeneDefinition, observed: list[Observed], missing: list[Observed]) -> GeneResult:
    dpyd = call_dpyd(gene, observed)
    if not dpyd.candidates:
        return _not_callable(gene, dpyd.unexplained, missing, [])
    notes = ["DPYD called by PharmCAT's rule: the two lowest-function variant alleles found "
             f"({', '.join(dpyd.found) or 'none'}) make the diplotype; haplotypes are not reconstructed"]
    result = _from_candidates(gene, dpyd.candidates, missing, notes)
    if len(dpyd.found) > 2:
        result.warnings.append(f"{len(dpyd.found)} DPYD variant alleles found; the two lowest-function ones are used")
    return result


def from_outside_call(gene: GeneDefinition, call: OutsideCall, vcf_result: GeneResult | None) -> GeneResult:
    """A gene result from an outside call; the VCF-based candidates are kept as ``source_diplotypes``."""
    phenotype, score = call.phenotype, call.activity_score
    if call.diplotype is not None:
        a, b = (p.strip() for p in call.diplotype.split("/"))
        table_phenotype, table_score = phenotype_of(gene.gene, *sorted((a, b), key=allele_sort_key))
        phenotype = phenotype or table_phenotype
        score = score if score is not None else table_score
    elif phenotype is None and score is not None:
        phenotype = phenotype_of_score(gene.gene, score)
    phenotype = phenotype or UNKNOWN
    notes = [f"outside call (line {call.line}) replaces the VCF-based call"]
    if vcf_result is not None and vcf_result.source_diplotypes:
        notes.append(f"VCF-based candidates: {', '.join(vcf_result.source_diplotypes)}")
    return _result(gene, "outside_call", diplotype=call.diplotype or UNKNOWN, phenotype=phenotype,
                   activity_score=score, phenotype_confident=confident_term(phenotype),
                   source_diplotypes=[call.diplotype] if call.diplotype else [],
                   candidates=[DiplotypeCandidate(diplotype=call.diplotype or UNKNOWN, phenotype=phenotype,
                                                  activity_score=score)], notes=notes)
