"""Short-lived cache of history answers in Redis, keyed by the machine's data version.

The writer increments ``millrace:machine:<id>:version`` after every batch it stores for that
machine, and the version is part of the key: new raw data is never hidden by the cache. Tier
windows lag raw data by at most ``WRITER_ROLLUP_INTERVAL_S``; the TTL bounds how long such a
lagging answer can be reused. Any Redis failure means "no cache", never a failed request.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


def version_key(machine_id: str) -> str:
    return f"millrace:machine:{machine_id}:version"


class HistoryCache:
    def __init__(self, redis: aioredis.Redis, ttl_s: int) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self._failing = False

    def _failed(self, e: BaseException) -> None:
        if not self._failing:
            log.warning(
                "Redis unreachable for the history cache (%s); answering from InfluxDB, "
                "retrying Redis on the next request",
                e,
                extra={"dependency": "redis"},
            )
        self._failing = True

    async def key(self, machine_id: str, query_key: str) -> str | None:
        if self.ttl_s <= 0:
            return None
        try:
            version = await self.redis.get(version_key(machine_id))
        except (RedisError, OSError) as e:
            self._failed(e)
            return None
        digest = hashlib.blake2b(query_key.encode(), digest_size=12).hexdigest()
        v = version.decode() if isinstance(version, bytes) else str(version or 0)
        return f"millrace:history:{machine_id}:{v}:{digest}"

    async def get(self, key: str | None) -> Any | None:
        if key is None:
            return None
        try:
            raw = await self.redis.get(key)
        except (RedisError, OSError) as e:
            self._failed(e)
            return None
        self._failing = False
        return orjson.loads(raw) if raw else None

    async def put(self, key: str | None, value: Any) -> None:
        if key is None:
            return
        try:
            await self.redis.set(key, orjson.dumps(value), ex=self.ttl_s)
        except (RedisError, OSError) as e:
            self._failed(e)
