"""Per-patient settings that alert rules read (e.g. NEWS2's SpO2 scale), stored in ``twin_live_state``.

A rule declares the settings it reads (``RuleInfo.settings``) and their allowed values with
:func:`declare`; the engine validates, stores and hands them to the rule (``RuleInput.settings``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, select

from medtwin.clock import as_utc
from medtwin.errors import InputError
from medtwin.store.codec import Codec
from medtwin.store.database import Store
from medtwin.store.live_tables import twin_live_state

__all__ = ["Setting", "SettingError", "declare", "declared", "load_settings", "save_setting", "setting_kind",
           "state_rows", "upsert_state"]


class SettingError(InputError):
    """A setting that cannot be stored; ``field`` names it."""


@dataclass(frozen=True)
class Setting:
    key: str
    kind: str  # twin_live_state kind the value is stored under
    allowed: tuple[Any, ...]
    default: Any
    description: str


_declared: dict[str, Setting] = {}


def declare(setting: Setting) -> Setting:
    _declared[setting.key] = setting
    return setting


def declared() -> dict[str, Setting]:
    return dict(_declared)


def setting_kind(key: str) -> str:
    found = _declared.get(key)
    return found.kind if found is not None else f"alert-setting:{key}"


def upsert_state(connection: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert or update ``twin_live_state`` rows (patient_id, kind, twin_version, updated_at, data_time,
    payload) in one statement."""
    from sqlalchemy.dialects import postgresql, sqlite

    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(twin_live_state)
    stmt = stmt.on_conflict_do_update(
        index_elements=[twin_live_state.c.patient_id, twin_live_state.c.kind],
        set_={"updated_at": stmt.excluded.updated_at, "data_time": stmt.excluded.data_time,
              "payload": stmt.excluded.payload})
    connection.execute(stmt, rows)


def save_setting(store: Store, patient_id: str, key: str, value: Any, *, actor: str,
                 clock: Callable[[], datetime]) -> None:
    """Validate and store a patient's setting (payload ``{key: value, set_by, set_at}``)."""
    found = _declared.get(key)
    if found is None:
        raise SettingError(key, f"unknown setting; known: {', '.join(sorted(_declared))}")
    if value not in found.allowed or isinstance(value, bool):
        raise SettingError(key, f"must be one of {', '.join(map(str, found.allowed))}, got {value!r}")
    now = as_utc(clock())
    payload = {key: value, "set_by": actor, "set_at": now.isoformat()}
    with store.begin() as connection:
        upsert_state(connection, [{"patient_id": patient_id, "kind": found.kind, "twin_version": None,
                                   "updated_at": now, "data_time": None,
                                   "payload": store.codec.seal(orjson.dumps(payload))}])


def load_settings(connection: Connection, codec: Codec, patient_ids: Iterable[str]
                  ) -> dict[str, dict[str, Any]]:
    """patient -> {setting: value} for the declared settings that are stored."""
    by_kind = {s.kind: s for s in _declared.values()}
    out: dict[str, dict[str, Any]] = {}
    for pid, kind, blob in state_rows(connection, list(patient_ids), by_kind):
        setting = by_kind[kind]
        payload = orjson.loads(codec.open(blob))
        out.setdefault(pid, {})[setting.key] = payload.get(setting.key, setting.default)
    return out


def state_rows(connection: Connection, patient_ids: list[str], kinds: Iterable[str]
               ) -> Iterator[tuple[str, str, bytes]]:
    """(patient, kind, sealed payload) of the ``twin_live_state`` rows of these patients and kinds."""
    wanted = sorted(set(kinds))
    if not wanted:
        return
    for start in range(0, len(patient_ids), 500):
        rows = connection.execute(select(twin_live_state.c.patient_id, twin_live_state.c.kind,
                                         twin_live_state.c.payload).where(
            twin_live_state.c.patient_id.in_(patient_ids[start:start + 500]),
            twin_live_state.c.kind.in_(wanted))).all()
        for pid, kind, blob in rows:
            yield str(pid), str(kind), blob
