"""Reading units from files: order, read-ahead in a background thread, errors in their place."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from medtwin.record.errors import MalformedJsonError
from medtwin.record.sources import ahead, read_units


def _write(folder: Path, name: str, content: bytes) -> None:
    (folder / name).write_bytes(content)


def test_read_ahead_gives_the_same_units_in_the_same_order(tmp_path: Path) -> None:
    for n in range(6):
        _write(tmp_path, f"p{n}.json", b'{"resourceType": "Patient", "id": "p%d"}' % n)
    _write(tmp_path, "hospitalInformation.json", b'{"resourceType": "Organization", "id": "o"}')
    _write(tmp_path, "obs.ndjson", b'{"resourceType": "Basic", "id": "b1"}\n{"resourceType": "Basic", "id": "b2"}\n')
    plain = list(read_units([tmp_path], read_ahead=0))
    ahead_ = list(read_units([tmp_path], read_ahead=2))
    assert [(u.source, u.kind, u.data) for u in ahead_] == [(u.source, u.kind, u.data) for u in plain]
    assert Path(plain[0].source).name == "hospitalInformation.json"  # support files first
    assert plain[1].kind == "ndjson" and len(plain[1].data) == 2


def test_a_malformed_file_is_raised_in_its_place(tmp_path: Path) -> None:
    _write(tmp_path, "a.json", b'{"resourceType": "Patient", "id": "a"}')
    _write(tmp_path, "b.json", b'{"resourceType": ')
    _write(tmp_path, "c.json", b'{"resourceType": "Patient", "id": "c"}')
    units = read_units([tmp_path], read_ahead=1)
    assert next(units).data["id"] == "a"
    with pytest.raises(MalformedJsonError) as info:
        next(units)
    assert info.value.source is not None and info.value.source.endswith("b.json")


def _numbers(produced: list[int], n: int) -> Iterator[int]:
    for i in range(n):
        produced.append(i)
        yield i


def test_stopping_early_stops_the_producer() -> None:
    produced: list[int] = []
    before = threading.active_count()
    items = ahead(_numbers(produced, 1000), depth=2)
    assert [next(items), next(items)] == [0, 1]
    items.close()  # the consumer stops: the thread ends after the item it was producing
    deadline = time.monotonic() + 30
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before
    assert len(produced) <= 2 + 2 + 1  # consumed, queued, the one in hand


def test_producer_errors_reach_the_consumer_after_the_items_before() -> None:
    def failing() -> Iterator[int]:
        yield 1
        raise ValueError("boom")

    items = ahead(failing())
    assert next(items) == 1
    with pytest.raises(ValueError, match="boom"):
        next(items)


class _Tracked:
    """An object a weak reference can watch."""


def test_read_ahead_keeps_no_reference_to_the_item_in_hand() -> None:
    import weakref

    items = ahead(_Tracked() for _ in range(3))
    first = next(items)
    watch = weakref.ref(first)
    del first  # the consumer drops it while the generator is suspended: nothing else holds it
    assert watch() is None
    items.close()
