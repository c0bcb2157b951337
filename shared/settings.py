"""Typed configuration, read from environment variables only.

One sub-model per dependency, each with its own prefix, composed into each service's settings.
Settings objects are built in ``main()`` and passed down; nothing here reads the environment at
import time.
"""

from __future__ import annotations

import os
from enum import StrEnum
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.redact import register_settings_secrets


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


def env_config(prefix: str = "") -> SettingsConfigDict:
    """A settings model read from ``<prefix><FIELD>`` variables (any case), or from the
    ``validation_alias`` of a field whose variable is off the prefix; other variables ignored.
    (No ``populate_by_name``: it would read ``<prefix><FIELD>`` for an aliased field too.)"""
    return SettingsConfigDict(env_prefix=prefix, extra="ignore", case_sensitive=False)


def _url_password(url: str) -> str | None:
    return urlsplit(url).password


class AmqpSettings(BaseSettings):
    model_config = env_config("AMQP_")

    url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    exchange: str = "telemetry"
    queue: str = "telemetry.writer"
    dead_letter: str = "telemetry.dead"
    # Upper bound of the writer queue, in messages. Overflow is ``reject-publish``: publishers get
    # a nack (HTTP 503 / no MQTT PUBACK) instead of the broker silently dropping accepted data.
    queue_max_length: int = Field(default=500_000, ge=1)
    # Attempts before a message the writer keeps failing on is dead-lettered as poison.
    delivery_limit: int = Field(default=20, ge=1)
    confirm_timeout_s: float = Field(default=10.0, gt=0)
    heartbeat_s: int = Field(default=30, ge=0)


class PostgresSettings(BaseSettings):
    model_config = env_config("POSTGRES_")

    url: SecretStr = SecretStr("postgresql://millrace@127.0.0.1:5432/millrace")
    pool_min: int = Field(default=1, ge=0)
    pool_max: int = Field(default=10, ge=1)
    timeout_s: float = Field(default=5.0, gt=0)


class RedisSettings(BaseSettings):
    model_config = env_config("REDIS_")

    url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    # Redis is a cache: a slow Redis must not slow requests down, so its calls time out fast.
    timeout_s: float = Field(default=0.5, gt=0)


class InfluxSettings(BaseSettings):
    model_config = env_config("INFLUX_")

    url: str = "http://127.0.0.1:8086"
    database: str = "millrace"
    # InfluxDB 2.x/3.x: token sent as ``Authorization: Token ...`` on the v1 API.
    token: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    raw_rp: str = "raw"
    hourly_rp: str = "hourly"
    daily_rp: str = "daily"
    raw_retention: str = "52w"
    hourly_retention: str = "104w"
    daily_retention: str = "260w"
    timeout_s: float = Field(default=10.0, gt=0)
    # Provision the database and retention policies at start-up (1.x). On 2.x the compose
    # provisioning job creates buckets and DBRP mappings instead.
    provision: bool = True


class MqttSettings(BaseSettings):
    model_config = env_config("MQTT_")

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: SecretStr | None = None
    client_id: str = "millrace-bridge"
    topics: list[str] = ["factory/+/machine/+/telemetry"]
    qos: int = Field(default=1, ge=0, le=2)
    keepalive_s: int = 30


class JwtSettings(BaseSettings):
    """What a service needs to *verify* tokens. Only auth holds a private key."""

    model_config = env_config("JWT_")

    # Unset: auth on this host at AUTH_PORT, so a stack moved to other ports trusts its own auth.
    jwks_url: str = ""
    issuer: str = "millrace-auth"
    audience: str = "millrace"
    leeway_s: int = Field(default=10, ge=0)
    jwks_cache_s: int = Field(default=300, ge=1)

    @model_validator(mode="after")
    def _jwks_follows_auth_port(self) -> JwtSettings:
        # AUTH_PORT is auth's own setting (services.auth.settings); read here only for this
        # default, so it is not a variable every verifying service must be given.
        if not self.jwks_url:
            port = os.environ.get("AUTH_PORT", "8003")
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(
                    f"AUTH_PORT must be a port number (JWT_JWKS_URL follows it): {port!r}"
                )
            self.jwks_url = f"http://127.0.0.1:{port}/.well-known/jwks.json"
        return self


class IngestLimits(BaseSettings):
    model_config = env_config("INGEST_")

    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    max_batch_items: int = Field(default=1000, ge=1)
    max_readings_per_item: int = Field(default=10_000, ge=1)
    # Readings per AMQP message: large enough that confirms are not the bottleneck.
    readings_per_message: int = Field(default=1000, ge=1)
    # Timestamps further in the future than this are refused (clock-skewed gateways).
    max_future_skew_s: int = Field(default=300, ge=0)
    # Oldest reading accepted; keep it within the raw retention (INFLUX_RAW_RETENTION).
    max_age_s: int = Field(default=364 * 86_400, ge=60)
    default_factory_id: str = "default"
    # Extra numeric fields the deployment declares, beyond temperature/pressure/speed:
    # JSON object name -> [min, max], e.g. {"vibration": [0, 500]}.
    extra_fields: dict[str, tuple[float, float]] = {}


class ServiceSettings(BaseSettings):
    """Common to every service: environment, logging, HTTP bind address."""

    model_config = env_config()

    millrace_env: Environment = Environment.DEVELOPMENT
    log_level: str = "INFO"
    bind_host: str = "127.0.0.1"
    shutdown_timeout_s: float = Field(default=20.0, gt=0)

    @property
    def production(self) -> bool:
        return self.millrace_env is Environment.PRODUCTION

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> ServiceSettings:
        """In production, refuse credentials that only make sense on a developer's machine."""
        # Known before anything can log them: log lines redact these values (shared.redact).
        register_settings_secrets(self)
        if not self.production:
            return self
        problems: list[str] = []
        amqp = getattr(self, "amqp", None)
        if isinstance(amqp, AmqpSettings) and _url_password(amqp.url.get_secret_value()) in (
            None,
            "",
            "guest",
        ):
            problems.append("AMQP_URL must carry a real password (not guest) in production")
        pg = getattr(self, "postgres", None)
        if isinstance(pg, PostgresSettings) and not _url_password(pg.url.get_secret_value()):
            problems.append("POSTGRES_URL must carry a password in production")
        if problems:
            raise ValueError("; ".join(problems))
        return self


# A service's settings compose ServiceSettings with one of these per dependency it uses, e.g.
# ``class Settings(ServiceSettings, UsesAmqp, UsesInflux)``; each reads its own prefix.
class SettingsPart(BaseSettings):
    model_config = env_config()


class UsesAmqp(SettingsPart):
    amqp: AmqpSettings = Field(default_factory=AmqpSettings)


class UsesPostgres(SettingsPart):
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)


class UsesRedis(SettingsPart):
    redis: RedisSettings = Field(default_factory=RedisSettings)


class UsesInflux(SettingsPart):
    influx: InfluxSettings = Field(default_factory=InfluxSettings)


class UsesMqtt(SettingsPart):
    mqtt: MqttSettings = Field(default_factory=MqttSettings)


class UsesJwt(SettingsPart):
    jwt: JwtSettings = Field(default_factory=JwtSettings)


class UsesIngestLimits(SettingsPart):
    """Declared extra fields (INGEST_EXTRA_FIELDS) and validation limits."""

    limits: IngestLimits = Field(default_factory=IngestLimits)
