"""The writer in-process for integration tests (real RabbitMQ on a private topology, the test
InfluxDB database): envelopes to feed it, counting what it stored, a running writer with a
publisher, and taking its dead letters."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aio_pika.abc import AbstractConnection, AbstractRobustConnection

from services.writer.batch import reading_line
from services.writer.settings import Settings, WriterOptions
from services.writer.writer import Writer
from shared import broker
from shared.envelope import Envelope
from shared.influx import InfluxClient, quote_literal
from shared.settings import AmqpSettings, InfluxSettings
from tests.polling import equals, eventually


def envelope(machine: str, start_ns: int, n: int, **extra_fields: float) -> Envelope:
    readings: list[dict[str, Any]] = [
        {
            "machine_id": machine,
            "factory_id": "f1",
            "sensor_type": "Temperature",
            "location": "Floor 1",
            "ts": start_ns + i * 1_000_000,
            "fields": {"temperature": 20.0 + i, **extra_fields},
        }
        for i in range(n)
    ]
    return Envelope(source="http", readings=readings, routing_key=f"reading.f1.{machine}")


def with_lines(env: Envelope, request_id: str) -> Envelope:
    """``env`` as the door sends it: its readings rendered as lines, from one request."""
    env.lines = [reading_line(r) for r in env.readings]
    env.request_id = request_id
    env.gateway_id = f"gw-{request_id}"
    return env


async def count(influx: InfluxClient, machine: str) -> int:
    """How many temperatures of ``machine`` InfluxDB holds."""
    [series] = await influx.query(
        "SELECT count(temperature) FROM sensor_readings"
        f" WHERE machine_id = {quote_literal(machine)}"
    )
    return int(series[0].values[0][1]) if series else 0


async def refused_reading(checker: InfluxClient, ts_ns: int, n: int) -> tuple[Envelope, Envelope]:
    """A new machine's ``n`` good readings from ``ts_ns``, and one more a second later that
    InfluxDB refuses: its field is new, and already held as a string (written here)."""
    field = f"f{uuid.uuid4().hex[:10]}"
    await checker.write(f'sensor_readings,machine_id=other {field}="text" {ts_ns}'.encode())
    machine = str(uuid.uuid4())
    return envelope(machine, ts_ns, n), envelope(machine, ts_ns + 10**9, 1, **{field: 1.0})


async def stored(influx_settings: InfluxSettings, machine: str) -> int:
    """:func:`count` on a client of its own."""
    influx = InfluxClient(influx_settings)
    try:
        return await count(influx, machine)
    finally:
        await influx.close()


async def queue_depth(conn: AbstractConnection, name: str) -> int:
    ch = await conn.channel()
    q = await ch.declare_queue(name, passive=True)
    await ch.close()
    return q.declaration_result.message_count or 0


async def start_writer(
    amqp: AmqpSettings,
    influx_settings: InfluxSettings,
    options: WriterOptions | None = None,
    **kw: Any,
) -> tuple[Writer, AbstractRobustConnection, InfluxClient]:
    writer_options = options or WriterOptions(batch_ms=50)
    settings = Settings(amqp=amqp, influx=influx_settings, writer=writer_options, **kw)
    conn = await broker.connect(amqp, "test-writer")
    influx = InfluxClient(influx_settings)
    writer = Writer(settings, conn, influx)
    await writer.start()
    return writer, conn, influx


@dataclass
class WriterRun:
    writer: Writer
    conn: AbstractRobustConnection  # the writer's, the publisher's too
    publisher: broker.Publisher
    checker: InfluxClient  # to read back what InfluxDB stored


@asynccontextmanager
async def running_writer(
    amqp: AmqpSettings, influx_settings: InfluxSettings, options: WriterOptions | None = None
) -> AsyncIterator[WriterRun]:
    """A running writer on the test topology, a publisher, and a client to check InfluxDB;
    on the way out the writer queue must drain, then everything is stopped and closed."""
    checker = InfluxClient(influx_settings)
    await checker.provision()
    writer, conn, influx = await start_writer(amqp, influx_settings, options)
    publisher = broker.Publisher(amqp, conn)
    await publisher.start()
    try:
        yield WriterRun(writer, conn, publisher, checker)
        await eventually(lambda: equals(queue_depth(conn, amqp.queue), 0))
    finally:
        await writer.stop()
        await publisher.close()
        await conn.close()
        await influx.close()
        await checker.close()


async def dead_letters(amqp: AmqpSettings, n: int) -> list[Envelope]:
    """The ``n`` dead letters of the topology once they are all there, taken off the queue."""
    conn = await broker.connect(amqp, "test-dead-letters")
    try:
        await eventually(lambda: equals(queue_depth(conn, amqp.dead_letter), n))
        queue = await (await conn.channel()).get_queue(amqp.dead_letter)
        out = []
        while (msg := await queue.get(fail=False)) is not None:
            out.append(Envelope.decode(msg.body))
            await msg.ack()
        return out
    finally:
        await conn.close()
