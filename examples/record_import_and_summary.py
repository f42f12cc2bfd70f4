"""Build twins from FHIR data: generate synthetic patients, import them into an encrypted SQLite store,
print each patient's twin summary, and export one complete record as a FHIR Bundle.

    .venv/bin/python examples/record_import_and_summary.py
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from medtwin.record.sources import RawUnit
from medtwin.security.crypto import AesGcmCodec, KeyRing
from medtwin.store.database import Store
from medtwin.synthetic import generate_bundles
from medtwin.twin.build import export_patient, import_units, patient_summary


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = Store(f"sqlite:///{Path(folder) / 'example.db'}", AesGcmCodec(KeyRing.generate()))
        store.migrate()
        bundles = generate_bundles(seed=7, n_patients=3)
        report = import_units(store, [RawUnit(f"patient-{i}.json", "json", b) for i, b in enumerate(bundles)])
        print(f"imported: {report.totals()}")
        for unit in report.units:
            for patient_id in unit.patients:
                found = patient_summary(store, patient_id)
                assert found is not None
                summary, version, _ = found
                problems = ", ".join(p.display or "?" for p in summary.problems[:3])
                print(f"{summary.name} ({summary.gender}, {summary.age_years} y) twin v{version}: {problems}")
        first = report.units[0].patients[0]
        bundle = export_patient(store, first)
        assert bundle is not None
        out = Path(folder) / "export.json"
        out.write_text(json.dumps(bundle))
        print(f"exported {bundle['total']} resources of {first} ({out.stat().st_size} bytes)")
        store.dispose()


if __name__ == "__main__":
    main()
