"""What a drug answer says about the genotype it ran on, in one sentence: the stored (or requested) genotype
and where it came from, or, when the patient has none that may be acted on, that the genotype-unknown model
ran (each virtual subject's genotype drawn from cited population frequencies) and why. For warfarin without
a genotype, the IWPC 2009 clinical algorithm's dose is offered alongside as a genotype-free number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import BaseModel, Field

from medtwin.pharmaco.covariates import PatientCovariates
from medtwin.pharmaco.iwpc import IwpcClinicalInput, Race, iwpc_clinical_weekly_dose
from medtwin.pharmaco.library import DrugModel
from medtwin.pharmaco.pgx import PgxReport
from medtwin.pharmaco.recommendations import callability
from medtwin.pharmaco.twin import PopulationGenotypeUse
from medtwin.twin.summary import PatientSummary

__all__ = ["GENOTYPE_FIELDS", "ClinicalDose", "clinical_dose", "genotype_note", "missing_genotype"]

#: request field -> gene symbol, for the genotype covariates a drug model takes directly
GENOTYPE_FIELDS = {"cyp2c9": "CYP2C9", "vkorc1": "VKORC1"}
_INDUCERS = ("carbamazepine", "phenytoin", "rifampin", "rifampicin")


class ClinicalDose(BaseModel):
    """A genotype-free dose estimate offered beside a genotype-unknown simulation."""

    algorithm: str
    weekly_dose_mg: float
    daily_dose_mg: float
    basis: str = Field(description="The inputs used, and the assumptions where the record has no value.")


def missing_genotype(report: PgxReport | None, version: int | None, gene: str) -> str:
    """Why the patient has no usable ``gene`` genotype: no report, not in it, or not callable (and why)."""
    if report is None:
        return f"No {gene} genotype stored"
    result = report.genes.get(gene)
    if result is None:
        return f"No {gene} genotype in the stored PGx report (pgx v{version})"
    return f"{gene} in pgx v{version} is not used: {callability(result).reason}"


def genotype_note(drug: DrugModel, covariates: PatientCovariates, sources: Mapping[str, str],
                  mixture: Sequence[PopulationGenotypeUse]) -> str | None:
    """One sentence on the genotype a simulation ran on (None for a model without genotype covariates)."""
    fields = [(f, g) for f, g in GENOTYPE_FIELDS.items() if g in drug.required_covariates]
    if not fields:
        return None
    if mixture:
        unknown = [g for _, g in fields if g in {m.covariate for m in mixture}]
        reasons = [sources.get(f, f"No {g} genotype stored") for f, g in fields if g in unknown]
        merged = all(r == f"No {g} genotype stored" for r, g in zip(reasons, unknown, strict=True))
        why = f"No {' or '.join(unknown)} genotype stored" if merged else "; ".join(reasons)
        populations = sorted({m.population for m in mixture})
        cited = "; ".join(dict.fromkeys(m.citation for m in mixture))
        return (f"{why}: simulated over population genotype frequencies ({', '.join(populations)}; {cited}), "
                f"so the bands include the genotype uncertainty.")
    used = [f"{g} {getattr(covariates, f)} ({sources.get(f, 'request')})" for f, g in fields]
    return "Genotype used: " + " and ".join(used) + "."


def clinical_dose(drug: DrugModel, covariates: PatientCovariates, summary: PatientSummary | None,
                  mixture: Sequence[PopulationGenotypeUse]) -> ClinicalDose | None:
    """The IWPC 2009 clinical (genotype-free) warfarin dose when the simulation had no genotype and the
    height is known; race is not in the record, so the algorithm's 'missing or mixed' term is used."""
    if drug.name != "warfarin" or not mixture or covariates.height_cm is None:
        return None
    active = [(m.display or "").lower() for m in (summary.medications if summary else [])
              if (m.status or "active") == "active"]
    amiodarone = any("amiodarone" in name for name in active)
    inducer = any(drug_name in name for name in active for drug_name in _INDUCERS)
    dose = iwpc_clinical_weekly_dose(IwpcClinicalInput(
        age_years=covariates.age_years, height_cm=covariates.height_cm, weight_kg=covariates.weight_kg,
        race=Race.MIXED_OR_MISSING, enzyme_inducer=inducer, amiodarone=amiodarone))
    found = [name for name, taken in (("amiodarone", amiodarone), ("an enzyme inducer", inducer)) if taken]
    medication = (" and ".join(found) if found else "no amiodarone or enzyme inducer") + " in the active medication list"
    basis = (f"age {covariates.age_years:g} y, height {covariates.height_cm:g} cm, weight {covariates.weight_kg:g} kg; "
             f"race not recorded (the algorithm's 'missing or mixed' term); {medication}")
    return ClinicalDose(algorithm=dose.source, weekly_dose_mg=round(dose.weekly_dose_mg, 2),
                        daily_dose_mg=round(dose.daily_dose_mg, 2), basis=basis)
