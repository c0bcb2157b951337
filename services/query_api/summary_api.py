"""``GET /api/v1/data/summary``: per-machine aggregates over a location, from the tiers.

For weekly and monthly dashboards: ``interval`` 1h reads the hourly tier, 1d/7d/30d the daily
tier, so a month of 20 machines is a few hundred tier points instead of millions of readings.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from services.query_api.history import ns_to_iso
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
            statement = (
                f"SELECT sum({quote_ident('sum_' + f)}) / sum({quote_ident('count_' + f)}) AS mean,"
                f" min({quote_ident('min_' + f)}) AS min, max({quote_ident('max_' + f)}) AS max,"
                f" sum({quote_ident('count_' + f)}) AS count FROM {src}"
                f" WHERE {any_of('machine_id', list(by_id))}"
                f" AND time >= {to_ns(start)} AND time < {to_ns(end)}"
                f" GROUP BY time({interval}), machine_id fill(none)"
            )
            try:
                [series] = await request.state.influx.query(statement)
            except InfluxUnavailable as e:
                raise ApiError(
                    503, "Time-series store unavailable, retry later", headers={"Retry-After": "5"}
                ) from e
            except InfluxQueryError as e:
                raise ApiError(500, "Summary query failed") from e
            for se in series:
                entry = result.get(se.tags.get("machine_id", ""))
                if entry is None:
                    continue
                for row in se.rows():
                    entry["windows"].append(
                        {
                            "timestamp": ns_to_iso(int(row["time"])),
                            "mean": row["mean"],
                            "min": row["min"],
                            "max": row["max"],
                            "count": int(row["count"] or 0),
                        }
                    )
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
