"""The RecordError family: each class's ``kind`` (what HTTP statuses, problem types and OperationOutcome codes
are chosen by), declared in the class statement, and the located message."""

from __future__ import annotations

import pytest

from medtwin.record import errors
from medtwin.record.compartment import NoPatientError
from medtwin.security.write_policy import WriteForbiddenError, WriteNotFoundError

KINDS = {
    "RecordError": "invalid-record", "MalformedJsonError": "malformed-json", "NotFhirError": "not-fhir",
    "UnknownResourceTypeError": "unknown-resource-type", "MissingFieldError": "missing-field",
    "InvalidFieldError": "invalid-field", "UnresolvedReferenceError": "unresolved-reference",
    "UnsupportedError": "unsupported", "OutOfScopeError": "forbidden", "ConflictError": "conflict",
    "PreconditionFailedError": "precondition-failed",
}


@pytest.mark.parametrize(("name", "kind"), sorted(KINDS.items()))
def test_each_error_has_its_kind_and_is_a_record_error(name: str, kind: str) -> None:
    cls = getattr(errors, name)
    error = cls("bad value", source="bundle.json", entry=3, field="Observation.status")
    assert (cls.kind, error.kind) == (kind, kind)
    assert isinstance(error, errors.RecordError) and isinstance(error, ValueError)
    assert str(error) == "bundle.json, entry 3, field Observation.status: bad value"


def test_subclasses_elsewhere_keep_their_class_attribute_kind() -> None:
    assert (NoPatientError.kind, WriteForbiddenError.kind, WriteNotFoundError.kind) == (
        "no-patient", "forbidden", "not-found")
    assert errors.RecordError.kind == "invalid-record"  # a subclass's kind does not leak to its base


def test_located_fills_only_what_is_unknown() -> None:
    error = errors.MissingFieldError("required element 'status' is missing", entry=2, field="status")
    assert error.located(source="a.ndjson", entry=9) is error
    assert (error.source, error.entry, error.kind) == ("a.ndjson", 2, "missing-field")
    assert str(error) == "a.ndjson, entry 2, field status: required element 'status' is missing"


def test_a_subclass_without_a_kind_inherits_its_parents() -> None:
    class Narrower(errors.ConflictError):
        pass

    assert Narrower("x").kind == "conflict"
