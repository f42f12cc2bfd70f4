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


@njit(cache=True, inline="always")
def _less(ht: np.ndarray, hi: np.ndarray, a: int, b: int) -> bool:
    if ht[a] != ht[b]:
        return ht[a] < ht[b]
    for c in range(4):
        if hi[a, c] != hi[b, c]:
            return hi[a, c] < hi[b, c]
    return False


@njit(cache=True, inline="always")
def _push(ht: np.ndarray, hi: np.ndarray, n: int, t: float, kind: int, unit: int, k: int, token: int) -> int:
    """Add an event (the arrays are sized for the most the heap can hold: see :func:`run_loop`)."""
    ht[n] = t
    hi[n, 0], hi[n, 1], hi[n, 2], hi[n, 3] = kind, unit, k, token
    i = n
    while i > 0:
        parent = (i - 1) // 2
        if _less(ht, hi, i, parent):
            ht[i], ht[parent] = ht[parent], ht[i]
            for c in range(4):
                hi[i, c], hi[parent, c] = hi[parent, c], hi[i, c]
            i = parent
        else:
            break
    return n + 1


@njit(cache=True, inline="always")
def _pop(ht: np.ndarray, hi: np.ndarray, n: int) -> int:
    """Move the smallest to the end (index n - 1); returns the new size."""
    n -= 1
    ht[0], ht[n] = ht[n], ht[0]
    for c in range(4):
        hi[0, c], hi[n, c] = hi[n, c], hi[0, c]
    i = 0
    while True:
        left, right, small = 2 * i + 1, 2 * i + 2, i
        if left < n and _less(ht, hi, left, small):
            small = left
        if right < n and _less(ht, hi, right, small):
            small = right
        if small == i:
            break
        ht[i], ht[small] = ht[small], ht[i]
        for c in range(4):
            hi[i, c], hi[small, c] = hi[small, c], hi[i, c]
        i = small
    return n


@njit(cache=True, inline="always")
def _key_less(t1: float, a1: int, b1: int, c1: int, d1: int, t2: float, a2: int, b2: int, c2: int, d2: int) -> bool:
    if t1 != t2:
        return t1 < t2
    if a1 != a2:
        return a1 < a2
    if b1 != b2:
        return b1 < b2
    if c1 != c2:
        return c1 < c2
    return d1 < d2


# per-unit queues: heaps of patients keyed (esi, t_join, k), the key stored in the queue (no indirection)
@njit(cache=True, inline="always")
def _qless(qe: np.ndarray, qt: np.ndarray, qk: np.ndarray, u: int, a: int, b: int) -> bool:
    if qe[u, a] != qe[u, b]:
        return qe[u, a] < qe[u, b]
    if qt[u, a] != qt[u, b]:
        return qt[u, a] < qt[u, b]
    return qk[u, a] < qk[u, b]


@njit(cache=True, inline="always")
def _qswap(qe: np.ndarray, qt: np.ndarray, qk: np.ndarray, u: int, a: int, b: int) -> None:
    qe[u, a], qe[u, b] = qe[u, b], qe[u, a]
    qt[u, a], qt[u, b] = qt[u, b], qt[u, a]
    qk[u, a], qk[u, b] = qk[u, b], qk[u, a]


@njit(cache=True, inline="always")
def _qpush(esi: np.ndarray, qt: np.ndarray, qk: np.ndarray, qn: np.ndarray, qe: np.ndarray, u: int, t: float, k: int) -> None:
    i = qn[u]
    qe[u, i], qt[u, i], qk[u, i] = esi[k], t, k
    qn[u] += 1
    while i > 0:
        parent = (i - 1) // 2
        if _qless(qe, qt, qk, u, i, parent):
            _qswap(qe, qt, qk, u, i, parent)
            i = parent
        else:
            break


@njit(cache=True, inline="always")
def _qpop(esi: np.ndarray, qt: np.ndarray, qk: np.ndarray, qn: np.ndarray, qe: np.ndarray, u: int) -> int:
    k = qk[u, 0]
    n = qn[u] - 1
    qn[u] = n
    qe[u, 0], qt[u, 0], qk[u, 0] = qe[u, n], qt[u, n], qk[u, n]
    i = 0
    while True:
        left, right, small = 2 * i + 1, 2 * i + 2, i
        if left < n and _qless(qe, qt, qk, u, left, small):
            small = left
        if right < n and _qless(qe, qt, qk, u, right, small):
            small = right
        if small == i:
            break
        _qswap(qe, qt, qk, u, i, small)
        i = small
    return k


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
            slots[u, busy[u]] = k
            pos[k] = busy[u]
            busy[u] += 1
            spell_end[k] = service[k, 0]
            hn = _push(ht, hi, hn, spell_end[k], DEPART, u, k, 0)
        elif joined[k] < 0:
            t_join[k, 0] = joined[k]
            _qpush(esi, qt, qk, qn, qe, u, joined[k], k)
    return hn


