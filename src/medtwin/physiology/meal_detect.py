"""Unannounced meals detected from the CGM itself, told to the live twin as a meal input (issue 17 item 3).

A person without meal records eats all the same; the filter of :mod:`.assimilation` then sees a rise its
model cannot explain and takes it up in its disturbance term, which decays: the twin forecasts the rise to
stop. The detector flags a meal when the measured trend (THE trend, :func:`medtwin.vocab.forecast.
glucose_trend_mg_dl_per_min`, 15-min least squares) stays at or above ``rise_mg_dl_per_min`` for
``readings`` readings in a row, at most once per ``refractory_min``, and sizes it from the rise of the last
``size_window_min``: ``grams_per_mg_dl`` x rise, within ``min_carbs_g``-``max_carbs_g`` (the gut input the
rise implies; ``grams_per_mg_dl`` fitted on the TRAINING virtual patients, whose true meals are known,
never on the real traces it is measured on). The meal is told to the filter at the detection time (the
carbohydrate already absorbed is in the filter's glucose; the rest will be), with the insulin that met it
when ``carb_ratio_g_per_unit`` is given (a bolus of carbs / ratio: a person's own bolus or pancreas, which the
record does not show either; :func:`~medtwin.physiology.calibrate.cohort_carb_ratio` gives the typical
one). Why the insulin: a meal told alone made the twin predict rises that did not come (training patients
without records, 30-min RMSE 20.3 -> 24.4 mg/dL; with the insulin 20.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from medtwin.physiology.errors import PhysiologyInputError
from medtwin.vocab.forecast import TREND_WINDOW_MIN, glucose_trend_mg_dl_per_min


@dataclass(frozen=True)
class MealDetectSettings:
    rise_mg_dl_per_min: float = 1.5
    readings: int = 2
    refractory_min: float = 150.0
    size_window_min: float = 30.0
    grams_per_mg_dl: float = 1.15
    min_carbs_g: float = 10.0
    max_carbs_g: float = 100.0
    carb_ratio_g_per_unit: float | None = None  # tell a bolus of carbs / ratio with each meal (None: no insulin)

    def __post_init__(self) -> None:
        if not (self.rise_mg_dl_per_min > 0 and self.readings >= 1 and self.refractory_min >= 0
                and self.size_window_min >= TREND_WINDOW_MIN and self.grams_per_mg_dl > 0
                and 0 < self.min_carbs_g <= self.max_carbs_g
                and (self.carb_ratio_g_per_unit is None or self.carb_ratio_g_per_unit > 0)):
            raise PhysiologyInputError("meal_detect", "positive thresholds, a size window of at least the trend "
                                                      "window, 0 < min_carbs_g <= max_carbs_g and a positive "
                                                      "carb ratio needed")


@dataclass
class MealDetector:
    """One person's detector: :meth:`observe` each reading in time order; returns grams to tell, or None."""

    settings: MealDetectSettings = field(default_factory=MealDetectSettings)
    recent: list[tuple[float, float]] = field(default_factory=list)
    flagged: int = 0
    last_meal_min: float = -math.inf

    def observe(self, time_min: float, reading_mg_dl: float) -> float | None:
        s = self.settings
        self.recent = [r for r in self.recent if r[0] >= time_min - s.size_window_min] + [(time_min, reading_mg_dl)]
        trend = glucose_trend_mg_dl_per_min([t for t, _ in self.recent], [v for _, v in self.recent])
        self.flagged = self.flagged + 1 if trend is not None and trend >= s.rise_mg_dl_per_min else 0
        if self.flagged < s.readings or time_min - self.last_meal_min < s.refractory_min:
            return None
        self.last_meal_min = time_min
        rise = reading_mg_dl - min(v for _, v in self.recent)
        return min(max(s.grams_per_mg_dl * rise, s.min_carbs_g), s.max_carbs_g)
