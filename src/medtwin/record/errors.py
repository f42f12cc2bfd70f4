"""Errors raised while reading FHIR input. Each names where the problem is: file, entry, field."""

from __future__ import annotations

from typing import Any, ClassVar


class RecordError(ValueError):
    """Bad FHIR input. ``source`` is the file (or 'request'), ``entry`` the 1-based bundle entry or
    ndjson line, ``field`` a FHIRPath-like location inside the resource."""

    #: What went wrong, as a machine-readable word (problem ``type``, OperationOutcome code, HTTP status).
    #: A subclass names its own in the class statement: ``class NotFhirError(RecordError, kind="not-fhir")``.
    kind: ClassVar[str] = "invalid-record"

    def __init_subclass__(cls, *, kind: str | None = None, **options: Any) -> None:
        super().__init_subclass__(**options)
        if kind is not None:
            cls.kind = kind

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        entry: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.source = source
        self.entry = entry
        self.field = field
        super().__init__(self.describe())

    def describe(self) -> str:
        where = []
        if self.source:
            where.append(self.source)
        if self.entry is not None:
            where.append(f"entry {self.entry}")
        if self.field:
            where.append(f"field {self.field}")
        return f"{': '.join([', '.join(where)]) + ': ' if where else ''}{self.message}"

    def located(self, *, source: str | None = None, entry: int | None = None) -> RecordError:
        """The same error with the outer location filled in (keeps what is already known)."""
        if source is not None and self.source is None:
            self.source = source
        if entry is not None and self.entry is None:
            self.entry = entry
        self.args = (self.describe(),)
        return self


class MalformedJsonError(RecordError, kind="malformed-json"):
    """The text is not JSON (a line of NDJSON included)."""


class NotFhirError(RecordError, kind="not-fhir"):
    """JSON, but not a FHIR resource or bundle entry (not an object, or no ``resourceType``)."""


class UnknownResourceTypeError(RecordError, kind="unknown-resource-type"):
    """A ``resourceType`` that FHIR R4 does not define."""


class MissingFieldError(RecordError, kind="missing-field"):
    """A required element is absent."""


class InvalidFieldError(RecordError, kind="invalid-field"):
    """An element is present but its value is not valid."""


class UnresolvedReferenceError(RecordError, kind="unresolved-reference"):
    """A reference that resolves to nothing in the unit or the store."""


class UnsupportedError(RecordError, kind="unsupported"):
    """Valid FHIR that this server does not take (an HTTP method, a bundle type, ...)."""


class OutOfScopeError(RecordError, kind="forbidden"):
    """The unit touches a patient the importing user may not write to."""


class ConflictError(RecordError, kind="conflict"):
    """The unit would replace newer stored content with older or earlier content (re-import it forced to
    do that on purpose)."""


class PreconditionFailedError(RecordError, kind="precondition-failed"):
    """An update names the version it expects (``If-Match``, ``Bundle.entry.request.ifMatch``) and the stored
    version is another one (or there is none): nothing of the unit is written (HTTP 412)."""
