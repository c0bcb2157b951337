"""``GET /api/v1/data/summary``: per-machine aggregates over a location, from the tiers.

For weekly and monthly dashboards: ``interval`` 1h reads the hourly tier, 1d/7d/30d the daily
tier, so a month of 20 machines is a few hundred tier points instead of millions of readings.
The hour or day still in progress is not in its tier yet: it is aggregated from raw and merged
into its bucket.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.query_api.history import TIER_WIDTH_NS, ns_to_iso
from services.query_api.params import iso, one_of, time_range
from services.query_api.state import state
from shared.errors import InfluxQueryError, InfluxUnavailable
from shared.http import ApiError, JSONResponse, requires
from shared.influx import InfluxClient, any_of, quote_ident
from shared.lineprotocol import MEASUREMENT
from shared.machines import MachineRepository
from shared.openapi import doc
from shared.readings import to_ns
from shared.settings import InfluxSettings

BUCKETS = {"1h": "hourly", "1d": "daily", "7d": "daily", "30d": "daily"}
MAX_MACHINES = 500


class SummaryParams(BaseModel):
    location: str = Field(description="Machines at this location")
    field: str = "temperature"
    interval: Literal["1h", "1d", "7d", "30d"] = "1d"
    start_time: str | None = Field(None, description="Default end - 30 days")
    end_time: str | None = None


class WindowOut(BaseModel):
    timestamp: str
    mean: float | None
    min: float | None
    max: float | None
    count: int


class Overall(BaseModel):
    count: int
    mean: float | None
    min: float | None
    max: float | None


class MachineSummaryOut(BaseModel):
    machine_id: str
    name: str
    status: str
    windows: list[WindowOut]
    overall: Overall


class SummaryOut(BaseModel):
    """Per-machine aggregates over a location, from the rollup tiers."""

    status: str = "success"
    query: dict[str, str]
    machines_total: int
    machines: list[MachineSummaryOut]


def _merge(windows: dict[tuple[str, int], dict[str, Any]], key: tuple[str, int], row: Any) -> None:
    """Add a window's aggregates (a bucket may get both ended days and the day in progress)."""
    count = int(row["count"] or 0)
    if not count:
        return
    w = windows.get(key)
    if w is None:
        windows[key] = {"mean": row["mean"], "min": row["min"], "max": row["max"], "count": count}
        return
    total = w["count"] + count
    w["mean"] = (w["mean"] * w["count"] + row["mean"] * count) / total
    w["min"] = min(w["min"], row["min"])
    w["max"] = max(w["max"], row["max"])
    w["count"] = total


@dataclass(frozen=True)
class SummaryQuery:
    location: str
    field: str
    interval: str
    start: datetime
    end: datetime

    @property
    def tier(self) -> str:
        return BUCKETS[self.interval]

    def describe(self) -> dict[str, str]:
        return {
            "location": self.location,
            "field": self.field,
            "interval": self.interval,
            "start_time": iso(self.start),
            "end_time": iso(self.end),
            "tier": self.tier,
        }


def parse_summary(p: Mapping[str, str], known_fields: list[str]) -> SummaryQuery:
    """The query's parameters, or 400 listing every problem."""
    errors: list[dict[str, Any]] = []
    location = p.get("location", "")
    if not location:
        errors.append({"parameter": "location", "error": "Required", "value": None})
    field = p.get("field", "temperature")
    one_of("field", field, known_fields, errors)
    interval = p.get("interval", "1d")
    one_of("interval", interval, BUCKETS, errors)
    start, end = time_range(p, errors, 30 * 86_400, datetime.now(UTC), order_despite_errors=True)
    if errors:
        raise ApiError(400, "Invalid query parameters", errors)
    return SummaryQuery(location, field, interval, start, end)


