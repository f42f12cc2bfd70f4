"""Statistics of a run, computed from its visit log (one definition each; a compiled pass and a numpy reference):

* ``wait_h[unit]``: mean time from joining a unit's queue to first start there, over visits joined in the
  window [warm-up, horizon) (a visit still waiting at the horizon counts with its wait so far);
* ``occupancy[unit]``: time-average number of patients in the unit's beds over the window;
* ``throughput_per_day[unit]``: visits ended in the window per 24 h;
* ``lost_fraction``: share of patients arriving in the window turned away (a unit's queue full);
* ``ed_wait_h``: mean total wait in ``ed`` units of patients who arrived at an ED unit in the window;
* ``boarding_h``: mean wait for the next (non-ED) unit of patients leaving ED treatment for a bed;
* ``transfer_h_per_patient``: mean hours in transit between units (the layout's walking; one escort per
  move assumed, so it is also staff walking time) of patients arriving in the window.

:func:`summarise` computes them in one compiled pass over the log (``compiled=True``, the default: ~8 ms
of numpy per one-year ED run was a fifth of a replication) or with the numpy reference below; tests hold
the two equal to 1e-12 relative (only the order of summation differs).
"""

from __future__ import annotations

import numpy as np
from numba import njit

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


def summarise(log: VisitLog, model: HospitalModel, warmup_h: float = 0.0, compiled: bool = True) -> dict[str, float]:
    """Scalar metrics of one run (keys ``wait_h.<unit>``, ``occupancy.<unit>``, ...); ``compiled``: one
    numba pass (default) or the numpy reference, equal to 1e-12 relative."""
    if compiled:
        return _summarise_compiled(log, model, warmup_h)
    return _summarise_numpy(log, model, warmup_h)


def _mean(total: float, n: float) -> float:
    return float(total / n) if n > 0 else float("nan")


def _summarise_compiled(log: VisitLog, model: HospitalModel, warmup_h: float) -> dict[str, float]:
    n_units = len(model.units)
    ed = np.array([u.kind == "ed" for u in model.units], dtype=np.bool_)
    unit_sums, totals = _pass(log.patients.path, log.patients.t0_h, log.t_join, log.t_start, log.t_end,
                              log.lost, float(log.horizon_h), float(warmup_h), ed, model.transfer_matrix(), n_units)
    window = log.horizon_h - warmup_h
    out: dict[str, float] = {}
    for u, unit in enumerate(model.units):
        out[f"wait_h.{unit.name}"] = _mean(unit_sums[0, u], unit_sums[1, u])
        out[f"occupancy.{unit.name}"] = float(unit_sums[2, u] / window)
        out[f"throughput_per_day.{unit.name}"] = float(unit_sums[3, u] / window * 24.0)
    arrived_n, lost_n, ed_sum, ed_n, board_sum, board_n, walk_sum = totals
    out["lost_fraction"] = _mean(lost_n, arrived_n)
    out["ed_wait_h"] = _mean(ed_sum, ed_n)
    out["boarding_h"] = _mean(board_sum, board_n)
    out["transfer_h_per_patient"] = _mean(walk_sum, arrived_n)
    return out


@njit(cache=True)
def _pass(path: np.ndarray, t0: np.ndarray, t_join: np.ndarray, t_start: np.ndarray, t_end: np.ndarray,  # noqa: C901
          lost: np.ndarray, horizon: float, warmup: float, ed: np.ndarray, moves: np.ndarray,
          n_units: int) -> tuple[np.ndarray, np.ndarray]:
    """The definitions of the module docstring, patient by patient (mirrors :func:`_summarise_numpy`
    line for line). Returns (4, units) [wait sum, wait count, bed-hours, ended count] and
    [arrived, lost, ED wait sum, ED arrivals, boarding sum, boarding count, walking sum]."""
    unit_sums = np.zeros((4, n_units))
    totals = np.zeros(7)
    n, hops = path.shape
    for k in range(n):
        arrived = t0[k] >= warmup and t0[k] < horizon
        from_ed = arrived and path[k, 0] >= 0 and ed[path[k, 0]]
        ed_wait = 0.0
        nxt = -1
        for h in range(hops):
            u = path[k, h]
            tj = t_join[k, h]
            ts = t_start[k, h]
            te = t_end[k, h]
            wait = (horizon if np.isnan(ts) else ts) - tj  # NaN when never joined
            here_ed = u >= 0 and ed[u]
            if nxt < 0 and not here_ed:
                nxt = h
            if here_ed and not np.isnan(wait):
                ed_wait += wait
            if u < 0:
                continue
            if tj >= warmup and tj < horizon:
                unit_sums[0, u] += wait
                unit_sums[1, u] += 1.0
            s = min(max(horizon if np.isnan(ts) else ts, warmup), horizon)
            e = min(max(horizon if np.isnan(te) else te, warmup), horizon)
            unit_sums[2, u] += e - s
            if te >= warmup and te < horizon:
                unit_sums[3, u] += 1.0
            if arrived and h + 1 < hops and path[k, h + 1] >= 0 and not np.isnan(t_join[k, h + 1]):
                totals[6] += moves[u, path[k, h + 1]]
        if arrived:
            totals[0] += 1.0
            if lost[k]:
                totals[1] += 1.0
        if from_ed:
            totals[2] += ed_wait
            totals[3] += 1.0
            nxt = max(nxt, 0)  # all hops ED: numpy's argmax gives column 0
            if path[k, nxt] >= 0:
                ts = t_start[k, nxt]
                board = (horizon if np.isnan(ts) else ts) - t_join[k, nxt]
                if not np.isnan(board):
                    totals[4] += board
                    totals[5] += 1.0
    return unit_sums, totals


def _summarise_numpy(log: VisitLog, model: HospitalModel, warmup_h: float = 0.0) -> dict[str, float]:
    """The reference: the same metrics with array operations."""
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
