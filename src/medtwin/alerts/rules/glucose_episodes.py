"""Consensus glucose episodes as alerts: one alert kind per level (hypo-l2, hypo-l1, hyper-l2, hyper-l1).

An episode of a level (:mod:`medtwin.vocab.episodes`, international consensus 2023) opens an alert keyed by
its start; the alert is updated while the episode lasts and its condition clears when the episode ends, at
the data time it ended (the first reading of the 15-minute run back within the threshold, the vocabulary's
``ended_at``; not the newer reading that completed that run). The streaming tracker
(:class:`medtwin.alerts.glucose.EpisodeTracker`) handles gaps and late readings.

**Every episode is seen, however the readings are grouped into passes.** A pass may hold many readings (a
batched upload, or readings the engine's worker groups together), so an episode may begin and end within
one pass, and several episodes of one level may follow each other in it. The rule folds the vocabulary's
state machine (:func:`~medtwin.vocab.episodes.step`, the one definition) over the pass's readings from the
tracker's checkpoint and lists every episode on the way, then says, per episode and in time order, that it
holds (opens the alert) and, if it has ended, when (``Verdict.cleared_at``: its end; the engine opens and
clears that alert at once, leaving a later episode's held alert alone, which matters when late readings
reveal an earlier episode). So an episode that began and ended within one pass opens its alert, and a high
or critical one then stays open, marked cleared, for a person, as it would have when streamed.
Two episodes of one level are two alerts (each keyed by its own start, as streaming makes them and as the
CGM report counts them), not one alert counted twice. Episodes of the pass's fold that had already ended
before this pass (refolded because they lie in the reorder window) are not reported again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from medtwin.alerts.glucose import DEFAULT_REORDER_WINDOW, LEVELS, EpisodeTracker
from medtwin.alerts.repository import AlertCandidate
from medtwin.alerts.rule import AlertKind, RuleInfo, RuleInput, Verdict
from medtwin.vocab import GLUCOSE
from medtwin.vocab.episodes import DEFAULT_MAX_GAP, DEFAULT_PERIOD, EPISODE_SOURCE, EpisodeState, step
from medtwin.vocab.glucose import GlucoseLevel

#: alert severity of each level's episode
SEVERITY: Final = {"hypo-l2": "critical", "hypo-l1": "high", "hyper-l2": "medium", "hyper-l1": "low"}
_TITLES: Final = {"hypo-l2": "Hypoglycaemia level 2", "hypo-l1": "Hypoglycaemia level 1",
                  "hyper-l2": "Hyperglycaemia level 2", "hyper-l1": "Hyperglycaemia level 1"}

Reading = tuple[datetime, float]


@dataclass
class SeenEpisode:
    """One episode of a level as a fold of :func:`~medtwin.vocab.episodes.step` shows it."""

    start: datetime  # first reading of the run that began it (the alert's key and ``opened_at``)
    end: datetime | None  # first reading of the back-within run that ended it; None: still going
    extreme: float  # nadir (hypo) / peak (hyper)
    last_time: datetime  # newest reading folded while it lasted
    last_value: float
    last_beyond_time: datetime  # newest reading beyond the threshold (``last_seen_at`` once it has ended)
    last_beyond_value: float


def fold_episodes(level: GlucoseLevel, state: EpisodeState, readings: Sequence[Reading], *,
                  period: timedelta = DEFAULT_PERIOD, max_gap: timedelta = DEFAULT_MAX_GAP,
                  mark: int | None = None) -> tuple[list[SeenEpisode], set[datetime]]:
    """Fold ``readings`` (time order) into ``state`` by :func:`step`: every episode going on or begun on the
    way, in time order, and the starts of those that had ended after the first ``mark`` readings."""
    found: list[SeenEpisode] = []
    ended_at_mark: set[datetime] = set()
    if state.in_episode and state.episode_start is not None and state.last_time is not None:
        value = state.last_value if state.last_value is not None else 0.0
        found.append(SeenEpisode(state.episode_start, None, state.extreme if state.extreme is not None else value,
                                 state.last_time, value, state.last_time, value))
    for i, (time, value) in enumerate(readings):
        if i == mark:
            ended_at_mark = {e.start for e in found if e.end is not None}
        was = state.in_episode
        state = step(level, state, time, value, period=period, max_gap=max_gap)
        if state.in_episode:
            if not was:
                found.append(SeenEpisode(state.episode_start or time, None, value, time, value, time, value))
            seen = found[-1]
            seen.last_time, seen.last_value = time, value
            if level.beyond(value):
                seen.last_beyond_time, seen.last_beyond_value = time, value
                seen.extreme = state.extreme if state.extreme is not None else value
        elif was and found:
            found[-1].end = state.ended_at
    if mark is not None and mark >= len(readings):
        ended_at_mark = {e.start for e in found if e.end is not None}
    return found, ended_at_mark


@dataclass
class GlucoseEpisodesRule:
    period: timedelta = DEFAULT_PERIOD
    max_gap: timedelta = DEFAULT_MAX_GAP
    reorder_window: timedelta = DEFAULT_REORDER_WINDOW

    info = RuleInfo(
        name="glucose-episodes", label="Glucose episodes",
        description="Consensus hypo- and hyperglycaemia episodes: an episode begins after >= 15 consecutive "
                    "minutes beyond the threshold and ends after >= 15 consecutive minutes back within it.",
        alerts=tuple(AlertKind(level.name, _TITLES[level.name],
                               f"An episode of {level.label}: >= 15 consecutive minutes beyond "
                               f"{level.threshold_mg_dl:.0f} mg/dL (international consensus 2023).",
                               (SEVERITY[level.name],)) for level in LEVELS),
        metrics=(GLUCOSE,), source=EPISODE_SOURCE, legacy_kinds=("alert-state",))

    def new_state(self) -> EpisodeTracker:
        return EpisodeTracker(period=self.period, max_gap=self.max_gap, reorder_window=self.reorder_window)

    def state_to_json(self, state: EpisodeTracker) -> dict[str, Any]:
        return state.to_json()

    def state_from_json(self, raw: dict[str, Any]) -> EpisodeTracker:
        return EpisodeTracker.from_json(raw, period=self.period, max_gap=self.max_gap,
                                        reorder_window=self.reorder_window)

    def legacy_state(self, payloads: dict[str, dict[str, Any]]) -> EpisodeTracker | None:
        """Before rules were plug-ins the trackers were saved under ``alert-state`` ``episodes``."""
        raw = payloads.get("alert-state", {}).get("episodes")
        return self.state_from_json(raw) if isinstance(raw, dict) else None

    def summary(self, state: EpisodeTracker) -> dict[str, Any] | None:
        return {name: s.in_episode for name, s in state.current().items()}

    def evaluate(self, data: RuleInput, state: EpisodeTracker) -> list[Verdict]:
        new = [(s.time, s.value) for s in data.samples if s.metric == GLUCOSE]
        if not new:
            return []
        checkpoint = dict(state.committed)  # before this pass: the tracker replaces, never mutates, a state
        old = list(state.pending)
        readings, mark = _merged(checkpoint, old, new)
        state.add(new)
        fresh = {t for t, _ in new}
        out: list[Verdict] = []
        for level in LEVELS:
            out += self._level(data, level, checkpoint[level.name], old, readings, mark, fresh)
        return out

    def _level(self, data: RuleInput, level: GlucoseLevel, checkpoint: EpisodeState, old: list[Reading],
               readings: list[Reading], mark: int | None, fresh: set[datetime]) -> list[Verdict]:
        """One level's verdicts, in time order: each episode that began holds (opens its alert), with
        ``cleared_at`` its end if it ended; one already reported and ended before this pass says nothing."""
        found, ended_before = fold_episodes(level, checkpoint, readings, period=self.period, max_gap=self.max_gap,
                                            mark=mark)
        if mark is None:  # late or corrected readings: what was known before needs its own fold
            ended_before = fold_episodes(level, checkpoint, old, period=self.period, max_gap=self.max_gap,
                                         mark=len(old))[1]
        held = data.held.get(level.name)
        keys = [self._key(data.patient_id, level, e.start) for e in found]
        out: list[Verdict] = []
        if held is not None and held not in keys:
            out.append(Verdict(level.name, False))  # its run was broken by a late reading: no longer an episode
        for episode, key in zip(found, keys, strict=True):
            within = [t for t, v in readings if t >= episode.start and (episode.end is None or t < episode.end)
                      and level.beyond(v)]
            count = sum(1 for t in within if t in fresh) if key == held else max(len(within), 1)
            if key != held and episode.end is not None and episode.start in ended_before:
                continue  # reported and ended before this pass
            if count:
                out.append(Verdict(level.name, True, self._candidate(data.patient_id, level, episode, key), count,
                                   cleared_at=episode.end))
            elif episode.end is not None:  # the held episode ended with no new reading beyond the threshold
                out.append(Verdict(level.name, False, cleared_at=episode.end))
        return out

    @staticmethod
    def _key(patient_id: str, level: GlucoseLevel, start: datetime) -> str:
        return f"{patient_id}:{level.name}:{start.isoformat()}"

    def _candidate(self, patient_id: str, level: GlucoseLevel, episode: SeenEpisode, key: str) -> AlertCandidate:
        start, word = episode.start, "lowest" if level.below else "highest"
        label = f"{level.label[0].upper()}{level.label[1:]}"
        details: dict[str, Any] = {
            "threshold_mg_dl": level.threshold_mg_dl, "episode_start": start.isoformat(),
            "extreme_mg_dl": episode.extreme,
            "definition": "consensus episode: >= 15 consecutive min beyond the threshold (Battelino 2023)"}
        if episode.end is None:
            time, latest = episode.last_time, episode.last_value
            minutes = (time - start + self.period).total_seconds() / 60
            message = f"{label} for {minutes:.0f} min; {word} {episode.extreme:.0f} mg/dL, latest {latest:.0f} mg/dL"
        else:
            time, latest = episode.last_beyond_time, episode.last_beyond_value
            minutes = (episode.end - start).total_seconds() / 60
            message = (f"{label} for {minutes:.0f} min, then back within {level.threshold_mg_dl:.0f} mg/dL; "
                       f"{word} {episode.extreme:.0f} mg/dL")
            details["episode_end"] = episode.end.isoformat()
        details |= {"latest_time": time.isoformat(), "latest_mg_dl": latest, "duration_min": round(minutes, 1)}
        return AlertCandidate(patient_id, level.name, SEVERITY[level.name], key, time, message,
                              score=episode.extreme, details=details, began_at=start)


def _merged(checkpoint: dict[str, EpisodeState], pending: list[Reading],
            new: list[Reading]) -> tuple[list[Reading], int | None]:
    """The readings the tracker's fold covers after adding ``new``, from its checkpoint (as
    :meth:`EpisodeTracker.add` takes them: behind the checkpoint dropped, a repeated time replaces), and the
    number of them known before (None when a new reading is not after all of those: fold the old ones apart)."""
    times = [s.last_time for s in checkpoint.values() if s.last_time is not None]
    horizon = max(times) if times else None
    accepted = sorted((t, v) for t, v in dict(new).items() if horizon is None or t > horizon)
    if not pending or not accepted or accepted[0][0] > pending[-1][0]:
        return pending + accepted, len(pending)
    return sorted((dict(pending) | dict(accepted)).items()), None
