"""The glucose twin service on a real store: scenario hashing, parameter choice, ensembles, stored versions."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from medtwin.physiology.calibrate import FITTED
from medtwin.physiology.errors import PhysiologyInputError
from medtwin.physiology.scenario import Meal, Regimen, Scenario
from medtwin.physiology.synthetic import synthetic_log
from medtwin.physiology.uva_padova import PARAMETER_NAMES, virtual_patients
from medtwin.solve import RK4
from medtwin.store.database import Store
from medtwin.store.twins import TwinRepository
from medtwin.twin import glucose, glucose_whatif

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SCENARIO = Scenario(horizon_min=720, meals=[Meal(time_min=120, carbs_g=60)])


def clock() -> datetime:
    return NOW


def test_scenario_hash_is_canonical() -> None:
    by_clock = Scenario.model_validate({"horizon_min": 720, "meals": [{"at": "02:00", "carbs_g": 60}]})
    assert glucose.scenario_hash(by_clock) == glucose.scenario_hash(SCENARIO)
    other = SCENARIO.model_copy(update={"meals": [Meal(time_min=120, carbs_g=61)]})
    assert glucose.scenario_hash(other) != glucose.scenario_hash(SCENARIO)
    assert glucose.scenario_hash(SCENARIO).startswith("sha256:") and len(glucose.scenario_hash(SCENARIO)) == 71


def test_simulate_stores_a_version_with_provenance(sqlite_store: Store) -> None:
    request = glucose_whatif.SimulateRequest(scenario=SCENARIO, virtual_patient="child#002")
    result = glucose_whatif.simulate(sqlite_store, "p1", request, actor="dr", clock=clock,
                              rng=np.random.default_rng(0), solver=RK4(step=1.0))
    assert result.patients[0].name == "child#002" and len(result.t_min) == 721
    with sqlite_store.connect() as connection:
        stored = TwinRepository(connection, sqlite_store.codec).latest("p1", glucose.SIMULATION_KIND)
    assert stored is not None and stored.version == result.result_version == 1
    assert stored.created_at == NOW and stored.actor == "dr"
    assert {"name": "RK4", "step": 1.0}.items() <= stored.provenance["solver"].items()
    assert stored.provenance["parameter_source"] == {"kind": "virtual_patient", "virtual_patient": "child#002"}
    assert stored.provenance["scenario_hash"] == glucose.scenario_hash(SCENARIO)
    assert stored.payload["scenario"]["meals"] == [{"time_min": 120.0, "carbs_g": 60.0}]
    assert stored.payload["result"]["patients"][0]["metrics"] == result.patients[0].metrics.model_dump()


def test_virtual_patient_is_required_without_a_twin(sqlite_store: Store) -> None:
    for name in (None, "adult#404"):
        with pytest.raises(PhysiologyInputError) as caught:
            glucose_whatif.simulate(sqlite_store, "p1", glucose_whatif.SimulateRequest(scenario=SCENARIO, virtual_patient=name),
                             actor="dr", clock=clock, rng=np.random.default_rng(0))
        assert caught.value.field == "virtual_patient"
    with sqlite_store.connect() as connection:
        assert TwinRepository(connection, sqlite_store.codec).history("p1") == []


def test_virtual_ensemble_is_centred_on_the_patient() -> None:
    patient = virtual_patients(["adult#002"])
    ensemble = glucose.virtual_ensemble(patient, 400, np.random.default_rng(1))
    assert ensemble.n == 400
    for name in FITTED:
        column = PARAMETER_NAMES.index(name)
        values = np.log(ensemble.values[:, column])
        assert abs(np.median(values) - np.log(patient.values[0, column])) < 0.05, name
        assert values.std() > 0.01, name
    # untouched parameters stay the patient's; each member rests at its own steady state
    assert np.all(ensemble.get("BW") == patient.get("BW")[0])
    np.testing.assert_allclose(ensemble.initial_state[:, 12] / ensemble.get("Vg"), ensemble.get("Gb"), rtol=1e-9)


def test_fit_then_compare_uses_the_posterior(sqlite_store: Store) -> None:
    assert glucose.latest(sqlite_store, "p1") is None
    log, _ = synthetic_log(virtual_patients(["adult#005"]), 3, np.random.default_rng(5))
    fitted = glucose.fit(sqlite_store, "p1", log, actor="dr", clock=clock, max_iterations=3)
    assert fitted.version == 1 and fitted.provenance["data_span"]["n_meals"] == len(log.meals)
    assert fitted.provenance["at"] == NOW.isoformat()
    again = glucose.latest(sqlite_store, "p1")
    assert again is not None and again.params_ == fitted.params_ and again.param_sd_ == fitted.param_sd_
    request = glucose_whatif.CompareRequest(scenario=SCENARIO, regimens=[Regimen(name="current")], n_ensemble=4,
                                     virtual_patient="adult#001")
    result = glucose_whatif.compare(sqlite_store, "p1", request, actor="dr", clock=clock, rng=np.random.default_rng(2))
    assert result.source.kind == "glucose_twin" and result.source.glucose_twin_version == 1
    assert result.result_version == 2 and result.n_ensemble == 4
    with sqlite_store.connect() as connection:
        kinds = [v.kind for v in TwinRepository(connection, sqlite_store.codec).history("p1")]
    assert kinds == ["glucose", "glucose-simulation"]
