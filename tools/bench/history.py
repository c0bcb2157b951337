"""History queries through the running query API, beside the same InfluxQL sent straight to
InfluxDB (the ceiling: what the API adds is auth, the registry lookup, the cache and JSON).

30 days of one machine at one reading per 10 s are seeded once (``tools.bench_history.seed``:
raw points, then the hourly and daily tiers built by the writer's rollup code) and reused by
later runs. Every request asks for a slightly different window so that no answer comes from the
history cache: the figures are uncached reads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import httpx
from starlette.datastructures import QueryParams

from services.query_api.history import build_statements, choose_tier, tier_window_statements
from services.query_api.params import parse_history
from services.writer.rollup import DAY_NS
from shared.influx import InfluxClient, quote_ident, quote_literal
from shared.readings import BUILTIN_FIELDS
from shared.settings import InfluxSettings, PostgresSettings
from shared.timefmt import iso
from tools.bench.stack import url
from tools.bench_history import DAYS, STEP_S, seed
from tools.common.stats import percentile
from tools.simulator.registry import ensure_machines

FACTORY = "bench-history"


@dataclass(slots=True)
class Dataset:
    machine_id: str
    start: datetime  # first day of the seeded month (UTC midnight)


async def dataset() -> Dataset:
    """The seeded machine; seeds it when its month is not (fully) there yet."""
    [machine] = await ensure_machines(PostgresSettings(), FACTORY, 1)
    now = time.time_ns()
    start_ns = now - now % DAY_NS - DAYS * DAY_NS
    settings = InfluxSettings()
    influx = InfluxClient(settings)
    try:
        [series] = await influx.query(
            f"SELECT count(temperature) FROM {quote_ident(settings.raw_rp)}.sensor_readings "
            f"WHERE machine_id = {quote_literal(machine.id)} AND time >= {start_ns} "
            f"AND time < {start_ns + DAYS * DAY_NS}"
        )
        have = int(series[0].values[0][1]) if series and series[0].values else 0
        if have < DAYS * 86_400 // STEP_S:
            await seed(influx, machine.id, start_ns, STEP_S)
    finally:
        await influx.close()
    return Dataset(machine.id, datetime.fromtimestamp(start_ns / 1e9, UTC))


def _iso(ts: datetime) -> str:
    return iso(ts)


def windows(kind: str, data: Dataset, n: int) -> list[dict[str, str]]:
    """``n`` distinct windows of a kind: 1,000 raw points, 7 days at 1h, 30 days at 1d."""
    out = []
    for k in range(n):
        if kind == "raw":
            start = data.start + timedelta(hours=k * 7 % (24 * 27))
            params = {"interval": "raw", "limit": "1000"}
            end = start + timedelta(days=1)
        elif kind == "7d@1h":
            start = data.start + timedelta(days=k % 20, minutes=k)
            end = start + timedelta(days=7)
            params = {"interval": "1h", "limit": "1000"}
        else:
            start = data.start - timedelta(minutes=k)
            end = start + timedelta(days=30)
            params = {"interval": "1d", "limit": "1000"}
        params |= {"start_time": _iso(start), "end_time": _iso(end)}
        out.append(params)
    return out


@dataclass(slots=True)
class HistoryTimes:
    api_p95_ms: float
    influx_p95_ms: float
    rows: int


async def measure(data: Dataset, token: str, kind: str, n: int) -> HistoryTimes:
    settings = InfluxSettings()
    fields = list(BUILTIN_FIELDS)
    now = datetime.now(UTC)
    api: list[float] = []
    direct: list[float] = []
    rows = 0
    headers = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=30) as client:
        for params in windows(kind, data, n):
            t = time.perf_counter()
            resp = await client.get(
                f"{url('query_api')}/api/v1/data/machine/{data.machine_id}",
                params=params,
                headers=headers,
            )
            api.append((time.perf_counter() - t) * 1000)
            resp.raise_for_status()
            rows = len(resp.json()["data"])

            q = parse_history(QueryParams(urlencode(params)), fields, 86_400, now)
            # The statement the API runs for this window: a tier's stored windows read as they
            # are (every window here has ended), raw pages and buckets aggregated; the count
            # only when a page is full.
            tier = choose_tier(q)
            if tier == "raw":
                page, count = build_statements(settings, data.machine_id, q, tier)
            else:
                page, count = tier_window_statements(settings, data.machine_id, q, tier)
            statement = f"{page}; {count}" if rows >= q.limit else page
            t = time.perf_counter()
            resp = await client.get(
                f"{settings.url}/query",
                params={"db": settings.database, "q": statement, "epoch": "ns"},
            )
            direct.append((time.perf_counter() - t) * 1000)
            resp.raise_for_status()
    return HistoryTimes(percentile(api, 95), percentile(direct, 95), rows)
