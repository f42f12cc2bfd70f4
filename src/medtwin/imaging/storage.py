"""The stored form of a volume: canonical bytes, their content hash, and the compressed blob that is sealed.

Canonical bytes (``canonical_bytes``): ``MTVOL1\\n``, one line of JSON with sorted keys (format version, dtype
in little-endian form, shape, affine as JSON numbers (shortest text that reads back exactly), frame, units, labels), then the voxels in
C order, little-endian. Two imports of the same image (same voxels, geometry, units and labels) give the same
bytes whatever file names, folder or zip they came in, so the SHA-256 of these bytes (``content_hash``) names
the volume and a re-import stores nothing new. ``meta`` (provenance: source file, series UID) is not part of
the content; the store keeps it beside the link to the patient.

The blob (``pack``) is the canonical bytes compressed with zlib; ``unpack`` checks the hash on the way back, so
a wrong key, a damaged blob or a wrong address is an error, never a silently different image. Sealing (AES-GCM)
is the store codec's job (``medtwin.store.images``), after compression (sealed bytes do not compress).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from typing import Any

import numpy as np

from medtwin.imaging.volume import FRAMES, Volume, VolumeError

MAGIC = b"MTVOL1\n"
FORMAT_VERSION = 1
COMPRESS_LEVEL = 1  # zlib level 1: CT/MR compress ~2-3x, about 4x faster than level 6 for a few % more bytes


def _canonical_data(volume: Volume) -> np.ndarray[Any, Any]:
    data = np.asarray(volume.data)
    if data.dtype.kind not in "biuf":
        raise VolumeError("data", f"{data.dtype} voxels cannot be stored (need bool, integer or float)")
    return np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<"))


def header_of(volume: Volume) -> dict[str, Any]:
    data = _canonical_data(volume)
    return {"version": FORMAT_VERSION, "dtype": data.dtype.str, "shape": list(volume.shape),
            "affine": [[float(x) + 0.0 for x in row] for row in volume.affine.tolist()],  # + 0.0: no -0.0
            "frame": volume.frame, "units": volume.units,
            "labels": {str(k): v for k, v in sorted(volume.labels.items())}}


def canonical_bytes(volume: Volume) -> bytes:
    header = json.dumps(header_of(volume), sort_keys=True, separators=(",", ":")).encode("ascii")
    return MAGIC + header + b"\n" + _canonical_data(volume).tobytes(order="C")


def content_hash(volume: Volume) -> str:
    """SHA-256 (hex) of the volume's canonical bytes."""
    return hashlib.sha256(canonical_bytes(volume)).hexdigest()


def pack(volume: Volume) -> tuple[str, bytes, int]:
    """(content hash, compressed canonical bytes, size of the canonical bytes)."""
    raw = canonical_bytes(volume)
    return hashlib.sha256(raw).hexdigest(), zlib.compress(raw, COMPRESS_LEVEL), len(raw)


def unpack(blob: bytes, expected_hash: str | None = None, meta: dict[str, str] | None = None) -> Volume:
    """The volume back from :func:`pack`'s blob; ``expected_hash`` is checked when given."""
    try:
        raw = zlib.decompress(blob)
    except zlib.error as error:
        raise VolumeError("blob", f"not a stored volume ({error})") from None
    if expected_hash is not None and hashlib.sha256(raw).hexdigest() != expected_hash:
        raise VolumeError("blob", "content does not match its hash: damaged or not the volume asked for")
    if not raw.startswith(MAGIC):
        raise VolumeError("blob", "not a stored volume (no MTVOL1 header)")
    end = raw.index(b"\n", len(MAGIC))
    header = json.loads(raw[len(MAGIC):end])
    if header.get("version") != FORMAT_VERSION or header.get("frame") not in FRAMES:
        raise VolumeError("blob", f"unknown stored volume format {header.get('version')!r}")
    data = np.frombuffer(raw, dtype=np.dtype(header["dtype"]), offset=end + 1).reshape(header["shape"])
    # read-only voxels: a stored volume is shared (the service caches it); copy to change it
    return Volume(data.astype(data.dtype.newbyteorder("="), copy=False), np.array(header["affine"]), header["frame"],
                  header["units"], {int(k): v for k, v in header["labels"].items()}, dict(meta or {}))
