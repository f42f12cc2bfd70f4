"""Tumour size measurements in, one checked lesion series out; and a single-lesion fit with its fallbacks.

Sizes are longest diameters (``mm``, ``cm``) or volumes (``mm3``, ``cm3``, ``mL``). Diameters become
volumes by ``0.52 d^3`` (ellipsoid estimate, as in Laleh et al. 2022's data) and everything is held in
mm^3; mm and cm may be mixed (each row converted by its own unit), diameters and volumes may not (a
series of both is an error naming the first row of the other kind: the two scales differ by orders of
magnitude and a slip would be fitted as growth). Refused, naming the row: a negative or non-finite size,
an unknown unit, times out of order or repeated. A zero size is a lesion no longer measurable (complete
response) and is kept; a series of zeros only has nothing to fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medtwin.arrays import Array
from medtwin.errors import InputError
from medtwin.oncology.fitting import BatchFit, Prior, fit_batch
from medtwin.oncology.growth import LAWS

ELLIPSOID = 0.52
DIAMETER_MM = {"mm": 1.0, "cm": 10.0}
VOLUME_MM3 = {"mm3": 1.0, "cm3": 1000.0, "ml": 1000.0}
FALLBACK = ("gompertz", "exponential")  # the simpler laws tried, in order, when a series is too short


class MeasurementError(InputError):
    """Bad measurement input; ``field`` names the entry (e.g. ``row 3: size``)."""


@dataclass(frozen=True)
class Series:
    """One lesion: ``t_days`` (n,) from its first reading, ``volume_mm3`` (n,), ``start_day`` (the first
    reading's time as given)."""

    t_days: Array
    volume_mm3: Array
    start_day: float


def _volume_mm3(row: int, size: float, unit: str) -> tuple[float, str]:
    key = unit.strip().lower().replace("^", "").replace("³", "3")
    if key in DIAMETER_MM:
        return ELLIPSOID * (size * DIAMETER_MM[key]) ** 3, "diameter"
    if key in VOLUME_MM3:
        return size * VOLUME_MM3[key], "volume"
    raise MeasurementError(f"row {row}: unit", f"unknown unit {unit!r}; use mm or cm (diameter), "
                                               "mm3, cm3 or mL (volume)")


def series(times_days: Sequence[float], sizes: Sequence[float], units: Sequence[str],
           first_row: int = 1, rows: Sequence[int] | None = None) -> Series:
    """Check and convert one lesion's readings (rows numbered from ``first_row``, or ``rows``, in errors)."""
    if not (len(times_days) == len(sizes) == len(units)):
        raise MeasurementError("rows", "times, sizes and units differ in length")
    if not sizes:
        raise MeasurementError("rows", "no measurements")
    volumes: list[float] = []
    kinds: list[str] = []
    for i, (time, size, unit) in enumerate(zip(times_days, sizes, units, strict=True)):
        row = rows[i] if rows is not None else first_row + i
        if not (np.isfinite(time) and np.isfinite(size)):
            raise MeasurementError(f"row {row}", "time and size must be finite numbers")
        if size < 0:
            raise MeasurementError(f"row {row}: size", f"must not be negative, got {size}")
        if i and time <= times_days[i - 1]:
            what = "repeats" if time == times_days[i - 1] else "is earlier than"
            raise MeasurementError(f"row {row}: time", f"{time} {what} the previous reading's time "
                                                       f"{times_days[i - 1]}; sort the rows and merge repeats")
        volume, kind = _volume_mm3(row, size, unit)
        if kinds and kind != kinds[0]:
            raise MeasurementError(f"row {row}: unit", f"a {kind} ({unit}) in a series of {kinds[0]}s; "
                                                       "use one kind of size per lesion")
        volumes.append(volume)
        kinds.append(kind)
    if max(volumes) == 0:
        raise MeasurementError("size", "every size is 0: nothing to fit")
    t = np.asarray(times_days, dtype=float)
    return Series(t - t[0], np.asarray(volumes, dtype=float), float(t[0]))


def law_for(model: str, n: int) -> tuple[str, str]:
    """The law to fit to ``n`` readings when ``model`` is asked for without a prior, and why it differs: a
    law needs at least as many readings as parameters; else the first simpler law of :data:`FALLBACK`."""
    if LAWS[model].n_parameters <= n:
        return model, ""
    simpler = [m for m in FALLBACK if LAWS[m].n_parameters <= n]
    if not simpler:
        raise MeasurementError("rows", f"{n} reading(s): at least 2 are needed without a population prior")
    return simpler[0], (f"{n} readings cannot determine the {LAWS[model].n_parameters} parameters of {model}; "
                        f"fitted {simpler[0]} ({LAWS[simpler[0]].n_parameters} parameters) instead")


@dataclass(frozen=True)
class LesionFit:
    """A single-lesion fit: the law used (``model``), the one asked for, why they differ (``note``)."""

    requested: str
    model: str
    fit: BatchFit
    note: str

    @property
    def converged(self) -> bool:
        return bool(self.fit.converged[0])


def fit_lesion(lesion: Series, model: str, prior: Prior | None = None) -> LesionFit:
    """Fit one lesion. Without a population prior a law needs at least as many readings as parameters;
    with fewer the first simpler law of :data:`FALLBACK` that fits is used and ``note`` says so; fewer than
    two readings cannot be fitted without a prior. A fit that did not converge says so in ``note``."""
    if model not in LAWS:
        raise MeasurementError("model", f"unknown growth model {model!r}; known: {', '.join(LAWS)}")
    if prior is not None and prior.model != model:
        raise MeasurementError("prior", f"a population prior of {prior.model} cannot be used to fit {model}")
    used, note = (model, "") if prior is not None else law_for(model, len(lesion.t_days))
    fit = fit_batch(used, lesion.t_days[None, :], lesion.volume_mm3[None, :], prior=prior)
    if not fit.converged[0]:
        note = (note + "; " if note else "") + "the fit did not converge: treat its parameters as unreliable"
    return LesionFit(model, used, fit, note)
