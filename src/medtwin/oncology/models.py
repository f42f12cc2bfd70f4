"""The growth laws and the Norton-Simon chemotherapy model as :class:`medtwin.model.spec.Model` objects.

Each growth law is a one-state model (``volume`` in mm^3, time in days) whose ``analytic`` is the closed
form of :mod:`medtwin.oncology.growth` and whose ``rhs`` is the same law's ODE, so
:func:`medtwin.model.simulate.simulate` runs either and the tests compare them. ``gompertz_chemo`` adds a
chemotherapy exposure input (0 off, 1 on) with the Norton-Simon kill (:mod:`medtwin.oncology.treatment`);
it is the model of the ``tumour`` twin kind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from medtwin.arrays import Array
from medtwin.model.spec import InputSpec, Model, OutputSpec, ParameterSpec, StateSpec
from medtwin.oncology.growth import LAWS, rate, volume

if TYPE_CHECKING:
    from medtwin.model.timeline import Timeline

DATA = "medtwin.oncology:data/"
SOURCE = "Laleh et al. 2022 PLoS Comput Biol 18:e1009822 (studies 1-3, median fits); Benzekry et al. 2014"
_RANGES: dict[str, tuple[str, float, float, float]] = {
    # name: (unit, log-normal population SD (0: signed, not fitted by MapFit), lower, upper)
    "v0": ("mm3", 1.0, 1e-3, 1e7),
    "K": ("mm3", 1.0, 1e-3, 1e7),
    "omega": ("1/d", 1.0, 1e-5, 1.0),
    "lam": ("1", 0.0, -3.0, 3.0),
    "a": ("1/d", 0.0, -1.0, 1.0),
    "a0": ("1/d", 0.0, -1.0, 1.0),
    "a1": ("mm3/d", 1.0, 1e-6, 1e6),
    "a_pl": ("mm3^(1-gamma)/d", 0.0, -1e3, 1e3),
    "gamma": ("1", 0.0, 0.01, 0.99),
    "effect": ("1", 0.5, 0.0, 5.0),
}


def _parameter(name: str) -> ParameterSpec:
    unit, sd, lower, upper = _RANGES[name]
    return ParameterSpec(name, unit, name, SOURCE, prior_sd_log=sd, lower=lower, upper=upper)


def growth_model(name: str) -> Model:
    """One growth law of :data:`medtwin.oncology.growth.LAWS` as a model."""
    law = LAWS[name]

    def rhs(t: float, y: Array, p: Array, u: Array) -> Array:
        return rate(name, p, y)

    def analytic(model: Model, p: Array, timeline: Timeline) -> Array:
        return np.asarray(volume(name, p, np.asarray(timeline.t_eval)[None, :]).T[:, :, None], dtype=float)

    return Model(
        name=f"tumour_{name}",
        states=(StateSpec("volume", "mm3", "tumour (lesion) volume"),),
        parameters=tuple(_parameter(p) for p in law.parameters),
        inputs=(),
        outputs=(OutputSpec("volume", "mm3", "tumour (lesion) volume"),),
        rhs=rhs,
        reference=f"{law.description}; Benzekry et al. 2014 PLoS Comput Biol 10:e1003800",
        time_unit="d",
        initial_state=lambda p: np.asarray(p[:, :1], dtype=float),
        analytic=analytic,
        parameter_file=f"{DATA}{name}.toml",
        nonnegative=("volume",),
    )


def _chemo_rhs(t: float, y: Array, p: Array, u: Array) -> Array:
    v = np.maximum(y, 1e-300)
    k, omega, effect = p[:, 1:2], p[:, 2:3], p[:, 3:4]
    return np.asarray(omega * v * np.log(k / v) * (1.0 - effect * u[:, :1]), dtype=float)


def chemo_model() -> Model:
    """Gompertz growth with Norton-Simon chemotherapy kill during the exposure input."""
    return Model(
        name="tumour_gompertz_chemo",
        states=(StateSpec("volume", "mm3", "tumour (lesion) volume"),),
        parameters=tuple(_parameter(p) for p in ("v0", "K", "omega", "effect")),
        inputs=(InputSpec("chemotherapy", "1", "chemotherapy exposure (0 off, 1 on)", upper=1.0),),
        outputs=(OutputSpec("volume", "mm3", "tumour (lesion) volume"),),
        rhs=_chemo_rhs,
        reference="Gompertz growth with Norton-Simon kill (Norton & Simon 1977 Cancer Treat Rep 61:1307)",
        time_unit="d",
        initial_state=lambda p: np.asarray(p[:, :1], dtype=float),
        drifting=("omega", "effect"),
        parameter_file=f"{DATA}gompertz_chemo.toml",
        nonnegative=("volume",),
    )
