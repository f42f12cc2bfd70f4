"""The demo hospital's ADT feed: the engine's visits as HL7 ADT that the census accepts whole, the census it
builds equals the engine's own at "now", and the app started with the feed (as ``medtwin demo`` starts it)
fills the live census over its MLLP listener."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from tests.hospital.shapes import network

from medtwin.api.app import create_app
from medtwin.config import Settings
from medtwin.hospital.demo_feed import DemoFeed, FeedClock
from medtwin.hospital.engine import Engine
from medtwin.hospital.live import LiveHospital
from medtwin.hospital.model import demo_model, parse_model
from medtwin.hospital.sampling import arrivals
from medtwin.security.crypto import AesGcmCodec, KeyRing
from medtwin.store.database import Store

START = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)  # a Monday


class StepClock:
    def __init__(self, t: datetime) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t


def test_feed_history_builds_the_engines_census_at_now() -> None:
    model = parse_model(network())
    app_clock = StepClock(START)
    clock = FeedClock(app_clock, 1.0, wall=lambda: START)
    live = LiveHospital(model, None, clock)
    feed = DemoFeed(model, lambda ms: [live.handle(m) for m in ms], clock, history_weeks=2, ahead_h=48, seed=3)
    feed.prepare()
    feed.send(feed.history)
    snap = live.snapshot()
    assert snap["messages"]["refused"] == 0 and snap["messages"]["accepted"] == len(feed.history) > 50
    # the engine's own census at now: patients who joined a unit and had not left it (same seed, same run)
    now_h = 2 * 168 + 9.5
    log = Engine(model, arrivals(model, 3, 0, now_h + 48), now_h + 48).run()
    joined = log.t_join <= now_h
    left = np.nan_to_num(log.t_end, nan=np.inf) <= now_h
    in_unit = joined & ~left & ~log.lost[:, None]
    expected = {u.name: int(np.sum(in_unit & (log.patients.path == i))) for i, u in enumerate(model.units)}
    assert {u["unit"]: u["patients"] for u in snap["units"]} == expected
    # later messages go out as the clock passes their time, not before
    app_clock.t = START + timedelta(hours=6)
    due = [m for t, m in feed.ahead if t <= app_clock.t]
    assert 0 < len(due) < len(feed.ahead)
    assert clock() == START + timedelta(hours=6)


def test_app_with_the_demo_feed_fills_the_live_census(tmp_path: Path) -> None:
    ring = KeyRing.generate()
    store = Store(f"sqlite:///{tmp_path / 'd.db'}", AesGcmCodec(ring))
    store.migrate()
    settings = Settings(data_dir=tmp_path, hospital_mllp_port=0, hospital_demo_feed_speed=600.0)
    with TestClient(create_app(settings, store=store, keyring=ring)) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        live = services.hospital
        feed = next(x for x in services.listeners if isinstance(x, DemoFeed))
        # the history goes over MLLP message by message, then the forecast loop is compiled (or loaded from
        # numba's cache: a fresh CI clone compiles it here): a condition, polled, with room for a loaded machine
        deadline = time.monotonic() + 120
        while feed.sent == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert feed.sent > 0, "the feed did not finish sending its history"
        first = live.snapshot()
        assert first["messages"]["accepted"] >= len(feed.history) > 500 and first["messages"]["refused"] == 0
        assert first["units"][[u.name for u in demo_model().units].index("ward")]["patients"] > 50
        version = first["version"]
        deadline = time.monotonic() + 60  # 600x: a simulated hour every 6 s
        while live.version == version and time.monotonic() < deadline:
            time.sleep(0.1)
        assert live.version > version, "the feed sent nothing after its history"
        devices = {d["device"]: d for d in live.equipment.status()["devices"]}
        assert devices["vent-1"]["status"] == "urgent" and devices["vent-2"]["status"] == "ok"
        assert devices["ct-1"]["samples"] >= 240  # 60 days every 6 h
    store.dispose()
