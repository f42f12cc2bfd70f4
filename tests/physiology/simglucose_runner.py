"""Run the simglucose peer (test dependency only) and record what it delivered minute by minute."""

from __future__ import annotations

import logging
from datetime import datetime
from types import SimpleNamespace

import numpy as np
import pandas as pd
from simglucose.actuator.pump import InsulinPump
from simglucose.controller.basal_bolus_ctrller import BBController
from simglucose.patient.t1dpatient import PATIENT_PARA_FILE as _PARAMETER_FILE
from simglucose.patient.t1dpatient import T1DPatient
from simglucose.sensor.cgm import CGMSensor
from simglucose.simulation.env import T1DSimEnv
from simglucose.simulation.scenario import CustomScenario

logging.getLogger("simglucose").setLevel(logging.WARNING)


class RecordingPatient(T1DPatient):
    """simglucose's own patient; after each 1-min step it records the inputs it received and Gsub."""

    def reset(self) -> None:
        super().reset()
        self.carbs: list[float] = []
        self.insulin: list[float] = []
        self.glucose: list[float] = [float(self.observation.Gsub)]

    def step(self, action):  # type: ignore[no-untyped-def]
        super().step(action)
        self.carbs.append(float(self._last_action.CHO))
        self.insulin.append(float(self._last_action.insulin))
        self.glucose.append(float(self.observation.Gsub))


def run_simglucose_day(
    name: str, meals_h_g: list[tuple[float, float]], minutes: int = 1440, plain_parameters: bool = True
) -> dict[str, np.ndarray]:
    """One patient, 24 h, basal-bolus controller, Dexcom sensor, Insulet pump (simglucose defaults).

    With ``plain_parameters`` the patient's published parameter row is handed to simglucose's own
    ``T1DPatient`` as a plain attribute record instead of a pandas Series: same values, same equations,
    but ~15x faster, because 90% of simglucose's time is spent in pandas attribute look-ups inside its RHS.
    """
    if plain_parameters:
        table = pd.read_csv(_PARAMETER_FILE)
        row = table.loc[table.Name == name].squeeze()
        record = SimpleNamespace(**{str(k): (v.item() if hasattr(v, "item") else v) for k, v in row.items()})
        patient = RecordingPatient(record, init_state=np.asarray(row.iloc[2:15].values, dtype=float))
    else:
        patient = RecordingPatient.withName(name)
    sensor = CGMSensor.withName("Dexcom", seed=1)
    pump = InsulinPump.withName("Insulet")
    scenario = CustomScenario(start_time=datetime(2024, 1, 1, 0, 0), scenario=list(meals_h_g))
    env = T1DSimEnv(patient, sensor, pump, scenario)
    controller = BBController()
    obs, reward, done, info = env.reset()
    for _ in range(minutes // int(env.sample_time)):
        action = controller.policy(obs, reward, done, **info)
        obs, reward, done, info = env.step(action)
    return {
        "carbs": np.asarray(patient.carbs),
        "insulin": np.asarray(patient.insulin),
        "glucose": np.asarray(patient.glucose),  # per minute, t = 0..minutes
        "bg_hist": np.asarray(env.BG_hist),  # averaged over each sample period
        "sample_time": np.asarray(env.sample_time),
    }
