"""FHIR Bulk Data ``$export`` jobs (Bulk Data Access v2): what to export, the export itself (one ndjson file per
resource type, current versions with ``meta.versionId``/``meta.lastUpdated``, decimals as stored), and the jobs'
state (kick-off, progress, manifest, cancel). The HTTP side is ``api/routers/fhir/bulk.py``.

Finished jobs and their files are kept for ``KEEP_FOR``; the job table is the server process's own (one
process serves a job's status and files). The reach is fixed at kick-off: the patients the caller may see (None: any) and whether resources of no
patient (Organization, Practitioner, ...) belong in it. Files are sealed with the store's codec, chunk by chunk
(an export is patient data at rest like the store's rows), and opened again only for their owner's download.
"""

from __future__ import annotations

import shutil
import struct
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from medtwin.record.compartment import in_patient_compartment
from medtwin.record.export import stamped
from medtwin.store.database import Store
from medtwin.store.records import RecordRepository

BATCH = 1000
#: How long a finished job's files stay (Bulk Data: the server says; the manifest's files expire with it).
KEEP_FOR = timedelta(hours=24)
_LENGTH = struct.Struct(">I")


@dataclass(frozen=True)
class ExportRequest:
    """What one kick-off asks for. ``patients``: the patients whose data are exported (None: every patient);
    ``unowned``: also resources of no patient; ``types``: in the order the files are written."""

    owner: str
    request_url: str
    types: tuple[str, ...]
    patients: frozenset[str] | None
    unowned: bool
    since: datetime | None


@dataclass
class ExportFile:
    resource_type: str
    name: str
    count: int


@dataclass
class ExportJob:
    id: str
    request: ExportRequest
    started: datetime
    folder: Path
    status: str = "in-progress"  # in-progress | completed | failed
    done_types: int = 0
    exported: int = 0
    files: list[ExportFile] = field(default_factory=list)
    error: str | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)

    @property
    def progress(self) -> str:
        return f"{self.done_types}/{len(self.request.types)} types, {self.exported} resources"

    def manifest(self, file_url: Callable[[ExportFile], str]) -> dict[str, Any]:
        """The completed job's manifest (Bulk Data Access v2 ``output``; empty types are left out)."""
        return {"transactionTime": self.started.isoformat().replace("+00:00", "Z"),
                "request": self.request.request_url, "requiresAccessToken": True,
                "output": [{"type": f.resource_type, "url": file_url(f), "count": f.count}
                           for f in self.files if f.count],
                "error": []}


def ordered_types(types: set[str]) -> tuple[str, ...]:
    """Shared types first, then Patient, then the rest by name: files imported in this order resolve their
    references to shared resources and patients."""
    return tuple(sorted(types, key=lambda t: (in_patient_compartment(t) or t == "Patient", t != "Patient", t)))


def export_lines(store: Store, request: ExportRequest, resource_type: str) -> Iterator[list[bytes]]:
    """The ndjson lines of one type, a batch at a time."""
    with store.connect() as connection:
        records = RecordRepository(connection, store.codec)
        for batch in records.current_batches(resource_type, patients=request.patients, unowned=request.unowned,
                                             since=request.since, size=BATCH):
            yield [stamped(v.raw, v.version, v.last_updated) for v in batch]


def write_sealed(path: Path, chunks: Iterator[bytes], seal: Callable[[bytes], bytes]) -> None:
    with path.open("wb") as out:
        for chunk in chunks:
            sealed = seal(chunk)
            out.write(_LENGTH.pack(len(sealed)))
            out.write(sealed)


def read_sealed(path: Path, open_: Callable[[bytes], bytes]) -> Iterator[bytes]:
    """The plain chunks of a file written by :func:`write_sealed`."""
    with path.open("rb") as source:
        while header := source.read(_LENGTH.size):
            (size,) = _LENGTH.unpack(header)
            yield open_(source.read(size))


class BulkExports:
    """The export jobs of one server, run one at a time each in a background thread; files under ``root``."""

    def __init__(self, store: Store, root: Path, clock: Callable[[], datetime]) -> None:
        self.store, self.root, self.clock = store, root, clock
        self._jobs: dict[str, ExportJob] = {}
        self._lock = threading.Lock()

    def start(self, request: ExportRequest) -> ExportJob:
        self._expire()
        job_id = uuid.uuid4().hex
        job = ExportJob(job_id, request, self.clock(), self.root / job_id)
        job.folder.mkdir(parents=True)
        with self._lock:
            self._jobs[job_id] = job
        threading.Thread(target=self._run, args=(job,), name=f"bulk-export-{job_id[:8]}", daemon=True).start()
        return job

    def job(self, job_id: str, owner: str) -> ExportJob | None:
        """The job, if ``owner`` started it (anyone else: as if there were none)."""
        with self._lock:
            job = self._jobs.get(job_id)
        return job if job is not None and job.request.owner == owner else None

    def exists(self, job_id: str) -> bool:
        """Whether there is such a job of anyone (for the audit record only: callers get :meth:`job`)."""
        with self._lock:
            return job_id in self._jobs

    def cancel(self, job_id: str, owner: str) -> bool:
        """Stop the job and delete its files; False when there is no such job of ``owner``."""
        job = self.job(job_id, owner)
        if job is None:
            return False
        job.cancelled.set()
        job.finished.wait(timeout=60)
        with self._lock:
            self._jobs.pop(job_id, None)
        shutil.rmtree(job.folder, ignore_errors=True)
        return True

    def file(self, job: ExportJob, name: str) -> Iterator[bytes] | None:
        """A completed job's file as plain ndjson chunks; None for a name it does not have."""
        found = next((f for f in job.files if f.name == name), None)
        if job.status != "completed" or found is None:
            return None
        return read_sealed(job.folder / found.name, self.store.codec.open)

    def _expire(self) -> None:
        """Delete jobs finished more than ``KEEP_FOR`` ago, and folders left by an earlier server process."""
        cutoff = self.clock() - KEEP_FOR
        with self._lock:
            old = [j for j in self._jobs.values() if j.finished.is_set() and j.started < cutoff]
            for job in old:
                del self._jobs[job.id]
            known = set(self._jobs)
        for job in old:
            shutil.rmtree(job.folder, ignore_errors=True)
        if self.root.is_dir():
            for folder in self.root.iterdir():
                if folder.name not in known and folder.stat().st_mtime < cutoff.timestamp():
                    shutil.rmtree(folder, ignore_errors=True)

    def _run(self, job: ExportJob) -> None:
        try:
            for resource_type in job.request.types:
                if job.cancelled.is_set():
                    return
                exported = ExportFile(resource_type, f"{resource_type}.ndjson", 0)

                def chunks(rtype: str = resource_type, out: ExportFile = exported) -> Iterator[bytes]:
                    for lines in export_lines(self.store, job.request, rtype):
                        if job.cancelled.is_set():
                            return
                        out.count += len(lines)
                        job.exported += len(lines)
                        yield b"\n".join(lines) + b"\n"

                write_sealed(job.folder / exported.name, chunks(), self.store.codec.seal)
                job.files.append(exported)
                job.done_types += 1
            job.status = "completed"
        except Exception as error:  # a failed job reports why in its status answer
            job.status, job.error = "failed", f"{type(error).__name__}: {error}"
        finally:
            job.finished.set()
