"""DICOM UIDs in the research export: an ImagingStudy's study, series and instance UIDs (``identifier``,
``series.uid``, ``series.instance.uid``) and its ``endpoint`` never reach the export; series and instance UIDs
become keyed pseudonym UIDs (the same UID the same pseudonym, so the study still links up), by an explicit rule
that does not lean on the IPv4 pattern (which misses ``2.25.`` UIDs and long components altogether)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from medtwin.record.sources import RawUnit
from medtwin.security import consent, deid
from medtwin.security.crypto import KeyRing
from medtwin.security.deid import Deidentifier, export_research
from medtwin.store.database import Store
from medtwin.store.schema import resources
from medtwin.twin.build import import_unit

STUDY_UID = "2.25.329800735698586629295641978511506172918"  # UUID-derived, as medtwin's own NIfTI studies
SERIES_UID = "1.2.840.113619.2.55.3.604688119.969.1268071029.320"  # a vendor root, components > 3 digits
INSTANCE_UIDS = ("1.3.6.1.4.1.9590.100.1.2.1234", "2.25.87281264935781239461083617493528910071")
SOP_CLASS = "urn:oid:1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage: a public class, not an identifier
UID_SYNTAX = re.compile(r"^2\.25\.(0|[1-9][0-9]*)$")


def study(patient: str = "Patient/p1", endpoint: str = "Endpoint/pacs-main") -> dict[str, Any]:
    return {
        "resourceType": "ImagingStudy", "id": "s1", "status": "available",
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{STUDY_UID}"}],
        "subject": {"reference": patient},
        "endpoint": [{"reference": endpoint, "display": "PACS wado-rs"}],
        "modality": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}],
        "numberOfSeries": 1, "numberOfInstances": 2,
        "series": [{
            "uid": SERIES_UID, "number": 3,
            "modality": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"},
            "endpoint": [{"reference": endpoint}],
            "instance": [{"uid": uid, "number": k + 1, "sopClass": {"system": "urn:ietf:rfc:3986", "code": SOP_CLASS}}
                         for k, uid in enumerate(INSTANCE_UIDS)],
        }],
    }


def all_uids() -> tuple[str, ...]:
    return (STUDY_UID, SERIES_UID, *INSTANCE_UIDS)


def test_the_ipv4_pattern_alone_misses_these_uids() -> None:
    # why the rule must be explicit: two of the four are not matched by the IPv4 pattern at all
    missed = [uid for uid in all_uids() if not deid._IPV4.search(uid)]
    assert missed == [STUDY_UID, SERIES_UID, INSTANCE_UIDS[1]]


def test_series_and_instance_uids_become_consistent_pseudonym_uids() -> None:
    d = Deidentifier(b"k" * 32)
    out = d.transform(study(), "p1")
    assert out is not None
    text = json.dumps(out)
    assert not [uid for uid in all_uids() if uid in text]
    assert "identifier" not in out and "pacs-main" not in text and "wado" not in text
    series = out["series"][0]
    pseudonyms = [series["uid"], *(i["uid"] for i in series["instance"])]
    assert all(UID_SYNTAX.match(p) and len(p) <= 64 for p in pseudonyms)  # still valid DICOM UIDs
    assert len(set(pseudonyms)) == 3
    assert pseudonyms == [d.pseudo_uid(SERIES_UID), *(d.pseudo_uid(u) for u in INSTANCE_UIDS)]
    assert series["instance"][0]["sopClass"]["code"] == SOP_CLASS and series["number"] == 3
    assert out["endpoint"][0]["reference"].startswith("Endpoint/") and series["endpoint"] == out["endpoint"]
    # the same UID anywhere (another resource, a second export) gets the same pseudonym; another key another one
    again = d.transform(study("Patient/p2"), "p2")
    assert again is not None and again["series"][0]["uid"] == series["uid"]
    other = Deidentifier(b"q" * 32).transform(study(), "p1")
    assert other is not None and other["series"][0]["uid"] != series["uid"]
    assert d.pseudo_uid(f"urn:oid:{SERIES_UID}") == f"urn:oid:{series['uid']}"


def test_the_rule_does_not_depend_on_the_ipv4_pattern(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deid, "_IPV4", re.compile(r"(?!)"))  # an IPv4 pattern that never matches
    out = Deidentifier(b"k" * 32).transform(study(), "p1")
    assert out is not None
    text = json.dumps(out)
    assert not [uid for uid in all_uids() if uid in text]
    # the UID the IPv4 pattern used to catch is now replaced by the UID rule, not merely dropped
    assert UID_SYNTAX.match(out["series"][0]["instance"][0]["uid"])


def test_a_uid_element_that_is_not_a_uid_is_removed() -> None:
    resource = study()
    resource["series"][0]["uid"] = "Series 3 of Jane Doe"
    out = Deidentifier(b"k" * 32).transform(resource, "p1")
    assert out is not None and "uid" not in out["series"][0] and "Jane" not in json.dumps(out)


def test_research_export_of_an_imaging_study_carries_no_dicom_uid(sqlite_store: Store, keyring: KeyRing,
                                                                   tmp_path: Path, clock: Any) -> None:
    patient = {"resourceType": "Patient", "name": [{"family": "Quinlan", "given": ["Ada"]}], "gender": "female",
               "birthDate": "1961-04-02"}
    # the PACS endpoint's address carries the study UID, as a WADO-RS base URL does
    endpoint = {"resourceType": "Endpoint", "status": "active", "name": "pacs-main",
                "connectionType": {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                                   "code": "dicom-wado-rs"},
                "payloadType": [{"text": "DICOM"}],
                "address": f"https://pacs-main.example.org/wado-rs/studies/{STUDY_UID}"}
    patient_url, endpoint_url = "urn:uuid:6a1c0f7e-51b2-4c4e-9a57-7d1f1e2b3c4d", "urn:uuid:9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": patient_url, "resource": patient, "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": endpoint_url, "resource": endpoint, "request": {"method": "POST", "url": "Endpoint"}},
        {"fullUrl": "urn:uuid:0b8e7c6d-2f1a-4e3b-8c9d-1a2b3c4d5e6f",
         "resource": {k: v for k, v in study(patient_url, endpoint_url).items() if k != "id"},
         "request": {"method": "POST", "url": "ImagingStudy"}}]}
    report = import_unit(sqlite_store, RawUnit("imaging-test", "json", bundle), actor="test")
    assert report.error is None, report.error
    with sqlite_store.begin() as conn:
        (pid,) = conn.execute(select(resources.c.id).where(resources.c.resource_type == "Patient")).one()
        consent.record_consent(conn, pid, "permit", "test", clock)
    out = tmp_path / "export"
    with sqlite_store.connect() as conn:
        result = export_research(conn, sqlite_store.codec, Deidentifier(keyring.pseudonym_key), out)
    assert result.resources["ImagingStudy"] == 1 and result.resources["Patient"] == 1
    blob = "\n".join(p.read_text() for p in sorted(out.glob("*.ndjson")))
    assert not [uid for uid in all_uids() if uid in blob]
    assert "pacs-main" not in blob and "Quinlan" not in blob
    (exported,) = [json.loads(line) for line in (out / "ImagingStudy.ndjson").read_text().splitlines()]
    uids = [exported["series"][0]["uid"], *(i["uid"] for i in exported["series"][0]["instance"])]
    assert uids == [Deidentifier(keyring.pseudonym_key).pseudo_uid(u) for u in (SERIES_UID, *INSTANCE_UIDS)]
