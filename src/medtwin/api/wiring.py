"""Building, connecting, starting and stopping the app's services (called by the app factory only).

Why here and not in routers: a router declares routes; which service listens to which (samples -> live
glucose twin, alert engine and event hub; forecasts -> alert engine and hub) and in which order they stop
is the application's shape, decided once, in one place that reads top to bottom.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import anyio
import numpy as np

from medtwin.alerts.engine import AlertEngine
from medtwin.alerts.hub import EventHub, forecast_publisher, samples_publisher
from medtwin.api.deps import SecurityContext
from medtwin.api.services import Services
from medtwin.clock import ServerClock
from medtwin.config import Settings
from medtwin.hospital.live import Background, LiveHospital
from medtwin.security.crypto import KeyRing
from medtwin.store.database import Store
from medtwin.stream.pipeline import IngestPipeline
from medtwin.stream.ratelimit import TokenBucketLimiter
from medtwin.twin.live import LiveGlucoseService

__all__ = ["build_services", "start", "stop"]


def build_services(settings: Settings, store: Store, keyring: KeyRing, security: SecurityContext, *,
                   own_store: bool, clock: ServerClock | None = None) -> Services:
    """Every service of the app, connected: the ingest pipeline feeds the live glucose twin, the alert
    engine and the event hub (in that order); the live twin's forecasts feed the engine and the hub.
    ``clock``: what "now" is for everything the server shows (:mod:`medtwin.clock`; the wall clock by default)."""
    clock = clock or ServerClock()
    ingest = IngestPipeline(store, rate_limiter=TokenBucketLimiter(settings.device_samples_per_minute))
    live_glucose = LiveGlucoseService(store, clock=clock, rng=np.random.default_rng())
    hub = EventHub()
    alerts = AlertEngine(store, clock=clock, hub=hub)
    ingest.add_listener(live_glucose.on_samples)
    ingest.add_listener(alerts.on_samples)
    ingest.add_listener(samples_publisher(hub))
    live_glucose.add_forecast_listener(alerts.on_forecast)
    live_glucose.add_forecast_listener(forecast_publisher(hub))
    mqtt = None
    if settings.mqtt_enabled:  # built now (no connection yet), started by the lifespan
        from medtwin.stream.mqtt import subscriber_from_settings

        mqtt = subscriber_from_settings(settings, ingest)
    hospital = live_hospital(settings, keyring, clock, store)
    hospital.equipment.add_listener(alerts.on_samples)  # the equipment-maintenance rule
    return Services(settings=settings, store=store, keyring=keyring, security=security, ingest=ingest,
                    live_glucose=live_glucose, hub=hub, alerts=alerts, mqtt=mqtt, hospital=hospital,
                    clock=clock, own_store=own_store)


def live_hospital(settings: Settings, keyring: KeyRing, clock: Callable[[], datetime], store: Store) -> LiveHospital:
    """The live census of the configured hospital model (default the demo's); patients keyed by an HMAC
    under the key ring's pseudonym key; journalled in the store under the model's name (restored by
    :func:`start`). The demo's generated feed starts its world at "now" each run: its journal scope is the run's."""
    from medtwin.hospital.adt import census_key
    from medtwin.hospital.model import demo_model, load_model
    from medtwin.store.hospital_journal import HospitalJournal

    model = load_model(settings.hospital_model_file) if settings.hospital_model_file else demo_model()
    scope, journal_clock = model.name, clock  # the journal's received_at: the server's time, not the feed's
    if settings.hospital_demo_feed_speed is not None:  # the demo's hospital runs on its feed's (faster) time
        from medtwin.hospital.demo_feed import FeedClock

        clock = FeedClock(clock, settings.hospital_demo_feed_speed)
        scope = f"{model.name} demo feed {clock.start:%Y-%m-%dT%H:%M:%S}"
    return LiveHospital(model, census_key(keyring.pseudonym_key), clock, journal=HospitalJournal(store, scope, journal_clock))


def start(services: Services) -> None:
    """At startup: migrate a store the app opened, then accept MQTT samples (the listeners are in place)."""
    if services.own_store:
        services.store.migrate()
    services.hospital.restore()  # the journalled census and equipment, before anything feeds them
    if services.mqtt is not None:
        services.mqtt.start()
    if services.settings.mqtt_enabled:  # equipment telemetry on <prefix>-equipment/<kind>/<asset>/<signal>
        from medtwin.hospital.equipment_ingest import equipment_subscriber

        subscriber = equipment_subscriber(services.settings, services.hospital.equipment)
        subscriber.start()
        services.listeners.append(subscriber)
    if services.settings.hospital_mllp_port is not None:
        from medtwin.hospital.mllp import MllpThread

        services.listeners.append(MllpThread(services.hospital, services.settings.host,
                                             services.settings.hospital_mllp_port, services.clock))
    if services.settings.hospital_demo_feed_speed is not None:
        services.listeners.append(demo_feed(services))


def demo_feed(services: Services) -> Background:
    """The demo hospital's ADT feed, sent to the app's own MLLP listener when there is one."""
    from medtwin.hospital.demo_feed import DemoFeed, FeedClock
    from medtwin.hospital.mllp import MllpThread, send_mllp

    live = services.hospital
    listener = next((x for x in services.listeners if isinstance(x, MllpThread)), None)

    def send(messages: list[str]) -> None:
        if listener is None:
            for text in messages:
                live.handle(text)
        else:
            send_mllp(str(listener.host), int(listener.port), messages)

    assert isinstance(live.clock, FeedClock)
    feed = DemoFeed(live.model, send, live.clock, equipment=live.equipment)
    feed.start()
    return feed


async def stop(services: Services) -> None:
    """At shutdown, upstream first so that nothing received is lost: MQTT stores and acknowledges its last
    batch (reaching the listeners), the live twin's last forecasts reach the alerts, the engine drains and
    saves its state, every event stream ends; then a store the app opened is closed."""
    if services.mqtt is not None:
        await anyio.to_thread.run_sync(services.mqtt.stop)
    while services.listeners:
        await anyio.to_thread.run_sync(services.listeners.pop().stop)
    await anyio.to_thread.run_sync(services.live_glucose.close)
    services.alerts.stop()
    services.hub.close()
    if services.own_store:
        services.store.dispose()
