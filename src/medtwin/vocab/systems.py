"""The code-system URIs medtwin writes and reads (FHIR ``Coding.system`` / ``Quantity.system``), once."""

from __future__ import annotations

from typing import Final

LOINC: Final = "http://loinc.org"
SNOMED_CT: Final = "http://snomed.info/sct"
UCUM: Final = "http://unitsofmeasure.org"
