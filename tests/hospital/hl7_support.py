"""What the HL7 v2 tests share: reading the answer to a message."""

from __future__ import annotations


def msa(answer: str) -> list[str]:
    """The fields of the answer's MSA segment: ``[1]`` the acknowledgement code, ``[2]`` the control id."""
    return next(line for line in answer.split("\r") if line.startswith("MSA")).split("|")
