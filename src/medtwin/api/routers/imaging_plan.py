"""Trajectory planning over HTTP, on a patient's stored label map (issue #19 item 4).

Thin over :mod:`medtwin.imaging.plan_labels` (planning), :mod:`medtwin.imaging.rehearsal` and
:mod:`medtwin.imaging.plan_export`; volumes come from :mod:`medtwin.twin.imaging` (a volume id another patient
has is 404, like a missing one). A plan is stored as a twin version of kind ``imaging_plan`` (payload: the
request, the ranked admissible candidates with their risk figures, what each hard constraint removed).

Policies: planning and writing the plan's FHIR Procedure into the record are ``write Procedure`` (the Procedure
goes through the record's import path, which authorises the writer against what is stored); reading plans,
rehearsals and exports is ``read ImagingStudy``. Bad input (a target outside the image, an unknown label, no
admissible trajectory) is 422 problem+json naming the field.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from medtwin.api.deps import PatientCall, patient_call
from medtwin.api.problems import ProblemError, record_problem
from medtwin.api.routers import imaging as imaging_routes
from medtwin.imaging import plan_export, rehearsal
from medtwin.imaging.plan_labels import (
    ElectrodeTarget,
    criticals_from_labels,
    plan_implantation,
    plan_on_labels,
    scene_meshes,
)
from medtwin.imaging.planning import DistanceMaps, Limits, Trajectory, distance_maps
from medtwin.imaging.volume import Volume, VolumeError
from medtwin.record.errors import RecordError
from medtwin.record.sources import RawUnit
from medtwin.security.write_policy import Writer
from medtwin.store.twins import TwinRepository, TwinVersion
from medtwin.twin import imaging as images
from medtwin.twin.build import import_unit

router = APIRouter(tags=["imaging planning"])
KIND = "imaging_plan"
PLANS = "/patients/{patient_id}/trajectory-plans"
PLAN_IDENTIFIER = "urn:medtwin:trajectory-plan"
PlanReader = imaging_routes.ImagingReader
PlanWriter = Annotated[PatientCall, Depends(patient_call("write", "Procedure"))]


class CriticalIn(BaseModel):
    label: int | str = Field(description="label value or name in the label map")
    margin_mm: float = Field(ge=0, le=50, description="safety margin in mm")


class PlanRequest(BaseModel):
    """Either ``target_label`` or ``target_mm`` (x, y, z in the volume's frame)."""

    target_label: int | str | None = None
    target_mm: list[float] | None = Field(None, min_length=3, max_length=3)
    criticals: list[CriticalIn] = Field(min_length=1, max_length=32)
    entry_label: int | str | None = Field(None, description="restrict entries to this label's surface voxels")
    max_length_mm: float = Field(100.0, gt=0, le=400)
    max_angle_deg: float = Field(30.0, gt=0, le=90)
    risk_cutoff_mm: float = Field(10.0, gt=0, le=100)
    max_entries: int = Field(500, ge=1, le=2000)
    max_targets: int = Field(150, ge=1, le=1000)
    top: int = Field(10, ge=1, le=100)
    rank_by: Literal["risk", "clearance"] = "risk"


class ElectrodeIn(BaseModel):
    name: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.'-]+$")
    target_label: int | str | None = None
    target_mm: list[float] | None = Field(None, min_length=3, max_length=3)


class ImplantationRequest(BaseModel):
    """Several electrodes planned together (the order is the priority: the first gets its best path)."""

    electrodes: list[ElectrodeIn] = Field(min_length=1, max_length=16)
    criticals: list[CriticalIn] = Field(min_length=1, max_length=32)
    entry_label: int | str | None = None
    min_separation_mm: float = Field(5.0, ge=0, le=50, description="closest distance between any two trajectories")
    max_length_mm: float = Field(100.0, gt=0, le=400)
    max_angle_deg: float = Field(30.0, gt=0, le=90)
    risk_cutoff_mm: float = Field(10.0, gt=0, le=100)
    max_entries: int = Field(500, ge=1, le=2000)
    max_targets: int = Field(50, ge=1, le=500)


def _invalid(error: VolumeError) -> ProblemError:
    return ProblemError(422, "Cannot plan", f"{error.field}: {error.message}", kind="invalid-plan", field=error.field)


def _labels(call: PatientCall, volume_id: str) -> Volume:
    return imaging_routes._volume(call, volume_id)  # the patient's volume, or 404 naming volume_id (one copy)


_maps: OrderedDict[tuple[str, str, str], DistanceMaps] = OrderedDict()
_maps_lock = threading.Lock()


def _distance_maps(call: PatientCall, volume_id: str, labels: Volume, criticals: list[dict[str, Any]]) -> DistanceMaps:
    """Distance maps of this volume and these margins, kept for the next rehearsal (two sets per process)."""
    key = (call.store.url, volume_id, orjson.dumps(criticals).decode())
    with _maps_lock:
        if key in _maps:
            _maps.move_to_end(key)
            return _maps[key]
    maps = distance_maps(labels, criticals_from_labels(labels, {c["label"]: c["margin_mm"] for c in criticals}))
    with _maps_lock:
        _maps[key] = maps
        while len(_maps) > 2:
            _maps.popitem(last=False)
    return maps


def _limits(body: PlanRequest | ImplantationRequest) -> Limits:
    extra = {"min_separation_mm": body.min_separation_mm} if isinstance(body, ImplantationRequest) else {}
    return Limits(max_length_mm=body.max_length_mm, max_angle_deg=body.max_angle_deg,
                  risk_cutoff_mm=body.risk_cutoff_mm, **extra)


def _store(call: PatientCall, volume_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    with call.store.begin() as connection:
        version = TwinRepository(connection, call.store.codec).add_version(
            call.patient_id, KIND, payload, {"volume_id": volume_id, "planner": "medtwin.imaging.planning"},
            actor=call.actor, now=call.clock())
    return {"version": version, **payload}


def _plan(call: PatientCall, volume_id: str, body: PlanRequest) -> dict[str, Any]:
    labels = _labels(call, volume_id)
    request = body.model_dump()
    limits = _limits(body)
    try:
        maps = _distance_maps(call, volume_id, labels, request["criticals"])
        result = plan_on_labels(labels, margins_mm={c.label: c.margin_mm for c in body.criticals},
                                target_label=body.target_label, target_mm=body.target_mm, entry_label=body.entry_label,
                                limits=limits, max_entries=body.max_entries, max_targets=body.max_targets,
                                top=body.top, rank_by=body.rank_by, maps=maps)
    except VolumeError as error:
        raise _invalid(error) from None
    return _store(call, volume_id, {
        "kind": "ranked", "volume_id": volume_id, "frame": result.plan.frame,
        "target_structure": result.target_structure, "request": request, "entries": result.entries,
        "targets": result.targets, "evaluated": result.plan.evaluated, "rejected": result.plan.rejected,
        "step_mm": limits.step_mm, "candidates": [t.as_dict() for t in result.plan.candidates]})


def _implantation(call: PatientCall, volume_id: str, body: ImplantationRequest) -> dict[str, Any]:
    labels = _labels(call, volume_id)
    request = body.model_dump()
    limits = _limits(body)
    electrodes = [ElectrodeTarget(e.name, e.target_label, e.target_mm) for e in body.electrodes]
    try:
        maps = _distance_maps(call, volume_id, labels, request["criticals"])
        chosen, _ = plan_implantation(labels, electrodes, margins_mm={c.label: c.margin_mm for c in body.criticals},
                                      entry_label=body.entry_label, limits=limits, max_entries=body.max_entries,
                                      max_targets=body.max_targets, maps=maps)
    except VolumeError as error:
        raise _invalid(error) from None
    candidates = [{**t.as_dict(), "rank": i, "electrode_rank": t.rank} for i, t in enumerate(chosen, start=1)]
    return _store(call, volume_id, {
        "kind": "implantation", "volume_id": volume_id, "frame": labels.frame,
        "target_structure": "implantation: " + ", ".join(e.name for e in body.electrodes), "request": request,
        "min_separation_mm": limits.min_separation_mm, "step_mm": limits.step_mm, "candidates": candidates,
        "evaluated": None, "rejected": {}})


@router.post("/patients/{patient_id}/images/{volume_id}/plans", status_code=201,
             summary="Plan straight trajectories on a stored label map; ranked admissible candidates, stored")
async def create_plan(volume_id: str, body: PlanRequest, call: PlanWriter) -> dict[str, Any]:
    return await run_in_threadpool(_plan, call, volume_id, body)


@router.post("/patients/{patient_id}/images/{volume_id}/implantation-plans", status_code=201,
             summary="Several electrodes at once: one admissible trajectory each, all kept apart; stored")
async def create_implantation(volume_id: str, body: ImplantationRequest, call: PlanWriter) -> dict[str, Any]:
    return await run_in_threadpool(_implantation, call, volume_id, body)


def _plans(call: PatientCall) -> list[TwinVersion]:
    with call.store.connect() as connection:
        return [v for v in TwinRepository(connection, call.store.codec).history(call.patient_id) if v.kind == KIND]


def _summary(v: TwinVersion) -> dict[str, Any]:
    p = v.payload
    best = p["candidates"][0] if p["candidates"] else None
    return {"version": v.version, "created_at": v.created_at.isoformat(), "actor": v.actor,
            "volume_id": p["volume_id"], "target_structure": p["target_structure"], "frame": p["frame"],
            "candidates": len(p["candidates"]), "evaluated": p["evaluated"], "rejected": p["rejected"],
            "best_risk": best["risk"] if best else None,
            "best_min_distance_mm": best["min_distance_mm"] if best else None}


@router.get(PLANS, summary="The patient's stored trajectory plans, newest first, with the best candidate's figures")
async def list_plans(call: PlanReader) -> list[dict[str, Any]]:
    return [_summary(v) for v in reversed(await run_in_threadpool(_plans, call))]


def _stored(call: PatientCall, version: int) -> TwinVersion:
    found = next((v for v in _plans(call) if v.version == version), None)
    if found is None:
        raise ProblemError(404, "Not found", f"patient {call.requested!r} has no trajectory plan {version}",
                           kind="not-found", field="version")
    return found


@router.get(PLANS + "/{version}", summary="One stored plan: the request and the ranked candidates")
async def get_plan(version: int, call: PlanReader) -> dict[str, Any]:
    v = await run_in_threadpool(_stored, call, version)
    return {"version": v.version, "created_at": v.created_at.isoformat(), **v.payload}


def _trajectories(v: TwinVersion, rank: int | None) -> list[Trajectory]:
    candidates = v.payload["candidates"]
    chosen = candidates if rank is None else [c for c in candidates if c["rank"] == rank]
    if not chosen:
        raise ProblemError(404, "Not found", f"plan {v.version} has no candidate of rank {rank}",
                           kind="not-found", field="rank")
    return [Trajectory(tuple(c["entry_mm"]), tuple(c["target_mm"]), c["frame"], c["length_mm"],  # type: ignore[arg-type]
                       c["angle_deg"], c["risk"], c["margin_excess_mm"], c["min_distance_mm"],
                       c["nearest_structure"], c["rank"], c["electrode"]) for c in chosen]


def _rehearse(call: PatientCall, version: int, rank: int, step_mm: float) -> dict[str, Any]:
    v = _stored(call, version)
    t = _trajectories(v, rank)[0]
    labels = _labels(call, v.payload["volume_id"])
    maps = _distance_maps(call, v.payload["volume_id"], labels, v.payload["request"]["criticals"])
    try:
        r = rehearsal.rehearse(maps, t.entry_mm, t.target_mm, step_mm=step_mm, labels=labels)
    except VolumeError as error:
        raise _invalid(error) from None
    return {"version": version, "rank": rank, "frame": r.frame, "length_mm": r.length_mm,
            "steps": [s.as_dict() for s in r.steps]}


@router.get(PLANS + "/{version}/rehearsal", summary="Step along a candidate: nearest structures and distances")
async def rehearse_plan(version: int, call: PlanReader, rank: Annotated[int, Query(ge=1)] = 1,
                        step_mm: Annotated[float, Query(ge=0.25, le=10)] = 1.0) -> dict[str, Any]:
    return await run_in_threadpool(_rehearse, call, version, rank, step_mm)


@router.get(PLANS + "/{version}/export", response_class=Response,
            summary="Export candidates as CSV or Slicer markups JSON (.mrk.json), in the frame asked for",
            responses={200: {"content": {"text/csv": {}, "application/json": {}}}})
async def export_plan(version: int, call: PlanReader,
                      format: Annotated[Literal["csv", "markups"], Query()] = "csv",
                      frame: Annotated[Literal["LPS", "RAS"], Query()] = "LPS",
                      rank: Annotated[int | None, Query(ge=1)] = None) -> Response:
    v = await run_in_threadpool(_stored, call, version)
    chosen = _trajectories(v, rank)
    name = f"plan-{version}"
    if format == "csv":
        return Response(plan_export.to_csv(chosen, frame), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
    return Response(orjson.dumps(plan_export.to_slicer_markups(chosen, frame)), media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{name}.mrk.json"'})


def _procedure(call: PatientCall, version: int, rank: int | None) -> dict[str, Any]:
    v = _stored(call, version)
    if rank is None and v.payload.get("kind") != "implantation":
        rank = 1  # a ranked plan: the best candidate; an implantation: all its electrodes
    link = images.volume_link(call.store, call.patient_id, v.payload["volume_id"])
    resource = plan_export.to_fhir_procedure(_trajectories(v, rank), call.patient_id, v.payload["target_structure"],
                                             frame="LPS", imaging_study_id=link["study_id"] if link else None)
    # one Procedure per (patient, plan, candidate): a conditional create on its identifier, so writing it again
    # changes nothing (the store names it; an id of our choosing would need an existing resource)
    key = hashlib.sha256(f"{call.patient_id}:{version}:{rank}".encode()).hexdigest()[:32]
    resource["identifier"] = [{"system": PLAN_IDENTIFIER, "value": key}]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": resource, "request": {
        "method": "POST", "url": "Procedure", "ifNoneExist": f"identifier={PLAN_IDENTIFIER}|{key}"}}]}
    writer = Writer(call.principal.role, call.principal.patient_ids, call.principal.scopes)
    report = import_unit(call.store, RawUnit(f"imaging-plan:{version}", "json", bundle), actor=call.actor,
                         writer=writer)
    if report.error is not None:
        error: RecordError = report.error
        raise record_problem(error, "Not written")
    written = next((i, str(o)) for t, i, o in report.entries.values() if t == "Procedure")
    return {"version": version, "rank": rank, "procedure_id": written[0], "outcome": written[1],
            "resource": {**resource, "id": written[0]}}


