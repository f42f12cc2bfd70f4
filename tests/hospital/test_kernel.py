"""The compiled event loop (hospital/kernel.py, numba) against the Python engine and SimPy on the same
patients: identical visit logs, event for event, on models that use every rule (rosters, ESI pre-emption,
a queue limit, transfer times, outages, a census start); the Erlang C/B and Ciw tests run the compiled path
too (``run_one``'s default)."""

from __future__ import annotations

import numpy as np
import pytest
from tests.hospital.shapes import network

from medtwin.hospital.engine import VisitLog, simulate
from medtwin.hospital.forecast import census_patients
from medtwin.hospital.history import census_at, generate_history
from medtwin.hospital.model import demo_model, parse_model
from medtwin.hospital.peer import simpy_waits
from medtwin.hospital.replicate import run_one
from medtwin.hospital.sampling import Patients, arrivals, rng_for
from medtwin.hospital.whatif import Scenario

pytestmark = pytest.mark.slow  # the first run compiles the loop (cached after: numba cache=True)


def same(a: VisitLog, b: VisitLog) -> None:
    for name in ("t_join", "t_start", "t_end"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_array_equal(a.lost, b.lost)
    assert a.events == b.events


def busy_model() -> dict:  # type: ignore[type-arg]
    data = demo_model().model_dump()
    for unit in data["units"]:
        if unit["name"] == "ed_triage":
            unit["queue_capacity"] = 1  # turned away when triage backs up
        if unit["name"] == "ed_treatment":
            unit["transfer_h"] = {"ward": 0.25, "icu": 0.1}
    return data


def test_compiled_and_python_loops_give_identical_visits() -> None:
    model = parse_model(busy_model())
    scenario = Scenario(name="stress", arrival_multiplier=1.6, outages=[
        {"unit": "icu", "start_h": 100, "duration_h": 48, "beds": 6}])
    applied = scenario.apply(model)
    patients = arrivals(applied, 7, 0, 24 * 21.0, 0, 1.6).trimmed()
    outages = scenario.outage_tuples(applied)
    fast = simulate(applied, patients, 24 * 21.0, outages=outages)
    slow = simulate(applied, patients, 24 * 21.0, outages=outages, compiled=False)
    same(fast, slow)
    assert fast.lost.any() and fast.events > 10_000  # the queue limit bites; a real run
    esi1 = patients.esi == 1
    assert np.nanmax(fast.t_start[esi1, 1] - fast.t_join[esi1, 1]) < 1e-9  # pre-empted their way in at once


def test_compiled_loop_from_a_census_matches_python() -> None:
    model = demo_model()
    history = generate_history(model, 3, 5)
    census = census_at(history, 3 * 168.0)
    now, in_bed, joined = census_patients(model, census, rng_for(5, 0, 4))
    new = arrivals(model, 5, 0, 48.0, 0)
    patients = Patients(np.concatenate([now.t0_h, new.t0_h]), np.concatenate([now.esi, new.esi]),
                        np.concatenate([now.path, new.path]), np.concatenate([now.service_h, new.service_h]))
    in_bed[::8] = False  # some of them still waiting (since their join time) at the start
    flags = np.concatenate([in_bed, np.zeros(len(new), dtype=bool)])
    joins = np.concatenate([joined, np.zeros(len(new))])
    assert flags.sum() > 100 and ((joins < 0) & ~flags).sum() > 10
    same(simulate(model, patients, 48.0, in_service=flags, joined_h=joins),
         simulate(model, patients, 48.0, in_service=flags, joined_h=joins, compiled=False))


def test_compiled_loop_matches_simpy_visit_by_visit() -> None:
    model = parse_model(network())
    patients = arrivals(model, 9, 0, 800.0).trimmed()
    log = simulate(model, patients, 800.0)
    theirs, _ = simpy_waits(model, patients, 800.0)
    ours = log.t_start - log.t_join
    started = ~np.isnan(theirs)
    assert started.sum() > 2000
    np.testing.assert_array_equal(started, ~np.isnan(ours))
    np.testing.assert_allclose(ours[started], theirs[started], atol=1e-9)


def test_run_one_same_metrics_either_loop() -> None:
    model = demo_model()
    scenario = Scenario(name="surge", arrival_multiplier=1.3, los_multiplier=1.1)
    fast = run_one(model, scenario, 3, 1, 24 * 14.0, 24 * 3.0)
    slow = run_one(model, scenario, 3, 1, 24 * 14.0, 24 * 3.0, compiled=False)
    assert fast == pytest.approx(slow, rel=0, abs=0, nan_ok=True)
