"""Errors raised while reading FHIR input. Each names where the problem is: file, entry, field."""

from __future__ import annotations


class RecordError(ValueError):
    """Bad FHIR input. ``source`` is the file (or 'request'), ``entry`` the 1-based bundle entry or
    ndjson line, ``field`` a FHIRPath-like location inside the resource."""

    kind = "invalid-record"

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


class MalformedJsonError(RecordError):
    kind = "malformed-json"


class NotFhirError(RecordError):
    kind = "not-fhir"


class UnknownResourceTypeError(RecordError):
    kind = "unknown-resource-type"


class MissingFieldError(RecordError):
    kind = "missing-field"


class InvalidFieldError(RecordError):
    kind = "invalid-field"


class UnresolvedReferenceError(RecordError):
    kind = "unresolved-reference"


class UnsupportedError(RecordError):
    kind = "unsupported"


class OutOfScopeError(RecordError):
    """The unit touches a patient the importing user may not write to."""

    kind = "forbidden"


class ConflictError(RecordError):
    """The unit would replace newer stored content with older or earlier content (re-import it forced to
    do that on purpose)."""

    kind = "conflict"


class PreconditionFailedError(RecordError):
    """An update names the version it expects (``If-Match``, ``Bundle.entry.request.ifMatch``) and the stored
    version is another one (or there is none): nothing of the unit is written (HTTP 412)."""

    kind = "precondition-failed"
