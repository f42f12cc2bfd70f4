"""Glucose thresholds of the international consensus, in mg/dL.

Battelino T, Danne T, Bergenstal RM, et al. Clinical targets for continuous glucose monitoring data
interpretation: recommendations from the international consensus on time in range. Diabetes Care
2019;42(8):1593-1603: level 1 hypoglycaemia < 70 mg/dL, level 2 < 54 mg/dL, level 1 hyperglycaemia
> 180 mg/dL, level 2 > 250 mg/dL; the target range is 70-180 mg/dL. The same levels define episodes
(:mod:`medtwin.vocab.episodes`, Battelino et al. 2023).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

__all__ = ["GLUCOSE_LEVELS", "GLUCOSE_LEVEL_BY_NAME", "HYPER_L1", "HYPER_L2", "HYPO_L1", "HYPO_L2",
           "THRESHOLDS_SOURCE", "GlucoseLevel", "glucose_thresholds"]

HYPO_L1: Final = 70.0
HYPO_L2: Final = 54.0
HYPER_L1: Final = 180.0
HYPER_L2: Final = 250.0
THRESHOLDS_SOURCE: Final = ("Battelino T, et al. Clinical targets for continuous glucose monitoring data "
                            "interpretation: recommendations from the international consensus on time in range. "
                            "Diabetes Care 2019;42(8):1593-1603")


@dataclass(frozen=True)
class GlucoseLevel:
    """A consensus glucose level: beyond it is ``value < threshold`` (below) or ``value > threshold``."""

    name: str  # hypo-l1, hypo-l2, hyper-l1, hyper-l2 (also the alert rule of its episodes)
    threshold_mg_dl: float
    below: bool  # True: hypoglycaemia
    label: str

    def beyond(self, value: float) -> bool:
        return value < self.threshold_mg_dl if self.below else value > self.threshold_mg_dl

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "threshold_mg_dl": self.threshold_mg_dl,
                "direction": "below" if self.below else "above", "label": self.label}


#: most severe first within each direction
GLUCOSE_LEVELS: Final = (
    GlucoseLevel("hypo-l2", HYPO_L2, True, "level 2 hypoglycaemia (< 54 mg/dL)"),
    GlucoseLevel("hypo-l1", HYPO_L1, True, "level 1 hypoglycaemia (< 70 mg/dL)"),
    GlucoseLevel("hyper-l2", HYPER_L2, False, "level 2 hyperglycaemia (> 250 mg/dL)"),
    GlucoseLevel("hyper-l1", HYPER_L1, False, "level 1 hyperglycaemia (> 180 mg/dL)"),
)
GLUCOSE_LEVEL_BY_NAME: Final = {level.name: level for level in GLUCOSE_LEVELS}


def glucose_thresholds() -> dict[str, Any]:
    """The thresholds as JSON (the vocabulary endpoint's ``glucose``)."""
    return {"unit": "mg/dL", "target_range_mg_dl": [HYPO_L1, HYPER_L1],
            "levels": [level.as_json() for level in GLUCOSE_LEVELS], "source": THRESHOLDS_SOURCE}
