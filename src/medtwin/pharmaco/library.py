"""The drug library: published population models as TOML data files in ``pharmaco/data/drugs``.

Each file gives the structural model, typical parameter values with unit and source, covariate
effects, between-subject variability (omega^2), residual error, and therapeutic/adverse targets.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from medtwin.arrays import Array
from medtwin.pharmaco.covariates import GeneStatus
from medtwin.pharmaco.dosing import Route
from medtwin.pharmaco.drug_files import DrugFileError, check_drug_file, entries_of
from medtwin.pharmaco.errors import CovariateError, UnknownDrugError
from medtwin.pharmaco.pk import CompartmentModel
from medtwin.pharmaco.population import BetweenSubjectVariability, ResidualError

DRUG_FOLDER = "data/drugs"  # in the medtwin.pharmaco package
log = logging.getLogger("medtwin.pharmaco")
_FORMS = ("power", "linear", "hinge_linear", "categorical_factor", "categorical_value")


@dataclass(frozen=True)
class Parameter:
    name: str
    value: float
    unit: str
    note: str
    source: str


@dataclass(frozen=True)
class CovariateEffect:
    """How one covariate modifies one parameter.

    ``power``: x (cov/reference)^exponent; ``linear``: x (1 + slope (cov - reference));
    ``hinge_linear``: x (1 + slope max(0, cov - reference)); ``categorical_factor``: x levels[cov];
    ``categorical_value``: = levels[cov].
    """

    parameter: str
    covariate: str
    form: str
    source: str
    reference: float = 0.0
    exponent: float = 1.0
    slope: float = 0.0
    levels: Mapping[str, float] = field(default_factory=dict)

    def apply(self, value: Array, covariate: Any) -> Array:
        if self.form in ("categorical_factor", "categorical_value"):
            keys = [_level_key(c) for c in np.atleast_1d(np.asarray(covariate, dtype=object))]
            unknown = [k for k in keys if k not in self.levels]
            if unknown:
                raise CovariateError(
                    self.covariate, f"value {unknown[0]!r} not in {sorted(self.levels)} for {self.parameter}"
                )
            level = np.array([self.levels[k] for k in keys], dtype=float)
            return value * level if self.form == "categorical_factor" else np.broadcast_to(level, value.shape).copy()
        cov = np.asarray(covariate, dtype=float)
        if not np.all(np.isfinite(cov)):
            raise CovariateError(self.covariate, "must be a finite number")
        if self.form == "power":
            if np.any(cov < 0):
                raise CovariateError(self.covariate, "must be >= 0")
            return np.asarray(value * (cov / self.reference) ** self.exponent, dtype=float)
        if self.form == "linear":
            return np.asarray(value * (1.0 + self.slope * (cov - self.reference)), dtype=float)
        return np.asarray(value * (1.0 + self.slope * np.maximum(cov - self.reference, 0.0)), dtype=float)


@dataclass(frozen=True)
class GenotypeEffect:
    """A pharmacogene's effect on one parameter: ``parameter`` x ``levels[phenotype]`` (``by = "phenotype"``) or
    x ``levels[activity score]`` (``by = "activity_score"``). ``avoid``: levels for which the guideline says
    not to give the drug; the model then has no parameter value and refuses to simulate."""

    gene: str
    parameter: str
    by: str
    levels: Mapping[str, float]
    avoid: Mapping[str, str]
    source: str

    def level_of(self, status: GeneStatus) -> str | None:
        """The level key for this patient: the activity score when the effect is by score and the score is
        known, else the phenotype (a file may list phenotypes as levels of a score effect too)."""
        if self.by == "activity_score" and status.activity_score is not None:
            score = status.activity_score
            return next((k for k in (*self.levels, *self.avoid) if _is_number(k) and abs(float(k) - score) < 1e-9),
                        f"{score:g}")
        return status.phenotype

    def describe(self, status: GeneStatus) -> str:
        if self.by == "activity_score" and status.activity_score is not None:
            return f"{status.gene} activity score {status.activity_score:g}" + (
                f" ({status.phenotype})" if status.phenotype else "")
        return f"{status.gene} {status.phenotype or 'phenotype not given'}"


@dataclass(frozen=True)
class PopulationGenotypes:
    """Allele frequencies of a categorical genotype covariate in one population, for the genotype-unknown model:
    diplotypes in Hardy-Weinberg proportions, one drawn per virtual subject (so the bands include the genotype
    uncertainty). Alleles are listed in the order used to name diplotypes (``"*1/*3"``, ``"G/A"``)."""

    covariate: str
    population: str
    alleles: Mapping[str, float]
    source: str
    citation: str = ""  # short form of the source, for one-line answers

    def diplotypes(self) -> tuple[tuple[str, ...], Array]:
        """Every diplotype (first allele the earlier-listed one) and its Hardy-Weinberg frequency."""
        names = list(self.alleles)
        p = np.array([self.alleles[a] for a in names], dtype=float)
        keys, freqs = [], []
        for i, first in enumerate(names):
            for j in range(i, len(names)):
                keys.append(f"{first}/{names[j]}")
                freqs.append(p[i] * p[j] * (1.0 if i == j else 2.0))
        return tuple(keys), np.asarray(freqs, dtype=float)

    def sample(self, n: int, rng: np.random.Generator) -> NDArray[np.object_]:
        """``n`` diplotypes drawn from the Hardy-Weinberg frequencies."""
        keys, freqs = self.diplotypes()
        return np.asarray(keys, dtype=object)[rng.choice(len(keys), size=n, p=freqs / freqs.sum())]


class GenotypeAdjustment(BaseModel):
    """What a pharmacogene did to a simulation, and why (shown with every what-if answer)."""

    gene: str
    parameter: str
    factor: float = Field(description="Multiplier on the parameter's population value (1 when not applied).")
    applied: bool
    reason: str = Field(description="Gene, phenotype, factor and source; or why the population value was used.")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _level_key(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return "1" if value else "0"
    if isinstance(value, int | float | np.integer | np.floating):
        return str(int(value)) if float(value).is_integer() else str(value)
    return str(value).strip()


@dataclass(frozen=True)
class DrugModel:
    """A drug's published population model."""

    name: str
    model_name: str
    description: str
    source: str
    structure: CompartmentModel
    parameters: Mapping[str, Parameter]
    covariate_effects: tuple[CovariateEffect, ...]
    bsv: BetweenSubjectVariability
    residual: ResidualError
    residual_output: str
    targets: Mapping[str, Any]
    dose_fraction: float
    default_route: Route
    default_dose: str
    default_interval_h: float
    default_infusion_duration_h: float
    concentration_name: str
    genotype_effects: tuple[GenotypeEffect, ...] = ()
    dose_candidates_mg: tuple[float, float, float] | None = None
    individualise_intervals_h: tuple[float, ...] | None = None
    population_genotypes: Mapping[str, PopulationGenotypes] = field(default_factory=dict)
    location: str = ""  # where the file was read ("package:path" or a file path); "" for text parsed directly

    @property
    def has_inr(self) -> bool:
        return "INRmax" in self.parameters

    @property
    def required_covariates(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(e.covariate for e in self.covariate_effects))

    def typical_parameters(self, covariates: Mapping[str, Any] | None = None, n: int | None = None) -> dict[str, Array]:
        """Typical (eta = 0) parameters for ``n`` patients given covariate arrays/lists of length n."""
        covariates = dict(covariates or {})
        sizes = [len(np.atleast_1d(np.asarray(v, dtype=object))) for v in covariates.values()]
        size = n if n is not None else max([1, *sizes])
        out = {k: np.full(size, p.value) for k, p in self.parameters.items()}
        for effect in self.covariate_effects:
            if effect.covariate not in covariates:
                raise CovariateError(effect.covariate, f"required by the {self.model_name} model of {self.name}")
            value = np.atleast_1d(np.asarray(covariates[effect.covariate], dtype=object))
            if value.shape[0] not in (1, size):
                raise CovariateError(effect.covariate, f"expected 1 or {size} values")
            if value.shape[0] == 1 and size > 1:
                value = np.repeat(value, size)
            if effect.form not in ("categorical_factor", "categorical_value"):
                value = value.astype(float)
            out[effect.parameter] = effect.apply(out[effect.parameter], value)
        return out

    def sample_parameters(
        self, covariates: Mapping[str, Any] | None, n: int, rng: np.random.Generator
    ) -> dict[str, Array]:
        """Individual parameters for ``n`` virtual patients (one batched draw)."""
        typical = self.typical_parameters(covariates, n)
        return self.bsv.apply(typical, self.bsv.sample_eta(n, rng))

    def pk_parameters(self, parameters: Mapping[str, Array]) -> dict[str, Array]:
        return {k: parameters[k] for k in self.structure.parameter_names if k in parameters}

    def genotype_adjustments(self, genes: Mapping[str, GeneStatus]) -> list[GenotypeAdjustment]:
        """The factor each genotype effect puts on its parameter for this patient, with the reason. A gene
        absent, not callable, or with a phenotype the file has no factor for leaves the population value (factor
        1) and says so; a level the guideline says to avoid raises :class:`CovariateError` naming the gene."""
        return [self._adjustment(effect, genes.get(effect.gene)) for effect in self.genotype_effects]

    def _adjustment(self, effect: GenotypeEffect, status: GeneStatus | None) -> GenotypeAdjustment:
        population = f"population {effect.parameter} used (no genotype adjustment)"
        if status is None:
            return GenotypeAdjustment(gene=effect.gene, parameter=effect.parameter, factor=1.0, applied=False,
                                      reason=f"{effect.gene} unknown (not in a stored PGx report or the request): {population}")
        if not status.callable:
            why = status.reason or f"{effect.gene} not callable"
            return GenotypeAdjustment(gene=effect.gene, parameter=effect.parameter, factor=1.0, applied=False,
                                      reason=f"{why} ({status.source}): {population}")
        level = effect.level_of(status)
        described = effect.describe(status)
        if level is not None and level in effect.avoid:
            raise CovariateError(effect.gene, f"{described} ({status.source}): {effect.avoid[level]}; the {self.name} "
                                              f"model has no parameter value for this genotype, so it is not simulated")
        if level is None or level not in effect.levels:
            return GenotypeAdjustment(gene=effect.gene, parameter=effect.parameter, factor=1.0, applied=False,
                                      reason=f"{described} ({status.source}): the {self.name} model cites no "
                                             f"{effect.parameter} factor for it; {population}")
        factor = effect.levels[level]
        return GenotypeAdjustment(gene=effect.gene, parameter=effect.parameter, factor=factor, applied=True,
                                  reason=f"{described} ({status.source}): {self.name} {effect.parameter} x {factor:g} "
                                         f"-- {effect.source}")


