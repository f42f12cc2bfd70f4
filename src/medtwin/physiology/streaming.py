"""Stream CGM series through live glucose filters, forecast as a live twin would, and score the forecasts.

One harness for virtual patients (regular 5-min grid, known meals and insulin, the true glucose known) and
real traces (any spacing, gaps, no meal or insulin records): at each person's ``k``-th reading every
filter still running folds in its own reading (one batched :func:`~.assimilation.assimilate`), the
person's :class:`~.online_skill.ForecastSkill` scores the earlier forecasts this reading answers, and from
``forecast_from_min`` on every ``every``-th reading a forecast is issued (one batched
:func:`~.forecast.forecast`) and corrected by the skill (fall-back, calibrated intervals). Nothing looks
ahead: a forecast is shown before any later reading is read.

:func:`score` compares the forecasts with the reading that arrived ``h`` minutes later (within
``tolerance_min``; forecasts whose target falls in a sensor gap are not scored) and, where known, with the
true glucose: RMSE of the twin alone, of what is shown (twin or its fall-back), of persistence and of linear
extrapolation, and the coverage of the intervals shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from medtwin.arrays import Array
from medtwin.physiology.assimilation import FilterSettings, GlucoseFilter, add_input, assimilate
from medtwin.physiology.errors import PhysiologyInputError
from medtwin.physiology.forecast import forecast, linear_forecast
from medtwin.physiology.meal_detect import MealDetector, MealDetectSettings
from medtwin.physiology.online_skill import ForecastSkill, SkillSettings, new_skills


@dataclass(frozen=True)
class Series:
    """One person's data: readings (mg/dL) at strictly increasing times (min), the inputs the twin is told
    of (``(time_min, "carbs" | "bolus" | "basal", value)``), and the true glucose where it is known."""

    name: str
    times_min: Array
    cgm_mg_dl: Array
    events: list[tuple[float, str, float]] = field(default_factory=list)
    truth_mg_dl: Array | None = None

    def __post_init__(self) -> None:
        t, y = np.asarray(self.times_min, dtype=float), np.asarray(self.cgm_mg_dl, dtype=float)
        if t.ndim != 1 or t.shape != y.shape or t.size < 2:
            raise PhysiologyInputError("cgm_mg_dl", f"{self.name}: needs one reading per time, at least two")
        if np.any(np.diff(t) <= 0) or not np.all(np.isfinite(y)):
            raise PhysiologyInputError("times_min", f"{self.name}: strictly increasing times, finite readings")


@dataclass(frozen=True)
class Issued:
    """The forecasts issued for one person: at reading ``index`` (N,), per horizon (N, H)."""

    index: NDArray[np.int64]
    twin_mean_mg_dl: Array  # the twin's expected reading
    twin_glucose_mg_dl: Array  # the twin's expected interstitial glucose
    raw_bands_mg_dl: Array  # (4, N, H): the twin's own 80 % and 95 % intervals (lo80, hi80, lo95, hi95)
    shown_mg_dl: Array  # (5, N, H): mean, lo80, hi80, lo95, hi95 as shown (after the skill's corrections)
    weight: Array  # (N, H) the twin's weight in the forecast shown (0: persistence alone)
    now_mg_dl: Array  # (2, N): the twin's glucose estimate and expected reading at the issue time


@dataclass
class _Buffer:
    index: list[int] = field(default_factory=list)
    rows: list[tuple[Array, ...]] = field(default_factory=list)

    def issued(self, h: int) -> Issued:
        if not self.rows:
            empty = np.zeros((0, h))
            return Issued(np.zeros(0, dtype=np.int64), empty, empty, np.zeros((4, 0, h)), np.zeros((5, 0, h)),
                          np.zeros((0, h)), np.zeros((2, 0)))
        cols = [np.stack(c, axis=-2) for c in zip(*self.rows, strict=True)]
        return Issued(np.asarray(self.index, dtype=np.int64), cols[0], cols[1], cols[2], cols[3],
                      cols[4], cols[5].T)


def stream(filters: Sequence[GlucoseFilter], series: Sequence[Series], settings: FilterSettings,
           horizons_min: Sequence[int], *, skill: SkillSettings | None = None, forecast_from_min: float = 60.0,
           every: int = 1, meals: MealDetectSettings | None = None) -> tuple[list[Issued], list[ForecastSkill]]:
    """Run each series through its filter (started at its first reading) and forecast (module doc); with
    ``meals``, meals detected from each person's readings (:mod:`.meal_detect`) are told to their filter."""
    if len(filters) != len(series):
        raise PhysiologyInputError("series", "needs one filter per series")
    horizons = tuple(int(h) for h in horizons_min)
    skills = new_skills(len(series), horizons, skill)
    detectors = [MealDetector(meals) for _ in series] if meals is not None else []
    buffers = [_Buffer() for _ in series]
    cursors = [0] * len(series)
    for k in range(1, max(s.times_min.size for s in series)):
        active = [i for i, s in enumerate(series) if k < s.times_min.size]
        for i in active:
            cursors[i] = _tell_inputs(filters[i], series[i], cursors[i], float(series[i].times_min[k]), settings)
        times = np.array([series[i].times_min[k] for i in active])
        readings = np.array([series[i].cgm_mg_dl[k] for i in active])
        assimilate([filters[i] for i in active], times, readings, settings)
        for i, t, y in zip(active, times, readings, strict=True):
            skills[i].observe(float(t), float(y))
            grams = detectors[i].observe(float(t), float(y)) if detectors else None
            if grams is not None:
                _tell_meal(filters[i], float(t), grams, detectors[i].settings, settings)
        due = [i for i, t in zip(active, times, strict=True) if t >= forecast_from_min and k % every == 0]
        if due:
            _issue([filters[i] for i in due], [skills[i] for i in due], [buffers[i] for i in due], k, settings,
                   horizons)
    return [b.issued(len(horizons)) for b in buffers], skills


