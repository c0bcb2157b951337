"""Query API: history (``read:sensor_data``) and the machine registry (``*:machines``)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.query_api import history
from services.query_api.cache import HistoryCache
from services.query_api.config_routes import config_routes
from services.query_api.deadletter_archive import DeadLetterArchive
from services.query_api.deadletters_api import deadletter_routes
from services.query_api.machines_api import machine_routes
from services.query_api.params import parse_history
from services.query_api.schemas import HistoryOut, HistoryParams
from services.query_api.settings import Settings
from services.query_api.status_api import status_endpoint
from services.query_api.summary_api import summary_endpoint
from shared import broker
from shared.auth.verify import JwksCache, JwtAuthorizer
from shared.db import DB_PROBE_ERRORS, open_postgres
from shared.errors import InfluxQueryError, InfluxUnavailable
from shared.http import (
    EXCEPTION_HANDLERS,
    ApiError,
    JSONResponse,
    RequestContextMiddleware,
    ops_routes,
    requires,
)
from shared.influx import InfluxClient
from shared.machines import MachineCache, MachineRepository, valid_uuid
from shared.openapi import doc, openapi_routes
from shared.readings import BUILTIN_FIELDS
from shared.redisguard import RedisGuard
from shared.security import security_middleware
from shared.startup import create_redis, tune_gc, wait_for

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> Starlette:
    known_fields = [*BUILTIN_FIELDS, *settings.limits.extra_fields]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        redis = create_redis(settings.redis)
        guard = RedisGuard(redis)
        pool = await open_postgres(settings.postgres, "query_api")
        # Dead letters: archived from their queue by this process, replayed through a publisher.
        connection = await wait_for(
            "rabbitmq", lambda: broker.connect(settings.amqp, "query_api"), broker.PUBLISH_ERRORS
        )
        publisher = broker.Publisher(settings.amqp, connection)
        await publisher.start()
        archive = DeadLetterArchive(settings.amqp, connection, pool)
        await archive.start()
        influx = InfluxClient(settings.influx)
        jwks = JwksCache(settings.jwt)
        # Long answers (720 history rows) allocate enough to trigger full collections that
        # walked every module and model: they were the p95 of a 30-day hourly history.
        tune_gc()
        try:
            yield {
                "settings": settings,
                "publisher": publisher,
                "deadletter_archive": archive,
                "pool": pool,
                "redis": redis,
                "influx": influx,
                "redis_guard": guard,
                "machines": MachineCache(MachineRepository(pool), guard),
                "history_cache": HistoryCache(guard, settings.cache_ttl_s),
                "authorizer": JwtAuthorizer(settings.jwt, jwks, guard),
            }
        finally:
            await archive.stop()
            await publisher.close()
            await connection.close()
            await influx.close()
            await pool.close()
            await redis.aclose()
            await jwks.close()

    @doc(
        "Sensor history of one machine",
        query=HistoryParams,
        responses={200: HistoryOut, 404: "Unknown machine", 503: "InfluxDB unavailable"},
        tags=["data"],
    )
    @requires("read:sensor_data")
    async def machine_history(request: Request) -> Response:
        mid = str(request.path_params["machine_id"])
        if not valid_uuid(mid):
            raise ApiError(
                400,
                "Invalid path parameter",
                [{"parameter": "machine_id", "error": "Must be a UUID", "value": mid}],
            )
        q = parse_history(
            request.query_params, known_fields, settings.default_range_s, datetime.now(UTC)
        )
        machine = await request.state.machines.get(mid)
        if machine is None:
            raise ApiError(404, "Machine not found", machine_id=mid)
        cache: HistoryCache = request.state.history_cache
        key = await cache.key(mid, q.cache_key())
        cached = await cache.get(key)
        if cached is not None:
            return JSONResponse({**cached, "machine": machine.as_dict(), "cached": True})
        try:
            rows, total = await history.fetch(request.state.influx, mid, q)
        except InfluxUnavailable as e:
            log.warning("history query failed: %s", e, extra={"dependency": "influxdb"})
            raise ApiError(
                503, "Time-series store unavailable, retry later", headers={"Retry-After": "5"}
            ) from e
        except InfluxQueryError as e:
            log.error("history query rejected: %s", e)
            raise ApiError(500, "History query failed") from e
        body = {
            "status": "success",
            "machine": machine.as_dict(),
            "query": {**q.describe(), "tier": history.choose_tier(q)},
            "data": rows,
            "pagination": {
                "limit": q.limit,
                "offset": q.offset,
                "returned_records": len(rows),
                "total_records": total,
                "has_more": q.offset + len(rows) < total,
            },
        }
        await cache.put(key, body)
        return JSONResponse(body)

    async def ready(request: Request) -> dict[str, bool]:
        checks = {
            "postgres": True,
            "influxdb": True,
            "rabbitmq": request.state.publisher.ready
            and request.state.deadletter_archive.consuming,
        }
        try:
            async with request.state.pool.connection(timeout=2) as conn:
                await conn.execute("SELECT 1")
        except DB_PROBE_ERRORS:
            checks["postgres"] = False
        try:
            await request.state.influx.ping()
        except InfluxUnavailable:
            checks["influxdb"] = False
        return checks

    return Starlette(
        routes=[
            Route("/api/v1/data/machine/{machine_id}", machine_history, methods=["GET"]),
            Route("/api/v1/data/summary", summary_endpoint(known_fields), methods=["GET"]),
            Route(
                "/api/v1/machines/status",
                status_endpoint(settings.online_threshold_s),
                methods=["GET"],
            ),
            *machine_routes(),
            *config_routes(),
            *deadletter_routes(),
            *openapi_routes("Millrace query API"),
            *ops_routes(ready),
        ],
        middleware=[
            Middleware(RequestContextMiddleware, service="query_api"),
            *security_middleware(settings.security),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
