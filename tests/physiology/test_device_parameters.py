"""The default CGM sensor and insulin pump: the parameter sets in physiology/data/devices.toml, side by side with
the files simglucose 0.2.11 (the peer they come from) ships."""

from __future__ import annotations

import csv
from importlib import resources

import numpy as np
import pytest

from medtwin.physiology.devices import DEVICE_SOURCES, CGMSensor, InsulinPump


def _peer_row(file: str, name: str) -> dict[str, float]:
    text = resources.files("simglucose").joinpath("params", file).read_text(encoding="utf-8")
    row = next(r for r in csv.DictReader(text.splitlines()) if r["Name"] == name)
    return {k: float(v) for k, v in row.items() if k != "Name"}


def test_default_pump_is_simglucose_insulet() -> None:
    peer, pump = _peer_row("pump_params.csv", "Insulet"), InsulinPump()
    assert (pump.bolus_increment_u, pump.max_bolus_u) == (peer["inc_bolus"], peer["max_bolus"])
    assert (pump.basal_increment_u_per_h, pump.max_basal_u_per_h) == (peer["inc_basal"], peer["max_basal"])
    assert "Insulet" in DEVICE_SOURCES["pump"]


def test_default_sensor_is_simglucose_noise_model() -> None:
    peer, sensor = _peer_row("sensor_params.csv", "GuardianRT"), CGMSensor()
    assert (sensor.pacf, sensor.johnson_gamma, sensor.johnson_lambda_mg_dl, sensor.johnson_delta,
            sensor.johnson_xi_mg_dl) == (peer["PACF"], peer["gamma"], peer["lambda"], peer["delta"], peer["xi"])
    assert (sensor.sample_period_min, sensor.min_mg_dl) == (peer["sample_time"], peer["min"])
    assert sensor.max_mg_dl == 400.0  # our reportable range; simglucose clips at 600
    assert "Breton" in DEVICE_SOURCES["cgm"]


def test_defaults_can_be_overridden() -> None:
    doses = InsulinPump(max_bolus_u=10.0).bolus(np.array([12.34, 1.03]))
    assert doses.tolist() == pytest.approx([10.0, 1.05])  # clipped to the given limit; 0.05 U steps kept
