"""``GET /api/v1/machines/status``: last values, last seen and online/offline per machine.

The writer keeps ``millrace:status:<id>`` current in Redis; this endpoint never scans InfluxDB
while Redis answers. When Redis is down it falls back to one InfluxDB query for the newest
point of every machine (slower, still correct) and logs a WARNING.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any, Literal

import orjson
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.query_api.history import ns_to_iso
from services.query_api.params import one_of
from services.query_api.state import State, state
from shared.errors import InfluxQueryError, InfluxUnavailable
from shared.http import ApiError, JSONResponse, requires
from shared.influx import InfluxClient, quote_ident
from shared.keys import status_key
from shared.lineprotocol import MEASUREMENT
from shared.machines import STATUSES, Machine, MachineRepository
from shared.openapi import doc
from shared.redisguard import REDIS_ERRORS, RedisGuard

log = logging.getLogger(__name__)
FALLBACK_LOOKBACK = "30d"


class StatusParams(BaseModel):
    location: str | None = None
    status: Literal["active", "inactive", "maintenance", "error"] | None = None
    sensor_type: str | None = None


class MachineStatusOut(BaseModel):
    machine_id: str
    name: str
    location: str
    sensor_type: str
    status: str
    online: bool
    last_seen: str | None
    last_values: dict[str, float] | None


class StatusSummary(BaseModel):
    total: int
    online: int
    offline: int
    never_seen: int
    by_status: dict[str, int]


class StatusOut(BaseModel):
    """Latest values and online state of every machine."""

    status: str = "success"
    source: Literal["redis", "influxdb"]
    online_threshold_s: int
    summary: StatusSummary
    machines: list[MachineStatusOut]


async def _from_redis(guard: RedisGuard, ids: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    async with guard.client.pipeline(transaction=False) as pipe:
        for mid in ids:
            pipe.hgetall(status_key(mid))
        results = await pipe.execute()
    for mid, h in zip(ids, results, strict=True):
        if h:
            out[mid] = {
                "last_seen_ns": int(h[b"ts_ms"]) * 1_000_000,
                "values": orjson.loads(h[b"values"]),
            }
    return out


async def _from_influx(influx: InfluxClient) -> dict[str, dict[str, Any]]:
    s = influx.settings
    src = f"{quote_ident(s.database)}.{quote_ident(s.raw_rp)}.{quote_ident(MEASUREMENT)}"
    [series] = await influx.query(
        f"SELECT * FROM {src} WHERE time > now() - {FALLBACK_LOOKBACK}"
        " GROUP BY machine_id ORDER BY time DESC LIMIT 1"
    )
    out: dict[str, dict[str, Any]] = {}
    skip = {"time", "factory_id", "sensor_type", "location", "machine_id"}
    for se in series:
        mid = se.tags.get("machine_id", "")
        for row in se.rows():
            out[mid] = {
                "last_seen_ns": int(row["time"]),
                "values": {k: v for k, v in row.items() if k not in skip and v is not None},
            }
    return out


def _status_filter(request: Request) -> dict[str, str]:
    filters = {
        k: request.query_params[k]
        for k in ("location", "status", "sensor_type")
        if request.query_params.get(k)
    }
    errors: list[dict[str, Any]] = []
    if "status" in filters:
        one_of("status", filters["status"], STATUSES, errors)
    if errors:
        raise ApiError(400, "Invalid query parameters", errors)
    return filters


async def _latest(st: State, ids: list[str]) -> tuple[dict[str, dict[str, Any]], str]:
    """Newest reading per machine, from Redis, or from InfluxDB while Redis is unusable."""
    guard = st["redis_guard"]
    if guard.usable():
        try:
            latest = await _from_redis(guard, ids)
            guard.ok()
            return latest, "redis"
        except REDIS_ERRORS as e:
            guard.failed("live status", e)
    try:
        return await _from_influx(st["influx"]), "influxdb"
    except (InfluxUnavailable, InfluxQueryError) as e:
        raise ApiError(
            503, "Live status unavailable, retry later", headers={"Retry-After": "5"}
        ) from e


def status_rows(
    machines: list[Machine], latest: dict[str, dict[str, Any]], now_ns: int, threshold_s: int
) -> list[dict[str, Any]]:
    """One row per machine: online when its newest reading is at most ``threshold_s`` old."""
    threshold_ns = threshold_s * 1_000_000_000
    rows = []
    for m in machines:
        seen = latest.get(m.id)
        online = seen is not None and now_ns - seen["last_seen_ns"] <= threshold_ns
        rows.append(
            {
                "machine_id": m.id,
                "name": m.name,
                "location": m.location,
                "sensor_type": m.sensor_type,
                "status": m.status,
                "online": online,
                "last_seen": ns_to_iso(seen["last_seen_ns"]) if seen else None,
                "last_values": seen["values"] if seen else None,
            }
        )
    return rows


def status_summary(machines: list[Machine], rows: list[dict[str, Any]]) -> dict[str, Any]:
    online_count = sum(1 for r in rows if r["online"])
    return {
        "total": len(rows),
        "online": online_count,
        "offline": len(rows) - online_count,
        "never_seen": sum(1 for r in rows if r["last_seen"] is None),
        "by_status": dict(Counter(m.status for m in machines)),
    }


@doc(
    "Live status of every machine",
    query=StatusParams,
    responses={200: StatusOut},
    tags=["machines"],
)
@requires("read:machines")
async def machines_status(request: Request) -> Response:
    st = state(request)
    filters = _status_filter(request)
    machines, _ = await MachineRepository(st["pool"]).list(filters, 100_000, 0)
    latest, source = await _latest(st, [m.id for m in machines])
    threshold_s = st["settings"].online_threshold_s
    rows = status_rows(machines, latest, time.time_ns(), threshold_s)
    return JSONResponse(
        {
            "status": "success",
            "source": source,
            "online_threshold_s": threshold_s,
            "summary": status_summary(machines, rows),
            "machines": rows,
        }
    )


ROUTES = [Route("/api/v1/machines/status", machines_status, methods=["GET"])]
