"""UVA/Padova 2008 type 1 diabetes model (13 states), vectorised over patients.

Equations: Dalla Man, Rizza & Cobelli 2007, IEEE TBME 54(10):1740-1749 (oral glucose meal model with the
nonlinear gastric emptying ``kempt(Qsto)``), with the subcutaneous insulin (Isc1, Isc2) and subcutaneous
glucose (Gs) compartments of Kovatchev et al. 2009, J Diabetes Sci Technol 3(1):44-55, in the form of the
academic UVA/Padova simulator as distributed with simglucose 0.2.11 (including its conventions: the
"amount of the last meal" ``D`` is the stomach content at meal start plus carbohydrate eaten since,
and derivatives of non-negative compartments are frozen at zero).

State vector per patient (14 columns): the 13 model states below plus ``D`` (the last-meal amount,
mg), a piecewise-constant memory that only changes at meal events (it has zero derivative).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numba import cfunc, njit
from numpy.typing import NDArray

from medtwin.arrays import Array
from medtwin.model.spec import DoseRoute, InputSpec, Model, OutputSpec, ParameterSpec, StateSpec
from medtwin.physiology import insulin_chain as chain
from medtwin.physiology.errors import PhysiologyInputError
from medtwin.physiology.parameters import ParameterTable, load_parameter_set
from medtwin.solve.kernels import (
    EXACT_SIGNATURE,
    JUMP_SIGNATURE,
    RHS_SIGNATURE,
    STOP_SIGNATURE,
    CompiledModel,
    register,
)

SOURCE = "Dalla Man et al. 2007 IEEE TBME 54(10):1740-9; values: UVA/Padova academic simulator via simglucose 0.2.11"
PMOL_PER_UNIT = chain.PMOL_PER_UNIT  # pmol of insulin per international unit, one number for RHS and closed form

STATES = (
    StateSpec("qsto1", "mg", "glucose in stomach, solid phase"),
    StateSpec("qsto2", "mg", "glucose in stomach, liquid phase"),
    StateSpec("qgut", "mg", "glucose in intestine"),
    StateSpec("Gp", "mg/kg", "glucose mass in plasma and rapidly equilibrating tissues"),
    StateSpec("Gt", "mg/kg", "glucose mass in slowly equilibrating tissues"),
    StateSpec("Ip", "pmol/kg", "insulin mass in plasma"),
    StateSpec("X", "pmol/L", "insulin action on glucose utilisation"),
    StateSpec("I1", "pmol/L", "delayed insulin, first compartment"),
    StateSpec("Id", "pmol/L", "delayed insulin signal acting on production"),
    StateSpec("Il", "pmol/kg", "insulin mass in liver"),
    StateSpec("Isc1", "pmol/kg", "subcutaneous insulin, non-monomeric"),
    StateSpec("Isc2", "pmol/kg", "subcutaneous insulin, monomeric"),
    StateSpec("Gs", "mg/kg", "subcutaneous glucose"),
    StateSpec("D", "mg", "amount of the last meal (event memory, zero derivative)"),
)
N_MODEL_STATES = 13
_N_STATES = len(STATES)

_PARAMETER_META = {
    "BW": ("kg", "body weight"),
    "EGPb": ("mg/kg/min", "basal endogenous glucose production"),
    "Gb": ("mg/dL", "basal plasma glucose"),
    "Ib": ("pmol/L", "basal plasma insulin"),
    "kabs": ("1/min", "intestinal absorption rate"),
    "kmax": ("1/min", "maximal gastric emptying rate"),
    "kmin": ("1/min", "minimal gastric emptying rate"),
    "b": ("1", "fraction of the meal at which kempt falls to (kmax+kmin)/2"),
    "d": ("1", "fraction of the meal at which kempt recovers to (kmax+kmin)/2"),
    "Vg": ("dL/kg", "glucose distribution volume"),
    "Vi": ("L/kg", "insulin distribution volume"),
    "Vmx": ("mg/kg/min per pmol/L", "insulin-dependent utilisation slope (peripheral insulin sensitivity)"),
    "Km0": ("mg/kg", "Michaelis-Menten constant of utilisation"),
    "k1": ("1/min", "rate Gp -> Gt"),
    "k2": ("1/min", "rate Gt -> Gp"),
    "p2u": ("1/min", "rate of insulin action on utilisation"),
    "m1": ("1/min", "liver -> plasma insulin rate"),
    "m2": ("1/min", "plasma -> liver insulin rate"),
    "m4": ("1/min", "peripheral insulin degradation rate"),
    "m30": ("1/min", "hepatic insulin extraction rate"),
    "ki": ("1/min", "delay of insulin action on production"),
    "kp1": ("mg/kg/min", "extrapolated EGP at zero glucose and insulin"),
    "kp2": ("1/min", "liver glucose effectiveness"),
    "kp3": ("mg/kg/min per pmol/L", "insulin action on the liver (hepatic insulin sensitivity)"),
    "f": ("1", "fraction of intestinal absorption appearing in plasma"),
    "ke1": ("1/min", "glomerular filtration rate"),
    "ke2": ("mg/kg", "renal threshold of glucose"),
    "Fsnc": ("mg/kg/min", "insulin-independent utilisation"),
    "Vm0": ("mg/kg/min", "insulin-independent part of utilisation Vm"),
    "kd": ("1/min", "subcutaneous insulin degradation / transfer Isc1 -> Isc2"),
    "ka1": ("1/min", "absorption of non-monomeric insulin"),
    "ka2": ("1/min", "absorption of monomeric insulin"),
    "ksc": ("1/min", "plasma -> subcutaneous glucose rate"),
    "u2ss": ("pmol/kg/min", "steady-state basal insulin infusion"),
}
PARAMETER_NAMES = tuple(_PARAMETER_META)
PARAMETERS = tuple(ParameterSpec(n, u, d, SOURCE) for n, (u, d) in _PARAMETER_META.items())
INPUTS = (
    InputSpec("carbohydrate_intake", "g/min", "carbohydrate eaten per minute", upper=100.0),
    InputSpec("insulin_infusion", "U/min", "subcutaneous insulin delivery rate", upper=0.5),
)
OUTPUTS = (OutputSpec("subcutaneous_glucose", "mg/dL", "Gs / Vg, what a CGM measures"),)
_I = {name: i for i, name in enumerate(PARAMETER_NAMES)}


_NONNEGATIVE = (3, 4, 5, 9, 10, 11, 12)
# parameter positions, resolved once (the compiled equations see them as constants)
(_BW, _KMAX, _KMIN, _KABS, _B, _D, _F, _KP1, _KP2, _KP3, _KE1, _KE2, _K1, _K2, _FSNC, _VM0, _VMX, _KM0, _M1,
 _M2, _M4, _M30, _KA1, _KA2, _KD, _VI, _P2U, _IB, _KI, _KSC) = (
    _I[k] for k in ("BW", "kmax", "kmin", "kabs", "b", "d", "f", "kp1", "kp2", "kp3", "ke1", "ke2", "k1", "k2",
                    "Fsnc", "Vm0", "Vmx", "Km0", "m1", "m2", "m4", "m30", "ka1", "ka2", "kd", "Vi", "p2u", "Ib",
                    "ki", "ksc"))


@njit(cache=True)
def derivatives(x: Any, g: Any, carbs_g_per_min: float, insulin_u_per_min: float, out: Any) -> None:
    """The model equations, written once, for one patient: ``x`` 14 states, ``g`` 34 parameters, the two
    inputs; writes the 14 derivatives into ``out``. Compiled (numba); ``derivatives.py_func`` is the same code
    on plain Python floats and lists."""
    bw = g[_BW]
    kmax, kmin, kabs = g[_KMAX], g[_KMIN], g[_KABS]
    b, d = g[_B], g[_D]
    meal = carbs_g_per_min * 1000.0  # g/min -> mg/min
    insulin = insulin_u_per_min * PMOL_PER_UNIT / bw  # U/min -> pmol/kg/min
    qsto = x[0] + x[1]
    dbar = x[13]
    if dbar > 0:
        aa = 5.0 / (2.0 * dbar * (1.0 - b))
        cc = 5.0 / (2.0 * dbar * d)
        # kmin + (kmax - kmin) / 2 (tanh(A) - tanh(B) + 2), with tanh(x) = 1 - 2 / (e^{2x} + 1): two exponentials
        # cost half of two libm tanh calls (the largest part of this function); exact at +-inf
        # (exponents capped at 700: past it the fraction is 0 to double precision, and Python's exp would raise)
        rise = 1.0 / (math.exp(min(2.0 * aa * (qsto - b * dbar), 700.0)) + 1.0)
        fall = 1.0 / (math.exp(min(2.0 * cc * (qsto - d * dbar), 700.0)) + 1.0)
        kgut = kmin + (kmax - kmin) * (1.0 + fall - rise)
    else:
        kgut = kmax
    rate_of_appearance = g[_F] * kabs * x[2] / bw
    egp = g[_KP1] - g[_KP2] * x[3] - g[_KP3] * x[8]
    ke2 = g[_KE2]
    renal = g[_KE1] * (x[3] - ke2) if x[3] > ke2 else 0.0
    k1, k2 = g[_K1], g[_K2]
    utilisation = (g[_VM0] + g[_VMX] * x[6]) * x[4] / (g[_KM0] + x[4])
    m1, m2, m4, m30 = g[_M1], g[_M2], g[_M4], g[_M30]
    ka1, ka2, kd = g[_KA1], g[_KA2], g[_KD]
    plasma_insulin = x[5] / g[_VI]
    p2u, ki = g[_P2U], g[_KI]
    out[0] = meal - kmax * x[0]
    out[1] = kmax * x[0] - kgut * x[1]
    out[2] = kgut * x[1] - kabs * x[2]
    out[3] = max(egp, 0.0) + rate_of_appearance - g[_FSNC] - renal - k1 * x[3] + k2 * x[4]
    out[4] = -utilisation + k1 * x[3] - k2 * x[4]
    out[5] = -(m2 + m4) * x[5] + m1 * x[9] + ka1 * x[10] + ka2 * x[11]
    out[6] = p2u * (plasma_insulin - g[_IB]) - p2u * x[6]
    out[7] = -ki * (x[7] - plasma_insulin)
    out[8] = -ki * (x[8] - x[7])
    out[9] = m2 * x[5] - (m1 + m30) * x[9]
    out[10] = insulin - (ka1 + kd) * x[10]
    out[11] = kd * x[10] - ka2 * x[11]
    out[12] = g[_KSC] * (x[3] - x[12])
    out[13] = 0.0  # the last-meal memory D only changes at meal events
    # non-negative compartments: derivative frozen where the state is negative (simulator convention)
    for i in _NONNEGATIVE:
        if not x[i] >= 0:
            out[i] = 0.0


#: the linear insulin chain the compiled engine solves in closed form (:mod:`.insulin_chain`): Ip, Il, Isc1, Isc2
INSULIN_CHAIN = chain.STATES
if tuple(STATES[i].name for i in INSULIN_CHAIN) != ("Ip", "Il", "Isc1", "Isc2"):  # pragma: no cover - layout
    raise RuntimeError("insulin_chain's state positions do not match UVA/Padova's states")
_N_PARAMETERS = len(PARAMETER_NAMES)


def kernel_parameters(p: Array) -> Array:
    """Parameter rows (n, 34) with the insulin chain's per-patient constants appended (n, 34 +
    ``insulin_chain.N_DERIVED``, i.e. 34 + 26): the rows the compiled engine's functions read (computed once
    per run, vectorised)."""
    p = np.asarray(p, dtype=float)
    names = ("BW", "ka1", "kd", "ka2", "m1", "m2", "m4", "m30")
    derived = chain.derived_columns(*(p[:, _I[name]] for name in names))
    return np.ascontiguousarray(np.column_stack([p, derived]))


@cfunc(EXACT_SIGNATURE, cache=True)
def _insulin_kernel(s: float, y0: Any, p: Any, u: Any, out: Any) -> None:  # the engine's closed-form states
    chain.chain(s, y0, p, _N_PARAMETERS, u[1], out)


@cfunc(EXACT_SIGNATURE, cache=True)
def _insulin_stages_kernel(h: float, y0: Any, p: Any, u: Any, out: Any) -> None:  # ... at the stage offsets
    chain.chain_stages(h, y0, p, _N_PARAMETERS, u[1], out, _N_STATES)


@cfunc(RHS_SIGNATURE, cache=True)
def _rhs_kernel(t: float, y: Any, p: Any, u: Any, dy: Any) -> None:  # the engine's per-patient form
    derivatives(y, p, u[0], u[1], dy)


@njit(cache=True)
def _rows(y: Any, p: Any, u: Any, out: Any) -> None:
    for i in range(y.shape[0]):
        derivatives(y[i], p[i], u[i, 0], u[i, 1], out[i])


def rhs(t: float, y: Array, p: Array, u: Array) -> Array:
    """Pure vectorised right-hand side; ``y`` (n, 14), ``p`` (n, 34), ``u`` (n, 2) -> ``dy/dt`` (n, 14)."""
    out = np.empty(y.shape)
    _rows(np.ascontiguousarray(y, dtype=float), np.ascontiguousarray(p, dtype=float),
          np.ascontiguousarray(u, dtype=float), out)
    return out


def rhs_scalar(t: float, y: Sequence[float], p: Sequence[float], u: Sequence[float]) -> list[float]:
    """The same equations for one patient on plain floats (:func:`derivatives` run as Python): ``y`` 14 states,
    ``p`` 34 parameters, ``u`` 2 inputs -> 14 derivatives."""
    out = [0.0] * len(STATES)
    derivatives.py_func(y, p, u[0], u[1], out)
    return out


@njit(cache=True)
def meal_memory_step(y: Any, u_new: Any, u_old: Any) -> None:
    """Input-step jump of one patient: the last-meal memory ``D`` restarts at a meal's first eating minute
    (plus what is in the stomach) and grows by what is eaten each further minute, as the academic simulator
    does."""
    now = u_new[0] * 1000.0
    if now > 0:
        y[13] = y[13] + now if u_old[0] > 0 else y[0] + y[1] + now


@cfunc(STOP_SIGNATURE, cache=True)
def _eating(u: Any) -> bool:  # every minute with carbohydrate eaten is a stop (D is updated there)
    return bool(u[0] > 0)


@cfunc(JUMP_SIGNATURE, cache=True)
def _meal_memory_kernel(y: Any, u_new: Any, u_old: Any) -> None:  # the engine's per-patient form
    meal_memory_step(y, u_new, u_old)


@njit(cache=True)
def _meal_memory_rows(y: Any, u_new: Any, u_old: Any) -> None:
    for i in range(y.shape[0]):
        meal_memory_step(y[i], u_new[i], u_old[i])


def _meal_memory(t: float, y: Array, p: Array, u_new: Array, u_old: Array) -> Array:
    """:func:`meal_memory_step` for every patient (the model's ``on_input_step``)."""
    y = np.ascontiguousarray(y, dtype=float)
    _meal_memory_rows(y, np.ascontiguousarray(u_new, dtype=float), np.ascontiguousarray(u_old, dtype=float))
    return y


def _eating_steps(u: Array) -> NDArray[np.bool_]:
    """Every input step with carbohydrate eaten needs a solver stop (``D`` is updated there)."""
    return np.asarray(np.any(u[:, :, 0] > 0, axis=0))


def _insulin_units_to_pmol_per_kg(units: Array, p: Array) -> Array:
    return np.asarray(units * PMOL_PER_UNIT / p[:, _BW], dtype=float)


def _observe(states: Array, p: Array) -> Array:
    return np.asarray((states[..., 12] / p[:, _I["Vg"]])[..., None], dtype=float)


def basal_state(p: Array) -> Array:
    """(n, 14) the basal steady state of parameter rows ``p`` (n, 34): the relations of Dalla Man et al. 2007
    used by :func:`steady_state_parameters`, for the states only (a generic model's initial state)."""
    g = {name: p[:, j] for name, j in _I.items()}
    gpb = g["Gb"] * g["Vg"]
    renal = np.where(gpb > g["ke2"], g["ke1"] * (gpb - g["ke2"]), 0.0)
    gtb = (g["Fsnc"] - g["EGPb"] + renal + g["k1"] * gpb) / g["k2"]
    ipb = g["Ib"] * g["Vi"]
    ilb = g["m2"] * ipb / (g["m1"] + g["m30"])
    isc1 = g["u2ss"] / (g["ka1"] + g["kd"])
    state = np.zeros((p.shape[0], len(STATES)))
    state[:, 3], state[:, 4], state[:, 5] = gpb, gtb, ipb
    state[:, 7] = state[:, 8] = g["Ib"]
    state[:, 9], state[:, 10], state[:, 11], state[:, 12] = ilb, isc1, g["kd"] * isc1 / g["ka2"], gpb
    return state


def _steady_state(p: Array) -> Array:
    """Parameter rows with ``Vm0``, ``kp1`` and ``u2ss`` recomputed for the basal steady state (see
    :func:`steady_state_parameters`): a fit or a draw that moves ``Gb`` keeps the patient at rest."""
    n = p.shape[0]
    rows = PatientParameters(names=("row",) * n, values=np.array(p, dtype=float),
                             initial_state=np.zeros((n, len(STATES))), carb_ratio_g_per_unit=np.ones(n),
                             correction_factor_mg_dl_per_unit=np.ones(n), total_daily_insulin_units=np.ones(n))
    return steady_state_parameters(rows).values


INSULIN_BOLUS = DoseRoute("insulin_bolus", "U", "Isc1", "subcutaneous insulin bolus",
                          scale=_insulin_units_to_pmol_per_kg, upper=50.0)
#: Parameters an ensemble filter may estimate online (see :mod:`.assimilation`).
DRIFTING = ("Vmx", "kp3", "kp1", "kabs", "kmax", "kmin", "p2u")

UvaPadova2008 = Model(
    name="UvaPadova2008", reference=SOURCE, time_unit="min",
    parameter_file="medtwin.physiology:data/uva_padova_2008_patients.csv",
    # declarations
    states=STATES, parameters=PARAMETERS, inputs=INPUTS, outputs=OUTPUTS, doses=(INSULIN_BOLUS,),
    # dynamics: the right-hand side (array and plain-float forms), start and observation
    rhs=rhs, rhs_scalar=rhs_scalar, initial_state=basal_state, observe=_observe,
    # meals: the meal-size memory (state D) is updated at each input step; every step with carbohydrate eaten is a stop
    on_input_step=_meal_memory, input_stops=_eating_steps,
    # estimation: what filters may let drift, which states stay >= 0, what a fit recomputes
    drifting=DRIFTING, nonnegative=tuple(STATES[i].name for i in _NONNEGATIVE), derive=_steady_state,
)
#: the compiled engine integrates this model patient by patient (medtwin.solve.kernels)
COMPILED = CompiledModel(rhs=_rhs_kernel, step_jump=_meal_memory_kernel, needs_stop=_eating, exact=_insulin_kernel,
                         exact_stages=_insulin_stages_kernel, exact_states=INSULIN_CHAIN,
                         prepare=kernel_parameters)
register(rhs, COMPILED)


@dataclass(frozen=True)
class PatientParameters:
    """A batch of ``n`` patients: model parameters (n, 34), initial states (n, 14) and therapy settings."""

    names: tuple[str, ...]
    values: Array
    initial_state: Array
    carb_ratio_g_per_unit: Array
    correction_factor_mg_dl_per_unit: Array
    total_daily_insulin_units: Array

    def __post_init__(self) -> None:
        n = len(self.names)
        if self.values.shape != (n, len(PARAMETER_NAMES)):
            raise PhysiologyInputError(
                "values", f"expected shape {(n, len(PARAMETER_NAMES))}, got {self.values.shape}"
            )
        if self.initial_state.shape != (n, len(STATES)):
            raise PhysiologyInputError("initial_state", f"expected shape {(n, len(STATES))}")

    @property
    def n(self) -> int:
        return len(self.names)

    def get(self, name: str) -> Array:
        return self.values[:, _I[name]]

    def with_values(self, **updates: Array | float) -> PatientParameters:
        values = self.values.copy()
        for key, value in updates.items():
            if key not in _I:
                raise PhysiologyInputError(key, "unknown UVA/Padova parameter")
            values[:, _I[key]] = value
        return replace(self, values=values)

    def basal_rate_u_per_min(self) -> Array:
        """Steady-state basal insulin rate, U/min: ``u2ss * BW / 6000``."""
        return self.get("u2ss") * self.get("BW") / PMOL_PER_UNIT

    def subcutaneous_glucose(self, states: Array) -> Array:
        """Output Gs / Vg in mg/dL for states shaped (..., n, 14)."""
        return states[..., 12] / self.get("Vg")

    def take(self, index: Array | list[int]) -> PatientParameters:
        idx = np.asarray(index, dtype=int)
        return PatientParameters(
            names=tuple(self.names[i] for i in idx),
            values=self.values[idx],
            initial_state=self.initial_state[idx],
            carb_ratio_g_per_unit=self.carb_ratio_g_per_unit[idx],
            correction_factor_mg_dl_per_unit=self.correction_factor_mg_dl_per_unit[idx],
            total_daily_insulin_units=self.total_daily_insulin_units[idx],
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "names": list(self.names),
            "parameters": {k: self.values[:, i].tolist() for k, i in _I.items()},
            "initial_state": {s.name: self.initial_state[:, j].tolist() for j, s in enumerate(STATES)},
            "carb_ratio_g_per_unit": self.carb_ratio_g_per_unit.tolist(),
            "correction_factor_mg_dl_per_unit": self.correction_factor_mg_dl_per_unit.tolist(),
            "total_daily_insulin_units": self.total_daily_insulin_units.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PatientParameters:
        try:
            names = tuple(str(x) for x in data["names"])
            params = data["parameters"]
            init = data["initial_state"]
            values = np.column_stack([np.asarray(params[k], dtype=np.float64) for k in PARAMETER_NAMES])
            state = np.column_stack([np.asarray(init[s.name], dtype=np.float64) for s in STATES])
        except KeyError as exc:
            raise PhysiologyInputError(str(exc.args[0]), "missing from patient parameters") from None
        except (TypeError, ValueError) as exc:
            raise PhysiologyInputError("parameters", f"malformed: {exc}") from None
        return cls(
            names=names,
            values=values,
            initial_state=state,
            carb_ratio_g_per_unit=np.asarray(data["carb_ratio_g_per_unit"], dtype=float),
            correction_factor_mg_dl_per_unit=np.asarray(
                data["correction_factor_mg_dl_per_unit"], dtype=float
            ),
            total_daily_insulin_units=np.asarray(data["total_daily_insulin_units"], dtype=float),
        )


def from_table(table: ParameterTable) -> PatientParameters:
    """Build :class:`PatientParameters` from a parameter table (checks every needed column is there)."""
    values = np.column_stack([table.column(name) for name in PARAMETER_NAMES])
    states = np.column_stack(
        [table.column(f"x0_{s.name}") for s in STATES[:N_MODEL_STATES]] + [np.zeros(len(table.names))]
    )
    states[:, 13] = states[:, 0] + states[:, 1]
    return PatientParameters(
        names=table.names,
        values=values,
        initial_state=states,
        carb_ratio_g_per_unit=table.column("CR"),
        correction_factor_mg_dl_per_unit=table.column("CF"),
        total_daily_insulin_units=table.column("TDI"),
    )


def virtual_patients(
    names: list[str] | tuple[str, ...] | None = None, parameter_set: str = "uva_padova_2008"
) -> PatientParameters:
    """The shipped virtual patients (all 30 if ``names`` is None), e.g. ``virtual_patients(["adult#001"])``."""
    table = load_parameter_set(parameter_set)
    if names is not None:
        table = table.rows(list(names))
    return from_table(table)


def steady_state_parameters(params: PatientParameters) -> PatientParameters:
    """Recompute the basal steady state (Gp, Gt, insulin states, kp1, Vm0, u2ss) from Gb, Ib, EGPb.

    Follows the steady-state relations of Dalla Man et al. 2007 (eqs. for Gtb, Vm0, kp1, Ilb) and the
    subcutaneous steady state Isc1 = u2ss/(ka1+kd), Isc2 = kd Isc1 / ka2. Used when parameters are
    averaged or personalised so that the patient rests at Gb under its basal insulin.
    """
    g = {name: params.get(name) for name in PARAMETER_NAMES}
    gpb = g["Gb"] * g["Vg"]
    renal = np.where(gpb > g["ke2"], g["ke1"] * (gpb - g["ke2"]), 0.0)
    gtb = (g["Fsnc"] - g["EGPb"] + renal + g["k1"] * gpb) / g["k2"]
    vm0 = (g["EGPb"] - g["Fsnc"] - renal) * (g["Km0"] + gtb) / gtb
    ipb = g["Ib"] * g["Vi"]
    ilb = g["m2"] * ipb / (g["m1"] + g["m30"])
    kp1 = g["EGPb"] + g["kp2"] * gpb + g["kp3"] * g["Ib"]
    u2ss = (g["m2"] + g["m4"]) * ipb - g["m1"] * ilb
    isc1 = u2ss / (g["ka1"] + g["kd"])
    isc2 = g["kd"] * isc1 / g["ka2"]
    if np.any(vm0 <= 0) or np.any(gtb <= 0):
        raise PhysiologyInputError("EGPb", "no positive steady state for these parameters")
    updated = params.with_values(Vm0=vm0, kp1=kp1, u2ss=u2ss)
    state = np.zeros_like(params.initial_state)
    state[:, 3] = gpb
    state[:, 4] = gtb
    state[:, 5] = ipb
    state[:, 7] = g["Ib"]
    state[:, 8] = g["Ib"]
    state[:, 9] = ilb
    state[:, 10] = isc1
    state[:, 11] = isc2
    state[:, 12] = gpb
    return replace(updated, initial_state=state)
