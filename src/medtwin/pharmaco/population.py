"""Population variability: log-normal between-subject variability with a full covariance matrix,
and residual error (additive, proportional, combined). Randomness only via an explicit Generator.

:func:`simulate_population` draws a virtual population and simulates it in one batched call: the closed form
when the model has one, else the compiled ODE engine (a step size per subject, :mod:`medtwin.solve.kernels`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from medtwin.arrays import Array
from medtwin.pharmaco.dosing import DoseSchedule
from medtwin.pharmaco.errors import PharmacoInputError
from medtwin.pharmaco.pk import CompartmentModel, PkResult, simulate
from medtwin.solve import Solver


@dataclass(frozen=True)
class BetweenSubjectVariability:
    """``P_i = P_typical_i * exp(eta_i)``, ``eta ~ N(0, omega)``; ``omega`` on the log scale (variances)."""

    names: tuple[str, ...]
    omega: Array

    def __post_init__(self) -> None:
        om = np.asarray(self.omega, dtype=float)
        p = len(self.names)
        if om.shape != (p, p):
            raise PharmacoInputError("omega", f"must be a {p}x{p} matrix for {self.names}")
        if not np.allclose(om, om.T):
            raise PharmacoInputError("omega", "must be symmetric")
        if p and np.min(np.linalg.eigvalsh(om)) < -1e-12:
            raise PharmacoInputError("omega", "must be positive semi-definite")
        object.__setattr__(self, "omega", om)

    @staticmethod
    def from_variances(
        names: Sequence[str], variances: Sequence[float], correlations: Mapping[tuple[str, str], float] | None = None
    ) -> BetweenSubjectVariability:
        v = np.asarray(variances, dtype=float)
        om = np.diag(v)
        for (a, b), r in (correlations or {}).items():
            i, j = list(names).index(a), list(names).index(b)
            om[i, j] = om[j, i] = r * np.sqrt(v[i] * v[j])
        return BetweenSubjectVariability(tuple(names), om)

    def sample_eta(self, n: int, rng: np.random.Generator) -> Array:
        """(n, p) draws of eta. Zero-variance directions stay exactly 0."""
        p = len(self.names)
        w, vec = np.linalg.eigh(self.omega)
        root = vec * np.sqrt(np.clip(w, 0.0, None))
        return np.asarray(rng.standard_normal((n, p)) @ root.T, dtype=float)

    def apply(self, typical: Mapping[str, ArrayLike], eta: Array) -> dict[str, Array]:
        out = {k: np.asarray(v, dtype=float) for k, v in typical.items()}
        for j, name in enumerate(self.names):
            out[name] = np.asarray(out[name], dtype=float) * np.exp(eta[:, j])
        return out


@dataclass(frozen=True)
class ResidualError:
    """Combined residual error: ``y = f + sqrt(additive_sd^2 + (proportional * f)^2) * e``.

    ``additive_sd`` in the concentration unit, ``proportional`` as a fraction (0.1 = 10%).
    Additive-only and proportional-only are the special cases with the other term 0.
    """

    additive_sd: float = 0.0
    proportional: float = 0.0

    def __post_init__(self) -> None:
        if self.additive_sd < 0 or self.proportional < 0 or (self.additive_sd == 0 and self.proportional == 0):
            raise PharmacoInputError("residual", "additive_sd and proportional must be >= 0, not both 0")

    def sd(self, prediction: ArrayLike) -> Array:
        f = np.asarray(prediction, dtype=float)
        return np.asarray(np.sqrt(self.additive_sd**2 + (self.proportional * f) ** 2), dtype=float)

    def sample(self, prediction: ArrayLike, rng: np.random.Generator) -> Array:
        f = np.asarray(prediction, dtype=float)
        return np.asarray(f + self.sd(f) * rng.standard_normal(f.shape), dtype=float)


@dataclass(frozen=True)
class PopulationPk:
    """A simulated population: the drawn ``parameters`` (n,) each, ``eta`` (n, p), the ``result`` and, with a
    residual error model, ``observed_mg_l`` (n, T) (else None)."""

    parameters: dict[str, Array]
    eta: Array
    result: PkResult
    observed_mg_l: Array | None


def simulate_population(structure: CompartmentModel, typical: Mapping[str, ArrayLike],
                        bsv: BetweenSubjectVariability, schedule: DoseSchedule, t_h: ArrayLike, n: int,
                        rng: np.random.Generator, *, residual: ResidualError | None = None, method: str = "auto",
                        solver: Solver | None = None) -> PopulationPk:
    """Draw ``n`` subjects around ``typical`` with ``bsv`` and simulate ``schedule`` for all of them at once."""
    if n < 1:
        raise PharmacoInputError("n", f"must be at least 1 subject, got {n}")
    eta = bsv.sample_eta(n, rng)
    broadcast = {k: np.broadcast_to(np.asarray(v, dtype=float), (n,)) for k, v in typical.items()}
    parameters = bsv.apply(broadcast, eta)
    result = simulate(structure, parameters, schedule, t_h, method=method, solver=solver)
    observed = None if residual is None else residual.sample(result.concentration_mg_l, rng)
    return PopulationPk(parameters, eta, result, observed)
