"""The verifier's memory of "not revoked" (``shared.auth.denylist``) against the real Redis:
a revocation written by auth's ``Revoker`` is refused as soon as its announcement arrives, a
denylist entry nobody announced within the cache's window, and nothing is remembered while the
verifier is not subscribed."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import pytest
import redis.asyncio as aioredis

from services.auth.security.revocation import Revoker
from shared.auth.verify import JwksCache, JwtAuthorizer, revoked_jti_key
from shared.http import ApiError
from shared.settings import JwtSettings, RedisSettings
from tests import auth_testing as testing

pytestmark = pytest.mark.integration


class CountingRedis(aioredis.Redis):
    """The real client, counting denylist look-ups."""

    lookups = 0

    async def mget(self, *args: Any, **kwargs: Any) -> Any:
        self.lookups += 1
        return await super().mget(*args, **kwargs)


@pytest.fixture
async def redis(redis_settings: RedisSettings) -> AsyncIterator[CountingRedis]:
    client = cast(CountingRedis, CountingRedis.from_url(redis_settings.url.get_secret_value()))
    yield client
    await client.aclose()


@contextlib.asynccontextmanager
async def verifier(
    redis: aioredis.Redis, cache_s: float
) -> AsyncIterator[tuple[JwtAuthorizer, str]]:
    """A verifier remembering "not revoked" for ``cache_s``, subscribed to revocations, and an
    Operator token it verified (the first verification starts the subscription)."""
    settings = JwtSettings()
    jwks = JwksCache(settings)
    jwks.load(testing.jwks())
    authorizer = JwtAuthorizer(settings, jwks, redis, denylist_cache_s=cache_s)
    try:
        token = testing.mint_token("Operator")
        assert authorizer.denylist is not None
        await authorizer.verify(token)  # starts the subscription
        await within(5, lambda: authorizer.denylist is not None and authorizer.denylist.subscribed)
        yield authorizer, token
    finally:
        await authorizer.close()
        await jwks.close()


async def within(seconds: float, check: Callable[[], bool]) -> float:
    """Seconds until ``check()`` held; fails after ``seconds``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > seconds:
            raise AssertionError(f"not within {seconds} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def accepted(authorizer: JwtAuthorizer, token: str) -> bool:
    try:
        await authorizer.verify(token)
    except ApiError as e:
        assert e.status == 401 and e.message == "Invalid token: revoked"
        return False
    return True


async def refused_within(
    seconds: float, authorizer: JwtAuthorizer, token: str, what: str, step_s: float = 0.01
) -> None:
    """Verifies ``token`` until it is refused as revoked; fails with ``what`` after ``seconds``."""
    start = time.monotonic()
    while await accepted(authorizer, token):
        assert time.monotonic() - start < seconds, what
        await asyncio.sleep(step_s)


async def test_remembered_then_refused_at_once_when_the_revocation_is_announced(
    redis: CountingRedis,
) -> None:
    # A window far longer than the test: only the announcement can make it refuse.
    async with verifier(redis, cache_s=600) as (authorizer, token):
        await authorizer.verify(token)
        before = redis.lookups
        for _ in range(20):
            await authorizer.verify(token)
        assert redis.lookups == before  # remembered: no round trip per request

        principal = await authorizer.verify(token)
        revoker = Revoker(redis, leeway_s=10, longest_ttl_s=900)
        assert await revoker.deny([(principal.jti, principal.exp)])
        await refused_within(2, authorizer, token, "revocation not announced to the verifier")
        assert authorizer.denylist is not None and authorizer.denylist.invalidations >= 1
        assert not await accepted(authorizer, token)  # and stays refused


async def test_a_deactivated_subject_is_refused_once_announced(redis: CountingRedis) -> None:
    async with verifier(redis, cache_s=600) as (authorizer, token):
        principal = await authorizer.verify(token)
        assert await Revoker(redis, leeway_s=10, longest_ttl_s=900).void_subject(principal.sub)
        await refused_within(2, authorizer, token, "subject revocation not announced")
        await redis.delete(f"millrace:revoked:sub:{principal.sub}")


async def test_an_unannounced_revocation_is_refused_within_the_window(
    redis: CountingRedis,
) -> None:
    async with verifier(redis, cache_s=0.5) as (authorizer, token):
        principal = await authorizer.verify(token)
        # Written straight to Redis, nobody announces it: the window is the bound.
        await redis.set(revoked_jti_key(principal.jti), "1", ex=60)
        await refused_within(
            0.5 + 0.5, authorizer, token, "refused later than the window", step_s=0.02
        )


async def pubsub_clients(admin: aioredis.Redis) -> set[str]:
    listed = await admin.execute_command("CLIENT", "LIST", "TYPE", "pubsub")
    text = listed.decode() if isinstance(listed, bytes) else str(listed)
    return {part[3:] for part in text.split() if part.startswith("id=")}


async def test_nothing_is_remembered_without_the_subscription(
    redis: CountingRedis, redis_settings: RedisSettings
) -> None:
    admin = aioredis.Redis.from_url(redis_settings.url.get_secret_value())
    try:
        others = await pubsub_clients(admin)
        async with verifier(redis, cache_s=600) as (authorizer, token):
            denylist = authorizer.denylist
            assert denylist is not None
            ours = await pubsub_clients(admin) - others
            assert ours
            # The subscription's connection dropped (as when Redis restarts): until the
            # verifier has subscribed again, every request asks Redis.
            for client_id in ours:
                await admin.execute_command("CLIENT", "KILL", "ID", client_id)
            await within(5, lambda: not denylist.subscribed)
            principal = await authorizer.verify(token)
            await redis.set(revoked_jti_key(principal.jti), "1", ex=60)
            assert not await accepted(authorizer, token)
            await within(10, lambda: denylist.subscribed)
    finally:
        await admin.aclose()
