"""Result types of the pharmacogenomic caller (PharmCAT-style fields per gene).

Every field that a confident clinical decision could rest on says how confident it is: ``status`` tells
whether the diplotype was called, is ambiguous, cannot be called, came from an outside call, or had no data;
``phenotype`` is a CPIC term only when ``phenotype_confident`` is true, otherwise ``unknown`` or
``Indeterminate``. Defaults keep reports stored before these fields existed readable.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

UNKNOWN = "unknown"
INDETERMINATE = "Indeterminate"

LEGACY_WARNING = ("called before PharmCAT's full allele definitions were used (14 positions only): not a confident "
                  "call; call the VCF again")

Status = Literal["called", "ambiguous", "not_callable", "outside_call", "no_data"]


class DiplotypeCandidate(BaseModel):
    diplotype: str = Field(description="Star-allele (or named-variant) diplotype, e.g. '*1/*4'.")
    phenotype: str = Field(description="CPIC phenotype of this diplotype, or 'Indeterminate'/'unknown'.")
    activity_score: float | None = Field(default=None, description="CPIC activity score (CYP2C9, CYP2D6, DPYD).")


class VariantCall(BaseModel):
    gene: str
    rsid: str
    chrom: str
    position: int
    ref: str
    alt: str = Field(description="Alternate allele(s) of the definition, comma-separated.")
    genotype: str = Field(description="Genotype in the definition's VCF representation, e.g. 'C/T', or 'unknown'.")
    alt_dosage: int | None
    phased: bool
    phase_set: str | None = None


class GeneResult(BaseModel):
    gene: str
    status: Status = "called"
    diplotype: str = Field(description="Star-allele diplotype when called (or from an outside call), else 'unknown'.")
    alternatives: list[str] = Field(default_factory=list, description="Other diplotypes equally consistent.")
    source_diplotypes: list[str] = Field(
        default_factory=list, description="Diplotypes as matched from the VCF (PharmCAT 'source diplotypes').")
    candidates: list[DiplotypeCandidate] = Field(
        default_factory=list, description="Every diplotype consistent with the data, with its phenotype.")
    activity_score: float | None = None
    phenotype: str = Field(description="CPIC phenotype term when confident, else 'unknown' or 'Indeterminate'.")
    phenotype_confident: bool = False
    phenotype_inferred: bool = Field(
        default=False, description="True when the phenotype is the one all (several) candidates agree on.")
    missing_positions: list[str] = Field(default_factory=list, description="Defining positions absent or no-call.")
    unexplained_positions: list[str] = Field(
        default_factory=list, description="Non-reference genotypes that no candidate allele explains.")
    warnings: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    table_version: str = Field(default="", description="Version and source of the CPIC phenotype table used.")
    definition_version: str = Field(default="", description="Version of the PharmCAT allele definitions used.")

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        """A result stored before the full definitions (no status) is read, but never as a confident call."""
        if isinstance(data, dict) and "status" not in data:
            data = {**data, "status": "no_data" if data.get("diplotype", UNKNOWN) == UNKNOWN else "called",
                    "phenotype_confident": False,
                    "warnings": [*data.get("warnings", []), LEGACY_WARNING]}
        return data


class DrugRecommendation(BaseModel):
    drug: str
    gene: str
    phenotype: str
    recommendation: str
    classification: str
    source: str


class PgxReport(BaseModel):
    sample: str
    assembly: str
    genes: dict[str, GeneResult]
    variants: list[VariantCall]
    recommendations: list[DrugRecommendation]
    definition_version: str = ""
