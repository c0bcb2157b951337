"""Sensor history from InfluxDB via InfluxQL: raw pages or time-bucketed aggregates."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import orjson

from services.query_api.params import INTERVALS, MAX_LIMIT, HistoryQuery
from shared.errors import InfluxQueryError, InfluxUnavailable
from shared.http import ApiError
from shared.influx import InfluxClient, quote_ident, quote_literal
from shared.keys import history_key, version_key
from shared.lineprotocol import MEASUREMENT
from shared.redisguard import REDIS_ERRORS, RedisGuard
from shared.settings import InfluxSettings
from shared.timefmt import from_ns, ns_to_iso

log = logging.getLogger(__name__)


@contextmanager
def influx_answers(what: str) -> Iterator[None]:
    """InfluxDB's failures as answers: 503 + Retry-After while it does not answer, 500 when it
    refused the statement (a bug of ours, logged)."""
    try:
        yield
    except InfluxUnavailable as e:
        log.warning("%s query failed: %s", what, e, extra={"dependency": "influxdb"})
        raise ApiError(
            503, "Time-series store unavailable, retry later", headers={"Retry-After": "5"}
        ) from e
    except InfluxQueryError as e:
        log.error("%s query rejected: %s", what, e)
        raise ApiError(500, f"{what} query failed") from e


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


def _tier_columns(agg: str, field: str) -> tuple[str, ...]:
    """Tier fields a window's answer is made of (mean: exact from sum and count)."""
    return ("sum_" + field, "count_" + field) if agg == "mean" else (agg + "_" + field,)


def tier_window_statements(
    settings: InfluxSettings, machine_id: str, q: HistoryQuery, tier: str
) -> tuple[str, str]:
    """(page, count) reading a tier's stored windows as they are, one series per tag set.

    Each hourly or daily point already is the window asked for, so nothing needs aggregating
    when the machine has one series (one factory, sensor type and location) in the range: that
    plain read is several times cheaper in InfluxDB than ``GROUP BY time`` over the same points.
    """
    rp = {"hourly": settings.hourly_rp, "daily": settings.daily_rp}[tier]
    src = source(settings, rp)
    cond = where(machine_id, q)
    cols = ", ".join(quote_ident(c) for f in q.fields for c in _tier_columns(q.agg, f))
    counts = ", ".join(f"count({quote_ident('count_' + f)})" for f in q.fields)
    return (
        f"SELECT {cols} FROM {src} WHERE {cond} GROUP BY * LIMIT {q.limit} OFFSET {q.offset}",
        f"SELECT {counts} FROM {src} WHERE {cond} GROUP BY *",
    )


def _window_value(agg: str, stored: list[Any]) -> Any:
    """A window's answer from its tier columns (``_tier_columns`` order)."""
    if agg == "mean":
        total, count = stored
        return total / count if count and total is not None else None
    [value] = stored
    return int(value) if agg == "count" and value is not None else value


def _total_from_page(q: HistoryQuery, returned: int) -> int | None:
    """The total when the page tells it: a page shorter than the limit ends the data (unless it
    is empty past the start, when the data may end anywhere before the offset)."""
    if returned < q.limit and (returned or q.offset == 0):
        return q.offset + returned
    return None


def _max_count(series_list: list[Any]) -> int:
    total = 0
    for series in series_list:
        for values in series.values:
            total = max([total, *(int(v) for v in values[1:] if v is not None)])
    return total


async def _fetch_tier_windows(
    influx: InfluxClient, machine_id: str, q: HistoryQuery, tier: str
) -> tuple[list[dict[str, Any]], int] | None:
    """The tier's windows read as stored, or None when the machine has several series in the
    range (their windows must then be combined by the aggregating query)."""
    page, count = tier_window_statements(influx.settings, machine_id, q, tier)
    [page_series] = await influx.query(page)
    if len(page_series) > 1:
        return None
    rows: list[dict[str, Any]] = []
    for series in page_series:
        at = {c: i for i, c in enumerate(series.columns)}
        picks = [(f, [at.get(c) for c in _tier_columns(q.agg, f)]) for f in q.fields]
        for values in series.values:
            row: dict[str, Any] = {"timestamp": ns_to_iso(int(values[0]))}
            present = False
            for f, where_ in picks:
                value = _window_value(q.agg, [None if i is None else values[i] for i in where_])
                row[f] = value
                present = present or value is not None
            if present:  # as fill(none) does
                rows.append(row)
    returned = sum(len(series.values) for series in page_series)
    total = _total_from_page(q, returned)
    if total is not None:
        return rows, total
    [count_series] = await influx.query(count)
    if len(count_series) > 1:
        return None
    return rows, _max_count(count_series)


