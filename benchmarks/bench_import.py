"""Import throughput: medtwin's full import (parse, validate, resolve references, index, normalise units,
store in SQLite, build twin summaries) against fhir.resources (R4B pydantic models) merely validating the
same resources, measured in the same run.

    .venv/bin/python benchmarks/bench_import.py [FOLDER]     (default: ../shared/data/synthea-r4)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine  # noqa: E402

from medtwin.record.sources import discover, read_units  # noqa: E402
from medtwin.store.database import Store  # noqa: E402
from medtwin.twin.build import import_units  # noqa: E402

REPEAT = 3


def validate_only(files: list[Path]) -> tuple[int, float, float]:
    from fhir.resources.R4B import get_fhir_model_class

    parse_start = time.perf_counter()
    bundles = [orjson.loads(path.read_bytes()) for path in files]
    parse_time = time.perf_counter() - parse_start  # reported separately: the headline baseline excludes it
    count = failed = 0
    start = time.perf_counter()
    for bundle in bundles:
        for entry in bundle["entry"]:
            resource = entry["resource"]
            try:
                get_fhir_model_class(resource["resourceType"]).model_validate(resource)
            except ValueError:
                failed += 1  # R4B is stricter than R4 for a few elements; counted, time still spent
            count += 1
    elapsed = time.perf_counter() - start
    return count, elapsed, parse_time


def medtwin_import(folder: Path) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/bench.db")
        store.migrate()
        start = time.perf_counter()
        report = import_units(store, read_units([folder]))  # includes reading and parsing the files
        elapsed = time.perf_counter() - start
        store.dispose()
    if not report.ok:
        raise SystemExit(f"import failed: {[str(u.error) for u in report.errors]}")
    totals = report.totals()
    return totals["created"] + totals["unchanged"], elapsed


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data" / "synthea-r4"
    files = discover([folder])
    print(f"machine: {machine()}")
    print(f"data: {len(files)} files from {folder}")
    # Alternate the two and keep each one's best of REPEAT runs, so that load from other processes on the
    # machine hits both alike (the figures are throughputs of an idle-ish machine, as timeit reports).
    ours_runs, base_runs = [], []
    for _ in range(REPEAT):
        ours_runs.append(medtwin_import(folder))
        base_runs.append(validate_only(files))
    ours_n, ours_t = min(ours_runs, key=lambda r: r[1])
    base_n, base_t, base_parse = min(base_runs, key=lambda r: r[1])
    print(f"runs (s): medtwin {[round(r[1], 2) for r in ours_runs]}, fhir.resources {[round(r[1], 2) for r in base_runs]}")
    ours_rate, base_rate = ours_n / ours_t, base_n / base_t
    print(f"medtwin full import into SQLite : {ours_n:6d} resources in {ours_t:6.2f} s = {ours_rate:8.0f} resources/s")
    print(f"fhir.resources R4B validate only: {base_n:6d} resources in {base_t:6.2f} s = {base_rate:8.0f} resources/s")
    with_parse = base_n / (base_t + base_parse)
    print(f"fhir.resources R4B read+parse+validate: {with_parse:8.0f} resources/s (the same files, as medtwin reads them)")
    print(f"ratio (medtwin import / fhir.resources validate only): {ours_rate / base_rate:.2f}x  (target >= 2x)")
    print(f"ratio (medtwin import / fhir.resources read+parse+validate): {ours_rate / with_parse:.2f}x")


if __name__ == "__main__":
    main()
