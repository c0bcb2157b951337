"""History from the rollup tier vs aggregated from raw, in the same run.

30 days of one machine at one reading per 10 s (259,200 readings; ``--step-s 1``: 2.6 M) are
written to InfluxDB, the tiers are built by the writer's rollup code, then the query API
(in-process, cache off, real token verification, real PostgreSQL and InfluxDB) answers the
30-day hourly history N times from each source. Prints p50/p95 and the speed-up.

    python -m tools.bench_history [--runs 50] [--step-s 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import httpx

from services.query_api.app import create_app
from services.query_api.settings import QueryOptions, Settings
from services.writer.batch import reading_line
from services.writer.rollup import DAY_NS, Rollup
from shared.influx import InfluxClient
from shared.readings import BUILTIN_FIELDS
from shared.timefmt import ns_to_iso
from tools.common.stats import percentile
from tools.common.tokens import LocalTokens

STEP_S = 10
DAYS = 30


async def seed(influx: InfluxClient, machine: str, start: int, step_s: float) -> int:
    n = int(DAYS * 86_400 / step_s)
    batch: list[str] = []
    for i in range(n):
        batch.append(
            reading_line(
                {
                    "machine_id": machine,
                    "factory_id": "bench",
                    "sensor_type": "Temperature",
                    "location": "Bench",
                    "ts": start + int(i * step_s * 10**9),
                    "fields": {
                        "temperature": 50 + (i % 360) / 10,
                        "pressure": 100.0 + i % 7,
                        "speed": 1200.0 + i % 50,
                    },
                }
            )
        )
        if len(batch) == 20_000:
            await influx.write("\n".join(batch).encode())
            batch.clear()
    if batch:
        await influx.write("\n".join(batch).encode())
    rollup = Rollup(influx, list(BUILTIN_FIELDS), interval_s=60)
    for week in range(start, start + DAYS * DAY_NS, 7 * DAY_NS):  # as the writer's runs do
        await rollup.hourly(week, min(week + 7 * DAY_NS, start + DAYS * DAY_NS), [machine])
    await rollup.daily(start, start + DAYS * DAY_NS, [machine])
    return n


async def main_async(runs: int, step_s: float) -> None:
    # Uncached reads (QUERY_CACHE_TTL_S=0), or the figures would be Redis hits.
    settings = Settings(query=QueryOptions(cache_ttl_s=0))
    # Raw aggregation of dense data can take long: measure it rather than time it out.
    settings.influx.timeout_s = 120.0
    app = create_app(settings)
    async with app.router.lifespan_context(app) as lifespan_state:
        state: dict[str, Any] = dict(lifespan_state or {})
        tokens = LocalTokens()
        state["authorizer"].jwks.load(tokens.jwks())
        influx: InfluxClient = state["influx"]
        await influx.provision()
        repo = state["machines"].repo
        machine = (await repo.create("bench-history", "Bench", "T", "active")).id
        now = time.time_ns()
        start = now - now % DAY_NS - DAYS * DAY_NS
        t0 = time.perf_counter()
        n = await seed(influx, machine, start, step_s)
        print(f"seeded {n} readings and built tiers in {time.perf_counter() - t0:.1f} s")

        transport = httpx.ASGITransport(app=_with_state(app, state))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            params: dict[str, str | int] = {
                "start_time": _iso(start),
                "end_time": _iso(start + DAYS * DAY_NS),
                "interval": "1h",
                "limit": 1000,
            }
            headers = tokens.bearer()
            results: dict[str, list[float]] = {"hourly tier": [], "raw": []}
            rows = {}
            for i in range(runs + 3):
                extras: list[tuple[str, dict[str, str | int]]] = [
                    ("hourly tier", {}),
                    ("raw", {"tier": "raw"}),
                ]
                for label, extra in extras:
                    t = time.perf_counter()
                    resp = await client.get(
                        f"/api/v1/data/machine/{machine}",
                        params={**params, **extra},
                        headers=headers,
                    )
                    elapsed = (time.perf_counter() - t) * 1000
                    resp.raise_for_status()
                    body = resp.json()
                    assert not body.get("cached"), "history cache answered: figures would lie"
                    rows[label] = (len(body["data"]), body["query"]["tier"])
                    if i >= 3:  # warm-up excluded
                        results[label].append(elapsed)
        print(f"\n30-day hourly history of one machine ({DAYS * 24} windows), {runs} runs each")
        print(f"{'source':<14}{'tier':>8}{'rows':>7}{'p50 ms':>10}{'p95 ms':>10}")
        for label, values in results.items():
            print(
                f"{label:<14}{rows[label][1]:>8}{rows[label][0]:>7}"
                f"{statistics.median(values):>10.1f}{percentile(values, 95):>10.1f}"
            )
        speedup = percentile(results["raw"], 95) / percentile(results["hourly tier"], 95)
        print(f"speed-up at p95: {speedup:.1f}x  (target: tier p95 <= 50 ms and >= 10x)")
        await state["machines"].repo.delete(machine)


def _with_state(app: Any, state: dict[str, Any]) -> Any:
    """Hand the lifespan state to each request, as uvicorn does."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = {**scope, "state": dict(state)}
        await app(scope, receive, send)

    return wrapped


def _iso(ns: int) -> str:
    return ns_to_iso(ns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--step-s", type=float, default=STEP_S, help="seconds between readings")
    args = parser.parse_args()
    asyncio.run(main_async(args.runs, args.step_s))


if __name__ == "__main__":
    main()
