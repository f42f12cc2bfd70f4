"""CPIC diplotype -> phenotype (and activity score) for the 13 genes.

Tables: ``cpic_phenotype_tables.json`` (converted from PharmCAT's CPIC phenotype files: allele function and
activity value, and the phenotype of each pair of allele functions or of each activity score) and
``cyp2d6_activity.toml`` (CYP2D6, our own transcription of CPIC's activity values and bands, with citations).
CYP4F2 has no CPIC phenotype: its diplotype is reported with phenotype ``n/a``.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from functools import cache

from medtwin.pharmaco.pgx.types import INDETERMINATE
from medtwin.pharmaco.pgx_data import data_text

NO_PHENOTYPE = "n/a"
ACTIVITY_GENES = ("CYP2C9", "CYP2D6", "DPYD")
_COPIES = re.compile(r"^(.+?)x(\d+)$")


@dataclass(frozen=True)
class PhenotypeTable:
    gene: str
    version: str
    method: str  # "activity_score" or "function_pair" or "none"
    function: dict[str, str]
    activity: dict[str, float | None]
    lookup: dict[str, str]
    bands: tuple[tuple[float, float, str], ...] = ()


def _value(text: str | None) -> float | None:
    try:
        return None if text is None else float(text)
    except ValueError:
        return None


@cache
def tables() -> dict[str, PhenotypeTable]:
    raw = json.loads(data_text("cpic_phenotype_tables.json"))
    out = {}
    for gene, t in raw["genes"].items():
        out[gene] = PhenotypeTable(
            gene, f"CPIC phenotype table via PharmCAT {t['version']}", t["method"],
            {name: v[0] for name, v in t["alleles"].items()}, {name: _value(v[1]) for name, v in t["alleles"].items()},
            dict(t["lookup"]))
    cyp2d6 = tomllib.loads(data_text("cyp2d6_activity.toml"))
    out["CYP2D6"] = PhenotypeTable(
        "CYP2D6", str(cyp2d6["version"]), "activity_score", {}, {k: float(v) for k, v in cyp2d6["activity"].items()},
        {}, tuple((float(lo), float(hi), str(name)) for lo, hi, name in cyp2d6["bands"]))
    out["CYP4F2"] = PhenotypeTable("CYP4F2", "no CPIC phenotype table for CYP4F2", "none", {}, {}, {})
    return out


def table(gene: str) -> PhenotypeTable:
    return tables()[gene]


def allele_activity(gene: str, allele: str) -> float | None:
    """CPIC activity value of an allele; CYP2D6 ``*1x2`` counts twice. None when CPIC gives none."""
    t = table(gene)
    m = _COPIES.match(allele) if gene == "CYP2D6" else None
    if m:
        base = t.activity.get(m.group(1))
        return None if base is None else base * int(m.group(2))
    return t.activity.get(allele)


def _band(t: PhenotypeTable, score: float) -> str:
    for low, high, name in t.bands:
        if low - 1e-9 <= score <= high + 1e-9:
            return name
    return INDETERMINATE


def phenotype_of(gene: str, a: str, b: str) -> tuple[str, float | None]:
    """CPIC phenotype and activity score (None where CPIC uses none) of the diplotype ``a/b``."""
    t = table(gene)
    if t.method == "none":
        return NO_PHENOTYPE, None
    if t.method == "activity_score":
        va, vb = allele_activity(gene, a), allele_activity(gene, b)
        if va is None or vb is None:
            return INDETERMINATE, None
        score = va + vb
        if t.bands:
            return _band(t, score), score
        return t.lookup.get(f"{score:.1f}", INDETERMINATE), score
    fa, fb = t.function.get(a), t.function.get(b)
    if fa is None or fb is None:
        return INDETERMINATE, None
    return t.lookup.get("|".join(sorted((fa, fb))), INDETERMINATE), None


def phenotype_of_score(gene: str, score: float) -> str:
    t = table(gene)
    if t.bands:
        return _band(t, score)
    return t.lookup.get(f"{score:.1f}", INDETERMINATE) if t.method == "activity_score" else INDETERMINATE


def confident_term(phenotype: str) -> bool:
    """A phenotype a prescriber could act on (not unknown, Indeterminate or n/a)."""
    return phenotype not in (INDETERMINATE, NO_PHENOTYPE, "unknown", "")
