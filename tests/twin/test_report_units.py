"""Issue 15 item 8 on the one-page report: display units and short names (vocab.display), the codes kept
in tooltips. The warfarin patient's record has INR (LOINC 6301-6, UCUM {INR}), body temperature (Cel) and
blood pressure (mm[Hg]) as a FHIR import stores them."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from tests.twin.test_report import import_patients

from medtwin.store.database import Store
from medtwin.twin import report as R

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def visible_text(html: str) -> str:
    """What a reader sees: no attributes (tooltips), no tags."""
    return re.sub(r"<[^>]*>", "", html)


def test_report_shows_display_units_and_short_names(sqlite_store: Store) -> None:
    ids = import_patients(sqlite_store, 4)
    reports = [R.build_report(sqlite_store, pid, now=NOW) for pid in ids]
    report = next(r for r in reports if r is not None and any(lab.code == "6301-6" for lab in r.labs))
    inr = next(lab for lab in report.labs if lab.code == "6301-6")
    temp = next(v for v in report.vitals if v.code == "8310-5")
    assert (inr.unit, temp.unit) == ("{INR}", "Cel")  # stored as coded
    assert R.fmt_name(inr) == "INR" and R.fmt_measurement(inr) == f"{inr.value:.3g}"
    assert R.fmt_measurement(temp).endswith(" °C")
    html = R.render_html(report)
    seen = visible_text(html)
    assert f"INR: {inr.value:.3g}" in seen
    assert "°C" in seen and "mmHg" in seen
    assert "Atrial fibrillation" in seen
    for code in ("Cel", "mm[Hg]", "{INR}", "Platelet poor plasma", "(disorder)"):
        assert code not in seen, code
    # the codes stay in the tooltip
    assert 'title="INR in Platelet poor plasma by Coagulation assay · LOINC 6301-6 · UCUM {INR}"' in html
