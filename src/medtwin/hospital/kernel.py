"""The engine's event loop compiled with numba: the same rules as :class:`~medtwin.hospital.engine.Engine`
(priority queue per unit: ESI then join time then patient number; optional queue limit; pre-emptive resume
for ESI 1 in pre-emptive units, the victim the in-service patient of highest (ESI, first start, number);
capacity drops drain; transfers in transit hold no bed) on flat arrays, event for event.

Why: the Python loop costs ~5 us an event, and a grid of 1,000 replications x 20 scenarios of a one-year ED
model is ~2 billion of them; compiled, the loop is no longer the cost. The tests run both loops on the same
patients and require identical visit logs. Events are ordered by the key (time, kind, unit, patient, token)
as the Python heap orders its tuples; all arrays are preallocated or grown by doubling.
"""

from __future__ import annotations

import numpy as np
from numba import njit

CAPACITY, DEPART, ARRIVE = 0, 1, 2


# The event heap holds keys (time, kind, unit, patient, token) in ``ht`` (time) and ``hi`` (the four integers);
# each per-unit queue ``u`` holds keys (esi, t_join, patient) in ``qe[u]``, ``qt[u]``, ``qk[u]`` (no
# indirection). Keys are read and written whole by the four helpers below and compared as tuples: numba's tuple
# ``<`` is lexicographic with the same "first unequal element decides" rule as the Python engine's heap.
# Helpers here and below are ``inline="always"`` and small: timed on bench_hospital's models, they cost nothing
# beside the hand-written lines, whereas a helper taking the seven arrays of a whole "start a spell" step
# (seat, first start, departure on the heap) made the loop ~1.7x slower (see run_loop's docstring on
# reference counts), so that step stays written out in run_loop.
@njit(cache=True, inline="always")
def _event(ht: np.ndarray, hi: np.ndarray, i: int) -> tuple[float, int, int, int, int]:
    return ht[i], hi[i, 0], hi[i, 1], hi[i, 2], hi[i, 3]


@njit(cache=True, inline="always")
def _set_event(ht: np.ndarray, hi: np.ndarray, i: int, key: tuple[float, int, int, int, int]) -> None:
    ht[i] = key[0]
    hi[i, 0], hi[i, 1], hi[i, 2], hi[i, 3] = key[1], key[2], key[3], key[4]


@njit(cache=True, inline="always")
def _waiting(qe: np.ndarray, qt: np.ndarray, qk: np.ndarray, u: int, i: int) -> tuple[int, float, int]:
    return qe[u, i], qt[u, i], qk[u, i]


@njit(cache=True, inline="always")
def _set_waiting(qe: np.ndarray, qt: np.ndarray, qk: np.ndarray, u: int, i: int, key: tuple[int, float, int]) -> None:
    qe[u, i], qt[u, i], qk[u, i] = key


@njit(cache=True, inline="always")
def _push(ht: np.ndarray, hi: np.ndarray, n: int, t: float, kind: int, unit: int, k: int, token: int) -> int:
    """Add an event (the arrays are sized for the most the heap can hold: see :func:`run_loop`)."""
    key = (t, kind, unit, k, token)
    i = n
    while i > 0:
        parent = (i - 1) // 2
        if not key < _event(ht, hi, parent):
            break
        _set_event(ht, hi, i, _event(ht, hi, parent))
        i = parent
    _set_event(ht, hi, i, key)
    return n + 1


@njit(cache=True, inline="always")
def _pop(ht: np.ndarray, hi: np.ndarray, n: int) -> int:
    """Remove the smallest (the caller has read it at index 0); returns the new size."""
    n -= 1
    key = _event(ht, hi, n)
    i = 0
    while True:
        small = 2 * i + 1
        if small >= n:
            break
        right = small + 1
        if right < n and _event(ht, hi, right) < _event(ht, hi, small):
            small = right
        if not _event(ht, hi, small) < key:
            break
        _set_event(ht, hi, i, _event(ht, hi, small))
        i = small
    _set_event(ht, hi, i, key)
    return n


@njit(cache=True, inline="always")
def _qpush(esi: np.ndarray, qt: np.ndarray, qk: np.ndarray, qn: np.ndarray, qe: np.ndarray, u: int, t: float, k: int) -> None:
    key = (esi[k], t, k)
    i = qn[u]
    qn[u] += 1
    while i > 0:
        parent = (i - 1) // 2
        if not key < _waiting(qe, qt, qk, u, parent):
            break
        _set_waiting(qe, qt, qk, u, i, _waiting(qe, qt, qk, u, parent))
        i = parent
    _set_waiting(qe, qt, qk, u, i, key)


@njit(cache=True, inline="always")
def _qpop(esi: np.ndarray, qt: np.ndarray, qk: np.ndarray, qn: np.ndarray, qe: np.ndarray, u: int) -> int:
    top = qk[u, 0]
    n = qn[u] - 1
    qn[u] = n
    key = _waiting(qe, qt, qk, u, n)
    i = 0
    while True:
        small = 2 * i + 1
        if small >= n:
            break
        right = small + 1
        if right < n and _waiting(qe, qt, qk, u, right) < _waiting(qe, qt, qk, u, small):
            small = right
        if not _waiting(qe, qt, qk, u, small) < key:
            break
        _set_waiting(qe, qt, qk, u, i, _waiting(qe, qt, qk, u, small))
        i = small
    _set_waiting(qe, qt, qk, u, i, key)
    return top


