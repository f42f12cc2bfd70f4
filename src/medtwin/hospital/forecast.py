"""Forecasts from now: the simulation starts from a census (patients in beds with their elapsed stay, patients
waiting with their wait so far), not from empty, and runs ``horizon_h`` hours of new arrivals. Each
replication draws its own parameters from the fit's posterior (when given a :class:`~.history.Fit`), so the
prediction intervals carry parameter uncertainty as well as the randomness of patients.

A patient in a bed for ``e`` hours stays ``F^-1(F(e) + U (1 - F(e))) - e`` more (the stay given it has
lasted ``e``); after that they move on by the unit's routing. Outputs are counts per unit and hour and mean
ED waits per hour of arrival; no patient identity is in them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from medtwin.hospital.engine import simulate
from medtwin.hospital.history import Census, Fit
from medtwin.hospital.metrics import occupancy_at
from medtwin.hospital.model import HospitalModel
from medtwin.hospital.sampling import (
    MAX_HOPS,
    Patients,
    arrivals,
    los_cdf,
    los_quantile,
    rng_for,
    service_times,
    walk,
)


@dataclass(frozen=True)
class Forecast:
    """``occupancy[q]`` (units, hours + 1) at hours 0..horizon for q in mean/low/median/high (the 95 %
    prediction interval is low..high); ``ed_wait_h[q]`` (hours,) mean ED wait of patients arriving in each
    hour (NaN where no replication had one); ``boarding[q]`` (hours + 1,) patients who left the ED waiting
    for a bed in the next unit."""

    units: tuple[str, ...]
    hours: np.ndarray
    occupancy: dict[str, np.ndarray]
    ed_wait_h: dict[str, np.ndarray]
    boarding: dict[str, np.ndarray]
    replications: int

    def as_dict(self) -> dict[str, object]:
        def clean(a: np.ndarray) -> list[object]:
            return [None if not np.isfinite(v) else round(float(v), 4) for v in a.ravel()]

        return {"units": list(self.units), "hours": self.hours.tolist(), "replications": self.replications,
                "interval": 0.95,
                "occupancy": {q: {u: clean(v[i]) for i, u in enumerate(self.units)} for q, v in self.occupancy.items()},
                "ed_wait_h": {q: clean(v) for q, v in self.ed_wait_h.items()},
                "boarding": {q: clean(v) for q, v in self.boarding.items()}}


def census_patients(model: HospitalModel, census: Census, rng: np.random.Generator) -> tuple[Patients, np.ndarray, np.ndarray]:
    """The census as engine patients (their remaining stays and onward paths drawn), with the in-bed flags
    and join times (negative: before now)."""
    n = census.unit.size
    u = rng.random((n, 2 * MAX_HOPS))
    path = walk(model, census.unit.astype(np.int64), u[:, 1:MAX_HOPS])
    service = service_times(model, path, u[:, MAX_HOPS:], 1.0)
    for i, unit in enumerate(model.units):
        sel = census.in_bed & (census.unit == i)
        e = census.elapsed_h[sel]
        q = los_cdf(unit.los, e) + u[sel, 0] * (1 - los_cdf(unit.los, e))
        service[sel, 0] = np.maximum(los_quantile(unit.los, q) - e, 1e-6)
    joined = -census.elapsed_h.astype(float) - 1e-9
    return Patients(np.zeros(n), census.esi.astype(np.int64), path, service), census.in_bed.copy(), joined


def _one(model: HospitalModel, census: Census, seed: int, rep: int, horizon_h: float, start_how: int,
         rates: list[np.ndarray] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    now, in_bed, joined = census_patients(model, census, rng_for(seed, rep, 4))
    new = arrivals(model, seed, rep, horizon_h, start_how, rate_scale=rates)
    patients = Patients(np.concatenate([now.t0_h, new.t0_h]), np.concatenate([now.esi, new.esi]),
                        np.concatenate([now.path, new.path]), np.concatenate([now.service_h, new.service_h]))
    flags = np.concatenate([in_bed, np.zeros(len(new), dtype=bool)])
    joins = np.concatenate([joined, np.zeros(len(new))])
    log = simulate(model, patients, horizon_h, start_how, in_service=flags, joined_h=joins)
    hours = np.arange(int(horizon_h) + 1, dtype=float)
    occ = occupancy_at(log, len(model.units), np.minimum(hours, horizon_h - 1e-9))
    ed = np.array([u.kind == "ed" for u in model.units] + [False])[patients.path]
    new_ed = np.zeros(len(patients), dtype=bool)
    new_ed[len(now):] = ed[len(now):, 0]
    start = np.where(np.isnan(log.t_start), horizon_h, log.t_start)
    wait = np.where(ed, np.nan_to_num(start - log.t_join), 0.0).sum(axis=1)
    hour = np.floor(patients.t0_h).astype(np.int64)
    sums = np.bincount(hour[new_ed], weights=wait[new_ed], minlength=int(horizon_h))[: int(horizon_h)]
    counts = np.bincount(hour[new_ed], minlength=int(horizon_h))[: int(horizon_h)]
    # boarders at each hour: left an ED unit, waiting for a bed in the next (non-ED) unit
    board = ed[:, :-1] & ~ed[:, 1:] & (patients.path[:, 1:] >= 0)
    joined_next = log.t_join[:, 1:][board & ~np.isnan(log.t_join[:, 1:])]
    started_next = np.where(np.isnan(log.t_start[:, 1:]), np.inf, log.t_start[:, 1:])[board & ~np.isnan(log.t_join[:, 1:])]
    grid = np.minimum(hours, horizon_h - 1e-9)
    boarding = (np.searchsorted(np.sort(joined_next), grid, side="right")
                - np.searchsorted(np.sort(started_next), grid, side="right"))
    with np.errstate(invalid="ignore", divide="ignore"):
        return occ, sums / counts, boarding


def forecast(source: HospitalModel | Fit, census: Census, start_how: int, horizon_h: float = 48.0,
             replications: int = 200, seed: int = 0) -> Forecast:
    """Occupancy per unit and hour and ED waits for the next ``horizon_h`` hours from ``census`` at hour of
    week ``start_how``; 95 % prediction intervals over replications."""
    occs, waits, boards = [], [], []
    for rep in range(replications):
        if isinstance(source, Fit):
            model, rates = source.draw(rng_for(seed, rep, 5))
        else:
            model, rates = source, None
        occ, wait, board = _one(model, census, seed, rep, horizon_h, start_how, rates)
        occs.append(occ)
        waits.append(wait)
        boards.append(board)
    o, w = np.stack(occs).astype(float), np.stack(waits)
    qs = {"low": 2.5, "median": 50.0, "high": 97.5}
    occupancy = {"mean": o.mean(axis=0)} | {k: np.percentile(o, p, axis=0) for k, p in qs.items()}
    b = np.stack(boards).astype(float)
    boarding = {"mean": b.mean(axis=0)} | {k: np.percentile(b, p, axis=0) for k, p in qs.items()}
    with warnings.catch_warnings():  # an hour no replication had an ED arrival in is NaN, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        ed = {"mean": np.nanmean(w, axis=0)} | {k: np.nanpercentile(w, p, axis=0) for k, p in qs.items()}
    base = source.base if isinstance(source, Fit) else source
    return Forecast(tuple(u.name for u in base.units), np.arange(int(horizon_h) + 1), occupancy, ed, boarding,
                    replications)
