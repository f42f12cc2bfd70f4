"""Model declaration, parameter files (units, sources, bad input) and steady state."""

from __future__ import annotations

import numpy as np
import pytest

from medtwin.physiology.errors import PhysiologyInputError, UnknownPatientError
from medtwin.physiology.parameters import load_parameter_file, load_parameter_set, parse_parameter_csv
from medtwin.physiology.uva_padova import (
    PARAMETER_NAMES,
    PatientParameters,
    UvaPadova2008,
    rhs,
    steady_state_parameters,
    virtual_patients,
)


def test_shipped_set_has_30_patients_units_and_citation() -> None:
    table = load_parameter_set("uva_padova_2008")
    assert len(table.names) == 30
    assert (
        table.groups.count("adult") == table.groups.count("child") == table.groups.count("adolescent") == 10
    )
    assert "Dalla Man" in table.source and "simglucose" in table.source
    assert table.units["Vg"] == "dL/kg" and table.units["CR"] == "g/U" and table.units["BW"] == "kg"
    for name in PARAMETER_NAMES:
        assert name in table.units
    # published values spot check (adult#001 body weight 102.32 kg, CR 10 g/U)
    adult = table.rows(["adult#001"])
    assert adult.column("BW")[0] == pytest.approx(102.32)
    assert adult.column("CR")[0] == pytest.approx(10.0)


def test_model_declares_13_states_plus_meal_memory_with_units() -> None:
    assert len(UvaPadova2008.states) == 14
    assert all(s.unit for s in UvaPadova2008.states)
    assert all(p.unit and p.source for p in UvaPadova2008.parameters)
    assert UvaPadova2008.outputs[0].unit == "mg/dL"


def test_default_state_is_steady_under_basal_and_steady_state_relations_reproduce_the_file() -> None:
    p = virtual_patients()
    u = np.column_stack([np.zeros(30), p.basal_rate_u_per_min()])
    derivative = rhs(0.0, p.initial_state, p.values, u)
    assert np.max(np.abs(derivative)) < 1e-8
    recomputed = steady_state_parameters(p)
    np.testing.assert_allclose(recomputed.values, p.values, rtol=1e-9)
    np.testing.assert_allclose(
        recomputed.initial_state[:, :13], p.initial_state[:, :13], rtol=1e-9, atol=1e-9
    )
    # output: Gs / Vg equals the published basal glucose Gb
    np.testing.assert_allclose(p.subcutaneous_glucose(p.initial_state), p.get("Gb"), rtol=1e-9)


def test_unknown_patient_and_parameter_set() -> None:
    with pytest.raises(UnknownPatientError) as info:
        virtual_patients(["adult#042"])
    assert info.value.field == "patient" and "adult#042" in str(info.value)
    with pytest.raises(UnknownPatientError) as info2:
        load_parameter_set("hovorka2004")
    assert info2.value.field == "parameter_set"


GOOD = "# source: test\nname,age_group,BW [kg],Vg [dL/kg]\np1,adult,70,1.8\n"


def test_parameter_file_missing_unit_names_the_column() -> None:
    with pytest.raises(PhysiologyInputError) as info:
        parse_parameter_csv("name,BW [kg],Vg\np1,70,1.8\n")
    assert info.value.field == "Vg" and "unit" in str(info.value)


def test_parameter_file_negative_volume_names_the_column() -> None:
    with pytest.raises(PhysiologyInputError) as info:
        parse_parameter_csv("name,BW [kg],Vg [dL/kg]\np1,70,-1.8\n")
    assert info.value.field == "Vg" and "positive" in str(info.value)


def test_parameter_file_non_numeric_and_missing_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PhysiologyInputError) as info:
        parse_parameter_csv("name,BW [kg]\np1,heavy\n")
    assert info.value.field == "BW"
    with pytest.raises(PhysiologyInputError) as info2:
        load_parameter_file(tmp_path / "missing.csv")
    assert info2.value.field == "parameter_file"
    good = tmp_path / "set.csv"
    good.write_text(GOOD)
    table = load_parameter_file(good)
    assert table.units == {"BW": "kg", "Vg": "dL/kg"} and table.source == "source: test"


def test_patient_parameters_round_trip_dict() -> None:
    p = virtual_patients(["child#004", "adult#009"])
    q = PatientParameters.from_dict(p.to_dict())
    np.testing.assert_array_equal(q.values, p.values)
    assert q.names == p.names
    broken = p.to_dict()
    del broken["parameters"]["Vmx"]  # type: ignore[attr-defined]
    with pytest.raises(PhysiologyInputError) as info:
        PatientParameters.from_dict(broken)
    assert info.value.field == "Vmx"


def test_uva_padova_on_the_generic_interface_rests_at_its_basal_state() -> None:
    """Declared initial state = the shipped steady state; at basal insulin and no meal the generic simulator
    keeps every virtual patient at Gb for a day (a physiological invariant, all 30 in one batch)."""
    from medtwin.model.parameters import load_parameters
    from medtwin.model.simulate import simulate
    from medtwin.model.timeline import Timeline
    from medtwin.physiology.uva_padova import PMOL_PER_UNIT, UvaPadova2008, basal_state, virtual_patients

    model = UvaPadova2008
    table = load_parameters(model)
    patients = virtual_patients()
    assert table.names == patients.names and np.array_equal(table.values, patients.values)
    assert np.allclose(basal_state(table.values)[:, :13], patients.initial_state[:, :13], rtol=1e-6, atol=1e-9)
    basal = table.values[:, model.parameter_index("u2ss")] * table.values[:, model.parameter_index("BW")] / PMOL_PER_UNIT
    values = np.zeros((30, 1, 2))
    values[:, 0, 1] = basal
    run = simulate(model, table.values, Timeline(t_eval=np.array([0.0, 720.0, 1440.0]), input_values=values))
    gb = table.values[:, model.parameter_index("Gb")]
    assert np.max(np.abs(run.output("subcutaneous_glucose") - gb[None, :])) < 0.05
