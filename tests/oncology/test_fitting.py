"""Batched fitting: parameter recovery, MAP with a population prior, AIC/BIC, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medtwin.oncology.fitting import Prior, fit_batch, population_prior
from medtwin.oncology.growth import to_theta, volume
from medtwin.oncology.measurements import MeasurementError, fit_lesion, series


def _synthetic(model: str, params: np.ndarray, t: np.ndarray, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    clean = volume(model, params, t)
    return np.asarray(clean * (1.0 + noise * rng.standard_normal(clean.shape)))


def test_batch_recovers_gompertz_parameters_of_many_lesions() -> None:
    rng = np.random.default_rng(1)
    n = 200
    truth = np.column_stack([rng.uniform(500, 5000, n), rng.uniform(8000, 30000, n), rng.uniform(0.01, 0.04, n)])
    t = np.tile(np.linspace(0.0, 200.0, 9), (n, 1))
    y = volume("gompertz", truth, t)
    fit = fit_batch("gompertz", t, y)
    assert fit.converged.all()
    np.testing.assert_allclose(fit.params, truth, rtol=5e-3)  # the weak default prior pulls slightly
    assert fit.params.shape == (n, 3)


def test_mask_ignores_padding_and_aic_prefers_the_true_law() -> None:
    truth = np.array([[1000.0, 20000.0, 0.02]])
    t = np.array([[0.0, 30.0, 60.0, 90.0, 120.0, 150.0, 180.0, 0.0]])
    y = _synthetic("gompertz", truth, t, 0.01, 3)
    mask = np.ones_like(t, dtype=bool)
    mask[0, -1] = False
    y[0, -1] = 1e9  # padding: must not matter
    gompertz = fit_batch("gompertz", t, y, mask)
    exponential = fit_batch("exponential", t, y, mask)
    assert gompertz.params[0, 1] == pytest.approx(20000.0, rel=0.1)
    assert gompertz.aic[0] < exponential.aic[0] and gompertz.bic[0] < exponential.bic[0]


def test_population_prior_improves_forecast_from_three_points() -> None:
    """Benzekry 2014: with few points, MAP under the population prior forecasts better than no prior."""
    rng = np.random.default_rng(7)
    n = 300
    truth = np.column_stack([np.exp(rng.normal(np.log(2000), 0.2, n)), np.exp(rng.normal(np.log(15000), 0.2, n)),
                             np.exp(rng.normal(np.log(0.02), 0.2, n))])
    t_all = np.tile(np.linspace(0.0, 240.0, 9), (n, 1))
    y_all = _synthetic("gompertz", truth, t_all, 0.05, 8)
    population = population_prior(fit_batch("gompertz", t_all, y_all), "synthetic population")
    few_t, few_y = t_all[:, :3], y_all[:, :3]
    no_prior = fit_batch("gompertz", few_t, few_y)
    with_prior = fit_batch("gompertz", few_t, few_y, prior=population)
    target = volume("gompertz", truth, t_all[:, -1:])[:, 0]
    err_prior = np.median(np.abs(with_prior.predict(t_all[:, -1:])[:, 0] - target) / target)
    err_none = np.median(np.abs(no_prior.predict(t_all[:, -1:])[:, 0] - target) / target)
    assert err_prior < 0.5 * err_none
    assert population.tau.shape == (3,) and population.sigma > 0


def test_prior_object_shapes() -> None:
    prior = Prior("exponential", np.zeros(2), np.ones(2), 0.1)
    fit = fit_batch("exponential", np.array([[0.0, 10.0]]), np.array([[1.0, 2.0]]), prior=prior)
    assert fit.theta.shape == (1, 2)
    assert fit.scale[0] == 1.0  # the first reading
    np.testing.assert_allclose(to_theta("exponential", fit.params), fit.theta, atol=1e-9)


def test_too_few_points_falls_back_to_a_simpler_law_and_says_so() -> None:
    lesion = series([0.0, 40.0], [10.0, 12.0], ["mm", "mm"])
    result = fit_lesion(lesion, "gen_bertalanffy")
    assert result.model == "exponential"
    assert "fitted exponential" in result.note
    rate = result.fit.params[0, 1]
    assert rate == pytest.approx(np.log((12.0 / 10.0) ** 3) / 40.0, rel=3e-3)  # broad prior: a slight pull
    with pytest.raises(MeasurementError, match="at least 2"):
        fit_lesion(series([0.0], [10.0], ["mm"]), "gompertz")


def test_non_convergence_is_said() -> None:
    lesion = series([0.0, 10.0, 20.0, 30.0, 40.0], [10.0, 30.0, 5.0, 40.0, 2.0], ["mm"] * 5)
    result = fit_batch("gen_bertalanffy", lesion.t_days[None, :], lesion.volume_mm3[None, :], max_iter=2)
    assert not result.converged[0]
    from medtwin.oncology import measurements
    original = measurements.fit_batch
    try:
        measurements.fit_batch = lambda *a, **k: original(*a, **{**k, "max_iter": 2})  # type: ignore[assignment]
        said = fit_lesion(lesion, "gen_bertalanffy")
    finally:
        measurements.fit_batch = original  # type: ignore[assignment]
    assert not said.converged and "did not converge" in said.note


@pytest.mark.parametrize(("times", "sizes", "units", "field"), [
    ([0, 10, 20], [10, -1, 12], ["mm"] * 3, "row 2: size"),
    ([0, 20, 10], [10, 11, 12], ["mm"] * 3, "row 3: time"),
    ([0, 10, 10], [10, 11, 12], ["mm"] * 3, "row 3: time"),
    ([0, 10, 20], [10, 11, 1200], ["mm", "mm", "mm3"], "row 3: unit"),
    ([0, 10, 20], [10, 11, 12], ["mm", "mm", "inch"], "row 3: unit"),
    ([0, 10, 20], [0, 0, 0], ["mm"] * 3, "size"),
    ([0, 10, 20], [10, float("nan"), 12], ["mm"] * 3, "row 2"),
])
def test_bad_measurements_name_the_row(times: list[float], sizes: list[float], units: list[str],
                                       field: str) -> None:
    with pytest.raises(MeasurementError) as err:
        series(times, sizes, units)
    assert err.value.field == field


def test_mm_and_cm_mix_converts_each_row() -> None:
    lesion = series([0.0, 30.0], [12.0, 1.5], ["mm", "cm"])
    np.testing.assert_allclose(lesion.volume_mm3, [0.52 * 12.0 ** 3, 0.52 * 15.0 ** 3])
    volumes = series([5.0, 30.0], [1.0, 2000.0], ["mL", "mm3"])
    np.testing.assert_allclose(volumes.volume_mm3, [1000.0, 2000.0])
    assert volumes.start_day == 5.0 and volumes.t_days[1] == 25.0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.1, 500.0), min_size=2, max_size=8), st.sampled_from(["mm", "cm"]))
def test_diameter_conversion_is_monotone(sizes: list[float], unit: str) -> None:
    lesion = series(list(range(len(sizes))), sizes, [unit] * len(sizes))
    order = np.argsort(sizes, kind="stable")
    assert np.all(np.diff(lesion.volume_mm3[order]) >= 0)
    factor = 10.0 if unit == "cm" else 1.0
    np.testing.assert_allclose(lesion.volume_mm3, 0.52 * (np.asarray(sizes) * factor) ** 3)


def test_virtual_lesions_follow_the_population_prior() -> None:
    from medtwin.oncology.fitting import sample_virtual_lesions

    prior = Prior("gompertz", np.array([0.0, np.log(0.5), np.log(0.02)]), np.array([0.1, 0.3, 0.2]), 0.1)
    one = sample_virtual_lesions(prior, 4000, np.random.default_rng(5))
    again = sample_virtual_lesions(prior, 4000, np.random.default_rng(5))
    np.testing.assert_array_equal(one, again)
    assert np.median(one[:, 1]) == pytest.approx(0.5, rel=0.03)
    assert np.std(np.log(one[:, 2])) == pytest.approx(0.2, rel=0.05)


def test_a_prior_from_few_points_needs_no_fallback_and_must_match_the_law() -> None:
    lesion = series([0.0, 40.0], [10.0, 9.0], ["mm", "mm"])
    prior = Prior("gompertz", np.array([0.0, np.log(0.5), np.log(0.02)]), np.array([0.1, 0.3, 0.3]), 0.1)
    result = fit_lesion(lesion, "gompertz", prior)
    assert result.model == "gompertz" and result.note == ""
    assert result.fit.params[0, 1] < result.fit.params[0, 0]  # K below the first reading: shrinking prior
    with pytest.raises(MeasurementError, match="cannot be used"):
        fit_lesion(lesion, "logistic", prior)
