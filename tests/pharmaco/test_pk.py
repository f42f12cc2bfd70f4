"""PK: closed form vs ODE (shared solver), analytic references, steady state, bad dosing input."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError
from scipy.integrate import solve_ivp

from medtwin.pharmaco.dosing import DoseEvent, DoseSchedule, Regimen, Route
from medtwin.pharmaco.errors import DoseError, PharmacoInputError
from medtwin.pharmaco.pk import CompartmentModel, simulate, steady_state
from medtwin.pharmaco.units import parse_amount_mg

PARAMS = {
    1: dict(CL=[4.0, 7.5], V1=[30.0, 55.0]),
    2: dict(CL=[4.0, 7.5], V1=[30.0, 55.0], Q2=[9.0, 3.0], V2=[40.0, 25.0]),
    3: dict(CL=[4.0, 7.5], V1=[30.0, 55.0], Q2=[9.0, 3.0], V2=[40.0, 25.0], Q3=[1.0, 2.5], V3=[80.0, 120.0]),
}
ORAL = dict(ka=[1.3, 0.7], F=[0.8, 0.95], tlag=[0.0, 0.4])


def _regimens(n_doses: int) -> dict[str, Regimen]:
    return {
        "bolus": Regimen(dose="500 mg", route=Route.IV_BOLUS, interval_h=8, n_doses=n_doses),
        "infusion": Regimen(dose="1 g", route=Route.IV_INFUSION, interval_h=12, n_doses=n_doses, infusion_duration_h=1.5),
        "oral": Regimen(dose="250 mg", route=Route.ORAL, interval_h=12, n_doses=n_doses),
    }


@pytest.mark.parametrize("compartments", [1, 2, 3])
@pytest.mark.parametrize("kind", ["bolus", "infusion", "oral"])
@pytest.mark.parametrize("n_doses", [1, 6])
def test_closed_form_matches_ode(compartments: int, kind: str, n_doses: int) -> None:
    regimen = _regimens(n_doses)[kind]
    model = CompartmentModel(compartments, absorption=kind == "oral")
    params = dict(PARAMS[compartments], **(ORAL if kind == "oral" else {}))
    t = np.linspace(0.0, regimen.end_h + 24.0, 400)
    exact = simulate(model, params, regimen.schedule(), t, method="closed_form").concentration_mg_l
    ode = simulate(model, params, regimen.schedule(), t, method="ode").concentration_mg_l
    mask = exact > 1e-6 * exact.max()
    rel = np.abs(ode[mask] - exact[mask]) / exact[mask]
    assert rel.max() < 1e-6


def test_one_compartment_bolus_is_textbook_exponential() -> None:
    model = CompartmentModel(1)
    t = np.linspace(0, 30, 61)
    c = simulate(model, {"CL": 5.0, "V1": 50.0}, Regimen(dose="0.5 g", route="iv_bolus", interval_h=24).schedule(), t)
    np.testing.assert_allclose(c.concentration_mg_l[0], 500 / 50 * np.exp(-0.1 * t), rtol=1e-12)


def test_oral_bateman_function_with_lag() -> None:
    ka, k, v, f, lag, dose = 1.5, 0.2, 40.0, 0.9, 0.75, 300.0
    model = CompartmentModel(1, absorption=True)
    t = np.linspace(0, 24, 97)
    sched = Regimen(dose="300 mg", route="oral", interval_h=24).schedule()
    c = simulate(model, {"CL": k * v, "V1": v, "ka": ka, "F": f, "tlag": lag}, sched, t).concentration_mg_l[0]
    tt = np.clip(t - lag, 0, None)
    bateman = f * dose * ka / (v * (ka - k)) * (np.exp(-k * tt) - np.exp(-ka * tt))
    np.testing.assert_allclose(c, bateman, rtol=1e-10, atol=1e-12)


def test_infusion_plateau_and_accumulation_ratio() -> None:
    cl, v, tau = 6.0, 60.0, 12.0
    k = cl / v
    model = CompartmentModel(1)
    # steady state after many bolus doses: trough ratio to a single dose = 1 / (1 - exp(-k tau))
    sched = Regimen(dose="1 g", route="iv_bolus", interval_h=tau, n_doses=60).schedule()
    t = np.array([59 * tau + tau - 1e-9, 59 * tau])
    c = simulate(model, {"CL": cl, "V1": v}, sched, t).concentration_mg_l[0]
    single_peak = 1000 / v
    ratio = 1.0 / (1.0 - np.exp(-k * tau))
    np.testing.assert_allclose(c[1], single_peak * ratio, rtol=1e-9)
    ss = steady_state(model, {"CL": cl, "V1": v}, 1000.0, tau, Route.IV_BOLUS, np.array([0.0, tau / 2]))
    np.testing.assert_allclose(ss[0, 0], single_peak * ratio, rtol=1e-12)
    np.testing.assert_allclose(ss[0, 1], single_peak * ratio * np.exp(-k * tau / 2), rtol=1e-12)


@pytest.mark.parametrize("route", [Route.ORAL, Route.IV_INFUSION, Route.IV_BOLUS])
def test_steady_state_matches_long_multiple_dosing(route: Route) -> None:
    model = CompartmentModel(2, absorption=route is Route.ORAL)
    params = dict(PARAMS[2], **(ORAL if route is Route.ORAL else {}))
    duration = 2.0 if route is Route.IV_INFUSION else 0.0
    tau = 12.0
    reg = Regimen(dose="400 mg", route=route, interval_h=tau, n_doses=200, infusion_duration_h=duration)
    within = np.linspace(0, tau, 13)[:-1]
    long = simulate(model, params, reg.schedule(), 190 * tau + within).concentration_mg_l
    ss = steady_state(model, params, 400.0, tau, route, within, infusion_duration_h=duration)
    np.testing.assert_allclose(long, ss, rtol=1e-8)


def test_average_steady_state_equals_dose_rate_over_clearance() -> None:
    model = CompartmentModel(3, absorption=True)
    params = dict(PARAMS[3], **ORAL)
    tau = 8.0
    t = np.linspace(0, tau, 4001)
    ss = steady_state(model, params, 200.0, tau, Route.ORAL, t)
    average = np.trapezoid(ss, t, axis=1) / tau
    expected = np.array(ORAL["F"]) * 200.0 / tau / np.array(PARAMS[3]["CL"])
    np.testing.assert_allclose(average, expected, rtol=1e-6)


def test_transit_compartments_match_scipy() -> None:
    model = CompartmentModel(1, absorption=True, transit=3)
    p = {"CL": 3.0, "V1": 20.0, "ka": 1.0, "F": 1.0, "tlag": 0.0, "ktr": 2.5}
    t = np.linspace(0, 24, 49)
    ours = simulate(model, p, Regimen(dose="100 mg", route="oral", interval_h=24).schedule(), t).concentration_mg_l[0]

    def rhs(_t: float, y: np.ndarray) -> np.ndarray:
        d = np.zeros(5)
        d[0] = -2.5 * y[0]
        d[1] = 2.5 * (y[0] - y[1])
        d[2] = 2.5 * (y[1] - y[2])
        d[3] = 2.5 * y[2] - 1.0 * y[3]
        d[4] = 1.0 * y[3] - 3.0 / 20.0 * y[4]
        return d

    ref = solve_ivp(rhs, (0, 24), [100.0, 0, 0, 0, 0], t_eval=t, rtol=1e-11, atol=1e-12).y[4] / 20.0
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-9)
    with pytest.raises(PharmacoInputError, match="method"):
        simulate(model, p, Regimen(dose="100 mg", route="oral", interval_h=24).schedule(), t, method="closed_form")


def test_irregular_history_and_per_patient_amounts() -> None:
    events = [
        DoseEvent(time_h=0, amount="1 g", route="iv_infusion", infusion_duration_h=1),
        DoseEvent(time_h=9.5, amount="750 mg", route="iv_infusion", infusion_duration_h=2),
        DoseEvent(time_h=30, amount="500000 ug", route="iv_bolus"),
    ]
    sched = DoseSchedule.from_events(events)
    model = CompartmentModel(2)
    t = np.linspace(0, 48, 200)
    a = simulate(model, PARAMS[2], sched, t, method="closed_form").concentration_mg_l
    o = simulate(model, PARAMS[2], sched, t, method="ode").concentration_mg_l
    np.testing.assert_allclose(a, o, rtol=1e-6)
    scaled = DoseSchedule(sched.time_h, np.outer([1.0, 2.0], sched.amount_mg), sched.route, sched.duration_h)
    b = simulate(model, PARAMS[2], scaled, t).concentration_mg_l
    np.testing.assert_allclose(b[1], 2.0 * a[1], rtol=1e-12)
    np.testing.assert_allclose(b[0], a[0], rtol=1e-12)


def test_effect_compartment_closed_form_matches_ode() -> None:
    model = CompartmentModel(1, absorption=True, effect_compartment=True)
    p = {"CL": 5.0, "V1": 40.0, "ka": 1.1, "ke0": 0.3}
    sched = Regimen(dose="200 mg", route="oral", interval_h=12, n_doses=3).schedule()
    t = np.linspace(0.1, 48, 100)
    a = simulate(model, p, sched, t, method="closed_form")
    o = simulate(model, p, sched, t, method="ode")
    assert a.effect_site_mg_l is not None and o.effect_site_mg_l is not None
    np.testing.assert_allclose(a.effect_site_mg_l, o.effect_site_mg_l, rtol=1e-6)
    # hysteresis: effect-site peak comes after the plasma peak
    assert t[np.argmax(a.effect_site_mg_l[0, :40])] > t[np.argmax(a.concentration_mg_l[0, :40])]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(dose="500", interval_h=12), "dose"),
        (dict(dose="500 mL", interval_h=12), "dose"),
        (dict(dose="500 mg", interval_h=-12), "interval_h"),
        (dict(dose="500 mg", interval_h=0), "interval_h"),
        (dict(dose="1 g", route="iv_infusion", interval_h=8, infusion_duration_h=10), "infusion_duration_h"),
        (dict(dose="1 g", route="iv_infusion", interval_h=8), "infusion_duration_h"),
    ],
)
def test_bad_regimens_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Regimen(**kwargs)  # type: ignore[arg-type]
    assert field in str(info.value)


def test_bad_parameters_name_the_parameter() -> None:
    model = CompartmentModel(2)
    sched = Regimen(dose="1 g", route="iv_bolus", interval_h=12).schedule()
    with pytest.raises(PharmacoInputError, match="V2"):
        simulate(model, {"CL": 1.0, "V1": 10.0, "Q2": 1.0}, sched, [1.0])
    with pytest.raises(PharmacoInputError, match="CL"):
        simulate(model, {"CL": -1.0, "V1": 10.0, "Q2": 1.0, "V2": 3.0}, sched, [1.0])
    with pytest.raises(ValidationError, match="amount"):
        DoseEvent(time_h=0, amount="ten mg")
    with pytest.raises(DoseError, match="dose"):
        parse_amount_mg("12 furlongs")
