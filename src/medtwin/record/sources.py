"""Reading FHIR input from files, folders and request bodies into import units.

A unit is what is imported all-or-nothing: one JSON file (a Bundle or a single resource) or one ndjson
file (Bulk FHIR: one resource per line).
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, Queue
from typing import Any, TypeVar

import orjson

from medtwin.record.errors import RecordError
from medtwin.record.exactjson import loads_or_error

# Files whose names say they hold shared resources (Synthea's hospital/practitioner bundles, Bulk FHIR
# Practitioner.ndjson ...) are imported before the patient files that reference them.
T = TypeVar("T")

_FIRST = ("organization", "location", "practitioner", "hospital", "medication.", "patient.")


@dataclass(frozen=True, slots=True)
class RawUnit:
    source: str
    kind: str  # "json" | "ndjson"
    data: Any  # dict for json, list[dict] for ndjson


def parse_json_bytes(content: bytes, *, source: str) -> Any:
    """One JSON document, decimals kept as written (``record.exactjson``)."""
    return loads_or_error(content, source=source)


def parse_ndjson_bytes(content: bytes, *, source: str) -> list[Any]:
    resources: list[Any] = []
    for number, line in enumerate(content.splitlines(), start=1):
        if line.strip():
            resources.append(loads_or_error(line, source=source, line=number))
    return resources


def unit_from_bytes(content: bytes, *, source: str, ndjson: bool | None = None) -> RawUnit:
    """Parse a request body or file content; ``ndjson=None`` guesses from the content."""
    if ndjson is None:
        ndjson = source.endswith((".ndjson", ".jsonl")) or _looks_like_ndjson(content)
    if ndjson:
        return RawUnit(source, "ndjson", parse_ndjson_bytes(content, source=source))
    return RawUnit(source, "json", parse_json_bytes(content, source=source))


def _looks_like_ndjson(content: bytes) -> bool:
    stripped = content.strip()
    if b"\n" not in stripped:
        return False
    first = stripped.split(b"\n", 1)[0].strip()
    try:
        orjson.loads(first)
    except orjson.JSONDecodeError:
        return False
    return True


def discover(paths: list[Path]) -> list[Path]:
    """Expand folders to their .json/.ndjson files; shared-resource files first, then by name."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(p for p in path.rglob("*") if p.is_file() and p.suffix in (".json", ".ndjson", ".jsonl")
                         and p.name != "MANIFEST.json")
        elif path.exists():
            files.append(path)
        else:
            raise RecordError("no such file or folder", source=str(path))
    return sorted(dict.fromkeys(files), key=_order_key)


def _order_key(path: Path) -> tuple[int, str]:
    name = path.name.lower()
    for rank, prefix in enumerate(_FIRST):
        if name.startswith(prefix):
            return rank, name
    return len(_FIRST), name


def read_units(paths: list[Path], *, read_ahead: int = 1) -> Iterator[RawUnit]:
    """The units of ``paths`` in import order (see :func:`discover`).

    With ``read_ahead`` > 0 the next files are read and parsed in a background thread, at most that many
    ahead of the caller, while the caller imports the current one: parsing holds the GIL, but SQLite
    releases it while it writes and commits, so the two overlap on a second core. Errors (a malformed
    file) are raised at the same place in the sequence as without read-ahead."""
    units = (unit_from_bytes(path.read_bytes(), source=str(path)) for path in discover(paths))
    if read_ahead <= 0:
        yield from units
    else:
        yield from ahead(units, read_ahead)


_ITEM, _END, _ERROR = 0, 1, 2


def ahead(items: Iterable[T], depth: int = 1) -> Generator[T, None, None]:
    """Iterate ``items`` in a background thread, keeping up to ``depth`` of them ready (plus the one being
    produced). An exception of the producer is raised to the consumer in its place; when the consumer stops
    early the producer stops after the item it is producing."""
    queue: Queue[list[Any]] = Queue(maxsize=max(depth, 1))
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                queue.put([_ITEM, item])
                del item  # the consumer holds the only reference: it decides where the item is freed
                if stop.is_set():
                    return
            queue.put([_END, None])
        except BaseException as error:  # handed to the consumer, raised there
            queue.put([_ERROR, error])

    thread = threading.Thread(target=produce, name="medtwin-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            got = queue.get()
            if got[0] == _ITEM:
                yield got.pop()  # keeps no reference while the consumer works on it
            elif got[0] == _END:
                return
            else:
                raise got[1]
    finally:
        stop.set()
        while thread.is_alive():  # let a producer blocked on a full queue finish
            with suppress(Empty):
                queue.get(timeout=0.05)
