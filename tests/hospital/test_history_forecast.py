"""ADT history generator, the fit with its uncertainty, forecasts from a census and their backtest."""

from __future__ import annotations

import numpy as np
import pytest
from tests.hospital.shapes import network

from medtwin.hospital.forecast import census_patients, forecast
from medtwin.hospital.history import census_at, fit_history, generate_history
from medtwin.hospital.model import HospitalModelError, demo_model, parse_model
from medtwin.hospital.sampling import rng_for


@pytest.fixture(scope="module")
def history():  # type: ignore[no-untyped-def]
    return generate_history(demo_model(), 12, seed=1)


def test_fit_recovers_the_generator_within_its_uncertainty(history) -> None:  # type: ignore[no-untyped-def]
    model = demo_model()
    fit = fit_history(history, model, until_h=8 * 168)
    draws = [fit.draw(rng_for(0, r, 9))[0] for r in range(200)]
    for i, unit in enumerate(model.units):
        means = np.array([d.units[i].los.mean_h for d in draws])
        lo, hi = np.percentile(means, [0.5, 99.5])
        if unit.los.dist != "gamma":  # gamma stays are fitted as lognormal (the family is not the truth)
            assert lo <= unit.los.mean_h <= hi, (unit.name, lo, hi)
        assert hi - lo < 0.5 * unit.los.mean_h
    day = np.array([[d.arrivals[0].rate_per_hour[h] for h in range(168)] for d in draws]).reshape(200, 7, 24)
    truth = np.asarray(model.arrivals[0].rate_per_hour)
    daily_mean = day.mean(axis=1)  # pooled over the week's days, per hour of day
    inside = (np.percentile(daily_mean, 0.5, axis=0) <= truth) & (truth <= np.percentile(daily_mean, 99.5, axis=0))
    assert inside.mean() >= 0.9
    p_ward = np.array([d.units[1].routing["ward"] for d in draws])
    assert np.percentile(p_ward, 0.5) <= 0.24 <= np.percentile(p_ward, 99.5)


def test_fit_without_data_is_not_callable() -> None:
    model = parse_model(network())
    short = generate_history(model, 1, seed=2)
    data = network()
    data["units"].append({"name": "rare", "beds": 1, "los": {"dist": "exponential", "mean_h": 1}})
    data["units"][1]["routing"] = {"exit": 0.7, "ward": 0.2999, "rare": 0.0001}
    with pytest.raises(HospitalModelError, match="completed stays: too few to fit"):
        fit_history(short, parse_model(data))


def test_census_residual_stays_are_conditional_on_elapsed(history) -> None:  # type: ignore[no-untyped-def]
    """Exponential stays are memoryless: residual = fresh stay; lognormal ones are not."""
    model = parse_model(network())
    census = census_at(generate_history(model, 4, seed=3), 4 * 168.0)
    assert census.unit.size > 0
    from medtwin.hospital.history import Census
    many = Census(np.full(20000, 2), np.full(20000, 3), np.ones(20000, dtype=bool), np.full(20000, 10.0))
    patients, _, joined = census_patients(model, many, np.random.default_rng(0))
    assert patients.service_h[:, 0].mean() == pytest.approx(3.0, rel=0.03)  # ward mean 3 h, memoryless
    assert np.all(joined == pytest.approx(-10.0))


def test_forecast_starts_from_the_census(history) -> None:  # type: ignore[no-untyped-def]
    model = demo_model()
    t0 = 10 * 168.0
    census = census_at(history, t0)
    fc = forecast(model, census, int(t0) % 168, horizon_h=24, replications=40, seed=1)
    ward = fc.units.index("ward")
    assert fc.occupancy["mean"][ward, 0] == census.counts(history.units)["ward"]  # hour 0 is the census
    assert fc.occupancy["low"].shape == (len(model.units), 25)
    assert np.all(fc.occupancy["low"] <= fc.occupancy["high"])
    empty = forecast(model, census_at(history, -1.0), 0, horizon_h=24, replications=20, seed=1)
    assert empty.occupancy["mean"][ward, 24] < 0.5 * fc.occupancy["mean"][ward, 24]  # from empty: the peers' way
    assert fc.boarding["mean"].shape == (25,) and np.all(fc.boarding["low"] <= fc.boarding["high"])
    # boarding needs a full ward: close most ward beds and boarders appear
    from medtwin.hospital.whatif import Scenario
    tight = Scenario(name="tight", beds={"ward": int(census.counts(history.units)["ward"])}).apply(model)
    squeezed = forecast(tight, census, int(t0) % 168, horizon_h=24, replications=20, seed=1)
    assert squeezed.boarding["mean"][24] > fc.boarding["mean"][24] + 1
    out = fc.as_dict()
    assert "patient" not in str(out).lower() and out["interval"] == 0.95


@pytest.mark.slow
def test_backtest_24h_occupancy_intervals_cover(history) -> None:  # type: ignore[no-untyped-def]
    """Fit on 8 weeks, forecast each held-out day from its midnight census: the 95 % intervals of 24 h
    occupancy of the ED, ICU and ward cover most held-out days (measured 0.976 on this history)."""
    model = demo_model()
    fit = fit_history(history, model, until_h=8 * 168)
    units = ("ed_treatment", "icu", "ward")
    hits = []
    for d in range(28):
        t0 = 8 * 168 + 24 * d
        fc = forecast(fit, census_at(history, t0), t0 % 168, 24, 60, seed=d)
        seen = census_at(history, t0 + 24).counts(history.units)
        hits += [fc.occupancy["low"][fc.units.index(u), 24] <= seen[u] <= fc.occupancy["high"][fc.units.index(u), 24]
                 for u in units]
    coverage = float(np.mean(hits))
    assert 0.90 <= coverage <= 0.99, coverage
