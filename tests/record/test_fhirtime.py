from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medtwin.record.fhirtime import FhirDateError, format_datetime, parse_datetime


def test_partial_dates_and_zones() -> None:
    assert parse_datetime("2019") == datetime(2019, 1, 1, tzinfo=UTC)
    assert parse_datetime("2019-05") == datetime(2019, 5, 1, tzinfo=UTC)
    assert parse_datetime("2025-01-03T14:25:45+05:30") == datetime(2025, 1, 3, 8, 55, 45, tzinfo=UTC)
    assert parse_datetime("2024-02-29T23:59:59.123Z").microsecond == 123000


@pytest.mark.parametrize("bad", ["", "19", "2019-13", "2019-02-30", "2019-01-01T25:00:00Z", "yesterday",
                                 "2019-01-01T10:00:00+15:00"])
def test_rejects(bad: str) -> None:
    with pytest.raises(FhirDateError):
        parse_datetime(bad)


@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1)),
       st.integers(min_value=-12 * 60, max_value=14 * 60))
def test_round_trip_any_instant_and_offset(moment: datetime, offset_minutes: int) -> None:
    zone = timezone(timedelta(minutes=offset_minutes))
    local = moment.replace(tzinfo=zone)
    text = local.isoformat()
    assert parse_datetime(text) == local.astimezone(UTC)
    assert parse_datetime(format_datetime(local)) == local.astimezone(UTC)


@given(st.text(max_size=40))
def test_never_crashes_on_junk(text: str) -> None:
    with contextlib.suppress(FhirDateError):
        parse_datetime(text)
