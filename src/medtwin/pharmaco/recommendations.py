"""CPIC drug recommendations from pharmacogenomic calls, as data.

Each guideline is one TOML file ``pharmaco/data/pgx/cpic_recommendations_<name>.toml`` with its citation
(journal, year), version and URL, and rules mapping a gene's phenotype (or CPIC activity score, or carried
alleles) to an implication, a recommendation (medtwin's own wording) and CPIC's classification.

A gene gives a recommendation only when it is *callable* (:func:`callability`): the caller called it (or an
outside call supplied it) and is confident of the phenotype. Otherwise the answer is "no genotype-guided
recommendation: <gene> not callable because ..." -- never a recommendation for a guessed phenotype.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, Field

from medtwin.pharmaco.errors import PharmacoInputError
from medtwin.pharmaco.pgx_data import data_folder, data_text

__all__ = ["Callability", "Guideline", "Recommendation", "Rule", "callability", "guidelines", "recommend",
           "recommended_drugs"]

_PREFIX = "cpic_recommendations_"
_NOT_A_PHENOTYPE = frozenset({"", "unknown", "indeterminate", "n/a", "no result"})
CALLABLE_STATUSES = frozenset({"called", "outside_call"})

Outcome = Literal["recommendation", "no_recommendation", "not_callable"]


@dataclass(frozen=True)
class Rule:
    drugs: tuple[str, ...]
    genes: tuple[str, ...]
    phenotypes: frozenset[str]
    activity_scores: tuple[float, ...]
    alleles_any: frozenset[str]
    alleles_none: frozenset[str]
    implication: str
    recommendation: str
    classification: str

    def matches(self, phenotype: str, activity_score: float | None, alleles: frozenset[str]) -> bool:
        if self.phenotypes:
            return phenotype in self.phenotypes
        if self.activity_scores:
            return activity_score is not None and any(abs(activity_score - s) < 1e-9 for s in self.activity_scores)
        if self.alleles_any:
            return bool(alleles & self.alleles_any)
        return bool(alleles) and not alleles & self.alleles_none


@dataclass(frozen=True)
class Guideline:
    key: str
    name: str
    citation: str
    journal: str
    year: int
    version: str
    url: str
    drugs: tuple[str, ...]
    genes: tuple[str, ...]
    rules: tuple[Rule, ...]

    @property
    def short_source(self) -> str:
        first_author = self.citation.split(",", 1)[0]
        return f"{self.version}; {first_author} et al. {self.journal} {self.year}"


class Callability(BaseModel):
    """Whether a gene's result may drive a recommendation or a dose, and why not if it may not."""

    callable: bool
    reason: str = Field(description="Why the gene is not callable ('' when it is).")
    inferred: bool = Field(default=False, description="Phenotype given because all candidate diplotypes agree, "
                                                       "but not confident: shown, never acted on.")


class Recommendation(BaseModel):
    """One drug x gene answer. Field names extend :class:`medtwin.pharmaco.pgx.DrugRecommendation`."""

    drug: str
    gene: str
    phenotype: str
    activity_score: float | None = None
    diplotype: str = ""
    outcome: Outcome
    implication: str = ""
    recommendation: str
    classification: str
    source: str = Field(description="Guideline citation (journal, year) and table version.")
    guideline_url: str = ""


def _names(entry: Mapping[str, Any], single: str, plural: str, origin: str) -> tuple[str, ...]:
    value = entry.get(plural, [entry[single]] if single in entry else [])
    if not value or not all(isinstance(v, str) and v for v in value):
        raise PharmacoInputError(f"{origin}: rule.{single}", f"give {single!r} or a non-empty list {plural!r}")
    return tuple(value)


def _rule(entry: Mapping[str, Any], origin: str) -> Rule:
    keys = [k for k in ("phenotypes", "activity_scores", "alleles_any", "alleles_none") if k in entry]
    if len(keys) != 1:
        raise PharmacoInputError(f"{origin}: rule", "give exactly one of phenotypes, activity_scores, alleles_any, "
                                                    "alleles_none")
    for name in ("implication", "recommendation", "classification"):
        if not isinstance(entry.get(name), str) or not entry[name].strip():
            raise PharmacoInputError(f"{origin}: rule.{name}", "missing or empty")
    return Rule(
        drugs=_names(entry, "drug", "drugs", origin), genes=_names(entry, "gene", "genes", origin),
        phenotypes=frozenset(entry.get("phenotypes", ())),
        activity_scores=tuple(float(s) for s in entry.get("activity_scores", ())),
        alleles_any=frozenset(entry.get("alleles_any", ())), alleles_none=frozenset(entry.get("alleles_none", ())),
        implication=entry["implication"], recommendation=entry["recommendation"],
        classification=entry["classification"],
    )


