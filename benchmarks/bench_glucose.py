"""Benchmark: the UVA/Padova population engine (medtwin) against simglucose's own simulation loop, in one run.

Prints, for one patient-day (three meals, basal-bolus control, Dexcom sensor, Insulet pump):
- simglucose as shipped (its ``T1DPatient`` reads every parameter from a pandas Series), and the fair
  baseline: the same stock classes given the same parameter row as plain floats (a ``SimpleNamespace``).
  About 86 % of the stock run is pandas attribute access; the script checks that both runs deliver
  identical histories (BG, CGM, insulin, carbs; exit code 1 otherwise);
- the compiled engine's first-call time: cold (an empty numba cache in a fresh interpreter: what CI pays
  once) and warm (the cache loaded);
- a scaling table of the population path (``physiology.population.simulate_population``: the compiled engine
  spread over the usable cores (``MEDTWIN_THREADS``; the header says how many), per-core figures beside it,
  a step size per patient, the population tolerances of ``simulate.POPULATION_SOLVER``, 5-minute CGM output
  only, patients in blocks): N = 1, 10, 100, 1,000, 10,000
  (``--max-n``): total time, time per patient-day, the ratio to plain-float simglucose measured above, peak
  memory (resident memory above the start of the call, see ``_scaling.measure``) and the most steps any one
  patient took;
- ``--memory-patients`` (default 100,000) patient-days with 5-minute CGM output: time and peak memory;
- the public single-patient path (``service.run_scenario``: every state every minute) latency, and the
  lockstep solver (``engine="python"``) on the same day for comparison.

BLAS runs on one thread unless ``OPENBLAS_NUM_THREADS`` says otherwise (``_scaling.one_blas_thread``).
Run: ``.venv/bin/python benchmarks/bench_glucose.py [--max-n 10000] [--memory-patients 100000]``; ``--smoke``
runs every part at toy sizes (1 h with one meal, N up to 10) in seconds: the test suite runs it.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
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

from medtwin.physiology.devices import CGMSensor, InsulinPump  # noqa: E402
from medtwin.physiology.population import simulate_population  # noqa: E402
from medtwin.physiology.scenario import Meal, Regimen, Scenario, SensorSettings  # noqa: E402
from medtwin.physiology.service import run_scenario, schedule_inputs  # noqa: E402
from medtwin.physiology.simulate import POPULATION_SOLVER, simulate_inputs  # noqa: E402

#: the population path at the population tolerances (simulate_population itself defaults to DEFAULT_SOLVER)
run_population = partial(simulate_population, solver=POPULATION_SOLVER)
from medtwin.physiology.uva_padova import PatientParameters, virtual_patients  # noqa: E402
from medtwin.solve import kernels  # noqa: E402

MEALS = [Meal(time_min=420, carbs_g=50), Meal(time_min=720, carbs_g=70), Meal(time_min=1140, carbs_g=80)]
SMOKE_MEALS = [Meal(time_min=15, carbs_g=40)]  # the smoke run's hour still has a meal and its bolus
PEER_PATIENT = "adult#001"


def simglucose_day(minutes: int, meals: list[Meal], *,
                   plain_floats: bool) -> tuple[float, float, dict[str, np.ndarray]]:
    """simglucose 0.2.11: its T1DSimEnv + BBController + Dexcom + Insulet, stock classes; (wall seconds, CPU
    seconds, histories).

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
    start, cpu = time.perf_counter(), time.process_time()
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
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    history = {name: np.asarray(getattr(env, f"{name}_hist"), dtype=float) for name in ("BG", "CGM", "insulin", "CHO")}
    return seconds, cpu, history


def population(n: int, rng: np.random.Generator) -> PatientParameters:
    base = virtual_patients()
    return base.take(rng.integers(0, base.n, size=n).tolist())


