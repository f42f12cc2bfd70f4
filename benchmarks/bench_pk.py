"""Benchmark: 100,000 subjects, two-compartment oral model, 14 days of twice-daily dosing, hourly output.

Measured in one run, each against the closed form (medtwin, superposition over the whole population in one
call):
- the fair baseline: ONE vectorised ``scipy.integrate.solve_ivp`` (RK45, rtol 1e-6) over all subjects'
  states at once, marched dose to dose, on the full population;
- medtwin's batched ODE path (the compiled engine of ``medtwin.solve.kernels``: Dopri5 rtol 1e-6 with a step
  size per subject) on the same full population, against that same scipy call;
- the original baseline: a per-subject ``solve_ivp`` (LSODA) loop timed on 100 subjects, scaled;
- the relative error of each method against the closed form (matched accuracy), and a scaling table
  (time per subject, and peak memory of a second, traced call) for N = 1 ... 100,000 (closed form) and up to
  10,000 (ODE paths).

BLAS runs on one thread unless ``OPENBLAS_NUM_THREADS`` says otherwise (see ``_scaling.one_blas_thread``).
Run: ``.venv/bin/python benchmarks/bench_pk.py`` (minutes); ``--smoke`` runs every part at toy sizes
in seconds (the test suite runs it).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _scaling import measure, one_blas_thread, scaling_table  # noqa: E402

BLAS_THREADS = one_blas_thread()  # before numpy loads

import numpy as np  # noqa: E402
from _machine import machine  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402

from medtwin.pharmaco.dosing import Regimen, Route  # noqa: E402
from medtwin.pharmaco.pk import CompartmentModel, simulate  # noqa: E402
from medtwin.solve import Dopri5  # noqa: E402

Params = dict[str, np.ndarray]
Solve = Callable[[Params], np.ndarray]


@dataclass(frozen=True)
class Sizes:
    subjects: int
    ode: int
    loop: int
    days: int
    closed_scaling: tuple[int, ...]
    ode_scaling: tuple[int, ...]


FULL = Sizes(100_000, 100_000, 100, 14, (1, 10, 100, 1_000, 10_000, 100_000), (1, 10, 100, 1_000, 10_000))
SMOKE = Sizes(2_000, 200, 3, 2, (1, 10, 100), (1, 10, 100))
DOSE_MG = 200.0


def population(n: int, rng: np.random.Generator) -> Params:
    eta = rng.multivariate_normal(np.zeros(4), np.diag([0.09, 0.04, 0.09, 0.25]), size=n)
    return {"CL": 5.0 * np.exp(eta[:, 0]), "V1": 40.0 * np.exp(eta[:, 1]), "Q2": np.full(n, 8.0),
            "V2": 60.0 * np.exp(eta[:, 2]), "ka": 1.2 * np.exp(eta[:, 3]), "F": np.full(n, 0.8),
            "tlag": np.zeros(n)}


def head(p: Params, n: int) -> Params:
    return {k: v[:n] for k, v in p.items()}


def _segments(doses: np.ndarray, t: np.ndarray) -> list[tuple[float, float, np.ndarray]]:
    """Dosing intervals (start, end, mask of outputs inside); the last runs to the last output."""
    edges = [*doses.tolist(), t[-1] + 1e-9]
    return [(edges[i], edges[i + 1], (t >= edges[i]) & (t < edges[i + 1])) for i in range(len(doses))]


def scipy_one(p: dict[str, float], doses: np.ndarray, amount: float, t: np.ndarray) -> np.ndarray:
    """The original baseline: one subject, LSODA, dose to dose."""
    k10, k12, k21 = p["CL"] / p["V1"], p["Q2"] / p["V1"], p["Q2"] / p["V2"]
    ka = p["ka"]

    def rhs(_t: float, y: np.ndarray) -> np.ndarray:
        return np.array([-ka * y[0], ka * y[0] - (k10 + k12) * y[1] + k21 * y[2], k12 * y[1] - k21 * y[2]])

    y = np.zeros(3)
    out = np.zeros(t.size)
    for start, end, inside in _segments(doses, t):
        y[0] += amount * p["F"]
        grid = np.append(t[inside], end)  # outputs in this dosing interval + its end state
        sol = solve_ivp(rhs, (start, end), y, t_eval=grid, rtol=1e-8, atol=1e-10, method="LSODA")
        out[inside] = sol.y[1, :-1] / p["V1"]
        y = sol.y[:, -1].copy()
    return out


def scipy_vectorised(p: Params, doses: np.ndarray, amount: float, t: np.ndarray) -> np.ndarray:
    """The fair baseline: one solve_ivp (RK45, rtol 1e-6, atol 1e-8 mg) over all subjects' 3N states at once."""
    n = p["CL"].shape[0]
    k10, k12, k21, ka = p["CL"] / p["V1"], p["Q2"] / p["V1"], p["Q2"] / p["V2"], p["ka"]

    def rhs(_t: float, y: np.ndarray) -> np.ndarray:
        depot, central, peripheral = y[:n], y[n : 2 * n], y[2 * n :]
        absorbed, exchange = ka * depot, k12 * central - k21 * peripheral
        return np.concatenate([-absorbed, absorbed - k10 * central - exchange, exchange])

    y = np.zeros(3 * n)
    out = np.zeros((n, t.size))
    for start, end, inside in _segments(doses, t):
        y[:n] += amount * p["F"]
        grid = np.append(t[inside], end)
        sol = solve_ivp(rhs, (start, end), y, t_eval=grid, rtol=1e-6, atol=1e-8, method="RK45")
        out[:, inside] = sol.y[n : 2 * n, :-1] / p["V1"][:, None]
        y = sol.y[:, -1].copy()
    return out


