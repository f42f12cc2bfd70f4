"""The dashboard and the API docs page, served by the same app from files shipped in the package
(no CDN: Swagger UI 5 comes from the ``swagger-ui-py`` package)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"


def mount_web(app: FastAPI) -> None:
    """Serve the dashboard at ``/`` and Swagger UI at ``/docs`` (both public pages: they hold no data;
    everything they show comes from the guarded API with the user's token)."""
    import swagger_ui

    swagger_static = Path(swagger_ui.__file__).parent / "static"
    app.mount("/static/swagger", StaticFiles(directory=swagger_static), name="swagger")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(swagger_static / "favicon-32x32.png", media_type="image/png")

    @app.get("/docs", include_in_schema=False)
    def docs() -> FileResponse:
        return FileResponse(STATIC / "docs.html", media_type="text/html")
