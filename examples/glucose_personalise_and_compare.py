"""Example: personalise a T1D twin from 3 days of synthetic CGM data, then compare regimens for tomorrow.

Run: ``.venv/bin/python examples/glucose_personalise_and_compare.py``
"""

from __future__ import annotations

import numpy as np

from medtwin.physiology.calibrate import TwinCalibrator
from medtwin.physiology.scenario import Regimen
from medtwin.physiology.synthetic import synthetic_log
from medtwin.physiology.uva_padova import virtual_patients
from medtwin.physiology.whatif import compare_regimens


def main() -> None:
    rng = np.random.default_rng(11)
    patient = virtual_patients(["adult#002"])
    log, _truth = synthetic_log(patient, 3, rng)  # what a clinic would see: noisy CGM, meals, boluses, basal
    calibrator = TwinCalibrator(exclude=("adult#002",)).fit(log)
    for key, value in calibrator.params_.items():
        print(f"{key:5s} = {value:.4g} +/- {calibrator.param_sd_[key]:.2g} (true {patient.get(key)[0]:.4g})")
    tomorrow = {
        "meals": [
            {"at": "07:00", "carbs_g": 50},
            {"at": "12:00", "carbs_g": 70},
            {"at": "19:00", "carbs_g": 80},
        ]
    }
    ensemble = calibrator.posterior_samples(30, rng)
    result = compare_regimens(
        ensemble,
        tomorrow,
        [
            Regimen(),
            Regimen(name="pre-bolus 20 min", bolus_offset_min=-20),
            Regimen(name="basal +10%", basal_scale=1.1),
        ],
        rng=rng,
    )
    for outcome in result.outcomes:
        m = outcome.metrics_median
        print(
            f"{outcome.regimen.name:18s} TIR {m.time_in_range_70_180_percent:5.1f}% "
            f"(5-95%: {outcome.time_in_range_p5_percent:.0f}-{outcome.time_in_range_p95_percent:.0f}), "
            f"mean {m.mean_mg_dl:.0f} mg/dL"
        )


if __name__ == "__main__":
    main()
