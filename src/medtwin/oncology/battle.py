"""The "model battle" protocol of TumorGrowth.jl on Laleh et al. 2022 data, on arrays (no file access).

Lesions with at least ``min_readings`` readings; the last ``held_out`` readings of each are held out; every
law is fitted (in one batch per law, broad prior: with >= 4 training readings the population prior of
:func:`fit_with_population_prior` made every law's held-out error worse on studies 1-3, so the battle
does not use it) to the rest and scored by the mean absolute error of the normalised
volume on the held-out readings. Prediction intervals come from :mod:`medtwin.oncology.intervals`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from medtwin.arrays import Array
from medtwin.oncology.fitting import BatchFit, Prior, fit_batch, population_prior
from medtwin.oncology.growth import LAWS

BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class Lesions:
    """Padded series: ``ids`` (L,), times ``t`` (L, T) days from the first reading, volumes ``y`` (L, T),
    ``mask`` (L, T) and ``n`` (L,) readings per lesion."""

    ids: tuple[str, ...]
    t: Array
    y: Array
    mask: BoolArray

    @property
    def n(self) -> NDArray[np.int64]:
        return np.asarray(self.mask.sum(axis=1), dtype=np.int64)

    @classmethod
    def from_rows(cls, ids: list[str], times: Array, volumes: Array) -> Lesions:
        """Group flat rows (id, time, volume) into padded series, each sorted by time (stable)."""
        order: dict[str, list[int]] = {}
        for i, lesion in enumerate(ids):
            order.setdefault(lesion, []).append(i)
        width = max(len(v) for v in order.values())
        t = np.zeros((len(order), width))
        y = np.zeros((len(order), width))
        mask = np.zeros((len(order), width), dtype=bool)
        for row, rows in enumerate(order.values()):
            idx = np.asarray(rows)
            idx = idx[np.argsort(times[idx], kind="stable")]
            t[row, :len(idx)] = times[idx] - times[idx[0]]
            y[row, :len(idx)] = volumes[idx]
            mask[row, :len(idx)] = True
        return cls(tuple(order), t, y, mask)

    def select(self, keep: BoolArray) -> Lesions:
        return Lesions(tuple(i for i, k in zip(self.ids, keep, strict=True) if k), self.t[keep], self.y[keep],
                       self.mask[keep])

    def split(self, held_out: int) -> tuple[Lesions, Array, Array]:
        """Training series (the last ``held_out`` readings masked off) and the held-out (L, held_out) times
        and volumes."""
        n = self.n
        rows = np.arange(len(n))[:, None]
        cols = n[:, None] - held_out + np.arange(held_out)[None, :]
        train_mask = self.mask & (np.arange(self.mask.shape[1])[None, :] < (n - held_out)[:, None])
        return Lesions(self.ids, self.t, self.y, train_mask), self.t[rows, cols], self.y[rows, cols]


@dataclass(frozen=True)
class BattleResult:
    model: str
    fit: BatchFit
    predicted: Array  # (L, held_out)
    observed: Array

    @property
    def mae(self) -> float:
        return float(np.mean(np.abs(self.predicted - self.observed)))


def fit_with_population_prior(model: str, train: Lesions) -> tuple[BatchFit, Prior]:
    """Two stages: a broad-prior fit of every lesion, the population prior from it, then every lesion's MAP
    fit under that prior (empirical Bayes; Benzekry et al. 2014)."""
    first = fit_batch(model, train.t, train.y, train.mask)
    prior = population_prior(first, "two-stage population fit")
    return fit_batch(model, train.t, train.y, train.mask, prior), prior


def battle(lesions: Lesions, models: tuple[str, ...] = tuple(LAWS), min_readings: int = 6,
           held_out: int = 2) -> dict[str, BattleResult]:
    """Run the protocol for every model; results by model name."""
    chosen = lesions.select(lesions.n >= min_readings)
    train, t_out, y_out = chosen.split(held_out)
    results = {}
    for model in models:
        fit = fit_batch(model, train.t, train.y, train.mask)
        results[model] = BattleResult(model, fit, fit.predict(t_out), y_out)
    return results
