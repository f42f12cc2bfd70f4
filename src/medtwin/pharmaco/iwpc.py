"""IWPC 2009 warfarin dosing algorithms: pharmacogenetic (coefficients in ``data/pgx/iwpc_2009.csv``) and
clinical, for a patient without a genotype (``data/drugs/iwpc_2009_clinical.csv``).

International Warfarin Pharmacogenetics Consortium. Estimation of the warfarin dose with clinical and
pharmacogenetic data. N Engl J Med 2009;360:753-764 (Supplementary Appendix). Both predict the
square root of the weekly dose; age enters in decades (floor(age / 10), as the IWPC data coded it).
"""

from __future__ import annotations

import csv
import io
import math
from enum import StrEnum
from functools import cache
from importlib import resources

from pydantic import BaseModel, Field, field_validator

from medtwin.pharmaco.covariates import check_range
from medtwin.pharmaco.errors import GenotypeError


class Race(StrEnum):
    WHITE = "white"
    ASIAN = "asian"
    BLACK = "black"
    MIXED_OR_MISSING = "mixed_or_missing"


_VKORC1_TERM = {"G/G": None, "G/A": "vkorc1_ag", "A/G": "vkorc1_ag", "A/A": "vkorc1_aa", "unknown": "vkorc1_unknown"}
_CYP2C9_TERM = {"*1/*1": None, "*1/*2": "cyp2c9_12", "*1/*3": "cyp2c9_13", "*2/*2": "cyp2c9_22",
                "*2/*3": "cyp2c9_23", "*3/*3": "cyp2c9_33", "unknown": "cyp2c9_unknown"}
_RACE_TERM = {Race.WHITE: None, Race.ASIAN: "race_asian", Race.BLACK: "race_black",
              Race.MIXED_OR_MISSING: "race_missing_or_mixed"}


PHARMACOGENETIC = "IWPC 2009 pharmacogenetic algorithm (N Engl J Med 2009;360:753-764)"
CLINICAL = "IWPC 2009 clinical algorithm, no genotype (N Engl J Med 2009;360:753-764)"


@cache
def _table(path: str) -> dict[str, float]:
    text = resources.files("medtwin.pharmaco").joinpath(path).read_text(encoding="utf-8")
    return {r["term"]: float(r["coefficient"]) for r in csv.DictReader(io.StringIO(text))}


def coefficients() -> dict[str, float]:
    """The pharmacogenetic algorithm's coefficients."""
    return _table("data/pgx/iwpc_2009.csv")


def clinical_coefficients() -> dict[str, float]:
    """The clinical (genotype-free) algorithm's coefficients."""
    return _table("data/drugs/iwpc_2009_clinical.csv")


class IwpcClinicalInput(BaseModel):
    age_years: float
    height_cm: float
    weight_kg: float
    race: Race = Race.WHITE
    enzyme_inducer: bool = Field(default=False, description="Carbamazepine, phenytoin, rifampin or rifampicin.")
    amiodarone: bool = False

    @field_validator("age_years", "height_cm", "weight_kg")
    @classmethod
    def _in_range(cls, value: float, info: object) -> float:
        check_range(str(getattr(info, "field_name", "covariate")), value)
        return value


class IwpcInput(IwpcClinicalInput):
    vkorc1: str = Field(description="rs9923231 genotype: 'G/G', 'G/A', 'A/A' or 'unknown'.")
    cyp2c9: str = Field(description="CYP2C9 diplotype (*1, *2, *3) or 'unknown'.")

    @field_validator("cyp2c9")
    @classmethod
    def _known_cyp2c9(cls, value: str) -> str:
        parts = value.split("/")
        if value != "unknown" and len(parts) == 2:
            value = "/".join(sorted(p.strip() for p in parts))
        if value not in _CYP2C9_TERM:
            raise GenotypeError("cyp2c9", f"{value!r} is not one of {', '.join(_CYP2C9_TERM)}")
        return value

    @field_validator("vkorc1")
    @classmethod
    def _known_vkorc1(cls, value: str) -> str:
        if value not in _VKORC1_TERM:
            raise GenotypeError("vkorc1", f"{value!r} is not one of {', '.join(_VKORC1_TERM)}")
        return value


class IwpcDose(BaseModel):
    weekly_dose_mg: float
    daily_dose_mg: float
    sqrt_weekly_dose: float
    terms: dict[str, float] = Field(description="Contribution of every term to sqrt(weekly dose).")
    source: str = PHARMACOGENETIC


def _dose(c: dict[str, float], patient: IwpcClinicalInput, genotype_terms: tuple[str | None, ...],
          source: str) -> IwpcDose:
    terms = {
        "intercept": c["intercept"],
        "age_decades": c["age_decades"] * math.floor(patient.age_years / 10.0),
        "height_cm": c["height_cm"] * patient.height_cm,
        "weight_kg": c["weight_kg"] * patient.weight_kg,
    }
    for name in (*genotype_terms, _RACE_TERM[patient.race]):
        if name is not None:
            terms[name] = c[name]
    if patient.enzyme_inducer:
        terms["enzyme_inducer"] = c["enzyme_inducer"]
    if patient.amiodarone:
        terms["amiodarone"] = c["amiodarone"]
    root = sum(terms.values())
    weekly = max(root, 0.0) ** 2
    return IwpcDose(weekly_dose_mg=weekly, daily_dose_mg=weekly / 7.0, sqrt_weekly_dose=root, terms=terms,
                    source=source)


def iwpc_weekly_dose(patient: IwpcInput) -> IwpcDose:
    """The pharmacogenetic algorithm (a genotype may be 'unknown', which has its own coefficient)."""
    return _dose(coefficients(), patient, (_VKORC1_TERM[patient.vkorc1], _CYP2C9_TERM[patient.cyp2c9]),
                 PHARMACOGENETIC)


def iwpc_clinical_weekly_dose(patient: IwpcClinicalInput) -> IwpcDose:
    """The clinical algorithm: age, height, weight, race, enzyme inducer, amiodarone; no genotype."""
    return _dose(clinical_coefficients(), patient, (), CLINICAL)
