"""ADT history: a generator (the engine run over weeks from a known model) and the fit of arrivals, ESI mix,
routing and lengths of stay from it, with the fit's uncertainty kept as posteriors to draw from.

History is a visit table (one row per patient and unit: patient number, unit, ESI, joined, started, ended;
hours from the history's start, which is Monday 00:00). Patients are numbers: no names ever.

The fit: arrival rate per entry unit and hour of week ~ Gamma(count + 1/2, weeks) (Poisson counts, Jeffreys
prior); ESI mix and routing ~ Dirichlet(counts + 1/2); length of stay per unit in the template's family:
exponential ~ Gamma(events, exposure) on the rate, otherwise lognormal by maximum likelihood with stays still
open at the cut-off as right-censored, its uncertainty the normal approximation (inverse Hessian) on
(mu, log sigma). Without the censoring the long-stay units come out short (open stays are the long ones).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, special

from medtwin.hospital.engine import Engine, VisitLog
from medtwin.hospital.model import EXIT, HOURS_PER_WEEK, HospitalModel, HospitalModelError, parse_model
from medtwin.hospital.sampling import arrivals


@dataclass(frozen=True)
class History:
    """Visits (arrays of one length) and the history's span in hours."""

    patient: np.ndarray
    unit: np.ndarray
    hop: np.ndarray
    esi: np.ndarray
    t_join: np.ndarray
    t_start: np.ndarray
    t_end: np.ndarray
    span_h: float
    units: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.patient.size)


def from_log(log: VisitLog, units: tuple[str, ...]) -> History:
    reached = ~np.isnan(log.t_join)
    k, j = np.nonzero(reached)
    return History(k, log.patients.path[k, j], j, log.patients.esi[k], log.t_join[k, j], log.t_start[k, j],
                   log.t_end[k, j], log.horizon_h, units)


def generate_history(model: HospitalModel, weeks: int, seed: int) -> History:
    """``weeks`` of visits of a known model, from an empty hospital at Monday 00:00."""
    horizon = weeks * HOURS_PER_WEEK
    log = Engine(model, arrivals(model, seed, 0, horizon), horizon).run()
    return from_log(log, tuple(u.name for u in model.units))


@dataclass(frozen=True)
class Census:
    """Patients in place at a moment: unit, ESI, whether in a bed (else waiting), hours since they started
    (in a bed) or joined the queue (waiting)."""

    unit: np.ndarray
    esi: np.ndarray
    in_bed: np.ndarray
    elapsed_h: np.ndarray

    def counts(self, units: tuple[str, ...]) -> dict[str, int]:
        return {name: int(((self.unit == i) & self.in_bed).sum()) for i, name in enumerate(units)}


def census_at(history: History, t_h: float) -> Census:
    joined = history.t_join <= t_h
    not_left = np.isnan(history.t_end) | (history.t_end > t_h)
    here = joined & not_left
    in_bed = here & ~np.isnan(history.t_start) & (history.t_start <= t_h)
    since = np.where(in_bed, history.t_start, history.t_join)
    return Census(history.unit[here], history.esi[here], in_bed[here], (t_h - since)[here])


@dataclass
class Fit:
    """Posterior pieces of a fitted model; :meth:`draw` gives one plausible model and its hourly rates."""

    base: HospitalModel
    weeks: float
    arrival_counts: dict[str, np.ndarray]  # stream -> (168,) counts
    esi_counts: dict[str, np.ndarray]
    routing_counts: np.ndarray  # (units, units + 1)
    los_fits: list[tuple[str, np.ndarray, np.ndarray]] = field(default_factory=list)  # family, estimate, cov

    def point(self) -> tuple[HospitalModel, list[np.ndarray]]:
        return self._model(None)

    def draw(self, rng: np.random.Generator) -> tuple[HospitalModel, list[np.ndarray]]:
        return self._model(rng)

    def _model(self, rng: np.random.Generator | None) -> tuple[HospitalModel, list[np.ndarray]]:
        data = self.base.model_dump()
        rates: list[np.ndarray] = []
        for stream in data["arrivals"]:
            counts = self.arrival_counts[stream["name"]]
            rate = (counts + 0.5) / self.weeks if rng is None else rng.gamma(counts + 0.5, 1.0 / self.weeks)
            rates.append(rate)
            stream["rate_per_hour"] = [float(r) for r in rate]
            esi = self.esi_counts[stream["name"]] + 0.5
            stream["esi_mix"] = [float(x) for x in (esi / esi.sum() if rng is None else rng.dirichlet(esi))]
        names = [u["name"] for u in data["units"]] + [EXIT]
        for i, unit in enumerate(data["units"]):
            unit["los"] = self._los(i, rng)
            row = self.routing_counts[i]
            allowed = row > 0  # routes never seen stay closed: an unseen route is not invented
            probs = np.zeros_like(row)
            alpha = row[allowed] + 0.5
            probs[allowed] = alpha / alpha.sum() if rng is None else rng.dirichlet(alpha)
            unit["routing"] = {names[j]: float(p) for j, p in enumerate(probs) if p > 0}
        return parse_model(data), rates

    def _los(self, unit: int, rng: np.random.Generator | None) -> dict[str, object]:
        family, est, cov = self.los_fits[unit]
        if family == "exponential":  # est = (events, exposure hours)
            rate = est[0] / est[1] if rng is None else rng.gamma(est[0], 1.0 / est[1])
            return {"dist": "exponential", "mean_h": float(1.0 / rate)}
        mu, log_sigma = est if rng is None else rng.multivariate_normal(est, cov)
        var = float(np.exp(2 * log_sigma))
        return {"dist": "lognormal", "mean_h": float(np.exp(mu + var / 2)), "cv": float(np.sqrt(np.expm1(var)))}


