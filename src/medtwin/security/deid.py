"""De-identification for research (HIPAA Safe Harbor, 45 CFR 164.514(b)(2)) over FHIR R4 resource JSON.

What happens to the 18 identifier kinds:

* names, telecom (phone, fax, e-mail), identifiers of every kind (MRN, SSN, licence, health plan,
  account, certificate, device serials/UDI/lot), photos, contacts, URLs and IP addresses: removed;
* addresses: reduced to state, country and the 3-digit ZIP (``000`` for the ZIP3 areas under 20,000 people);
* dates: ``year`` mode keeps only the year (instants are dropped); ``shift`` mode moves every date of a
  patient by the same secret per-patient offset (-365..365 days, never 0), birth date still year only;
* ages over 89: the birth date is removed and an ``age 90+`` extension added;
* free text (narrative, notes, dosage text, comments, attachments, report text, valueString): removed;
* ids and references: replaced by pseudonyms, ``HMAC-SHA256(pseudonym_key, "Type/id")`` as a UUID, stable
  across exports; display strings on references are dropped; extensions only from an allow-list;
* DICOM UIDs (study, series, instance: an ImagingStudy's ``uid`` elements, and any ``urn:oid:`` value that is
  not a code or code system) are identifiers too: replaced by a keyed pseudonym UID under the ``2.25`` root
  (DICOM PS3.5 B.2, a UUID as a decimal OID), the same UID giving the same pseudonym everywhere, so series and
  instances still link up; a ``uid`` element that is not a UID is removed. (Not left to the IPv4 pattern: a
  ``2.25.`` UID or a long one such as ``1.2.840.113619.2.55`` does not match it.)

A last pass drops any string still containing one of the patient's own identifying strings.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from medtwin.security.consent import consenting_patients
from medtwin.store.codec import Codec
from medtwin.store.schema import resources

DATE_MODES = ("year", "shift")
#: ZIP3 areas with 20,000 or fewer people (2000 census), which Safe Harbor requires to become 000.
RESTRICTED_ZIP3 = frozenset({"036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830",
                             "831", "878", "879", "884", "890", "893"})
ALLOWED_EXTENSIONS = frozenset({
    "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
    "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity",
    "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex",
})
AGE_EXTENSION = "urn:medtwin:deid:age-group"
DROP_KEYS = frozenset({
    "identifier", "name", "telecom", "photo", "contact", "note", "comment", "comments", "description",
    "serialNumber", "lotNumber", "udiCarrier", "distinctIdentifier", "deviceIdentifier", "presentedForm",
    "data", "url", "valueString", "valueMarkdown", "conclusion", "summary", "patientInstruction",
    "subscriberId", "policyHolder", "subscriber", "link", "modifierExtension", "implicitRules",
    "valueAttachment", "attachment",
})
#: Resource types with no research value that only carry who-did-what (or identify places and people).
SKIP_TYPES = frozenset({"Provenance", "Practitioner", "PractitionerRole", "Organization", "Location",
                        "RelatedPerson", "Person", "AuditEvent", "Binary"})
INSTANT_KEYS = frozenset({"issued", "recorded", "lastUpdated", "instant", "timestamp"})
NON_TEXT_KEYS = frozenset({"system", "code", "version", "profile", "resourceType", "currency", "unit",
                           "status", "use", "intent", "gender", "contentType", "language"})
_DATE = re.compile(r"^(\d{4})(-(\d{2})(-(\d{2})(T[0-9:.]+(Z|[+-]\d{2}:\d{2})?)?)?)?$")
_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
_IPV6 = re.compile(r"\b(?:[0-9A-Fa-f]{1,4}:){3,7}[0-9A-Fa-f]{1,4}\b")
_EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+")
_URL = re.compile(r"^(https?|ftp)://", re.IGNORECASE)
_REFERENCE = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$")
#: A DICOM UID (PS3.5 9.1: numeric components without leading zeros, separated by dots), bare as in
#: ImagingStudy.series.uid or as an ``urn:oid:`` URI as in ImagingStudy.identifier.
_DICOM_UID = re.compile(r"^(urn:oid:)?([0-2](?:\.(?:0|[1-9][0-9]*))+)$")
#: Elements whose value is a DICOM UID (ImagingStudy.series.uid, ImagingStudy.series.instance.uid).
UID_KEYS = frozenset({"uid"})
_TOKEN = re.compile(r"[\w'-]{3,}", re.UNICODE)


class DeidError(ValueError):
    """Bad de-identification input (names the field)."""


def _reference_date(resource: dict[str, Any], as_of: date) -> date:
    deceased = resource.get("deceasedDateTime")
    if isinstance(deceased, str) and _DATE.match(deceased):
        m = _DATE.match(deceased)
        assert m is not None
        return date(int(m.group(1)), int(m.group(3) or 12), int(m.group(5) or 28))
    return as_of


def _age(birth: str, on: date) -> int | None:
    m = _DATE.match(birth)
    if m is None:
        return None
    born = date(int(m.group(1)), int(m.group(3) or 1), int(m.group(5) or 1))
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def identifying_strings(patient: dict[str, Any]) -> frozenset[str]:
    """Lower-cased direct identifiers of a Patient resource (name parts, identifier values, telecom,
    address lines, city, postal code, exact birth date) used as a final filter."""
    found: set[str] = set()

    def add(value: Any) -> None:
        if isinstance(value, str):
            for token in _TOKEN.findall(value):
                if len(token) >= 5 or (len(token) >= 3 and not token.isdigit()):
                    found.add(token.lower())
            if len(value) >= 3:
                found.add(value.lower())

    for name in patient.get("name", []) or []:
        for part in ("family", "text"):
            add(name.get(part))
        for part in ("given", "prefix", "suffix"):
            for value in name.get(part, []) or []:
                add(value)
    for ident in patient.get("identifier", []) or []:
        add(ident.get("value"))
    for tel in patient.get("telecom", []) or []:
        add(tel.get("value"))
    for addr in patient.get("address", []) or []:
        for line in addr.get("line", []) or []:
            add(line)
        add(addr.get("city"))
        add(addr.get("postalCode"))
    birth = patient.get("birthDate")
    if isinstance(birth, str) and len(birth) > 4:
        found.add(birth.lower())
    return frozenset(found)


@dataclass
class Deidentifier:
    """Transforms one patient's resources; ``key`` is the key ring's pseudonym key."""

    key: bytes
    date_mode: str = "year"
    as_of: date | None = None

    def __post_init__(self) -> None:
        if self.date_mode not in DATE_MODES:
            raise DeidError(f"date_mode: must be one of {', '.join(DATE_MODES)}")
        if len(self.key) < 16:
            raise DeidError("key: pseudonym key must be at least 16 bytes")

    def _mac(self, text: str) -> bytes:
        return hmac.new(self.key, text.encode("utf-8"), hashlib.sha256).digest()

    def pseudo_id(self, resource_type: str, resource_id: str) -> str:
        return str(uuid.UUID(bytes=self._mac(f"id:{resource_type}/{resource_id}")[:16]))

    def pseudo_uid(self, value: str) -> str | None:
        """The pseudonym of a DICOM UID (bare or ``urn:oid:``, kept as written): ``2.25.`` and a UUID (version 4
        bits set) from ``HMAC-SHA256(pseudonym_key, "uid:<uid>")``; None if ``value`` is not a UID."""
        m = _DICOM_UID.match(value)
        if m is None:
            return None
        pseudo = uuid.UUID(bytes=self._mac(f"uid:{m.group(2)}")[:16], version=4)
        return f"{m.group(1) or ''}2.25.{pseudo.int}"

    def shift_days(self, patient_id: str) -> int:
        value = int.from_bytes(self._mac(f"shift:{patient_id}")[:4], "big") % 730
        return value - 365 if value < 365 else value - 364  # -365..-1, 1..365

    # --- values ----------------------------------------------------------------------------------
    def _date(self, value: str, key: str, patient_id: str) -> str | None:
        m = _DATE.match(value)
        assert m is not None
        if key == "birthDate" or self.date_mode == "year":
            if key in INSTANT_KEYS:
                return None
            return m.group(1)
        if m.group(5) is None:  # year or year-month precision: keep the year only
            return m.group(1)
        shift = timedelta(days=self.shift_days(patient_id))
        if m.group(6) is None:
            return (date.fromisoformat(value) + shift).isoformat()
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        shifted = (parsed + shift).isoformat()
        return shifted.replace("+00:00", "Z") if value.endswith("Z") else shifted

    def _reference(self, ref: dict[str, Any]) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        target = ref.get("reference")
        if isinstance(target, str):
            if target.startswith("#"):
                out["reference"] = target
            else:
                m = _REFERENCE.match(target)
                if m is not None:
                    out["reference"] = f"{m.group(1)}/{self.pseudo_id(m.group(1), m.group(2))}"
        if isinstance(ref.get("type"), str):
            out["type"] = ref["type"]
        return out or None

    @staticmethod
    def _address(addr: dict[str, Any]) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        for key in ("state", "country"):
            if isinstance(addr.get(key), str):
                out[key] = addr[key]
        postal = addr.get("postalCode")
        if isinstance(postal, str):
            digits = re.sub(r"\D", "", postal)
            zip3 = digits[:3] if len(digits) >= 5 else ""
            out["postalCode"] = "000" if not zip3 or zip3 in RESTRICTED_ZIP3 else zip3
        return out or None

    def _extensions(self, items: list[Any], patient_id: str, nested: bool) -> list[Any]:
        kept = []
        for ext in items:
            if not isinstance(ext, dict):
                continue
            url = ext.get("url")
            if not nested and url not in ALLOWED_EXTENSIONS:
                continue
            body = {k: v for k, v in ext.items() if k not in ("url", "extension")}
            out = self._walk(body, patient_id, "extension") or {}
            if isinstance(ext.get("extension"), list):
                inner = self._extensions(ext["extension"], patient_id, nested=True)
                if inner:
                    out["extension"] = inner
            if out:
                kept.append({"url": url, **out})
        return kept

    def _walk(self, node: Any, patient_id: str, key: str) -> Any:
        if isinstance(node, dict):
            if "reference" in node and key not in ("extension",):
                return self._reference(node)
            return self._object(node, patient_id)
        if isinstance(node, list):
            items = [self._walk(v, patient_id, key) for v in node]
            return [v for v in items if v is not None and v != {} and v != []]
        if isinstance(node, str):
            return self._string(node, key, patient_id)
        return node

    def _object(self, node: dict[str, Any], patient_id: str) -> dict[str, Any]:
        """A JSON object (not a reference): each element dropped, reduced or walked."""
        out: dict[str, Any] = {}
        for k, v in node.items():
            if k in DROP_KEYS or k.endswith("Identifier") or k.startswith("_"):
                continue  # every Identifier-typed element (masterIdentifier, accessionIdentifier, ...) too
            if k == "text" and not (isinstance(v, str) and "coding" in node):
                continue  # narrative, annotation and dosage text; keep CodeableConcept.text
            if k == "display" and "code" not in node:
                continue  # displays outside codings (reference labels, payor names, ...)
            value = self._element(k, v, patient_id)
            if value is not None and value != [] and value != {}:
                out[k] = value
        return out

    def _element(self, k: str, v: Any, patient_id: str) -> Any:
        """One element's de-identified value (None, [] or {}: leave it out)."""
        if k in ("address", "valueAddress"):
            addrs = v if isinstance(v, list) else [v]
            reduced = [a for a in (self._address(x) for x in addrs if isinstance(x, dict)) if a]
            if not reduced or k != "address":
                return None  # valueAddress (free text about a place) is dropped; address keeps the reduced form
            return reduced if isinstance(v, list) else reduced[0]
        if k == "extension":
            return self._extensions(v, patient_id, nested=False) if isinstance(v, list) else None
        if k == "meta":
            return {"profile": v["profile"]} if isinstance(v, dict) and isinstance(v.get("profile"), list) else None
        return self._walk(v, patient_id, k)

    def _string(self, value: str, key: str, patient_id: str) -> str | None:
        if key in NON_TEXT_KEYS and key != "system":
            if _DATE.match(value) and key not in ("code", "version"):
                return self._date(value, key, patient_id)
            return value
        if key == "system" or key == "profile":
            return value
        if key in UID_KEYS or (value.startswith("urn:oid:") and _DICOM_UID.match(value)):
            return self.pseudo_uid(value)  # a DICOM UID is an identifier: never left to the patterns below
        if _DATE.match(value):
            return self._date(value, key, patient_id)
        if _IPV4.search(value) or _IPV6.search(value) or _EMAIL.search(value) or _URL.match(value):
            return None
        return value

    # --- resources --------------------------------------------------------------------------------
    def transform(self, resource: dict[str, Any], patient_id: str,
                  identifying: frozenset[str] = frozenset()) -> dict[str, Any] | None:
        """The de-identified copy of ``resource`` (None for resource types that are not exported)."""
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str):
            raise DeidError("resourceType: missing")
        if rtype in SKIP_TYPES:
            return None
        out = self._walk(resource, patient_id, "") or {}
        out["resourceType"] = rtype
        if isinstance(resource.get("id"), str):
            out["id"] = self.pseudo_id(rtype, resource["id"])
        if rtype == "Patient":
            self._age_cap(resource, out)
        if identifying:
            out = _scrub(out, identifying) or {"resourceType": rtype, "id": out.get("id")}
        return dict(out)

    def _age_cap(self, original: dict[str, Any], out: dict[str, Any]) -> None:
        birth = original.get("birthDate")
        if not isinstance(birth, str):
            return
        age = _age(birth, _reference_date(original, self.as_of or datetime.now(UTC).date()))
        if age is not None and age > 89:
            out.pop("birthDate", None)
            out.setdefault("extension", []).append({"url": AGE_EXTENSION, "valueString": "90+"})


