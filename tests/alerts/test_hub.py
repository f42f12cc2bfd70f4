"""The event hub: thread-safe publish, visibility, bounded buffers that lose the oldest, wake-ups."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime

import orjson

from medtwin.alerts.hub import EventHub, forecast_publisher, samples_publisher
from medtwin.vocab import GlucoseForecast, Sample

T0 = datetime(2025, 3, 1, tzinfo=UTC)


def test_events_reach_only_subscribers_who_may_see_the_patient() -> None:
    async def main() -> None:
        hub = EventHub(start_id=0)
        everyone = hub.subscribe(can_see=lambda p: True)
        own_only = hub.subscribe(can_see=lambda p: p == "own")
        filtered = hub.subscribe(can_see=lambda p: True, patients=["other"], types=["alert"])
        hub.publish("alert", "own", {"n": 1})
        hub.publish("samples", "other", {"n": 2})
        hub.publish("alert", "other", {"n": 3})
        got = [await everyone.get(0.5) for _ in range(3)]
        assert [e.data["n"] for e in got if e] == [1, 2, 3]
        assert [e.id for e in got if e] == [1, 2, 3]
        first = await own_only.get(0.5)
        assert first is not None and first.patient_id == "own" and await own_only.get(0.05) is None
        only = await filtered.get(0.5)
        assert only is not None and only.data == {"n": 3} and await filtered.get(0.05) is None
        envelope = orjson.loads(only.json)
        assert envelope["type"] == "alert" and envelope["patient_id"] == "other" and envelope["id"] == 3
        assert only.sse().startswith(b"id: 3\nevent: alert\ndata: {") and only.sse().endswith(b"\n\n")
        own_only.close()
        assert hub.subscriber_count == 2 and await own_only.get(0.05) is None

    asyncio.run(main())


def test_publish_from_threads_wakes_the_loop_and_a_slow_subscriber_loses_the_oldest() -> None:
    async def main() -> None:
        hub = EventHub(queue_size=10, start_id=0)
        fast = hub.subscribe(can_see=lambda p: True, queue_size=5000)
        slow = hub.subscribe(can_see=lambda p: True)

        def burst(offset: int) -> None:
            for i in range(1000):
                hub.publish("samples", "p", {"i": offset + i})

        threads = [threading.Thread(target=burst, args=(k * 1000,)) for k in range(4)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        publish_seconds = time.perf_counter() - started
        received, ids = [], []
        while (event := await fast.get(0.2)) is not None:
            received.append(event.data["i"])
            ids.append(event.id)
        assert sorted(received) == list(range(4000))  # nothing lost when the buffer is large enough
        assert ids == list(range(1, 4001))  # in id order, whatever thread published
        kept = []
        while (event := await slow.get(0.05)) is not None:
            kept.append(event.id)
        assert kept == list(range(3991, 4001))  # the newest 10
        assert slow.dropped == 3990 and slow.take_gap() == 3990 and slow.take_gap() == 0
        assert publish_seconds < 2.0  # never blocked by the slow subscriber

    asyncio.run(main())


def test_a_waiting_subscriber_wakes_on_a_publish_from_another_thread() -> None:
    async def main() -> None:
        hub = EventHub()
        sub = hub.subscribe(can_see=lambda p: True)
        timer = threading.Timer(0.05, lambda: hub.publish("alert", "p", {"x": 1}))
        timer.start()
        started = time.perf_counter()
        event = await sub.get(5.0)
        assert event is not None and event.data == {"x": 1}
        assert time.perf_counter() - started < 1.0
        hub.close()
        assert await sub.get(1.0) is None and hub.subscriber_count == 0

    asyncio.run(main())


def test_pipeline_and_forecast_publishers() -> None:
    async def main() -> None:
        hub = EventHub()
        sub = hub.subscribe(can_see=lambda p: True)
        samples = [Sample(p, "glucose", T0, v, "mg/dL", v, "mg/dL", "cgm", "http", f"{p}{v}")
                   for p, v in (("a", 100.0), ("b", 90.0), ("a", 95.0))]
        samples_publisher(hub)(samples)
        first, second = await sub.get(0.5), await sub.get(0.5)
        assert first is not None and first.patient_id == "a" and [s["value"] for s in first.data["samples"]] == [
            100.0, 95.0]
        assert second is not None and second.patient_id == "b" and len(second.data["samples"]) == 1
        forecast = GlucoseForecast(
            patient_id="a", issued_at=T0, glucose_now_mg_dl=100.0, horizons_min=(5, 10), mean_mg_dl=(98.0, 96.0),
            lower80_mg_dl=(90.0, 88.0), upper80_mg_dl=(106.0, 104.0), lower95_mg_dl=(85.0, 80.0),
            upper95_mg_dl=(111.0, 112.0), insulin_sensitivity_ratio=1.1, twin_version=3)
        forecast_publisher(hub)(forecast)
        third = await sub.get(0.5)
        assert third is not None and third.type == "forecast" and third.data["mean_mg_dl"] == [98.0, 96.0]
        assert third.data["issued_at"] == "2025-03-01T00:00:00Z" and third.data["twin_version"] == 3

    asyncio.run(main())


def test_subscriptions_with_a_patient_set_are_indexed_and_can_change_their_set() -> None:
    async def main() -> None:
        hub = EventHub()
        team = hub.subscribe(can_see=lambda p: True, patients=["a", "b"])
        wide = hub.subscribe(can_see=lambda p: True)
        assert set(hub._by_patient) == {"a", "b"} and hub._wide == (wide,)
        hub.publish("samples", "c", {})
        assert await team.get(0.05) is None and (await wide.get(0.5)) is not None
        hub.set_patients(team, ["c"])
        hub.publish("samples", "a", {})
        hub.publish("samples", "c", {"to": "team"})
        got = await team.get(0.5)
        assert got is not None and got.data == {"to": "team"} and await team.get(0.05) is None
        team.close()
        assert hub._by_patient == {} and hub.subscriber_count == 1

    asyncio.run(main())


def test_a_reconnecting_subscriber_gets_the_retained_events_after_its_last_id() -> None:
    async def main() -> None:
        hub = EventHub(replay_alerts=3, replay_other=4)
        assert hub.first_id > 1_700_000_000_000_000  # ids outlive a restart: epoch ms x 1000
        events = [hub.publish("alert" if i % 2 else "samples", "a" if i < 6 else "b", {"i": i}) for i in range(8)]
        # alerts kept: i = 3, 5, 7; others kept: i = 0, 2, 4, 6 (none evicted yet)
        resumed = hub.subscribe(can_see=lambda p: p == "a", after_id=events[2].id)
        got = [e.data["i"] for e in [await resumed.get(0.1) for _ in range(4)] if e is not None]
        assert got == [3, 4, 5] and resumed.take_gap() == 0  # in id order; patient b's events not replayed
        alerts_only = hub.subscribe(can_see=lambda p: True, types=["alert"], after_id=events[0].id)
        got = [e.data["i"] for e in [await alerts_only.get(0.1) for _ in range(4)] if e is not None]
        assert got == [3, 5, 7] and alerts_only.take_gap() == 1  # alert i = 1 was evicted: a gap
        stale = hub.subscribe(can_see=lambda p: True, after_id=12)  # an id of an earlier process
        assert stale.take_gap() == 1
        hub.publish("alert", "a", {"i": 8})
        assert (await resumed.get(0.5)).data == {"i": 8}  # type: ignore[union-attr]  # then live

    asyncio.run(main())


def test_samples_nobody_watches_are_not_built_but_a_reconnecting_reader_learns_of_the_gap() -> None:
    async def main() -> None:
        hub = EventHub(start_id=0)
        watcher = hub.subscribe(can_see=lambda p: True, patients=["watched"])
        assert hub.has_audience("watched") and not hub.has_audience("quiet")
        samples = [Sample(p, "heart_rate", T0, 70.0, "/min", 70.0, "/min", "hr", "http", p)
                   for p in ("quiet", "watched")]
        samples_publisher(hub)(samples)
        assert hub.published == 1  # only the watched patient's event was built
        got = await watcher.get(0.5)
        assert got is not None and got.patient_id == "watched" and got.id == 2  # id 1 went to the skipped one
        late = hub.subscribe(can_see=lambda p: True, after_id=0)
        assert late.take_gap() == 1  # it may have missed the quiet patient's samples: re-read
        current = hub.subscribe(can_see=lambda p: True, after_id=got.id)
        assert current.take_gap() == 0

    asyncio.run(main())
