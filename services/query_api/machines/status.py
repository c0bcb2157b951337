"""Every machine's live status: last values, last seen, online or offline.

The writer keeps ``millrace:status:<id>`` current in Redis (``shared.keys.status_key``); the
status endpoint never scans InfluxDB while Redis answers. When Redis is down it falls back to one
InfluxDB query for the newest point of every machine (slower, still correct) and logs a WARNING.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

import orjson

from services.query_api.history import source
from services.query_api.state import State
from shared.errors import InfluxQueryError, InfluxUnavailable
from shared.http import ApiError
from shared.influx import InfluxClient
from shared.keys import status_key
from shared.machines import Machine
from shared.redisguard import REDIS_ERRORS, RedisGuard
from shared.timefmt import ns_to_iso

log = logging.getLogger(__name__)
FALLBACK_LOOKBACK = "30d"
_TAGS = {"time", "factory_id", "sensor_type", "location", "machine_id"}


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
    src = source(influx.settings, influx.settings.raw_rp)
    [series] = await influx.query(
        f"SELECT * FROM {src} WHERE time > now() - {FALLBACK_LOOKBACK}"
        " GROUP BY machine_id ORDER BY time DESC LIMIT 1"
    )
    out: dict[str, dict[str, Any]] = {}
    for se in series:
        mid = se.tags.get("machine_id", "")
        for row in se.rows():
            out[mid] = {
                "last_seen_ns": int(row["time"]),
                "values": {k: v for k, v in row.items() if k not in _TAGS and v is not None},
            }
    return out


async def latest(st: State, ids: list[str]) -> tuple[dict[str, dict[str, Any]], str]:
    """Newest reading per machine, from Redis, or from InfluxDB while Redis is unusable."""
    guard = st["redis_guard"]
    if guard.usable():
        try:
            found = await _from_redis(guard, ids)
            guard.ok()
            return found, "redis"
        except REDIS_ERRORS as e:
            guard.failed("live status", e)
    try:
        return await _from_influx(st["influx"]), "influxdb"
    except (InfluxUnavailable, InfluxQueryError) as e:
        raise ApiError(
            503, "Live status unavailable, retry later", headers={"Retry-After": "5"}
        ) from e


def status_rows(
    machines: list[Machine], found: dict[str, dict[str, Any]], now_ns: int, threshold_s: int
) -> list[dict[str, Any]]:
    """One row per machine: online when its newest reading is at most ``threshold_s`` old."""
    threshold_ns = threshold_s * 1_000_000_000
    rows = []
    for m in machines:
        seen = found.get(m.id)
        online = seen is not None and now_ns - seen["last_seen_ns"] <= threshold_ns
        rows.append(
            {
                "machine_id": m.id,
                "name": m.name,
                "location": m.location,
                "sensor_type": m.sensor_type,
                "factory_id": m.factory_id,
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


async def status_answer(st: State, machines: list[Machine]) -> dict[str, Any]:
    """The status endpoint's body for ``machines`` (the caller's, filtered)."""
    found, origin = await latest(st, [m.id for m in machines])
    threshold_s = st["settings"].query.online_threshold_s
    rows = status_rows(machines, found, time.time_ns(), threshold_s)
    return {
        "status": "success",
        "source": origin,
        "online_threshold_s": threshold_s,
        "summary": status_summary(machines, rows),
        "machines": rows,
    }
