from __future__ import annotations

from pydantic import Field

from shared.security import UsesSecurity
from shared.settings import (
    ServiceSettings,
    UsesAmqp,
    UsesIngestLimits,
    UsesJwt,
    UsesPostgres,
    UsesRedis,
)


class Settings(
    ServiceSettings, UsesAmqp, UsesPostgres, UsesRedis, UsesJwt, UsesSecurity, UsesIngestLimits
):
    port: int = Field(default=8001, validation_alias="INGEST_GATEWAY_PORT")
    # Seconds a gateway is told to wait (Retry-After) when the broker cannot take data.
    retry_after_s: int = Field(default=5, validation_alias="INGEST_RETRY_AFTER_S")
    # Processes serving the port (uvicorn workers); one process uses one core at most.
    workers: int = Field(default=1, ge=1, le=64, validation_alias="INGEST_GATEWAY_WORKERS")
