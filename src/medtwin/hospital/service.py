"""What the CLI and the API call: JSON-ready summaries of simulate / forecast / compare on a model. Counts,
times and flows only; patients are never named (they are not even numbered in the outputs).

Runs fan out on Dask when given a client (:mod:`.fanout`); without one they run here, serially (small jobs,
the API's default). The numbers are the same either way (common random numbers by replication index).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import ValidationError

from medtwin.hospital.forecast import forecast
from medtwin.hospital.history import Census, census_at, fit_history, generate_history
from medtwin.hospital.model import HOURS_PER_WEEK, HospitalModel, HospitalModelError
from medtwin.hospital.replicate import Results, collect, mean_ci, paired, run_chunk
from medtwin.hospital.whatif import BASELINE, Scenario

MAX_RUNS = 2000  #: replications x scenarios one request may ask for (the API's bound)


def _grid(model: HospitalModel, scenarios: Sequence[Scenario], reps: int, seed: int, horizon_h: float,
          warmup_h: float, client: Any = None) -> Results:
    if reps < 2 or reps * len(scenarios) > MAX_RUNS:
        raise HospitalModelError("replications", f"needs 2..{MAX_RUNS // max(len(scenarios), 1)} replications")
    if not 0 <= warmup_h < horizon_h:
        raise HospitalModelError("warmup_weeks", "the warm-up must be shorter than the run")
    if client is not None:
        from medtwin.hospital.fanout import run_grid

        return run_grid(client, model, list(scenarios), reps, seed, horizon_h, warmup_h)
    return collect([run_chunk(model, s, seed, list(range(reps)), horizon_h, warmup_h) for s in scenarios], reps)


def _metrics(table: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    return {k: mean_ci(v).as_dict() for k, v in sorted(table.items()) if k != "events"}


def simulate(model: HospitalModel, reps: int = 10, weeks: float = 8.0, warmup_weeks: float = 3.0, seed: int = 0,
             client: Any = None) -> dict[str, Any]:
    """Steady-state metrics of the model from empty, with 95 % CIs over replications."""
    results = _grid(model, [BASELINE], reps, seed, weeks * HOURS_PER_WEEK, warmup_weeks * HOURS_PER_WEEK, client)
    return {"model": model.name, "replications": reps, "weeks": weeks, "warmup_weeks": warmup_weeks,
            "seed": seed, "metrics": _metrics(results["baseline"])}


def compare(model: HospitalModel, scenarios: Sequence[Scenario], reps: int = 10, weeks: float = 8.0,
            warmup_weeks: float = 3.0, seed: int = 0, client: Any = None) -> dict[str, Any]:
    """Each scenario against the baseline on common random numbers: scenario - baseline with paired CIs."""
    names = [s.name for s in scenarios]
    if "baseline" in names or len(set(names)) != len(names):
        raise HospitalModelError("scenarios", "scenario names must be unique and not 'baseline'")
    grid = [BASELINE, *scenarios]
    results = _grid(model, grid, reps, seed, weeks * HOURS_PER_WEEK, warmup_weeks * HOURS_PER_WEEK, client)
    keys = [k for k in results["baseline"] if k != "events"]
    return {"model": model.name, "replications": reps, "weeks": weeks, "seed": seed,
            "baseline": _metrics(results["baseline"]),
            "scenarios": {s.name: {"scenario": s.model_dump(),
                                   "difference": {k: paired(results, s.name, k).as_dict() for k in sorted(keys)}}
                          for s in scenarios}}


def parse_scenarios(items: Sequence[Mapping[str, Any]]) -> list[Scenario]:
    out = []
    for i, item in enumerate(items):
        try:
            out.append(Scenario.model_validate(dict(item)))
        except ValidationError as error:
            first = error.errors()[0]
            raise HospitalModelError(f"scenarios[{i}]." + ".".join(map(str, first["loc"])), first["msg"]) from None
    return out


def parse_census(data: Mapping[str, Any], model: HospitalModel) -> tuple[Census, int]:
    """A census document: ``{"start_hour_of_week": 0-167, "patients": [{"unit", "esi", "in_bed", "elapsed_h"}]}``
    (no identities). Errors name the entry."""
    index = model.unit_index()
    how = data.get("start_hour_of_week", 0)
    if not isinstance(how, int) or not 0 <= how < HOURS_PER_WEEK:
        raise HospitalModelError("start_hour_of_week", f"an integer 0..167, got {how!r}")
    rows = data.get("patients")
    if not isinstance(rows, list):
        raise HospitalModelError("patients", "a list of patients in place")
    unit, esi, bed, elapsed = [], [], [], []
    for i, row in enumerate(rows):
        where = f"patients[{i}]"
        if not isinstance(row, Mapping) or row.get("unit") not in index:
            raise HospitalModelError(f"{where}.unit", f"unknown unit {row.get('unit') if isinstance(row, Mapping) else row!r}")
        level, hours = row.get("esi", 3), row.get("elapsed_h")
        if not isinstance(level, int) or not 1 <= level <= 5:
            raise HospitalModelError(f"{where}.esi", f"ESI 1-5, got {level!r}")
        if not isinstance(hours, int | float) or not 0 <= hours < 24 * 365:
            raise HospitalModelError(f"{where}.elapsed_h", f"hours >= 0, got {hours!r}")
        unit.append(index[row["unit"]])
        esi.append(level)
        bed.append(bool(row.get("in_bed", True)))
        elapsed.append(float(hours))
    return Census(np.asarray(unit, dtype=np.int64), np.asarray(esi, dtype=np.int64), np.asarray(bed, dtype=bool),
                  np.asarray(elapsed)), how


def forecast_from(model: HospitalModel, census: Census, start_how: int, horizon_h: float = 48.0, reps: int = 200,
                  seed: int = 0) -> dict[str, Any]:
    """Forecast from a given census with the model's own parameters."""
    if horizon_h not in (24.0, 48.0) and not 1 <= horizon_h <= 24 * 14:
        raise HospitalModelError("horizon_h", "1..336 hours")
    if not 10 <= reps <= 2000:
        raise HospitalModelError("replications", "10..2000")
    fc = forecast(model, census, start_how, horizon_h, reps, seed)
    return {"model": model.name, "census": census.counts(fc.units), "start_hour_of_week": start_how,
            "parameters": "model as given"} | fc.as_dict()


def forecast_demo(model: HospitalModel, history_weeks: int = 8, horizon_h: float = 48.0, reps: int = 200,
                  seed: int = 0) -> dict[str, Any]:
    """The demo: generate ``history_weeks`` of ADT history of ``model``, fit it (with its uncertainty), take
    the census at the history's end and forecast from there."""
    if not 3 <= history_weeks <= 52:
        raise HospitalModelError("history_weeks", "3..52")
    history = generate_history(model, history_weeks, seed)
    end = history_weeks * HOURS_PER_WEEK
    fit = fit_history(history, model)
    census = census_at(history, float(end))
    fc = forecast(fit, census, end % HOURS_PER_WEEK, horizon_h, reps, seed)
    return {"model": model.name, "census": census.counts(history.units), "start_hour_of_week": end % HOURS_PER_WEEK,
            "parameters": f"fitted to {history_weeks} weeks of generated ADT history, posterior draws per replication",
            } | fc.as_dict()
