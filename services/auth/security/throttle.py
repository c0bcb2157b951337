"""Failed-attempt throttling in Redis: N failures per subject within a window, then 429.

Subjects are e.g. ``("user", name)`` and ``("addr", ip)``: a username under attack from many
addresses and an address trying many usernames are both stopped. Counting is a fixed window
opened by the first failure. Redis is a guard, not a dependency: when it is unreachable the check
is skipped with a WARNING (fail-open), so an outage of the cache never locks everyone out.
"""

from __future__ import annotations

import hashlib
import logging

import redis.asyncio as aioredis

from services.auth.security.revocation import REDIS_ERRORS

log = logging.getLogger(__name__)

Subject = tuple[str, str]


class Throttle:
    def __init__(
        self, redis: aioredis.Redis, max_failures: int, window_s: int, namespace: str
    ) -> None:
        self.redis = redis
        self.max_failures = max_failures
        self.window_s = window_s
        self.namespace = namespace

    def _key(self, subject: Subject) -> str:
        kind, value = subject
        digest = hashlib.sha256(value.encode()).hexdigest()[:32]
        return f"millrace:auth:throttle:{self.namespace}:{kind}:{digest}"

    def _unavailable(self, e: Exception) -> None:
        log.warning(
            "Redis unreachable for %s throttling (%s); not throttling",
            self.namespace,
            e,
            extra={"dependency": "redis"},
        )

    async def retry_after(self, *subjects: Subject) -> int | None:
        """Seconds until the most throttled subject may try again; None if none is throttled."""
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for subject in subjects:
                    key = self._key(subject)
                    pipe.get(key)
                    pipe.ttl(key)
                replies = await pipe.execute()
        except REDIS_ERRORS as e:
            self._unavailable(e)
            return None
        waits = [
            ttl if ttl > 0 else self.window_s
            for count, ttl in zip(replies[::2], replies[1::2], strict=True)
            if count is not None and int(count) >= self.max_failures
        ]
        return max(waits) if waits else None

    async def failure(self, *subjects: Subject) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for subject in subjects:
                    key = self._key(subject)
                    # The first failure opens the window; INCR keeps the TTL.
                    pipe.set(key, 0, ex=self.window_s, nx=True)
                    pipe.incr(key)
                await pipe.execute()
        except REDIS_ERRORS as e:
            self._unavailable(e)

    async def reset(self, subject: Subject) -> None:
        """Forget a subject's failures (a username after a successful login; never an address,
        or one valid account would let an address keep guessing others)."""
        try:
            await self.redis.delete(self._key(subject))
        except REDIS_ERRORS as e:
            self._unavailable(e)
