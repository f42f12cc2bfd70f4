"""The one place settings come from (environment prefix ``MEDTWIN_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """medtwin settings. Every field can be set as ``MEDTWIN_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="MEDTWIN_", extra="ignore")

    data_dir: Path = Field(default=Path(".medtwin"), description="Folder for the embedded store and keys.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL. Default: SQLite file medtwin.db inside data_dir. "
        "PostgreSQL: postgresql+psycopg://user:pass@host/db",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, description="Largest accepted request body.")
    broker_url: str = Field(default="mqtt://127.0.0.1:1883", description="MQTT broker for device streams.")
    log_level: str = "info"

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'medtwin.db').resolve()}"
