"""The tests' RabbitMQ queues: publishing envelopes, a queue's depth, taking or emptying what
waits in it, deleting a private topology (the ``amqp_settings`` fixture's)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aio_pika
from aio_pika.abc import AbstractQueue

from shared import broker
from shared.envelope import Envelope
from shared.settings import AmqpSettings

T = TypeVar("T")


async def _on_queue(amqp: AmqpSettings, use: Callable[[AbstractQueue], Awaitable[T]]) -> T:
    async with await aio_pika.connect(amqp.url.get_secret_value()) as conn:
        channel = await conn.channel()
        return await use(await channel.declare_queue(amqp.queue, passive=True))


def queue_depth(amqp: AmqpSettings) -> int:
    """How many messages wait in ``amqp.queue``."""

    async def count(queue: AbstractQueue) -> int:
        return queue.declaration_result.message_count or 0

    return asyncio.run(_on_queue(amqp, count))


def take_messages(amqp: AmqpSettings) -> list[Envelope]:
    """Every envelope waiting in ``amqp.queue``, consumed."""

    async def take(queue: AbstractQueue) -> list[Envelope]:
        out = []
        while (msg := await queue.get(no_ack=True, fail=False)) is not None:
            out.append(Envelope.decode(msg.body, msg.routing_key or ""))
        return out

    return asyncio.run(_on_queue(amqp, take))


async def publish(amqp: AmqpSettings, envelopes: list[Envelope], *, dead: bool = False) -> None:
    """``envelopes`` published (confirmed) on the topology, or as dead letters if ``dead``."""
    async with await broker.connect(amqp, "tests") as conn:
        publisher = broker.Publisher(amqp, conn)
        await publisher.start()
        await (publisher.dead_letter if dead else publisher.publish)(envelopes)
        await publisher.close()


def purge_queue(amqp: AmqpSettings) -> None:
    """Empty ``amqp.queue`` (as writers catching up would)."""

    async def purge(queue: AbstractQueue) -> None:
        await queue.purge()

    asyncio.run(_on_queue(amqp, purge))


async def delete_topology(amqp: AmqpSettings) -> None:
    """Delete a private topology: its queues, then its exchanges."""
    async with await aio_pika.connect(amqp.url.get_secret_value()) as conn:
        channel = await conn.channel()
        for queue in (amqp.queue, amqp.dead_letter):
            await channel.queue_delete(queue)
        for exchange in (amqp.exchange, amqp.dead_letter):
            await channel.exchange_delete(exchange)
