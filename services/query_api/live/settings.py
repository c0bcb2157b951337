from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class LiveSettings(BaseSettings):
    """``LIVE_*``: the live stream's bounds."""

    model_config = SettingsConfigDict(env_prefix="LIVE_", extra="ignore", case_sensitive=False)

    # Messages (each up to a batch of readings) this process's queue holds before the broker
    # drops the oldest: the bound on what a stalled query_api can cost RabbitMQ.
    queue_max_length: int = Field(default=10_000, ge=1)
    prefetch: int = Field(default=200, ge=1)
    # Events one client may have waiting; beyond that it gets a `gap` event.
    client_buffer: int = Field(default=2_000, ge=1)
    # Events kept to resume a reconnecting client from its Last-Event-ID.
    replay_events: int = Field(default=5_000, ge=0)
    # A stream that got an event within the last this many ms gets the next ones together at
    # the hub's next flush (at most this much later), one socket write for all of them; a
    # stream quiet that long gets its next event at once. 0: every event written at once.
    flush_ms: int = Field(default=500, ge=0, le=5_000)
    heartbeat_s: float = Field(default=15.0, gt=0)
    max_clients: int = Field(default=2_000, ge=1)
