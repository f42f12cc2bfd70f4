"""Acceptance: personalised twins predict the next day better than the population-average patient."""

from __future__ import annotations

import numpy as np
import pytest

from medtwin.physiology.calibrate import GlucoseLog, TwinCalibrator, log_inputs, parse_log
from medtwin.physiology.errors import PhysiologyInputError
from medtwin.physiology.simulate import simulate_inputs
from medtwin.physiology.synthetic import split_log, synthetic_log
from medtwin.physiology.uva_padova import virtual_patients


def _next_day_rmse(calibrator: TwinCalibrator, full: GlucoseLog) -> tuple[float, float]:
    t = np.asarray(full.cgm_t_min)
    day4 = t >= 3 * 1440
    observed = np.asarray(full.cgm_mg_dl)[day4]
    rmse = []
    for patient in (calibrator.patient_, calibrator.population_patient_):
        carbs, insulin, events = log_inputs(full, 1)
        predicted = simulate_inputs(patient, carbs, insulin, t, events=events).glucose_mg_dl[day4, 0]
        rmse.append(float(np.sqrt(np.mean((predicted - observed) ** 2))))
    return rmse[0], rmse[1]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["adult#004", "adolescent#006"])
def test_fitted_twin_beats_population_average_by_30_percent(name: str) -> None:
    patient = virtual_patients([name])
    log, _truth = synthetic_log(patient, 4, np.random.default_rng(7))
    head, full = split_log(log, 3 * 1440)
    calibrator = TwinCalibrator(exclude=(name,)).fit(head)  # held out from the priors
    assert set(calibrator.params_) == {"Gb", "Vmx", "kp3", "kabs"}
    assert all(sd > 0 for sd in calibrator.param_sd_.values())
    # basal glucose is well identified: within 3 posterior SD of the truth
    assert abs(calibrator.params_["Gb"] - patient.get("Gb")[0]) < 3 * calibrator.param_sd_["Gb"] + 2
    twin_rmse, population_rmse = _next_day_rmse(calibrator, full)
    assert twin_rmse < 0.7 * population_rmse, (twin_rmse, population_rmse)
    twin = calibrator.to_twin()
    assert twin.parameters().n == 1 and twin.fitted == calibrator.params_


def test_log_validation_names_fields() -> None:
    base = {"body_weight_kg": 70, "basal_u_per_h": 1.0, "cgm_t_min": [0, 5, 10], "cgm_mg_dl": [100, 110, 120]}
    with pytest.raises(PhysiologyInputError) as info:
        parse_log(base | {"cgm_t_min": [0, 10, 5]})
    assert info.value.field == "cgm_t_min"
    with pytest.raises(PhysiologyInputError) as info:
        parse_log(base | {"meals": [{"time_min": 5, "carbs_g": -3}]})
    assert info.value.field == "meals.0.carbs_g"
    with pytest.raises(PhysiologyInputError) as info:
        TwinCalibrator().fit(parse_log(base))
    assert info.value.field == "cgm_t_min" and "3 days" in str(info.value)
