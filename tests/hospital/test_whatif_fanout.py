"""What-if scenarios against the baseline with paired CIs; the Dask fan-out gives the serial results."""

from __future__ import annotations

import numpy as np
import pytest

from medtwin.hospital.fanout import dask_client, run_grid
from medtwin.hospital.model import HospitalModelError, demo_model
from medtwin.hospital.replicate import collect, mean_ci, paired, run_chunk
from medtwin.hospital.whatif import BASELINE, Scenario, moved_beds

HORIZON, WARMUP = 24 * 7 * 6.0, 24 * 7 * 3.0


@pytest.fixture(scope="module")
def grid():  # type: ignore[no-untyped-def]
    model = demo_model()
    scenarios = [BASELINE, Scenario(name="surge", arrival_multiplier=1.3, los_multiplier=1.1),
                 moved_beds(model, "icu", "ward", 4, name="icu-4"),
                 Scenario(name="night nurses", staff_by_hour={"ed_nurse": [4] * 7 + [8] * 12 + [4] * 5})]
    with dask_client() as client:
        return model, scenarios, run_grid(client, model, scenarios, 8, 5, HORIZON, WARMUP, chunk=3)


def test_dask_gives_the_serial_results(grid) -> None:  # type: ignore[no-untyped-def]
    model, scenarios, results = grid
    serial = collect([run_chunk(model, scenarios[1], 5, [7, 2], HORIZON, WARMUP)], 8)
    for key in ("ed_wait_h", "occupancy.ward", "events"):
        assert serial["surge"][key][7] == results["surge"][key][7]
        assert serial["surge"][key][2] == results["surge"][key][2]


def test_surge_raises_waits_and_occupancy(grid) -> None:  # type: ignore[no-untyped-def]
    _, _, results = grid
    ward = paired(results, "surge", "occupancy.ward")
    assert ward.low > 0.2 * results["baseline"]["occupancy.ward"].mean()  # +30 % arrivals, +10 % stays
    assert paired(results, "surge", "ed_wait_h").low > 0


def test_moving_icu_beds_to_the_ward_raises_icu_waits_pair_by_pair(grid) -> None:  # type: ignore[no-untyped-def]
    _, _, results = grid
    icu = paired(results, "icu-4", "wait_h.icu")
    assert icu.low > 0
    # the same patients: fewer beds never shortens a replication's ICU wait
    assert np.all(results["icu-4"]["wait_h.icu"] >= results["baseline"]["wait_h.icu"])
    # common random numbers: the paired CI is narrower than comparing two independent means
    unpaired = mean_ci(results["icu-4"]["wait_h.icu"])
    assert icu.high - icu.low < unpaired.high - unpaired.low


def test_fewer_night_nurses_lengthen_ed_waits(grid) -> None:  # type: ignore[no-untyped-def]
    _, _, results = grid
    assert paired(results, "night nurses", "wait_h.ed_treatment").low > 0
    assert np.all(results["night nurses"]["lost_fraction"] == 0)


def test_bad_scenarios_name_the_field() -> None:
    model = demo_model()
    with pytest.raises(HospitalModelError, match=r"scenario 'x'.beds.wing"):
        Scenario(name="x", beds={"wing": 3}).apply(model)
    with pytest.raises(HospitalModelError, match=r"staff_by_hour"):
        Scenario(name="y", staff_by_hour={"ed_nurse": [-1] * 24}).apply(model)
    with pytest.raises(HospitalModelError, match="source"):
        moved_beds(model, "nowhere", "icu", 1)