def rel_error(other: np.ndarray, exact: np.ndarray) -> float:
    """Max relative difference where the concentration is above 1e-3 mg/L (the first hour after t=0 is ~0)."""
    return float(np.max(np.abs(other - exact) / np.maximum(exact, 1e-3)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="toy sizes, seconds (the test suite runs this)")
    sizes = SMOKE if parser.parse_args().smoke else FULL
    rng = np.random.default_rng(2026)
    model = CompartmentModel(2, absorption=True)
    regimen = Regimen(dose=f"{DOSE_MG:g} mg", route=Route.ORAL, interval_h=12, n_doses=2 * sizes.days)
    schedule = regimen.schedule()
    doses = schedule.time_h
    t = np.arange(0.0, sizes.days * 24 + 1.0, 1.0)
    params = population(sizes.subjects, rng)
    print(f"machine: {machine()}; BLAS threads: {BLAS_THREADS} (OPENBLAS_NUM_THREADS, default 1)")
    print(f"workload: {sizes.subjects} subjects x 2-compartment oral, {regimen.n_doses} doses q12h, {t.size} hourly outputs")

    def closed(p: Params) -> np.ndarray:
        return simulate(model, p, schedule, t, method="closed_form").concentration_mg_l

    def ode(p: Params) -> np.ndarray:
        return simulate(model, p, schedule, t, method="ode", solver=Dopri5(rtol=1e-6, atol=1e-8)).concentration_mg_l

    exact, ours, _ = measure(lambda: closed(params))
    print(f"medtwin closed form, batched ({sizes.subjects} subjects): {ours:.2f} s")

    vec, vec_time, _ = measure(lambda: scipy_vectorised(params, doses, DOSE_MG, t))
    print(f"fair baseline: one vectorised scipy solve_ivp (RK45 rtol 1e-6) over {sizes.subjects} subjects: "
          f"{vec_time:.2f} s; max rel. error vs closed form {rel_error(vec, exact):.1e}")
    print(f"closed form vs vectorised solve_ivp: {vec_time / ours:.1f}x (target >= 10x)")

    first = time.perf_counter()
    ode(head(params, 1))
    print(f"first ODE call in this process (loads the cached compiled engine, or compiles it): "
          f"{time.perf_counter() - first:.2f} s")
    sub = head(params, sizes.ode)
    ode_c, ode_time, _ = measure(lambda: ode(sub))
    if sizes.ode == sizes.subjects:
        vec_sub, vec_sub_time = vec, vec_time
    else:
        vec_sub, vec_sub_time, _ = measure(lambda: scipy_vectorised(sub, doses, DOSE_MG, t))
    print(f"medtwin ODE (compiled engine, Dopri5 rtol 1e-6, a step size per subject), batched ({sizes.ode} subjects): "
          f"{ode_time:.2f} s; max rel. error vs closed form {rel_error(ode_c, exact[: sizes.ode]):.1e}")
    print(f"vectorised solve_ivp on the same {sizes.ode} subjects: {vec_sub_time:.2f} s; max rel. error vs closed "
          f"form {rel_error(vec_sub, exact[: sizes.ode]):.1e}")
    print(f"medtwin batched ODE vs vectorised solve_ivp ({sizes.ode} subjects): {vec_sub_time / ode_time:.2f}x "
          f"(target >= 1x)")

    start = time.perf_counter()
    reference = np.array([scipy_one({k: float(v[i]) for k, v in params.items()}, doses, DOSE_MG, t)
                          for i in range(sizes.loop)])
    base = time.perf_counter() - start
    scaled = base * sizes.subjects / sizes.loop
    print(f"baseline scipy solve_ivp (LSODA) loop: {base:.2f} s for {sizes.loop} subjects -> {scaled:.1f} s scaled "
          f"to {sizes.subjects}")
    print(f"agreement with baseline: max relative difference {rel_error(reference, exact[: sizes.loop]):.1e}")
    print(f"speed-up (scaled loop baseline / ours): {scaled / ours:.0f}x (target >= 100x)")

    _scaling(sizes, params, closed, ode, doses, t)


def _scaling(sizes: Sizes, params: Params, closed: Solve, ode: Solve, doses: np.ndarray, t: np.ndarray) -> None:
    unit = f"subject ({sizes.days} d)"
    scaling_table("medtwin closed form", unit, sizes.closed_scaling, lambda n: closed(head(params, n)))
    scaling_table("medtwin batched ODE (compiled engine, Dopri5 rtol 1e-6)", unit, sizes.ode_scaling,
                  lambda n: ode(head(params, n)))
    scaling_table("scipy solve_ivp vectorised (RK45 rtol 1e-6)", unit, sizes.ode_scaling,
                  lambda n: scipy_vectorised(head(params, n), doses, DOSE_MG, t))


if __name__ == "__main__":
    main()
