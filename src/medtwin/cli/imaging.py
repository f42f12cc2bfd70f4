"""``medtwin imaging ...``: images in the twin (issue #19).

One Typer group, ``app``; each subcommand is a function registered with ``@app.command(NAME)``. To add one
(``segment``, ``mesh``, ``plan``), append a function below with its own decorator and import its heavy modules
inside the function (see ``cli/main.py`` on start-up time). Errors: :func:`fail_input` prints the file and the
field and exits with status 2.

* ``import PATIENT PATH``: a DICOM series (a folder, a zip, or one multi-frame file) or a NIfTI file
  (``.nii``/``.nii.gz``) into the patient's twin: the volume is stored content-addressed and sealed, and the
  patient's FHIR ImagingStudy points at it. Re-importing the same images changes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from medtwin.cli.common import audit_cli, cli_actor, console, fail, load_settings, open_store

if TYPE_CHECKING:
    from medtwin.imaging.volume import Volume

HELP = "Images in the twin: import DICOM/NIfTI volumes (and segment, mesh, plan on them)."
app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False)

PatientArg = Annotated[str, typer.Argument(help="patient id, the sender's id, or the medical record number")]
JsonOption = Annotated[bool, typer.Option("--json", help="print the result as JSON")]


def fail_input(source: str, field: str, message: str) -> NoReturn:
    """Stop with status 2, naming the file and the entry (field) that is wrong."""
    fail(f"{source}: {field}: {message}", 2)


@app.command("import")
def import_command(patient: PatientArg,
                   path: Annotated[Path, typer.Argument(help="DICOM folder, .zip of DICOM, DICOM file, .nii or .nii.gz")],
                   as_json: JsonOption = False) -> None:
    """Import a DICOM series or a NIfTI volume into a patient's twin (stored sealed, linked to an ImagingStudy)."""
    from medtwin.imaging.volume import VolumeError
    from medtwin.record.errors import RecordError
    from medtwin.twin import imaging as service

    if not path.exists():
        fail_input(str(path), "path", "no such file or folder")
    store = open_store(load_settings())
    try:
        try:
            result = service.import_path(store, patient, path, actor=cli_actor())
        except VolumeError as error:
            fail_input(getattr(error, "source", None) or str(path), error.field, error.message)
        except service.PatientNotFoundError:
            fail(f"no patient {patient!r} in the store", 2)
        except RecordError as error:
            fail(f"{path}: {error.describe()}", 2)
        audit_cli(store, "write", "ImagingStudy", patient_id=result.patient_id, resource_id=result.study_id,
                  detail={"volume": result.volume_id, "created": result.created})
    finally:
        store.dispose()
    if as_json:
        console.print_json(json.dumps(result.as_dict()))
        return
    verb = "stored" if result.created else "already stored (unchanged)"
    shape = " x ".join(str(n) for n in result.shape)
    spacing = " x ".join(f"{s:.3g}" for s in result.spacing_mm)
    console.print(f"{verb}: volume {result.volume_id} ({shape} voxels, {spacing} mm, frame {result.frame}) "
                  f"for patient {result.patient_id}; ImagingStudy/{result.study_id}")


