"""The server's one clock: what "now" is for everything the server shows (issue #15 item 6).

A demo streams simulated devices faster than real time (``medtwin demo``: 60x, up to 23 h ahead of the wall
clock), so readings carry times in the future of the wall clock. If alert times, "resolved x ago", the
report's "generated at" and the dashboard's windows read the wall clock while the data run ahead, a 50-minute
hypoglycaemia reads "since just now ... resolved 4 min ago". So there is one :class:`ServerClock` per app
(``Services.clock``); it reads the wall clock until something that drives simulated time (the demo's device
fleet) hands it its simulated time with :meth:`ServerClock.simulate`; from then on it returns the simulated
time (never earlier than the wall clock, and never going back), and :meth:`ServerClock.status` says so, so
every page can show a "simulated time" badge that the server, not the browser, decided.

What keeps the wall clock: authentication (token expiry, login throttling) and the audit trail, which record
when something really happened (``SecurityContext.clock``); at 60x a 15-minute token would otherwise expire
in 15 seconds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

__all__ = ["ServerClock", "as_utc", "wall_now"]


def wall_now() -> datetime:
    """The wall clock, timezone-aware UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """``value`` as timezone-aware UTC; a naive value is taken to be UTC (SQLite drops the zone of stored times)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class ServerClock:
    """Callable ``() -> datetime`` (UTC): the wall clock, or the simulated time once :meth:`simulate` was called.

    The simulated reading is ``max(wall, source())`` and never earlier than a reading already given (a
    source that starts a little behind the wall clock, or a restart of the source, cannot move "now" back)."""

    def __init__(self, wall: Callable[[], datetime] = wall_now) -> None:
        self._wall = wall
        self._source: Callable[[], datetime] | None = None
        self._rate: Callable[[], float] = lambda: 1.0
        self._note = ""
        self._last: datetime | None = None
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        wall = self._wall()
        source = self._source
        if source is None:
            return wall
        now = max(wall, source())
        with self._lock:
            if self._last is not None and now < self._last:
                now = self._last
            self._last = now
        return now

    @property
    def simulated(self) -> bool:
        return self._source is not None

    def simulate(self, source: Callable[[], datetime], *, rate: Callable[[], float] | None = None,
                 note: str = "") -> None:
        """From now on "now" is ``source()`` (simulated time, UTC); ``rate()`` is how many simulated seconds
        pass per wall second at the moment (the page extrapolates between two readings of the clock)."""
        probe = source()
        if probe.tzinfo is None:
            raise ValueError("source: must return timezone-aware datetimes")
        self._source, self._note = source, note
        if rate is not None:
            self._rate = rate

    def reset(self) -> None:
        """Back to the wall clock (the simulation stopped)."""
        with self._lock:
            self._source, self._note, self._last = None, "", None
            self._rate = lambda: 1.0

    def status(self) -> dict[str, Any]:
        """JSON-ready: ``now`` (the server's time), ``wall`` (the wall clock), ``simulated``, ``rate``
        (simulated seconds per wall second now) and ``note`` (what drives simulated time)."""
        wall = self._wall()
        now = self()
        return {"now": now.isoformat(), "wall": wall.isoformat(), "simulated": self.simulated,
                "rate": float(self._rate()) if self.simulated else 1.0, "note": self._note,
                "ahead_s": round((now - wall).total_seconds(), 3)}