@router.post(PLANS + "/{version}/procedure", status_code=201,
             summary="Write the chosen candidate into the record as a FHIR Procedure (status preparation)")
async def write_procedure(version: int, call: PlanWriter,
                          rank: Annotated[int | None, Query(ge=1, description="default: the best candidate, "
                                                                         "or every electrode of an implantation")] = None
                          ) -> dict[str, Any]:
    return await run_in_threadpool(_procedure, call, version, rank)


def _scene(call: PatientCall, version: int, max_faces: int) -> dict[str, Any]:
    v = _stored(call, version)
    request = v.payload["request"]
    labels = _labels(call, v.payload["volume_id"])
    roles: dict[int | str, str] = {c["label"]: "critical" for c in request["criticals"]}
    if request.get("target_label") is not None:
        roles[request["target_label"]] = "target"
    try:
        meshes = scene_meshes(labels, roles, max_faces=max_faces)
    except VolumeError as error:
        raise _invalid(error) from None
    return {"version": version, "frame": v.payload["frame"], "units": "mm", "structures": meshes,
            "trajectories": [{k: c[k] for k in ("rank", "entry_mm", "target_mm", "risk", "min_distance_mm")}
                             for c in v.payload["candidates"]]}


@router.get(PLANS + "/{version}/scene", summary="Meshes of the plan's structures and its trajectories, for a 3D view")
async def plan_scene(version: int, call: PlanReader,
                     max_faces: Annotated[int, Query(ge=100, le=50_000)] = 3000) -> dict[str, Any]:
    return await run_in_threadpool(_scene, call, version, max_faces)
