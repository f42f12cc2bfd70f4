"""Typed errors for the physiology package; each names the offending field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from medtwin.errors import InputError

ModelT = TypeVar("ModelT", bound=BaseModel)


class PhysiologyInputError(InputError):
    """Bad input (scenario, parameter file, patient name, log). ``field`` names the offending item."""


class UnknownPatientError(PhysiologyInputError, KeyError):
    """A virtual patient or parameter set name that is not shipped."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return f"{self.field}: {self.message}"


def validate_input(model: type[ModelT], data: Any, location: Callable[[tuple[int | str, ...]], str]) -> ModelT:
    """``model.model_validate(data)`` with the first problem raised as :class:`PhysiologyInputError` naming
    its field (``location`` turns pydantic's loc into a field name)."""
    try:
        return model.model_validate(data)
    except PhysiologyInputError:
        raise
    except ValidationError as exc:
        first = exc.errors()[0]
        ctx_error = first.get("ctx", {}).get("error")
        if isinstance(ctx_error, PhysiologyInputError):
            raise ctx_error from None
        raise PhysiologyInputError(location(tuple(first["loc"])), first["msg"]) from None
