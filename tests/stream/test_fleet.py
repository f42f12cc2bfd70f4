"""The simulated fleet: physiology-driven readings, the scripted demo events, accelerated time, and delivery
through the real HTTP ingest path with each device's own key."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from medtwin import vocab as m
from medtwin.alerts import news2
from medtwin.api.app import create_app
from medtwin.config import Settings
from medtwin.physiology.simulate import Event, eaten_per_minute, simulate_inputs
from medtwin.physiology.uva_padova import virtual_patients
from medtwin.record.sources import RawUnit
from medtwin.security import accounts
from medtwin.security.crypto import AesGcmCodec, KeyRing
from medtwin.solve import Dopri5
from medtwin.store.database import Store
from medtwin.store.schema import samples
from medtwin.stream import metrics
from medtwin.stream.fleet import (
    BP_CUFF,
    CGM,
    PUMP,
    TICK_MIN,
    WEARABLE,
    AcceleratedClock,
    DemoScript,
    DeviceBatch,
    FleetConfig,
    FleetMember,
    FleetRunner,
    FleetSimulator,
    HttpTransport,
    SendError,
    issue_device_keys,
    latest_sample_time,
    provision_patients,
)
from medtwin.synthetic import archetype_keys, generate_bundles
from medtwin.twin.build import import_units

START = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)


def _members(archetypes: list[str]) -> list[FleetMember]:
    return [FleetMember(f"p{i}", a) for i, a in enumerate(archetypes)]


def _by(batches: list[DeviceBatch], patient: str, metric: str) -> list[dict[str, Any]]:
    return [s for b in batches if b.patient_id == patient for s in b.samples if s["metric"] == metric]


def fixed(units: np.ndarray) -> Callable[[float, np.ndarray], np.ndarray]:
    return lambda _t, _g: units


def _t(sample: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(sample["time"].replace("Z", "+00:00"))


# ------------------------------------------------------------------------------------------ physiology
def test_cgm_is_the_model_glucose_plus_sensor_error_and_matches_one_long_solve() -> None:
    """Tick-by-tick stepping (5 min at a time, meals and boluses as they happen) gives the same glucose as
    one solve of the whole day with the inputs the pump reported; the CGM is that glucose + the sensor's
    error, rounded and clipped."""
    sim = FleetSimulator(_members(["type1_diabetes"] * 3), START, np.random.default_rng(7),
                         FleetConfig(solver=Dopri5(rtol=1e-7, atol=1e-7), rescue_below_mg_dl=0.0))
    ticks = 14 * 60 // TICK_MIN  # 05:00 to 19:00: breakfast, lunch, maybe a snack
    cgm = np.zeros((ticks, 3))
    truth = np.zeros((ticks, 3))
    noise = np.zeros((ticks, 3))
    batches: list[DeviceBatch] = []
    for k in range(ticks):
        out = sim.step()
        batches += out
        cgm[k] = [_by(out, f"p{i}", m.GLUCOSE)[0]["value"] for i in range(3)]
        truth[k], noise[k] = sim.last_glucose, sim.last_noise
    # the reading is the device's: truth + error, rounded, within the sensor range
    assert np.array_equal(cgm, np.round(np.clip(truth + noise, 39, 400)))
    assert 3.0 < np.std(cgm - truth) < 40.0  # noise is there, and of the published error model's size
    # rebuild the day from what the pump reported and solve it in one go
    minutes = ticks * TICK_MIN
    announced = np.zeros((3, minutes))
    insulin = np.zeros((3, minutes))
    boluses: dict[int, np.ndarray] = {}
    for i in range(3):
        for s in _by(batches, f"p{i}", m.CARBS):
            announced[i, int((_t(s) - START).total_seconds() // 60)] += s["value"]
        for s in _by(batches, f"p{i}", m.INSULIN_BASAL):
            insulin[i, int((_t(s) - START).total_seconds() // 60):] = s["value"] / 60.0
        for s in _by(batches, f"p{i}", m.INSULIN_BOLUS):
            minute = int((_t(s) - START).total_seconds() // 60)
            boluses.setdefault(minute, np.zeros(3))[i] += s["value"]
    assert announced.sum() > 3 * 90  # breakfast and lunch each
    assert len(boluses) >= 6
    events = [Event(float(t), fixed(u)) for t, u in sorted(boluses.items())]
    params = virtual_patients(["adult#004", "adult#005", "adult#006"])  # the fleet's default order
    one = simulate_inputs(params, eaten_per_minute(announced), insulin, np.arange(0.0, minutes, TICK_MIN),
                          events=events, solver=Dopri5(rtol=1e-7, atol=1e-7), float_path=False)
    assert np.max(np.abs(one.glucose_mg_dl - truth)) < 0.05
    assert truth.min() > 40 and truth.max() > 150  # meals move glucose


def test_solving_in_smaller_batches_gives_the_same_glucose() -> None:
    def day(batch: int) -> np.ndarray:
        sim = FleetSimulator(_members(["type1_diabetes"] * 5), START, np.random.default_rng(9),
                             FleetConfig(solve_batch=batch))
        return np.array([(sim.step(), sim.last_glucose.copy())[1] for _ in range(12 * 12)])

    whole, pairs = day(1000), day(2)
    assert np.max(np.abs(whole - pairs)) < 0.2 and np.ptp(whole) > 50


def test_scripted_missed_meal_bolus_causes_a_hypoglycaemia_and_a_rescue() -> None:
    script = DemoScript(start=START + timedelta(hours=3), hypo_member=0)
    sim = FleetSimulator(_members(["type1_diabetes", "healthy_adult"]), START, np.random.default_rng(3),
                         script=script)
    batches: list[DeviceBatch] = []
    truth: list[tuple[datetime, float]] = []
    while sim.time < START + timedelta(hours=8):
        t = sim.time
        batches += sim.step()
        truth.append((t, float(sim.last_glucose[0])))
    at = script.start + timedelta(minutes=script.hypo_after_min)
    bolus = [s for s in _by(batches, "p0", m.INSULIN_BOLUS) if _t(s) == at]
    assert len(bolus) == 1 and bolus[0]["value"] == 5.0  # 80 g at adult#004's 16 g/U
    carbs = [_t(s) for s in _by(batches, "p0", m.CARBS)]
    assert at not in carbs  # the meal was skipped
    below = [t for t, g in truth if g < 70 and t > at]
    assert below and below[0] - at < timedelta(hours=2, minutes=30)
    assert min(g for _t, g in truth) > 35  # the rescue carbohydrate stops the fall
    rescue = [s["value"] for s in _by(batches, "p0", m.CARBS)
              if below[0] - timedelta(minutes=30) < _t(s) < below[0] + timedelta(minutes=90)]
    assert rescue and set(rescue) == {15.0}  # rule of 15, no bolus with it
    before = [g for t, g in truth if at - timedelta(hours=1) <= t <= at]
    assert min(before) > 80


def test_scripted_deterioration_raises_news2_to_high_only_for_that_patient() -> None:
    script = DemoScript(start=START + timedelta(hours=2), deterioration_member=1)
    archetypes = ["type1_diabetes", "atrial_fibrillation", "essential_hypertension", "healthy_adult",
                  "chronic_kidney_disease"]
    sim = FleetSimulator(_members(archetypes), START, np.random.default_rng(11), script=script)
    latest: dict[str, dict[str, tuple[datetime, float]]] = {f"p{i}": {} for i in range(5)}
    scores: dict[str, list[tuple[datetime, int]]] = {f"p{i}": [] for i in range(5)}
    while sim.time < START + timedelta(hours=6):
        for batch in sim.step():
            for s in batch.samples:
                latest[batch.patient_id][s["metric"]] = (_t(s), float(s["value"]))
        for pid, values in latest.items():
            obs = news2.observation_set(values)
            assert obs is not None
            scores[pid].append((obs.at, news2.score(obs.vitals).aggregate))
    onset = script.start + timedelta(minutes=script.deterioration_after_min)
    sick = scores["p1"]
    assert max(s for t, s in sick if t < onset) <= 4
    high = [t for t, s in sick if s >= 7]
    assert high and onset < high[0] <= onset + timedelta(minutes=script.ramp_min + 15)
    for pid in ("p0", "p2", "p3", "p4"):
        assert max(s for _t, s in scores[pid]) < 7, pid


def test_vitals_are_plausible_circadian_and_every_sample_passes_the_ingest_checks() -> None:
    archetypes = list(archetype_keys()) * 4
    sim = FleetSimulator(_members(archetypes), START, np.random.default_rng(5))
    hr_by_hour: dict[int, list[float]] = {}
    devices: dict[str, set[str]] = {}
    ids: set[tuple[str, str]] = set()
    while sim.time < START + timedelta(days=1):
        for batch in sim.step():
            for s in batch.samples:
                metrics.normalise(s["metric"], s["value"], s["unit"])  # raises on a unit or range error
                assert s["unit"] == m.CANONICAL_UNITS[s["metric"]]
                ids.add((batch.patient_id, s["id"]))
                devices.setdefault(batch.device, set()).add(s["metric"])
                if s["metric"] == m.HEART_RATE:
                    hr_by_hour.setdefault(_t(s).hour, []).append(s["value"])
    assert devices == {CGM: {m.GLUCOSE}, PUMP: {m.INSULIN_BASAL, m.INSULIN_BOLUS, m.CARBS},
                       WEARABLE: {m.HEART_RATE, m.SPO2, m.RESPIRATORY_RATE, m.STEPS, m.BODY_TEMPERATURE},
                       BP_CUFF: {m.SYSTOLIC_BP, m.DIASTOLIC_BP}}
    # circadian rhythm plus daytime activity: afternoon heart rate above the small hours'
    assert np.mean(hr_by_hour[16]) - np.mean(hr_by_hour[4]) > 6
    # one heart rate per patient and 5 minutes, each with its own id
    assert sum(1 for p, i in ids if i.startswith(m.HEART_RATE)) == 20 * 288


def test_same_seed_same_readings_and_members_differ() -> None:
    def run(seed: int) -> list[DeviceBatch]:
        sim = FleetSimulator(_members(["type1_diabetes", "type1_diabetes", "healthy_adult"]), START,
                             np.random.default_rng(seed))
        return [b for _ in range(30) for b in sim.step()]

    a, b, c = run(1), run(1), run(2)
    assert a == b and a != c
    g0 = [s["value"] for s in _by(a, "p0", m.GLUCOSE)]
    g1 = [s["value"] for s in _by(a, "p1", m.GLUCOSE)]
    assert g0 != g1


# ------------------------------------------------------------------------------------------ time
def test_accelerated_clock_maps_wall_to_simulated_time_and_never_passes_the_present() -> None:
    sim_start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    clock = AcceleratedClock(sim_start, wall_start=1000.0, speed=60.0, headroom=timedelta(hours=1))
    assert clock.sim_at(1000.0) == sim_start
    assert clock.sim_at(1005.0) == sim_start + timedelta(minutes=5)  # a CGM period every 5 s
    assert clock.catch_up_s == pytest.approx(3600 / 59)
    caught = 1000.0 + 3600 / 59
    assert abs(clock.sim_at(caught) - (sim_start + timedelta(hours=1, seconds=3600 / 59))) < timedelta(milliseconds=1)
    # after catching up: real time (1 s per s), always at or behind the present
    for wall in (1001.0, 1030.0, caught, caught + 10.0, 5000.0):
        present = sim_start + timedelta(hours=1) + timedelta(seconds=wall - 1000.0)
        assert clock.sim_at(wall) <= present
        assert clock.wall_at(clock.sim_at(wall)) == pytest.approx(wall)
    assert clock.sim_at(caught + 10.0) - clock.sim_at(caught) == timedelta(seconds=10)
    with pytest.raises(ValueError):
        AcceleratedClock(sim_start, 0.0, 0.0, timedelta(0))


def test_clock_ahead_of_the_present_stops_accelerating_at_its_headroom() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    clock = AcceleratedClock(now, wall_start=0.0, speed=60.0, headroom=timedelta(hours=23))
    assert clock.sim_at(60.0) == now + timedelta(hours=1)
    for wall in (0.0, 600.0, clock.catch_up_s, 7200.0, 86400.0):
        assert clock.sim_at(wall) <= now + timedelta(hours=23, seconds=wall)
    assert clock.sim_at(7200.0) == now + timedelta(hours=23, seconds=7200)


class _Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[DeviceBatch, str | None, float]] = []
        self.now = 0.0

    def send(self, batch: DeviceBatch, key: str | None) -> int:
        self.sent.append((batch, key, self.now))
        return len(batch.samples)


class _FakeStop(threading.Event):
    """stop.wait advances a fake wall clock instead of sleeping."""

    def __init__(self, recorder: _Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def wait(self, timeout: float | None = None) -> bool:
        self.recorder.now += timeout or 0.0
        return self.is_set()


def test_runner_sends_each_tick_once_the_accelerated_clock_has_passed_it() -> None:
    recorder = _Recorder()
    members = [FleetMember("p0", "type1_diabetes", {CGM: "k-cgm", PUMP: "k-pump", WEARABLE: "k-w",
                                                     BP_CUFF: "k-bp"})]
    sim = FleetSimulator(members, START, np.random.default_rng(0))
    runner = FleetRunner(sim, recorder, workers=1, monotonic=lambda: recorder.now)
    runner.backfill(START + timedelta(hours=2))
    backfill = list(recorder.sent)
    assert sim.time == START + timedelta(hours=2) and all(t == 0.0 for _b, _k, t in backfill)
    assert len(backfill) == 4  # history goes out in big batches, one per device
    assert {k for _b, k, _t in backfill} == {"k-cgm", "k-pump", "k-w", "k-bp"}
    assert next(b for b, k, _t in backfill if k == "k-cgm").device == CGM
    recorder.sent.clear()
    live = START + timedelta(hours=2)
    clock = AcceleratedClock(live, wall_start=0.0, speed=60.0, headroom=timedelta(hours=24))
    stats = runner.run(clock, _FakeStop(recorder), duration_s=60.0)
    glucose = [(s, t) for b, _k, t in recorder.sent for s in b.samples if s["metric"] == m.GLUCOSE]
    assert len(glucose) == 12  # 60 s at 60x = 60 simulated minutes = 12 CGM periods
    for sample, sent_at in glucose:
        # sent once its whole tick is simulated past, and not later than a tick after that
        tick_end = _t(sample) + timedelta(minutes=TICK_MIN)
        assert clock.sim_at(sent_at) >= tick_end
        assert clock.sim_at(sent_at) - tick_end < timedelta(minutes=TICK_MIN)
    assert stats["ticks"] == 24 + 12 and stats["failed_requests"] == 0 and stats["acknowledged"] == stats["samples"]


def test_runner_uploads_every_n_ticks_together_and_flushes_on_stop() -> None:
    recorder = _Recorder()
    sim = FleetSimulator(_members(["type1_diabetes"]), START, np.random.default_rng(0))
    runner = FleetRunner(sim, recorder, workers=1, upload_every=3, monotonic=lambda: recorder.now)
    clock = AcceleratedClock(START, wall_start=0.0, speed=60.0, headroom=timedelta(hours=24))
    runner.run(clock, _FakeStop(recorder), duration_s=70.0)  # 14 ticks: 4 uploads of 3, then the last 2
    cgm = [b for b, _k, _t in recorder.sent if b.device == CGM]
    assert [len(b.samples) for b in cgm] == [3, 3, 3, 3, 2]
    assert [t for b, _k, t in recorder.sent if b.device == CGM][:4] == [15.0, 30.0, 45.0, 60.0]


def test_delivery_sends_pump_inputs_first_and_each_devices_chunks_in_time_order() -> None:
    recorder = _Recorder()
    sim = FleetSimulator(_members(["type1_diabetes", "type1_diabetes"]), START, np.random.default_rng(0))
    merged: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for _ in range(24 * 12):
        for batch in sim.step():
            merged.setdefault((batch.patient_id, batch.device), []).extend(batch.samples)
    runner = FleetRunner(sim, recorder, workers=4, max_batch=20)
    runner._deliver([DeviceBatch(p, d, s) for (p, d), s in sorted(merged.items(), key=lambda kv: kv[0][1])])
    runner.close()
    order = [b.device for b, _k, _t in recorder.sent]
    assert set(order[:order.count(PUMP)]) == {PUMP}  # every pump request before any other
    for (patient, device), sent in merged.items():
        chunks = [b.samples for b, _k, _t in recorder.sent if (b.patient_id, b.device) == (patient, device)]
        assert all(len(c) <= 20 for c in chunks) and [x for c in chunks for x in c] == sent
    assert runner.stats["requests"] == len(recorder.sent) and runner.stats["acknowledged"] == runner.stats["samples"]


# ------------------------------------------------------------------------------------------ transport
def test_http_transport_retries_429_and_5xx_and_gives_up_on_other_4xx() -> None:
    answers = [httpx.Response(429, headers={"retry-after": "3"}), httpx.Response(503),
               httpx.Response(200, json={"accepted": 1, "duplicates": 1, "quarantined": []})]
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    slept: list[float] = []
    client = httpx.Client(base_url="http://fleet.test", transport=httpx.MockTransport(handler))
    transport = HttpTransport(client, backoff_s=0.5, sleep=slept.append)
    batch = DeviceBatch("p 1", CGM, [{"metric": "glucose", "time": "2026-03-02T05:00:00Z", "value": 100,
                                      "unit": "mg/dL", "id": "glucose/2026-03-02T05:00:00Z"}] * 2)
    assert transport.send(batch, "mtk_x") == 2
    assert slept == [3.0, 1.0] and transport.retried == 2
    assert seen[0].url.raw_path == b"/api/v1/patients/p%201/samples"
    assert seen[0].headers["authorization"] == "Bearer mtk_x"
    client = httpx.Client(base_url="http://fleet.test",
                          transport=httpx.MockTransport(lambda r: httpx.Response(403, text="no")))
    with pytest.raises(SendError) as refused:
        HttpTransport(client, sleep=slept.append).send(batch, "mtk_x")
    assert refused.value.status == 403 and len(slept) == 2
    quarantined = {"accepted": 1, "duplicates": 0, "quarantined": [{"reason": "future-time", "detail": "late"}]}
    client = httpx.Client(base_url="http://fleet.test",
                          transport=httpx.MockTransport(lambda r: httpx.Response(200, json=quarantined)))
    partly = HttpTransport(client)
    assert partly.send(batch, "mtk_x") == 1 and partly.quarantine_reasons == {"future-time"}


def test_runner_splits_a_batch_the_server_finds_too_large() -> None:
    class Small:
        def __init__(self) -> None:
            self.sizes: list[int] = []

        def send(self, batch: DeviceBatch, key: str | None) -> int:
            if len(batch.samples) > 100:
                raise SendError("too large", 413)
            self.sizes.append(len(batch.samples))
            return len(batch.samples)

    small = Small()
    sim = FleetSimulator(_members(["healthy_adult"]), START, np.random.default_rng(0))
    runner = FleetRunner(sim, small, workers=1, max_batch=1000)
    runner.backfill(START + timedelta(hours=6))
    assert max(small.sizes) <= 100 and runner.stats["failed_requests"] == 0
    assert sum(small.sizes) == runner.stats["samples"] == runner.stats["acknowledged"] == 72 * 4 + 24 * 3


# ------------------------------------------------------------------------------------------ through the API
@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Store, KeyRing, TestClient]]:
    ring = KeyRing.generate()
    store = Store(f"sqlite:///{tmp_path / 'fleet.db'}", AesGcmCodec(ring))
    store.migrate()
    settings = Settings(data_dir=tmp_path, rate_limit_per_minute=100_000)
    with TestClient(create_app(settings, store=store, keyring=ring)) as client:
        yield store, ring, client
    store.dispose()


def test_fleet_samples_arrive_in_the_store_through_http_with_each_devices_identity(
        served: tuple[Store, KeyRing, TestClient]) -> None:
    store, ring, client = served
    bundles = generate_bundles(n_patients=2)  # type 1 diabetes, hypertension
    report = import_units(store, [RawUnit(f"b{i}.json", "json", b) for i, b in enumerate(bundles)])
    assert report.ok
    pids = [u.patients[0] for u in report.units]
    members = issue_device_keys(store, ring.index_key, [(pids[0], "type1_diabetes"),
                                                         (pids[1], "essential_hypertension")], actor="test",
                                prefix="demo")
    assert set(members[0].keys) == {CGM, PUMP, WEARABLE, BP_CUFF} and set(members[1].keys) == {WEARABLE, BP_CUFF}
    sim = FleetSimulator(members, START, np.random.default_rng(2))
    runner = FleetRunner(sim, HttpTransport(client), workers=1)
    expected: list[DeviceBatch] = []
    original_step = sim.step

    def step() -> list[DeviceBatch]:
        out = original_step()
        expected.extend(out)
        return out

    sim.step = step  # type: ignore[method-assign]
    runner.backfill(START + timedelta(hours=3))
    assert runner.stats["failed_requests"] == 0, runner.last_error
    sent = sum(len(b.samples) for b in expected)
    assert runner.stats["acknowledged"] == sent
    with store.connect() as connection:
        rows = connection.execute(select(samples.c.patient_id, samples.c.metric, samples.c.time, samples.c.value,
                                         samples.c.device, samples.c.source)).all()
    assert len(rows) == sent
    stored = {(r.patient_id, r.metric, r.time.replace(tzinfo=UTC)): (r.value, r.device, r.source) for r in rows}
    for batch in expected:
        for s in batch.samples:
            value, device, source = stored[(batch.patient_id, s["metric"], _t(s))]
            assert value == pytest.approx(s["value"]) and source == "http"
            assert device == f"demo-{batch.device}"  # the key's name: the device that sent it
    assert latest_sample_time(store, pids) == START + timedelta(hours=3) - timedelta(minutes=TICK_MIN)
    # resending is harmless (idempotent), and a key only writes for its own patient
    runner.stats.set("acknowledged", 0)
    runner._deliver(expected[:3])
    with store.connect() as connection:
        assert len(connection.execute(select(samples.c.pk)).all()) == sent
    wrong = HttpTransport(client, retries=0)
    with pytest.raises(SendError) as refused:
        wrong.send(DeviceBatch(pids[1], CGM, expected[0].samples), members[0].keys[CGM])
    assert refused.value.status in (403, 404)


def test_issue_device_keys_revokes_the_previous_runs_keys(served: tuple[Store, KeyRing, TestClient]) -> None:
    store, ring, _client = served
    pairs = provision_patients(store, 3, ["healthy_adult", "type1_diabetes"], actor="test", seed=4)
    assert [a for _p, a in pairs] == ["healthy_adult", "type1_diabetes", "healthy_adult"]
    assert provision_patients(store, 3, ["healthy_adult", "type1_diabetes"], actor="test", seed=4) == pairs
    first = issue_device_keys(store, ring.index_key, pairs, actor="test")
    second = issue_device_keys(store, ring.index_key, pairs, actor="test")
    with store.begin() as connection:
        for old, new in zip(first, second, strict=True):
            for device in old.keys:
                assert accounts.verify_api_key(connection, old.keys[device], ring.index_key) is None
                key = accounts.verify_api_key(connection, new.keys[device], ring.index_key)
                assert key is not None and key.patient_id == new.patient_id and key.name == f"fleet-{device}"
