"""The dependencies most services open, each registered on the start-up stack as it is made.

Every helper waits for its dependency with bounded, logged retries (``shared.startup.wait_for``)
and pushes its closer onto ``stack`` first, so a start-up that fails later still closes it.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

import redis.asyncio as aioredis
from aio_pika.abc import AbstractRobustConnection
from psycopg_pool import AsyncConnectionPool

from shared import broker
from shared.auth.denylist import DENYLIST_CACHE_S
from shared.auth.verify import JwksCache, JwtAuthorizer
from shared.db import DB_ERRORS, create_pool, migrate
from shared.influx import InfluxClient
from shared.redisguard import RedisGuard
from shared.settings import (
    AmqpSettings,
    InfluxSettings,
    JwtSettings,
    PostgresSettings,
    RedisSettings,
)
from shared.startup import create_redis, wait_for


def redis(stack: AsyncExitStack, settings: RedisSettings) -> aioredis.Redis:
    client = create_redis(settings)
    stack.push_async_callback(client.aclose)
    return client


async def postgres(
    stack: AsyncExitStack, settings: PostgresSettings, name: str
) -> AsyncConnectionPool:
    """A pool once PostgreSQL answers, the schema migrated."""
    pool = create_pool(settings, name)
    stack.push_async_callback(pool.close)
    await wait_for("postgres", lambda: pool.open(wait=True), (*DB_ERRORS, TimeoutError))
    await migrate(pool)
    return pool


async def rabbitmq(
    stack: AsyncExitStack, settings: AmqpSettings, name: str
) -> AbstractRobustConnection:
    connection = await wait_for(
        "rabbitmq", lambda: broker.connect(settings, name), broker.PUBLISH_ERRORS
    )
    stack.push_async_callback(connection.close)
    return connection


async def publisher(
    stack: AsyncExitStack,
    settings: AmqpSettings,
    connection: AbstractRobustConnection,
    watch_queue_every_s: float | None = None,
) -> broker.Publisher:
    """A started confirmed publisher on ``connection``."""
    pub = broker.Publisher(settings, connection, watch_queue_every_s=watch_queue_every_s)
    stack.push_async_callback(pub.close)
    await pub.start()
    return pub


def influx(stack: AsyncExitStack, settings: InfluxSettings) -> InfluxClient:
    client = InfluxClient(settings)
    stack.push_async_callback(client.close)
    return client


def authorizer(
    stack: AsyncExitStack,
    settings: JwtSettings,
    cache: aioredis.Redis | RedisGuard,
    jwks: JwksCache | None = None,
) -> JwtAuthorizer:
    """Verifies tokens with the JWKS the auth service publishes (or ``jwks``, auth's own); a
    "not revoked" answer is remembered for up to ``DENYLIST_CACHE_S`` while revocations are
    announced to it (``shared.auth.denylist``)."""
    jwks = jwks or JwksCache(settings)
    stack.push_async_callback(jwks.close)
    verifier = JwtAuthorizer(settings, jwks, cache, denylist_cache_s=DENYLIST_CACHE_S)
    stack.push_async_callback(verifier.close)
    return verifier
