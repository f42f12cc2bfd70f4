"""eGFR calculated from serum creatinine by the race-free CKD-EPI 2021 equation (Inker et al., NEJM 2021;
385:1737-49), the one definition the kidney panel, the API and the report use.

The coefficients and the citation are data (``vocab/data/ckd_epi_2021.toml``). A calculated eGFR is never a
measurement: every value carries :data:`EGFR_LABEL` ("calculated (CKD-EPI 2021)") and the creatinine reading
it came from. When the data cannot support it the answer is "not callable" with the reason (age or sex
unknown, a patient under 18 at the reading, a creatinine unit that is not a concentration), never a number.
Arrays in, arrays out (:func:`ckd_epi_2021`): a patient's history or a population in one call.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from datetime import date, datetime
from functools import lru_cache
from importlib import resources
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field

from medtwin.vocab.display import display_unit

__all__ = ["CREATININE_LOINC", "EGFR_LABEL", "EGFR_LOINC", "EGFR_UNIT", "CreatinineReading", "EgfrCall",
           "EgfrSeries", "ckd_epi_2021", "ckd_epi_2021_reference", "creatinine_mg_dl", "egfr_from_creatinine"]

CKD_EPI_FILE: Final = "ckd_epi_2021.toml"
#: LOINC codes of creatinine in serum/plasma/blood the calculation reads: 2160-0 (mass, mg/dL),
#: 38483-4 (mass, in blood), 14682-9 (moles, umol/L); each value is converted by its own unit
CREATININE_LOINC: Final = ("2160-0", "38483-4", "14682-9")
#: LOINC codes of a reported (measured or lab-calculated) eGFR: CKD-EPI 2021, CKD-EPI, MDRD
EGFR_LOINC: Final = ("98979-8", "62238-1", "33914-3")


@lru_cache(maxsize=1)
def _raw() -> dict[str, Any]:
    return tomllib.loads(resources.files("medtwin.vocab").joinpath("data", CKD_EPI_FILE).read_text(encoding="utf-8"))


EGFR_LABEL: Final[str] = str(_raw()["label"])
EGFR_UNIT: Final[str] = str(_raw()["unit"])


def ckd_epi_2021_reference() -> str:
    """The citation of the coefficients (shown with every calculated value's method)."""
    return str(_raw()["source"])


def ckd_epi_2021(creatinine_mg_dl: npt.ArrayLike, age_years: npt.ArrayLike, female: npt.ArrayLike
                 ) -> npt.NDArray[np.float64]:
    """eGFR (mL/min/1.73 m2) by CKD-EPI 2021, elementwise over broadcast arrays: ``142 x min(Scr/k, 1)^a x
    max(Scr/k, 1)^-1.200 x 0.9938^age [x 1.012 if female]``. Adults only: checking the age is the caller's
    (:func:`egfr_from_creatinine` says "not callable" below 18); a creatinine <= 0 is a ValueError."""
    raw = _raw()
    scr = np.asarray(creatinine_mg_dl, dtype=np.float64)
    age = np.asarray(age_years, dtype=np.float64)
    is_female = np.asarray(female, dtype=bool)
    if np.any(~(scr > 0)):
        raise ValueError("creatinine_mg_dl: must be > 0")
    f, m = raw["female"], raw["male"]
    kappa = np.where(is_female, f["kappa_mg_dl"], m["kappa_mg_dl"])
    alpha = np.where(is_female, f["alpha"], m["alpha"])
    factor = np.where(is_female, f["factor"], m["factor"])
    ratio = scr / kappa
    out = (raw["multiplier"] * np.minimum(ratio, 1.0) ** alpha * np.maximum(ratio, 1.0) ** raw["exponent_above_knee"]
           * raw["age_base"] ** age * factor)
    return np.asarray(out, dtype=np.float64)


def creatinine_mg_dl(value: float, unit: str | None) -> float:
    """A creatinine concentration in mg/dL from ``value`` in ``unit`` (UCUM: mg/dL, mg/L, umol/L, mmol/L;
    "µmol/L" read as umol/L). ValueError naming the unit for any other."""
    table = _raw()["creatinine"]
    code = (unit or "").strip().replace("\u00b5", "u").replace("\u03bc", "u")
    if code in table["mass_units"]:
        return float(value) * float(table["mass_units"][code])
    if code in table["molar_units"]:
        return float(value) * float(table["molar_units"][code]) / float(table["umol_l_per_mg_dl"])
    raise ValueError(f"creatinine unit {unit!r}: not a concentration this calculation reads "
                     f"({', '.join([*table['mass_units'], *table['molar_units']])})")


class CreatinineReading(BaseModel):
    """One creatinine result as recorded."""

    time: datetime
    value: float
    unit: str | None
    code: str = Field(description="LOINC code of the creatinine observation")


class EgfrCall(BaseModel):
    """The eGFR calculated from one creatinine reading, or why it is not callable."""

    time: datetime = Field(description="time of the creatinine reading it is calculated from")
    egfr_ml_min_1_73m2: float | None = Field(description="None: not callable (see not_callable)")
    not_callable: str | None = Field(default=None, description="why no value: the data cannot support one")
    creatinine_mg_dl: float | None = None
    creatinine: str = Field(description="the reading as people read it, e.g. '115 \u00b5mol/L'")
    creatinine_code: str = Field(description="LOINC code of the creatinine observation")
    age_years: int | None = None
    sex: str | None = None


class EgfrSeries(BaseModel):
    """A patient's calculated eGFR, oldest first: always labelled as calculated, with method and source."""

    label: str = EGFR_LABEL
    method: str = Field(default_factory=lambda: str(_raw()["method"]))
    unit: str = EGFR_UNIT
    loinc: str = Field(default_factory=lambda: str(_raw()["loinc"]), description="the LOINC code of such a value")
    source: str = Field(default_factory=ckd_epi_2021_reference)
    calls: list[EgfrCall] = Field(default_factory=list)

    @property
    def latest(self) -> EgfrCall | None:
        return self.calls[-1] if self.calls else None


def _age(birth: date, at: date) -> int:
    return at.year - birth.year - ((at.month, at.day) < (birth.month, birth.day))


def _blocker(birth_date: date | None, sex: str | None, age: int | None) -> str | None:
    """Why no eGFR can be calculated for this patient at this reading (None: callable)."""
    if birth_date is None:
        return "age unknown (no birth date in the record): CKD-EPI 2021 needs the age at the reading"
    if sex not in ("female", "male"):
        return (f"sex {'unknown' if not sex else repr(sex)} in the record: CKD-EPI 2021 has female and male "
                "coefficients")
    if age is None or age < int(_raw()["min_age_years"]):
        return (f"aged {age} at the reading: CKD-EPI 2021 is for adults (>= {_raw()['min_age_years']} y); "
                "a child needs a paediatric equation")
    return None


def egfr_from_creatinine(readings: Sequence[CreatinineReading], *, birth_date: date | None,
                         sex: str | None) -> EgfrSeries:
    """The eGFR of each creatinine reading (oldest first) for a patient born ``birth_date`` of administrative
    ``sex`` (FHIR Patient.gender): a value, or "not callable" with the reason. One vectorised call."""
    ordered = sorted(readings, key=lambda r: r.time)
    calls: list[EgfrCall] = []
    todo: list[tuple[int, float, int]] = []  # (index in calls, creatinine mg/dL, age) of the callable ones
    for reading in ordered:
        age = _age(birth_date, reading.time.date()) if birth_date is not None else None
        shown = f"{reading.value:g} {display_unit(reading.unit)}".strip()
        reason = _blocker(birth_date, sex, age)
        mg_dl = None
        if reason is None:
            try:
                mg_dl = creatinine_mg_dl(reading.value, reading.unit)
            except ValueError as error:
                reason = str(error)
            else:
                if not mg_dl > 0:
                    reason, mg_dl = f"creatinine {reading.value:g}: not a positive concentration", None
        calls.append(EgfrCall(time=reading.time, egfr_ml_min_1_73m2=None, not_callable=reason, creatinine=shown,
                              creatinine_code=reading.code, creatinine_mg_dl=mg_dl, age_years=age, sex=sex))
        if reason is None and mg_dl is not None and age is not None:
            todo.append((len(calls) - 1, mg_dl, age))
    if todo:
        values = ckd_epi_2021([t[1] for t in todo], [t[2] for t in todo], [sex == "female"] * len(todo))
        for (i, _, _), value in zip(todo, values.tolist(), strict=True):
            calls[i] = calls[i].model_copy(update={"egfr_ml_min_1_73m2": float(value)})
    return EgfrSeries(calls=calls)
