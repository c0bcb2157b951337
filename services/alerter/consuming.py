"""How the alerter reads its two queues (readings, alert changes): each is a quorum queue with a
single active consumer, read one message at a time in delivery order, an unreadable message
dead-lettered at once (redelivering it would not make it readable)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

log = logging.getLogger(__name__)
T = TypeVar("T")


async def in_order(
    queue: AbstractQueue, handle: Callable[[AbstractIncomingMessage], Awaitable[None]]
) -> None:
    """Hand every message to ``handle``, the next one only when it is done."""
    async with queue.iterator() as messages:
        async for message in messages:
            await handle(message)


async def decoded(
    message: AbstractIncomingMessage, decode: Callable[[bytes], T], reader: str
) -> T | None:
    """``decode(message.body)``; None once a message it refuses (``ValueError``) is
    dead-lettered."""
    try:
        return decode(message.body)
    except ValueError as e:
        log.warning("%s: unreadable message dead-lettered: %s", reader, e)
        await message.reject(requeue=False)
        return None