def scaling(sizes: list[int], scenario: Scenario, horizon_days: float, plain_day: float,
            plain_cpu_day: float) -> dict[int, tuple[float, float]]:
    """(wall, CPU) seconds per patient-day for each N (one population run each, 5-min CGM output), with peak
    memory. CPU is the process's time on all its threads: core-seconds, what the run costs per core."""
    print(f"scaling: medtwin population engine (compiled, a step size per patient, insulin chain in closed form, "
          f"rtol {POPULATION_SOLVER.rtol:g} / atol {POPULATION_SOLVER.atol:g} (simulate.POPULATION_SOLVER), "
          f"5-min CGM output only, "
          f"{kernels.threads()} thread(s); peak: resident memory above the start of the call; "
          "core-ms: CPU time of all threads)")
    print(f"  {'N':>7} {'total s':>9} {'ms per patient-day':>19} {'x plain-float':>14} {'core-ms per p-d':>16} "
          f"{'x per core':>11} {'peak MiB':>9} {'max steps':>10}")
    per_day: dict[int, tuple[float, float]] = {}
    run_population(population(1, np.random.default_rng(0)), scenario)  # warm: first-call costs are above
    for n in sizes:
        params = population(n, np.random.default_rng(n))
        cpu = time.process_time()
        result, seconds, peak = measure(partial(run_population, params, scenario, rng=np.random.default_rng(1)))
        cpu = time.process_time() - cpu
        wall, core = seconds / (n * horizon_days), cpu / (n * horizon_days)
        per_day[n] = (wall, core)
        print(f"  {n:>7,} {seconds:>9.3f} {wall * 1e3:>19.4f} {plain_day / wall:>14,.0f} {core * 1e3:>16.4f} "
              f"{plain_cpu_day / core:>11,.0f} {peak / 2**20:>9.0f} {int(result.steps.max()):>10}")
        del result
    return per_day


def one_core(n: int, scenario: Scenario, horizon_days: float) -> float:
    """Wall seconds per patient-day of the N-patient run on one thread (the same kernel, no pool)."""
    params = population(n, np.random.default_rng(n))
    before = kernels.threads()
    kernels.set_threads(1)
    try:
        start = time.perf_counter()
        run_population(params, scenario, rng=np.random.default_rng(1))
        return (time.perf_counter() - start) / (n * horizon_days)
    finally:
        kernels.set_threads(before)


def batch_vs_alone(scenario: Scenario, days: float, repeats: int = 3) -> None:
    """Per-patient cost of the N = 10 batch against the same 10 patients run one at a time (N = 1 each): with a
    step size per patient the batch never pays for its hardest member (best of ``repeats`` each)."""
    params = population(10, np.random.default_rng(10))
    batch, alone = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        run_population(params, scenario)
        batch.append((time.perf_counter() - start) / 10)
        start = time.perf_counter()
        for i in range(10):
            run_population(params.take([i]), scenario)
        alone.append((time.perf_counter() - start) / 10)
    steps = run_population(params, scenario).steps
    print(f"per-patient cost, N = 10 batch vs the same 10 patients at N = 1: {min(batch) / days * 1e3:.3f} vs "
          f"{min(alone) / days * 1e3:.3f} ms per patient-day -> {min(batch) / min(alone):.2f} (aim <= 1); "
          f"steps per patient {steps.min()}-{steps.max()}")


