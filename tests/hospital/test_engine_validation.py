"""The engine against exact queueing results and against SimPy and Ciw on the same models."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tests.hospital.shapes import network, single_unit

from medtwin.hospital.engine import Engine
from medtwin.hospital.metrics import occupancy_at, summarise
from medtwin.hospital.model import parse_model
from medtwin.hospital.peer import simpy_waits
from medtwin.hospital.replicate import mean_ci, run_one
from medtwin.hospital.sampling import arrivals
from medtwin.hospital.whatif import BASELINE


def erlang_b(c: int, a: float) -> float:
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return b


def erlang_c_wq(c: int, lam: float, mu: float) -> float:
    a = lam / mu
    b = erlang_b(c, a)
    p_wait = b / (1 - (a / c) * (1 - b))
    return p_wait / (c * mu - lam)


def test_erlang_formulas_give_the_published_values() -> None:
    assert erlang_c_wq(10, 9.0, 1.0) == pytest.approx(0.668732, abs=1e-6)
    assert erlang_b(10, 9.0) == pytest.approx(0.167963, abs=1e-6)


def test_mm10_mean_wait_covers_erlang_c() -> None:
    model = parse_model(single_unit(10, 9.0, 1.0))
    waits = np.array([run_one(model, BASELINE, 11, r, 4000.0, 200.0)["wait_h.desk"] for r in range(12)])
    ci = mean_ci(waits)
    assert ci.low <= 0.668732 <= ci.high, ci
    assert ci.high - ci.low < 0.2  # and the CI is tight enough to mean something


def test_mm10_10_blocking_covers_erlang_b() -> None:
    model = parse_model(single_unit(10, 9.0, 1.0, queue_capacity=0))
    lost = np.array([run_one(model, BASELINE, 5, r, 2000.0, 50.0)["lost_fraction"] for r in range(12)])
    ci = mean_ci(lost)
    assert ci.low <= 0.167963 <= ci.high, ci
    assert ci.high - ci.low < 0.02


def test_same_patients_give_the_same_waits_in_simpy() -> None:
    """Fed identical draws, the engine and SimPy agree visit by visit (FIFO, constant beds)."""
    model = parse_model(network())
    patients = arrivals(model, 3, 0, 500.0)
    log = Engine(model, patients, 500.0).run()
    ours = log.t_start - log.t_join
    theirs, _ = simpy_waits(model, patients, 500.0)
    started = ~np.isnan(theirs)
    assert started.sum() > 1000
    np.testing.assert_array_equal(started, ~np.isnan(ours))
    np.testing.assert_allclose(ours[started], theirs[started], atol=1e-9)


def _ciw_network_waits(seed: int, horizon: float, warmup: float) -> list[float]:
    ciw = pytest.importorskip("ciw")
    ciw.seed(seed)
    net = ciw.create_network(
        arrival_distributions=[ciw.dists.Exponential(3.0), None, None],
        service_distributions=[ciw.dists.Exponential(4.0), ciw.dists.Exponential(1.0),
                               ciw.dists.Exponential(1 / 3.0)],
        routing=[[0.0, 1.0, 0.0], [0.0, 0.0, 0.3], [0.0, 0.0, 0.0]],
        number_of_servers=[2, 4, 4])
    sim = ciw.Simulation(net)
    sim.simulate_until_max_time(horizon)
    out = []
    for node in (1, 2, 3):
        w = [r.waiting_time for r in sim.get_all_records() if r.node == node and r.arrival_date >= warmup]
        out.append(float(np.mean(w)))
    return out


def test_network_side_by_side_with_ciw() -> None:
    """Independent streams: the mean waits per unit of medtwin and Ciw lie within each other's CIs."""
    model = parse_model(network())
    ours = np.array([[run_one(model, BASELINE, 21, r, 1500.0, 100.0)[f"wait_h.{u}"]
                      for u in ("triage", "treatment", "ward")] for r in range(10)])
    theirs = np.array([_ciw_network_waits(100 + r, 1500.0, 100.0) for r in range(10)])
    for u in range(3):
        a, b = mean_ci(ours[:, u]), mean_ci(theirs[:, u])
        assert a.low <= b.mean <= a.high and b.low <= a.mean <= b.high, (u, a, b)


def test_preemption_serves_esi1_at_once_and_conserves_work() -> None:
    data = single_unit(2, 1.5, 1.0)
    data["units"][0]["preemptive"] = True
    data["arrivals"][0]["esi_mix"] = [0.1, 0.0, 0.9, 0.0, 0.0]
    model = parse_model(data)
    patients = arrivals(model, 9, 0, 2000.0)
    log = Engine(model, patients, 2000.0).run()
    waits = log.t_start[:, 0] - log.t_join[:, 0]
    esi1 = patients.esi == 1
    both_esi1 = np.nanmax(waits[esi1])  # an ESI 1 waits only when both beds hold ESI 1 patients
    assert np.nanmean(waits[esi1]) < 0.05 * np.nanmean(waits[~esi1])
    assert both_esi1 < 5.0
    done = ~np.isnan(log.t_end[:, 0])
    # pre-emptive resume: time in the unit >= own stay, and = stay for never-pre-empted ESI 1
    assert np.all(log.t_end[done, 0] - log.t_start[done, 0] >= patients.service_h[done, 0] - 1e-9)
    assert math.isclose(float(np.sum(patients.service_h[done & esi1, 0])),
                        float(np.sum(log.t_end[done & esi1, 0] - log.t_start[done & esi1, 0])), rel_tol=0.05)


def test_roster_capacity_limits_beds_in_use() -> None:
    data = single_unit(10, 6.0, 1.0)
    data["roles"] = [{"name": "nurse", "staff_by_hour": [1] * 8 + [5] * 16}]
    data["units"][0] |= {"staff_role": "nurse", "patients_per_staff": 2}
    model = parse_model(data)
    log = Engine(model, arrivals(model, 4, 0, 24 * 14), 24 * 14).run()
    # sample just after each night shift has started draining: at 07:59 at most 2 beds can have been filled
    # since 00:00 only by then-free beds, so occupancy at 07:59 is <= 2 once the day's patients have left
    occ = occupancy_at(log, 1, np.arange(24 * 14) + 0.999)[0].reshape(14, 24)
    assert occ[1:, 7].max() <= 2 and occ[1:, 12].max() > 2
    assert summarise(log, model)["wait_h.desk"] > 0
