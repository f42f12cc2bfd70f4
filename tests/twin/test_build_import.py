"""The import service's collector pause: held while units are imported, restored after, re-entrant."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from medtwin.record.sources import RawUnit
from medtwin.store.database import Store
from medtwin.twin.build import gc_paused, import_units

PATIENT = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Doe"}]}


def test_collector_is_paused_during_import_and_restored_after(sqlite_store: Store) -> None:
    states: list[bool] = []

    def units() -> Iterator[RawUnit]:
        states.append(gc.isenabled())
        yield RawUnit("p.json", "json", dict(PATIENT))
        states.append(gc.isenabled())

    assert gc.isenabled()
    report = import_units(sqlite_store, units(), on_unit=lambda _: states.append(gc.isenabled()))
    assert report.ok and states == [False, False, False]
    assert gc.isenabled()


def test_pause_is_reentrant_and_keeps_a_disabled_collector_disabled() -> None:
    assert gc.isenabled()
    with gc_paused():
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause still holds
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # was off before: stays off
    finally:
        gc.enable()


def test_collector_is_restored_when_the_import_raises(sqlite_store: Store) -> None:
    def units() -> Iterator[RawUnit]:
        yield RawUnit("p.json", "json", dict(PATIENT))
        raise RuntimeError("source went away")

    with pytest.raises(RuntimeError):
        import_units(sqlite_store, units())
    assert gc.isenabled()


def test_units_are_freed_on_the_release_thread(sqlite_store: Store) -> None:
    import threading

    freed_on: list[str] = []

    class Data(dict):  # type: ignore[type-arg]
        def __del__(self) -> None:
            freed_on.append(threading.current_thread().name)

    def units() -> Iterator[RawUnit]:
        for n in range(3):
            yield RawUnit(f"p{n}.json", "json", Data(PATIENT, id=f"p{n}"))

    assert import_units(sqlite_store, units()).ok
    assert freed_on == ["medtwin-release"] * 3
