from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from services.query_api.live.settings import LiveSettings
from shared.security import UsesSecurity
from shared.settings import (
    ServiceSettings,
    UsesAmqp,
    UsesInflux,
    UsesIngestLimits,
    UsesJwt,
    UsesPostgres,
    UsesRedis,
    env_config,
)


class QueryOptions(BaseSettings):
    """``QUERY_*``: the query API's own options (its port is ``QUERY_API_PORT``)."""

    model_config = env_config("QUERY_")

    # Default history window when start_time is not given.
    default_range_s: int = Field(default=86_400, ge=1)
    # A machine is "online" when its newest reading is at most this old.
    online_threshold_s: int = Field(default=120, ge=1)
    # Repeated history queries are answered from Redis this long (0 = no cache).
    cache_ttl_s: int = Field(default=10, ge=0)


class Settings(
    ServiceSettings,
    UsesAmqp,
    UsesPostgres,
    UsesRedis,
    UsesInflux,
    UsesJwt,
    UsesSecurity,
    UsesIngestLimits,
):
    port: int = Field(default=8002, validation_alias="QUERY_API_PORT")
    query: QueryOptions = Field(default_factory=QueryOptions)
    live: LiveSettings = Field(default_factory=LiveSettings)