def _build(data: Mapping[str, Any], origin: str) -> DrugModel:
    check_drug_file(data, origin)
    with entries_of(origin, ""):
        drug = data["drug"]
        params = {
            k: Parameter(k, float(v["value"]), str(v["unit"]), str(v.get("note", "")), str(v["source"]))
            for k, v in data["parameters"].items()
        }
        effects = []
        for i, e in enumerate(data.get("covariates", [])):
            if e["form"] not in _FORMS:
                raise DrugFileError(origin, f"covariates[{i}].form", f"unknown form {e['form']!r}")
            effects.append(
                CovariateEffect(
                    parameter=e["parameter"], covariate=e["covariate"], form=e["form"], source=e["source"],
                    reference=float(e.get("reference", 0.0)), exponent=float(e.get("exponent", 1.0)),
                    slope=float(e.get("slope", 0.0)),
                    levels={str(k): float(v) for k, v in e.get("levels", {}).items()},
                )
            )
        genotype = tuple(_genotype_effect(g, params, origin) for g in data.get("genotype", []))
        frequencies = {g.covariate: g for g in (_population_genotypes(entry, effects, origin)
                                                for entry in data.get("population_genotypes", []))}
        bsv = BetweenSubjectVariability.from_variances(data["bsv"]["names"], data["bsv"]["variances"])
        res = data["residual"]
        pk = data["pk"]
        return DrugModel(
            name=drug["name"], model_name=drug["model"], description=drug["description"], source=drug["source"],
            structure=CompartmentModel(compartments=int(pk["compartments"]), absorption=bool(pk["absorption"])),
            parameters=params, covariate_effects=tuple(effects), bsv=bsv,
            residual=ResidualError(float(res["additive_sd"]), float(res["proportional"])),
            residual_output=str(res["output"]), targets=dict(data["targets"]),
            dose_fraction=float(drug.get("dose_fraction", 1.0)), default_route=Route(drug["default_route"]),
            default_dose=str(drug["default_dose"]), default_interval_h=float(drug["default_interval_h"]),
            default_infusion_duration_h=float(drug.get("default_infusion_duration_h", 0.0)),
            concentration_name=str(drug.get("concentration_name", "concentration")),
            genotype_effects=genotype,
            dose_candidates_mg=_candidates(drug.get("dose_candidates_mg"), origin),
            individualise_intervals_h=tuple(float(v) for v in drug["individualise_intervals_h"])
            if "individualise_intervals_h" in drug else None,
            population_genotypes=frequencies,
        )


