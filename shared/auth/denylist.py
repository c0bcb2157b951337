"""A short local memory of "this token is not revoked", kept honest by a Redis channel.

Checking the denylist in Redis on every request was a round trip per request (8 % of the
ingest gateway's CPU under load, README "Performance"). A verifier with a :class:`DenylistCache`
remembers, per ``jti``, that Redis said "not revoked", for at most ``ttl_s`` seconds, and only
while it is subscribed to :data:`REVOCATION_CHANNEL`. Whoever writes the denylist (auth's
``Revoker``) publishes on that channel after writing; every subscribed instance then forgets
everything it remembered, so the next request asks Redis again.

What a revocation costs to take effect, per instance:

* subscribed when the announcement arrives: refused from that moment on (the announcement
  follows the write, so the next look-up sees it);
* announcement lost (the subscription broke, or the denylist written without announcing):
  refused within ``ttl_s`` (:data:`DENYLIST_CACHE_S`, 1 s) — an entry is never older;
* not subscribed (Redis down, reconnecting): nothing is remembered, every request asks Redis,
  as without this cache.

A look-up that was under way when an announcement arrived is not remembered (a generation
counter), so an answer read just before the write cannot outlive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import redis.asyncio as aioredis

from shared.redisguard import REDIS_ERRORS

log = logging.getLogger(__name__)

REVOCATION_CHANNEL = "millrace:revoked"
# The longest a "not revoked" answer is used without asking Redis again.
DENYLIST_CACHE_S = 1.0
_MAX_ENTRIES = 10_000


class DenylistCache:
    def __init__(self, client: aioredis.Redis, ttl_s: float = DENYLIST_CACHE_S) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self._clean: dict[str, float] = {}  # jti → when Redis said "not revoked" (monotonic)
        self._generation = 0
        self._subscribed = False
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.invalidations = 0  # announcements received (tests, diagnostics)

    @property
    def subscribed(self) -> bool:
        return self._subscribed

    @property
    def generation(self) -> int:
        """Taken before a look-up and handed to :meth:`remember` with its answer."""
        return self._generation

    def clean(self, jti: str) -> bool:
        """True when Redis said ``jti`` is not revoked less than ``ttl_s`` ago and no
        revocation was announced since. Starts the subscription on first use."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())
        if not self._subscribed:
            return False
        at = self._clean.get(jti)
        return at is not None and time.monotonic() - at < self.ttl_s

    def remember(self, jti: str, generation: int) -> None:
        """Redis said ``jti`` is not revoked, in a look-up started at ``generation``."""
        if not self._subscribed or generation != self._generation:
            return
        if len(self._clean) >= _MAX_ENTRIES:
            self._clean.clear()
        self._clean[jti] = time.monotonic()

    def forget(self) -> None:
        self._generation += 1
        self._clean.clear()

    async def _watch(self) -> None:
        delay = 0.5
        while True:
            try:
                async with self.client.pubsub() as pubsub:
                    await pubsub.subscribe(REVOCATION_CHANNEL)
                    while not self._closing:
                        # A bounded wait: redis-py can swallow a cancellation delivered while it
                        # waits for a message, so close() also relies on this flag.
                        message = await pubsub.get_message(timeout=0.5)
                        if message is None:
                            continue
                        if message["type"] == "subscribe":
                            # From here on every announcement reaches this instance.
                            self.forget()
                            self._subscribed = True
                            delay = 0.5
                            log.debug("denylist cache: subscribed to %s", REVOCATION_CHANNEL)
                        elif message["type"] == "message":
                            self.invalidations += 1
                            self.forget()
            except REDIS_ERRORS as e:
                if self._subscribed:
                    log.warning(
                        "denylist announcements lost (%s: %s); asking Redis on every request "
                        "until subscribed again",
                        type(e).__name__,
                        e,
                        extra={"dependency": "redis"},
                    )
            finally:
                self._subscribed = False
                self.forget()
            if self._closing:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def close(self) -> None:
        task, self._task = self._task, None
        self._closing = True
        self._subscribed = False
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
