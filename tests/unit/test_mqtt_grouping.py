"""Groups close by count or after a few milliseconds, whichever comes first.

No wall-clock thresholds: a group that should close without waiting is given an hour to wait
(were it to wait, pytest-timeout fails the test), and the event loop's own clock says whether the
wait was kept.
"""

from __future__ import annotations

import asyncio
import time

from services.mqtt_bridge.grouping import collect

AN_HOUR = 3600.0


async def test_full_queue_gives_full_groups_without_waiting() -> None:
    inbox: asyncio.Queue[int] = asyncio.Queue()
    for i in range(2500):
        inbox.put_nowait(i)
    first = await collect(inbox, 1000, max_wait_s=AN_HOUR)
    second = await collect(inbox, 1000, max_wait_s=AN_HOUR)
    assert first == list(range(1000))
    assert second == list(range(1000, 2000))
    assert inbox.qsize() == 500


async def test_thin_traffic_closes_the_group_after_the_wait() -> None:
    inbox: asyncio.Queue[int] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    inbox.put_nowait(1)
    started = loop.time()
    assert await collect(inbox, 1000, max_wait_s=0.05) == [1]
    # It waited for company (the loop's clock, the one the wait is measured with).
    assert loop.time() - started >= 0.05 - time.get_clock_info("monotonic").resolution
    # What comes after the group closed starts the next one.
    inbox.put_nowait(2)
    assert await collect(inbox, 1000, max_wait_s=0) == [2]


async def test_items_arriving_within_the_wait_join_the_group() -> None:
    inbox: asyncio.Queue[int] = asyncio.Queue()

    async def trickle() -> None:
        for i in range(5):
            inbox.put_nowait(i)
            await asyncio.sleep(0)  # one turn of the loop between items: they arrive apart

    feeder = asyncio.create_task(trickle())
    group = await collect(inbox, 5, max_wait_s=AN_HOUR)
    await feeder
    assert group == [0, 1, 2, 3, 4]
    assert inbox.empty()


async def test_items_arriving_after_the_wait_are_left_for_the_next_group() -> None:
    inbox: asyncio.Queue[int] = asyncio.Queue()
    inbox.put_nowait(0)
    released = asyncio.Event()

    async def later() -> None:
        await released.wait()
        for i in range(1, 5):
            inbox.put_nowait(i)

    feeder = asyncio.create_task(later())
    group = await collect(inbox, 1000, max_wait_s=0)
    released.set()
    await feeder
    assert group == [0]
    assert [inbox.get_nowait() for _ in range(inbox.qsize())] == [1, 2, 3, 4]


async def test_waits_for_the_first_item() -> None:
    inbox: asyncio.Queue[int] = asyncio.Queue()
    task = asyncio.create_task(collect(inbox, 10, max_wait_s=0))
    for _ in range(10):
        await asyncio.sleep(0)  # let it run: it must still be waiting
    assert not task.done()
    inbox.put_nowait(7)
    assert await task == [7]
