"""The edge link's acknowledgements against the real RabbitMQ and its MQTT plugin.

Messages are published with the real ``mosquitto_pub`` (QoS 1, PUBACKed once in the test's own
edge queue) and consumed by :class:`EdgeLink`: what a link acknowledged never comes back; what it
held unacknowledged when it died, when its channel closed, or when it released it, is delivered
again. The bookkeeping alone is tests/unit/test_mqtt_ack.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aio_pika
import orjson
import pytest
from aio_pika.abc import AbstractRobustConnection

from services.mqtt_bridge.link import EdgeLink, Inbound
from services.mqtt_bridge.settings import Settings
from shared import edge
from tests.mqtt_fixtures import (
    FACTORY,
    ROOT,
    MqttScope,
    async_wait_until,
    bridge_env,
    mosquitto_pub,
)

pytestmark = pytest.mark.integration

# A bridge's edge side in a process of its own: take every message, acknowledge the first group
# with the link's one multiple-ack, and hold the rest, as a bridge does while the next group is
# being published. ``stop_consuming`` is a round trip on the same channel, so once it returns the
# broker has processed the ack; then it says so and waits to be killed.
HOLDER = """
import asyncio, sys
import aio_pika, orjson
from services.mqtt_bridge.link import EdgeLink
from services.mqtt_bridge.settings import Settings

async def main(total: int, acked: int) -> None:
    settings = Settings()
    connection = await aio_pika.connect_robust(settings.amqp.url.get_secret_value())
    received = []
    taken = asyncio.Event()

    def deliver(message):
        received.append(message)
        if len(received) == total:
            taken.set()

    link = EdgeLink(settings, connection, deliver)
    await link.start()
    await taken.wait()
    assert await link.ack(received[:acked]) == (acked, 0)
    await link.stop_consuming()
    print(orjson.dumps([m.payload.decode() for m in received[:acked]]).decode(), flush=True)
    await asyncio.Event().wait()

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""


def payloads(n: int) -> list[bytes]:
    return [orjson.dumps({"n": i}) for i in range(n)]


@dataclass
class EdgeQueue:
    """The test's edge queue: fill it over MQTT, consume it with edge links, count what waits."""

    settings: Settings
    scope: MqttScope
    connection: AbstractRobustConnection

    async def publish(self, n: int) -> list[bytes]:
        """Declare the queue (as a bridge would), then publish ``n`` messages over MQTT; returns
        their payloads once the edge PUBACKed every one."""
        s = self.settings
        async with await aio_pika.connect(s.amqp.url.get_secret_value()) as conn:
            await edge.declare(await conn.channel(), s.edge, s.amqp, s.mqtt.topics)
        sent = payloads(n)
        await asyncio.to_thread(mosquitto_pub, s.mqtt, self.scope.topic(FACTORY, "m-1"), sent)
        return sent

    async def receive(self, count: int) -> tuple[EdgeLink, list[Inbound]]:
        """A new link (its own channel) once it holds ``count`` messages."""
        received: list[Inbound] = []
        link = EdgeLink(self.settings, self.connection, received.append)
        await link.start()
        await async_wait_until(lambda: len(received) >= count, 15, f"{count} edge messages")
        return link, received

    async def waiting(self) -> int:
        """Messages in the queue not delivered to anyone."""
        async with await aio_pika.connect(self.settings.amqp.url.get_secret_value()) as conn:
            channel = await conn.channel()
            queue = await channel.declare_queue(self.settings.edge.queue, passive=True)
            return queue.declaration_result.message_count or 0


@pytest.fixture
async def edge_queue(
    bridge_settings: Settings, edge_cleanup: None, mqtt_scope: MqttScope
) -> AsyncIterator[EdgeQueue]:
    conn = await aio_pika.connect_robust(bridge_settings.amqp.url.get_secret_value())
    async with conn:
        yield EdgeQueue(bridge_settings, mqtt_scope, conn)


async def test_a_bridge_killed_mid_group_leaves_its_unacked_messages_to_be_redelivered(
    edge_queue: EdgeQueue,
) -> None:
    total, acked = 30, 12
    sent = await edge_queue.publish(total)
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDER,
        str(total),
        str(acked),
        cwd=ROOT,
        env=bridge_env(edge_queue.settings, 0),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stderr is not None
        line = await asyncio.wait_for(holder.stdout.readline(), 30)
        assert line, (await holder.stderr.read()).decode(errors="replace")
        first_group = set(orjson.loads(line))
        assert len(first_group) == acked
    finally:
        with contextlib.suppress(ProcessLookupError):
            holder.kill()  # SIGKILL: no channel close, no cancel, nothing settled
        await holder.wait()

    link, received = await edge_queue.receive(total - acked)
    await link.stop_consuming()  # a round trip: every delivery before it has arrived
    again = {m.payload.decode() for m in received}
    assert len(received) == total - acked
    assert again == {p.decode() for p in sent} - first_group
    assert await link.ack(received) == (total - acked, 0)
    await link.close()
    assert await edge_queue.waiting() == 0


async def test_messages_of_a_closed_channel_are_stale_and_delivered_again(
    edge_queue: EdgeQueue,
) -> None:
    sent = await edge_queue.publish(5)
    old, first = await edge_queue.receive(5)
    await old.close()  # the channel is gone: the broker takes the five back
    assert await old.ack(first) == (0, 5)  # never acked on another channel
    new, second = await edge_queue.receive(5)
    assert sorted(m.payload for m in second) == sorted(sent)
    assert await new.ack(second) == (5, 0)
    await new.stop_consuming()
    await new.close()
    assert await edge_queue.waiting() == 0


async def test_a_released_group_comes_back_and_an_acked_one_does_not(
    edge_queue: EdgeQueue,
) -> None:
    await edge_queue.publish(6)
    link, received = await edge_queue.receive(6)
    assert await link.ack(received[:3]) == (3, 0)
    await link.release(received[3:])
    await async_wait_until(lambda: len(received) >= 9, 15, "the released group redelivered")
    await link.stop_consuming()
    assert len(received) == 9
    assert [m.payload for m in received[6:]] == [m.payload for m in received[3:6]]
    assert await link.ack(received[6:]) == (3, 0)
    await link.close()
    assert await edge_queue.waiting() == 0