def first_call_seconds(cold: bool) -> float:
    """Seconds of the first one-patient simulation in a fresh interpreter; ``cold``: with an empty numba cache
    (everything compiled), else with the project's cache (loaded)."""
    code = ("import time; t = time.perf_counter(); import numpy as np; "
            "from medtwin.physiology.simulate import simulate_inputs; "
            "from medtwin.physiology.uva_padova import virtual_patients; "
            "from medtwin.pharmaco.pk import CompartmentModel, simulate; "
            "from medtwin.pharmaco.dosing import Regimen, Route; "
            "t0 = time.perf_counter(); "
            "simulate_inputs(virtual_patients(['adult#001']), np.full((1, 30), 1.0), np.full((1, 30), 0.01), "
            "np.arange(31.0)); "
            "simulate(CompartmentModel(1, absorption=True), {'CL': 1.0, 'V1': 10.0, 'ka': 1.0}, "
            "Regimen(dose='1 mg', route=Route.ORAL, interval_h=12, n_doses=2).schedule(), np.arange(30.0), "
            "method='ode'); print(time.perf_counter() - t0)")
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as cache:
        if cold:
            env["NUMBA_CACHE_DIR"] = cache
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def single_patient(scenario: Scenario, repeats: int) -> None:
    """The public path for one patient (every state every minute) and the lockstep solver on the same day."""
    single = virtual_patients([PEER_PATIENT])
    sensor = CGMSensor(noise=False)
    noise = sensor.noise_at(sensor.sample_times(scenario.horizon_min), 1, np.random.default_rng(1))
    carbs, insulin, events, _, _ = schedule_inputs(single, scenario, scenario.regimen, InsulinPump(), sensor, noise)
    t = np.arange(scenario.minutes + 1.0)
    timings: dict[str, list[float]] = {"public": [], "python": []}
    for _ in range(repeats):
        start = time.perf_counter()
        run_scenario(single, scenario, rng=np.random.default_rng(1))
        timings["public"].append(time.perf_counter() - start)
        start = time.perf_counter()
        simulate_inputs(single, carbs, insulin, t, events=events, engine="python")
        timings["python"].append(time.perf_counter() - start)
    public, lockstep = timings["public"], timings["python"]
    print(f"medtwin single patient {scenario.minutes} min, public path (run_scenario, every state every minute): "
          f"best {min(public) * 1e3:.2f} ms, median {np.median(public) * 1e3:.2f} ms (target <= 5 ms per day)")
    print(f"lockstep solver (engine='python', float path) on the same day: best {min(lockstep) * 1e3:.1f} ms "
          f"({min(lockstep) / min(public):.1f}x the compiled engine)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-n", type=int, default=10_000, help="largest N of the scaling table")
    parser.add_argument("--memory-patients", type=int, default=100_000,
                        help="patients (one day each) of the memory run with 5-minute CGM output")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of the single-patient run (best kept)")
    parser.add_argument("--smoke", action="store_true", help="toy sizes in seconds (the test suite runs this)")
    args = parser.parse_args()
    if args.smoke:
        args.max_n, args.repeats, args.memory_patients = 10, 1, 20
    minutes, meals = (60, SMOKE_MEALS) if args.smoke else (1440, MEALS)
    days = minutes / 1440
    scenario = Scenario(horizon_min=minutes, meals=meals, regimen=Regimen(), sensor=SensorSettings(noise=False))
    print(f"machine: {machine()}; BLAS threads: {BLAS_THREADS} (OPENBLAS_NUM_THREADS, default 1)")

    stock, _, stock_history = simglucose_day(minutes, meals, plain_floats=False)
    plain, plain_cpu, plain_history = simglucose_day(minutes, meals, plain_floats=True)
    identical = all(np.array_equal(stock_history[k], plain_history[k]) for k in stock_history)
    print(f"simglucose {minutes} min, as shipped (pandas parameters): {stock:.3f} s")
    print(f"simglucose {minutes} min, plain-float parameters (fair baseline): {plain:.3f} s wall, {plain_cpu:.3f} s "
          f"CPU ({stock / plain:.1f}x faster); histories identical: {identical} "
          f"({len(stock_history['BG'])} BG samples)")
    stock_day, plain_day, plain_cpu_day = stock / days, plain / days, plain_cpu / days
    print(f"compiled engine, first call in a fresh interpreter: cold (empty numba cache, compiles) "
          f"{first_call_seconds(cold=True):.1f} s; warm (cache loaded) {first_call_seconds(cold=False):.2f} s")

    sizes = sorted(n for n in (1, 10, 100, 1_000, 10_000) if n <= args.max_n)
    per_day = scaling(sizes, scenario, days, plain_day, plain_cpu_day)
    largest = max(per_day)
    wall, core = per_day[largest]
    single = one_core(largest, scenario, days)
    print(f"per patient-day at N = {largest:,}: medtwin {wall * 1e3:.4f} ms on {kernels.threads()} thread(s) "
          f"(of {os.cpu_count()} cores, shared: load {os.getloadavg()[0]:.1f}); simglucose as shipped "
          f"{stock_day * 1e3:.1f} ms -> {stock_day / wall:,.0f}x; plain-float {plain_day * 1e3:.1f} ms -> "
          f"{plain_day / wall:,.0f}x (issue-17 aim >= 10,000x at 10,000 patients)")
    print(f"  per core: one thread {single * 1e3:.4f} ms -> {plain_day / single:,.0f}x plain-float (wall); "
          f"CPU {core * 1e3:.4f} core-ms vs simglucose {plain_cpu_day * 1e3:.1f} ms CPU -> "
          f"{plain_cpu_day / core:,.0f}x")
    batch_vs_alone(scenario, days)

    n_mem = args.memory_patients
    params = population(n_mem, np.random.default_rng(7))
    result, seconds, peak = measure(partial(run_population, params, scenario, rng=np.random.default_rng(1)))
    print(f"memory run: {n_mem:,} patient-days ({n_mem:,} patients x {days:g} d), 5-min CGM output "
          f"{result.cgm_mg_dl.shape}: {seconds:.1f} s ({seconds / (n_mem * days) * 1e3:.4f} ms per patient-day), "
          f"peak {peak / 2**30:.2f} GiB above the start (target <= 2 GiB)")
    del result, params

    single_patient(scenario, args.repeats)
    if not identical:
        sys.exit("simglucose with plain-float parameters did not reproduce simglucose as shipped")


if __name__ == "__main__":
    main()
