"""The app's services in one typed container: what the app factory builds and every route reads.

``create_app`` builds one :class:`Services` and stores it as ``app.state.services``; nothing else lives on
``app.state``. Routes read it through ``ServicesDep`` (:mod:`medtwin.api.deps`), the WebSocket and SSE
servers (:mod:`medtwin.api.realtime`) through :func:`services_of`. Why: an untyped ``app.state`` let every
router invent attributes (and ``getattr(..., None)`` checks for services that might not be there); a
frozen dataclass names each service once, with its type, and mypy checks every use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from medtwin.alerts.engine import AlertEngine
from medtwin.alerts.hub import EventHub
from medtwin.clock import ServerClock
from medtwin.config import Settings
from medtwin.hospital.live import LiveHospital
from medtwin.security.crypto import KeyRing
from medtwin.store.database import Store
from medtwin.stream.pipeline import IngestPipeline
from medtwin.twin.live import LiveGlucoseService

if TYPE_CHECKING:
    from medtwin.api.deps import SecurityContext
    from medtwin.hospital.live import Background
    from medtwin.stream.mqtt import MqttSubscriber

__all__ = ["Services", "services_of"]


@dataclass(frozen=True)
class Services:
    """Everything a request may need, built once per app (see :func:`medtwin.api.wiring.build_services`)."""

    settings: Settings
    store: Store
    keyring: KeyRing
    security: SecurityContext  # token service and the app's clock
    ingest: IngestPipeline  # HTTP, WebSocket and MQTT samples
    live_glucose: LiveGlucoseService  # forecasts from CGM samples
    hub: EventHub  # live events for SSE / WebSocket readers
    alerts: AlertEngine  # rules over samples and forecasts
    mqtt: MqttSubscriber | None  # with ``mqtt_enabled``; started and stopped by the app's lifespan
    hospital: LiveHospital  # the live census (ADT over HTTP, and MLLP with ``hospital_mllp_port``)
    own_store: bool = False  # opened by the app: migrated at startup and disposed at shutdown
    listeners: list[Background] = field(default_factory=list)  # started by the lifespan (MLLP, demo ADT feed)

    # what "now" is for everything the server shows (simulated in a demo, medtwin.clock); tokens and the
    # audit trail keep the wall clock (security.clock)
    clock: ServerClock = field(default_factory=ServerClock)


def services_of(app: Any) -> Services:
    """The container of a Starlette/FastAPI app (``request.app``, ``websocket.app``)."""
    found = getattr(app.state, "services", None)
    if not isinstance(found, Services):  # an app not built by create_app: fail closed
        from medtwin.api.problems import ProblemError

        raise ProblemError(503, "Service unavailable", "the app's services are not configured", kind="unavailable")
    return found
