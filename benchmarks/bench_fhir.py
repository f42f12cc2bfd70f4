"""The /fhir API on a store of the shared Synthea patients, over real HTTP (uvicorn on 127.0.0.1 in a thread,
the AES-GCM codec as the server runs): search latency (p50/p95) for typical queries, ``Patient/$everything``
time per patient (target <= 0.5 s for ~700 resources), Bulk ``$export`` throughput (kick-off to the last
file downloaded) beside the import rate of the same run, and what rebuilding the search index costs (revision
0008, ``store.reindex``).

    .venv/bin/python benchmarks/bench_fhir.py [FOLDER] [--repeat N]   (default: ../shared/data/synthea-r4, 20)
"""

from __future__ import annotations

import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from statistics import quantiles

import requests

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine  # noqa: E402

from medtwin.api.app import create_app  # noqa: E402
from medtwin.config import Settings  # noqa: E402
from medtwin.record.sources import read_units  # noqa: E402
from medtwin.security import accounts  # noqa: E402
from medtwin.security.crypto import AesGcmCodec, KeyRing  # noqa: E402
from medtwin.store.database import Store  # noqa: E402
from medtwin.store.records import RecordRepository  # noqa: E402
from medtwin.store.reindex import reindex  # noqa: E402
from medtwin.twin.build import import_units  # noqa: E402

PASSWORD = "correct horse battery staple"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _p(values: list[float]) -> tuple[float, float]:
    cuts = quantiles(values, n=20, method="inclusive")
    return cuts[9] * 1000, cuts[18] * 1000  # p50, p95 in ms


def main() -> None:  # noqa: C901 - one linear script
    args = sys.argv[1:]
    repeat = int(args[args.index("--repeat") + 1]) if "--repeat" in args else 20
    folders = [a for a in args if not a.startswith("--") and not a.isdigit()]
    folder = Path(folders[0]) if folders else Path(__file__).resolve().parents[2] / "shared" / "data" / "synthea-r4"
    print(f"machine: {machine()}")
    work = Path(tempfile.mkdtemp(prefix="bench-fhir-"))
    ring = KeyRing.generate()
    store = Store(f"sqlite:///{work / 'fhir.db'}", AesGcmCodec(ring))
    store.migrate()
    with store.begin() as connection:
        accounts.create_user(connection, "admin", PASSWORD, "admin")
    start = time.perf_counter()
    report = import_units(store, read_units([folder]))
    elapsed = time.perf_counter() - start
    stored = sum(u.created + u.updated + u.unchanged for u in report.units)
    print(f"import: {stored} resources in {elapsed:.2f} s = {stored / elapsed:.0f} resources/s (AES-GCM codec)")
    start = time.perf_counter()
    with store.begin() as connection:
        reindexed = reindex(connection, store.codec)
    took = time.perf_counter() - start
    print(f"reindex (revision 0008 on an older store): {reindexed} resources in {took:.2f} s = "
          f"{reindexed / took:.0f} resources/s")
    with store.connect() as connection:
        repo = RecordRepository(connection, store.codec)
        patients = repo.patient_ids()
        counts = {p: sum(repo.count_by_type(p).values()) for p in patients}

    import uvicorn

    settings = Settings(data_dir=work, rate_limit_per_minute=1_000_000, login_attempts_per_minute=1000)
    port = _port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, store=store, keyring=ring), host="127.0.0.1",
                                           port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    session = requests.Session()
    token = session.post(f"{base}/api/v1/auth/token", data={"grant_type": "password", "username": "admin",
                                                            "password": PASSWORD}, timeout=30).json()
    session.headers["Authorization"] = f"Bearer {token['access_token']}"
    queries = {
        "Observation?patient=P&code=http://loinc.org|8867-4": "heart rate of a patient",
        "Observation?patient=P&date=ge2015-01-01&_count=50": "a patient's observations since 2015",
        "Condition?patient=P": "a patient's conditions",
        "Patient?_id=P": "a patient by id",
        "Observation?patient=P&category=vital-signs&_sort=-date&_count=20": "latest vital signs (category, _sort)",
        "Encounter?patient=P&_include=Encounter:service-provider&_count=50": "encounters with their providers",
    }
    print(f"search latency over HTTP, {repeat} x {len(patients)} patients per query:")
    for query, label in queries.items():
        times: list[float] = []
        found = 0
        for _ in range(repeat):
            for patient in patients:
                t = time.perf_counter()
                answer = session.get(f"{base}/fhir/{query.replace('=P', '=' + patient)}", timeout=60)
                times.append(time.perf_counter() - t)
                assert answer.status_code == 200, answer.text[:200]
                found += len(answer.json().get("entry", []))
        assert found, f"{query}: no results on any patient (the timing would mean nothing)"
        p50, p95 = _p(times)
        print(f"  {label:38s} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   ({found / len(times):.0f} entries/answer)")
    print("Patient/$everything (all pages of 500):")
    took_all: list[float] = []
    for patient in patients:
        t = time.perf_counter()
        url: str | None = f"{base}/fhir/Patient/{patient}/$everything?_count=500"
        entries = 0
        while url:
            page = session.get(url, timeout=120).json()
            entries += len(page.get("entry", []))
            url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
        took = time.perf_counter() - t
        took_all.append(took)
        print(f"  {counts[patient]:5d} resources of the patient, {entries:5d} entries: {took:.3f} s"
              f"{'' if took <= 0.5 else '  (over the 0.5 s target)'}")
    took_all.sort()
    print(f"  per patient: median {took_all[len(took_all) // 2]:.3f} s, max {took_all[-1]:.3f} s; "
          f"{sum(t <= 0.5 for t in took_all)} of {len(took_all)} within the 0.5 s target")
    _bulk_export(session, base, stored / elapsed)
    server.should_exit = True
    thread.join(timeout=10)
    store.dispose()


def _bulk_export(session: requests.Session, base: str, import_rate: float) -> None:
    """System-level $export: kick-off, poll, download every file; resources/s over the whole exchange."""
    t = time.perf_counter()
    kicked = session.get(f"{base}/fhir/$export", headers={"Prefer": "respond-async"}, timeout=60)
    assert kicked.status_code == 202, kicked.text[:200]
    while (status := session.get(kicked.headers["content-location"], timeout=60)).status_code == 202:
        time.sleep(0.02)
    manifest = status.json()
    lines = 0
    for item in manifest["output"]:
        lines += len(session.get(item["url"], timeout=300).content.splitlines())
    took = time.perf_counter() - t
    print(f"Bulk $export (system level, {len(manifest['output'])} ndjson files): {lines} resources in {took:.2f} s = "
          f"{lines / took:.0f} resources/s (import of the same run: {import_rate:.0f} resources/s)")


if __name__ == "__main__":
    main()
