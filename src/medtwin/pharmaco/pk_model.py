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
from dataclasses import replace

import numpy as np

from medtwin.arrays import Array
from medtwin.model.spec import DoseRoute, InputSpec, Model, OutputSpec, ParameterSpec, StateSpec
from medtwin.model.timeline import Timeline
from medtwin.pharmaco.dosing import DoseSchedule, Route
from medtwin.pharmaco.drug_files import INR_MODEL_UNITS
from medtwin.pharmaco.library import DRUG_FOLDER, DrugModel
from medtwin.pharmaco.pd import WARFARIN_PD_NAMES, warfarin_inr_rate
from medtwin.pharmaco.pk import PARAMETER_INFO, CompartmentModel, simulate_closed_form

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
    """The model of a library drug: typical values (no covariates) as defaults, between-subject SDs as the
    population distribution, the drug file (with its source) as the parameter file; PK, or PK + the INR
    response (:func:`warfarin_pkpd_model`) for a drug with the Hamberg INR parameters."""
    sd = {k: math.sqrt(float(drug.bsv.omega[j, j])) for j, k in enumerate(drug.bsv.names)}
    defaults = {k: p.value for k, p in drug.parameters.items()}
    pk = pk_model(drug.structure, name=f"PK_{drug.name}", defaults=defaults, prior_sd_log=sd,
                  source=drug.source,
                  parameter_file=drug.location or f"medtwin.pharmaco:{DRUG_FOLDER}/{drug.name}.toml")
    return warfarin_pkpd_model(pk, drug, sd) if drug.has_inr else pk


def warfarin_pkpd_model(pk: Model, drug: DrugModel, prior_sd_log: Mapping[str, float]) -> Model:
    """PK plus the warfarin INR transit model (Hamberg et al. 2007, :func:`medtwin.pharmaco.pd.warfarin_inr_rate`)
    on the generic interface: seven clotting-factor activity states (1 at baseline), output ``INR``."""
    extra = tuple(
        ParameterSpec(k, INR_MODEL_UNITS[k], drug.parameters[k].note, drug.parameters[k].source,
                      drug.parameters[k].value, float(prior_sd_log.get(k, 0.0)))
        for k in WARFARIN_PD_NAMES
    )
    n_pk, k_pk = len(pk.parameters), len(pk.states)
    central = pk.state_index("central")
    v1 = pk.parameter_index("V1")
    column = {k: n_pk + j for j, k in enumerate(WARFARIN_PD_NAMES)}
    pk_rhs = pk.rhs

    def rhs(t: float, y: Array, p: Array, u: Array) -> Array:
        dy = np.empty_like(y)
        dy[:, :k_pk] = pk_rhs(t, y[:, :k_pk], p[:, :n_pk], u)
        rate = warfarin_inr_rate({k: p[:, j] for k, j in column.items()})
        dy[:, k_pk:] = rate(y[:, central] / p[:, v1], y[:, k_pk:])
        return dy

    def observe(states: Array, p: Array) -> Array:
        concentration = states[..., central] / p[:, v1]
        clotting = np.clip(1.0 - states[..., k_pk + 5] * states[..., k_pk + 6], 0.0, None)
        inr = p[:, column["INRbase"]] + p[:, column["INRmax"]] * clotting ** p[:, column["lambda"]]
        return np.stack([concentration, inr], axis=-1)

    def start(p: Array) -> Array:
        return np.concatenate([np.zeros((p.shape[0], k_pk)), np.ones((p.shape[0], 7))], axis=1)

    return replace(
        pk,
        name=f"PKPD_{drug.name}",
        states=pk.states + tuple(StateSpec(f"A{i + 1}", "1", "clotting-factor activity relative to baseline")
                                 for i in range(7)),
        parameters=pk.parameters + extra,
        outputs=(pk.outputs[0], OutputSpec("INR", "1", "international normalised ratio")),
        rhs=rhs,
        observe=observe,
        initial_state=start,
        analytic=None,
        drifting=(*pk.drifting, "EC50"),
        nonnegative=pk.nonnegative,
        reference=f"{pk.reference}; INR: Hamberg et al. 2007 Clin Pharmacol Ther 81:529-538",
    )