@njit(cache=True)
def run_loop(t0: np.ndarray, esi: np.ndarray, path: np.ndarray, service: np.ndarray, cap0: np.ndarray,
             cap_t: np.ndarray, cap_u: np.ndarray, cap_v: np.ndarray, qcap: np.ndarray, preemptive: np.ndarray,
             transfer: np.ndarray, in_bed: np.ndarray, joined: np.ndarray, arrive_order: np.ndarray,
             horizon: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """The visit log (t_join, t_start, t_end as (n, hops); lost) and the number of events. ``qcap`` < 0: no
    queue limit. ``in_bed``/``joined``: a census at time 0 (see :meth:`Engine._seed`). ``arrive_order``: the
    patients neither in a bed nor waiting at time 0, in key order (t0, entry unit, k); ``cap_*``: capacity
    changes in key order (time, unit, capacity)."""
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
    hn = 0
    na = arrive_order.size
    hn = _seed(path, service, in_bed, joined, esi, t_join, t_start, slots, pos, busy, spell_end, qt, qk, qn, qe,
                       ht, hi, hn)
    for u in range(units):
        hn = _start_waiting(u, 0.0, cap, busy, slots, pos, esi, qt, qk, qn, qe, hop, t_start, remaining,
                                    spell_end, token, ht, hi, hn)
    events = 0
    ai, ci, nc = 0, 0, cap_t.size
    while True:
        # the next event: the smallest key of the heap top, the next arrival and the next capacity change
        # (three sorted sources merged: the heap stays as small as the patients in beds)
        source = -1
        if hn > 0:
            source, t, kind, unit, k, tok = 0, ht[0], hi[0, 0], hi[0, 1], hi[0, 2], hi[0, 3]
        if ai < na:
            a = arrive_order[ai]
            if source < 0 or _key_less(t0[a], ARRIVE, path[a, 0], a, 0, t, kind, unit, k, tok):
                source, t, kind, unit, k, tok = 1, t0[a], ARRIVE, path[a, 0], a, 0
        if ci < nc and (source < 0 or _key_less(cap_t[ci], CAPACITY, cap_u[ci], cap_v[ci], 0, t, kind, unit, k, tok)):
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
        if kind == ARRIVE:
            hn = _arrive(t, unit, k, cap, busy, slots, pos, esi, qt, qk, qn, qe, hop, t_join, t_start,
                                 remaining, spell_end, token, lost, qcap, preemptive, ht, hi, hn)
        elif kind == DEPART:
            if tok == token[k]:
                hn = _depart(t, unit, k, cap, busy, slots, pos, esi, qt, qk, qn, qe, hop, path, service,
                                     t_join, t_start, t_end, remaining, spell_end, token, lost, qcap, preemptive,
                                     transfer, ht, hi, hn)
        else:
            cap[unit] = k
            hn = _start_waiting(unit, t, cap, busy, slots, pos, esi, qt, qk, qn, qe, hop, t_start, remaining,
                                        spell_end, token, ht, hi, hn)
    return t_join, t_start, t_end, lost, events


@njit(cache=True, inline="always")
def _begin(t: float, u: int, k: int, busy: np.ndarray, slots: np.ndarray, pos: np.ndarray, hop: np.ndarray,
           t_start: np.ndarray, remaining: np.ndarray, spell_end: np.ndarray, token: np.ndarray,
           ht: np.ndarray, hi: np.ndarray, hn: int) -> int:
    slots[u, busy[u]] = k
    pos[k] = busy[u]
    busy[u] += 1
    j = hop[k]
    if np.isnan(t_start[k, j]):
        t_start[k, j] = t
    spell_end[k] = t + remaining[k]
    return _push(ht, hi, hn, spell_end[k], DEPART, u, k, token[k])


@njit(cache=True, inline="always")
def _leave(u: int, k: int, busy: np.ndarray, slots: np.ndarray, pos: np.ndarray) -> None:
    i = pos[k]
    last = slots[u, busy[u] - 1]
    slots[u, i] = last
    pos[last] = i
    pos[k] = -1
    busy[u] -= 1


@njit(cache=True, inline="always")
def _start_waiting(u: int, t: float, cap: np.ndarray, busy: np.ndarray, slots: np.ndarray, pos: np.ndarray,
                   esi: np.ndarray, qt: np.ndarray, qk: np.ndarray, qn: np.ndarray, qe: np.ndarray, hop: np.ndarray,
                   t_start: np.ndarray, remaining: np.ndarray, spell_end: np.ndarray, token: np.ndarray,
                   ht: np.ndarray, hi: np.ndarray, hn: int) -> int:
    while qn[u] > 0 and busy[u] < cap[u]:
        k = _qpop(esi, qt, qk, qn, qe, u)
        hn = _begin(t, u, k, busy, slots, pos, hop, t_start, remaining, spell_end, token, ht, hi, hn)
    return hn


@njit(cache=True, inline="always")
def _preempt(t: float, u: int, busy: np.ndarray, slots: np.ndarray, pos: np.ndarray, esi: np.ndarray,
             qt: np.ndarray, qk: np.ndarray, qn: np.ndarray, qe: np.ndarray, hop: np.ndarray, t_join: np.ndarray,
             t_start: np.ndarray, remaining: np.ndarray, spell_end: np.ndarray, token: np.ndarray) -> bool:
    victim = -1
    for i in range(busy[u]):
        k = slots[u, i]
        if esi[k] <= 1:
            continue
        if victim < 0:
            victim = k
            continue
        a, b = t_start[k, hop[k]], t_start[victim, hop[victim]]
        if esi[k] > esi[victim] or (esi[k] == esi[victim] and (a > b or (a == b and k > victim))):
            victim = k
    if victim < 0:
        return False
    token[victim] += 1
    remaining[victim] = spell_end[victim] - t
    _leave(u, victim, busy, slots, pos)
    _qpush(esi, qt, qk, qn, qe, u, t_join[victim, hop[victim]], victim)
    return True


@njit(cache=True, inline="always")
def _arrive(t: float, u: int, k: int, cap: np.ndarray, busy: np.ndarray, slots: np.ndarray, pos: np.ndarray,
            esi: np.ndarray, qt: np.ndarray, qk: np.ndarray, qn: np.ndarray, qe: np.ndarray, hop: np.ndarray, t_join: np.ndarray,
            t_start: np.ndarray, remaining: np.ndarray, spell_end: np.ndarray, token: np.ndarray,
            lost: np.ndarray, qcap: np.ndarray, preemptive: np.ndarray, ht: np.ndarray, hi: np.ndarray, hn: int
            ) -> int:
    t_join[k, hop[k]] = t
    if busy[u] < cap[u] and qn[u] == 0:
        return _begin(t, u, k, busy, slots, pos, hop, t_start, remaining, spell_end, token, ht, hi, hn)
    if esi[k] == 1 and preemptive[u] and _preempt(t, u, busy, slots, pos, esi, qt, qk, qn, qe, hop, t_join, t_start,
                                                  remaining, spell_end, token):
        return _begin(t, u, k, busy, slots, pos, hop, t_start, remaining, spell_end, token, ht, hi, hn)
    if qcap[u] >= 0 and qn[u] >= qcap[u]:
        lost[k] = True
        return hn
    _qpush(esi, qt, qk, qn, qe, u, t, k)
    return hn


@njit(cache=True, inline="always")
def _depart(t: float, u: int, k: int, cap: np.ndarray, busy: np.ndarray, slots: np.ndarray, pos: np.ndarray,
            esi: np.ndarray, qt: np.ndarray, qk: np.ndarray, qn: np.ndarray, qe: np.ndarray, hop: np.ndarray, path: np.ndarray,
            service: np.ndarray, t_join: np.ndarray, t_start: np.ndarray, t_end: np.ndarray, remaining: np.ndarray,
            spell_end: np.ndarray, token: np.ndarray, lost: np.ndarray, qcap: np.ndarray, preemptive: np.ndarray,
            transfer: np.ndarray, ht: np.ndarray, hi: np.ndarray, hn: int) -> int:
    j = hop[k]
    t_end[k, j] = t
    _leave(u, k, busy, slots, pos)
    if qn[u] > 0:
        hn = _start_waiting(u, t, cap, busy, slots, pos, esi, qt, qk, qn, qe, hop, t_start, remaining,
                                    spell_end, token, ht, hi, hn)
    if j + 1 < path.shape[1] and path[k, j + 1] >= 0:
        hop[k] = j + 1
        remaining[k] = service[k, j + 1]
        nxt = path[k, j + 1]
        delay = transfer[u, nxt]
        if delay > 0:
            return _push(ht, hi, hn, t + delay, ARRIVE, nxt, k, 0)
        return _arrive(t, nxt, k, cap, busy, slots, pos, esi, qt, qk, qn, qe, hop, t_join, t_start, remaining,
                       spell_end, token, lost, qcap, preemptive, ht, hi, hn)
    return hn
