"""Meal detection from the CGM (physiology/meal_detect.py): a sustained rise is flagged once, after the
required readings, sized from the rise and bounded; a brief rise, noise and a fall are not; the refractory
time holds; bad settings are refused; in the stream a meal is told with the bolus that met it. Measured
effect (benchmarks/bench_forecast.py --meals): about neutral on the real traces (docs/architecture.md)."""

from __future__ import annotations

import numpy as np
import pytest

from medtwin.physiology.errors import PhysiologyInputError
from medtwin.physiology.meal_detect import MealDetector, MealDetectSettings


def run(values: list[float], settings: MealDetectSettings | None = None) -> list[tuple[float, float]]:
    detector = MealDetector(settings or MealDetectSettings())
    found = []
    for k, value in enumerate(values):
        grams = detector.observe(5.0 * k, value)
        if grams is not None:
            found.append((5.0 * k, grams))
    return found


def test_a_sustained_rise_is_one_meal_sized_from_its_rise() -> None:
    s = MealDetectSettings(rise_mg_dl_per_min=1.5, readings=2, grams_per_mg_dl=1.0, refractory_min=150.0)
    values = [100.0] * 12 + [100.0 + 10 * k for k in range(1, 9)] + [180.0] * 30 + [180.0 + 10 * k for k in range(1, 6)]
    found = run(values, s)
    # the 15-min slope reaches 1.5 mg/dL/min at the 3rd rising reading (least squares over 100, 100, 110, 120:
    # 1.4; over 100, 110, 120, 130: 2.0) and has to hold for 2 readings: detected at the 4th rising reading
    assert found[0][0] == 5.0 * (12 + 3)
    assert found[0][1] == pytest.approx(140.0 - 100.0)  # the rise over the last 30 min, 1 g per mg/dL
    assert len(found) == 2 and found[1][0] - found[0][0] >= 150.0  # the second rise after the refractory time


def test_noise_a_brief_rise_and_a_fall_are_not_meals_and_sizes_are_bounded() -> None:
    rng = np.random.default_rng(4)
    assert run(list(120 + rng.normal(0, 3, 300))) == []  # sensor noise alone
    assert run([100.0] * 12 + [115.0, 100.0, 100.0, 100.0]) == []  # a single jump
    assert run([200.0 - 3 * k for k in range(40)]) == []
    big = run([60.0] * 6 + [60.0 + 15 * k for k in range(1, 20)], MealDetectSettings(max_carbs_g=40.0))
    assert [g for _t, g in big] == [40.0]  # 1.15 g per mg/dL of a 45 mg/dL rise, capped
    small = run([60.0] * 6 + [60.0 + 8 * k for k in range(1, 5)], MealDetectSettings(min_carbs_g=50.0))
    assert [g for _t, g in small] == [50.0]  # 1.15 x 32 mg/dL: raised to the least meal
    with pytest.raises(PhysiologyInputError, match="meal_detect"):
        MealDetectSettings(min_carbs_g=50.0, max_carbs_g=10.0)


def test_a_detected_meal_is_told_with_the_bolus_that_met_it() -> None:
    """In the stream (physiology/streaming.py) a detected meal reaches the filter as carbohydrate and, with a
    carb ratio, as the bolus carbs / ratio at the same time; the typical ratio is the cohort's geometric mean."""
    from medtwin.physiology.assimilation import FilterSettings, start_filter
    from medtwin.physiology.calibrate import cohort_carb_ratio
    from medtwin.physiology.streaming import Series, stream
    from medtwin.physiology.uva_padova import virtual_patients

    cohort = virtual_patients()
    ratio = cohort_carb_ratio(cohort)
    assert ratio == pytest.approx(float(np.exp(np.mean(np.log(cohort.carb_ratio_g_per_unit)))))
    settings = FilterSettings(n_members=8)
    values = [100.0] * 12 + [100.0 + 10 * k for k in range(1, 5)]
    series = Series("p", np.arange(len(values), dtype=float) * 5.0, np.array(values))
    told = []
    for meals in (MealDetectSettings(), MealDetectSettings(carb_ratio_g_per_unit=ratio)):
        filt = start_filter("p", virtual_patients(["adult#004"]), time_min=0.0, glucose_mg_dl=100.0,
                            basal_u_per_h=1.0, settings=settings, rng=np.random.default_rng(0))
        stream([filt], [series], settings, (30,), meals=meals, forecast_from_min=1e9)
        told.append(([m.carbs_g for m in filt.meals], [u for _t, u in filt.boluses]))
    (carbs, no_bolus), (same_carbs, bolus) = told
    assert carbs == same_carbs == [pytest.approx(1.15 * 40.0)] and no_bolus == []  # detected at 140 (rise 40)
    assert bolus == [pytest.approx(1.15 * 40.0 / ratio)]
