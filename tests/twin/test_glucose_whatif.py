"""What-if on the patient's own glucose twin: the live twin first (its members' parameters and current
states), else the fitted twin, else a named virtual patient; the answer names its basis and the versions."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import numpy as np
import orjson
import pytest
from sqlalchemy import update

from medtwin.physiology.errors import PhysiologyInputError
from medtwin.physiology.scenario import Meal, Regimen, Scenario
from medtwin.physiology.synthetic import synthetic_log
from medtwin.physiology.uva_padova import virtual_patients
from medtwin.store.database import Store
from medtwin.store.live_tables import twin_live_state
from medtwin.store.twins import TwinRepository
from medtwin.twin import glucose, glucose_whatif
from medtwin.twin.live import LiveGlucoseService, load_state, samples_from_log

T0 = datetime(2024, 5, 1, tzinfo=UTC)
NOW = datetime(2024, 6, 1, tzinfo=UTC)
SCENARIO = Scenario(horizon_min=360, meals=[Meal(time_min=60, carbs_g=50)])
REGIMENS = [Regimen(name="current"), Regimen(name="basal +20 %", basal_scale=1.2)]


def clock() -> datetime:
    return NOW


def _stream(store: Store, patient: str = "p1", name: str = "adult#003", days: int = 1) -> LiveGlucoseService:
    """A day of a virtual patient's CGM and pump streamed through the live twin."""
    log, _ = synthetic_log(virtual_patients([name]), days, np.random.default_rng(4))
    service = LiveGlucoseService(store, clock=clock, rng=np.random.default_rng(7), start_worker=False)
    service.on_samples(samples_from_log(patient, log, T0))
    service.process_pending()
    service.close()
    return service


def test_without_a_twin_the_basis_says_so_and_a_virtual_patient_is_needed(sqlite_store: Store) -> None:
    found = glucose_whatif.basis(sqlite_store, "p1")
    assert found.kind == "none" and found.source is None and "no glucose twin yet" in found.description
    with pytest.raises(PhysiologyInputError) as caught:
        glucose_whatif.compare(sqlite_store, "p1", glucose_whatif.CompareRequest(
            scenario=SCENARIO, regimens=REGIMENS, n_ensemble=4), actor="dr", clock=clock, rng=np.random.default_rng(0))
    assert caught.value.field == "virtual_patient"
    result = glucose_whatif.compare(sqlite_store, "p1", glucose_whatif.CompareRequest(
        scenario=SCENARIO, regimens=REGIMENS, n_ensemble=4, virtual_patient="adult#001"),
        actor="dr", clock=clock, rng=np.random.default_rng(0))
    assert result.source.kind == "virtual_patient" and result.source.virtual_patient == "adult#001"
    assert "not this patient" in result.source.description


def test_the_live_twin_is_the_basis_with_its_members_and_current_state(sqlite_store: Store) -> None:
    service = _stream(sqlite_store)
    filt = service._live["p1"].filter
    found = glucose_whatif.basis(sqlite_store, "p1")
    assert found.kind == "live_twin" and found.n_members == filt.n_members == 32
    assert found.source is not None and found.source.live_twin_version == service._live["p1"].live_version
    assert found.source.data_time == datetime.fromtimestamp(filt.time_min * 60.0, UTC)
    assert "live glucose twin" in found.description and "population prior" in found.description

    request = glucose_whatif.CompareRequest(scenario=SCENARIO, regimens=REGIMENS, n_ensemble=32,
                                            virtual_patient="adult#001")
    result = glucose_whatif.compare(sqlite_store, "p1", request, actor="dr", clock=clock,
                                    rng=np.random.default_rng(1))
    assert result.source.kind == "live_twin" and result.n_ensemble == 32
    # minute 0 is the filter's now: the ensemble starts at the members' filtered glucose, not at a virtual
    # patient's rest (sensor noise is off in a comparison)
    members = filt.glucose_mg_dl()
    first = result.outcomes[0]
    assert first.t_min[0] == 0.0
    assert first.glucose_median_mg_dl[0] == pytest.approx(np.median(members), abs=0.01)
    assert first.glucose_p5_mg_dl[0] == pytest.approx(np.percentile(members, 5), abs=0.01)
    virtual = glucose_whatif.compare(sqlite_store, "p1", request.model_copy(update={"use_twin": False}),
                                     actor="dr", clock=clock, rng=np.random.default_rng(1))
    assert virtual.source.kind == "virtual_patient"  # members around adult#001 start at their own rest
    gb = virtual_patients(["adult#001"]).get("Gb")[0]
    assert virtual.outcomes[0].glucose_median_mg_dl[0] == pytest.approx(gb, rel=0.05)

    with sqlite_store.connect() as connection:
        repository = TwinRepository(connection, sqlite_store.codec)
        stored = repository.latest("p1", glucose.SIMULATION_KIND)
        history = {v.version: v for v in repository.history("p1")}
    assert stored is not None and stored.version == virtual.result_version
    own = history[result.result_version]
    assert own.provenance["parameter_source"]["kind"] == "live_twin"
    assert own.provenance["twin_versions"] == {"glucose-live": found.source.live_twin_version, "glucose": None}
    assert own.provenance["ensemble"]["from"].startswith("live twin members (32 held; all)")


