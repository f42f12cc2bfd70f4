"""`medtwin fleet` and the demo's fleet against a real server (uvicorn in a thread, the real HTTP path)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import uvicorn
from sqlalchemy import select
from typer.testing import CliRunner

from medtwin.api.app import create_app
from medtwin.cli import app
from medtwin.cli.fleet import FleetPlan, prepare_demo_fleet
from medtwin.clock import ServerClock
from medtwin.config import Settings
from medtwin.record.sources import RawUnit
from medtwin.security.crypto import AesGcmCodec, KeyRing
from medtwin.store.database import Store
from medtwin.store.schema import samples
from medtwin.stream.fleet import TICK_MIN
from medtwin.synthetic import generate_bundles
from medtwin.twin.build import import_units

runner = CliRunner()


@dataclass
class Server:
    url: str
    port: int
    settings: Settings
    store: Store
    env: dict[str, str]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    ring = KeyRing.generate()
    key_file = tmp_path / "keyring.json"
    ring.save(key_file)
    settings = Settings(data_dir=tmp_path / "data", key_file=key_file, rate_limit_per_minute=100_000)
    settings.data_dir.mkdir()
    store = Store.from_settings(settings, AesGcmCodec(ring))
    store.migrate()
    port = _free_port()
    uv = uvicorn.Server(uvicorn.Config(create_app(settings, store=store, keyring=ring), host="127.0.0.1", port=port,
                                       log_level="warning", access_log=False))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not uv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    env = {"MEDTWIN_DATA_DIR": str(settings.data_dir), "MEDTWIN_KEY_FILE": str(key_file), "COLUMNS": "200"}
    try:
        yield Server(f"http://127.0.0.1:{port}", port, settings, store, env)
    finally:
        uv.should_exit = True
        thread.join(10)
        store.dispose()


def _rows(store: Store) -> list[tuple[str, str, datetime, str | None, str | None]]:
    with store.connect() as connection:
        return [(r.patient_id, r.metric, r.time.replace(tzinfo=UTC), r.device, r.source) for r in connection.execute(
            select(samples.c.patient_id, samples.c.metric, samples.c.time, samples.c.device, samples.c.source))]


def test_fleet_command_streams_history_then_accelerated_live_ticks(server: Server) -> None:
    before = datetime.now(UTC)
    result = runner.invoke(app, ["fleet", "--url", server.url, "--patients", "3", "--speed", "3600",
                                 "--duration", "2", "--history-hours", "1", "--lead-hours", "24",
                                 "--archetypes", "type1_diabetes,healthy_adult", "--workers", "2"], env=server.env)
    after = datetime.now(UTC)
    assert result.exit_code == 0, result.output
    assert "fleet: 3 patients, 10 devices" in result.output and "failed 0" in result.output
    rows = _rows(server.store)
    assert {r[4] for r in rows} == {"http"}
    assert {r[3] for r in rows} == {"fleet-cgm", "fleet-pump", "fleet-wearable", "fleet-bp-cuff"}
    glucose = sorted({r[2] for r in rows if r[1] == "glucose"})
    assert len({r[0] for r in rows if r[1] == "glucose"}) == 2  # patients 1 and 3 have type 1 diabetes
    # history: [now - 25 h, now - 24 h) at once; then 2 s at 3600x = up to 2 simulated hours
    origin = glucose[0]
    assert before - timedelta(hours=25, minutes=5) <= origin <= after - timedelta(hours=25)
    live = [t for t in glucose if t >= origin + timedelta(hours=1)]
    assert 6 <= len(live) <= 2 * 60 // TICK_MIN
    assert glucose[-1] < after - timedelta(hours=21)  # behind the present, as the clock promises
    assert all(b - a == timedelta(minutes=TICK_MIN) for a, b in zip(glucose, glucose[1:], strict=False))
    # running again reuses the patients and their record; only the keys are new
    again = runner.invoke(app, ["fleet", "--url", server.url, "--patients", "3", "--duration", "0",
                                "--archetypes", "type1_diabetes,healthy_adult"], env=server.env)
    assert again.exit_code == 0, again.output
    assert len({r[0] for r in _rows(server.store)}) == 3


def test_demo_plan_sends_the_last_day_then_runs_ahead_of_the_clock_and_continues_a_previous_run() -> None:
    now = datetime(2026, 3, 1, 12, 2, 30, tzinfo=UTC)
    plan = FleetPlan.make(now, speed=60, lead=timedelta(0), history=timedelta(hours=24), ahead=timedelta(hours=23))
    assert plan.live_start == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert plan.origin == plan.live_start - timedelta(hours=24)
    assert plan.live_start + plan.headroom == now + timedelta(hours=23)
    clock = plan.clock(0.0)
    assert clock.sim_at(3600.0) == now + timedelta(hours=24)  # 23 h ahead, then real time
    later = FleetPlan.make(now, speed=60, lead=timedelta(0), history=timedelta(hours=24), ahead=timedelta(hours=23),
                           not_before=now + timedelta(hours=5))
    assert later.origin == later.live_start == now + timedelta(hours=5)
    assert later.live_start + later.headroom == now + timedelta(hours=23)
    behind = FleetPlan.make(now, speed=60, lead=timedelta(hours=24), history=timedelta(0))
    assert behind.clock(0.0).sim_at(10**6) <= now + timedelta(seconds=10**6)


def test_fleet_command_names_a_bad_archetype(server: Server) -> None:
    result = runner.invoke(app, ["fleet", "--url", server.url, "--archetypes", "type3_diabetes"], env=server.env)
    assert result.exit_code == 1 and "type3_diabetes" in result.output


def test_demo_fleet_streams_into_the_demo_patients_and_a_restart_continues(server: Server) -> None:
    bundles = [orjson.loads(orjson.dumps(b)) for b in generate_bundles(n_patients=3)]
    report = import_units(server.store, [RawUnit(f"d{i}.json", "json", b) for i, b in enumerate(bundles)])
    assert report.ok
    ids = [u.patients[0] for u in report.units]
    settings = server.settings.model_copy(update={"demo": True})
    now = datetime.now(UTC)
    fleet = prepare_demo_fleet(server.store, settings, bundles, "0.0.0.0", server.port, speed=3600.0,
                               lead_hours=24, history_hours=2, now=now)
    sim = fleet.runner.sim
    assert [m.patient_id for m in sim.members] == ids
    assert [m.archetype for m in sim.members] == ["type1_diabetes", "essential_hypertension",
                                                   "atrial_fibrillation"]
    assert sim.script is not None and sim.script.hypo_member == 0 and sim.script.deterioration_member == 2
    fleet.start()
    deadline = time.monotonic() + 90  # a condition, polled: ~1 s when idle
    while not (fleet.backfilled and fleet.runner.stats["ticks"] > 24 + 6):
        assert time.monotonic() < deadline and fleet.error is None, fleet.error
        time.sleep(0.1)
    fleet.stop()
    assert fleet.error is None and fleet.runner.stats["failed_requests"] == 0, fleet.runner.last_error
    rows = _rows(server.store)
    cgm = sorted(r[2] for r in rows if r[1] == "glucose")
    assert {r[0] for r in rows if r[1] == "glucose"} == {ids[0]}
    assert {r[3] for r in rows if r[0] == ids[0]} == {"demo-cgm", "demo-pump", "demo-wearable", "demo-bp-cuff"}
    assert cgm[0] == FleetPlan.make(now, speed=1, lead=timedelta(hours=24), history=timedelta(hours=2)).origin
    # a restarted demo continues after the newest stored sample instead of rewriting history
    newest = max(r[2] for r in rows)
    again = prepare_demo_fleet(server.store, settings, bundles, "127.0.0.1", server.port, now=now)
    assert again.plan.origin == newest + timedelta(minutes=5)
    assert again.runner.sim.time == newest + timedelta(minutes=5)
    again.stop()


def test_demo_command_streams_while_it_serves_and_stops_its_fleet_after(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """`medtwin demo`: device keys for its patients, the fleet started once the server is up, stopped when
    the server returns (the real server, run for as long as the first samples take to arrive)."""
    from medtwin.cli import server as server_cli

    port = _free_port()
    data = tmp_path / "demo"
    seen: dict[str, int] = {}

    def run_briefly(settings: Settings, host: str, port_: int, clock: ServerClock | None = None) -> None:
        seen["simulated clock"] = int(clock is not None)  # the demo serves on the fleet's clock (#15 item 6)
        uv = uvicorn.Server(uvicorn.Config(create_app(settings, clock=clock), host=host, port=port_,
                                           log_level="warning"))
        thread = threading.Thread(target=uv.run, daemon=True)
        thread.start()
        store = Store.from_settings(settings, AesGcmCodec(KeyRing.load(data / "keyring.json")))
        deadline = time.monotonic() + 120  # a condition, polled: ~4 s when idle
        try:
            while time.monotonic() < deadline:
                with store.connect() as connection:
                    seen["glucose"] = len(connection.execute(
                        select(samples.c.pk).where(samples.c.metric == "glucose")).all())
                if seen["glucose"] > 288:  # the day of history and some live readings
                    break
                time.sleep(0.2)
        finally:
            store.dispose()
            uv.should_exit = True
            thread.join(10)

    monkeypatch.setattr(server_cli, "_run", run_briefly)
    result = runner.invoke(app, ["demo", "--patients", "2", "--port", str(port), "--speed", "3600"],
                           env={"MEDTWIN_DATA_DIR": str(data), "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "simulated devices (3600x" in result.output and "skips a meal after its bolus" in result.output
    assert seen["glucose"] > 288 and seen["simulated clock"] == 1
    assert not any(t.name == "medtwin-fleet" and t.is_alive() for t in threading.enumerate())
    no_fleet = runner.invoke(app, ["demo", "--patients", "2", "--no-fleet", "--no-serve"],
                             env={"MEDTWIN_DATA_DIR": str(data), "COLUMNS": "200"})
    assert no_fleet.exit_code == 0 and "simulated devices" not in no_fleet.output
