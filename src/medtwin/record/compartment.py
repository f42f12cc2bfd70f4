"""The FHIR R4 Patient compartment, read from its definition (``data/patient_compartment_r4.json``): which
resource types are a patient's data, and which are shared between patients (Organization, Practitioner,
Location, Medication, Device, ...)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources as package_files

from medtwin.record.errors import RecordError

__all__ = ["NoPatientError", "in_patient_compartment", "patient_element", "patient_compartment"]


class NoPatientError(RecordError):
    """A resource of the Patient compartment whose patient resolves to no Patient (stored or in the unit)."""

    kind = "no-patient"


@cache
def patient_compartment() -> dict[str, str]:
    """Member type -> the element that holds its patient reference."""
    text = package_files.files("medtwin.record").joinpath("data/patient_compartment_r4.json").read_text("utf-8")
    definition = json.loads(text)
    return {member["code"]: member["element"] for member in definition["resource"] if member.get("param")}


def in_patient_compartment(resource_type: str) -> bool:
    return resource_type in patient_compartment()


def patient_element(resource_type: str) -> str:
    """The FHIRPath-like field naming a member type's patient, e.g. ``Observation.subject``."""
    return f"{resource_type}.{patient_compartment().get(resource_type, 'subject')}"
