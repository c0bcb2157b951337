"""The writer process: health/ready/metrics over HTTP; the consumer lives in the lifespan so that
uvicorn's SIGTERM handling drives the graceful drain."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request

from services.writer.settings import Settings
from services.writer.writer import Writer
from shared import broker
from shared.errors import InfluxUnavailable
from shared.http import EXCEPTION_HANDLERS, ops_routes
from shared.influx import InfluxClient
from shared.startup import wait_for


def create_app(settings: Settings) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        influx = InfluxClient(settings.influx)
        if settings.influx.provision:
            await wait_for("influxdb", influx.provision, (InfluxUnavailable,))
        connection = await wait_for(
            "rabbitmq", lambda: broker.connect(settings.amqp, "writer"), broker.PUBLISH_ERRORS
        )
        writer = Writer(settings, connection, influx)
        await writer.start()
        try:
            yield {"writer": writer, "influx": influx}
        finally:
            await writer.stop()
            await connection.close()
            await influx.close()

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
