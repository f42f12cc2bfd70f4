"""Every drug file of the library (pharmaco/data/drugs/*.toml; a new file is picked up without an edit here)
passes the model contract, and its fast path (the closed form; the default solver for PK/INR) agrees with
the same model integrated tightly."""

from __future__ import annotations

import numpy as np
import pytest

from medtwin.model.kinds import kinds
from medtwin.model.parameters import load_parameters
from medtwin.model.simulate import simulate
from medtwin.model.timeline import Timeline
from medtwin.pharmaco.library import available_drugs, load_drug
from medtwin.pharmaco.pk_model import drug_model
from medtwin.solve import Dopri5

DRUGS = available_drugs()


@pytest.mark.parametrize("name", DRUGS)
def test_drug_is_a_registered_kind_with_units_and_a_sourced_parameter_file(name: str) -> None:
    assert f"drug-{name}" in kinds()
    model = drug_model(load_drug(name))
    assert all(p.unit and p.source for p in model.parameters)
    table = load_parameters(model)
    assert table.source and np.all(np.isfinite(table.values)) and np.all(table.values >= 0)


@pytest.mark.parametrize("name", DRUGS)
def test_closed_form_equals_the_ode_and_batches_equal_loops(name: str) -> None:
    drug = load_drug(name)
    model = drug_model(drug)
    route = "oral" if "oral" in model.dose_names else "iv_bolus"
    timeline = Timeline.from_dict(model, {
        "t_eval": {"start": 0, "stop": 72, "step": 0.5},
        "doses": [{"route": route, "time": t, "amount": 100.0} for t in (0.0, 12.0, 24.0)],
        "inputs": {"infusion_rate": [[36.0, 50.0], [38.0, 0.0]]}})
    base = load_parameters(model).values
    sd = np.array([p.prior_sd_log for p in model.parameters])
    rows = base * np.exp(np.random.default_rng(1).standard_normal((4, base.shape[1])) * sd)
    exact = simulate(model, rows, timeline)
    assert exact.method == ("analytic" if model.analytic is not None else "ode")
    integrated = simulate(model, rows, timeline, Dopri5(rtol=1e-10, atol=1e-12), method="ode")
    peak = np.max(np.abs(integrated.outputs))
    assert peak > 0 and np.all(np.isfinite(exact.outputs))
    assert np.max(np.abs(exact.outputs - integrated.outputs)) <= 1e-6 * peak
    loop = np.concatenate([simulate(model, rows[i:i + 1], timeline).outputs for i in range(4)], axis=1)
    # the closed form is per patient; an integrated batch shares adaptive steps (equal to the tolerance)
    tolerance = 1e-9 if exact.method == "analytic" else 1e-5
    assert np.max(np.abs(exact.outputs - loop)) <= tolerance * peak
