"""What the MQTT tests share: the test broker, private brokers (for tests that stop or reconfigure one),
patients and device keys in a store, waiting for a condition."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from tests.conftest import require_service

from medtwin.record.sources import RawUnit
from medtwin.security import accounts
from medtwin.security.crypto import AesGcmCodec, KeyRing
from medtwin.store.database import Store
from medtwin.store.live_tables import quarantine
from medtwin.store.schema import samples
from medtwin.twin.build import import_units

REPO = Path(__file__).resolve().parents[2]
MEDTWIN_CONF = REPO / "deploy" / "mosquitto" / "medtwin.conf"
MOSQUITTO = os.environ.get("MEDTWIN_TEST_MOSQUITTO", "/usr/sbin/mosquitto")
INDEX_KEY = b"mqtt-test-index-key-32-bytes-000"


def shared_broker_url() -> str:
    """The broker scripts/services.sh started (medtwin.conf); skip without it, fail in CI."""
    url = os.environ.get("MEDTWIN_TEST_MQTT_URL")
    require_service("mosquitto (MEDTWIN_TEST_MQTT_URL)", url is not None)
    assert url is not None
    return url


def require_mosquitto() -> None:
    require_service(f"the mosquitto binary ({MOSQUITTO})", os.access(MOSQUITTO, os.X_OK))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalBroker:
    """A mosquitto of the test's own, so that stopping it or running stock limits touches no other test.

    ``config`` is the broker configuration without listener/persistence location (those are added);
    :meth:`restart` stops it with SIGTERM (mosquitto saves its state) and starts it again on the same port
    and data folder, as an operator restarting the service would."""

    def __init__(self, config: str, port: int | None = None) -> None:
        require_mosquitto()
        self.dir = Path(tempfile.mkdtemp(prefix="medtwin-mqtt-test-"))
        self.port = port or free_port()
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(f"{config}\nlistener {self.port} 127.0.0.1\npersistence_location {self.dir}/\n"
                             f"log_dest file {self.dir}/mosquitto.log\n")
        if os.getuid() == 0:  # mosquitto drops to its own user, which must own the data folder
            try:
                user = pwd.getpwnam("mosquitto")
                os.chown(self.dir, user.pw_uid, user.pw_gid)
            except KeyError:
                pass
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30  # generous: a loaded 2-core CI machine
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"mosquitto exited: {self.log()}") from None
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening within 30 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(30)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        path = self.dir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def medtwin_config() -> str:
    return MEDTWIN_CONF.read_text()


def add_patient(store: Store, patient_id: str) -> None:
    report = import_units(store, [RawUnit(f"{patient_id}.json", "json",
                                          {"resourceType": "Patient", "id": patient_id, "gender": "female"})])
    assert report.ok, report.errors


def add_device(store: Store, patient_id: str, name: str = "cgm") -> str:
    """A device key bound to the patient; returns its public id (the topic's device level)."""
    return add_device_key(store, patient_id, INDEX_KEY, name)[0]


def add_device_key(store: Store, patient_id: str, index_key: bytes, name: str = "cgm") -> tuple[str, str]:
    """A device key bound to the patient: (public id, the secret token a device presents over HTTP)."""
    with store.begin() as connection:
        key, token = accounts.create_api_key(connection, name, patient_id, "test", index_key)
    return key.id, token


@dataclass
class DataDir:
    """A medtwin data folder as `medtwin serve` / `medtwin mqtt` use it: key ring file, SQLite store with
    patients and one device key each."""

    path: Path
    key_file: Path
    database: Path
    patients: list[str]
    devices: dict[str, tuple[str, str]]  # patient -> (key id, token)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEDTWIN_")}
        env.update({"MEDTWIN_DATA_DIR": str(self.path), "MEDTWIN_KEY_FILE": str(self.key_file),
                    "MEDTWIN_LOG_LEVEL": "warning"}, **extra)
        return env

    def store(self) -> Store:
        return Store(f"sqlite:///{self.database}")


def make_data_dir(path: Path, patients: list[str]) -> DataDir:
    keyring = KeyRing.generate()
    key_file = path / "keys.json"
    path.mkdir(parents=True, exist_ok=True)
    keyring.save(key_file)
    database = path / "medtwin.db"
    store = Store(f"sqlite:///{database}", AesGcmCodec(keyring))
    store.migrate()
    devices = {}
    for patient in patients:
        add_patient(store, patient)
        devices[patient] = add_device_key(store, patient, keyring.index_key)
    store.dispose()
    return DataDir(path, key_file, database, patients, devices)


def medtwin_exe() -> str:
    return str(Path(sys.executable).parent / "medtwin")


def revoke_device(store: Store, key_id: str) -> None:
    with store.begin() as connection:
        accounts.revoke_api_key(connection, key_id)


def sample_counts(store: Store) -> tuple[int, int]:
    """(rows, distinct idempotency keys) in samples."""
    with store.connect() as connection:
        row = connection.execute(select(func.count(), func.count(samples.c.idempotency_key.distinct()))).one()
    return int(row[0]), int(row[1])


def quarantine_reasons(store: Store) -> dict[str, int]:
    with store.connect() as connection:
        rows = connection.execute(select(quarantine.c.reason, func.count()).group_by(quarantine.c.reason))
        return {str(reason): int(n) for reason, n in rows}


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
