"""The hospital model as data: the demo file loads, and each kind of bad input names its field."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from tests.hospital.shapes import network

from medtwin.hospital.model import HospitalModelError, demo_model, load_model, parse_model


def test_demo_model_loads_with_rostered_capacity() -> None:
    model = demo_model()
    cap = model.capacity_by_hour()
    ed = model.unit_index()["ed_treatment"]
    assert cap[ed, 3] == 18 and cap[ed, 10] == 24  # 6 nurses x 3 at night, 8 x 3 capped by 24 beds by day
    assert cap.shape == (len(model.units), 168)
    np.testing.assert_allclose(model.routing_matrix().sum(axis=1), 1.0)


def _error(data: dict) -> HospitalModelError:
    with pytest.raises(HospitalModelError) as info:
        parse_model(data)
    return info.value


def test_negative_staff_names_the_hour() -> None:
    data = network()
    data["roles"] = [{"name": "nurse", "staff_by_hour": [2] * 23 + [-1]}]
    error = _error(data)
    assert error.field == "roles[0].staff_by_hour" and "staff_by_hour[23] = -1" in error.message


def test_unreachable_unit_is_named() -> None:
    data = network()
    data["units"].append({"name": "new_wing", "beds": 3, "los": {"dist": "exponential", "mean_h": 1}})
    error = _error(data)
    assert error.field == "units[3] 'new_wing'" and "unreachable" in error.message


def test_probabilities_not_summing_to_one() -> None:
    data = network()
    data["units"][1]["routing"] = {"exit": 0.7, "ward": 0.2}
    error = _error(data)
    assert error.field == "units[1] 'treatment'.routing" and "sum to 0.9" in error.message


def test_routing_to_unknown_unit_and_no_way_out() -> None:
    data = network()
    data["units"][1]["routing"] = {"exit": 0.7, "wrd": 0.3}
    assert "unknown unit 'wrd'" in _error(data).message
    loop = network()
    loop["units"][2]["routing"] = {"treatment": 1.0}
    loop["units"][1]["routing"] = {"ward": 1.0}
    assert "no path from this unit to exit" in _error(loop).message


def test_esi_mix_and_pydantic_errors_name_the_field() -> None:
    data = network()
    data["arrivals"][0]["esi_mix"] = [0.5, 0.5, 0.5, 0, 0]
    assert _error(data).field == "arrivals[0].esi_mix"
    data = network()
    data["units"][0]["beds"] = 0
    assert _error(data).field == "units[0].beds"


def test_load_model_names_the_file(tmp_path: Path) -> None:
    data = network()
    data["units"][0]["los"]["mean_h"] = -1
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(HospitalModelError) as info:
        load_model(path)
    assert str(path) in info.value.field and "units[0].los.mean_h" in info.value.field


@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=2))
def test_routing_sums_accepted_only_near_one(weights: list[float]) -> None:
    assume(weights[1] > 0)  # ward reachable
    data = copy.deepcopy(network())
    data["units"][1]["routing"] = {"exit": weights[0], "ward": weights[1]}
    if abs(sum(weights) - 1.0) <= 1e-6:
        assert parse_model(data).routing_matrix()[1].sum() == pytest.approx(1.0)
    else:
        with pytest.raises(HospitalModelError):
            parse_model(data)
