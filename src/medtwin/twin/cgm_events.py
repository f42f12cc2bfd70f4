"""What happened around a CGM trace, to mark on it: insulin boluses, carbohydrate (meals, and rescue
treatment of a low), and the glucose alerts (issue #15, "CGM chart events").

Rescue treatment is carbohydrate taken while the CGM read below the level 1 hypoglycaemia threshold (the
vocabulary's 70 mg/dL) in the ``RESCUE_LOOKBACK`` before it, with no bolus within ``MEAL_BOLUS_WINDOW``
of it (the rule of 15: fast carbohydrate without insulin; a meal comes with its bolus).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
from pydantic import BaseModel, Field

from medtwin.alerts.repository import STATUSES, AlertRepository
from medtwin.store.database import Store
from medtwin.store.samples import SampleRepository
from medtwin.vocab.glucose import HYPO_L1
from medtwin.vocab.metrics import CARBS, GLUCOSE, INSULIN_BOLUS

__all__ = ["CgmEvents", "cgm_events"]

RESCUE_LOOKBACK = timedelta(minutes=15)
MEAL_BOLUS_WINDOW = timedelta(minutes=30)


def glucose_alert_names() -> frozenset[str]:
    """The alert kinds (``Alert.rule``: hypo-l1, hypo-l2, ..., predicted-hypo) of the rules the glucose twin
    kind contributes (``TwinKind.alert_rules``): the alerts marked on a CGM trace."""
    from medtwin.alerts.registry import create_rules
    from medtwin.model.kinds import get

    wanted = set(get("glucose").alert_rules)
    return frozenset(kind.name for rule in create_rules() if rule.info.name in wanted for kind in rule.info.alerts)



class Dose(BaseModel):
    time: datetime
    value: float


class Carbs(BaseModel):
    time: datetime
    grams: float
    rescue: bool = Field(description="taken for a low (CGM < 70 mg/dL in the 15 min before, no bolus)")


class AlertMark(BaseModel):
    time: datetime
    rule: str
    severity: str
    message: str


class CgmEvents(BaseModel):
    start: datetime
    end: datetime
    boluses: list[Dose] = Field(description="insulin boluses [U]")
    carbs: list[Carbs] = Field(description="carbohydrate [g]")
    alerts: list[AlertMark] = Field(description="glucose alerts opened in the window")
    rescue_rule: str = (f"carbohydrate with a CGM reading < {HYPO_L1:g} mg/dL in the {RESCUE_LOOKBACK.seconds // 60} "
                        f"min before it and no bolus within {MEAL_BOLUS_WINDOW.seconds // 60} min")


def _rescue(t: datetime, bolus_times: np.ndarray, glucose_t: np.ndarray, glucose_v: np.ndarray) -> bool:
    s = t.timestamp()
    if bolus_times.size and np.min(np.abs(bolus_times - s)) <= MEAL_BOLUS_WINDOW.total_seconds():
        return False
    near = (glucose_t <= s) & (glucose_t >= s - RESCUE_LOOKBACK.total_seconds())
    return bool(np.any(glucose_v[near] < HYPO_L1))


def cgm_events(store: Store, patient_id: str, start: datetime, end: datetime, *, now: datetime) -> CgmEvents:
    """Boluses, carbohydrate and glucose alerts of ``[start, end]``."""
    with store.connect() as connection:
        repo = SampleRepository(connection, store.codec)
        upper = end + timedelta(seconds=1)
        bolus = repo.series(patient_id, INSULIN_BOLUS, start=start, end=upper)
        carbs = repo.series(patient_id, CARBS, start=start, end=upper)
        glucose = repo.series(patient_id, GLUCOSE, start=start - RESCUE_LOOKBACK, end=upper)
        _total, rows = AlertRepository(connection, store.codec, lambda: now).list(
            patient_id=patient_id, statuses=STATUSES, limit=200)
    bolus_s = np.asarray([t.timestamp() for t in bolus.times])
    glucose_t = np.asarray([t.timestamp() for t in glucose.times])
    glucose_v = np.asarray(glucose.values, dtype=float)
    names = glucose_alert_names()
    alerts = [AlertMark(time=a.opened_at, rule=a.rule, severity=a.severity, message=a.message) for a in rows
              if a.rule in names and start <= _aware(a.opened_at) <= end]
    return CgmEvents(
        start=start, end=end,
        boluses=[Dose(time=t, value=v) for t, v in zip(bolus.times, bolus.values, strict=True)],
        carbs=[Carbs(time=t, grams=v, rescue=_rescue(t, bolus_s, glucose_t, glucose_v))
               for t, v in zip(carbs.times, carbs.values, strict=True)],
        alerts=sorted(alerts, key=lambda a: a.time))


def _aware(value: datetime) -> datetime:
    from datetime import UTC

    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
