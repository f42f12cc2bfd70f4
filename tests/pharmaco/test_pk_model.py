"""The PK and warfarin PK/INR models on the generic model interface, against the long-standing pharmaco
implementations (same closed form; the PD ODE as a peer) and the INR's analytic steady state."""

from __future__ import annotations

import numpy as np
import pytest

from medtwin.model.simulate import simulate
from medtwin.model.timeline import Timeline
from medtwin.pharmaco.dosing import DoseSchedule, Route
from medtwin.pharmaco.library import load_drug
from medtwin.pharmaco.pd import simulate_pkpd, warfarin_inr, warfarin_inr_rate, warfarin_inr_steady_state
from medtwin.pharmaco.pk import CompartmentModel
from medtwin.pharmaco.pk import simulate as pk_simulate
from medtwin.pharmaco.pk_model import drug_model, pk_model


def test_generic_closed_form_is_pk_simulate() -> None:
    structure = CompartmentModel(compartments=2, absorption=True)
    model = pk_model(structure)
    rows = np.array([[5.0, 30.0, 8.0, 60.0, 1.2, 0.8, 0.5], [3.0, 20.0, 4.0, 40.0, 0.9, 1.0, 0.0]])
    timeline = Timeline.from_dict(model, {"t_eval": {"start": 0, "stop": 48, "step": 0.5}, "doses": [
        {"route": "oral", "time": 0, "amount": 200}, {"route": "iv_bolus", "time": 12, "amount": 50}]})
    schedule = DoseSchedule(np.array([0.0, 12.0]), np.array([200.0, 50.0]), (Route.ORAL, Route.IV_BOLUS),
                            np.zeros(2))
    reference = pk_simulate(structure, dict(zip(model.parameter_names, rows.T, strict=True)), schedule,
                            timeline.t_eval).concentration_mg_l
    generic = simulate(model, rows, timeline)
    assert generic.method == "analytic"
    assert np.array_equal(generic.output("concentration").T, reference)
    ode = simulate(model, rows, timeline, method="ode")
    assert np.max(np.abs(ode.output("concentration").T - reference)) < 1e-5 * reference.max()


def test_warfarin_inr_model_matches_the_pd_peer_and_its_steady_state() -> None:
    drug = load_drug("warfarin")
    model = drug_model(drug)
    assert model.output_names == ("concentration", "INR") and model.analytic is None
    row = model.defaults()
    params = {k: row[:, j] for j, k in enumerate(model.parameter_names)}
    doses = [{"route": "oral", "time": 24.0 * d, "amount": 5.0} for d in range(10)]
    timeline = Timeline.from_dict(model, {"t_eval": {"start": 0, "stop": 240, "step": 2}, "doses": doses})
    generic = simulate(model, row, timeline)
    schedule = DoseSchedule(24.0 * np.arange(10.0), np.full(10, 5.0), (Route.ORAL,) * 10, np.zeros(10))
    peer = simulate_pkpd(drug.structure, drug.pk_parameters(params), schedule, timeline.t_eval,
                         warfarin_inr_rate(params), np.ones((1, 7)), warfarin_inr(params))
    assert np.max(np.abs(generic.output("INR")[:, 0] - peer.response[0])) < 1e-4
    assert generic.output("INR")[-1, 0] > 1.2  # ten days of 5 mg raise the INR
    # constant concentration (a steady infusion into the central compartment): INR -> the analytic steady state
    rate = 0.5  # mg/h
    infusion = Timeline.from_dict(model, {"t_eval": {"start": 0, "stop": 2000, "step": 50},
                                          "inputs": {"infusion_rate": [[0.0, rate]]}})
    steady = simulate(model, row, infusion)
    concentration = rate / params["CL"][0]
    assert steady.output("concentration")[-1, 0] == pytest.approx(concentration, rel=1e-4)
    expected = warfarin_inr_steady_state(concentration, {k: v[0] for k, v in params.items()})
    assert steady.output("INR")[-1, 0] == pytest.approx(float(expected), rel=1e-3)
