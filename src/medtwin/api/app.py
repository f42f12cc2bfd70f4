"""The FastAPI application: routers under /api/v1, problem+json errors, body size limit, web pages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio
import numpy as np
from fastapi import FastAPI

from medtwin import __version__
from medtwin.api.limits import BodySizeLimit
from medtwin.api.problems import install_problem_handlers
from medtwin.api.routers import alerts as alerts_router
from medtwin.api.routers import dashboard, drugs, glucose, patients, record, samples, security_admin, system
from medtwin.api.routers import live as live_router
from medtwin.api.routers import reports as reports_router
from medtwin.api.security_middleware import install_security
from medtwin.config import Settings
from medtwin.security.crypto import AesGcmCodec, KeyRing, load_keyring
from medtwin.store.database import Store
from medtwin.stream.pipeline import IngestPipeline
from medtwin.stream.ratelimit import TokenBucketLimiter
from medtwin.twin.live import LiveGlucoseService
from medtwin.web import mount_web

if TYPE_CHECKING:
    from medtwin.stream.mqtt import MqttSubscriber

API_PREFIX = "/api/v1"


def _start_mqtt(app: FastAPI, settings: Settings) -> MqttSubscriber | None:
    """With ``mqtt_enabled``, the MQTT subscriber feeding the app's ingest pipeline (``app.state.mqtt``)."""
    subscriber = None
    if settings.mqtt_enabled:
        from medtwin.stream.mqtt import subscriber_from_settings

        subscriber = subscriber_from_settings(settings, app.state.ingest)
        subscriber.start()
    app.state.mqtt = subscriber
    return subscriber


async def _stop_mqtt(subscriber: MqttSubscriber | None) -> None:
    if subscriber is not None:
        await anyio.to_thread.run_sync(subscriber.stop)  # stores and acknowledges what it received


def create_app(settings: Settings | None = None, *, store: Store | None = None,
               keyring: KeyRing | None = None) -> FastAPI:
    """Build the app. Without ``store`` one is opened from ``settings`` and migrated at startup.
    Without ``keyring`` it is loaded from settings; none configured (outside demo mode) refuses to start."""
    settings = settings or Settings()
    keyring = keyring or load_keyring(settings)
    own_store = store is None
    store = store or Store.from_settings(settings, AesGcmCodec(keyring))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if own_store:
            store.migrate()
        alerts_router.install(app, store)  # again: services added to app.state after create_app
        mqtt = _start_mqtt(app, settings)  # after the ingest listeners are in place
        yield
        await _stop_mqtt(mqtt)  # before them: its last batch still reaches the listeners
        await anyio.to_thread.run_sync(app.state.live_glucose.close)  # its last forecasts reach the alerts
        alerts_router.shutdown(app)
        if own_store:
            store.dispose()

    app = FastAPI(
        title="medtwin",
        version=__version__,
        summary="Healthcare digital twins: FHIR record, twin summaries, simulations.",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.ingest = IngestPipeline(store, rate_limiter=TokenBucketLimiter(settings.device_samples_per_minute))

    def live_clock() -> datetime:
        security = getattr(app.state, "security", None)
        clock = getattr(security, "clock", None)
        return clock() if callable(clock) else datetime.now(UTC)

    app.state.live_glucose = LiveGlucoseService(store, clock=live_clock, rng=np.random.default_rng())
    app.state.ingest.add_listener(app.state.live_glucose.on_samples)
    install_problem_handlers(app)
    mount_web(app)
    app.include_router(system.router, prefix=API_PREFIX)
    app.include_router(patients.router, prefix=API_PREFIX)
    app.include_router(record.router, prefix=API_PREFIX)
    app.include_router(drugs.router, prefix=API_PREFIX)
    app.include_router(glucose.router, prefix=API_PREFIX)
    app.include_router(security_admin.router, prefix=API_PREFIX)
    app.include_router(dashboard.router, prefix=API_PREFIX)
    app.include_router(samples.router, prefix=API_PREFIX)
    app.include_router(reports_router.router, prefix=API_PREFIX)
    app.include_router(live_router.router, prefix=API_PREFIX)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    install_security(app, settings, store, keyring)
    app.include_router(alerts_router.router, prefix=API_PREFIX)
    alerts_router.install(app, store)  # app.state.hub, app.state.alerts; listeners on ingest / live_glucose
    return app
