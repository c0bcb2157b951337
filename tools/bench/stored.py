"""Knowing when readings are stored: the writers' counters (cheap, polled often) and InfluxDB
itself (the truth, asked once at the end and for the benchmark's own factory only)."""

from __future__ import annotations

import asyncio
import time

import httpx

from shared.influx import InfluxClient, quote_ident, quote_literal
from shared.settings import InfluxSettings
from tools.bench.stack import instances

WRITTEN = b"millrace_writer_readings_written_total "
POLL_S = 0.1


async def writers_written(client: httpx.AsyncClient) -> int:
    """Readings stored so far by every writer instance (their Prometheus counters)."""
    total = 0
    for inst in instances():
        if inst.service != "writer":
            continue
        resp = await client.get(f"http://127.0.0.1:{inst.port}/metrics")
        for line in resp.content.splitlines():
            if line.startswith(WRITTEN):
                total += int(float(line[len(WRITTEN) :]))
    return total


async def count_stored(influx: InfluxSettings, machines: list[str], since_ns: int) -> int:
    """Readings of ``machines`` stored in the raw tier since ``since_ns`` (by timestamp).

    By machine, not by factory: the door stores a reading under its machine's registered
    factory whatever the body says, and the benchmark's machines are its own.
    """
    statement = (
        f"SELECT count({quote_ident('temperature')}) FROM "
        f"{quote_ident(influx.raw_rp)}.{quote_ident('sensor_readings')} "
        f"WHERE ({_any_machine(machines)}) AND time >= {since_ns}"
    )
    client = InfluxClient(influx)
    try:
        [series] = await client.query(statement)
    finally:
        await client.close()
    counts = [row.get("count") for s in series for row in s.rows()]
    return int(counts[0] or 0) if counts else 0


def _any_machine(machines: list[str]) -> str:
    return " OR ".join(f"{quote_ident('machine_id')} = {quote_literal(m)}" for m in machines)


async def wait_stored(
    expected: int,
    baseline: int,
    machines: list[str],
    since_ns: int,
    timeout_s: float,
) -> tuple[float, int]:
    """Wait until the writers stored ``expected`` readings more than ``baseline``, then check
    InfluxDB. Returns (wall time the last one was seen stored, readings of ``machines`` stored).

    The writers' counters are polled every 100 ms: each poll renders a writer's whole /metrics
    page, and at every 20 ms that was ~9 % of a writer's CPU (py-spy) taken from the load being
    measured; 100 ms is under 0.5 % of a throughput run. InfluxDB's count is asked when they say
    done — and then again until it agrees, or the deadline passes.
    """
    deadline = time.monotonic() + timeout_s
    done_at = 0.0
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < deadline:
            written = await writers_written(client) - baseline
            if written >= expected:
                done_at = time.time()
                break
            await asyncio.sleep(POLL_S)  # counters have no change notification
    influx = InfluxSettings()
    stored = 0
    while True:
        stored = await count_stored(influx, machines, since_ns)
        if stored >= expected or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.2)
        done_at = time.time()
    return done_at, stored


async def drop_readings(factories: list[str], machines: list[str]) -> None:
    """Remove the benchmark's readings (every tier) once they are written: those of its own
    factories (the freshness floor's, written straight to InfluxDB) and of its own machines.

    Left in place they would make every later rollup round of the writers re-aggregate them:
    the hourly tier is recomputed from all raw points of the touched hour.
    """
    if not factories and not machines:
        return
    client = InfluxClient(InfluxSettings())
    try:
        by_factory = [f"{quote_ident('factory_id')} = {quote_literal(f)}" for f in factories]
        cond = " OR ".join([*by_factory, *([_any_machine(machines)] if machines else [])])
        await client.query(
            f"DROP SERIES FROM {quote_ident('sensor_readings')} WHERE {cond}", write=True
        )
    finally:
        await client.close()
