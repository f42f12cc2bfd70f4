"""Typed errors for the physiology package; each names the offending field."""

from __future__ import annotations


class PhysiologyInputError(ValueError):
    """Bad input (scenario, parameter file, patient name, log). ``field`` names the offending item."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class UnknownPatientError(PhysiologyInputError, KeyError):
    """A virtual patient or parameter set name that is not shipped."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return f"{self.field}: {self.message}"
