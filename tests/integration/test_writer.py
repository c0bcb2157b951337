"""The writer against real RabbitMQ and InfluxDB, on a private topology and the test database."""

from __future__ import annotations

import asyncio
import time
import uuid

import aio_pika
import pytest

from services.writer.settings import WriterOptions
from shared import broker
from shared.settings import AmqpSettings, InfluxSettings
from tests.polling import equals, eventually
from tests.writer_fixtures import (
    count,
    dead_letters,
    envelope,
    queue_depth,
    refused_reading,
    running_writer,
    start_writer,
    stored,
    with_lines,
)

pytestmark = pytest.mark.integration


async def test_batches_are_written_then_acked(
    amqp_cleanup: AmqpSettings, influx_settings: InfluxSettings
) -> None:
    options = WriterOptions(batch_ms=50, batch_points=250)
    async with running_writer(amqp_cleanup, influx_settings, options) as run:
        machine = str(uuid.uuid4())
        base = time.time_ns()
        await run.publisher.publish([envelope(machine, base + k * 10**9, 100) for k in range(10)])
        await eventually(lambda: equals(count(run.checker, machine), 1000))
    assert run.writer.written_total == 1000


@pytest.mark.parametrize("shared", [False, True], ids=["own-message", "shared-message"])
async def test_refused_reading_is_dead_lettered_alone_with_its_request(
    amqp_cleanup: AmqpSettings, influx_settings: InfluxSettings, shared: bool
) -> None:
    """A reading InfluxDB refuses is dead-lettered alone and the rest stored, whether its
    request had a message of its own or group commit shared one with another request (the
    door's rendered lines): the letter keeps the request it came from."""
    base = time.time_ns()
    async with running_writer(amqp_cleanup, influx_settings) as run:
        good, bad = await refused_reading(run.checker, base, 50)
        machine = good.readings[0]["machine_id"]
        if shared:
            good, bad = with_lines(good, "good"), with_lines(bad, "bad")
            await asyncio.gather(
                run.publisher.publish([good], merge_up_to=1000),
                run.publisher.publish([bad], merge_up_to=1000),
            )
        else:
            await run.publisher.publish([good, bad])
        await eventually(lambda: equals(count(run.checker, machine), 50))
        [dead] = await dead_letters(amqp_cleanup, 1)
        assert dead.dead is not None and dead.dead["reason"] == "influx_rejected"
        assert "conflict" in dead.dead["error"]
        assert dead.readings == bad.readings
        assert (dead.gateway_id, dead.request_id) == (bad.gateway_id, bad.request_id)
        if shared:
            assert (dead.gateway_id, dead.request_id) == ("gw-bad", "bad")


async def test_no_ack_while_influx_is_down(
    amqp_cleanup: AmqpSettings, influx_settings: InfluxSettings, refused_port: int
) -> None:
    """InfluxDB unreachable: nothing acked, messages survive the writer; a healthy writer
    later stores every reading exactly once."""
    amqp = amqp_cleanup
    unreachable = InfluxSettings(
        url=f"http://127.0.0.1:{refused_port}", database=influx_settings.database, timeout_s=0.5
    )
    machine = str(uuid.uuid4())
    base = time.time_ns()
    writer, conn, influx = await start_writer(
        amqp, unreachable, WriterOptions(batch_ms=50, retry_max_s=0.2), shutdown_timeout_s=1.0
    )
    try:
        publisher = broker.Publisher(amqp, conn)
        await publisher.start()
        await publisher.publish([envelope(machine, base + k * 10**9, 10) for k in range(5)])
        await publisher.close()
        await eventually(lambda: not writer.influx_ok)
        await writer.stop()  # deadline passes while InfluxDB is down: nothing is acked
        await eventually(lambda: equals(queue_depth(conn, amqp.queue), 5))
    finally:
        await conn.close()
        await influx.close()

    async with running_writer(amqp, influx_settings) as run:
        await eventually(lambda: equals(count(run.checker, machine), 50))
    assert await stored(influx_settings, machine) == 50  # still, once the writer stopped


async def test_malformed_envelopes_and_readings_are_dead_lettered_with_their_reason(
    amqp_cleanup: AmqpSettings, influx_settings: InfluxSettings
) -> None:
    """A message that is no envelope goes to the dead letters whole; a malformed reading goes
    alone, its neighbours are stored; both are acknowledged (never requeued forever)."""
    amqp = amqp_cleanup
    async with running_writer(amqp, influx_settings) as run:
        machine = str(uuid.uuid4())
        mixed = envelope(machine, time.time_ns(), 3)
        mixed.readings[1]["fields"] = ["not", "an", "object"]
        await run.publisher.publish([mixed])
        ch = await run.conn.channel()
        exchange = await ch.get_exchange(amqp.exchange)
        await exchange.publish(
            aio_pika.Message(b"not an envelope", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=f"reading.f1.{machine}",
        )
        await eventually(lambda: equals(count(run.checker, machine), 2))
        await eventually(lambda: equals(queue_depth(run.conn, amqp.queue), 0))
        letters = await dead_letters(amqp, 2)
    by_reason = {d.dead["reason"]: d for d in letters if d.dead is not None}
    assert set(by_reason) == {"bad_envelope", "malformed"}
    assert by_reason["bad_envelope"].dead is not None
    assert by_reason["bad_envelope"].dead["raw"] == "not an envelope"
    assert by_reason["malformed"].readings == [mixed.readings[1]]
    assert "fields must be an object" in str(by_reason["malformed"].dead)