def _scrub(node: Any, identifying: frozenset[str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k in ("resourceType", "id"):
                out[k] = v
                continue
            value = _scrub(v, identifying)
            if value is not None and value != [] and value != {}:
                out[k] = value
        return out
    if isinstance(node, list):
        items = [_scrub(v, identifying) for v in node]
        return [v for v in items if v is not None and v != [] and v != {}]
    if isinstance(node, str):
        lowered = node.lower()
        if lowered in identifying or any(t.lower() in identifying for t in _TOKEN.findall(node)):
            return None
    return node


@dataclass(frozen=True)
class ResearchExport:
    directory: Path
    patients: int
    excluded_without_consent: int
    resources: dict[str, int]


def export_research(conn: Connection, codec: Codec, deid: Deidentifier, out_dir: Path,
                    patient_ids: Iterable[str] | None = None) -> ResearchExport:
    """Write FHIR ndjson (one ``<Type>.ndjson`` per resource type) for consenting patients only.

    The files are written into a temporary folder next to ``out_dir`` and moved into place at the end,
    so a failure leaves no partial export. ``out_dir`` must not exist yet or be empty."""
    if out_dir.exists() and any(out_dir.iterdir()):
        raise DeidError(f"out_dir: {out_dir} exists and is not empty")
    candidates = patient_ids
    if candidates is None:
        candidates = [r[0] for r in conn.execute(
            select(resources.c.id).where(resources.c.resource_type == "Patient").order_by(resources.c.id))]
    candidates = list(dict.fromkeys(candidates))
    allowed = consenting_patients(conn, candidates)
    chosen = [p for p in candidates if p in allowed]
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{secrets.token_hex(4)}"
    tmp.mkdir(parents=True)
    counts: dict[str, int] = {}
    try:
        handles: dict[str, Any] = {}
        try:
            for pid in chosen:
                rows = conn.execute(select(resources.c.resource_type, resources.c.id, resources.c.content)
                                    .where(resources.c.patient_id == pid)
                                    .order_by(resources.c.resource_type, resources.c.id)).all()
                loaded = [(t, json.loads(codec.open(blob))) for t, _i, blob in rows]
                patient = next((r for t, r in loaded if t == "Patient"), None)
                identifying = identifying_strings(patient) if patient else frozenset()
                for rtype, resource in loaded:
                    out = deid.transform(resource, pid, identifying)
                    if out is None:
                        continue
                    if rtype not in handles:
                        handles[rtype] = (tmp / f"{rtype}.ndjson").open("w", encoding="utf-8")
                    handles[rtype].write(json.dumps(out, separators=(",", ":"), ensure_ascii=False) + "\n")
                    counts[rtype] = counts.get(rtype, 0) + 1
        finally:
            for handle in handles.values():
                handle.close()
        if out_dir.exists():
            out_dir.rmdir()
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ResearchExport(out_dir, len(chosen), len(candidates) - len(chosen), counts)
