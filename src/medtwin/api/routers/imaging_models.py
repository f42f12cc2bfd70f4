"""Segmentation, statistics and meshes over HTTP, on a patient's stored volumes (issue #19 items 2 and 3).

Thin over :mod:`medtwin.imaging.segment` (one :class:`~medtwin.imaging.segment.Recipe` for the CLI and here),
:mod:`medtwin.imaging.stats` and :mod:`medtwin.imaging.mesh`; volumes are loaded and stored through
:mod:`medtwin.twin.imaging` (a volume id another patient has is 404, like a missing one). A segmentation is stored
as a derived volume: its own SEG series in the source image's study (``derived_from``).

Policies: segmenting writes a volume into the record (``write ImagingStudy``, and the ImagingStudy update is
authorised against what is stored by the record's import path); statistics and meshes are reads
(``read ImagingStudy``). Bad input (a seed outside the image, a label not in the map, an image that is not a label
map) is 422 problem+json naming the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from medtwin.api.deps import PatientCall, patient_call
from medtwin.api.problems import ProblemError, record_problem
from medtwin.api.routers import imaging as imaging_routes
from medtwin.imaging import mesh as meshing
from medtwin.imaging import segment
from medtwin.imaging.stats import segment_statistics
from medtwin.imaging.volume import ImageFileError, Volume, VolumeError
from medtwin.record.errors import RecordError
from medtwin.security.write_policy import Writer
from medtwin.twin import imaging as images

router = APIRouter(tags=["imaging models"])
BASE = "/patients/{patient_id}/images/{volume_id}"
ModelReader = Annotated[PatientCall, Depends(patient_call("read", "ImagingStudy"))]
ModelWriter = Annotated[PatientCall, Depends(patient_call("write", "ImagingStudy"))]
MAX_FACES = 2_000_000


class SegmentRequest(BaseModel):
    """A threshold (``lower`` and/or ``upper``), or a seed with a tolerance (optionally within a threshold band);
    then optional clean-up. Seeds are millimetres in ``seed_frame``."""

    lower: float | None = None
    upper: float | None = None
    seed_mm: list[float] | None = Field(None, min_length=3, max_length=3)
    seed_frame: Literal["RAS", "LPS"] = "RAS"
    tolerance: float | None = Field(None, ge=0)
    keep_largest: bool = False
    open_mm: float = Field(0.0, ge=0, le=20)
    close_mm: float = Field(0.0, ge=0, le=20)
    name: str = Field("segment", min_length=1, max_length=64)


def _bad(error: VolumeError | meshing.MeshError) -> ProblemError:
    source = error.source.rsplit("/", 1)[-1] if isinstance(error, ImageFileError) else None
    return ProblemError(422, "Unusable input", f"{error.field}: {error.message}", kind="invalid-input",
                        field=error.field, source=source)


_volume = imaging_routes._volume  # the patient's volume, or 404 naming volume_id (one copy)


def _labels(call: PatientCall, volume_id: str) -> Volume:
    try:
        return segment.as_label_map(_volume(call, volume_id), source=volume_id)
    except VolumeError as error:
        raise _bad(error) from None


def _segment(call: PatientCall, volume_id: str, body: SegmentRequest) -> dict[str, Any]:
    source = _volume(call, volume_id)
    seed = tuple(body.seed_mm) if body.seed_mm is not None else None
    recipe = segment.Recipe(body.lower, body.upper, seed, body.seed_frame, body.tolerance,  # type: ignore[arg-type]
                            body.keep_largest, body.open_mm, body.close_mm, body.name)
    try:
        labels = segment.apply_recipe(source, recipe)
        stats = segment_statistics(labels) if labels.data.any() else []
    except VolumeError as error:
        raise _bad(error) from None
    writer = Writer(call.principal.role, call.principal.patient_ids, call.principal.scopes)
    try:
        stored = images.import_volume(call.store, call.patient_id, labels, actor=call.actor, writer=writer,
                                      clock=call.clock, derived_from=volume_id)
    except VolumeError as error:
        raise _bad(error) from None
    except RecordError as error:
        raise record_problem(error, "Not stored") from None
    return {"volume_id": stored.volume_id, "derived_from": volume_id, "created": stored.created,
            "study_id": stored.study_id, "statistics": [s.as_dict() for s in stats]}


@router.post(BASE + "/segmentations", status_code=201,
             summary="Segment a stored image (threshold or region growing, clean-up in mm); the label map is stored",
             responses={200: {"description": "The same label map was already stored: nothing changed"}})
async def create_segmentation(volume_id: str, body: SegmentRequest, call: ModelWriter) -> JSONResponse:
    result = await run_in_threadpool(_segment, call, volume_id, body)
    return JSONResponse(result, status_code=201 if result["created"] else 200)


def _statistics(call: PatientCall, volume_id: str) -> dict[str, Any]:
    labels = _labels(call, volume_id)
    try:
        stats = segment_statistics(labels)
    except VolumeError as error:
        raise _bad(error) from None
    return {"volume_id": volume_id, "frame": labels.frame, "units": {"volume": "mL", "length": "mm", "area": "mm2"},
            "statistics": [s.as_dict() for s in stats]}


@router.get(BASE + "/statistics", summary="Per-structure statistics of a stored label map (as Slicer's Segment "
                                          "Statistics: volume, surface area, Feret diameter, centroid, bounds)")
async def statistics(volume_id: str, call: ModelReader) -> dict[str, Any]:
    return await run_in_threadpool(_statistics, call, volume_id)


def _mesh(call: PatientCall, volume_id: str, label: str, fmt: str, faces: int | None, smoothing: int,
          max_change_pct: float) -> Response:
    labels = _labels(call, volume_id)
    try:
        value = segment.label_value(labels, label)
        surface = meshing.mesh_label_map(labels, value, smoothing_iterations=smoothing, target_faces=faces,
                                         max_change_pct=max_change_pct)
        check = meshing.check_mesh(surface)
        if not check.ok:
            surface = meshing.repair_mesh(surface)
    except (VolumeError, meshing.MeshError) as error:
        raise _bad(error) from None
    headers = {"X-Mesh-Units": "mm", "X-Mesh-Frame": surface.frame, "X-Mesh-Faces": str(surface.n_faces),
               "X-Mesh-Area-mm2": f"{surface.area_mm2:.3f}", "X-Mesh-Volume-mL": f"{surface.volume_ml:.4f}",
               "X-Mesh-Watertight": "true", "Cache-Control": "private, max-age=300"}
    if fmt == "json":
        body = {"units": "mm", "frame": surface.frame, "label": value, "name": surface.meta.get("name", ""),
                "area_mm2": surface.area_mm2, "volume_ml": surface.volume_ml, "watertight": True,
                "vertices_mm": surface.vertices_mm.round(4).tolist(), "faces": surface.faces.tolist()}
        return JSONResponse(body, headers=headers)
    media = {"stl": "model/stl", "obj": "model/obj", "ply": "application/octet-stream"}[fmt]
    headers["Content-Disposition"] = f'attachment; filename="label-{value}.{fmt}"'
    return Response(meshing.mesh_bytes(surface, fmt), media_type=media, headers=headers)  # type: ignore[arg-type]


@router.get(BASE + "/mesh", summary="One structure of a stored label map as a watertight surface in mm",
            response_class=Response,
            responses={200: {"content": {"model/stl": {}, "model/obj": {}, "application/octet-stream": {},
                                         "application/json": {}},
                             "description": "STL/OBJ/PLY (units and frame written in the file) or JSON for the "
                                            "3-D view; X-Mesh-* headers give units, frame, area and volume"}})
async def mesh(volume_id: str, call: ModelReader,
               label: Annotated[str, Query(description="label value or name")] = "1",
               format: Annotated[Literal["stl", "obj", "ply", "json"], Query()] = "stl",  # noqa: A002
               faces: Annotated[int | None, Query(ge=4, le=MAX_FACES, description="decimate to ~this many")] = None,
               smoothing: Annotated[int, Query(ge=0, le=200, description="Taubin passes")] = 30,
               max_change_pct: Annotated[float, Query(ge=0, le=100, description="refuse a decimation that moves "
                                                                               "area or volume more (%)")] = 1.0,
               ) -> Response:
    return await run_in_threadpool(_mesh, call, volume_id, label, format, faces, smoothing, max_change_pct)


class SizingRequest(BaseModel):
    """Measure a structure of a stored label map and size an implant from a catalogue.

    ``femoral-head``: a sphere fitted to the structure; ``vessel``: the cross-section through ``point_mm``
    perpendicular to ``direction`` (both in the volume's frame)."""

    catalogue: Literal["acetabular-cup", "aortic-stent-graft"]
    measure: Literal["femoral-head", "vessel"]
    label: int | str = 1
    point_mm: list[float] | None = Field(None, min_length=3, max_length=3)
    direction: list[float] | None = Field(None, min_length=3, max_length=3)


def _sizing(call: PatientCall, volume_id: str, body: SizingRequest) -> dict[str, Any]:
    from medtwin.imaging import implants

    labels = _labels(call, volume_id)
    try:
        value = segment.label_value(labels, body.label)
        if body.measure == "femoral-head":
            m = implants.femoral_head_diameter(labels, value)
        else:
            if body.point_mm is None or body.direction is None:
                raise implants.ImplantError("point_mm", "a vessel is measured at a point along a direction")
            m = implants.vessel_diameter(labels, body.point_mm, body.direction, label=value)
        result = implants.size_implant(body.catalogue, m.value_mm, m.uncertainty_mm)
    except (VolumeError, implants.ImplantError) as error:
        raise ProblemError(422, "Cannot size", f"{error.field}: {error.message}", kind="invalid-input",
                           field=error.field) from None
    return {"frame": labels.frame, "measurement": {"value_mm": m.value_mm, "uncertainty_mm": m.uncertainty_mm,
                                                   "method": m.method, "centre_mm": m.centre_mm, **m.extra},
            "sizing": result.as_dict()}


@router.post(BASE + "/implant-sizing", summary="Measure a structure and size an implant from a catalogue; "
                                               "callable=false with the reason when the measurement cannot support one")
async def implant_sizing(volume_id: str, body: SizingRequest, call: ModelReader) -> dict[str, Any]:
    return await run_in_threadpool(_sizing, call, volume_id, body)


def _plate(call: PatientCall, volume_id: str, label: str | None, fmt: str) -> Response:
    from medtwin.imaging import implants

    labels = _labels(call, volume_id)
    try:
        value = segment.label_value(labels, label) if label is not None else None
        plate = implants.cranial_plate(labels, label=value)
    except (VolumeError, implants.ImplantError, meshing.MeshError) as error:
        raise ProblemError(422, "No plate", f"{error.field}: {error.message}", kind="invalid-input",
                           field=error.field) from None
    headers = {"X-Mesh-Units": "mm", "X-Mesh-Frame": plate.mesh.frame, "X-Mesh-Faces": str(plate.mesh.n_faces),
               "X-Plate-Volume-mL": f"{plate.volume_ml:.3f}",
               "X-Plane-Normal": ",".join(f"{v:.6f}" for v in plate.plane_normal),
               "X-Plane-Offset-mm": f"{plate.plane_offset_mm:.3f}", "X-Plate-Warnings": " | ".join(plate.warnings),
               "Content-Disposition": f'attachment; filename="cranial-plate.{fmt}"'}
    media = {"stl": "model/stl", "obj": "model/obj", "ply": "application/octet-stream"}[fmt]
    return Response(meshing.mesh_bytes(plate.mesh, fmt), media_type=media, headers=headers)  # type: ignore[arg-type]


@router.get(BASE + "/cranial-plate", summary="A patient-specific cranial plate from a skull label map (mirrored "
                                             "across the fitted mid-sagittal plane), as a watertight mesh in mm",
            response_class=Response,
            responses={200: {"content": {"model/stl": {}, "model/obj": {}, "application/octet-stream": {}},
                             "description": "the plate; X-Plane-* headers give the mid-sagittal plane used"}})
async def cranial_plate(volume_id: str, call: ModelReader,
                        label: Annotated[str | None, Query(description="the skull's label (default: any)")] = None,
                        format: Annotated[Literal["stl", "obj", "ply"], Query()] = "stl") -> Response:  # noqa: A002
    return await run_in_threadpool(_plate, call, volume_id, label, format)