@njit(cache=True, inline="always")
def _seat(slots: np.ndarray, pos: np.ndarray, busy: np.ndarray, u: int, k: int) -> None:
    """Put patient k in the next bed of unit u (``slots[u]`` lists the unit's patients in beds, ``pos[k]`` is
    k's index there)."""
    slots[u, busy[u]] = k
    pos[k] = busy[u]
    busy[u] += 1


@njit(cache=True, inline="always")
def _unseat(slots: np.ndarray, pos: np.ndarray, busy: np.ndarray, u: int, k: int) -> None:
    """Free patient k's bed in unit u: the last of the unit's patients in beds takes k's index."""
    i = pos[k]
    last = slots[u, busy[u] - 1]
    slots[u, i] = last
    pos[last] = i
    pos[k] = -1
    busy[u] -= 1


@njit(cache=True, inline="always")
def _seed(path: np.ndarray, service: np.ndarray, in_bed: np.ndarray, joined: np.ndarray, esi: np.ndarray,
          t_join: np.ndarray, t_start: np.ndarray, slots: np.ndarray, pos: np.ndarray, busy: np.ndarray,
          spell_end: np.ndarray, qt: np.ndarray, qk: np.ndarray, qn: np.ndarray, qe: np.ndarray, ht: np.ndarray, hi: np.ndarray,
          hn: int) -> int:
    """The census at time 0: in a bed (their departure on the heap) or waiting since ``joined`` (< 0)."""
    for k in range(path.shape[0]):
        u = path[k, 0]
        if in_bed[k]:
            t_join[k, 0] = joined[k]
            t_start[k, 0] = joined[k]
            _seat(slots, pos, busy, u, k)
            spell_end[k] = service[k, 0]
            hn = _push(ht, hi, hn, spell_end[k], DEPART, u, k, 0)
        elif joined[k] < 0:
            t_join[k, 0] = joined[k]
            _qpush(esi, qt, qk, qn, qe, u, joined[k], k)
    return hn


@njit(cache=True)
def _victim(esi: np.ndarray, slots: np.ndarray, t_start: np.ndarray, hop: np.ndarray, u: int, busy_u: int) -> int:
    """The in-service patient of unit u that an ESI 1 arrival pre-empts: highest (ESI > 1, first start,
    number); -1 if all are ESI 1."""
    victim = -1
    for i in range(busy_u):
        v = slots[u, i]
        if esi[v] <= 1:
            continue
        if victim < 0:
            victim = v
            continue
        sv, sw = t_start[v, hop[v]], t_start[victim, hop[victim]]
        if esi[v] > esi[victim] or (esi[v] == esi[victim] and (sv > sw or (sv == sw and v > victim))):
            victim = v
    return victim


