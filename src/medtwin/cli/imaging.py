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
from typing import Annotated, NoReturn

import typer

from medtwin.cli.common import audit_cli, cli_actor, console, fail, load_settings, open_store

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
