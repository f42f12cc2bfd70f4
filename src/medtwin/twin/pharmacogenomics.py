"""Pharmacology on the twin: pharmacogenomic reports as twin versions, and drug simulations whose covariates
default from the patient's record and stored genotype, each result stored as a twin version with provenance.

Covariate defaults (request values always win; each default names where it came from in ``covariate_sources``):

* ``age_years``: the record summary's age (whole years, from the birth date);
* ``sex``: the record gender when it is ``male`` or ``female`` (otherwise the request must give it);
* ``weight_kg`` / ``height_cm``: the latest weight (LOINC 29463-7) / height (LOINC 8302-2) vital sign,
  converted from lb / in when recorded so;
* ``serum_creatinine_mg_dl``: the newest serum creatinine lab under any of its codes
  (:data:`medtwin.vocab.renal.CREATININE_LOINC`), converted by the domain's one rule
  (:func:`medtwin.vocab.renal.creatinine_mg_dl`);
* ``cyp2c9`` / ``vkorc1``: the latest stored PGx report, when that gene is callable
  (:func:`medtwin.pharmaco.recommendations.callability`);
* ``pharmacogenes``: every gene of the latest stored PGx report with its CPIC phenotype and activity score when
  callable, or the reason it is not (a drug model then uses its population value and says so);
* ``dialysis``: false unless the request says otherwise (the record has no reliable dialysis flag).

A value that cannot be read (unknown unit, out of physiological range) is an error naming the covariate,
never silently replaced.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints, ValidationError, field_validator, model_validator

from medtwin.pharmaco.covariates import GeneStatus, PatientCovariates, Sex, check_range
from medtwin.pharmaco.dosing import DoseEvent, Regimen
from medtwin.pharmaco.errors import CovariateError
from medtwin.pharmaco.library import DrugModel, load_drug, load_library
from medtwin.pharmaco.pgx import PgxReport, call_pgx, vkorc1_genotype
from medtwin.pharmaco.recommendations import callability
from medtwin.pharmaco.twin import (
    CompareRequest,
    DoseSuggestion,
    DrugComparison,
    IndividualiseRequest,
    Level,
    compare_regimens,
    individualise,
    unknown_genotypes,
)
from medtwin.record.genomics import IG_CITATION, report_observations, transaction_bundle
from medtwin.record.sources import RawUnit
from medtwin.store.database import Store
from medtwin.store.records import RecordRepository
from medtwin.store.twins import TwinRepository, TwinVersion
from medtwin.twin.build import import_unit
from medtwin.twin.drug_genotype import (
    GENOTYPE_FIELDS,
    ClinicalDose,
    clinical_dose,
    genotype_note,
    missing_genotype,
)
from medtwin.twin.stamp import TwinVersionStamp
from medtwin.twin.summary import Measurement, PatientSummary
from medtwin.vocab.renal import CREATININE_LOINC, creatinine_mg_dl

__all__ = [
    "PGX_KIND", "SIMULATION_KIND", "CovariateInput", "DrugInfo", "PgxPhenotype", "PgxSummary",
    "StoredPgx", "TwinCompareRequest", "TwinDoseSuggestion", "TwinDrugComparison", "TwinIndividualiseRequest",
    "drug_library", "latest_pgx", "pgx_summary", "resolve_covariates", "run_comparison", "run_individualisation",
    "store_pgx",
]

PGX_KIND = "pgx"
SIMULATION_KIND = "drug-simulation"
RECORD_KIND = "record"

Clock = Callable[[], datetime]

MAX_EVENTS = 2000
MAX_LEVELS = 200
#: bound on virtual patients x time points x regimens of one comparison (memory and time of a request)
MAX_SIMULATED_POINTS = 5_000_000

_WEIGHT_TO_KG = {"kg": 1.0, "g": 0.001, "[lb_av]": 0.45359237, "lb": 0.45359237, "lbs": 0.45359237}
_HEIGHT_TO_CM = {"cm": 1.0, "m": 100.0, "mm": 0.1, "[in_i]": 2.54, "in": 2.54}


# ---- request / response models -----------------------------------------------------------------------


GeneSymbol = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9-]{1,15}$")]


class GeneInput(BaseModel):
    """A pharmacogene given in a request (it then wins over the stored PGx report)."""

    phenotype: str | None = Field(default=None, max_length=80, description="CPIC phenotype, e.g. 'Poor Metabolizer'.")
    activity_score: float | None = Field(default=None, ge=0, le=10, description="CPIC activity score (e.g. DPYD).")

    @model_validator(mode="after")
    def _something(self) -> GeneInput:
        if self.phenotype is None and self.activity_score is None:
            raise ValueError("give phenotype or activity_score")
        return self


class CovariateInput(BaseModel):
    """Patient covariates a request may give; any left out default from the twin (see module docs)."""

    age_years: float | None = Field(default=None, description="Age [years]; default: the record's age.")
    weight_kg: float | None = Field(default=None, description="Weight [kg]; default: latest weight vital sign.")
    sex: Sex | None = Field(default=None, description="Default: the record's gender.")
    height_cm: float | None = Field(default=None, description="Height [cm]; default: latest height vital sign.")
    serum_creatinine_mg_dl: float | None = Field(
        default=None, description="Serum creatinine [mg/dL]; default: latest LOINC 2160-0 lab.")
    dialysis: bool | None = Field(default=None, description="Default: false.")
    cyp2c9: str | None = Field(default=None, description="CYP2C9 diplotype; default: the stored PGx report.")
    vkorc1: str | None = Field(default=None, description="VKORC1 rs9923231 genotype; default: the stored PGx report.")
    pharmacogenes: dict[GeneSymbol, GeneInput] = Field(
        default_factory=dict, max_length=20,
        description="Phenotypes by gene symbol (e.g. CYP3A5, DPYD); default: the stored PGx report's callable genes.")

    @field_validator("age_years", "weight_kg", "height_cm", "serum_creatinine_mg_dl")
    @classmethod
    def _in_range(cls, value: float | None, info: Any) -> float | None:
        if value is not None:
            check_range(str(info.field_name), value)
        return value


class TwinCompareRequest(BaseModel):
    """:class:`medtwin.pharmaco.twin.CompareRequest` with covariates optional (defaulted from the twin)."""

    drug: str = Field(min_length=1, max_length=64)
    patient: CovariateInput = Field(default_factory=CovariateInput)
    regimens: list[Regimen] = Field(min_length=1, max_length=10)
    horizon_h: float = Field(default=168.0, gt=0, le=24 * 120)
    n_samples: int = Field(default=500, ge=20, le=20_000)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    history: list[DoseEvent] = Field(default_factory=list, max_length=MAX_EVENTS,
                                     description="Doses already given (for levels).")
    levels: list[Level] = Field(default_factory=list, max_length=MAX_LEVELS,
                                description="Measured levels to personalise the twin.")

    @model_validator(mode="after")
    def _bounded_work(self) -> TwinCompareRequest:
        points = self.horizon_h / (0.25 if self.horizon_h <= 24 * 14 else 1.0) + 1
        if self.n_samples * points * len(self.regimens) > MAX_SIMULATED_POINTS:
            raise ValueError(f"n_samples x time points x regimens exceeds {MAX_SIMULATED_POINTS:.0e}; lower n_samples "
                             "or horizon_h")
        return self


class TwinIndividualiseRequest(BaseModel):
    """:class:`medtwin.pharmaco.twin.IndividualiseRequest` with covariates optional (defaulted from the twin)."""

    drug: str = Field(min_length=1, max_length=64)
    patient: CovariateInput = Field(default_factory=CovariateInput)
    history: list[DoseEvent] = Field(min_length=1, max_length=MAX_EVENTS)
    levels: list[Level] = Field(min_length=1, max_length=MAX_LEVELS)
    max_adverse_probability: float = Field(default=0.1, gt=0, lt=1)
    intervals_h: list[float] | None = Field(default=None, max_length=8)
    n_samples: int = Field(default=2000, ge=100, le=50_000)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)

    @field_validator("intervals_h")
    @classmethod
    def _positive_intervals(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and (not value or any(not v > 0 for v in value)):
            raise ValueError("intervals_h must be a non-empty list of intervals > 0 h")
        return value


class SimulationBasis(BaseModel):
    """What a drug simulation ran on: the patient, the covariates used (and where each came from), the
    twin versions read, and the twin version the result was stored as."""

    patient_id: str
    covariates: PatientCovariates
    covariate_sources: dict[str, str]
    record_version: int | None
    pgx_version: int | None
    twin_version: int


class TwinDrugComparison(DrugComparison):
    basis: SimulationBasis
    genotype_note: str | None = Field(default=None, description="One sentence: the genotype used and where it came "
                                      "from, or that none was usable and the genotype-unknown model ran.")
    clinical_dose: ClinicalDose | None = Field(default=None, description="Without a genotype (warfarin): the IWPC "
                                               "2009 clinical algorithm's dose, a genotype-free alternative.")


class TwinDoseSuggestion(DoseSuggestion):
    basis: SimulationBasis


class DrugInfo(BaseModel):
    name: str
    model: str
    description: str
    source: str
    compartments: int
    oral_absorption: bool
    default_route: str
    default_dose: str
    default_interval_h: float
    required_covariates: list[str]
    response: str | None = Field(description="Modelled response besides concentration, e.g. 'INR'.")


class PgxPhenotype(BaseModel):
    gene: str
    diplotype: str
    phenotype: str
    activity_score: float | None
    status: str = Field(default="called", description="Caller status: called, ambiguous, not_callable, "
                                                       "outside_call or no_data.")
    callable: bool = Field(default=True, description="Whether recommendations and dose models may use this gene.")
    inferred: bool = Field(default=False, description="Phenotype shown because all candidate diplotypes agree; "
                                                      "not confident, not acted on.")
    reason: str = Field(default="", description="Why the gene is not callable ('' when it is).")


class PgxSummary(BaseModel):
    """The latest pharmacogenomic phenotypes of a patient, for the twin summary."""

    version: int
    created_at: datetime
    genes: list[PgxPhenotype]


class StoredPgx(TwinVersionStamp):
    provenance: dict[str, Any]
    report: PgxReport


# ---- drug library ------------------------------------------------------------------------------------


def drug_library() -> list[DrugInfo]:
    """The drugs whose files load, by name (each file read and checked once; a broken one is left out)."""
    drugs = load_library().drugs
    out = []
    for name in sorted(drugs):
        d = drugs[name]
        out.append(DrugInfo(
            name=d.name, model=d.model_name, description=d.description, source=d.source,
            compartments=d.structure.compartments, oral_absorption=d.structure.absorption,
            default_route=d.default_route.value, default_dose=d.default_dose, default_interval_h=d.default_interval_h,
            required_covariates=list(d.required_covariates), response="INR" if d.has_inr else None,
        ))
    return out


# ---- pharmacogenomics ----------------------------------------------------------------------------------


def store_pgx(store: Store, patient_id: str, vcf_text: str, *, actor: str, now: datetime, sample: str | None = None,
              cyp2d6_copy_number: int | None = None) -> StoredPgx:
    """Call genotypes from a GRCh38 VCF and store the report as a twin version of kind ``pgx`` whose
    provenance names the VCF (sha256, size), sample, when and by whom.

    The called genes also go into the patient's FHIR record as Genomics Reporting IG Observations
    (:mod:`medtwin.record.genomics`) through the record import (:func:`medtwin.twin.build.import_unit`), so they
    appear in the record export. The import commits in its own transaction, before the pgx version: a failed
    import stores neither. A patient with no Patient resource in the record gets the twin version only."""
    report = call_pgx(vcf_text, sample=sample, cyp2d6_copy_number=cyp2d6_copy_number)
    raw = vcf_text.encode("utf-8")
    digest = hashlib.sha256(raw).hexdigest()
    record = _record_observations(store, patient_id, report, digest, actor=actor, now=now)
    provenance: dict[str, Any] = {
        "source": "vcf", "vcf_sha256": digest, "vcf_bytes": len(raw), "record": record,
        "sample": report.sample, "assembly": report.assembly, "cyp2d6_copy_number": cyp2d6_copy_number,
        "uploaded_at": now.isoformat(), "uploaded_by": actor,
        "tables": {gene: result.table_version for gene, result in report.genes.items()},
    }
    payload = report.model_dump(mode="json")
    with store.begin() as connection:
        version = TwinRepository(connection, store.codec).add_version(
            patient_id, PGX_KIND, payload, provenance, actor=actor, now=now)
    return StoredPgx(patient_id=patient_id, version=version, created_at=now, actor=actor, provenance=provenance,
                     report=report)


def _record_observations(store: Store, patient_id: str, report: PgxReport, digest: str, *, actor: str,
                         now: datetime) -> dict[str, Any]:
    with store.connect() as connection:
        exists = RecordRepository(connection, store.codec).exists("Patient", patient_id)
    if not exists:
        return {"stored": False, "reason": f"no Patient/{patient_id} in the record"}
    observations = report_observations(report.genes, patient_id=patient_id, issued=now, report_key=digest,
                                       definition_version=report.definition_version,
                                       source=f"VCF sha256 {digest[:16]}..., sample {report.sample}")
    unit = import_unit(store, RawUnit(f"pgx-vcf-{digest[:16]}", "json", transaction_bundle(observations)),
                       actor=actor, clock=lambda: now)
    if unit.error is not None:
        raise unit.error
    return {"stored": True, "import_id": unit.import_id, "observations": len(observations),
            "created": unit.created, "unchanged": unit.unchanged, "profiles": IG_CITATION}


def _stored(version: TwinVersion) -> StoredPgx:
    return StoredPgx(patient_id=version.patient_id, version=version.version, created_at=version.created_at,
                     actor=version.actor, provenance=version.provenance,
                     report=PgxReport.model_validate(version.payload))


def latest_pgx(store: Store, patient_id: str) -> StoredPgx | None:
    with store.connect() as connection:
        latest = TwinRepository(connection, store.codec).latest(patient_id, PGX_KIND)
    return None if latest is None else _stored(latest)


def pgx_summary(store: Store, patient_id: str) -> PgxSummary | None:
    """Gene, diplotype, phenotype and activity score from the latest PGx report, or None without one."""
    stored = latest_pgx(store, patient_id)
    if stored is None:
        return None
    genes = []
    for g in stored.report.genes.values():
        verdict = callability(g)
        genes.append(PgxPhenotype(gene=g.gene, diplotype=g.diplotype, phenotype=g.phenotype,
                                  activity_score=g.activity_score, status=str(getattr(g, "status", "called")),
                                  callable=verdict.callable, inferred=verdict.inferred, reason=verdict.reason))
    return PgxSummary(version=stored.version, created_at=stored.created_at, genes=genes)


# ---- covariates from the twin ----------------------------------------------------------------------------


def _newest(items: Iterable[Measurement]) -> Measurement | None:
    """The newest of one quantity's readings under several codes (undated ones last)."""
    return max(items, key=lambda m: (m.time is not None, m.time or datetime.min.replace(tzinfo=UTC)), default=None)