def test_live_ensemble_carries_each_members_parameters_states_and_the_current_basal(sqlite_store: Store) -> None:
    service = _stream(sqlite_store)
    live = glucose_whatif.load_live_twin(sqlite_store, "p1")
    assert live is not None
    filt = live.filter
    assert filt.to_dict() == service._live["p1"].filter.to_dict()
    therapy = glucose_whatif._therapy(sqlite_store, "p1", live)
    ensemble = glucose_whatif.live_ensemble(live, therapy, None, np.random.default_rng(0))
    params = filt.member_parameters()
    assert ensemble.n == 32
    np.testing.assert_array_equal(ensemble.initial_state, filt.states)
    np.testing.assert_allclose(ensemble.get("Vmx"), params[:, glucose_whatif._parameter("Vmx")])
    assert np.ptp(ensemble.get("Vmx")) > 0  # members differ: the posterior spread is kept
    np.testing.assert_allclose(ensemble.basal_rate_u_per_min() * 60.0, filt.basal_u_per_h, rtol=1e-12)
    assert np.all(ensemble.carb_ratio_g_per_unit == therapy.carb_ratio_g_per_unit[0])
    more = glucose_whatif.live_ensemble(live, therapy, 80, np.random.default_rng(0))
    fewer = glucose_whatif.live_ensemble(live, therapy, 5, np.random.default_rng(0))
    assert more.n == 80 and fewer.n == 5 and len(set(fewer.names)) == 5  # fewer: without replacement
    mean = glucose_whatif.live_mean_member(live, therapy)
    np.testing.assert_allclose(mean.initial_state[0], filt.states.mean(axis=0))
    np.testing.assert_allclose(mean.get("Vmx")[0], filt.reference[glucose_whatif._parameter("Vmx")]
                               * np.exp(filt.theta[:, 0].mean()), rtol=1e-12)


def test_a_live_twin_started_from_the_fitted_twin_names_both(sqlite_store: Store) -> None:
    log, _ = synthetic_log(virtual_patients(["adult#005"]), 3, np.random.default_rng(5))
    fitted = glucose.fit(sqlite_store, "p1", log, actor="dr", clock=clock, max_iterations=3)
    assert glucose_whatif.basis(sqlite_store, "p1").kind == "glucose_twin"
    _stream(sqlite_store, name="adult#005")
    found = glucose_whatif.basis(sqlite_store, "p1")
    assert found.kind == "live_twin" and found.source is not None
    assert found.source.glucose_twin_version == fitted.version
    assert f"started from fitted twin v{fitted.version}" in found.description
    live = glucose_whatif.load_live_twin(sqlite_store, "p1")
    assert live is not None
    therapy = glucose_whatif._therapy(sqlite_store, "p1", live)
    twin = glucose.latest_twin_version(sqlite_store, "p1")
    assert twin is not None
    fitted_patient = glucose._fitted_twin(twin).parameters()
    assert therapy.carb_ratio_g_per_unit[0] == fitted_patient.carb_ratio_g_per_unit[0]
    simulated = glucose_whatif.simulate(sqlite_store, "p1", glucose_whatif.SimulateRequest(scenario=SCENARIO),
                                        actor="dr", clock=clock, rng=np.random.default_rng(0))
    assert simulated.source.kind == "live_twin" and simulated.patients[0].name == "live twin (ensemble mean)"


def test_an_unreadable_live_state_falls_back_and_is_logged(sqlite_store: Store,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    _stream(sqlite_store)
    with sqlite_store.begin() as connection:
        state = load_state(connection, sqlite_store.codec, "p1")
        assert state is not None
        state["filter"]["format"] = 99
        connection.execute(update(twin_live_state).where(twin_live_state.c.patient_id == "p1").values(
            payload=sqlite_store.codec.seal(orjson.dumps(state))))
    with caplog.at_level(logging.WARNING):
        found = glucose_whatif.basis(sqlite_store, "p1")
    assert found.kind == "none"
    assert any("could not be read" in r.getMessage() for r in caplog.records)
