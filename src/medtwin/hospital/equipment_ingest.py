"""Equipment telemetry through the ingest's entrances: its JSON sample shape and time rules
(:mod:`medtwin.stream.parse`; the signals are the equipment file's, not the patient metric registry's) for
HTTP bodies, and its MQTT subscriber (QoS 1,
persistent session, batches acknowledged after they are applied: :class:`medtwin.stream.mqtt.MqttSubscriber`)
on topics ``<prefix>-equipment/<kind>/<asset>/<signal>``. The equipment twin keeps what they accept.

A message that cannot be applied (unknown asset, a topic whose kind or signal is not the asset's, a payload
the parsers refuse) is quarantined in the twin with the reason and field, then acknowledged (redelivery
would not make it better), as the patient ingest does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from medtwin.hospital.equipment import EquipmentInputError
from medtwin.hospital.equipment_live import EquipmentTwin
from medtwin.stream.parse import FieldError, PayloadError, decode, parse_time

if TYPE_CHECKING:
    from medtwin.config import Settings
    from medtwin.stream.mqtt import InboundMessage, MqttSubscriber

log = logging.getLogger("medtwin.hospital.equipment")
Reading = tuple[str, datetime, float, str]


def readings_from_payload(body: bytes | str | Any, metric: str | None = None) -> list[Reading]:
    """(metric, time, value, unit) of a JSON sample payload (an array of ``{metric, time, value, unit}`` or one
    object; ``metric`` fills samples that name none: MQTT, the topic's). Bytes and times are read by the
    ingest's own :func:`~medtwin.stream.parse.decode` and :func:`~medtwin.stream.parse.parse_time` (a time
    without its zone is refused). :class:`EquipmentInputError` names the first bad field."""
    try:
        data = decode(body) if isinstance(body, bytes | str) else body
    except PayloadError as error:
        raise EquipmentInputError(error.field, error.detail) from None
    items = data if isinstance(data, list) else [data]
    if not items:
        raise EquipmentInputError("$", "no samples")
    out = []
    for i, item in enumerate(items):
        where = f"[{i}]"
        if not isinstance(item, dict):
            raise EquipmentInputError(where, "a sample object {metric, time, value, unit}")
        name, value, unit = item.get("metric", metric), item.get("value"), item.get("unit")
        if not isinstance(name, str) or not name:
            raise EquipmentInputError(f"{where}.metric", "the signal's name")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise EquipmentInputError(f"{where}.value", "a number")
        if not isinstance(unit, str) or not unit.strip():
            raise EquipmentInputError(f"{where}.unit", "a UCUM unit")
        try:
            when = parse_time(item.get("time"), f"{where}.time")
        except FieldError as error:
            raise EquipmentInputError(error.field, error.detail) from None
        out.append((name, when, float(value), unit))
    return out


class EquipmentMqtt:
    """The MQTT batch handler: each message applied to the twin, or quarantined with the reason."""

    def __init__(self, twin: EquipmentTwin, prefix: str) -> None:
        self.twin, self.prefix = twin, prefix.rstrip("/") + "/"

    def __call__(self, messages: Sequence[InboundMessage]) -> None:
        for message in messages:
            try:
                self._apply(message.topic, message.payload)
            except EquipmentInputError as error:
                self.twin.refuse(message.topic, error, message.payload)
                log.warning("equipment telemetry refused on %s: %s", message.topic, error)

    def _apply(self, topic: str, payload: bytes) -> None:
        parts = topic[len(self.prefix):].split("/") if topic.startswith(self.prefix) else []
        if len(parts) != 3:
            raise EquipmentInputError("topic", f"expected {self.prefix}<kind>/<asset>/<signal>")
        kind, asset_id, signal = parts
        asset = self.twin.assets.get(asset_id)
        if asset is None or asset.kind.name != kind:
            raise EquipmentInputError("topic", f"no {kind} {asset_id!r} in the equipment list")
        self.twin.ingest(asset_id, readings_from_payload(payload, signal), "mqtt")


def equipment_topic(prefix: str, kind: str, asset: str, signal: str) -> str:
    return f"{prefix.rstrip('/')}-equipment/{kind}/{asset}/{signal}"


def equipment_subscriber(settings: Settings, twin: EquipmentTwin) -> MqttSubscriber:
    """The ingest's MQTT subscriber on ``<prefix>-equipment/+/+/+``, its own client id (own session)."""
    from medtwin.stream.mqtt import MqttSubscriber

    prefix = f"{settings.mqtt_topic_prefix.rstrip('/')}-equipment"
    return MqttSubscriber(EquipmentMqtt(twin, prefix), broker_url=settings.broker_url,
                          client_id=f"{settings.mqtt_client_id}-equipment", topic_prefix=prefix,
                          batch_max=settings.mqtt_batch_size, batch_interval=settings.mqtt_batch_ms / 1000)
