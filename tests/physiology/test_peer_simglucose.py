"""Acceptance: agreement with the simglucose peer and with a tight scipy solve of our own model."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from medtwin.physiology.simulate import POPULATION_SOLVER, simulate_glucose, simulate_inputs
from medtwin.physiology.uva_padova import rhs, virtual_patients

sys.path.insert(0, str(Path(__file__).parent))
from simglucose_runner import run_simglucose_day  # noqa: E402

MEALS = [(7, 50), (12, 70), (19, 80)]  # (hour, grams)
ALL_PATIENTS = [f"{group}#{i:03d}" for group in ("adolescent", "adult", "child") for i in range(1, 11)]


@pytest.fixture(scope="module")
def peer_runs() -> dict[str, dict[str, np.ndarray]]:
    return {name: run_simglucose_day(name, MEALS) for name in ALL_PATIENTS}


@pytest.mark.slow
def test_all_30_patients_within_1_mg_dl_of_simglucose(peer_runs: dict[str, dict[str, np.ndarray]]) -> None:
    params = virtual_patients(ALL_PATIENTS)
    carbs = np.stack([peer_runs[n]["carbs"] for n in ALL_PATIENTS])
    insulin = np.stack([peer_runs[n]["insulin"] for n in ALL_PATIENTS])
    assert carbs.shape == (30, 1440) and carbs.sum(axis=1) == pytest.approx(np.full(30, 200.0))
    # the controller really bolused at each meal (more than basal delivered)
    assert np.all(insulin.max(axis=1) > 10 * insulin.min(axis=1))
    trajectory = simulate_inputs(params, carbs, insulin, np.arange(1441.0))  # one batched solve
    reference = np.stack([peer_runs[n]["glucose"] for n in ALL_PATIENTS], axis=1)  # (1441, 30)
    error = np.abs(trajectory.glucose_mg_dl - reference)
    worst = error.max(axis=0)
    assert worst.max() < 1.0, dict(zip(ALL_PATIENTS, worst.round(4), strict=True))
    # the days are not trivial: glucose moves by tens of mg/dL after meals for every patient
    assert np.all(reference.max(axis=0) - reference.min(axis=0) > 20)
    # simglucose reports BG averaged over each sensor sample period (3 min for its Dexcom);
    # average ours the same way and compare with its own history
    sample = int(peer_runs[ALL_PATIENTS[0]]["sample_time"])
    ours_minutes = trajectory.glucose_mg_dl[1:]  # after minute steps 1..1440
    averaged = ours_minutes.reshape(1440 // sample, sample, 30).mean(axis=1)
    bg_hist = np.stack([peer_runs[n]["bg_hist"][1:] for n in ALL_PATIENTS], axis=1)
    assert np.abs(averaged - bg_hist).max() < 1.0


@pytest.mark.slow
def test_population_tolerances_stay_far_inside_1_mg_dl_of_simglucose(
        peer_runs: dict[str, dict[str, np.ndarray]]) -> None:
    """The looser population solver (rtol 1e-4, atol 1e-2) on all 30 patients: measured 0.063 mg/dL at worst; held to 0.2
    (five times inside the 1 mg/dL bound), and it needs far fewer steps than the default solver."""
    params = virtual_patients(ALL_PATIENTS)
    carbs = np.stack([peer_runs[n]["carbs"] for n in ALL_PATIENTS])
    insulin = np.stack([peer_runs[n]["insulin"] for n in ALL_PATIENTS])
    t = np.arange(1441.0)
    loose = simulate_glucose(params, carbs, insulin, t, solver=POPULATION_SOLVER)
    reference = np.stack([peer_runs[n]["glucose"] for n in ALL_PATIENTS], axis=1)
    worst = np.abs(loose.glucose_mg_dl - reference).max(axis=0)
    assert worst.max() < 0.2, dict(zip(ALL_PATIENTS, worst.round(4), strict=True))
    tight = simulate_glucose(params, carbs, insulin, t)
    assert loose.steps.mean() < 0.6 * tight.steps.mean()


@pytest.mark.slow
def test_matches_tight_scipy_solve_of_our_model(peer_runs: dict[str, dict[str, np.ndarray]]) -> None:
    names = ["adolescent#003", "adult#007", "child#010"]
    params = virtual_patients(names)
    carbs = np.stack([peer_runs[n]["carbs"] for n in names])
    insulin = np.stack([peer_runs[n]["insulin"] for n in names])
    ours = simulate_inputs(params, carbs, insulin, np.arange(1441.0)).glucose_mg_dl
    # reference: scipy DOP853 at rtol 1e-10, minute by minute with the simulator's meal-memory update
    for i, _name in enumerate(names):
        y = params.initial_state[i].copy()
        p = params.values[i : i + 1]
        out = [y[12] / p[0, 9]]
        for minute in range(1440):
            if carbs[i, minute] > 0:
                eaten = carbs[i, minute] * 1000
                y[13] = (y[0] + y[1] + eaten) if (minute == 0 or carbs[i, minute - 1] <= 0) else y[13] + eaten
            u = np.array([[carbs[i, minute], insulin[i, minute]]])
            sol = solve_ivp(
                lambda t, s, u=u, p=p: rhs(t, s[None], p, u)[0],
                (minute, minute + 1),
                y,
                method="DOP853",
                rtol=1e-10,
                atol=1e-10,
            )
            y = sol.y[:, -1]
            out.append(y[12] / p[0, 9])
        assert np.abs(ours[:, i] - np.asarray(out)).max() < 0.1
