"""The writer process: the consumer (``Writer``) runs in the lifespan, so that SIGTERM drains it
(stop consuming, flush what is held, close); HTTP serves /health, /ready and /metrics."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from typing import TypedDict

from starlette.applications import Starlette

from services.writer.rollup import Rollup
from services.writer.settings import Settings
from services.writer.status import StatusUpdater
from services.writer.writer import Writer
from shared.errors import InfluxQueryError, InfluxRejected, InfluxUnavailable
from shared.influx import InfluxClient
from shared.readings import BUILTIN_FIELDS
from shared.service import influx_ready, resources, service_app
from shared.startup import wait_for

log = logging.getLogger(__name__)


class State(TypedDict):
    writer: Writer
    influx: InfluxClient


async def _sweep(rollup: Rollup, hours: int) -> None:
    if hours <= 0:
        return
    try:
        await rollup.sweep(hours)
    except (InfluxUnavailable, InfluxRejected, InfluxQueryError) as e:
        log.warning("start-up rollup sweep failed: %s", e, extra={"dependency": "influxdb"})


async def open_state(stack: AsyncExitStack, settings: Settings) -> State:
    influx = resources.influx(stack, settings.influx)
    if settings.influx.provision:
        await wait_for("influxdb", influx.provision, (InfluxUnavailable,))
    connection = await resources.rabbitmq(stack, settings.amqp, "writer")
    redis = resources.redis(stack, settings.redis)
    fields = [*BUILTIN_FIELDS, *settings.limits.extra_fields]
    rollup = Rollup(
        influx, fields, settings.writer.rollup_interval_s, settings.writer.rollup_repeat_s
    )
    writer = Writer(settings, connection, influx, rollup=rollup, status=StatusUpdater(redis))
    stack.push_async_callback(writer.stop)
    await writer.start()
    sweep = asyncio.create_task(_sweep(rollup, settings.writer.rollup_sweep_hours))
    stack.callback(sweep.cancel)
    return {"writer": writer, "influx": influx}


async def ready(state: State) -> dict[str, bool]:
    return {"rabbitmq": state["writer"].consuming, "influxdb": await influx_ready(state["influx"])}


def create_app(settings: Settings) -> Starlette:
    return service_app("writer", settings, open_state, ready)
