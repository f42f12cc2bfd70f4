"""Images in the twin, as a service: import a volume for a patient, list and load their volumes.

``import_volume`` stores the volume (``imaging.storage.pack``: content-addressed canonical bytes, compressed;
sealed in chunks by ``store.images``) and links it to the patient in one transaction, then writes the
patient's ImagingStudy (``imaging.study``) through the record's own import path (``twin.build.import_unit``:
validation, versions, authorisation of the writer against what is stored, the record twin refreshed). If the
ImagingStudy is refused, the link (and the blob, if nobody else links it) is removed again: nothing
half-stored. Re-importing the same image stores nothing and leaves the ImagingStudy unchanged.

Readers: ``volumes`` (a patient's links), ``load_volume`` (the voxels, checked against their content hash,
kept in a small in-process cache of opened volumes so slice views do not open a CT per request).
"""

from __future__ import annotations

import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from medtwin.imaging import dicom, nifti, storage, study
from medtwin.imaging.volume import ImageFileError, Triple, Volume, triple
from medtwin.record.prepare import uuid5
from medtwin.record.sources import RawUnit
from medtwin.security.write_policy import Writer
from medtwin.store.database import Store
from medtwin.store.images import ImageRepository
from medtwin.store.records import RecordRepository
from medtwin.store.records import resolve_patient as resolve_stored_patient
from medtwin.twin.build import import_unit

#: Opened volumes kept in memory (per process), up to this many voxel bytes (at least the latest one): a CT and
#: its label map for the slice views without opening the CT on every request.
CACHE_BYTES = 512 * 1024 * 1024


class PatientNotFoundError(LookupError):
    """No such patient in the store."""


@dataclass(frozen=True)
class ImportResult:
    patient_id: str
    volume_id: str
    study_id: str
    created: bool
    shape: tuple[int, int, int]
    spacing_mm: Triple
    frame: str
    raw_bytes: int
    stored_bytes: int
    series_uid: str
    modality: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_path(path: Path) -> Volume:
    """A volume from a NIfTI file (``.nii``/``.nii.gz``) or DICOM (a folder, a zip, one file)."""
    if path.is_file() and nifti.is_nifti_name(path.name):
        return nifti.read_nifti_path(path)
    return dicom.read_dicom_path(path)


def read_upload(name: str, blob: bytes) -> Volume:
    """A volume from uploaded bytes: NIfTI by its name, a zip of DICOM files, or one DICOM file."""
    if nifti.is_nifti_name(name):
        return nifti.read_nifti(blob, name)
    if blob[:4] == b"PK\x03\x04" or name.lower().endswith(".zip"):
        return dicom.read_dicom(dicom.zip_sources(blob, name), name)
    if len(blob) >= 132 and blob[128:132] == b"DICM":
        return dicom.read_dicom([(name, blob)], name)
    raise ImageFileError(name, "file", "not a .nii/.nii.gz, a zip of DICOM files or a DICOM file")


def describe(volume: Volume) -> dict[str, Any]:
    """What is stored beside the link: geometry, units, labels and provenance."""
    return {"shape": list(volume.shape), "spacing_mm": [float(s) for s in volume.spacing_mm],
            "affine": volume.affine.tolist(), "frame": volume.frame, "units": volume.units,
            "dtype": np.asarray(volume.data).dtype.name,
            "labels": {str(k): v for k, v in volume.labels.items()}, "provenance": dict(volume.meta)}


def resolve_patient(store: Store, key: str) -> str:
    found = resolve_stored_patient(store, key)
    if found is None:
        raise PatientNotFoundError(key)
    return found


def _store_volume(store: Store, patient_id: str, volume: Volume, actor: str,
                  now: datetime) -> tuple[str, bool, int, int, str]:
    content_hash, raw_bytes = storage.content_hash(volume), storage.raw_size(volume)
    with store.connect() as connection:
        images = ImageRepository(connection, store.codec)
        volume_id = images.address(content_hash)
        blob = None if images.has_blob(volume_id) else storage.compress(volume)  # compress only what is new
    with store.begin() as connection:
        images = ImageRepository(connection, store.codec)
        if blob is not None:
            images.put_blob(volume_id, blob)
        meta = {**describe(volume), "content_hash": content_hash}
        created = images.link(patient_id, volume_id, meta, raw_bytes=raw_bytes, now=now, actor=actor)
        stored = images.stored_size(volume_id)
    return volume_id, created, raw_bytes, stored, content_hash


def _unlink(store: Store, patient_id: str, volume_id: str) -> None:
    with store.begin() as connection:
        ImageRepository(connection, store.codec).unlink(patient_id, volume_id)


