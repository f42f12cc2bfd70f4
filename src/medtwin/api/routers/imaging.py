"""Images in the twin over HTTP: upload a DICOM series or NIfTI volume, list a patient's volumes, read their
geometry, view slices as PNG (with a label-map overlay), export de-identified.

Thin over :mod:`medtwin.twin.imaging` (store and ImagingStudy) and :mod:`medtwin.imaging.slices`. The patient is
resolved by the guard (404 when unknown or out of reach, like a missing one); a volume id another patient has
is 404 too. Reads are ``read ImagingStudy``, the upload ``write ImagingStudy`` (and the ImagingStudy itself is
authorised against what is stored by the record's import path), exports ``export ImagingStudy``. Bad files
are 422 problem+json naming the file (``source``) and the attribute (``field``). The contract the dashboard
builds on is in docs/imaging.md.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, UploadFile
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from medtwin.api.deps import PatientCall, patient_call
from medtwin.api.problems import ProblemError, record_problem
from medtwin.imaging import slices
from medtwin.imaging.volume import ImageFileError, Volume, VolumeError
from medtwin.record.errors import RecordError
from medtwin.security.write_policy import Writer
from medtwin.twin import imaging as service

router = APIRouter(tags=["imaging"])

ImagingReader = Annotated[PatientCall, Depends(patient_call("read", "ImagingStudy"))]
ImagingWriter = Annotated[PatientCall, Depends(patient_call("write", "ImagingStudy"))]
ImagingExporter = Annotated[PatientCall, Depends(patient_call("export", "ImagingStudy"))]
BASE = "/patients/{patient_id}/images"


def _bad_volume(error: VolumeError) -> ProblemError:
    source = error.source.rsplit("/", 1)[-1] if isinstance(error, ImageFileError) else None
    return ProblemError(422, "Unusable image", f"{error.field}: {error.message}", kind="invalid-image",
                        field=error.field, source=source)


def _public(link: dict[str, Any]) -> dict[str, Any]:
    meta = link["meta"]
    provenance = meta.get("provenance", {})
    return {"volume_id": link["volume_id"], "study_id": link["study_id"], "created_at": link["created_at"].isoformat(),
            "shape": meta["shape"], "spacing_mm": meta["spacing_mm"], "affine": meta["affine"], "frame": meta["frame"],
            "units": meta["units"], "dtype": meta.get("dtype"), "labels": meta.get("labels", {}),
            "modality": provenance.get("modality", "OT"), "series_uid": provenance.get("series_uid"),
            "series_description": provenance.get("series_description"), "format": provenance.get("format"),
            "raw_bytes": link["raw_bytes"], "stored_bytes": link["stored_bytes"]}


def _import(call: PatientCall, name: str, blob: bytes) -> service.ImportResult:
    writer = Writer(call.principal.role, call.principal.patient_ids, call.principal.scopes)
    try:
        volume = service.read_upload(name, blob)
        return service.import_volume(call.store, call.patient_id, volume, actor=call.actor, writer=writer,
                                     clock=call.clock)
    except VolumeError as error:
        raise _bad_volume(error) from None
    except RecordError as error:
        raise record_problem(error) from None


@router.post(BASE, status_code=201, summary="Upload a DICOM series (.zip, or one multi-frame file) or a NIfTI volume",
             responses={200: {"description": "Already stored for this patient: nothing changed"},
                        422: {"description": "Unusable image: the problem names the file (source) and field"}})
async def upload(file: UploadFile, call: ImagingWriter) -> JSONResponse:
    blob = await file.read()
    name = (file.filename or "upload").rsplit("/", 1)[-1]
    if not blob:
        raise ProblemError(422, "Unusable image", "file: empty upload", kind="invalid-image", field="file")
    result = await run_in_threadpool(_import, call, name, blob)
    body = result.as_dict()
    return JSONResponse(body, status_code=201 if result.created else 200)


@router.get(BASE, summary="The patient's stored volumes (oldest first)")
async def list_volumes(call: ImagingReader) -> list[dict[str, Any]]:
    return [_public(link) for link in await run_in_threadpool(service.volumes, call.store, call.patient_id)]


def _link(call: PatientCall, volume_id: str) -> dict[str, Any]:
    link = service.volume_link(call.store, call.patient_id, volume_id)
    if link is None:
        raise ProblemError(404, "Not found", f"patient {call.requested!r} has no volume {volume_id!r}",
                           kind="not-found", field="volume_id")
    return link


def _volume(call: PatientCall, volume_id: str, field: str = "volume_id") -> Volume:
    volume = service.load_volume(call.store, call.patient_id, volume_id)
    if volume is None:
        raise ProblemError(404, "Not found", f"patient {call.requested!r} has no volume {volume_id!r}",
                           kind="not-found", field=field)
    return volume


@router.get(BASE + "/{volume_id}", summary="A volume's geometry: shape, spacing, affine (voxel -> mm), frame, labels")
async def volume_metadata(volume_id: str, call: ImagingReader) -> dict[str, Any]:
    return _public(await run_in_threadpool(_link, call, volume_id))


def _slice(call: PatientCall, volume_id: str, axis: str, index: int | None, window: float | None,
           level: float | None, overlay: str | None, opacity: float) -> Response:
    volume = _volume(call, volume_id)
    labels = _volume(call, overlay, "overlay") if overlay else None
    try:
        image = slices.render_slice(volume, axis, index, window, level, labels, opacity)
    except VolumeError as error:
        raise _bad_volume(error) from None
    return Response(slices.png_bytes(image.pixels), media_type="image/png",
                    headers={**image.headers(), "Cache-Control": "private, max-age=300"})


@router.get(BASE + "/{volume_id}/slice", summary="One slice as a PNG (window/level, optional label-map overlay)",
            response_class=Response,
            responses={200: {"content": {"image/png": {}}, "description": "8-bit PNG; X-* headers map pixels to voxels"}})
async def slice_png(
    volume_id: str, call: ImagingReader,
    axis: Annotated[Literal["axial", "coronal", "sagittal", "i", "j", "k"], Query()] = "axial",
    index: Annotated[int | None, Query(description="slice index along the axis; default the middle")] = None,
    window: Annotated[float | None, Query(gt=0, description="display window width in the volume's units")] = None,
    level: Annotated[float | None, Query(description="display window centre; default from the 1-99th percentiles")] = None,
    overlay: Annotated[str | None, Query(description="volume id of a label map on the same grid")] = None,
    opacity: Annotated[float, Query(ge=0, le=1)] = 0.4,
) -> Response:
    return await run_in_threadpool(_slice, call, volume_id, axis, index, window, level, overlay, opacity)


def _export(call: PatientCall, volume_id: str, kind: str) -> Response:
    volume = _volume(call, volume_id)
    if kind == "nifti":
        from medtwin.imaging.nifti import write_nifti

        return Response(write_nifti(volume), media_type="application/gzip",
                        headers={"Content-Disposition": f'attachment; filename="{volume_id[:16]}.nii.gz"'})
    from medtwin.imaging.dicom_export import export_zip

    return Response(export_zip(volume), media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{volume_id[:16]}-dicom.zip"'})


@router.get(BASE + "/{volume_id}/export", summary="The volume as NIfTI (.nii.gz) or a de-identified DICOM series (zip)",
            response_class=Response,
            responses={200: {"content": {"application/gzip": {}, "application/zip": {}},
                             "description": "NIfTI-1 in RAS, or DICOM de-identified by the PS3.15 basic profile"}})
async def export(volume_id: str, call: ImagingExporter,
                 format: Annotated[Literal["nifti", "dicom"], Query()] = "nifti") -> Response:  # noqa: A002
    return await run_in_threadpool(_export, call, volume_id, format)