def parse_guideline(key: str, text: str) -> Guideline:
    """One guideline file; :class:`PharmacoInputError` names the file and entry of a problem."""
    origin = f"{_PREFIX}{key}.toml"
    data = tomllib.loads(text)
    try:
        head = data["guideline"]
        guideline = Guideline(
            key=key, name=str(head["name"]), citation=str(head["citation"]), journal=str(head["journal"]),
            year=int(head["year"]), version=str(head["version"]), url=str(head["url"]),
            drugs=tuple(head["drugs"]), genes=tuple(head["genes"]),
            rules=tuple(_rule(r, origin) for r in data["rule"]),
        )
    except KeyError as exc:
        raise PharmacoInputError(f"{origin}: {exc.args[0]}", "missing entry in recommendation file") from exc
    for rule in guideline.rules:
        stray = (set(rule.drugs) - set(guideline.drugs)) | (set(rule.genes) - set(guideline.genes))
        if stray:
            raise PharmacoInputError(f"{origin}: rule", f"{sorted(stray)} not listed in [guideline]")
    return guideline


@cache
def guidelines() -> tuple[Guideline, ...]:
    """Every shipped guideline, by file name."""
    folder = data_folder()
    keys = sorted(p.name[len(_PREFIX):-len(".toml")] for p in folder.iterdir()
                  if p.name.startswith(_PREFIX) and p.name.endswith(".toml"))
    return tuple(parse_guideline(k, data_text(f"{_PREFIX}{k}.toml")) for k in keys)


def recommended_drugs() -> list[str]:
    return sorted({d for g in guidelines() for d in g.drugs})


def _phenotype(result: Any) -> str:
    return str(getattr(result, "phenotype", "") or "")


def _missing_reason(result: Any) -> str:
    missing = list(getattr(result, "missing_positions", []) or [])
    shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
    return f"defining positions missing or no-call ({shown})" if missing else "no genotype data"


def _status_reason(result: Any, status: str) -> str:
    if status == "not_callable":
        unexplained = list(getattr(result, "unexplained_positions", []) or [])
        if unexplained:
            return "non-reference genotype no known allele explains at " + ", ".join(unexplained[:3])
        return "the genotypes match no known combination of alleles"
    if status == "no_data":
        return _missing_reason(result)
    if status == "ambiguous":
        candidates = [getattr(c, "diplotype", str(c)) for c in getattr(result, "candidates", []) or []]
        alternatives = candidates or [getattr(result, "diplotype", "")] + list(getattr(result, "alternatives", []))
        listed = ", ".join(a for a in alternatives[:4] if a and a != "unknown")
        return f"several diplotypes fit the data ({listed})" if listed else "several diplotypes fit the data"
    return f"call status is {status!r}"


def _legacy_reason(result: Any) -> str | None:
    """Reports stored before the caller had ``status``: the same rules from the old fields."""
    if getattr(result, "diplotype", "unknown") == "unknown":
        return _missing_reason(result)
    if getattr(result, "alternatives", None):
        return "several diplotypes fit the data (" + ", ".join(
            [result.diplotype, *result.alternatives][:4]) + ")"
    if any("copy number not given" in n for n in getattr(result, "notes", []) or []):
        return "copy number not given (deletions and duplications not excluded)"
    return None