def _link_study(store: Store, patient_id: str, volume: Volume, volume_id: str, actor: str,
                writer: Writer | None) -> str:
    """Create or update the patient's ImagingStudy so it lists this volume; returns its id.

    A new one is POSTed in a transaction (the record chooses its id from the ``fullUrl``: a writer limited to
    their patients may not choose ids), an existing one updated by its id."""
    full_url = study.study_full_url(patient_id, study.study_uid_of(volume.meta, volume_id))
    study_id = uuid5(full_url)  # the id the record derives for an entry POSTed under this fullUrl
    with store.connect() as connection:
        existing = RecordRepository(connection, store.codec).get("ImagingStudy", study_id)
    resource = study.imaging_study(patient_id, volume.meta, volume_id, existing)
    source = f"imaging:{Path(volume.meta.get('source', 'volume')).name}"
    if existing is None:
        unit: Any = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": "ImagingStudy"}}]}
    elif resource != _bare(existing):
        unit = resource
    else:
        unit = None
    if unit is not None:
        report = import_unit(store, RawUnit(source, "json", orjson.loads(orjson.dumps(unit))), actor=actor,
                             writer=writer)
        if report.error is not None:
            raise report.error
    with store.connect() as connection:
        stored = RecordRepository(connection, store.codec).get("ImagingStudy", study_id)
    if stored is None or stored.get("subject", {}).get("reference") != f"Patient/{patient_id}":
        raise ImageFileError(source, "ImagingStudy", f"was not stored as ImagingStudy/{study_id} of the patient")
    with store.begin() as connection:
        ImageRepository(connection, store.codec).set_study(patient_id, volume_id, study_id)
    return study_id


def _bare(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in ("meta", "text")}


def _as_derived(store: Store, patient_id: str, volume: Volume, derived_from: str) -> Volume:
    """``volume`` as a series of its own in the study of the patient's volume ``derived_from`` (a label map
    from a CT keeps the CT's geometry and study, not its series)."""
    source = volume_link(store, patient_id, derived_from)
    if source is None:
        raise ImageFileError(derived_from, "derived_from", "the patient has no such volume")
    with store.connect() as connection:
        content_hash = storage.content_hash(volume)
        volume_id = ImageRepository(connection, store.codec).address(content_hash)
    origin = source["meta"].get("provenance", {})
    meta = {k: v for k, v in volume.meta.items() if k not in ("series_uid", "instances", "series_number")}
    meta.update({"study_uid": study.study_uid_of(origin, derived_from), "derived_from": derived_from,
                 "series_uid": study.derived_uid("series", volume_id), "instances": "1",
                 "modality": "SEG" if volume.units == "label" else "OT"})
    for key in ("study_date", "study_time", "frame_of_reference_uid"):
        if key in origin:
            meta[key] = origin[key]
    return Volume(volume.data, volume.affine, volume.frame, volume.units, dict(volume.labels), meta)


def import_volume(store: Store, patient_id: str, volume: Volume, *, actor: str = "system",
                  writer: Writer | None = None, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                  derived_from: str | None = None) -> ImportResult:
    """Store ``volume`` for the (stored) patient and link it to their ImagingStudy; see the module docstring.
    ``derived_from``: the id of the patient's volume this one was computed from (a label map, a distance map):
    it becomes its own series (SEG for labels) in that volume's study."""
    if derived_from is not None:
        volume = _as_derived(store, patient_id, volume, derived_from)
    volume_id, created, raw_bytes, stored, _ = _store_volume(store, patient_id, volume, actor, clock())
    try:
        study_id = _link_study(store, patient_id, volume, volume_id, actor, writer)
    except BaseException:
        if created:
            _unlink(store, patient_id, volume_id)
        raise
    return ImportResult(patient_id, volume_id, study_id, created, volume.shape, triple(volume.spacing_mm),
                        volume.frame, raw_bytes, stored, study.series_uid_of(volume.meta, volume_id),
                        volume.meta.get("modality", "OT"))


def import_path(store: Store, patient_key: str, path: Path, *, actor: str = "system") -> ImportResult:
    """``medtwin imaging import``: resolve the patient, read the file(s), import (trusted local writer)."""
    patient_id = resolve_patient(store, patient_key)
    try:
        volume = read_path(path)
    except zipfile.BadZipFile as error:
        raise ImageFileError(str(path), "zip", str(error)) from None
    return import_volume(store, patient_id, volume, actor=actor)


def volumes(store: Store, patient_id: str) -> list[dict[str, Any]]:
    with store.connect() as connection:
        return ImageRepository(connection, store.codec).volumes(patient_id)


def volume_link(store: Store, patient_id: str, volume_id: str) -> dict[str, Any] | None:
    with store.connect() as connection:
        return ImageRepository(connection, store.codec).volume(patient_id, volume_id)


_cache: OrderedDict[tuple[str, str], Volume] = OrderedDict()
_cache_lock = threading.Lock()


def load_volume(store: Store, patient_id: str, volume_id: str) -> Volume | None:
    """The patient's volume (None when this patient has no such volume: missing and not theirs look alike)."""
    link = volume_link(store, patient_id, volume_id)
    if link is None:
        return None
    key = (store.url, volume_id)  # the address is keyed by the store's key ring: same address, same voxels
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    with store.connect() as connection:
        blob = ImageRepository(connection, store.codec).blob(volume_id)
    if blob is None:
        return None
    meta = link["meta"]
    volume = storage.unpack(blob, meta["content_hash"], {k: str(v) for k, v in meta.get("provenance", {}).items()})
    with _cache_lock:
        _cache[key] = volume
        while len(_cache) > 1 and sum(int(np.asarray(v.data).nbytes) for v in _cache.values()) > CACHE_BYTES:
            _cache.popitem(last=False)
    return volume