def fit_history(history: History, template: HospitalModel, until_h: float | None = None) -> Fit:
    """Fit ``template``'s arrivals, ESI mix, routing and stays from visits that began before ``until_h``
    (default: the whole history). Units and streams are the template's; each needs data."""
    end = history.span_h if until_h is None else until_h
    weeks = end / HOURS_PER_WEEK
    index = {name: i for i, name in enumerate(history.units)}
    first = (history.hop == 0) & (history.t_join < end)
    counts, esis = {}, {}
    for j, stream in enumerate(template.arrivals):
        sel = first & (history.unit == index[stream.entry])
        how = np.floor(history.t_join[sel]).astype(np.int64) % HOURS_PER_WEEK
        counts[stream.name] = np.bincount(how, minlength=HOURS_PER_WEEK).astype(float)
        esis[stream.name] = np.bincount(history.esi[sel] - 1, minlength=5).astype(float)
        if not sel.any():
            raise HospitalModelError(f"arrivals[{j}]", f"no arrivals at {stream.entry!r} in the history")
    routing = _routing_counts(history, len(index), end)
    los_fits = []
    for i, unit in enumerate(template.units):
        began = (history.unit == i) & (history.t_start < end)
        done = began & (history.t_end <= end)
        stays = np.where(done, history.t_end, end)[began] - history.t_start[began]
        if done.sum() < 10:
            raise HospitalModelError(f"units[{i}] {unit.name!r}.los", f"{done.sum()} completed stays: too few to fit")
        los_fits.append(_fit_stays(unit.los.dist, np.maximum(stays, 1e-6), done[began]))
    return Fit(template, weeks, counts, esis, routing, los_fits)


def _fit_stays(family: str, stays: np.ndarray, done: np.ndarray) -> tuple[str, np.ndarray, np.ndarray]:
    """Right-censored fit of stays (``done`` False = still open at the cut-off)."""
    if family == "exponential":
        return "exponential", np.array([float(done.sum()), float(stays.sum())]), np.zeros((2, 2))
    logs = np.log(stays)

    def nll(theta: np.ndarray) -> float:
        z = (logs - theta[0]) / np.exp(theta[1])
        return float(-(special.log_ndtr(-z[~done]).sum()) - (-0.5 * z[done] ** 2 - theta[1]).sum())

    start = np.array([logs[done].mean(), np.log(logs[done].std() + 1e-6)])
    result = optimize.minimize(nll, start, method="Nelder-Mead", options={"xatol": 1e-7, "fatol": 1e-9})
    return "lognormal", np.asarray(result.x), np.linalg.inv(_hessian(nll, np.asarray(result.x)))


def _hessian(f: Callable[[np.ndarray], float], x: np.ndarray, step: float = 1e-4) -> np.ndarray:
    """Central-difference Hessian (BFGS's running estimate is too rough to draw from)."""
    n = x.size
    h = np.zeros((n, n))
    eye = np.eye(n) * step
    for i in range(n):
        for j in range(n):
            h[i, j] = (f(x + eye[i] + eye[j]) - f(x + eye[i] - eye[j]) - f(x - eye[i] + eye[j])
                       + f(x - eye[i] - eye[j])) / (4 * step * step)
    return h


def _routing_counts(history: History, n_units: int, end: float) -> np.ndarray:
    order = np.lexsort((history.hop, history.patient))
    p, u, h, t = history.patient[order], history.unit[order], history.hop[order], history.t_end[order]
    out = np.zeros((n_units, n_units + 1))
    done = ~np.isnan(t) & (t < end)
    same_next = np.zeros(p.size, dtype=bool)
    same_next[:-1] = (p[1:] == p[:-1]) & (h[1:] == h[:-1] + 1)
    nxt = np.full(p.size, n_units)
    nxt[:-1] = np.where(same_next[:-1], u[1:], n_units)
    np.add.at(out, (u[done], nxt[done]), 1.0)
    return out
