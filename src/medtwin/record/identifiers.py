"""Which identifier may name a patient where the name is seen on the way (a URL path, an MQTT topic, a CLI
argument): the patient's id, the sending system's id for it, or its medical record number. National person
identifiers (SSN, passport, driver's licence, Medicare) never do: a URL or topic is written by every proxy,
broker and access log it passes, so those are looked up through a search whose value stays in the body or
query. One definition, used by the store's patient resolution and so by the API, the ingest pipeline (HTTP,
WebSocket, MQTT) and the CLI.
"""

from __future__ import annotations

import re
from typing import Any, Final

#: The identifier type (HL7 v2 table 0203) a patient may be named by, besides its id.
RECORD_NUMBER_TYPE: Final = ("http://terminology.hl7.org/CodeSystem/v2-0203", "MR")
#: Systems of national person identifiers (SSN, passport, driver's licence, Medicare): never a name.
PERSON_ID_SYSTEMS: Final = ("http://hl7.org/fhir/sid/us-ssn", "http://hl7.org/fhir/sid/passport-",
                            "urn:oid:2.16.840.1.113883.4.3.", "http://hl7.org/fhir/sid/us-mbi",
                            "http://hl7.org/fhir/sid/us-medicare", "urn:oid:2.16.840.1.113883.4.1")
_SSN_SHAPE: Final = re.compile(r"^\d{3}-?\d{2}-?\d{4}$")


def names_the_patient(identifier: dict[str, Any], raw: str) -> bool:
    """Whether ``identifier`` (of a stored Patient) may name the patient as ``raw``: its type is MR, or it has
    no type, its system is no national person identifier and the value is not SSN-shaped."""
    if identifier.get("value") != raw:
        return False
    codings = (identifier.get("type") or {}).get("coding") or []
    if codings:
        system, code = RECORD_NUMBER_TYPE
        return any(c.get("system") == system and c.get("code") == code for c in codings)
    id_system = str(identifier.get("system") or "")
    return not id_system.startswith(PERSON_ID_SYSTEMS) and not _SSN_SHAPE.match(raw)
