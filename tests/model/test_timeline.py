"""The generic timeline parser: any JSON either parses into a timeline inside the model's declared ranges or
raises ModelInputError naming a field (never another exception)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medtwin.model.errors import ModelInputError
from medtwin.model.timeline import Timeline
from medtwin.physiology.uva_padova import UvaPadova2008

MODEL = UvaPadova2008
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6), st.booleans(),
                    st.text(max_size=3), st.none())
pairs = st.lists(st.one_of(st.tuples(numbers, numbers).map(list), numbers), max_size=4)
scenarios = st.fixed_dictionaries({}, optional={
    "t_eval": st.one_of(st.just({"start": 0, "stop": 60, "step": 5}), st.just([0.0, 30.0, 60.0]),
                        st.lists(numbers, max_size=5),
                        st.fixed_dictionaries({"start": numbers, "stop": numbers, "step": numbers}), numbers),
    "inputs": st.one_of(st.dictionaries(st.sampled_from(["carbohydrate_intake", "insulin_infusion", "x"]), pairs,
                                        max_size=2), numbers),
    "doses": st.one_of(st.lists(st.fixed_dictionaries({"route": st.sampled_from(["insulin_bolus", "oral", 3]),
                                                       "time": numbers, "amount": numbers}), max_size=3), numbers),
    "extra": numbers,
})


@settings(max_examples=500, deadline=None)
@given(scenarios)
def test_parses_or_names_the_field(data: dict[str, Any]) -> None:
    try:
        timeline = Timeline.from_dict(MODEL, data)
    except ModelInputError as exc:
        assert exc.field and isinstance(exc.field, str)
        return
    assert np.all(np.diff(timeline.t_eval) > 0) and np.all(np.isfinite(timeline.t_eval))
    values = timeline.values_for(MODEL, 1)
    uppers = np.array([i.upper for i in MODEL.inputs])
    assert np.all(values >= 0) and np.all(values <= uppers)
    for dose in timeline.doses:
        assert timeline.t_eval[0] <= dose.time <= timeline.t_eval[-1]
        assert 0 <= float(dose.amount) <= MODEL.dose_route(dose.route).upper  # type: ignore[arg-type]


def test_inputs_are_held_from_each_step() -> None:
    timeline = Timeline.from_dict(MODEL, {"t_eval": [0, 100], "inputs": {
        "insulin_infusion": [[0, 0.02], [50, 0.01]], "carbohydrate_intake": [[10, 5], [20, 0]]}})
    assert timeline.input_times.tolist() == [0, 10, 20, 50]
    assert timeline.values_for(MODEL, 1)[0].tolist() == [[0, 0.02], [5, 0.02], [0, 0.02], [0, 0.01]]


@pytest.mark.parametrize(("data", "field"), [
    ({"t_eval": [0, 1], "inputs": {"insulin": [[0, 1]]}}, "inputs.insulin"),
    ({"t_eval": [0, 1], "inputs": {"insulin_infusion": [[0, 9]]}}, "inputs.insulin_infusion[0].value"),
    ({"t_eval": [0, 1], "doses": [{"route": "insulin_bolus", "time": 5, "amount": 1}]}, "doses[0].time"),
    ({"t_eval": [0, 1], "doses": [{"route": "iv", "time": 0, "amount": 1}]}, "doses[0].route"),
    ({"t_eval": [1, 0]}, "t_eval"),
    ({}, "t_eval"),
])
def test_errors_name_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ModelInputError) as info:
        Timeline.from_dict(MODEL, data)
    assert info.value.field == field


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries({}, optional={"scenario": st.one_of(numbers, st.lists(numbers, max_size=2),
                                                                  st.just({"t_eval": [0, 60]})),
                                           "output": st.one_of(numbers, st.just("subcutaneous_glucose")),
                                           "t": st.one_of(numbers, st.lists(numbers, max_size=3)),
                                           "values": st.one_of(numbers, st.lists(numbers, max_size=3))}))
def test_observations_parse_or_name_the_field(data: dict[str, Any]) -> None:
    from medtwin.model.fit import Observations

    try:
        parsed = Observations.from_dict(MODEL, data)
    except ModelInputError as exc:
        assert exc.field
        return
    assert parsed.t.shape == parsed.values.shape and np.all(np.isfinite(parsed.values))
