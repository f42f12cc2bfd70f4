"""Consensus glucose episodes as alerts: one alert kind per level (hypo-l2, hypo-l1, hyper-l2, hyper-l1).

An episode of a level (:mod:`medtwin.vocab.episodes`, international consensus 2023) opens an alert keyed by
its start; the alert is updated while the episode lasts and resolved when it ends. The streaming tracker
(:class:`medtwin.alerts.glucose.EpisodeTracker`) handles gaps and late readings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from medtwin.alerts.glucose import DEFAULT_REORDER_WINDOW, LEVELS, EpisodeTracker
from medtwin.alerts.repository import AlertCandidate
from medtwin.alerts.rule import AlertKind, RuleInfo, RuleInput, Verdict
from medtwin.vocab import GLUCOSE
from medtwin.vocab.episodes import DEFAULT_MAX_GAP, DEFAULT_PERIOD, EPISODE_SOURCE, EpisodeState
from medtwin.vocab.glucose import GlucoseLevel

#: alert severity of each level's episode
SEVERITY: Final = {"hypo-l2": "critical", "hypo-l1": "high", "hyper-l2": "medium", "hyper-l1": "low"}
_TITLES: Final = {"hypo-l2": "Hypoglycaemia level 2", "hypo-l1": "Hypoglycaemia level 1",
                  "hyper-l2": "Hyperglycaemia level 2", "hyper-l1": "Hyperglycaemia level 1"}


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
        samples = [s for s in data.samples if s.metric == GLUCOSE]
        if not samples:
            return []
        earlier = list(state.pending)  # before this pass commits any of them
        current = state.add([(s.time, s.value) for s in samples])
        out: list[Verdict] = []
        for level in LEVELS:
            verdict = self._level(data, level, current[level.name], earlier, samples)
            if verdict is not None:
                out.append(verdict)
        return out

    def _level(self, data: RuleInput, level: GlucoseLevel, episode: EpisodeState, earlier: list[Any],
               samples: list[Any]) -> Verdict | None:
        pid, held = data.patient_id, data.held.get(level.name)
        if not episode.in_episode or episode.episode_start is None or episode.last_time is None:
            return Verdict(level.name, False) if held is not None else None
        start = episode.episode_start
        key = f"{pid}:{level.name}:{start.isoformat()}"
        if held != key:  # onset: every reading of the episode so far (this pass's and the pending ones)
            seen = dict(earlier) | {s.time: s.value for s in samples}
            count = sum(1 for t, v in seen.items() if t >= start and level.beyond(v))
        else:
            count = sum(1 for s in samples if s.time >= start and level.beyond(s.value))
            if count == 0:
                return None  # readings back within during recovery: nothing to add
        minutes = (episode.last_time - start + self.period).total_seconds() / 60
        extreme = episode.extreme if episode.extreme is not None else episode.last_value or 0.0
        word = "lowest" if level.below else "highest"
        message = (f"{level.label[0].upper()}{level.label[1:]} for {minutes:.0f} min; {word} "
                   f"{extreme:.0f} mg/dL, latest {episode.last_value:.0f} mg/dL")
        details = {"threshold_mg_dl": level.threshold_mg_dl, "episode_start": start.isoformat(),
                   "latest_time": episode.last_time.isoformat(), "latest_mg_dl": episode.last_value,
                   "extreme_mg_dl": extreme, "duration_min": round(minutes, 1),
                   "definition": "consensus episode: >= 15 consecutive min beyond the threshold "
                                 "(Battelino 2023)"}
        candidate = AlertCandidate(pid, level.name, SEVERITY[level.name], key, episode.last_time, message,
                                   score=extreme, details=details, began_at=start)
        return Verdict(level.name, True, candidate, max(count, 1))
