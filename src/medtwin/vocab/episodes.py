"""THE glucose episode definition, implemented once, for streams (alerts) and for series (CGM reports).

International consensus 2023 (Battelino T, Alexander CM, Amiel SA, et al. Continuous glucose monitoring and
metrics for clinical trials: an international consensus statement. Lancet Diabetes Endocrinol
2023;11(1):42-57): an episode of a level *begins* after readings stay beyond the level's threshold
(:mod:`medtwin.vocab.glucose`) for at least 15 consecutive minutes, and *ends* after they stay back within
it (>= 70 for level 1 hypoglycaemia, >= 54 for level 2, <= 180 and <= 250 for hyperglycaemia) for at
least 15 consecutive minutes. A shorter excursion back within the threshold does not end an episode and a
shorter excursion beyond it does not begin one. Decided here, for both uses:

* a run's duration counts each reading as covering one sample period: three 5-minute readings below 70
  are 15 minutes below 70 (``last - first + period >= 15 min``);
* missing readings (a gap longer than ``max_gap`` in a stream; an empty slot of a report's grid) break a
  run, so the run that would begin or end an episode restarts, but do not end an episode: missing data is
  not recovery.

:func:`step` is the state machine (one reading at a time, for streams). :func:`count_episodes` counts the
episodes of regularly sampled series, for many patients at once, in closed form: the state changes only at
a run of at least 15 minutes of the other kind, so the episodes are the qualifying beyond-runs that come
first or right after a qualifying within-run (the tests check it against :func:`step`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from medtwin.vocab.glucose import GlucoseLevel

__all__ = ["DEFAULT_MAX_GAP", "DEFAULT_PERIOD", "EPISODE_MIN", "EPISODE_MIN_MINUTES", "EPISODE_SOURCE",
           "Episode", "EpisodeState", "count_episodes", "episode_definition", "find_episodes", "step"]

EPISODE_MIN_MINUTES: Final = 15.0
EPISODE_MIN: Final = timedelta(minutes=EPISODE_MIN_MINUTES)
DEFAULT_PERIOD: Final = timedelta(minutes=5)  # a CGM reading every 5 minutes
DEFAULT_MAX_GAP: Final = timedelta(minutes=15)  # readings further apart are not consecutive
EPISODE_SOURCE: Final = ("Battelino T, et al. Continuous glucose monitoring and metrics for clinical trials: an "
                         "international consensus statement. Lancet Diabetes Endocrinol 2023;11(1):42-57")
_TIME_FIELDS: Final = ("episode_start", "run_start", "last_time", "ended_at")


@dataclass
class EpisodeState:
    """The state machine of one level after the readings folded in so far (JSON-serialisable)."""

    in_episode: bool = False
    episode_start: datetime | None = None  # first reading of the run that began the episode
    run_start: datetime | None = None  # current run (beyond when outside, back when inside an episode)
    last_time: datetime | None = None
    extreme: float | None = None  # nadir (hypo) / peak (hyper) of the current episode or run
    last_value: float | None = None
    ended_at: datetime | None = None  # when the last episode's back-within run began

    def to_json(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> EpisodeState:
        state = cls()
        for key, value in raw.items():
            if key in _TIME_FIELDS and value is not None:
                value = datetime.fromisoformat(value)
            setattr(state, key, value)
        return state

    def copy(self) -> EpisodeState:
        return EpisodeState(**self.__dict__)


def step(level: GlucoseLevel, state: EpisodeState, time: datetime, value: float, *,
         period: timedelta = DEFAULT_PERIOD, max_gap: timedelta = DEFAULT_MAX_GAP) -> EpisodeState:
    """Fold one reading (in time order) into ``state``; returns a new state."""
    s = state.copy()
    if s.last_time is not None and time - s.last_time > max_gap:
        s.run_start = None  # not consecutive
    beyond = level.beyond(value)
    worse = min if level.below else max
    if not s.in_episode:
        if beyond:
            if s.run_start is None:
                s.run_start, s.extreme = time, value
            else:
                s.extreme = worse(s.extreme if s.extreme is not None else value, value)
            if time - s.run_start + period >= EPISODE_MIN:
                s.in_episode, s.episode_start, s.ended_at = True, s.run_start, None
                s.run_start = None
        else:
            s.run_start, s.extreme = None, None
    elif beyond:
        s.run_start = None
        s.extreme = worse(s.extreme if s.extreme is not None else value, value)
    else:
        if s.run_start is None:
            s.run_start = time
        if time - s.run_start + period >= EPISODE_MIN:
            s.in_episode, s.ended_at = False, s.run_start
            s.run_start = None
    s.last_time, s.last_value = time, value
    return s


@dataclass(frozen=True)
class Episode:
    start: datetime  # first reading of the run that began it
    end: datetime | None  # first reading of the back-within run that ended it; None: still going
    extreme_mg_dl: float  # nadir (hypo) or peak (hyper)


def find_episodes(level: GlucoseLevel, times: list[datetime], values: list[float], *,
                  period: timedelta = DEFAULT_PERIOD, max_gap: timedelta = DEFAULT_MAX_GAP) -> list[Episode]:
    """Every episode of ``level`` in a whole series (any order), by :func:`step`."""
    found: list[Episode] = []
    state = EpisodeState()
    extreme = 0.0
    for time, value in sorted(zip(times, values, strict=True)):
        before = state
        state = step(level, state, time, value, period=period, max_gap=max_gap)
        if state.in_episode and not before.in_episode:
            found.append(Episode(state.episode_start or time, None, value))
        if state.in_episode:
            extreme = state.extreme if state.extreme is not None else value
            found[-1] = Episode(found[-1].start, None, extreme)
        elif before.in_episode:
            found[-1] = Episode(found[-1].start, state.ended_at, found[-1].extreme_mg_dl)
    return found


def count_episodes(beyond: ArrayLike, sample_period_min: float, *, present: ArrayLike | None = None,
                   min_duration_min: float = EPISODE_MIN_MINUTES) -> NDArray[np.int64]:
    """Episodes per patient of regularly sampled series: ``beyond`` (m readings, n patients) is True where a
    reading is beyond the level's threshold; ``present`` (same shape) is False for a missing reading (a 1-D
    ``beyond`` is one patient). Same answer as folding :func:`step` over the readings."""
    b = np.asarray(beyond, dtype=bool)
    if b.ndim == 1:
        b = b[:, None]
    if b.ndim != 2:
        raise ValueError("beyond: must be a (readings, patients) array")
    if not sample_period_min > 0:
        raise ValueError("sample_period_min: must be positive")
    m, n = b.shape
    if m == 0 or n == 0:
        return np.zeros(n, dtype=np.int64)
    kind = b.astype(np.int8)  # 1 beyond, 0 back within, -1 missing
    if present is not None:
        p = np.asarray(present, dtype=bool).reshape(b.shape)
        kind[~p] = -1
    rows = kind.T  # (patients, readings): runs in time order, patient after patient
    starts = np.ones(rows.shape, dtype=bool)
    starts[:, 1:] = rows[:, 1:] != rows[:, :-1]
    flat = starts.ravel()
    lengths = np.diff(np.append(np.flatnonzero(flat), flat.size))
    run_kind = rows.ravel()[flat]
    run_patient = np.flatnonzero(flat) // m
    qualifies = (lengths * sample_period_min >= min_duration_min) & (run_kind >= 0)
    kinds, patients = run_kind[qualifies], run_patient[qualifies]
    after_within = np.ones(kinds.size, dtype=bool)  # first qualifying run of a patient, or after a within-run
    after_within[1:] = (patients[1:] != patients[:-1]) | (kinds[:-1] == 0)
    onsets = (kinds == 1) & after_within
    return np.bincount(patients[onsets], minlength=n).astype(np.int64)


def episode_definition() -> dict[str, Any]:
    """The definition as JSON (the vocabulary endpoint's ``episode``)."""
    return {"begins_after_min": EPISODE_MIN_MINUTES, "ends_after_min": EPISODE_MIN_MINUTES,
            "text": "An episode begins after >= 15 consecutive minutes beyond the threshold and ends after "
                    ">= 15 consecutive minutes back within it; missing data breaks a run but does not end an "
                    "episode.", "source": EPISODE_SOURCE}