def _genotype_effect(entry: Mapping[str, Any], params: Mapping[str, Parameter], origin: str) -> GenotypeEffect:
    where = f"genotype[{entry.get('gene', '?')}]"
    if entry.get("parameter") not in params:
        raise DrugFileError(origin, f"{where}.parameter", f"{entry.get('parameter')!r} is not a parameter of the model")
    if entry.get("by") not in ("phenotype", "activity_score"):
        raise DrugFileError(origin, f"{where}.by", "must be 'phenotype' or 'activity_score'")
    levels = {str(k): float(v) for k, v in entry.get("levels", {}).items()}
    if not levels or any(not v > 0 for v in levels.values()):
        raise DrugFileError(origin, f"{where}.levels", "give at least one factor, every factor > 0")
    if not str(entry.get("source", "")).strip():
        raise DrugFileError(origin, f"{where}.source", "every genotype factor needs its source")
    return GenotypeEffect(gene=str(entry["gene"]), parameter=str(entry["parameter"]), by=str(entry["by"]),
                          levels=levels, avoid={str(k): str(v) for k, v in entry.get("avoid", {}).items()},
                          source=str(entry["source"]))


def _population_genotypes(entry: Mapping[str, Any], effects: Sequence[CovariateEffect],
                          origin: str) -> PopulationGenotypes:
    """One ``[[population_genotypes]]`` entry: frequencies summing to 1, every diplotype a level of the
    covariate's categorical effects, and a source."""
    where = f"population_genotypes[{entry.get('covariate', '?')}]"
    alleles = {str(k): float(v) for k, v in entry.get("alleles", {}).items()}
    if len(alleles) < 2 or any(not 0 <= v <= 1 for v in alleles.values()) or abs(sum(alleles.values()) - 1) > 1e-6:
        raise DrugFileError(origin, f"{where}.alleles", "give at least two allele frequencies in [0, 1] summing to 1")
    for name in ("covariate", "population", "source"):
        if not str(entry.get(name, "")).strip():
            raise DrugFileError(origin, f"{where}.{name}", "missing or empty")
    result = PopulationGenotypes(covariate=str(entry["covariate"]), population=str(entry["population"]),
                                 alleles=alleles, source=str(entry["source"]),
                                 citation=str(entry.get("citation", "")).strip() or str(entry["source"]))
    levels = [e.levels for e in effects if e.covariate == result.covariate and e.levels]
    if not levels:
        raise DrugFileError(origin, f"{where}.covariate", f"{result.covariate!r} has no categorical effect in the model")
    unknown = [k for k in result.diplotypes()[0] if any(k not in lv for lv in levels)]
    if unknown:
        raise DrugFileError(origin, f"{where}.alleles", f"diplotype {unknown[0]!r} is not a level of the model")
    return result


