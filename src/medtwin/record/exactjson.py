"""JSON with FHIR decimals kept as written.

FHIR says the precision of a decimal is significant: ``840.20`` is not ``840.2`` and ``0.00`` is not ``0.0``.
orjson (like every float parser) keeps only the binary value, so medtwin parses FHIR input with the standard
library's parser and turns each number literal whose text a float would not reproduce into a
:class:`DecimalText`: a ``float`` (the index, units and twins compute with it as before) that carries the
literal; :func:`dumps` writes that literal back verbatim (``orjson.Fragment``). A literal a float does
reproduce (``5.4``, ``120``) stays a plain float or int, so the common case costs nothing on output.
Integers beyond 64 bits (orjson's range) are kept the same way.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from medtwin.record.errors import MalformedJsonError

__all__ = ["DecimalText", "dumps", "loads"]

_INT_DIGITS = 18  # any integer literal this long or shorter fits orjson's signed 64-bit range


class DecimalText(float):
    """A JSON number as a float, with the text it was written as (``text``, a str)."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, literal: str) -> DecimalText:
        made = super().__new__(cls, literal)
        made.text = literal
        return made

    def __repr__(self) -> str:
        return self.text


def _float(literal: str) -> float:
    value = float(literal)
    # repr is the shortest text of a float, as orjson writes it, except with an exponent (1e+16 / 1e16)
    return value if repr(value) == literal and "e" not in literal and "E" not in literal else DecimalText(literal)


def _int(literal: str) -> int | float:
    if literal == "-0" or len(literal.lstrip("-")) > _INT_DIGITS:  # an int would drop the sign / overflow
        return DecimalText(literal)
    return int(literal)


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (FHIR has no NaN or Infinity)")


def loads(content: bytes | str) -> Any:
    """Parse JSON keeping each number's text where a float would change it. Raises ``ValueError``
    (``json.JSONDecodeError`` for malformed text, with its position)."""
    return json.loads(content, parse_float=_float, parse_int=_int, parse_constant=_constant)


def loads_or_error(content: bytes | str, *, source: str, line: int | None = None) -> Any:
    """:func:`loads`, a :class:`MalformedJsonError` naming the source and line when the text is not JSON."""
    try:
        return loads(content)
    except json.JSONDecodeError as exc:
        where = line if line is not None else exc.lineno
        raise MalformedJsonError(f"malformed JSON at line {where}: {exc.msg}", source=source,
                                 entry=line) from None
    except (ValueError, RecursionError) as exc:
        raise MalformedJsonError(f"malformed JSON: {exc}", source=source, entry=line) from None


def _default(value: Any) -> Any:
    if isinstance(value, DecimalText):
        return orjson.Fragment(value.text)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any, *, sort_keys: bool = False, indent: bool = False) -> bytes:
    """Compact JSON (orjson's form; ``indent``: two spaces a level), every :class:`DecimalText` written as its
    original literal."""
    option = (orjson.OPT_SORT_KEYS if sort_keys else 0) | (orjson.OPT_INDENT_2 if indent else 0)
    return orjson.dumps(value, default=_default, option=option)
