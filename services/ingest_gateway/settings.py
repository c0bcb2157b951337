from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from shared.security import UsesSecurity
from shared.settings import (
    ServiceSettings,
    UsesAmqp,
    UsesIngestLimits,
    UsesJwt,
    UsesPostgres,
    UsesRedis,
    env_config,
)


class GatewayOptions(BaseSettings):
    """``INGEST_GATEWAY_*``: the ingest gateway's own options (its limits are ``INGEST_*``)."""

    model_config = env_config("INGEST_GATEWAY_")

    # Seconds a gateway is told to wait (Retry-After) when the broker cannot take data.
    retry_after_s: int = Field(default=5, validation_alias="INGEST_RETRY_AFTER_S")
    # Processes serving the port (uvicorn workers); one process uses one core at most.
    workers: int = Field(default=1, ge=1, le=64)


class Settings(
    ServiceSettings, UsesAmqp, UsesPostgres, UsesRedis, UsesJwt, UsesSecurity, UsesIngestLimits
):
    port: int = Field(default=8001, validation_alias="INGEST_GATEWAY_PORT")
    gateway: GatewayOptions = Field(default_factory=GatewayOptions)
