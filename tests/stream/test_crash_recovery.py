"""Crash recovery (issue #5 acceptance): kill the process that stores samples in the middle of a stream,
start it again on the same data folder, let the senders retry: every sample is stored exactly once.

* HTTP: a real `medtwin serve` (uvicorn, SQLite, key ring) takes 100,000 samples in batches from client
  threads that retry on connection errors and 5xx; SIGKILL mid-stream; restart; rows == distinct keys ==
  100,000.
* MQTT: a real `medtwin mqtt` takes QoS 1 messages from the broker; SIGKILL mid-stream; restart; the broker
  redelivers what was not acknowledged; rows == distinct keys == messages.
"""

from __future__ import annotations

import http.client
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from medtwin.stream.client import IngestHTTPError, SampleClient, make_batch
from medtwin.stream.mqtt import MqttPublisher, drop_session, sample_topic

sys.path.insert(0, str(Path(__file__).parent))
from mqtt_support import (  # noqa: E402
    DataDir,
    free_port,
    make_data_dir,
    medtwin_exe,
    sample_counts,
    shared_broker_url,
    wait_for,
)

START = datetime(2026, 2, 1, tzinfo=UTC)


class Server:
    """`medtwin serve` as a subprocess on a fixed port and data folder."""

    def __init__(self, data: DataDir, port: int) -> None:
        self.data, self.port = data, port
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data.path / "serve.log"
        self.starts = 0

    def start(self) -> None:
        env = self.data.env(MEDTWIN_RATE_LIMIT_PER_MINUTE="10000000", MEDTWIN_DEVICE_SAMPLES_PER_MINUTE="10000000")
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([medtwin_exe(), "serve", "--port", str(self.port)], env=env,
                                            stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1
        assert wait_for(self.ready, 90, 0.05), f"medtwin serve did not come up: {self.log.read_text()[-2000:]}"

    def ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"medtwin serve exited: {self.log.read_text()[-2000:]}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
            connection.request("GET", "/api/v1/health")
            return connection.getresponse().status == 200
        except OSError:
            return False

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _send_with_retries(url: str, token: str, patient: str, batches: list[bytes], done: list[int],
                       retries: list[int], errors: list[str], lock: threading.Lock) -> None:
    """A device that keeps every batch until the server answered 200 for it."""
    client = SampleClient(url, token, timeout=30)
    try:
        for body in batches:
            while True:
                try:
                    client.post_samples(patient, body)
                    break
                except IngestHTTPError as error:
                    if error.status < 500 and error.status != 429:
                        errors.append(f"{error.status}: {error.body[:200]!r}")
                        return
                except (OSError, http.client.HTTPException):
                    pass  # the server is down, or died mid-request
                client.close()
                with lock:
                    retries[0] += 1
                time.sleep(0.05)
            with lock:
                done[0] += 1
    finally:
        client.close()


def _counts(data: DataDir) -> tuple[int, int]:
    store = data.store()
    try:
        return sample_counts(store)
    finally:
        store.dispose()


@pytest.mark.slow
def test_http_ingest_survives_sigkill_of_the_server(tmp_path: Path) -> None:
    total, per_batch, threads = 100_000, 500, 4
    patients = [f"crash-p{i}" for i in range(threads)]
    data = make_data_dir(tmp_path / "data", patients)
    server = Server(data, free_port())
    url = f"http://127.0.0.1:{server.port}"
    # 200 batches of 500 samples, each sample with its own id; 50 batches per patient (one device each)
    per_patient = total // threads
    work = {p: [orjson.dumps(make_batch("heart_rate", START, per_batch, step_s=1, id_prefix=f"{p}-{b}-",
                                        value=60 + b % 30)) for b in range(per_patient // per_batch)]
            for p in patients}
    # ... whose times restart every batch: only the ids keep the samples apart (time-keyed would collide)
    done, retries, lock = [0], [0], threading.Lock()
    errors: list[str] = []
    server.start()
    senders = [threading.Thread(target=_send_with_retries,
                                args=(url, data.devices[p][1], p, work[p], done, retries, errors, lock))
               for p in patients]
    try:
        started = time.monotonic()
        for sender in senders:
            sender.start()
        assert wait_for(lambda: done[0] >= 60, 60), "the stream did not get going"
        server.kill()
        at_kill = _counts(data)[0]  # what survived the kill, read straight from the file
        time.sleep(0.5)  # the clients meet a dead port for a while
        server.start()
        for sender in senders:
            sender.join(120)
        elapsed = time.monotonic() - started
        assert not any(s.is_alive() for s in senders), "a client never finished"
    finally:
        server.stop()
    assert errors == []
    assert done[0] == total // per_batch
    rows, distinct = _counts(data)
    print(f"\nHTTP crash test: {total} samples in {elapsed:.1f} s, SIGKILL with {at_kill} stored, "
          f"{retries[0]} retried requests")
    assert 0 < at_kill < total, "the kill was not mid-stream"
    assert retries[0] > 0
    assert (rows, distinct) == (total, total)
    assert server.starts == 2


@pytest.mark.slow
def test_mqtt_subscriber_survives_sigkill(tmp_path: Path) -> None:
    broker = shared_broker_url()
    prefix = f"crash{uuid.uuid4().hex[:8]}"
    client_id = f"{prefix}-ingest"
    data = make_data_dir(tmp_path / "data", ["mq-p0", "mq-p1"])
    env = data.env(MEDTWIN_LOG_LEVEL="info", MEDTWIN_BROKER_URL=broker, MEDTWIN_MQTT_TOPIC_PREFIX=prefix, MEDTWIN_MQTT_CLIENT_ID=client_id,
                   MEDTWIN_DEVICE_SAMPLES_PER_MINUTE="10000000")
    log = data.path / "mqtt.log"

    def start() -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen([medtwin_exe(), "mqtt"], env=env, stdout=out, stderr=subprocess.STDOUT)

    n = 12_000
    store = data.store()
    process = start()
    try:
        with MqttPublisher(broker, topic_prefix=prefix) as pub:
            # the subscriber's first start creates its session; until then the broker keeps nothing for it
            assert wait_for(lambda: "subscribed" in log.read_text() or process.poll() is not None, 60), log.read_text()
            for i in range(n):
                patient = data.patients[i % 2]
                pub.publish_raw(sample_topic(prefix, patient, data.devices[patient][0], "heart_rate"),
                                orjson.dumps({"time": f"2026-02-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:"
                                              f"{i % 60:02d}Z", "value": 60 + i % 40, "unit": "/min", "id": str(i)}))
                if i == n // 2:
                    assert wait_for(lambda: sample_counts(store)[0] > 1000, 60), log.read_text()
                    process.send_signal(signal.SIGKILL)
                    process.wait(10)
                    at_kill = sample_counts(store)[0]
                    process = start()
            assert pub.wait_all(60)
        assert wait_for(lambda: sample_counts(store)[0] >= n, 120), (sample_counts(store), log.read_text()[-2000:])
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log.read_text()[-2000:]
        assert sample_counts(store) == (n, n)
        assert 0 < at_kill < n
        summary = [line for line in log.read_text().splitlines() if line.startswith("stopped: ")]
        assert len(summary) == 1, "the killed process must not have printed a summary, the restarted one must"
        print(f"\nMQTT crash test: {n} messages, SIGKILL with {at_kill} stored; after the restart: {summary[0]}")
    finally:
        if process.poll() is None:
            process.kill()
        store.dispose()
        drop_session(broker, client_id)
