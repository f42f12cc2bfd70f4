"""The FastAPI application: routers under /api/v1, problem+json errors, body size limit, web pages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

from fastapi import FastAPI

from medtwin import __version__
from medtwin.api import wiring
from medtwin.api.limits import BodySizeLimit
from medtwin.api.problems import document_problems, install_problem_handlers
from medtwin.api.routers import alerts as alerts_router
from medtwin.api.routers import dashboard, drugs, glucose, patients, record, samples, security_admin, system
from medtwin.api.routers import fhir as fhir_router
from medtwin.api.routers import hospital as hospital_router
from medtwin.api.routers import imaging as imaging_router
from medtwin.api.routers import imaging_models as imaging_models_router
from medtwin.api.routers import imaging_plan as imaging_plan_router
from medtwin.api.routers import live as live_router
from medtwin.api.routers import reports as reports_router
from medtwin.api.routers import smart as smart_router
from medtwin.api.routers import tumour as tumour_router
from medtwin.api.routers import twins as twins_router
from medtwin.api.routers import vocabulary as vocabulary_router
from medtwin.api.security_middleware import install_security
from medtwin.api.services import Services, services_of
from medtwin.clock import ServerClock
from medtwin.config import Settings
from medtwin.security.accounts import utcnow
from medtwin.security.crypto import AesGcmCodec, KeyRing, load_keyring
from medtwin.store.database import Store
from medtwin.web import mount_web

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None, *, store: Store | None = None,
               keyring: KeyRing | None = None, clock: ServerClock | None = None,
               security_clock: Callable[[], datetime] | None = None) -> FastAPI:
    """Build the app. Without ``store`` one is opened from ``settings`` and migrated at startup.
    Without ``keyring`` it is loaded from settings; none configured (outside demo mode) refuses to start.

    The factory builds and connects the services (:mod:`medtwin.api.wiring`) and keeps them in one typed
    container, ``app.state.services`` (:class:`medtwin.api.services.Services`); the lifespan starts and
    stops them. Routers only declare routes. ``clock``: the server's one clock (:mod:`medtwin.clock`; a demo
    hands it its simulated time), the wall clock by default. ``security_clock``: the clock of tokens, login
    throttling and the audit trail, always the wall clock in service (tests may hold it still)."""
    settings = settings or Settings()
    keyring = keyring or load_keyring(settings)
    own_store = store is None
    store = store or Store.from_settings(settings, AesGcmCodec(keyring))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = services_of(app)
        wiring.start(services)
        yield
        await wiring.stop(services)

    app = FastAPI(
        title="medtwin",
        version=__version__,
        summary="Healthcare digital twins: FHIR record, twin summaries, simulations.",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    document_problems(app)  # every operation lists its 401/403/404/409/422/429 problem+json answers
    mount_web(app)
    for module in (system, patients, record, drugs, glucose, security_admin, dashboard, samples,
                   reports_router, live_router, twins_router, vocabulary_router, hospital_router,
                   tumour_router, imaging_router, imaging_plan_router, imaging_models_router):
        app.include_router(module.router, prefix=API_PREFIX)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    security = install_security(app, settings, store, keyring, security_clock or utcnow)
    app.include_router(alerts_router.router, prefix=API_PREFIX)
    app.include_router(smart_router.router)  # SMART discovery (before /fhir, whose paths would take it)
    app.include_router(fhir_router.router)  # FHIR R4 REST at /fhir (OperationOutcome errors)
    services: Services = wiring.build_services(settings, store, keyring, security, own_store=own_store,
                                                     clock=clock)
    app.state.services = services
    return app
