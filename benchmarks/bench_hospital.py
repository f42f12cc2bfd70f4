"""Hospital operations twin: engine speed beside SimPy, and replications x scenarios of a one-year ED model.

    .venv/bin/python benchmarks/bench_hospital.py                     (the full 1,000 x 20 grid, measured)
    .venv/bin/python benchmarks/bench_hospital.py --reps 100          (a tenth of it, and the projection)
    .venv/bin/python benchmarks/bench_hospital.py --smoke             (seconds; what the test runs)

1. M/M/10, lambda 9/h, mu 1/h over the same horizon: medtwin's engine (sampling included) and a plain SimPy
   model, in this run; customers per second for both, events per second for the engine, and each one's mean
   wait in queue beside Erlang C's exact 0.668732 h.
2. A one-year ED model (the demo hospital's triage and treatment, rostered nurses, ESI priorities with
   pre-emption; every ED leaver exits): R replications x S scenarios on a local Dask cluster of processes,
   timed (the compiled loop, hospital/kernel.py; one run of the Python reference loop beside it), and the
   projection to 1,000 x 20 when fewer replications were run (target <= 10 min on this machine), stated as
   a projection. The loop is compiled once and cached (numba ``cache=True``): the first run after a change
   pays ~15-60 s of compilation, reported apart and not in the grid's time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine  # noqa: E402

from medtwin.hospital.fanout import dask_client, run_grid  # noqa: E402
from medtwin.hospital.model import EXIT, HospitalModel, demo_model, parse_model  # noqa: E402
from medtwin.hospital.peer import simpy_mmc  # noqa: E402
from medtwin.hospital.replicate import mean_ci, run_one  # noqa: E402
from medtwin.hospital.whatif import BASELINE, Scenario  # noqa: E402

ERLANG_C_WQ = 0.668732
TARGET_S = 600.0


def mmc_model() -> HospitalModel:
    return parse_model({"name": "mm10", "source": "M/M/10 benchmark", "arrivals": [
        {"name": "a", "entry": "desk", "rate_per_hour": [9.0]}],
        "units": [{"name": "desk", "beds": 10, "los": {"dist": "exponential", "mean_h": 1.0}}]})


def ed_model() -> HospitalModel:
    data = demo_model().model_dump()
    data["units"] = [u for u in data["units"] if u["kind"] == "ed"]
    data["units"][-1]["routing"] = {EXIT: 1.0}
    data["arrivals"] = [a for a in data["arrivals"] if a["entry"] == "ed_triage"]
    data["name"] = "demo-ed"
    return parse_model(data)


def engine_vs_simpy(horizon_h: float) -> None:
    model = mmc_model()
    t = time.perf_counter()
    out = run_one(model, BASELINE, 1, 0, horizon_h, 0.0)
    ours = time.perf_counter() - t
    customers = out["throughput_per_day.desk"] * horizon_h / 24
    t = time.perf_counter()
    wq, served = simpy_mmc(9.0, 1.0, 10, horizon_h, np.random.default_rng(1))
    theirs = time.perf_counter() - t
    print(f"M/M/10 over {horizon_h:,.0f} h (Erlang C Wq = {ERLANG_C_WQ} h):")
    print(f"  medtwin engine: {customers / ours:,.0f} customers/s, {out['events'] / ours:,.0f} events/s "
          f"({ours:.2f} s, Wq {out['wait_h.desk']:.3f} h)")
    print(f"  SimPy         : {served / theirs:,.0f} customers/s ({theirs:.2f} s, Wq {wq:.3f} h)")
    print(f"  ratio medtwin/SimPy (customers/s): {(customers / ours) / (served / theirs):.2f}")


def year_grid(reps: int, scenarios: int, horizon_h: float, processes: bool, workers: int) -> None:
    model = ed_model()
    grid = [BASELINE] + [Scenario(name=f"surge x{1 + 0.05 * i:.2f}", arrival_multiplier=1 + 0.05 * i)
                         for i in range(1, scenarios)]
    t = time.perf_counter()
    run_one(model, BASELINE, 0, 0, 24.0, 0.0)
    print(f"compile (or load from cache) the loop: {time.perf_counter() - t:.1f} s")
    t, cpu = time.perf_counter(), time.process_time()
    one = run_one(model, BASELINE, 0, 0, horizon_h, 0.0)
    single, cpu = time.perf_counter() - t, time.process_time() - cpu
    t = time.perf_counter()
    ref = run_one(model, BASELINE, 0, 0, horizon_h, 0.0, compiled=False)
    python = time.perf_counter() - t
    assert all(ref[k] == v or (v != v and ref[k] != ref[k]) for k, v in one.items()), "the loops disagree"
    print(f"one-year ED model ({horizon_h:,.0f} h): one run {single:.3f} s compiled, {python:.3f} s Python loop "
          f"(same metrics), {one['events']:,.0f} events, ED wait {one['ed_wait_h']:.3f} h")
    print(f"  CPU time of that compiled baseline run: {cpu:.3f} s (surge scenarios cost more: see the grid's CPU)")
    with dask_client(processes=processes, n_workers=workers, threads_per_worker=1) as client:
        client.run(lambda: run_one(model, BASELINE, 0, 0, 24.0, 0.0))  # each worker loads the compiled loop
        before = sum(client.run(time.process_time).values())
        t = time.perf_counter()
        def progress(done: int) -> None:  # a stopped run still leaves a measured fraction
            print(f"  {done:,} of {reps * len(grid):,} runs done after {time.perf_counter() - t:,.1f} s", flush=True)

        results = run_grid(client, model, grid, reps, 7, horizon_h, 24 * 7.0, chunk=max(1, reps // 20),
                           progress=progress)
        took = time.perf_counter() - t
        cpu = sum(client.run(time.process_time).values()) - before  # the workers' CPU seconds for the grid
    runs = reps * len(grid)
    print(f"{reps} replications x {len(grid)} scenarios on Dask ({workers} {'processes' if processes else 'threads'}): "
          f"{took:.1f} s, {took / runs * 1000:.1f} ms per run; workers' CPU {cpu:.1f} s ({cpu / runs * 1000:.1f} ms "
          f"per run: 1,000 x 20 on {workers} idle cores would take ~{cpu / runs * 20_000 / workers:,.0f} s)")
    if (reps, len(grid)) == (1000, 20):
        print(f"1,000 x 20 measured: {took:,.0f} s ({took / 60:.1f} min; target {TARGET_S / 60:.0f} min: "
              f"{'met' if took <= TARGET_S else 'NOT met'})")
    else:
        projected = took / runs * 1000 * 20
        print(f"projection for 1,000 x 20: {projected:,.0f} s ({projected / 60:.1f} min; target {TARGET_S / 60:.0f} "
              f"min: {'met' if projected <= TARGET_S else 'NOT met'}) -- a linear projection, not a measurement")
    last = grid[-1].name
    diff = mean_ci(results[last]["ed_wait_h"] - results["baseline"]["ed_wait_h"])
    print(f"paired check: {last} - baseline ED wait = {diff.mean:.3f} h (95 % CI {diff.low:.3f}..{diff.high:.3f})")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds")
    parser.add_argument("--reps", type=int, default=1000, help="replications of the one-year grid")
    parser.add_argument("--scenarios", type=int, default=20, help="scenarios of the grid (baseline included)")
    args = parser.parse_args()
    print(machine())
    if args.smoke:
        engine_vs_simpy(500.0)
        year_grid(4, 2, 24 * 7 * 3.0, processes=False, workers=1)
    else:
        engine_vs_simpy(20000.0)
        year_grid(args.reps, args.scenarios, 8760.0, processes=True, workers=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
