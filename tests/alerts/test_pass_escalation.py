"""Within one engine pass an escalation is never lost, and every NEWS2 observation set is scored in time order:
however the data are split into passes, the same alerts open with the same highest severities."""

from __future__ import annotations

import random
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.alerts.test_engine import NORMAL, T0, alerts, make_engine, vitals

from medtwin.alerts.engine import AlertEngine
from medtwin.alerts.glucose import predict_hypo
from medtwin.alerts.news2 import VitalSigns, score
from medtwin.alerts.repository import SEVERITY_RANK, Alert
from medtwin.store.database import Store
from medtwin.vocab import GlucoseForecast, Sample
from medtwin.vocab.news2 import news2_bands

#: complete observation sets; their scores come from the chart (below), not from this file
PROFILES: list[dict[str, float]] = [
    NORMAL,  # 0
    {**NORMAL, "temp": 39.5},  # 2: no alert, and a complete set clears one
    {**NORMAL, "rr": 8},  # 3 in one parameter: low-medium
    {**NORMAL, "hr": 115, "temp": 39.5, "rr": 22},  # 6: medium
    {**NORMAL, "rr": 25, "spo2": 91, "hr": 115},  # 8: high
]


def severity_of(profile: dict[str, float]) -> str | None:
    """The alert severity the chart gives a set (None: no alert)."""
    result = score(VitalSigns(respiratory_rate=profile["rr"], spo2=profile["spo2"],
                              supplemental_oxygen=bool(profile["o2"]), systolic_bp=profile["sbp"],
                              heart_rate=profile["hr"], consciousness=int(profile["acvpu"]),
                              temperature=profile["temp"]))
    return news2_bands()[result.risk].alert_severity if result.triggered else None


def peak(alert: Alert) -> str:
    return max((alert.severity, str(alert.details.get("peak_severity", ""))), key=lambda s: SEVERITY_RANK.get(s, 0))


def test_profiles_span_no_alert_to_critical() -> None:
    assert [severity_of(p) for p in PROFILES] == [None, None, "medium", "high", "critical"]


def test_a_7_then_a_2_in_one_pass_opens_the_alert_and_leaves_it_for_a_person(sqlite_store: Store) -> None:
    """Before: only the newest set (2) was scored and no alert ever opened."""
    engine = make_engine(sqlite_store)
    engine.on_samples(vitals(0, **PROFILES[4]) + vitals(5, **PROFILES[1]))
    engine.stop()
    (alert,) = alerts(sqlite_store)
    assert (alert.severity, alert.status, alert.opened_at) == ("critical", "open", T0)
    assert alert.condition_cleared_at is not None and alert.condition_cleared_at.minute == 5  # at the 2, not later
    assert alert.needs_person and alert.details["history"] == [[T0.isoformat(), 8, "high"]]


def test_news2_follows_the_band_within_one_pass_and_keeps_its_peak_and_history(sqlite_store: Store) -> None:
    """3, 8, 6 in one pass: the severity follows to high, the peak (critical) and every score are kept."""
    engine = make_engine(sqlite_store)
    engine.on_samples(vitals(10, **PROFILES[3]) + vitals(0, **PROFILES[2]) + vitals(5, **PROFILES[4]))
    engine.stop()
    (alert,) = alerts(sqlite_store)
    assert (alert.severity, alert.details["peak_severity"], alert.status) == ("high", "critical", "open")
    assert [h[1:] for h in alert.details["history"]] == [[3, "low-medium"], [8, "high"], [6, "medium"]]


def _forecast(patient: str, minute: int, means: list[float]) -> GlucoseForecast:
    horizons = tuple(range(5, 5 * len(means) + 1, 5))
    return GlucoseForecast(patient_id=patient, issued_at=T0 + timedelta(minutes=minute), glucose_now_mg_dl=means[0],
                           horizons_min=horizons, mean_mg_dl=tuple(means),
                           lower80_mg_dl=tuple(v - 15 for v in means), upper80_mg_dl=tuple(v + 15 for v in means),
                           lower95_mg_dl=tuple(v - 25 for v in means), upper95_mg_dl=tuple(v + 25 for v in means),
                           insulin_sensitivity_ratio=1.0, twin_version=None)


def test_an_escalation_between_two_lower_forecasts_of_one_pass_is_kept(sqlite_store: Store) -> None:
    """medium, high, medium predictions in one pass: the alert is high (before: the last, medium, replaced the
    pending escalation and the alert stayed medium)."""
    engine = make_engine(sqlite_store)
    medium = [86, 82, 78, 74, 66, 60, 55, 50, 48, 47, 47, 47]
    high = [72, 64, 56, 52, 50, 50]
    for minute, means in ((0, medium), (5, high), (10, medium)):
        engine.on_forecast(_forecast("p1", minute, [float(v) for v in means]))
    engine.stop()
    (alert,) = [a for a in alerts(sqlite_store) if a.rule == "predicted-hypo"]
    assert alert.severity == "high"


