"""Random inputs of one replication, drawn up front and vectorised so that scenarios share them (common random
numbers): arrival times (non-homogeneous Poisson, piecewise constant per hour), ESI, path through the units
and lengths of stay by inverse transform of per-patient uniforms. A scenario that changes beds or staff sees
the very same patients; a surge multiplier > 1 adds patients from a separate stream and < 1 thins the base
ones, so the common patients keep their draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from medtwin.hospital.model import HOURS_PER_WEEK, HospitalModel, LengthOfStay

MAX_HOPS = 12  #: a path is cut (the patient leaves) after this many units; the demo's longest is 5


@dataclass
class Patients:
    """Patients of one run, sorted by first event time. ``path[k, j]`` is the j-th unit (``-1`` after exit),
    ``service_h[k, j]`` the stay there in hours; ``esi`` 1-5."""

    t0_h: np.ndarray
    esi: np.ndarray
    path: np.ndarray
    service_h: np.ndarray

    def __len__(self) -> int:
        return int(self.t0_h.size)

    def trimmed(self) -> Patients:
        """The same patients with the hop columns no path reaches dropped, keeping one all-exited column
        (a path's end stays marked): the engine and the statistics give the same answers on fewer columns
        (the ED model uses 3 of the 12)."""
        used = int((self.path >= 0).sum(axis=1).max(initial=0))
        width = min(self.path.shape[1], used + 1)
        if width == self.path.shape[1]:
            return self
        return Patients(self.t0_h, self.esi, np.ascontiguousarray(self.path[:, :width]),
                        np.ascontiguousarray(self.service_h[:, :width]))

    @staticmethod
    def concat(parts: list[Patients], trim: bool = False) -> Patients:
        """The parts' patients in time order; ``trim``: the same as ``.trimmed()`` after, cheaper (the
        unreached hop columns are dropped before the merge copies them)."""
        if trim:
            used = max(int((p.path >= 0).sum(axis=1).max(initial=0)) for p in parts)
            width = min(MAX_HOPS, used + 1)
            parts = [p if p.path.shape[1] <= width else Patients(p.t0_h, p.esi, p.path[:, :width], p.service_h[:, :width])
                     for p in parts]
        if len(parts) == 1:
            return parts[0].trimmed() if trim else parts[0]
        t0 = np.concatenate([p.t0_h for p in parts])
        if len(parts) == 2 and all(bool(np.all(p.t0_h[1:] >= p.t0_h[:-1])) for p in parts):
            # two sorted parts (base and surge patients): merged by position (a stable sort's order, ties
            # first part first) in O(n log n) of the smaller part rather than a sort of both
            a, b = parts[0].t0_h, parts[1].t0_h
            at_b = np.searchsorted(a, b, side="right") + np.arange(b.size)
            order = np.empty(t0.size, dtype=np.int64)
            is_b = np.zeros(t0.size, dtype=bool)
            is_b[at_b] = True
            order[at_b] = a.size + np.arange(b.size)
            order[~is_b] = np.arange(a.size)
        else:
            order = np.argsort(t0, kind="stable")
        return Patients(t0[order], np.concatenate([p.esi for p in parts])[order],
                        np.concatenate([p.path for p in parts])[order],
                        np.concatenate([p.service_h for p in parts])[order])


def rng_for(seed: int, *key: int) -> np.random.Generator:
    """The generator of one purpose in one replication: the same (seed, key) gives the same stream in every
    scenario, independent of the order runs are made in (``SeedSequence`` spawn keys)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def los_quantile(los: LengthOfStay, u: np.ndarray) -> np.ndarray:
    """Inverse CDF of a length-of-stay distribution in hours."""
    u = np.clip(u, 1e-12, 1 - 1e-12)
    if los.dist == "exponential":
        return -los.mean_h * np.log1p(-u)
    if los.dist == "lognormal":
        s2 = np.log1p(los.cv**2)
        mu = np.log(los.mean_h) - s2 / 2
        return np.asarray(np.exp(mu + np.sqrt(s2) * special.ndtri(u)))
    shape = 1.0 / los.cv**2
    return np.asarray(stats.gamma.ppf(u, shape, scale=los.mean_h / shape))


def los_cdf(los: LengthOfStay, x: np.ndarray) -> np.ndarray:
    x = np.maximum(x, 0.0)
    if los.dist == "exponential":
        return -np.expm1(-x / los.mean_h)
    if los.dist == "lognormal":
        s2 = np.log1p(los.cv**2)
        mu = np.log(los.mean_h) - s2 / 2
        with np.errstate(divide="ignore"):
            return np.asarray(special.ndtr((np.log(x) - mu) / np.sqrt(s2)))
    shape = 1.0 / los.cv**2
    return np.asarray(stats.gamma.cdf(x, shape, scale=los.mean_h / shape))


def nhpp_times(rate_week: np.ndarray, start_how: int, horizon_h: float, rng: np.random.Generator,
               factor: np.ndarray | None = None) -> np.ndarray:
    """Arrival times in [0, horizon) of a Poisson process whose rate is constant within each hour of week
    (times ``factor`` per hour from the start, when given)."""
    hours = np.arange(int(np.ceil(horizon_h)))
    rates = rate_week[(start_how + hours) % HOURS_PER_WEEK] * (1.0 if factor is None else factor)
    counts = rng.poisson(rates)
    t = np.repeat(hours, counts) + rng.random(int(counts.sum()))
    t.sort()
    return t[t < horizon_h]


