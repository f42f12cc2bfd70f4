"""Trajectory planning over HTTP on a stored label map: the API's numbers are the planner's, plans are stored
and listed, rehearsal and exports read them back, the Procedure lands in the record, and reach is enforced
(a patient outside the care team, or a volume of another patient, is 404 like a missing one)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from fastapi.testclient import TestClient

from medtwin.api.app import create_app
from medtwin.config import Settings
from medtwin.imaging import phantoms as ph
from medtwin.imaging.plan_labels import plan_on_labels
from medtwin.imaging.planning import Limits
from medtwin.imaging.volume import Volume
from medtwin.record.sources import RawUnit
from medtwin.security import accounts
from medtwin.security.crypto import AesGcmCodec, KeyRing
from medtwin.store.database import Store
from medtwin.store.records import RecordRepository
from medtwin.twin import imaging as images
from medtwin.twin.build import import_units

PW = "a long enough password"
P1, P3 = "plan-p1", "plan-p3"
NAMES = {1: "head", 2: "vessel", 3: "amygdala", 4: "ventricle"}


def label_map() -> Volume:
    g = ph.grid((48, 40, 48), (1.0, 1.0, 1.0), origin_mm=(-24.0, -20.0, -24.0))
    shapes = [(ph.Ellipsoid([0, 0, 0], [22, 18, 22]), 1),
              (ph.Tube(np.array([[-4.0, -25.0, 6.0], [-4.0, 25.0, 6.0]]), 1.5), 2),
              (ph.Sphere([5.0, 0.0, 10.0], 3.0), 4),
              (ph.Sphere([0.0, 0.0, -8.0], 3.0), 3)]
    return ph.label_volume(shapes, g, names=NAMES)


def patient(pid: str) -> dict[str, object]:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": pid.upper()}], "gender": "female",
            "birthDate": "1970-01-01"}


@dataclass
class World:
    client: TestClient
    store: Store
    volume_id: str
    other_volume_id: str
    labels: Volume


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("plan-api")
    ring = KeyRing.generate()
    store = Store(f"sqlite:///{tmp / 'plan.db'}", AesGcmCodec(ring))
    store.migrate()
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient(p), "request": {"method": "PUT", "url": f"Patient/{p}"}} for p in (P1, P3)]}
    assert import_units(store, [RawUnit("seed.json", "json", bundle)], actor="test").ok
    labels = label_map()
    mine = images.import_volume(store, P1, labels, actor="test")
    theirs = images.import_volume(store, P3, labels.with_data(np.asarray(labels.data)[::-1].copy()), actor="test")
    with store.begin() as conn:
        accounts.create_user(conn, "clinician", PW, "clinician")
        accounts.add_to_care_team(conn, "clinician", P1)
    settings = Settings(data_dir=tmp, rate_limit_per_minute=100_000, login_attempts_per_minute=1000)
    with TestClient(create_app(settings, store=store, keyring=ring)) as client:
        r = client.post("/api/v1/auth/token", data={"grant_type": "password", "username": "clinician", "password": PW})
        client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        yield World(client, store, mine.volume_id, theirs.volume_id, labels)
    store.dispose()


BODY = {"target_label": "amygdala", "criticals": [{"label": "vessel", "margin_mm": 2.0},
                                                   {"label": 4, "margin_mm": 3.0}],
        "max_angle_deg": 40.0, "max_entries": 300, "max_targets": 20, "top": 5}


def test_plan_is_the_planners_stored_and_listed(world: World) -> None:
    r = world.client.post(f"/api/v1/patients/{P1}/images/{world.volume_id}/plans", json=BODY)
    assert r.status_code == 201, r.text
    plan = r.json()
    direct = plan_on_labels(world.labels, margins_mm={"vessel": 2.0, 4: 3.0}, target_label="amygdala",
                            limits=Limits(max_angle_deg=40.0), max_entries=300, max_targets=20, top=5)
    assert len(plan["candidates"]) == 5 and plan["frame"] == "RAS" and plan["target_structure"] == "amygdala"
    for got, want in zip(plan["candidates"], direct.plan.candidates, strict=True):
        assert got["entry_mm"] == pytest.approx(list(want.entry_mm)) and got["risk"] == pytest.approx(want.risk)
        assert got["min_distance_mm"] == pytest.approx(want.min_distance_mm)
    assert plan["rejected"] == direct.plan.rejected and plan["rejected"]["margin"] > 0
    listed = world.client.get(f"/api/v1/patients/{P1}/trajectory-plans").json()
    mine = next(p for p in listed if p["version"] == plan["version"])
    assert mine["best_risk"] == pytest.approx(direct.plan.candidates[0].risk) and mine["candidates"] == 5
    again = world.client.get(f"/api/v1/patients/{P1}/trajectory-plans/{plan['version']}").json()
    assert again["candidates"] == plan["candidates"]


def test_rehearsal_and_exports_read_the_stored_plan(world: World) -> None:
    plan = world.client.post(f"/api/v1/patients/{P1}/images/{world.volume_id}/plans", json=BODY).json()
    best = plan["candidates"][0]
    base = f"/api/v1/patients/{P1}/trajectory-plans/{plan['version']}"
    steps = world.client.get(f"{base}/rehearsal", params={"rank": 1, "step_mm": 2.0}).json()["steps"]
    assert steps[0]["position_mm"] == pytest.approx(best["entry_mm"])
    assert steps[-1]["position_mm"] == pytest.approx(best["target_mm"]) and steps[-1]["inside"] == "amygdala"
    assert min(n["distance_mm"] for s in steps for n in s["nearby"]) == pytest.approx(best["min_distance_mm"], abs=0.3)
    assert not any(n["within_margin"] for s in steps for n in s["nearby"])
    text = world.client.get(f"{base}/export", params={"format": "csv", "frame": "LPS", "rank": 1}).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0]["frame"] == "LPS" and float(rows[0]["x_mm"]) == pytest.approx(-best["entry_mm"][0], abs=1e-3)
    markups = world.client.get(f"{base}/export", params={"format": "markups", "frame": "RAS"}).json()
    assert len(markups["markups"]) == 5 and markups["markups"][0]["coordinateSystem"] == "RAS"
    assert markups["markups"][0]["controlPoints"][1]["position"] == pytest.approx(best["target_mm"])


def test_the_procedure_is_written_into_the_record(world: World) -> None:
    plan = world.client.post(f"/api/v1/patients/{P1}/images/{world.volume_id}/plans", json=BODY).json()
    r = world.client.post(f"/api/v1/patients/{P1}/trajectory-plans/{plan['version']}/procedure", params={"rank": 1})
    assert r.status_code == 201, r.text
    with world.store.connect() as conn:
        stored = RecordRepository(conn, world.store.codec).get("Procedure", r.json()["procedure_id"])
    assert stored is not None and stored["status"] == "preparation"
    assert stored["subject"]["reference"] == f"Patient/{P1}" and stored["bodySite"][0]["text"] == "amygdala"
    again = world.client.post(f"/api/v1/patients/{P1}/trajectory-plans/{plan['version']}/procedure",
                              params={"rank": 1}).json()
    assert again["procedure_id"] == r.json()["procedure_id"]  # written once


@pytest.mark.parametrize(("change", "field"), [
    ({"target_label": None, "target_mm": [0.0, 0.0, 90.0]}, "targets[0]"),
    ({"target_label": "hippocampus"}, "target_label"),
    ({"criticals": [{"label": 9, "margin_mm": 2.0}]}, "criticals.9"),
    ({"target_label": None, "target_mm": [-4.0, 0.0, 6.0]}, "trajectory")])  # inside the vessel
def test_bad_plans_are_422_naming_the_field(world: World, change: dict[str, object], field: str) -> None:
    r = world.client.post(f"/api/v1/patients/{P1}/images/{world.volume_id}/plans", json={**BODY, **change})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["field"] == field, r.json()


def test_out_of_reach_looks_like_missing(world: World) -> None:
    outside = world.client.post(f"/api/v1/patients/{P3}/images/{world.other_volume_id}/plans", json=BODY)
    missing = world.client.post("/api/v1/patients/nobody/images/x/plans", json=BODY)
    assert outside.status_code == missing.status_code == 404
    theirs = world.client.post(f"/api/v1/patients/{P1}/images/{world.other_volume_id}/plans", json=BODY)
    assert theirs.status_code == 404 and theirs.json()["field"] == "volume_id"
    assert world.client.get(f"/api/v1/patients/{P3}/trajectory-plans").status_code == 404
    assert world.client.get(f"/api/v1/patients/{P1}/trajectory-plans/99999").status_code == 404


def test_scene_has_the_structures_and_the_trajectories(world: World) -> None:
    plan = world.client.post(f"/api/v1/patients/{P1}/images/{world.volume_id}/plans", json=BODY).json()
    scene = world.client.get(f"/api/v1/patients/{P1}/trajectory-plans/{plan['version']}/scene",
                             params={"max_faces": 500}).json()
    roles = {s["name"]: s["role"] for s in scene["structures"]}
    assert roles == {"head": "head", "vessel": "critical", "ventricle": "critical", "amygdala": "target"}
    amygdala = next(s for s in scene["structures"] if s["name"] == "amygdala")
    v = np.asarray(amygdala["vertices_mm"]).reshape(-1, 3)
    assert np.abs(np.linalg.norm(v - [0.0, 0.0, -8.0], axis=1) - 3.0).max() < 1.0  # on the 3 mm sphere
    assert len(amygdala["faces"]) % 3 == 0 and max(amygdala["faces"]) < len(v)
    assert [t["entry_mm"] for t in scene["trajectories"]] == [c["entry_mm"] for c in plan["candidates"]]


def test_an_implantation_keeps_every_electrode_admissible_and_apart(world: World) -> None:
    from medtwin.imaging.planning import segment_distance

    body = {"electrodes": [{"name": "LA", "target_mm": [-6.0, 0.0, -8.0]}, {"name": "LB", "target_label": "amygdala"},
                           {"name": "RC", "target_mm": [8.0, 2.0, -8.0]}],
            "criticals": BODY["criticals"], "min_separation_mm": 4.0, "max_angle_deg": 40.0, "max_entries": 300}
    r = world.client.post(f"/api/v1/patients/{P1}/images/{world.volume_id}/implantation-plans", json=body)
    assert r.status_code == 201, r.text
    plan = r.json()
    chosen = plan["candidates"]
    assert [c["electrode"] for c in chosen] == ["LA", "LB", "RC"] and [c["rank"] for c in chosen] == [1, 2, 3]
    assert all(c["min_distance_mm"] >= 2.0 for c in chosen)  # the smaller of the two margins
    for i in range(3):
        for j in range(i):
            ends = [np.asarray(x) for x in (chosen[i]["entry_mm"], chosen[i]["target_mm"],
                                            chosen[j]["entry_mm"], chosen[j]["target_mm"])]
            assert segment_distance(*ends) >= 4.0
    base = f"/api/v1/patients/{P1}/trajectory-plans/{plan['version']}"
    markups = world.client.get(f"{base}/export", params={"format": "markups"}).json()
    assert [m["name"] for m in markups["markups"]] == ["LA", "LB", "RC"]
    written = world.client.post(f"{base}/procedure").json()["resource"]
    assert len([e for e in written["extension"] if e["url"].endswith("planned-trajectory")]) == 3
    too_close = {**body, "min_separation_mm": 30.0}
    refused = world.client.post(f"/api/v1/patients/{P1}/images/{world.volume_id}/implantation-plans", json=too_close)
    assert refused.status_code == 422 and refused.json()["field"] == "electrodes"
