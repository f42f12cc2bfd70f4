"""The discrete-event engine: units with a time-varying number of usable beds, a priority queue per unit (ESI
1 first, then first come), optional queue limit (0 = loss system), pre-emptive resume for ESI 1 in units
marked ``preemptive``. Patients and all their random draws come in up front (:mod:`.sampling`), so the loop
only orders events; statistics are computed afterwards from the visit log, vectorised.

Conventions (documented, tested): a capacity drop never interrupts a patient in a bed (shift changes let the
bed drain); a patient leaves a unit's bed when moving on (no blocking after service: time waiting for the
next unit is that unit's queue wait, e.g. ED boarding is the ward's queue); a pre-empted patient keeps their
first start time (their wait is to first service) and their place (join time) in the queue.

Validated against Erlang C and Erlang B and side by side with SimPy and Ciw in ``tests/hospital``.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from medtwin.hospital.model import HOURS_PER_WEEK, HospitalModel
from medtwin.hospital.sampling import Patients

_CAPACITY, _DEPART, _ARRIVE = 0, 1, 2


@dataclass
class VisitLog:
    """Per patient and hop: when they joined the unit's queue, started and ended (hours; NaN if not reached
    within the horizon). ``lost[k]`` is True when patient k was turned away (queue full)."""

    patients: Patients
    t_join: np.ndarray
    t_start: np.ndarray
    t_end: np.ndarray
    lost: np.ndarray
    horizon_h: float
    events: int


#: (unit index, start hour, end hour, beds out of use): equipment downtime, a closed bay
Outage = tuple[int, float, float, int]


def capacity_events(capacity_week: np.ndarray, start_how: int, horizon_h: float,
                    outages: list[Outage] | None = None) -> list[tuple[float, int, int, int]]:
    """(time, kind, unit, new capacity) wherever a unit's usable beds change: roster hours, and the start
    and end of outages (capacity = rostered beds - beds out, never below 0)."""
    hours = np.arange(1, int(np.ceil(horizon_h)))
    out: list[tuple[float, int, int, int]] = []
    for unit, week in enumerate(capacity_week):
        own = [o for o in outages or [] if o[0] == unit]
        cap = week[(start_how + hours) % HOURS_PER_WEEK]
        prev = week[(start_how + hours - 1) % HOURS_PER_WEEK]
        times = set(hours[cap != prev].astype(float).tolist())
        times |= {t for o in own for t in (o[1], o[2]) if 0 <= t < horizon_h}
        for t in sorted(times):
            beds = int(week[(start_how + int(t)) % HOURS_PER_WEEK]) - sum(o[3] for o in own if o[1] <= t < o[2])
            out.append((t, _CAPACITY, unit, max(beds, 0)))
    return out


def initial_capacity(capacity_week: np.ndarray, start_how: int, outages: list[Outage] | None) -> list[int]:
    return [max(int(week[start_how % HOURS_PER_WEEK]) - sum(o[3] for o in outages or [] if o[0] == u and o[1] <= 0 < o[2]), 0)
            for u, week in enumerate(capacity_week)]


class Engine:
    """One run. ``run()`` returns the :class:`VisitLog`."""

    def __init__(self, model: HospitalModel, patients: Patients, horizon_h: float, start_how: int = 0,
                 capacity_week: np.ndarray | None = None, in_service: np.ndarray | None = None,
                 joined_h: np.ndarray | None = None, outages: list[Outage] | None = None) -> None:
        self.horizon = horizon_h
        self.p = patients
        n, hops = patients.path.shape
        self.hops = hops
        # the loop works on Python lists (numpy scalar access cost ~3x the event itself); flat index k * hops + j
        nan = float("nan")
        self.t_join = [nan] * (n * hops)
        self.t_start = [nan] * (n * hops)
        self.t_end = [nan] * (n * hops)
        self.lost = [False] * n
        self.hop = [0] * n
        self.path: list[int] = patients.path.ravel().tolist()
        self.service: list[float] = patients.service_h.ravel().tolist()
        self.esi: list[int] = patients.esi.tolist()
        self.remaining: list[float] = patients.service_h[:, 0].tolist()
        self.token = [0] * n
        self.spell_end = [float("inf")] * n
        week = model.capacity_by_hour() if capacity_week is None else capacity_week
        self.cap = initial_capacity(week, start_how, outages)
        self.busy = [0] * len(model.units)
        self.in_service: list[set[int]] = [set() for _ in model.units]
        self.queues: list[list[tuple[int, float, int]]] = [[] for _ in model.units]
        self.qcap = [u.queue_capacity for u in model.units]
        self.preemptive = [u.preemptive for u in model.units]
        self.transfer: list[list[float]] = model.transfer_matrix().tolist()
        self.events = 0
        self.heap: list[tuple[float, int, int, int, int]] = [
            (t, kind, unit, cap, 0) for t, kind, unit, cap in capacity_events(week, start_how, horizon_h, outages)]
        self._seed(in_service, joined_h)
        heapq.heapify(self.heap)

    def _seed(self, in_service: np.ndarray | None, joined_h: np.ndarray | None) -> None:
        p, hops = self.p, self.hops
        beds = [False] * len(p) if in_service is None else in_service.tolist()
        joined = [0.0] * len(p) if joined_h is None else joined_h.tolist()
        t0 = p.t0_h.tolist()
        for k in range(len(p)):
            unit = self.path[k * hops]
            if beds[k]:  # already in a bed at time 0 (a census)
                self.t_join[k * hops] = self.t_start[k * hops] = joined[k]
                self.busy[unit] += 1
                self.in_service[unit].add(k)
                self.spell_end[k] = self.service[k * hops]
                self.heap.append((self.spell_end[k], _DEPART, unit, k, 0))
            elif joined[k] < 0:  # waiting at time 0 since joined_h
                self.t_join[k * hops] = joined[k]
                self.queues[unit].append((self.esi[k], joined[k], k))
            else:
                self.heap.append((t0[k], _ARRIVE, unit, k, 0))
        for q in self.queues:
            heapq.heapify(q)

    def run(self) -> VisitLog:
        for unit in range(len(self.cap)):
            self._start_waiting(unit, 0.0)
        heap, horizon, token_of = self.heap, self.horizon, self.token
        pop, arrive, depart = heapq.heappop, self._arrive, self._depart
        events = 0
        while heap:
            t, kind, unit, k, token = pop(heap)
            if t >= horizon:
                break
            events += 1
            if kind == _ARRIVE:
                arrive(t, unit, k)
            elif kind == _DEPART:
                if token == token_of[k]:
                    depart(t, unit, k)
            else:
                self.cap[unit] = k
                self._start_waiting(unit, t)
        self.events = events
        shape = self.p.path.shape
        return VisitLog(self.p, np.array(self.t_join).reshape(shape), np.array(self.t_start).reshape(shape),
                        np.array(self.t_end).reshape(shape), np.array(self.lost, dtype=bool), horizon, events)

    def _begin(self, t: float, unit: int, k: int) -> None:
        self.busy[unit] += 1
        self.in_service[unit].add(k)
        i = k * self.hops + self.hop[k]
        if self.t_start[i] != self.t_start[i]:  # NaN: first start in this unit
            self.t_start[i] = t
        end = self.spell_end[k] = t + self.remaining[k]
        heapq.heappush(self.heap, (end, _DEPART, unit, k, self.token[k]))

    def _arrive(self, t: float, unit: int, k: int) -> None:
        self.t_join[k * self.hops + self.hop[k]] = t
        if self.busy[unit] < self.cap[unit] and not self.queues[unit]:
            self._begin(t, unit, k)
            return
        esi = self.esi[k]
        if esi == 1 and self.preemptive[unit] and self._preempt(t, unit):
            self._begin(t, unit, k)
            return
        limit = self.qcap[unit]
        if limit is not None and len(self.queues[unit]) >= limit:
            self.lost[k] = True
            return
        heapq.heappush(self.queues[unit], (esi, t, k))

    def _preempt(self, t: float, unit: int) -> bool:
        """Put the lowest-priority patient in service (ESI > 1, latest started, highest number on a tie: the
        compiled loop's rule too) back in the queue."""
        candidates = [k for k in self.in_service[unit] if self.esi[k] > 1]
        if not candidates:
            return False
        hops, hop = self.hops, self.hop
        victim = max(candidates, key=lambda k: (self.esi[k], self.t_start[k * hops + hop[k]], k))  # ties: highest k
        self.token[victim] += 1  # its departure event is now stale
        self.remaining[victim] = self.spell_end[victim] - t
        self.in_service[unit].discard(victim)
        self.busy[unit] -= 1
        heapq.heappush(self.queues[unit], (self.esi[victim], self.t_join[victim * hops + hop[victim]], victim))
        return True

    def _depart(self, t: float, unit: int, k: int) -> None:
        j = self.hop[k]
        i = k * self.hops + j
        self.t_end[i] = t
        self.busy[unit] -= 1
        self.in_service[unit].discard(k)
        if self.queues[unit]:
            self._start_waiting(unit, t)
        if j + 1 < self.hops and self.path[i + 1] >= 0:
            self.hop[k] = j + 1
            self.remaining[k] = self.service[i + 1]
            nxt = self.path[i + 1]
            delay = self.transfer[unit][nxt]
            if delay > 0:  # in transit (the layout's walk): arrives later, holds no bed meanwhile
                heapq.heappush(self.heap, (t + delay, _ARRIVE, nxt, k, 0))
            else:
                self._arrive(t, nxt, k)

    def _start_waiting(self, unit: int, t: float) -> None:
        queue = self.queues[unit]
        while queue and self.busy[unit] < self.cap[unit]:
            _, _, k = heapq.heappop(queue)
            self._begin(t, unit, k)


_CAPACITY_CACHE: dict[tuple[object, ...], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}


def _capacity_arrays(week: np.ndarray, start_how: int, horizon_h: float, outages: list[Outage] | None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The compiled loop's capacity inputs (initial beds; changes as time, unit, beds in the Python heap's key
    order), kept for the next run with the same roster, start, horizon and outages (why: built in Python,
    they were ~10 % of a one-year run, and every replication of a scenario has the same). Read-only."""
    key = (week.tobytes(), week.shape, start_how, float(horizon_h), tuple(outages or ()))
    hit = _CAPACITY_CACHE.get(key)
    if hit is not None:
        return hit
    events = capacity_events(week, start_how, horizon_h, outages)
    cap_t = np.array([e[0] for e in events], dtype=float)
    cap_u = np.array([e[2] for e in events], dtype=np.int64)
    cap_v = np.array([e[3] for e in events], dtype=np.int64)
    order = np.lexsort((cap_v, cap_u, cap_t))  # the Python heap's key order
    out = (np.array(initial_capacity(week, start_how, outages), dtype=np.int64), cap_t[order], cap_u[order],
           cap_v[order])
    for a in out:
        a.setflags(write=False)
    if len(_CAPACITY_CACHE) >= 64:  # bounded: a long-lived server sees many rosters
        _CAPACITY_CACHE.clear()
    _CAPACITY_CACHE[key] = out
    return out


def simulate(model: HospitalModel, patients: Patients, horizon_h: float, start_how: int = 0,
             capacity_week: np.ndarray | None = None, in_service: np.ndarray | None = None,
             joined_h: np.ndarray | None = None, outages: list[Outage] | None = None,
             compiled: bool = True) -> VisitLog:
    """One run: the compiled loop (:mod:`.kernel`, the same rules event for event) unless ``compiled`` is
    False, then :class:`Engine` in Python (the reference the tests hold the kernel to)."""
    if not compiled:
        return Engine(model, patients, horizon_h, start_how, capacity_week, in_service, joined_h, outages).run()
    from medtwin.hospital.kernel import run_loop

    week = model.capacity_by_hour() if capacity_week is None else capacity_week
    cap0, cap_t, cap_u, cap_v = _capacity_arrays(week, start_how, horizon_h, outages)
    n = len(patients)
    qcap = np.array([-1 if u.queue_capacity is None else u.queue_capacity for u in model.units], dtype=np.int64)
    preemptive = np.array([u.preemptive for u in model.units], dtype=np.bool_)
    beds = np.zeros(n, dtype=np.bool_) if in_service is None else np.asarray(in_service, dtype=np.bool_)
    joined = np.zeros(n) if joined_h is None else np.asarray(joined_h, dtype=float)
    later = np.flatnonzero(~beds & ~(joined < 0))
    arrive_order = later[np.lexsort((later, patients.path[later, 0], patients.t0_h[later]))]
    t_join, t_start, t_end, lost, count = run_loop(
        np.ascontiguousarray(patients.t0_h, dtype=float), np.ascontiguousarray(patients.esi, dtype=np.int64),
        np.ascontiguousarray(patients.path, dtype=np.int64), np.ascontiguousarray(patients.service_h, dtype=float),
        cap0, cap_t, cap_u, cap_v, qcap, preemptive,
        np.ascontiguousarray(model.transfer_matrix(), dtype=float), beds, joined, arrive_order.astype(np.int64),
        float(horizon_h))
    return VisitLog(patients, t_join, t_start, t_end, lost, horizon_h, int(count))
