"""Import throughput: medtwin's full import (read, parse, validate, resolve references, index, normalise units,
store in SQLite, build twin summaries) against fhir.resources (R4B pydantic models) merely validating the
same resources, measured in the same run.

    .venv/bin/python benchmarks/bench_import.py [FOLDER]     (default: ../shared/data/synthea-r4)

The headline is medtwin as it runs by default: the next file is read and parsed in a background thread
while the current one is stored (SQLite releases the GIL while it writes), and Python's cyclic collector is
paused during the import (``medtwin.twin.build.gc_paused``). For transparency the script also reports
medtwin on one thread (no read-ahead), medtwin with the AES-GCM codec the CLI and server use (the headline
uses the store's plain codec, as before), and fhir.resources with the collector paused the same way.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine  # noqa: E402

from medtwin.record.sources import discover, read_units  # noqa: E402
from medtwin.store.codec import Codec  # noqa: E402
from medtwin.store.database import Store  # noqa: E402
from medtwin.twin.build import gc_paused, import_units  # noqa: E402

REPEAT = 3


def validate_only(files: list[Path], *, paused: bool = False) -> tuple[int, float, float, float]:
    from fhir.resources.R4B import get_fhir_model_class

    parse_start = time.perf_counter()
    bundles = [orjson.loads(path.read_bytes()) for path in files]
    parse_time = time.perf_counter() - parse_start  # reported separately: the headline baseline excludes it
    count = failed = 0
    start, cpu = time.perf_counter(), time.process_time()
    if paused:
        with gc_paused():
            count, failed = _validate(bundles, get_fhir_model_class)
    else:
        count, failed = _validate(bundles, get_fhir_model_class)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return count, elapsed, parse_time, cpu


def _validate(bundles: list[dict[str, Any]], get_fhir_model_class: Callable[[str], Any]) -> tuple[int, int]:
    count = failed = 0
    for bundle in bundles:
        for entry in bundle["entry"]:
            resource = entry["resource"]
            try:
                get_fhir_model_class(resource["resourceType"]).model_validate(resource)
            except ValueError:
                failed += 1  # R4B is stricter than R4 for a few elements; counted, time still spent
            count += 1
    return count, failed


def cold_caches() -> None:
    """Empty the caches of values derived from the input (parsed times, their SQLite text, parsed UCUM
    units), so that each timed import starts as in a fresh process and no run profits from an earlier one."""
    from medtwin.record import indexing, ucum
    from medtwin.store import records

    indexing._instant.cache_clear()
    records._sqlite_datetime.cache_clear()
    ucum.parse.cache_clear()


def medtwin_import(folder: Path, *, read_ahead: int = 1, codec: Codec | None = None) -> tuple[int, float, float]:
    cold_caches()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/bench.db", codec)
        store.migrate()
        start, cpu = time.perf_counter(), time.process_time()
        report = import_units(store, read_units([folder], read_ahead=read_ahead))  # reads and parses the files
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        store.dispose()
    if not report.ok:
        raise SystemExit(f"import failed: {[str(u.error) for u in report.errors]}")
    totals = report.totals()
    return totals["created"] + totals["unchanged"], elapsed, cpu


def patient_sets(folder: Path) -> dict[int, list[Path]]:
    """Files a user imports for 1 patient (the shared organisation and practitioner files + one patient) and
    for all of them (the folder's files)."""
    files = discover([folder])
    shared = [p for p in files if p.name.startswith(("hospitalInformation", "practitionerInformation"))]
    patients = [p for p in files if p not in shared]
    return {1: [*shared, patients[0]], len(patients): files}


def whole_process_import(files: list[Path]) -> tuple[int, float]:
    """``medtwin import --json FILES`` as a user runs it (new process: interpreter start-up, imports, settings,
    key ring, a fresh store and its migrations, the import, the audit, the report); (resources, wall seconds).
    The key ring is made beforehand (``medtwin keys init``, untimed): a user has one."""
    cli = str(Path(sys.executable).with_name("medtwin"))
    with tempfile.TemporaryDirectory() as tmp:
        key_file = Path(tmp) / "keyring.json"
        subprocess.run([cli, "keys", "init", "--out", str(key_file)], check=True, capture_output=True)
        env = {**os.environ, "MEDTWIN_DATA_DIR": str(Path(tmp) / "data"), "MEDTWIN_KEY_FILE": str(key_file)}
        start = time.perf_counter()
        done = subprocess.run([cli, "import", "--json", *map(str, files)], env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"medtwin import failed ({done.returncode}): {done.stderr[-2000:]}")
    totals = orjson.loads(done.stdout)["totals"]
    return totals["created"] + totals["unchanged"], elapsed


def report_whole_process(folder: Path, in_process_rate: float | None, repeat: int = REPEAT,
                         patients: tuple[int, ...] | None = None, validate_rate: float | None = None) -> None:
    """Best of ``repeat`` whole-process runs for 1 and all patients, beside the in-process headline rate and
    fhir.resources validate-only."""
    print("whole process (`medtwin import --json`, start-up and migrations included, best of "
          f"{repeat}; AES-GCM codec as the CLI runs):")
    for n_patients, files in patient_sets(folder).items():
        if patients is not None and n_patients not in patients:
            continue
        count, best = min((whole_process_import(files) for _ in range(repeat)), key=lambda r: r[1])
        extra = f" = {count / best / in_process_rate:.2f}x the in-process headline" if in_process_rate else ""
        extra += f", {count / best / validate_rate:.2f}x fhir.resources validate only" if validate_rate else ""
        print(f"  {n_patients:2d} patient(s), {len(files):2d} files: {count:6d} resources in {best:6.2f} s = "
              f"{count / best:8.0f} resources/s{extra}")


def smoke(folder: Path) -> None:
    """One whole-process import of 1 patient next to the in-process import of the same files (same count)."""
    files = patient_sets(folder)[1]
    with tempfile.TemporaryDirectory() as tmp:
        for path in files:
            (Path(tmp) / path.name).symlink_to(path)
        in_process, _, _ = medtwin_import(Path(tmp))
    print(f"in-process import of the same files: {in_process} resources")
    report_whole_process(folder, None, repeat=1, patients=(1,))


def main() -> None:
    from medtwin.security.crypto import AesGcmCodec, KeyRing

    if "--smoke" in sys.argv:  # seconds: the test suite runs it
        sys.argv.remove("--smoke")
        folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data" / "synthea-r4"
        smoke(folder)
        return
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data" / "synthea-r4"
    files = discover([folder])
    aes = AesGcmCodec(KeyRing.generate())
    print(f"machine: {machine()}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"data: {len(files)} files from {folder}")
    # Alternate the variants and keep each one's best of REPEAT runs, so that load from other processes on
    # the machine hits all alike (the figures are throughputs of an idle-ish machine, as timeit reports).
    runs: dict[str, list[tuple[int, float, float]]] = {"ours": [], "ours_1thread": [], "ours_aes": []}
    base_runs, paused_runs = [], []
    for _ in range(REPEAT):
        runs["ours"].append(medtwin_import(folder))
        base_runs.append(validate_only(files))
        runs["ours_1thread"].append(medtwin_import(folder, read_ahead=0))
        runs["ours_aes"].append(medtwin_import(folder, codec=aes))
        paused_runs.append(validate_only(files, paused=True))
    best = {name: min(r, key=lambda x: x[1]) for name, r in runs.items()}
    base_n, base_t, base_parse, _ = min(base_runs, key=lambda r: r[1])
    paused_n, paused_t, _, _ = min(paused_runs, key=lambda r: r[1])
    print(f"runs (s): medtwin {[round(r[1], 2) for r in runs['ours']]}, "
          f"fhir.resources {[round(r[1], 2) for r in base_runs]}")
    ours_n, ours_t, _ = best["ours"]
    ours_rate, base_rate = ours_n / ours_t, base_n / base_t
    print(f"medtwin full import into SQLite : {ours_n:6d} resources in {ours_t:6.2f} s = {ours_rate:8.0f} resources/s")
    print(f"fhir.resources R4B validate only: {base_n:6d} resources in {base_t:6.2f} s = {base_rate:8.0f} resources/s")
    with_parse = base_n / (base_t + base_parse)
    print(f"fhir.resources R4B read+parse+validate: {with_parse:8.0f} resources/s (the same files, as medtwin reads them)")
    print(f"ratio (medtwin import / fhir.resources validate only): {ours_rate / base_rate:.2f}x  (target >= 2x)")
    print(f"ratio (medtwin import / fhir.resources read+parse+validate): {ours_rate / with_parse:.2f}x")
    print("for transparency:")
    for name, label in (("ours_1thread", "medtwin on one thread (no read-ahead)"),
                        ("ours_aes", "medtwin with the AES-GCM codec (as the CLI/server run)")):
        n, t, _ = best[name]
        print(f"  {label:55s}: {n / t:8.0f} resources/s = {n / t / base_rate:.2f}x validate only")
    paused_rate = paused_n / paused_t
    print(f"  {'fhir.resources validate only, collector paused too':55s}: {paused_rate:8.0f} resources/s "
          f"(medtwin / it = {ours_rate / paused_rate:.2f}x)")
    # CPU seconds are less sensitive to other processes than wall time (the one-thread import: its CPU time
    # is its work; the read-ahead's second thread would add CPU time, not remove it).
    ours_cpu = min(r[2] for r in runs["ours_1thread"])
    base_cpu = min(r[3] for r in base_runs)
    print(f"  {'CPU seconds: medtwin one thread / validate only':55s}: {ours_cpu:.2f} s / {base_cpu:.2f} s "
          f"(ratio of rates {(ours_n / ours_cpu) / (base_n / base_cpu):.2f}x)")
    report_whole_process(folder, ours_rate, validate_rate=base_rate)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
