"""What a live forecaster learns online about its own errors, from the readings that arrive later.

Two corrections, each per patient and per horizon, each decided only from forecasts whose target time has
passed (never from the future):

* **Fall-back to the better forecaster, as a blend.** The forecast shown at horizon ``h`` is
  ``w twin + (1 - w) persistence`` (persistence: the last reading), ``w`` in [0, 1] the weight that minimises
  the exponentially weighted mean squared error of the blend against the readings that arrived ``h`` minutes
  after the earlier forecasts (forgetting ``forget_per_score``: about 12 h of 5-min readings):
  ``w = E[(twin - last)(reading - last)] / E[(twin - last)^2]``, clipped (Bates & Granger 1969, Oper Res Q
  20(4):451-468, for two forecasts one of which is the last value). ``w = 1`` is the twin alone, ``w = 0`` the
  fall-back to persistence; until ``min_scored`` scores the twin is shown alone. Why: the twin can be wrong for
  a patient for long stretches (a model that does not fit, unannounced meals), a forecaster worse than the
  last reading should not be shown, and which one is better is a per-patient, per-horizon fact that only the
  patient's own past errors can tell. Because the blend with the least squared error over the past includes
  ``w = 0``, it is not worse than persistence on the past; on the future it is as good as that past is a guide.
  A blend estimated to cut persistence's mean squared error by less than ``min_gain`` (15 %) is not worth its
  estimation noise: persistence alone is shown. ``forget_per_score`` and ``min_gain`` were chosen on the
  TRAINING virtual patients, streamed with their records and without any (forgetting 1/144, 1/288, 1/576;
  gain 0-20 %): the smallest worst per-patient RMSE ratio to persistence at 30 and 60 min (1.009).
* **Interval calibration (adaptive conformal inference**, Gibbs & Candès 2021, NeurIPS 34:1660-1672, in
  its scale form): each nominal level has a log scale on the interval's half-widths around the forecast;
  it moves by ``gamma (miss - (1 - nominal))`` at every scored forecast (``miss`` 1 or 0), so over time the miss rate of the intervals shown tends to ``1 - nominal`` whatever the model
  gets wrong (the ensemble's spread is the shape, the patient's record the size).

Readings may come at any spacing: a forecast is scored against the first reading within ``tolerance_min``
of its target time, and dropped unscored when the data skip past it (a sensor gap).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medtwin.physiology.errors import PhysiologyInputError

Array = NDArray[np.float64]
LEVELS: tuple[float, float] = (0.80, 0.95)


@dataclass(frozen=True)
class SkillSettings:
    forget_per_score: float = 1.0 / 144  # weight of the newest squared error (about 12 h of 5-min scores)
    min_scored: int = 12  # scores before the fall-back may switch (an hour of 5-min readings)
    min_gain: float = 0.15  # the blend must cut persistence's squared error by this share, else persistence
    gamma: float = 0.03  # ACI step on the log scale per scored forecast
    tolerance_min: float = 2.5  # a reading this close to the target time scores the forecast
    max_log_scale: float = math.log(20.0)

    def __post_init__(self) -> None:
        if not 0 < self.forget_per_score <= 1:
            raise PhysiologyInputError("forget_per_score", "must be in (0, 1]")
        if not (self.gamma >= 0 and self.tolerance_min > 0 and self.min_scored >= 0):
            raise PhysiologyInputError("gamma", "gamma >= 0, tolerance_min > 0 and min_scored >= 0 needed")


@dataclass(frozen=True)
class Shown:
    """The forecast as shown after the corrections, at each horizon (mg/dL)."""

    mean_mg_dl: Array
    lower80_mg_dl: Array
    upper80_mg_dl: Array
    lower95_mg_dl: Array
    upper95_mg_dl: Array
    weight: Array  # the twin's weight in the blend per horizon (1: the twin alone, 0: persistence)


@dataclass
class ForecastSkill:
    """One patient's online record (see module); JSON round-trip with :meth:`to_dict`."""

    horizons_min: tuple[int, ...]
    settings: SkillSettings = field(default_factory=SkillSettings)
    log_scale: Array = field(default_factory=lambda: np.zeros(0))  # (2, H): per level of LEVELS
    mse_twin: Array = field(default_factory=lambda: np.zeros(0))  # (H,) mg/dL^2
    mse_persistence: Array = field(default_factory=lambda: np.zeros(0))
    cross: Array = field(default_factory=lambda: np.zeros(0))  # (H,) E[(twin - last)(reading - last)]
    mse_twin_minus_last: Array = field(default_factory=lambda: np.zeros(0))  # (H,) E[(twin - last)^2]
    n_scored: Array = field(default_factory=lambda: np.zeros(0))
    misses: Array = field(default_factory=lambda: np.zeros(0))  # (2, H) count of scored misses
    #: issued forecasts awaiting their readings: (issued_min, last reading, twin mean (H), shown (5, H))
    pending: list[tuple[float, float, Array, Array]] = field(default_factory=list)

    def __post_init__(self) -> None:
        h = len(self.horizons_min)
        if not h or list(self.horizons_min) != sorted(set(self.horizons_min)) or self.horizons_min[0] <= 0:
            raise PhysiologyInputError("horizons_min", "must be increasing positive minutes")
        for name, shape in (("log_scale", (2, h)), ("misses", (2, h)), ("mse_twin", (h,)),
                            ("mse_persistence", (h,)), ("cross", (h,)), ("mse_twin_minus_last", (h,)),
                            ("n_scored", (h,))):
            value = np.asarray(getattr(self, name), dtype=float)
            setattr(self, name, np.zeros(shape) if value.size == 0 else value.reshape(shape))

    def weight(self) -> Array:
        """(H,) the twin's weight in the blend shown (module doc)."""
        learnt = self.n_scored >= self.settings.min_scored
        spread = self.mse_twin_minus_last
        w = np.clip(np.divide(self.cross, spread, out=np.ones_like(spread), where=spread > 0), 0.0, 1.0)
        gain = 2 * w * self.cross - w * w * spread  # cut in mean squared error below persistence's
        w = np.where(gain >= self.settings.min_gain * self.mse_persistence, w, 0.0)
        return np.where(learnt, w, 1.0)

    def show(self, issued_min: float, last_reading_mg_dl: float, mean: Array, lower80: Array, upper80: Array,
             lower95: Array, upper95: Array) -> Shown:
        """Correct a twin forecast (arrays per horizon) and remember it for scoring; returns what to show."""
        mean = np.asarray(mean, dtype=float)
        known = math.isfinite(last_reading_mg_dl)  # a filter saved before readings were kept has none
        w = self.weight() if known else np.ones(len(self.horizons_min))
        centre = w * mean + (1 - w) * (last_reading_mg_dl if known else 0.0)
        scale = np.exp(self.log_scale)
        lo80 = centre - scale[0] * (mean - np.asarray(lower80, dtype=float))
        hi80 = centre + scale[0] * (np.asarray(upper80, dtype=float) - mean)
        lo95 = centre - scale[1] * (mean - np.asarray(lower95, dtype=float))
        hi95 = centre + scale[1] * (np.asarray(upper95, dtype=float) - mean)
        lo95, hi95 = np.minimum(lo95, lo80), np.maximum(hi95, hi80)  # nested whatever the scales
        shown = Shown(centre, lo80, hi80, lo95, hi95, w)
        self.pending.append((float(issued_min), float(last_reading_mg_dl), mean.copy(),
                             np.stack([centre, lo80, hi80, lo95, hi95])))
        return shown

    def observe(self, time_min: float, reading_mg_dl: float) -> int:
        """Score every pending forecast whose target time this reading answers; returns how many."""
        h = np.asarray(self.horizons_min, dtype=float)
        tol = self.settings.tolerance_min
        scored = 0
        keep: list[tuple[float, float, Array, Array]] = []
        for issued, last, twin_mean, shown in self.pending:
            target = issued + h
            due = np.abs(target - time_min) <= tol
            if due.any():
                self._score(due, reading_mg_dl, last, twin_mean, shown)
                scored += int(due.sum())
            if np.any(target > time_min + tol):  # horizons still to come (the rest are scored or skipped)
                keep.append((issued, last, twin_mean, np.where((target > time_min + tol)[None, :], shown,
                                                                np.nan)))
        self.pending = keep
        return scored

    def _score(self, due: NDArray[np.bool_], y: float, last: float, twin_mean: Array, shown: Array) -> None:
        ok = due & ~np.isnan(shown[0])
        if not ok.any():
            return
        s = self.settings
        if math.isfinite(last):  # the blend's statistics need the last reading; the intervals do not
            lam = np.where(self.n_scored[ok] == 0, 1.0, s.forget_per_score)
            self.mse_twin[ok] += lam * ((twin_mean[ok] - y) ** 2 - self.mse_twin[ok])
            self.mse_persistence[ok] += lam * ((last - y) ** 2 - self.mse_persistence[ok])
            self.cross[ok] += lam * ((twin_mean[ok] - last) * (y - last) - self.cross[ok])
            self.mse_twin_minus_last[ok] += lam * ((twin_mean[ok] - last) ** 2 - self.mse_twin_minus_last[ok])
            self.n_scored[ok] += 1
        for k, nominal in enumerate(LEVELS):
            miss = (y < shown[1 + 2 * k, ok]) | (y > shown[2 + 2 * k, ok])
            self.misses[k, ok] += miss
            self.log_scale[k, ok] = np.clip(self.log_scale[k, ok] + s.gamma * (miss - (1 - nominal)),
                                            -s.max_log_scale, s.max_log_scale)

    def to_dict(self) -> dict[str, Any]:
        return {"format": 1, "horizons_min": list(self.horizons_min), "log_scale": self.log_scale.tolist(),
                "mse_twin": self.mse_twin.tolist(), "mse_persistence": self.mse_persistence.tolist(),
                "cross": self.cross.tolist(), "spread": self.mse_twin_minus_last.tolist(),
                "n_scored": self.n_scored.tolist(), "misses": self.misses.tolist(),
                "pending": [[i, None if math.isnan(r) else r, m.tolist(),
                             [[None if math.isnan(v) else v for v in row] for row in s.tolist()]]
                            for i, r, m, s in self.pending]}  # JSON has no NaN: None, read back as NaN

    @classmethod
    def from_dict(cls, data: dict[str, Any], settings: SkillSettings | None = None) -> ForecastSkill:
        if data.get("format") != 1:
            raise PhysiologyInputError("skill", "stored forecast skill has an unknown format")
        pending = [(float(i), math.nan if r is None else float(r), np.asarray(m, dtype=float),
                    np.asarray(s, dtype=float))
                   for i, r, m, s in data["pending"]]
        arrays = {name: np.asarray(data[key], dtype=float) for name, key in (
            ("log_scale", "log_scale"), ("mse_twin", "mse_twin"), ("mse_persistence", "mse_persistence"),
            ("cross", "cross"), ("mse_twin_minus_last", "spread"), ("n_scored", "n_scored"), ("misses", "misses"))}
        return cls(tuple(int(h) for h in data["horizons_min"]), settings or SkillSettings(), pending=pending,
                   **arrays)


def new_skills(n: int, horizons_min: Sequence[int], settings: SkillSettings | None = None) -> list[ForecastSkill]:
    return [ForecastSkill(tuple(int(h) for h in horizons_min), settings or SkillSettings()) for _ in range(n)]
