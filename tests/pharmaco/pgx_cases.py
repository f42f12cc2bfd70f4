"""Test-case generator: VCFs built from PharmCAT's own definition files (read from ../shared, not from the
package), each with a known truth, and a judge that sorts every answer into correct / ambiguous (truth among
the candidates, no confident wrong phenotype) / not callable (with a reason) / wrong.

Cases per gene: every named allele with the reference allele; pairs of the common alleles (AMP tier-1 alleles
from PharmCAT's exemptions, plus a few CPIC-relevant ones) incl. homozygous, unphased and phased (PS); two
common alleles' variants on one phased haplotype (a combination: not callable unless a named allele is exactly
that haplotype); a defining position removed; a defining position no-call; a novel base at a defining position
(must be not callable).

    python tests/pharmaco/pgx_cases.py      # prints the counts per gene
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from medtwin.pharmaco.pgx import call_pgx
from medtwin.pharmaco.pgx.definitions import GENES

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data" / "pgx-definitions"
IUPAC = {"R": "AG", "Y": "CT", "S": "CG", "W": "AT", "K": "GT", "M": "AC", "B": "CGT", "D": "AGT", "H": "ACT",
         "V": "ACG", "N": "ACGT"}
EXTRA_COMMON = {
    "SLCO1B1": ["*5", "*14", "*15", "*20", "*37"], "UGT1A1": ["*6", "*28", "*36", "*37", "*80"],
    "CYP2B6": ["*4", "*6", "*9", "*18"], "CYP4F2": ["*2", "*3"], "ABCG2": ["rs2231142 variant (T)"],
    "VKORC1": ["rs9923231 variant (T)"], "NUDT15": ["*2", "*3"], "TPMT": ["*2", "*3A", "*3B", "*3C"],
}


@cache
def translation(gene: str) -> dict[str, Any]:
    return dict(json.loads((SHARED / "alleles" / f"{gene}_translation.json").read_text(encoding="utf-8")))


@cache
def exemptions() -> dict[str, Any]:
    return dict(json.loads((SHARED / "alleles" / "exemptions.json").read_text(encoding="utf-8")))


@cache
def phenotype_rows(gene: str) -> dict[frozenset[tuple[str, int]], str]:
    path = SHARED / "phenotypes" / f"{gene}.json"
    if not path.is_file():
        return {}
    doc = json.loads(path.read_text(encoding="utf-8"))
    return {frozenset(row["diplotypekey"].items()): row["generesult"] for row in doc["diplotypes"]}


def truth_phenotype(gene: str, a: str, b: str) -> str | None:
    """CPIC phenotype of a/b straight from PharmCAT's phenotype file (None: no table or no row)."""
    key = frozenset(Counter([a, b]).items())
    return phenotype_rows(gene).get(key)


def dpyd_activity(name: str) -> float:
    doc = json.loads((SHARED / "phenotypes" / "DPYD.json").read_text(encoding="utf-8"))
    value = next(a["activityValue"] for a in doc["namedAlleles"] if a["name"] == name)
    return 1.0 if value in (None, "n/a") else float(value)


def reference(gene: str) -> str:
    return str(next(n["name"] for n in translation(gene)["namedAlleles"] if n["reference"]))


def _vcf_index(variant: dict[str, Any], allele: str | None) -> int:
    seqs = [variant["ref"], *variant["alts"]]
    if allele is None:
        return 0
    allowed = set(IUPAC.get(allele, allele)) if len(allele) == 1 else {allele}
    if variant["ref"] in allowed:
        return 0
    return next(k for k, s in enumerate(seqs) if s in allowed)


def carries(gene: str, name: str, written: list[int]) -> bool:
    """Whether the named allele's definition (IUPAC sets; reference where not defined) accepts a haplotype."""
    doc = translation(gene)
    named = next((n for n in doc["namedAlleles"] if n["name"] == name), None)
    if named is None:
        return False
    for v, allele, index in zip(doc["variants"], named["alleles"], written, strict=True):
        seq = [v["ref"], *v["alts"]][index]
        allowed = {v["ref"]} if allele is None else (set(IUPAC.get(allele, allele)) if len(allele) == 1 else {allele})
        if seq not in allowed:
            return False
    return True