async def _fetch_grouped(
    influx: InfluxClient, machine_id: str, q: HistoryQuery, tier: str
) -> tuple[list[dict[str, Any]], int]:
    """A page of ``q`` from ``tier`` with the aggregating query (raw, or a tier's windows
    combined across several series), and the total."""
    page, count = build_statements(influx.settings, machine_id, q, tier)
    [page_series] = await influx.query(page)
    rows: list[dict[str, Any]] = []
    for series in page_series:
        for values in series.values:
            row: dict[str, Any] = {"timestamp": ns_to_iso(int(values[0]))}
            for name, value in zip(series.columns[1:], values[1:], strict=False):
                row[name] = value
            rows.append(row)
    total = _total_from_page(q, len(rows))
    if total is not None:
        return rows, total
    return rows, _max_count((await influx.query(count))[0])


async def _fetch_tier(
    influx: InfluxClient, machine_id: str, q: HistoryQuery, tier: str
) -> tuple[list[dict[str, Any]], int]:
    windows = await _fetch_tier_windows(influx, machine_id, q, tier)
    return windows if windows is not None else await _fetch_grouped(influx, machine_id, q, tier)


TIER_WIDTH_NS = {"hourly": 3600 * 10**9, "daily": 86_400 * 10**9}


async def fetch(
    influx: InfluxClient, machine_id: str, q: HistoryQuery, now_ns: int | None = None
) -> tuple[list[dict[str, Any]], int]:
    """(rows of the page, total records). The total is counted by a second query only when the
    page cannot tell it: a page shorter than the limit ends the data. Counting aggregated
    windows takes a subquery that costs as much as the page again (raw: ~450 ms more for a
    30-day hourly history of one reading per 10 s).

    A tier holds the windows that have ended; the window still in progress (the current hour
    or day) is aggregated from raw and follows them, so an hourly or daily history is as fresh
    as raw data."""
    tier = choose_tier(q)
    if tier == "raw":
        return await _fetch_grouped(influx, machine_id, q, "raw")
    now_ns = time.time_ns() if now_ns is None else now_ns
    boundary = now_ns - now_ns % TIER_WIDTH_NS[tier]
    if q.end_ns <= boundary:
        return await _fetch_tier(influx, machine_id, q, tier)
    rows: list[dict[str, Any]] = []
    ended = 0
    if q.start_ns < boundary:
        rows, ended = await _fetch_tier(influx, machine_id, replace(q, end=from_ns(boundary)), tier)
    # The windows in progress (one, or two near the end of a window: readings may be up to
    # INGEST_MAX_FUTURE_SKEW_S ahead) follow the ended ones, in the page and in the total.
    current = replace(q, start=from_ns(max(q.start_ns, boundary)), limit=MAX_LIMIT, offset=0)
    in_progress, _ = await _fetch_grouped(influx, machine_id, current, "raw")
    skip = max(0, q.offset - ended)
    rows += in_progress[skip : skip + q.limit - len(rows)]
    return rows, ended + len(in_progress)


class HistoryCache:
    """Short-lived cache of history answers in Redis, keyed by the machine's data version.

    The writer increments the machine's version key (``shared.keys``) after every batch it
    stores for that machine, and the version is part of the key: new raw data is never hidden
    by the cache. A tier window re-aggregated after late data changes without a new version
    (the rollup runs after the batch); the TTL bounds how long such an answer can be reused.
    Any Redis failure means "no cache", never a failed request.
    """

    def __init__(self, redis: RedisGuard, ttl_s: int) -> None:
        self.redis = redis
        self.ttl_s = ttl_s

    async def key(self, machine_id: str, query_key: str) -> str | None:
        if self.ttl_s <= 0 or not self.redis.usable():
            return None
        try:
            version = await self.redis.client.get(version_key(machine_id))
        except REDIS_ERRORS as e:
            self.redis.failed("history cache", e)
            return None
        digest = hashlib.blake2b(query_key.encode(), digest_size=12).hexdigest()
        v = version.decode() if isinstance(version, bytes) else str(version or 0)
        return history_key(machine_id, v, digest)

    async def get(self, key: str | None) -> Any | None:
        if key is None or not self.redis.usable():
            return None
        try:
            raw = await self.redis.client.get(key)
        except REDIS_ERRORS as e:
            self.redis.failed("history cache", e)
            return None
        self.redis.ok()
        return orjson.loads(raw) if raw else None

    async def put(self, key: str | None, value: Any) -> None:
        if key is None or not self.redis.usable():
            return
        try:
            await self.redis.client.set(key, orjson.dumps(value), ex=self.ttl_s)
        except REDIS_ERRORS as e:
            self.redis.failed("history cache", e)
