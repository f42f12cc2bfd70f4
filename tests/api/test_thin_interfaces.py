"""The API's shape (issue #12 item 6): routers only declare routes, protocol servers live in
``api/realtime.py``, wiring in the app factory, and ``app.state`` holds one typed container of services."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import medtwin.api as api_package
from medtwin.alerts.engine import AlertEngine
from medtwin.alerts.hub import EventHub
from medtwin.api import realtime
from medtwin.api.app import create_app
from medtwin.api.services import Services, services_of
from medtwin.config import Settings
from medtwin.security.crypto import KeyRing
from medtwin.store.database import Store
from medtwin.stream.pipeline import IngestPipeline
from medtwin.twin.live import LiveGlucoseService

API_DIR = Path(api_package.__file__).parent
ROUTERS = sorted((API_DIR / "routers").glob("*.py"))
SOCKET_CALLS = {"accept", "receive", "receive_text", "receive_bytes", "receive_json", "send_text", "send_bytes",
                "send_json", "iter_text", "iter_bytes", "iter_json"}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def protocol_code(tree: ast.Module) -> list[str]:
    """What in a module is WebSocket or SSE protocol code rather than a route declaration."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("starlette.websockets", "fastapi.websockets"):
            found.append(f"line {node.lineno}: imports {node.module}")
        elif isinstance(node, ast.ImportFrom) and node.module in ("fastapi", "starlette"):
            names = {a.name for a in node.names} & {"WebSocket", "WebSocketDisconnect"}
            found.extend(f"line {node.lineno}: imports {name}" for name in sorted(names))
        elif isinstance(node, ast.Import) and any(a.name == "starlette.websockets" for a in node.names):
            found.append(f"line {node.lineno}: imports starlette.websockets")
        elif isinstance(node, ast.Attribute) and node.attr in SOCKET_CALLS:
            found.append(f"line {node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Attribute) and node.attr in ("create_task_group", "fail_after"):
            found.append(f"line {node.lineno}: .{node.attr} (a connection loop)")
    return found


def state_attributes(tree: ast.Module) -> list[str]:
    """Every ``<x>.app.state.<name>`` / ``app.state.<name>`` read or written in a module."""
    return [f"line {node.lineno}: state.{node.attr}" for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
            and node.value.attr == "state" and node.attr != "principal"]  # request.state.principal: per request


def test_the_check_sees_a_websocket_loop() -> None:
    """The detector itself: the old router code (a socket loop in a route module) is caught."""
    old = ast.parse("from fastapi import WebSocket, WebSocketDisconnect\n"
                    "async def stream(websocket: WebSocket) -> None:\n"
                    "    await websocket.accept()\n"
                    "    while True:\n"
                    "        message = await websocket.receive()\n")
    assert len(protocol_code(old)) == 4
    assert protocol_code(ast.parse("router.add_websocket_route('/x', realtime.sample_socket)")) == []
    assert state_attributes(ast.parse("x = request.app.state.hub")) == ["line 1: state.hub"]


@pytest.mark.parametrize("path", ROUTERS, ids=[p.name for p in ROUTERS])
def test_no_router_holds_protocol_code(path: Path) -> None:
    assert protocol_code(_tree(path)) == [], f"{path.name}: protocol code belongs in api/realtime.py"


def test_realtime_holds_the_socket_servers() -> None:
    found = protocol_code(_tree(API_DIR / "realtime.py"))
    assert any("receive" in f for f in found) and any("starlette.websockets" in f for f in found)
    assert callable(realtime.event_socket) and callable(realtime.sample_socket) and callable(realtime.event_stream)


def test_only_the_app_factory_and_the_container_touch_app_state() -> None:
    """``app.state.<x>`` appears nowhere in the api package but as ``state.services`` in the two modules
    that set and read it (the factory and ``services_of``)."""
    seen = {}
    for path in sorted(API_DIR.rglob("*.py")):
        found = state_attributes(_tree(path))
        if found:
            seen[path.relative_to(API_DIR).as_posix()] = found
    assert set(seen) <= {"app.py", "services.py"}, seen
    assert all(item.endswith("state.services") for items in seen.values() for item in items), seen


def test_websocket_routes_are_declared_by_routers_and_served_by_realtime() -> None:
    from starlette.routing import WebSocketRoute

    from medtwin.api.routers import alerts, samples

    sockets = {r.path: r.endpoint for module in (alerts, samples) for r in module.router.routes
               if isinstance(r, WebSocketRoute)}
    assert sockets == {"/events/ws": realtime.event_socket,
                       "/patients/{patient_id}/stream": realtime.sample_socket}


def test_app_state_holds_only_the_typed_container(api_store: Store, keyring: KeyRing, tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path), store=api_store, keyring=keyring)
    assert set(app.state._state) == {"services"}  # type: ignore[attr-defined]
    services = services_of(app)
    assert isinstance(services, Services) and services.store is api_store and services.keyring is keyring
    with TestClient(app) as client:
        assert set(app.state._state) == {"services"}, "the lifespan added to app.state"  # type: ignore[attr-defined]
        assert client.get("/api/v1/health").status_code == 200
    assert services_of(app) is services
    types = {"ingest": IngestPipeline, "live_glucose": LiveGlucoseService, "hub": EventHub, "alerts": AlertEngine}
    for name, kind in types.items():
        assert isinstance(getattr(services, name), kind), name
    assert services.mqtt is None  # not enabled in these settings
    with pytest.raises(dataclasses.FrozenInstanceError):
        services.hub = EventHub()  # type: ignore[misc]


def test_services_of_fails_closed_on_an_app_without_services() -> None:
    from fastapi import FastAPI

    from medtwin.api.problems import ProblemError

    with pytest.raises(ProblemError) as refused:
        services_of(FastAPI())
    assert refused.value.status == 503