def haplotype(gene: str, name: str) -> list[int]:
    doc = translation(gene)
    named = next(n for n in doc["namedAlleles"] if n["name"] == name)
    return [_vcf_index(v, a) for v, a in zip(doc["variants"], named["alleles"], strict=True)]


@dataclass
class Case:
    gene: str
    kind: str  # "with reference", "pair", "pair phased", "missing", "no-call", "novel"
    truth: tuple[str, str] | None  # None: must be not callable
    vcf: str
    named: str = ""
    position: int | None = None
    haplotypes: tuple[list[int], list[int]] | None = None  # combination cases: the written haplotypes


def write_vcf(gene: str, h0: list[int], h1: list[int], phased: bool, drop: int | None = None,
              no_call: int | None = None, novel: tuple[int, str] | None = None) -> str:
    doc = translation(gene)
    lines = ["##fileformat=VCFv4.2", "##reference=GRCh38",
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             '##FORMAT=<ID=PS,Number=1,Type=Integer,Description="Phase set">',
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1"]
    for j, v in enumerate(doc["variants"]):
        if j == drop:
            continue
        alts = list(v["alts"])
        a, b = h0[j], h1[j]
        if novel is not None and novel[0] == j:
            alts.append(novel[1])
            b = len(alts)
        gt = "./." if j == no_call else (f"{a}|{b}" if phased else f"{min(a, b)}/{max(a, b)}")
        fmt, sample = ("GT:PS", f"{gt}:{doc['variants'][0]['position']}") if phased else ("GT", gt)
        lines.append(f"{v['chromosome']}\t{v['position']}\t{v['rsid'] or '.'}\t{v['ref']}\t{','.join(alts)}\t.\tPASS\t.\t"
                     f"{fmt}\t{sample}")
    return "\n".join(lines) + "\n"


def common_alleles(gene: str) -> list[str]:
    names = {n["name"] for n in translation(gene)["namedAlleles"]}
    wanted = exemptions().get(gene, {}).get("amp1Alleles", []) + EXTRA_COMMON.get(gene, [])
    return [reference(gene)] + sorted({a for a in wanted if a in names})


def _first_defining(gene: str, name: str) -> int | None:
    named = next(n for n in translation(gene)["namedAlleles"] if n["name"] == name)
    return next((j for j, a in enumerate(named["alleles"]) if a is not None), None)


def _novel_base(variant: dict[str, Any]) -> str | None:
    if len(variant["ref"]) != 1 or any(len(a) != 1 for a in variant["alts"]):
        return None
    free = [b for b in "ACGT" if b != variant["ref"] and b not in variant["alts"]]
    return free[0] if free else None


def cases(gene: str) -> list[Case]:
    doc = translation(gene)
    ref = reference(gene)
    href = haplotype(gene, ref)
    out: list[Case] = []
    for named in doc["namedAlleles"]:
        name = named["name"]
        if name == ref:
            continue
        h = haplotype(gene, name)
        out.append(Case(gene, "with reference", (ref, name), write_vcf(gene, href, h, False), name))
        j = _first_defining(gene, name)
        if j is not None:
            out.append(Case(gene, "missing", (ref, name), write_vcf(gene, href, h, False, drop=j), name, j))
            out.append(Case(gene, "no-call", (ref, name), write_vcf(gene, href, h, False, no_call=j), name, j))
    for a, b in itertools.combinations_with_replacement(common_alleles(gene), 2):
        ha, hb = haplotype(gene, a), haplotype(gene, b)
        out.append(Case(gene, "pair", (a, b), write_vcf(gene, ha, hb, False), f"{a}/{b}"))
        out.append(Case(gene, "pair phased", (a, b), write_vcf(gene, ha, hb, True), f"{a}/{b}"))
    out += _combinations(gene, href)
    for j, v in enumerate(doc["variants"]):
        base = _novel_base(v)
        if base is not None and j % 5 == 0:
            out.append(Case(gene, "novel", None, write_vcf(gene, href, href, False, novel=(j, base)), base, j))
    return out


def _combinations(gene: str, href: list[int]) -> list[Case]:
    """Two common alleles' variants on one phased haplotype, the reference on the other (PharmCAT's '[a + b]')."""
    out = []
    common = [a for a in common_alleles(gene) if a != reference(gene)]
    for a, b in itertools.combinations(common, 2):
        ha, hb = haplotype(gene, a), haplotype(gene, b)
        if any(x and y for x, y in zip(ha, hb, strict=True)):
            continue  # overlapping definitions: not a clean combination
        both = [max(x, y) for x, y in zip(ha, hb, strict=True)]
        out.append(Case(gene, "combination", None, write_vcf(gene, both, href, True), f"[{a} + {b}]",
                        haplotypes=(both, href)))
    return out


@dataclass
class Tally:
    counts: Counter[str] = field(default_factory=Counter)
    wrong: list[str] = field(default_factory=list)


def _same(diplotype: str, truth: tuple[str, str]) -> bool:
    return sorted(p.strip() for p in diplotype.split("/")) == sorted(truth)


def judge(case: Case, result: Any) -> tuple[str, str]:
    """('correct'|'ambiguous'|'not callable'|'wrong', why) for one gene result."""
    if case.kind == "combination":
        return _judge_combination(case, result)
    if case.truth is None:
        where = str(translation(case.gene)["variants"][case.position or 0]["position"])
        ok = result.status == "not_callable" and any(where in p for p in result.unexplained_positions)
        return ("not callable", "") if ok else ("wrong", f"{doc_label(case)}: novel variant answered {result.status}")
    expected = truth_phenotype(case.gene, *case.truth)
    candidates = [c.diplotype for c in result.candidates]
    if result.phenotype_confident and expected is not None and result.phenotype != expected:
        return "wrong", f"{doc_label(case)}: confident phenotype {result.phenotype}, truth {expected}"
    if result.status == "called":
        if not _same(result.diplotype, case.truth):
            return "wrong", f"{doc_label(case)}: called {result.diplotype}"
        return "correct", ""
    if result.status == "ambiguous":
        if not any(_same(c, case.truth) for c in candidates):
            return "wrong", f"{doc_label(case)}: truth not among candidates {candidates}"
        return "ambiguous", ""
    if result.status == "not_callable" and (result.unexplained_positions or result.warnings):
        return "not callable", ""
    if result.status == "no_data" and result.missing_positions:
        return "not callable", ""
    return "wrong", f"{doc_label(case)}: status {result.status} without reason"


def _judge_combination(case: Case, result: Any) -> tuple[str, str]:
    """Not callable, or a named diplotype whose haplotypes are exactly the written ones (then it is that)."""
    if result.status == "not_callable":
        return "not callable", ""
    assert case.haplotypes is not None
    if case.gene == "DPYD":  # PharmCAT's rule for phased DPYD: the lowest-function allele of each haplotype
        a, b = case.named.strip("[]").split(" + ")
        lowest = min((a, b), key=lambda n: (dpyd_activity(n), n))
        called = result.status == "called" and _same(result.diplotype, (reference("DPYD"), lowest))
        return ("correct", "") if called else ("wrong", f"{doc_label(case)}: called {result.diplotype}")
    h0, h1 = case.haplotypes
    for candidate in result.candidates:
        a, b = (p.strip() for p in candidate.diplotype.split("/"))
        if (carries(case.gene, a, h0) and carries(case.gene, b, h1)) or (carries(case.gene, b, h0)
                                                                       and carries(case.gene, a, h1)):
            return ("correct" if result.status == "called" else "ambiguous"), ""
    return "wrong", f"{doc_label(case)}: answered {result.status} {[c.diplotype for c in result.candidates]}"


def doc_label(case: Case) -> str:
    return f"{case.gene} {case.kind} {case.named}"


def run(gene: str) -> Tally:
    tally = Tally()
    for case in cases(gene):
        result = call_pgx(case.vcf).genes[gene]
        outcome, why = judge(case, result)
        tally.counts[outcome] += 1
        tally.counts[f"{case.kind}: {outcome}"] += 1
        if why:
            tally.wrong.append(why)
    return tally


if __name__ == "__main__":
    print(f"{'gene':8} {'cases':>6} {'correct':>8} {'ambiguous':>10} {'not callable':>13} {'wrong':>6}")
    for g in GENES:
        t = run(g)
        n = sum(v for k, v in t.counts.items() if ":" not in k)
        print(f"{g:8} {n:6} {t.counts['correct']:8} {t.counts['ambiguous']:10} {t.counts['not callable']:13} "
              f"{t.counts['wrong']:6}")
        for w in t.wrong[:5]:
            print("   ", w)
