"""Deterministic synthetic FHIR R4 patients (transaction bundles) for demos and tests.

Each patient follows an archetype from ``data/archetypes.toml`` (type 1 diabetes, essential hypertension,
atrial fibrillation on warfarin, a healthy adult, an older adult with CKD), cycled in that order. Everything
is derived from the seed: entry UUIDs (``uuid5`` of seed, patient index and a per-bundle counter) and values
(``random.Random`` per patient). Without ``now`` the reference date is ``REFERENCE_DATE``, so the same seed
gives byte-identical JSON.
"""

from __future__ import annotations

import json
import random
import tomllib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from medtwin.vocab.systems import LOINC, SNOMED_CT, UCUM

__all__ = [
    "ARCHETYPES",
    "REFERENCE_DATE",
    "archetype_entries",
    "archetype_keys",
    "ckd_epi_2021",
    "generate_bundles",
    "write_bundles",
]

REFERENCE_DATE = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:medtwin:synthetic")  # fixed namespace for synthetic ids

SNOMED = SNOMED_CT
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
COND_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
COND_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
COND_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
MRN_SYSTEM = "urn:medtwin:mrn"
SSN_SYSTEM = "http://hl7.org/fhir/sid/us-ssn"


@lru_cache(maxsize=1)
def _config() -> Mapping[str, Any]:
    text = (
        resources.files("medtwin.synthetic").joinpath("data", "archetypes.toml").read_text(encoding="utf-8")
    )
    return tomllib.loads(text)


def archetype_entries() -> list[dict[str, Any]]:
    """The archetypes of ``data/archetypes.toml`` (key, vitals, labs, ...), in file order."""
    return list(_config()["archetype"])


def archetype_keys() -> tuple[str, ...]:
    """Archetype keys in the order patients cycle through them."""
    return tuple(a["key"] for a in archetype_entries())


ARCHETYPES: tuple[str, ...] = (
    "type1_diabetes",
    "essential_hypertension",
    "atrial_fibrillation",
    "healthy_adult",
    "chronic_kidney_disease",
)


def ckd_epi_2021(creatinine_mg_dl: float, age_years: float, female: bool) -> float:
    """eGFR [mL/min/{1.73_m2}] by the race-free CKD-EPI 2021 creatinine equation (Inker et al., NEJM 2021)."""
    kappa, alpha = (0.7, -0.241) if female else (0.9, -0.302)
    ratio = creatinine_mg_dl / kappa
    egfr = 142.0 * min(ratio, 1.0) ** alpha * max(ratio, 1.0) ** -1.200 * 0.9938**age_years
    return float(egfr * 1.012 if female else egfr)


# --------------------------------------------------------------------------------------------------


@dataclass
class _Builder:
    """Accumulates the entries of one bundle; ids come from (seed, patient index, counter)."""

    seed: int
    index: int
    entries: list[dict[str, Any]] = field(default_factory=list)
    counter: int = 0

    def new_id(self) -> str:
        self.counter += 1
        return str(uuid.uuid5(_NAMESPACE, f"medtwin-synthetic/{self.seed}/{self.index}/{self.counter}"))

    def add(self, resource: dict[str, Any]) -> str:
        rid = self.new_id()
        resource = {"resourceType": resource["resourceType"], "id": rid, **resource}
        url = f"urn:uuid:{rid}"
        self.entries.append(
            {
                "fullUrl": url,
                "resource": resource,
                "request": {"method": "POST", "url": resource["resourceType"]},
            }
        )
        return url


def _address(line: str, city: str, state: str, postal: str) -> list[dict[str, Any]]:
    """A one-line US postal address (FHIR ``address``)."""
    return [{"line": [line], "city": city, "state": state, "postalCode": postal, "country": "US"}]


def _cc(system: str, code: str, display: str, text: str | None = None) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": text or display}


