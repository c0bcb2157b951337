"""``GET /api/v1/data/summary``: per-machine aggregates over a location, from the tiers.

For weekly and monthly dashboards: ``interval`` 1h reads the hourly tier, 1d/7d/30d the daily
tier, so a month of 20 machines is a few hundred tier points instead of millions of readings.
The hour or day still in progress is not in its tier yet: it is aggregated from raw and merged
into its bucket.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from services.query_api.history import TIER_WIDTH_NS, ns_to_iso
from services.query_api.params import before, iso, parse_time
from services.query_api.schemas import SummaryOut, SummaryParams
from shared.errors import InfluxQueryError, InfluxUnavailable
from shared.http import ApiError, JSONResponse, requires
from shared.influx import any_of, quote_ident
from shared.lineprotocol import MEASUREMENT
from shared.machines import MachineRepository
from shared.openapi import doc
from shared.readings import to_ns

BUCKETS = {"1h": "hourly", "1d": "daily", "7d": "daily", "30d": "daily"}
MAX_MACHINES = 500


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


def summary_endpoint(known_fields: list[str]) -> Any:
    @doc(
        "Per-machine aggregates over a location",
        query=SummaryParams,
        responses={200: SummaryOut},
        tags=["data"],
    )
    @requires("read:sensor_data")
    async def summary(request: Request) -> Response:
        p = request.query_params
        errors: list[dict[str, Any]] = []
        location = p.get("location", "")
        if not location:
            errors.append({"parameter": "location", "error": "Required", "value": None})
        field = p.get("field", "temperature")
        if field not in known_fields:
            errors.append(
                {
                    "parameter": "field",
                    "error": "Must be one of: " + ", ".join(known_fields),
                    "value": field,
                }
            )
        interval = p.get("interval", "1d")
        if interval not in BUCKETS:
            errors.append(
                {
                    "parameter": "interval",
                    "error": "Must be one of: " + ", ".join(BUCKETS),
                    "value": interval,
                }
            )
        end = parse_time("end_time", p.get("end_time"), errors) or datetime.now(UTC)
        start = parse_time("start_time", p.get("start_time"), errors) or before(end, 30 * 86_400)
        if start >= end:
            errors.append(
                {
                    "parameter": "start_time",
                    "error": "Must be before end_time",
                    "value": p.get("start_time"),
                }
            )
        if errors:
            raise ApiError(400, "Invalid query parameters", errors)

        machines, total = await MachineRepository(request.state.pool).list(
            {"location": location}, MAX_MACHINES, 0
        )
        by_id = {m.id: m for m in machines}
        result: dict[str, dict[str, Any]] = {
            m.id: {"machine_id": m.id, "name": m.name, "status": m.status, "windows": []}
            for m in machines
        }
        if machines:
            s = request.state.influx.settings
            rp = s.hourly_rp if BUCKETS[interval] == "hourly" else s.daily_rp
            src = f"{quote_ident(s.database)}.{quote_ident(rp)}.{quote_ident(MEASUREMENT)}"
            f = field
            machines_cond = any_of("machine_id", list(by_id))
            # The tier holds ended windows; the hour or day in progress is read from raw.
            width = TIER_WIDTH_NS[BUCKETS[interval]]
            now_ns = time.time_ns()
            boundary = min(max(now_ns - now_ns % width, to_ns(start)), to_ns(end))
            statement = (
                f"SELECT sum({quote_ident('sum_' + f)}) / sum({quote_ident('count_' + f)}) AS mean,"
                f" min({quote_ident('min_' + f)}) AS min, max({quote_ident('max_' + f)}) AS max,"
                f" sum({quote_ident('count_' + f)}) AS count FROM {src}"
                f" WHERE {machines_cond} AND time >= {to_ns(start)} AND time < {boundary}"
                f" GROUP BY time({interval}), machine_id fill(none)"
            )
            if boundary < to_ns(end):
                raw = (
                    f"{quote_ident(s.database)}.{quote_ident(s.raw_rp)}.{quote_ident(MEASUREMENT)}"
                )
                q = quote_ident(f)
                statement += (
                    f"; SELECT mean({q}) AS mean, min({q}) AS min, max({q}) AS max,"
                    f" count({q}) AS count FROM {raw}"
                    f" WHERE {machines_cond} AND time >= {boundary} AND time < {to_ns(end)}"
                    f" GROUP BY time({interval}), machine_id fill(none)"
                )
            try:
                series = [se for part in await request.state.influx.query(statement) for se in part]
            except InfluxUnavailable as e:
                raise ApiError(
                    503, "Time-series store unavailable, retry later", headers={"Retry-After": "5"}
                ) from e
            except InfluxQueryError as e:
                raise ApiError(500, "Summary query failed") from e
            windows: dict[tuple[str, int], dict[str, Any]] = {}
            for se in series:
                mid = se.tags.get("machine_id", "")
                if mid not in result:
                    continue
                for row in se.rows():
                    _merge(windows, (mid, int(row["time"])), row)
            for (mid, ts), w in sorted(windows.items()):
                result[mid]["windows"].append({"timestamp": ns_to_iso(ts), **w})
        for entry in result.values():
            w = entry["windows"]
            count = sum(x["count"] for x in w)
            entry["overall"] = {
                "count": count,
                "mean": (sum(x["mean"] * x["count"] for x in w) / count) if count else None,
                "min": min((x["min"] for x in w), default=None),
                "max": max((x["max"] for x in w), default=None),
            }
        return JSONResponse(
            {
                "status": "success",
                "query": {
                    "location": location,
                    "field": field,
                    "interval": interval,
                    "start_time": iso(start),
                    "end_time": iso(end),
                    "tier": BUCKETS[interval],
                },
                "machines_total": total,
                "machines": list(result.values()),
            }
        )

    return summary
