"""Redis as an optional dependency: fail fast, fall back, retry after a cool-down.

Every Redis use in this project is a cache or a derived view. When Redis refuses or hangs,
callers fall back to PostgreSQL/InfluxDB; the guard then skips Redis for ``cooldown_s`` so a
frozen Redis costs one timeout per cool-down, not one per request. One WARNING per outage
(with the retry time), one INFO when it is back.
"""

from __future__ import annotations

import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


class RedisGuard:
    def __init__(self, client: aioredis.Redis, cooldown_s: float = 5.0) -> None:
        self.client = client
        self.cooldown_s = cooldown_s
        self._retry_at = 0.0
        self._down_since: float | None = None
        self._attempt = 0

    def usable(self) -> bool:
        return time.monotonic() >= self._retry_at

    def failed(self, what: str, exc: BaseException) -> None:
        now = time.monotonic()
        self._retry_at = now + self.cooldown_s
        self._attempt += 1
        if self._down_since is None:
            self._down_since = now
            log.warning(
                "Redis %s failed (%s: %s); falling back to the databases, retrying in %.0f s",
                what,
                type(exc).__name__,
                exc,
                self.cooldown_s,
                extra={"dependency": "redis", "attempt": self._attempt},
            )

    def ok(self) -> None:
        if self._down_since is not None:
            log.info(
                "Redis is back after %.1f s",
                time.monotonic() - self._down_since,
                extra={"dependency": "redis", "attempt": self._attempt},
            )
            self._down_since = None
            self._attempt = 0
