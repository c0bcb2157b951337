"""The bridge's process: a small Starlette app for /health, /ready and /metrics whose lifespan
owns every connection and runs the bridge.

SIGTERM → uvicorn runs the lifespan shutdown → the bridge finishes the groups in flight,
acknowledges them, publishes ``offline`` and disconnects; then RabbitMQ and the databases close.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request

from services.mqtt_bridge.bridge import Bridge
from services.mqtt_bridge.settings import Settings
from shared import broker
from shared.db import open_postgres
from shared.http import EXCEPTION_HANDLERS, RequestContextMiddleware, ops_routes
from shared.machines import MachineCache, MachineRepository
from shared.startup import create_redis, tune_gc, wait_for

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        redis = create_redis(settings.redis)
        pool = await open_postgres(settings.postgres, "mqtt_bridge")
        connection = await wait_for(
            "rabbitmq",
            lambda: broker.connect(settings.amqp, f"mqtt_bridge {settings.mqtt.client_id}"),
            broker.PUBLISH_ERRORS,
        )
        publisher = broker.Publisher(settings.amqp, connection)
        await publisher.start()
        bridge = Bridge(settings, publisher, MachineCache(MachineRepository(pool), redis))
        await bridge.start()
        tune_gc()
        try:
            yield {"bridge": bridge, "publisher": publisher}
        finally:
            # Leave a little of the shutdown budget for closing the connections below.
            await bridge.stop(max(1.0, settings.shutdown_timeout_s - 2.0))
            await publisher.close()
            await connection.close()
            await pool.close()
            await redis.aclose()

    async def ready(request: Request) -> dict[str, bool]:
        bridge: Bridge = request.state.bridge
        publisher: broker.Publisher = request.state.publisher
        return {"mqtt": bridge.mqtt_ready, "rabbitmq": publisher.ready}

    return Starlette(
        routes=ops_routes(ready),
        middleware=[Middleware(RequestContextMiddleware, service="mqtt_bridge")],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