def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _clip(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def _round(value: float, decimals: int) -> float | int:
    return int(round(value)) if decimals == 0 else round(value, decimals)


def _quantity(value: float, unit: str, display_unit: str | None = None) -> dict[str, Any]:
    return {"value": value, "unit": display_unit or unit, "system": UCUM, "code": unit}


def _birth_date(now: datetime, age_years: int, rng: random.Random) -> date:
    return (now - timedelta(days=int(age_years * 365.25) + rng.randrange(0, 300))).date()


def _age_at(birth: date, moment: datetime) -> float:
    return (moment.date() - birth).days / 365.25


class _PatientGenerator:
    def __init__(self, seed: int, index: int, archetype: Mapping[str, Any], now: datetime) -> None:
        self.a = archetype
        self.now = now
        self.rng = random.Random(seed * 1_000_003 + index)
        self.b = _Builder(seed, index)
        self.index = index
        self.female = archetype["gender"] == "female"

    # ---------------------------------------------------------------- actors
    def organization(self) -> str:
        names = _config()["names"]
        city, state, postal = names["cities"][self.index % len(names["cities"])]
        return self.b.add(
            {
                "resourceType": "Organization",
                "identifier": [{"system": "urn:medtwin:organization", "value": f"ORG-{self.index:04d}"}],
                "active": True,
                "type": [
                    _cc(
                        "http://terminology.hl7.org/CodeSystem/organization-type",
                        "prov",
                        "Healthcare Provider",
                    )
                ],
                "name": f"{city} Community Health Center",
                "address": _address("1 Clinic Way", city, state, postal),
            }
        )

    def practitioner(self) -> str:
        names = _config()["names"]
        rng = self.rng
        female = rng.random() < 0.5
        given = rng.choice(names["female_given"] if female else names["male_given"])
        family = rng.choice(names["family"])
        return self.b.add(
            {
                "resourceType": "Practitioner",
                "identifier": [{"system": "urn:medtwin:practitioner", "value": f"PR-{self.index:04d}"}],
                "active": True,
                "name": [{"use": "official", "family": family, "given": [given], "prefix": ["Dr."]}],
                "gender": "female" if female else "male",
            }
        )

    def patient(self) -> tuple[str, date]:
        names = _config()["names"]
        rng = self.rng
        given = rng.choice(names["female_given"] if self.female else names["male_given"])
        family = rng.choice(names["family"])
        city, state, postal = rng.choice(names["cities"])
        birth = _birth_date(self.now, self.a["age_years"], rng)
        mrn = f"MT{self.index:03d}{rng.randrange(10_000, 100_000)}"
        ssn = f"999-{rng.randrange(10, 100)}-{rng.randrange(1000, 10_000)}"
        url = self.b.add(
            {
                "resourceType": "Patient",
                "identifier": [
                    {
                        "use": "usual",
                        "type": _cc(V2_0203, "MR", "Medical Record Number"),
                        "system": MRN_SYSTEM,
                        "value": mrn,
                    },
                    {
                        "type": _cc(V2_0203, "SS", "Social Security number"),
                        "system": SSN_SYSTEM,
                        "value": ssn,
                    },
                ],
                "active": True,
                "name": [{"use": "official", "family": family, "given": [given]}],
                "telecom": [
                    {
                        "system": "phone",
                        "value": f"555-{rng.randrange(100, 1000)}-{rng.randrange(1000, 10_000)}",
                        "use": "home",
                    }
                ],
                "gender": self.a["gender"],
                "birthDate": birth.isoformat(),
                "address": _address(f"{rng.randrange(1, 999)} {rng.choice(names['streets'])}", city, state, postal),
            }
        )
        return url, birth

    # ---------------------------------------------------------------- clinical content
    def visit_times(self) -> list[datetime]:
        interval = int(self.a["visit_interval_days"])
        start = self.now - timedelta(days=730)
        times: list[datetime] = []
        t = start + timedelta(days=self.rng.randrange(0, 14))
        while t < self.now - timedelta(days=1):
            hour = self.rng.randrange(8, 17)
            times.append(
                t.replace(hour=hour, minute=self.rng.choice((0, 15, 30, 45)), second=0, microsecond=0)
            )
            t += timedelta(days=interval + self.rng.randrange(-5, 6))
        return times

    def encounter(
        self,
        patient: str,
        practitioner: str,
        org: str,
        start: datetime,
        *,
        inpatient: bool = False,
        days: int = 0,
    ) -> str:
        if inpatient:
            cls = {"system": ACT_CODE, "code": "IMP", "display": "inpatient encounter"}
            kind = _cc(SNOMED, "32485007", "Hospital admission (procedure)")
            end = start + timedelta(days=days)
        else:
            cls = {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"}
            kind = _cc(SNOMED, "185349003", "Encounter for check up (procedure)")
            end = start + timedelta(minutes=30)
        return self.b.add(
            {
                "resourceType": "Encounter",
                "status": "finished",
                "class": cls,
                "type": [kind],
                "subject": {"reference": patient},
                "participant": [{"individual": {"reference": practitioner}}],
                "period": {"start": _ts(start), "end": _ts(end)},
                "serviceProvider": {"reference": org},
            }
        )

    def observation(
        self,
        patient: str,
        encounter: str,
        when: datetime,
        category: str,
        code: str,
        display: str,
        value: float | None = None,
        unit: str | None = None,
        components: Sequence[tuple[str, str, float, str]] = (),
    ) -> str:
        resource: dict[str, Any] = {
            "resourceType": "Observation",
            "status": "final",
            "category": [
                _cc(OBS_CATEGORY, category, "Vital Signs" if category == "vital-signs" else "Laboratory")
            ],
            "code": _cc(LOINC, code, display),
            "subject": {"reference": patient},
            "encounter": {"reference": encounter},
            "effectiveDateTime": _ts(when),
            "issued": _ts(when + timedelta(minutes=5 if category == "vital-signs" else 240)),
        }
        if value is not None and unit is not None:
            resource["valueQuantity"] = _quantity(value, unit)
        if components:
            resource["component"] = [
                {"code": _cc(LOINC, c_code, c_display), "valueQuantity": _quantity(c_value, c_unit)}
                for c_code, c_display, c_value, c_unit in components
            ]
        return self.b.add(resource)

    def vitals(self, patient: str, encounter: str, when: datetime, years_in: float, treated: float) -> None:
        a, rng, v = self.a, self.rng, self.a["vitals"]
        height = round(float(a["height_cm"]) + rng.gauss(0.0, 0.3), 1)
        weight = round(
            float(a["weight_kg"]) + float(a["weight_trend_kg_per_year"]) * years_in + rng.gauss(0.0, 0.6), 1
        )
        bmi = round(weight / (height / 100.0) ** 2, 1)
        drop = a.get("treated_bp_drop", {"systolic": 0, "diastolic": 0})
        systolic = round(_clip(v["systolic"] - drop["systolic"] * treated + rng.gauss(0, 5), 90, 190))
        diastolic = round(
            _clip(v["diastolic"] - drop["diastolic"] * treated + rng.gauss(0, 4), 50, min(120, systolic - 20))
        )
        hr = round(_clip(v["heart_rate"] + rng.gauss(0, float(a.get("heart_rate_sd", 4.0))), 45, 140))
        rr = round(_clip(v["respiratory_rate"] + rng.gauss(0, 1), 10, 24))
        spo2 = round(_clip(v["spo2"] + rng.gauss(0, 0.8), 90, 100))
        temp = round(_clip(v["temperature"] + rng.gauss(0, 0.2), 35.8, 37.6), 1)
        vs = "vital-signs"
        self.observation(patient, encounter, when, vs, "8302-2", "Body height", height, "cm")
        self.observation(patient, encounter, when, vs, "29463-7", "Body weight", weight, "kg")
        self.observation(
            patient, encounter, when, vs, "39156-5", "Body mass index (BMI) [Ratio]", bmi, "kg/m2"
        )
        self.observation(patient, encounter, when, vs, "8867-4", "Heart rate", hr, "/min")
        self.observation(patient, encounter, when, vs, "9279-1", "Respiratory rate", rr, "/min")
        self.observation(
            patient,
            encounter,
            when,
            vs,
            "59408-5",
            "Oxygen saturation in Arterial blood by Pulse oximetry",
            spo2,
            "%",
        )
        self.observation(patient, encounter, when, vs, "8310-5", "Body temperature", temp, "Cel")
        self.observation(
            patient,
            encounter,
            when,
            vs,
            "85354-9",
            "Blood pressure panel with all children optional",
            components=(
                ("8480-6", "Systolic blood pressure", systolic, "mm[Hg]"),
                ("8462-4", "Diastolic blood pressure", diastolic, "mm[Hg]"),
            ),
        )

    def labs(self, patient: str, encounter: str, when: datetime, visit: int, birth: date) -> None:
        rng = self.rng
        lab_time = when + timedelta(minutes=20)
        for lab in self.a["labs"]:
            if visit % int(lab["every"]):
                continue
            value = _clip(
                rng.gauss(float(lab["mean"]), float(lab["sd"])), float(lab["low"]), float(lab["high"])
            )
            rounded = _round(value, int(lab["decimals"]))
            self.observation(
                patient, encounter, lab_time, "laboratory", lab["loinc"], lab["display"], rounded, lab["unit"]
            )
            if lab["loinc"] == "2160-0" and self.a.get("egfr_from_creatinine", False):
                egfr = round(ckd_epi_2021(float(rounded), _age_at(birth, when), self.female))
                self.observation(
                    patient,
                    encounter,
                    lab_time,
                    "laboratory",
                    "98979-8",
                    "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, Plasma or Blood "
                    "by Creatinine-based formula (CKD-EPI 2021)",
                    egfr,
                    "mL/min/{1.73_m2}",
                )

    def condition(self, patient: str, encounter: str, spec: Mapping[str, Any], recorded: datetime) -> None:
        onset = self.now - timedelta(
            days=int(float(spec["onset_years_ago"]) * 365.25) + self.rng.randrange(0, 60)
        )
        resolved = spec["status"] == "resolved"
        if resolved:  # acute episodes are recorded at the encounter where they started
            onset = recorded - timedelta(days=self.rng.randrange(1, 5))
        resource: dict[str, Any] = {
            "resourceType": "Condition",
            "clinicalStatus": _cc(COND_CLINICAL, spec["status"], spec["status"].capitalize()),
            "verificationStatus": _cc(COND_VERIFICATION, "confirmed", "Confirmed"),
            "category": [_cc(COND_CATEGORY, "encounter-diagnosis", "Encounter Diagnosis")],
            "code": _cc(SNOMED, spec["code"], spec["display"]),
            "subject": {"reference": patient},
            "encounter": {"reference": encounter},
            "onsetDateTime": _ts(min(onset, recorded)),
            "recordedDate": _ts(recorded),
        }
        if resolved:
            resource["abatementDateTime"] = _ts(recorded + timedelta(days=10 + self.rng.randrange(0, 10)))
        self.b.add(resource)

    def medication(
        self, patient: str, encounter: str, practitioner: str, spec: Mapping[str, Any], authored: datetime
    ) -> None:
        self.b.add(
            {
                "resourceType": "MedicationRequest",
                "status": spec["status"],
                "intent": "order",
                "medicationCodeableConcept": _cc(RXNORM, spec["code"], spec["display"]),
                "subject": {"reference": patient},
                "encounter": {"reference": encounter},
                "authoredOn": _ts(authored),
                "requester": {"reference": practitioner},
                "dosageInstruction": [{"sequence": 1, "text": spec["dosage"]}],
            }
        )

    def allergy(self, patient: str, encounter: str, when: datetime) -> None:
        self.b.add(
            {
                "resourceType": "AllergyIntolerance",
                "clinicalStatus": _cc(ALLERGY_CLINICAL, "active", "Active"),
                "verificationStatus": _cc(ALLERGY_VERIFICATION, "confirmed", "Confirmed"),
                "type": "allergy",
                "category": ["medication"],
                "criticality": "low",
                "code": {
                    "coding": [
                        {"system": RXNORM, "code": "70618", "display": "Penicillin"},
                        {"system": SNOMED, "code": "91936005", "display": "Allergy to penicillin (finding)"},
                    ],
                    "text": "Penicillin",
                },
                "patient": {"reference": patient},
                "encounter": {"reference": encounter},
                "recordedDate": _ts(when),
                "reaction": [
                    {
                        "manifestation": [_cc(SNOMED, "247472004", "Wheal (finding)")],
                        "severity": "mild",
                    }
                ],
            }
        )

    def immunization(self, patient: str, encounter: str, when: datetime, code: str, display: str) -> None:
        self.b.add(
            {
                "resourceType": "Immunization",
                "status": "completed",
                "vaccineCode": _cc(CVX, code, display),
                "patient": {"reference": patient},
                "encounter": {"reference": encounter},
                "occurrenceDateTime": _ts(when + timedelta(minutes=25)),
                "primarySource": True,
                "lotNumber": f"LOT{self.rng.randrange(100_000, 1_000_000)}",
            }
        )

    def imaging(self, patient: str, encounter: str, when: datetime) -> None:
        def uid() -> str:
            return "2.25." + str(uuid.UUID(self.b.new_id()).int)

        n_instances = self.rng.randrange(1, 3)
        modality = {"system": DICOM, "code": "DX", "display": "Digital Radiography"}
        self.b.add(
            {
                "resourceType": "ImagingStudy",
                "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{uid()}"}],
                "status": "available",
                "modality": [modality],
                "subject": {"reference": patient},
                "encounter": {"reference": encounter},
                "started": _ts(when + timedelta(minutes=40)),
                "numberOfSeries": 1,
                "numberOfInstances": n_instances,
                "description": "Chest X-ray, two views",
                "series": [
                    {
                        "uid": uid(),
                        "number": 1,
                        "modality": modality,
                        "numberOfInstances": n_instances,
                        "bodySite": {
                            "system": SNOMED,
                            "code": "51185008",
                            "display": "Thoracic structure (body structure)",
                        },
                        "started": _ts(when + timedelta(minutes=40)),
                        "instance": [
                            {
                                "uid": uid(),
                                "sopClass": {
                                    "system": "urn:ietf:rfc:3986",
                                    "code": "urn:oid:1.2.840.10008.5.1.4.1.1.1.1",
                                },
                                "number": k + 1,
                                "title": "Chest X-ray",
                            }
                            for k in range(n_instances)
                        ],
                    }
                ],
            }
        )

    # ---------------------------------------------------------------- whole bundle
    def bundle(self) -> dict[str, Any]:
        org = self.organization()
        practitioner = self.practitioner()
        patient, birth = self.patient()
        times = self.visit_times()
        a = self.a
        stay = int(a.get("inpatient_stay_days", 0))
        admission_visit = len(times) // 3 if stay else -1
        encounters: list[str] = []
        flu_seasons: set[int] = set()
        for k, when in enumerate(times):
            inpatient = k == admission_visit
            enc = self.encounter(patient, practitioner, org, when, inpatient=inpatient, days=stay)
            encounters.append(enc)
            years_in = (when - times[0]).days / 365.25
            treated = min(1.0, k / 2.0)  # antihypertensives act over the first two visits
            self.vitals(patient, enc, when, years_in, treated)
            self.labs(patient, enc, when, k, birth)
            if when.month >= 9 and when.year not in flu_seasons:  # first visit of each autumn
                flu_seasons.add(when.year)
                self.immunization(
                    patient, enc, when, "140", "Influenza, seasonal, injectable, preservative free"
                )
        first, first_time = encounters[0], times[0]
        for spec in a["conditions"]:
            if spec["status"] == "resolved":
                k = max(0, len(times) // 2)
                self.condition(patient, encounters[k], spec, times[k])
            else:
                self.condition(patient, first, spec, first_time)
        for m, spec in enumerate(a["medications"]):
            k = 0 if spec["status"] == "stopped" else min(len(times) - 1, 1 + m // 2)
            self.medication(patient, encounters[k], practitioner, spec, times[k])
        self.immunization(patient, encounters[-1], times[-1], "115", "Tdap")
        if a.get("allergy", False):
            self.allergy(patient, first, first_time)
        if a.get("imaging", False):
            k = admission_visit if admission_visit >= 0 else len(times) - 1
            self.imaging(patient, encounters[k], times[k])
        bundle_id = str(uuid.uuid5(_NAMESPACE, f"medtwin-synthetic/{self.b.seed}/{self.index}/bundle"))
        return {"resourceType": "Bundle", "id": bundle_id, "type": "transaction", "entry": self.b.entries}


def generate_bundles(
    seed: int = 2026, n_patients: int = 6, *, now: datetime | None = None
) -> list[dict[str, Any]]:
    """``n_patients`` FHIR R4 transaction bundles, one per patient, cycling through the archetypes."""
    if n_patients < 0:
        raise ValueError("n_patients must be >= 0")
    reference = REFERENCE_DATE if now is None else (now if now.tzinfo else now.replace(tzinfo=UTC))
    archetypes = _config()["archetype"]
    return [
        _PatientGenerator(seed, i, archetypes[i % len(archetypes)], reference).bundle()
        for i in range(n_patients)
    ]


def write_bundles(
    directory: str | Path, seed: int = 2026, n_patients: int = 6, *, now: datetime | None = None
) -> list[Path]:
    """Write the bundles as ``<index>_<archetype>.json`` (UTF-8, indented); returns the paths."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    keys = archetype_keys()
    paths: list[Path] = []
    for i, bundle in enumerate(generate_bundles(seed, n_patients, now=now)):
        path = out / f"{i:03d}_{keys[i % len(keys)]}.json"
        path.write_text(json.dumps(bundle, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        paths.append(path)
    return paths
