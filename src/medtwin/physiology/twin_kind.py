"""The type 1 diabetes twin as a twin kind (entry point ``glucose`` of ``medtwin.twin_kinds``).

Model: UVA/Padova 2008 on the generic interface; base patient: ``adult#001`` of the shipped parameter file;
personalisation: the four parameters :mod:`.calibrate` fits (``Gb``, ``Vmx``, ``kp3``, ``kabs``) from CGM,
with log-normal priors whose SDs are those of the 30 published virtual patients (computed from the file).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np

from medtwin.arrays import Array
from medtwin.model.kinds import Chart, Control, PagePanel, Panel, PanelSeries, Personalisation, TwinKind
from medtwin.model.parameters import load_parameters
from medtwin.model.spec import Model
from medtwin.physiology.calibrate import FITTED
from medtwin.physiology.uva_padova import PMOL_PER_UNIT, UvaPadova2008
from medtwin.vocab.metrics import CARBS, GLUCOSE, INSULIN_BASAL, INSULIN_BOLUS, metrics

BASE_PATIENT = "adult#001"
CGM_NOISE_SD_MG_DL = 10.0  # the calibrator's default (medtwin.physiology.calibrate.TwinCalibrator)


def _model() -> Model:
    return UvaPadova2008


@cache
def _cohort() -> Array:
    return load_parameters(UvaPadova2008).values


def _base(model: Model) -> Array:
    return load_parameters(model).row(BASE_PATIENT)


def _prior_sd_log() -> dict[str, float]:
    """Log-SD of each fitted parameter over the published cohort."""
    values = _cohort()
    return {k: float(np.log(values[:, UvaPadova2008.parameter_index(k)]).std(ddof=1)) for k in FITTED}


def _example() -> dict[str, Any]:
    """One day: the base patient's basal rate, a 50 g breakfast eaten over 10 min at 07:00 with a 5 U bolus."""
    row = _base(UvaPadova2008)[0]
    basal = float(row[UvaPadova2008.parameter_index("u2ss")] * row[UvaPadova2008.parameter_index("BW")]
                  / PMOL_PER_UNIT)
    return {"t_eval": {"start": 0.0, "stop": 1440.0, "step": 5.0},
            "inputs": {"insulin_infusion": [[0.0, basal]], "carbohydrate_intake": [[420.0, 5.0], [430.0, 0.0]]},
            "doses": [{"route": "insulin_bolus", "time": 420.0, "amount": 5.0}]}


GLUCOSE_KIND = TwinKind(
    name="glucose",
    title="Type 1 diabetes (UVA/Padova 2008)",
    model_factory=_model,
    base_parameters=_base,
    personalisation=Personalisation(
        fitted=FITTED, observed_output="subcutaneous_glucose", noise_sd=CGM_NOISE_SD_MG_DL,
        prior_sd_log=_prior_sd_log(), noise_source="medtwin.physiology.calibrate default CGM noise",
        observed_loinc=metrics()[GLUCOSE].loinc),
    forecasts=("subcutaneous_glucose",),
    panel=Panel("Glucose", (Chart("subcutaneous_glucose", "mg/dL", "Glucose (CGM)"),),
                (Control("carbohydrate_intake", "input", "g/min", 0.0, 100.0, 5.0, "Carbohydrate eaten"),
                 Control("insulin_infusion", "input", "U/min", 0.0, 0.5, 0.02, "Basal insulin"),
                 Control("insulin_bolus", "dose", "U", 0.0, 50.0, 5.0, "Insulin bolus"))),
    example_scenario=_example(),
    consumes_loinc=metrics()[GLUCOSE].loinc,
    device_metrics=(GLUCOSE, INSULIN_BOLUS, INSULIN_BASAL, CARBS),
    alert_rules=("glucose-episodes", "predicted-hypo"),
    description="UVA/Padova type 1 diabetes model: CGM glucose from meals, basal and bolus insulin",
    drift_sd_log=0.05 / np.sqrt(60.0),  # the live filter's drift, 0.05 per sqrt(h), in per sqrt(min)
    # the patient page: CGM first for diabetes (SNOMED CT 46635009 type 1, 44054006 type 2), insulin or CGM data
    page_panel=PagePanel(
        key="cgm", title="Glucose (CGM)", order=10,
        series=(PanelSeries("device", GLUCOSE, "CGM glucose"),),
        conditions=("46635009", "44054006"), medications=("insulin",), data=(GLUCOSE,),
        events=(INSULIN_BOLUS, CARBS)),
)