@njit(cache=True)
def run_loop(  # noqa: C901  (one function on purpose: see the docstring)
        t0: np.ndarray, esi: np.ndarray, path: np.ndarray, service: np.ndarray, cap0: np.ndarray,
        cap_t: np.ndarray, cap_u: np.ndarray, cap_v: np.ndarray, qcap: np.ndarray, preemptive: np.ndarray,
        transfer: np.ndarray, in_bed: np.ndarray, joined: np.ndarray, arrive_order: np.ndarray,
        horizon: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """The visit log (t_join, t_start, t_end as (n, hops); lost) and the number of events. ``qcap`` < 0: no
    queue limit. ``in_bed``/``joined``: a census at time 0 (see :meth:`Engine._seed`). ``arrive_order``: the
    patients neither in a bed nor waiting at time 0, in key order (t0, entry unit, k); ``cap_*``: capacity
    changes in key order (time, unit, capacity).

    One event is handled in three steps, in the Python engine's order: what ends (a departure: the bed freed
    and the next unit chosen; a capacity change), then the freed unit's queue served, then what arrives (a
    new or transferred patient: a free bed, a pre-emption, the queue or turned away). The steps are written
    in this one function, not in helpers taking the state arrays: each such call costs numba two atomic
    reference-count updates per array, which were ~80 % of the loop's time (perf: NRT_incref/NRT_decref;
    one-year ED baseline run 33 -> 6.3 ms; moving just the three-source merge into a helper took it back to
    ~30 ms). Hence one function above the complexity limit; only the rare pre-emption choice is a helper."""
    n, hops = path.shape
    units = cap0.size
    t_join = np.full((n, hops), np.nan)
    t_start = np.full((n, hops), np.nan)
    t_end = np.full((n, hops), np.nan)
    lost = np.zeros(n, dtype=np.bool_)
    hop = np.zeros(n, dtype=np.int64)
    token = np.zeros(n, dtype=np.int64)
    remaining = service[:, 0].copy()
    spell_end = np.full(n, np.inf)
    cap = cap0.copy()
    busy = np.zeros(units, dtype=np.int64)
    slots = np.empty((units, n + 1), dtype=np.int64)  # in service per unit; pos[k]: k's index there
    pos = np.full(n, -1, dtype=np.int64)
    qt = np.empty((units, n + 1))
    qk = np.empty((units, n + 1), dtype=np.int64)
    qn = np.zeros(units, dtype=np.int64)
    qe = np.empty((units, n + 1), dtype=np.int64)
    # the heap holds at most one live event per patient plus one stale departure per pre-emption (at most
    # one per ESI 1 visit)
    size = n + int(np.sum(esi == 1)) * hops + 16
    ht = np.empty(size)
    hi = np.empty((size, 4), dtype=np.int64)
    hn = _seed(path, service, in_bed, joined, esi, t_join, t_start, slots, pos, busy, spell_end, qt, qk, qn, qe,
               ht, hi, 0)
    na = arrive_order.size
    events = 0
    ai, ci, nc = 0, 0, cap_t.size
    # step 0 at time 0: every unit's queue served (a census may hold waiting patients)
    wake_lo, wake_hi, t = 0, units, 0.0
    kind, unit, k, tok = CAPACITY, 0, 0, 0
    while True:
        # 2. serve the queues of units wake_lo..wake_hi - 1 (the unit that freed a bed or gained capacity;
        # every unit at time 0)
        for u in range(wake_lo, wake_hi):
            while qn[u] > 0 and busy[u] < cap[u]:
                w = _qpop(esi, qt, qk, qn, qe, u)
                _seat(slots, pos, busy, u, w)
                if np.isnan(t_start[w, hop[w]]):
                    t_start[w, hop[w]] = t
                spell_end[w] = t + remaining[w]
                hn = _push(ht, hi, hn, spell_end[w], DEPART, u, w, token[w])
        # 3. an arrival (new, or moved on without transit time)
        if kind == ARRIVE:
            u = unit
            t_join[k, hop[k]] = t
            seated = busy[u] < cap[u] and qn[u] == 0
            if not seated and esi[k] == 1 and preemptive[u]:
                # pre-emptive resume: the in-service patient of highest (ESI > 1, first start, number) goes back
                victim = _victim(esi, slots, t_start, hop, u, busy[u])
                if victim >= 0:
                    token[victim] += 1
                    remaining[victim] = spell_end[victim] - t
                    _unseat(slots, pos, busy, u, victim)
                    _qpush(esi, qt, qk, qn, qe, u, t_join[victim, hop[victim]], victim)
                    seated = True
            if seated:
                _seat(slots, pos, busy, u, k)
                if np.isnan(t_start[k, hop[k]]):
                    t_start[k, hop[k]] = t
                spell_end[k] = t + remaining[k]
                hn = _push(ht, hi, hn, spell_end[k], DEPART, u, k, token[k])
            elif qcap[u] >= 0 and qn[u] >= qcap[u]:
                lost[k] = True
            else:
                _qpush(esi, qt, qk, qn, qe, u, t, k)
        # the next event: the smallest key of the heap top, the next arrival and the next capacity change
        # (three sorted sources merged: the heap stays as small as the patients in beds)
        source = -1
        if hn > 0:
            source, t, kind, unit, k, tok = 0, ht[0], hi[0, 0], hi[0, 1], hi[0, 2], hi[0, 3]
        if ai < na:
            a = arrive_order[ai]
            if source < 0 or (t0[a], ARRIVE, path[a, 0], a, 0) < (t, kind, unit, k, tok):
                source, t, kind, unit, k, tok = 1, t0[a], ARRIVE, path[a, 0], a, 0
        if ci < nc and (source < 0 or (cap_t[ci], CAPACITY, cap_u[ci], cap_v[ci], 0) < (t, kind, unit, k, tok)):
            source, t, kind, unit, k, tok = 2, cap_t[ci], CAPACITY, cap_u[ci], cap_v[ci], 0
        if source < 0:
            break
        if source == 0:
            hn = _pop(ht, hi, hn)
        elif source == 1:
            ai += 1
        else:
            ci += 1
        if t >= horizon:
            break
        events += 1
        # 1. what ends
        wake_lo, wake_hi = 0, 0
        if kind == DEPART:
            if tok != token[k]:
                kind = -1  # a stale departure (the patient was pre-empted): nothing happens
                continue
            j = hop[k]
            t_end[k, j] = t
            _unseat(slots, pos, busy, unit, k)
            wake_lo, wake_hi = unit, unit + 1
            kind = -1
            if j + 1 < hops and path[k, j + 1] >= 0:
                hop[k] = j + 1
                remaining[k] = service[k, j + 1]
                nxt = path[k, j + 1]
                delay = transfer[unit, nxt]
                if delay > 0:  # in transit: arrives later, holds no bed meanwhile
                    hn = _push(ht, hi, hn, t + delay, ARRIVE, nxt, k, 0)
                else:
                    kind, unit = ARRIVE, nxt
        elif kind == CAPACITY:
            cap[unit] = k
            wake_lo, wake_hi = unit, unit + 1
    return t_join, t_start, t_end, lost, events
