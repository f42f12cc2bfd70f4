"""Every registered twin kind (entry points, registrations, the test-only kinds) and its model pass the
framework's contract: units declared, parameter file with a source, batched run equal to a loop of single
runs, same seed same result, finite outputs over the documented input range, filter state round-trips
through JSON, and a descriptor consistent with the model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tests.conformance.harness import all_kinds, example, observations, population

from medtwin.alerts.registry import rule_names
from medtwin.model.assimilate import EnsembleFilter
from medtwin.model.kinds import TwinKind
from medtwin.model.parameters import load_parameters
from medtwin.model.simulate import simulate
from medtwin.model.timeline import Timeline
from medtwin.twin import kind_service
from medtwin.vocab.metrics import metrics

KINDS = all_kinds()
NAMES = sorted(KINDS)


@pytest.fixture(params=NAMES)
def kind(request: pytest.FixtureRequest) -> TwinKind:
    return KINDS[request.param]


def test_the_registry_holds_the_shipped_and_the_test_kinds() -> None:
    assert "glucose" in KINDS and "windkessel" in KINDS
    assert {f"drug-{d}" for d in ("warfarin", "vancomycin", "theophylline")} <= set(KINDS)


def test_units_declared(kind: TwinKind) -> None:
    model = kind.model
    for group in (model.states, model.parameters, model.inputs, model.outputs, model.doses):
        for item in group:
            assert item.unit.strip(), f"{model.name}: {item.name} has no unit"
    assert model.time_unit in ("s", "min", "h", "d")  # d: the tumour twin (growth over months)
    assert model.outputs, f"{model.name} declares no output"


def test_parameter_file_with_a_source(kind: TwinKind) -> None:
    model = kind.model
    table = load_parameters(model)
    assert table.source.strip(), f"{model.name}: parameter file without a source"
    assert table.values.shape[1] == len(model.parameters)
    assert np.all(np.isfinite(table.values))
    assert all(p.source.strip() for p in model.parameters), f"{model.name}: a parameter without a source"


def test_batched_run_equals_a_loop_of_single_runs(kind: TwinKind) -> None:
    model = kind.model
    rows = population(kind, 3, np.random.default_rng(11))
    timeline = example(kind)
    batched = simulate(model, rows, timeline).outputs
    single = np.concatenate([simulate(model, rows[i:i + 1], timeline).outputs for i in range(3)], axis=1)
    scale = np.max(np.abs(single)) + 1e-12
    # the batch shares adaptive steps (lockstep): equal to the solver's tolerance, not bit for bit
    assert np.max(np.abs(batched - single)) <= 1e-4 * scale


def test_same_seed_same_result(kind: TwinKind) -> None:
    request = kind_service.AssimilateRequest(observations=observations(kind, 3), n_members=8, seed=5)
    one, two = kind_service.assimilate_kind(kind, request), kind_service.assimilate_kind(kind, request)
    assert one["estimates"] == two["estimates"]
    other = kind_service.assimilate_kind(kind, request.model_copy(update={"seed": 6}))
    assert other["estimates"] != one["estimates"]  # the seed is used
    compare = kind_service.CompareRequest(scenarios={"example": dict(kind.example_scenario)}, n_ensemble=5, seed=2)
    assert kind_service.compare_kind(kind, compare) == kind_service.compare_kind(kind, compare)


def test_finite_outputs_over_the_documented_input_range(kind: TwinKind) -> None:
    model = kind.model
    rows = population(kind, 8, np.random.default_rng(3))
    stop = float(example(kind).t_eval[-1])
    for level in (0.0, 0.5, 1.0):  # every input off, at half and at the top of its documented range
        inputs = {i.name: [[0.0, level * (i.upper if np.isfinite(i.upper) else 0.0)], [stop / 10, 0.0]]
                  for i in model.inputs}
        doses = [{"route": d.name, "time": stop / 20, "amount": level * min(d.upper, 1e3)} for d in model.doses]
        timeline = Timeline.from_dict(model, {"t_eval": {"start": 0.0, "stop": stop, "step": stop / 50},
                                              "inputs": inputs, "doses": doses})
        outputs = simulate(model, rows, timeline).outputs
        assert np.all(np.isfinite(outputs)), f"{model.name}: non-finite output at input level {level}"
    assert np.all(np.isfinite(simulate(model, rows, example(kind)).outputs))


def test_filter_state_round_trips_through_json(kind: TwinKind) -> None:
    model = kind.model
    data = observations(kind, 4)
    timeline = Timeline.from_dict(model, data["scenario"])
    p = kind.personalisation
    make = lambda: EnsembleFilter(model, base=kind.base(), output=data["output"], obs_sd=p.noise_sd,  # noqa: E731
                                  proportional=p.proportional, n_members=6,
                                  rng=np.random.default_rng(4)).start(float(timeline.t_eval[0]))
    straight = make()
    for t, value in zip(data["t"], data["values"], strict=True):
        straight.assimilate(t, value, timeline)
    resumed = make()
    resumed.assimilate(data["t"][0], data["values"][0], timeline)
    resumed = EnsembleFilter.from_dict(model, json.loads(json.dumps(resumed.to_dict())))
    for t, value in zip(data["t"][1:], data["values"][1:], strict=True):
        resumed.assimilate(t, value, timeline)
    assert np.array_equal(resumed.states_, straight.states_)
    assert np.array_equal(resumed.theta_, straight.theta_)


def test_descriptor_is_consistent_with_the_model(kind: TwinKind) -> None:
    model = kind.model
    json.dumps(kind.describe())  # JSON-ready
    units = {o.name: o.unit for o in model.outputs}
    for chart in kind.panel.charts:
        assert units.get(chart.output) == chart.unit, f"{kind.name}: chart {chart.output} unit"
    declared = {"input": {i.name: i.unit for i in model.inputs}, "dose": {d.name: d.unit for d in model.doses},
                "parameter": {p.name: p.unit for p in model.parameters}}
    for control in kind.panel.controls:
        assert declared[control.target].get(control.name) == control.unit, f"{kind.name}: control {control.name}"
        assert control.minimum <= control.default <= control.maximum
    assert set(kind.forecasts) <= set(units) and kind.personalisation.observed_output in units
    assert set(kind.personalisation.fitted) <= set(model.parameter_names)
    assert set(model.drifting) <= set(model.parameter_names)
    assert set(kind.alert_rules) <= set(rule_names()), f"{kind.name}: unknown alert rule"
    assert set(kind.device_metrics) <= set(metrics()), f"{kind.name}: unknown device metric"


def test_base_is_consistent_and_fit_returns_a_laplace_posterior(kind: TwinKind) -> None:
    model = kind.model
    base = kind.base()
    assert np.allclose(model.consistent(base), base, rtol=1e-9, atol=0.0)  # the shipped row is at rest
    result = kind_service.fit_kind(kind, kind_service.FitRequest(observations=observations(kind, 5)))
    covariance = np.asarray(result["covariance_log"])
    assert np.allclose(covariance, covariance.T) and np.all(np.linalg.eigvalsh(covariance) > 0)
    for name in kind.personalisation.fitted:  # noise-free data of the base: the MAP is the base
        j = model.parameter_index(name)
        assert result["fitted"][name] == pytest.approx(base[0, j], rel=1e-3)