@app.command("plan")
def plan_command(
    labels_path: Annotated[Path, typer.Argument(help="label map: .nii/.nii.gz or DICOM (labels by value or name)")],
    target: Annotated[str, typer.Option(help="target structure: label value or name")],
    critical: Annotated[list[str], typer.Option(help="LABEL:MARGIN_MM of a structure to avoid (repeatable)")],
    entry_label: Annotated[str | None, typer.Option(help="entries only on this label's surface voxels")] = None,
    max_length_mm: Annotated[float, typer.Option()] = 100.0, max_angle_deg: Annotated[float, typer.Option()] = 30.0,
    top: Annotated[int, typer.Option(min=1, max=100)] = 10,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="write the candidates as CSV")] = None,
    markups_out: Annotated[Path | None, typer.Option("--markups", help="write a Slicer .mrk.json")] = None,
    frame: Annotated[str, typer.Option(help="frame of the exported coordinates: LPS or RAS")] = "LPS",
    as_json: JsonOption = False,
) -> None:
    """Plan straight trajectories (ranked, every hard constraint kept) on a label map; export CSV / markups."""
    from medtwin.imaging import plan_export
    from medtwin.imaging.plan_labels import parse_margins, plan_on_labels
    from medtwin.imaging.planning import Limits
    from medtwin.imaging.volume import VolumeError
    from medtwin.twin.imaging import read_path

    try:
        result = plan_on_labels(read_path(labels_path), margins_mm=parse_margins(critical), target_label=target,
                                entry_label=entry_label, limits=Limits(max_length_mm, max_angle_deg), top=top)
        chosen = result.plan.candidates
        outputs = {csv_out: lambda: plan_export.to_csv(chosen, frame),
                   markups_out: lambda: json.dumps(plan_export.to_slicer_markups(chosen, frame), indent=1)}
        for out, render in outputs.items():
            if out is not None:
                out.write_text(render(), encoding="utf-8")
    except VolumeError as error:
        fail_input(getattr(error, "source", None) or str(labels_path), error.field, error.message)
    if as_json:
        console.print_json(json.dumps({"frame": result.plan.frame, "rejected": result.plan.rejected,
                                       "candidates": [t.as_dict() for t in chosen]}))
        return
    console.print(f"{len(chosen)} admissible trajectories to {result.target_structure} (frame {result.plan.frame}; "
                  f"{result.plan.evaluated} paths, removed: {result.plan.rejected})")
    for t in chosen:
        console.print(f"  #{t.rank} risk {t.risk:.3f}  length {t.length_mm:.1f} mm  angle {t.angle_deg:.1f} deg  "
                      f"nearest {t.nearest_structure} {t.min_distance_mm:.1f} mm  entry {[round(v, 1) for v in t.entry_mm]}")


def _read_labels(path: Path) -> Volume:
    """A label map from a NIfTI file, a DICOM SEG, or a DICOM series of whole numbers."""
    from medtwin.imaging import segment
    from medtwin.imaging.nifti import is_nifti_name
    from medtwin.twin.imaging import read_path

    if path.is_file() and not is_nifti_name(path.name):
        blob = path.read_bytes()
        if segment.is_dicom_seg(blob):
            return segment.read_dicom_seg(blob, str(path))
    if path.is_file() and is_nifti_name(path.name):
        return segment.label_map_from_nifti(path.read_bytes(), str(path))
    return segment.as_label_map(read_path(path), source=str(path))


