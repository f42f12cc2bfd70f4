"""Benchmark: batched UVA/Padova (medtwin) against simglucose's own simulation loop, measured in one run.

Prints simglucose's time for one patient-day, medtwin's time for 1,000 patients x 1 day in one batched
solve, the per-patient-day speed ratio (target >= 1,000x) and medtwin's single-patient 24 h latency
(target <= 50 ms, the float path) against the array path at n=1 as the same-run baseline.
Run: ``.venv/bin/python benchmarks/bench_glucose.py [--patients 1000]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import time
from datetime import datetime

import numpy as np

from medtwin.physiology.scenario import Meal, Regimen, Scenario, SensorSettings
from medtwin.physiology.service import run_scenario
from medtwin.physiology.uva_padova import PatientParameters, virtual_patients

MEALS = [Meal(time_min=420, carbs_g=50), Meal(time_min=720, carbs_g=70), Meal(time_min=1140, carbs_g=80)]


def simglucose_patient_day() -> float:
    """simglucose 0.2.11: its T1DSimEnv + BBController + Dexcom + Insulet, stock classes, 24 h."""
    from simglucose.actuator.pump import InsulinPump
    from simglucose.controller.basal_bolus_ctrller import BBController
    from simglucose.patient.t1dpatient import T1DPatient
    from simglucose.sensor.cgm import CGMSensor
    from simglucose.simulation.env import T1DSimEnv
    from simglucose.simulation.scenario import CustomScenario

    logging.getLogger("simglucose").setLevel(logging.WARNING)
    start = time.perf_counter()
    env = T1DSimEnv(
        T1DPatient.withName("adult#001"),
        CGMSensor.withName("Dexcom", seed=1),
        InsulinPump.withName("Insulet"),
        CustomScenario(start_time=datetime(2024, 1, 1), scenario=[(7, 50), (12, 70), (19, 80)]),
    )
    controller = BBController()
    obs, reward, done, info = env.reset()
    for _ in range(int(1440 // env.sample_time)):
        obs, reward, done, info = env.step(controller.policy(obs, reward, done, **info))
    return time.perf_counter() - start


def population(n: int, rng: np.random.Generator) -> PatientParameters:
    base = virtual_patients()
    return base.take(rng.integers(0, base.n, size=n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument(
        "--repeats", type=int, default=5, help="repeats of the single-patient run (best kept)"
    )
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    scenario = Scenario(horizon_min=1440, meals=MEALS, regimen=Regimen(), sensor=SensorSettings(noise=False))
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}"
    )

    peer = simglucose_patient_day()
    print(f"simglucose 1 patient-day (its own loop): {peer:.3f} s")

    params = population(args.patients, rng)
    start = time.perf_counter()
    trajectory, *_ = run_scenario(params, scenario, rng=np.random.default_rng(1))
    ours = time.perf_counter() - start
    print(
        f"medtwin {args.patients} patients x 1 day, one batched solve: {ours:.3f} s "
        f"({trajectory.n_steps} lockstep steps)"
    )
    per_ours = ours / args.patients
    print(
        f"per patient-day: simglucose {peer * 1e3:.1f} ms, medtwin {per_ours * 1e3:.3f} ms, "
        f"speed ratio {peer / per_ours:,.0f}x (target >= 1,000x)"
    )

    single = virtual_patients(["adult#001"])
    timings: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.repeats):
        for float_path in (False, True):
            start = time.perf_counter()
            run_scenario(single, scenario, rng=np.random.default_rng(1), float_path=float_path)
            timings[float_path].append(time.perf_counter() - start)
    array, floats = timings[False], timings[True]
    print(
        f"baseline single patient 24 h, array path (numpy at n=1): best {min(array) * 1e3:.1f} ms, "
        f"median {np.median(array) * 1e3:.1f} ms"
    )
    print(
        f"medtwin single patient 24 h latency: best {min(floats) * 1e3:.1f} ms, "
        f"median {np.median(floats) * 1e3:.1f} ms (target <= 50 ms), "
        f"{min(array) / min(floats):.1f}x faster than the array path"
    )

if __name__ == "__main__":
    main()
