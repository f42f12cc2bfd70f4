"""The one place settings come from (environment prefix ``MEDTWIN_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
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
    # --- security (medtwin.security) ---
    key_file: Path | None = Field(default=None, description="JSON key ring (AES-GCM data keys, index, token and "
                                  "pseudonym keys); create with `medtwin keys init`.")
    keyring: SecretStr | None = Field(default=None, description="The key ring JSON itself, instead of key_file.")
    demo: bool = Field(default=False, description="Demo mode: a missing key ring is generated into data_dir.")
    access_token_minutes: int = Field(default=15, ge=1, le=24 * 60)
    refresh_token_hours: int = Field(default=12, ge=1, le=24 * 90)
    rate_limit_per_minute: int = Field(default=600, ge=1, description="Requests per client address per minute.")
    login_attempts_per_minute: int = Field(default=10, ge=1, description="Token requests per client per minute.")
    cors_origins: list[str] = Field(default_factory=list, description="Allowed CORS origins; empty = closed.")
    time_zone: str = Field(default="UTC", min_length=1, max_length=64, description="IANA zone of times of day "
                           "(the AGP) for a patient whose record states none (reports say which zone they use).")
    tls_certfile: Path | None = Field(default=None, description="PEM certificate for `medtwin serve` (HTTPS).")
    tls_keyfile: Path | None = Field(default=None, description="PEM private key for `medtwin serve` (HTTPS).")
    deid_date_mode: str = Field(default="year", pattern="^(year|shift)$",
                                description="Research export dates: 'year' (Safe Harbor) or 'shift'.")

    # --- live samples (medtwin.stream) ---
    device_samples_per_minute: int = Field(default=12_000, ge=1, description="Samples one device may send per "
                                           "minute (token bucket; also the largest batch); beyond it 429.")
    # --- MQTT entrance (medtwin.stream.mqtt; broker_url above) ---
    mqtt_enabled: bool = Field(default=False, description="Run the MQTT subscriber inside `medtwin serve` "
                               "(`medtwin mqtt` runs it on its own).")
    mqtt_client_id: str = Field(default="medtwin-ingest", min_length=1, max_length=128, pattern=r"^[^/+#\s]+$",
                                description="Client id of the subscriber's persistent session: keep it fixed, "
                                "or messages queued for the old one are never read.")
    mqtt_topic_prefix: str = Field(default="medtwin", min_length=1, pattern=r"^[^+#\s]+$",
                                   description="Topics are <prefix>/<patient>/<device>/<metric>.")
    mqtt_batch_size: int = Field(default=500, ge=1, le=10_000, description="Messages stored per transaction.")
    mqtt_batch_ms: int = Field(default=20, ge=0, le=5_000, description="Longest wait to fill a batch.")
    # --- hospital operations twin (medtwin.hospital.live) ---
    hospital_model_file: Path | None = Field(default=None, description="Hospital model (TOML/JSON) of the live "
                                             "census; default the generated demo hospital.")
    hospital_mllp_port: int | None = Field(default=None, ge=0, le=65535, description="Listen for HL7 v2 ADT over "
                                           "MLLP on this port (host: `host`) inside `medtwin serve`; unset: off.")
    hospital_demo_feed_speed: float | None = Field(default=None, gt=0, le=3600, description="`medtwin demo`: a "
                                                   "generated ADT feed of the hospital at this time acceleration.")

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'medtwin.db').resolve()}"
