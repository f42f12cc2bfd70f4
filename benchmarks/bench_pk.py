"""Benchmark: 100,000 subjects, two-compartment oral model, 14 days of twice-daily dosing, hourly output.

Prints our batched time (closed-form superposition over the whole population in one call), next to a
per-subject scipy.integrate.solve_ivp loop timed on 100 subjects and scaled to 100,000, and the ratio.
Also times the batched ODE path (medtwin.solve Dopri5) on 10,000 subjects for reference.
Run: .venv/bin/python benchmarks/bench_pk.py
"""

from __future__ import annotations

import os
import platform
import time

import numpy as np
from scipy.integrate import solve_ivp

from medtwin.pharmaco.dosing import Regimen
from medtwin.pharmaco.pk import CompartmentModel, simulate
from medtwin.solve import Dopri5

N_SUBJECTS = 100_000
N_BASELINE = 100
N_ODE = 10_000


def population(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    eta = rng.multivariate_normal(np.zeros(4), np.diag([0.09, 0.04, 0.09, 0.25]), size=n)
    return {"CL": 5.0 * np.exp(eta[:, 0]), "V1": 40.0 * np.exp(eta[:, 1]), "Q2": np.full(n, 8.0),
            "V2": 60.0 * np.exp(eta[:, 2]), "ka": 1.2 * np.exp(eta[:, 3]), "F": np.full(n, 0.8),
            "tlag": np.zeros(n)}


def scipy_one(p: dict[str, float], doses: np.ndarray, amount: float, t: np.ndarray) -> np.ndarray:
    k10, k12, k21 = p["CL"] / p["V1"], p["Q2"] / p["V1"], p["Q2"] / p["V2"]
    ka = p["ka"]

    def rhs(_t: float, y: np.ndarray) -> np.ndarray:
        return np.array([-ka * y[0], ka * y[0] - (k10 + k12) * y[1] + k21 * y[2], k12 * y[1] - k21 * y[2]])

    y = np.zeros(3)
    out = np.zeros(t.size)
    edges = [*doses.tolist(), t[-1] + 1e-9]
    for i in range(len(doses)):
        y[0] += amount * p["F"]
        inside = (t >= edges[i]) & (t < edges[i + 1])
        grid = np.append(t[inside], edges[i + 1])  # outputs in this dosing interval + its end state
        sol = solve_ivp(rhs, (edges[i], edges[i + 1]), y, t_eval=grid, rtol=1e-8, atol=1e-10, method="LSODA")
        out[inside] = sol.y[1, :-1] / p["V1"]
        y = sol.y[:, -1].copy()
    return out


def main() -> None:
    rng = np.random.default_rng(2026)
    model = CompartmentModel(2, absorption=True)
    regimen = Regimen(dose="200 mg", route="oral", interval_h=12, n_doses=28)
    schedule = regimen.schedule()
    t = np.arange(0.0, 14 * 24 + 1.0, 1.0)
    params = population(N_SUBJECTS, rng)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}")
    print(f"workload: {N_SUBJECTS} subjects x 2-compartment oral, {regimen.n_doses} doses q12h, {t.size} hourly outputs")

    start = time.perf_counter()
    batched = simulate(model, params, schedule, t, method="closed_form").concentration_mg_l
    ours = time.perf_counter() - start
    print(f"medtwin closed form, batched ({N_SUBJECTS} subjects): {ours:.2f} s")

    sub = {k: v[:N_ODE] for k, v in params.items()}
    start = time.perf_counter()
    ode = simulate(model, sub, schedule, t, method="ode", solver=Dopri5(rtol=1e-6, atol=1e-8)).concentration_mg_l
    ode_time = time.perf_counter() - start
    print(f"medtwin ODE (Dopri5 rtol 1e-6), batched ({N_ODE} subjects): {ode_time:.2f} s "
          f"-> {ode_time * N_SUBJECTS / N_ODE:.1f} s scaled; max rel. diff vs closed form "
          f"{np.max(np.abs(ode - batched[:N_ODE]) / np.maximum(batched[:N_ODE], 1e-3)):.1e}")

    doses = schedule.time_h
    start = time.perf_counter()
    reference = np.array([scipy_one({k: float(v[i]) for k, v in params.items()}, doses, 200.0, t)
                          for i in range(N_BASELINE)])
    base = time.perf_counter() - start
    scaled = base * N_SUBJECTS / N_BASELINE
    error = np.max(np.abs(reference - batched[:N_BASELINE]) / np.maximum(batched[:N_BASELINE], 1e-3))
    print(f"baseline scipy solve_ivp (LSODA) loop: {base:.2f} s for {N_BASELINE} subjects -> {scaled:.1f} s scaled to {N_SUBJECTS}")
    print(f"agreement with baseline: max relative difference {error:.1e}")
    print(f"speed-up (scaled baseline / ours): {scaled / ours:.0f}x (target >= 100x)")


if __name__ == "__main__":
    main()
