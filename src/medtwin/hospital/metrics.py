"""Statistics of a run, computed from its visit log with array operations (one definition each):

* ``wait_h[unit]``: mean time from joining a unit's queue to first start there, over visits joined in the
  window [warm-up, horizon) (a visit still waiting at the horizon counts with its wait so far);
* ``occupancy[unit]``: time-average number of patients in the unit's beds over the window;
* ``throughput_per_day[unit]``: visits ended in the window per 24 h;
* ``lost_fraction``: share of patients arriving in the window turned away (a unit's queue full);
* ``ed_wait_h``: mean total wait in ``ed`` units of patients who arrived at an ED unit in the window;
* ``boarding_h``: mean wait for the next (non-ED) unit of patients leaving ED treatment for a bed;
* ``transfer_h_per_patient``: mean hours in transit between units (the layout's walking; one escort per
  move assumed, so it is also staff walking time) of patients arriving in the window.
"""

from __future__ import annotations

import numpy as np

from medtwin.hospital.engine import VisitLog
from medtwin.hospital.model import HospitalModel


def _waits(log: VisitLog) -> np.ndarray:
    start = np.where(np.isnan(log.t_start) & ~np.isnan(log.t_join), log.horizon_h, log.t_start)
    return start - log.t_join


def occupancy_at(log: VisitLog, n_units: int, times_h: np.ndarray) -> np.ndarray:
    """(units, times) patients in beds at each time."""
    out = np.zeros((n_units, times_h.size), dtype=np.int64)
    started = ~np.isnan(log.t_start)
    for u in range(n_units):
        sel = (log.patients.path == u) & started
        starts = np.sort(log.t_start[sel])
        ends = np.sort(np.where(np.isnan(log.t_end[sel]), np.inf, log.t_end[sel]))
        out[u] = np.searchsorted(starts, times_h, side="right") - np.searchsorted(ends, times_h, side="right")
    return out


def summarise(log: VisitLog, model: HospitalModel, warmup_h: float = 0.0) -> dict[str, float]:
    """Scalar metrics of one run (keys ``wait_h.<unit>``, ``occupancy.<unit>``, ...)."""
    path, horizon = log.patients.path, log.horizon_h
    window = horizon - warmup_h
    waits = _waits(log)
    in_window = (log.t_join >= warmup_h) & (log.t_join < horizon)
    out: dict[str, float] = {}
    start = np.clip(np.nan_to_num(log.t_start, nan=horizon), warmup_h, horizon)
    end = np.clip(np.nan_to_num(log.t_end, nan=horizon), warmup_h, horizon)
    stay = end - start
    waited = in_window & ~np.isnan(waits)
    ended_in = (log.t_end >= warmup_h) & (log.t_end < horizon)
    for u, unit in enumerate(model.units):
        here = path == u
        visits = here & waited
        out[f"wait_h.{unit.name}"] = float(waits[visits].mean()) if visits.any() else float("nan")
        out[f"occupancy.{unit.name}"] = float(stay[here].sum() / window)
        out[f"throughput_per_day.{unit.name}"] = float((here & ended_in).sum() / window * 24.0)
    arrived = (log.patients.t0_h >= warmup_h) & (log.patients.t0_h < horizon)
    out["lost_fraction"] = float(log.lost[arrived].mean()) if arrived.any() else float("nan")
    out.update(_ed_metrics(log, model, waits, arrived))
    moves = model.transfer_matrix()
    src, dst = path[:, :-1], path[:, 1:]
    moved = (src >= 0) & (dst >= 0) & ~np.isnan(log.t_join[:, 1:])
    walk = np.where(moved, moves[np.maximum(src, 0), np.maximum(dst, 0)], 0.0).sum(axis=1)
    out["transfer_h_per_patient"] = float(walk[arrived].mean()) if arrived.any() else float("nan")
    return out


def _ed_metrics(log: VisitLog, model: HospitalModel, waits: np.ndarray, arrived: np.ndarray) -> dict[str, float]:
    ed = np.array([u.kind == "ed" for u in model.units] + [False])
    path = log.patients.path
    is_ed = ed[path]  # path -1 picks the trailing False
    from_ed = arrived & is_ed[:, 0]
    ed_wait = np.where(is_ed, np.nan_to_num(waits), 0.0).sum(axis=1)
    # boarding: the first non-ED unit right after an ED unit
    nxt = np.argmax(~is_ed, axis=1)
    has_next = from_ed & (path[np.arange(path.shape[0]), nxt] >= 0)
    board = waits[np.arange(path.shape[0]), nxt]
    board_ok = has_next & ~np.isnan(board)
    return {"ed_wait_h": float(ed_wait[from_ed].mean()) if from_ed.any() else float("nan"),
            "boarding_h": float(board[board_ok].mean()) if board_ok.any() else float("nan")}