def _tell_meal(filt: GlucoseFilter, time_min: float, grams: float, meals: MealDetectSettings,
               settings: FilterSettings) -> None:
    """A detected meal (and the bolus that met it, when the settings give a carb ratio) told to the filter."""
    add_input(filt, "carbs", time_min, grams, settings)
    if meals.carb_ratio_g_per_unit is not None:
        add_input(filt, "bolus", time_min, grams / meals.carb_ratio_g_per_unit, settings)


def _tell_inputs(filt: GlucoseFilter, s: Series, cursor: int, until_min: float, settings: FilterSettings) -> int:
    while cursor < len(s.events) and s.events[cursor][0] <= until_min:
        when, kind, value = s.events[cursor]
        add_input(filt, kind, when, value, settings)
        cursor += 1
    return cursor


def _issue(filters: list[GlucoseFilter], skills: list[ForecastSkill], buffers: list[_Buffer], k: int,
           settings: FilterSettings, horizons: tuple[int, ...]) -> None:
    result = forecast(filters, settings, horizons)
    for i, (f, sk, buf) in enumerate(zip(filters, skills, buffers, strict=True)):
        shown = sk.show(f.time_min, f.last_reading_mg_dl, result.mean_mg_dl[i], result.lower80_mg_dl[i],
                        result.upper80_mg_dl[i], result.lower95_mg_dl[i], result.upper95_mg_dl[i])
        buf.index.append(k)
        buf.rows.append((result.mean_mg_dl[i], result.glucose_mean_mg_dl[i],
                         np.stack([result.lower80_mg_dl[i], result.upper80_mg_dl[i], result.lower95_mg_dl[i],
                                   result.upper95_mg_dl[i]]),
                         np.stack([shown.mean_mg_dl, shown.lower80_mg_dl, shown.upper80_mg_dl,
                                   shown.lower95_mg_dl, shown.upper95_mg_dl]),
                         shown.weight,
                         np.array([result.glucose_now_mg_dl[i], result.cgm_now_mg_dl[i]])))


def replay(s: Series, issued: Issued, horizons_min: Sequence[int], skill: SkillSettings | None = None) -> Issued:
    """The twin forecasts of a stream corrected afresh by a new :class:`~.online_skill.ForecastSkill` with
    ``skill``: the corrections never feed back into the filter, so this is what :func:`stream` would have
    shown (the same observe-then-show order at each reading); for choosing the skill's settings without
    re-running the filters."""
    sk = ForecastSkill(tuple(int(h) for h in horizons_min), skill or SkillSettings())
    row = {int(k): r for r, k in enumerate(issued.index.tolist())}
    shown, weight = np.empty_like(issued.shown_mg_dl), np.empty_like(issued.weight)
    for k in range(1, s.times_min.size):
        t, y = float(s.times_min[k]), float(s.cgm_mg_dl[k])
        sk.observe(t, y)
        r = row.get(k)
        if r is not None:
            raw = issued.raw_bands_mg_dl[:, r]
            out = sk.show(t, y, issued.twin_mean_mg_dl[r], raw[0], raw[1], raw[2], raw[3])
            shown[:, r] = np.stack([out.mean_mg_dl, out.lower80_mg_dl, out.upper80_mg_dl, out.lower95_mg_dl,
                                    out.upper95_mg_dl])
            weight[r] = out.weight
    return replace(issued, shown_mg_dl=shown, weight=weight)


# --- scoring --------------------------------------------------------------------------------------------


def targets(times_min: Array, issued_at: Array, horizon_min: float, tolerance_min: float) -> NDArray[np.int64]:
    """Index of the reading that answers a forecast issued at ``issued_at`` for ``horizon_min`` later: the
    first within ``tolerance_min`` of the target time; -1 where there is none (a gap)."""
    target = np.asarray(issued_at, dtype=float) + horizon_min
    j = np.searchsorted(times_min, target - tolerance_min, side="left")
    inside = j < times_min.size
    j_safe = np.minimum(j, times_min.size - 1)
    ok = inside & (np.abs(times_min[j_safe] - target) <= tolerance_min)
    return np.where(ok, j_safe, -1).astype(np.int64)