def test_outage_closes_beds_for_its_window_only() -> None:
    """Two of four theatres down for 6 h (equipment downtime): no more than 2 in use during the outage, the
    same patients wait longer, and before the outage nothing differs."""
    from medtwin.hospital.engine import Engine
    from medtwin.hospital.metrics import occupancy_at
    from medtwin.hospital.sampling import arrivals
    from medtwin.hospital.whatif import Outage

    model = demo_model()
    down = Scenario(name="theatres down", outages=[Outage(unit="theatre", start_h=200, duration_h=6, beds=3)])
    patients = arrivals(model, 3, 0, 400.0)
    base = Engine(model, patients, 400.0).run()
    out = Engine(model, patients, 400.0, outages=down.outage_tuples(model)).run()
    theatre = model.unit_index()["theatre"]
    in_theatre = out.patients.path == theatre
    starts = out.t_start[in_theatre & (out.t_start >= 200) & (out.t_start < 206)]
    # capacity 1 in the window: a patient starts only into an empty theatre (those in at 200 finish first),
    # so right after any start in the window the theatre holds exactly that patient
    assert starts.size > 0 and np.all(occupancy_at(out, len(model.units), starts)[theatre] == 1)
    window = (base.t_start >= 200) & (base.t_start < 206) & in_theatre
    assert starts.size < window.sum()
    before = base.t_start < 199.0
    np.testing.assert_array_equal(base.t_start[before], out.t_start[before])
    assert np.nansum(out.t_start - out.t_join) > np.nansum(base.t_start - base.t_join)
    with pytest.raises(HospitalModelError, match=r"outages\[0\].unit"):
        Scenario(name="x", outages=[Outage(unit="ct", start_h=0, duration_h=1, beds=1)]).outage_tuples(model)


def test_new_wing_layout_transfer_times() -> None:
    """A layout puts the ward 30 min from the ED instead of 6: each ED->ward move takes 24 min more; the
    same patients (CRN) show it in transit time per patient, and beds are not held in transit."""
    from medtwin.hospital.replicate import run_one

    model = demo_model()
    near = Scenario(name="near", transfer_h={"ed_treatment": {"ward": 0.1}})
    far = Scenario(name="far", transfer_h={"ed_treatment": {"ward": 0.5}})
    a = run_one(model, near, 4, 0, 24 * 7 * 4.0, 24 * 7.0)
    b = run_one(model, far, 4, 0, 24 * 7 * 4.0, 24 * 7.0)
    share = a["transfer_h_per_patient"] / 0.1  # ED->ward moves per patient
    assert 0.15 < share < 0.3  # ~0.24 of ED patients (and none of the electives) go to the ward
    assert b["transfer_h_per_patient"] == pytest.approx(share * 0.5, rel=0.02)
    assert b["occupancy.ed_treatment"] == pytest.approx(a["occupancy.ed_treatment"], rel=0.02)
    with pytest.raises(HospitalModelError, match=r"transfer_h"):
        Scenario(name="bad", transfer_h={"ed_treatment": {"discharge_lounge": 0.2}}).apply(model)


def test_pandemic_wave_fills_the_icu_with_the_curve() -> None:
    """A 4-week wave after two calm weeks (arrivals x1 -> x2 -> x1) with a sicker case mix (which sets
    priorities only: routing to the ICU is per unit, not per ESI, in this model): ICU occupancy over the wave
    is above the baseline's, pair by pair; before the wave starts the runs are identical (CRN)."""
    from medtwin.hospital.replicate import run_one

    model = demo_model()
    wave = [1.0] * 14 + [1.0 + np.sin(np.pi * d / 28) for d in range(28)]  # two calm weeks, then the wave
    pandemic = Scenario(name="wave", arrival_curve=wave, los_multiplier=1.0,
                        esi_mix=[0.03, 0.25, 0.45, 0.22, 0.05])
    calm = run_one(model, BASELINE, 8, 0, 24 * 14.0, 24 * 7.0)
    calm_wave = run_one(model, pandemic.model_copy(update={"esi_mix": None}), 8, 0, 24 * 14.0, 24 * 7.0)
    assert calm == calm_wave  # multiplier 1 for the first two weeks: the very same run
    base = [run_one(model, BASELINE, 8, r, 24 * 42.0, 24 * 21.0)["occupancy.icu"] for r in range(4)]
    peak = [run_one(model, pandemic, 8, r, 24 * 42.0, 24 * 21.0)["occupancy.icu"] for r in range(4)]
    assert all(p > b for p, b in zip(peak, base, strict=True))
    with pytest.raises(HospitalModelError, match="arrival_curve"):
        Scenario(name="x", arrival_curve=[1.0, 0.0]).apply(model)
