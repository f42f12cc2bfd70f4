"""RECIST 1.1 response category of a target lesion (or a sum of diameters), from longest diameters.

Eisenhauer EA et al., New response evaluation criteria in solid tumours: revised RECIST guideline (version
1.1), Eur J Cancer 2009;45:228-247: CR disappearance; PR a decrease of >= 30 % from baseline; PD an
increase of >= 20 % from the nadir and >= 5 mm absolute; SD otherwise.
"""

from __future__ import annotations

import math

from medtwin.oncology.measurements import ELLIPSOID

PR_DECREASE = 0.30
PD_INCREASE = 0.20
PD_ABSOLUTE_MM = 5.0
CR_BELOW_MM = 1.0  # a forecast diameter below this counts as disappeared


def diameter_mm(volume_mm3: float) -> float:
    return float((max(volume_mm3, 0.0) / ELLIPSOID) ** (1.0 / 3.0))


def category(baseline_mm: float, nadir_mm: float, current_mm: float) -> str:
    """``CR``, ``PR``, ``SD`` or ``PD``; ``not evaluable`` without a positive baseline."""
    if not (baseline_mm > 0 and math.isfinite(current_mm)):
        return "not evaluable"
    if current_mm < CR_BELOW_MM:
        return "CR"
    if current_mm - nadir_mm >= max(PD_INCREASE * nadir_mm, PD_ABSOLUTE_MM):
        return "PD"
    if current_mm <= (1.0 - PR_DECREASE) * baseline_mm:
        return "PR"
    return "SD"
