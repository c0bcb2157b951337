"""Counting in InfluxDB what the run's readings became.

Only the run's points are looked at: its factory id is used by nobody else. For every machine
the stored timestamps are fetched (paged by time, so no row limit can truncate them) and
matched against the ledger: each reading is found 0, 1 or more times; points that match no
reading of the ledger are *foreign*.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

import aio_pika

from shared.influx import InfluxClient, quote_ident, quote_literal
from shared.settings import AmqpSettings, InfluxSettings
from tools.chaos.ledger import ACCEPTED, DoorLedger

log = logging.getLogger(__name__)

MEASUREMENT = "sensor_readings"
PAGE = 20_000


@dataclass(slots=True)
class Stored:
    copies: dict[str, bytearray]  # door → times each reading was found (capped at 255)
    foreign: Counter[str] = field(default_factory=Counter)  # machine id → unmatched points


class RunPoints:
    """Queries scoped to one run: ``factory_id`` and a lower time bound."""

    def __init__(self, influx: InfluxSettings, factory_id: str, since_ns: int) -> None:
        self.influx = influx
        self.client = InfluxClient(influx)
        self.scope = (
            f"{quote_ident('factory_id')} = {quote_literal(factory_id)} AND time >= {since_ns}"
        )
        self.source = f"{quote_ident(influx.raw_rp)}.{quote_ident(MEASUREMENT)}"

    async def close(self) -> None:
        await self.client.close()

    async def by_machine(self) -> dict[str, int]:
        """Points stored per machine (every series of the machine: copies count)."""
        results = await self.client.query(
            f"SELECT count({quote_ident('temperature')}) FROM {self.source} "
            f"WHERE {self.scope} GROUP BY {quote_ident('machine_id')}"
        )
        out: dict[str, int] = {}
        for series in results[0] if results else []:
            for row in series.rows():
                out[series.tags.get("machine_id", "")] = int(row.get("count") or 0)
        return out

    async def timestamps(self, machine_id: str) -> list[int]:
        """Every stored point of the machine (ns), duplicates across series included."""
        out: list[int] = []
        machine = f"{quote_ident('machine_id')} = {quote_literal(machine_id)}"
        after = ""
        while True:
            results = await self.client.query(
                f"SELECT {quote_ident('temperature')} FROM {self.source} "
                f"WHERE {self.scope} AND {machine}{after} ORDER BY time LIMIT {PAGE}"
            )
            rows = [v[0] for s in (results[0] if results else []) for v in s.values]
            if len(rows) < PAGE:
                return out + rows
            # The page may end inside a group of equal timestamps (copies in several series):
            # keep what lies before the last timestamp, the next page starts with that group.
            keep = [t for t in rows if t < rows[-1]]
            if not keep:
                raise RuntimeError(f"more than {PAGE} points of {machine_id} at one timestamp")
            out.extend(keep)
            after = f" AND time > {keep[-1]}"


async def queue_depth(amqp: AmqpSettings) -> int | None:
    """Messages ready in the writer queue (None when RabbitMQ does not answer)."""
    try:
        connection = await aio_pika.connect(amqp.url.get_secret_value(), timeout=5)
    except (aio_pika.exceptions.AMQPError, OSError, TimeoutError):
        return None
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(amqp.queue, passive=True)
        return int(queue.declaration_result.message_count or 0)


def expected_by_machine(ledgers: list[DoorLedger]) -> Counter[str]:
    out: Counter[str] = Counter()
    for ledger in ledgers:
        for i, status in enumerate(ledger.status):
            if status == ACCEPTED:
                out[ledger.machine_id(i)] += 1
    return out


async def wait_stored(
    points: RunPoints, amqp: AmqpSettings, expected: Counter[str], timeout_s: float
) -> float:
    """Poll until every machine holds at least its accepted readings; returns seconds waited.

    At the deadline it returns anyway: the comparison then reports what is missing.
    """
    started = time.monotonic()
    last_log = 0.0
    total = sum(expected.values())
    while True:
        stored = await points.by_machine()
        short = sum(max(0, n - stored.get(m, 0)) for m, n in expected.items())
        if short == 0:
            return time.monotonic() - started
        now = time.monotonic()
        if now - started > timeout_s:
            log.error("%d of %d accepted readings not stored after %.0f s", short, total, timeout_s)
            return now - started
        if now - last_log > 10:
            last_log = now
            log.info(
                "draining: %d of %d accepted readings stored, writer queue %s",
                total - short,
                total,
                await queue_depth(amqp),
            )
        await asyncio.sleep(1.0)  # InfluxDB has no change notification: poll


async def wait_drained(amqp: AmqpSettings, timeout_s: float) -> bool:
    """Poll until the writer queue has no ready message (other traffic may keep it busy)."""
    deadline = time.monotonic() + timeout_s
    while (depth := await queue_depth(amqp)) != 0:
        if time.monotonic() > deadline:
            log.warning("writer queue still holds %s messages; counting anyway", depth)
            return False
        await asyncio.sleep(1.0)  # RabbitMQ has no "queue empty" notification: poll
    return True


async def match(points: RunPoints, ledgers: list[DoorLedger]) -> Stored:
    stored = Stored({ledger.door: bytearray(len(ledger)) for ledger in ledgers})
    for machine_id in await points.by_machine():
        found = Counter(await points.timestamps(machine_id))
        for ledger in ledgers:
            ts_us = ledger.ts_us
            copies = stored.copies[ledger.door]
            for i in ledger.readings_of(machine_id):
                n = found.pop(ts_us[i] * 1000, 0)
                copies[i] = min(n, 255)
        if found:
            stored.foreign[machine_id] += sum(found.values())
    return stored
