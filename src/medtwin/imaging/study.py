"""The FHIR R4 ImagingStudy that links a patient's record to their stored volumes.

One ImagingStudy per DICOM study (first POSTed under a ``fullUrl`` derived from the patient and the Study
Instance UID, so the record gives it the same id on every import and a re-import finds it), one ``series`` entry per imported series with its UID, modality (DICOM DCM code system) and number
of instances, and the extension :data:`VOLUME_EXTENSION` whose ``valueString`` is the stored volume's id (the
keyed content address in ``medtwin.store.images``). A NIfTI file has no DICOM UIDs: it gets a study and series
UID of its own under the ``2.25`` root (ISO/IEC 9834-8: a UUID as a decimal OID), derived from its volume id.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

VOLUME_EXTENSION = "urn:medtwin:imaging-volume"
DCM_SYSTEM = "http://dicom.nema.org/resources/ontology/DCM"
UID_SYSTEM = "urn:dicom:uid"
_NAMESPACE = uuid.UUID("6f1f2a1c-7f3e-5b0e-9d43-6d656474776e")
#: DICOM modality codes we may see; anything else is recorded as OT (other).
MODALITIES = frozenset({"CT", "MR", "PT", "NM", "US", "XA", "CR", "DX", "MG", "RTDOSE", "SEG", "OT", "RTSTRUCT"})


def derived_uid(*parts: str) -> str:
    """A DICOM UID under 2.25 from a name-based UUID of ``parts`` (the same parts give the same UID)."""
    return f"2.25.{uuid.uuid5(_NAMESPACE, '|'.join(parts)).int}"


def study_uid_of(meta: dict[str, str], volume_id: str) -> str:
    return meta.get("study_uid") or derived_uid("study", volume_id)


def series_uid_of(meta: dict[str, str], volume_id: str) -> str:
    return meta.get("series_uid") or derived_uid("series", volume_id)


def study_full_url(patient_id: str, study_uid: str) -> str:
    """The ``fullUrl`` an ImagingStudy is first POSTed under: the same for the same patient and study, so the
    server id the record derives from it (``record.prepare``) is the same on every import."""
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'ImagingStudy|{patient_id}|{study_uid}')}"


def _date(meta: dict[str, str]) -> str | None:
    day = meta.get("study_date", "")
    if len(day) == 8 and day.isdigit():
        return f"{day[:4]}-{day[4:6]}-{day[6:]}"
    return None


def _series(meta: dict[str, str], volume_id: str) -> dict[str, Any]:
    modality = meta.get("modality", "OT")
    entry: dict[str, Any] = {
        "extension": [{"url": VOLUME_EXTENSION, "valueString": volume_id}],
        "uid": series_uid_of(meta, volume_id),
        "modality": {"system": DCM_SYSTEM, "code": modality if modality in MODALITIES else "OT"},
        "numberOfInstances": int(meta.get("instances", "1")),
    }
    if meta.get("series_number", "").lstrip("-").isdigit():
        entry["number"] = int(meta["series_number"])
    if meta.get("series_description"):
        entry["description"] = meta["series_description"]
    return entry


def imaging_study(patient_id: str, meta: dict[str, str], volume_id: str,
                  existing: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ImagingStudy with this volume's series added (or its entry replaced, same series UID) to
    ``existing`` (the stored resource, or None: a new one, without an id: the record assigns it)."""
    study_uid = study_uid_of(meta, volume_id)
    resource: dict[str, Any] = copy.deepcopy(existing) if existing else {
        "resourceType": "ImagingStudy", "status": "available",
        "identifier": [{"system": UID_SYSTEM, "value": f"urn:oid:{study_uid}"}],
        "subject": {"reference": f"Patient/{patient_id}"}}
    for key in ("meta", "text"):
        resource.pop(key, None)
    series = [s for s in resource.get("series", []) if s.get("uid") != series_uid_of(meta, volume_id)]
    series.append(_series(meta, volume_id))
    resource["series"] = sorted(series, key=lambda s: (s.get("number", 0), s["uid"]))
    if (started := _date(meta)) and "started" not in resource:
        resource["started"] = started
    codes = sorted({s["modality"]["code"] for s in resource["series"]})
    resource["modality"] = [{"system": DCM_SYSTEM, "code": code} for code in codes]
    resource["numberOfSeries"] = len(resource["series"])
    resource["numberOfInstances"] = sum(int(s.get("numberOfInstances", 0)) for s in resource["series"])
    return resource


def volume_ids(resource: dict[str, Any]) -> list[str]:
    """The stored volume ids an ImagingStudy points at."""
    return [e["valueString"] for s in resource.get("series", []) for e in s.get("extension", [])
            if e.get("url") == VOLUME_EXTENSION and isinstance(e.get("valueString"), str)]
