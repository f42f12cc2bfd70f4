"""Benchmark: batched UVA/Padova (medtwin) against simglucose's own simulation loop, measured in one run.

Prints, for one patient-day (three meals, basal-bolus control, Dexcom sensor, Insulet pump):
- simglucose as shipped (its ``T1DPatient`` reads every parameter from a pandas Series), and the fair
  baseline: the same stock classes given the same parameter row as plain floats (a ``SimpleNamespace``).
  About 86 % of the stock run is pandas attribute access; the script checks that both runs deliver
  identical histories (BG, CGM, insulin, carbs; exit code 1 otherwise);
- medtwin's time per patient-day in one batched solve at ``--patients`` (default 1,000), and the speed ratio
  against both simglucose runs (target >= 1,000x as shipped; >= 10,000x plain-float is the issue-17 aim);
- a scaling table: N = 1, 10, 100, 1,000, 10,000 (``--max-n``): total time, time per patient-day and peak
  memory (resident memory above the start of the call, see ``_scaling.measure``);
- medtwin's single-patient 24 h latency (float path, target <= 50 ms) against the array path at n=1.

BLAS runs on one thread unless ``OPENBLAS_NUM_THREADS`` says otherwise (``_scaling.one_blas_thread``).
Run: ``.venv/bin/python benchmarks/bench_glucose.py [--patients 1000] [--max-n 10000]``; ``--smoke`` runs every
part at toy sizes (1 h with one meal, N up to 10) in seconds: the test suite runs it.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import datetime
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _scaling import measure, one_blas_thread  # noqa: E402

BLAS_THREADS = one_blas_thread()  # before numpy loads

import numpy as np  # noqa: E402
from _machine import machine  # noqa: E402

from medtwin.physiology.scenario import Meal, Regimen, Scenario, SensorSettings  # noqa: E402
from medtwin.physiology.service import run_scenario  # noqa: E402
from medtwin.physiology.uva_padova import PatientParameters, virtual_patients  # noqa: E402

MEALS = [Meal(time_min=420, carbs_g=50), Meal(time_min=720, carbs_g=70), Meal(time_min=1140, carbs_g=80)]
SMOKE_MEALS = [Meal(time_min=15, carbs_g=40)]  # the smoke run's hour still has a meal and its bolus
PEER_PATIENT = "adult#001"


def simglucose_day(minutes: int, meals: list[Meal], *, plain_floats: bool) -> tuple[float, dict[str, np.ndarray]]:
    """simglucose 0.2.11: its T1DSimEnv + BBController + Dexcom + Insulet, stock classes; (seconds, histories).

    ``plain_floats``: the patient's row of simglucose's own parameter file as plain Python floats instead
    of a pandas Series (initial state passed explicitly, as simglucose itself takes it from that row).
    """
    import pandas as pd
    from simglucose.actuator.pump import InsulinPump
    from simglucose.controller.basal_bolus_ctrller import BBController
    from simglucose.patient.t1dpatient import PATIENT_PARA_FILE, T1DPatient
    from simglucose.sensor.cgm import CGMSensor
    from simglucose.simulation.env import T1DSimEnv
    from simglucose.simulation.scenario import CustomScenario

    logging.getLogger("simglucose").setLevel(logging.WARNING)
    start = time.perf_counter()
    if plain_floats:
        table = pd.read_csv(PATIENT_PARA_FILE)
        row = table.loc[table.Name == PEER_PATIENT].squeeze()
        record: Any = SimpleNamespace(**{str(k): (v.item() if hasattr(v, "item") else v) for k, v in row.items()})
        patient = T1DPatient(record, init_state=np.asarray(row.iloc[2:15].values, dtype=float))
    else:
        patient = T1DPatient.withName(PEER_PATIENT)
    env = T1DSimEnv(
        patient,
        CGMSensor.withName("Dexcom", seed=1),
        InsulinPump.withName("Insulet"),
        CustomScenario(start_time=datetime(2024, 1, 1), scenario=[(m.time_min / 60, m.carbs_g) for m in meals]),
    )
    controller = BBController()
    obs, reward, done, info = env.reset()
    for _ in range(int(minutes // env.sample_time)):
        obs, reward, done, info = env.step(controller.policy(obs, reward, done, **info))
    seconds = time.perf_counter() - start
    history = {name: np.asarray(getattr(env, f"{name}_hist"), dtype=float) for name in ("BG", "CGM", "insulin", "CHO")}
    return seconds, history


def population(n: int, rng: np.random.Generator) -> PatientParameters:
    base = virtual_patients()
    return base.take(rng.integers(0, base.n, size=n).tolist())


def scaling(sizes: list[int], scenario: Scenario, horizon_days: float) -> dict[int, float]:
    """Time per patient-day for each N (one batched solve each) and its peak memory (``_scaling.measure``)."""
    print("scaling: medtwin batched UVA/Padova, one solve per N (peak: resident memory above the start of the call)")
    print(f"  {'N':>7} {'total s':>9} {'ms per patient-day':>19} {'peak MiB':>9} {'lockstep steps':>15}")
    per_day: dict[int, float] = {}
    for n in sizes:
        params = population(n, np.random.default_rng(n))
        result, seconds, peak = measure(partial(run_scenario, params, scenario, rng=np.random.default_rng(1)))
        per_day[n] = seconds / (n * horizon_days)
        print(f"  {n:>7,} {seconds:>9.3f} {per_day[n] * 1e3:>19.3f} {peak / 2**20:>9.0f} {result[0].n_steps:>15}")
        del result
    return per_day


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=1000, help="the headline batch (one of the scaling sizes)")
    parser.add_argument("--max-n", type=int, default=10_000, help="largest N of the scaling table")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of the single-patient run (best kept)")
    parser.add_argument("--smoke", action="store_true", help="toy sizes in seconds (the test suite runs this)")
    args = parser.parse_args()
    if args.smoke:
        args.patients, args.max_n, args.repeats = 10, 10, 1
    minutes, meals = (60, SMOKE_MEALS) if args.smoke else (1440, MEALS)
    days = minutes / 1440
    scenario = Scenario(horizon_min=minutes, meals=meals, regimen=Regimen(), sensor=SensorSettings(noise=False))
    print(f"machine: {machine()}; BLAS threads: {BLAS_THREADS} (OPENBLAS_NUM_THREADS, default 1)")

    stock, stock_history = simglucose_day(minutes, meals, plain_floats=False)
    plain, plain_history = simglucose_day(minutes, meals, plain_floats=True)
    identical = all(np.array_equal(stock_history[k], plain_history[k]) for k in stock_history)
    print(f"simglucose {minutes} min, as shipped (pandas parameters): {stock:.3f} s")
    print(f"simglucose {minutes} min, plain-float parameters (fair baseline): {plain:.3f} s "
          f"({stock / plain:.1f}x faster); histories identical: {identical} "
          f"({len(stock_history['BG'])} BG samples)")
    stock_day, plain_day = stock / days, plain / days

    sizes = sorted({n for n in (1, 10, 100, 1_000, 10_000) if n <= args.max_n} | {args.patients})
    per_day = scaling(sizes, scenario, days)
    ours = per_day[args.patients]
    print(f"per patient-day at N = {args.patients:,}: medtwin {ours * 1e3:.3f} ms; simglucose as shipped "
          f"{stock_day * 1e3:.1f} ms -> {stock_day / ours:,.0f}x (target >= 1,000x); plain-float "
          f"{plain_day * 1e3:.1f} ms -> {plain_day / ours:,.0f}x (issue-17 aim >= 10,000x at 10,000 patients)")
    largest = max(per_day)
    if largest != args.patients:
        print(f"per patient-day at N = {largest:,}: medtwin {per_day[largest] * 1e3:.3f} ms; "
              f"{stock_day / per_day[largest]:,.0f}x as shipped, {plain_day / per_day[largest]:,.0f}x plain-float")

    single = virtual_patients([PEER_PATIENT])
    timings: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.repeats):
        for float_path in (False, True):
            start = time.perf_counter()
            run_scenario(single, scenario, rng=np.random.default_rng(1), float_path=float_path)
            timings[float_path].append(time.perf_counter() - start)
    array, floats = timings[False], timings[True]
    print(f"baseline single patient {minutes} min, array path (numpy at n=1): best {min(array) * 1e3:.1f} ms, "
          f"median {np.median(array) * 1e3:.1f} ms")
    print(f"medtwin single patient {minutes} min latency: best {min(floats) * 1e3:.1f} ms, "
          f"median {np.median(floats) * 1e3:.1f} ms (target <= 50 ms per day), "
          f"{min(array) / min(floats):.1f}x faster than the array path")
    if not identical:
        sys.exit("simglucose with plain-float parameters did not reproduce simglucose as shipped")


if __name__ == "__main__":
    main()