def _converted(name: str, item: Measurement, factors: dict[str, float] | Callable[[float, str | None], float]) -> float:
    unit = (item.unit or "").strip()
    try:
        if item.value is None or (isinstance(factors, dict) and unit not in factors):
            raise ValueError(unit)
        return factors(item.value, unit) if callable(factors) else item.value * factors[unit]
    except ValueError:
        raise CovariateError(f"patient.{name}", f"the record's latest {item.display or item.code} ({item.value} "
                             f"{unit or 'no unit'}) cannot be read as {name}; give patient.{name}") from None


def _called(report: PgxReport | None, gene: str) -> str | None:
    result = None if report is None else report.genes.get(gene)
    if result is None or not callability(result).callable:
        return None
    return vkorc1_genotype(result) if gene == "VKORC1" else result.diplotype


def _pharmacogenes(given: CovariateInput, pgx: StoredPgx | None, sources: dict[str, str]) -> dict[str, GeneStatus]:
    """Request genes (callable by the requester's word), then every other gene of the stored report: its CPIC
    phenotype when callable, else why not."""
    genes: dict[str, GeneStatus] = {}
    for gene, value in given.pharmacogenes.items():
        genes[gene] = GeneStatus(gene=gene, phenotype=value.phenotype, activity_score=value.activity_score,
                                 source="request")
        sources[f"pharmacogenes.{gene}"] = "request"
    if pgx is None:
        return genes
    where = f"pgx v{pgx.version}"
    for gene, result in pgx.report.genes.items():
        if gene in genes:
            continue
        verdict = callability(result)
        genes[gene] = GeneStatus(gene=gene, phenotype=result.phenotype if verdict.callable else None,
                                 activity_score=result.activity_score if verdict.callable else None,
                                 callable=verdict.callable, reason=verdict.reason, source=where)
        sources[f"pharmacogenes.{gene}"] = f"{where}: {gene}" + ("" if verdict.callable else " (not callable)")
    return genes


