"""``medtwin fleet``: a simulated device fleet against a running server; and the demo's own fleet.

The fleet writes through the server's HTTP ingest path with a device key per device, exactly like real
devices. Keys can only be made with access to the store, so run it where the server's ``MEDTWIN_*``
settings (data dir or database URL, key ring) point at the same store.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from medtwin.cli.common import audit_cli, cli_actor, console, err_console, fail, load_settings, open_store

if TYPE_CHECKING:  # pragma: no cover
    import httpx

    from medtwin.clock import ServerClock
    from medtwin.config import Settings
    from medtwin.store.database import Store
    from medtwin.stream.fleet import AcceleratedClock, FleetMember, FleetRunner

log = logging.getLogger("medtwin.fleet")


def _http_client(url: str, verify: bool | str = True, workers: int = 4) -> httpx.Client:
    import httpx

    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    return httpx.Client(base_url=url.rstrip("/"), timeout=httpx.Timeout(30.0), limits=limits, verify=verify)


@dataclass
class FleetPlan:
    """Where simulated time starts and how it runs: history ``[origin, live_start)`` is backfilled at once,
    then live ticks follow the accelerated clock from ``live_start`` (``lead`` behind the present), never
    more than ``ahead`` past the present (``headroom`` = how far simulated time may pull ahead of the
    real-time line from ``live_start``)."""

    origin: datetime
    live_start: datetime
    speed: float
    headroom: timedelta
    bound: datetime  # the present + ahead, when planned

    @classmethod
    def make(cls, now: datetime, *, speed: float, lead: timedelta, history: timedelta,
             ahead: timedelta = timedelta(0), not_before: datetime | None = None) -> FleetPlan:
        from medtwin.stream.fleet import floor_tick

        live_start = floor_tick(now - lead)
        origin = floor_tick(live_start - history)
        if not_before is not None and origin < not_before:  # continue after what an earlier run stored
            origin = not_before
            live_start = max(live_start, origin)
        bound = now + ahead
        return cls(origin, live_start, speed, max(bound - live_start, timedelta(0)), bound)

    def clock(self, wall_start: float) -> AcceleratedClock:
        from medtwin.stream.fleet import AcceleratedClock

        return AcceleratedClock(self.live_start, wall_start, self.speed, self.headroom)


@dataclass
class FleetThread:
    """A fleet streaming in a background thread: backfill, then live until :meth:`stop`. Failures are
    logged and kept in ``error``; they never stop the caller."""

    runner: FleetRunner
    plan: FleetPlan
    client: Any
    duration_s: float | None = None
    wait_for: str | None = "/api/v1/health"  # poll this until the server answers before starting
    stop_event: threading.Event = field(default_factory=threading.Event)
    error: str | None = None
    thread: threading.Thread | None = None
    backfilled: bool = False
    labels: dict[str, str] = field(default_factory=dict)  # patient id -> name to print
    server_clock: ServerClock | None = None  # the demo server's clock: it follows the simulated time

    def _follow(self, clock: AcceleratedClock | None) -> None:
        """Hand the server's clock the simulated time: the plan's start while history is sent, then the
        accelerated clock (issue #15 item 6: one clock for everything the server shows)."""
        if self.server_clock is None:
            return
        note = f"simulated devices at {self.plan.speed:g}x"
        if clock is None:
            start = self.plan.live_start
            self.server_clock.simulate(lambda: start, rate=lambda: 1.0, note=note)
            return
        self.server_clock.simulate(lambda: clock.sim_at(time.monotonic()), note=note,
                                   rate=lambda: clock.speed if time.monotonic() - clock.wall_start < clock.catch_up_s
                                   else 1.0)

    def start(self) -> None:
        self._follow(None)
        self.thread = threading.Thread(target=self._main, name="medtwin-fleet", daemon=True)
        self.thread.start()

    def _main(self) -> None:
        try:
            if self.wait_for and not self._server_up():
                return
            self.runner.backfill(self.plan.live_start, self.stop_event)
            self.backfilled = True
            if not self.stop_event.is_set():
                clock = self.plan.clock(time.monotonic())
                self._follow(clock)
                self.runner.run(clock, self.stop_event, self.duration_s)
        except Exception as exc:  # the demo goes on without its fleet
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("the simulated fleet stopped")
        finally:
            self.runner.close()

    def _server_up(self, timeout_s: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while not self.stop_event.is_set():
            try:
                if self.client.get(self.wait_for).status_code < 500:
                    return True
            except Exception:  # not listening yet
                pass
            if time.monotonic() > deadline:
                self.error = f"the server did not answer {self.wait_for} within {timeout_s:.0f} s"
                log.error("fleet: %s", self.error)
                return False
            self.stop_event.wait(0.2)
        return False

    def stop(self, timeout_s: float = 10.0) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout_s)
        close = getattr(self.client, "close", None)
        if close is not None:
            close()


def build_fleet(members: list[FleetMember], client: Any, plan: FleetPlan, *, seed: int, workers: int,
                max_batch: int, script: bool, stop: threading.Event | None = None, upload_every: int = 1
                ) -> FleetRunner:
    """Simulator (from ``plan.origin``), HTTP transport and runner for ``members``; with ``script`` the first
    type 1 member has the scripted hypoglycaemia and the first other member (an atrial fibrillation one if
    there is one) the deterioration, both soon after the live start."""
    import numpy as np

    from medtwin.stream.fleet import TYPE1, DemoScript, FleetRunner, FleetSimulator, HttpTransport

    demo_script = None
    if script:
        type1 = [i for i, mb in enumerate(members) if mb.archetype == TYPE1]
        others = [i for i, mb in enumerate(members) if mb.archetype != TYPE1]
        af = [i for i in others if members[i].archetype == "atrial_fibrillation"]
        sick = af or others
        demo_script = DemoScript(start=plan.live_start, hypo_member=type1[0] if type1 else None,
                                 deterioration_member=sick[0] if sick else None)
    simulator = FleetSimulator(members, plan.origin, np.random.default_rng(seed), script=demo_script)

    def pause(seconds: float) -> None:  # a retry's wait ends early when the fleet is stopped
        if stop is not None:
            stop.wait(seconds)
        else:
            time.sleep(seconds)

    transport = HttpTransport(client, retries=8, max_wait_s=30.0, sleep=pause)
    return FleetRunner(simulator, transport, workers=workers, max_batch=max_batch, upload_every=upload_every)


# ------------------------------------------------------------------------------------------ demo
def demo_members(store: Store, bundles: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(patient_id, archetype)`` of the demo's synthetic bundles (found by their MRN)."""
    from medtwin.store.records import RecordRepository
    from medtwin.synthetic import archetype_keys

    keys = archetype_keys()
    out: list[tuple[str, str]] = []
    with store.begin() as connection:
        records = RecordRepository(connection, store.codec)
        for i, bundle in enumerate(bundles):
            patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
            mrn = next(x for x in patient["identifier"] if x.get("type", {}).get("coding", [{}])[0].get("code") == "MR")
            pid = records.find_by_identifier("Patient", mrn["system"], mrn["value"])
            if pid is not None:
                out.append((pid, keys[i % len(keys)]))
    return out


def prepare_demo_fleet(store: Store, settings: Settings, bundles: list[dict[str, Any]], host: str, port: int, *,
                       speed: float = 60.0, lead_hours: float = 0.0, ahead_hours: float = 23.0,
                       history_hours: float = 24.0, seed: int = 0, now: datetime | None = None) -> FleetThread:
    """Device keys for the demo patients (``demo-cgm``, ``demo-pump``, ``demo-wearable``, ``demo-bp-cuff``),
    and a fleet thread (not started) that streams to the demo server once it answers.

    Timeline (defaults): the last 24 h are sent at once, then simulated time runs ``speed`` x from the
    present, up to 23 h ahead of the clock (the ingest pipeline accepts samples up to a day ahead), then in
    real time: the dashboard, which compares readings with the wall clock, shows them as fresh and its
    charts (which end at the newest reading) show history and live data together. A restarted demo
    continues after the newest stored sample instead of rewriting history."""
    from medtwin.stream.fleet import issue_device_keys, latest_sample_time

    pairs = demo_members(store, bundles)
    from medtwin.security.crypto import load_keyring

    members = issue_device_keys(store, load_keyring(settings).index_key, pairs, actor="demo", prefix="demo")
    now = now or datetime.now(UTC)
    last = latest_sample_time(store, [p for p, _ in pairs])
    plan = FleetPlan.make(now, speed=speed, lead=timedelta(hours=lead_hours), history=timedelta(hours=history_hours),
                          ahead=timedelta(hours=ahead_hours),
                          not_before=None if last is None else last + timedelta(minutes=5))
    scheme = "https" if settings.tls_certfile and settings.tls_keyfile else "http"
    connect = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
    verify: bool | str = str(settings.tls_certfile) if scheme == "https" else True
    client = _http_client(f"{scheme}://{connect}:{port}", verify)
    stop = threading.Event()
    # about one request per device per 5 wall seconds at any speed: the fleet shares the server's per-address
    # rate limit (Settings.rate_limit_per_minute) with the browser on the same machine
    runner = build_fleet(members, client, plan, seed=seed, workers=2, max_batch=2000, script=True, stop=stop,
                         upload_every=max(1, round(speed / 60)))
    labels = {}
    for (pid, _a), bundle in zip(pairs, bundles, strict=False):
        patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
        name = (patient.get("name") or [{}])[0]
        labels[pid] = " ".join([*name.get("given", []), name.get("family", "")]).strip()
    return FleetThread(runner, plan, client, stop_event=stop, labels=labels)


def describe_demo_fleet(fleet: FleetThread) -> None:
    from rich.table import Table

    sim = fleet.runner.sim
    script = sim.script
    table = Table(title=f"simulated devices ({fleet.plan.speed:g}x: a CGM reading every "
                        f"{5 * 60 / fleet.plan.speed:g} s)")
    for column in ("patient", "archetype", "devices", "scripted"):
        table.add_column(column)
    for i, member in enumerate(sim.members):
        note = ""
        wall = 60.0 / fleet.plan.speed  # wall seconds per simulated minute
        if script is not None and i == script.hypo_member:
            note = (f"skips a meal after its bolus at +{script.hypo_after_min * wall:.0f} s: "
                    f"hypo alerts ~{(script.hypo_after_min + 60) * wall / 60:.0f}-"
                    f"{(script.hypo_after_min + 100) * wall / 60:.0f} min in")
        if script is not None and i == script.deterioration_member:
            note = (f"deteriorates from +{script.deterioration_after_min * wall / 60:.0f} min: NEWS2 alert "
                    f"~{(script.deterioration_after_min + script.ramp_min / 2) * wall / 60:.1f} min in")
        label = fleet.labels.get(member.patient_id) or member.patient_id[:8]
        table.add_row(label, member.archetype, ", ".join(member.keys), note)
    console.print(table)
    plan = fleet.plan
    catch_up = plan.headroom.total_seconds() / (plan.speed - 1) if plan.speed > 1 else float("inf")
    history = (f"history {plan.origin:%Y-%m-%d %H:%M} to {plan.live_start:%Y-%m-%d %H:%M} UTC is sent at once; then"
               if plan.origin < plan.live_start else "continuing after the samples already stored:")
    console.print(f"{history} simulated time runs {plan.speed:g}x from {plan.live_start:%Y-%m-%d %H:%M} UTC"
                  + (f" for {catch_up / 60:.0f} min, then in real time (newest reading "
                     f"{plan.bound:%Y-%m-%d %H:%M} UTC by then)" if catch_up != float("inf") else "")
                  + ". `medtwin demo --no-fleet` serves without it.")


# ------------------------------------------------------------------------------------------ command
def fleet_command(
    url: Annotated[str, typer.Option(help="The running medtwin server")] = "http://127.0.0.1:8000",
    patients: Annotated[int, typer.Option(min=1, max=100_000, help="How many simulated patients")] = 10,
    speed: Annotated[float, typer.Option(min=0.01, max=100_000, help="Simulated seconds per wall second")] = 60.0,
    duration: Annotated[float | None, typer.Option(min=0, help="Wall seconds to stream (default: until Ctrl-C)")] = None,
    history_hours: Annotated[float, typer.Option(min=0, max=24 * 30, help="Hours of history sent at once first")] = 0.0,
    lead_hours: Annotated[float, typer.Option(min=0, max=24 * 365, help="Live simulated time starts this far "
                                                 "behind the present")] = 24.0,
    ahead_hours: Annotated[float, typer.Option(min=0, max=23.5, help="How far simulated time may run ahead "
                                                  "of the present (0: samples are never in the future)")] = 0.0,
    archetypes: Annotated[str, typer.Option(help="Comma-separated archetypes cycled over the patients, or 'all'")
                          ] = "all",
    seed: Annotated[int, typer.Option(min=0, help="Seed of the simulation")] = 0,
    workers: Annotated[int, typer.Option(min=1, max=256, help="Concurrent uploads")] = 8,
    batch: Annotated[int, typer.Option(min=1, max=100_000, help="Most samples per request")] = 1000,
    upload_every: Annotated[int, typer.Option(min=1, max=288, help="Devices upload every N readings (5 simulated "
                                                "min each) in one request")] = 1,
    script: Annotated[bool, typer.Option("--script", help="Scripted hypoglycaemia and deterioration")] = False,
    ca_file: Annotated[Path | None, typer.Option(help="CA/certificate file to trust for https")] = None,
) -> None:
    """Drive N simulated patients' devices against a running server (load tests, demos)."""
    from medtwin.security.crypto import load_keyring
    from medtwin.stream.fleet import issue_device_keys, provision_patients
    from medtwin.synthetic import archetype_keys

    chosen = list(archetype_keys()) if archetypes.strip() == "all" else \
        [a.strip() for a in archetypes.split(",") if a.strip()]
    settings = load_settings()
    store = open_store(settings)
    try:
        pairs = provision_patients(store, patients, chosen, actor=cli_actor(), seed=seed)
        members = issue_device_keys(store, load_keyring(settings).index_key, pairs, actor=cli_actor(),
                                    prefix="fleet")
        audit_cli(store, "admin", "ApiKey", detail={"op": "create", "fleet": True, "keys": sum(len(m.keys) for m in members)})
    except ValueError as exc:
        fail(str(exc))
    finally:
        store.dispose()
    plan = FleetPlan.make(datetime.now(UTC), speed=speed, lead=timedelta(hours=lead_hours),
                          history=timedelta(hours=history_hours), ahead=timedelta(hours=ahead_hours))
    client = _http_client(url, str(ca_file) if ca_file else True, workers)
    stop = threading.Event()
    runner = build_fleet(members, client, plan, seed=seed, workers=workers, max_batch=batch, script=script,
                         stop=stop, upload_every=upload_every)
    console.print(f"fleet: {len(members)} patients, {sum(len(m.keys) for m in members)} devices -> {url}; "
                  f"{speed:g}x from {plan.live_start:%Y-%m-%d %H:%M} UTC")
    started = time.monotonic()
    worker = FleetThread(runner, plan, client, duration_s=duration, stop_event=stop)
    worker.start()
    try:
        while worker.thread is not None and worker.thread.is_alive():
            worker.thread.join(10.0)
            _progress(runner, time.monotonic() - started)
    except KeyboardInterrupt:
        err_console.print("stopping the fleet ...")
    finally:
        worker.stop()
    _progress(runner, time.monotonic() - started, final=True)
    if worker.error:
        fail(worker.error)
    if runner.stats["failed_requests"]:
        fail(f"{runner.stats['failed_requests']} uploads failed; last: {runner.last_error}")


def _progress(runner: FleetRunner, elapsed: float, final: bool = False) -> None:
    s = runner.stats.snapshot()
    rate = s["acknowledged"] / elapsed if elapsed > 0 else 0.0
    line = (f"{'done' if final else '...'} {elapsed:6.0f} s  simulated {runner.sim.time:%Y-%m-%d %H:%M}  "
            f"samples {s['samples']} (acknowledged {s['acknowledged']}, {rate:,.0f}/s)  requests {s['requests']} "
            f"(failed {s['failed_requests']})  physiology {s['simulate_s']:.1f} s  max lag {s['max_lag_s']:.1f} s"
            if s["ticks"] else f"... {elapsed:6.0f} s  waiting for the server")
    console.print(line)
