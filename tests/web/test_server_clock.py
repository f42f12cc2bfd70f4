"""The server's one clock (issue #15 item 6, medtwin.clock): the wall clock until a simulation hands it its
time; then the simulated time, never before the wall clock and never going back; and the demo's fleet thread
hands it the accelerated clock it streams on (cli/fleet.py). No browser: the page's side is in
test_clinician_screens.py."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from medtwin.cli.fleet import FleetPlan, FleetThread
from medtwin.clock import ServerClock

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Wall:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def test_wall_clock_until_simulated_then_the_simulated_time_never_going_back() -> None:
    wall = Wall()
    clock = ServerClock(wall)
    assert clock() == T0 and not clock.simulated and clock.status()["simulated"] is False
    sim = [T0 + timedelta(hours=5)]
    clock.simulate(lambda: sim[0], rate=lambda: 60.0, note="demo")
    assert clock() == T0 + timedelta(hours=5)
    status = clock.status()
    assert status["simulated"] is True and status["rate"] == 60.0 and status["ahead_s"] == 5 * 3600
    sim[0] = T0 + timedelta(hours=4)  # a source that moves back: "now" stays
    assert clock() == T0 + timedelta(hours=5)
    wall.now = T0 + timedelta(hours=6)  # the wall clock passes the simulated time: the wall clock
    assert clock() == T0 + timedelta(hours=6)
    clock.reset()
    wall.now = T0
    assert clock() == T0 and not clock.simulated and clock.status()["rate"] == 1.0


def test_a_naive_source_is_refused() -> None:
    with pytest.raises(ValueError, match="source"):
        ServerClock().simulate(lambda: datetime(2026, 1, 1))


class _Runner:  # the fleet runner's interface, recording the clock it was given
    def __init__(self) -> None:
        self.clock: Any = None

    def backfill(self, until: datetime, stop: Any) -> None:
        pass

    def run(self, clock: Any, stop: Any, duration_s: float | None) -> None:
        self.clock = clock

    def close(self) -> None:
        pass


def test_the_demo_fleet_hands_the_server_its_simulated_time() -> None:
    now = datetime.now(UTC)
    plan = FleetPlan.make(now, speed=60.0, lead=timedelta(0), history=timedelta(hours=1),
                          ahead=timedelta(hours=23))
    server = ServerClock()
    runner = _Runner()
    thread = FleetThread(runner, plan, client=None, wait_for=None, server_clock=server)  # type: ignore[arg-type]
    thread.start()
    assert thread.thread is not None
    thread.thread.join(30)
    assert runner.clock is not None and server.simulated
    # the plan starts on a 5-min tick, so simulated time is behind the wall clock for a few seconds (then
    # "now" is the wall clock), and ahead once 60x has caught up. Each reading is bracketed by the times read
    # just before and after it: at 60x, 20 ms between two reads (a busy machine) is over a simulated second.
    second = timedelta(seconds=1)
    deadline = time.monotonic() + 30
    while True:
        t0, wall0 = time.monotonic(), datetime.now(UTC)
        got = server()
        t1, wall1 = time.monotonic(), datetime.now(UTC)
        assert runner.clock.sim_at(t0) - second <= got <= max(runner.clock.sim_at(t1), wall1) + second
        assert got >= wall0 - second  # never before the wall clock
        if got > wall1 + second:  # caught up: ahead of the wall clock
            break
        assert time.monotonic() < deadline, "the simulated time never got ahead of the wall clock"
        time.sleep(0.1)
    t0 = time.monotonic()
    got = server()
    t1 = time.monotonic()
    assert server.status()["ahead_s"] > 1
    assert runner.clock.sim_at(t0) - second <= got <= runner.clock.sim_at(t1) + second
    assert server.status()["rate"] == 60.0  # still accelerating (the catch-up lasts 23 min)
