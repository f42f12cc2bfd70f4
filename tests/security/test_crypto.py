from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from medtwin.config import Settings
from medtwin.security.crypto import (
    AesGcmCodec,
    CryptoError,
    KeyRing,
    KeyRingMissingError,
    key_ids_in_use,
    load_keyring,
    rotate_keys,
)
from medtwin.store.database import Store
from medtwin.store.schema import metadata, resources


def test_seal_open_round_trip_and_blob_format(codec: AesGcmCodec, keyring: KeyRing) -> None:
    secret = b'{"name":[{"family":"Jerde200"}]}'
    blob = codec.seal(secret)
    assert b"Jerde200" not in blob
    assert blob.startswith(b"MTE1")
    assert codec.key_id_of(blob) == keyring.active
    assert codec.open(blob) == secret
    assert codec.seal(secret) != blob  # fresh nonce every time


def test_tampered_or_foreign_blobs_are_refused(codec: AesGcmCodec) -> None:
    blob = bytearray(codec.seal(b"hello"))
    blob[-1] ^= 1
    with pytest.raises(CryptoError, match="failed authentication"):
        codec.open(bytes(blob))
    with pytest.raises(CryptoError, match="not in the key ring"):
        AesGcmCodec(KeyRing.generate()).open(codec.seal(b"x"))
    with pytest.raises(CryptoError, match="not sealed"):
        codec.open(b'{"plain": true}')


def test_blind_index_is_keyed_and_stable_across_rotation(keyring: KeyRing) -> None:
    codec = AesGcmCodec(keyring)
    rotated = AesGcmCodec(keyring.with_new_active_key())
    value = "http://hospital.smarthealthit.org|53917de0"
    assert codec.blind(value) == rotated.blind(value)
    assert codec.blind(value) != AesGcmCodec(KeyRing.generate()).blind(value)
    assert len(codec.blind(value)) == 64


def test_keyring_file_round_trip_and_permissions(tmp_path: Path, keyring: KeyRing) -> None:
    path = tmp_path / "keys" / "ring.json"
    keyring.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert KeyRing.load(path) == keyring


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda d: d.update(active="nope"), "active"),
    (lambda d: d.update(index_key="!!"), "index_key"),
    (lambda d: d.update(token_key="AAAA"), "token_key"),
    (lambda d: d.update(keys={}), "keys"),
    (lambda d: d.update(version=7), "version"),
])
def test_bad_keyring_names_the_field(keyring: KeyRing, mutate, field: str) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(keyring.to_json())
    mutate(data)
    with pytest.raises(CryptoError, match=field):
        KeyRing.from_json(json.dumps(data))


def test_server_refuses_without_key_except_demo(tmp_path: Path, keyring: KeyRing) -> None:
    with pytest.raises(KeyRingMissingError, match="MEDTWIN_KEY_FILE"):
        load_keyring(Settings(data_dir=tmp_path))
    demo = load_keyring(Settings(data_dir=tmp_path, demo=True))
    assert (tmp_path / "keyring.json").exists()
    assert load_keyring(Settings(data_dir=tmp_path, demo=True)) == demo  # reused, not regenerated
    assert load_keyring(Settings(data_dir=tmp_path, keyring=keyring.to_json())) == keyring
    with pytest.raises(KeyRingMissingError, match="cannot read key file"):
        load_keyring(Settings(data_dir=tmp_path, key_file=tmp_path / "missing.json"))


def _put(store: Store, n: int) -> None:
    from datetime import UTC, datetime
    with store.begin() as conn:
        for i in range(n):
            body = json.dumps({"resourceType": "Patient", "id": f"p{i}", "name": [{"family": f"Secret{i}"}]})
            conn.execute(insert(resources).values(
                resource_type="Patient", id=f"p{i}", patient_id=f"p{i}", version=1,
                last_updated=datetime.now(UTC), content_hash="0" * 64, content=store.codec.seal(body.encode())))


def test_rotate_reencrypts_everything_and_retires_old_key(store: Store, tmp_path: Path, keyring: KeyRing) -> None:
    key_file = tmp_path / "ring.json"
    keyring.save(key_file)
    _put(store, 7)
    report = rotate_keys(store, key_file)
    assert report.blobs_rewritten["resources.content"] == 7
    ring = KeyRing.load(key_file)
    assert ring.active == report.new_key_id != keyring.active
    assert keyring.active not in ring.keys  # no blob uses it any more
    codec = AesGcmCodec(ring)
    with store.connect() as conn:
        assert key_ids_in_use(conn, codec, metadata.tables.values()) == {ring.active: 7}
        bodies = [json.loads(codec.open(b)) for (b,) in conn.execute(select(resources.c.content))]
    assert sorted(b["name"][0]["family"] for b in bodies) == [f"Secret{i}" for i in range(7)]
    with pytest.raises(CryptoError):  # the old ring can no longer read the data
        AesGcmCodec(keyring).open(conn_blob(store))


def conn_blob(store: Store) -> bytes:
    with store.connect() as conn:
        return bytes(conn.execute(select(resources.c.content)).scalars().first())


def test_failed_rotation_keeps_data_readable(sqlite_store: Store, tmp_path: Path, keyring: KeyRing) -> None:
    key_file = tmp_path / "ring.json"
    keyring.save(key_file)
    _put(sqlite_store, 3)
    with sqlite_store.begin() as conn:  # one blob that cannot be opened makes the rotation fail
        conn.execute(resources.update().where(resources.c.id == "p2").values(content=b"MTE1\x03bad" + b"\0" * 40))
    with pytest.raises(CryptoError):
        rotate_keys(sqlite_store, key_file)
    ring = KeyRing.load(key_file)  # the new key is in the file, the old one kept
    assert keyring.active in ring.keys
    with sqlite_store.connect() as conn:
        blob = conn.execute(select(resources.c.content).where(resources.c.id == "p0")).scalar_one()
    assert AesGcmCodec(ring).key_id_of(blob) == keyring.active  # nothing was rewritten
    assert json.loads(AesGcmCodec(ring).open(blob))["id"] == "p0"


def test_audit_keys_round_trip_and_a_ring_without_them_gets_a_stable_derived_key() -> None:
    ring = KeyRing.generate().with_new_audit_key()
    again = KeyRing.from_json(ring.to_json())
    assert again.audit_keys == ring.audit_keys and again.audit_active == ring.audit_active
    assert len(ring.audit_keys) == 2 and ring.audit_active.startswith("a")
    old = json.loads(ring.to_json())
    del old["audit_keys"], old["audit_active"]  # a key ring file written before audit keys existed
    first, second = KeyRing.from_json(json.dumps(old)), KeyRing.from_json(json.dumps(old))
    assert first.audit_active == "a-derived" and first.audit_keys == second.audit_keys
    assert first.audit_keys["a-derived"] not in (ring.token_key, ring.index_key)
    old["audit_keys"], old["audit_active"] = {"a1": old["index_key"]}, "a2"
    with pytest.raises(CryptoError, match="audit_active"):
        KeyRing.from_json(json.dumps(old))