def _news2_alerts(store: Store, engine: AlertEngine, chunks: list[list[Sample]], patient: str) -> list[Any]:
    for chunk in chunks:
        engine.on_samples(chunk)
        assert engine.flush()
    found = [a for a in alerts(store) if a.patient_id == patient and a.rule == "news2"]
    return sorted((a.opened_at, peak(a), a.status, a.condition_cleared_at) for a in found)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kinds=st.lists(st.integers(0, len(PROFILES) - 1), min_size=1, max_size=14), data=st.data())
def test_news2_alerts_do_not_depend_on_how_observation_sets_are_split_into_passes(
        sqlite_store: Store, kinds: list[int], data: st.DataObject) -> None:
    """Any split into passes (each shuffled) opens the same alerts, with the same highest severities, statuses
    and clearing times, as one set per pass; the highest severity reached is that of the worst set."""
    cuts = sorted(data.draw(st.sets(st.integers(1, max(len(kinds) - 1, 1)), max_size=len(kinds))))
    rng = random.Random(data.draw(st.integers(0, 2**16)))
    engine = make_engine(sqlite_store)
    found = []
    for split in ([[i] for i in range(len(kinds))],
                  [list(range(a, b)) for a, b in zip([0, *cuts], [*cuts, len(kinds)], strict=True) if a < b]):
        patient = uuid.uuid4().hex
        chunks = []
        for indices in split:
            samples = [replace(s, patient_id=patient) for i in indices for s in vitals(5 * i, **PROFILES[kinds[i]])]
            chunks.append(rng.sample(samples, len(samples)))
        found.append(_news2_alerts(sqlite_store, engine, chunks, patient))
    engine.stop()
    assert found[0] == found[1]
    worst = max((s for s in (severity_of(PROFILES[k]) for k in kinds) if s), key=SEVERITY_RANK.__getitem__,
                default=None)
    assert max((p for _o, p, _s, _c in found[0]), key=SEVERITY_RANK.__getitem__, default=None) == worst


FORECASTS: list[tuple[list[float], str | None]] = [  # means, the severity predict_hypo gives (checked below)
    ([86, 82, 78, 74, 66, 60, 55, 50, 48, 47, 47, 47], "medium"),
    ([72, 64, 56, 52, 50, 50], "high"),
    ([95, 90, 85, 80, 76, 74], None),  # between 70 and 80: a held condition stays held
    ([95, 90, 85, 82, 81, 80], None),  # at or above 80: clears
]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kinds=st.lists(st.integers(0, len(FORECASTS) - 1), min_size=1, max_size=12), data=st.data())
def test_predicted_hypo_alerts_do_not_depend_on_how_forecasts_are_split_into_passes(
        sqlite_store: Store, kinds: list[int], data: st.DataObject) -> None:
    """Several forecasts in one pass: the same alerts and highest severities as one forecast per pass, and the
    highest severity reached is that of the worst prediction."""
    assert [predict_hypo(_forecast("p", 0, [float(v) for v in means])).severity
            for means, _s in FORECASTS] == [s for _m, s in FORECASTS[:2]] + [None, None]
    cuts = sorted(data.draw(st.sets(st.integers(1, max(len(kinds) - 1, 1)), max_size=len(kinds))))
    engine = make_engine(sqlite_store)
    found = []
    for split in ([[i] for i in range(len(kinds))],
                  [list(range(a, b)) for a, b in zip([0, *cuts], [*cuts, len(kinds)], strict=True) if a < b]):
        patient = uuid.uuid4().hex
        for indices in split:
            for i in data.draw(st.permutations(indices)):
                engine.on_forecast(_forecast(patient, 5 * i, [float(v) for v in FORECASTS[kinds[i]][0]]))
            assert engine.flush()
        listed = [a for a in alerts(sqlite_store) if a.patient_id == patient and a.rule == "predicted-hypo"]
        found.append(sorted((a.opened_at, a.severity, a.status, a.condition_cleared_at) for a in listed))
    engine.stop()
    assert found[0] == found[1]
    worst = max((s for s in (FORECASTS[k][1] for k in kinds) if s), key=SEVERITY_RANK.__getitem__, default=None)
    assert max((s for _o, s, _st, _c in found[0]), key=SEVERITY_RANK.__getitem__, default=None) == worst