@app.command("segment")
def segment_command(
    image_path: Annotated[Path, typer.Argument(help="image (.nii/.nii.gz or DICOM); with no threshold or seed: a "
                                                    "label map (NIfTI or DICOM SEG) whose statistics are printed")],
    out: Annotated[Path | None, typer.Option(help="write the label map here (.nii.gz)")] = None,
    lower: Annotated[float | None, typer.Option(help="lower threshold (image units, e.g. HU)")] = None,
    upper: Annotated[float | None, typer.Option(help="upper threshold")] = None,
    seed: Annotated[str | None, typer.Option(help="grow a region from this point: x,y,z in mm")] = None,
    seed_frame: Annotated[str, typer.Option(help="frame of --seed: RAS or LPS")] = "RAS",
    tolerance: Annotated[float | None, typer.Option(help="region growing: values within this of the seed's")] = None,
    largest: Annotated[bool, typer.Option("--largest", help="keep the largest connected piece only")] = False,
    open_mm: Annotated[float, typer.Option(help="opening radius in mm (removes specks and spurs)")] = 0.0,
    close_mm: Annotated[float, typer.Option(help="closing radius in mm (fills small holes and gaps)")] = 0.0,
    name: Annotated[str, typer.Option(help="name of the segmented structure")] = "segment",
    as_json: JsonOption = False,
) -> None:
    """Segment an image (threshold or region growing, then clean-up) and print Slicer-style statistics."""
    from medtwin.imaging import segment
    from medtwin.imaging.nifti import write_nifti
    from medtwin.imaging.stats import segment_statistics
    from medtwin.imaging.volume import VolumeError
    from medtwin.twin.imaging import read_path

    if not image_path.exists():
        fail_input(str(image_path), "path", "no such file or folder")
    try:
        if lower is None and upper is None and seed is None:
            labels = _read_labels(image_path)
        else:
            seed_mm = _point(seed) if seed is not None else None
            recipe = segment.Recipe(lower, upper, seed_mm, seed_frame.upper(), tolerance,  # type: ignore[arg-type]
                                    largest, open_mm, close_mm, name)
            labels = segment.apply_recipe(read_path(image_path), recipe)
        stats = segment_statistics(labels)
        if out is not None:
            out.write_bytes(write_nifti(labels))
    except VolumeError as error:
        fail_input(getattr(error, "source", None) or str(image_path), error.field, error.message)
    if as_json:
        console.print_json(json.dumps({"statistics": [s.as_dict() for s in stats],
                                       "out": str(out) if out else None}))
        return
    for s in stats:
        area = f"{s.surface_area_mm2:.1f} mm2" if s.surface_area_mm2 is not None else "area not callable"
        console.print(f"label {s.label} {s.name!r}: {s.volume_ml:.3f} mL ({s.voxel_count} voxels), {area}, "
                      f"Feret {s.feret_diameter_mm or 0:.1f} mm, centroid {[round(c, 1) for c in s.centroid_mm]} "
                      f"mm {s.frame}" + (f"  [{s.note}]" if s.note else ""))
    if out is not None:
        console.print(f"label map written to {out}")


def _point(text: str) -> tuple[float, float, float]:
    try:
        x, y, z = (float(v) for v in text.split(","))
    except ValueError:
        fail_input("--seed", "seed_mm", f"must be x,y,z in mm, got {text!r}")
    return (x, y, z)


@app.command("mesh")
def mesh_command(
    labels_path: Annotated[Path, typer.Argument(help="label map: .nii/.nii.gz, DICOM SEG or a DICOM label series")],
    out: Annotated[Path, typer.Option(help="mesh file: .stl, .obj or .ply (millimetres, frame written in it)")],
    label: Annotated[str, typer.Option(help="structure: label value or name")] = "1",
    faces: Annotated[int | None, typer.Option(help="decimate to about this many triangles")] = None,
    smoothing: Annotated[int, typer.Option(help="Taubin smoothing passes (0 = the raw voxel staircase)")] = 30,
    max_change_pct: Annotated[float, typer.Option(help="refuse a decimation that moves area or volume more")] = 1.0,
    as_json: JsonOption = False,
) -> None:
    """Mesh one structure of a label map as a watertight surface in mm and write STL/OBJ/PLY."""
    from medtwin.imaging import mesh as meshing
    from medtwin.imaging import segment
    from medtwin.imaging.volume import VolumeError

    if not labels_path.exists():
        fail_input(str(labels_path), "path", "no such file or folder")
    try:
        labels = _read_labels(labels_path)
        value = segment.label_value(labels, label)
        surface = meshing.mesh_label_map(labels, value, smoothing_iterations=smoothing,
                                         target_faces=faces, max_change_pct=max_change_pct)
        check = meshing.check_mesh(surface)
        meshing.export_mesh(surface, out)
    except VolumeError as error:
        fail_input(getattr(error, "source", None) or str(labels_path), error.field, error.message)
    except meshing.MeshError as error:
        fail_input(str(out), error.field, error.message)
    result = {"out": str(out), "label": value, "name": surface.meta.get("name", ""), "faces": surface.n_faces,
              "area_mm2": surface.area_mm2, "volume_ml": surface.volume_ml, "watertight": check.watertight,
              "units": "mm", "frame": surface.frame}
    if as_json:
        console.print_json(json.dumps(result))
        return
    console.print(f"{out}: {surface.n_faces} triangles, area {surface.area_mm2:.1f} mm2, volume "
                  f"{surface.volume_ml:.3f} mL, watertight, units mm, frame {surface.frame}")
