from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle

from medtwin.record import ucum
from medtwin.synthetic import (
    ARCHETYPES,
    REFERENCE_DATE,
    archetype_keys,
    ckd_epi_2021,
    generate_bundles,
    write_bundles,
)


@pytest.fixture(scope="module")
def bundles() -> list[dict[str, Any]]:
    return generate_bundles()


def resources(bundle: dict[str, Any], kind: str | None = None) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if kind is None or e["resource"]["resourceType"] == kind]


def references(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)


def observations(bundle: dict[str, Any], loinc: str) -> list[dict[str, Any]]:
    return [o for o in resources(bundle, "Observation") if o["code"]["coding"][0]["code"] == loinc]


def test_archetype_order_matches_data() -> None:
    assert archetype_keys() == ARCHETYPES


def test_determinism_same_seed_byte_identical() -> None:
    a = json.dumps(generate_bundles(7, 5), sort_keys=False)
    b = json.dumps(generate_bundles(7, 5), sort_keys=False)
    assert a == b
    assert generate_bundles(7, 5, now=REFERENCE_DATE) == generate_bundles(7, 5)


def test_different_seed_differs_in_ids_and_values() -> None:
    a, b = generate_bundles(1, 2), generate_bundles(2, 2)
    assert a[0]["entry"][0]["fullUrl"] != b[0]["entry"][0]["fullUrl"]
    weights_a = [o["valueQuantity"]["value"] for o in observations(a[0], "29463-7")]
    weights_b = [o["valueQuantity"]["value"] for o in observations(b[0], "29463-7")]
    assert weights_a != weights_b


def test_now_shifts_the_timeline() -> None:
    now = datetime(2030, 6, 1, tzinfo=UTC)
    bundle = generate_bundles(3, 1, now=now)[0]
    times = [datetime.fromisoformat(o["effectiveDateTime"]) for o in resources(bundle, "Observation")]
    assert max(times) < now
    assert min(times) > datetime(2028, 5, 1, tzinfo=UTC)


def test_counts_and_archetype_cycle(bundles: list[dict[str, Any]]) -> None:
    assert len(bundles) == 6
    for bundle in bundles:
        counts = Counter(r["resourceType"] for r in resources(bundle))
        assert counts["Patient"] == 1
        assert counts["Practitioner"] == 1
        assert counts["Organization"] == 1
        assert counts["Encounter"] >= 4
        assert counts["Observation"] >= 8 * counts["Encounter"]  # 8 vital-sign observations per visit
        assert counts["Immunization"] >= 1
        assert counts["Condition"] >= 1
    first, last = bundles[0], bundles[5]
    assert Counter(r["resourceType"] for r in resources(first)) == Counter(
        r["resourceType"] for r in resources(last)
    )
    assert sum(1 for b in bundles if resources(b, "AllergyIntolerance")) >= 2
    assert sum(1 for b in bundles if resources(b, "ImagingStudy")) >= 2
    assert generate_bundles(n_patients=0) == []
    with pytest.raises(ValueError):
        generate_bundles(n_patients=-1)


def test_transaction_structure_and_references_resolve(bundles: list[dict[str, Any]]) -> None:
    all_urls: set[str] = set()
    for bundle in bundles:
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
        urls = {e["fullUrl"] for e in bundle["entry"]}
        assert len(urls) == len(bundle["entry"])
        assert not urls & all_urls  # ids unique across patients too
        all_urls |= urls
        for entry in bundle["entry"]:
            resource = entry["resource"]
            assert entry["fullUrl"] == f"urn:uuid:{resource['id']}"
            assert entry["request"] == {"method": "POST", "url": resource["resourceType"]}
            for ref in references(resource):
                assert ref.startswith("urn:uuid:")
                assert ref in urls, ref


def test_every_resource_is_valid_fhir(bundles: list[dict[str, Any]]) -> None:
    for bundle in bundles:
        Bundle.model_validate(bundle)
        for resource in resources(bundle):
            model = get_fhir_model_class(resource["resourceType"])
            model.model_validate(resource)