METHODS: tuple[str, ...] = ("twin", "shown", "persistence", "linear")


@dataclass(frozen=True)
class PersonScores:
    """One person's RMSE (mg/dL) ``rmse[against][method][h]`` (against: "cgm", and "true" where known),
    coverage of the intervals shown and of the twin's own, and the mean weight of persistence in the blend."""

    name: str
    n_scored: dict[int, int]
    rmse: dict[str, dict[str, dict[int, float]]]
    coverage80: dict[int, float]
    coverage95: dict[int, float]
    coverage80_twin: dict[int, float]
    coverage95_twin: dict[int, float]
    fallback_share: dict[int, float]
    squared: dict[str, dict[str, dict[int, Array]]] = field(repr=False, default_factory=dict)
    inside: dict[str, dict[int, NDArray[np.bool_]]] = field(repr=False, default_factory=dict)


def score(s: Series, issued: Issued, horizons_min: Sequence[int], all_horizons: Sequence[int], *,
          from_min: float = 0.0, tolerance_min: float = 2.5, window_min: float = 20.0) -> PersonScores:
    """Score the forecasts issued from ``from_min`` on at ``horizons_min`` (a subset of ``all_horizons``,
    the horizons the forecasts were issued at)."""
    t, y = s.times_min, s.cgm_mg_dl
    keep = t[issued.index] >= from_min
    idx = issued.index[keep]
    rmse: dict[str, dict[str, dict[int, float]]] = {"cgm": {m: {} for m in METHODS}}
    squared: dict[str, dict[str, dict[int, Array]]] = {"cgm": {m: {} for m in METHODS}}
    if s.truth_mg_dl is not None:
        rmse["true"] = {m: {} for m in METHODS}
        squared["true"] = {m: {} for m in METHODS}
    n_scored: dict[int, int] = {}
    cover: dict[str, dict[int, NDArray[np.bool_]]] = {"80": {}, "95": {}, "80_twin": {}, "95_twin": {}}
    share: dict[int, float] = {}
    for h in horizons_min:
        col = list(all_horizons).index(h)
        j = targets(t, t[idx], float(h), tolerance_min)
        ok = j >= 0
        rows, future = np.flatnonzero(keep)[ok], j[ok]
        n_scored[h] = int(ok.sum())
        shown = issued.shown_mg_dl[:, rows, col]
        twin = issued.twin_mean_mg_dl[rows, col]
        w = issued.weight[rows, col]
        predictions = {"twin": twin, "shown": shown[0], "persistence": y[idx[ok]],
                       "linear": linear_forecast(t, y, float(h), window_min)[idx[ok]]}
        _squared_errors(squared["cgm"], predictions, y[future], h)
        if s.truth_mg_dl is not None:
            glucose = issued.twin_glucose_mg_dl[rows, col]
            on_truth = {**predictions, "twin": glucose, "shown": w * glucose + (1 - w) * y[idx[ok]]}
            _squared_errors(squared["true"], on_truth, s.truth_mg_dl[future], h)
        raw = issued.raw_bands_mg_dl[:, rows, col]
        cover["80"][h] = (y[future] >= shown[1]) & (y[future] <= shown[2])
        cover["95"][h] = (y[future] >= shown[3]) & (y[future] <= shown[4])
        cover["80_twin"][h] = (y[future] >= raw[0]) & (y[future] <= raw[1])
        cover["95_twin"][h] = (y[future] >= raw[2]) & (y[future] <= raw[3])
        share[h] = float(np.mean(1 - w)) if w.size else 0.0
    for against, table in squared.items():
        for method, by_h in table.items():
            rmse[against][method] = {h: float(np.sqrt(np.mean(v))) if v.size else float("nan")
                                     for h, v in by_h.items()}
    mean = {key: {h: float(np.mean(v)) if v.size else float("nan") for h, v in by_h.items()}
            for key, by_h in cover.items()}
    return PersonScores(s.name, n_scored, rmse, mean["80"], mean["95"], mean["80_twin"], mean["95_twin"], share,
                        squared, cover)


def _squared_errors(table: dict[str, dict[int, Array]], predictions: dict[str, Array], future: Array,
                    h: int) -> None:
    for method, values in predictions.items():
        table[method][h] = (values - future) ** 2


def pooled(people: Sequence[PersonScores], against: str, method: str, h: int) -> float:
    """RMSE over every scored forecast of ``people``."""
    values = np.concatenate([p.squared[against][method][h] for p in people])
    return float(np.sqrt(np.mean(values))) if values.size else float("nan")


def pooled_coverage(people: Sequence[PersonScores], key: str, h: int) -> float:
    """Share of scored forecasts inside their interval (``key``: "80", "95", "80_twin", "95_twin")."""
    values = np.concatenate([p.inside[key][h] for p in people])
    return float(np.mean(values)) if values.size else float("nan")