def summary_statement(
    s: InfluxSettings, q: SummaryQuery, machine_ids: list[str], now_ns: int
) -> str:
    """The tier's ended windows; the hour or day in progress is read from raw."""
    rp = s.hourly_rp if q.tier == "hourly" else s.daily_rp
    src = f"{quote_ident(s.database)}.{quote_ident(rp)}.{quote_ident(MEASUREMENT)}"
    f = q.field
    machines_cond = any_of("machine_id", machine_ids)
    width = TIER_WIDTH_NS[q.tier]
    start_ns, end_ns = to_ns(q.start), to_ns(q.end)
    boundary = min(max(now_ns - now_ns % width, start_ns), end_ns)
    statement = (
        f"SELECT sum({quote_ident('sum_' + f)}) / sum({quote_ident('count_' + f)}) AS mean,"
        f" min({quote_ident('min_' + f)}) AS min, max({quote_ident('max_' + f)}) AS max,"
        f" sum({quote_ident('count_' + f)}) AS count FROM {src}"
        f" WHERE {machines_cond} AND time >= {start_ns} AND time < {boundary}"
        f" GROUP BY time({q.interval}), machine_id fill(none)"
    )
    if boundary < end_ns:
        raw = f"{quote_ident(s.database)}.{quote_ident(s.raw_rp)}.{quote_ident(MEASUREMENT)}"
        qf = quote_ident(f)
        statement += (
            f"; SELECT mean({qf}) AS mean, min({qf}) AS min, max({qf}) AS max,"
            f" count({qf}) AS count FROM {raw}"
            f" WHERE {machines_cond} AND time >= {boundary} AND time < {end_ns}"
            f" GROUP BY time({q.interval}), machine_id fill(none)"
        )
    return statement


def overall(windows: list[dict[str, Any]]) -> dict[str, Any]:
    count = sum(x["count"] for x in windows)
    return {
        "count": count,
        "mean": (sum(x["mean"] * x["count"] for x in windows) / count) if count else None,
        "min": min((x["min"] for x in windows), default=None),
        "max": max((x["max"] for x in windows), default=None),
    }


async def _windows(
    influx: InfluxClient, q: SummaryQuery, machine_ids: list[str]
) -> dict[tuple[str, int], dict[str, Any]]:
    statement = summary_statement(influx.settings, q, machine_ids, time.time_ns())
    try:
        series = [se for part in await influx.query(statement) for se in part]
    except InfluxUnavailable as e:
        raise ApiError(
            503, "Time-series store unavailable, retry later", headers={"Retry-After": "5"}
        ) from e
    except InfluxQueryError as e:
        raise ApiError(500, "Summary query failed") from e
    known = set(machine_ids)
    windows: dict[tuple[str, int], dict[str, Any]] = {}
    for se in series:
        mid = se.tags.get("machine_id", "")
        if mid not in known:
            continue
        for row in se.rows():
            _merge(windows, (mid, int(row["time"])), row)
    return windows


@doc(
    "Per-machine aggregates over a location",
    query=SummaryParams,
    responses={200: SummaryOut},
    tags=["data"],
)
@requires("read:sensor_data")
async def summary(request: Request) -> Response:
    st = state(request)
    q = parse_summary(request.query_params, st["known_fields"])
    machines, total = await MachineRepository(st["pool"]).list(
        {"location": q.location}, MAX_MACHINES, 0
    )
    result: dict[str, dict[str, Any]] = {
        m.id: {"machine_id": m.id, "name": m.name, "status": m.status, "windows": []}
        for m in machines
    }
    if machines:
        windows = await _windows(st["influx"], q, list(result))
        for (mid, ts), w in sorted(windows.items()):
            result[mid]["windows"].append({"timestamp": ns_to_iso(ts), **w})
    for entry in result.values():
        entry["overall"] = overall(entry["windows"])
    return JSONResponse(
        {
            "status": "success",
            "query": q.describe(),
            "machines_total": total,
            "machines": list(result.values()),
        }
    )


ROUTES = [Route("/api/v1/data/summary", summary, methods=["GET"])]
