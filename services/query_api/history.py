"""Sensor history from InfluxDB via InfluxQL: raw pages or time-bucketed aggregates."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.query_api.params import INTERVALS, HistoryQuery, iso
from shared.influx import InfluxClient, quote_ident, quote_literal
from shared.lineprotocol import MEASUREMENT
from shared.settings import InfluxSettings


def ns_to_iso(ns: int) -> str:
    seconds, rest = divmod(ns, 1_000_000_000)
    ts = datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=rest // 1000)
    return iso(ts)


def where(machine_id: str, q: HistoryQuery) -> str:
    return (
        f"machine_id = {quote_literal(machine_id)} AND time >= {q.start_ns} AND time < {q.end_ns}"
    )


def source(settings: InfluxSettings, rp: str) -> str:
    return f"{quote_ident(settings.database)}.{quote_ident(rp)}.{quote_ident(MEASUREMENT)}"


TIERS = {"raw": None, "1m": None, "5m": None, "1h": "hourly", "1d": "daily"}


def choose_tier(q: HistoryQuery) -> str:
    """Raw pages and minute buckets read raw data; hourly and daily buckets read their tier,
    unless the caller asked for ``tier=raw`` (e.g. to compare)."""
    if q.tier == "raw":
        return "raw"
    return TIERS[q.interval] or "raw"


def _tier_aggregate(agg: str, field: str) -> str:
    f = field
    if agg == "mean":
        # Exact across windows and series: total sum over total count.
        return f"sum({quote_ident('sum_' + f)}) / sum({quote_ident('count_' + f)})"
    if agg == "count":
        return f"sum({quote_ident('count_' + f)})"
    return f"{agg}({quote_ident(agg + '_' + f)})"


def build_statements(
    settings: InfluxSettings, machine_id: str, q: HistoryQuery, tier: str = "raw"
) -> tuple[str, str]:
    """(page statement, count statement) for the query, read from ``tier``."""
    rp = {"raw": settings.raw_rp, "hourly": settings.hourly_rp, "daily": settings.daily_rp}[tier]
    src = source(settings, rp)
    cond = where(machine_id, q)
    bucket = INTERVALS[q.interval]
    counts = ", ".join(f"count({quote_ident(f)})" for f in q.fields)
    if bucket is None:
        cols = ", ".join(quote_ident(f) for f in q.fields)
        page = (
            f"SELECT {cols} FROM {src} WHERE {cond}"
            f" ORDER BY time ASC LIMIT {q.limit} OFFSET {q.offset}"
        )
        return page, f"SELECT {counts} FROM {src} WHERE {cond}"
    if tier == "raw":
        aggs = ", ".join(f"{q.agg}({quote_ident(f)}) AS {quote_ident(f)}" for f in q.fields)
    else:
        aggs = ", ".join(f"{_tier_aggregate(q.agg, f)} AS {quote_ident(f)}" for f in q.fields)
    grouped = f"SELECT {aggs} FROM {src} WHERE {cond} GROUP BY time({bucket}) fill(none)"
    page = f"{grouped} LIMIT {q.limit} OFFSET {q.offset}"
    return page, f"SELECT {counts} FROM ({grouped})"


async def fetch(
    influx: InfluxClient, machine_id: str, q: HistoryQuery
) -> tuple[list[dict[str, Any]], int]:
    page, count = build_statements(influx.settings, machine_id, q, choose_tier(q))
    results = await influx.query(f"{page}; {count}")
    rows: list[dict[str, Any]] = []
    for series in results[0] if results else []:
        for values in series.values:
            row: dict[str, Any] = {"timestamp": ns_to_iso(int(values[0]))}
            for name, value in zip(series.columns[1:], values[1:], strict=False):
                row[name] = value
            rows.append(row)
    total = 0
    if len(results) > 1:
        for series in results[1]:
            for values in series.values:
                total = max([total, *(int(v) for v in values[1:] if v is not None)])
    return rows, total
