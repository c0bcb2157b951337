"""Writes to the Redis denylist that every service's verifier reads (``shared.auth.verify``).

Entries live exactly as long as the tokens they void, so the denylist never grows unbounded.
Every write is announced on ``REVOCATION_CHANNEL`` so that verifiers drop what they remembered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from tenacity import (
    AsyncRetrying,
    before_sleep_log,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from shared.auth.denylist import REVOCATION_CHANNEL
from shared.auth.verify import revoked_jti_key, revoked_subject_key

log = logging.getLogger(__name__)

REDIS_ERRORS = (RedisError, OSError)


class Revoker:
    def __init__(self, redis: aioredis.Redis, leeway_s: int, longest_ttl_s: int) -> None:
        self.redis = redis
        self.leeway_s = leeway_s
        # How long a "void every token of this subject issued before now" marker must last:
        # until the longest-lived token issued before it has expired.
        self.subject_ttl_s = longest_ttl_s + leeway_s

    async def _write(self, what: str, commands: list[tuple[str, str, int]]) -> bool:
        if not commands:
            return True
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(3),
                wait=wait_exponential(multiplier=0.05, max=0.5),
                retry=retry_if_exception_type(REDIS_ERRORS),
                before_sleep=before_sleep_log(log, logging.WARNING),
                reraise=True,
            ):
                with attempt:
                    async with self.redis.pipeline(transaction=False) as pipe:
                        for key, value, ttl in commands:
                            pipe.set(key, value, ex=ttl)
                        # After the writes: a verifier that forgets on this message and asks
                        # again sees them (shared.auth.denylist).
                        pipe.publish(REVOCATION_CHANNEL, what)
                        await pipe.execute()
        except REDIS_ERRORS as e:
            log.error(
                "could not write %s to the Redis denylist: %s",
                what,
                e,
                extra={"dependency": "redis"},
            )
            return False
        return True

    async def deny(self, tokens: Iterable[tuple[str, int]]) -> bool:
        """Denylist access tokens by (jti, exp) until they expire; False if Redis failed."""
        now = int(time.time())
        commands = [
            (revoked_jti_key(jti), "1", exp - now + self.leeway_s)
            for jti, exp in dict(tokens).items()
            if exp - now + self.leeway_s > 0
        ]
        return await self._write(f"{len(commands)} token(s)", commands)

    async def void_subject(self, sub: str) -> bool:
        """Void every token of ``sub`` issued up to now (deactivated user, disabled gateway)."""
        return await self._write(
            f"subject {sub}",
            [(revoked_subject_key(sub), str(int(time.time())), self.subject_ttl_s)],
        )
