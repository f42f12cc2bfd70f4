"""A test-only twin kind: arterial blood pressure by the two-element Windkessel (Frank 1899).

``C dP/dt = Q(t) - P / R``: the arteries are one compliance ``C`` (mL/mmHg) draining through the peripheral
resistance ``R`` (mmHg*s/mL); ``Q`` (mL/s) is the inflow from the heart, piecewise constant; a volume bolus
``V`` (mL) raises the pressure by ``V / C`` at once. Everything else (simulate, fit, assimilate, what-if,
API routes, CLI commands, conformance) comes from the framework: this module, its parameter file and its
test are the only files of the kind.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from medtwin.model.kinds import Chart, Control, Panel, Personalisation, TwinKind, register
from medtwin.model.parameters import load_parameters
from medtwin.model.spec import DoseRoute, InputSpec, Model, OutputSpec, ParameterSpec, StateSpec

Array = NDArray[np.float64]
PARAMETER_FILE = str(Path(__file__).with_name("windkessel_params.csv"))
SOURCE = "Westerhof, Lankhaar & Westerhof 2009, Med Biol Eng Comput 47:131-141"
R, C, P0 = 0, 1, 2


def rhs(t: float, y: Array, p: Array, u: Array) -> Array:
    return np.asarray((u[:, :1] - y / p[:, R:R + 1]) / p[:, C:C + 1], dtype=float)


def _volume_to_pressure(volume_ml: Array, p: Array) -> Array:
    return np.asarray(volume_ml / p[:, C], dtype=float)


def _start(p: Array) -> Array:
    return np.asarray(p[:, P0:P0 + 1], dtype=float)


def make_model() -> Model:
    return Model(
        name="Windkessel2",
        states=(StateSpec("arterial_pressure", "mmHg", "pressure in the compliant arteries"),),
        parameters=(
            ParameterSpec("R", "mmHg*s/mL", "peripheral resistance", SOURCE, 1.0, 0.3, 0.3, 3.0),
            ParameterSpec("C", "mL/mmHg", "total arterial compliance", SOURCE, 1.5, 0.3, 0.3, 4.0),
            ParameterSpec("P0", "mmHg", "pressure at the start", SOURCE, 80.0, 0.0, 20.0, 200.0),
        ),
        inputs=(InputSpec("inflow", "mL/s", "blood flow out of the left ventricle", upper=600.0),),
        outputs=(OutputSpec("arterial_pressure", "mmHg", "arterial blood pressure"),),
        rhs=rhs,
        reference="Frank 1899; " + SOURCE,
        doses=(DoseRoute("volume_bolus", "mL", "arterial_pressure", "rapid intravascular volume",
                         scale=_volume_to_pressure, upper=1000.0),),
        time_unit="s",
        initial_state=_start,
        drifting=("R", "C"),
        parameter_file=PARAMETER_FILE,
        nonnegative=("arterial_pressure",),
    )


def _base(model: Model) -> Array:
    return load_parameters(model).row("adult")


KIND = TwinKind(
    name="windkessel",
    title="Arterial blood pressure (two-element Windkessel)",
    model_factory=make_model,
    base_parameters=_base,
    personalisation=Personalisation(fitted=("R", "C"), observed_output="arterial_pressure", noise_sd=2.0,
                                    observed_loinc=("8478-0",)),
    forecasts=("arterial_pressure",),
    panel=Panel("Blood pressure", (Chart("arterial_pressure", "mmHg", "Arterial pressure"),),
                (Control("inflow", "input", "mL/s", 0.0, 600.0, 90.0, "Cardiac inflow"),
                 Control("volume_bolus", "dose", "mL", 0.0, 1000.0, 250.0, "Fluid bolus"))),
    example_scenario={"t_eval": {"start": 0.0, "stop": 20.0, "step": 0.25}, "inputs": {"inflow": [[0.0, 90.0]]}},
    consumes_loinc=("8478-0",),
    device_metrics=("systolic_bp", "diastolic_bp"),
    description="test-only kind proving that a twin kind plugs in with three files",
)

register(KIND, replace=True)
