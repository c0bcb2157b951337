"""Watching readings arrive: in RabbitMQ (a private queue on the exchange) or in InfluxDB.

Used by the simulator's ``--measure`` options, by tests and by benchmarks: it answers "how many
of the readings I sent have arrived, how many distinct, and how fast".
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection

from shared.envelope import Envelope
from shared.influx import InfluxClient, quote_ident, quote_literal
from shared.settings import AmqpSettings, InfluxSettings


@dataclass(slots=True)
class Arrivals:
    readings: list[dict[str, Any]] = field(default_factory=list)
    envelopes: list[Envelope] = field(default_factory=list)
    first_at: float | None = None
    last_at: float | None = None
    keys: set[tuple[str, int]] = field(default_factory=set)  # (machine_id, ts) seen

    def add(self, envelope: Envelope, now: float) -> None:
        self.envelopes.append(envelope)
        self.readings.extend(envelope.readings)
        self.keys.update((r["machine_id"], r["ts"]) for r in envelope.readings)
        self.first_at = self.first_at or now
        self.last_at = now

    def distinct(self) -> int:
        return len(self.keys)

    def duplicates(self) -> int:
        return len(self.readings) - self.distinct()

    def by_reason(self) -> Counter[str]:
        return Counter((e.dead or {}).get("reason", "") for e in self.envelopes)


class AmqpTap:
    """A private queue bound to an exchange; every envelope routed to it is kept.

    ``durable=True`` makes the queue survive a RabbitMQ restart (for tests that stop the
    broker); it is deleted by :meth:`close` either way.
    """

    def __init__(
        self,
        amqp: AmqpSettings,
        *,
        exchange: str,
        binding: str = "#",
        durable: bool = False,
        name: str | None = None,
    ) -> None:
        self.amqp = amqp
        self.exchange = exchange
        self.binding = binding
        self.durable = durable
        self.name = name or f"tap-{exchange}-{time.time_ns():x}"
        self.arrivals = Arrivals()
        self._changed = asyncio.Event()
        self._connection: AbstractRobustConnection | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None

    async def start(self) -> AmqpTap:
        self._connection = await aio_pika.connect_robust(self.amqp.url.get_secret_value())
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=1000)
        exchange = await channel.get_exchange(self.exchange, ensure=True)
        self._queue = await channel.declare_queue(
            self.name,
            durable=self.durable,
            exclusive=not self.durable,
            auto_delete=not self.durable,
        )
        await self._queue.bind(exchange, routing_key=self.binding)
        self._consumer_tag = await self._queue.consume(self._on_message)
        return self

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        envelope = Envelope.decode(message.body, message.routing_key or "")
        self.arrivals.add(envelope, time.monotonic())
        await message.ack()
        self._changed.set()

    async def wait_for(self, predicate: Any, timeout_s: float) -> bool:
        """Until ``predicate(arrivals)`` holds; False at the deadline."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._changed.clear()
            if predicate(self.arrivals):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                async with asyncio.timeout(min(remaining, 1.0)):
                    await self._changed.wait()
            except TimeoutError:
                pass

    async def close(self) -> None:
        if self._connection is None:
            return
        if self._queue is not None and not self._connection.is_closed:
            with contextlib.suppress(aio_pika.exceptions.AMQPError, RuntimeError):
                if self._consumer_tag is not None:
                    await self._queue.cancel(self._consumer_tag)
                await self._queue.delete(if_unused=False, if_empty=False)
        await self._connection.close()

    async def __aenter__(self) -> AmqpTap:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def count_in_influx(
    influx: InfluxSettings, factory_id: str, since_ns: int, measurement: str = "sensor_readings"
) -> int:
    """Readings of a factory stored in the raw tier since ``since_ns`` (by their timestamp)."""
    client = InfluxClient(influx)
    try:
        statement = (
            f"SELECT count({quote_ident('temperature')}) FROM "
            f"{quote_ident(influx.raw_rp)}.{quote_ident(measurement)} "
            f"WHERE {quote_ident('factory_id')} = {quote_literal(factory_id)} "
            f"AND time >= {since_ns}"
        )
        results = await client.query(statement)
    finally:
        await client.close()
    for series in results[0] if results else []:
        for row in series.rows():
            return int(row.get("count") or 0)
    return 0
