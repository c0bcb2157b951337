"""The tests' RabbitMQ queues: a queue's depth, emptying it, deleting a private topology (the
``amqp_settings`` fixture's)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aio_pika
from aio_pika.abc import AbstractQueue

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