def test_patient_identifiers(bundles: list[dict[str, Any]]) -> None:
    mrns = set()
    for bundle in bundles:
        (patient,) = resources(bundle, "Patient")
        ids = {i["type"]["coding"][0]["code"]: i for i in patient["identifier"]}
        assert ids["MR"]["system"] == "urn:medtwin:mrn"
        mrns.add(ids["MR"]["value"])
        ssn = ids["SS"]["value"]
        assert ssn.startswith("999-") and len(ssn) == 11 and ssn[6] == "-"
        assert patient["address"][0]["postalCode"]
        assert patient["telecom"][0]["system"] == "phone"
        assert patient["gender"] in ("male", "female")
    assert len(mrns) == len(bundles)


def test_every_observation_unit_is_valid_ucum(bundles: list[dict[str, Any]]) -> None:
    seen = set()
    for bundle in bundles:
        for obs in resources(bundle, "Observation"):
            quantities = [obs["valueQuantity"]] if "valueQuantity" in obs else []
            quantities += [c["valueQuantity"] for c in obs.get("component", [])]
            assert quantities, obs["code"]
            for q in quantities:
                assert q["system"] == "http://unitsofmeasure.org"
                assert ucum.is_valid(q["code"]), q
                seen.add(q["code"])
    assert {"cm", "kg", "kg/m2", "/min", "%", "Cel", "mm[Hg]", "mg/dL", "{INR}", "mL/min/{1.73_m2}"} <= seen


def test_bmi_consistent_with_weight_and_height(bundles: list[dict[str, Any]]) -> None:
    checked = 0
    for bundle in bundles:
        by_encounter: dict[str, dict[str, float]] = {}
        for obs in resources(bundle, "Observation"):
            code = obs["code"]["coding"][0]["code"]
            if code in ("8302-2", "29463-7", "39156-5"):
                by_encounter.setdefault(obs["encounter"]["reference"], {})[code] = obs["valueQuantity"][
                    "value"
                ]
        for values in by_encounter.values():
            height_m = values["8302-2"] / 100.0
            assert values["39156-5"] == pytest.approx(values["29463-7"] / height_m**2, abs=0.051)
            assert 14.0 < values["39156-5"] < 45.0
            checked += 1
    assert checked >= 40


def _conditions(bundle: dict[str, Any]) -> dict[str, str]:
    return {
        c["code"]["coding"][0]["code"]: c["clinicalStatus"]["coding"][0]["code"]
        for c in resources(bundle, "Condition")
    }


def _meds(bundle: dict[str, Any]) -> dict[str, str]:
    return {
        m["medicationCodeableConcept"]["coding"][0]["code"]: m["status"]
        for m in resources(bundle, "MedicationRequest")
    }


def test_type1_diabetes_archetype(bundles: list[dict[str, Any]]) -> None:
    t1d = bundles[0]
    assert _conditions(t1d)["46635009"] == "active"
    assert set(_meds(t1d)) == {"847232", "865098"}
    hba1c = [o["valueQuantity"]["value"] for o in observations(t1d, "4548-4")]
    assert len(hba1c) >= 6 and min(hba1c) >= 7.5  # poorly controlled
    glucose = [o["valueQuantity"]["value"] for o in observations(t1d, "2339-0")]
    assert sum(glucose) / len(glucose) > 150


def test_hypertension_archetype(bundles: list[dict[str, Any]]) -> None:
    htn = bundles[1]
    assert _conditions(htn)["59621000"] == "active"
    meds = _meds(htn)
    assert meds["314076"] == "active" and meds["308136"] == "active" and meds["310798"] == "stopped"
    panels = observations(htn, "85354-9")
    systolic = [p["component"][0]["valueQuantity"]["value"] for p in panels]
    assert [p["component"][0]["code"]["coding"][0]["code"] for p in panels] == ["8480-6"] * len(panels)
    assert [p["component"][1]["code"]["coding"][0]["code"] for p in panels] == ["8462-4"] * len(panels)
    assert systolic[0] >= 135  # untreated
    assert sum(systolic[-4:]) / 4 < systolic[0]  # treated later


