"""The door's rendered lines and group commit, end to end through real RabbitMQ and InfluxDB:
concurrent callers share one AMQP message, the writer stores the door's lines as they are,
messages without lines (the older format) are still stored. (A reading InfluxDB refuses in a
shared message: test_writer.py, with the same case in a message of its own.)"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from shared import broker
from shared.envelope import Envelope
from shared.influx import quote_literal
from shared.settings import AmqpSettings, InfluxSettings
from tests.polling import equals, eventually
from tests.writer_fixtures import (
    count,
    envelope,
    queue_depth,
    running_writer,
    with_lines,
)

pytestmark = pytest.mark.integration


async def test_concurrent_callers_share_one_message_and_each_is_answered(
    amqp_cleanup: AmqpSettings, influx_settings: InfluxSettings
) -> None:
    amqp = amqp_cleanup
    machine = str(uuid.uuid4())
    base = time.time_ns()
    callers = [with_lines(envelope(machine, base + k * 10**9, 10), f"r{k}") for k in range(20)]
    conn = await broker.connect(amqp, "test-group-commit")
    try:
        publisher = broker.Publisher(amqp, conn)
        await publisher.start()
        await asyncio.gather(*(publisher.publish([e], merge_up_to=1000) for e in callers))
        await publisher.close()
        # Every caller returned, so every reading was confirmed; they all travelled in one message.
        assert await queue_depth(conn, amqp.queue) == 1
        ch = await conn.channel()
        message = await (await ch.get_queue(amqp.queue)).get()
        shared = Envelope.decode(message.body, message.routing_key or "")
        await message.nack(requeue=True)
    finally:
        await conn.close()
    assert len(shared.readings) == 200 and shared.lines is not None and len(shared.lines) == 200
    assert shared.parts is not None and [p[2] for p in shared.parts] == [f"r{k}" for k in range(20)]
    assert shared.origin(35) == ("gw-r3", "r3")

    async with running_writer(amqp, influx_settings) as run:  # drains the queue on the way out
        await eventually(lambda: equals(count(run.checker, machine), 200))


async def test_the_door_lines_are_written_and_old_messages_still_stored(
    amqp_cleanup: AmqpSettings, influx_settings: InfluxSettings
) -> None:
    """The stored value is the one in the message's line (the writer does not rebuild lines it
    was given); a message of the older format, without lines, is stored from its readings."""
    async with running_writer(amqp_cleanup, influx_settings) as run:
        new_machine, old_machine = str(uuid.uuid4()), str(uuid.uuid4())
        base = time.time_ns()
        new = with_lines(envelope(new_machine, base, 5), "new")
        assert new.lines is not None
        new.lines[0] = new.lines[0].replace("temperature=20.0", "temperature=77.5")
        old = envelope(old_machine, base, 7)
        await run.publisher.publish([new, old])
        await eventually(lambda: equals(count(run.checker, new_machine), 5))
        await eventually(lambda: equals(count(run.checker, old_machine), 7))
        [series] = await run.checker.query(
            "SELECT max(temperature) FROM sensor_readings"
            f" WHERE machine_id = {quote_literal(new_machine)}"
        )
        assert series[0].values[0][1] == 77.5
