"""Devices and behaviour as separate pluggable objects: CGM sensor, insulin pump, basal-bolus controller.

The default sensor and pump are parameter sets with a source: ``physiology/data/devices.toml``
(:data:`DEVICE_SOURCES` quotes the sources).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

import numpy as np
from scipy.interpolate import CubicSpline

from medtwin.arrays import Array
from medtwin.physiology.errors import PhysiologyInputError

_FILE: Final[dict[str, dict[str, Any]]] = tomllib.loads(
    resources.files("medtwin.physiology").joinpath("data", "devices.toml").read_text(encoding="utf-8"))
#: the source of each default device parameter set ("cgm", "pump")
DEVICE_SOURCES: Final = {device: str(table["source"]) for device, table in _FILE.items()}
_CGM: Final[dict[str, float]] = {k: float(v) for k, v in _FILE["cgm"].items() if k != "source"}
_PUMP: Final[dict[str, float]] = {k: float(v) for k, v in _FILE["pump"].items() if k != "source"}


@dataclass(frozen=True)
class CGMSensor:
    """CGM with the published error model of Breton & Kovatchev 2008 (J Diabetes Sci Technol 2(5):853-862).

    Noise is generated every 15 min as ``e_1 = v_1, e_k = PACF (e_{k-1} + v_k)`` with ``v ~ N(0, 1)``,
    transformed by a Johnson SU distribution ``xi + lambda sinh((e - gamma) / delta)`` and interpolated with
    a cubic spline to the sampling period; readings are clipped to the device range (39-400 mg/dL here,
    simglucose uses 39-600). Default coefficients as distributed with simglucose 0.2.11 (sensor_params.csv),
    from ``physiology/data/devices.toml`` ``[cgm]``.
    """

    sample_period_min: float = _CGM["sample_period_min"]
    min_mg_dl: float = _CGM["min_mg_dl"]
    max_mg_dl: float = _CGM["max_mg_dl"]
    pacf: float = _CGM["pacf"]
    johnson_gamma: float = _CGM["johnson_gamma"]
    johnson_lambda_mg_dl: float = _CGM["johnson_lambda_mg_dl"]
    johnson_delta: float = _CGM["johnson_delta"]
    johnson_xi_mg_dl: float = _CGM["johnson_xi_mg_dl"]
    noise: bool = True

    def __post_init__(self) -> None:
        if not self.sample_period_min > 0:
            raise PhysiologyInputError("sample_period_min", "must be positive")
        if not self.min_mg_dl < self.max_mg_dl:
            raise PhysiologyInputError("max_mg_dl", "must exceed min_mg_dl")

    def sample_times(self, horizon_min: float) -> Array:
        return np.arange(0.0, horizon_min + 1e-9, self.sample_period_min)

    def noise_at(self, times_min: Array, n: int, rng: np.random.Generator) -> Array:
        """Noise (mg/dL) at ``times_min`` for ``n`` independent sensors, shape (len(times), n)."""
        times = np.asarray(times_min, dtype=float)
        if not self.noise:
            return np.zeros((times.size, n))
        n15 = int(np.ceil(times.max() / 15.0)) + 2 if times.size else 2
        v = rng.standard_normal((n15, n))
        e = np.empty_like(v)
        e[0] = v[0]
        for k in range(1, n15):  # loop over 15-min time steps, vectorised over sensors
            e[k] = self.pacf * (e[k - 1] + v[k])
        eps = self.johnson_xi_mg_dl + self.johnson_lambda_mg_dl * np.sinh(
            (e - self.johnson_gamma) / self.johnson_delta
        )
        spline = CubicSpline(np.arange(n15) * 15.0, eps, axis=0)
        return np.asarray(spline(times), dtype=float)

    def read(self, glucose_mg_dl: Array, noise_mg_dl: Array) -> Array:
        """Device reading: true glucose plus noise, clipped to the reportable range."""
        return np.clip(glucose_mg_dl + noise_mg_dl, self.min_mg_dl, self.max_mg_dl)


@dataclass(frozen=True)
class InsulinPump:
    """Insulin pump: rounds to its increments and clips to its limits (defaults: Insulet Omnipod, from
    ``physiology/data/devices.toml`` ``[pump]``)."""

    bolus_increment_u: float = _PUMP["bolus_increment_u"]
    max_bolus_u: float = _PUMP["max_bolus_u"]
    basal_increment_u_per_h: float = _PUMP["basal_increment_u_per_h"]
    max_basal_u_per_h: float = _PUMP["max_basal_u_per_h"]

    def bolus(self, units: Array) -> Array:
        rounded = np.round(np.asarray(units, dtype=float) / self.bolus_increment_u) * self.bolus_increment_u
        return np.asarray(np.round(np.clip(rounded, 0.0, self.max_bolus_u), 6), dtype=np.float64)

    def basal(self, u_per_h: Array) -> Array:
        rounded = (
            np.round(np.asarray(u_per_h, dtype=float) / self.basal_increment_u_per_h)
            * self.basal_increment_u_per_h
        )
        return np.asarray(np.round(np.clip(rounded, 0.0, self.max_basal_u_per_h), 6), dtype=np.float64)


@dataclass(frozen=True)
class BasalBolusController:
    """Standard basal-bolus therapy: ``bolus = carbs / CR + (G > threshold) (G - target) / CF``.

    ``carb_ratio_g_per_unit`` and ``correction_factor_mg_dl_per_unit`` are per patient (n,).
    """

    carb_ratio_g_per_unit: Array
    correction_factor_mg_dl_per_unit: Array
    target_mg_dl: float = 140.0
    correction_threshold_mg_dl: float = 150.0

    def bolus(self, carbs_g: float | Array, glucose_reading_mg_dl: Array) -> Array:
        correction = np.where(
            glucose_reading_mg_dl > self.correction_threshold_mg_dl,
            (glucose_reading_mg_dl - self.target_mg_dl) / self.correction_factor_mg_dl_per_unit,
            0.0,
        )
        return np.maximum(np.asarray(carbs_g) / self.carb_ratio_g_per_unit + correction, 0.0)
