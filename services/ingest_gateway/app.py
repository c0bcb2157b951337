"""``POST /api/v1/data/ingest``: validate, check machines, publish confirmed, answer.

202 only after RabbitMQ confirmed every accepted reading; 207 when some machines were rejected;
400 when nothing is valid; 413/415 for bodies; 503 + Retry-After when the broker (or the machine
registry) cannot take the data right now — and then nothing was accepted.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import Counter
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.ingest_gateway import body as bodies
from services.ingest_gateway.schemas import IngestAccepted, IngestPartial
from services.ingest_gateway.settings import Settings
from services.ingest_gateway.validate import Invalid, accept, as_error_list
from shared import broker
from shared.auth.verify import JwksCache, JwtAuthorizer
from shared.db import DB_PROBE_ERRORS, DB_UNAVAILABLE, open_postgres
from shared.errors import BrokerUnavailable
from shared.http import (
    EXCEPTION_HANDLERS,
    ApiError,
    JSONResponse,
    RequestContextMiddleware,
    ops_routes,
    requires,
)
from shared.ingest import Rejection, pack, stored_readings
from shared.log import request_id
from shared.machines import MachineCache, MachineRepository
from shared.openapi import doc, openapi_routes
from shared.readings import IngestRequest, ValidationContext
from shared.redisguard import RedisGuard
from shared.security import security_middleware
from shared.startup import create_redis, tune_gc, wait_for

log = logging.getLogger(__name__)

BACKPRESSURE = Counter(
    "millrace_ingest_backpressure_total", "Requests refused up front because of broker pressure"
)
READINGS = Counter("millrace_ingest_readings_total", "Readings by outcome", ["source", "outcome"])


def create_app(settings: Settings) -> Starlette:
    limits = settings.limits
    base_ctx = ValidationContext(
        extra_fields=dict(limits.extra_fields),
        max_future_skew_s=limits.max_future_skew_s,
        max_batch_items=limits.max_batch_items,
        max_readings_per_item=limits.max_readings_per_item,
        max_age_s=limits.max_age_s,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        redis = create_redis(settings.redis)
        pool = await open_postgres(settings.postgres, "ingest_gateway")
        connection = await wait_for(
            "rabbitmq",
            lambda: broker.connect(settings.amqp, "ingest_gateway"),
            broker.PUBLISH_ERRORS,
        )
        publisher = broker.Publisher(settings.amqp, connection, watch_queue_every_s=1.0)
        await publisher.start()
        jwks = JwksCache(settings.jwt)
        tune_gc()
        try:
            yield {
                "settings": settings,
                "pool": pool,
                "redis": redis,
                "machines": MachineCache(MachineRepository(pool), RedisGuard(redis)),
                "publisher": publisher,
                "authorizer": JwtAuthorizer(settings.jwt, jwks, redis),
            }
        finally:
            await publisher.close()
            await connection.close()
            await pool.close()
            await redis.aclose()
            await jwks.close()

    def unavailable(what: str) -> ApiError:
        return ApiError(
            503,
            f"{what} cannot take data right now; nothing was accepted, retry later",
            headers={"Retry-After": str(settings.retry_after_s)},
        )

    @doc(
        "Ingest a gateway batch (JSON, optionally gzip-encoded)",
        body=IngestRequest,
        responses={
            202: IngestAccepted,
            207: IngestPartial,
            413: "Body too large",
            415: "Not JSON",
            503: "Broker cannot take data; nothing accepted; see Retry-After",
        },
        tags=["ingest"],
    )
    @requires("write:sensor_data")
    async def ingest(request: Request) -> Response:
        publisher: broker.Publisher = request.state.publisher
        pressure = publisher.pressure()
        if pressure is not None:
            # Refuse before reading the body: the gateway keeps its data and retries.
            BACKPRESSURE.inc()
            raise unavailable(f"The message broker ({pressure})")
        raw = await bodies.read_body(request, limits.max_body_bytes)
        ctx = base_ctx.with_now()
        try:
            checked = accept(raw, ctx)
        except Invalid as e:
            READINGS.labels("http", "invalid").inc()
            raise ApiError(400, e.message, [fe.as_dict() for fe in e.errors]) from None
        log.debug(
            "payload validated: gateway %s, %d machines",
            checked.gateway_id,
            len(checked.items),
        )

        cache: MachineCache = request.state.machines
        ids = list({item.machine_id for _, item in checked.items})
        try:
            known = await cache.get_many(ids)
        except DB_UNAVAILABLE as e:
            log.warning("machine registry unreachable: %s", e, extra={"dependency": "postgres"})
            raise unavailable("The machine registry") from e

        factory_id = checked.factory_id or limits.default_factory_id
        rejected = list(checked.rejected)
        readings: list[dict[str, Any]] = []
        machines_accepted = 0
        for index, item in checked.items:
            mid = item.machine_id
            machine = known.get(mid)
            if machine is None:
                rejected.append(
                    Rejection(
                        index,
                        mid,
                        "unknown machine",
                        [
                            {
                                "field": f"batch[{index}].machine_id",
                                "error": "Unknown machine",
                                "value": mid,
                            }
                        ],
                    )
                )
                continue
            machines_accepted += 1
            readings.extend(
                stored_readings(
                    machine=machine,
                    factory_id=factory_id,
                    sensor_type=item.sensor_type,
                    location=item.location,
                    readings=item.points,
                )
            )
        rejected.sort(key=lambda r: r.index if r.index is not None else -1)
        if not readings:
            READINGS.labels("http", "rejected").inc()
            raise ApiError(
                400,
                "Validation failed",
                as_error_list(rejected),
                rejected=[r.as_dict() for r in rejected],
            )

        rid = request_id.get() or ""
        envelopes = pack(
            readings,
            source="http",
            gateway_id=checked.gateway_id,
            request_id=rid,
            per_message=limits.readings_per_message,
        )
        try:
            await publisher.publish(envelopes)
        except BrokerUnavailable as e:
            log.warning("publish failed: %s", e, extra={"dependency": "rabbitmq"})
            raise unavailable("The message broker") from e
        READINGS.labels("http", "accepted").inc(len(readings))

        accepted = {
            "machines": machines_accepted,
            "readings": len(readings),
            "messages": len(envelopes),
        }
        if rejected:
            return JSONResponse(
                {
                    "status": "partial",
                    "message": f"{len(rejected)} machine(s) rejected, the rest accepted",
                    "request_id": rid,
                    "accepted": accepted,
                    "rejected": [r.as_dict() for r in rejected],
                    "errors": as_error_list(rejected),
                },
                status_code=207,
            )
        return JSONResponse(
            {"status": "accepted", "request_id": rid, "accepted": accepted}, status_code=202
        )

    async def ready(request: Request) -> dict[str, bool]:
        publisher: broker.Publisher = request.state.publisher
        checks = {"rabbitmq": publisher.ready, "postgres": True}
        try:
            async with request.state.pool.connection(timeout=2) as conn:
                await conn.execute("SELECT 1")
        except DB_PROBE_ERRORS:
            checks["postgres"] = False
        return checks

    return Starlette(
        routes=[
            Route("/api/v1/data/ingest", ingest, methods=["POST"]),
            *ops_routes(ready),
            *openapi_routes("Millrace ingest gateway"),
        ],
        middleware=[
            Middleware(RequestContextMiddleware, service="ingest_gateway"),
            *security_middleware(settings.security),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
