"""The writer against real RabbitMQ and InfluxDB, on a private topology and the test database."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import pytest

from services.writer.settings import Settings, WriterOptions
from services.writer.writer import Writer
from shared import broker
from shared.envelope import Envelope
from shared.influx import InfluxClient, quote_literal
from shared.settings import AmqpSettings, InfluxSettings

pytestmark = pytest.mark.integration


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.05)


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


async def count(influx: InfluxClient, machine: str) -> int:
    [series] = await influx.query(
        "SELECT count(temperature) FROM sensor_readings"
        f" WHERE machine_id = {quote_literal(machine)}"
    )
    return int(series[0].values[0][1]) if series else 0


async def queue_depth(conn: aio_pika.abc.AbstractConnection, name: str) -> int:
    ch = await conn.channel()
    q = await ch.declare_queue(name, passive=True)
    await ch.close()
    return q.declaration_result.message_count or 0


async def start_writer(
    amqp: AmqpSettings,
    influx_settings: InfluxSettings,
    options: WriterOptions | None = None,
    **kw: Any,
) -> tuple[Writer, aio_pika.abc.AbstractRobustConnection, InfluxClient]:
    writer_options = options or WriterOptions(batch_ms=50)
    settings = Settings(amqp=amqp, influx=influx_settings, writer=writer_options, **kw)
    conn = await broker.connect(amqp, "test-writer")
    influx = InfluxClient(influx_settings)
    writer = Writer(settings, conn, influx)
    await writer.start()
    return writer, conn, influx


async def test_batches_are_written_then_acked(
    amqp_cleanup: AmqpSettings, influx_settings: InfluxSettings
) -> None:
    amqp = amqp_cleanup
    checker = InfluxClient(influx_settings)
    await checker.provision()
    writer, conn, influx = await start_writer(
        amqp, influx_settings, WriterOptions(batch_ms=50, batch_points=250)
    )
    publisher = broker.Publisher(amqp, conn)
    await publisher.start()
    machine = str(uuid.uuid4())
    base = time.time_ns()
    await publisher.publish([envelope(machine, base + k * 10**9, 100) for k in range(10)])
    await eventually(lambda: _equals(count(checker, machine), 1000))
    await eventually(lambda: _equals(queue_depth(conn, amqp.queue), 0))
    await writer.stop()
    assert writer.written_total == 1000
    await publisher.close()
    await conn.close()
    await influx.close()
    await checker.close()


async def test_rejected_reading_is_dead_lettered_alone(
    amqp_cleanup: AmqpSettings, influx_settings: InfluxSettings
) -> None:
    amqp = amqp_cleanup
    checker = InfluxClient(influx_settings)
    await checker.provision()
    base = time.time_ns()
    field = f"f{uuid.uuid4().hex[:10]}"
    await checker.write(f'sensor_readings,machine_id=other {field}="text" {base}'.encode())
    writer, conn, influx = await start_writer(amqp, influx_settings)
    publisher = broker.Publisher(amqp, conn)
    await publisher.start()
    machine = str(uuid.uuid4())
    good = envelope(machine, base, 50)
    bad = envelope(machine, base + 10**9, 1, **{field: 1.0})
    bad.readings[0]["ts"] = base + 10**9
    await publisher.publish([good, bad])
    await eventually(lambda: _equals(count(checker, machine), 50))
    await eventually(lambda: _equals(queue_depth(conn, amqp.dead_letter), 1))
    ch = await conn.channel()
    dead_queue = await ch.get_queue(amqp.dead_letter)
    msg = await dead_queue.get()
    dead = Envelope.decode(msg.body)
    assert dead.dead is not None and dead.dead["reason"] == "influx_rejected"
    assert "conflict" in dead.dead["error"]
    assert dead.readings == bad.readings
    await msg.ack()
    await eventually(lambda: _equals(queue_depth(conn, amqp.queue), 0))
    await writer.stop()
    await publisher.close()
    await conn.close()
    await influx.close()
    await checker.close()


async def test_no_ack_while_influx_is_down(
    amqp_cleanup: AmqpSettings, influx_settings: InfluxSettings, refused_port: int
) -> None:
    """InfluxDB unreachable: nothing acked, messages survive the writer; a healthy writer
    later stores every reading exactly once."""
    amqp = amqp_cleanup
    unreachable = InfluxSettings(
        url=f"http://127.0.0.1:{refused_port}", database=influx_settings.database, timeout_s=0.5
    )
    writer, conn, influx = await start_writer(
        amqp, unreachable, WriterOptions(batch_ms=50, retry_max_s=0.2), shutdown_timeout_s=1.0
    )
    publisher = broker.Publisher(amqp, conn)
    await publisher.start()
    machine = str(uuid.uuid4())
    base = time.time_ns()
    await publisher.publish([envelope(machine, base + k * 10**9, 10) for k in range(5)])
    await eventually(lambda: _true(not writer.influx_ok))
    await writer.stop()  # deadline passes while InfluxDB is down: nothing is acked
    await eventually(lambda: _equals(queue_depth(conn, amqp.queue), 5))

    writer2, conn2, influx2 = await start_writer(amqp, influx_settings)
    checker = InfluxClient(influx_settings)
    await eventually(lambda: _equals(count(checker, machine), 50))
    await eventually(lambda: _equals(queue_depth(conn, amqp.queue), 0))
    await writer2.stop()
    assert await count(checker, machine) == 50
    for c in (publisher,):
        await c.close()
    for x in (conn, conn2):
        await x.close()
    for i in (influx, influx2, checker):
        await i.close()


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def _true(value: bool) -> bool:
    return value


async def test_malformed_envelopes_and_readings_are_dead_lettered_with_their_reason(
    amqp_cleanup: AmqpSettings, influx_settings: InfluxSettings
) -> None:
    """A message that is no envelope goes to the dead letters whole; a malformed reading goes
    alone, its neighbours are stored; both are acknowledged (never requeued forever)."""
    amqp = amqp_cleanup
    checker = InfluxClient(influx_settings)
    await checker.provision()
    writer, conn, influx = await start_writer(amqp, influx_settings)
    publisher = broker.Publisher(amqp, conn)
    await publisher.start()
    machine = str(uuid.uuid4())
    mixed = envelope(machine, time.time_ns(), 3)
    mixed.readings[1]["fields"] = ["not", "an", "object"]
    await publisher.publish([mixed])
    ch = await conn.channel()
    exchange = await ch.get_exchange(amqp.exchange)
    await exchange.publish(
        aio_pika.Message(b"not an envelope", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
        routing_key=f"reading.f1.{machine}",
    )
    await eventually(lambda: _equals(count(checker, machine), 2))
    await eventually(lambda: _equals(queue_depth(conn, amqp.dead_letter), 2))
    await eventually(lambda: _equals(queue_depth(conn, amqp.queue), 0))
    dead_queue = await ch.get_queue(amqp.dead_letter)
    letters = []
    while (msg := await dead_queue.get(fail=False)) is not None:
        letters.append(Envelope.decode(msg.body))
        await msg.ack()
    by_reason = {d.dead["reason"]: d for d in letters if d.dead is not None}
    assert set(by_reason) == {"bad_envelope", "malformed"}
    assert by_reason["bad_envelope"].dead is not None
    assert by_reason["bad_envelope"].dead["raw"] == "not an envelope"
    assert by_reason["malformed"].readings == [mixed.readings[1]]
    assert "fields must be an object" in str(by_reason["malformed"].dead)
    await writer.stop()
    await publisher.close()
    await conn.close()
    await influx.close()
    await checker.close()
