"""``GET /api/v1/data/machine/{machine_id}``: one machine's history (``history.py`` builds
and runs the queries; answers are cached briefly, see ``history.HistoryCache``)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.query_api import history
from services.query_api.machines_api import MachineOut
from services.query_api.params import parse_history
from services.query_api.state import State, state
from shared.errors import InfluxQueryError, InfluxUnavailable
from shared.http import ApiError, JSONResponse, requires
from shared.machines import valid_uuid
from shared.openapi import doc
from shared.schemas import Pagination, page

log = logging.getLogger(__name__)


class HistoryParams(BaseModel):
    start_time: str | None = Field(None, description="ISO 8601 with zone; default end - 24 h")
    end_time: str | None = Field(None, description="ISO 8601 with zone; default now")
    interval: Literal["raw", "1m", "5m", "1h", "1d"] = "raw"
    agg: Literal["mean", "min", "max", "count"] = "mean"
    fields: str | None = Field(None, description="Comma-separated, e.g. temperature,speed")
    limit: int = Field(1000, ge=1, le=10_000)
    offset: int = Field(0, ge=0)
    tier: Literal["auto", "raw"] = Field("auto", description="raw forces aggregation from raw")


class HistoryQueryOut(BaseModel):
    start_time: str
    end_time: str
    interval: str
    fields: list[str]
    agg: str
    tier: Literal["raw", "hourly", "daily"]


class HistoryOut(BaseModel):
    """Readings (or aggregates) of one machine, oldest first."""

    status: str = "success"
    machine: MachineOut
    query: HistoryQueryOut
    data: list[dict[str, Any]] = Field(description="{timestamp, <field>: value, ...}")
    pagination: Pagination


def _machine_id(request: Request) -> str:
    mid = str(request.path_params["machine_id"])
    if not valid_uuid(mid):
        error = {"parameter": "machine_id", "error": "Must be a UUID", "value": mid}
        raise ApiError(400, "Invalid path parameter", [error])
    return mid


async def _fetch(st: State, mid: str, q: history.HistoryQuery) -> tuple[list[Any], int]:
    try:
        return await history.fetch(st["influx"], mid, q)
    except InfluxUnavailable as e:
        log.warning("history query failed: %s", e, extra={"dependency": "influxdb"})
        raise ApiError(
            503, "Time-series store unavailable, retry later", headers={"Retry-After": "5"}
        ) from e
    except InfluxQueryError as e:
        log.error("history query rejected: %s", e)
        raise ApiError(500, "History query failed") from e


def history_body(
    machine: dict[str, Any], q: history.HistoryQuery, rows: list[Any], total: int
) -> dict[str, Any]:
    return {
        "status": "success",
        "machine": machine,
        "query": {**q.describe(), "tier": history.choose_tier(q)},
        "data": rows,
        "pagination": page(q.limit, q.offset, len(rows), total),
    }


@doc(
    "Sensor history of one machine",
    query=HistoryParams,
    responses={200: HistoryOut, 404: "Unknown machine", 503: "InfluxDB unavailable"},
    tags=["data"],
)
@requires("read:sensor_data")
async def machine_history(request: Request) -> Response:
    st = state(request)
    mid = _machine_id(request)
    default_range_s = st["settings"].default_range_s
    q = parse_history(request.query_params, st["known_fields"], default_range_s, datetime.now(UTC))
    machine = await st["machines"].get(mid)
    if machine is None:
        raise ApiError(404, "Machine not found", machine_id=mid)
    cache = st["history_cache"]
    key = await cache.key(mid, q.cache_key())
    cached = await cache.get(key)
    if cached is not None:
        return JSONResponse({**cached, "machine": machine.as_dict(), "cached": True})
    rows, total = await _fetch(st, mid, q)
    body = history_body(machine.as_dict(), q, rows, total)
    await cache.put(key, body)
    return JSONResponse(body)


ROUTES = [Route("/api/v1/data/machine/{machine_id}", machine_history, methods=["GET"])]