def walk(model: HospitalModel, entry: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Paths from entry units with route uniforms ``u`` (n, MAX_HOPS - 1); ``-1`` once exited."""
    n_units = len(model.units)
    cum = np.cumsum(model.routing_matrix(), axis=1)
    cum[:, -1] = 1.0 + 1e-12
    path = np.full((entry.size, MAX_HOPS), -1, dtype=np.int64)
    path[:, 0] = entry
    for j in range(1, MAX_HOPS):
        cur = path[:, j - 1]
        alive = cur >= 0
        if not alive.any():
            break
        nxt = (u[alive, j - 1, None] >= cum[cur[alive]]).sum(axis=1)
        path[alive, j] = np.where(nxt >= n_units, -1, nxt)
    return path


def service_times(model: HospitalModel, path: np.ndarray, u: np.ndarray, los_multiplier: float) -> np.ndarray:
    out = np.full(path.shape, np.nan)
    width = int((path >= 0).sum(axis=1).max(initial=0))  # columns past every path's end hold no stay
    cells, draws = path[:, :width], u[:, :width]
    part = out[:, :width]
    for i, unit in enumerate(model.units):
        hit = cells == i
        part[hit] = los_quantile(unit.los, draws[hit]) * los_multiplier
    return out


def draw_patients(model: HospitalModel, times: np.ndarray, entry: int, esi_mix: np.ndarray,
                  rng: np.random.Generator, los_multiplier: float) -> Patients:
    """Attributes of arrivals at ``times`` from one generator: one row of uniforms per patient."""
    n = times.size
    u = rng.random((n, 2 * MAX_HOPS))
    esi = 1 + np.searchsorted(np.cumsum(esi_mix)[:-1], u[:, 0], side="right")
    path = walk(model, np.full(n, entry), u[:, 1:MAX_HOPS])
    return Patients(times, esi.astype(np.int64), path, service_times(model, path, u[:, MAX_HOPS:], los_multiplier))


def hourly_multiplier(horizon_h: float, multiplier: float, daily_curve: list[float] | None) -> np.ndarray:
    """The arrival multiplier per hour from the start: a constant, times a daily curve (an epidemic wave;
    its last value holds after its end)."""
    hours = np.arange(int(np.ceil(horizon_h)))
    if not daily_curve:
        return np.full(hours.size, multiplier)
    curve = np.asarray(daily_curve, dtype=float)
    return multiplier * curve[np.minimum(hours // 24, curve.size - 1)]


#: base patients already drawn, by everything they depend on (see :func:`arrivals`' ``shared``)
BaseDraws = dict[tuple[object, ...], Patients]


def _draw_key(model: HospitalModel, seed: int, rep: int, j: int, horizon_h: float, start_how: int,
              los_multiplier: float) -> tuple[object, ...]:
    """Everything stream j's base patients depend on: a scenario that changes none of it (beds, rosters,
    outages, layouts, the arrival multiplier) draws the very same ones."""
    stream = model.arrivals[j]
    units = tuple((u.name, u.los.dist, u.los.mean_h, u.los.cv, tuple(sorted(u.routing.items())))
                  for u in model.units)
    return (seed, rep, j, horizon_h, start_how, los_multiplier, stream.entry, tuple(stream.week().tolist()),
            tuple(stream.esi_mix), units)


def arrivals(model: HospitalModel, seed: int, rep: int, horizon_h: float, start_how: int = 0,
             arrival_multiplier: float = 1.0, los_multiplier: float = 1.0,
             rate_scale: list[np.ndarray] | None = None, daily_curve: list[float] | None = None,
             shared: BaseDraws | None = None, trim: bool = False) -> Patients:
    """New patients of replication ``rep`` over ``horizon_h``. ``rate_scale`` (one array of 168 per stream)
    replaces the rates (a fitted-parameter draw). Where the multiplier is < 1 the base patients are thinned;
    where > 1 patients from a separate stream are added: the base patients keep their draws (CRN).
    ``shared``: base patients drawn by earlier calls (of other scenarios, same replication), reused when
    everything they depend on is the same and added otherwise (why: the scenarios of a what-if grid share
    them, and drawing them was a third of a one-year run's time); the same patients either way. ``trim``:
    as ``.trimmed()`` on the result (see :meth:`Patients.concat`)."""
    index = model.unit_index()
    m = hourly_multiplier(horizon_h, arrival_multiplier, daily_curve)
    parts: list[Patients] = []
    for j, stream in enumerate(model.arrivals):
        rate = stream.week() if rate_scale is None else rate_scale[j]
        mix = np.asarray(stream.esi_mix)
        key = _draw_key(model, seed, rep, j, horizon_h, start_how, los_multiplier) if shared is not None \
            and rate_scale is None else None
        if key is not None and shared is not None and key in shared:
            base = shared[key]
        else:
            base_rng = rng_for(seed, rep, 1, j)
            times = nhpp_times(rate, start_how, horizon_h, base_rng)
            base = draw_patients(model, times, index[stream.entry], mix, base_rng, los_multiplier)
            if key is not None and shared is not None:
                shared[key] = base
        if np.any(m < 1.0):
            keep = rng_for(seed, rep, 2, j).random(len(base)) < m[base.t0_h.astype(np.int64)]
            base = Patients(base.t0_h[keep], base.esi[keep], base.path[keep], base.service_h[keep])
        parts.append(base)
        if np.any(m > 1.0):
            extra_rng = rng_for(seed, rep, 3, j)
            extra_t = nhpp_times(rate, start_how, horizon_h, extra_rng, np.maximum(m - 1.0, 0.0))
            parts.append(draw_patients(model, extra_t, index[stream.entry], mix, extra_rng, los_multiplier))
    return Patients.concat(parts, trim)
