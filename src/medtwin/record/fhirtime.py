"""FHIR date / dateTime / instant strings to timezone-aware datetimes.

FHIR allows partial dates (``2019``, ``2019-05``, ``2019-05-02``) and dateTimes with or without seconds
fractions; a dateTime with a time must carry a zone. Partial values map to their first instant (UTC).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone

_PATTERN = re.compile(
    r"^(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d{1,9}))?)?"
    r"(?P<zone>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


class FhirDateError(ValueError):
    """A string that is not a FHIR date/dateTime/instant."""


def parse_datetime(text: str) -> datetime:
    """Parse a FHIR date, dateTime or instant; partial dates give their first instant in UTC."""
    if isinstance(text, str) and len(text) >= 20 and text[4] == "-" and text[10] == "T" and text[13] == ":" \
            and text[16] == ":" and text[19] in "Z+-.":
        try:  # fast path for the common full dateTime; the pattern below stays the reference
            parsed = datetime.fromisoformat(text)
        except ValueError:
            parsed = None
        offset = parsed.utcoffset() if parsed is not None else None
        if parsed is not None and (offset is None or abs(offset) <= timedelta(hours=14)) \
                and _PATTERN.match(text) is not None:
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    match = _PATTERN.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise FhirDateError(f"not a FHIR date/dateTime: {text!r}")
    parts = match.groupdict()
    try:
        year = int(parts["year"])
        month = int(parts["month"] or 1)
        day = int(parts["day"] or 1)
        hour = int(parts["hour"] or 0)
        minute = int(parts["minute"] or 0)
        second = int(parts["second"] or 0)
        micro = int((parts["fraction"] or "0")[:6].ljust(6, "0"))
        zone = parts["zone"]
        tz: timezone = UTC
        if zone and zone != "Z":
            sign = 1 if zone[0] == "+" else -1
            hours, minutes = int(zone[1:3]), int(zone[4:6])
            if hours > 14 or minutes > 59:
                raise FhirDateError(f"bad time zone in {text!r}")
            tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
        if second == 60:  # leap second: FHIR allows it; clamp
            second = 59
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz).astimezone(UTC)
    except ValueError as exc:
        raise FhirDateError(f"not a valid date: {text!r} ({exc})") from exc


def parse_date(text: str) -> date:
    return parse_datetime(text).date()


def format_datetime(value: datetime) -> str:
    """An instant as FHIR dateTime in UTC (``2024-05-01T12:00:00Z``)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + (
        f".{value.microsecond:06d}".rstrip("0") if value.microsecond else ""
    ) + "Z"
