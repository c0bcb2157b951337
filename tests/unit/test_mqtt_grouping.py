"""Groups close by count or after a few milliseconds, whichever comes first."""

from __future__ import annotations

import asyncio
import time

from services.mqtt_bridge.grouping import collect


async def test_full_queue_gives_full_groups_without_waiting() -> None:
    inbox: asyncio.Queue[int] = asyncio.Queue()
    for i in range(2500):
        inbox.put_nowait(i)
    started = time.monotonic()
    first = await collect(inbox, 1000, max_wait_s=5)
    second = await collect(inbox, 1000, max_wait_s=5)
    assert first == list(range(1000))
    assert second == list(range(1000, 2000))
    assert time.monotonic() - started < 1  # never waited for the 5 s


async def test_thin_traffic_closes_the_group_after_the_wait() -> None:
    inbox: asyncio.Queue[int] = asyncio.Queue()
    inbox.put_nowait(1)
    started = time.monotonic()
    assert await collect(inbox, 1000, max_wait_s=0.05) == [1]
    assert 0.04 <= time.monotonic() - started < 1


async def test_items_arriving_within_the_wait_join_the_group() -> None:
    inbox: asyncio.Queue[int] = asyncio.Queue()

    async def trickle() -> None:
        for i in range(5):
            inbox.put_nowait(i)
            await asyncio.sleep(0.005)

    feeder = asyncio.create_task(trickle())
    group = await collect(inbox, 1000, max_wait_s=1.0)
    await feeder
    assert group[0] == 0
    # Either all five came within the second, or the rest are still queued: none lost.
    assert group + [inbox.get_nowait() for _ in range(inbox.qsize())] == [0, 1, 2, 3, 4]


async def test_waits_for_the_first_item() -> None:
    inbox: asyncio.Queue[int] = asyncio.Queue()
    task = asyncio.create_task(collect(inbox, 10, max_wait_s=0))
    done, _ = await asyncio.wait([task], timeout=0.02)
    assert not done
    inbox.put_nowait(7)
    assert await task == [7]
