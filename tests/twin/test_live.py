"""The live glucose twin service: restart resumes exactly, start from a fitted twin or the cohort prior,
saved state and twin versions, listeners, the worker thread, late and early samples."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pytest
from sqlalchemy import select

from medtwin.physiology.calibrate import FITTED, FittedTwin
from medtwin.physiology.synthetic import synthetic_log
from medtwin.physiology.uva_padova import PARAMETER_NAMES, virtual_patients
from medtwin.store.database import Store
from medtwin.store.live_tables import twin_live_state
from medtwin.store.twins import TwinRepository
from medtwin.twin.live import LiveGlucoseService, latest_forecast, load_state, samples_from_log
from medtwin.vocab import CARBS, GLUCOSE, INSULIN_BASAL, GlucoseForecast, Sample

T0 = datetime(2024, 5, 1, tzinfo=UTC)
NOW = datetime(2024, 6, 1, tzinfo=UTC)


def _samples(name: str = "adult#003", days: int = 1, seed: int = 4, patient: str = "p1") -> list[Sample]:
    log, _truth = synthetic_log(virtual_patients([name]), days, np.random.default_rng(seed))
    return samples_from_log(patient, log, T0)


def _service(store: Store, seed: int = 7, **kwargs: object) -> LiveGlucoseService:
    return LiveGlucoseService(store, clock=lambda: NOW, rng=np.random.default_rng(seed), start_worker=False,
                              **kwargs)  # type: ignore[arg-type]


def _split(samples: list[Sample], at: datetime) -> tuple[list[Sample], list[Sample]]:
    return [s for s in samples if s.time < at], [s for s in samples if s.time >= at]


def test_a_new_service_resumes_exactly_where_the_last_one_stopped(store: Store, tmp_path: object) -> None:
    samples = _samples()
    first, second = _split(samples, T0 + timedelta(hours=9, minutes=2))
    a = _service(store)
    a.on_samples(first)
    assert a.process_pending() == sum(1 for s in first if s.metric == GLUCOSE)
    a.close()
    b = _service(store, seed=99)  # a fresh process: its own generator is not used for a saved filter
    b.on_samples(second)
    b.process_pending()

    reference = Store(f"sqlite:///{tmp_path}/uninterrupted.db")
    reference.migrate()
    c = _service(reference)  # one process, the same two batches (the forecasts shown learn from those issued)
    c.on_samples(first)
    c.process_pending()
    c.on_samples(second)
    c.process_pending()
    resumed, uninterrupted = b._live["p1"].filter, c._live["p1"].filter
    assert resumed.to_dict() == uninterrupted.to_dict()  # ensemble, multipliers, generator, inputs, counts
    assert resumed.n_assimilated == 289 and resumed.time_min == uninterrupted.time_min
    assert b.latest_forecast("p1") == c.latest_forecast("p1")
    reference.dispose()


def test_saved_state_and_glucose_live_versions(sqlite_store: Store) -> None:
    samples = _samples()
    service = _service(sqlite_store, version_every_min=360.0)
    for hour in range(0, 24, 2):  # two-hourly batches
        lo, hi = T0 + timedelta(hours=hour), T0 + timedelta(hours=hour + 2)
        service.on_samples([s for s in samples if lo <= s.time < hi])
        service.process_pending()
    with sqlite_store.connect() as connection:
        row = connection.execute(select(twin_live_state)).one()
        history = TwinRepository(connection, sqlite_store.codec).history("p1")
        state = load_state(connection, sqlite_store.codec, "p1")
        saved_forecast = latest_forecast(connection, sqlite_store.codec, "p1")
    assert row.kind == "glucose-filter" and row.patient_id == "p1"
    data_time = row.data_time if row.data_time.tzinfo else row.data_time.replace(tzinfo=UTC)
    assert data_time == T0 + timedelta(hours=23, minutes=55)
    live = [v for v in history if v.kind == "glucose-live"]
    # with the batch that started the filter (its data ends at 01:55), then with the first batch ending 6 h
    # or more of data time after the last version
    assert [v.provenance["reason"] for v in live] == ["start", "periodic", "periodic", "periodic"]
    assert row.twin_version == live[-1].version
    spans = [v.provenance["data_span"]["hours"] for v in live]
    assert spans == pytest.approx([1 + 55 / 60, 7 + 55 / 60, 13 + 55 / 60, 19 + 55 / 60], abs=1e-3)
    assert live[-1].provenance["samples_assimilated"] == 240  # readings 00:00 ... 19:55
    assert live[-1].provenance["started_from"]["kind"] == "cohort_prior"
    assert "ensemble adjustment Kalman filter" in live[0].provenance["algorithm"]
    assert state is not None and state["status"]["live_twin_version"] == live[-1].version
    assert saved_forecast == service.latest_forecast("p1")
    assert saved_forecast is not None and saved_forecast.issued_at == data_time


def test_starts_from_the_fitted_glucose_twin_when_there_is_one(sqlite_store: Store) -> None:
    patient = virtual_patients(["adolescent#005"])
    fitted = {k: float(patient.get(k)[0]) for k in FITTED}
    twin = FittedTwin(fitted=fitted, fitted_sd_log={k: 0.1 for k in FITTED},
                      covariance_log=(np.eye(len(FITTED)) * 0.01).tolist(), patient=patient.to_dict(),
                      n_readings=864, residual_sd_mg_dl=9.0)
    with sqlite_store.begin() as connection:
        version = TwinRepository(connection, sqlite_store.codec).add_version(
            "p1", "glucose", {"twin": twin.model_dump(mode="json"), "params_": fitted, "param_sd_": fitted},
            {"algorithm": "test"}, actor="test", now=NOW)
    service = _service(sqlite_store)
    service.on_samples(_samples("adolescent#005")[:40])
    service.process_pending()
    status = service.status("p1")
    assert status is not None and status.started_from.kind == "glucose_twin"
    assert status.started_from.glucose_twin_version == version
    assert status.started_from.body_weight_kg == pytest.approx(float(patient.get("BW")[0]))
    forecast = service.latest_forecast("p1")
    assert forecast is not None and forecast.twin_version == version
    reference = service._live["p1"].filter.reference
    assert reference[PARAMETER_NAMES.index("Vmx")] == pytest.approx(fitted["Vmx"])
    # the posterior SD (0.1) sets the spread of the Vmx multiplier, not the cohort's (0.5)
    assert service._live["p1"].filter.theta[:, 0].std() < 0.25


def test_listeners_get_each_forecast_and_a_failing_one_is_contained(sqlite_store: Store) -> None:
    service = _service(sqlite_store)
    got: list[GlucoseForecast] = []

    def broken(_forecast: GlucoseForecast) -> None:
        raise RuntimeError("listener bug")

    service.add_forecast_listener(broken)
    service.add_forecast_listener(got.append)
    samples = _samples(patient="p1")[:30] + _samples("child#002", patient="p2")[:20]
    service.on_samples(samples)
    service.process_pending()
    assert sorted(f.patient_id for f in got) == ["p1", "p2"]  # one forecast each per batch
    p2 = next(f for f in got if f.patient_id == "p2")
    last = max(s.time for s in samples if s.patient_id == "p2" and s.metric == GLUCOSE)
    assert p2.issued_at == last and p2.horizons_min == tuple(range(5, 65, 5))
    lo, hi = p2.at(30)[1:3]
    assert lo < p2.at(30)[0] < hi


def test_the_worker_thread_processes_and_close_drains(sqlite_store: Store) -> None:
    service = LiveGlucoseService(sqlite_store, clock=lambda: NOW, rng=np.random.default_rng(1), batch_delay_s=0.01)
    done = threading.Event()
    service.add_forecast_listener(lambda f: done.set())
    samples = _samples()[:24]
    service.on_samples(samples)
    assert done.wait(30), "the worker did not issue a forecast"
    assert service.status("p1") is not None and service.batches >= 1
    service.on_samples(_samples()[24:40])
    service.close()
    assert not service._worker.running
    assert service.pending() == 0
    status = service.status("p1")
    assert status is not None and status.data_time == max(s.time for s in _samples()[:40] if s.metric == GLUCOSE)
    service.on_samples(_samples()[40:50])  # after close: queued, not processed, no thread restarted
    time.sleep(0.05)
    assert service.pending() > 0 and not service._worker.running


def test_inputs_before_the_first_reading_late_readings_and_other_metrics(sqlite_store: Store) -> None:
    service = _service(sqlite_store)

    def sample(metric: str, minute: float, value: float, unit: str) -> Sample:
        when = T0 + timedelta(minutes=minute)
        return Sample("p1", metric, when, value, unit, value, unit, "dev", "http", f"{metric}{minute}")

    service.on_samples([sample(INSULIN_BASAL, 0, 1.4, "U/h"), sample(CARBS, 1, 30, "g"),
                        sample("heart_rate", 2, 70, "/min")])
    assert service.process_pending() == 0 and service.status("p1") is None  # no reading yet: waiting
    service.on_samples([sample(GLUCOSE, 10, 140, "mg/dL"), sample(GLUCOSE, 15, 142, "mg/dL")])
    assert service.process_pending() == 2
    status = service.status("p1")
    assert status is not None and status.started_from.basal_u_per_h == 1.4  # the basal it was told before
    assert status.started_at == T0 + timedelta(minutes=10)
    service.on_samples([sample(GLUCOSE, 12, 150, "mg/dL"), sample(GLUCOSE, 20, 5000, "mg/dL")])
    service.process_pending()
    status = service.status("p1")
    assert status is not None and status.samples_skipped == 2 and status.samples_assimilated == 2
    with sqlite_store.connect() as connection:
        payload = orjson.loads(sqlite_store.codec.open(connection.execute(select(twin_live_state.c.payload)).scalar_one()))
    assert payload["status"]["samples_skipped"] == 2
