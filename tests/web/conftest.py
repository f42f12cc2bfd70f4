"""Browser tests of the dashboard: one real uvicorn server (temp SQLite store, key ring, synthetic patients,
demo accounts) and one headless Chromium for the whole module.

``build_world`` is also usable by hand (``python tests/web/conftest.py``) to look at the dashboard with the
same data the tests use.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from medtwin.api.app import create_app
from medtwin.cli.server import demo_users
from medtwin.config import Settings
from medtwin.record.sources import RawUnit
from medtwin.security.crypto import AesGcmCodec, KeyRing
from medtwin.store.database import Store
from medtwin.store.records import RecordRepository
from medtwin.store.samples import SampleRepository
from medtwin.synthetic import generate_bundles
from medtwin.twin.build import import_units
from medtwin.vocab import CANONICAL_UNITS, Sample

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CGM_DAYS = 30


@dataclass
class World:
    base_url: str
    store: Store
    users: dict[str, str]  # username -> password
    patients: list[str]
    heavy: str  # the patient with 30 days of CGM and per-minute heart rate
    server: Any = None
    thread: threading.Thread | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _glucose(minute: float) -> float:
    """A plausible CGM day: meals at 7:30, 12:30, 19:00 on a slow baseline wave (mg/dL)."""
    day_min = minute % 1440
    value = 125 + 18 * math.sin(2 * math.pi * minute / (1440 * 3.1))
    for meal, height in ((450, 70), (750, 85), (1140, 95)):
        dt = day_min - meal
        if 0 <= dt <= 240:
            value += height * (dt / 60) * math.exp(1 - dt / 60)
    value -= 35 * math.exp(-(((day_min - 200) / 50) ** 2))  # a night-time dip
    return round(value + 6 * math.sin(minute / 17.0), 1)


def _heart_rate(minute: float) -> float:
    day_min = minute % 1440
    asleep = day_min < 390 or day_min > 1380
    return round((58 if asleep else 74) + 6 * math.sin(minute / 23.0) + 3 * math.sin(minute / 5.3), 0)


def seed_streams(store: Store, patient_id: str, end: datetime, days: int = CGM_DAYS) -> dict[str, int]:
    """``days`` of 5-min CGM and per-minute heart rate ending at ``end``, plus 4-hourly BP and SpO2,
    written through the sample repository (a bulk history import: listeners are not run)."""
    start = end - timedelta(days=days)
    rows: list[Sample] = []

    def add(metric: str, t: datetime, value: float) -> None:
        unit = CANONICAL_UNITS[metric]
        rows.append(Sample(patient_id, metric, t, value, unit, value, unit, "seed", "fhir",
                           f"seed:{patient_id}:{metric}:{t.isoformat()}"))

    for i in range(days * 288):
        t = start + timedelta(minutes=5 * (i + 1))
        add("glucose", t, _glucose(5 * (i + 1)))
    for i in range(days * 1440):
        t = start + timedelta(minutes=i + 1)
        add("heart_rate", t, _heart_rate(i + 1))
    for i in range(days * 6):
        t = start + timedelta(hours=4 * (i + 1))
        add("systolic_bp", t, 118 + 8 * math.sin(i / 3))
        add("diastolic_bp", t, 76 + 5 * math.sin(i / 3))
        add("spo2", t, 97 + math.sin(i / 2))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.metric] = counts.get(row.metric, 0) + 1
    with store.begin() as connection:
        SampleRepository(connection).insert_ignore(rows, received_at=end)
    return counts


def build_world(folder: Path, port: int, *, n_patients: int = 4) -> World:
    """A migrated store with synthetic patients, demo accounts and a served app (not started)."""
    ring = KeyRing.generate()
    store = Store(f"sqlite:///{folder / 'web.db'}", AesGcmCodec(ring))
    store.migrate()
    units = [RawUnit(f"synthetic-{i}.json", "json", orjson.loads(orjson.dumps(b)))
             for i, b in enumerate(generate_bundles(n_patients=n_patients))]
    assert import_units(store, units, actor="test").ok
    with store.connect() as connection:
        patients = RecordRepository(connection, store.codec).patient_ids()
    users = {name: password for name, _role, password in demo_users(store)}
    heavy = patients[0]  # archetype 0: type 1 diabetes; in the demo clinician's care team (every other patient)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    seed_streams(store, heavy, now - timedelta(minutes=25))  # room for the live samples a test posts
    settings = Settings(data_dir=folder, rate_limit_per_minute=100_000, login_attempts_per_minute=1000,
                        device_samples_per_minute=100_000)
    app = create_app(settings, store=store, keyring=ring)
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on")
    world = World(base_url=f"http://127.0.0.1:{port}", store=store, users=users, patients=patients, heavy=heavy)
    world.server = uvicorn.Server(config)
    return world


def start(world: World) -> None:
    world.thread = threading.Thread(target=world.server.run, name="web-test-server", daemon=True)
    world.thread.start()
    deadline = time.monotonic() + 60  # polled: ~1 s idle; the app's lifespan starts its services first
    while not world.server.started:
        if time.monotonic() > deadline or not world.thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)


def stop(world: World) -> None:
    world.server.should_exit = True
    if world.thread is not None:
        world.thread.join(timeout=15)
    world.store.dispose()


def upload_genotype(world: World, patient_id: str) -> None:
    """A warfarin-relevant genotype (CYP2C9 *1/*3, VKORC1 G/A) through POST /twins/{id}/drugs/pgx."""
    import httpx

    from medtwin.pharmaco.pgx import build_vcf

    with httpx.Client(base_url=world.base_url + "/api/v1", timeout=60) as client:
        token = client.post("/auth/token", data={"grant_type": "password", "username": "demo-admin",
                                                  "password": world.users["demo-admin"]}).json()["access_token"]
        vcf = build_vcf({"CYP2C9": "*1/*3", "VKORC1": "G/A", "CYP2D6": "*1/*4"}, sample="S1")
        response = client.post(f"/twins/{patient_id}/drugs/pgx", content=vcf.encode(),
                               headers={"content-type": "text/x-vcf", "Authorization": f"Bearer {token}"})
        assert response.status_code == 201, response.text


def require_browser() -> tuple[str, str]:
    chromium = os.environ.get("MEDTWIN_TEST_CHROMIUM") or shutil.which("chromium") or ""
    driver = os.environ.get("MEDTWIN_TEST_CHROMEDRIVER") or shutil.which("chromedriver") or ""
    if not (chromium and driver and os.access(chromium, os.X_OK) and os.access(driver, os.X_OK)):
        message = "Chromium + chromedriver (source scripts/services.sh; find_browser)"
        if IN_CI:
            pytest.fail(f"{message} is required in CI (CI=true) but is not available")
        pytest.skip(f"{message} not available")
    return chromium, driver


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    require_browser()
    instance = build_world(tmp_path_factory.mktemp("web"), free_port())
    start(instance)
    upload_genotype(instance, instance.patients[2])
    yield instance
    stop(instance)


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(world: World, downloads: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = require_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1400,1000", "--lang=en-GB"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.set_script_timeout(60)
    ARTIFACTS.mkdir(exist_ok=True)
    yield driver
    driver.quit()


if __name__ == "__main__":  # look at the dashboard by hand with the test data
    import tempfile

    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8765
    w = build_world(Path(tempfile.mkdtemp(prefix="medtwin-web-")), port)
    start(w)
    upload_genotype(w, w.patients[2])
    print(f"{w.base_url}/  heavy patient {w.heavy}")
    for name, password in w.users.items():
        print(f"  {name}: {password}")
    w.thread.join()
