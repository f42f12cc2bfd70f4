"""Compartmental PK on the generic model interface: the same linear model, integrated or in closed form.

:func:`pk_model` declares a :class:`~medtwin.pharmaco.pk.CompartmentModel` as a
:class:`~medtwin.model.spec.Model`: amounts in mg, time in h, the ``iv_bolus`` and ``oral`` dose routes
(oral: bioavailability ``F`` and lag ``tlag`` declared on the route), an ``infusion_rate`` input (mg/h into
the central compartment) and the ``concentration`` output (mg/L; ``effect_site`` with an effect
compartment). Its ``analytic`` solution is :func:`medtwin.pharmaco.pk.simulate`'s closed form (superposition
of exponentials), which the generic :func:`~medtwin.model.simulate.simulate` dispatches to; the ODE path
integrates the same rate matrix. :func:`drug_model` builds it from a drug file of the library.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

from medtwin.model.spec import DoseRoute, InputSpec, Model, OutputSpec, ParameterSpec, StateSpec
from medtwin.model.timeline import Timeline
from medtwin.pharmaco.dosing import DoseSchedule, Route
from medtwin.pharmaco.library import DrugModel
from medtwin.pharmaco.pk import PARAMETER_INFO, CompartmentModel, simulate_closed_form

Array = NDArray[np.float64]
_DEFAULTS = {"F": 1.0, "tlag": 0.0}
_UPPER = {"F": 1.0}


def pk_model(structure: CompartmentModel, *, name: str = "", defaults: Mapping[str, float] | None = None,
             prior_sd_log: Mapping[str, float] | None = None, source: str = "",
             parameter_file: str = "") -> Model:
    """The generic-interface declaration of a compartmental PK structure (see module docstring)."""
    names = structure.parameter_names
    values = {**_DEFAULTS, **(defaults or {})}
    sd = dict(prior_sd_log or {})
    parameters = tuple(
        ParameterSpec(k, PARAMETER_INFO[k][0], PARAMETER_INFO[k][1], source, float(values.get(k, math.nan)),
                      float(sd.get(k, 0.0)), 0.0, _UPPER.get(k, math.inf))
        for k in names
    )
    states = tuple(StateSpec(s, u) for s, u in zip(structure.state_names, structure.state_units, strict=True))
    outputs = [OutputSpec("concentration", "mg/L", "central concentration")]
    if structure.effect_compartment:
        outputs.append(OutputSpec("effect_site", "mg/L", "effect-site concentration"))
    column = {k: j for j, k in enumerate(names)}
    central = structure.central_index
    v1 = column["V1"]

    def split(p: Array) -> dict[str, Array]:
        return {k: p[:, j] for k, j in column.items()}

    def rhs(t: float, y: Array, p: Array, u: Array) -> Array:
        a = structure.rate_matrix(split(p))
        dy = np.einsum("nij,nj->ni", a, y)
        dy[:, central] += u[:, 0]
        return np.asarray(dy, dtype=float)

    def observe(states_: Array, p: Array) -> Array:
        out = [states_[..., central] / p[:, v1]]
        if structure.effect_compartment:
            out.append(states_[..., len(structure.state_names) - 1])
        return np.stack(out, axis=-1)

    def analytic(model: Model, p: Array, timeline: Timeline) -> Array:
        n = p.shape[0]
        schedule = _schedule(timeline, n, model)
        result = simulate_closed_form(structure, split(p), schedule, np.asarray(timeline.t_eval, dtype=float), n)
        out = [result.concentration_mg_l.T]
        if result.effect_site_mg_l is not None:
            out.append(result.effect_site_mg_l.T)
        return np.stack(out, axis=-1)

    doses = [DoseRoute("iv_bolus", "mg", "central", "intravenous bolus", upper=1e5)]
    if structure.absorption:
        first = structure.state_names[structure.absorption_index]
        doses.append(DoseRoute("oral", "mg", first, "oral dose (bioavailability F, lag tlag)",
                               scale=lambda amount, p: np.asarray(amount * p[:, column["F"]], dtype=float),
                               lag="tlag", upper=1e5))
    label = f"{structure.compartments}cmt" + ("_oral" if structure.absorption else "_iv")
    return Model(
        name=name or f"PK_{label}" + (f"_transit{structure.transit}" if structure.transit else ""),
        states=states,
        parameters=parameters,
        inputs=(InputSpec("infusion_rate", "mg/h", "zero-order infusion into the central compartment", 1e4),),
        outputs=tuple(outputs),
        rhs=rhs,
        reference=source or "linear compartmental pharmacokinetics (Gabrielsson & Weiner, PK/PD data analysis)",
        doses=tuple(doses),
        time_unit="h",
        observe=observe,
        drifting=tuple(k for k in ("CL", "V1") if k in names),
        analytic=analytic if structure.has_closed_form else None,
        parameter_file=parameter_file,
        nonnegative=structure.state_names,
    )


def _schedule(timeline: Timeline, n: int, model: Model) -> DoseSchedule:
    """The timeline's doses and infusion steps as a dose schedule (per-patient amounts (n, m))."""
    times: list[float] = []
    amounts: list[Array] = []
    routes: list[Route] = []
    durations: list[float] = []
    for dose in timeline.doses:
        times.append(float(dose.time))
        amounts.append(np.broadcast_to(np.asarray(dose.amount, dtype=float), (n,)))
        routes.append(Route(dose.route))
        durations.append(0.0)
    rates = timeline.values_for(model, n)[:, :, 0]
    steps = np.append(np.asarray(timeline.input_times, dtype=float), float(timeline.t_eval[-1]))
    for k in range(rates.shape[1]):
        duration = float(steps[k + 1] - steps[k])
        if duration > 0 and np.any(rates[:, k] > 0):
            times.append(float(steps[k]))
            amounts.append(rates[:, k] * duration)
            routes.append(Route.IV_INFUSION)
            durations.append(duration)
    order = np.argsort(np.asarray(times, dtype=float), kind="stable")
    amount = np.stack(amounts, axis=1)[:, order] if amounts else np.zeros((n, 0))
    return DoseSchedule(
        time_h=np.asarray(times, dtype=float)[order],
        amount_mg=amount,
        route=tuple(routes[i] for i in order),
        duration_h=np.asarray(durations, dtype=float)[order],
    )


def drug_model(drug: DrugModel) -> Model:
    """The PK model of a library drug: typical values (no covariates) as defaults, between-subject SDs as the
    population distribution, the drug file (with its source) as the parameter file."""
    sd = {k: math.sqrt(float(drug.bsv.omega[j, j])) for j, k in enumerate(drug.bsv.names)}
    defaults = {k: p.value for k, p in drug.parameters.items()}
    return pk_model(drug.structure, name=f"PK_{drug.name}", defaults=defaults, prior_sd_log=sd,
                    source=drug.source, parameter_file=f"medtwin.pharmaco:data/drugs/{drug.name}.toml")