def _candidates(value: Any, origin: str) -> tuple[float, float, float] | None:
    if value is None:
        return None
    if len(value) != 3 or not 0 < float(value[0]) <= float(value[1]) or not float(value[2]) > 0:
        raise DrugFileError(origin, "drug.dose_candidates_mg", "give [lowest, highest, step] in mg")
    return float(value[0]), float(value[1]), float(value[2])


@dataclass(frozen=True)
class LeftOut:
    """A drug file the library left out: the file, the entry in it, and why."""

    file: str
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.reason}"

    @staticmethod
    def of(error: DrugFileError) -> LeftOut:
        return LeftOut(error.file, error.entry, error.message)


@dataclass(frozen=True)
class DrugLibrary:
    """The drugs whose files load and pass every check (by name), and the files left out with the reason."""

    drugs: Mapping[str, DrugModel]
    left_out: tuple[LeftOut, ...]


def _folder(folder: Path | None) -> Traversable:
    """The drug files' folder: ``folder``, or the package's ``pharmaco/data/drugs``."""
    return folder if folder is not None else resources.files("medtwin.pharmaco").joinpath(DRUG_FOLDER)


def drug_files(folder: Path | None = None) -> dict[str, Traversable]:
    """Every ``*.toml`` file of the drug folder by drug name (the file's stem), loadable or not."""
    return {p.name.removesuffix(".toml"): p for p in sorted(_folder(folder).iterdir(), key=lambda p: p.name)
            if p.name.endswith(".toml")}


