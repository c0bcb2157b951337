"""What the query API opens at start-up, and the typed state its handlers read."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import TypedDict

import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request

from services.query_api.deadletters.archive import DeadLetterArchive
from services.query_api.history import HistoryCache
from services.query_api.live.hub import LiveHub
from services.query_api.settings import Settings
from shared import broker
from shared.auth.verify import JwtAuthorizer
from shared.influx import InfluxClient
from shared.machines import MachineCache, MachineRepository
from shared.readings import BUILTIN_FIELDS
from shared.redisguard import RedisGuard
from shared.service import influx_ready, postgres_ready, request_state, resources


class State(TypedDict):
    settings: Settings
    known_fields: list[str]
    publisher: broker.Publisher
    deadletter_archive: DeadLetterArchive
    live: LiveHub
    pool: AsyncConnectionPool
    redis: aioredis.Redis
    influx: InfluxClient
    redis_guard: RedisGuard
    machines: MachineCache
    history_cache: HistoryCache
    authorizer: JwtAuthorizer


state: Callable[[Request], State] = request_state


async def _started(stack: AsyncExitStack, service: DeadLetterArchive | LiveHub) -> None:
    stack.push_async_callback(service.stop)
    await service.start()


async def open_state(stack: AsyncExitStack, settings: Settings) -> State:
    redis = resources.redis(stack, settings.redis)
    guard = RedisGuard(redis)
    pool = await resources.postgres(stack, settings.postgres, "query_api")
    # Dead letters: archived from their queue by this process, replayed through a publisher.
    connection = await resources.rabbitmq(stack, settings.amqp, "query_api")
    publisher = await resources.publisher(stack, settings.amqp, connection)
    archive = DeadLetterArchive(settings.amqp, connection, pool)
    await _started(stack, archive)
    live = LiveHub(settings.amqp, settings.live, connection, settings.query.online_threshold_s)
    await _started(stack, live)
    return {
        "settings": settings,
        "known_fields": [*BUILTIN_FIELDS, *settings.limits.extra_fields],
        "publisher": publisher,
        "deadletter_archive": archive,
        "live": live,
        "pool": pool,
        "redis": redis,
        "influx": resources.influx(stack, settings.influx),
        "redis_guard": guard,
        "machines": MachineCache(MachineRepository(pool), guard),
        "history_cache": HistoryCache(guard, settings.query.cache_ttl_s),
        "authorizer": resources.authorizer(stack, settings.jwt, guard),
    }


async def ready(st: State) -> dict[str, bool]:
    return {
        "postgres": await postgres_ready(st["pool"]),
        "influxdb": await influx_ready(st["influx"]),
        "rabbitmq": st["publisher"].ready
        and st["deadletter_archive"].consuming
        and st["live"].ready,
    }