def test_atrial_fibrillation_archetype(bundles: list[dict[str, Any]]) -> None:
    af = bundles[2]
    assert _conditions(af)["49436004"] == "active"
    assert _meds(af)["855332"] == "active"
    inr = [o["valueQuantity"]["value"] for o in observations(af, "6301-6")]
    assert len(inr) >= 20
    assert all(2.0 <= v <= 3.0 for v in inr)
    classes = Counter(e["class"]["code"] for e in resources(af, "Encounter"))
    assert classes["IMP"] == 1 and classes["AMB"] >= 20


def test_healthy_adult_archetype(bundles: list[dict[str, Any]]) -> None:
    healthy = bundles[3]
    assert set(_conditions(healthy).values()) == {"resolved"}
    assert _meds(healthy) == {}
    (condition,) = resources(healthy, "Condition")
    assert condition["abatementDateTime"] > condition["onsetDateTime"]


def test_ckd_archetype_egfr_matches_creatinine(bundles: list[dict[str, Any]]) -> None:
    ckd = bundles[4]
    assert _conditions(ckd)["433144002"] == "active"
    (patient,) = resources(ckd, "Patient")
    birth = datetime.fromisoformat(patient["birthDate"]).date()
    creatinine = {o["effectiveDateTime"]: o["valueQuantity"]["value"] for o in observations(ckd, "2160-0")}
    egfr = {o["effectiveDateTime"]: o["valueQuantity"]["value"] for o in observations(ckd, "98979-8")}
    assert creatinine.keys() == egfr.keys() and len(egfr) >= 6
    for when, value in egfr.items():
        age = (datetime.fromisoformat(when).date() - birth).days / 365.25
        assert value == round(ckd_epi_2021(creatinine[when], age, female=patient["gender"] == "female"))
        assert 30 <= value < 60  # stage 3


def test_ckd_epi_2021_reference_values() -> None:
    # At Scr = kappa both ratio terms are 1: eGFR = 142 x 0.9938^age (x 1.012 for women).
    assert ckd_epi_2021(0.9, 50, female=False) == pytest.approx(104.05, abs=0.01)
    assert ckd_epi_2021(0.7, 40, female=True) == pytest.approx(142 * 0.9938**40 * 1.012, rel=1e-12)
    # Above kappa, doubling creatinine multiplies eGFR by 2^-1.2 (0.435).
    assert ckd_epi_2021(2.4, 70, female=False) / ckd_epi_2021(1.2, 70, female=False) == pytest.approx(2**-1.2)
    # Below kappa the exponent is alpha (-0.241 women, -0.302 men).
    assert ckd_epi_2021(0.35, 30, True) / ckd_epi_2021(0.7, 30, True) == pytest.approx(0.5**-0.241)
    assert ckd_epi_2021(0.45, 30, False) / ckd_epi_2021(0.9, 30, False) == pytest.approx(0.5**-0.302)


def test_penicillin_allergy_and_imaging(bundles: list[dict[str, Any]]) -> None:
    allergies = [a for b in bundles for a in resources(b, "AllergyIntolerance")]
    codes = {c["code"] for a in allergies for c in a["code"]["coding"]}
    assert {"70618", "91936005"} <= codes
    studies = [s for b in bundles for s in resources(b, "ImagingStudy")]
    for study in studies:
        assert study["numberOfInstances"] == len(study["series"][0]["instance"])
        assert study["series"][0]["modality"]["code"] == "DX"
    immunizations = {
        i["vaccineCode"]["coding"][0]["code"] for b in bundles for i in resources(b, "Immunization")
    }
    assert {"140", "115"} <= immunizations


def test_write_bundles_round_trips(tmp_path: Path) -> None:
    paths = write_bundles(tmp_path, seed=11, n_patients=3)
    assert [p.name for p in paths] == [
        "000_type1_diabetes.json",
        "001_essential_hypertension.json",
        "002_atrial_fibrillation.json",
    ]
    assert [json.loads(p.read_text(encoding="utf-8")) for p in paths] == generate_bundles(11, 3)
    again = write_bundles(tmp_path / "again", seed=11, n_patients=3)
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]
