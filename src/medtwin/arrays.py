"""Array type aliases shared by the numeric packages: one definition instead of a copy in every module."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

#: float arrays (states, parameters, times, concentrations); annotations only, no run-time check
Array = NDArray[np.float64]
