"""The compiled metrics pass (hospital/metrics.py ``summarise(compiled=True)``) equals the numpy reference
to 1e-12 relative (only the order of summation differs) on baseline, surge, outage and census-start runs,
with and without a warm-up; and it computes values that move (not a constant)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from medtwin.hospital.engine import VisitLog, simulate
from medtwin.hospital.forecast import census_patients
from medtwin.hospital.history import census_at, generate_history
from medtwin.hospital.metrics import summarise
from medtwin.hospital.model import HospitalModel, demo_model, parse_model
from medtwin.hospital.sampling import Patients, arrivals, rng_for
from medtwin.hospital.whatif import Outage, Scenario

from .test_kernel import busy_model


def equal(log: VisitLog, model: HospitalModel, warmup_h: float) -> dict[str, float]:
    fast = summarise(log, model, warmup_h)
    ref = summarise(log, model, warmup_h, compiled=False)
    assert fast.keys() == ref.keys()
    for key, value in ref.items():
        if math.isnan(value):
            assert math.isnan(fast[key]), key
        else:
            assert fast[key] == value or abs(fast[key] - value) <= 1e-12 * abs(value), (key, fast[key], value)
    return fast


def scenario_log(scenario: Scenario, seed: int, horizon_h: float) -> tuple[VisitLog, HospitalModel]:
    applied = scenario.apply(parse_model(busy_model()))
    patients = arrivals(applied, seed, 0, horizon_h, 0, scenario.arrival_multiplier).trimmed()
    return simulate(applied, patients, horizon_h, outages=scenario.outage_tuples(applied)), applied


def test_baseline_surge_and_outage_runs() -> None:
    grid = [Scenario(name="baseline"), Scenario(name="surge", arrival_multiplier=1.6),
            Scenario(name="outage", outages=[Outage(unit="icu", start_h=100, duration_h=96, beds=14)])]
    got = {}
    for scenario in grid:
        log, applied = scenario_log(scenario, 7, 24 * 21.0)
        for warmup in (0.0, 48.0):
            got[scenario.name, warmup] = equal(log, applied, warmup)
    assert got["surge", 48.0]["lost_fraction"] > 0  # the busy model turns people away under surge
    assert got["surge", 48.0]["ed_wait_h"] > got["baseline", 48.0]["ed_wait_h"]
    assert got["outage", 0.0]["wait_h.icu"] > got["baseline", 0.0]["wait_h.icu"]  # beds closed: longer waits
    assert got["baseline", 0.0]["transfer_h_per_patient"] > 0


def test_census_start_run() -> None:
    model = demo_model()
    census = census_at(generate_history(model, 3, 5), 3 * 168.0)
    now, in_bed, joined = census_patients(model, census, rng_for(5, 0, 4))
    new = arrivals(model, 5, 0, 48.0, 0)
    patients = Patients(np.concatenate([now.t0_h, new.t0_h]), np.concatenate([now.esi, new.esi]),
                        np.concatenate([now.path, new.path]), np.concatenate([now.service_h, new.service_h]))
    in_bed[::8] = False
    flags = np.concatenate([in_bed, np.zeros(len(new), dtype=bool)])
    joins = np.concatenate([joined, np.zeros(len(new))])
    log = simulate(model, patients, 48.0, in_service=flags, joined_h=joins)
    out = equal(log, model, 0.0)
    assert out["occupancy.ward"] > 0


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), multiplier=st.floats(0.3, 2.0), warmup_h=st.floats(0.0, 60.0),
       horizon_h=st.floats(6.0, 120.0))
def test_equal_on_random_runs(seed: int, multiplier: float, warmup_h: float, horizon_h: float) -> None:
    log, applied = scenario_log(Scenario(name="x", arrival_multiplier=multiplier), seed, horizon_h)
    equal(log, applied, min(warmup_h, horizon_h / 2))