def callability(result: Any | None, gene: str = "", *, needs_phenotype: bool = True) -> Callability:
    """Whether ``result`` (a :class:`medtwin.pharmaco.pgx.GeneResult`, or None when the gene was not tested) may
    drive a recommendation or a dose: status ``called``/``outside_call`` and a confident CPIC phenotype.
    ``needs_phenotype=False`` (rules on carried alleles, e.g. CYP4F2 *3): a called diplotype is enough."""
    name = gene or str(getattr(result, "gene", "gene"))
    if result is None:
        return Callability(callable=False, reason=f"{name} not callable because it was not genotyped in this report")
    phenotype = _phenotype(result)
    has_phenotype = phenotype.strip().lower() not in _NOT_A_PHENOTYPE
    status = getattr(result, "status", None)
    inferred = bool(getattr(result, "phenotype_inferred", False)) and has_phenotype
    if status is None:
        why = _legacy_reason(result)
    elif status not in CALLABLE_STATUSES:
        why = _status_reason(result, str(status))
        if inferred:
            why += f"; {phenotype} is inferred (all candidates agree), not confident"
    elif not needs_phenotype:
        diplotype = str(getattr(result, "diplotype", "") or "unknown")
        return Callability(callable=True, reason="") if diplotype != "unknown" else Callability(
            callable=False, reason=f"{name} not callable because no diplotype was called")
    elif not getattr(result, "phenotype_confident", False):
        why = "the phenotype is not confident" + (
            " (inferred: all candidate diplotypes agree)" if inferred else "")
    else:
        why = None
    if why is None and not has_phenotype:
        why = f"the phenotype is {phenotype or 'unknown'}"
    if why is None:
        return Callability(callable=True, reason="")
    warnings = [w for w in getattr(result, "warnings", []) or [] if isinstance(w, str)]
    if warnings:
        why += "; " + "; ".join(warnings[:2])
    return Callability(callable=False, reason=f"{name} not callable because {why}", inferred=inferred)


def _alleles(result: Any) -> frozenset[str]:
    diplotype = str(getattr(result, "diplotype", "") or "")
    return frozenset(a.strip() for a in diplotype.split("/") if a.strip().startswith("*"))


def _answer(guideline: Guideline, drug: str, gene: str, result: Any | None) -> Recommendation:
    rules = [r for r in guideline.rules if drug in r.drugs and gene in r.genes]
    verdict = callability(result, gene, needs_phenotype=any(r.phenotypes or r.activity_scores for r in rules))
    phenotype = _phenotype(result) if result is not None else "not tested"
    score = getattr(result, "activity_score", None) if result is not None else None
    common: dict[str, Any] = {"drug": drug, "gene": gene, "phenotype": phenotype, "activity_score": score,
              "diplotype": str(getattr(result, "diplotype", "") or ""), "source": guideline.short_source,
              "guideline_url": guideline.url}
    if not verdict.callable:
        return Recommendation(**common, outcome="not_callable", classification="No recommendation",
                              recommendation=f"No genotype-guided recommendation: {verdict.reason}.")
    rule = next((r for r in rules if r.matches(phenotype, score, _alleles(result))), None)
    if rule is None:
        shown = f"activity score {score:g}" if score is not None and not phenotype else phenotype
        return Recommendation(**common, outcome="no_recommendation", classification="No recommendation",
                              recommendation=f"No genotype-guided recommendation: the guideline has no action for "
                                             f"{gene} {shown}.")
    return Recommendation(**common, outcome="recommendation", implication=rule.implication,
                          recommendation=rule.recommendation, classification=rule.classification)


def recommend(genes: Mapping[str, Any], drugs: Iterable[str] | None = None) -> list[Recommendation]:
    """One :class:`Recommendation` per drug and guideline gene, for ``drugs`` (default: every drug with a
    guideline). A gene absent from ``genes`` or not callable gives a "no genotype-guided recommendation"."""
    wanted = list(dict.fromkeys(d.strip().lower() for d in drugs)) if drugs is not None else recommended_drugs()
    known = set(recommended_drugs())
    unknown = [d for d in wanted if d not in known]
    if unknown:
        raise PharmacoInputError("drug", f"no CPIC recommendation table for {unknown[0]!r}; available: "
                                         f"{', '.join(sorted(known))}")
    out: list[Recommendation] = []
    for drug in wanted:
        for guideline in guidelines():
            if drug not in guideline.drugs:
                continue
            for gene in guideline.genes:
                if any(drug in r.drugs and gene in r.genes for r in guideline.rules):
                    out.append(_answer(guideline, drug, gene, genes.get(gene)))
    return out
