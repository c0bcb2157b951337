"""What the ingest gateway opens at start-up, and the typed state its handlers read."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import TypedDict

from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request

from services.ingest_gateway.settings import Settings
from shared import broker
from shared.auth.verify import JwtAuthorizer
from shared.machines import MachineCache, MachineRepository
from shared.readings import ValidationContext
from shared.redisguard import RedisGuard
from shared.service import postgres_ready, request_state, resources


class State(TypedDict):
    settings: Settings
    validation: ValidationContext
    pool: AsyncConnectionPool
    machines: MachineCache
    publisher: broker.Publisher
    authorizer: JwtAuthorizer


state: Callable[[Request], State] = request_state


def validation_context(settings: Settings) -> ValidationContext:
    limits = settings.limits
    return ValidationContext(
        extra_fields=dict(limits.extra_fields),
        max_future_skew_s=limits.max_future_skew_s,
        max_batch_items=limits.max_batch_items,
        max_readings_per_item=limits.max_readings_per_item,
        max_age_s=limits.max_age_s,
    )


async def open_state(stack: AsyncExitStack, settings: Settings) -> State:
    redis = resources.redis(stack, settings.redis)
    pool = await resources.postgres(stack, settings.postgres, "ingest_gateway")
    connection = await resources.rabbitmq(stack, settings.amqp, "ingest_gateway")
    publisher = await resources.publisher(stack, settings.amqp, connection, watch_queue_every_s=1.0)
    return {
        "settings": settings,
        "validation": validation_context(settings),
        "pool": pool,
        "machines": MachineCache(MachineRepository(pool), RedisGuard(redis)),
        "publisher": publisher,
        "authorizer": resources.authorizer(stack, settings.jwt, redis),
    }


async def ready(st: State) -> dict[str, bool]:
    return {"rabbitmq": st["publisher"].ready, "postgres": await postgres_ready(st["pool"])}
