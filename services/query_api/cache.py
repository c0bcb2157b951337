"""Short-lived cache of history answers in Redis, keyed by the machine's data version.

The writer increments ``millrace:machine:<id>:version`` after every batch it stores for that
machine, and the version is part of the key: new raw data is never hidden by the cache. A tier
window re-aggregated after late data changes without a new version (the rollup runs after the
batch); the TTL bounds how long such an answer can be reused. Any Redis failure means "no
cache", never a failed request.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import orjson

from shared.redisguard import REDIS_ERRORS, RedisGuard

log = logging.getLogger(__name__)


def version_key(machine_id: str) -> str:
    return f"millrace:machine:{machine_id}:version"


class HistoryCache:
    def __init__(self, redis: RedisGuard, ttl_s: int) -> None:
        self.redis = redis
        self.ttl_s = ttl_s

    async def key(self, machine_id: str, query_key: str) -> str | None:
        if self.ttl_s <= 0 or not self.redis.usable():
            return None
        try:
            version = await self.redis.client.get(version_key(machine_id))
        except REDIS_ERRORS as e:
            self.redis.failed("history cache", e)
            return None
        digest = hashlib.blake2b(query_key.encode(), digest_size=12).hexdigest()
        v = version.decode() if isinstance(version, bytes) else str(version or 0)
        return f"millrace:history:{machine_id}:{v}:{digest}"

    async def get(self, key: str | None) -> Any | None:
        if key is None or not self.redis.usable():
            return None
        try:
            raw = await self.redis.client.get(key)
        except REDIS_ERRORS as e:
            self.redis.failed("history cache", e)
            return None
        self.redis.ok()
        return orjson.loads(raw) if raw else None

    async def put(self, key: str | None, value: Any) -> None:
        if key is None or not self.redis.usable():
            return
        try:
            await self.redis.client.set(key, orjson.dumps(value), ex=self.ttl_s)
        except REDIS_ERRORS as e:
            self.redis.failed("history cache", e)