def _read(file: Traversable, shipped: bool) -> DrugModel:
    location = f"medtwin.pharmaco:{DRUG_FOLDER}/{file.name}" if shipped else str(file)
    return replace(parse_drug(file.read_text(encoding="utf-8"), file.name), location=location)


def load_library(folder: Path | None = None) -> DrugLibrary:
    """Every drug file loaded and checked on its own: a broken file is left out (logged, and listed with the
    file, the entry and the reason in ``left_out``); the others load."""
    drugs: dict[str, DrugModel] = {}
    left_out: list[LeftOut] = []
    for name, file in drug_files(folder).items():
        try:
            drugs[name] = _read(file, folder is None)
        except DrugFileError as exc:
            left_out.append(LeftOut.of(exc))
            log.error("drug file left out: %s", left_out[-1])
    return DrugLibrary(drugs, tuple(left_out))


def available_drugs(folder: Path | None = None) -> list[str]:
    """The names of the drugs that load (a broken file is left out: :func:`load_library`)."""
    return sorted(load_library(folder).drugs)


def load_drug(name: str, folder: Path | None = None) -> DrugModel:
    """Load a drug model by name (case-insensitive); :class:`UnknownDrugError` names the drug if absent, a
    broken file raises :class:`DrugFileError` naming the file and the entry."""
    key = name.strip().lower()
    files = drug_files(folder)
    if key not in files:
        raise UnknownDrugError("drug", f"unknown drug {name!r}; available: {', '.join(files)}")
    return _read(files[key], folder is None)


def parse_drug(text: str, origin: str) -> DrugModel:
    """A drug model from TOML text; errors (:class:`DrugFileError`) name ``origin`` and the entry."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DrugFileError(origin, "toml", f"not valid TOML: {exc}") from exc
    return _build(data, origin)
