"""Every Identifier-typed element leaves the research export, whatever its name: ``identifier`` and the
elements R4 names ``...Identifier`` (DocumentReference.masterIdentifier, Specimen.accessionIdentifier,
Device.distinctIdentifier ...). masterIdentifier used to pass through when its value matched no pattern."""

from __future__ import annotations

import json

from medtwin.security.deid import Deidentifier

ACCESSION = "ACC-7731-QX"  # a lab or document number: no pattern (date, e-mail, IP ...) matches it


def test_identifier_typed_elements_are_removed_by_name() -> None:
    d = Deidentifier(b"k" * 32)
    document = {"resourceType": "DocumentReference", "id": "d1", "status": "current",
                "masterIdentifier": {"system": "urn:hospital:docs", "value": ACCESSION},
                "subject": {"reference": "Patient/p1"},
                "type": {"coding": [{"system": "http://loinc.org", "code": "34133-9"}]}}
    specimen = {"resourceType": "Specimen", "id": "s1", "subject": {"reference": "Patient/p1"},
                "accessionIdentifier": {"value": ACCESSION},
                "type": {"coding": [{"system": "http://snomed.info/sct", "code": "119297000"}]}}
    for resource, key in ((document, "masterIdentifier"), (specimen, "accessionIdentifier")):
        out = d.transform(resource, "p1")
        assert key not in out and ACCESSION not in json.dumps(out)
        assert out["type"]["coding"][0]["code"] == resource["type"]["coding"][0]["code"]  # codes kept
