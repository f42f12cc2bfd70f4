"""Meal detection from the CGM (physiology/meal_detect.py): a sustained rise is flagged once, after the
required readings, sized from the rise and bounded; a brief rise, noise and a fall are not; the refractory
time holds; bad settings are refused. Measured effect (benchmarks/bench_forecast.py --meals): on the real
traces the twin told of detected meals is further from the readings than without them."""

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
