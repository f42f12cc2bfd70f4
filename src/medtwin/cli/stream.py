"""``medtwin mqtt``: the MQTT subscriber on its own (``medtwin serve`` runs it too when mqtt_enabled)."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Annotated

import typer

from medtwin.cli.common import console, fail, load_settings, open_store


def mqtt_command(
    broker_url: Annotated[str | None, typer.Option(help="mqtt://host:port or mqtts://user:password@host:port "
                                                        "(default: MEDTWIN_BROKER_URL)")] = None,
    stats_every: Annotated[float, typer.Option(min=0, help="Print counts every N seconds (0: only at exit)")] = 0,
) -> None:
    """Store device samples published to the MQTT broker until Ctrl-C or SIGTERM.

    Topics <prefix>/<patient>/<device>/<metric>, QoS 1, on the persistent session MEDTWIN_MQTT_CLIENT_ID;
    the device is a device key id bound to the patient.

    Messages are acknowledged after their samples are committed: stopping or killing this process loses
    nothing, the broker redelivers what was not acknowledged.

    For live alerts on MQTT data run the subscriber inside `medtwin serve` (MEDTWIN_MQTT_ENABLED=true)."""
    from medtwin.stream.mqtt import MqttConfigError, MqttIngest, subscriber_from_settings
    from medtwin.stream.pipeline import IngestPipeline
    from medtwin.stream.ratelimit import TokenBucketLimiter

    settings = load_settings()
    if broker_url:
        settings = settings.model_copy(update={"broker_url": broker_url})
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    store = open_store(settings)
    pipeline = IngestPipeline(store, rate_limiter=TokenBucketLimiter(settings.device_samples_per_minute))
    try:
        subscriber = subscriber_from_settings(settings, pipeline)
    except MqttConfigError as error:
        fail(str(error), 2)
    ingest = subscriber.handler
    assert isinstance(ingest, MqttIngest)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def counts() -> str:
        s, q = ingest.stats.snapshot(), subscriber.stats.snapshot()
        quarantined = sum(ingest.quarantined_by_reason().values())
        return (f"messages {q['received']} (acknowledged {q['acked']}), samples stored {s['accepted']}, duplicates "
                f"{s['duplicates']}, quarantined {s['quarantined_samples']} samples + {quarantined} messages")

    console.print(f"[bold green]medtwin[/] MQTT subscriber: {settings.broker_url.split('@')[-1]} topics "
                  f"{subscriber.subscription} as {settings.mqtt_client_id}")
    subscriber.start()
    try:
        last = time.monotonic()
        while not stop.wait(0.5):
            if stats_every and time.monotonic() - last >= stats_every:
                console.print(counts(), soft_wrap=True)
                last = time.monotonic()
    finally:
        subscriber.stop()
        store.dispose()
    console.print(f"stopped: {counts()}", soft_wrap=True)
