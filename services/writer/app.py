"""The writer process: health/ready/metrics over HTTP; the consumer lives in the lifespan so that
uvicorn's SIGTERM handling drives the graceful drain."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request

from services.writer.rollup import Rollup
from services.writer.settings import Settings
from services.writer.status import StatusUpdater
from services.writer.writer import Writer
from shared import broker
from shared.errors import InfluxQueryError, InfluxRejected, InfluxUnavailable
from shared.http import EXCEPTION_HANDLERS, ops_routes
from shared.influx import InfluxClient
from shared.readings import BUILTIN_FIELDS
from shared.startup import create_redis, tune_gc, wait_for

log = logging.getLogger(__name__)


async def _sweep(rollup: Rollup, hours: int) -> None:
    if hours <= 0:
        return
    try:
        await rollup.sweep(hours)
    except (InfluxUnavailable, InfluxRejected, InfluxQueryError) as e:
        log.warning("start-up rollup sweep failed: %s", e, extra={"dependency": "influxdb"})


def create_app(settings: Settings) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        influx = InfluxClient(settings.influx)
        if settings.influx.provision:
            await wait_for("influxdb", influx.provision, (InfluxUnavailable,))
        connection = await wait_for(
            "rabbitmq", lambda: broker.connect(settings.amqp, "writer"), broker.PUBLISH_ERRORS
        )
        redis = create_redis(settings.redis)
        fields = [*BUILTIN_FIELDS, *settings.limits.extra_fields]
        rollup = Rollup(influx, fields, settings.rollup_interval_s, settings.rollup_repeat_s)
        writer = Writer(settings, connection, influx, rollup=rollup, status=StatusUpdater(redis))
        await writer.start()
        sweep = asyncio.create_task(_sweep(rollup, settings.rollup_sweep_hours))
        tune_gc()
        try:
            yield {"writer": writer, "influx": influx}
        finally:
            sweep.cancel()
            await writer.stop()
            await connection.close()
            await influx.close()
            await redis.aclose()

    async def ready(request: Request) -> dict[str, bool]:
        writer: Writer = request.state.writer
        influx: InfluxClient = request.state.influx
        try:
            await influx.ping()
            influx_up = True
        except InfluxUnavailable:
            influx_up = False
        return {"rabbitmq": writer.consuming, "influxdb": influx_up}

    return Starlette(
        routes=ops_routes(ready), exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan
    )
