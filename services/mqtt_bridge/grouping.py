"""Grouping MQTT messages: by count and by a few milliseconds, whichever comes first."""

from __future__ import annotations

import asyncio
from typing import TypeVar

T = TypeVar("T")


async def collect(inbox: asyncio.Queue[T], max_items: int, max_wait_s: float) -> list[T]:
    """Wait for one item, then take what arrives within ``max_wait_s``, up to ``max_items``.

    Under load the queue is never empty and a group fills without waiting; when traffic is thin a
    lone message waits at most ``max_wait_s`` for company.
    """
    group = [await inbox.get()]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_wait_s
    while len(group) < max_items:
        try:
            group.append(inbox.get_nowait())
            continue
        except asyncio.QueueEmpty:
            pass
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        try:
            async with asyncio.timeout(remaining):
                group.append(await inbox.get())
        except TimeoutError:
            break
    return group
