from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from shared.settings import (
    ServiceSettings,
    UsesAmqp,
    UsesInflux,
    UsesIngestLimits,
    UsesRedis,
    env_config,
)


class WriterOptions(BaseSettings):
    """``WRITER_*``: the writer's own options."""

    model_config = env_config("WRITER_")

    # A batch is written when it holds this many points or its first message is this old.
    batch_points: int = Field(default=5000, ge=1)
    batch_ms: int = Field(default=200, ge=1)
    # Unacked messages held at once (each carries up to INGEST_READINGS_PER_MESSAGE readings).
    prefetch: int = Field(default=64, ge=1)
    # Backoff while InfluxDB is down: exponential up to this many seconds between attempts.
    retry_max_s: float = Field(default=30.0, gt=0)
    # After this many failed attempts in a row each retry is logged at ERROR (still retrying:
    # nothing is acked, nothing is lost).
    retry_error_after: int = Field(default=5, ge=1)
    # Touched tier windows are recomputed this often (the tiers' lag behind raw).
    rollup_interval_s: float = Field(default=10.0, gt=0)
    # The same hour window (re-read whole from raw each time) is recomputed at most this often.
    rollup_repeat_s: float = Field(default=60.0, ge=0)
    # Hours of recent raw data re-aggregated at start-up for every machine.
    rollup_sweep_hours: int = Field(default=2, ge=0)
    # Recently stored reading keys remembered to notice conflicting re-writes.
    conflict_window: int = Field(default=100_000, ge=0)


class Settings(ServiceSettings, UsesAmqp, UsesInflux, UsesRedis, UsesIngestLimits):
    port: int = Field(default=8005, validation_alias="WRITER_PORT")
    writer: WriterOptions = Field(default_factory=WriterOptions)
