"""The twin summary: a typed view of a patient built from their FHIR record."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, Self

from pydantic import BaseModel, Field

from medtwin.record.fhirtime import FhirDateError, parse_date, parse_datetime
from medtwin.record.indexing import effective_time, status_of

HEIGHT, WEIGHT, BMI = "8302-2", "29463-7", "39156-5"


class Measurement(BaseModel):
    code: str
    display: str | None = None
    value: float | None = None
    unit: str | None = Field(default=None, description="As recorded: the UCUM code, else the unit's text")
    text: str | None = None
    time: datetime | None = None


class Problem(BaseModel):
    code: str | None
    system: str | None
    display: str | None
    onset: datetime | None = None
    status: str | None = None


class CodedItem(BaseModel):
    """An entry known by one concept: its first coding (``display`` falls back to the concept's text)."""

    code: str | None
    display: str | None

    @classmethod
    def of(cls, concept: Any, **values: Any) -> Self:
        """The item of a FHIR CodeableConcept (or a list of them: the first) and its other fields."""
        coding = _first_coding(concept)
        return cls(code=coding.get("code"), display=coding.get("display"), **values)


class MedicationItem(CodedItem):
    status: str | None
    authored_on: datetime | None = None
    dosage: str | None = None


class AllergyItem(CodedItem):
    category: list[str] = Field(default_factory=list)
    criticality: str | None = None
    recorded: datetime | None = None


class ImmunizationItem(CodedItem):
    date: datetime | None = None


class EncounterItem(BaseModel):
    id: str
    start: datetime | None
    end: datetime | None
    encounter_class: str | None
    type: str | None
    reason: str | None = None


class ImagingItem(BaseModel):
    id: str
    started: datetime | None
    modalities: list[str]
    description: str | None
    series: int
    instances: int


class PatientSummary(BaseModel):
    """What medtwin knows of a patient, at a glance. Times are UTC; units as recorded (UCUM)."""

    patient_id: str
    name: str | None
    gender: str | None
    birth_date: date | None
    age_years: int | None
    deceased: bool = False
    height: Measurement | None = None
    weight: Measurement | None = None
    bmi: Measurement | None = None
    problems: list[Problem] = Field(default_factory=list)
    medications: list[MedicationItem] = Field(default_factory=list)
    allergies: list[AllergyItem] = Field(default_factory=list)
    immunizations: list[ImmunizationItem] = Field(default_factory=list)
    vitals: list[Measurement] = Field(default_factory=list)
    labs: list[Measurement] = Field(default_factory=list)
    encounters: list[EncounterItem] = Field(default_factory=list)
    imaging: list[ImagingItem] = Field(default_factory=list)
    resource_counts: dict[str, int] = Field(default_factory=dict)


def _first_coding(concept: Any) -> dict[str, Any]:
    if isinstance(concept, list):
        concept = concept[0] if concept else {}
    if isinstance(concept, dict):
        codings = concept.get("coding") or []
        if codings and isinstance(codings[0], dict):
            coding = dict(codings[0])
            coding.setdefault("display", concept.get("text"))
            return coding
        if concept.get("text"):
            return {"display": concept["text"]}
    return {}


def _categories(resource: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    for concept in resource.get("category") or []:
        if isinstance(concept, dict):
            out.update(str(c.get("code")) for c in concept.get("coding") or [] if isinstance(c, dict))
    return out


def _name(patient: dict[str, Any]) -> str | None:
    names = [n for n in patient.get("name") or [] if isinstance(n, dict)]
    official = next((n for n in names if n.get("use") == "official"), names[0] if names else None)
    if official is None:
        return None
    if official.get("text"):
        return str(official["text"])
    parts = list(official.get("given") or []) + ([official["family"]] if official.get("family") else [])
    return " ".join(str(p) for p in parts) or None


def age_years(birth: date | None, at: date) -> int | None:
    """Completed years from ``birth`` to ``at`` (None without a birth date)."""
    if birth is None:
        return None
    return at.year - birth.year - ((at.month, at.day) < (birth.month, birth.day))


def _measurements(observation: dict[str, Any], when: datetime | None) -> list[Measurement]:
    out: list[Measurement] = []
    holders = [(observation.get("code"), observation)] if any(k.startswith("value") for k in observation) else []
    holders += [(c.get("code"), c) for c in observation.get("component") or [] if isinstance(c, dict)]
    for concept, holder in holders:
        coding = _first_coding(concept)
        if not coding.get("code"):
            continue
        item = Measurement(code=str(coding["code"]), display=coding.get("display"), time=when)
        quantity = holder.get("valueQuantity")
        if isinstance(quantity, dict) and isinstance(quantity.get("value"), int | float):
            item.value = float(quantity["value"])
            item.unit = quantity.get("code") or quantity.get("unit")
        elif isinstance(holder.get("valueCodeableConcept"), dict):
            item.text = _first_coding(holder["valueCodeableConcept"]).get("display")
        elif "valueString" in holder:
            item.text = str(holder["valueString"])
        out.append(item)
    return out


def _life_dates(patient: dict[str, Any] | None) -> tuple[date | None, bool, date | None]:
    """(birth date, deceased, date of death) of a Patient resource; unreadable dates are None."""
    if patient is None:
        return None, False, None
    birth: date | None = None
    deceased_at: date | None = None
    try:
        birth = parse_date(patient["birthDate"]) if isinstance(patient.get("birthDate"), str) else None
    except FhirDateError:
        birth = None
    if isinstance(patient.get("deceasedDateTime"), str):
        try:
            deceased_at = parse_date(patient["deceasedDateTime"])
        except FhirDateError:
            deceased_at = None
        return birth, True, deceased_at
    return birth, patient.get("deceasedBoolean") is True, None


def _keep_latest(resource: dict[str, Any], start: datetime | None, vitals: dict[str, Measurement],
                 labs: dict[str, Measurement], oldest: datetime) -> None:
    """Fold an Observation's measurements into the latest vital signs or labs by code."""
    if resource.get("status") in ("entered-in-error", "cancelled"):
        return
    categories = _categories(resource)
    target = vitals if "vital-signs" in categories else labs if "laboratory" in categories else None
    if target is None:
        return
    for item in _measurements(resource, start):
        previous = target.get(item.code)
        if previous is None or (item.time or oldest) >= (previous.time or oldest):
            target[item.code] = item


def _condition(summary: PatientSummary, resource: dict[str, Any], start: datetime | None,
               end: datetime | None) -> None:
    status = status_of(resource)
    verification = _first_coding(resource.get("verificationStatus")).get("code")
    if status in ("active", "recurrence", "relapse") and verification not in ("refuted", "entered-in-error"):
        coding = _first_coding(resource.get("code"))
        summary.problems.append(Problem(code=coding.get("code"), system=coding.get("system"),
                                        display=coding.get("display"), onset=start, status=status))


def _medication(summary: PatientSummary, resource: dict[str, Any], start: datetime | None,
                end: datetime | None) -> None:
    if resource.get("status") == "active":
        dosage = next((d.get("text") for d in resource.get("dosageInstruction") or []
                       if isinstance(d, dict) and d.get("text")), None)
        summary.medications.append(MedicationItem.of(resource.get("medicationCodeableConcept"), status="active",
                                                     authored_on=start, dosage=dosage))


def _allergy(summary: PatientSummary, resource: dict[str, Any], start: datetime | None,
             end: datetime | None) -> None:
    if status_of(resource) in (None, "active"):
        summary.allergies.append(AllergyItem.of(
            resource.get("code"), category=[str(c) for c in resource.get("category") or []],
            criticality=resource.get("criticality"), recorded=start))


def _immunization(summary: PatientSummary, resource: dict[str, Any], start: datetime | None,
                  end: datetime | None) -> None:
    if resource.get("status") == "completed":
        summary.immunizations.append(ImmunizationItem.of(resource.get("vaccineCode"), date=start))


def _encounter(summary: PatientSummary, resource: dict[str, Any], start: datetime | None,
               end: datetime | None) -> None:
    reason = _first_coding(resource.get("reasonCode")).get("display")
    summary.encounters.append(EncounterItem(
        id=str(resource.get("id")), start=start, end=end,
        encounter_class=(resource.get("class") or {}).get("code") if isinstance(resource.get("class"), dict)
        else None,
        type=_first_coding(resource.get("type")).get("display"), reason=reason))


def _imaging(summary: PatientSummary, resource: dict[str, Any], start: datetime | None,
             end: datetime | None) -> None:
    series = [s for s in resource.get("series") or [] if isinstance(s, dict)]
    modalities = sorted({str(s["modality"].get("code")) for s in series
                         if isinstance(s.get("modality"), dict) and s["modality"].get("code")})
    summary.imaging.append(ImagingItem(
        id=str(resource.get("id")), started=start, modalities=modalities,
        description=resource.get("description") or _first_coding(resource.get("procedureCode")).get("display"),
        series=len(series), instances=sum(len(s.get("instance") or []) for s in series)))


_ITEMS: dict[str, Callable[[PatientSummary, dict[str, Any], datetime | None, datetime | None], None]] = {
    "Condition": _condition, "MedicationRequest": _medication, "AllergyIntolerance": _allergy,
    "Immunization": _immunization, "Encounter": _encounter, "ImagingStudy": _imaging,
}


def build_summary(patient_id: str, resources: list[dict[str, Any]], *, now: datetime) -> PatientSummary:
    """Build the summary of one patient from all their resources (any order)."""
    patient = next((r for r in resources if r.get("resourceType") == "Patient" and r.get("id") == patient_id), None)
    birth, deceased, deceased_at = _life_dates(patient)
    summary = PatientSummary(
        patient_id=patient_id,
        name=_name(patient) if patient else None,
        gender=patient.get("gender") if patient else None,
        birth_date=birth,
        age_years=age_years(birth, deceased_at or now.date()),
        deceased=deceased,
        resource_counts=dict(sorted(Counter(str(r.get("resourceType")) for r in resources).items())),
    )
    oldest = datetime.min.replace(tzinfo=now.tzinfo)
    latest_vitals: dict[str, Measurement] = {}
    latest_labs: dict[str, Measurement] = {}
    for resource in resources:
        rtype = resource.get("resourceType")
        start, end = effective_time(resource)
        if rtype == "Observation":
            _keep_latest(resource, start, latest_vitals, latest_labs, oldest)
        elif isinstance(rtype, str) and rtype in _ITEMS:
            _ITEMS[rtype](summary, resource, start, end)
    summary.vitals = sorted(latest_vitals.values(), key=lambda m: m.code)
    summary.labs = sorted(latest_labs.values(), key=lambda m: m.code)
    summary.height = latest_vitals.get(HEIGHT)
    summary.weight = latest_vitals.get(WEIGHT)
    summary.bmi = latest_vitals.get(BMI)
    summary.problems.sort(key=lambda p: p.onset or oldest, reverse=True)
    summary.medications.sort(key=lambda m: m.authored_on or oldest, reverse=True)
    summary.immunizations.sort(key=lambda i: i.date or oldest, reverse=True)
    summary.encounters.sort(key=lambda e: e.start or oldest, reverse=True)
    summary.imaging.sort(key=lambda i: i.started or oldest, reverse=True)
    return summary


def parse_instant(text: str) -> datetime:
    return parse_datetime(text)
