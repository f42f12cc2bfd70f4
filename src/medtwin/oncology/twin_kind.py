"""The ``tumour`` twin kind: Gompertz growth with Norton-Simon chemotherapy kill, on the generic framework.

Registered through the ``medtwin.twin_kinds`` entry point (``pyproject.toml``), so ``GET /twin-kinds``,
``POST /patients/{id}/twins/tumour/simulate|fit|assimilate|compare`` and ``medtwin twin ... tumour`` serve
it. The tumour-specific interfaces (``medtwin tumour``, ``/patients/{id}/tumour/...``: all seven laws,
batched fits, calibrated intervals, regimens and fractionation) are in :mod:`medtwin.oncology.service`.
"""

from __future__ import annotations

import numpy as np

from medtwin.arrays import Array
from medtwin.model.kinds import Chart, Control, Panel, Personalisation, TwinKind
from medtwin.model.parameters import load_parameters
from medtwin.model.spec import Model
from medtwin.oncology.models import chemo_model

TUMOUR_SIZE_LOINC = "21889-1"  # Size Tumor
VOLUME_NOISE_SOURCE = ("relative SD of volume readings about the fitted Gompertz curve in the Laleh 2022 "
                       "studies 1-3 (medtwin.oncology.fitting.population_prior)")


def _base(model: Model) -> Array:
    return np.asarray(load_parameters(model).row("typical"), dtype=float)


KIND = TwinKind(
    name="tumour",
    title="Tumour growth and chemotherapy response (Gompertz, Norton-Simon)",
    model_factory=chemo_model,
    base_parameters=_base,
    personalisation=Personalisation(fitted=("v0", "K", "omega", "effect"), observed_output="volume", noise_sd=10.0,
                                    proportional=0.15, noise_source=VOLUME_NOISE_SOURCE,
                                    observed_loinc=(TUMOUR_SIZE_LOINC,)),
    forecasts=("volume",),
    panel=Panel("Tumour", (Chart("volume", "mm3", "Lesion volume"),),
                (Control("chemotherapy", "input", "1", 0.0, 1.0, 1.0, "Chemotherapy exposure"),
                 Control("effect", "parameter", "1", 0.0, 5.0, 1.0, "Norton-Simon effect"))),
    example_scenario={"t_eval": {"start": 0.0, "stop": 168.0, "step": 7.0},
                      "inputs": {"chemotherapy": [[0.0, 1.0], [84.0, 0.0]]}},
    consumes_loinc=(TUMOUR_SIZE_LOINC,),
    description="lesion volume under chemotherapy; see medtwin tumour for the seven growth laws",
    drift_sd_log=0.02,
)
