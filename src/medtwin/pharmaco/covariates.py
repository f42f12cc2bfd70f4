"""Patient covariates and the covariate equations used by population PK models.

* Cockcroft-Gault creatinine clearance: Cockcroft DW, Gault MH. Prediction of creatinine clearance
  from serum creatinine. Nephron 1976;16(1):31-41.
* CKD-EPI 2021 (race-free) eGFR: Inker LA, Eneanya ND, Coresh J, et al. New creatinine- and
  cystatin C-based equations to estimate GFR without race. N Engl J Med 2021;385:1737-1749
  (creatinine equation, Table S? / Methods): 142 x min(Scr/k,1)^a x max(Scr/k,1)^-1.200 x 0.9938^age
  x 1.012 [female]; k = 0.7 (F) / 0.9 (M); a = -0.241 (F) / -0.302 (M).
* Allometric scaling: Holford NHG. A size standard for pharmacokinetics. Clin Pharmacokinet
  1996;30:329-332 (exponent 0.75 for clearances, 1 for volumes, reference 70 kg).
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
from numpy.typing import ArrayLike
from pydantic import BaseModel, ConfigDict, Field, field_validator

from medtwin.arrays import Array
from medtwin.pharmaco.errors import CovariateError

#: physiological ranges accepted for each covariate (inclusive), with unit
PHYSIOLOGICAL_RANGE: dict[str, tuple[float, float, str]] = {
    "age_years": (0.0, 120.0, "years"),
    "weight_kg": (0.5, 350.0, "kg"),
    "height_cm": (40.0, 250.0, "cm"),
    "serum_creatinine_mg_dl": (0.1, 20.0, "mg/dL"),
    "crcl_ml_min": (0.0, 300.0, "mL/min"),
}


class Sex(StrEnum):
    FEMALE = "female"
    MALE = "male"


def check_range(name: str, value: ArrayLike) -> Array:
    """Return ``value`` as an array, raising :class:`CovariateError` naming ``name`` if out of range."""
    low, high, unit = PHYSIOLOGICAL_RANGE[name]
    arr = np.asarray(value, dtype=float)
    bad = ~np.isfinite(arr) | (arr < low) | (arr > high)
    if np.any(bad):
        first = arr.ravel()[np.argmax(bad.ravel())]
        raise CovariateError(name, f"{first} {unit} is outside the physiological range {low}-{high} {unit}")
    return arr


class GeneStatus(BaseModel):
    """A pharmacogene as a drug model may use it: the CPIC phenotype (and activity score) when the gene is
    callable, otherwise why not. A model applies a genotype effect only for a callable gene."""

    model_config = ConfigDict(frozen=True)

    gene: str
    phenotype: str | None = Field(default=None, description="CPIC phenotype term, e.g. 'Poor Metabolizer'.")
    activity_score: float | None = Field(default=None, ge=0, le=10, description="CPIC activity score.")
    callable: bool = True
    reason: str = Field(default="", description="Why the gene is not callable ('' when it is).")
    source: str = Field(default="request", description="Where the value came from, e.g. 'pgx v3' or 'request'.")


class PatientCovariates(BaseModel):
    """The covariates a drug model may use. Values outside physiological ranges are rejected."""

    model_config = ConfigDict(frozen=True)

    age_years: float = Field(description="Age [years].")
    weight_kg: float = Field(description="Total body weight [kg].")
    sex: Sex
    height_cm: float | None = Field(default=None, description="Height [cm].")
    serum_creatinine_mg_dl: float | None = Field(default=None, description="Serum creatinine [mg/dL].")
    dialysis: bool = False
    cyp2c9: str | None = Field(default=None, description="CYP2C9 diplotype, e.g. '*1/*3'.")
    vkorc1: str | None = Field(default=None, description="VKORC1 rs9923231 genotype, e.g. 'G/A'.")
    pharmacogenes: dict[str, GeneStatus] = Field(
        default_factory=dict, description="Pharmacogenes by gene symbol, for the drug models' genotype effects.")

    @field_validator("age_years", "weight_kg", "height_cm", "serum_creatinine_mg_dl")
    @classmethod
    def _in_range(cls, value: float | None, info: object) -> float | None:
        if value is None:
            return None
        name = getattr(info, "field_name", "covariate")
        check_range(str(name), value)
        return value

    @property
    def crcl_ml_min(self) -> float:
        if self.serum_creatinine_mg_dl is None:
            raise CovariateError("serum_creatinine_mg_dl", "needed to compute creatinine clearance")
        return float(
            cockcroft_gault_ml_min(self.age_years, self.weight_kg, self.serum_creatinine_mg_dl, self.sex is Sex.FEMALE)
        )

    def as_arrays(self) -> dict[str, object]:
        values: dict[str, object] = {
            "age_years": np.array([self.age_years]),
            "weight_kg": np.array([self.weight_kg]),
            "dialysis": np.array([1.0 if self.dialysis else 0.0]),
            "sex": [self.sex.value],
        }
        if self.serum_creatinine_mg_dl is not None:
            values["crcl_ml_min"] = np.array([self.crcl_ml_min])
        if self.cyp2c9 is not None:
            values["CYP2C9"] = [self.cyp2c9]
        if self.vkorc1 is not None:
            values["VKORC1"] = [self.vkorc1]
        return values


def cockcroft_gault_ml_min(
    age_years: ArrayLike, weight_kg: ArrayLike, serum_creatinine_mg_dl: ArrayLike, female: ArrayLike
) -> Array:
    """Creatinine clearance [mL/min] = (140 - age) x weight / (72 x Scr) x 0.85 if female."""
    age = check_range("age_years", age_years)
    weight = check_range("weight_kg", weight_kg)
    scr = check_range("serum_creatinine_mg_dl", serum_creatinine_mg_dl)
    factor = np.where(np.asarray(female, dtype=bool), 0.85, 1.0)
    return np.asarray(np.maximum(140.0 - age, 0.0) * weight / (72.0 * scr) * factor, dtype=float)


def ckd_epi_2021_ml_min_173m2(
    serum_creatinine_mg_dl: ArrayLike, age_years: ArrayLike, female: ArrayLike
) -> Array:
    """eGFR [mL/min/1.73 m2], CKD-EPI 2021 creatinine equation without race (Inker 2021)."""
    scr = check_range("serum_creatinine_mg_dl", serum_creatinine_mg_dl)
    age = check_range("age_years", age_years)
    fem = np.asarray(female, dtype=bool)
    kappa = np.where(fem, 0.7, 0.9)
    alpha = np.where(fem, -0.241, -0.302)
    ratio = scr / kappa
    egfr = 142.0 * np.minimum(ratio, 1.0) ** alpha * np.maximum(ratio, 1.0) ** -1.200 * 0.9938**age
    return np.asarray(egfr * np.where(fem, 1.012, 1.0), dtype=float)


def allometric(weight_kg: ArrayLike, exponent: float, reference_kg: float = 70.0) -> Array:
    """Size factor (weight / reference) ** exponent (Holford 1996)."""
    weight = check_range("weight_kg", weight_kg)
    return np.asarray((weight / reference_kg) ** exponent, dtype=float)
