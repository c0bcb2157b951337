"""Per-machine aggregates over a location, from the tiers.

For weekly and monthly dashboards: ``interval`` 1h reads the hourly tier, 1d/7d/30d the daily
tier, so a month of 20 machines is a few hundred tier points instead of millions of readings.
The hour or day still in progress is not in its tier yet: it is aggregated from raw and merged
into its bucket.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.query_api.history import TIER_WIDTH_NS, influx_answers, source
from services.query_api.params import SUMMARY_BUCKETS, SummaryParams
from shared.influx import InfluxClient, any_of, quote_ident
from shared.machines import Machine
from shared.readings import to_ns
from shared.settings import InfluxSettings
from shared.timefmt import iso, ns_to_iso

SUMMARY_RANGE_S = 30 * 86_400


@dataclass(frozen=True)
class SummaryQuery:
    location: str
    field: str
    interval: str
    start: datetime
    end: datetime

    @classmethod
    def of(cls, p: SummaryParams, context: dict[str, Any]) -> SummaryQuery:
        start, end = p.window(context)
        return cls(p.location, p.field, p.interval, start, end)

    @property
    def tier(self) -> str:
        return SUMMARY_BUCKETS[self.interval]

    def describe(self) -> dict[str, str]:
        return {
            "location": self.location,
            "field": self.field,
            "interval": self.interval,
            "start_time": iso(self.start),
            "end_time": iso(self.end),
            "tier": self.tier,
        }


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


def summary_statement(
    s: InfluxSettings, q: SummaryQuery, machine_ids: list[str], now_ns: int
) -> str:
    """The tier's ended windows; the hour or day in progress is read from raw."""
    src = source(s, s.hourly_rp if q.tier == "hourly" else s.daily_rp)
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
        qf = quote_ident(f)
        statement += (
            f"; SELECT mean({qf}) AS mean, min({qf}) AS min, max({qf}) AS max,"
            f" count({qf}) AS count FROM {source(s, s.raw_rp)}"
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
    with influx_answers("Summary"):
        series = [se for part in await influx.query(statement) for se in part]
    known = set(machine_ids)
    windows: dict[tuple[str, int], dict[str, Any]] = {}
    for se in series:
        mid = se.tags.get("machine_id", "")
        if mid not in known:
            continue
        for row in se.rows():
            _merge(windows, (mid, int(row["time"])), row)
    return windows


async def summary_answer(
    influx: InfluxClient, q: SummaryQuery, machines: list[Machine], total: int
) -> dict[str, Any]:
    """The summary endpoint's body for ``machines`` (the caller's, at the location)."""
    result: dict[str, dict[str, Any]] = {
        m.id: {
            "machine_id": m.id,
            "name": m.name,
            "status": m.status,
            "factory_id": m.factory_id,
            "windows": [],
        }
        for m in machines
    }
    if machines:
        for (mid, ts), w in sorted((await _windows(influx, q, list(result))).items()):
            result[mid]["windows"].append({"timestamp": ns_to_iso(ts), **w})
    for entry in result.values():
        entry["overall"] = overall(entry["windows"])
    return {
        "status": "success",
        "query": q.describe(),
        "machines_total": total,
        "machines": list(result.values()),
    }