def resolve_covariates(given: CovariateInput, summary: PatientSummary | None, record_version: int | None,
                       pgx: StoredPgx | None) -> tuple[PatientCovariates, dict[str, str]]:
    """Merge request covariates with defaults from the record summary and the PGx report. Returns the
    covariates and, per covariate, where its value came from."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, value in given.model_dump(exclude_none=True, exclude={"pharmacogenes"}).items():
        values[name], sources[name] = value, "request"
    record = f"record v{record_version}"
    if summary is not None:
        if "age_years" not in values and summary.age_years is not None:
            values["age_years"], sources["age_years"] = float(summary.age_years), f"{record}: birth date"
        if "sex" not in values and summary.gender in (Sex.FEMALE.value, Sex.MALE.value):
            values["sex"], sources["sex"] = summary.gender, f"{record}: gender"
        measured = (("weight_kg", summary.weight, _WEIGHT_TO_KG), ("height_cm", summary.height, _HEIGHT_TO_CM),
                    ("serum_creatinine_mg_dl", _newest(m for m in summary.labs if m.code in CREATININE_LOINC),
                     creatinine_mg_dl))
        for name, item, factors in measured:
            if name not in values and item is not None:
                values[name] = _converted(name, item, factors)
                when = item.time.isoformat() if item.time else "undated"
                sources[name] = f"{record}: LOINC {item.code} {item.value} {item.unit} at {when}"
    for name, gene in GENOTYPE_FIELDS.items():
        if name not in values and pgx is not None and (called := _called(pgx.report, gene)) is not None:
            values[name], sources[name] = called, f"pgx v{pgx.version}: {gene}"
        elif name not in values:
            sources[name] = missing_genotype(pgx.report if pgx else None, pgx.version if pgx else None, gene)
    values["pharmacogenes"] = _pharmacogenes(given, pgx, sources)
    for name in ("age_years", "sex", "weight_kg"):
        if name not in values:
            raise CovariateError(f"patient.{name}", "not in the request and not in the patient's record")
    try:
        covariates = PatientCovariates(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(p) for p in first.get("loc", ()))
        raise CovariateError(f"patient.{name}", f"{first.get('msg')} (from {sources.get(name, 'request')})") from exc
    return covariates, sources


#: model covariate names (as the domain reports them) -> request field
_REQUEST_FIELD = {"CYP2C9": "patient.cyp2c9", "VKORC1": "patient.vkorc1", "age_years": "patient.age_years",
                  "CYP3A5": "patient.pharmacogenes.CYP3A5", "DPYD": "patient.pharmacogenes.DPYD",
                  "CYP2C19": "patient.pharmacogenes.CYP2C19", "sex": "patient.sex",
                  "weight_kg": "patient.weight_kg", "height_cm": "patient.height_cm",
                  "serum_creatinine_mg_dl": "patient.serum_creatinine_mg_dl",
                  "crcl_ml_min": "patient.serum_creatinine_mg_dl", "dialysis": "patient.dialysis"}


def _as_request_error(exc: CovariateError) -> CovariateError:
    return CovariateError(_REQUEST_FIELD.get(exc.field, exc.field), exc.message)


def _basis_inputs(store: Store, patient_id: str) -> tuple[PatientSummary | None, int | None, StoredPgx | None]:
    with store.connect() as connection:
        twins = TwinRepository(connection, store.codec)
        record = twins.latest(patient_id, RECORD_KIND)
        pgx = twins.latest(patient_id, PGX_KIND)
    summary = PatientSummary.model_validate(record.payload) if record is not None else None
    return summary, record.version if record is not None else None, _stored(pgx) if pgx is not None else None


def _model_provenance(drug: DrugModel) -> dict[str, Any]:
    return {"name": drug.name, "model": drug.model_name, "source": drug.source,
            "parameters": {k: {"value": p.value, "unit": p.unit} for k, p in drug.parameters.items()}}


def _store_simulation(store: Store, patient_id: str, operation: str, request: BaseModel, drug: DrugModel,
                      covariates: PatientCovariates, sources: dict[str, str], record_version: int | None,
                      pgx: StoredPgx | None, result: BaseModel, *, actor: str, now: datetime,
                      answer: dict[str, Any] | None = None) -> SimulationBasis:
    provenance: dict[str, Any] = {
        "operation": operation, "request": request.model_dump(mode="json"), "drug_model": _model_provenance(drug),
        "base": {"record_version": record_version, "pgx_version": pgx.version if pgx else None},
        "covariates": covariates.model_dump(mode="json"), "covariate_sources": sources,
        "computed_at": now.isoformat(), "requested_by": actor,
    }
    with store.begin() as connection:
        version = TwinRepository(connection, store.codec).add_version(
            patient_id, SIMULATION_KIND,
            {"operation": operation, "result": result.model_dump(mode="json"), **(answer or {})},
            provenance, actor=actor, now=now)
    return SimulationBasis(patient_id=patient_id, covariates=covariates, covariate_sources=sources,
                           record_version=record_version, pgx_version=pgx.version if pgx else None,
                           twin_version=version)


def run_comparison(store: Store, patient_id: str, request: TwinCompareRequest, *, actor: str,
                   clock: Clock) -> TwinDrugComparison:
    """Compare regimens on the patient's twin (covariates defaulted from the twin) and store the result as a
    ``drug-simulation`` twin version naming the request, the drug model and the record/PGx versions used."""
    drug = load_drug(request.drug)
    summary, record_version, pgx = _basis_inputs(store, patient_id)
    covariates, sources = resolve_covariates(request.patient, summary, record_version, pgx)
    try:
        result = compare_regimens(CompareRequest(
            drug=drug.name, patient=covariates, regimens=request.regimens, horizon_h=request.horizon_h,
            n_samples=request.n_samples, seed=request.seed, history=request.history, levels=request.levels))
    except CovariateError as exc:
        raise _as_request_error(exc) from exc
    note = genotype_note(drug, covariates, sources, result.population_genotypes)
    alternative = clinical_dose(drug, covariates, summary, result.population_genotypes)
    answer = {"genotype_note": note, "clinical_dose": alternative.model_dump(mode="json") if alternative else None}
    basis = _store_simulation(store, patient_id, "compare", request, drug, covariates, sources, record_version, pgx,
                              result, actor=actor, now=clock(), answer=answer)
    return TwinDrugComparison(**dict(result), basis=basis, genotype_note=note, clinical_dose=alternative)


def run_individualisation(store: Store, patient_id: str, request: TwinIndividualiseRequest, *, actor: str,
                          clock: Clock) -> TwinDoseSuggestion:
    """MAP dose individualisation on the patient's twin; stored like :func:`run_comparison`."""
    drug = load_drug(request.drug)
    summary, record_version, pgx = _basis_inputs(store, patient_id)
    covariates, sources = resolve_covariates(request.patient, summary, record_version, pgx)
    for gene in unknown_genotypes(drug, covariates):
        name = next(f for f, g in GENOTYPE_FIELDS.items() if g == gene)
        raise CovariateError(f"patient.{name}", f"{sources[name]}; a dose from measured levels is fitted for one "
                                                "genotype: give it in the request or upload a PGx report")
    try:
        result = individualise(IndividualiseRequest(
            drug=drug.name, patient=covariates, history=request.history, levels=request.levels,
            max_adverse_probability=request.max_adverse_probability, intervals_h=request.intervals_h,
            n_samples=request.n_samples, seed=request.seed))
    except CovariateError as exc:
        raise _as_request_error(exc) from exc
    basis = _store_simulation(store, patient_id, "individualise", request, drug, covariates, sources, record_version,
                              pgx, result, actor=actor, now=clock())
    return TwinDoseSuggestion(**dict(result), basis=basis)

