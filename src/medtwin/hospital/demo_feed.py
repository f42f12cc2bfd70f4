"""The demo hospital's ADT feed: weeks of generated history, then a live feed, as HL7 v2 ADT messages.

The engine runs the model from an empty hospital over ``history_weeks`` plus ``ahead_h``; its visit log
becomes messages (A01 on arrival, A02 on each move, A03 on leaving; a patient turned away is admitted and
discharged at once). "Now" is the end of the history, placed at the same hour of the week as the clock, so
the model's weekly rhythm meets the real one. At start the feed sends the history of every patient whose
stay overlaps the last ``recent_h`` (who is in now, and the last day's flows); then, as its clock runs
(``speed`` x the wall clock, or the app's simulated clock when that runs ahead), each later message when its
time comes. The messages go where ``send`` says: the app's MLLP listener in ``medtwin demo``.

Patients are generated numbers (``DEMO`` MRNs), not people; the feed ends after ``ahead_h`` of its time.
With an equipment twin the feed also sends each device's degradation signal every :data:`TELEMETRY_H` of its
time (60 days of it at start): generated linear wear with noise, one ventilator near its threshold.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np

from medtwin.hospital.engine import Engine, VisitLog, simulate
from medtwin.hospital.equipment_live import EquipmentTwin
from medtwin.hospital.model import HOURS_PER_WEEK, HospitalModel
from medtwin.hospital.sampling import arrivals

Message = tuple[float, str, int, str | None]  # (hour, event, patient number, unit)
TELEMETRY_H = 6.0
#: share of the threshold each demo device starts at 60 days ago, and reaches by now (the first ventilator is
#: about a day from it: an urgent maintenance alert and a predicted ICU outage in the demo)
_WEAR = {"ct-1": (0.05, 0.45), "vent-1": (0.3, 0.985), "vent-2": (0.05, 0.30), "pump-1": (0.2, 0.72)}


def telemetry(twin: EquipmentTwin, start: datetime, end: datetime, now: datetime, seed: int
              ) -> dict[str, list[tuple[str, datetime, float, str]]]:
    """Each asset's signal every TELEMETRY_H from ``start`` to ``end`` (wear linear from 60 days before
    ``now`` to ``now``, continuing after), noisy at the kind's noise level."""
    rng = np.random.default_rng(seed)
    out = {}
    steps = int((end - start).total_seconds() // (TELEMETRY_H * 3600)) + 1
    for asset in twin.assets.values():
        first, last = _WEAR.get(asset.id, (0.1, 0.5))
        kind = asset.kind
        times = [start + timedelta(hours=TELEMETRY_H * i) for i in range(steps)]
        age = np.asarray([(t - now).total_seconds() / 86400 + 60 for t in times]) / 60  # 0 at -60 d, 1 at now
        level = kind.threshold * (first + (last - first) * age) + rng.normal(0, kind.noise_sd, steps)
        out[asset.id] = [(kind.signal, t, float(v), kind.signal_unit) for t, v in zip(times, level, strict=True)]
    return out


def visit_events(log: VisitLog, units: list[str]) -> list[Message]:
    """ADT events of a visit log, in time order."""
    out: list[Message] = []
    path, join, end = log.patients.path, log.t_join, log.t_end
    for k in range(path.shape[0]):
        reached = np.flatnonzero(~np.isnan(join[k]))
        for j in reached:
            out.append((float(join[k, j]), "A01" if j == 0 else "A02", k, units[path[k, j]]))
        if log.lost[k] and reached.size:
            out.append((float(join[k, reached[-1]]), "A03", k, None))
        elif reached.size and not np.isnan(end[k, reached[-1]]):
            nxt = reached[-1] + 1
            if nxt >= path.shape[1] or path[k, nxt] < 0:
                out.append((float(end[k, reached[-1]]), "A03", k, None))
    out.sort(key=lambda m: (m[0], m[2], m[1]))
    return out


def hl7_message(control: str, event: str, when: datetime, patient: int, unit: str | None) -> str:
    stamp = when.strftime("%Y%m%d%H%M%S")
    return "\r".join([f"MSH|^~\\&|DEMO-ADT|DEMO|MEDTWIN|DEMO|{stamp}||ADT^{event}|{control}|P|2.5",
                      f"EVN|{event}|{stamp}", f"PID|1||DEMO{patient:07d}^^^DEMO^MR",
                      f"PV1|1|I|{unit or ''}^^"])


class FeedClock:
    """The feed's time: ``speed`` x the wall clock from the start, or the app's clock when it runs ahead
    (a demo whose devices run on simulated time); never going back."""

    def __init__(self, app_clock: Callable[[], datetime], speed: float,
                 wall: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._app, self._wall, self.speed = app_clock, wall, speed
        self.start_wall = self.start = app_clock()
        self._wall0 = wall()
        self._last = self.start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        now = max(self._app(), self.start + (self._wall() - self._wall0) * self.speed)
        with self._lock:
            self._last = max(self._last, now)
            return self._last


class DemoFeed:
    """:meth:`start` generates the schedule and sends it in a daemon thread (the server starts at once)."""

    def __init__(self, model: HospitalModel, send: Callable[[list[str]], object], clock: FeedClock,
                 history_weeks: int = 4, ahead_h: float = 24 * 14, recent_h: float = 48.0, seed: int = 20,
                 equipment: EquipmentTwin | None = None) -> None:
        self.model, self.send, self.clock, self.equipment = model, send, clock, equipment
        self.history_weeks, self.ahead_h, self.recent_h, self.seed = history_weeks, ahead_h, recent_h, seed
        self.history: list[str] = []
        self.ahead: list[tuple[datetime, str]] = []
        self.sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def prepare(self) -> None:
        """Run the engine and turn its visits into the history and the messages ahead (~0.4 s)."""
        now = self.clock.start
        now_h = self.history_weeks * HOURS_PER_WEEK + now.weekday() * 24 + now.hour + now.minute / 60
        horizon = now_h + self.ahead_h
        log = Engine(self.model, arrivals(self.model, self.seed, 0, horizon), horizon).run()
        events = visit_events(log, [u.name for u in self.model.units])
        recent = {k for t, _, k, _ in events if t >= now_h - self.recent_h}
        gone = {k for t, e, k, _ in events if e == "A03" and t < now_h}
        keep = recent | ({k for t, _, k, _ in events if t < now_h} - gone)
        messages = []
        for i, (t, e, k, u) in enumerate(events):
            if k in keep:
                when = now + timedelta(hours=t - now_h)
                messages.append((when, hl7_message(f"D{i:08d}", e, when, k, u)))
        self.history = [m for t, m in messages if t <= now]
        self.ahead = [(t, m) for t, m in messages if t > now]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="demo-adt-feed", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.prepare()
        self.send(self.history)
        simulate(self.model, arrivals(self.model, 0, 0, 1.0), 1.0)  # compile (or load) the loop before a forecast
        self.sent = len(self.history)
        start = self.clock.start
        signals = {} if self.equipment is None else telemetry(
            self.equipment, start - timedelta(days=60), start + timedelta(hours=self.ahead_h), start, self.seed)
        fed = dict.fromkeys(signals, 0)
        i = 0
        while i < len(self.ahead) and not self._stop.wait(0.5):
            now = self.clock()
            for asset, rows in signals.items():  # the devices' telemetry up to now
                upto = fed[asset]
                while upto < len(rows) and rows[upto][1] <= now:
                    upto += 1
                if upto > fed[asset] and self.equipment is not None:
                    self.equipment.ingest(asset, rows[fed[asset]:upto], "demo")
                    fed[asset] = upto
            due = []
            while i < len(self.ahead) and self.ahead[i][0] <= now:
                due.append(self.ahead[i][1])
                i += 1
            if due:
                self.send(due)
                self.sent += len(due)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
