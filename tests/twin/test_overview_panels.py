"""The problem-oriented page's rules (model/panels.py), what the service serves (twin/panels.py), the NEWS2
trend under the flowsheet (scored by hand from the RCP 2017 chart) and the CGM trace's events
(twin/cgm_events.py: a rescue is carbohydrate for a low without a bolus). Issue #15 item 9 and CGM events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from tests.twin.test_report import END, import_patients, store_samples

from medtwin.model.panels import PatientFacts, choose_panels
from medtwin.store.database import Store
from medtwin.twin.cgm_events import cgm_events
from medtwin.twin.panels import news2_trend, patient_panels

T1D, AF, CKD = "46635009", "49436004", "433144002"


def keys(facts: PatientFacts) -> list[tuple[str, bool]]:
    return [(c.panel.key, c.shown) for c in choose_panels(facts)]


def test_rules_choose_from_problems_medications_and_data_in_page_order() -> None:
    none: frozenset[str] = frozenset()
    # type 1 diabetes without any data: the CGM panel is chosen but hidden
    assert keys(PatientFacts([(T1D, "Diabetes mellitus type 1 (disorder)")], [], none)) == [("cgm", False)]
    # with CGM and wearable data: CGM first, then the vital signs
    assert keys(PatientFacts([(T1D, "")], [], frozenset({"glucose", "heart_rate"}))) == [("cgm", True), ("vitals", True)]
    # atrial fibrillation on warfarin with an INR and a wearable: vitals, anticoagulation; never CGM
    af = PatientFacts([(AF, "Atrial fibrillation (disorder)")], [("855332", "Warfarin Sodium 5 MG Oral Tablet")],
                      frozenset({"respiratory_rate", "6301-6"}))
    chosen = choose_panels(af)
    assert [(c.panel.key, c.shown) for c in chosen] == [("vitals", True), ("anticoagulation", True)]
    assert chosen[0].reasons == ("problem: Atrial fibrillation", "device data")
    assert chosen[1].reasons == ("medication: warfarin",) and chosen[1].panel.target == (2.0, 3.0)
    # chronic kidney disease with a creatinine but no eGFR: shown with the series that has data
    ckd = choose_panels(PatientFacts([(CKD, "")], [], frozenset({"2160-0"})))
    assert [(c.panel.key, [s.name for s in c.with_data]) for c in ckd] == [("kidney", ["2160-0"])]
    # a healthy adult with a creatinine only: nothing calls for a panel
    assert keys(PatientFacts([], [("314076", "lisinopril 10 MG Oral Tablet")], frozenset({"2160-0"}))) == []


def test_service_serves_the_choice_with_the_zone(sqlite_store: Store) -> None:
    ids = import_patients(sqlite_store, 3)  # type 1 diabetes, hypertension, atrial fibrillation
    t = END.timestamp() - 300.0 * np.arange(12)[::-1]
    store_samples(sqlite_store, ids[0], "glucose", t, 120.0 + np.arange(12))
    answer = patient_panels(sqlite_store, ids[0], default_zone="Europe/Berlin")
    assert [(p.key, p.shown) for p in answer.panels][:1] == [("cgm", True)]
    assert (answer.time_zone, answer.time_zone_source) == ("Europe/Berlin", "server")  # the record has none
    af = patient_panels(sqlite_store, ids[2])
    assert [p.key for p in af.panels if p.shown] == ["anticoagulation"]  # no device vitals yet: vitals hidden
    assert [p.key for p in af.panels if not p.shown] == ["vitals"]
    inr = next(p for p in af.panels if p.key == "anticoagulation")
    assert inr.doses and "Warfarin" in inr.doses[0]["medication"] and "INR 2.0-3.0" in inr.doses[0]["dosage"]


def test_news2_trend_scores_each_set_by_the_chart(sqlite_store: Store) -> None:
    (pid,) = import_patients(sqlite_store)
    base = END.timestamp()
    sets = [  # RCP 2017 by hand: (RR, SpO2, SBP, pulse, temp) -> aggregate (air and consciousness missing)
        ((16, 97, 120, 70, 37.0), 0),
        ((22, 95, 105, 115, 38.5), 2 + 1 + 1 + 2 + 1),
        ((26, 91, 95, 135, 39.5), 3 + 3 + 2 + 3 + 2),
    ]
    for k, (values, _) in enumerate(sets):
        at = np.array([base + 1800.0 * k])
        for metric, v in zip(("respiratory_rate", "spo2", "systolic_bp", "heart_rate", "body_temperature"), values,
                             strict=True):
            store_samples(sqlite_store, pid, metric, at, np.array([float(v)]))
    trend = news2_trend(sqlite_store, pid, hours=2)
    assert trend.scores == [s for _, s in sets] and trend.complete == [False] * 3
    assert trend.risks[-1] == "high" and [t.timestamp() for t in trend.times] == [base + 1800.0 * k for k in range(3)]


def test_cgm_events_mark_rescue_carbohydrate(sqlite_store: Store) -> None:
    (pid,) = import_patients(sqlite_store)
    base = END.timestamp()
    store_samples(sqlite_store, pid, "glucose", base + 300.0 * np.arange(24), np.r_[np.full(12, 110.0), np.full(12, 62.0)])
    store_samples(sqlite_store, pid, "insulin_bolus", np.array([base]), np.array([5.0]))
    store_samples(sqlite_store, pid, "carbs", np.array([base, base + 300.0 * 14, base + 300.0 * 20]),
                  np.array([50.0, 15.0, 15.0]))
    start = datetime.fromtimestamp(base, UTC) - timedelta(minutes=1)
    events = cgm_events(sqlite_store, pid, start, start + timedelta(hours=3), now=start + timedelta(hours=3))
    assert [b.value for b in events.boluses] == [5.0]
    # the meal with its bolus is no rescue; both 15 g taken while the CGM read 62 are
    assert [(c.grams, c.rescue) for c in events.carbs] == [(50.0, False), (15.0, True), (15.0, True)]
