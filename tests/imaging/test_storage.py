"""The stored form of a volume: canonical bytes and hash, sealed chunks, idempotent import, the ImagingStudy link,
nothing half-stored, key rotation."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from tests.imaging.dicom_factory import Series, ramp

from medtwin.imaging import storage
from medtwin.imaging.dicom import read_dicom
from medtwin.imaging.study import VOLUME_EXTENSION, volume_ids
from medtwin.imaging.volume import ImageFileError, Volume, VolumeError, grid_affine
from medtwin.record.errors import RecordError
from medtwin.record.sources import RawUnit
from medtwin.security.crypto import AesGcmCodec, KeyRing, rotate_keys
from medtwin.security.scopes import parse_scopes
from medtwin.security.write_policy import Writer
from medtwin.store.database import Store
from medtwin.store.images import CHUNK_BYTES, ImageRepository, image_chunks, image_volumes
from medtwin.store.records import RecordRepository
from medtwin.twin import imaging as service
from medtwin.twin.build import import_units


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(["int16", "uint8", "float32", "float64", "int32", "bool"]),
       st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5)), st.sampled_from(["LPS", "RAS"]))
def test_pack_unpack_round_trip(dtype: str, shape: tuple[int, int, int], frame: str) -> None:
    data = (np.arange(np.prod(shape)).reshape(shape) % 7).astype(dtype)
    volume = Volume(data, grid_affine((0.5, 1.25, 3.0), (-1.0, 2.0, 7.5), frame), frame, "HU",  # type: ignore[arg-type]
                    {1: "a", 3: "b"}, {"source": "x"})
    content_hash, blob, raw = storage.pack(volume)
    back = storage.unpack(blob, content_hash)
    assert back.data.dtype == data.dtype and np.array_equal(back.data, data)
    assert np.array_equal(back.affine, volume.affine) and back.frame == frame and back.labels == {1: "a", 3: "b"}
    assert raw == len(storage.canonical_bytes(volume)) and content_hash == hashlib.sha256(
        storage.canonical_bytes(volume)).hexdigest()


def test_hash_ignores_provenance_and_byte_order_but_not_content() -> None:
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    a = Volume(data, np.eye(4), "LPS", meta={"source": "a/dir"})
    b = Volume(data.astype(">i2"), np.eye(4), "LPS", meta={"source": "b.zip"})
    assert storage.content_hash(a) == storage.content_hash(b)
    changed = data.copy()
    changed[1, 2, 3] += 1
    assert storage.content_hash(a) != storage.content_hash(a.with_data(changed))
    assert storage.content_hash(a) != storage.content_hash(a.to_frame("RAS"))  # another affine, another content


def test_damaged_blob_or_wrong_hash_is_an_error() -> None:
    volume = Volume(np.zeros((2, 2, 2), dtype=np.int16), np.eye(4))
    content_hash, blob, _ = storage.pack(volume)
    with pytest.raises(VolumeError) as err:
        storage.unpack(blob, "0" * 64)
    assert err.value.field == "blob"
    with pytest.raises(VolumeError):
        storage.unpack(blob[:-3], content_hash)


@pytest.fixture
def sealed(tmp_path: Path) -> tuple[Store, Path]:
    ring = KeyRing.generate()
    key_file = tmp_path / "keyring.json"
    ring.save(key_file)
    store = Store(f"sqlite:///{tmp_path / 'img.db'}", AesGcmCodec(ring))
    store.migrate()
    assert import_units(store, [RawUnit("p.json", "json", {"resourceType": "Patient", "id": "p1"}),
                                RawUnit("q.json", "json", {"resourceType": "Patient", "id": "p2"})]).ok
    return store, key_file


def _counts(store: Store) -> tuple[int, int]:
    with store.connect() as connection:
        chunks = connection.execute(select(func.count()).select_from(image_chunks)).scalar_one()
        links = connection.execute(select(func.count()).select_from(image_volumes)).scalar_one()
    return int(chunks), int(links)


def test_import_is_sealed_idempotent_and_linked_to_the_imaging_study(sealed: tuple[Store, Path], tmp_path: Path) -> None:
    store, _ = sealed
    series = Series(ramp((64, 64, 20)))
    first = service.import_path(store, "p1", series.write(tmp_path / "a"))
    again = service.import_path(store, "p1", series.write(tmp_path / "b"))
    assert first.created and not again.created and again.volume_id == first.volume_id
    chunks, links = _counts(store)
    assert links == 1 and chunks == -(-len(storage.pack(read_dicom(series.files()))[1]) // CHUNK_BYTES)
    volume = service.load_volume(store, "p1", first.volume_id)
    assert volume is not None and np.array_equal(volume.data, series.values)
    with store.connect() as connection:
        raw = b"".join(r.data for r in connection.execute(select(image_chunks.c.data)))
        study = RecordRepository(connection, store.codec).get("ImagingStudy", first.study_id)
        versions = RecordRepository(connection, store.codec).history("ImagingStudy", first.study_id)
    canonical = storage.canonical_bytes(volume)
    assert canonical[:64] not in raw and b"MTVOL1" not in raw  # sealed at rest
    assert first.stored_bytes < first.raw_bytes
    assert study is not None and study["subject"]["reference"] == "Patient/p1"
    assert study["series"][0]["uid"] == series.series_uid and study["series"][0]["modality"]["code"] == "CT"
    assert study["numberOfInstances"] == 20 and volume_ids(study) == [first.volume_id]
    assert study["identifier"][0]["value"] == f"urn:oid:{series.study_uid}"
    assert len(versions) == 1  # the re-import changed nothing
    assert service.load_volume(store, "p2", first.volume_id) is None  # another patient: not theirs


def test_second_series_and_a_derived_label_map_join_the_study(sealed: tuple[Store, Path]) -> None:
    store, _ = sealed
    ct = Series(ramp())
    pet = Series(ramp((12, 10, 8), seed=3), study_uid=ct.study_uid)
    a = service.import_volume(store, "p1", read_dicom(ct.files()))
    b = service.import_volume(store, "p1", read_dicom(pet.files()))
    assert a.study_id == b.study_id and a.volume_id != b.volume_id
    source = read_dicom(ct.files())
    labels = source.with_data((np.asarray(source.data) > 0).astype(np.uint8), units="label", labels={1: "bone"})
    c = service.import_volume(store, "p1", labels, derived_from=a.volume_id)
    with store.connect() as connection:
        study = RecordRepository(connection, store.codec).get("ImagingStudy", a.study_id)
    assert c.study_id == a.study_id and study is not None and study["numberOfSeries"] == 3
    assert {s["modality"]["code"] for s in study["series"]} == {"CT", "SEG"}
    assert sorted(volume_ids(study)) == sorted([a.volume_id, b.volume_id, c.volume_id])
    assert all(e["url"] == VOLUME_EXTENSION for s in study["series"] for e in s["extension"])
    with pytest.raises(ImageFileError) as err:
        service.import_volume(store, "p2", labels, derived_from=a.volume_id)  # p2 has no such volume
    assert err.value.field == "derived_from"


def test_bad_series_stores_nothing(sealed: tuple[Store, Path], tmp_path: Path) -> None:
    store, _ = sealed
    series = Series(ramp())
    folder = series.write(tmp_path / "gap")
    (folder / "slice004.dcm").unlink()
    with pytest.raises(ImageFileError) as err:
        service.import_path(store, "p1", folder)
    assert err.value.source.endswith("slice005.dcm") and err.value.field == "ImagePositionPatient"
    assert _counts(store) == (0, 0)


def test_refused_imaging_study_removes_the_volume_again(sealed: tuple[Store, Path]) -> None:
    store, _ = sealed
    volume = read_dicom(Series(ramp()).files())
    outsider = Writer("clinician", frozenset({"p2"}), parse_scopes("user/*.cruds"))  # may write p2 only
    with pytest.raises(RecordError) as err:
        service.import_volume(store, "p1", volume, writer=outsider)
    assert err.value.field == "ImagingStudy.subject.reference"  # p1 is invisible to this writer
    assert _counts(store) == (0, 0)
    with store.connect() as connection:
        assert RecordRepository(connection, store.codec).count_by_type("p1").get("ImagingStudy", 0) == 0


def test_key_rotation_reseals_the_chunks(sealed: tuple[Store, Path]) -> None:
    store, key_file = sealed
    result = service.import_volume(store, "p1", read_dicom(Series(ramp()).files()))
    report = rotate_keys(store, key_file)
    assert report.blobs_rewritten["image_chunks.data"] >= 1 and report.blobs_rewritten["image_volumes.meta"] == 1
    rotated = Store(store.url, AesGcmCodec(KeyRing.load(key_file)))
    with rotated.connect() as connection:
        blob = ImageRepository(connection, rotated.codec).blob(result.volume_id)
        link = ImageRepository(connection, rotated.codec).volume("p1", result.volume_id)
    assert blob is not None and link is not None
    back = storage.unpack(blob, link["meta"]["content_hash"])
    assert back.shape == (12, 10, 8)
    rotated.dispose()


def test_store_and_load_on_each_backend(store: Store) -> None:
    """SQLite and PostgreSQL alike (the ``store`` fixture: plain codec)."""
    assert import_units(store, [RawUnit("p.json", "json", {"resourceType": "Patient", "id": "pb"})]).ok
    series = Series(ramp((40, 30, 12)))
    first = service.import_volume(store, "pb", read_dicom(series.files()))
    again = service.import_volume(store, "pb", read_dicom(series.files()[::-1]))
    assert first.created and not again.created and _counts(store)[1] == 1
    loaded = service.load_volume(store, "pb", first.volume_id)
    assert loaded is not None and np.array_equal(loaded.data, series.values)
    assert [v["volume_id"] for v in service.volumes(store, "pb")] == [first.volume_id]
    assert service.volumes(store, "pb")[0]["stored_bytes"] > 0
